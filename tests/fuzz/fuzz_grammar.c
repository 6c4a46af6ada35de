/*
 * fuzz_grammar.c: any bytes, read as each of grammar.h's grammars, give
 * answers that agree with each other and with their users:
 *
 * - a topic level is accepted by grammar_level_valid() exactly when routing
 *   accepts it as an appId and as a deviceId (other than "_"), and exactly
 *   when `ocbridge -t` accepts it as apps[0].app_id (within 128 bytes);
 *   an accepted level is valid UTF-8;
 * - an endpoint, URL or CIDR that parses formats back to text that parses
 *   to the same value; an endpoint with a port is also a URL's authority;
 * - a parsed CIDR contains its own address.
 *
 * Never a crash, a leak or an out-of-bounds read.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ocb/config.h"
#include "ocb/grammar.h"
#include "ocb/route.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_INPUT 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* s as the inside of a JSON string: quotes, backslashes and C0 escaped, other bytes raw. */
static void json_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void check_level(const char *s, size_t len, const uint8_t *raw, size_t rawlen)
{
    bool valid = grammar_level_valid(s, len);
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160], esc[MAX_INPUT * 6 + 1], body[MAX_INPUT * 6 + 64], err[512];

    /* With an embedded NUL the raw bytes are no level (and no C string). */
    REQUIRE(grammar_level_valid((const char *)raw, rawlen) == (valid && len == rawlen));
    if (valid)
        REQUIRE(grammar_utf8_valid(s, len));

    /* Routing: as the appId (a C string) ... */
    enum ocb_err rc = route_from_push("iot", s, "{\"notifyType\":\"n\"}", 18, 65535, &r, &why,
                                      reason, sizeof(reason));
    REQUIRE((rc == OCB_OK) == valid);
    route_cleanup(&r);

    /* ... and as the deviceId in a body. */
    json_escape(s, esc, sizeof(esc));
    int n = snprintf(body, sizeof(body), "{\"notifyType\":\"n\",\"deviceId\":\"%s\"}", esc);
    REQUIRE(n > 0 && (size_t)n < sizeof(body));
    rc = route_from_push("iot", "app", body, (size_t)n, 65535, &r, &why, reason, sizeof(reason));
    REQUIRE((rc == OCB_OK) == (valid && strcmp(s, "_") != 0));
    route_cleanup(&r);

    /* The configuration check: the same rule, within the app id's cap.  "${" would be
     * expanded as a variable and "OCB_" spelt in the environment could override it. */
    if (strstr(s, "${") != NULL)
        return;
    n = snprintf(body, sizeof(body), "{\"apps\":[{\"app_id\":\"%s\"}]}", esc);
    REQUIRE(n > 0 && (size_t)n < sizeof(body));
    struct ocb_config *cfg = NULL;
    rc = config_parse("fuzz.json", body, (size_t)n, &cfg, err, sizeof(err));
    bool config_ok = valid && len <= 128 && strcmp(s, "_") != 0;
    REQUIRE((rc == OCB_OK) == config_ok);
    if (rc == OCB_OK)
        REQUIRE(strcmp(cfg->apps[0].app_id, s) == 0);
    else {
        static const char want[] = "fuzz.json: apps[0].app_id: ";
        REQUIRE(strncmp(err, want, sizeof(want) - 1) == 0);
    }
    config_free(cfg);
}

static void check_endpoint(const char *s, bool port_optional)
{
    struct ocb_endpoint ep, again;
    char text[OCB_GRAMMAR_HOST_MAX + 16], url[OCB_GRAMMAR_HOST_MAX + 32];

    if (grammar_endpoint_parse(s, port_optional, &ep) != OCB_OK) {
        REQUIRE(ep.host[0] == '\0' && !ep.has_port);
        return;
    }
    REQUIRE(ep.host[0] != '\0');
    REQUIRE(ep.has_port ? ep.port >= 1 : (port_optional && ep.port == 0));
    REQUIRE(grammar_endpoint_format(&ep, text, sizeof(text)) == OCB_OK);
    REQUIRE(grammar_endpoint_parse(text, true, &again) == OCB_OK);
    REQUIRE(memcmp(&ep, &again, sizeof(ep)) == 0);
    if (ep.has_port)
        REQUIRE(grammar_endpoint_parse(text, false, &again) == OCB_OK);

    /* The same text is a URL's authority, whatever path follows. */
    struct ocb_url u;
    snprintf(url, sizeof(url), "tcp://%s/p", s);
    REQUIRE(grammar_url_parse(url, OCB_URL_SCHEMES_MQTT, port_optional, &u) == OCB_OK);
    REQUIRE(memcmp(&u.authority, &ep, sizeof(ep)) == 0);
    REQUIRE(strcmp(url + u.rest_off, "/p") == 0);
}

static void check_url(const char *s, unsigned schemes, bool port_optional)
{
    struct ocb_url u, again;
    char auth[OCB_GRAMMAR_HOST_MAX + 16], *text;

    if (grammar_url_parse(s, schemes, port_optional, &u) != OCB_OK)
        return;
    REQUIRE(schemes & (1u << u.scheme));
    REQUIRE(u.rest_off <= strlen(s));
    REQUIRE(u.tls == (u.scheme == OCB_URL_HTTPS || u.scheme == OCB_URL_SSL ||
                      u.scheme == OCB_URL_MQTTS || u.scheme == OCB_URL_WSS));
    const char *rest = s + u.rest_off;
    REQUIRE(rest[0] == '\0' || rest[0] == '/' || rest[0] == '?' || rest[0] == '#');
    REQUIRE(grammar_endpoint_format(&u.authority, auth, sizeof(auth)) == OCB_OK);
    size_t cap = strlen(s) + sizeof(auth) + 16;
    text = malloc(cap);
    REQUIRE(text != NULL);
    snprintf(text, cap, "%s://%s%s", grammar_url_scheme_name(u.scheme), auth, rest);
    REQUIRE(grammar_url_parse(text, schemes & ~OCB_URL_ANY_CASE, port_optional, &again) == OCB_OK);
    REQUIRE(again.scheme == u.scheme && again.tls == u.tls);
    REQUIRE(memcmp(&again.authority, &u.authority, sizeof(u.authority)) == 0);
    REQUIRE(strcmp(text + again.rest_off, rest) == 0);
    free(text);
}

static void check_cidr(const char *s)
{
    struct ocb_cidr c, again;
    char text[64];

    if (grammar_cidr_parse(s, &c) != OCB_OK)
        return;
    REQUIRE(c.family == AF_INET || c.family == AF_INET6);
    REQUIRE(c.prefix <= (c.family == AF_INET ? 32u : 128u));
    REQUIRE(grammar_cidr_format(&c, text, sizeof(text)) == OCB_OK);
    REQUIRE(grammar_cidr_parse(text, &again) == OCB_OK);
    REQUIRE(memcmp(&c, &again, sizeof(c)) == 0);

    /* It contains its own address, as a client of either family would present it. */
    if (c.family == AF_INET) {
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        memset(&in, 0, sizeof(in));
        memset(&in6, 0, sizeof(in6));
        in.sin_family = AF_INET;
        memcpy(&in.sin_addr, c.addr, 4);
        REQUIRE(grammar_cidr_match(&c, &in));
        in6.sin6_family = AF_INET6;
        memset((unsigned char *)&in6.sin6_addr + 10, 0xff, 2);
        memcpy((unsigned char *)&in6.sin6_addr + 12, c.addr, 4);
        REQUIRE(grammar_cidr_match(&c, &in6));
    } else {
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof(in6));
        in6.sin6_family = AF_INET6;
        memcpy(&in6.sin6_addr, c.addr, 16);
        REQUIRE(grammar_cidr_match(&c, &in6));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[MAX_INPUT + 1];
    size_t len;

    if (size > MAX_INPUT)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    len = strlen(s);

    check_level(s, len, data, size);
    {
        const char *why = grammar_topic_prefix_problem(s, 128);
        if (why == NULL) {
            /* Every level of an accepted prefix is a valid level. */
            for (const char *p = s;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
                REQUIRE(grammar_level_valid(p, n));
                if (slash == NULL)
                    break;
                p = slash + 1;
            }
        }
    }
    check_endpoint(s, false);
    check_endpoint(s, true);
    check_url(s, OCB_URL_SCHEMES_HTTP | OCB_URL_SCHEMES_MQTT, true);
    check_url(s, OCB_URL_SCHEMES_HTTP | OCB_URL_ANY_CASE, false);
    check_cidr(s);
    return 0;
}
