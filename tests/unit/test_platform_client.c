/*
 * test_platform_client.c: how platform answers are classified (the pure
 * part of platform_client).  Transfers, tokens and TLS are exercised against
 * ocbridge-sim by tests/integration/test_commands.c, not against a stub.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/platform_client.h"
#include "th_main.h"

static const struct {
    long status;
    const char *body;
    enum ocb_platform_class cls;
    const char *code;
} cases[] = {
    {201, "{\"commandId\":\"abc\",\"status\":\"SENT\"}", OCB_PLATFORM_OK, ""},
    {204, "", OCB_PLATFORM_OK, ""},
    {200, "{\"error_code\":\"0\",\"x\":1}", OCB_PLATFORM_OK, ""},
    /* HTTP 200 with an error body is an error (device not online). */
    {200, "{\"error_code\":\"100428\",\"error_desc\":\"The device is not online\"}",
     OCB_PLATFORM_FAILED, "100428"},
    /* Both token error shapes and the older code. */
    {403, "{\"resultcode\":\"1010005\",\"resultmsg\":\"Invalid access token or appId.\"}",
     OCB_PLATFORM_TOKEN, "1010005"},
    {401, "{\"error_code\":\"100002\",\"error_desc\":\"Invalid access token.\"}",
     OCB_PLATFORM_TOKEN, "100002"},
    {401, "{\"error_code\":\"100208\",\"error_desc\":\"AppId or secret is not right.\"}",
     OCB_PLATFORM_TOKEN, "100208"},
    {401, "", OCB_PLATFORM_TOKEN, ""},
    {403, "{\"error_code\":\"1010009\",\"error_desc\":\"app throttle exceed.\"}",
     OCB_PLATFORM_THROTTLED, "1010009"},
    {403, "{\"resultcode\":1010009,\"resultmsg\":\"app throttle exceed.\"}", OCB_PLATFORM_THROTTLED,
     "1010009"},
    {429, "", OCB_PLATFORM_THROTTLED, ""},
    {500, "{\"error_code\":\"100001\",\"error_desc\":\"Internal server error\"}",
     OCB_PLATFORM_RETRY, "100001"},
    {503, "<html>busy</html>", OCB_PLATFORM_RETRY, ""},
    {400, "{\"error_code\":\"100022\",\"error_desc\":\"The input is invalid\"}",
     OCB_PLATFORM_FAILED, "100022"},
    {404, "{\"error_code\":\"100403\",\"error_desc\":\"The device is not existed\"}",
     OCB_PLATFORM_FAILED, "100403"},
    {409, "{\"error_code\":\"100227\",\"error_desc\":\"The resource is conflicted\"}",
     OCB_PLATFORM_FAILED, "100227"},
};

START_TEST(classify_table)
{
    struct ocb_platform_reply r;
    memset(&r, 0, sizeof(r));
    const char *body = cases[_i].body;
    platform_client_classify(cases[_i].status, body, strlen(body), &r);
    ck_assert_msg(r.cls == cases[_i].cls, "%ld %s -> %s", cases[_i].status, body,
                  platform_client_class_name(r.cls));
    ck_assert_str_eq(r.code, cases[_i].code);
    ck_assert_int_eq(r.status, cases[_i].status);
    if (r.cls != OCB_PLATFORM_OK)
        ck_assert_msg(r.desc[0] != '\0', "no description for %s", body);
}
END_TEST

START_TEST(classify_keeps_desc)
{
    struct ocb_platform_reply r;
    const char *b = "{\"error_code\":\"100403\",\"error_desc\":\"The device is not existed\"}";
    platform_client_classify(404, b, strlen(b), &r);
    ck_assert_str_eq(r.desc, "The device is not existed");
    platform_client_classify(502, "", 0, &r);
    ck_assert_str_eq(r.desc, "HTTP 502");
}
END_TEST

static long long token_expiry(const char *body)
{
    struct ocb_platform_token t;
    ck_assert_msg(platform_client_token_parse(body, strlen(body), &t), "%s", body);
    ck_assert_str_eq(t.access, "a");
    return t.expires_in_s;
}

START_TEST(token_parse)
{
    struct ocb_platform_token t;
    const char *b = "{\"accessToken\":\"85fe\",\"tokenType\":\"bearer\",\"refreshToken\":\"c04a\","
                    "\"expiresIn\":3600,\"scope\":\"default\"}";
    ck_assert(platform_client_token_parse(b, strlen(b), &t));
    ck_assert_str_eq(t.access, "85fe");
    ck_assert_str_eq(t.refresh, "c04a");
    ck_assert_int_eq(t.expires_in_s, 3600);
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\",\"expiresIn\":\"7200\"}"), 7200);
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\",\"expiresIn\":\"\"}"), 3600);
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\",\"expiresIn\":0}"), 3600);
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\"}"), 3600);
    /* Beyond long long: clamped before the conversion, which would be undefined. */
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\",\"expiresIn\":1e300}"), 30LL * 86400);
    ck_assert_int_eq(token_expiry("{\"accessToken\":\"a\",\"expiresIn\":\"99999999999999999999\"}"),
                     30LL * 86400);
    ck_assert(!platform_client_token_parse("{\"accessToken\":\"\"}", 17, &t));
    ck_assert(!platform_client_token_parse("{\"accessToken\":1}", 16, &t));
    ck_assert(!platform_client_token_parse("", 0, &t));
    ck_assert(!platform_client_token_parse(NULL, 0, &t));
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const classify_tests[] = {classify_table, classify_keeps_desc, NULL};
    const struct th_loop classify_loops[] = {
        {classify_table, 0, (int)(sizeof(cases) / sizeof(cases[0]))}, {NULL, 0, 0}};
    const TTest *const token_tests[] = {token_parse, NULL};
    const struct th_case tcases[] = {
        {.name = "classify", .tests = classify_tests, .loops = classify_loops},
        {.name = "token", .tests = token_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "platform_client", tcases);
}
