/*
 * test_sim_it_push.c: the push engine's delivery rules (docs/platform-api.md §7), reports and
 * lifecycle notifications (§1), HTTPS callbacks, and fault injection on the API port.
 * Timings are shrunk with flags: push timeout 0.3 s, re-push every 0.2 s, window 2 s.
 */
#include "sim_harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "th_main.h"

static struct h_sim s;
static char *tok;
static struct h_receiver *rx;

static void start(bool tls_rx, const char *const *extra)
{
    const char *args[40] = {"--app",
                            "app1:sec1",
                            "--devices",
                            "1",
                            "--push-timeout",
                            "0.3",
                            "--repush-interval",
                            "0.2",
                            "--repush-window",
                            "2",
                            "--blacklist-after",
                            "3",
                            "--probe-interval",
                            "0.3"};
    size_t n = 14;
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    h_sim_start(&s, args);
    tok = h_login(&s, "app1", "sec1");
    rx = h_recv_start(tls_rx);
}

static void stop(void)
{
    h_recv_stop(rx);
    free(tok);
    h_sim_stop(&s);
}

static void inject_to(const char *body)
{
    char in[1024];
    snprintf(in, sizeof in, "{\"url\":\"%s://127.0.0.1:%u/cb\",\"raw\":\"%s\"}", "http",
             h_recv_port(rx), body);
    struct h_resp r = h_admin(&s, "POST", "/inject", in);
    h_expect(&r, 200, "{\"queued\":1}");
    h_resp_free(&r);
}

/* Push log entries, waiting until at least n exist or a generous deadline passes. */
static cJSON *wait_log(int n)
{
    cJSON *log = NULL;
    for (int i = 0; i < 400; i++) {
        cJSON_Delete(log);
        log = h_pushes(&s);
        if (cJSON_GetArraySize(log) >= n)
            break;
        h_sleep_ms(25);
    }
    return log;
}

static const char *outcome(cJSON *log, int i)
{
    return cJSON_GetObjectItem(cJSON_GetArrayItem(log, i), "outcome")->valuestring;
}

START_TEST(repush_on_503_byte_identical)
{
    start(false, NULL);
    static const int script[] = {503, 502};
    h_recv_script(rx, script, 2, 200, 0);
    inject_to("{\\\"notifyType\\\":\\\"x\\\",\\\"a\\\":null}");
    ck_assert_uint_eq(h_recv_wait(rx, 3, 5000), 3);
    for (size_t i = 0; i < 3; i++) {
        struct h_push p = h_recv_get(rx, i);
        ck_assert_str_eq(p.body, "{\"notifyType\":\"x\",\"a\":null}");
        ck_assert_str_eq(p.path, "/cb");
        free(p.body);
    }
    cJSON *log = wait_log(3);
    ck_assert_int_eq(cJSON_GetArraySize(log), 3);
    for (int i = 0; i < 3; i++) {
        cJSON *e = cJSON_GetArrayItem(log, i);
        ck_assert_int_eq(cJSON_GetObjectItem(e, "attempt")->valueint, i + 1);
        ck_assert_int_eq(cJSON_GetObjectItem(e, "id")->valueint,
                         cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "id")->valueint);
    }
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "status")->valueint, 503);
    ck_assert_str_eq(outcome(log, 0), "retry");
    ck_assert_str_eq(outcome(log, 1), "retry");
    ck_assert_str_eq(outcome(log, 2), "delivered");
    cJSON_Delete(log);
    stop();
}
END_TEST

START_TEST(other_statuses_not_repushed_unless_flag)
{
    start(false, NULL);
    static const int script[] = {500, 404, 201};
    h_recv_script(rx, script, 3, 200, 0);
    inject_to("{}");
    inject_to("{}");
    inject_to("{}");
    ck_assert_uint_eq(h_recv_wait(rx, 3, 5000), 3);
    h_sleep_ms(500); /* more than two re-push intervals */
    ck_assert_uint_eq(h_recv_count(rx), 3);
    cJSON *log = wait_log(3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(outcome(log, i), "dropped");
    cJSON_Delete(log);
    stop();

    const char *extra[] = {"--repush-any-error", NULL};
    start(false, extra);
    static const int s2[] = {500};
    h_recv_script(rx, s2, 1, 200, 0);
    inject_to("{}");
    ck_assert_uint_eq(h_recv_wait(rx, 2, 5000), 2);
    stop();
}
END_TEST

START_TEST(timeout_and_unreachable_are_repushed_then_expire)
{
    start(false, NULL);
    static const int script[] = {-1};
    h_recv_script(rx, script, 1, 200, 800); /* first answer comes after the 0.3 s timeout */
    inject_to("{}");
    ck_assert_uint_ge(h_recv_wait(rx, 2, 5000), 2);
    cJSON *log = wait_log(2);
    cJSON *first = cJSON_GetArrayItem(log, 0);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(first, "status")));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(first, "error")));
    ck_assert_str_eq(outcome(log, 0), "retry");
    ck_assert_str_eq(outcome(log, 1), "delivered");
    cJSON_Delete(log);
    stop();

    /* Nobody listens: re-pushed within the 2 s window, then dropped as expired.  With
       --blacklist-after 0 the URL is never marked invalid, so every interval is an attempt. */
    const char *extra[] = {"--blacklist-after", "0", NULL};
    start(false, extra);
    struct h_resp r =
        h_admin(&s, "POST", "/inject", "{\"url\":\"http://127.0.0.1:9/x\",\"raw\":\"{}\"}");
    h_resp_free(&r);
    int n = 0;
    log = NULL;
    for (int i = 0; i < 300; i++) { /* until the message expired (2 s window) */
        cJSON_Delete(log);
        log = h_pushes(&s);
        n = cJSON_GetArraySize(log);
        if (n > 0 && strcmp(outcome(log, n - 1), "expired") == 0)
            break;
        h_sleep_ms(25);
    }
    ck_assert_int_ge(n, 5);
    ck_assert_int_le(n, 12);
    ck_assert_str_eq(outcome(log, n - 1), "expired");
    for (int i = 0; i < n - 1; i++)
        ck_assert_str_eq(outcome(log, i), "retry");
    cJSON_Delete(log);
    h_sleep_ms(500);
    log = h_pushes(&s);
    ck_assert_int_eq(cJSON_GetArraySize(log), n); /* nothing after expiry */
    cJSON_Delete(log);
    stop();
}
END_TEST

START_TEST(blacklist_then_probe_restores)
{
    start(false, NULL);
    static const int script[] = {503, 503, 503, 503};
    h_recv_script(rx, script, 4, 200, 0);
    inject_to("{\\\"n\\\":1}");
    ck_assert_uint_eq(h_recv_wait(rx, 3, 5000), 3);
    /* After 3 consecutive failures the URL is invalid: new pushes wait for a probe.  The sim
       records the third failure just after the receiver answered, so poll briefly. */
    struct h_resp r;
    cJSON *t = NULL, *t0 = NULL;
    for (int i = 0; i < 200; i++) {
        cJSON_Delete(t);
        r = h_admin(&s, "GET", "/push-targets", NULL);
        t = h_json(&r);
        h_resp_free(&r);
        t0 = cJSON_GetArrayItem(t, 0);
        if (cJSON_IsTrue(cJSON_GetObjectItem(t0, "invalid")))
            break;
        h_sleep_ms(10);
    }
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(t0, "invalid")));
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "consecutiveFailures")->valueint, 3);
    cJSON_Delete(t);
    inject_to("{\\\"n\\\":2}");
    inject_to("{\\\"n\\\":3}");
    /* One probe (503), then a second probe succeeds and releases everything. */
    ck_assert_uint_eq(h_recv_wait(rx, 7, 5000), 7);
    h_sleep_ms(300);
    ck_assert_uint_eq(h_recv_count(rx), 7);
    struct h_push p3 = h_recv_get(rx, 3); /* the first probe came alone, after the interval */
    free(p3.body);
    r = h_admin(&s, "GET", "/push-targets", NULL);
    t = h_json(&r);
    h_resp_free(&r);
    t0 = cJSON_GetArrayItem(t, 0);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(t0, "invalid")));
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "queued")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "delivered")->valueint, 3);
    cJSON_Delete(t);
    cJSON *log = h_pushes(&s);
    int delivered = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, log) delivered +=
        strcmp(cJSON_GetObjectItem(e, "outcome")->valuestring, "delivered") == 0;
    ck_assert_int_eq(delivered, 3);
    cJSON_Delete(log);
    stop();
}
END_TEST

/* The one callback target's state from GET /push-targets. */
static cJSON *target0(void)
{
    struct h_resp r = h_admin(&s, "GET", "/push-targets", NULL);
    cJSON *t = h_json(&r);
    h_resp_free(&r);
    cJSON *t0 = cJSON_DetachItemFromArray(t, 0);
    cJSON_Delete(t);
    ck_assert_ptr_nonnull(t0);
    return t0;
}

/* §7: only failures (no answer, 501-504) count towards the blacklist.  An answer that drops the
 * message (500 here) shows the URL answers: it ends the run of consecutive failures. */
START_TEST(dropping_answer_resets_consecutive_failures)
{
    start(false, NULL); /* --blacklist-after 3 */
    static const int script[] = {503, 503, 500, 503, 503};
    h_recv_script(rx, script, 5, 200, 0);
    inject_to("{\\\"n\\\":1}"); /* 503, re-push 503, re-push 500: dropped */
    cJSON *log = wait_log(3);
    ck_assert_int_eq(cJSON_GetArraySize(log), 3);
    ck_assert_str_eq(outcome(log, 2), "dropped");
    cJSON_Delete(log);
    cJSON *t0 = target0();
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(t0, "invalid")));
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "consecutiveFailures")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "failed")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "dropped")->valueint, 1);
    cJSON_Delete(t0);
    /* Two more failures make a run of 2, below the limit: the URL stays valid and the third
       attempt delivers.  Counting the 500 would have blacklisted it already. */
    inject_to("{\\\"n\\\":2}");
    log = wait_log(6);
    ck_assert_int_eq(cJSON_GetArraySize(log), 6);
    ck_assert_str_eq(outcome(log, 5), "delivered");
    cJSON *e;
    cJSON_ArrayForEach(e, log) ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(e, "urlInvalid")));
    cJSON_Delete(log);
    t0 = target0();
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "consecutiveFailures")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "delivered")->valueint, 1);
    cJSON_Delete(t0);
    stop();
}
END_TEST

START_TEST(https_callbacks_verified_with_sim_ca)
{
    start(true, NULL);
    char in[256];
    snprintf(in, sizeof in, "{\"url\":\"https://127.0.0.1:%u/tls\",\"raw\":\"{}\"}",
             h_recv_port(rx));
    struct h_resp r = h_admin(&s, "POST", "/inject", in);
    h_resp_free(&r);
    ck_assert_uint_eq(h_recv_wait(rx, 1, 5000), 1);
    stop();

    /* A CA that did not sign the receiver: TLS fails, no request reaches it. */
    h_make_other_certs();
    char ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", h_other_certs);
    const char *extra[] = {"--push-ca", ca, NULL};
    start(true, extra);
    snprintf(in, sizeof in, "{\"url\":\"https://127.0.0.1:%u/tls\",\"raw\":\"{}\"}",
             h_recv_port(rx));
    r = h_admin(&s, "POST", "/inject", in);
    h_resp_free(&r);
    cJSON *log = wait_log(1);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "status")));
    cJSON_Delete(log);
    ck_assert_uint_eq(h_recv_count(rx), 0);
    stop();
}
END_TEST

START_TEST(reports_and_lifecycle_notifications)
{
    const char *extra[] = {"--report-interval", "0.2", NULL};
    start(false, extra);
    char dev[37];
    h_first_device(&s, "app1", dev);
    h_subscribe(&s, "app1", tok, "deviceDataChanged", rx, "/data");
    ck_assert_uint_ge(h_recv_wait(rx, 2, 5000), 2);
    cJSON *bodies = h_recv_bodies(rx, "/data");
    cJSON *b = cJSON_GetArrayItem(bodies, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(b, "notifyType")->valuestring, "deviceDataChanged");
    ck_assert_str_eq(cJSON_GetObjectItem(b, "deviceId")->valuestring, dev);
    ck_assert_str_eq(cJSON_GetObjectItem(b, "gatewayId")->valuestring, dev);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(b, "requestId")));
    cJSON *svc = cJSON_GetObjectItem(b, "service");
    ck_assert(cJSON_IsObject(cJSON_GetObjectItem(svc, "data")));
    ck_assert_int_eq(strlen(cJSON_GetObjectItem(svc, "eventTime")->valuestring), 16);
    /* One push per service, each with one service object; both services show up.  Pushes run
       in parallel, so arrival order says nothing. */
    bool battery = false, temperature = false;
    for (int i = 0; i < 200 && !(battery && temperature); i++) {
        cJSON_Delete(bodies);
        bodies = h_recv_bodies(rx, "/data");
        cJSON_ArrayForEach(b, bodies)
        {
            cJSON *one = cJSON_GetObjectItem(b, "service");
            ck_assert(cJSON_IsObject(one));
            const char *id = cJSON_GetObjectItem(one, "serviceId")->valuestring;
            battery = battery || strcmp(id, "Battery") == 0;
            temperature = temperature || strcmp(id, "Temperature") == 0;
        }
        h_sleep_ms(25);
    }
    ck_assert(battery && temperature);
    cJSON_Delete(bodies);
    /* Compact JSON, as the platform sends it. */
    struct h_push p = h_recv_get(rx, 0);
    ck_assert_ptr_null(strstr(p.body, ": "));
    ck_assert_ptr_nonnull(strstr(p.body, "\"requestId\":null"));
    free(p.body);
    /* Offline devices do not report. */
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    struct h_resp r = h_admin(&s, "POST", path, NULL);
    h_resp_free(&r);
    h_sleep_ms(400); /* let pushes queued before going offline arrive */
    size_t before = h_recv_count(rx);
    h_sleep_ms(500);
    ck_assert_uint_eq(h_recv_count(rx), before);
    /* Lifecycle: add, bind, online/offline, delete. */
    h_subscribe(&s, "app1", tok, "deviceAdded", rx, "/life");
    h_subscribe(&s, "app1", tok, "bindDevice", rx, "/life");
    h_subscribe(&s, "app1", tok, "deviceInfoChanged", rx, "/life");
    h_subscribe(&s, "app1", tok, "deviceDeleted", rx, "/life");
    r = h_admin(&s, "POST", "/devices", "{\"deviceId\":\"new-device-1\",\"nodeId\":\"86000001\"}");
    h_expect(&r, 201, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "POST", "/devices/new-device-1/bind", NULL);
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "DELETE", "/devices/new-device-1", NULL);
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "POST", "/devices/new-device-1/online", NULL);
    h_expect(&r, 404, NULL);
    h_resp_free(&r);
    for (int i = 0; i < 200; i++) {
        cJSON *l = h_recv_bodies(rx, "/life");
        int n = cJSON_GetArraySize(l);
        cJSON_Delete(l);
        if (n >= 4)
            break;
        h_sleep_ms(25);
    }
    cJSON *life = h_recv_bodies(rx, "/life");
    ck_assert_int_eq(cJSON_GetArraySize(life), 4);
    bool added = false, bound = false, online = false, deleted = false;
    cJSON_ArrayForEach(b, life)
    {
        const char *t = cJSON_GetObjectItem(b, "notifyType")->valuestring;
        cJSON *info = cJSON_GetObjectItem(b, "deviceInfo");
        ck_assert_str_eq(cJSON_GetObjectItem(b, "deviceId")->valuestring, "new-device-1");
        if (strcmp(t, "deviceAdded") == 0) {
            added = true;
            ck_assert_str_eq(cJSON_GetObjectItem(b, "nodeType")->valuestring, "GATEWAY");
            ck_assert_str_eq(cJSON_GetObjectItem(info, "nodeId")->valuestring, "86000001");
            ck_assert_str_eq(cJSON_GetObjectItem(info, "status")->valuestring, "OFFLINE");
            ck_assert(cJSON_IsNull(cJSON_GetObjectItem(info, "mac")));
        } else if (strcmp(t, "bindDevice") == 0) {
            bound = true;
            ck_assert_ptr_null(cJSON_GetObjectItem(b, "gatewayId"));
            ck_assert_str_eq(cJSON_GetObjectItem(b, "resultCode")->valuestring, "succeeded");
        } else if (strcmp(t, "deviceInfoChanged") == 0) {
            online = true;
            ck_assert_str_eq(cJSON_GetObjectItem(info, "status")->valuestring, "ONLINE");
            ck_assert(cJSON_IsNull(cJSON_GetObjectItem(info, "nodeId"))); /* partial */
        } else {
            deleted = strcmp(t, "deviceDeleted") == 0;
        }
    }
    ck_assert(added && bound && online && deleted);
    cJSON_Delete(life);
    stop();
}
END_TEST

/* How many pushes received on path have notifyType type (and deviceInfo.status, if given). */
static int count_type(const char *path, const char *type, const char *status)
{
    cJSON *bodies = h_recv_bodies(rx, path), *b;
    int n = 0;
    cJSON_ArrayForEach(b, bodies)
    {
        const cJSON *t = cJSON_GetObjectItem(b, "notifyType");
        const cJSON *info = cJSON_GetObjectItem(b, "deviceInfo");
        const cJSON *st = cJSON_GetObjectItem(info, "status");
        if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0 &&
            (!status || (cJSON_IsString(st) && strcmp(st->valuestring, status) == 0)))
            n++;
    }
    cJSON_Delete(bodies);
    return n;
}

static bool device_online(const char *dev)
{
    struct h_resp r = h_admin(&s, "GET", "/devices", NULL);
    cJSON *all = h_json(&r), *d;
    h_resp_free(&r);
    bool online = false, found = false;
    cJSON_ArrayForEach(d, all)
    {
        if (strcmp(cJSON_GetObjectItem(d, "deviceId")->valuestring, dev) != 0)
            continue;
        found = true;
        online = cJSON_IsTrue(cJSON_GetObjectItem(d, "online"));
    }
    cJSON_Delete(all);
    ck_assert(found);
    return online;
}

/* §1.3: an NB-IoT device is ONLINE when it reports; §3.1: its PENDING commands go out when it
 * comes online / reports.  An offline device does not report on its own timer. */
START_TEST(report_brings_offline_device_online)
{
    const char *extra[] = {"--report-interval", "0.2", "--command-delay-ms", "50", NULL};
    start(false, extra);
    char dev[37], path[128];
    h_first_device(&s, "app1", dev);
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    struct h_resp r = h_admin(&s, "POST", path, NULL);
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    h_subscribe(&s, "app1", tok, "deviceInfoChanged", rx, "/push");
    h_subscribe(&s, "app1", tok, "deviceDataChanged", rx, "/push");
    char body[512];
    snprintf(body, sizeof body,
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"SET\","
             "\"paras\":{\"on\":1}},\"callbackUrl\":\"http://127.0.0.1:%u/cmd\"}",
             dev, h_recv_port(rx));
    r = h_api(&s, "POST", "/iocm/app/cmd/v1.4.0/deviceCommands", "app1", tok, body);
    h_expect(&r, 201, NULL);
    cJSON *j = h_json(&r);
    h_resp_free(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "PENDING");
    cJSON_Delete(j);
    /* Several report intervals pass: the offline device stays offline and silent. */
    h_sleep_ms(700);
    ck_assert_uint_eq(h_recv_count(rx), 0);
    ck_assert(!device_online(dev));
    /* It reports: ONLINE first, its data, and the pending command goes out. */
    snprintf(path, sizeof path, "/devices/%s/report", dev);
    r = h_admin(&s, "POST", path,
                "{\"services\":[{\"serviceId\":\"Battery\","
                "\"data\":{\"batteryLevel\":42}}]}");
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    ck_assert(device_online(dev));
    int online = 0, data = 0;
    cJSON *cmd = NULL;
    for (int i = 0; i < 200; i++) {
        online = count_type("/push", "deviceInfoChanged", "ONLINE");
        data = count_type("/push", "deviceDataChanged", NULL);
        cJSON_Delete(cmd);
        cmd = h_recv_bodies(rx, "/cmd");
        if (online >= 1 && data >= 1 && cJSON_GetArraySize(cmd) >= 3)
            break;
        h_sleep_ms(25);
    }
    ck_assert_int_eq(online, 1);
    ck_assert_int_ge(data, 1);
    ck_assert_int_eq(count_type("/push", "deviceInfoChanged", "OFFLINE"), 0);
    bool sent = false, successful = false;
    cJSON *c;
    cJSON_ArrayForEach(c, cmd)
    {
        const char *code =
            cJSON_GetObjectItem(cJSON_GetObjectItem(c, "result"), "resultCode")->valuestring;
        sent = sent || strcmp(code, "SENT") == 0;
        successful = successful || strcmp(code, "SUCCESSFUL") == 0;
    }
    ck_assert(sent && successful);
    cJSON_Delete(cmd);
    stop();
}
END_TEST

START_TEST(datas_mode_and_manual_report)
{
    const char *extra[] = {"--report-mode", "datas", NULL};
    start(false, extra);
    char dev[37];
    h_first_device(&s, "app1", dev);
    h_subscribe(&s, "app1", tok, "deviceDatasChanged", rx, "/datas");
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/report", dev);
    struct h_resp r = h_admin(&s, "POST", path,
                              "{\"services\":[{\"serviceId\":\"Meter\",\"data\":{\"kwh\":12.5}}]}");
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "POST", path, NULL);
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "POST", path, "{\"services\":[{\"data\":{}}]}");
    h_expect(&r, 400, NULL);
    h_resp_free(&r);
    ck_assert_uint_eq(h_recv_wait(rx, 2, 5000), 2);
    cJSON *bodies = h_recv_bodies(rx, "/datas");
    int sizes[2];
    for (int i = 0; i < 2; i++) {
        cJSON *b = cJSON_GetArrayItem(bodies, i);
        ck_assert_str_eq(cJSON_GetObjectItem(b, "notifyType")->valuestring, "deviceDatasChanged");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItem(b, "requestId")));
        sizes[i] = cJSON_GetArraySize(cJSON_GetObjectItem(b, "services"));
    }
    /* One push with just the reported service, one with all three (Battery, Temperature, Meter). */
    ck_assert((sizes[0] == 1 && sizes[1] == 3) || (sizes[0] == 3 && sizes[1] == 1));
    cJSON_Delete(bodies);
    stop();
}
END_TEST

START_TEST(fault_injection)
{
    start(false, NULL);
    struct h_resp r = h_admin(
        &s, "POST", "/faults",
        "[{\"path_prefix\":\"/iocm/app/sub\",\"status\":503,\"error_code\":\"100001\","
        "\"error_desc\":\"busy\",\"count\":1},"
        "{\"path_prefix\":\"/iocm/app/"
        "cmd\",\"method\":\"GET\",\"body_200_error\":\"100428\",\"count\":1},"
        "{\"path_prefix\":\"/iocm/app/cmd\",\"method\":\"PUT\",\"drop_connection\":true},"
        "{\"path_prefix\":\"/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks\",\"latency_ms\":300}]");
    h_expect(&r, 200, NULL);
    h_resp_free(&r);
    r = h_api(&s, "GET", "/iocm/app/sub/v1.2.0/subscriptions", "app1", tok, NULL);
    h_expect(&r, 503, "{\"error_code\":\"100001\",\"error_desc\":\"busy\"}");
    h_resp_free(&r);
    r = h_api(&s, "GET", "/iocm/app/sub/v1.2.0/subscriptions", "app1", tok, NULL);
    h_expect(&r, 200, NULL); /* count exhausted */
    h_resp_free(&r);
    r = h_api(&s, "GET", "/iocm/app/cmd/v1.4.0/deviceCommands", "app1", tok, NULL);
    h_expect(&r, 200, "{\"error_code\":\"100428\",\"error_desc\":\"Injected fault.\"}");
    h_resp_free(&r);
    r = h_api(&s, "PUT", "/iocm/app/cmd/v1.4.0/deviceCommands/abc", "app1", tok, "{}");
    ck_assert_int_eq(r.status, 0); /* no answer at all */
    ck_assert_int_ne(r.curl_rc, 0);
    h_resp_free(&r);
    /* Latency only: the answer is normal (a 400 for the missing deviceId), after the delay. */
    r = h_api(&s, "POST", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", "app1", tok, "{}");
    h_expect(&r, 400, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "GET", "/faults", NULL);
    cJSON *f = h_json(&r);
    h_resp_free(&r);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(f, 0), "hits")->valueint, 1);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(f, 3), "hits")->valueint, 1);
    cJSON_Delete(f);
    r = h_admin(&s, "POST", "/faults", "{\"bogus\":1}");
    h_expect(&r, 400, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "POST", "/faults", "{\"rate\":2}");
    h_expect(&r, 400, NULL);
    h_resp_free(&r);
    r = h_admin(&s, "DELETE", "/faults", NULL);
    h_expect(&r, 204, NULL);
    h_resp_free(&r);
    r = h_api(&s, "PUT", "/iocm/app/cmd/v1.4.0/deviceCommands/abc", "app1", tok,
              "{\"status\":\"CANCELED\"}");
    h_expect(&r, 404, NULL);
    h_resp_free(&r);
    /* The dropped request is in the request log. */
    r = h_admin(&s, "GET", "/requests?path=/iocm/app/cmd/v1.4.0/deviceCommands/abc", NULL);
    cJSON *log = h_json(&r);
    h_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(log), 2);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "dropped")));
    cJSON_Delete(log);
    stop();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const push_tests[] = {repush_on_503_byte_identical,
                                       other_statuses_not_repushed_unless_flag,
                                       timeout_and_unreachable_are_repushed_then_expire,
                                       blacklist_then_probe_restores,
                                       dropping_answer_resets_consecutive_failures,
                                       https_callbacks_verified_with_sim_ca,
                                       reports_and_lifecycle_notifications,
                                       report_brings_offline_device_online,
                                       datas_mode_and_manual_report,
                                       fault_injection,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "push",
         .timeout_s = 60,
         .tests = push_tests,
         .unchecked_setup = h_make_certs,
         .unchecked_teardown = h_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_push", cases);
}
