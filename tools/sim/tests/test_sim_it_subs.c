/*
 * test_sim_it_subs.c: the subscription API (docs/platform-api.md §5); pushes reach exactly the
 * subscribers of a notifyType.
 */
#include "th_sim.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "th_main.h"

#define SUBS    "/iocm/app/sub/v1.2.0/subscriptions"
#define ILLEGAL "{\"error_code\":\"100222\",\"error_desc\":\"The request callbackurl is illegal.\"}"

static struct th_sim s;
static char *tok;

static void start_with(const char *extra)
{
    const char *args[] = {"--app", "app1:sec1", "--app", "app2:sec2", extra, NULL};
    th_sim_start(&s, args);
    tok = th_sim_login(&s, "app1", "sec1");
}

static void start(void)
{
    start_with(NULL);
}

static void stop(void)
{
    free(tok);
    th_sim_stop(&s);
}

static struct th_sim_resp sub(const char *path, const char *type, const char *key, const char *url)
{
    char body[512];
    snprintf(body, sizeof body, "{\"notifyType\":\"%s\",\"%s\":\"%s\"}", type, key, url);
    return th_sim_api(&s, "POST", path, "app1", tok, body);
}

static cJSON *get_json(const char *path, long status)
{
    struct th_sim_resp r = th_sim_api(&s, "GET", path, "app1", tok, NULL);
    th_sim_expect(&r, status, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    return j;
}

START_TEST(create_conflict_and_url_rules)
{
    start();
    struct th_sim_resp r =
        sub(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9000/cb/app1");
    th_sim_expect(&r, 201, NULL);
    cJSON *j = th_sim_json(&r);
    ck_assert_int_eq(strlen(cJSON_GetObjectItem(j, "subscriptionId")->valuestring), 36);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "notifyType")->valuestring, "deviceDataChanged");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "callbackUrl")->valuestring,
                     "http://127.0.0.1:9000/cb/app1");
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "clientIds")); /* not an MQTT subscriber */
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    /* §5.1: the 201 carries clientIds for channel MQTT. */
    r = th_sim_api(&s, "POST", SUBS, "app1", tok,
                   "{\"notifyType\":\"deviceDeleted\",\"callbackUrl\":\"http://127.0.0.1:9000/m\","
                   "\"channel\":\"MQTT\"}");
    th_sim_expect(&r, 201, NULL);
    j = th_sim_json(&r);
    ck_assert(cJSON_IsArray(cJSON_GetObjectItem(j, "clientIds")));
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    /* A body appId naming another app is an authorization, which no app here has (like
       ?appId=); the caller's own appId is fine. */
    r = th_sim_api(&s, "POST", SUBS, "app1", tok,
                   "{\"notifyType\":\"bindDevice\",\"callbackUrl\":\"http://127.0.0.1:9000/a\","
                   "\"appId\":\"app2\"}");
    th_sim_expect(
        &r, 403,
        "{\"error_code\":\"100217\",\"error_desc\":\"The application hasn't been authorized.\"}");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "POST", SUBS, "app1", tok,
                   "{\"notifyType\":\"bindDevice\",\"callbackUrl\":\"http://127.0.0.1:9000/a\","
                   "\"appId\":\"app1\"}");
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9000/other");
    th_sim_expect(&r, 409,
                  "{\"error_code\":\"100227\",\"error_desc\":\"The resource is conflicted.\"}");
    th_sim_resp_free(&r);
    static const char *bad[] = {"http://127.0.0.1:9000", "http://127.0.0.1/cb",
                                "ftp://1.2.3.4:21/x", "not a url"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = sub(SUBS, "deviceAdded", "callbackUrl", bad[i]);
        th_sim_expect(&r, 400, ILLEGAL);
        th_sim_resp_free(&r);
    }
    /* All of an app's callbacks share one IP:port. */
    r = sub(SUBS, "deviceAdded", "callbackUrl", "http://127.0.0.1:9001/cb");
    th_sim_expect(&r, 400, ILLEGAL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "deviceAdded", "callbackUrl", "http://127.0.0.2:9000/cb");
    th_sim_expect(&r, 400, ILLEGAL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "deviceAdded", "callbackurl", "https://127.0.0.1:9000/"); /* lowercase key */
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "noSuchType", "callbackUrl", "http://127.0.0.1:9000/cb");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "swUpgradeResultNotify", "callbackUrl", "http://127.0.0.1:9000/cb");
    th_sim_expect(&r, 400, NULL); /* management types go to /iodm */
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "POST", SUBS, "app1", tok, "{\"notifyType\":");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    /* Another app has its own endpoint and its own types. */
    char *t2 = th_sim_login(&s, "app2", "sec2");
    r = th_sim_api(
        &s, "POST", SUBS, "app2", t2,
        "{\"notifyType\":\"deviceDataChanged\",\"callbackUrl\":\"http://10.0.0.1:80/x\"}");
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    free(t2);
    stop();
}
END_TEST

START_TEST(list_filter_paging_get_delete)
{
    start();
    static const char *types[] = {
        "deviceAdded",        "bindDevice",         "deviceInfoChanged", "deviceDataChanged",
        "deviceDatasChanged", "deviceDeleted",      "messageConfirm",    "commandRsp",
        "deviceEvent",        "serviceInfoChanged", "ruleEvent",         "deviceCapabilitiesAdded"};
    size_t n = sizeof types / sizeof *types;
    for (size_t i = 0; i < n; i++) {
        struct th_sim_resp r = sub(SUBS, types[i], "callbackUrl",
                                   i % 2 ? "http://127.0.0.1:9000/a" : "http://127.0.0.1:9000/b");
        th_sim_expect(&r, 201, NULL);
        th_sim_resp_free(&r);
    }
    cJSON *j = get_json(SUBS, 200); /* default page of 10 */
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, (int)n);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "pageSize")->valueint, 10);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "subscriptions")), 10);
    cJSON_Delete(j);
    j = get_json(SUBS "?pageNo=1&pageSize=10", 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "subscriptions")), (int)n - 10);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "pageNo")->valueint, 1);
    cJSON_Delete(j);
    j = get_json(SUBS "?notifyType=bindDevice", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 1);
    cJSON *one = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "subscriptions"), 0);
    char id[64], path[128];
    snprintf(id, sizeof id, "%s", cJSON_GetObjectItem(one, "subscriptionId")->valuestring);
    cJSON_Delete(j);
    j = get_json(SUBS "?callbackUrl=http%3A%2F%2F127.0.0.1%3A9000%2Fa&pageSize=100", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, (int)n / 2);
    cJSON_Delete(j);
    j = get_json(SUBS "?pageSize=0", 400);
    cJSON_Delete(j);
    snprintf(path, sizeof path, SUBS "/%s", id);
    j = get_json(path, 200);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "notifyType")->valuestring, "bindDevice");
    cJSON_Delete(j);
    struct th_sim_resp r = th_sim_api(&s, "DELETE", path, "app1", tok, NULL);
    th_sim_expect(&r, 204, "");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "DELETE", path, "app1", tok, NULL);
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    j = get_json(path, 404);
    cJSON_Delete(j);
    /* Batch delete by callbackUrl, then everything. */
    r = th_sim_api(&s, "DELETE", SUBS "?callbackUrl=http%3A%2F%2F127.0.0.1%3A9000%2Fb", "app1", tok,
                   NULL);
    th_sim_expect(&r, 204, "");
    th_sim_resp_free(&r);
    j = get_json(SUBS "?pageSize=100", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, (int)n / 2 - 1);
    cJSON_Delete(j);
    r = th_sim_api(&s, "DELETE", SUBS, "app1", tok, NULL);
    th_sim_expect(&r, 204, "");
    th_sim_resp_free(&r);
    j = get_json(SUBS, 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 0);
    cJSON_Delete(j);
    stop();
}
END_TEST

/* docs/platform-api.md §2, §5.4: one IP:port per app, so moving means deleting first.  The bridge's
 * subscription sync relies on exactly these answers. */
START_TEST(moving_an_app_means_deleting_first)
{
    start();
    struct th_sim_resp r = sub(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9000/a");
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    r = sub(SUBS, "deviceAdded", "callbackUrl", "http://127.0.0.1:9000/a");
    th_sim_expect(&r, 201, NULL);
    th_sim_resp_free(&r);
    r = sub("/iodm/app/sub/v1.1.0/subscribe", "fwUpgradeResultNotify", "callbackUrl",
            "http://127.0.0.1:9000/a");
    th_sim_expect(&r, 200, "");
    th_sim_resp_free(&r);
    /* The same type at the new address: another type still holds the old one. */
    r = sub(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9100/a");
    th_sim_expect(&r, 400, ILLEGAL);
    th_sim_resp_free(&r);
    /* The v1.2.0 list shows every subscription of the app, the management one too (lenient:
     * UNCONFIRMED on the real platform), and each can be deleted by id. */
    cJSON *j = get_json(SUBS "?pageSize=100", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 3);
    const cJSON *it;
    char ids[3][64];
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "subscriptions")) snprintf(
        ids[n++], sizeof ids[0], "%s", cJSON_GetObjectItem(it, "subscriptionId")->valuestring);
    cJSON_Delete(j);
    for (int i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof path, SUBS "/%s", ids[i]);
        r = th_sim_api(&s, "DELETE", path, "app1", tok, NULL);
        th_sim_expect(&r, 204, "");
        th_sim_resp_free(&r);
        /* Until the last one at the old address is gone, the new one is refused. */
        r = sub(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9100/a");
        th_sim_expect(&r, i + 1 < n ? 400 : 201, i + 1 < n ? ILLEGAL : NULL);
        th_sim_resp_free(&r);
    }
    r = sub("/iodm/app/sub/v1.1.0/subscribe", "fwUpgradeResultNotify", "callbackUrl",
            "http://127.0.0.1:9100/a");
    th_sim_expect(&r, 200, "");
    th_sim_resp_free(&r);
    j = get_json(SUBS "?pageSize=100", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 2);
    cJSON_Delete(j);
    stop();
}
END_TEST

#define CONFLICT "{\"error_code\":\"100227\",\"error_desc\":\"The resource is conflicted.\"}"

/* The callbackUrl of the app's one subscription of type. */
static void expect_url(const char *type, const char *url)
{
    char path[160];
    snprintf(path, sizeof path, SUBS "?notifyType=%s", type);
    cJSON *j = get_json(path, 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "totalCount")->valueint, 1);
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "subscriptions"), 0),
                            "callbackUrl")
            ->valuestring,
        url);
    cJSON_Delete(j);
}

#define V11  "/iocm/app/sub/v1.1.0/subscribe"
#define IODM "/iodm/app/sub/v1.1.0/subscribe"

/* One subscribe call whose answer must be status (and body, unless NULL). */
static void sub_expect(const char *path, const char *type, const char *key, const char *url,
                       long status, const char *body)
{
    struct th_sim_resp r = sub(path, type, key, url);
    th_sim_expect(&r, status, body);
    th_sim_resp_free(&r);
}

START_TEST(older_subscribe_calls)
{
    start();
    sub_expect(V11, "deviceAdded", "callbackurl", "http://127.0.0.1:9000/old", 201, "");
    /* v1.1.0 documents nothing of its own for a subscribed type: the documented 409 applies,
       whether the type was subscribed through v1.1.0 or v1.2.0. */
    sub_expect(V11, "deviceAdded", "callbackUrl", "http://127.0.0.1:9000/new", 409, CONFLICT);
    expect_url("deviceAdded", "http://127.0.0.1:9000/old");
    sub_expect(SUBS, "deviceDataChanged", "callbackUrl", "http://127.0.0.1:9000/v12", 201, NULL);
    sub_expect(V11, "deviceDataChanged", "callbackurl", "http://127.0.0.1:9000/v11", 409, CONFLICT);
    expect_url("deviceDataChanged", "http://127.0.0.1:9000/v12");
    sub_expect(IODM, "fwUpgradeResultNotify", "callbackUrl", "http://127.0.0.1:9000/up", 200, "");
    sub_expect(IODM, "deviceAdded", "callbackUrl", "http://127.0.0.1:9000/up", 400, NULL);
    expect_url("deviceAdded", "http://127.0.0.1:9000/old");
    stop();

    /* UNCONFIRMED alternative: v1.1.0 re-points the existing subscription. */
    start_with("--v11-subscribe-replaces");
    sub_expect(SUBS, "deviceAdded", "callbackUrl", "http://127.0.0.1:9000/old", 201, NULL);
    sub_expect(V11, "deviceAdded", "callbackurl", "http://127.0.0.1:9000/new", 201, "");
    expect_url("deviceAdded", "http://127.0.0.1:9000/new");
    /* v1.2.0 keeps its rule. */
    sub_expect(SUBS, "deviceAdded", "callbackUrl", "http://127.0.0.1:9000/new", 409, CONFLICT);
    stop();
}
END_TEST

START_TEST(pushes_go_to_subscribers_of_the_type)
{
    start();
    struct th_sim_receiver *rx = th_sim_recv_start(false);
    th_sim_subscribe(&s, "app1", tok, "deviceAdded", rx, "/push/app1");
    th_sim_subscribe(&s, "app1", tok, "ruleEvent", rx, "/push/app1/rules");
    const char *rule =
        "{\"notifyType\":\"ruleEvent\",\"author\":\"u\",\"ruleId\":\"r1\",\"reasons\":[]}";
    char body[512];
    snprintf(body, sizeof body, "{\"appId\":\"app1\",\"body\":%s}", rule);
    struct th_sim_resp r = th_sim_admin(&s, "POST", "/inject", body);
    th_sim_expect(&r, 200, "{\"queued\":1}");
    th_sim_resp_free(&r);
    /* Not subscribed by app1 / unknown app: nothing goes out. */
    r = th_sim_admin(&s, "POST", "/inject",
                     "{\"appId\":\"app1\",\"body\":{\"notifyType\":\"deviceDeleted\"}}");
    th_sim_expect(&r, 200, "{\"queued\":0}");
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/inject",
                     "{\"appId\":\"app2\",\"body\":{\"notifyType\":\"ruleEvent\"}}");
    th_sim_expect(&r, 200, "{\"queued\":0}");
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/inject",
                     "{\"appId\":\"nope\",\"body\":{\"notifyType\":\"ruleEvent\"}}");
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "POST", "/inject", "{\"appId\":\"app1\",\"body\":{\"no\":1}}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    /* raw bodies are pushed byte for byte */
    r = th_sim_admin(
        &s, "POST", "/inject",
        "{\"appId\":\"app1\",\"raw\":\"{ \\\"notifyType\\\" : \\\"deviceAdded\\\" }\"}");
    th_sim_expect(&r, 200, "{\"queued\":1}");
    th_sim_resp_free(&r);
    ck_assert_uint_eq(th_sim_recv_wait(rx, 2, 5000), 2);
    th_sleep_ms(200);
    ck_assert_uint_eq(th_sim_recv_count(rx), 2);
    bool saw_rule = false, saw_raw = false;
    for (size_t i = 0; i < 2; i++) {
        struct th_sim_push p = th_sim_recv_get(rx, i);
        ck_assert_str_eq(p.content_type, "application/json");
        if (strcmp(p.path, "/push/app1/rules") == 0) {
            ck_assert_str_eq(p.body, rule);
            saw_rule = true;
        } else {
            ck_assert_str_eq(p.path, "/push/app1");
            ck_assert_str_eq(p.body, "{ \"notifyType\" : \"deviceAdded\" }");
            saw_raw = true;
        }
        free(p.body);
    }
    ck_assert(saw_rule && saw_raw);
    th_sim_recv_stop(rx);
    stop();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const subs_tests[] = {create_conflict_and_url_rules,
                                       list_filter_paging_get_delete,
                                       older_subscribe_calls,
                                       moving_an_app_means_deleting_first,
                                       pushes_go_to_subscribers_of_the_type,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "subs",
         .timeout_s = 60,
         .tests = subs_tests,
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_subs", cases);
}
