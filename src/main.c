/*
 * main.c: the ocbridge daemon's command line, start-up and shutdown.
 *
 *   ocbridge -c FILE              run
 *   ocbridge -t -c FILE           check FILE: "configuration OK" or "FILE: key.path: reason"
 *   ocbridge subscribe -c FILE    make the platform's subscriptions match apps[].subscribe
 *   ocbridge state -c FILE        what the state store holds (read-only, safe while running)
 *   ocbridge --version | --help
 *
 * Start-up order: configuration, logging, the state store (state.dir; a
 * directory that cannot be written stops here, a corrupt database is
 * quarantined and replaced), the MQTT link, the spool and its drainer, the
 * coord thread with coordination.redis_url (coord.h: the worker's first
 * login already asks Redis), the command worker when an app has a secret
 * (its subscriptions must be registered before the link first connects; it
 * logs in and runs platform.manage_subscriptions on its own thread), the
 * link's connection (in the background), then the HTTP listener, so that
 * the first push already finds a link to publish on (and /readyz reports
 * the broker and the platform login honestly meanwhile).
 *
 * Shutdown (SIGTERM, SIGINT) runs in the reverse order, on the main thread:
 * the signal handler only writes the signal number to a self-pipe.  The HTTP
 * listener stops accepting and lets every request in flight get its answer
 * (the ack, or the publish timeout); the command worker lets its platform
 * calls finish and answers what is left; the spool's drainer stops; the
 * coord thread stops (it publishes forwarded statuses, so before the link);
 * then the link waits for whatever it still has in flight, disconnects; the
 * spool waits for its last writes; coord is freed after the link (the link's
 * last publish callbacks may still try to queue there), and the state store
 * commits what is queued and closes last.
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
#include "ocb/coord.h"
#include "ocb/http_rx.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/mqtt_link.h"
#include "ocb/journal.h"
#include "ocb/spool.h"
#include "ocb/state.h"
#include "ocb/subscriptions.h"
#include "ocb/util.h"

#define MOD "main"

#define CONFIG_ERR_MAX 1024
/* Extra time the HTTP drain allows beyond the publish timeout. */
#define DRAIN_SLACK_MS 1000
/* How long platform calls in flight may finish at shutdown before their
 * commands are answered SHUTTING_DOWN. */
#define CMD_DRAIN_MS 3000
/* Writes waiting for the state store's writer; past it a push gets 503. */
#define STATE_QUEUE_MAX 8192

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
               "       ocbridge state -c FILE      show what the state store holds (read-only)\n"
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

/*
 * What a reload touches.  Configurations are reference-counted (config.h):
 * main holds one to the current configuration; the MQTT link holds the one
 * it was started with (its restart-only keys), the listener the current one
 * and every request the one it began under, the command worker those its
 * apps point into.  A reload hands the new configuration to the listener and
 * the worker, which take references of their own, and drops main's
 * reference to the old one: the old one is freed when its last request or
 * command is done, on whichever thread that is.  So there is no limit on
 * the number of reloads, and memory does not grow with them.
 */
struct running {
    const char *path;
    struct ocb_config *cfg; /* the current one: main's reference */
    struct ocb_http_rx *rx;
    struct ocb_cmd_worker *worker;
};

static void count_reload(const char *outcome)
{
    char labels[OCB_METRICS_LABELS_MAX];

    metrics_labels(labels, sizeof(labels), "outcome", outcome, NULL);
    metrics_counter_add("ocb_config_reloads_total", labels, 1);
}

/*
 * SIGHUP: read the file again.  A file that does not load changes nothing
 * (the error is logged); otherwise apps, push tokens, secrets, allow_from,
 * body cap and log settings take effect for new requests and commands,
 * without touching the MQTT session or open HTTP connections.
 */
static void reload(struct running *st)
{
    struct ocb_config *next = NULL;
    char err[CONFIG_ERR_MAX], kept[512];
    enum ocb_err rc;

    rc = config_load(st->path, &next, err, sizeof(err));
    if (rc != OCB_OK) {
        log_error(MOD, NULL, "SIGHUP: %s; keeping the running configuration", err);
        count_reload("invalid");
        return;
    }
    rc = config_reload_merge(next, st->cfg, kept, sizeof(kept));
    if (rc == OCB_OK && st->worker != NULL)
        rc = cmd_worker_reload(st->worker, next);
    if (rc != OCB_OK) {
        log_error(MOD, NULL, "SIGHUP: cannot apply %s: %s; keeping the running configuration",
                  st->path, ocb_strerror(rc));
        config_free(next);
        count_reload("failed");
        return;
    }
    if (kept[0] != '\0')
        log_warn(MOD, NULL, "SIGHUP: %s changed but only takes effect after a restart", kept);
    if (st->worker == NULL && config_commands_enabled(next))
        log_warn(MOD, NULL,
                 "SIGHUP: an app now has a secret, but commands were off at start-up; "
                 "they start after a restart");
    http_rx_reload(st->rx, next);
    log_setup(next->log.level, next->log.format);
    /* Main's reference moves to next; whoever still uses the old one holds its own. */
    config_unref(st->cfg);
    st->cfg = next;
    count_reload("ok");
    log_info(MOD, NULL, "configuration reloaded from %s: %zu app(s); %u configuration(s) in memory",
             st->path, next->n_apps, config_alive());
}

/* Serve signals until SIGTERM or SIGINT: SIGHUP reloads. */
static void wait_for_stop(struct running *st)
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
            reload(st);
            continue;
        }
        log_info(MOD, NULL, "%s received; shutting down", b == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

/* ---- the broker's subscription set across runs (issue 11) */

#define SUBS_META_KEY "mqtt.subscriptions"
#define SUBS_MAX      16

/* paho's callback thread, after the broker granted every filter: remember the set, so
 * that a later run with another prefix or shared group takes back what it no longer wants. */
static void remember_subscriptions(void *ctx, const char *const *filters, size_t n)
{
    char text[OCB_STATE_META_MAX];
    size_t len = 0;

    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(text + len, sizeof(text) - len, "%s%s", i > 0 ? "\n" : "", filters[i]);

        if (w < 0 || (size_t)w >= sizeof(text) - len) {
            log_warn(MOD, NULL, "the subscribed filters do not fit the state store's meta value");
            return;
        }
        len += (size_t)w;
    }
    state_meta_set_async(ctx, SUBS_META_KEY, text);
}

/* Before the link starts: hand it what an earlier run subscribed. */
static enum ocb_err recall_subscriptions(struct ocb_state *state, struct ocb_mqtt_link *link)
{
    char text[OCB_STATE_META_MAX + 1];
    const char *filters[SUBS_MAX];
    size_t n = 0;

    if (state_meta_get(state, SUBS_META_KEY, text, sizeof(text)) == OCB_OK) {
        for (char *f = text; *f != '\0' && n < SUBS_MAX;) {
            char *nl = strchr(f, '\n');

            filters[n++] = f;
            if (nl == NULL)
                break;
            *nl = '\0';
            f = nl + 1;
        }
    }
    return mqtt_link_set_previous_subscriptions(link, filters, n, remember_subscriptions, state);
}

/* A /readyz note hook. */
static bool redis_unreachable(void *ctx)
{
    return coord_degraded(ctx);
}

/* Runs the daemon; st->cfg is the configuration to start with.  On return,
 * st->cfg is the last one in use (main's reference, for the caller to drop). */
static int run(struct running *st)
{
    /* The start-up configuration, kept for shutdown's restart-only keys
     * while reloads replace st->cfg. */
    const struct ocb_config *cfg = config_ref(st->cfg);
    struct ocb_mqtt_link *link = NULL;
    struct ocb_http_rx *rx = NULL;
    struct ocb_cmd_worker *worker = NULL;
    struct ocb_state *state = NULL;
    struct ocb_spool *spool = NULL;
    struct ocb_coord *coord = NULL;
    enum ocb_err rc;
    int status = 1;

    if (install_signals() != 0) {
        log_error(MOD, NULL, "cannot install signal handlers");
        config_unref(cfg);
        return 1;
    }
    metrics_describe("ocb_config_reloads_total", OCB_METRIC_COUNTER,
                     "SIGHUP reloads by outcome (ok, invalid, failed)");
    rc = state_open(cfg->state.dir, STATE_QUEUE_MAX, &state);
    if (rc != OCB_OK) {
        log_error(MOD, NULL, "state.dir %s cannot be used (see above)", cfg->state.dir);
        goto out;
    }
    rc = mqtt_link_new(cfg, &link);
    if (rc != OCB_OK)
        goto out;
    /* Even with spool.mode off the spool exists: what an earlier run spooled is still delivered. */
    rc = spool_new(state, link, cfg, &spool);
    if (rc == OCB_OK)
        rc = spool_start(spool);
    if (rc != OCB_OK)
        goto out;
    /* Several replicas: the coord thread first, so the worker finds Redis. */
    if (cfg->coordination.redis_url[0]) {
        rc = coord_new(cfg, &coord);
        if (rc == OCB_OK)
            rc = coord_start(coord);
        if (rc != OCB_OK)
            goto out;
    }
    /* The command half exists only when some app has a secret: it must
     * register its subscriptions before the link first connects. */
    if (config_commands_enabled(cfg)) {
        rc = cmd_worker_new(cfg, link, &worker);
        if (rc == OCB_OK && coord != NULL)
            cmd_worker_set_coord(worker, coord);
        if (rc == OCB_OK)
            rc = cmd_worker_use_state(worker, state);
        if (rc == OCB_OK)
            rc = cmd_worker_attach(worker);
        if (rc == OCB_OK)
            rc = cmd_worker_start(worker);
        if (rc != OCB_OK)
            goto out;
        /* MQTT 3.1.1 brokers clear the retain flag on live delivery, so a
         * command published retained while we are connected cannot be told
         * from a plain one; only replays (after a resubscribe) are caught. */
        if (cfg->mqtt.version != 5)
            log_warn(MOD, NULL,
                     "mqtt.version %d: a command published with the retain flag while the bridge "
                     "is connected will be executed; use MQTT 5 to have every retained command "
                     "ignored",
                     cfg->mqtt.version);
    } else {
        log_info(MOD, NULL, "no app has a secret: push only, command topics are not subscribed");
    }
    if (cfg->mqtt.version != 5 && cfg->mqtt.shared_group[0] != '\0')
        log_warn(MOD, NULL,
                 "mqtt.shared_group \"%s\" with mqtt.version %d: shared subscriptions "
                 "($share/...) are an MQTT 5 feature; a 3.1.1 broker must support them as an "
                 "extension (Mosquitto, EMQX, HiveMQ, VerneMQ do; RabbitMQ 3.x and aedes take "
                 "the filter as a literal topic and deliver no command)",
                 cfg->mqtt.shared_group, cfg->mqtt.version);
    rc = recall_subscriptions(state, link);
    if (rc == OCB_OK)
        rc = mqtt_link_start(link);
    if (rc != OCB_OK)
        goto out;
    rc = http_rx_new(cfg, link, &rx);
    if (rc != OCB_OK)
        goto out;
    http_rx_set_spool(rx, spool);
    if (worker != NULL) {
        rc = http_rx_add_ready_hook(rx, "platform", cmd_worker_ready, worker);
        if (rc != OCB_OK)
            goto out;
        http_rx_set_command_status_hook(rx, cmd_worker_on_status, worker);
    }
    if (coord != NULL) {
        rc = http_rx_add_ready_note(rx, "degraded: redis unreachable", redis_unreachable, coord);
        if (rc != OCB_OK)
            goto out;
        http_rx_set_coord(rx, coord); /* the shared re-push window */
    }
    rc = http_rx_start(rx);
    if (rc != OCB_OK)
        goto out;
    log_info(MOD, NULL, "ocbridge %s running: %zu app(s), broker %s", OCB_VERSION, cfg->n_apps,
             cfg->mqtt.url);

    st->rx = rx;
    st->worker = worker;
    wait_for_stop(st);
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
    spool_stop(spool);
    /* Its thread publishes forwarded statuses: stop it while the link works. */
    coord_stop(coord);
    if (link != NULL)
        mqtt_link_stop(link, cfg->mqtt.publish_timeout_ms);
    /* The spool's last writes may still resolve requests: before the receiver goes. */
    spool_free(spool);
    http_rx_free(rx);
    cmd_worker_free(worker);
    mqtt_link_free(link);
    /* After the link: its last publish callbacks may still queue for coord (refused then). */
    coord_free(coord);
    state_close(state);
    config_unref(cfg);
    if (status == 0)
        log_info(MOD, NULL, "stopped");
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    return status;
}

/* `ocbridge state`: a read-only summary of the state store, safe while the
 * daemon runs (a read connection sees the last commit through WAL). */
static int run_state(const struct ocb_config *cfg)
{
    sqlite3 *db = NULL;
    enum ocb_err rc = state_reader_open(cfg->state.dir, &db);
    int64_t now = ocb_wall_ms(); /* one instant for every age the summary prints */

    if (rc == OCB_ERR_NOT_FOUND) {
        printf("state database: %s/%s (not created yet)\n", cfg->state.dir, OCB_STATE_DB_NAME);
        printf("spool: 0 message(s), 0 bytes\n");
        printf("unfinished commands: 0\nrequesters: 0\n");
        return 0;
    }
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge state: cannot open %s/%s\n", cfg->state.dir, OCB_STATE_DB_NAME);
        return 1;
    }
    printf("state database: %s/%s\n", cfg->state.dir, OCB_STATE_DB_NAME);
    rc = spool_report(db, now, stdout);
    if (rc == OCB_OK)
        rc = journal_report(db, now, stdout);
    sqlite3_close(db);
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge state: cannot read %s/%s\n", cfg->state.dir, OCB_STATE_DB_NAME);
        return 1;
    }
    return 0;
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
    bool test_only = false, subscribe = false, state = false;
    struct ocb_config *cfg = NULL;
    char err[CONFIG_ERR_MAX];
    int i = 1, status;

    if (argc > 1 && strcmp(argv[1], "subscribe") == 0) {
        subscribe = true;
        i = 2;
    } else if (argc > 1 && strcmp(argv[1], "state") == 0) {
        state = true;
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
    if (state) {
        status = run_state(cfg);
        config_free(cfg);
    } else if (subscribe) {
        status = run_subscribe(cfg);
        config_free(cfg);
    } else {
        struct running st = {.path = config_path, .cfg = cfg};
        status = run(&st);
        config_free(st.cfg);
    }
    return status;
}
