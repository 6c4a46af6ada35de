/*
 * grammar.h: the small grammars of the bridge, each defined once.
 *
 * Listen addresses and endpoints ("host:port", "[v6]:port"), URLs
 * (mqtt.url, platform.url, http.public_url), CIDRs (http.allow_from) and
 * MQTT topic levels used to be parsed in five places, and two copies
 * disagreed: `ocbridge -t` accepted an app_id that routing then refused on
 * every push.  Now config.c checks, and http_rx.c, route.c and mqtt_link.c
 * act on, the same answers from the functions below.
 *
 * Pure: no I/O, no locks, no allocation; results go into the caller's
 * structs.  Thread-safe: yes (no shared state).
 */
#ifndef OCB_GRAMMAR_H
#define OCB_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/err.h"

/* Longest host (name or address literal, without brackets) we accept. */
#define OCB_GRAMMAR_HOST_MAX 255

/* ---- topic levels (DESIGN.md section 2) */

/*
 * NULL when s[0..len) is a valid MQTT topic level for the bridge: non-empty,
 * valid UTF-8 (RFC 3629: no overlong forms, surrogates or code points past
 * U+10FFFF), no '/', '+', '#', NUL, C0 or C1 control characters or DEL, and
 * no Unicode noncharacters (Mosquitto treats those as malformed and drops
 * the connection).  Otherwise a static one-line reason ("contains a control
 * character", ...).  The caller checks the whole topic's length and the
 * reserved "_" deviceId.
 */
const char *grammar_level_problem(const char *s, size_t len);

/* grammar_level_problem(s, len) == NULL. */
bool grammar_level_valid(const char *s, size_t len);

/* True when s[0..len) is valid UTF-8 (the strict RFC 3629 form). */
bool grammar_utf8_valid(const char *s, size_t len);

/*
 * NULL when s (NUL-terminated) is a valid topic prefix: one or more valid
 * levels joined by '/', no empty level, not starting with '$' (the broker's
 * system topics), at most max_len bytes.  Otherwise a static reason.
 */
const char *grammar_topic_prefix_problem(const char *s, size_t max_len);

/* ---- endpoints: "host:port" and "[v6]:port" */

struct ocb_endpoint {
    char host[OCB_GRAMMAR_HOST_MAX + 1]; /* NUL-terminated, without brackets */
    bool bracketed;                      /* written as "[host]" (an IPv6 literal) */
    bool has_port;
    uint16_t port; /* 1..65535 when has_port, else 0 */
};

/*
 * Parse "HOST:PORT" or "[V6]:PORT" (s, NUL-terminated), the form of
 * http.listen and of a URL's authority.  HOST is a name, an IPv4 literal or
 * "*" (printable ASCII, no ':' '[' ']' '/' '?' '#' '@' '\\' or space); an
 * IPv6 literal must be bracketed, and the brackets hold only hex digits,
 * ':' '.' and a "%zone" of letters, digits '.' '_' '-'.  PORT is 1..5
 * decimal digits with a value in 1..65535.  With port_optional the ":PORT"
 * may be left out.  OCB_ERR_INVALID when s is anything else; *out is then
 * zeroed.
 */
enum ocb_err grammar_endpoint_parse(const char *s, bool port_optional, struct ocb_endpoint *out);

/*
 * Write ep back in the form grammar_endpoint_parse() reads ("host:port",
 * "[v6]:port", or the host alone without a port).  OCB_ERR_TOO_BIG when it
 * does not fit in cap bytes (out then holds "").
 */
enum ocb_err grammar_endpoint_format(const struct ocb_endpoint *ep, char *out, size_t cap);

/* True when ep names every local address: "0.0.0.0", "*" or "[::]". */
bool grammar_endpoint_is_wildcard(const struct ocb_endpoint *ep);

/* ---- URLs: SCHEME://AUTHORITY[/path][?query][#fragment] */

enum ocb_url_scheme {
    OCB_URL_HTTP,
    OCB_URL_HTTPS,
    OCB_URL_TCP,
    OCB_URL_MQTT,
    OCB_URL_SSL,
    OCB_URL_MQTTS,
    OCB_URL_WS,
    OCB_URL_WSS,
};

/* Which schemes a caller accepts: a bit set of (1u << enum ocb_url_scheme). */
#define OCB_URL_SCHEMES_HTTP ((1u << OCB_URL_HTTP) | (1u << OCB_URL_HTTPS))
#define OCB_URL_SCHEMES_MQTT                                                                       \
    ((1u << OCB_URL_TCP) | (1u << OCB_URL_MQTT) | (1u << OCB_URL_SSL) | (1u << OCB_URL_MQTTS) |    \
     (1u << OCB_URL_WS) | (1u << OCB_URL_WSS))
/* Also in the `schemes` set: match the scheme's letters in any case (RFC 3986
 * says schemes are case-insensitive; URLs the platform hands back may be
 * "HTTP://").  Without it only lower case is a scheme, as paho wants. */
#define OCB_URL_ANY_CASE (1u << 31)

struct ocb_url {
    enum ocb_url_scheme scheme;
    bool tls; /* https, ssl, mqtts, wss */
    struct ocb_endpoint authority;
    size_t rest_off; /* offset in the input of the path/query/fragment ("" when none) */
};

/*
 * Parse url (NUL-terminated): a lower-case scheme (any case with
 * OCB_URL_ANY_CASE) from the `schemes` bit set, "://", an authority in grammar_endpoint_parse()'s
 * grammar (a port required unless port_optional), then nothing or a '/', '?' or '#' followed by
 * printable ASCII without spaces.  OCB_ERR_INVALID otherwise
 * (*out zeroed).
 */
enum ocb_err grammar_url_parse(const char *url, unsigned schemes, bool port_optional,
                               struct ocb_url *out);

/* The scheme's name ("https"). */
const char *grammar_url_scheme_name(enum ocb_url_scheme scheme);

/* ---- CIDRs (http.allow_from) */

struct ocb_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
};

/*
 * Parse "a.b.c.d/n" or "x::y/n"; a bare address means /32 or /128.  n is
 * 1..3 decimal digits, at most the address's width.  OCB_ERR_INVALID
 * otherwise.
 */
enum ocb_err grammar_cidr_parse(const char *s, struct ocb_cidr *out);

/*
 * Write cidr as "address/prefix" (the canonical inet_ntop form).
 * OCB_ERR_TOO_BIG when it does not fit in cap bytes.
 */
enum ocb_err grammar_cidr_format(const struct ocb_cidr *cidr, char *out, size_t cap);

/*
 * True when the address of sockaddr (a struct sockaddr_in or sockaddr_in6)
 * is inside cidr.  An IPv4 client on a dual-stack socket (::ffff:a.b.c.d)
 * matches IPv4 CIDRs.
 */
bool grammar_cidr_match(const struct ocb_cidr *cidr, const void *sockaddr);

#endif
