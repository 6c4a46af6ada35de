/*
 * test_spool.c: the push spool end to end (real Mosquitto, the real bridge).
 *
 * spool.mode outage: with the broker gone, pushes are answered 200 once
 * durable and reach MQTT after it returns -- once, in order, byte for byte;
 * a broker that stops acknowledging (SIGSTOP) gets its late PUBACKs matched
 * to spooled rows so nothing goes out twice; kill -9 after the 200s loses
 * nothing.  spool.mode always round-trips through the spool; off still
 * answers 503.  A full spool answers 503 + Retry-After and drops nothing it
 * accepted; a corrupt database is quarantined at start; /readyz says the
 * bridge is spooling; `ocbridge state` shows what is held;
 * push.dedup_window_s suppresses a re-push.
 *
 * To have a subscriber in place before the bridge reconnects (Mosquitto here
 * keeps no sessions), the bridge is frozen (SIGSTOP) while the broker comes
 * back and the subscriber connects, then thawed.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "th_main.h"

#define WAIT_MS    (15000 * th_time_scale())
#define TIMEOUT_MS 600 /* mqtt.publish_timeout_ms */
#define TOPIC      "iot/demoApp/dev-1/deviceDataChanged"

static struct th_broker broker;
static struct th_bridge bridge;

static void start_bridge(const char *mode, const char *extra)
{
    char cfg[2048];

    if (bridge.port == 0)
        bridge.port = th_free_port();
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"retry_after_s\":7},"
             "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"ocb-it-spool\","
             "\"publish_timeout_ms\":%d,\"reconnect_min_ms\":50,\"reconnect_max_ms\":300,"
             "\"keepalive_s\":60},"
             "\"spool\":{\"mode\":\"%s\"%s},"
             "\"apps\":[{\"app_id\":\"demoApp\"}],\"log\":{\"level\":\"debug\"}%s}",
             bridge.port, broker.url, TIMEOUT_MS, mode,
             extra != NULL && strstr(extra, "max_bytes") != NULL ? extra : "",
             extra != NULL && strstr(extra, "max_bytes") == NULL ? extra : "");
    th_bridge_start(&bridge, cfg, false);
}

static void setup(void)
{
    memset(&broker, 0, sizeof(broker));
    memset(&bridge, 0, sizeof(bridge));
    th_broker_start(&broker, NULL);
}

static void teardown(void)
{
    if (bridge.proc.pid > 0)
        ck_assert_int_eq(th_bridge_stop(&bridge), 0);
    th_broker_stop(&broker);
}

static void body_of(char *out, size_t cap, int i)
{
    /* Odd spacing and key order: it must arrive exactly like this. */
    snprintf(out, cap, "{\"notifyType\":\"deviceDataChanged\", \"deviceId\":\"dev-1\",\"seq\":%d}",
             i);
}

/* POST body; returns the status; on 503 the answer has Retry-After 7 and says why. */
static long push_body(const char *body, char *reason, size_t cap)
{
    struct th_http_resp r;
    char url[128], retry[16];
    long status;

    snprintf(url, sizeof(url), "%s/push/demoApp", bridge.base);
    ck_assert_msg(th_http("POST", url, body, strlen(body), NULL, &r), "no answer (curl %d)",
                  r.curl_code);
    status = r.status;
    if (status == 503) {
        ck_assert_ptr_nonnull(th_http_header(&r, "Retry-After", retry, sizeof(retry)));
        ck_assert_str_eq(retry, "7");
    }
    if (reason != NULL)
        snprintf(reason, cap, "%s", r.body);
    th_http_resp_free(&r);
    return status;
}

static long push(int i)
{
    char body[256];

    body_of(body, sizeof(body), i);
    return push_body(body, NULL, 0);
}

static long readyz(char *body, size_t cap)
{
    struct th_http_resp r;
    char url[128];
    long status;

    snprintf(url, sizeof(url), "%s/readyz", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    status = r.status;
    if (body != NULL)
        snprintf(body, cap, "%s", r.body);
    th_http_resp_free(&r);
    return status;
}

static struct th_mqtt *subscriber(void)
{
    struct th_mqtt *sub = th_mqtt_connect(broker.url, "ocb-it-spool-sub", 5);

    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));
    return sub;
}

/* Wait for the bridge's link to drop after the broker stopped. */
static void wait_link_down(void)
{
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_mqtt_connected", 0, WAIT_MS));
}

/* Bring the broker back with a subscriber in place before the bridge sees it. */
static struct th_mqtt *broker_back_with_subscriber(void)
{
    struct th_mqtt *sub;

    th_signal(&bridge.proc, SIGSTOP);
    th_broker_restart(&broker);
    sub = subscriber();
    th_signal(&bridge.proc, SIGCONT);
    return sub;
}

/* Exactly messages first..first+n-1, in order, byte for byte, and nothing more. */
static void expect_delivered(struct th_mqtt *sub, int first, int n)
{
    char body[256];

    ck_assert_msg(th_mqtt_wait(sub, (size_t)n, WAIT_MS), "got %zu of %d", th_mqtt_count(sub), n);
    th_sleep_ms(800); /* anything extra (a duplicate) would arrive by now */
    ck_assert_uint_eq(th_mqtt_count(sub), (size_t)n);
    for (int i = 0; i < n; i++) {
        const struct th_msg *m = th_mqtt_msg(sub, (size_t)i);

        body_of(body, sizeof(body), first + i);
        ck_assert_str_eq(m->topic, TOPIC);
        ck_assert_uint_eq(m->len, strlen(body));
        ck_assert_msg(memcmp(m->payload, body, m->len) == 0, "message %d: %s", i, m->payload);
        ck_assert_int_eq(m->qos, 1);
        ck_assert_str_eq(th_msg_user_prop(m, "notifyType"), "deviceDataChanged");
        ck_assert_ptr_nonnull(th_msg_user_prop(m, "ocbRequestId"));
        ck_assert_str_eq(m->content_type, "application/json");
        ck_assert_int_eq(m->payload_format, 1);
    }
}

START_TEST(outage_spools_and_delivers_once_in_order)
{
    struct th_mqtt *sub;
    char why[256];

    start_bridge("outage", NULL);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_stop(&broker);
    wait_link_down();
    /* The platform's URL stays healthy while the spool takes pushes. */
    ck_assert_int_eq(readyz(why, sizeof(why)), 200);
    ck_assert_msg(strstr(why, "spooling") != NULL, "readyz: %s", why);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(push(i), 200);
    ck_assert_int_eq(readyz(why, sizeof(why)), 200);
    ck_assert_msg(strstr(why, "ready (spooling: 20 messages)") != NULL, "readyz: %s", why);
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_messages") == 20);
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_written_total") == 20);

    sub = broker_back_with_subscriber();
    expect_delivered(sub, 0, 20);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_spool_messages", 0, WAIT_MS));
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_drained_total") == 20);
    /* Drained: pushes go straight to the broker again, after the spooled ones. */
    th_mqtt_clear(sub);
    ck_assert_int_eq(push(20), 200);
    expect_delivered(sub, 20, 1);
    ck_assert_int_eq(readyz(why, sizeof(why)), 200);
    ck_assert_str_eq(why, "ready\n");
    th_mqtt_free(sub);
}
END_TEST

START_TEST(late_pubacks_are_not_published_twice)
{
    struct th_mqtt *sub;

    start_bridge("outage", NULL);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    sub = subscriber();
    /* A broker that keeps its sockets but acknowledges nothing: each push
     * passes its ack deadline and is spooled while its publish is pending. */
    th_broker_pause(&broker);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(push(i), 200);
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_written_total") == 5);
    th_broker_resume(&broker);
    expect_delivered(sub, 0, 5);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_spool_messages", 0, WAIT_MS));
    th_mqtt_free(sub);
}
END_TEST

START_TEST(always_mode_round_trip)
{
    struct th_mqtt *sub;

    start_bridge("always", NULL);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    sub = subscriber();
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(push(i), 200);
    expect_delivered(sub, 0, 10);
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_written_total") == 10);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_spool_drained_total", 10, WAIT_MS));
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_spool_messages", 0, WAIT_MS));
    ck_assert(th_metric(&bridge, NULL,
                        "ocb_pushes_total{notify_type=\"deviceDataChanged\","
                        "outcome=\"spooled\"}") == 10);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(off_mode_still_answers_503)
{
    char why[256];

    start_bridge("off", NULL);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_stop(&broker);
    wait_link_down();
    ck_assert_int_eq(readyz(why, sizeof(why)), 503);
    ck_assert_int_eq(push_body("{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-1\"}", why,
                               sizeof(why)),
                     503);
    ck_assert(th_metric(&bridge, NULL, "ocb_spool_written_total") == 0);
    th_broker_restart(&broker);
}
END_TEST

START_TEST(full_spool_answers_503_and_loses_nothing)
{
    struct th_mqtt *sub;
    char why[256];
    int accepted = 0;

    /* Each push is ~100 bytes of body and topic; 4096 bytes hold about 40. */
    start_bridge("outage", ",\"max_bytes\":4096");
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_stop(&broker);
    wait_link_down();
    for (int i = 0; i < 100; i++) {
        char body[256];
        long st;

        body_of(body, sizeof(body), i);
        st = push_body(body, why, sizeof(why));
        if (st == 503) {
            ck_assert_msg(strstr(why, "spool full") != NULL, "503: %s", why);
            break;
        }
        ck_assert_int_eq(st, 200);
        accepted++;
    }
    ck_assert_int_gt(accepted, 10);
    ck_assert_int_lt(accepted, 100);
    /* Nothing accepted is dropped for a newcomer: the next ones are refused too. */
    ck_assert_int_eq(push(1000), 503);
    ck_assert_int_eq(readyz(why, sizeof(why)), 503);
    ck_assert_msg(strstr(why, "spool full") != NULL, "readyz: %s", why);
    sub = broker_back_with_subscriber();
    expect_delivered(sub, 0, accepted);
    th_mqtt_free(sub);
}
END_TEST

static int run_state_cli(char **out)
{
    char *argv[] = {(char *)th_env("OCB_BRIDGE_BIN"), "state", "-c", bridge.config, NULL};
    struct th_proc p;
    char dir[TH_PATH_MAX], name[32], env[TH_PATH_MAX + 16];
    int st;

    /* The same state.dir the harness gave the bridge. */
    snprintf(name, sizeof(name), "state-%d", bridge.port);
    th_path(dir, sizeof(dir), name);
    snprintf(env, sizeof(env), "%s", dir);
    setenv("OCB_STATE_DIR", env, 1);
    memset(&p, 0, sizeof(p));
    th_spawn(&p, "state-cli", argv);
    unsetenv("OCB_STATE_DIR");
    st = th_wait_exit(&p, 15000);
    *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(*out);
    return st;
}

START_TEST(kill_9_after_200_loses_nothing)
{
    struct th_mqtt *sub;
    char *out;

    start_bridge("outage", NULL);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_stop(&broker);
    wait_link_down();
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(push(i), 200);
    th_stop(&bridge.proc, SIGKILL, 5000);

    /* What the store holds, read while nothing runs ... */
    ck_assert_int_eq(run_state_cli(&out), 0);
    ck_assert_msg(strstr(out, "spool: 10 message(s)") != NULL, "state: %s", out);
    ck_assert_msg(strstr(out, "app demoApp: 10 message(s)") != NULL, "state: %s", out);
    free(out);

    th_broker_restart(&broker);
    sub = subscriber();
    start_bridge("outage", NULL); /* same port: same state.dir */
    expect_delivered(sub, 0, 10);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_spool_messages", 0, WAIT_MS));
    /* ... and while it runs (read-only, WAL). */
    ck_assert_int_eq(run_state_cli(&out), 0);
    ck_assert_msg(strstr(out, "spool: 0 message(s)") != NULL, "state: %s", out);
    free(out);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(corrupt_database_is_quarantined_at_start)
{
    struct th_mqtt *sub;
    char dir[TH_PATH_MAX], path[TH_PATH_MAX + 32], name[32];
    static const char junk[] = "this is not an SQLite database, it only has its name";

    bridge.port = th_free_port();
    snprintf(name, sizeof(name), "state-%d", bridge.port);
    th_path(dir, sizeof(dir), name);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/ocbridge.db", dir);
    ck_assert(th_write_file(path, junk, sizeof(junk)));
    start_bridge("outage", NULL);
    ck_assert(th_log_wait(&bridge.proc, "moved aside to", WAIT_MS));
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    ck_assert(th_metric(&bridge, NULL, "ocb_state_quarantined_total") == 1);
    sub = subscriber();
    th_broker_stop(&broker);
    th_mqtt_free(sub);
    wait_link_down();
    ck_assert_int_eq(push(0), 200);
    sub = broker_back_with_subscriber();
    expect_delivered(sub, 0, 1);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(dedup_window_suppresses_a_repush)
{
    struct th_mqtt *sub;
    char body[256];

    start_bridge("outage", ",\"push\":{\"dedup_window_s\":60}");
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    sub = subscriber();
    ck_assert_int_eq(push(0), 200);
    ck_assert_int_eq(push(0), 200); /* the platform missed our 200 and re-pushes */
    ck_assert_int_eq(push(1), 200);
    body_of(body, sizeof(body), 0);
    ck_assert(th_mqtt_wait(sub, 2, WAIT_MS));
    th_sleep_ms(500);
    ck_assert_uint_eq(th_mqtt_count(sub), 2);
    ck_assert(memcmp(th_mqtt_msg(sub, 0)->payload, body, strlen(body)) == 0);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_duplicates_total{app=\"demoApp\"}") == 1);
    th_mqtt_free(sub);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const spool_tests[] = {outage_spools_and_delivers_once_in_order,
                                        late_pubacks_are_not_published_twice,
                                        always_mode_round_trip,
                                        off_mode_still_answers_503,
                                        full_spool_answers_503_and_loses_nothing,
                                        kill_9_after_200_loses_nothing,
                                        corrupt_database_is_quarantined_at_start,
                                        dedup_window_suppresses_a_repush,
                                        NULL};
    const struct th_case cases[] = {
        {.name = "spool",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 120,
         .tests = spool_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "spool", cases);
}
