/*
 * test_sim_it_cmds.c: device commands v1.4.0 (docs/platform-api.md §3) and status callbacks (§2),
 * received by a real HTTP server.
 */
#include "th_sim.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "th_main.h"

#define CMDS   "/iocm/app/cmd/v1.4.0/deviceCommands"
#define CANCEL "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"

static struct th_sim s;
static char *tok;
static char dev[37];
static struct th_sim_receiver *rx;

static void start(const char *const *extra)
{
    const char *args[32] = {"--app", "app1:sec1",          "--app", "app2:sec2", "--devices",
                            "2",     "--command-delay-ms", "50"};
    size_t n = 8;
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    th_sim_start(&s, args);
    tok = th_sim_login(&s, "app1", "sec1");
    th_sim_first_device(&s, "app1", dev);
    rx = th_sim_recv_start(false);
}

static void stop(void)
{
    th_sim_recv_stop(rx);
    free(tok);
    th_sim_stop(&s);
}

static struct th_sim_resp create(const char *device, const char *extra)
{
    char body[1024];
    snprintf(
        body, sizeof body,
        "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"SET\","
        "\"paras\":{\"on\":1,\"level\":\"high\"}},\"callbackUrl\":\"http://127.0.0.1:%u/cmd\"%s%s}",
        device, th_sim_recv_port(rx), extra ? "," : "", extra ? extra : "");
    return th_sim_api(&s, "POST", CMDS, "app1", tok, body);
}

static char *create_ok(const char *extra, const char *want_status)
{
    struct th_sim_resp r = create(dev, extra);
    th_sim_expect(&r, 201, NULL);
    cJSON *j = th_sim_json(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, want_status);
    char *id = strdup(cJSON_GetObjectItem(j, "commandId")->valuestring);
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    return id;
}

static void admin_ok(const char *method, const char *path, const char *body, long status)
{
    struct th_sim_resp r = th_sim_admin(&s, method, path, body);
    th_sim_expect(&r, status, NULL);
    th_sim_resp_free(&r);
}

/* The status callbacks received for one command, as "SENT,DELIVERED,…" (arrival order). */
static void expect_callbacks(const char *id, size_t n, const char *const *codes,
                             const char *last_detail)
{
    long waited = 0;
    cJSON *mine = NULL;
    for (;;) {
        cJSON *all = th_sim_recv_bodies(rx, "/cmd");
        cJSON_Delete(mine);
        mine = cJSON_CreateArray();
        cJSON *b;
        cJSON_ArrayForEach(b, all)
        {
            if (strcmp(cJSON_GetObjectItem(b, "commandId")->valuestring, id) == 0)
                cJSON_AddItemToArray(mine, cJSON_Duplicate(b, 1));
        }
        cJSON_Delete(all);
        if ((size_t)cJSON_GetArraySize(mine) >= n || waited > 5000)
            break;
        th_sleep_ms(20);
        waited += 20;
    }
    ck_assert_int_eq(cJSON_GetArraySize(mine), (int)n);
    for (size_t i = 0; i < n; i++) {
        cJSON *b = cJSON_GetArrayItem(mine, (int)i);
        ck_assert_ptr_null(cJSON_GetObjectItem(b, "notifyType"));
        ck_assert_str_eq(cJSON_GetObjectItem(b, "deviceId")->valuestring, dev);
        cJSON *res = cJSON_GetObjectItem(b, "result");
        /* Parallel pushes may reorder callbacks; each status must appear exactly once. */
        bool found = false;
        for (size_t k = 0; k < n; k++)
            found =
                found || strcmp(cJSON_GetObjectItem(res, "resultCode")->valuestring, codes[k]) == 0;
        ck_assert_msg(found, "unexpected %s", cJSON_GetObjectItem(res, "resultCode")->valuestring);
        const cJSON *d = cJSON_GetObjectItem(res, "resultDetail");
        ck_assert_ptr_nonnull(d);
        if (strcmp(cJSON_GetObjectItem(res, "resultCode")->valuestring, codes[n - 1]) == 0 &&
            last_detail) {
            char *txt = cJSON_PrintUnformatted(d);
            ck_assert_str_eq(txt, last_detail);
            free(txt);
        } else {
            ck_assert(cJSON_IsNull(d));
        }
    }
    cJSON_Delete(mine);
}

START_TEST(create_and_lifecycle_callbacks)
{
    start(NULL);
    struct th_sim_resp r = create(dev, "\"maxRetransmit\":3");
    th_sim_expect(&r, 201, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    const char *id = cJSON_GetObjectItem(j, "commandId")->valuestring;
    ck_assert_int_eq(strlen(id), 32);
    ck_assert_int_eq(strspn(id, "0123456789abcdef"), 32);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "appId")->valuestring, "app1");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "deviceId")->valuestring, dev);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "SENT");
    ck_assert_int_eq(cJSON_GetObjectItem(j, "expireTime")->valueint, 172800);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "maxRetransmit")->valueint, 3);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "issuedTimes")->valueint, 0);
    const char *ct = cJSON_GetObjectItem(j, "creationTime")->valuestring;
    ck_assert_int_eq(strlen(ct), 16);
    ck_assert(ct[8] == 'T' && ct[15] == 'Z');
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "deliveredTime")); /* absent, not null */
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "command"), "method")->valuestring,
                     "SET");
    static const char *codes[] = {"SENT", "DELIVERED", "SUCCESSFUL"};
    expect_callbacks(id, 3, codes, "{\"on\":1,\"level\":\"high\"}");
    /* The query shows the final state. */
    char path[128];
    snprintf(path, sizeof path, CMDS "?deviceId=%s", dev);
    r = th_sim_api(&s, "GET", path, "app1", tok, NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *q = th_sim_json(&r);
    th_sim_resp_free(&r);
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(q, "data"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(c, "status")->valuestring, "SUCCESSFUL");
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c, "result"), "resultCode")->valuestring,
        "SUCCESSFUL");
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(c, "deliveredTime"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(c, "executeTime"));
    cJSON_Delete(q);
    cJSON_Delete(j);
    stop();
}
END_TEST

START_TEST(create_errors)
{
    start(NULL);
    struct th_sim_resp r;
    /* Bodies after {"deviceId":"<dev>" ; NULL-deviceId cases are whole bodies. */
    static const struct {
        bool with_dev;
        const char *text;
    } bad[] = {
        {false, "{\"deviceId\":\"x\"}"},
        {false, "{\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}}}"},
        {false, "not json"},
        {true, ",\"command\":{\"serviceId\":\"a\",\"method\":\"b\"}}"},
        {true, ",\"command\":{\"serviceId\":\"\",\"method\":\"b\",\"paras\":{}}}"},
        {true,
         ",\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}},\"maxRetransmit\":4}"},
        {true,
         ",\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}},\"maxRetransmit\":-1}"},
        {true,
         ",\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}},\"expireTime\":-5}"},
        {true,
         ",\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}},\"expireTime\":1.5}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[512];
        if (bad[i].with_dev)
            snprintf(body, sizeof body, "{\"deviceId\":\"%s\"%s", dev, bad[i].text);
        else
            snprintf(body, sizeof body, "%s", bad[i].text);
        r = th_sim_api(&s, "POST", CMDS, "app1", tok, body);
        th_sim_expect(&r, 400,
                      "{\"error_code\":\"100022\",\"error_desc\":\"The input is invalid.\"}");
        th_sim_resp_free(&r);
    }
    /* Unknown device: the create page's own error list says HTTP 200 with 100418 (§3.1). */
    static const char unknown[] =
        "{\"error_code\":\"100418\",\"error_desc\":\"The deviceData is not existed.\"}";
    r = create("00000000-0000-4000-8000-000000000000", NULL);
    th_sim_expect(&r, 200, unknown);
    th_sim_resp_free(&r);
    char other[37];
    th_sim_first_device(&s, "app2", other);
    r = create(other, NULL); /* another app's device */
    th_sim_expect(&r, 200, unknown);
    th_sim_resp_free(&r);
    /* A body appId is ignored (UNCONFIRMED, lenient): the command is the caller's. */
    r = create(dev, "\"appId\":\"app2\"");
    th_sim_expect(&r, 201, NULL);
    cJSON *mine = th_sim_json(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(mine, "appId")->valuestring, "app1");
    cJSON_Delete(mine);
    th_sim_resp_free(&r);
    /* Offline device: immediate command refused with HTTP 200 and an error body. */
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    admin_ok("POST", path, NULL, 204);
    r = create(dev, "\"expireTime\":0");
    th_sim_expect(&r, 200,
                  "{\"error_code\":\"100428\",\"error_desc\":\"The device is not online.\"}");
    th_sim_resp_free(&r);
    /* Callback on another IP:port than the subscriptions: 403. */
    th_sim_subscribe(&s, "app1", tok, "deviceDataChanged", rx, "/push");
    char body[512];
    snprintf(body, sizeof body,
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"a\",\"method\":\"b\",\"paras\":{}},"
             "\"callbackUrl\":\"http://127.0.0.1:1/cmd\"}",
             dev);
    r = th_sim_api(&s, "POST", CMDS, "app1", tok, body);
    th_sim_expect(&r, 403, NULL);
    cJSON *j = th_sim_json(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "error_code")->valuestring, "100229");
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    stop();
}
END_TEST

START_TEST(unknown_device_flags)
{
    const char *extra[] = {"--unknown-device-404", NULL};
    start(extra);
    struct th_sim_resp r = create("00000000-0000-4000-8000-000000000000", NULL);
    th_sim_expect(&r, 404,
                  "{\"error_code\":\"100403\",\"error_desc\":\"The device is not existed.\"}");
    th_sim_resp_free(&r);
    stop();
    /* The old flag name still starts the simulator; it names what is now the default. */
    const char *old[] = {"--unknown-device-200", NULL};
    start(old);
    r = create("00000000-0000-4000-8000-000000000000", NULL);
    th_sim_expect(&r, 200,
                  "{\"error_code\":\"100418\",\"error_desc\":\"The deviceData is not existed.\"}");
    th_sim_resp_free(&r);
    stop();
}
END_TEST

START_TEST(pending_until_online_limit_cancel)
{
    const char *extra[] = {"--max-pending", "3", NULL};
    start(extra);
    char path[128];
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    admin_ok("POST", path, NULL, 204);
    char *c1 = create_ok(NULL, "PENDING");
    char *c2 = create_ok(NULL, "PENDING");
    char *c3 = create_ok(NULL, "PENDING");
    struct th_sim_resp r = create(dev, NULL);
    th_sim_expect(
        &r, 400,
        "{\"error_code\":\"100223\",\"error_desc\":\"Command counts has reached the upLimit.\"}");
    th_sim_resp_free(&r);
    /* An immediate command would not be cached: the limit does not apply, "not online" does. */
    r = create(dev, "\"expireTime\":0");
    th_sim_expect(&r, 200,
                  "{\"error_code\":\"100428\",\"error_desc\":\"The device is not online.\"}");
    th_sim_resp_free(&r);
    /* Cancel one with PUT; a second cancel is refused (no longer PENDING). */
    char put[128];
    snprintf(put, sizeof put, CMDS "/%s", c1);
    r = th_sim_api(&s, "PUT", put, "app1", tok, "{\"status\":\"CANCELED\"}");
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "CANCELED");
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "executeTime")); /* never executed: omitted */
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "PUT", put, "app1", tok, "{\"status\":\"CANCELED\"}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "PUT", put, "app1", tok, "{\"status\":\"SENT\"}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "PUT", CMDS "/0123456789abcdef0123456789abcdef", "app1", tok,
                   "{\"status\":\"CANCELED\"}");
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    /* Cancel task takes the remaining pending command c2 — keep c3 by sending it first?  No:
       online now sends c2 and c3, so cancel c2 via a task before. */
    char body[128];
    snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", dev);
    char *c4 = create_ok(NULL, "PENDING");
    (void)c4;
    r = th_sim_api(&s, "POST", CANCEL, "app1", tok, body);
    th_sim_expect(&r, 201, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 3);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "SUCCESS");
    cJSON *cmds = cJSON_GetObjectItem(j, "deviceCommands");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cmds, 0), "status")->valuestring,
                     "CANCELED");
    char task[64];
    snprintf(task, sizeof task, "%s", cJSON_GetObjectItem(j, "taskId")->valuestring);
    cJSON_Delete(j);
    char q[160];
    snprintf(q, sizeof q, CANCEL "?taskId=%s", task);
    r = th_sim_api(&s, "GET", q, "app1", tok, NULL);
    th_sim_expect(&r, 200, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pagination"), "totalSize")->valueint, 1);
    cJSON_Delete(j);
    r = th_sim_api(&s, "POST", CANCEL, "app1", tok, "{\"deviceId\":\"nope\"}");
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    /* A new pending command goes out when the device comes online. */
    char *c5 = create_ok(NULL, "PENDING");
    snprintf(path, sizeof path, "/devices/%s/online", dev);
    admin_ok("POST", path, NULL, 204);
    static const char *codes[] = {"SENT", "DELIVERED", "SUCCESSFUL"};
    expect_callbacks(c5, 3, codes, "{\"on\":1,\"level\":\"high\"}");
    /* Canceled commands got no callback (UNCONFIRMED; --push-final-states). */
    expect_callbacks(c2, 0, codes, NULL);
    free(c1);
    free(c2);
    free(c3);
    free(c4);
    free(c5);
    stop();
}
END_TEST

/* count of a GET on the API port: pagination.totalSize */
static int total_size(const char *path)
{
    struct th_sim_resp r = th_sim_api(&s, "GET", path, "app1", tok, NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    int n = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pagination"), "totalSize")->valueint;
    cJSON_Delete(j);
    return n;
}

START_TEST(drop_after_creates_then_drops)
{
    start(NULL);
    admin_ok("POST", "/faults",
             "{\"path_prefix\":\"" CMDS "\",\"method\":\"POST\",\"drop_after\":true,\"count\":1}",
             200);
    struct th_sim_resp r = create(dev, NULL);
    ck_assert_int_eq(r.status, 0); /* processed, but no answer at all */
    ck_assert_int_ne(r.curl_rc, 0);
    th_sim_resp_free(&r);
    /* The command exists, and the query a reconciling client makes finds it: by device and by
     * creation time, not before. */
    r = th_sim_admin(&s, "GET", "/commands", NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(j), 1);
    cJSON_Delete(j);
    char path[256], since[17];
    time_t t = time(NULL) - 60;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(since, sizeof since, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(path, sizeof path, CMDS "?deviceId=%s&startTime=%s&pageSize=10", dev, since);
    ck_assert_int_eq(total_size(path), 1);
    snprintf(path, sizeof path, CMDS "?deviceId=%s&startTime=20990101T000000Z", dev);
    ck_assert_int_eq(total_size(path), 0);
    ck_assert_int_eq(total_size(CMDS "?deviceId=no-such-device"), 0);
    /* The request log holds what was withheld, marked dropped. */
    r = th_sim_admin(&s, "GET", "/requests?path=" CMDS, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    cJSON *e = cJSON_GetArrayItem(j, 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(e, "dropped")));
    ck_assert_int_eq(cJSON_GetObjectItem(e, "status")->valueint, 201);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(e, "response")->valuestring, "commandId"));
    cJSON_Delete(j);
    /* count exhausted: the next create is answered. */
    free(create_ok(NULL, "SENT"));
    /* drop_after with another answer is refused. */
    admin_ok("POST", "/faults", "{\"drop_after\":true,\"status\":500}", 400);
    admin_ok("POST", "/faults", "{\"drop_after\":1}", 400);
    stop();
}
END_TEST

START_TEST(query_paging_and_time_filter)
{
    start(NULL);
    for (int i = 0; i < 5; i++)
        free(create_ok(NULL, "SENT"));
    struct th_sim_resp r = th_sim_api(&s, "GET", CMDS "?pageNo=1&pageSize=2", "app1", tok, NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    cJSON *pg = cJSON_GetObjectItem(j, "pagination");
    ck_assert_int_eq(cJSON_GetObjectItem(pg, "pageNo")->valueint, 1);
    ck_assert_int_eq(cJSON_GetObjectItem(pg, "pageSize")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(pg, "totalSize")->valueint, 5);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "data")), 2);
    cJSON_Delete(j);
    r = th_sim_api(&s, "GET", CMDS "?startTime=20990101T000000Z", "app1", tok, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pagination"), "totalSize")->valueint, 0);
    cJSON_Delete(j);
    r = th_sim_api(&s, "GET", CMDS "?endTime=20990101T000000Z&startTime=20000101T000000Z", "app1",
                   tok, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pagination"), "totalSize")->valueint, 5);
    cJSON_Delete(j);
    r = th_sim_api(&s, "GET", CMDS "?startTime=yesterday", "app1", tok, NULL);
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", CMDS "?pageSize=1001", "app1", tok, NULL);
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    char *t2 = th_sim_login(&s, "app2", "sec2"); /* another app sees none of them */
    r = th_sim_api(&s, "GET", CMDS, "app2", t2, NULL);
    j = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pagination"), "totalSize")->valueint, 0);
    cJSON_Delete(j);
    free(t2);
    stop();
}
END_TEST

START_TEST(failures_timeouts_expiry_manual)
{
    const char *extra[] = {"--command-fail-rate", "1", NULL};
    start(extra);
    char *id = create_ok(NULL, "SENT");
    static const char *failed[] = {"SENT", "DELIVERED", "FAILED"};
    expect_callbacks(id, 3, failed, NULL);
    free(id);
    stop();

    const char *extra2[] = {"--command-timeout-rate", "1", NULL};
    start(extra2);
    id = create_ok(NULL, "SENT");
    static const char *timeout[] = {"SENT", "TIMEOUT"};
    expect_callbacks(id, 2, timeout, NULL);
    free(id);
    /* Neither TIMEOUT nor (below) EXPIRED executed on the device: no executeTime. */
    char path[128];
    snprintf(path, sizeof path, "/commands?deviceId=%s", dev);
    struct th_sim_resp r = th_sim_admin(&s, "GET", path, NULL);
    cJSON *all = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 0), "status")->valuestring,
                     "TIMEOUT");
    ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 0), "executeTime"));
    cJSON_Delete(all);
    /* A pending command expires after expireTime seconds (pushed with --push-final-states only). */
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    admin_ok("POST", path, NULL, 204);
    id = create_ok("\"expireTime\":1", "PENDING");
    th_sleep_ms(1300);
    snprintf(path, sizeof path, "/commands?deviceId=%s", dev);
    r = th_sim_admin(&s, "GET", path, NULL);
    all = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 1), "status")->valuestring,
                     "EXPIRED");
    ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 1), "executeTime"));
    cJSON_Delete(all);
    free(id);
    stop();

    const char *extra3[] = {"--command-manual", "--device-type", "mqtt", NULL};
    start(extra3);
    th_sim_subscribe(&s, "app1", tok, "commandRsp", rx, "/push");
    th_sim_subscribe(&s, "app1", tok, "messageConfirm", rx, "/push");
    id = create_ok(NULL, "SENT");
    static const char *two[] = {"SENT", "DELIVERED"};
    expect_callbacks(id, 2, two, NULL);
    th_sleep_ms(300);
    expect_callbacks(id, 2, two, NULL); /* stays DELIVERED */
    snprintf(path, sizeof path, "/commands/%s/complete", id);
    admin_ok("POST", path, "{\"resultCode\":\"SUCCESSFUL\",\"resultDetail\":{\"done\":true}}", 204);
    static const char *three[] = {"SENT", "DELIVERED", "SUCCESSFUL"};
    expect_callbacks(id, 3, three, "{\"done\":true}");
    admin_ok("POST", path, "{\"resultCode\":\"FAILED\"}", 409); /* already final */
    /* MQTT device: messageConfirm and commandRsp notifications to the subscribers. */
    ck_assert_uint_ge(th_sim_recv_wait(rx, 5, 5000), 5);
    cJSON *pushes = th_sim_recv_bodies(rx, "/push");
    ck_assert_int_eq(cJSON_GetArraySize(pushes), 2);
    bool confirm = false, rsp = false;
    cJSON *p;
    cJSON_ArrayForEach(p, pushes)
    {
        const char *t = cJSON_GetObjectItem(p, "notifyType")->valuestring;
        cJSON *hd = cJSON_GetObjectItem(p, "header");
        ck_assert_str_eq(cJSON_GetObjectItem(hd, "requestId")->valuestring, id);
        if (strcmp(t, "commandRsp") == 0) {
            rsp = true;
            ck_assert_str_eq(cJSON_GetObjectItem(hd, "deviceId")->valuestring, dev);
            ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "body"), "done")));
        } else {
            confirm = strcmp(t, "messageConfirm") == 0;
            ck_assert_str_eq(cJSON_GetObjectItem(hd, "status")->valuestring, "delivered");
        }
    }
    ck_assert(confirm && rsp);
    cJSON_Delete(pushes);
    free(id);
    stop();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const cmds_tests[] = {create_and_lifecycle_callbacks,
                                       create_errors,
                                       unknown_device_flags,
                                       pending_until_online_limit_cancel,
                                       query_paging_and_time_filter,
                                       drop_after_creates_then_drops,
                                       failures_timeouts_expiry_manual,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "cmds",
         .timeout_s = 60,
         .tests = cmds_tests,
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_cmds", cases);
}
