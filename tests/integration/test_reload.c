/*
 * test_reload.c: SIGHUP reloads the configuration without dropping the MQTT
 * session or open HTTP connections (issue 5): new apps and push tokens take
 * effect, a bad file keeps the running configuration with an error logged,
 * and keys bound at start-up keep their running value with a warning.
 * Reloads have no limit: a thousand of them under push load leave the
 * bridge's memory flat, and every push is answered under the configuration
 * it started with (issue 9, item 6).
 */
#define _GNU_SOURCE /* memmem */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_platform.h"
#include "harness.h"
#include "th_main.h"

static const char body[] =
    "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-1\",\"gatewayId\":\"dev-1\","
    "\"requestId\":null,\"service\":{\"serviceId\":\"S\",\"serviceType\":\"S\",\"data\":{\"v\":1},"
    "\"eventTime\":\"20261126T101500Z\"}}";

static long push(struct th_bridge *b, const char *path)
{
    char url[256];
    struct th_http_resp resp;
    snprintf(url, sizeof(url), "%s%s", b->base, path);
    ck_assert(th_http("POST", url, body, strlen(body), NULL, &resp));
    long status = resp.status;
    th_http_resp_free(&resp);
    return status;
}

static struct th_broker broker;
static struct th_bridge bridge;

/* The push-only bridge config: apps (a JSON array), the broker URL (NULL =
 * the test broker) and extra top-level keys (",\"log\":{...}" or ""). */
static void config_text(char *out, size_t cap, const char *apps, const char *mqtt_url,
                        const char *extra)
{
    int n = snprintf(out, cap,
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\"},"
                     "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"reload-bridge\","
                     "\"publish_timeout_ms\":2000},\"apps\":%s%s}",
                     bridge.port, mqtt_url ? mqtt_url : broker.url, apps, extra);
    ck_assert(n > 0 && (size_t)n < cap);
}

/* Rewrite the running bridge's config file (then send SIGHUP). */
static void write_config(const char *apps, const char *mqtt_url, const char *extra)
{
    char json[2048];
    config_text(json, sizeof(json), apps, mqtt_url, extra);
    ck_assert(th_write_file(bridge.config, json, strlen(json)));
}

/* A broker and a push-only bridge serving apps, ready. */
static void start(const char *apps)
{
    char json[2048];
    th_broker_start(&broker, NULL);
    bridge.port = th_free_port();
    config_text(json, sizeof(json), apps, NULL, "");
    th_bridge_start(&bridge, json, false);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, 10000));
}

static void stop(void)
{
    ck_assert_int_eq(th_bridge_stop(&bridge), 0);
    th_broker_stop(&broker);
}

START_TEST(sighup_applies_apps_and_tokens_and_keeps_connections)
{
    start("[{\"app_id\":\"a\"}]");

    struct th_mqtt *sub = th_mqtt_connect(broker.url, "reload-sub", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));

    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    ck_assert_int_eq(push(&bridge, "/push/b/tok"), 404);

    write_config("[{\"app_id\":\"a\"},{\"app_id\":\"b\",\"push_token\":\"tok\"}]", NULL, "");
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(th_log_wait(&bridge.proc, "configuration reloaded", WAIT_MS));
    ck_assert_int_eq(push(&bridge, "/push/b/tok"), 200);
    ck_assert_int_eq(push(&bridge, "/push/b"), 401);
    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/b/dev-1/deviceDataChanged", WAIT_MS));
    /* The MQTT session was not touched: one connection, no reconnect. */
    ck_assert(!th_log_contains(&bridge.proc, "connection lost"));
    ck_assert_int_eq((int)th_metric(&bridge, NULL, "ocb_mqtt_reconnects_total"), 0);
    ck_assert_int_eq((int)th_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"ok\"}"), 1);

    /* Removing an app takes effect too. */
    write_config("[{\"app_id\":\"b\",\"push_token\":\"tok\"}]", NULL, "");
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(
        th_wait_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"ok\"}", 2, WAIT_MS));
    ck_assert_int_eq(push(&bridge, "/push/a"), 404);

    th_mqtt_free(sub);
    stop();
}
END_TEST

START_TEST(bad_file_keeps_the_running_configuration)
{
    start("[{\"app_id\":\"a\"}]");

    const char *bad = "{\"apps\":[{\"app_id\":\"a\",\"secrt\":\"x\"}]}";
    ck_assert(th_write_file(bridge.config, bad, strlen(bad)));
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(th_log_wait(
        &bridge.proc, "apps[0].secrt: unknown key; keeping the running configuration", WAIT_MS));
    ck_assert(
        th_wait_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"invalid\"}", 1, WAIT_MS));
    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    ck_assert(th_running(&bridge.proc));
    stop();
}
END_TEST

START_TEST(restart_only_keys_keep_running_values_and_log_level_changes)
{
    start("[{\"app_id\":\"a\"}]");

    /* A new broker URL and debug logging: the URL waits for a restart, the level applies. */
    write_config("[{\"app_id\":\"a\"}]", "tcp://127.0.0.1:1",
                 ",\"log\":{\"level\":\"debug\",\"format\":\"json\"}");
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(th_log_wait(&bridge.proc, "mqtt.url changed but only takes effect after a restart",
                          WAIT_MS));
    ck_assert(th_log_wait(&bridge.proc, "\"msg\":\"configuration reloaded", WAIT_MS));
    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    /* Debug lines now appear, as JSON. */
    ck_assert(th_log_wait(&bridge.proc, "\"level\":\"debug\"", WAIT_MS));
    stop();
}
END_TEST

/* Replace the first `from` in the bridge's config file with `to`. */
static void edit_config(const char *from, const char *to)
{
    size_t len;
    char *text = th_read_file(fx_bridge.config, &len);
    ck_assert_ptr_nonnull(text);
    char *at = strstr(text, from);
    ck_assert_ptr_nonnull(at);
    char out[8192];
    int n = snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    ck_assert(n > 0 && (size_t)n < sizeof(out));
    ck_assert(th_write_file(fx_bridge.config, out, (size_t)n));
    free(text);
}

static long readyz(void)
{
    char url[128];
    struct th_http_resp resp;
    snprintf(url, sizeof(url), "%s/readyz", fx_bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &resp));
    long status = resp.status;
    th_http_resp_free(&resp);
    return status;
}

static bool wait_readyz(long want)
{
    for (long long end = th_now_ms() + WAIT_MS; th_now_ms() < end; th_sleep_ms(50))
        if (readyz() == want)
            return true;
    return false;
}

START_TEST(sighup_changes_secrets_without_dropping_the_session)
{
    char topic[256], answer_topic[256];
    fx_start(NULL, NULL, NULL);
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_topic(answer_topic, sizeof(answer_topic), APP, 0, "commandResponse");
    int logins = fx_count("POST", "/iocm/app/sec/v1.1.0/login", 200);

    /* A wrong secret: the bridge logs in again at once, and is no longer ready. */
    edit_config("\"secret\":\"" SECRET "\"", "\"secret\":\"wrong\"");
    th_signal(&fx_bridge.proc, SIGHUP);
    ck_assert(th_log_wait(&fx_bridge.proc, "secret changed, logging in again", WAIT_MS));
    ck_assert_msg(wait_readyz(503), "not ready expected with a wrong secret");
    ck_assert(fx_wait_count("POST", "/iocm/app/sec/v1.1.0/login", 401, 1, WAIT_MS));

    /* The right secret again: ready, and commands work on the same MQTT session. */
    edit_config("\"secret\":\"wrong\"", "\"secret\":\"" SECRET "\"");
    th_signal(&fx_bridge.proc, SIGHUP);
    ck_assert_msg(wait_readyz(200), "ready expected after the secret was fixed");
    ck_assert_int_gt(fx_count("POST", "/iocm/app/sec/v1.1.0/login", 200), logins);
    fx_publish(topic,
               "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":\"r1\"}");
    cJSON *a = fx_answer(answer_topic, 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    cJSON_Delete(a);

    /* No secret at all: commands are off for the app, with a clear answer. */
    edit_config("\"secret\":\"" SECRET "\"", "\"secret\":\"\"");
    th_signal(&fx_bridge.proc, SIGHUP);
    ck_assert(th_log_wait(&fx_bridge.proc, "app1: commands off after reload", WAIT_MS));
    fx_publish(topic,
               "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":\"r2\"}");
    a = fx_answer(answer_topic, 1);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")));
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "error"), "code"), "COMMANDS_DISABLED");
    cJSON_Delete(a);
    ck_assert(!th_log_contains(&fx_bridge.proc, "connection lost"));
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 1);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

/* ---- a thousand reloads under push load
 *
 * Configuration k (k reloads done) wants push token "even" or "odd" by k's
 * parity, and alternates http.max_body_bytes too.  The main thread writes
 * configuration k+1, counts it as sent, sends SIGHUP and waits until the
 * bridge reports the reload (ocb_config_reloads_total), then counts it as
 * applied: one reload at a time, so no SIGHUP is merged with another.  So
 * the configuration in force at any moment has an index in [applied, sent],
 * and a push sent after reading applied = lo and answered before reading
 * sent = hi started under one of lo..hi.  When lo == hi its answer is
 * determined (200 for the matching token, 401 for the other); otherwise it
 * must still be one of the two.  Every 200 must reach the broker and no 401
 * may, which the subscriber checks by a sequence number in each body.
 */

#define LOAD_RELOADS   1000
#define LOAD_RSS_AT    100
#define LOAD_RSS_SLACK 512 /* KiB, for a bridge built without sanitizers */
/* ASan's own bookkeeping (allocation stacks, quarantine, allocator caches) grows
 * with every allocation: 2 to 5 MiB over these 900 reloads and their pushes, where
 * a plain build stays within 200 KiB.  Keeping the 900 retired configurations
 * (some 19 KiB each) adds about 17 MiB, so either bound catches that; a smaller
 * retention is caught by the count of configurations in memory at the end. */
#define LOAD_RSS_SLACK_ASAN (12 * 1024)
#define LOAD_THREADS        4
#define LOAD_MAX_PUSHES     200000 /* per thread: the loop's bound */
#define LOAD_MAX_SEQ        (LOAD_THREADS * LOAD_MAX_PUSHES)
#define LOAD_WAIT_MS        10000
#define LOAD_WARM_UP        2000 /* pushes before the first reload */

static atomic_long load_sent, load_applied, load_pushes;
static atomic_bool load_stop, load_pause;
static atomic_int load_busy; /* pushers between reading load_pause and their answer */

struct pusher {
    pthread_t thread;
    int id;
    unsigned char *answered_200; /* by seq; shared array, each thread its own seqs */
    long pushes, ok, unauthorized, determined, wrong, other;
    long first_other_status;
};

static const char *token_of(long k)
{
    return k % 2 == 0 ? "even" : "odd";
}

static void *pusher_main(void *arg)
{
    struct pusher *p = arg;

    for (long i = 0; i < LOAD_MAX_PUSHES && !atomic_load(&load_stop); i++) {
        atomic_fetch_add(&load_busy, 1);
        if (atomic_load(&load_pause)) {
            atomic_fetch_sub(&load_busy, 1);
            th_sleep_ms(1);
            i--;
            continue;
        }
        long seq = (long)p->id * LOAD_MAX_PUSHES + i;
        const char *token = token_of(i + p->id);
        char url[256], body_text[512];
        struct th_http_resp resp;

        snprintf(url, sizeof(url), "%s/push/a/%s", bridge.base, token);
        snprintf(body_text, sizeof(body_text),
                 "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-%d\","
                 "\"service\":{\"serviceId\":\"S\",\"serviceType\":\"S\","
                 "\"data\":{\"seq\":%ld},\"eventTime\":\"20261126T101500Z\"}}",
                 p->id, seq);
        long lo = atomic_load(&load_applied);
        bool got = th_http("POST", url, body_text, strlen(body_text), NULL, &resp);
        long hi = atomic_load(&load_sent);
        long status = got ? resp.status : 0;
        if (got)
            th_http_resp_free(&resp);
        atomic_fetch_sub(&load_busy, 1);
        p->pushes++;
        atomic_fetch_add(&load_pushes, 1);
        if (status == 200) {
            p->ok++;
            p->answered_200[seq] = 1;
        } else if (status == 401) {
            p->unauthorized++;
        } else {
            if (p->other++ == 0)
                p->first_other_status = status;
            continue;
        }
        if (lo == hi) {
            p->determined++;
            if ((status == 200) != (strcmp(token, token_of(lo)) == 0))
                p->wrong++;
        }
    }
    return NULL;
}

static void load_config(char *out, size_t cap, long k)
{
    int n = snprintf(out, cap,
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"max_body_bytes\":%d},"
                     "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"reload-bridge\","
                     "\"publish_timeout_ms\":2000},"
                     "\"apps\":[{\"app_id\":\"a\",\"push_token\":\"%s\"}]}",
                     bridge.port, k % 2 == 0 ? 262144 : 131072, broker.url, token_of(k));
    ck_assert(n > 0 && (size_t)n < cap);
}

/* The bridge's resident set in KiB (/proc/PID/status VmRSS). */
static long rss_kib(const struct th_proc *proc)
{
    char path[64], *text, *at;
    long kib = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)proc->pid);
    text = th_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    at = strstr(text, "VmRSS:");
    if (at != NULL)
        kib = strtol(at + 6, NULL, 10);
    free(text);
    ck_assert_int_gt(kib, 0);
    return kib;
}

/* Which sanitizer the bridge binary was built with: 'a' (ASan), 't' (TSan) or 0. */
static char bridge_sanitizer(void)
{
    size_t len = 0;
    char *bin = th_read_file(th_env("OCB_BRIDGE_BIN"), &len);
    char kind = 0;

    ck_assert_ptr_nonnull(bin);
    if (memmem(bin, len, "__asan_init", 11) != NULL)
        kind = 'a';
    else if (memmem(bin, len, "__tsan_init", 11) != NULL)
        kind = 't';
    free(bin);
    return kind;
}

/* The "N configuration(s) in memory" of the bridge's last reload line, or -1. */
static long configurations_in_memory(const struct th_proc *proc)
{
    char *log = th_read_file(proc->log, NULL), *line = NULL, *at;
    long n = -1;

    ck_assert_ptr_nonnull(log);
    for (at = log; (at = strstr(at, "configuration reloaded from")) != NULL; at++)
        line = at;
    if (line != NULL && (at = strstr(line, " app(s); ")) != NULL)
        n = strtol(at + 9, NULL, 10);
    free(log);
    return n;
}

/* VmRSS with the load paused: no push in flight, so that what is measured is
 * what the bridge keeps, not what a burst of requests holds at that moment. */
static long quiet_rss_kib(const struct th_proc *proc)
{
    long kib;

    atomic_store(&load_pause, true);
    for (long long end = th_now_ms() + LOAD_WAIT_MS; atomic_load(&load_busy) > 0;)
        ck_assert_msg(th_now_ms() < end, "the pushers did not pause");
    th_sleep_ms(300);
    kib = rss_kib(proc);
    atomic_store(&load_pause, false);
    return kib;
}

/* Seq of a published body, or -1. */
static long seq_of(const struct th_msg *m)
{
    const char *at = strstr((const char *)m->payload, "\"seq\":");
    return at != NULL ? strtol(at + 6, NULL, 10) : -1;
}

START_TEST(a_thousand_reloads_under_push_load_keep_memory_flat)
{
    char json[2048], series[] = "ocb_config_reloads_total{outcome=\"ok\"}";
    struct pusher pushers[LOAD_THREADS];
    unsigned char *answered = calloc(LOAD_MAX_SEQ, 1);
    long rss_at = 0, rss_end = 0, pushes = 0, ok = 0, unauthorized = 0, determined = 0;

    ck_assert_ptr_nonnull(answered);
    /* ASan keeps freed memory in a quarantine, to catch uses after free: 256 MiB by
     * default, enough to hide any growth.  A smaller one still catches a request
     * answered under a configuration freed moments ago, and lets VmRSS measure what
     * the bridge itself keeps. */
    const char *asan = getenv("ASAN_OPTIONS");
    char asan_opts[512];
    snprintf(asan_opts, sizeof(asan_opts), "%s%squarantine_size_mb=4", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", asan_opts, 1);

    /* Mosquitto holds at most 1000 QoS 1 messages for a client beyond those in flight and
     * drops the rest: the subscriber below, on a loaded machine, can fall that far behind
     * four pushers (267 of 15,578 missing in one CI run).  What is measured is the bridge,
     * so the broker keeps them all. */
    th_broker_start(&broker, "max_queued_messages 0\n");
    bridge.port = th_free_port();
    load_config(json, sizeof(json), 0);
    th_bridge_start(&bridge, json, false);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, 10000));
    struct th_mqtt *sub = th_mqtt_connect(broker.url, "reload-load-sub", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/a/#", 1));

    atomic_store(&load_sent, 0);
    atomic_store(&load_applied, 0);
    atomic_store(&load_pushes, 0);
    atomic_store(&load_busy, 0);
    atomic_store(&load_pause, false);
    atomic_store(&load_stop, false);
    for (int t = 0; t < LOAD_THREADS; t++) {
        memset(&pushers[t], 0, sizeof(pushers[t]));
        pushers[t].id = t;
        pushers[t].answered_200 = answered;
        ck_assert_int_eq(pthread_create(&pushers[t].thread, NULL, pusher_main, &pushers[t]), 0);
    }

    /* Connections, buffers and the allocator's caches grow with the first pushes: let
     * them, so that what is measured afterwards is what the reloads add. */
    long long warm_end = th_now_ms() + 6LL * LOAD_WAIT_MS * th_time_scale();
    while (atomic_load(&load_pushes) < LOAD_WARM_UP && th_now_ms() < warm_end)
        th_sleep_ms(10);
    ck_assert_int_ge(atomic_load(&load_pushes), LOAD_WARM_UP);

    for (long k = 1; k <= LOAD_RELOADS; k++) {
        load_config(json, sizeof(json), k);
        ck_assert(th_write_file(bridge.config, json, strlen(json)));
        atomic_store(&load_sent, k);
        th_signal(&bridge.proc, SIGHUP);
        long long end = th_now_ms() + LOAD_WAIT_MS * th_time_scale();
        while (th_metric(&bridge, NULL, series) < (double)k) {
            ck_assert_msg(th_now_ms() < end, "reload %ld was not reported", k);
            th_sleep_ms(1);
        }
        atomic_store(&load_applied, k);
        if (k == LOAD_RSS_AT)
            rss_at = quiet_rss_kib(&bridge.proc);
    }
    rss_end = quiet_rss_kib(&bridge.proc);

    atomic_store(&load_stop, true);
    for (int t = 0; t < LOAD_THREADS; t++) {
        pthread_join(pushers[t].thread, NULL);
        ck_assert_msg(pushers[t].other == 0,
                      "pusher %d: %ld answer(s) neither 200 nor 401 (first %ld)", t,
                      pushers[t].other, pushers[t].first_other_status);
        ck_assert_msg(pushers[t].wrong == 0,
                      "pusher %d: %ld answer(s) not those of the configuration in force", t,
                      pushers[t].wrong);
        pushes += pushers[t].pushes;
        ok += pushers[t].ok;
        unauthorized += pushers[t].unauthorized;
        determined += pushers[t].determined;
    }
    fprintf(stderr,
            "reload load: %d reloads, %ld pushes (%ld ok, %ld unauthorized, %ld under a known "
            "configuration); VmRSS %ld KiB after %d reloads, %ld KiB after %d\n",
            LOAD_RELOADS, pushes, ok, unauthorized, determined, rss_at, LOAD_RSS_AT, rss_end,
            LOAD_RELOADS);
    /* The load really ran across the reloads, under both tokens. */
    ck_assert_int_gt(ok, LOAD_RELOADS / 10);
    ck_assert_int_gt(unauthorized, LOAD_RELOADS / 10);
    ck_assert_int_gt(determined, LOAD_RELOADS / 10);
    /* Under TSan, whose shadow memory follows every access, VmRSS says nothing of ours. */
    char sanitizer = bridge_sanitizer();
    long slack = sanitizer == 'a' ? LOAD_RSS_SLACK_ASAN : LOAD_RSS_SLACK;
    if (sanitizer != 't')
        ck_assert_msg(rss_end - rss_at <= slack,
                      "VmRSS grew from %ld to %ld KiB between reload %d and %d (allowed: %ld)",
                      rss_at, rss_end, LOAD_RSS_AT, LOAD_RELOADS, slack);

    /* With nothing in flight, one more reload leaves two configurations: the new one and
     * the start-up one the MQTT link keeps.  Every retired one was freed. */
    th_sleep_ms(300); /* the last requests' completion, after their answers */
    char final_json[2048];
    int n = snprintf(final_json, sizeof(final_json),
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\"},"
                     "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"reload-bridge\","
                     "\"publish_timeout_ms\":2000},"
                     "\"apps\":[{\"app_id\":\"a\"},{\"app_id\":\"final\"}]}",
                     bridge.port, broker.url);
    ck_assert(n > 0 && (size_t)n < sizeof(final_json));
    ck_assert(th_write_file(bridge.config, final_json, (size_t)n));
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(th_log_wait(&bridge.proc, ": 2 app(s); ", LOAD_WAIT_MS));
    ck_assert_int_eq(configurations_in_memory(&bridge.proc), 2);

    /* Every 200 was published, and nothing else was. */
    ck_assert_msg(th_mqtt_wait(sub, (size_t)ok, LOAD_WAIT_MS),
                  "%zu of %ld accepted pushes published", th_mqtt_count(sub), ok);
    th_sleep_ms(200);
    ck_assert_int_eq((long)th_mqtt_count(sub), ok);
    for (size_t i = 0; i < th_mqtt_count(sub); i++) {
        long seq = seq_of(th_mqtt_msg(sub, i));
        ck_assert_msg(seq >= 0 && seq < LOAD_MAX_SEQ && answered[seq] == 1,
                      "published push %ld was not answered 200 (or twice published)", seq);
        answered[seq] = 2;
    }
    ck_assert_int_eq((int)th_metric(&bridge, NULL, "ocb_mqtt_reconnects_total"), 0);
    th_mqtt_free(sub);
    free(answered);
    /* A clean exit: ASan and LeakSanitizer report nothing (an error fails the exit status). */
    stop();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const reload_tests[] = {
        sighup_applies_apps_and_tokens_and_keeps_connections,
        bad_file_keeps_the_running_configuration,
        restart_only_keys_keep_running_values_and_log_level_changes,
        sighup_changes_secrets_without_dropping_the_session, NULL};
    const TTest *const load_tests[] = {a_thousand_reloads_under_push_load_keep_memory_flat, NULL};
    const struct th_case cases[] = {
        {.name = "reload", .timeout_s = 60, .tests = reload_tests},
        {.name = "load", .timeout_s = 600, .tests = load_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "reload", cases);
}
