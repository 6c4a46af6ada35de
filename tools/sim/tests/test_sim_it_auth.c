/*
 * test_sim_it_auth.c: login, refreshToken, token invalidation and expiry, the header rules and the
 * per-app throttle (docs/platform-api.md §4), over mutual TLS.
 */
#include "th_sim.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "th_main.h"

#define SUBS "/iocm/app/sub/v1.2.0/subscriptions"
#define INVALID_TOKEN                                                                              \
    "{\"resultcode\":\"1010005\",\"resultmsg\":\"Invalid access token or appId.\"}"

static struct th_sim_resp login_raw(const struct th_sim *s, const char *form)
{
    char url[256];
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/login", s->api);
    const char *hs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    return th_sim_http("POST", url, hs, form, TH_SIM_CERT_CLIENT);
}

static struct th_sim_resp refresh_raw(const struct th_sim *s, const char *json)
{
    char url[256];
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/refreshToken", s->api);
    const char *hs[] = {"Content-Type: application/json", NULL};
    return th_sim_http("POST", url, hs, json, TH_SIM_CERT_CLIENT);
}

static void expect_status(const struct th_sim *s, const char *app, const char *token, long status,
                          const char *body)
{
    struct th_sim_resp r = th_sim_api(s, "GET", SUBS, app, token, NULL);
    th_sim_expect(&r, status, body);
    th_sim_resp_free(&r);
}

START_TEST(login_answers)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", "--app", "app2:sec2", "--token-ttl", "1234", NULL};
    th_sim_start(&s, args);
    struct th_sim_resp r = login_raw(&s, "appId=app1&secret=wrong");
    th_sim_expect(&r, 401,
                  "{\"error_code\":\"100208\",\"error_desc\":\"AppId or secret is not right.\"}");
    th_sim_resp_free(&r);
    r = login_raw(&s, "appId=nosuch&secret=sec1");
    th_sim_expect(&r, 401, NULL);
    th_sim_resp_free(&r);
    r = login_raw(&s, "appId=app1&secret=sec2"); /* another app's secret */
    th_sim_expect(&r, 401, NULL);
    th_sim_resp_free(&r);
    r = login_raw(&s, "appId=app1");
    th_sim_expect(
        &r, 400,
        "{\"error_code\":\"102202\",\"error_desc\":\"Required Parameter is null or empty.\"}");
    th_sim_resp_free(&r);
    r = login_raw(&s, "appId=app1&secret=sec1");
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "tokenType")->valuestring, "bearer");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "scope")->valuestring, "default");
    ck_assert_int_eq(cJSON_GetObjectItem(j, "expiresIn")->valueint, 1234);
    ck_assert_int_eq(strlen(cJSON_GetObjectItem(j, "accessToken")->valuestring), 32);
    ck_assert_int_eq(strlen(cJSON_GetObjectItem(j, "refreshToken")->valuestring), 32);
    ck_assert_str_ne(cJSON_GetObjectItem(j, "accessToken")->valuestring,
                     cJSON_GetObjectItem(j, "refreshToken")->valuestring);
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    th_sim_stop(&s);
}
END_TEST

START_TEST(business_call_header_rules)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", "--app", "app2:sec2", NULL};
    th_sim_start(&s, args);
    char *t1 = th_sim_login(&s, "app1", "sec1");
    expect_status(&s, "app1", t1, 200, NULL);
    expect_status(&s, NULL, t1, 401,
                  "{\"error_code\":\"100025\",\"error_desc\":\"AppId for auth not exist.\"}");
    expect_status(&s, "app1", NULL, 403, INVALID_TOKEN);
    expect_status(&s, "app1", "0123456789abcdef0123456789abcdef", 403, INVALID_TOKEN);
    expect_status(&s, "app2", t1, 403, INVALID_TOKEN); /* token of another app */
    /* ?appId= naming another (unauthorized) app. */
    struct th_sim_resp r = th_sim_api(&s, "GET", SUBS "?appId=app2", "app1", t1, NULL);
    th_sim_expect(
        &r, 403,
        "{\"error_code\":\"100217\",\"error_desc\":\"The application hasn't been authorized.\"}");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", SUBS "?appId=app1", "app1", t1, NULL);
    th_sim_expect(&r, 200, NULL);
    th_sim_resp_free(&r);
    free(t1);
    th_sim_stop(&s);
}
END_TEST

/* _i = 0: the default (a refresh leaves the previous access token alive until it expires);
 * _i = 1: --refresh-revokes (the previous one dies at once). */
START_TEST(new_login_kills_old_tokens_and_refresh_works)
{
    struct th_sim s;
    bool revokes = _i == 1;
    const char *args[] = {"--app", "app1:sec1", revokes ? "--refresh-revokes" : NULL, NULL};
    th_sim_start(&s, args);
    struct th_sim_resp r = login_raw(&s, "appId=app1&secret=sec1");
    cJSON *first = th_sim_json(&r);
    th_sim_resp_free(&r);
    const char *t1 = cJSON_GetObjectItem(first, "accessToken")->valuestring;
    const char *rt1 = cJSON_GetObjectItem(first, "refreshToken")->valuestring;
    expect_status(&s, "app1", t1, 200, NULL);
    char *t2 = th_sim_login(&s, "app1", "sec1");
    expect_status(&s, "app1", t1, 403, INVALID_TOKEN); /* only the last token is valid */
    expect_status(&s, "app1", t2, 200, NULL);
    /* The refresh token of the first login died with it. */
    char body[256];
    snprintf(body, sizeof body, "{\"appId\":\"app1\",\"secret\":\"sec1\",\"refreshToken\":\"%s\"}",
             rt1);
    r = refresh_raw(&s, body);
    th_sim_expect(&r, 401,
                  "{\"error_code\":\"100208\",\"error_desc\":\"AppId or secret is not right.\"}");
    th_sim_resp_free(&r);
    /* Log in once more to get a live refresh token, then refresh. */
    r = login_raw(&s, "appId=app1&secret=sec1");
    cJSON *third = th_sim_json(&r);
    th_sim_resp_free(&r);
    const char *t3 = cJSON_GetObjectItem(third, "accessToken")->valuestring;
    snprintf(body, sizeof body, "{\"appId\":\"app1\",\"secret\":\"sec1\",\"refreshToken\":\"%s\"}",
             cJSON_GetObjectItem(third, "refreshToken")->valuestring);
    r = refresh_raw(&s, body);
    th_sim_expect(&r, 200, NULL);
    cJSON *fresh = th_sim_json(&r);
    th_sim_resp_free(&r);
    const char *t4 = cJSON_GetObjectItem(fresh, "accessToken")->valuestring;
    ck_assert_str_ne(t3, t4);
    if (revokes)
        expect_status(&s, "app1", t3, 403, INVALID_TOKEN);
    else
        expect_status(&s, "app1", t3, 200, NULL);
    expect_status(&s, "app1", t4, 200, NULL);
    r = refresh_raw(&s, body); /* a refresh token works once */
    th_sim_expect(&r, 401, NULL);
    th_sim_resp_free(&r);
    r = refresh_raw(&s, "{\"appId\":\"app1\"}");
    th_sim_expect(&r, 400, NULL);
    th_sim_resp_free(&r);
    /* The control API can revoke tokens (a platform-side invalidation). */
    r = th_sim_admin(&s, "POST", "/apps/app1/revoke", NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    expect_status(&s, "app1", t4, 403, INVALID_TOKEN);
    cJSON_Delete(first);
    cJSON_Delete(third);
    cJSON_Delete(fresh);
    free(t2);
    th_sim_stop(&s);
}
END_TEST

START_TEST(token_expires_after_ttl)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", "--token-ttl", "1", NULL};
    th_sim_start(&s, args);
    char *t = th_sim_login(&s, "app1", "sec1");
    expect_status(&s, "app1", t, 200, NULL);
    th_sleep_ms(1200);
    expect_status(&s, "app1", t, 403, INVALID_TOKEN);
    free(t);
    th_sim_stop(&s);
}
END_TEST

START_TEST(throttle_per_app)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", "--app", "app2:sec2", "--throttle", "3/2", NULL};
    th_sim_start(&s, args);
    char *t1 = th_sim_login(&s, "app1", "sec1"), *t2 = th_sim_login(&s, "app2", "sec2");
    for (int i = 0; i < 3; i++)
        expect_status(&s, "app1", t1, 200, NULL);
    expect_status(&s, "app1", t1, 403,
                  "{\"resultcode\":\"1010009\",\"resultmsg\":\"app throttle exceed.\"}");
    expect_status(&s, "app2", t2, 200, NULL); /* per app */
    th_sleep_ms(2100);
    expect_status(&s, "app1", t1, 200, NULL); /* the window moved on */
    free(t1);
    free(t2);
    th_sim_stop(&s);

    const char *a2[] = {"--app",      "app1:sec1", "--throttle", "1/60", "--throttle-shape",
                        "error_code", NULL};
    th_sim_start(&s, a2);
    t1 = th_sim_login(&s, "app1", "sec1");
    expect_status(&s, "app1", t1, 200, NULL);
    expect_status(&s, "app1", t1, 403,
                  "{\"error_code\":\"1010009\",\"error_desc\":\"app throttle exceed.\"}");
    free(t1);
    th_sim_stop(&s);
}
END_TEST

START_TEST(request_log_and_reset)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", NULL};
    th_sim_start(&s, args);
    char *t = th_sim_login(&s, "app1", "sec1");
    struct th_sim_resp r =
        th_sim_api(&s, "GET", SUBS "?pageNo=0&notifyType=deviceAdded", "app1", t, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "GET", "/requests?path=/iocm/app/sub", NULL);
    cJSON *log = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(log), 1);
    cJSON *e = cJSON_GetArrayItem(log, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(e, "method")->valuestring, "GET");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "path")->valuestring, SUBS);
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(e, "query"), "notifyType")->valuestring,
        "deviceAdded");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "headers"), "app_key")->valuestring,
                     "app1");
    ck_assert_int_eq(cJSON_GetObjectItem(e, "status")->valueint, 200);
    ck_assert(strstr(cJSON_GetObjectItem(e, "response")->valuestring, "\"totalCount\":0"));
    cJSON_Delete(log);
    r = th_sim_admin(&s, "GET", "/requests", NULL);
    log = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(log), 2);
    ck_assert(strstr(cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "body")->valuestring,
                     "secret=sec1"));
    cJSON_Delete(log);
    r = th_sim_admin(&s, "POST", "/reset", NULL);
    th_sim_expect(&r, 204, NULL);
    th_sim_resp_free(&r);
    expect_status(&s, "app1", t, 403, INVALID_TOKEN); /* tokens forgotten */
    r = th_sim_admin(&s, "GET", "/requests", NULL);
    log = th_sim_json(&r);
    th_sim_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(log), 1); /* only the call after the reset */
    cJSON_Delete(log);
    free(t);
    th_sim_stop(&s);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const auth_tests[] = {login_answers,
                                       business_call_header_rules,
                                       new_login_kills_old_tokens_and_refresh_works,
                                       token_expires_after_ttl,
                                       throttle_per_app,
                                       request_log_and_reset,
                                       NULL};
    const struct th_loop auth_loops[] = {{new_login_kills_old_tokens_and_refresh_works, 0, 2},
                                         {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "auth",
         .timeout_s = 60,
         .tests = auth_tests,
         .loops = auth_loops,
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_auth", cases);
}
