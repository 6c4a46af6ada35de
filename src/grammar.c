/*
 * grammar.c: topic levels, endpoints, URLs and CIDRs, each parsed once.
 *
 * Every function reads a caller's string and fills a caller's struct: no
 * I/O, no locks, no allocation, so config.c (at `ocbridge -t` and at every
 * reload), route.c (on every push), http_rx.c and mqtt_link.c (at start-up)
 * all apply one rule, and a fuzz target can check that what one function
 * accepts the others agree with.
 *
 * The grammars are deliberately narrower than the RFCs they borrow from:
 * a host is what a bridge operator writes in a config file (a name, an
 * IPv4 literal, a bracketed IPv6 literal or "*"), a port is plain decimal
 * digits (strtol's leading spaces and signs are not a port), and a topic
 * level is what Mosquitto will accept without dropping the connection.
 */
#include "ocb/grammar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- UTF-8 and topic levels */

/*
 * Decode one UTF-8 sequence at s[0..len).  Returns its length and stores the
 * code point, or returns 0 for anything RFC 3629 forbids: stray continuation
 * bytes, truncation, overlong forms, surrogates, values past U+10FFFF.
 */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n;
    uint32_t c = s[0];
    uint32_t min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2;
        c &= 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        c &= 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

bool grammar_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

const char *grammar_level_problem(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    if (s == NULL || len == 0)
        return "is empty";
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return "is not valid UTF-8";
        if (cp == '/' || cp == '+' || cp == '#')
            return "contains / + or #";
        /* NUL, C0, DEL and C1 (U+0080..U+009F, e.g. U+0085 NEXT LINE). */
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return "contains a control character";
        /* Noncharacters: Mosquitto treats them as malformed UTF-8. */
        if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
            return "contains a Unicode noncharacter";
        i += n;
    }
    return NULL;
}

bool grammar_level_valid(const char *s, size_t len)
{
    return grammar_level_problem(s, len) == NULL;
}

const char *grammar_topic_prefix_problem(const char *s, size_t max_len)
{
    size_t len = strlen(s);

    if (len == 0)
        return "is empty";
    if (len > max_len)
        return "is too long";
    if (s[0] == '$')
        return "starts with $ (the broker's system topics)";
    for (const char *level = s;;) {
        const char *slash = strchr(level, '/');
        size_t n = slash != NULL ? (size_t)(slash - level) : strlen(level);
        if (n == 0)
            return "has an empty level (a leading, trailing or double /)";
        const char *why = grammar_level_problem(level, n);
        if (why != NULL)
            return why;
        if (slash == NULL)
            return NULL;
        level = slash + 1;
    }
}

/* ---- endpoints */

/* A character of a host name or IPv4 literal: printable ASCII that cannot be
 * confused with the URL or endpoint punctuation around it. */
static bool host_char(unsigned char c)
{
    return c > 0x20 && c < 0x7F && !strchr(":[]/?#@\\", c);
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[0..n): an IPv6 literal as bracketed, with an optional %zone. */
static bool v6_literal(const char *s, size_t n)
{
    bool colon = false, zone = false;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (zone) {
            if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
                return false;
        } else if (c == '%') {
            if (i + 1 == n)
                return false; /* an empty zone */
            zone = true;
        } else if (c == ':') {
            colon = true;
        } else if (!is_hex(c) && c != '.') {
            return false;
        }
    }
    return colon;
}

/* 1..5 digits with a value in 1..65535. */
static bool port_parse(const char *s, size_t n, uint16_t *out)
{
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* The endpoint grammar on s[0..len) (need not be NUL-terminated). */
static enum ocb_err endpoint_parse_n(const char *s, size_t len, bool port_optional,
                                     struct ocb_endpoint *out)
{
    const char *host, *after;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return OCB_ERR_INVALID;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (!v6_literal(host, hlen))
            return OCB_ERR_INVALID;
        out->bracketed = true;
        after = close + 1;
    } else {
        host = s;
        hlen = 0;
        while (hlen < len && s[hlen] != ':')
            hlen++;
        if (hlen == 0)
            return OCB_ERR_INVALID;
        for (size_t i = 0; i < hlen; i++)
            if (!host_char((unsigned char)host[i]))
                return OCB_ERR_INVALID;
        after = host + hlen;
    }
    if (hlen > OCB_GRAMMAR_HOST_MAX)
        return OCB_ERR_INVALID;

    size_t rest = len - (size_t)(after - s);
    if (rest == 0) {
        if (!port_optional)
            return OCB_ERR_INVALID;
    } else if (after[0] != ':' || !port_parse(after + 1, rest - 1, &out->port)) {
        memset(out, 0, sizeof(*out));
        return OCB_ERR_INVALID;
    } else {
        out->has_port = true;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    return OCB_OK;
}

enum ocb_err grammar_endpoint_parse(const char *s, bool port_optional, struct ocb_endpoint *out)
{
    enum ocb_err rc = endpoint_parse_n(s, strlen(s), port_optional, out);
    if (rc != OCB_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

enum ocb_err grammar_endpoint_format(const struct ocb_endpoint *ep, char *out, size_t cap)
{
    char port[8] = "";
    int n;

    if (ep->has_port)
        snprintf(port, sizeof(port), ":%u", (unsigned)ep->port);
    n = snprintf(out, cap, "%s%s%s%s", ep->bracketed ? "[" : "", ep->host, ep->bracketed ? "]" : "",
                 port);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return OCB_ERR_TOO_BIG;
    }
    return OCB_OK;
}

bool grammar_endpoint_is_wildcard(const struct ocb_endpoint *ep)
{
    if (ep->bracketed)
        return strcmp(ep->host, "::") == 0;
    return strcmp(ep->host, "0.0.0.0") == 0 || strcmp(ep->host, "*") == 0;
}

/* ---- URLs */

static const char *const scheme_names[] = {
    [OCB_URL_HTTP] = "http", [OCB_URL_HTTPS] = "https", [OCB_URL_TCP] = "tcp",
    [OCB_URL_MQTT] = "mqtt", [OCB_URL_SSL] = "ssl",     [OCB_URL_MQTTS] = "mqtts",
    [OCB_URL_WS] = "ws",     [OCB_URL_WSS] = "wss",
};
#define N_SCHEMES (sizeof(scheme_names) / sizeof(scheme_names[0]))

const char *grammar_url_scheme_name(enum ocb_url_scheme scheme)
{
    return (size_t)scheme < N_SCHEMES ? scheme_names[scheme] : "?";
}

enum ocb_err grammar_url_parse(const char *url, unsigned schemes, bool port_optional,
                               struct ocb_url *out)
{
    const char *sep = url != NULL ? strstr(url, "://") : NULL;
    size_t slen;

    memset(out, 0, sizeof(*out));
    if (sep == NULL)
        return OCB_ERR_INVALID;
    slen = (size_t)(sep - url);
    size_t k = 0;
    for (; k < N_SCHEMES; k++)
        if ((schemes & (1u << k)) && strlen(scheme_names[k]) == slen &&
            (schemes & OCB_URL_ANY_CASE ? strncasecmp(url, scheme_names[k], slen)
                                        : memcmp(url, scheme_names[k], slen)) == 0)
            break;
    if (k == N_SCHEMES)
        return OCB_ERR_INVALID;

    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    if (endpoint_parse_n(auth, alen, port_optional, &out->authority) != OCB_OK) {
        memset(out, 0, sizeof(*out));
        return OCB_ERR_INVALID;
    }
    for (const unsigned char *p = (const unsigned char *)auth + alen; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7F) {
            memset(out, 0, sizeof(*out));
            return OCB_ERR_INVALID;
        }
    }
    out->scheme = (enum ocb_url_scheme)k;
    out->tls = k == OCB_URL_HTTPS || k == OCB_URL_SSL || k == OCB_URL_MQTTS || k == OCB_URL_WSS;
    out->rest_off = (size_t)(auth + alen - url);
    return OCB_OK;
}

/* ---- CIDRs */

enum ocb_err grammar_cidr_parse(const char *s, struct ocb_cidr *out)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max;

    memset(out, 0, sizeof(*out));
    if (n == 0 || n >= sizeof(addr))
        return OCB_ERR_INVALID;
    memcpy(addr, s, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        memset(out, 0, sizeof(*out));
        return OCB_ERR_INVALID;
    }
    out->prefix = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dn = strlen(d);
        unsigned p = 0;
        if (dn == 0 || dn > 3) {
            memset(out, 0, sizeof(*out));
            return OCB_ERR_INVALID;
        }
        for (size_t i = 0; i < dn; i++) {
            if (!is_digit((unsigned char)d[i])) {
                memset(out, 0, sizeof(*out));
                return OCB_ERR_INVALID;
            }
            p = p * 10 + (unsigned)(d[i] - '0');
        }
        if (p > max) {
            memset(out, 0, sizeof(*out));
            return OCB_ERR_INVALID;
        }
        out->prefix = p;
    }
    return OCB_OK;
}

enum ocb_err grammar_cidr_format(const struct ocb_cidr *cidr, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    int n;

    if (inet_ntop(cidr->family, cidr->addr, a, sizeof(a)) == NULL) {
        if (cap > 0)
            out[0] = '\0';
        return OCB_ERR_INVALID;
    }
    n = snprintf(out, cap, "%s/%u", a, cidr->prefix);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return OCB_ERR_TOO_BIG;
    }
    return OCB_OK;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool grammar_cidr_match(const struct ocb_cidr *cidr, const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family == AF_INET && cidr->family == AF_INET) {
        const struct sockaddr_in *in = sockaddr;
        return prefix_equal((const unsigned char *)&in->sin_addr, cidr->addr, cidr->prefix);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sockaddr;
        const unsigned char *a = (const unsigned char *)&in6->sin6_addr;
        if (cidr->family == AF_INET6)
            return prefix_equal(a, cidr->addr, cidr->prefix);
        /* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (cidr->family == AF_INET && memcmp(a, mapped, sizeof(mapped)) == 0)
            return prefix_equal(a + 12, cidr->addr, cidr->prefix);
    }
    return false;
}
