/*
 * main.c: the ocbridge daemon's command line, start-up and shutdown.
 *
 *   ocbridge -c FILE              run
 *   ocbridge -t -c FILE           check FILE: "configuration OK" or "FILE: key.path: reason"
 *   ocbridge subscribe -c FILE    make the platform's subscriptions match apps[].subscribe
 *   ocbridge --version | --help
 *
 * Start-up order: configuration, logging, the MQTT link, the command worker
 * when an app has a secret (its subscriptions must be registered before the
 * link first connects; it logs in and runs platform.manage_subscriptions on
 * its own thread), the link's connection (in the background), then the HTTP
 * listener, so that the first push already finds a link to publish on (and
 * /readyz reports the broker and the platform login honestly meanwhile).
 *
 * Shutdown (SIGTERM, SIGINT) runs in the reverse order, on the main thread:
 * the signal handler only writes the signal number to a self-pipe.  The HTTP
 * listener stops accepting and lets every request in flight get its answer
 * (the ack, or the publish timeout); the command worker lets its platform
 * calls finish and answers what is left; then the link waits for whatever
 * it still has in flight, disconnects, and everything is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocb/cmd_worker.h"
#include "ocb/config.h"
#include "ocb/http_rx.h"
#include "ocb/log.h"
#include "ocb/mqtt_link.h"
#include "ocb/subscriptions.h"

#define MOD "main"

#define CONFIG_ERR_MAX 1024
/* Extra time the HTTP drain allows beyond the publish timeout. */
#define DRAIN_SLACK_MS 1000
/* How long platform calls in flight may finish at shutdown before their
 * commands are answered SHUTTING_DOWN. */
#define CMD_DRAIN_MS 3000

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    /* The pipe is non-blocking: if it is full a signal is already pending. */
    if (write(signal_pipe[1], &b, 1) < 0) {
    }
    errno = saved;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ocbridge -c FILE            run the bridge\n"
               "       ocbridge -t -c FILE         check the configuration and exit\n"
               "       ocbridge subscribe -c FILE  make the platform's subscriptions match "
               "apps[].subscribe\n"
               "       ocbridge --print-key KEY -c FILE  print a key's effective value\n"
               "       ocbridge --version | --help\n"
               "Every configuration key can be overridden by an OCB_* environment variable\n"
               "(the upper-cased key path, e.g. OCB_MQTT_URL).\n");
}

static int install_signals(void)
{
    struct sigaction sa;

    if (pipe(signal_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC) != 0 ||
            fcntl(signal_pipe[i], F_SETFL, O_NONBLOCK) != 0)
            return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0)
        return -1;
    /* A peer closing a socket must be an error return, not a kill. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Block until SIGTERM or SIGINT arrives. */
static void wait_for_stop(void)
{
    for (;;) {
        struct pollfd pfd = {.fd = signal_pipe[0], .events = POLLIN};
        unsigned char b;
        ssize_t n;

        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(MOD, NULL, "poll on the signal pipe failed; stopping");
            return;
        }
        n = read(signal_pipe[0], &b, 1);
        if (n != 1)
            continue;
        if (b == SIGHUP) {
            log_warn(MOD, NULL,
                     "SIGHUP ignored: reloading the configuration is not supported; "
                     "restart instead");
            continue;
        }
        log_info(MOD, NULL, "%s received; shutting down", b == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

static int run(const struct ocb_config *cfg)
{
    struct ocb_mqtt_link *link = NULL;
    struct ocb_http_rx *rx = NULL;
    struct ocb_cmd_worker *worker = NULL;
    enum ocb_err rc;
    int status = 1;

    if (install_signals() != 0) {
        log_error(MOD, NULL, "cannot install signal handlers");
        return 1;
    }
    rc = mqtt_link_new(cfg, &link);
    if (rc != OCB_OK)
        goto out;
    /* The command half exists only when some app has a secret: it must
     * register its subscriptions before the link first connects. */
    if (config_commands_enabled(cfg)) {
        rc = cmd_worker_new(cfg, link, &worker);
        if (rc == OCB_OK)
            rc = cmd_worker_attach(worker);
        if (rc == OCB_OK)
            rc = cmd_worker_start(worker);
        if (rc != OCB_OK)
            goto out;
    }
    rc = mqtt_link_start(link);
    if (rc != OCB_OK)
        goto out;
    rc = http_rx_new(cfg, link, &rx);
    if (rc != OCB_OK)
        goto out;
    if (worker != NULL) {
        rc = http_rx_add_ready_hook(rx, "platform", cmd_worker_ready, worker);
        if (rc != OCB_OK)
            goto out;
        http_rx_set_command_status_hook(rx, cmd_worker_on_status, worker);
    }
    rc = http_rx_start(rx);
    if (rc != OCB_OK)
        goto out;
    log_info(MOD, NULL, "ocbridge %s running: %zu app(s), broker %s", OCB_VERSION, cfg->n_apps,
             cfg->mqtt.url);

    wait_for_stop();
    status = 0;

out:
    if (rc != OCB_OK)
        log_error(MOD, NULL, "start-up failed: %s", ocb_strerror(rc));
    /* Order matters: HTTP answers need the link until the last ack, and the
     * link's done callbacks need the receiver until the link has stopped. */
    if (rx != NULL)
        http_rx_stop(rx, cfg->mqtt.publish_timeout_ms + DRAIN_SLACK_MS);
    /* Commands next, while the link can still carry their answers. */
    if (worker != NULL)
        cmd_worker_stop(worker, CMD_DRAIN_MS);
    if (link != NULL)
        mqtt_link_stop(link, cfg->mqtt.publish_timeout_ms);
    http_rx_free(rx);
    cmd_worker_free(worker);
    mqtt_link_free(link);
    if (status == 0)
        log_info(MOD, NULL, "stopped");
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    return status;
}

/* `ocbridge subscribe`: reconcile the platform's subscriptions (subscriptions.c). */
static int run_subscribe(const struct ocb_config *cfg)
{
    return subscriptions_main(cfg);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    const char *print_key = NULL;
    bool test_only = false, subscribe = false;
    struct ocb_config *cfg = NULL;
    char err[CONFIG_ERR_MAX];
    int i = 1, status;

    if (argc > 1 && strcmp(argv[1], "subscribe") == 0) {
        subscribe = true;
        i = 2;
    }
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("ocbridge %s\n", OCB_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-t") == 0) {
            test_only = true;
        } else if (strcmp(argv[i], "--print-key") == 0 && i + 1 < argc) {
            print_key = argv[++i];
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else {
            fprintf(stderr, "ocbridge: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config_path == NULL) {
        fprintf(stderr, "ocbridge: -c FILE is required\n");
        usage(stderr);
        return 2;
    }

    if (config_load(config_path, &cfg, err, sizeof(err)) != OCB_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (print_key != NULL) {
        /* For scripts: the effective value after defaults, the file and OCB_* variables. */
        char value[4096];
        enum ocb_err rc = config_format_key(cfg, print_key, value, sizeof(value));
        if (rc == OCB_OK)
            printf("%s\n", value);
        else
            fprintf(stderr, "ocbridge: --print-key %s: %s\n", print_key,
                    rc == OCB_ERR_NOT_FOUND ? "no such key" : ocb_strerror(rc));
        config_free(cfg);
        return rc == OCB_OK ? 0 : 1;
    }
    if (test_only) {
        printf("configuration OK\n");
        config_free(cfg);
        return 0;
    }
    log_setup(cfg->log.level, cfg->log.format);
    status = subscribe ? run_subscribe(cfg) : run(cfg);
    config_free(cfg);
    return status;
}
