/*
 * test_grammar.c: the one grammar for topic levels, topic prefixes,
 * endpoints, URLs and CIDRs (grammar.h), table by table.  Each table row is
 * an input and what must come of it; accepted endpoints and CIDRs also
 * format back to text that parses to the same value.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "ocb/grammar.h"
#include "th_main.h"

/* ---- topic levels */

static const struct {
    const char *s;
    size_t len;      /* 0: strlen(s) */
    const char *why; /* NULL: valid; else a substring of the reason */
} levels[] = {
    {"abc", 0, NULL},
    {"deviceDataChanged", 0, NULL},
    {"a\"b\\c'd e", 0, NULL},      /* quotes, backslash, space: fine in a topic */
    {"\xf0\x9f\x98\x80", 0, NULL}, /* U+1F600 */
    {"\xe4\xb8\xad\xe6\x96\x87", 0, NULL},
    {"\xc2\xa0", 0, NULL}, /* U+00A0, the first code point past C1 */
    {"_", 0, NULL},        /* the "no device" rule is the caller's */
    {"", 0, "empty"},
    {"a/b", 0, "/ + or #"},
    {"a+", 0, "/ + or #"},
    {"#", 0, "/ + or #"},
    {"a\0b", 3, "control"}, /* NUL */
    {"a\tb", 0, "control"},
    {"a\nb", 0, "control"},
    {"a\x7f", 0, "control"},     /* DEL */
    {"a\xc2\x80", 0, "control"}, /* U+0080 */
    {"a\xc2\x85"
     "b",
     0, "control"},                          /* U+0085 NEXT LINE: issue 9 */
    {"a\xc2\x9f", 0, "control"},             /* U+009F */
    {"\xef\xbf\xbe", 0, "noncharacter"},     /* U+FFFE */
    {"\xef\xb7\x90", 0, "noncharacter"},     /* U+FDD0 */
    {"\xf0\x9f\xbf\xbf", 0, "noncharacter"}, /* U+1FFFF */
    {"\xff", 0, "UTF-8"},
    {"a\x85", 0, "UTF-8"},            /* a bare continuation byte, not U+0085 */
    {"\xc0\xaf", 0, "UTF-8"},         /* overlong '/' */
    {"\xe0\x80\xaf", 0, "UTF-8"},     /* overlong '/' */
    {"\xed\xa0\x80", 0, "UTF-8"},     /* a surrogate */
    {"\xf4\x90\x80\x80", 0, "UTF-8"}, /* past U+10FFFF */
    {"\xe4\xb8", 0, "UTF-8"},         /* truncated */
};

START_TEST(topic_levels)
{
    size_t len = levels[_i].len ? levels[_i].len : strlen(levels[_i].s);
    const char *why = grammar_level_problem(levels[_i].s, len);

    if (levels[_i].why == NULL) {
        ck_assert_msg(why == NULL, "row %d refused: %s", _i, why);
        ck_assert(grammar_level_valid(levels[_i].s, len));
        ck_assert(grammar_utf8_valid(levels[_i].s, len));
    } else {
        ck_assert_msg(why != NULL, "row %d accepted", _i);
        ck_assert_msg(strstr(why, levels[_i].why) != NULL, "row %d: %s", _i, why);
        ck_assert(!grammar_level_valid(levels[_i].s, len));
    }
}
END_TEST

START_TEST(utf8_and_prefixes)
{
    ck_assert(grammar_utf8_valid("", 0));
    ck_assert(grammar_utf8_valid("a\xc2\x85", 3)); /* valid UTF-8, just not a level */
    ck_assert(!grammar_utf8_valid("\xe0\x80\xaf", 3));
    ck_assert(!grammar_level_valid(NULL, 0));

    ck_assert_ptr_null(grammar_topic_prefix_problem("iot", 128));
    ck_assert_ptr_null(grammar_topic_prefix_problem("site/iot/\xe4\xb8\xad", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("$SYS", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("/iot", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("iot/", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("a//b", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("a/+", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("a/b\xc2\x85", 128));
    ck_assert_ptr_nonnull(grammar_topic_prefix_problem("abcd", 3));
    ck_assert_ptr_null(grammar_topic_prefix_problem("abc", 3));
}
END_TEST

/* ---- endpoints */

static const struct {
    const char *s;
    bool port_optional;
    bool ok;
    const char *host;
    bool bracketed;
    unsigned port; /* 0: none */
} endpoints[] = {
    {"0.0.0.0:8080", false, true, "0.0.0.0", false, 8080},
    {"*:8082", false, true, "*", false, 8082},
    {"[::]:8083", false, true, "::", true, 8083},
    {"[::1]:1", false, true, "::1", true, 1},
    {"[fe80::1%eth0]:65535", false, true, "fe80::1%eth0", true, 65535},
    {"[::ffff:10.1.2.3]:80", false, true, "::ffff:10.1.2.3", true, 80},
    {"bridge.example.com:443", false, true, "bridge.example.com", false, 443},
    {"localhost:08080", false, true, "localhost", false, 8080},
    {"host", true, true, "host", false, 0},
    {"[::1]", true, true, "::1", true, 0},
    {"host", false, false, NULL, false, 0},
    {":8080", false, false, NULL, false, 0},
    {"host:", false, false, NULL, false, 0},
    {"host:0", false, false, NULL, false, 0},
    {"host:65536", false, false, NULL, false, 0},
    {"host:123456", false, false, NULL, false, 0},
    {"host:+80", false, false, NULL, false, 0},
    {"host: 80", false, false, NULL, false, 0},
    {"host:80 ", false, false, NULL, false, 0},
    {"host:8x", false, false, NULL, false, 0},
    {"a:b:80", false, false, NULL, false, 0},
    {"::1:80", false, false, NULL, false, 0}, /* IPv6 needs its brackets */
    {"[::1:80", false, false, NULL, false, 0},
    {"[::1]8080", false, false, NULL, false, 0},
    {"[]:80", false, false, NULL, false, 0},
    {"[1.2.3.4]:80", false, false, NULL, false, 0},
    {"[::1%]:80", false, false, NULL, false, 0},
    {"[g::1]:80", false, false, NULL, false, 0},
    {"my host:80", false, false, NULL, false, 0},
    {"user@host:80", false, false, NULL, false, 0},
    {"h\xc3\xa9:80", false, false, NULL, false, 0},
    {"", true, false, NULL, false, 0},
};

START_TEST(endpoint_table)
{
    struct ocb_endpoint ep, again;
    char text[300];
    enum ocb_err rc = grammar_endpoint_parse(endpoints[_i].s, endpoints[_i].port_optional, &ep);

    if (!endpoints[_i].ok) {
        ck_assert_msg(rc == OCB_ERR_INVALID, "\"%s\" accepted", endpoints[_i].s);
        ck_assert_str_eq(ep.host, "");
        return;
    }
    ck_assert_msg(rc == OCB_OK, "\"%s\" refused", endpoints[_i].s);
    ck_assert_str_eq(ep.host, endpoints[_i].host);
    ck_assert(ep.bracketed == endpoints[_i].bracketed);
    ck_assert(ep.has_port == (endpoints[_i].port != 0));
    ck_assert_uint_eq(ep.port, endpoints[_i].port);
    /* Formats back to text that parses to the same value. */
    ck_assert_int_eq(grammar_endpoint_format(&ep, text, sizeof(text)), OCB_OK);
    ck_assert_int_eq(grammar_endpoint_parse(text, true, &again), OCB_OK);
    ck_assert_mem_eq(&ep, &again, sizeof(ep));
}
END_TEST

START_TEST(endpoint_format_and_wildcards)
{
    struct ocb_endpoint ep;
    char small[6];

    ck_assert_int_eq(grammar_endpoint_parse("[::1]:8084", false, &ep), OCB_OK);
    ck_assert_int_eq(grammar_endpoint_format(&ep, small, sizeof(small)), OCB_ERR_TOO_BIG);
    ck_assert_str_eq(small, "");
    ck_assert(!grammar_endpoint_is_wildcard(&ep));
    static const char *const wild[] = {"0.0.0.0:1", "*:1", "[::]:1"};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(grammar_endpoint_parse(wild[i], false, &ep), OCB_OK);
        ck_assert(grammar_endpoint_is_wildcard(&ep));
    }
    ck_assert_int_eq(grammar_endpoint_parse("127.0.0.1:1", false, &ep), OCB_OK);
    ck_assert(!grammar_endpoint_is_wildcard(&ep));
}
END_TEST

/* ---- URLs */

static const struct {
    const char *url;
    unsigned schemes;
    bool port_optional;
    bool ok;
    enum ocb_url_scheme scheme;
    bool tls;
    const char *host;
    unsigned port;
    const char *rest;
} urls[] = {
    {"tcp://127.0.0.1:1883", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_TCP, false, "127.0.0.1",
     1883, ""},
    {"mqtt://b:1883", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_MQTT, false, "b", 1883, ""},
    {"ssl://b:8883", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_SSL, true, "b", 8883, ""},
    {"mqtts://b:8883", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_MQTTS, true, "b", 8883, ""},
    {"ws://b:80/mqtt", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_WS, false, "b", 80, "/mqtt"},
    {"wss://[::1]:443/mqtt?x=1", OCB_URL_SCHEMES_MQTT, false, true, OCB_URL_WSS, true, "::1", 443,
     "/mqtt?x=1"},
    {"https://127.0.0.1:8743", OCB_URL_SCHEMES_HTTP, true, true, OCB_URL_HTTPS, true, "127.0.0.1",
     8743, ""},
    {"https://platform.example.com", OCB_URL_SCHEMES_HTTP, true, true, OCB_URL_HTTPS, true,
     "platform.example.com", 0, ""},
    {"http://bridge.example.com:8080/cb/", OCB_URL_SCHEMES_HTTP, false, true, OCB_URL_HTTP, false,
     "bridge.example.com", 8080, "/cb/"},
    {"http://h:1#frag", OCB_URL_SCHEMES_HTTP, false, true, OCB_URL_HTTP, false, "h", 1, "#frag"},
    {"HTTP://h:1/", OCB_URL_SCHEMES_HTTP | OCB_URL_ANY_CASE, false, true, OCB_URL_HTTP, false, "h",
     1, "/"},
    {"HTTP://h:1/", OCB_URL_SCHEMES_HTTP, false, false, 0, false, NULL, 0, NULL},
    {"http://example.com/cb", OCB_URL_SCHEMES_HTTP, false, false, 0, false, NULL, 0, NULL},
    {"http://x:1", OCB_URL_SCHEMES_MQTT, false, false, 0, false, NULL, 0, NULL},
    {"tcp://x:1", OCB_URL_SCHEMES_HTTP, false, false, 0, false, NULL, 0, NULL},
    {"ftp://x:1", OCB_URL_SCHEMES_HTTP | OCB_URL_SCHEMES_MQTT, false, false, 0, false, NULL, 0,
     NULL},
    {"tcp//x:1", OCB_URL_SCHEMES_MQTT, false, false, 0, false, NULL, 0, NULL},
    {"tcp://:1883", OCB_URL_SCHEMES_MQTT, false, false, 0, false, NULL, 0, NULL},
    {"tcp://", OCB_URL_SCHEMES_MQTT, true, false, 0, false, NULL, 0, NULL},
    {"tcp://u:p@b:1883", OCB_URL_SCHEMES_MQTT, false, false, 0, false, NULL, 0, NULL},
    {"https://h:99999", OCB_URL_SCHEMES_HTTP, true, false, 0, false, NULL, 0, NULL},
    {"http://h:1/a b", OCB_URL_SCHEMES_HTTP, false, false, 0, false, NULL, 0, NULL},
    {"http://h:1/\n", OCB_URL_SCHEMES_HTTP, false, false, 0, false, NULL, 0, NULL},
};

START_TEST(url_table)
{
    struct ocb_url u;
    enum ocb_err rc = grammar_url_parse(urls[_i].url, urls[_i].schemes, urls[_i].port_optional, &u);

    if (!urls[_i].ok) {
        ck_assert_msg(rc == OCB_ERR_INVALID, "\"%s\" accepted", urls[_i].url);
        return;
    }
    ck_assert_msg(rc == OCB_OK, "\"%s\" refused", urls[_i].url);
    ck_assert_int_eq(u.scheme, urls[_i].scheme);
    ck_assert(u.tls == urls[_i].tls);
    ck_assert_str_eq(u.authority.host, urls[_i].host);
    ck_assert_uint_eq(u.authority.port, urls[_i].port);
    ck_assert_str_eq(urls[_i].url + u.rest_off, urls[_i].rest);
}
END_TEST

START_TEST(url_edges)
{
    struct ocb_url u;

    ck_assert_int_eq(grammar_url_parse(NULL, OCB_URL_SCHEMES_HTTP, true, &u), OCB_ERR_INVALID);
    ck_assert_str_eq(grammar_url_scheme_name(OCB_URL_MQTTS), "mqtts");
    ck_assert_str_eq(grammar_url_scheme_name((enum ocb_url_scheme)99), "?");
}
END_TEST

/* ---- CIDRs */

static const struct {
    const char *s;
    bool ok;
    int family;
    unsigned prefix;
    const char *formatted;
} cidrs[] = {
    {"10.1.0.0/16", true, AF_INET, 16, "10.1.0.0/16"},
    {"127.0.0.1", true, AF_INET, 32, "127.0.0.1/32"},
    {"0.0.0.0/0", true, AF_INET, 0, "0.0.0.0/0"},
    {"10.0.0.1/008", true, AF_INET, 8, "10.0.0.1/8"},
    {"2001:db8::/32", true, AF_INET6, 32, "2001:db8::/32"},
    {"::1", true, AF_INET6, 128, "::1/128"},
    {"::/0", true, AF_INET6, 0, "::/0"},
    {"300.0.0.1", false, 0, 0, NULL},
    {"1.2.3.4/", false, 0, 0, NULL},
    {"1.2.3.4/33", false, 0, 0, NULL},
    {"::/129", false, 0, 0, NULL},
    {"1.2.3.4/+8", false, 0, 0, NULL},
    {"1.2.3.4/ 8", false, 0, 0, NULL},
    {"1.2.3.4/0008", false, 0, 0, NULL},
    {"1.2.3.4/8/8", false, 0, 0, NULL},
    {"/8", false, 0, 0, NULL},
    {"", false, 0, 0, NULL},
    {"host.example.com/8", false, 0, 0, NULL},
};

START_TEST(cidr_table)
{
    struct ocb_cidr c, again;
    char text[64];
    enum ocb_err rc = grammar_cidr_parse(cidrs[_i].s, &c);

    if (!cidrs[_i].ok) {
        ck_assert_msg(rc == OCB_ERR_INVALID, "\"%s\" accepted", cidrs[_i].s);
        return;
    }
    ck_assert_msg(rc == OCB_OK, "\"%s\" refused", cidrs[_i].s);
    ck_assert_int_eq(c.family, cidrs[_i].family);
    ck_assert_uint_eq(c.prefix, cidrs[_i].prefix);
    ck_assert_int_eq(grammar_cidr_format(&c, text, sizeof(text)), OCB_OK);
    ck_assert_str_eq(text, cidrs[_i].formatted);
    ck_assert_int_eq(grammar_cidr_parse(text, &again), OCB_OK);
    ck_assert_mem_eq(&c, &again, sizeof(c));
}
END_TEST

START_TEST(cidr_matching)
{
    struct ocb_cidr c;
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    char small[4];

    ck_assert_int_eq(grammar_cidr_parse("10.1.0.0/16", &c), OCB_OK);
    inet_pton(AF_INET, "10.1.200.3", &in.sin_addr);
    ck_assert(grammar_cidr_match(&c, &in));
    inet_pton(AF_INET, "10.2.0.1", &in.sin_addr);
    ck_assert(!grammar_cidr_match(&c, &in));
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr); /* dual-stack IPv4 client */
    ck_assert(grammar_cidr_match(&c, &in6));
    ck_assert_int_eq(grammar_cidr_parse("10.1.2.0/23", &c), OCB_OK); /* a prefix off a byte */
    inet_pton(AF_INET, "10.1.3.255", &in.sin_addr);
    ck_assert(grammar_cidr_match(&c, &in));
    inet_pton(AF_INET, "10.1.4.0", &in.sin_addr);
    ck_assert(!grammar_cidr_match(&c, &in));
    ck_assert_int_eq(grammar_cidr_parse("2001:db8::/32", &c), OCB_OK);
    inet_pton(AF_INET6, "2001:db8:1::7", &in6.sin6_addr);
    ck_assert(grammar_cidr_match(&c, &in6));
    inet_pton(AF_INET, "32.1.13.184", &in.sin_addr); /* 2001:0db8 as IPv4 bytes */
    ck_assert(!grammar_cidr_match(&c, &in));
    ck_assert_int_eq(grammar_cidr_parse("::/0", &c), OCB_OK);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
    ck_assert(grammar_cidr_match(&c, &in6));
    ck_assert_int_eq(grammar_cidr_format(&c, small, sizeof(small)), OCB_ERR_TOO_BIG);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const grammar_tests[] = {
        topic_levels, utf8_and_prefixes, endpoint_table, endpoint_format_and_wildcards,
        url_table,    url_edges,         cidr_table,     cidr_matching,
        NULL};
    const struct th_loop grammar_loops[] = {
        {topic_levels, 0, (int)(sizeof(levels) / sizeof(levels[0]))},
        {endpoint_table, 0, (int)(sizeof(endpoints) / sizeof(endpoints[0]))},
        {url_table, 0, (int)(sizeof(urls) / sizeof(urls[0]))},
        {cidr_table, 0, (int)(sizeof(cidrs) / sizeof(cidrs[0]))},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "grammar", .tests = grammar_tests, .loops = grammar_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "grammar", cases);
}
