/*
 * state.h: the durable state store, one SQLite database <state.dir>/ocbridge.db.
 *
 * Everything the bridge must not forget across a crash lives here: the push
 * spool (spool.h), the command journal and its requesters (journal.h).  The
 * database runs in WAL mode with synchronous=FULL, so a committed write
 * survives kill -9 and power loss.
 *
 * Writes: ONE writer thread owns the write connection and commits in groups.
 * A caller fills a struct ocb_state_op and submits it; the writer takes every
 * op queued at that moment, runs each op's fn inside one BEGIN IMMEDIATE ...
 * COMMIT (each in its own savepoint, so one op's failure does not take the
 * others down), then calls every done once COMMIT returned, i.e. once the
 * write is durable.  A batch the disk refuses (SQLITE_FULL, SQLITE_IOERR, a
 * failed COMMIT) is rolled back whole and every op in it gets OCB_ERR_IO;
 * nothing committed before is touched and the next batch simply tries again,
 * so the store recovers by itself once space returns.
 *
 * Schema: `PRAGMA user_version` is the number of migrations applied; the
 * ordered list in state.c is the whole schema history.  At open, a file that
 * cannot be opened, is not a database, fails `PRAGMA quick_check` or has a
 * newer schema than this build knows is moved aside (with its -wal and -shm)
 * to ocbridge.db.corrupt-<unix time>, logged as an error, counted in
 * ocb_state_quarantined_total, and a fresh database is created: a bad file
 * never stops the bridge.  A state.dir that cannot be created or written is
 * a start-up error.
 *
 * Reads: a reader opens its own connection (state_reader_open()); WAL lets
 * it read while the writer commits.
 *
 * Threads: state_open/state_close from one thread (main).  state_submit,
 * state_run, state_meta_get/set: any thread; state_run and state_meta_set
 * wait for the writer and must not be called from a done callback or an op's
 * fn (that is, from the writer thread).  fn and done run on the writer thread
 * and must not block on anything but the database they are given.
 */
#ifndef OCB_STATE_H
#define OCB_STATE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/err.h"
#include "ocb/list.h"

#define OCB_STATE_DB_NAME "ocbridge.db"
/* The schema version this build writes (the number of migrations in state.c). */
#define OCB_STATE_SCHEMA_VERSION 2
/* Cap on a meta key and value. */
#define OCB_STATE_META_MAX 4096

struct ocb_state;

/*
 * Runs on the writer thread inside the batch's transaction.  Return SQLITE_OK
 * (or SQLITE_DONE) when the op's writes succeeded.  SQLITE_FULL, SQLITE_IOERR*,
 * SQLITE_NOMEM and SQLITE_CORRUPT fail the whole batch; any other code fails
 * this op only (its writes are rolled back to its savepoint).
 */
typedef int (*ocb_state_write_fn)(sqlite3 *db, void *ctx);
/* After COMMIT returned (rc OCB_OK: durable) or on failure (OCB_ERR_IO: the disk
 * refused the batch; OCB_ERR_INVALID: this op's fn failed; OCB_ERR_STOPPED). */
typedef void (*ocb_state_done_fn)(void *ctx, enum ocb_err rc);

/*
 * One write.  Owned by the caller, who must keep it alive (and not reuse it)
 * from state_submit() until done has run.  The fields below `ctx` are the
 * store's.
 */
struct ocb_state_op {
    ocb_state_write_fn fn;
    ocb_state_done_fn done; /* may be NULL */
    void *ctx;

    struct ocb_list link; /* in the store's queue, then its batch */
    int64_t submitted_ns;
    enum ocb_err rc;
};

/*
 * Open (creating dir and the database when missing), check, quarantine,
 * migrate, and start the writer.  max_queue bounds the ops waiting for the
 * writer.  OCB_ERR_IO (logged with the reason) when dir cannot be created or
 * written or a fresh database cannot be made there.  dir is copied.
 */
enum ocb_err state_open(const char *dir, unsigned max_queue, struct ocb_state **out);

/*
 * Queue op for the next batch; never blocks.  OCB_ERR_FULL when max_queue ops
 * wait, OCB_ERR_STOPPED after state_close() began; in both cases done never
 * runs.
 */
enum ocb_err state_submit(struct ocb_state *st, struct ocb_state_op *op);

/* Submit a write and wait until it is durable; returns its rc. */
enum ocb_err state_run(struct ocb_state *st, ocb_state_write_fn fn, void *ctx);

/* Small facts: key -> value (text).  get: OCB_ERR_NOT_FOUND when absent,
 * OCB_ERR_TOO_BIG when it does not fit cap.  set: durable on return. */
enum ocb_err state_meta_get(struct ocb_state *st, const char *key, char *out, size_t cap);
enum ocb_err state_meta_set(struct ocb_state *st, const char *key, const char *value);
/* The same without waiting (key and value are copied): for threads that must not block,
 * such as paho's callback thread.  A write that fails later is logged. */
enum ocb_err state_meta_set_async(struct ocb_state *st, const char *key, const char *value);

/* The database's path (valid until state_close()). */
const char *state_path(const struct ocb_state *st);

/* True once a batch failed (disk full, I/O error), until a later commit succeeds while
 * state.dir has 256 KiB free (STATE_HEADROOM_BYTES in state.c): on a nearly full disk a
 * small write that fits is not yet a recovery.  Any thread. */
bool state_failing(const struct ocb_state *st);

/* How many files were quarantined by this state_open() (0 or 1). */
unsigned state_quarantined(const struct ocb_state *st);

/*
 * Open a read-only connection to dir's database, for readers and for
 * `ocbridge state`.  OCB_ERR_NOT_FOUND when there is no database,
 * OCB_ERR_IO when it cannot be opened.  Close with sqlite3_close().
 */
enum ocb_err state_reader_open(const char *dir, sqlite3 **out);

/* Run every queued op, stop the writer, close.  NULL is a no-op. */
void state_close(struct ocb_state *st);

#endif
