/*
 * test_subscriptions.c: the IP:port comparison the subscription sync uses to
 * decide which subscriptions stand in the way of a move (docs/platform-api.md §2,
 * §5: all of an app's callbacks share one IP:port).  The rest of the sync
 * talks to the platform and is tested against the simulator
 * (tests/integration/test_commands_subscribe.c).
 */
#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "ocb/subscriptions.h"
#include "th_main.h"

static const struct {
    const char *a, *b;
    bool same;
} cases[] = {
    {"http://127.0.0.1:18080/push/app1", "http://127.0.0.1:18080/push/app1/tok", true},
    {"http://127.0.0.1:18080/push/app1", "https://127.0.0.1:18080/other",
     true}, /* scheme ignored */
    {"http://Bridge.Example.com:80/push/a", "http://bridge.example.com:80/", true},
    {"http://bridge.example.com/push/a", "http://bridge.example.com:80/push/a", true},
    {"https://bridge.example.com/push/a", "https://bridge.example.com:443/x", true},
    {"http://[::1]:8080/push/a", "http://[::1]:8080/", true},
    {"http://127.0.0.1:18080/push/app1", "http://127.0.0.1:18081/push/app1", false},
    {"http://127.0.0.1:18080/push/app1", "http://127.0.0.2:18080/push/app1", false},
    {"http://bridge.example.com/push/a", "https://bridge.example.com/push/a", false}, /* 80/443 */
    {"http://[::1]:8080/push/a", "http://[::2]:8080/push/a", false},
    {"http://127.0.0.1:18080/push/app1", "garbage", false},
    {"ftp://127.0.0.1:21/x", "ftp://127.0.0.1:21/x", false},
    {"http://127.0.0.1:0/x", "http://127.0.0.1:0/x", false},
    {"http://127.0.0.1:65536/x", "http://127.0.0.1:65536/x", false},
    {"http://127.0.0.1:8x/x", "http://127.0.0.1:8x/x", false},
    {"http://127.0.0.1:/x", "http://127.0.0.1:/x", false},
    {"http://:80/x", "http://:80/x", false},
    {"http://[::1/x", "http://[::1/x", false},
    {NULL, "http://127.0.0.1:80/", false},
};

START_TEST(same_endpoint)
{
    ck_assert_msg(subscriptions_same_endpoint(cases[_i].a, cases[_i].b) == cases[_i].same,
                  "%s vs %s", cases[_i].a ? cases[_i].a : "(null)", cases[_i].b);
    /* The relation is symmetric. */
    ck_assert(subscriptions_same_endpoint(cases[_i].b, cases[_i].a) == cases[_i].same);
}
END_TEST

START_TEST(page_parse)
{
    struct ocb_subs_entry *subs = NULL;
    size_t n = 0, listed = 0;
    bool more = false;
    const char *p1 =
        "{\"pageNo\":0,\"pageSize\":2,\"totalCount\":3,\"subscriptions\":["
        "{\"subscriptionId\":\"s1\",\"notifyType\":\"deviceAdded\",\"callbackUrl\":\"u1\"},"
        "{\"subscriptionId\":\"s2\",\"notifyType\":\"commandRsp\"}]}";
    ck_assert_int_eq(subscriptions_page_parse(p1, strlen(p1), 1000, &subs, &n, &listed, &more),
                     OCB_OK);
    /* The entry without a callbackUrl counts against totalCount but is not kept. */
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(listed, 2);
    ck_assert(more);
    ck_assert_str_eq(subs[0].id, "s1");
    const char *p2 = "{\"totalCount\":3,\"subscriptions\":[{\"subscriptionId\":\"s3\","
                     "\"notifyType\":\"deviceDeleted\",\"callbackurl\":\"u3\"}]}";
    ck_assert_int_eq(subscriptions_page_parse(p2, strlen(p2), 1000, &subs, &n, &listed, &more),
                     OCB_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(listed, 3);
    ck_assert(!more);
    ck_assert_str_eq(subs[1].url, "u3");
    /* Without totalCount a full page asks for another. */
    const char *p3 = "{\"subscriptions\":[{}]}";
    ck_assert_int_eq(subscriptions_page_parse(p3, strlen(p3), 1, &subs, &n, &listed, &more),
                     OCB_OK);
    ck_assert(more);
    ck_assert_int_eq(subscriptions_page_parse("{}", 2, 1, &subs, &n, &listed, &more),
                     OCB_ERR_PROTOCOL);
    ck_assert_uint_eq(n, 2);
    ck_assert(!more);
    subscriptions_entries_free(subs, n);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const endpoint_tests[] = {same_endpoint, NULL};
    const struct th_loop endpoint_loops[] = {
        {same_endpoint, 0, (int)(sizeof(cases) / sizeof(cases[0]))}, {NULL, 0, 0}};
    const TTest *const page_tests[] = {page_parse, NULL};
    const struct th_case tcases[] = {
        {.name = "endpoint", .tests = endpoint_tests, .loops = endpoint_loops},
        {.name = "page", .tests = page_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "subscriptions", tcases);
}
