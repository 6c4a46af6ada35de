/*
 * state.c: the durable state store (state.h).
 *
 * Owns <state.dir>/ocbridge.db, its write connection and the writer thread.
 * Callers on any thread (MHD threads, paho's thread, the spool's drainer,
 * later the command worker) hand over writes as ops; the writer runs all
 * that are queued in one transaction.  With synchronous=FULL every COMMIT is
 * an fsync, so durability costs one fsync per batch, not per push: under
 * load, batches grow by themselves (group commit) and the fsync rate stays
 * what the disk can do.
 *
 * Each op runs in its own SAVEPOINT so that an op that fails on its own (a
 * constraint) is rolled back alone.  Errors that mean "the disk refused"
 * (FULL, IOERR, NOMEM, CORRUPT, a failed COMMIT) roll the whole batch back:
 * every op in it gets OCB_ERR_IO and nothing earlier is touched.  The queue
 * is bounded and submit never blocks, so a stuck disk shows up as
 * OCB_ERR_FULL at the caller (a 503), never as a blocked HTTP thread.
 *
 * Opening: mkdir state.dir, open, WAL, quick_check, user_version.  Anything
 * that says the file cannot be trusted moves it aside (quarantine) and starts
 * afresh: losing a corrupt spool is bad, refusing to start (and so losing
 * every push that follows) is worse.  Migrations are an ordered list of SQL
 * scripts; user_version is how many ran.  To add migration N, append its
 * SQL to `migrations` and bump OCB_STATE_SCHEMA_VERSION: a database at
 * version N - 1 then runs only it (2, the command journal and requesters,
 * runs alone on a version-1 file and leaves its spool untouched).
 *
 * Lock order: st->mu (queue) and st->rmu (the meta reader) are leaves; no
 * fn or done runs under either.
 */
#include "ocb/state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/util.h"

#define MOD "state"

#define PATH_CAP        4096
#define BUSY_TIMEOUT_MS 5000

/* The schema history: migrations[i] takes user_version i to i + 1. */
static const char *const migrations[] = {
    /* 1: the meta table and the push spool. */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE spool("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " app TEXT NOT NULL,"
    " topic TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " notify_type TEXT,"
    " request_id TEXT,"
    " ocb_request_id TEXT,"
    " content_type TEXT,"
    " utf8 INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL);",
    /* 2: the command journal and the requesters of MQTT 5 commands (journal.h). */
    "CREATE TABLE journal("
    " id INTEGER PRIMARY KEY,"
    " app TEXT NOT NULL,"
    " topic TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " oversize INTEGER NOT NULL,"
    " retained INTEGER NOT NULL,"
    " response_topic TEXT,"
    " corr BLOB,"
    " arrived_ms INTEGER NOT NULL,"
    " deadline_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " first_s INTEGER NOT NULL DEFAULT 0,"
    " command_id TEXT,"
    " answer BLOB);"
    "CREATE TABLE requesters("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " app TEXT NOT NULL,"
    " command_id TEXT NOT NULL,"
    " response_topic TEXT NOT NULL,"
    " corr BLOB,"
    " expires_ms INTEGER NOT NULL);"
    "CREATE INDEX requesters_expires ON requesters(expires_ms);",
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(N_MIGRATIONS == OCB_STATE_SCHEMA_VERSION, "schema version != migrations");

struct ocb_state {
    char dir[PATH_CAP];
    char path[PATH_CAP];
    sqlite3 *db; /* the writer's; only the writer thread touches it after open */
    unsigned quarantined;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ocb_list ops; /* struct ocb_state_op, in submission order */
    unsigned queued, max_queue;
    bool stop;
    pthread_t writer;
    bool started;
    atomic_bool failing;

    pthread_mutex_t rmu; /* guards rdb */
    sqlite3 *rdb;
};

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void errno_text(int err, char *buf, size_t cap)
{
    if (strerror_r(err, buf, cap) != 0)
        snprintf(buf, cap, "error %d", err);
}

/* mkdir -p dir (0700 for the last level: it holds pushed payloads). */
static enum ocb_err make_dir(const char *dir)
{
    char tmp[PATH_CAP], msg[128];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(tmp)) {
        log_error(MOD, NULL, "state.dir: empty or too long");
        return OCB_ERR_IO;
    }
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, saved == '\0' ? 0700 : 0755) != 0 && errno != EEXIST) {
            errno_text(errno, msg, sizeof(msg));
            log_error(MOD, NULL, "state.dir %s: cannot create %s: %s", dir, tmp, msg);
            return OCB_ERR_IO;
        }
        tmp[i] = saved;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        errno_text(errno, msg, sizeof(msg));
        log_error(MOD, NULL, "state.dir %s is not writable: %s", dir, msg);
        return OCB_ERR_IO;
    }
    return OCB_OK;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* One integer from a one-row query; -1 on error. */
static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/*
 * Open path and decide whether it can be trusted.  On OCB_OK *out is a
 * writable connection in WAL mode at a schema this build knows.  Otherwise
 * why says what is wrong and the caller quarantines the file.
 */
static enum ocb_err try_open(const char *path, sqlite3 **out, char *why, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    enum ocb_err rc = OCB_ERR_IO;
    long long version;
    int src;

    *out = NULL;
    src = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (src != SQLITE_OK) {
        snprintf(why, cap, "cannot open: %s", db != NULL ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 1);
    /* journal_mode=WAL reads the header: a file that is not a database fails here. */
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(s, 0), "wal") != 0) {
        snprintf(why, cap, "not a usable database: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0) {
        const unsigned char *t = s != NULL ? sqlite3_column_text(s, 0) : NULL;
        snprintf(why, cap, "integrity check failed: %s",
                 t != NULL ? (const char *)t : sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_finalize(s);
    s = NULL;
    version = query_int(db, "PRAGMA user_version");
    if (version < 0) {
        snprintf(why, cap, "cannot read the schema version: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (version > (long long)N_MIGRATIONS) {
        snprintf(why, cap, "schema version %lld is newer than this build's %d", version,
                 OCB_STATE_SCHEMA_VERSION);
        goto out;
    }
    if (exec(db, "PRAGMA synchronous=FULL") != SQLITE_OK ||
        exec(db, "PRAGMA foreign_keys=ON") != SQLITE_OK) {
        snprintf(why, cap, "cannot configure: %s", sqlite3_errmsg(db));
        goto out;
    }
    for (size_t i = (size_t)version; i < N_MIGRATIONS; i++) {
        char sql[64];

        snprintf(sql, sizeof(sql), "PRAGMA user_version=%zu", i + 1);
        if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK || exec(db, migrations[i]) != SQLITE_OK ||
            exec(db, sql) != SQLITE_OK || exec(db, "COMMIT") != SQLITE_OK) {
            snprintf(why, cap, "migration %zu failed: %s", i + 1, sqlite3_errmsg(db));
            exec(db, "ROLLBACK");
            goto out;
        }
        log_info(MOD, NULL, "%s: schema migrated to version %zu", path, i + 1);
    }
    *out = db;
    db = NULL;
    rc = OCB_OK;
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

/* Move path (and -wal, -shm) aside to path.corrupt-<time>[.n]. */
static enum ocb_err quarantine(const char *path, const char *why)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char dest[PATH_CAP], from[PATH_CAP], to[PATH_CAP], msg[128];
    long long t = (long long)time(NULL);
    struct stat sb;

    /* Two quarantines within a second must not overwrite each other. */
    for (unsigned n = 0;; n++) {
        int w = n == 0 ? snprintf(dest, sizeof(dest), "%s.corrupt-%lld", path, t)
                       : snprintf(dest, sizeof(dest), "%s.corrupt-%lld.%u", path, t, n);
        if (w < 0 || (size_t)w >= sizeof(dest) - 8)
            return OCB_ERR_IO;
        if (stat(dest, &sb) != 0 || n > 1000)
            break;
    }
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(from, sizeof(from), "%s%s", path, suffixes[i]);
        snprintf(to, sizeof(to), "%s%s", dest, suffixes[i]);
        if (rename(from, to) != 0 && errno != ENOENT) {
            errno_text(errno, msg, sizeof(msg));
            log_error(MOD, NULL, "%s cannot be used (%s) and cannot be moved aside: %s", path, why,
                      msg);
            return OCB_ERR_IO;
        }
    }
    log_error(MOD, NULL,
              "%s cannot be used (%s): moved aside to %s; starting with an empty state "
              "(what it held is lost unless recovered from that file)",
              path, why, dest);
    metrics_counter_add("ocb_state_quarantined_total", "", 1);
    return OCB_OK;
}

/* Once a write failed, a commit that succeeds is not yet a recovery: on a
 * nearly full disk a small one (a probe, a single push) fits where the next
 * batch does not, and readiness would flap.  The store stops "failing" when a
 * commit succeeds and the file system also has STATE_HEADROOM_BYTES free, or
 * when the free space cannot be read (then the commit alone decides). */
#define STATE_HEADROOM_BYTES (256u * 1024u)

static bool headroom_ok(const struct ocb_state *st)
{
    struct statvfs vfs;

    if (statvfs(st->dir, &vfs) != 0)
        return true;
    return (unsigned long long)vfs.f_bavail * vfs.f_frsize >= STATE_HEADROOM_BYTES;
}

/* Errors that mean the disk (or memory) refused: the whole batch fails. */
static bool fatal_code(int src)
{
    switch (src & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_CORRUPT:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOTADB:
        return true;
    default:
        return false;
    }
}

static struct ocb_state_op *op_of(struct ocb_list *l)
{
    return ocb_list_entry(l, struct ocb_state_op, link);
}

static void run_batch(struct ocb_state *st, struct ocb_list *batch)
{
    struct ocb_list *pos, *tmp;
    sqlite3 *db = st->db;
    enum ocb_err batch_rc = OCB_OK;
    int src;

    src = exec(db, "BEGIN IMMEDIATE");
    if (src != SQLITE_OK) {
        batch_rc = OCB_ERR_IO;
        log_error(MOD, NULL, "cannot begin a write: %s", sqlite3_errmsg(db));
    }
    ocb_list_for_each (pos, batch) {
        struct ocb_state_op *op = op_of(pos);

        if (batch_rc != OCB_OK)
            break;
        exec(db, "SAVEPOINT op");
        src = op->fn(db, op->ctx);
        if (src == SQLITE_OK || src == SQLITE_DONE) {
            op->rc = OCB_OK;
            exec(db, "RELEASE op");
        } else if (fatal_code(src)) {
            batch_rc = OCB_ERR_IO;
            log_error(MOD, NULL, "write failed: %s (%s)", sqlite3_errstr(src), sqlite3_errmsg(db));
        } else {
            op->rc = OCB_ERR_INVALID;
            log_error(MOD, NULL, "one write failed alone: %s (%s)", sqlite3_errstr(src),
                      sqlite3_errmsg(db));
            exec(db, "ROLLBACK TO op");
            exec(db, "RELEASE op");
        }
    }
    if (batch_rc == OCB_OK && (src = exec(db, "COMMIT")) != SQLITE_OK) {
        batch_rc = OCB_ERR_IO;
        log_error(MOD, NULL, "commit failed: %s (%s)", sqlite3_errstr(src), sqlite3_errmsg(db));
    }
    if (batch_rc != OCB_OK) {
        /* Nothing of this batch is kept; what earlier batches committed is untouched. */
        if (!sqlite3_get_autocommit(db))
            exec(db, "ROLLBACK");
        metrics_counter_add("ocb_state_write_errors_total", "", 1);
        atomic_store(&st->failing, true);
    } else if (atomic_load(&st->failing) && headroom_ok(st)) {
        log_info(MOD, NULL, "writes succeed again (%s has room)", st->dir);
        atomic_store(&st->failing, false);
    }

    int64_t now = ocb_now_ns();
    ocb_list_for_each_safe (pos, tmp, batch) {
        struct ocb_state_op *op = op_of(pos);

        ocb_list_remove(&op->link); /* done may free op or submit it again */
        if (batch_rc != OCB_OK)
            op->rc = batch_rc;
        if (op->rc == OCB_OK)
            metrics_histogram_observe("ocb_state_write_seconds", "",
                                      (double)(now - op->submitted_ns) / 1e9);
        if (op->done != NULL)
            op->done(op->ctx, op->rc);
    }
}

static void *writer_main(void *arg)
{
    struct ocb_state *st = arg;

    pthread_mutex_lock(&st->mu);
    for (;;) {
        struct ocb_list batch;

        while (ocb_list_empty(&st->ops) && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        if (ocb_list_empty(&st->ops))
            break; /* stopping and nothing left */
        ocb_list_init(&batch);
        ocb_list_splice_back(&batch, &st->ops);
        st->queued = 0;
        pthread_mutex_unlock(&st->mu);
        run_batch(st, &batch);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void describe_metrics(void)
{
    metrics_describe("ocb_state_write_seconds", OCB_METRIC_HISTOGRAM,
                     "Time from submitting a state write to its durable commit");
    metrics_describe("ocb_state_quarantined_total", OCB_METRIC_COUNTER,
                     "State database files moved aside as unusable at start-up");
    metrics_describe("ocb_state_write_errors_total", OCB_METRIC_COUNTER,
                     "State write batches rolled back (disk full, I/O error)");
    metrics_counter_add("ocb_state_quarantined_total", "", 0);
    metrics_counter_add("ocb_state_write_errors_total", "", 0);
}

enum ocb_err state_open(const char *dir, unsigned max_queue, struct ocb_state **out)
{
    struct ocb_state *st = NULL;
    char why[512];
    enum ocb_err rc;

    *out = NULL;
    describe_metrics();
    rc = make_dir(dir);
    if (rc != OCB_OK)
        return rc;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return OCB_ERR_NOMEM;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    ocb_list_init(&st->ops);
    pthread_mutex_init(&st->rmu, NULL);
    st->max_queue = max_queue > 0 ? max_queue : 1;
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    if (path_join(st->path, sizeof(st->path), dir, OCB_STATE_DB_NAME) != 0) {
        log_error(MOD, NULL, "state.dir %s: path too long", dir);
        rc = OCB_ERR_IO;
        goto out;
    }
    rc = try_open(st->path, &st->db, why, sizeof(why));
    if (rc != OCB_OK) {
        rc = quarantine(st->path, why);
        if (rc != OCB_OK)
            goto out;
        st->quarantined = 1;
        rc = try_open(st->path, &st->db, why, sizeof(why));
        if (rc != OCB_OK) {
            log_error(MOD, NULL, "cannot create a fresh state database %s: %s", st->path, why);
            goto out;
        }
    }
    if (pthread_create(&st->writer, NULL, writer_main, st) != 0) {
        rc = OCB_ERR_IO;
        goto out;
    }
    st->started = true;
    log_info(MOD, NULL, "state database %s (schema %d)", st->path, OCB_STATE_SCHEMA_VERSION);
    *out = st;
    st = NULL;
out:
    state_close(st);
    return rc;
}

enum ocb_err state_submit(struct ocb_state *st, struct ocb_state_op *op)
{
    enum ocb_err rc = OCB_OK;

    op->rc = OCB_OK;
    op->submitted_ns = ocb_now_ns();
    pthread_mutex_lock(&st->mu);
    if (st->stop || !st->started) {
        rc = OCB_ERR_STOPPED;
    } else if (st->queued >= st->max_queue) {
        rc = OCB_ERR_FULL;
    } else {
        ocb_list_push_back(&st->ops, &op->link);
        st->queued++;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

struct sync_wait {
    ocb_state_write_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum ocb_err rc;
};

static int sync_fn(sqlite3 *db, void *ctx)
{
    struct sync_wait *w = ctx;

    return w->fn(db, w->ctx);
}

static void sync_done(void *ctx, enum ocb_err rc)
{
    struct sync_wait *w = ctx;

    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->rc = rc;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

enum ocb_err state_run(struct ocb_state *st, ocb_state_write_fn fn, void *ctx)
{
    struct sync_wait w = {.fn = fn, .ctx = ctx, .done = false};
    struct ocb_state_op op = {.fn = sync_fn, .done = sync_done, .ctx = &w};
    enum ocb_err rc;

    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    rc = state_submit(st, &op);
    if (rc == OCB_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

struct meta_kv {
    const char *key, *value;
};

static int meta_write(sqlite3 *db, void *ctx)
{
    const struct meta_kv *kv = ctx;
    sqlite3_stmt *s = NULL;
    int src;

    src = sqlite3_prepare_v2(db,
                             "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                             -1, &s, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(s, 1, kv->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, kv->value, -1, SQLITE_STATIC);
        src = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    return src;
}

enum ocb_err state_meta_set(struct ocb_state *st, const char *key, const char *value)
{
    struct meta_kv kv = {key, value};

    if (strlen(key) > OCB_STATE_META_MAX || strlen(value) > OCB_STATE_META_MAX)
        return OCB_ERR_TOO_BIG;
    return state_run(st, meta_write, &kv);
}

/* A meta write of its own, with copies of key and value: freed by its done. */
struct meta_async {
    struct ocb_state_op op;
    struct meta_kv kv;
    char text[]; /* key NUL value NUL */
};

static int meta_async_write(sqlite3 *db, void *ctx)
{
    struct meta_async *m = ctx;

    return meta_write(db, &m->kv);
}

static void meta_async_done(void *ctx, enum ocb_err rc)
{
    struct meta_async *m = ctx;

    if (rc != OCB_OK)
        log_warn(MOD, NULL, "meta %s not saved: %s", m->kv.key, ocb_strerror(rc));
    free(m);
}

enum ocb_err state_meta_set_async(struct ocb_state *st, const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    struct meta_async *m;
    enum ocb_err rc;

    if (kl > OCB_STATE_META_MAX || vl > OCB_STATE_META_MAX)
        return OCB_ERR_TOO_BIG;
    m = calloc(1, sizeof(*m) + kl + vl + 2);
    if (m == NULL)
        return OCB_ERR_NOMEM;
    memcpy(m->text, key, kl + 1);
    memcpy(m->text + kl + 1, value, vl + 1);
    m->kv.key = m->text;
    m->kv.value = m->text + kl + 1;
    m->op.fn = meta_async_write;
    m->op.done = meta_async_done;
    m->op.ctx = m;
    rc = state_submit(st, &m->op);
    if (rc != OCB_OK)
        free(m); /* done never runs when submit fails */
    return rc;
}

enum ocb_err state_meta_get(struct ocb_state *st, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *s = NULL;
    enum ocb_err rc = OCB_ERR_IO;

    pthread_mutex_lock(&st->rmu);
    if (st->rdb == NULL && state_reader_open(st->dir, &st->rdb) != OCB_OK)
        goto out;
    if (sqlite3_prepare_v2(st->rdb, "SELECT value FROM meta WHERE key = ?1", -1, &s, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    switch (sqlite3_step(s)) {
    case SQLITE_ROW: {
        const unsigned char *v = sqlite3_column_text(s, 0);
        int n = snprintf(out, cap, "%s", v != NULL ? (const char *)v : "");
        rc = n >= 0 && (size_t)n < cap ? OCB_OK : OCB_ERR_TOO_BIG;
        break;
    }
    case SQLITE_DONE:
        rc = OCB_ERR_NOT_FOUND;
        break;
    default:
        break;
    }
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->rmu);
    return rc;
}

const char *state_path(const struct ocb_state *st)
{
    return st->path;
}

bool state_failing(const struct ocb_state *st)
{
    return atomic_load(&st->failing);
}

unsigned state_quarantined(const struct ocb_state *st)
{
    return st->quarantined;
}

enum ocb_err state_reader_open(const char *dir, sqlite3 **out)
{
    char path[PATH_CAP];
    sqlite3 *db = NULL;
    struct stat sb;

    *out = NULL;
    if (path_join(path, sizeof(path), dir, OCB_STATE_DB_NAME) != 0)
        return OCB_ERR_IO;
    if (stat(path, &sb) != 0)
        return OCB_ERR_NOT_FOUND;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return OCB_ERR_IO;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    *out = db;
    return OCB_OK;
}

void state_close(struct ocb_state *st)
{
    if (st == NULL)
        return;
    if (st->started) {
        pthread_mutex_lock(&st->mu);
        st->stop = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->writer, NULL);
    }
    sqlite3_close(st->rdb);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->rmu);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}
