/*
 * requesters.h: who asked for which command (MQTT 5 request/response;
 * DESIGN.md section 2).
 *
 * When a create with an MQTT 5 response topic succeeds, the command worker
 * inserts commandId -> (app, response topic, correlation data, expiry) here;
 * the status callbacks that libmicrohttpd's threads receive later look the
 * command up and are forwarded to that topic too.  A status can overtake
 * the create's reply (the platform sends SENT as soon as it has created the
 * command), so a status of an unknown command is kept a few seconds and
 * replayed when its requester is inserted.
 *
 * Entries are plain, fixed-size, copyable data, and insert, lookup, remove
 * and expire are distinct calls, so that a journal can persist exactly these
 * changes.  The map is bounded (max_entries; inserting into a full map
 * forgets the oldest entry) and does no I/O.
 *
 * Ordering: requesters_insert() replays the kept statuses, and
 * requesters_on_status() forwards a status, through an emit callback called
 * under the map's lock, so a status can never overtake the replay of an
 * earlier one.  The caller publishes the command's answer before inserting:
 * until then no status can reach the response topic.
 *
 * Thread-safe: yes (one mutex).  The emit callbacks run with that mutex
 * held: they must not block or call back into this module.
 */
#ifndef OCB_REQUESTERS_H
#define OCB_REQUESTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/command.h"
#include "ocb/err.h"

#define OCB_REQUESTERS_TOPIC_MAX      1024 /* response topic, with its NUL */
#define OCB_REQUESTERS_CORR_MAX       256  /* correlation data bytes */
#define OCB_REQUESTERS_EARLY_MAX      64   /* statuses kept for commands not yet inserted */
#define OCB_REQUESTERS_EARLY_BODY_MAX 4096
#define OCB_REQUESTERS_EARLY_KEEP_MS  10000

struct ocb_requester {
    char app_id[OCB_COMMAND_ID_MAX + 1]; /* statuses count only when pushed for this app */
    char command_id[OCB_COMMAND_ID_MAX + 1];
    char response_topic[OCB_REQUESTERS_TOPIC_MAX];
    unsigned char corr[OCB_REQUESTERS_CORR_MAX];
    size_t corr_len;
    int64_t expires_ms; /* forgotten at this time (ocb_now_ms() clock) */
};

struct ocb_requesters;

/* Called under the map's lock with a borrowed entry and a status body (not NUL-terminated). */
typedef void (*ocb_requester_emit)(void *ctx, const struct ocb_requester *r, const char *body,
                                   size_t len);

/* A map of at most max_entries (>= 1).  OCB_ERR_NOMEM, OCB_ERR_INVALID. */
enum ocb_err requesters_new(unsigned max_entries, struct ocb_requesters **out);

/* NULL is a no-op. */
void requesters_free(struct ocb_requesters *rq);

/*
 * Fill *e from borrowed strings.  OCB_ERR_TOO_BIG when an id, the topic or
 * the correlation data does not fit; OCB_ERR_INVALID for a NULL or empty id
 * or topic.  Pure.
 */
enum ocb_err requesters_entry_fill(struct ocb_requester *e, const char *app_id,
                                   const char *command_id, const char *response_topic,
                                   const void *corr, size_t corr_len, int64_t expires_ms);

/*
 * Insert a copy of *e (a later insert of the same command shadows an
 * earlier one).  Entries expired at now are dropped first; when the map is
 * still full the oldest entry is forgotten and *evicted (may be NULL) set.
 * Then the statuses kept for e's command are handed to emit (may be NULL),
 * in arrival order, and forgotten.  OCB_ERR_NOMEM leaves the map unchanged.
 */
enum ocb_err requesters_insert(struct ocb_requesters *rq, const struct ocb_requester *e,
                               int64_t now, ocb_requester_emit emit, void *ctx, bool *evicted);

/* Copy the newest entry for (app_id, command_id) to *out; false when none. */
bool requesters_lookup(struct ocb_requesters *rq, const char *app_id, const char *command_id,
                       struct ocb_requester *out);

/* Forget the newest entry for (app_id, command_id); false when none. */
bool requesters_remove(struct ocb_requesters *rq, const char *app_id, const char *command_id);

/* Forget every entry with expires_ms <= now; returns how many went. */
unsigned requesters_expire(struct ocb_requesters *rq, int64_t now);

/* Entries held. */
unsigned requesters_count(struct ocb_requesters *rq);

/*
 * A status for (app_id, command_id) arrived at now.  Expired entries are
 * dropped; if an entry is found, emit(ctx, entry, body, len) forwards it
 * and, when final, the entry's expiry is brought forward to at most
 * now + final_keep_ms (late statuses may still come out of order).  If
 * none is found the status is kept (bodies up to
 * OCB_REQUESTERS_EARLY_BODY_MAX, the last OCB_REQUESTERS_EARLY_MAX of
 * them, for OCB_REQUESTERS_EARLY_KEEP_MS) for requesters_insert().  Returns
 * whether an entry was found.
 */
bool requesters_on_status(struct ocb_requesters *rq, const char *app_id, const char *command_id,
                          const char *body, size_t len, bool final, int64_t final_keep_ms,
                          int64_t now, ocb_requester_emit emit, void *ctx);

#endif
