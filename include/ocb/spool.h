/*
 * spool.h: the push spool, a FIFO of pushes on the state store (state.h).
 *
 * A push answered 200 while it could not be handed to the broker lives here
 * until its PUBACK: spool_append() makes it durable (group commit through the
 * store's writer) and the drain thread publishes it, in id order and with a
 * bounded number in flight, whenever the link is connected; a row is deleted
 * only after its PUBACK.  Accounting (messages, bytes, oldest) is kept in
 * memory, loaded at spool_new(), and exported as metrics.
 *
 * Bounds: spool.max_bytes refuses appends (OCB_ERR_FULL: the push gets 503,
 * the platform re-pushes); nothing already spooled is ever dropped to make
 * room.  Messages older than spool.max_age_s are dropped with a log line and
 * ocb_spool_dropped_total{reason="expired"}.
 *
 * "Origin pending": a push whose own publish is still awaiting its PUBACK
 * when it is spooled (its ack deadline passed) is appended with
 * origin_pending set; the drainer does not publish it until the owner
 * reports that publish's outcome with spool_origin_done(): acked -> the row
 * is deleted (never published twice), failed -> the drainer publishes it.
 * When a publish may have reached the broker but failed to report so (the
 * connection dropped after sending), the next publish of that row counts
 * ocb_spool_duplicates_total: it may be a duplicate and nobody can know.
 *
 * Threads: spool_new/start/stop/free from main.  spool_append,
 * spool_origin_done and the queries: any thread, never blocking (a mutex
 * held for bookkeeping only).  The appended callback runs on the store's
 * writer thread and must not block.
 */
#ifndef OCB_SPOOL_H
#define OCB_SPOOL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/mqtt_link.h"
#include "ocb/state.h"

struct ocb_spool;

/* One push as it will be published; every pointer is borrowed and copied by spool_append(). */
struct ocb_spool_msg {
    const char *app;
    const char *topic;
    const void *body;
    size_t len;
    const char *notify_type;    /* or NULL */
    const char *request_id;     /* or NULL */
    const char *ocb_request_id; /* or NULL */
    const char *content_type;   /* or NULL */
    bool utf8;
    int64_t received_ms; /* Unix time in ms */
};

/* Flags for spool_append(). */
#define OCB_SPOOL_ORIGIN_PENDING 1u /* its own publish still awaits the ack */
#define OCB_SPOOL_MAYBE_SENT     2u /* an earlier publish may have reached the broker */

/* Runs on the writer thread once the row is durable (rc OCB_OK, id set) or
 * could not be written (OCB_ERR_IO, OCB_ERR_STOPPED). */
typedef void (*ocb_spool_appended)(void *ctx, enum ocb_err rc, int64_t id);

/*
 * Load the accounting of what st already holds.  st and link are borrowed
 * and must outlive the spool; cfg is only read during the call (spool.*
 * and mqtt.max_inflight are restart-only keys).
 */
enum ocb_err spool_new(struct ocb_state *st, struct ocb_mqtt_link *link,
                       const struct ocb_config *cfg, struct ocb_spool **out);

/* Start the drain thread.  OCB_ERR_IO when it cannot be created. */
enum ocb_err spool_start(struct ocb_spool *sp);

/*
 * Append msg (copied).  OCB_ERR_FULL when it would take the spool past
 * spool.max_bytes or the store's queue is full, OCB_ERR_STOPPED after
 * spool_stop(); then done never runs.
 */
enum ocb_err spool_append(struct ocb_spool *sp, const struct ocb_spool_msg *msg, unsigned flags,
                          ocb_spool_appended done, void *ctx);

/* The own publish of row id (appended with OCB_SPOOL_ORIGIN_PENDING) finished with rc. */
void spool_origin_done(struct ocb_spool *sp, int64_t id, enum ocb_err rc);

/* Messages held (committed), and whether any is held or being written: while
 * true, new pushes go through the spool so that none overtakes another. */
size_t spool_messages(struct ocb_spool *sp);
bool spool_busy(struct ocb_spool *sp);

/* True when an append would be accepted now (not full, the disk not failing);
 * otherwise why says which. */
bool spool_accepting(struct ocb_spool *sp, char *why, size_t cap);

/* Stop the drain thread (no new publishes), idempotent. */
void spool_stop(struct ocb_spool *sp);

/* Stop, wait for every write it submitted, free.  Call after mqtt_link_stop()
 * (whose done callbacks may still report drain publishes) and before
 * state_close().  NULL is a no-op. */
void spool_free(struct ocb_spool *sp);

/* `ocbridge state`: per-app messages, bytes and the oldest's age at now_ms (wall clock), read from
 * db. */
enum ocb_err spool_report(sqlite3 *db, int64_t now_ms, FILE *out);

#endif
