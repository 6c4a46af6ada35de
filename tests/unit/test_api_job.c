/*
 * test_api_job.c: a device API request's retry decisions (api_job.h), with
 * plain replies: what each retry class does after an answer, after a send
 * whose answer was lost and after a refused connection; the reconciliation's
 * calls page by page, its found / not found / failed outcomes; the journal's
 * `sending` at start; and the register answer without its psk.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/api_job.h"
#include "th_main.h"

/* A job parsed from payload on app1/<device>/api with every op allowed. */
static void job_for(struct ocb_api_job *j, const char *device, const char *payload)
{
    char why[160];
    api_job_init(j);
    snprintf(j->target.app_id, sizeof(j->target.app_id), "app1");
    if (strcmp(device, "_") == 0)
        j->target.no_device = true;
    else
        snprintf(j->target.device_id, sizeof(j->target.device_id), "%s", device);
    ck_assert_int_eq(api_parse(&j->target, OCB_API_ALL_OPS, payload, strlen(payload), 65536,
                               &j->req, why, sizeof(why)),
                     OCB_CMD_OK);
}

static struct ocb_platform_reply reply(enum ocb_platform_class cls, long status, const char *code,
                                       const char *body)
{
    struct ocb_platform_reply r;
    memset(&r, 0, sizeof(r));
    r.cls = cls;
    r.status = status;
    r.body = body ? body : "";
    r.len = strlen(r.body);
    snprintf(r.code, sizeof(r.code), "%s", code ? code : "");
    return r;
}

/* No HTTP answer after the whole request went out. */
static struct ocb_platform_reply lost(void)
{
    struct ocb_platform_reply r = reply(OCB_PLATFORM_RETRY, 0, NULL, NULL);
    r.transport = OCB_ERR_IO;
    r.sent = true;
    return r;
}

START_TEST(reads_and_idempotent_writes_pass_everything_on)
{
    struct ocb_api_job j;
    struct ocb_platform_call c = {0};
    struct ocb_platform_reply f, r = lost();

    job_for(&j, "dev-1", "{\"op\":\"get\"}");
    ck_assert_int_eq(api_job_call(&j, 1000, &c), OCB_OK);
    ck_assert_str_eq(c.method, "GET");
    ck_assert_int_eq(j.first_s, 0); /* reads keep no first send */
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    ck_assert(!j.unknown);
    api_job_cleanup(&j);

    job_for(&j, "dev-1", "{\"op\":\"update\",\"name\":\"n\"}");
    ck_assert_int_eq(api_job_call(&j, 1000, &c), OCB_OK);
    ck_assert_str_eq(c.method, "PUT");
    ck_assert_int_eq(j.first_s, 1000);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    ck_assert_int_eq(api_job_call(&j, 1005, &c), OCB_OK);
    ck_assert_str_eq(c.method, "PUT"); /* simply resent */
    api_job_cleanup(&j);
}
END_TEST

START_TEST(delete_after_a_lost_answer_takes_not_found_as_done)
{
    struct ocb_api_job j;
    struct ocb_platform_reply f, r;

    /* Without a lost answer a 404 is the platform's error. */
    job_for(&j, "dev-1", "{\"op\":\"delete\"}");
    r = reply(OCB_PLATFORM_FAILED, 404, "100403", NULL);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    /* A refused connection is no lost answer either. */
    r = reply(OCB_PLATFORM_RETRY, 0, NULL, NULL);
    r.transport = OCB_ERR_IO;
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    ck_assert(!j.unknown);
    r = lost();
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    ck_assert(j.unknown);
    r = reply(OCB_PLATFORM_FAILED, 404, "100403", NULL);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_GONE);
    api_job_cleanup(&j);

    job_for(&j, "_", "{\"op\":\"groupDelete\",\"groupId\":\"g1\"}");
    r = lost();
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    r = reply(OCB_PLATFORM_FAILED, 404, "100403", NULL); /* not the group's code */
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    r = reply(OCB_PLATFORM_FAILED, 404, "100603", NULL);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_GONE);
    api_job_cleanup(&j);
}
END_TEST

START_TEST(register_after_a_lost_answer_queries_before_it_resends)
{
    struct ocb_api_job j;
    struct ocb_platform_call c = {0};
    struct ocb_platform_reply f, r;

    job_for(&j, "_", "{\"op\":\"register\",\"nodeId\":\"N1\"}");
    ck_assert_int_eq(api_job_call(&j, 100000, &c), OCB_OK);
    ck_assert_str_eq(c.method, "POST");
    ck_assert(!api_job_in_grace(&j));
    r = lost();
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_PASS);
    ck_assert(api_job_in_grace(&j));
    /* The next call is the query, not the register. */
    ck_assert_int_eq(api_job_call(&j, 100010, &c), OCB_OK);
    ck_assert_str_eq(c.method, "GET");
    ck_assert_ptr_nonnull(strstr(c.path, "/iocm/app/dm/v1.4.0/devices?startTime="));
    ck_assert_ptr_nonnull(strstr(c.path, "pageNo=0"));
    ck_assert(!api_job_in_grace(&j));
    /* A failed query (even a 4xx) is retried, from page 0. */
    r = reply(OCB_PLATFORM_FAILED, 400, "100022", NULL);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_FAILED);
    ck_assert_int_eq(f.cls, OCB_PLATFORM_RETRY);
    /* A full page that does not have it: the next page. */
    ck_assert_int_eq(api_job_call(&j, 100020, &c), OCB_OK);
    char page[8192];
    size_t o = (size_t)snprintf(page, sizeof(page), "{\"totalCount\":%d,\"devices\":[", 300);
    for (int i = 0; i < OCB_API_RECONCILE_PAGE_SIZE && o < sizeof(page) - 64; i++)
        o += (size_t)snprintf(page + o, sizeof(page) - o, "%s{\"deviceId\":\"d%d\"}", i ? "," : "",
                              i);
    snprintf(page + o, sizeof(page) - o, "]}");
    r = reply(OCB_PLATFORM_OK, 200, NULL, page);
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_NEXT);
    ck_assert_int_eq(api_job_call(&j, 100030, &c), OCB_OK);
    ck_assert_ptr_nonnull(strstr(c.path, "pageNo=1"));
    /* The last page has it: reconciled, with the device. */
    r = reply(OCB_PLATFORM_OK, 200, NULL,
              "{\"totalCount\":300,\"devices\":[{\"deviceId\":\"dX\",\"deviceInfo\":{\"nodeId\":"
              "\"N1\"}}]}");
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_RECONCILED);
    ck_assert(j.scan.found);
    ck_assert_str_eq(j.scan.id, "dX");
    api_job_cleanup(&j);

    /* Not there: the register goes out again. */
    job_for(&j, "_", "{\"op\":\"register\",\"nodeId\":\"N2\"}");
    ck_assert_int_eq(api_job_call(&j, 100000, &c), OCB_OK);
    r = lost();
    api_job_on_reply(&j, &r, &f);
    ck_assert_int_eq(api_job_call(&j, 100010, &c), OCB_OK);
    r = reply(OCB_PLATFORM_OK, 200, NULL, "{\"totalCount\":0,\"devices\":[]}");
    ck_assert_int_eq(api_job_on_reply(&j, &r, &f), OCB_API_STEP_NEXT);
    ck_assert_int_eq(api_job_call(&j, 100020, &c), OCB_OK);
    ck_assert_str_eq(c.method, "POST");
    ck_assert_int_eq(j.first_s, 100000); /* a later query starts from the first send */
    api_job_cleanup(&j);
}
END_TEST

START_TEST(a_row_found_sending_has_an_unknown_outcome)
{
    struct ocb_api_job j;
    struct ocb_platform_call c = {0};

    job_for(&j, "_", "{\"op\":\"groupCreate\",\"name\":\"floor1\"}");
    api_job_resume_sending(&j, 5000, 9000);
    ck_assert(j.unknown);
    ck_assert_int_eq(j.first_s, 5000);
    ck_assert_int_eq(api_job_call(&j, 9000, &c), OCB_OK);
    ck_assert_str_eq(c.method, "GET");
    ck_assert_ptr_nonnull(strstr(c.path, "/devGroups?name=floor1"));
    api_job_cleanup(&j);

    job_for(&j, "dev-1", "{\"op\":\"shadow\"}");
    api_job_resume_sending(&j, 5000, 9000);
    ck_assert(!j.unknown); /* a read is simply sent again */
    api_job_cleanup(&j);
}
END_TEST

START_TEST(psk_stays_off_the_copy)
{
    char *out = NULL;
    size_t len = 0;
    const char *reg =
        "{\"correlationId\":\"r1\",\"op\":\"register\",\"ok\":true,\"httpStatus\":200,"
        "\"platform\":{\"deviceId\":\"d1\",\"verifyCode\":\"N\",\"timeout\":0,"
        "\"psk\":\"00112233445566778899aabbccddeeff\"}}";
    ck_assert_int_eq(api_job_redact_psk(reg, strlen(reg), &out, &len), OCB_OK);
    ck_assert_uint_eq(len, strlen(out));
    ck_assert_ptr_null(strstr(out, "psk"));
    ck_assert_ptr_nonnull(strstr(out, "\"deviceId\":\"d1\""));
    ck_assert_ptr_nonnull(strstr(out, "\"correlationId\":\"r1\""));
    free(out);

    const char *get = "{\"op\":\"get\",\"ok\":true,\"platform\":{\"psk\":\"x\"}}";
    ck_assert_int_eq(api_job_redact_psk(get, strlen(get), &out, &len), OCB_ERR_NOT_FOUND);
    const char *err = "{\"op\":\"register\",\"ok\":false,\"error\":{}}";
    ck_assert_int_eq(api_job_redact_psk(err, strlen(err), &out, &len), OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(api_job_redact_psk("{", 1, &out, &len), OCB_ERR_PROTOCOL);
    ck_assert_ptr_null(out);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tests[] = {reads_and_idempotent_writes_pass_everything_on,
                                  delete_after_a_lost_answer_takes_not_found_as_done,
                                  register_after_a_lost_answer_queries_before_it_resends,
                                  a_row_found_sending_has_an_unknown_outcome,
                                  psk_stays_off_the_copy,
                                  NULL};
    const struct th_case cases[] = {{.name = "api_job", .tests = tests}, {.name = NULL}};

    return th_main(argc, argv, "api_job", cases);
}
