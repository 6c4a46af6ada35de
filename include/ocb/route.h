/*
 * route.h: a pushed body -> the MQTT topic it is published on (docs/design.md section 2).
 *
 * Pure: no I/O, no locks, no globals.  The body is parsed with cJSON only to
 * read the routing fields; the caller publishes the original bytes, so key
 * order, whitespace and escapes reach subscribers exactly as received.
 *
 *   <prefix>/<appId>/<deviceId>/<notifyType>       a notification
 *   <prefix>/<appId>/<deviceId>/commandStatus      a command status callback
 *                                                  (no notifyType, has commandId + result)
 *
 * deviceId comes from the body's "deviceId", else "header.deviceId", else
 * "_".  Every id that becomes a topic level must be a valid level (see
 * grammar_level_valid()); anything else is rejected with a one-line reason and
 * is never published.
 *
 * Thread-safe: yes (no shared state).
 */
#ifndef OCB_ROUTE_H
#define OCB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/err.h"

/* The deviceId level used when the body names no device. */
#define OCB_ROUTE_NO_DEVICE "_"
/* The last topic level of command status callbacks. */
#define OCB_ROUTE_STATUS_LEVEL "commandStatus"
/* Cap on ids that never become topic levels (requestId, commandId). */
#define OCB_ROUTE_ID_MAX 256

enum ocb_route_kind {
    OCB_ROUTE_NOTIFY,         /* has a notifyType */
    OCB_ROUTE_COMMAND_STATUS, /* a command status callback */
};

/* Why a body was rejected; maps onto the ocb_push_rejections_total reasons. */
enum ocb_route_reject {
    OCB_ROUTE_OK = 0,
    OCB_ROUTE_BAD_JSON,  /* not JSON, not an object, neither notification nor callback */
    OCB_ROUTE_BAD_TOPIC, /* an id is not a valid topic level, or the topic is too long */
};

/*
 * The result of routing one body.  Every string is owned by the route and
 * freed by route_cleanup(); a zeroed struct is a valid empty route.
 */
struct ocb_route {
    enum ocb_route_kind kind;
    char *topic;       /* the full topic */
    char *notify_type; /* the notifyType, or "commandStatus" for callbacks */
    char *device_id;   /* the deviceId level, "_" when the body names none */
    char *request_id;  /* body requestId / header.requestId when a usable string, else NULL */
    char *command_id;  /* status callbacks only, else NULL */
    bool payload_utf8; /* the whole body is valid UTF-8 (MQTT 5 payload format indicator) */
};

/*
 * Route body[0..len) pushed for app_id.  On OCB_OK *out is filled (the caller
 * calls route_cleanup()).  On OCB_ERR_INVALID *why says which rejection and
 * reason receives a one-line, NUL-terminated explanation safe to send back
 * and log (it quotes no bytes of the body).  OCB_ERR_NOMEM on allocation
 * failure.  Never reads past len; body need not be NUL-terminated.
 * max_topic_len is the cap on the whole topic in bytes.
 */
enum ocb_err route_from_push(const char *prefix, const char *app_id, const char *body, size_t len,
                             size_t max_topic_len, struct ocb_route *out,
                             enum ocb_route_reject *why, char *reason, size_t reasonlen);

/* Free what route_from_push() filled in and zero the struct.  NULL is a no-op. */
void route_cleanup(struct ocb_route *r);

#endif
