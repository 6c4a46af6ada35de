/*
 * test_push_failures.c: what the platform sees when the broker is not there
 * and the spool is off (spool.mode off; test_spool.c covers the spooling modes).
 *
 * The platform re-pushes on 503 (and on no answer in 15 s), so every broker
 * failure must turn into a prompt 503 with Retry-After -- never a hang, never
 * a 200 for a message the broker did not take -- and the bridge must recover
 * by itself.  SIGSTOP on Mosquitto makes a broker that keeps its sockets open
 * but acknowledges nothing.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_main.h"

#define WAIT_MS    (10000 * th_time_scale())
#define TIMEOUT_MS 800 /* mqtt.publish_timeout_ms in these tests */

static struct th_broker broker;
static struct th_bridge bridge;

static const char *const BODY = "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-1\"}";

/* timeout_ms: mqtt.publish_timeout_ms, TIMEOUT_MS unless a test measures something else. */
static void start_bridge(unsigned max_inflight, int version, int timeout_ms)
{
    char cfg[2048];

    bridge.port = th_free_port();
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"retry_after_s\":7},"
             "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"ocb-it-fail\",\"version\":%d,"
             "\"publish_timeout_ms\":%d,\"max_inflight\":%u,"
             "\"reconnect_min_ms\":50,\"reconnect_max_ms\":300,\"keepalive_s\":60},"
             "\"spool\":{\"mode\":\"off\"},"
             "\"apps\":[{\"app_id\":\"demoApp\"}],\"log\":{\"level\":\"debug\"}}",
             bridge.port, broker.url, version, timeout_ms, max_inflight);
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

static void push_url(char *url, size_t cap)
{
    snprintf(url, cap, "%s/push/demoApp", bridge.base);
}

/* POST BODY; returns the status, checks Retry-After on 503. */
static long push(const char *expect_reason)
{
    struct th_http_resp r;
    char url[128], retry[16];
    long status;

    push_url(url, sizeof(url));
    ck_assert_msg(th_http("POST", url, BODY, strlen(BODY), NULL, &r), "no answer (curl %d)",
                  r.curl_code);
    status = r.status;
    if (status == 503) {
        ck_assert_ptr_nonnull(th_http_header(&r, "Retry-After", retry, sizeof(retry)));
        ck_assert_str_eq(retry, "7");
    }
    if (expect_reason != NULL)
        ck_assert_msg(strstr(r.body, expect_reason) != NULL, "answer '%s' lacks '%s'", r.body,
                      expect_reason);
    th_http_resp_free(&r);
    return status;
}

static long readyz(void)
{
    struct th_http_resp r;
    char url[128];
    long status;

    snprintf(url, sizeof(url), "%s/readyz", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    status = r.status;
    th_http_resp_free(&r);
    return status;
}

/* Poll until pushes succeed again (the link reconnects in the background). */
static bool wait_push_ok(int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    do {
        if (push(NULL) == 200)
            return true;
        th_sleep_ms(100);
    } while (th_now_ms() < end);
    return false;
}

START_TEST(broker_down_then_restarted)
{
    enum { LONG_TIMEOUT_MS = 5000 };
    struct th_mqtt *sub;
    long long t0;

    /* A long publish timeout, so "answered at once" is told from "answered at the timeout" even on
     * a loaded machine. */
    start_bridge(64, 5, LONG_TIMEOUT_MS);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    ck_assert_int_eq(push(NULL), 200);

    th_broker_stop(&broker);
    /* readiness follows the broker */
    for (long long end = th_now_ms() + WAIT_MS; readyz() != 503 && th_now_ms() < end;)
        th_sleep_ms(50);
    ck_assert_int_eq(readyz(), 503);
    t0 = th_now_ms();
    ck_assert_int_eq(push("broker not connected"), 503);
    /* answered at once, well inside the publish timeout */
    ck_assert_msg(th_now_ms() - t0 < LONG_TIMEOUT_MS, "503 took %lld ms", th_now_ms() - t0);
    ck_assert(th_metric(&bridge, NULL, "ocb_mqtt_connected") == 0);
    ck_assert(th_metric(&bridge, NULL,
                        "ocb_pushes_total{notify_type=\"deviceDataChanged\",outcome=\""
                        "unavailable\"}") == 1);

    /* Same port, new broker process: the bridge reconnects by itself. */
    th_broker_restart(&broker);
    sub = th_mqtt_connect(broker.url, "it-sub-restart", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));
    ck_assert_msg(wait_push_ok(WAIT_MS), "pushes never succeeded after the broker came back");
    ck_assert_int_eq(readyz(), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/demoApp/dev-1/deviceDataChanged", WAIT_MS));
    ck_assert(th_metric(&bridge, NULL, "ocb_mqtt_reconnects_total") >= 1);
    ck_assert(th_metric(&bridge, NULL, "ocb_mqtt_connected") == 1);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(broker_down_at_start)
{
    /* The bridge starts (and answers) without a broker, and connects when one appears. */
    th_broker_stop(&broker);
    start_bridge(64, 5, TIMEOUT_MS);
    ck_assert_int_eq(readyz(), 503);
    ck_assert_int_eq(push("broker not connected"), 503);
    th_broker_restart(&broker);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    ck_assert_int_eq(push(NULL), 200);
}
END_TEST

START_TEST(ack_timeout_is_503_and_the_late_ack_is_harmless)
{
    struct th_mqtt *sub = th_mqtt_connect(broker.url, "it-sub-timeout", 5);
    long long t0, took;

    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));
    start_bridge(64, 5, TIMEOUT_MS);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));

    th_broker_pause(&broker);
    t0 = th_now_ms();
    ck_assert_int_eq(push("did not acknowledge"), 503);
    took = th_now_ms() - t0;
    ck_assert_msg(took >= TIMEOUT_MS - 50, "503 after %lld ms, before the timeout", took);
    ck_assert_msg(took < TIMEOUT_MS + 3000, "503 only after %lld ms", took);
    ck_assert(
        th_metric(&bridge, NULL,
                  "ocb_pushes_total{notify_type=\"deviceDataChanged\",outcome=\"timeout\"}") == 1);
    th_broker_resume(&broker);

    /* The late ack finds a finished request: nothing breaks, the next push is fine, and the
     * message itself did reach the broker (at least once is the contract). */
    ck_assert(wait_push_ok(WAIT_MS));
    ck_assert(th_mqtt_wait(sub, 2, WAIT_MS));
    ck_assert(th_metric(&bridge, NULL, "ocb_push_inflight") == 0);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(max_inflight_reached_is_503)
{
    struct th_http_async *a;
    struct th_http_resp r;
    char url[128];

    start_bridge(1, 5, TIMEOUT_MS);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_pause(&broker);
    push_url(url, sizeof(url));
    a = th_http_start("POST", url, BODY, strlen(BODY), NULL);
    ck_assert_msg(th_wait_metric(&bridge, NULL, "ocb_mqtt_inflight", 1, WAIT_MS),
                  "first push never in flight");
    /* The window (1) is full: the second push is refused at once. */
    ck_assert_int_eq(push("too many publishes"), 503);
    ck_assert(th_http_join(a, &r));
    ck_assert_int_eq(r.status, 503); /* the first one timed out */
    th_http_resp_free(&r);
    th_broker_resume(&broker);
    ck_assert(wait_push_ok(WAIT_MS));
}
END_TEST

START_TEST(sigterm_answers_every_request_in_flight)
{
    enum { N = 6 };
    struct th_http_async *a[N];
    struct th_mqtt *sub = th_mqtt_connect(broker.url, "it-sub-term", 5);
    char url[128];
    int ok = 0;

    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));
    /* The test is about the drain, not the publish timeout: give the pushes time to all be in
     * flight and the broker time to come back on a loaded machine. */
    start_bridge(64, 5, 10000);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_pause(&broker);
    push_url(url, sizeof(url));
    for (int i = 0; i < N; i++)
        a[i] = th_http_start("POST", url, BODY, strlen(BODY), NULL);
    ck_assert_msg(th_wait_metric(&bridge, NULL, "ocb_push_inflight", N, WAIT_MS),
                  "pushes never all in flight");

    /* Stop the bridge while all of them wait for acks, then let the acks come. */
    th_signal(&bridge.proc, SIGTERM);
    th_sleep_ms(100);
    th_broker_resume(&broker);
    for (int i = 0; i < N; i++) {
        struct th_http_resp r;
        ck_assert_msg(th_http_join(a[i], &r), "request %d got no answer (curl %d)", i, r.curl_code);
        ck_assert_msg(r.status == 200 || r.status == 503, "request %d: %ld", i, r.status);
        ok += r.status == 200;
        th_http_resp_free(&r);
    }
    /* The acks came within the drain: every request got its 200. */
    ck_assert_int_eq(ok, N);
    ck_assert_int_eq(th_wait_exit(&bridge.proc, WAIT_MS), 0);
    ck_assert(th_mqtt_wait(sub, N, WAIT_MS));
    ck_assert(th_log_contains(&bridge.proc, "SIGTERM received"));
    th_mqtt_free(sub);
}
END_TEST

START_TEST(sigterm_with_a_dead_broker_still_answers_and_exits)
{
    struct th_http_async *a;
    struct th_http_resp r;
    char url[128];

    start_bridge(64, 5, TIMEOUT_MS);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    th_broker_pause(&broker);
    push_url(url, sizeof(url));
    a = th_http_start("POST", url, BODY, strlen(BODY), NULL);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_push_inflight", 1, WAIT_MS));
    th_signal(&bridge.proc, SIGTERM);
    ck_assert(th_http_join(a, &r));
    ck_assert_int_eq(r.status, 503);
    th_http_resp_free(&r);
    ck_assert_int_eq(th_wait_exit(&bridge.proc, WAIT_MS), 0);
    th_broker_resume(&broker);
}
END_TEST

START_TEST(mqtt_311_publishes_without_properties)
{
    struct th_mqtt *sub = th_mqtt_connect(broker.url, "it-sub-311", 5);
    const struct th_msg *m;

    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 2));
    start_bridge(64, 4, TIMEOUT_MS);
    ck_assert(th_bridge_wait_ready(&bridge, NULL, WAIT_MS));
    ck_assert_int_eq(push(NULL), 200);
    m = th_mqtt_wait_topic(sub, "iot/demoApp/dev-1/deviceDataChanged", WAIT_MS);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->qos, 1);
    ck_assert_uint_eq(m->len, strlen(BODY));
    ck_assert(memcmp(m->payload, BODY, m->len) == 0);
    ck_assert_ptr_null(m->content_type);
    ck_assert_uint_eq(m->n_user, 0);
    th_mqtt_free(sub);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const failures_tests[] = {broker_down_then_restarted,
                                           broker_down_at_start,
                                           ack_timeout_is_503_and_the_late_ack_is_harmless,
                                           max_inflight_reached_is_503,
                                           sigterm_answers_every_request_in_flight,
                                           sigterm_with_a_dead_broker_still_answers_and_exits,
                                           mqtt_311_publishes_without_properties,
                                           NULL};
    const struct th_case cases[] = {
        {.name = "failures",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 120,
         .tests = failures_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "push_failures", cases);
}
