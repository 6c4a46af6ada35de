/*
 * coord.h: coordination of several bridges serving one app, through Redis
 * (coordination.redis_url; README "Running several bridges").
 *
 * What is shared, per app: the platform token (access, refresh, expiry and
 * an epoch, stored with compare-and-set under a lock whose release checks
 * its value), the sliding rate window of platform.rate_limit (one atomic
 * script), the requesters of MQTT 5 response topics (commandId -> topic and
 * correlation data, with a TTL), the subscription-sync lease and the push
 * de-duplication window.  Keys are "<prefix>:{<appId>}:<what>".
 *
 * Two Redis connections, each owned by one thread, each with a connect and
 * a command timeout (coordination.connect_timeout_ms, .timeout_ms):
 *   - the "sync" connection, used by the synchronous calls below, belongs to
 *     the thread that owns the platform client (the command worker; main
 *     during the shutdown drain);
 *   - the coord thread's own connection serves the asynchronous calls
 *     (coord_status_forward, coord_dedup_seen/record), so no libmicrohttpd or paho
 *     thread ever waits on Redis: they queue and return.
 *
 * Redis unreachable is "degraded", not down: a call fails fast with
 * OCB_ERR_NOT_CONNECTED (no network wait until the reconnect backoff has
 * passed: 250 ms doubling to 5 s), callers fall back to local state, one
 * warn line is logged, the ocb_coord_degraded gauge is 1 and
 * coord_degraded() is true until both connections work again.
 *
 * Threads: as said per function.  coord_degraded(), coord_replica_id() and
 * the asynchronous calls are thread-safe; lifecycle calls are main's.
 */
#ifndef OCB_COORD_H
#define OCB_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/requesters.h"

#define OCB_COORD_TOKEN_MAX       512 /* access and refresh tokens, with the NUL */
#define OCB_COORD_VALUE_MAX       64  /* a lock value or a rate-window member, with the NUL */
#define OCB_COORD_REPLICA_MAX     128
#define OCB_COORD_QUEUE_MAX       1024 /* asynchronous calls waiting for the coord thread */
#define OCB_COORD_STATUS_BODY_MAX 16384

struct ocb_coord;

/* A parsed coordination.redis_url. */
struct ocb_coord_url {
    bool unix_socket;
    char host[256]; /* or the socket path */
    unsigned port;
    char user[128];
    char password[256];
    unsigned db;
};

/*
 * Pure: parse redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N].
 * rediss:// is refused (this build's hiredis has no TLS).  On failure why
 * gets a one-line reason for `-t`.
 */
enum ocb_err coord_url_parse(const char *url, struct ocb_coord_url *out, char *why, size_t cap);

/* The token shared by the replicas of one app.  Times are wall-clock (epoch) ms. */
struct ocb_coord_token {
    char access[OCB_COORD_TOKEN_MAX];
    char refresh[OCB_COORD_TOKEN_MAX];
    int64_t expires_wall_ms;
    int64_t refresh_wall_ms;
    uint64_t epoch; /* bumped by every store; 0 = never stored */
};

/* Main: cfg is borrowed (must outlive c) and has a coordination.redis_url.  Connects nothing yet.
 */
enum ocb_err coord_new(const struct ocb_config *cfg, struct ocb_coord **out);

/* Main: start the coord thread (it connects, then pings every second). */
enum ocb_err coord_start(struct ocb_coord *c);

/* Main: stop and join the coord thread.  Queued status forwards are dropped (logged);
 * queued de-duplication checks get OCB_ERR_STOPPED.  Idempotent. */
void coord_stop(struct ocb_coord *c);

/* Main, after coord_stop and after the sync connection's owner has stopped.  NULL is a no-op. */
void coord_free(struct ocb_coord *c);

/* Any thread: coordination.replica_id, or "<hostname>-<pid>" when unset.  Borrowed. */
const char *coord_replica_id(const struct ocb_coord *c);

/* Any thread: a Redis connection is down (local state in use). */
bool coord_degraded(const struct ocb_coord *c);

/* The shared token's times are wall-clock ms (ocb_wall_ms(), util.h): replicas compare them. */

/* ---- synchronous calls: the sync connection's owner only (see above) */

/* Reconnect the sync connection when it is down and its backoff has passed.  Cheap otherwise. */
void coord_poll(struct ocb_coord *c);

/* OCB_OK with *t filled; OCB_ERR_NOT_FOUND (t->epoch = 0) when none is stored;
 * OCB_ERR_NOT_CONNECTED / OCB_ERR_PROTOCOL when Redis cannot say. */
enum ocb_err coord_token_get(struct ocb_coord *c, const char *app_id, struct ocb_coord_token *t);

/* Compare-and-set: store t when the stored epoch is still expected_epoch; on
 * OCB_OK t->epoch is the new epoch.  OCB_ERR_FULL when another store won. */
enum ocb_err coord_token_store(struct ocb_coord *c, const char *app_id, uint64_t expected_epoch,
                               struct ocb_coord_token *t);

/* SET NX PX with a random value (written to value, OCB_COORD_VALUE_MAX bytes).
 * OCB_OK: held; OCB_ERR_FULL: another holder. */
enum ocb_err coord_lock_take(struct ocb_coord *c, const char *app_id, const char *name,
                             unsigned ttl_ms, char *value);

/* Release only if value still holds the lock (a script).  OCB_ERR_NOT_FOUND when it did not. */
enum ocb_err coord_lock_release(struct ocb_coord *c, const char *app_id, const char *name,
                                const char *value);

/*
 * One call of the app's shared sliding window (calls per window_ms, Redis's
 * clock): OCB_OK and member (OCB_COORD_VALUE_MAX bytes) names the slot taken;
 * OCB_ERR_FULL when the window is full, *retry_ms saying when a slot frees.
 */
enum ocb_err coord_rate_take(struct ocb_coord *c, const char *app_id, unsigned calls,
                             int64_t window_ms, char *member, int64_t *retry_ms);

/* The call of member completed: its slot counts from now (as the local window does). */
enum ocb_err coord_rate_done(struct ocb_coord *c, const char *app_id, const char *member);

/* Remember a requester for ttl_ms (any replica may forward its statuses). */
enum ocb_err coord_requester_put(struct ocb_coord *c, const struct ocb_requester *e,
                                 int64_t ttl_ms);

/* Take or renew the named lease for ttl_ms.  OCB_OK: ours; OCB_ERR_FULL: holder
 * (may be NULL, cap bytes) names the replica that has it. */
enum ocb_err coord_lease(struct ocb_coord *c, const char *app_id, const char *name, unsigned ttl_ms,
                         char *holder, size_t cap);

/* ---- asynchronous calls: any thread, never wait on Redis */

/*
 * A status callback whose commandId the local requester map does not know:
 * the coord thread looks the shared requester up (retrying for up to
 * OCB_REQUESTERS_EARLY_KEEP_MS, since the creating replica writes it only
 * after its answer) and, when another replica created it and it has a
 * response topic, calls emit(ctx, requester, body, len) on the coord thread.
 * A final status cuts the shared entry's life to final_keep_ms (so callers
 * queue final statuses even when their local map knew the command).  body is copied (at most
 * OCB_COORD_STATUS_BODY_MAX bytes).  OCB_ERR_FULL / OCB_ERR_TOO_BIG /
 * OCB_ERR_STOPPED / OCB_ERR_NOMEM: not queued, emit never runs.
 */
enum ocb_err coord_status_forward(struct ocb_coord *c, const char *app_id, const char *command_id,
                                  const char *body, size_t len, bool final, int64_t final_keep_ms,
                                  ocb_requester_emit emit, void *ctx);

/* coord_requester_put from any thread: queued for the coord thread (entry copied).
 * OCB_ERR_FULL / OCB_ERR_STOPPED / OCB_ERR_NOMEM: not queued. */
enum ocb_err coord_requester_put_async(struct ocb_coord *c, const struct ocb_requester *e,
                                       int64_t ttl_ms);

/* Result of coord_dedup_seen: rc OCB_OK and seen; otherwise Redis could not say (fall back). */
typedef void (*ocb_coord_seen_fn)(void *ctx, enum ocb_err rc, bool seen);

#define OCB_COORD_DIGEST_MAX 65 /* a body's digest in hex (dedup_digest()), with the NUL */

/*
 * Shared de-duplication window, the check: EXISTS
 * "<prefix>:{app}:dedup:<digest>" on the coord thread; done(ctx, OCB_OK,
 * seen) runs there.  Read-only: a push is marked only once accepted
 * (coord_dedup_record), so a push that ends in 503 leaves no mark and its
 * re-push is published.  When Redis is known down done runs at once, on the
 * caller's thread, with OCB_ERR_NOT_CONNECTED (and OCB_OK is returned); at
 * coord_stop() a queued check gets OCB_ERR_STOPPED on main.  Any other
 * error: not queued, done never runs.  ctx is borrowed until done.
 */
enum ocb_err coord_dedup_seen(struct ocb_coord *c, const char *app_id, const char *digest,
                              ocb_coord_seen_fn done, void *ctx);

/*
 * Any thread, queued: the push with this digest was accepted (answered 200):
 * SET "<prefix>:{app}:dedup:<digest>" NX PX window_ms, so every replica takes
 * its re-push for a duplicate until the window (counted from the first
 * acceptance) has passed.  OCB_ERR_NOT_CONNECTED when Redis is known down,
 * OCB_ERR_FULL / STOPPED / NOMEM / TOO_BIG: not queued (the local window
 * still has it).
 */
enum ocb_err coord_dedup_record(struct ocb_coord *c, const char *app_id, const char *digest,
                                int64_t window_ms);

#endif
