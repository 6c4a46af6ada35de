/*
 * journal.h: the command journal and the persisted requesters, on the state
 * store (state.h; issue 10 items 4 and 6).
 *
 * Every command (and commandCancel, and device API request: its topic's last
 * level `api` says so, no kind column) the bridge takes from MQTT is a row of
 * the `journal` table before it is executed: its raw topic, payload, MQTT 5
 * response topic and correlation data, arrival time and deadline (both UTC
 * milliseconds, so they mean the same after a restart).  Its state moves
 *
 *   queued -> sending -> answered -> (row deleted)
 *
 * `sending` is durable before the request is handed to libcurl, so a row
 * found in `sending` at start has an unknown outcome (the worker queries
 * before it creates again); `answered` holds the commandResponse and lasts
 * until the broker PUBACKed it, so an answer that never reached the broker
 * is re-published at the next start.  The commandId is stored with the
 * answer when the create got one.
 *
 * The `requesters` table persists the command worker's commandId -> response
 * topic map (requesters.h), with each entry's expiry (UTC ms), so that
 * statuses after a restart still reach the requester.
 *
 * Writes go through state_submit(): the append and every later change are
 * asynchronous (they never block paho's thread, the worker or an MHD
 * thread), except journal_mark_sending(), which the worker waits for (one
 * group commit per dispatch pass) because the HTTP request must not leave
 * before it is durable.
 *
 * Bound: at most max_rows rows (unfinished commands plus answers waiting
 * for their PUBACK); journal_reserve() says no past it.
 *
 * Threads: journal_open/journal_load/journal_requesters_load/journal_free
 * from one thread (main, or the worker's start); journal_reserve,
 * journal_append, journal_answer, journal_delete, journal_requester_put and
 * journal_requesters_prune from any thread (they only submit);
 * journal_mark_sending waits for the writer, so never from an op's fn or done.
 * Done callbacks run on the store's writer thread.
 */
#ifndef OCB_JOURNAL_H
#define OCB_JOURNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ocb/err.h"
#include "ocb/requesters.h"
#include "ocb/state.h"

enum ocb_journal_state {
    OCB_JOURNAL_QUEUED = 0,
    OCB_JOURNAL_SENDING = 1,
    OCB_JOURNAL_ANSWERED = 2,
};
#define OCB_JOURNAL_STATES 3

/* A command as it arrived; every pointer borrowed (see journal_append). */
struct ocb_journal_cmd {
    int64_t id; /* from journal_reserve() */
    const char *topic;
    const char *payload; /* len bytes; "" when oversize */
    size_t len;
    bool oversize; /* the payload was over platform.max_command_bytes and not kept */
    bool retained;
    const char *response_topic; /* or NULL */
    const void *corr;           /* or NULL */
    size_t corr_len;
    int64_t arrived_ms;  /* UTC ms */
    int64_t deadline_ms; /* UTC ms */
};

/* A row read back at start (journal_load); pointers valid during the callback only. */
struct ocb_journal_row {
    struct ocb_journal_cmd cmd;
    enum ocb_journal_state state;
    long long first_s;      /* UTC seconds of the first create / API write attempt, 0 = none */
    const char *command_id; /* or NULL */
    const char *answer;     /* the stored commandResponse (state answered) or NULL */
    size_t answer_len;
};

typedef void (*ocb_journal_done)(void *ctx, enum ocb_err rc);
typedef void (*ocb_journal_row_fn)(void *ctx, const struct ocb_journal_row *row);
/* expires_ms is UTC ms. */
typedef void (*ocb_journal_requester_fn)(void *ctx, const struct ocb_requester *r,
                                         int64_t expires_ms);

/* An append in flight: the caller embeds it and keeps it (and the cmd) alive until done ran. */
struct ocb_journal_append {
    struct ocb_state_op op;
    struct ocb_journal *j;
    const struct ocb_journal_cmd *cmd;
    ocb_journal_done done;
    void *ctx;
};

struct ocb_journal;

/* st is borrowed and must outlive the journal.  max_rows >= 1. */
enum ocb_err journal_open(struct ocb_state *st, unsigned max_rows, struct ocb_journal **out);

/*
 * Before any reserve: hand every row to fn in id (arrival) order, count them
 * against the bound and per state, and count ocb_journal_recovered_total.
 * Returns the number of rows through *n (may be NULL).
 */
enum ocb_err journal_load(struct ocb_journal *j, ocb_journal_row_fn fn, void *ctx, size_t *n);

/* The next row id, counted against max_rows; 0 when the journal is full. */
int64_t journal_reserve(struct ocb_journal *j);

/* Give back a reserved id whose append was never submitted. */
void journal_unreserve(struct ocb_journal *j);

/*
 * Submit the row (never blocks).  a->cmd and everything it points to must stay
 * valid until done(ctx, rc) ran (on the writer thread; rc OCB_OK = durable).
 * On an error return done never runs and the caller calls journal_unreserve().
 */
enum ocb_err journal_append(struct ocb_journal *j, struct ocb_journal_append *a,
                            const struct ocb_journal_cmd *cmd, ocb_journal_done done, void *ctx);

/* Row ids with the first attempt's time of a create or a device API write (UTC s; 0 for the rest).
 */
struct ocb_journal_sending {
    int64_t id;
    long long first_s;
};

/* queued -> sending for n rows in one write; waits until durable.  OCB_ERR_IO et al. */
enum ocb_err journal_mark_sending(struct ocb_journal *j, const struct ocb_journal_sending *rows,
                                  size_t n);

/* -> answered with the commandResponse (copied) and the commandId (NULL: none).  Async. */
void journal_answer(struct ocb_journal *j, int64_t id, const char *command_id, const char *answer,
                    size_t len);

/* The row is done (its answer PUBACKed, or it needs none).  Async. */
void journal_delete(struct ocb_journal *j, int64_t id);

/* Persist a requester (expires_ms UTC ms).  Async. */
void journal_requester_put(struct ocb_journal *j, const struct ocb_requester *r,
                           int64_t expires_ms);

/* Forget requesters expired at now_ms (UTC) and all but the newest max.  Async. */
void journal_requesters_prune(struct ocb_journal *j, int64_t now_ms, unsigned max);

/* Hand every unexpired requester to fn, oldest first.  Waits for the writer. */
enum ocb_err journal_requesters_load(struct ocb_journal *j, int64_t now_ms,
                                     ocb_journal_requester_fn fn, void *ctx);

/* Rows held (all states). */
unsigned journal_rows(struct ocb_journal *j);

/* Wait for every write this journal submitted, then free.  NULL is a no-op. */
void journal_free(struct ocb_journal *j);

/* `ocbridge state`: unfinished commands per app and state with the age of the oldest as seen at
 * now_ms (wall clock), and the requesters still live at now_ms. */
enum ocb_err journal_report(sqlite3 *db, int64_t now_ms, FILE *out);

/* "queued", "sending", "answered". */
const char *journal_state_name(enum ocb_journal_state s);

#endif
