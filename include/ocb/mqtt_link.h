/*
 * mqtt_link.h: the bridge's one connection to the MQTT broker (paho MQTTAsync).
 *
 * Owns the paho client, reconnects with backoff, tracks readiness, bounds the
 * number of QoS>0 publishes awaiting their PUBACK (mqtt.max_inflight) and
 * re-subscribes the registered filters after every (re)connect.
 *
 * Threads: mqtt_link_publish() may be called from any thread (MHD threads,
 * the command worker).  Every callback (ocb_mqtt_done, ocb_mqtt_on_message,
 * ocb_mqtt_on_state) runs on paho's callback thread: it must not block and
 * must copy what it keeps.  "If a call that takes a callback fails, the
 * callback never runs": when mqtt_link_publish() returns anything but OCB_OK,
 * done is not called.
 */
#ifndef OCB_MQTT_LINK_H
#define OCB_MQTT_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/config.h"
#include "ocb/err.h"

struct ocb_mqtt_link;

/* An arriving message; every pointer is borrowed for the duration of the callback. */
struct ocb_mqtt_msg {
    const char *topic;
    const void *payload;
    size_t len;
    int qos;
    bool retained;
    const char *response_topic; /* MQTT 5 response topic or NULL */
    const void *correlation;    /* MQTT 5 correlation data or NULL */
    size_t correlation_len;
};

/* What to publish; every pointer is borrowed and copied before the call returns. */
struct ocb_mqtt_pub {
    const char *topic;
    const void *payload;
    size_t len;
    const char *notify_type;    /* MQTT 5 user property "notifyType", or NULL */
    const char *request_id;     /* MQTT 5 user property "requestId", or NULL */
    const char *ocb_request_id; /* MQTT 5 user property "ocbRequestId" (the bridge's own
                                   request id, for tracing), or NULL */
    const char *content_type;   /* MQTT 5 content type (e.g. "application/json"), or NULL */
    bool payload_utf8;          /* MQTT 5 payload format indicator 1; set it only when the
                                   payload is valid UTF-8 */
    const void *correlation;    /* MQTT 5 correlation data, or NULL */
    size_t correlation_len;
};

/* rc is OCB_OK once the broker acknowledged (PUBACK for QoS 1, sent for QoS 0),
 * OCB_ERR_NOT_CONNECTED when the connection dropped first (or the link stopped),
 * OCB_ERR_PROTOCOL when an MQTT 5 broker refused it with a reason code >= 0x80. */
typedef void (*ocb_mqtt_done)(void *ctx, enum ocb_err rc);
typedef void (*ocb_mqtt_on_message)(void *ctx, const struct ocb_mqtt_msg *msg);
typedef void (*ocb_mqtt_on_state)(void *ctx, bool connected);
/* The broker granted every filter in filters (the wanted set, borrowed for the call). */
typedef void (*ocb_mqtt_on_subscribed)(void *ctx, const char *const *filters, size_t n);

/* Takes a reference to cfg (config.h) for the link's lifetime; the caller keeps its own. */
enum ocb_err mqtt_link_new(const struct ocb_config *cfg, struct ocb_mqtt_link **out);

/* Before mqtt_link_start(): where arriving messages and state changes go (either may be NULL). */
void mqtt_link_set_handlers(struct ocb_mqtt_link *link, ocb_mqtt_on_message on_message,
                            ocb_mqtt_on_state on_state, void *ctx);

/* Before mqtt_link_start(): a filter subscribed at QoS 1 on every (re)connect. */
enum ocb_err mqtt_link_add_subscription(struct ocb_mqtt_link *link, const char *filter);

/*
 * Before mqtt_link_start(): the filters an earlier run subscribed (copied; NULL/0: not
 * known), and who to tell the new set once the broker granted it (may be NULL; runs on
 * paho's callback thread, after every successful (re)subscribe).  On a resumed session
 * the link unsubscribes every remembered filter that is no longer wanted, and always the
 * plain variant of a wanted "$share/<group>/..." filter, before subscribing, so that the
 * broker's set equals the wanted one and no command arrives twice.
 */
enum ocb_err mqtt_link_set_previous_subscriptions(struct ocb_mqtt_link *link,
                                                  const char *const *filters, size_t n,
                                                  ocb_mqtt_on_subscribed on_subscribed, void *ctx);

/*
 * Connect in the background; returns at once.  Reconnects forever until stop.  Every
 * way a connection ends (a server DISCONNECT with any reason code, a lost socket, a
 * keepalive timeout, a failed connect) fails the publishes in flight with
 * OCB_ERR_NOT_CONNECTED and schedules the next attempt after mqtt.reconnect_min_ms,
 * doubling to mqtt.reconnect_max_ms, each plus up to a quarter of jitter.
 */
enum ocb_err mqtt_link_start(struct ocb_mqtt_link *link);

bool mqtt_link_connected(const struct ocb_mqtt_link *link);
/*
 * true when connected and the broker granted every registered filter (or none is
 * registered).  Otherwise why (cap bytes, may be 0) says what is missing: "subscribing
 * to the command topics" until the SUBACK, "broker refused subscription <filter>" after
 * a refusal (which also logs an error and counts ocb_mqtt_subscriptions_refused_total).
 * Any thread.
 */
bool mqtt_link_subscriptions_ok(struct ocb_mqtt_link *link, char *why, size_t cap);
unsigned mqtt_link_inflight(const struct ocb_mqtt_link *link);

/*
 * Publish at mqtt.qos, not retained.  OCB_ERR_NOT_CONNECTED when the broker
 * is down, OCB_ERR_FULL when mqtt.max_inflight publishes await their ack,
 * OCB_ERR_STOPPED after stop; in those cases done never runs.  On OCB_OK done
 * runs exactly once, on paho's thread or the link's connector thread, and may
 * run before this returns (the connection ended while the message was being
 * handed over: done gets OCB_ERR_NOT_CONNECTED).  done may be NULL.
 */
enum ocb_err mqtt_link_publish(struct ocb_mqtt_link *link, const struct ocb_mqtt_pub *pub,
                               ocb_mqtt_done done, void *ctx);

/* Wait up to drain_ms for in-flight publishes, then disconnect.  Idempotent. */
void mqtt_link_stop(struct ocb_mqtt_link *link, unsigned drain_ms);

/* Stops if needed and frees.  NULL is a no-op. */
void mqtt_link_free(struct ocb_mqtt_link *link);

#endif
