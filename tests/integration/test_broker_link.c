/*
 * test_broker_link.c: the bridge against brokers that are not Mosquitto 2.0.
 *
 * The scripted broker (th_fakebroker.h) plays what other brokers do and
 * Mosquitto 2.0.11 never does: an MQTT 5 DISCONNECT with a reason code, a
 * SUBACK that refuses a filter, a CONNACK that cuts the session expiry or
 * says shared subscriptions are unavailable, a session that still holds an
 * earlier run's filters, a refusal of MQTT 5 itself, a PUBACK that never
 * comes, a connection cut in the middle of a PUBLISH.  Each test checks what
 * users see: /readyz, /metrics, push answers, the log, and what the bridge
 * said to the broker.  The simulator provides the platform login that the
 * command half (and so the command subscriptions) needs.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_platform.h"
#include "harness.h"
#include "th_fakebroker.h"
#include "th_main.h"

#define CLIENT_ID "ocb-link"
#define F_CMD     "iot/+/+/command"
#define F_CANCEL  "iot/+/+/commandCancel"
#define F_API     "iot/+/+/api" /* app1 allows the read ops by default */

static struct th_fb *fb;

static void setup(void)
{
    memset(&fx_bridge, 0, sizeof(fx_bridge));
    fb = NULL;
    fx_sim_start(NULL);
}

static void teardown(void)
{
    if (fx_bridge.proc.pid > 0)
        ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    th_fb_free(fb);
    th_mqtt_free(fx_client);
    fx_client = NULL;
    if (fx_broker.proc.pid > 0)
        th_broker_stop(&fx_broker);
}

/* Start the bridge on the scripted broker; mqtt_extra: more "mqtt" keys (",\"k\":v"). */
static void start_bridge(int version, const char *mqtt_extra, bool wait_ready)
{
    char cfg[4096];
    int n;

    if (fx_bridge.port == 0) /* a restart keeps the port, and with it the state directory */
        fx_bridge.port = th_free_port();
    n = snprintf(cfg, sizeof(cfg),
                 "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"retry_after_s\":3},"
                 "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"" CLIENT_ID "\",\"version\":%d,"
                 "%s%s},"
                 "\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                 "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\","
                 "\"timeout_ms\":2000},"
                 "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"" SECRET "\"},"
                 "{\"app_id\":\"pushOnly\"}],"
                 /* The link's own answers: no spool in between (test_spool covers it). */
                 "\"spool\":{\"mode\":\"off\"},"
                 "\"log\":{\"level\":\"debug\"}}",
                 fx_bridge.port, th_fb_url(fb), version,
                 mqtt_extra != NULL && strstr(mqtt_extra, "keepalive_s") ? ""
                                                                         : "\"keepalive_s\":30",
                 mqtt_extra ? mqtt_extra : "", fx_api, fx_certs, fx_certs, fx_certs);
    ck_assert(n > 0 && (size_t)n < sizeof(cfg));
    th_bridge_start(&fx_bridge, cfg, false);
    if (wait_ready)
        ck_assert_msg(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS), "bridge not ready");
}

/* GET /readyz: its status; the body into why. */
static long readyz(char *why, size_t cap)
{
    struct th_http_resp r;
    char url[128];
    long status;

    snprintf(url, sizeof(url), "%s/readyz", fx_bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    status = r.status;
    if (why != NULL)
        snprintf(why, cap, "%s", r.body != NULL ? r.body : "");
    th_http_resp_free(&r);
    return status;
}

/* Poll /readyz until it answers want; the last body into why. */
static bool wait_readyz(long want, char *why, size_t cap, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    do {
        if (readyz(why, cap) == want)
            return true;
        th_sleep_ms(20);
    } while (th_now_ms() < end);
    return false;
}

static void push_url(char *url, size_t cap)
{
    snprintf(url, cap, "%s/push/pushOnly", fx_bridge.base);
}

static const char *const BODY = "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-1\"}";

/* ---- every way a connection ends */

/* An MQTT 5 DISCONNECT, whatever its reason, takes the bridge down and back up. */
START_TEST(test_server_disconnect_reconnects)
{
    static const unsigned reasons[] = {0x8E /* session taken over */, 0x98 /* administrative */,
                                       0x8B /* server shutting down */, 0x95 /* too large */};
    char why[512];

    fb = th_fb_start(NULL);
    /* A long first backoff keeps the link visibly down between DISCONNECT and reconnect. */
    start_bridge(5, ",\"reconnect_min_ms\":3000,\"reconnect_max_ms\":3000", true);
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        th_fb_disconnect(fb, reasons[i]);
        ck_assert_msg(wait_readyz(503, why, sizeof(why), WAIT_MS),
                      "readyz stayed green after DISCONNECT 0x%02x", reasons[i]);
        ck_assert_msg(strstr(why, "broker not connected") != NULL, "readyz: %s", why);
        ck_assert(th_wait_metric(&fx_bridge, NULL, "ocb_mqtt_connected", 0, WAIT_MS));
        ck_assert_msg(th_fb_wait_connects(fb, i + 2, WAIT_MS),
                      "no reconnect after DISCONNECT 0x%02x", reasons[i]);
        ck_assert(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS));
        ck_assert_double_eq(th_metric(&fx_bridge, NULL, "ocb_mqtt_connected"), 1);
    }
    ck_assert(th_log_contains(&fx_bridge.proc, "sent DISCONNECT: Session taken over"));
    /* Every DISCONNECT was one ending: one reconnect each, not two. */
    ck_assert(th_wait_metric(&fx_bridge, NULL, "ocb_mqtt_reconnects_total", 4, WAIT_MS));
}
END_TEST

/* A push awaiting its PUBACK is answered 503 when the broker disconnects, not left hanging. */
START_TEST(test_disconnect_fails_inflight_push)
{
    struct th_fb_script s;
    struct th_http_async *a;
    struct th_http_resp r;
    char url[128];

    th_fb_script_init(&s);
    s.hold_pubacks = true;
    fb = th_fb_start(&s);
    /* publish_timeout_ms far beyond the HTTP client's timeout: only the DISCONNECT can answer. */
    start_bridge(5, ",\"publish_timeout_ms\":120000,\"reconnect_min_ms\":1000", true);
    push_url(url, sizeof(url));
    a = th_http_start("POST", url, BODY, strlen(BODY), NULL);
    for (long long end = th_now_ms() + WAIT_MS; th_fb_held_pubacks(fb) == 0;) {
        ck_assert_msg(th_now_ms() < end, "the push never reached the broker");
        th_sleep_ms(10);
    }
    th_fb_disconnect(fb, 0x8E);
    ck_assert(th_http_join(a, &r));
    ck_assert_int_eq(r.status, 503);
    th_http_resp_free(&r);
    ck_assert(th_wait_metric(&fx_bridge, NULL, "ocb_mqtt_inflight", 0, WAIT_MS));
}
END_TEST

/* The first reconnect after a loss waits the backoff it announces. */
START_TEST(test_first_reconnect_honours_backoff)
{
    fb = th_fb_start(NULL);
    start_bridge(5, ",\"reconnect_min_ms\":1200,\"reconnect_max_ms\":1200", true);
    th_fb_drop(fb);
    ck_assert(th_fb_wait_connects(fb, 2, WAIT_MS));
    ck_assert_msg(th_fb_connect_ms(fb, 1) - th_fb_close_ms(fb, 0) >= 1200,
                  "reconnected %lld ms after the loss, before reconnect_min_ms",
                  th_fb_connect_ms(fb, 1) - th_fb_close_ms(fb, 0));
    ck_assert(th_log_contains(&fx_bridge.proc, "; reconnecting in "));
}
END_TEST

/* A broker that goes silent: the keepalive ends the connection, and the bridge comes back. */
START_TEST(test_keepalive_timeout_reconnects)
{
    struct th_fb_script s;
    char why[512];

    fb = th_fb_start(NULL);
    start_bridge(5, "\"keepalive_s\":1,\"reconnect_min_ms\":100", true);
    th_fb_script_init(&s);
    s.mute = true;
    th_fb_set_script(fb, &s);
    ck_assert_msg(wait_readyz(503, why, sizeof(why), WAIT_MS), "readyz green on a silent broker");
    th_fb_script_init(&s);
    th_fb_set_script(fb, &s);
    ck_assert(th_fb_wait_connects(fb, 2, WAIT_MS));
    ck_assert(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS));
}
END_TEST

/* A connection cut in the middle of a PUBLISH to the bridge. */
START_TEST(test_drop_mid_publish_reconnects)
{
    fb = th_fb_start(NULL);
    start_bridge(4, ",\"reconnect_min_ms\":100", true);
    th_fb_drop_mid_publish(fb, "iot/" APP "/dev/command");
    ck_assert(th_fb_wait_connects(fb, 2, WAIT_MS));
    ck_assert(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS));
}
END_TEST

/* ---- SUBACK and CONNACK */

static void check_refused_suback(int version, unsigned code)
{
    struct th_fb_script s;
    char why[512];

    th_fb_script_init(&s);
    s.suback[0] = 1;
    s.suback[1] = (unsigned char)code;
    s.n_suback = 2;
    fb = th_fb_start(&s);
    start_bridge(version, NULL, false);
    ck_assert(th_fb_wait_saw(fb, "SUBSCRIBE " F_CANCEL, WAIT_MS));
    ck_assert(th_wait_metric(&fx_bridge, NULL, "ocb_mqtt_subscriptions_refused_total", 1, WAIT_MS));
    /* Connected, logged in, and still not ready: commands cannot arrive. */
    ck_assert_double_eq(th_metric(&fx_bridge, NULL, "ocb_mqtt_connected"), 1);
    ck_assert_int_eq(readyz(why, sizeof(why)), 503);
    ck_assert_msg(strstr(why, "broker refused subscription " F_CANCEL) != NULL, "readyz: %s", why);
    ck_assert(th_log_contains(&fx_bridge.proc, "broker refused the subscription to " F_CANCEL));
    ck_assert(!th_log_contains(&fx_bridge.proc, "subscribed 2 filter(s)"));
    /* A later connection whose SUBACK grants everything turns it green. */
    th_fb_script_init(&s);
    th_fb_set_script(fb, &s);
    th_fb_drop(fb);
    ck_assert(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS));
}

START_TEST(test_refused_suback_v5)
{
    check_refused_suback(5, 0x87 /* not authorized */);
}
END_TEST

START_TEST(test_refused_suback_v4)
{
    check_refused_suback(4, 0x80);
}
END_TEST

START_TEST(test_connack_properties_logged_once)
{
    struct th_fb_script s;

    th_fb_script_init(&s);
    s.session_expiry = 300;
    s.shared_sub_avail = 0;
    s.retain_avail = 0;
    fb = th_fb_start(&s);
    start_bridge(5, ",\"shared_group\":\"g\",\"reconnect_min_ms\":100", false);
    ck_assert(th_fb_wait_saw(fb, "SUBSCRIBE $share/g/" F_CMD, WAIT_MS));
    th_fb_drop(fb);
    ck_assert(th_fb_wait_connects(fb, 2, WAIT_MS));
    ck_assert(th_log_wait(&fx_bridge.proc, "connected to", WAIT_MS));
    ck_assert(th_fb_wait_saw(fb, "CLOSED", WAIT_MS));
    for (long long end = th_now_ms() + WAIT_MS; th_fb_count(fb, "SUBSCRIBE $share/g/" F_CMD) < 2;) {
        ck_assert(th_now_ms() < end);
        th_sleep_ms(20);
    }
    ck_assert(th_log_contains(&fx_bridge.proc, "cut the session expiry from 86400 s"));
    ck_assert(th_log_contains(&fx_bridge.proc, "to 300 s"));
    ck_assert(th_log_contains(&fx_bridge.proc, "does not offer shared subscriptions"));
    ck_assert(th_log_contains(&fx_bridge.proc, "does not offer retained messages"));
    {
        size_t len = 0, n = 0;
        char *log = th_read_file(fx_bridge.proc.log, &len);
        for (const char *p = log; (p = strstr(p, "cut the session expiry")) != NULL; p++)
            n++;
        free(log);
        ck_assert_uint_eq(n, 1);
    }
}
END_TEST

START_TEST(test_refused_v5_hints_version_4)
{
    struct th_fb_script s;

    th_fb_script_init(&s);
    s.refuse_v5 = true;
    fb = th_fb_start(&s);
    start_bridge(5, ",\"reconnect_min_ms\":50,\"reconnect_max_ms\":100", false);
    ck_assert(th_fb_wait_connects(fb, 3, WAIT_MS));
    ck_assert_msg(th_log_wait(&fx_bridge.proc, "set mqtt.version 4", WAIT_MS),
                  "no hint to use MQTT 3.1.1");
}
END_TEST

START_TEST(test_shared_group_v4_warns)
{
    fb = th_fb_start(NULL);
    start_bridge(4, ",\"shared_group\":\"g\"", false);
    ck_assert(th_log_wait(&fx_bridge.proc, "mqtt.shared_group \"g\" with mqtt.version 4", WAIT_MS));
}
END_TEST

/* ---- a resumed session holds only the wanted filters */

START_TEST(test_resumed_session_drops_plain_filters)
{
    static const char *const old[] = {F_CMD, F_CANCEL, F_API};
    char set[512];

    fb = th_fb_start(NULL);
    /* An earlier run without a shared group left its plain filters in the session. */
    th_fb_seed_session(fb, CLIENT_ID, old, 3);
    start_bridge(5, ",\"shared_group\":\"g\"", true);
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE " F_CMD));
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE " F_CANCEL));
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE " F_API));
    th_fb_session(fb, CLIENT_ID, set, sizeof(set));
    ck_assert_str_eq(set, "$share/g/" F_API "\n$share/g/" F_CMD "\n$share/g/" F_CANCEL);
}
END_TEST

/* A run under another topic_prefix: the state store remembers what the last run was
 * granted, so the old prefix's filters are taken back and its commands no longer arrive. */
START_TEST(test_changed_prefix_drops_the_old_filters)
{
    char set[512];

    fb = th_fb_start(NULL);
    start_bridge(5, ",\"topic_prefix\":\"old\"", true);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    start_bridge(5, NULL, true);
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE old/+/+/command"));
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE old/+/+/commandCancel"));
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE old/+/+/api"));
    th_fb_session(fb, CLIENT_ID, set, sizeof(set));
    ck_assert_str_eq(set, F_API "\n" F_CMD "\n" F_CANCEL);
}
END_TEST

/* Mosquitto, end to end: the restart that adds mqtt.shared_group (the natural way to add a
 * second bridge) finds the plain filter still in the persistent session.  The bridge drops
 * it, so one MQTT command creates one platform command, not two. */
START_TEST(test_adding_shared_group_creates_each_command_once)
{
    char topic[256];
    cJSON *cmds;

    th_broker_start(&fx_broker, NULL);
    fx_load_devices();
    fx_client = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/+/+/commandResponse", 1));
    fx_bridge_start(&fx_bridge, "ocb-regroup", NULL, NULL, true);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    fx_bridge_start(&fx_bridge, "ocb-regroup", ",\"shared_group\":\"g\"", NULL, true);
    ck_assert(th_log_contains(&fx_bridge.proc, "session resumed"));
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_publish(topic, "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},"
                      "\"correlationId\":\"once\"}");
    fx_topic(topic, sizeof(topic), APP, 0, "commandResponse");
    ck_assert(th_mqtt_wait_topic(fx_client, topic, WAIT_MS) != NULL);
    /* A second copy would be on its way by now: the first answer took a platform round trip. */
    th_sleep_ms(1000);
    cmds = fx_sim_call("GET", "/commands", NULL);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 1);
    cJSON_Delete(cmds);
    ck_assert_uint_eq(fx_count_on(topic), 1);
}
END_TEST

/* ---- commands */

/* An empty payload on a command topic is a clear on MQTT 3.1.1 too, retain flag or not. */
START_TEST(test_empty_payload_is_a_clear_v4)
{
    char topic[128];

    fb = th_fb_start(NULL);
    start_bridge(4, NULL, true);
    fx_load_devices();
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/command", fx_devices[0]);
    th_fb_publish(fb, topic, "", 0, false);
    ck_assert(th_wait_metric(&fx_bridge, NULL, "ocb_commands_total{outcome=\"retained_cleared\"}",
                             1, WAIT_MS));
    ck_assert(!th_log_contains(&fx_bridge.proc, "INVALID_PAYLOAD"));
    {
        char *ev = th_fb_events(fb);
        ck_assert_msg(strstr(ev, "/commandResponse") == NULL, "answered a clear:\n%s", ev);
        free(ev);
    }
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const link_tests[] = {test_server_disconnect_reconnects,
                                       test_disconnect_fails_inflight_push,
                                       test_first_reconnect_honours_backoff,
                                       test_keepalive_timeout_reconnects,
                                       test_drop_mid_publish_reconnects,
                                       test_refused_suback_v5,
                                       test_refused_suback_v4,
                                       test_connack_properties_logged_once,
                                       test_refused_v5_hints_version_4,
                                       test_shared_group_v4_warns,
                                       test_resumed_session_drops_plain_filters,
                                       test_changed_prefix_drops_the_old_filters,
                                       test_adding_shared_group_creates_each_command_once,
                                       test_empty_payload_is_a_clear_v4,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "link",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 120,
         .tests = link_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "broker_link", cases);
}
