/*
 * test_state.c: the state store and the spool on it: open and migrate,
 * quarantine of files that cannot be trusted, group commit, a disk that
 * refuses and recovers, and the spool's append / accounting / full / expiry
 * / reload.  Real SQLite files in a temporary directory.
 */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ocb/config.h"
#include "ocb/metrics.h"
#include "ocb/mqtt_link.h"
#include "ocb/spool.h"
#include "ocb/state.h"
#include "th_main.h"

static char dir[256];

static void fresh_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ocb-state-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_dir(void)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void db_path(char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, OCB_STATE_DB_NAME);
}

static int count_corrupt(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, "ocbridge.db.corrupt-") != NULL &&
             strstr(e->d_name, "-wal") == NULL && strstr(e->d_name, "-shm") == NULL;
    closedir(d);
    return n;
}

static long long reader_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;

    ck_assert_int_eq(state_reader_open(dir, &db), OCB_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

START_TEST(open_creates_migrates_and_keeps_meta)
{
    struct ocb_state *st = NULL;
    char sub[256], v[64];

    fresh_dir();
    snprintf(sub, sizeof(sub), "%.200s/a/b", dir);
    {
        char saved[256];
        memcpy(saved, dir, sizeof(saved));
        snprintf(dir, sizeof(dir), "%s", sub);
        ck_assert_int_eq(state_open(dir, 16, &st), OCB_OK);
        ck_assert_uint_eq(state_quarantined(st), 0);
        ck_assert_int_eq(state_meta_get(st, "k", v, sizeof(v)), OCB_ERR_NOT_FOUND);
        ck_assert_int_eq(state_meta_set(st, "k", "one"), OCB_OK);
        ck_assert_int_eq(state_meta_set(st, "k", "two"), OCB_OK);
        ck_assert_int_eq(state_meta_get(st, "k", v, sizeof(v)), OCB_OK);
        ck_assert_str_eq(v, "two");
        ck_assert_int_eq(state_meta_get(st, "k", v, 2), OCB_ERR_TOO_BIG);
        state_close(st);
        ck_assert_int_eq(reader_int("PRAGMA user_version"), OCB_STATE_SCHEMA_VERSION);
        ck_assert_int_eq(reader_int("SELECT count(*) FROM spool"), 0);
        /* Reopened: no migration, the value is still there. */
        ck_assert_int_eq(state_open(dir, 16, &st), OCB_OK);
        ck_assert_int_eq(state_meta_get(st, "k", v, sizeof(v)), OCB_OK);
        ck_assert_str_eq(v, "two");
        state_close(st);
        memcpy(dir, saved, sizeof(saved));
    }
    rm_dir();
}
END_TEST

START_TEST(unwritable_dir_is_an_error)
{
    struct ocb_state *st = NULL;

    ck_assert_int_eq(state_open("/proc/ocb-cannot-exist/state", 16, &st), OCB_ERR_IO);
    ck_assert_ptr_null(st);
}
END_TEST

static void quarantine_case(const void *content, size_t len, bool via_sqlite_version)
{
    struct ocb_state *st = NULL;
    char path[300], v[16];
    double before = (double)metrics_value("ocb_state_quarantined_total", "");

    fresh_dir();
    db_path(path, sizeof(path));
    if (via_sqlite_version) {
        sqlite3 *db = NULL;
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(
            sqlite3_exec(db, "CREATE TABLE x(a); PRAGMA user_version=99", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(db);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(content, 1, len, f), len);
        fclose(f);
    }
    ck_assert_int_eq(state_open(dir, 16, &st), OCB_OK);
    ck_assert_uint_eq(state_quarantined(st), 1);
    ck_assert_int_eq(count_corrupt(), 1);
    ck_assert(metrics_value("ocb_state_quarantined_total", "") == before + 1);
    ck_assert_int_eq(state_meta_set(st, "after", "works"), OCB_OK);
    ck_assert_int_eq(state_meta_get(st, "after", v, sizeof(v)), OCB_OK);
    ck_assert_str_eq(v, "works");
    state_close(st);
    rm_dir();
}

START_TEST(garbage_file_is_quarantined)
{
    char junk[8192];

    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    quarantine_case(junk, sizeof(junk), false);
}
END_TEST

START_TEST(newer_schema_is_quarantined)
{
    quarantine_case(NULL, 0, true);
}
END_TEST

/* ---- group commit */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
};
static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
static atomic_int fns_run, dones, bad;
static atomic_bool gate_entered; /* the writer is inside blocking_fn */

static int blocking_fn(sqlite3 *db, void *ctx)
{
    (void)db;
    (void)ctx;
    atomic_store(&gate_entered, true);
    pthread_mutex_lock(&gate.mu);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    atomic_fetch_add(&fns_run, 1);
    return SQLITE_OK;
}

static int insert_fn(sqlite3 *db, void *ctx)
{
    char sql[128];

    snprintf(sql, sizeof(sql), "INSERT INTO meta(key, value) VALUES('k%d', 'v')",
             (int)(intptr_t)ctx);
    atomic_fetch_add(&fns_run, 1);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

#define N_OPS 200
static int seen_at_done[N_OPS];

static void record_done(void *ctx, enum ocb_err rc)
{
    int i = (int)(intptr_t)ctx;

    if (rc != OCB_OK)
        atomic_fetch_add(&bad, 1);
    if (i >= 0 && i < N_OPS)
        seen_at_done[i] = atomic_load(&fns_run);
    atomic_fetch_add(&dones, 1);
}

START_TEST(concurrent_submits_commit_as_one_group)
{
    struct ocb_state *st = NULL;
    static struct ocb_state_op first, ops[N_OPS], extra;

    fresh_dir();
    ck_assert_int_eq(state_open(dir, N_OPS, &st), OCB_OK);
    first = (struct ocb_state_op){.fn = blocking_fn, .done = record_done, .ctx = (void *)-1};
    ck_assert_int_eq(state_submit(st, &first), OCB_OK);
    /* Let the writer take `first` alone and block in it. */
    for (int i = 0; i < 2000 && !atomic_load(&gate_entered); i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(atomic_load(&gate_entered), "the writer never took the first op");
    for (int i = 0; i < N_OPS; i++) {
        ops[i] =
            (struct ocb_state_op){.fn = insert_fn, .done = record_done, .ctx = (void *)(intptr_t)i};
        ck_assert_int_eq(state_submit(st, &ops[i]), OCB_OK);
    }
    /* The queue is bounded: one more is refused, and its done never runs. */
    extra = (struct ocb_state_op){.fn = insert_fn, .done = record_done, .ctx = (void *)-2};
    ck_assert_int_eq(state_submit(st, &extra), OCB_ERR_FULL);
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    state_close(st);
    ck_assert_int_eq(atomic_load(&dones), N_OPS + 1);
    ck_assert_int_eq(atomic_load(&bad), 0);
    /* Every op of the group ran before any of their dones: one transaction. */
    for (int i = 0; i < N_OPS; i++)
        ck_assert_int_eq(seen_at_done[i], N_OPS + 1);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM meta"), N_OPS);
    rm_dir();
}
END_TEST

/* ---- a disk that refuses */

static int limit_fn(sqlite3 *db, void *ctx)
{
    char sql[64];

    snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%d", (int)(intptr_t)ctx);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int big_fn(sqlite3 *db, void *ctx)
{
    sqlite3_stmt *s = NULL;
    int src;

    (void)ctx;
    src = sqlite3_prepare_v2(db,
                             "INSERT INTO meta(key, value) VALUES(hex(randomblob(8)), "
                             "hex(zeroblob(200000)))",
                             -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    sqlite3_finalize(s);
    return src;
}

START_TEST(disk_full_fails_the_batch_and_recovers)
{
    struct ocb_state *st = NULL;
    char v[16];
    long long pages;

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 16, &st), OCB_OK);
    ck_assert_int_eq(state_meta_set(st, "kept", "yes"), OCB_OK);
    pages = reader_int("PRAGMA page_count");
    ck_assert_int_eq(state_run(st, limit_fn, (void *)(intptr_t)(pages + 2)), OCB_OK);
    ck_assert_int_eq(state_run(st, big_fn, NULL), OCB_ERR_IO);
    ck_assert(state_failing(st));
    ck_assert_int_eq(state_meta_get(st, "kept", v, sizeof(v)), OCB_OK);
    ck_assert_str_eq(v, "yes");
    /* Space returns: the next write simply works. */
    ck_assert_int_eq(state_run(st, limit_fn, (void *)(intptr_t)1073741823), OCB_OK);
    ck_assert_int_eq(state_run(st, big_fn, NULL), OCB_OK);
    ck_assert(!state_failing(st));
    state_close(st);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM meta"), 2);
    rm_dir();
}
END_TEST

/* ---- the spool */

struct appended {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    int64_t last_id;
    enum ocb_err last_rc;
};
static struct appended ap = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, OCB_OK};

static void on_appended(void *ctx, enum ocb_err rc, int64_t id)
{
    (void)ctx;
    pthread_mutex_lock(&ap.mu);
    ap.n++;
    ap.last_id = id;
    ap.last_rc = rc;
    pthread_cond_broadcast(&ap.cv);
    pthread_mutex_unlock(&ap.mu);
}

static void wait_appended(int n)
{
    pthread_mutex_lock(&ap.mu);
    while (ap.n < n)
        pthread_cond_wait(&ap.cv, &ap.mu);
    pthread_mutex_unlock(&ap.mu);
}

static struct ocb_config *spool_config(const char *extra)
{
    char json[256], err[256];
    struct ocb_config *cfg = NULL;

    snprintf(json, sizeof(json), "{\"spool\":{%s}}", extra);
    ck_assert_int_eq(config_parse("t.json", json, strlen(json), &cfg, err, sizeof(err)), OCB_OK);
    return cfg;
}

static struct ocb_spool_msg msg_of(const char *body, int64_t received_ms)
{
    return (struct ocb_spool_msg){.app = "app1",
                                  .topic = "iot/app1/d1/deviceDataChanged",
                                  .body = body,
                                  .len = strlen(body),
                                  .notify_type = "deviceDataChanged",
                                  .ocb_request_id = "r1",
                                  .content_type = "application/json",
                                  .utf8 = true,
                                  .received_ms = received_ms};
}

START_TEST(spool_appends_counts_refuses_when_full_and_reloads)
{
    struct ocb_config *cfg = spool_config("\"max_bytes\":4096");
    struct ocb_mqtt_link *link = NULL;
    struct ocb_state *st = NULL;
    struct ocb_spool *sp = NULL;
    char body[1024], why[96];
    struct ocb_spool_msg m;
    size_t each;
    int ok = 0;

    fresh_dir();
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    m = msg_of(body, 0);
    each = m.len + strlen(m.topic);
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(spool_new(st, link, cfg, &sp), OCB_OK);
    ck_assert(!spool_busy(sp));
    ck_assert(spool_accepting(sp, why, sizeof(why)));
    /* 4096 bytes take three of these; the fourth is refused, nothing else dropped. */
    while (spool_append(sp, &m, 0, on_appended, NULL) == OCB_OK)
        ok++;
    ck_assert_int_eq(ok, (int)(4096 / each));
    wait_appended(ok);
    ck_assert_int_eq(ap.last_rc, OCB_OK);
    ck_assert_uint_eq(spool_messages(sp), (size_t)ok);
    ck_assert(spool_busy(sp));
    ck_assert(!spool_accepting(sp, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "full"));
    ck_assert_int_eq(metrics_value("ocb_spool_messages", ""), ok);
    ck_assert_int_eq(metrics_value("ocb_spool_bytes", ""), (int64_t)(ok * each));
    ck_assert_int_eq(metrics_value("ocb_spool_dropped_total", "reason=\"full\""), 1);

    /* Delivered by its own publish: the row goes. */
    ck_assert_int_eq(spool_append(sp, &m, OCB_SPOOL_ORIGIN_PENDING, on_appended, NULL),
                     OCB_ERR_FULL);
    spool_free(sp);
    state_close(st);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM spool"), ok);

    /* A restart finds them again. */
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(spool_new(st, link, cfg, &sp), OCB_OK);
    ck_assert_uint_eq(spool_messages(sp), (size_t)ok);
    spool_free(sp);
    state_close(st);
    mqtt_link_free(link);
    config_free(cfg);
    rm_dir();
}
END_TEST

START_TEST(spool_origin_ack_deletes_and_old_messages_expire)
{
    struct ocb_config *cfg = spool_config("\"max_age_s\":1");
    struct ocb_mqtt_link *link = NULL;
    struct ocb_state *st = NULL;
    struct ocb_spool *sp = NULL;
    struct ocb_spool_msg fresh = msg_of("{\"a\":1}", 0);
    struct ocb_spool_msg old;
    struct timespec now;
    int64_t id;

    clock_gettime(CLOCK_REALTIME, &now);
    old = msg_of("{\"old\":1}", (int64_t)now.tv_sec * 1000 - 60000);
    fresh_dir();
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(spool_new(st, link, cfg, &sp), OCB_OK);
    ap.n = 0;
    ck_assert_int_eq(spool_append(sp, &fresh, OCB_SPOOL_ORIGIN_PENDING, on_appended, NULL), OCB_OK);
    wait_appended(1);
    id = ap.last_id;
    ck_assert_int_eq(spool_append(sp, &old, 0, on_appended, NULL), OCB_OK);
    wait_appended(2);
    ck_assert_uint_eq(spool_messages(sp), 2);
    spool_origin_done(sp, id, OCB_OK);
    /* The drainer (its link never connects) expires the old one on its next tick. */
    ck_assert_int_eq(spool_start(sp), OCB_OK);
    for (int i = 0; i < 100 && spool_messages(sp) > 0; i++) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_eq(spool_messages(sp), 0);
    ck_assert_int_eq(metrics_value("ocb_spool_dropped_total", "reason=\"expired\""), 1);
    spool_free(sp);
    state_close(st);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM spool"), 0);
    mqtt_link_free(link);
    config_free(cfg);
    rm_dir();
}
END_TEST

/* Lift the limit (a connection setting, kept through a rollback) in a batch that fails:
 * only a later commit can tell the store that writes work again. */
static int limit_then_fail_fn(sqlite3 *db, void *ctx)
{
    limit_fn(db, ctx);
    return SQLITE_IOERR;
}

START_TEST(spool_clears_a_failed_write_by_itself)
{
    struct ocb_config *cfg = spool_config("\"max_age_s\":60");
    struct ocb_mqtt_link *link = NULL;
    struct ocb_state *st = NULL;
    struct ocb_spool *sp = NULL;
    char why[96];
    long long pages;

    fresh_dir();
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(spool_new(st, link, cfg, &sp), OCB_OK);
    pages = reader_int("PRAGMA page_count");
    ck_assert_int_eq(state_run(st, limit_fn, (void *)(intptr_t)(pages + 1)), OCB_OK);
    ck_assert_int_eq(state_run(st, big_fn, NULL), OCB_ERR_IO);
    ck_assert(!spool_accepting(sp, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "cannot write"));
    /* Space returns; no push arrives (an orchestrator may have stopped sending on /readyz
     * 503): the drainer's probe finds out by itself. */
    ck_assert_int_eq(state_run(st, limit_then_fail_fn, (void *)(intptr_t)1073741823), OCB_ERR_IO);
    ck_assert(state_failing(st));
    ck_assert_int_eq(spool_start(sp), OCB_OK);
    for (int i = 0; i < 100 && !spool_accepting(sp, why, sizeof(why)); i++) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    ck_assert(spool_accepting(sp, why, sizeof(why)));
    spool_free(sp);
    state_close(st);
    mqtt_link_free(link);
    config_free(cfg);
    rm_dir();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const state_tests[] = {open_creates_migrates_and_keeps_meta,
                                        unwritable_dir_is_an_error,
                                        garbage_file_is_quarantined,
                                        newer_schema_is_quarantined,
                                        concurrent_submits_commit_as_one_group,
                                        disk_full_fails_the_batch_and_recovers,
                                        spool_appends_counts_refuses_when_full_and_reloads,
                                        spool_origin_ack_deletes_and_old_messages_expire,
                                        spool_clears_a_failed_write_by_itself,
                                        NULL};
    const struct th_case cases[] = {
        {.name = "state", .timeout_s = 60, .tests = state_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "state", cases);
}
