/*
 * test_reconcile.c: the pure half of create reconciliation: which command
 * resource of a deviceCommands query answer is the create we lost the answer
 * of, the query path, the platform's UTC time format.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/reconcile.h"
#include "th_main.h"

#define DEV "dev-1"
#define CB  "https://bridge:8443/push/app1"

/* One resource; fields left NULL are omitted, "" keeps the default. */
static void resource(char *out, size_t cap, const char *id, const char *dev, const char *svc,
                     const char *method, const char *paras, const char *cb, const char *created,
                     const char *extra)
{
    snprintf(out, cap,
             "{\"commandId\":\"%s\",\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"%s\","
             "\"method\":\"%s\",\"paras\":%s}%s%s%s,\"creationTime\":\"%s\",\"status\":\"SENT\"%s}",
             id, dev, svc, method, paras, cb ? ",\"callbackUrl\":\"" : "", cb ? cb : "",
             cb ? "\"" : "", created, extra ? extra : "");
}

static const struct ocb_reconcile_want want_base = {
    .device_id = DEV,
    .service_id = "Light",
    .method = "SET",
    .paras = "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}",
    .callback_url = CB,
    .expire_time = -1,
    .max_retransmit = -1,
    .since_s = 1700000000, /* 20231114T221320Z */
};

/* One candidate against want_base: does it match? */
struct match_case {
    const char *name;
    const char *dev, *svc, *method, *paras, *cb, *created, *extra;
    long long expire_time;
    int max_retransmit;
    bool match;
};

static const struct match_case match_cases[] = {
    {"identical", DEV, "Light", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB,
     "20231114T221320Z", NULL, -1, -1, true},
    {"paras re-serialised: key order, spacing, 1.0", DEV, "Light", "SET",
     "{ \"list\" : [1, 2.0], \"level\":\"high\", \"on\":1.0 }", CB, "20231114T230000Z", NULL, -1,
     -1, true},
    {"paras value differs", DEV, "Light", "SET", "{\"on\":0,\"level\":\"high\",\"list\":[1,2]}", CB,
     "20231114T230000Z", NULL, -1, -1, false},
    {"paras array order differs", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[2,1]}", CB, "20231114T230000Z", NULL, -1, -1, false},
    {"paras extra key", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2],\"x\":null}", CB, "20231114T230000Z", NULL, -1,
     -1, false},
    {"paras as a string", DEV, "Light", "SET", "\"{\\\"on\\\":1}\"", CB, "20231114T230000Z", NULL,
     -1, -1, false},
    {"other service", DEV, "Lamp", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB,
     "20231114T230000Z", NULL, -1, -1, false},
    {"method case differs", DEV, "Light", "set", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB,
     "20231114T230000Z", NULL, -1, -1, false},
    {"other device", "dev-2", "Light", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB,
     "20231114T230000Z", NULL, -1, -1, false},
    {"no callbackUrl", DEV, "Light", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", NULL,
     "20231114T230000Z", NULL, -1, -1, false},
    {"other callbackUrl", DEV, "Light", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}",
     "https://other/push/app1", "20231114T230000Z", NULL, -1, -1, false},
    {"created before the first attempt", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "20231114T221319Z", NULL, -1, -1, false},
    {"unreadable creationTime: no evidence, matches", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "yesterday", NULL, -1, -1, true},
    {"expireTime asked and equal", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "20231114T230000Z", ",\"expireTime\":300",
     300, -1, true},
    {"expireTime asked and different", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "20231114T230000Z",
     ",\"expireTime\":172800", 300, -1, false},
    {"expireTime not asked: the platform's default", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "20231114T230000Z",
     ",\"expireTime\":172800", -1, -1, true},
    {"maxRetransmit different", DEV, "Light", "SET", "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}",
     CB, "20231114T230000Z", ",\"maxRetransmit\":3", -1, 1, false},
    {"maxRetransmit asked, absent in the resource", DEV, "Light", "SET",
     "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}", CB, "20231114T230000Z", NULL, -1, 1, true},
};

START_TEST(match_table)
{
    const struct match_case *c = &match_cases[_i];
    char r[1024], page[1200];
    resource(r, sizeof(r), "c1", c->dev, c->svc, c->method, c->paras, c->cb, c->created, c->extra);
    snprintf(page, sizeof(page),
             "{\"pagination\":{\"pageNo\":0,\"pageSize\":100,\"totalSize\":1},\"data\":[%s]}", r);
    struct ocb_reconcile_want want = want_base;
    want.expire_time = c->expire_time;
    want.max_retransmit = c->max_retransmit;
    struct ocb_reconcile_scan scan = {0};
    ck_assert_int_eq(reconcile_scan_page(&want, page, strlen(page), NULL, NULL, &scan), OCB_OK);
    ck_assert_msg(scan.found == c->match, "%s: found %d", c->name, scan.found);
    ck_assert_int_eq(scan.matches, c->match ? 1 : 0);
    ck_assert_int_eq(scan.total_size, 1);
    ck_assert_uint_eq(scan.page_items, 1);
    if (c->match) {
        ck_assert_str_eq(scan.command_id, "c1");
        ck_assert_ptr_nonnull(strstr(scan.resource, "\"commandId\":\"c1\""));
        ck_assert_uint_eq(scan.resource_len, strlen(scan.resource));
    }
    reconcile_scan_cleanup(&scan);
    ck_assert(!scan.found && !scan.resource);
}
END_TEST

static bool claimed_c1(void *ctx, const char *id)
{
    (void)ctx;
    return strcmp(id, "c1") == 0;
}

/* Several matches over two pages: the oldest unclaimed one, wherever it is. */
START_TEST(oldest_unclaimed_across_pages)
{
    const char *p = "{\"on\":1,\"level\":\"high\",\"list\":[1,2]}";
    char a[600], b[600], c[600], d[600], page[3000];
    resource(a, sizeof(a), "c1", DEV, "Light", "SET", p, CB, "20231114T221400Z", NULL);
    resource(b, sizeof(b), "c2", DEV, "Light", "SET", p, CB, "20231114T221500Z", NULL);
    resource(c, sizeof(c), "c3", DEV, "Light", "SET", p, CB, "20231114T221430Z", NULL);
    resource(d, sizeof(d), "c4", DEV, "Lamp", "SET", p, CB, "20231114T221330Z", NULL);
    struct ocb_reconcile_scan scan = {0};
    /* Page 0 (newest first, as a platform might order it): c2, c4. */
    snprintf(page, sizeof(page),
             "{\"pagination\":{\"pageNo\":0,\"pageSize\":2,\"totalSize\":4},\"data\":[%s,%s]}", b,
             d);
    ck_assert_int_eq(reconcile_scan_page(&want_base, page, strlen(page), claimed_c1, NULL, &scan),
                     OCB_OK);
    ck_assert(scan.found);
    ck_assert_str_eq(scan.command_id, "c2");
    ck_assert(reconcile_scan_more(&scan, 0, 2));
    /* Page 1: c3 (older than c2) and c1 (oldest, but already claimed by another job). */
    snprintf(page, sizeof(page),
             "{\"pagination\":{\"pageNo\":1,\"pageSize\":2,\"totalSize\":4},\"data\":[%s,%s]}", c,
             a);
    ck_assert_int_eq(reconcile_scan_page(&want_base, page, strlen(page), claimed_c1, NULL, &scan),
                     OCB_OK);
    ck_assert_str_eq(scan.command_id, "c3");
    ck_assert_int_eq(scan.matches, 3);
    ck_assert_int_eq(scan.claimed, 1);
    ck_assert(!reconcile_scan_more(&scan, 1, 2));
    reconcile_scan_cleanup(&scan);
}
END_TEST

START_TEST(only_claimed_means_create)
{
    char a[600], page[1000];
    resource(a, sizeof(a), "c1", DEV, "Light", "SET", want_base.paras, CB, "20231114T221400Z",
             NULL);
    snprintf(page, sizeof(page), "{\"pagination\":{\"totalSize\":1},\"data\":[%s]}", a);
    struct ocb_reconcile_scan scan = {0};
    ck_assert_int_eq(reconcile_scan_page(&want_base, page, strlen(page), claimed_c1, NULL, &scan),
                     OCB_OK);
    ck_assert(!scan.found);
    ck_assert_int_eq(scan.matches, 1);
    ck_assert_int_eq(scan.claimed, 1);
    reconcile_scan_cleanup(&scan);
}
END_TEST

static const char *const bad_pages[] = {
    "", "null", "[]", "{\"data\":{}}", "{\"data\":\"x\"}", "{\"pagination\":", "\"text\"",
};

START_TEST(bad_pages_are_protocol_errors)
{
    struct ocb_reconcile_scan scan = {0};
    const char *b = bad_pages[_i];
    ck_assert_int_eq(reconcile_scan_page(&want_base, b, strlen(b), NULL, NULL, &scan),
                     OCB_ERR_PROTOCOL);
    ck_assert(!scan.found);
    ck_assert(!reconcile_scan_more(&scan, 0, 100));
    reconcile_scan_cleanup(&scan);
}
END_TEST

START_TEST(odd_pages)
{
    struct ocb_reconcile_scan scan = {0};
    /* No pagination: the page is all there is. */
    const char *p = "{\"data\":[1,\"x\",null,{},{\"command\":1}]}";
    ck_assert_int_eq(reconcile_scan_page(&want_base, p, strlen(p), NULL, NULL, &scan), OCB_OK);
    ck_assert(!scan.found);
    ck_assert_int_eq(scan.total_size, 5);
    ck_assert(!reconcile_scan_more(&scan, 0, 100));
    /* An empty page ends the paging whatever totalSize claims. */
    p = "{\"pagination\":{\"totalSize\":900},\"data\":[]}";
    ck_assert_int_eq(reconcile_scan_page(&want_base, p, strlen(p), NULL, NULL, &scan), OCB_OK);
    ck_assert(!reconcile_scan_more(&scan, 0, 100));
    /* No data at all: nothing found, not an error. */
    p = "{\"pagination\":{\"totalSize\":0}}";
    ck_assert_int_eq(reconcile_scan_page(&want_base, p, strlen(p), NULL, NULL, &scan), OCB_OK);
    /* Paging is bounded. */
    p = "{\"pagination\":{\"totalSize\":100000},\"data\":[{}]}";
    ck_assert_int_eq(reconcile_scan_page(&want_base, p, strlen(p), NULL, NULL, &scan), OCB_OK);
    ck_assert(reconcile_scan_more(&scan, 0, 1));
    ck_assert(reconcile_scan_more(&scan, OCB_RECONCILE_SCAN_MAX - 2, 1));
    ck_assert(!reconcile_scan_more(&scan, OCB_RECONCILE_SCAN_MAX - 1, 1));
    ck_assert(!reconcile_scan_more(&scan, OCB_RECONCILE_SCAN_MAX / 100 - 1, 100));
    /* A match without a usable commandId cannot be adopted. */
    char r[600];
    resource(r, sizeof(r), "", DEV, "Light", "SET", want_base.paras, CB, "20231114T221400Z", NULL);
    char page[800];
    snprintf(page, sizeof(page), "{\"data\":[%s]}", r);
    ck_assert_int_eq(reconcile_scan_page(&want_base, page, strlen(page), NULL, NULL, &scan),
                     OCB_OK);
    ck_assert(!scan.found);
    reconcile_scan_cleanup(&scan);
}
END_TEST

START_TEST(times)
{
    char out[17];
    long long t = 0;
    ck_assert_int_eq(reconcile_time_format(1700000000, out), OCB_OK);
    ck_assert_str_eq(out, "20231114T221320Z");
    ck_assert(reconcile_time_parse("20231114T221320Z", &t));
    ck_assert_int_eq(t, 1700000000);
    ck_assert(reconcile_time_parse("19700101T000000Z", &t));
    ck_assert_int_eq(t, 0);
    ck_assert(reconcile_time_parse("20240229T235959Z", &t)); /* leap day */
    ck_assert_int_eq(t, 1709251199);
    static const char *const bad[] = {"",
                                      "20231114T221320",
                                      "20231114 221320Z",
                                      "2023111xT221320Z",
                                      "20231314T221320Z",
                                      "20231114T241320Z",
                                      "20231114T221320Z0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!reconcile_time_parse(bad[i], &t), "%s", bad[i]);
    ck_assert(!reconcile_time_parse(NULL, &t));
    ck_assert_int_eq(reconcile_time_format(-1, out), OCB_ERR_INVALID);
}
END_TEST

START_TEST(query_path)
{
    char out[512];
    ck_assert_int_eq(reconcile_query_path("dev 1/&", 1700000000, 2, 100, out, sizeof(out)), OCB_OK);
    ck_assert_str_eq(out, "/iocm/app/cmd/v1.4.0/deviceCommands?deviceId=dev%201%2F%26"
                          "&startTime=20231114T221320Z&pageNo=2&pageSize=100");
    ck_assert_int_eq(reconcile_query_path("dev", 1700000000, 0, 100, out, 40), OCB_ERR_TOO_BIG);
    ck_assert_int_eq(reconcile_query_path("dev", 1700000000, -1, 100, out, sizeof(out)),
                     OCB_ERR_INVALID);
    ck_assert_int_eq(reconcile_query_path("dev", 1700000000, 0, 0, out, sizeof(out)),
                     OCB_ERR_INVALID);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const core_tests[] = {match_table,
                                       oldest_unclaimed_across_pages,
                                       only_claimed_means_create,
                                       bad_pages_are_protocol_errors,
                                       odd_pages,
                                       times,
                                       query_path,
                                       NULL};
    const struct th_loop core_loops[] = {
        {match_table, 0, (int)(sizeof(match_cases) / sizeof(match_cases[0]))},
        {bad_pages_are_protocol_errors, 0, (int)(sizeof(bad_pages) / sizeof(bad_pages[0]))},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "core", .tests = core_tests, .loops = core_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "reconcile", cases);
}
