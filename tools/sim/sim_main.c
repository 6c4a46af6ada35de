/*
 * sim_main.c: ocbridge-sim start-up and shutdown.
 *
 * Start-up order: parse flags (exit 2 with one clear line on a bad one); --make-certs writes the
 * certificates and exits; otherwise load the certificates, block SIGINT/SIGTERM in every thread
 * (the main thread collects them with sigwait, so no handler runs in a random thread), build the
 * state, start the push workers, the ticker, the API and the admin listeners, and print
 *     ocbridge-sim: api https://127.0.0.1:8743 admin http://127.0.0.1:8744
 * on stdout once both accept connections (ports are the bound ones, so port 0 works).
 * Shutdown order is the reverse: stop accepting, stop the ticker, stop the push workers, free.
 */
#include "sim.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 20

static volatile int ticker_stop;

static void *ticker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&ticker_stop, __ATOMIC_RELAXED)) {
        struct timespec ts = {0, TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
        int64_t now = sim_now_ms();
        sim_state_lock();
        sim_devices_tick_locked(now);
        sim_cmds_tick_locked(now);
        sim_state_unlock();
    }
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: ocbridge-sim --make-certs DIR\n"
          "       ocbridge-sim --listen IP:PORT --admin IP:PORT (--certs DIR | --plain)\n"
          "                    --app APPID:SECRET [--app ...] [--devices N] [--report-interval S]\n"
          "                    [--throttle CALLS/SECONDS] [--token-ttl S] [--push-timeout S]\n"
          "                    [--repush-interval S] [--repush-window S] [--blacklist-after N]\n"
          "                    [more flags: see tools/sim/README.md]\n",
          f);
}

static enum ocb_err load_tls(const struct sim_opts *o, struct sim_http_tls *tls, char *err,
                             size_t errlen)
{
    static const char *names[] = {"server-key.pem", "server.pem", "ca.pem"};
    char **dst[] = {&tls->key_pem, &tls->cert_pem, &tls->ca_pem};
    size_t n = o->no_client_auth ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->certs_dir, names[i]);
        if (sim_read_file(path, 1024 * 1024, dst[i], NULL) != OCB_OK) {
            snprintf(err, errlen, "cannot read %.200s (make it with --make-certs %.200s)", path,
                     o->certs_dir);
            return OCB_ERR_IO;
        }
    }
    return OCB_OK;
}

int main(int argc, char **argv)
{
    static struct sim_opts opts;
    char err[512] = "";
    int status = 1;
    struct sim_http_tls tls = {0};
    struct sim_http *api = NULL, *admin = NULL;
    pthread_t tick;
    bool tick_started = false, push_started = false;

    sim_opts_defaults(&opts);
    if (sim_opts_parse(&opts, argc, argv, err, sizeof err) != OCB_OK) {
        if (strcmp(err, "help") == 0) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "ocbridge-sim: %s\n", err);
        usage(stderr);
        return 2;
    }
    sim_log_setup(opts.log_level, opts.log_file);
    if (opts.make_certs_dir) {
        if (sim_certs_make(opts.make_certs_dir, err, sizeof err) != OCB_OK) {
            fprintf(stderr, "ocbridge-sim: --make-certs: %s\n", err);
            return 1;
        }
        printf("ocbridge-sim: certificates written to %s\n", opts.make_certs_dir);
        return 0;
    }
    bool use_tls = !opts.plain;
    if (use_tls && load_tls(&opts, &tls, err, sizeof err) != OCB_OK) {
        fprintf(stderr, "ocbridge-sim: %s\n", err);
        status = 2;
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ocbridge-sim: libcurl initialisation failed\n");
        goto out;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (sim_state_init(&opts) != OCB_OK) {
        fprintf(stderr, "ocbridge-sim: out of memory building the initial state\n");
        goto out_curl;
    }
    if (sim_push_start(&opts) != OCB_OK) {
        fprintf(stderr, "ocbridge-sim: cannot start the push workers\n");
        goto out_state;
    }
    push_started = true;
    if (pthread_create(&tick, NULL, ticker, NULL) != 0) {
        fprintf(stderr, "ocbridge-sim: cannot start the ticker\n");
        goto out_state;
    }
    tick_started = true;
    unsigned api_port = 0, admin_port = 0;
    if (sim_http_start(opts.listen, use_tls ? &tls : NULL, sim_api_handle, opts.max_body, &api,
                       &api_port) != OCB_OK) {
        fprintf(stderr, "ocbridge-sim: cannot listen on %s (API)\n", opts.listen);
        goto out_state;
    }
    if (sim_http_start(opts.admin, NULL, sim_admin_handle, opts.max_body, &admin, &admin_port) !=
        OCB_OK) {
        fprintf(stderr, "ocbridge-sim: cannot listen on %s (admin)\n", opts.admin);
        goto out_state;
    }
    char host[64], ahost[64];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(opts.listen, ':') - opts.listen),
             opts.listen);
    snprintf(ahost, sizeof ahost, "%.*s", (int)(strrchr(opts.admin, ':') - opts.admin), opts.admin);
    SIM_INFO("main", "%zu apps, %ld devices, TLS %s, client auth %s", opts.napps, opts.devices,
             use_tls ? "on" : "off", use_tls && !opts.no_client_auth ? "required" : "off");
    printf("ocbridge-sim: api %s://%s:%u admin http://%s:%u\n", use_tls ? "https" : "http", host,
           api_port, ahost, admin_port);
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    SIM_INFO("main", "signal %d: shutting down", sig);
    status = 0;
out_state:
    sim_http_stop(api);
    sim_http_stop(admin);
    if (tick_started) {
        __atomic_store_n(&ticker_stop, 1, __ATOMIC_RELAXED);
        pthread_join(tick, NULL);
    }
    if (push_started)
        sim_push_stop();
    sim_state_free();
out_curl:
    curl_global_cleanup();
out:
    free(tls.key_pem);
    free(tls.cert_pem);
    free(tls.ca_pem);
    return status;
}
