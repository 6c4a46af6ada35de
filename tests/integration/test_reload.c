/*
 * test_reload.c: SIGHUP reloads the configuration without dropping the MQTT
 * session or open HTTP connections (issue 5): new apps and push tokens take
 * effect, a bad file keeps the running configuration with an error logged,
 * and keys bound at start-up keep their running value with a warning.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_fixture.h"
#include "harness.h"

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
    ck_assert(th_log_wait(&bridge.proc, "configuration reloaded", 5000));
    ck_assert_int_eq(push(&bridge, "/push/b/tok"), 200);
    ck_assert_int_eq(push(&bridge, "/push/b"), 401);
    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/b/dev-1/deviceDataChanged", 5000));
    /* The MQTT session was not touched: one connection, no reconnect. */
    ck_assert(!th_log_contains(&bridge.proc, "connection lost"));
    ck_assert_int_eq((int)th_metric(&bridge, NULL, "ocb_mqtt_reconnects_total"), 0);
    ck_assert_int_eq((int)th_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"ok\"}"), 1);

    /* Removing an app takes effect too. */
    write_config("[{\"app_id\":\"b\",\"push_token\":\"tok\"}]", NULL, "");
    th_signal(&bridge.proc, SIGHUP);
    ck_assert(th_wait_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"ok\"}", 2, 5000));
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
    ck_assert(th_log_wait(&bridge.proc,
                          "apps[0].secrt: unknown key; keeping the running configuration", 5000));
    ck_assert(
        th_wait_metric(&bridge, NULL, "ocb_config_reloads_total{outcome=\"invalid\"}", 1, 5000));
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
    ck_assert(
        th_log_wait(&bridge.proc, "mqtt.url changed but only takes effect after a restart", 5000));
    ck_assert(th_log_wait(&bridge.proc, "\"msg\":\"configuration reloaded", 5000));
    ck_assert_int_eq(push(&bridge, "/push/a"), 200);
    /* Debug lines now appear, as JSON. */
    ck_assert(th_log_wait(&bridge.proc, "\"level\":\"debug\"", 5000));
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

int main(void)
{
    Suite *s = suite_create("reload");
    TCase *tc = tcase_create("reload");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sighup_applies_apps_and_tokens_and_keeps_connections);
    tcase_add_test(tc, bad_file_keeps_the_running_configuration);
    tcase_add_test(tc, restart_only_keys_keep_running_values_and_log_level_changes);
    tcase_add_test(tc, sighup_changes_secrets_without_dropping_the_session);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
