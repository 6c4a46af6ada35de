/*
 * cmd_worker.h: the one command worker thread (docs/design.md sections 1, 2, 4).
 *
 * MQTT commands arrive on paho's callback thread, are copied onto a bounded
 * queue (platform.max_queue; QUEUE_FULL answer when full) and executed by a
 * single worker thread that owns the platform client: validation, a per-app
 * rate limit (platform.rate_limit), retries with backoff until the command's
 * deadline (platform.command_deadline_s), and the commandResponse answer on
 * <prefix>/<appId>/<deviceId>/commandResponse (and on the requester's MQTT 5
 * response topic, with its correlation data).  It also remembers, for a
 * bounded time, which requester asked for which commandId (requesters.h),
 * so that later status callbacks reach that requester's response topic too.
 * With platform.manage_subscriptions the same thread keeps the platform's
 * subscriptions in sync (subscriptions.h), without holding up commands.
 *
 * Device API requests (<prefix>/<appId>/<deviceId or _>/api; api.h,
 * api_job.h) are jobs of the same kind: the same queue bound, journal, rate
 * limit, deadline and retries, answered on .../apiResponse and the response
 * topic (a register's psk only there when there is one).
 *
 * Threads: cmd_worker_on_message() runs on paho's callback thread and never
 * blocks; cmd_worker_on_status() and cmd_worker_ready() may be called from
 * any thread (libmicrohttpd's); the rest from the main thread.  Thread-safe
 * only in that sense.
 *
 * Shutdown order (main.c): http_rx_stop, cmd_worker_stop (answers still go
 * out), mqtt_link_stop, then cmd_worker_free (which waits for the journal's
 * writes) and mqtt_link_free, and only then state_close.  Messages arriving
 * between cmd_worker_stop and mqtt_link_stop get SHUTTING_DOWN.
 */
#ifndef OCB_CMD_WORKER_H
#define OCB_CMD_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/mqtt_link.h"

struct ocb_cmd_worker;

/* Remembered requesters (commandId -> response topic) at most. */
#define OCB_CMD_REQUESTERS_MAX 4096

/*
 * Holds references to cfg (config.h) until cmd_worker_free(); link is
 * borrowed and must outlive the worker.  Creates the platform client (so
 * readiness can be asked at once) but no thread.
 */
enum ocb_err cmd_worker_new(const struct ocb_config *cfg, struct ocb_mqtt_link *link,
                            struct ocb_cmd_worker **out);

/*
 * Main thread, before cmd_worker_start(): journal commands in state (journal.h),
 * which must outlive the worker.  Every command taken from MQTT is then durable
 * before it runs, and cmd_worker_start() resumes what an earlier run left
 * unfinished (in arrival order, under the rate limit and their deadlines; a
 * row found `sending` is reconciled, an answered one re-published) and loads
 * the persisted requesters.  A graceful stop leaves queued commands in the
 * journal (no SHUTTING_DOWN answer) for the next start.  Without it the
 * worker keeps commands in memory only.
 */
struct ocb_state;
enum ocb_err cmd_worker_use_state(struct ocb_cmd_worker *w, struct ocb_state *state);

/*
 * Before mqtt_link_start(): subscribe <prefix>/+/+/command and
 * <prefix>/+/+/commandCancel, and <prefix>/+/+/api when some app with a
 * secret allows a device API op (apps[].api not empty), each through
 * $share/<mqtt.shared_group>/ when set, and route arriving messages to
 * cmd_worker_on_message().
 */
enum ocb_err cmd_worker_attach(struct ocb_cmd_worker *w);

/*
 * Start the thread: logins, then commands, with a subscription sync beside
 * them when platform.manage_subscriptions is on.
 */
enum ocb_err cmd_worker_start(struct ocb_cmd_worker *w);

/*
 * Stop taking new commands, give requests in flight up to drain_ms, answer
 * everything left with SHUTTING_DOWN and join the thread.  Call it while the
 * MQTT link is still up so the answers can go out.  Idempotent.
 */
void cmd_worker_stop(struct ocb_cmd_worker *w, unsigned drain_ms);

/*
 * Main thread (SIGHUP): apply the apps of cfg — new apps, changed secrets,
 * removed apps — on the worker thread at its next turn; tokens of unchanged
 * apps, queues and the MQTT subscriptions are kept.  Takes a reference to
 * cfg, handed to the worker thread; the caller keeps its own.  A
 * configuration an earlier reload handed over is given back when nothing
 * of the worker points into it any more (an app a reload dropped keeps the
 * last configuration that named it, for its queued commands).
 */
enum ocb_err cmd_worker_reload(struct ocb_cmd_worker *w, const struct ocb_config *cfg);

/* Stops if needed and frees.  NULL is a no-op. */
void cmd_worker_free(struct ocb_cmd_worker *w);

/* ocb_mqtt_on_message for the command and api topics (paho's thread; ctx = the worker). */
void cmd_worker_on_message(void *ctx, const struct ocb_mqtt_msg *msg);

/*
 * An ocb_http_command_status_fn (ctx = the worker): a command status
 * callback was published on commandStatus; re-publish its body, byte for
 * byte, to the response topic of whoever requested command_id, if anyone
 * did (MQTT 5 request/response).  Any thread; never blocks on I/O.  body need
 * not be NUL-terminated.
 */
void cmd_worker_on_status(void *ctx, const char *app_id, const char *device_id,
                          const char *command_id, const char *body, size_t len);

/*
 * An ocb_http_ready_fn (ctx = the worker), any thread: every app with a
 * secret has a working platform login.  Stop the HTTP receiver before
 * cmd_worker_stop().
 */
bool cmd_worker_ready(void *ctx);

struct ocb_coord;

/*
 * Main, before cmd_worker_start(): coordinate with other replicas through
 * coord (coord.h; borrowed, must outlive the worker and be stopped after
 * it): shared token, shared rate window, shared requesters, subscription
 * sync lease.  The worker thread then owns coord's synchronous connection.
 */
void cmd_worker_set_coord(struct ocb_cmd_worker *w, struct ocb_coord *coord);

#endif
