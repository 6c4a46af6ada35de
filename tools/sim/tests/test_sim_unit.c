/*
 * test_sim_unit.c: the simulator's pure rules, table-driven: time format, callback URL rules,
 * form decoding, flag parsing, the push delivery verdicts, the throttle window and id shapes.
 */
#include "sim.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "th_main.h"

START_TEST(time_roundtrip)
{
    char buf[17];
    sim_time_format(1487091740, buf); /* 2017-02-14 17:02:20 UTC */
    ck_assert_str_eq(buf, "20170214T170220Z");
    time_t t;
    ck_assert(sim_time_parse("20170214T170220Z", &t));
    ck_assert_int_eq((long)t, 1487091740L);
    static const char *bad[] = {"",
                                "20170214T170220",
                                "20171314T170220Z",
                                "2017-02-14T17:02:20Z",
                                "20170214X170220Z",
                                "20170214T250220Z",
                                "20170214T17022aZ"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!sim_time_parse(bad[i], &t), "accepted %s", bad[i]);
}
END_TEST

START_TEST(callback_url_rules)
{
    static const struct {
        const char *url;
        bool ok;
    } cases[] = {
        {"http://1.2.3.4:8080/cb", true},
        {"https://example.com:443/", true},
        {"http://127.0.0.1:80/push/app1/x?y=1", true},
        {"http://1.2.3.4:8080", false},    /* no path */
        {"http://1.2.3.4/path", false},    /* no explicit port */
        {"ftp://1.2.3.4:21/x", false},     /* not http(s) */
        {"http://:8080/x", false},         /* no host */
        {"http://1.2.3.4:0/x", false},     /* port out of range */
        {"http://1.2.3.4:65536/x", false}, /* port out of range */
        {"http://1.2.3.4:80a/x", false},   /* port not a number */
        {"http://1.2.3.4:80/a b", false},  /* whitespace */
        {"1.2.3.4:80/x", false},           /* no scheme */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(sim_url_callback_ok(cases[i].url) == cases[i].ok, "%s", cases[i].url);
    char long_url[1100] = "http://h:1/";
    memset(long_url + 11, 'a', 1030);
    long_url[1041] = '\0';
    ck_assert(!sim_url_callback_ok(long_url));
}
END_TEST

START_TEST(same_endpoint)
{
    ck_assert(sim_url_same_endpoint("http://1.2.3.4:80/a", "https://1.2.3.4:80/b/c"));
    ck_assert(sim_url_same_endpoint("http://LOCALHOST:80/a", "http://localhost:80/"));
    ck_assert(!sim_url_same_endpoint("http://1.2.3.4:80/a", "http://1.2.3.4:81/a"));
    ck_assert(!sim_url_same_endpoint("http://1.2.3.4:80/a", "http://1.2.3.5:80/a"));
    ck_assert(!sim_url_same_endpoint("http://1.2.3.4:80/a", "garbage"));
}
END_TEST

START_TEST(form_decoding)
{
    const char *b = "appId=my%5Fapp&secret=a+b%2Bc&empty=&x";
    char out[32];
    ck_assert(sim_form_get(b, strlen(b), "appId", out, sizeof out));
    ck_assert_str_eq(out, "my_app");
    ck_assert(sim_form_get(b, strlen(b), "secret", out, sizeof out));
    ck_assert_str_eq(out, "a b+c");
    ck_assert(!sim_form_get(b, strlen(b), "app", out, sizeof out));
    ck_assert(!sim_form_get(b, strlen(b), "empty", out, sizeof out) || out[0] == '\0');
    ck_assert(!sim_form_get(b, strlen(b), "x", out, sizeof out));
    char tiny[3];
    ck_assert(!sim_form_get(b, strlen(b), "appId", tiny, sizeof tiny)); /* does not fit */
    const char *trunc = "k=%4";
    ck_assert(sim_form_get(trunc, strlen(trunc), "k", out, sizeof out));
    ck_assert_str_eq(out, "%4"); /* a broken escape stays literal */
}
END_TEST

START_TEST(app_and_throttle_flags)
{
    struct sim_app_cfg cfg;
    ck_assert(sim_opts_parse_app("PcH6DS2vvO4_0ywnlaCF4Hfb01oa:s3cr:et", &cfg));
    ck_assert_str_eq(cfg.id, "PcH6DS2vvO4_0ywnlaCF4Hfb01oa");
    ck_assert_str_eq(cfg.secret, "s3cr:et");
    ck_assert(!sim_opts_parse_app("nosecret", &cfg));
    ck_assert(!sim_opts_parse_app(":secret", &cfg));
    ck_assert(!sim_opts_parse_app("app:", &cfg));
    ck_assert(!sim_opts_parse_app("bad/app:x", &cfg));
    long c, p;
    ck_assert(sim_opts_parse_throttle("100/60", &c, &p));
    ck_assert_int_eq(c, 100);
    ck_assert_int_eq(p, 60);
    ck_assert(sim_opts_parse_throttle("0", &c, &p));
    ck_assert_int_eq(c, 0);
    ck_assert(!sim_opts_parse_throttle("100", &c, &p));
    ck_assert(!sim_opts_parse_throttle("a/60", &c, &p));
    ck_assert(!sim_opts_parse_throttle("5/0", &c, &p));
}
END_TEST

START_TEST(opts_parse_errors)
{
    static const char *const bad[][4] = {
        {"sim", "--plain", NULL},                   /* no app */
        {"sim", "--app", "a:b", NULL},              /* no certs, no plain */
        {"sim", "--app", "a:b", "--plain --bogus"}, /* unexpected argument */
        {"sim", "--plain", "--app", "nosecret"},
        {"sim", "--plain", "--throttle", "x"},
        {"sim", "--plain", "--devices", "-1"},
        {"sim", "--plain", "--push-timeout", "0"},
        {"sim", "--plain", "--report-mode", "both"},
        {"sim", "--plain", "--history-max", "-1"},
        {"sim", "--plain", "--history-max", "100001"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sim_opts o;
        char err[256] = "";
        int argc = 0;
        char *argv[5];
        while (argc < 4 && bad[i][argc]) {
            argv[argc] = (char *)bad[i][argc];
            argc++;
        }
        argv[argc] = NULL;
        sim_opts_defaults(&o);
        ck_assert_msg(sim_opts_parse(&o, argc, argv, err, sizeof err) == OCB_ERR_INVALID,
                      "case %zu accepted", i);
        ck_assert_msg(err[0] != '\0', "case %zu: no message", i);
    }
    struct sim_opts o;
    char err[256] = "";
    char *good[] = {"sim",        "--plain", "--app",          "a:b", "--app", "c:d",
                    "--throttle", "5/10",    "--push-timeout", "0.5", NULL};
    sim_opts_defaults(&o);
    ck_assert_int_eq(sim_opts_parse(&o, 10, good, err, sizeof err), OCB_OK);
    ck_assert_int_eq(o.napps, 2);
    ck_assert_int_eq(o.throttle_calls, 5);
    ck_assert(o.push_timeout_s > 0.49 && o.push_timeout_s < 0.51);
    ck_assert(o.probe_interval_s == o.repush_interval_s);
    /* The device API's defaults: lenient refresh, 1000 history records, group answers per the
     * reference's table; each flag flips one. */
    ck_assert(!o.refresh_revokes && !o.devgroup_create_201 && !o.devgroup_ids_empty);
    ck_assert_int_eq(o.history_max, 1000);
    char *flags[] = {"sim",
                     "--plain",
                     "--app",
                     "a:b",
                     "--refresh-revokes",
                     "--devgroup-create-201",
                     "--devgroup-ids-empty",
                     "--history-max",
                     "0",
                     NULL};
    sim_opts_defaults(&o);
    ck_assert_int_eq(sim_opts_parse(&o, 9, flags, err, sizeof err), OCB_OK);
    ck_assert(o.refresh_revokes && o.devgroup_create_201 && o.devgroup_ids_empty);
    ck_assert_int_eq(o.history_max, 0);
}
END_TEST

START_TEST(push_verdicts)
{
    static const struct {
        long status;
        bool any;
        enum sim_push_verdict v;
    } cases[] = {
        {200, false, SIM_PUSH_DELIVERED}, {0, false, SIM_PUSH_RETRY},
        {501, false, SIM_PUSH_RETRY},     {502, false, SIM_PUSH_RETRY},
        {503, false, SIM_PUSH_RETRY},     {504, false, SIM_PUSH_RETRY},
        {500, false, SIM_PUSH_DROP},      {505, false, SIM_PUSH_DROP},
        {404, false, SIM_PUSH_DROP},      {201, false, SIM_PUSH_DROP},
        {204, false, SIM_PUSH_DROP},      {500, true, SIM_PUSH_RETRY},
        {400, true, SIM_PUSH_RETRY},      {200, true, SIM_PUSH_DELIVERED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(sim_push_classify(cases[i].status, cases[i].any) == cases[i].v, "status %ld",
                      cases[i].status);
}
END_TEST

START_TEST(throttle_window)
{
    struct sim_app a;
    memset(&a, 0, sizeof a);
    int64_t ring[3];
    a.calls = ring;
    a.calls_cap = 3;
    ck_assert(sim_auth_throttle_take(&a, 3, 60, 1000));
    ck_assert(sim_auth_throttle_take(&a, 3, 60, 2000));
    ck_assert(sim_auth_throttle_take(&a, 3, 60, 3000));
    ck_assert(!sim_auth_throttle_take(&a, 3, 60, 4000));  /* 4th in the window */
    ck_assert(!sim_auth_throttle_take(&a, 3, 60, 60999)); /* first call still inside */
    ck_assert(sim_auth_throttle_take(&a, 3, 60, 61000));  /* first left the window */
    ck_assert(!sim_auth_throttle_take(&a, 3, 60, 61001));
    ck_assert(sim_auth_throttle_take(&a, 0, 0, 61002)); /* 0 = off */
}
END_TEST

START_TEST(ids)
{
    char hex[33], uuid[37], uuid2[37];
    sim_rand_hex(hex, 32);
    ck_assert_int_eq(strlen(hex), 32);
    ck_assert_int_eq(strspn(hex, "0123456789abcdef"), 32);
    uint64_t s1 = 42, s2 = 42;
    sim_uuid_from(&s1, uuid);
    sim_uuid_from(&s2, uuid2);
    ck_assert_str_eq(uuid, uuid2); /* deterministic for a seed */
    ck_assert_int_eq(strlen(uuid), 36);
    ck_assert(uuid[8] == '-' && uuid[13] == '-' && uuid[18] == '-' && uuid[23] == '-');
    ck_assert(uuid[14] == '4');
    sim_uuid_from(&s1, uuid2);
    ck_assert_str_ne(uuid, uuid2);
}
END_TEST

START_TEST(numbers)
{
    long l;
    double d;
    ck_assert(sim_parse_long("42", 0, 100, &l) && l == 42);
    ck_assert(!sim_parse_long("42x", 0, 100, &l));
    ck_assert(!sim_parse_long("101", 0, 100, &l));
    ck_assert(!sim_parse_long("", 0, 100, &l));
    ck_assert(sim_parse_double("0.25", 0, 1, &d) && d == 0.25);
    ck_assert(!sim_parse_double("nan", 0, 1, &d));
    ck_assert(!sim_parse_double("1.5", 0, 1, &d));
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const pure_tests[] = {time_roundtrip,
                                       callback_url_rules,
                                       same_endpoint,
                                       form_decoding,
                                       app_and_throttle_flags,
                                       opts_parse_errors,
                                       push_verdicts,
                                       throttle_window,
                                       ids,
                                       numbers,
                                       NULL};
    const struct th_case cases[] = {
        {.name = "pure", .tests = pure_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_unit", cases);
}
