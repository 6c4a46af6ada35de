/*
 * test_command.c: the pure command module: topics, payload validation, the
 * REST bodies and the commandResponse payload users parse.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/command.h"
#include "th_main.h"

START_TEST(topic_parse_ok)
{
    struct ocb_command_target t;
    ck_assert_int_eq(command_topic_parse("iot", "iot/app1/dev-1/command", &t), OCB_OK);
    ck_assert(!t.cancel);
    ck_assert_str_eq(t.app_id, "app1");
    ck_assert_str_eq(t.device_id, "dev-1");
    ck_assert_int_eq(command_topic_parse("a/b", "a/b/x/y/commandCancel", &t), OCB_OK);
    ck_assert(t.cancel);
    ck_assert_str_eq(t.app_id, "x");
    ck_assert_str_eq(t.device_id, "y");
}
END_TEST

START_TEST(topic_parse_bad)
{
    static const char *const bad[] = {
        "iot/app1/dev/commandResponse",
        "iot/app1/command",
        "other/app1/dev/command",
        "iot//dev/command",
        "iot/app1//command",
        "iotx/app1/dev/command",
        "iot/app1/_/command",
        "iot/a/b/c/command",
        "iot",
    };
    struct ocb_command_target t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(command_topic_parse("iot", bad[i], &t) != OCB_OK, "%s accepted", bad[i]);
    char big[400] = "iot/";
    memset(big + 4, 'a', 200);
    memcpy(big + 204, "/d/command", 11);
    ck_assert_int_eq(command_topic_parse("iot", big, &t), OCB_ERR_TOO_BIG);
}
END_TEST

static enum ocb_command_code parse(bool cancel, const char *json, struct ocb_command_req *req)
{
    char why[160];
    enum ocb_command_code c =
        command_parse(cancel, json, strlen(json), 1024, req, why, sizeof(why));
    if (c != OCB_CMD_OK)
        ck_assert_msg(why[0] != '\0', "no reason for %s", json);
    return c;
}

START_TEST(parse_create_full)
{
    struct ocb_command_req r;
    ck_assert_int_eq(parse(false,
                           "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"on\":1,"
                           "\"s\":\"x\"},\"expireTime\":0,\"maxRetransmit\":3,"
                           "\"correlationId\":\"c-1\"}",
                           &r),
                     OCB_CMD_OK);
    ck_assert_int_eq(r.kind, OCB_COMMAND_CREATE);
    ck_assert_str_eq(r.service_id, "Light");
    ck_assert_str_eq(r.method, "SET");
    ck_assert_str_eq(r.paras, "{\"on\":1,\"s\":\"x\"}");
    ck_assert_int_eq(r.expire_time, 0);
    ck_assert_int_eq(r.max_retransmit, 3);
    ck_assert_str_eq(r.correlation_id, "\"c-1\"");

    char *body = NULL;
    ck_assert_int_eq(command_create_body(&r, "dev-1", "http://h:1/push/app", &body), OCB_OK);
    ck_assert_str_eq(body, "{\"deviceId\":\"dev-1\",\"command\":{\"serviceId\":\"Light\","
                           "\"method\":\"SET\",\"paras\":{\"on\":1,\"s\":\"x\"}},"
                           "\"callbackUrl\":\"http://h:1/push/app\",\"expireTime\":0,"
                           "\"maxRetransmit\":3}");
    free(body);
    command_req_cleanup(&r);
}
END_TEST

START_TEST(parse_create_minimal)
{
    struct ocb_command_req r;
    ck_assert_int_eq(parse(false, "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{}}", &r),
                     OCB_CMD_OK);
    ck_assert_ptr_null(r.correlation_id);
    ck_assert_int_eq(r.expire_time, -1);
    ck_assert_int_eq(r.max_retransmit, -1);
    char *body = NULL;
    ck_assert_int_eq(command_create_body(&r, "d", "", &body), OCB_OK);
    /* Absent optional fields stay absent: the platform's defaults apply. */
    ck_assert_str_eq(body, "{\"deviceId\":\"d\",\"command\":{\"serviceId\":\"S\",\"method\":\"M\","
                           "\"paras\":{}}}");
    free(body);
    command_req_cleanup(&r);
}
END_TEST

/* Every way a create payload can be wrong, and the code it gets. */
static const struct {
    const char *json;
    enum ocb_command_code code;
} bad_create[] = {
    {"", OCB_CMD_INVALID_PAYLOAD},
    {"not json", OCB_CMD_INVALID_PAYLOAD},
    {"[1,2]", OCB_CMD_INVALID_PAYLOAD},
    {"\"s\"", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{}} x", OCB_CMD_INVALID_PAYLOAD},
    {"{\"method\":\"M\",\"paras\":{}}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":1,\"method\":\"M\",\"paras\":{}}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"\",\"method\":\"M\",\"paras\":{}}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"paras\":{}}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":null,\"paras\":{}}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\"}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":[1]}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":\"x\"}", OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":-1}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":1.5}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":\"60\"}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":1e12}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"maxRetransmit\":4}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"maxRetransmit\":-1}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"maxRetransmit\":true}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expiretime\":5}",
     OCB_CMD_INVALID_PAYLOAD},
    {"{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":{}}",
     OCB_CMD_INVALID_PAYLOAD},
};

START_TEST(parse_create_bad)
{
    struct ocb_command_req r;
    enum ocb_command_code c = parse(false, bad_create[_i].json, &r);
    ck_assert_msg(c == bad_create[_i].code, "%s gave %s", bad_create[_i].json,
                  command_code_name(c));
    command_req_cleanup(&r);
}
END_TEST

START_TEST(parse_limits)
{
    struct ocb_command_req r;
    char why[128];
    const char *ok = "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{}}";
    size_t n = strlen(ok);
    ck_assert_int_eq(command_parse(false, ok, n, n, &r, why, sizeof(why)), OCB_CMD_OK);
    command_req_cleanup(&r);
    ck_assert_int_eq(command_parse(false, ok, n, n - 1, &r, why, sizeof(why)),
                     OCB_CMD_PAYLOAD_TOO_LARGE);
    command_req_cleanup(&r);
    /* An embedded NUL must not let a prefix pass for the whole payload. */
    char nul[80];
    memcpy(nul, ok, n);
    nul[n] = '\0';
    memcpy(nul + n + 1, "junk", 4);
    ck_assert_int_eq(command_parse(false, nul, n + 5, 1024, &r, why, sizeof(why)),
                     OCB_CMD_INVALID_PAYLOAD);
    command_req_cleanup(&r);

    char longsvc[200];
    int len = snprintf(longsvc, sizeof(longsvc),
                       "{\"serviceId\":\"%065d\",\"method\":\"M\",\"paras\":{}}", 0);
    ck_assert_int_eq(command_parse(false, longsvc, (size_t)len, 1024, &r, why, sizeof(why)),
                     OCB_CMD_INVALID_PAYLOAD);
    command_req_cleanup(&r);
}
END_TEST

/* Found by fuzz_command: a key with a newline must not break the one-line reason. */
START_TEST(reason_is_one_line)
{
    struct ocb_command_req r;
    char why[160];
    const char *p = "{\"comm\\ndId\":\"5\"}";
    ck_assert_int_eq(command_parse(true, p, strlen(p), 1024, &r, why, sizeof(why)),
                     OCB_CMD_INVALID_PAYLOAD);
    ck_assert_ptr_null(strchr(why, '\n'));
    ck_assert_str_eq(why, "unknown key \"comm?dId\"");
    command_req_cleanup(&r);
}
END_TEST

START_TEST(parse_keeps_correlation_on_error)
{
    struct ocb_command_req r;
    ck_assert_int_eq(parse(false, "{\"correlationId\":42,\"method\":\"M\"}", &r),
                     OCB_CMD_INVALID_PAYLOAD);
    ck_assert_str_eq(r.correlation_id, "42");
    command_req_cleanup(&r);
    ck_assert_ptr_null(r.correlation_id);
}
END_TEST

START_TEST(parse_cancel)
{
    struct ocb_command_req r;
    ck_assert_int_eq(parse(true, "{\"commandId\":\"abc\",\"correlationId\":\"k\"}", &r),
                     OCB_CMD_OK);
    ck_assert_int_eq(r.kind, OCB_COMMAND_CANCEL);
    ck_assert_str_eq(r.command_id, "abc");
    command_req_cleanup(&r);

    ck_assert_int_eq(parse(true, "{\"all\":true}", &r), OCB_CMD_OK);
    ck_assert_int_eq(r.kind, OCB_COMMAND_CANCEL_ALL);
    command_req_cleanup(&r);

    static const char *const bad[] = {
        "{}",
        "{\"all\":false}",
        "{\"all\":1}",
        "{\"commandId\":\"\"}",
        "{\"commandId\":7}",
        "{\"commandId\":\"a\",\"all\":true}",
        "{\"commandId\":\"a\",\"serviceId\":\"S\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(true, bad[i], &r) == OCB_CMD_INVALID_PAYLOAD, "%s", bad[i]);
        command_req_cleanup(&r);
    }

    char *body = NULL;
    ck_assert_int_eq(command_cancel_all_body("dev \"1\"", &body), OCB_OK);
    ck_assert_str_eq(body, "{\"deviceId\":\"dev \\\"1\\\"\"}");
    free(body);
}
END_TEST

START_TEST(callback_url)
{
    char url[256];
    ck_assert_int_eq(command_callback_url("http://b:8080", "app", "", url, sizeof(url)), OCB_OK);
    ck_assert_str_eq(url, "http://b:8080/push/app");
    ck_assert_int_eq(command_callback_url("https://b:443/", "app", "t k", url, sizeof(url)),
                     OCB_OK);
    ck_assert_str_eq(url, "https://b:443/push/app/t%20k");
    ck_assert_int_eq(command_callback_url("http://b:8080", "app", NULL, url, 10), OCB_ERR_TOO_BIG);
    char esc[32];
    ck_assert_int_eq(command_url_escape("a/b?c", esc, sizeof(esc)), OCB_OK);
    ck_assert_str_eq(esc, "a%2Fb%3Fc");
    ck_assert_int_eq(command_url_escape("abcd", esc, 4), OCB_ERR_TOO_BIG);
}
END_TEST

START_TEST(response_ok)
{
    const char *platform = "{\"commandId\":\"5c25\",\"status\":\"SENT\",\"deviceId\":\"d\"}";
    struct ocb_command_outcome o = {
        .correlation_id = "\"c-1\"",
        .ok = true,
        .http_status = 201,
        .platform_body = platform,
        .platform_len = strlen(platform),
    };
    char *out = NULL;
    size_t len = 0;
    ck_assert_int_eq(command_response_format(&o, &out, &len), OCB_OK);
    ck_assert_str_eq(out, "{\"correlationId\":\"c-1\",\"ok\":true,\"httpStatus\":201,"
                          "\"commandId\":\"5c25\",\"status\":\"SENT\",\"platform\":"
                          "{\"commandId\":\"5c25\",\"status\":\"SENT\",\"deviceId\":\"d\"}}");
    ck_assert_uint_eq(len, strlen(out));
    free(out);

    /* A create adopted after its answer was lost says so. */
    o.reconciled = true;
    o.http_status = 200;
    ck_assert_int_eq(command_response_format(&o, &out, &len), OCB_OK);
    ck_assert_str_eq(out, "{\"correlationId\":\"c-1\",\"ok\":true,\"httpStatus\":200,"
                          "\"commandId\":\"5c25\",\"status\":\"SENT\",\"reconciled\":true,"
                          "\"platform\":"
                          "{\"commandId\":\"5c25\",\"status\":\"SENT\",\"deviceId\":\"d\"}}");
    free(out);
    o.reconciled = false;

    o.platform_body = "not json";
    o.platform_len = 8;
    ck_assert_int_eq(command_response_format(&o, &out, &len), OCB_ERR_PROTOCOL);
    ck_assert_ptr_null(out);
}
END_TEST

START_TEST(response_error)
{
    struct ocb_command_outcome o = {
        .correlation_id = NULL,
        .ok = false,
        .http_status = 403,
        .code = "1010009",
        .desc = "app throttle exceed.",
        .from_platform = true,
        .retryable = true,
    };
    char *out = NULL;
    ck_assert_int_eq(command_response_format(&o, &out, NULL), OCB_OK);
    ck_assert_str_eq(out, "{\"correlationId\":null,\"ok\":false,\"httpStatus\":403,\"error\":"
                          "{\"code\":\"1010009\",\"desc\":\"app throttle exceed.\","
                          "\"source\":\"platform\"},\"retryable\":true}");
    free(out);

    o.http_status = 0;
    o.code = command_code_name(OCB_CMD_QUEUE_FULL);
    o.desc = "queue full";
    o.from_platform = false;
    o.correlation_id = "17";
    ck_assert_int_eq(command_response_format(&o, &out, NULL), OCB_OK);
    ck_assert_str_eq(out, "{\"correlationId\":17,\"ok\":false,\"httpStatus\":null,\"error\":"
                          "{\"code\":\"QUEUE_FULL\",\"desc\":\"queue full\",\"source\":"
                          "\"bridge\"},\"retryable\":true}");
    free(out);
}
END_TEST

START_TEST(status_parsing)
{
    const char *s = "{\"deviceId\":\"d\",\"commandId\":\"c1\",\"result\":{\"resultCode\":"
                    "\"SUCCESSFUL\",\"resultDetail\":{\"x\":1}}}";
    char id[64], rc[32];
    ck_assert_int_eq(command_status_parse(s, strlen(s), id, sizeof(id), rc, sizeof(rc)), OCB_OK);
    ck_assert_str_eq(id, "c1");
    ck_assert_str_eq(rc, "SUCCESSFUL");
    ck_assert(command_status_is_final(rc));
    ck_assert(!command_status_is_final("DELIVERED"));
    ck_assert(!command_status_is_final(""));
    ck_assert_int_eq(command_status_parse("{}", 2, id, sizeof(id), rc, sizeof(rc)),
                     OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(command_status_parse("x", 1, id, sizeof(id), NULL, 0), OCB_ERR_INVALID);

    const char *reply = "{\"commandId\":\"0e34\",\"status\":\"PENDING\"}";
    ck_assert_int_eq(command_reply_command_id(reply, strlen(reply), id, sizeof(id)), OCB_OK);
    ck_assert_str_eq(id, "0e34");
    ck_assert_int_eq(command_reply_command_id(reply, strlen(reply), id, 3), OCB_ERR_TOO_BIG);
    ck_assert_int_eq(command_reply_command_id("{}", 2, id, sizeof(id)), OCB_ERR_NOT_FOUND);
}
END_TEST

START_TEST(code_names)
{
    ck_assert_str_eq(command_code_name(OCB_CMD_RETAINED_COMMAND_IGNORED),
                     "RETAINED_COMMAND_IGNORED");
    ck_assert_str_eq(command_code_name(OCB_CMD_PLATFORM_UNREACHABLE), "PLATFORM_UNREACHABLE");
    ck_assert_str_eq(command_code_name(OCB_CMD_OUTCOME_UNKNOWN), "OUTCOME_UNKNOWN");
    ck_assert_str_eq(command_code_name((enum ocb_command_code)999), "INTERNAL");
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const core_tests[] = {topic_parse_ok,
                                       topic_parse_bad,
                                       parse_create_full,
                                       parse_create_minimal,
                                       parse_create_bad,
                                       parse_limits,
                                       parse_keeps_correlation_on_error,
                                       reason_is_one_line,
                                       parse_cancel,
                                       callback_url,
                                       response_ok,
                                       response_error,
                                       status_parsing,
                                       code_names,
                                       NULL};
    const struct th_loop core_loops[] = {
        {parse_create_bad, 0, (int)(sizeof(bad_create) / sizeof(bad_create[0]))}, {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "core", .tests = core_tests, .loops = core_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "command", cases);
}
