/*
 * http_rx.h: the push listener (docs/design.md section 3), on libmicrohttpd.
 *
 *   POST /push/<appId>[/<pushToken>]   route the body, publish it, answer 200 "ok" after the
 *                                      broker's PUBACK or once spooled durably (spool.mode),
 *                                      503 + Retry-After when neither is possible
 *   GET  /healthz                      200 while the process runs
 *   GET  /readyz                       200 when the broker is connected (or the spool takes
 *                                      pushes) and every ready hook says so
 *   GET  /metrics                      Prometheus text (metrics_render())
 *
 * A push never blocks an MHD thread on the broker: the connection is
 * suspended while its publish is in flight and resumed by the ack (paho's
 * callback thread) or by the publish-timeout timer, whichever comes first;
 * the other is then harmless.
 *
 * Threads: http_rx_new/add_ready_hook/set_command_status_hook/start/stop/free
 * are called from one thread (main).  Hooks run on MHD threads and must not
 * block.  The receiver holds a reference to its configuration (config.h) and
 * each request one to the configuration it started under; the link is
 * borrowed and must outlive the receiver.
 */
#ifndef OCB_HTTP_RX_H
#define OCB_HTTP_RX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/mqtt_link.h"
#include "ocb/spool.h"

#define OCB_HTTP_MAX_READY_HOOKS 4

struct ocb_http_rx;
struct ocb_coord;

/* A readiness condition besides the broker connection (e.g. "platform login works"). */
typedef bool (*ocb_http_ready_fn)(void *ctx);

/*
 * Called on an MHD thread after a command status callback was published and
 * acknowledged, before the platform gets its 200.  Every pointer is borrowed
 * for the duration of the call; body is the callback body exactly as received
 * (not NUL-terminated).  Must not block.
 */
typedef void (*ocb_http_command_status_fn)(void *ctx, const char *app_id, const char *device_id,
                                           const char *command_id, const char *body, size_t len);

/* Takes a reference to cfg (the caller keeps its own); link is borrowed.  Does not listen yet. */
enum ocb_err http_rx_new(const struct ocb_config *cfg, struct ocb_mqtt_link *link,
                         struct ocb_http_rx **out);

/* Before http_rx_start(): /readyz also requires fn(ctx); name appears in the 503 body.
 * OCB_ERR_FULL past OCB_HTTP_MAX_READY_HOOKS.  name is borrowed (use a literal). */
enum ocb_err http_rx_add_ready_hook(struct ocb_http_rx *rx, const char *name, ocb_http_ready_fn fn,
                                    void *ctx);

/*
 * Before http_rx_start(): the push spool (borrowed; must outlive the
 * receiver).  Used as spool.mode says; without one, pushes behave as
 * spool.mode off.
 */
void http_rx_set_spool(struct ocb_http_rx *rx, struct ocb_spool *sp);
/*
 * Before http_rx_start(): the replicas' coordination (borrowed; coord_stop()
 * only after http_rx_stop(), coord_free() after http_rx_free()).  With
 * push.dedup_window_s set, a push this process's window does not know is
 * checked against the shared window in Redis (the connection suspended until
 * coord answers, at most mqtt.publish_timeout_ms; Redis unreachable or slow:
 * the local window alone decides), and an accepted one is recorded there.
 */
void http_rx_set_coord(struct ocb_http_rx *rx, struct ocb_coord *coord);

/* Before http_rx_start(): while fn(ctx) is true /readyz adds "; <note>" to its body without
 * failing (e.g. "degraded: redis unreachable").  Shares the hooks' room; note is borrowed. */
enum ocb_err http_rx_add_ready_note(struct ocb_http_rx *rx, const char *note, ocb_http_ready_fn fn,
                                    void *ctx);

/* Before http_rx_start(): where published command status callbacks are reported. */
void http_rx_set_command_status_hook(struct ocb_http_rx *rx, ocb_http_command_status_fn fn,
                                     void *ctx);

/* Bind http.listen (with TLS when http.tls_cert is set) and start serving.
 * OCB_ERR_IO when the address cannot be bound, OCB_ERR_TLS when the
 * certificate files cannot be read. */
enum ocb_err http_rx_start(struct ocb_http_rx *rx);

/*
 * Serve new requests under cfg (SIGHUP): apps, push tokens, allow_from,
 * max_body_bytes, retry_after_s.  Listener keys (address, TLS) stay as bound
 * at start; config_reload_merge() keeps them equal.  Takes a reference to
 * cfg and gives back the one to the configuration it replaces; requests
 * already under way hold their own and finish under the configuration they
 * started with, which is freed when the last of them is.  Any thread.
 */
void http_rx_reload(struct ocb_http_rx *rx, const struct ocb_config *cfg);

/* The bound TCP port (useful when http.listen asked for port 0); 0 before start. */
uint16_t http_rx_port(const struct ocb_http_rx *rx);

/*
 * Graceful stop: stop accepting connections, answer new requests on open
 * connections with 503, let every request in flight get its answer (ack or
 * publish timeout) for up to drain_ms, then answer whatever is left with 503
 * and shut the server down.  Call before stopping the MQTT link.  Idempotent.
 */
void http_rx_stop(struct ocb_http_rx *rx, unsigned drain_ms);

/* Stops if needed and frees.  NULL is a no-op. */
void http_rx_free(struct ocb_http_rx *rx);

/* ---- pure helpers, exposed for unit tests */

/*
 * Split "/push/<appId>" or "/push/<appId>/<token>" (a trailing "/" means no
 * token).  On success copies the parts into app/token (NUL-terminated) and
 * returns true; false for any other shape or when a part does not fit.
 */
bool http_rx_parse_push_path(const char *url, char *app, size_t app_cap, char *token,
                             size_t token_cap);

/* Compare a presented push token with the expected one in time that depends
 * only on the expected token's length.  An empty expected token accepts anything. */
bool http_rx_token_ok(const char *expected, const char *given);

#endif
