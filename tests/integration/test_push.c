/*
 * test_push.c: pushes through the real bridge into a real Mosquitto.
 *
 * Each test gets its own broker, bridge and MQTT 5 subscriber (on iot/#).
 * A push must arrive on its exact topic with the exact bytes that were
 * posted, at QoS 1, not retained, with the MQTT 5 properties of the
 * contract; every malformed request gets its 4xx and publishes nothing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_main.h"

#define WAIT_MS (10000 * th_time_scale())

static struct th_broker broker;
static struct th_bridge bridge;
static struct th_mqtt *sub;

/* Start broker + bridge (with extra JSON members in "http") + subscriber. */
static void start_stack(const char *http_extra)
{
    char cfg[2048];

    memset(&broker, 0, sizeof(broker));
    memset(&bridge, 0, sizeof(bridge));
    th_broker_start(&broker, NULL);
    bridge.port = th_free_port();
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"max_body_bytes\":4096%s},"
             "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"ocb-it-push\",\"publish_timeout_ms\":1000,"
             "\"reconnect_min_ms\":50,\"reconnect_max_ms\":200},"
             "\"apps\":[{\"app_id\":\"demoApp\"},{\"app_id\":\"secureApp\",\"push_token\":"
             "\"s3cret-token\"}],"
             "\"log\":{\"level\":\"debug\"}}",
             bridge.port, http_extra, broker.url);
    th_bridge_start(&bridge, cfg, false);
    ck_assert_msg(th_bridge_wait_ready(&bridge, NULL, WAIT_MS), "bridge never became ready");
    sub = th_mqtt_connect(broker.url, "it-subscriber", 5);
    ck_assert_msg(sub != NULL, "subscriber cannot connect");
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 2));
}

static void setup(void)
{
    start_stack("");
}

static void teardown(void)
{
    th_mqtt_free(sub);
    sub = NULL;
    ck_assert_int_eq(th_bridge_stop(&bridge), 0);
    th_broker_stop(&broker);
}

static long post(const char *path, const void *body, size_t len, struct th_http_resp *r)
{
    char url[256];

    snprintf(url, sizeof(url), "%s%s", bridge.base, path);
    ck_assert_msg(th_http("POST", url, body, len, NULL, r), "no HTTP answer for %s (curl %d)", path,
                  r->curl_code);
    return r->status;
}

/* Post and expect the contract's 200 "ok". */
static void post_ok(const char *path, const void *body, size_t len)
{
    struct th_http_resp r;

    ck_assert_int_eq(post(path, body, len, &r), 200);
    ck_assert_str_eq(r.body, "ok");
    th_http_resp_free(&r);
}

static void post_ok_str(const char *path, const char *body)
{
    post_ok(path, body, strlen(body));
}

/* The sample notifications of examples/notifications and where they must land. */
static const struct {
    const char *file;
    const char *topic;
    const char *request_id;
} samples[] = {
    {"deviceAdded", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceAdded", NULL},
    {"bindDevice", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/bindDevice", NULL},
    {"deviceInfoChanged", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceInfoChanged",
     NULL},
    {"deviceDataChanged", "iot/demoApp/c2dc6ecc-495f-48ff-95b1-177855ce5c69/deviceDataChanged",
     NULL},
    {"deviceDatasChanged", "iot/demoApp/b8b92cc7-2622-4f27-a24b-041ab26f0b80/deviceDatasChanged",
     NULL},
    {"deviceCapabilitiesAdded", "iot/demoApp/_/deviceCapabilitiesAdded", NULL},
    {"deviceCapabilitiesChanged", "iot/demoApp/_/deviceCapabilitiesChanged", NULL},
    {"deviceCapabilitiesDeleted", "iot/demoApp/_/deviceCapabilitiesDeleted", NULL},
    {"deviceDeleted", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceDeleted", NULL},
    {"messageConfirm", "iot/demoApp/_/messageConfirm", "1a2b3c"},
    {"commandRsp", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/commandRsp", "1a2b3c"},
    {"deviceEvent", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceEvent", NULL},
    {"serviceInfoChanged", "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/serviceInfoChanged",
     NULL},
    {"ruleEvent", "iot/demoApp/_/ruleEvent", NULL},
    {"deviceDesiredPropertiesModifyStatusChanged",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/"
     "deviceDesiredPropertiesModifyStatusChanged",
     NULL},
    {"swUpgradeStateChangeNotify",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/swUpgradeStateChangeNotify", NULL},
    {"swUpgradeResultNotify",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/swUpgradeResultNotify", NULL},
    {"fwUpgradeStateChangeNotify",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/fwUpgradeStateChangeNotify", NULL},
    {"fwUpgradeResultNotify",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/fwUpgradeResultNotify", NULL},
    {"deviceModelAdded", "iot/demoApp/_/deviceModelAdded", NULL},
    {"deviceModelDeleted", "iot/demoApp/_/deviceModelDeleted", NULL},
    {"commandStatus", "iot/demoApp/ae446a4e-1617-46e7-bb36-bbb4738b4ef3/commandStatus", NULL},
};
#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

static char *read_sample(const char *name, size_t *len)
{
    char path[512];
    char *body;

    snprintf(path, sizeof(path), "%s/examples/notifications/%s.json", th_env("OCB_SOURCE_DIR"),
             name);
    body = th_read_file(path, len);
    ck_assert_msg(body != NULL, "cannot read %s", path);
    return body;
}

START_TEST(every_notification_type_arrives_byte_for_byte)
{
    for (size_t i = 0; i < N_SAMPLES; i++) {
        size_t len;
        char *body = read_sample(samples[i].file, &len);
        const struct th_msg *m;
        const char *nt = strrchr(samples[i].topic, '/') + 1;

        post_ok("/push/demoApp", body, len);
        m = th_mqtt_wait_topic(sub, samples[i].topic, WAIT_MS);
        ck_assert_msg(m != NULL, "nothing arrived on %s", samples[i].topic);
        ck_assert_uint_eq(m->len, len);
        ck_assert_msg(memcmp(m->payload, body, len) == 0, "payload of %s differs", samples[i].file);
        ck_assert_int_eq(m->qos, 1);
        ck_assert(!m->retained);
        ck_assert_str_eq(m->content_type, "application/json");
        ck_assert_int_eq(m->payload_format, 1);
        ck_assert_str_eq(th_msg_user_prop(m, "notifyType"), nt);
        if (samples[i].request_id != NULL)
            ck_assert_str_eq(th_msg_user_prop(m, "requestId"), samples[i].request_id);
        else
            ck_assert_ptr_null(th_msg_user_prop(m, "requestId"));
        ck_assert_uint_eq(strlen(th_msg_user_prop(m, "ocbRequestId")), 16);
        free(body);
    }
    /* One message per push, nothing else. */
    th_sleep_ms(200);
    ck_assert_uint_eq(th_mqtt_count(sub), N_SAMPLES);
}
END_TEST

START_TEST(payload_is_forwarded_as_received)
{
    /* Whitespace, key order, escapes and raw UTF-8 survive untouched. */
    static const char body[] = "  {\n  \"deviceId\" : \"d\\u00e9v-1\",\t\"notifyType\":"
                               "\"deviceDataChanged\", \"service\":{\"data\":{\"t\":\"\xe4\xb8\xad"
                               "\\n\"}, \"x\":1.50e+2}}\r\n";
    const struct th_msg *m;

    post_ok("/push/demoApp", body, sizeof(body) - 1);
    m = th_mqtt_wait_topic(sub, "iot/demoApp/d\xc3\xa9v-1/deviceDataChanged", WAIT_MS);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(m->len, sizeof(body) - 1);
    ck_assert(memcmp(m->payload, body, m->len) == 0);

    /* An unknown, future notifyType is bridged too, and a token-protected app works with its
     * token. */
    post_ok_str("/push/secureApp/s3cret-token", "{\"notifyType\":\"brandNewType\"}");
    m = th_mqtt_wait_topic(sub, "iot/secureApp/_/brandNewType", WAIT_MS);
    ck_assert_ptr_nonnull(m);
}
END_TEST

static void expect_status(const char *method, const char *path, const char *body, long status,
                          const char *reason_fragment)
{
    struct th_http_resp r;
    char url[512];

    snprintf(url, sizeof(url), "%s%s", bridge.base, path);
    ck_assert_msg(th_http(method, url, body, body != NULL ? strlen(body) : 0, NULL, &r),
                  "no answer for %s %s", method, path);
    ck_assert_msg(r.status == status, "%s %s with %s: got %ld (%s), want %ld", method, path,
                  body != NULL ? body : "(no body)", r.status, r.body, status);
    if (reason_fragment != NULL)
        ck_assert_msg(strstr(r.body, reason_fragment) != NULL, "reason '%s' lacks '%s'", r.body,
                      reason_fragment);
    /* one line */
    ck_assert_msg(strchr(r.body, '\n') == NULL || strchr(r.body, '\n') == r.body + r.len - 1,
                  "reason is not one line: %s", r.body);
    th_http_resp_free(&r);
}

START_TEST(malformed_requests_are_refused_and_publish_nothing)
{
    char big[5000];
    struct th_http_resp r;
    char url[256], allow[64];

    expect_status("POST", "/push/demoApp", "not json", 400, "not valid JSON");
    expect_status("POST", "/push/demoApp", "[1,2]", 400, "not a JSON object");
    expect_status("POST", "/push/demoApp", "{\"deviceId\":\"d1\"}", 400, "no notifyType");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"a/b\"}", 400, "notifyType");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"x\",\"deviceId\":\"+\"}", 400,
                  "deviceId");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"x\",\"deviceId\":\"a\\u0000\"}", 400,
                  "deviceId");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"x\",\"deviceId\":\"_\"}", 400,
                  "deviceId");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"command\",\"deviceId\":\"d\"}", 400,
                  "reserved");
    expect_status("POST", "/push/unknownApp", "{\"notifyType\":\"x\"}", 404, "unknown app");
    expect_status("POST", "/push/", "{\"notifyType\":\"x\"}", 404, NULL);
    expect_status("POST", "/push/demoApp/a/b", "{\"notifyType\":\"x\"}", 404, NULL);
    expect_status("GET", "/nothing-here", NULL, 404, NULL);
    expect_status("POST", "/push/secureApp", "{\"notifyType\":\"x\"}", 401, "token required");
    expect_status("POST", "/push/secureApp/wrong", "{\"notifyType\":\"x\"}", 401, "wrong");
    expect_status("POST", "/push/secureApp/s3cret-token-", "{\"notifyType\":\"x\"}", 401, NULL);

    /* 405 carries Allow */
    snprintf(url, sizeof(url), "%s/push/demoApp", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(th_http_header(&r, "Allow", allow, sizeof(allow)), "POST");
    th_http_resp_free(&r);
    ck_assert(th_http("PUT", url, "{}", 2, NULL, &r));
    ck_assert_int_eq(r.status, 405);
    th_http_resp_free(&r);
    snprintf(url, sizeof(url), "%s/healthz", bridge.base);
    ck_assert(th_http("POST", url, "{}", 2, NULL, &r));
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(th_http_header(&r, "Allow", allow, sizeof(allow)), "GET, HEAD");
    th_http_resp_free(&r);

    /* 413: by Content-Length up front, and by the streamed size of a chunked body */
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"notifyType\":\"x\"}", 18);
    snprintf(url, sizeof(url), "%s/push/demoApp", bridge.base);
    ck_assert(th_http("POST", url, big, sizeof(big), NULL, &r));
    ck_assert_int_eq(r.status, 413);
    th_http_resp_free(&r);
    {
        struct th_http_opts o = {.chunked = true};
        ck_assert(th_http("POST", url, big, sizeof(big), &o, &r));
        ck_assert_int_eq(r.status, 413);
        th_http_resp_free(&r);
        /* while a chunked body under the limit is fine */
        ck_assert(th_http("POST", url, big, 4000, &o, &r));
        ck_assert_int_eq(r.status, 200);
        th_http_resp_free(&r);
    }

    /* Only the last, valid push was published. */
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/demoApp/_/x", WAIT_MS));
    th_sleep_ms(200);
    ck_assert_uint_eq(th_mqtt_count(sub), 1);

    /* Rejections are counted by reason. */
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"bad_json\"}") == 3);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"bad_topic\"}") == 5);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"unknown_app\"}") == 1);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"bad_token\"}") == 3);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"too_large\"}") == 2);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"method\"}") == 3);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"not_found\"}") == 3);
}
END_TEST

START_TEST(health_readiness_and_metrics)
{
    struct th_http_resp r;
    char url[256];
    double before;

    snprintf(url, sizeof(url), "%s/healthz", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);
    snprintf(url, sizeof(url), "%s/readyz", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);

    ck_assert(th_metric(&bridge, NULL, "ocb_mqtt_connected") == 1);
    before =
        th_metric(&bridge, NULL, "ocb_pushes_total{notify_type=\"deviceDeleted\",outcome=\"ok\"}");
    ck_assert(before < 1); /* absent (-1) or 0 */
    post_ok_str("/push/demoApp", "{\"notifyType\":\"deviceDeleted\",\"deviceId\":\"d1\"}");
    post_ok_str("/push/demoApp", "{\"notifyType\":\"deviceDeleted\",\"deviceId\":\"d2\"}");
    ck_assert(th_metric(&bridge, NULL,
                        "ocb_pushes_total{notify_type=\"deviceDeleted\",outcome=\"ok\"}") == 2);
    ck_assert(th_metric(&bridge, NULL, "ocb_publish_ack_seconds_count") == 2);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_inflight") == 0);
}
END_TEST

START_TEST(allow_from_refuses_other_addresses)
{
    teardown();
    start_stack(",\"allow_from\":[\"10.0.0.0/8\",\"192.168.0.0/16\"]");
    expect_status("POST", "/push/demoApp", "{\"notifyType\":\"x\"}", 403, "allow_from");
    /* probes and scrapes are not push paths */
    expect_status("GET", "/healthz", NULL, 200, NULL);
    ck_assert(th_metric(&bridge, NULL, "ocb_push_rejections_total{reason=\"not_allowed\"}") == 1);
    teardown();
    start_stack(",\"allow_from\":[\"10.0.0.0/8\",\"127.0.0.0/8\"]");
    post_ok_str("/push/demoApp", "{\"notifyType\":\"x\"}");
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const push_tests[] = {every_notification_type_arrives_byte_for_byte,
                                       payload_is_forwarded_as_received,
                                       malformed_requests_are_refused_and_publish_nothing,
                                       health_readiness_and_metrics,
                                       allow_from_refuses_other_addresses,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "push",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 120,
         .tests = push_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "push", cases);
}
