/*
 * test_sim_it_push.c: the push engine's delivery rules (docs/platform-api.md §7), reports and
 * lifecycle notifications (§1), HTTPS callbacks, and fault injection on the API port.
 * Timings are shrunk with flags: push timeout 0.3 s, re-push every 0.2 s, window 2 s.
 */
#include "th_sim.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "th_main.h"

static struct th_sim s;
static char *tok;
static struct th_sim_receiver *rx;

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
    th_sim_start(&s, args);
    tok = th_sim_login(&s, "app1", "sec1");
    rx = th_sim_recv_start(tls_rx);
}

static void stop(void)
{
    th_sim_recv_stop(rx);
    free(tok);
    th_sim_stop(&s);
}

static void inject_to(const char *body)
{
    char in[1024];
    snprintf(in, sizeof in, "{\"url\":\"%s://127.0.0.1:%u/cb\",\"raw\":\"%s\"}", "http",
             th_sim_recv_port(rx), body);
    struct th_sim_resp r = th_sim_admin(&s, "POST", "/inject", in);
    th_sim_expect(&r, 200, "{\"queued\":1}");
    th_sim_resp_free(&r);
}

/* Push log entries, waiting until at least n exist or a generous deadline passes. */
static cJSON *wait_log(int n)
{
    cJSON *log = NULL;
    for (int i = 0; i < 400; i++) {
        cJSON_Delete(log);
        log = th_sim_pushes(&s);
        if (cJSON_GetArraySize(log) >= n)
            break;
        th_sleep_ms(25);
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
    th_sim_recv_script(rx, script, 2, 200, 0);
    inject_to("{\\\"notifyType\\\":\\\"x\\\",\\\"a\\\":null}");
    ck_assert_uint_eq(th_sim_recv_wait(rx, 3, 5000), 3);
    for (size_t i = 0; i < 3; i++) {
        struct th_sim_push p = th_sim_recv_get(rx, i);
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
    th_sim_recv_script(rx, script, 3, 200, 0);
    inject_to("{}");
    inject_to("{}");
    inject_to("{}");
    ck_assert_uint_eq(th_sim_recv_wait(rx, 3, 5000), 3);
    th_sleep_ms(500); /* more than two re-push intervals */
    ck_assert_uint_eq(th_sim_recv_count(rx), 3);
    cJSON *log = wait_log(3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(outcome(log, i), "dropped");
    cJSON_Delete(log);
    stop();

    const char *extra[] = {"--repush-any-error", NULL};
    start(false, extra);
    static const int s2[] = {500};
    th_sim_recv_script(rx, s2, 1, 200, 0);
    inject_to("{}");
    ck_assert_uint_eq(th_sim_recv_wait(rx, 2, 5000), 2);
    stop();
}
END_TEST

START_TEST(timeout_and_unreachable_are_repushed_then_expire)
{
    start(false, NULL);
    static const int script[] = {-1};
    th_sim_recv_script(rx, script, 1, 200, 800); /* first answer comes after the 0.3 s timeout */
    inject_to("{}");
    ck_assert_uint_ge(th_sim_recv_wait(rx, 2, 5000), 2);
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
    struct th_sim_resp r =
        th_sim_admin(&s, "POST", "/inject", "{\"url\":\"http://127.0.0.1:9/x\",\"raw\":\"{}\"}");
    th_sim_resp_free(&r);
    int n = 0;
    log = NULL;
    for (int i = 0; i < 300; i++) { /* until the message expired (2 s window) */
        cJSON_Delete(log);
        log = th_sim_pushes(&s);
        n = cJSON_GetArraySize(log);
        if (n > 0 && strcmp(outcome(log, n - 1), "expired") == 0)
            break;
        th_sleep_ms(25);
    }
    ck_assert_int_ge(n, 5);
    ck_assert_int_le(n, 12);
    ck_assert_str_eq(outcome(log, n - 1), "expired");
    for (int i = 0; i < n - 1; i++)
        ck_assert_str_eq(outcome(log, i), "retry");
    cJSON_Delete(log);
    th_sleep_ms(500);
    log = th_sim_pushes(&s);
    ck_assert_int_eq(cJSON_GetArraySize(log), n); /* nothing after expiry */
    cJSON_Delete(log);
    stop();
}
END_TEST

START_TEST(blacklist_then_probe_restores)
{
    start(false, NULL);
    static const int script[] = {503, 503, 503, 503};
    th_sim_recv_script(rx, script, 4, 200, 0);
    inject_to("{\\\"n\\\":1}");
    ck_assert_uint_eq(th_sim_recv_wait(rx, 3, 5000), 3);
    /* After 3 consecutive failures the URL is invalid: new pushes wait for a probe.  The sim
       records the third failure just after the receiver answered, so poll briefly. */
    struct th_sim_resp r;
    cJSON *t = NULL, *t0 = NULL;
    for (int i = 0; i < 200; i++) {
        cJSON_Delete(t);
        r = th_sim_admin(&s, "GET", "/push-targets", NULL);
        t = th_sim_json(&r);
        th_sim_resp_free(&r);
        t0 = cJSON_GetArrayItem(t, 0);
        if (cJSON_IsTrue(cJSON_GetObjectItem(t0, "invalid")))
            break;
        th_sleep_ms(10);
    }
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(t0, "invalid")));
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "consecutiveFailures")->valueint, 3);
    cJSON_Delete(t);
    inject_to("{\\\"n\\\":2}");
    inject_to("{\\\"n\\\":3}");
    /* One probe (503), then a second probe succeeds and releases everything. */
    ck_assert_uint_eq(th_sim_recv_wait(rx, 7, 5000), 7);
    th_sleep_ms(300);
    ck_assert_uint_eq(th_sim_recv_count(rx), 7);
    struct th_sim_push p3 =
        th_sim_recv_get(rx, 3); /* the first probe came alone, after the interval */
    free(p3.body);
    r = th_sim_admin(&s, "GET", "/push-targets", NULL);
    t = th_sim_json(&r);
    th_sim_resp_free(&r);
    t0 = cJSON_GetArrayItem(t, 0);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(t0, "invalid")));
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "queued")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(t0, "delivered")->valueint, 3);
    cJSON_Delete(t);
    cJSON *log = th_sim_pushes(&s);
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
    struct th_sim_resp r = th_sim_admin(&s, "GET", "/push-targets", NULL);
    cJSON *t = th_sim_json(&r);
    th_sim_resp_free(&r);
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
    th_sim_recv_script(rx, script, 5, 200, 0);
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
             th_sim_recv_port(rx));
    struct th_sim_resp r = th_sim_admin(&s, "POST", "/inject", in);
    th_sim_resp_free(&r);
    ck_assert_uint_eq(th_sim_recv_wait(rx, 1, 5000), 1);
    stop();

    /* A CA that did not sign the receiver: TLS fails, no request reaches it. */
    th_sim_make_other_certs();
    char ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", th_sim_other_certs);
    const char *extra[] = {"--push-ca", ca, NULL};
    start(true, extra);
    snprintf(in, sizeof in, "{\"url\":\"https://127.0.0.1:%u/tls\",\"raw\":\"{}\"}",
             th_sim_recv_port(rx));
    r = th_sim_admin(&s, "POST", "/inject", in);
    th_sim_resp_free(&r);
    cJSON *log = wait_log(1);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "status")));
    cJSON_Delete(log);
    ck_assert_uint_eq(th_sim_recv_count(rx), 0);
    stop();
}
END_TEST

START_TEST(reports_and_lifecycle_notifications)
{
    const char *extra[] = {"--report-interval", "0.2", NULL};
    start(false, extra);
    char dev[37];
    th_sim_first_device(&s, "app1", dev);
    th_sim_subscribe(&s, "app1", tok, "deviceDataChanged", rx, "/data");
    ck_assert_uint_ge(th_sim_recv_wait(rx, 2, 5000), 2);
    cJSON *bodies = th_sim_recv_bodies(rx, "/data");
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
        bodies = th_sim_recv_bodies(rx, "/data");
        cJSON_ArrayForEach(b, bodies)
        {
            cJSON *one = cJSON_GetObjectItem(b, "service");
            ck_assert(cJSON_IsObject(one));
            const char *id = cJSON_GetObjectItem(one, "serviceId")->valuestring;
            battery = battery || strcmp(id, "Battery") == 0;
            temperature = temperature || strcmp(id, "Temperature") == 0;
        }
        th_sleep_ms(25);
    }
    ck_assert(battery && temperature);
    cJSON_Delete(bodies);
    /* Compact JSON, as the platform sends it. */
    struct th_sim_push p = th_sim_recv_get(rx, 0);
    ck_assert_ptr_null(strstr(p.body, ": "));
    ck_assert_ptr_nonnull(strstr(p.body, "\"requestId\":null"));
    free(p.body);
    /* Offline devices do not report. */
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    struct th_sim_resp r = th_sim_admin(&s, "POST", path, NULL);
    th_sim_resp_free(&r);
    th_sleep_ms(400); /* let pushes queued before going offline arrive */
    size_t before = th_sim_recv_count(rx);
    th_sleep_ms(500);
    ck_assert_uint_eq(th_sim_recv_count(rx), before);
    /* Lifecycle: add, bind, online/offline, delete. */
    th_sim_subscribe(&s, "app1", tok, "deviceAdded", rx, "/life");
    th_sim_subscribe(&s, "app1", tok, "bindDevice", rx, "/life");
    th_sim_subscribe(&s, "app1", tok, "deviceInfoChanged", rx, "/life");
    th_sim_subscribe(&s, "app1", tok, "deviceDeleted", rx, "/life");
    r = th_sim_admin(&s, "POST", "/devices",
                     "{\"deviceId\":\"new-device-1\",\"nodeId\":\"86000001\"}");
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/devices/new-device-1/bind", NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "DELETE", "/devices/new-device-1", NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/devices/new-device-1/online", NULL);
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    for (int i = 0; i < 200; i++) {
        cJSON *l = th_sim_recv_bodies(rx, "/life");
        int n = cJSON_GetArraySize(l);
        cJSON_Delete(l);
        if (n >= 4)
            break;
        th_sleep_ms(25);
    }
    cJSON *life = th_sim_recv_bodies(rx, "/life");
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
    cJSON *bodies = th_sim_recv_bodies(rx, path), *b;
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
    struct th_sim_resp r = th_sim_admin(&s, "GET", "/devices", NULL);
    cJSON *all = th_sim_json(&r), *d;
    th_sim_resp_free(&r);
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
    th_sim_first_device(&s, "app1", dev);
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    struct th_sim_resp r = th_sim_admin(&s, "POST", path, NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    th_sim_subscribe(&s, "app1", tok, "deviceInfoChanged", rx, "/push");
    th_sim_subscribe(&s, "app1", tok, "deviceDataChanged", rx, "/push");
    char body[512];
    snprintf(body, sizeof body,
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"SET\","
             "\"paras\":{\"on\":1}},\"callbackUrl\":\"http://127.0.0.1:%u/cmd\"}",
             dev, th_sim_recv_port(rx));
    r = th_sim_api(&s, "POST", "/iocm/app/cmd/v1.4.0/deviceCommands", "app1", tok, body);
    th_sim_expect(&r, 201, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "PENDING");
    cJSON_Delete(j);
    /* Several report intervals pass: the offline device stays offline and silent. */
    th_sleep_ms(700);
    ck_assert_uint_eq(th_sim_recv_count(rx), 0);
    ck_assert(!device_online(dev));
    /* It reports: ONLINE first, its data, and the pending command goes out. */
    snprintf(path, sizeof path, "/devices/%s/report", dev);
    r = th_sim_admin(&s, "POST", path,
                     "{\"services\":[{\"serviceId\":\"Battery\","
                     "\"data\":{\"batteryLevel\":42}}]}");
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    ck_assert(device_online(dev));
    int online = 0, data = 0;
    cJSON *cmd = NULL;
    for (int i = 0; i < 200; i++) {
        online = count_type("/push", "deviceInfoChanged", "ONLINE");
        data = count_type("/push", "deviceDataChanged", NULL);
        cJSON_Delete(cmd);
        cmd = th_sim_recv_bodies(rx, "/cmd");
        if (online >= 1 && data >= 1 && cJSON_GetArraySize(cmd) >= 3)
            break;
        th_sleep_ms(25);
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
    th_sim_first_device(&s, "app1", dev);
    th_sim_subscribe(&s, "app1", tok, "deviceDatasChanged", rx, "/datas");
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/report", dev);
    struct th_sim_resp r = th_sim_admin(
        &s, "POST", path, "{\"services\":[{\"serviceId\":\"Meter\",\"data\":{\"kwh\":12.5}}]}");
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", path, NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", path, "{\"services\":[{\"data\":{}}]}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    ck_assert_uint_eq(th_sim_recv_wait(rx, 2, 5000), 2);
    cJSON *bodies = th_sim_recv_bodies(rx, "/datas");
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
    struct th_sim_resp r = th_sim_admin(
        &s, "POST", "/faults",
        "[{\"path_prefix\":\"/iocm/app/sub\",\"status\":503,\"error_code\":\"100001\","
        "\"error_desc\":\"busy\",\"count\":1},"
        "{\"path_prefix\":\"/iocm/app/"
        "cmd\",\"method\":\"GET\",\"body_200_error\":\"100428\",\"count\":1},"
        "{\"path_prefix\":\"/iocm/app/cmd\",\"method\":\"PUT\",\"drop_connection\":true},"
        "{\"path_prefix\":\"/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks\",\"latency_ms\":300}]");
    th_sim_expect(&r, 200, NULL);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", "/iocm/app/sub/v1.2.0/subscriptions", "app1", tok, NULL);
    th_sim_expect(&r, 503, "{\"error_code\":\"100001\",\"error_desc\":\"busy\"}");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", "/iocm/app/sub/v1.2.0/subscriptions", "app1", tok, NULL);
    th_sim_expect(&r, 200, NULL); /* count exhausted */
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", "/iocm/app/cmd/v1.4.0/deviceCommands", "app1", tok, NULL);
    th_sim_expect(&r, 200, "{\"error_code\":\"100428\",\"error_desc\":\"Injected fault.\"}");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "PUT", "/iocm/app/cmd/v1.4.0/deviceCommands/abc", "app1", tok, "{}");
    ck_assert_int_eq(r.status, 0); /* no answer at all */
    ck_assert_int_ne(r.curl_rc, 0);
    th_sim_resp_free(&r);
    /* Latency only: the answer is normal (a 400 for the missing deviceId), after the delay. */
    r = th_sim_api(&s, "POST", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", "app1", tok, "{}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "GET", "/faults", NULL);
    cJSON *f = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(f, 0), "hits")->valueint, 1);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(f, 3), "hits")->valueint, 1);
    cJSON_Delete(f);
    r = th_sim_admin(&s, "POST", "/faults", "{\"bogus\":1}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/faults", "{\"rate\":2}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "DELETE", "/faults", NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "PUT", "/iocm/app/cmd/v1.4.0/deviceCommands/abc", "app1", tok,
                   "{\"status\":\"CANCELED\"}");
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    /* The dropped request is in the request log. */
    r = th_sim_admin(&s, "GET", "/requests?path=/iocm/app/cmd/v1.4.0/deviceCommands/abc", NULL);
    cJSON *log = th_sim_json(&r);
    th_sim_resp_free(&r);
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
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_push", cases);
}
