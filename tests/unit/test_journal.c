/*
 * test_journal.c: the command journal on the state store: append and the
 * state moves, load order and contents after a reopen, the row bound, the
 * persisted requesters (put, prune, load), `ocbridge state`'s lines, a disk
 * that refuses an append, and migration 2 of a schema-1 file that holds
 * spooled messages (they survive).
 * Real SQLite files in a temporary directory.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocb/journal.h"
#include "ocb/metrics.h"
#include "ocb/state.h"
#include "ocb/util.h"
#include "th_main.h"

static char dir[256];

static void fresh_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ocb-journal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_dir(void)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
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

/* A no-op write: once it is durable, every op submitted before it has run its done. */
static int noop_fn(sqlite3 *db, void *ctx)
{
    (void)db;
    (void)ctx;
    return SQLITE_OK;
}

static void barrier(struct ocb_state *st)
{
    ck_assert_int_eq(state_run(st, noop_fn, NULL), OCB_OK);
}

/* The same when the barrier may share a batch that the disk refuses (it fails with it). */
static void barrier_any(struct ocb_state *st)
{
    (void)state_run(st, noop_fn, NULL);
}

struct appended {
    pthread_mutex_t mu;
    unsigned n;
    enum ocb_err rc[8];
};

static void on_appended(void *ctx, enum ocb_err rc)
{
    struct appended *a = ctx;

    pthread_mutex_lock(&a->mu);
    a->rc[a->n++ % 8] = rc;
    pthread_mutex_unlock(&a->mu);
}

/* Rows read back by journal_load. */
struct loaded {
    unsigned n;
    int64_t id[8];
    enum ocb_journal_state state[8];
    char topic[8][128];
    char payload[8][128];
    bool oversize[8];
    char response_topic[8][64];
    unsigned char corr[8][16];
    size_t corr_len[8];
    long long first_s[8];
    char command_id[8][64];
    char answer[8][128];
    int64_t deadline_ms[8];
};

static void on_row(void *ctx, const struct ocb_journal_row *r)
{
    struct loaded *l = ctx;
    unsigned i = l->n++;

    ck_assert_uint_lt(i, 8);
    l->id[i] = r->cmd.id;
    l->state[i] = r->state;
    snprintf(l->topic[i], sizeof(l->topic[i]), "%s", r->cmd.topic);
    snprintf(l->payload[i], sizeof(l->payload[i]), "%.*s", (int)r->cmd.len, r->cmd.payload);
    l->oversize[i] = r->cmd.oversize;
    snprintf(l->response_topic[i], sizeof(l->response_topic[i]), "%s",
             r->cmd.response_topic ? r->cmd.response_topic : "");
    l->corr_len[i] = r->cmd.corr_len;
    if (r->cmd.corr_len)
        memcpy(l->corr[i], r->cmd.corr, r->cmd.corr_len < 16 ? r->cmd.corr_len : 16);
    l->first_s[i] = r->first_s;
    snprintf(l->command_id[i], sizeof(l->command_id[i]), "%s", r->command_id ? r->command_id : "");
    snprintf(l->answer[i], sizeof(l->answer[i]), "%.*s", (int)r->answer_len,
             r->answer ? r->answer : "");
    l->deadline_ms[i] = r->cmd.deadline_ms;
}

static struct ocb_journal_cmd cmd_for(int64_t id, const char *topic, const char *payload)
{
    struct ocb_journal_cmd c = {
        .id = id,
        .topic = topic,
        .payload = payload,
        .len = strlen(payload),
        .arrived_ms = 1700000000000 + id,
        .deadline_ms = 1700000060000 + id,
    };
    return c;
}

START_TEST(append_state_moves_and_load_in_order)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct appended ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct ocb_journal_append op[4];
    struct ocb_journal_cmd c[4];
    struct loaded l;
    size_t n = 99;
    static const unsigned char corr[3] = {0, 1, 2};

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, &n), OCB_OK);
    ck_assert_uint_eq(n, 0);
    for (int i = 0; i < 4; i++) {
        int64_t id = journal_reserve(j);
        ck_assert_int_eq(id, i + 1);
    }
    c[0] = cmd_for(1, "iot/app1/dev-a/command", "{\"a\":1}");
    c[1] = cmd_for(2, "iot/app1/dev-b/command", "{\"b\":2}");
    c[2] = cmd_for(3, "iot/app2/dev-c/commandCancel", "{}");
    c[3] = cmd_for(4, "iot/app2/dev-d/command", "");
    c[0].response_topic = "reply/x";
    c[0].corr = corr;
    c[0].corr_len = sizeof(corr);
    c[3].oversize = true;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(journal_append(j, &op[i], &c[i], on_appended, &ap), OCB_OK);
    barrier(st);
    ck_assert_uint_eq(ap.n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(ap.rc[i], OCB_OK);
    ck_assert(metrics_value("ocb_journal_commands", "state=\"queued\"") == 4);

    const struct ocb_journal_sending rows[] = {{2, 1700000001}, {3, 0}};
    ck_assert_int_eq(journal_mark_sending(j, rows, 2), OCB_OK);
    ck_assert(metrics_value("ocb_journal_commands", "state=\"sending\"") == 2);
    journal_answer(j, 3, NULL, "{\"ok\":true}", 11);
    journal_answer(j, 2, "cmd-2", "{\"ok\":true,\"commandId\":\"cmd-2\"}", 31);
    journal_delete(j, 2); /* its answer was PUBACKed */
    barrier(st);
    ck_assert(metrics_value("ocb_journal_commands", "state=\"queued\"") == 2);
    ck_assert(metrics_value("ocb_journal_commands", "state=\"sending\"") == 0);
    ck_assert(metrics_value("ocb_journal_commands", "state=\"answered\"") == 1);
    ck_assert_uint_eq(journal_rows(j), 3);
    journal_free(j);
    state_close(st);

    /* A restart: the rows come back in arrival order with everything they held. */
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(journal_load(j, on_row, &l, &n), OCB_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(l.n, 3);
    ck_assert_int_eq(l.id[0], 1);
    ck_assert_int_eq(l.id[1], 3);
    ck_assert_int_eq(l.id[2], 4);
    ck_assert_int_eq(l.state[0], OCB_JOURNAL_QUEUED);
    ck_assert_str_eq(l.topic[0], "iot/app1/dev-a/command");
    ck_assert_str_eq(l.payload[0], "{\"a\":1}");
    ck_assert_str_eq(l.response_topic[0], "reply/x");
    ck_assert_uint_eq(l.corr_len[0], 3);
    ck_assert_int_eq(memcmp(l.corr[0], corr, 3), 0);
    ck_assert_int_eq(l.deadline_ms[0], 1700000060001);
    ck_assert_int_eq(l.state[1], OCB_JOURNAL_ANSWERED);
    ck_assert_str_eq(l.answer[1], "{\"ok\":true}");
    ck_assert_int_eq(l.state[2], OCB_JOURNAL_QUEUED);
    ck_assert(l.oversize[2]);
    ck_assert_str_eq(l.payload[2], "");
    ck_assert(metrics_value("ocb_journal_recovered_total", "state=\"queued\"") >= 2);
    /* Ids continue after the largest one found. */
    ck_assert_int_eq(journal_reserve(j), 5);
    journal_unreserve(j);
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

START_TEST(first_create_time_is_kept_with_sending)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct appended ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct ocb_journal_append op;
    struct ocb_journal_cmd c = cmd_for(1, "iot/app1/dev-a/command", "{}");
    struct loaded l;

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, NULL), OCB_OK);
    ck_assert_int_eq(journal_reserve(j), 1);
    ck_assert_int_eq(journal_append(j, &op, &c, on_appended, &ap), OCB_OK);
    const struct ocb_journal_sending row = {1, 1700000123};
    ck_assert_int_eq(journal_mark_sending(j, &row, 1), OCB_OK);
    /* A second mark (a retry) changes nothing: the first attempt's time stays. */
    const struct ocb_journal_sending later = {1, 1700000999};
    ck_assert_int_eq(journal_mark_sending(j, &later, 1), OCB_OK);
    journal_free(j);
    state_close(st);
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(journal_load(j, on_row, &l, NULL), OCB_OK);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_int_eq(l.state[0], OCB_JOURNAL_SENDING);
    ck_assert_int_eq(l.first_s[0], 1700000123);
    ck_assert(metrics_value("ocb_journal_recovered_total", "state=\"sending\"") >= 1);
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

START_TEST(the_row_bound_refuses_and_frees)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct appended ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct ocb_journal_append op[2];
    struct ocb_journal_cmd c[2];

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 2, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, NULL), OCB_OK);
    ck_assert_int_eq(journal_reserve(j), 1);
    ck_assert_int_eq(journal_reserve(j), 2);
    ck_assert_int_eq(journal_reserve(j), 0); /* full */
    c[0] = cmd_for(1, "iot/a/d/command", "{}");
    c[1] = cmd_for(2, "iot/a/d/command", "{}");
    ck_assert_int_eq(journal_append(j, &op[0], &c[0], on_appended, &ap), OCB_OK);
    ck_assert_int_eq(journal_append(j, &op[1], &c[1], on_appended, &ap), OCB_OK);
    barrier(st);
    ck_assert_int_eq(journal_reserve(j), 0);
    journal_delete(j, 1);
    barrier(st);
    ck_assert_uint_eq(journal_rows(j), 1);
    ck_assert_int_eq(journal_reserve(j), 3); /* the delete made room */
    journal_unreserve(j);
    /* A delete of a row that is not there frees nothing. */
    journal_delete(j, 42);
    barrier(st);
    ck_assert_uint_eq(journal_rows(j), 1);
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

struct reqs {
    unsigned n;
    char ids[8][OCB_COMMAND_ID_MAX + 1];
    char topics[8][OCB_REQUESTERS_TOPIC_MAX];
    size_t corr_len[8];
    int64_t expires[8];
};

static void on_req(void *ctx, const struct ocb_requester *r, int64_t expires_ms)
{
    struct reqs *q = ctx;
    unsigned i = q->n++;

    ck_assert_uint_lt(i, 8);
    snprintf(q->ids[i], sizeof(q->ids[i]), "%s", r->command_id);
    snprintf(q->topics[i], sizeof(q->topics[i]), "%s", r->response_topic);
    q->corr_len[i] = r->corr_len;
    q->expires[i] = expires_ms;
}

START_TEST(requesters_put_prune_load)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct ocb_requester r;
    struct reqs q;

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    for (int i = 0; i < 4; i++) {
        char id[16], topic[32];
        snprintf(id, sizeof(id), "cmd-%d", i);
        snprintf(topic, sizeof(topic), "reply/%d", i);
        ck_assert_int_eq(requesters_entry_fill(&r, "app1", id, topic, "xy", 2, 0), OCB_OK);
        /* cmd-0 expired at 1000; the others later. */
        journal_requester_put(j, &r, i == 0 ? 1000 : 5000 + i);
    }
    barrier(st);
    memset(&q, 0, sizeof(q));
    ck_assert_int_eq(journal_requesters_load(j, 2000, on_req, &q), OCB_OK);
    ck_assert_uint_eq(q.n, 3);
    ck_assert_str_eq(q.ids[0], "cmd-1");
    ck_assert_str_eq(q.topics[0], "reply/1");
    ck_assert_uint_eq(q.corr_len[0], 2);
    ck_assert_int_eq(q.expires[0], 5001);
    /* Prune: the expired one and all but the newest 2. */
    journal_requesters_prune(j, 2000, 2);
    barrier(st);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM requesters"), 2);
    memset(&q, 0, sizeof(q));
    ck_assert_int_eq(journal_requesters_load(j, 0, on_req, &q), OCB_OK);
    ck_assert_uint_eq(q.n, 2);
    ck_assert_str_eq(q.ids[0], "cmd-2");
    ck_assert_str_eq(q.ids[1], "cmd-3");
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

START_TEST(report_lists_unfinished_commands_and_requesters)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct appended ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct ocb_journal_append op[3];
    struct ocb_journal_cmd c[3];
    struct ocb_requester r;
    /* The report is asked at a fixed `now`, so the ages below do not depend on how long the test
     * takes (a second boundary crossed under load made it say 6 s). */
    int64_t now = ocb_wall_ms();
    char buf[1024] = "";
    sqlite3 *db = NULL;

    fresh_dir();
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, NULL), OCB_OK);
    c[0] = cmd_for(1, "iot/app1/dev-a/command", "{}");
    c[1] = cmd_for(2, "iot/app1/dev-b/command", "{}");
    c[2] = cmd_for(3, "a/b/app2/dev-c/command", "{}");
    for (int i = 0; i < 3; i++) {
        c[i].arrived_ms = now - 5000;
        ck_assert_int_eq(journal_reserve(j), i + 1);
        ck_assert_int_eq(journal_append(j, &op[i], &c[i], on_appended, &ap), OCB_OK);
    }
    const struct ocb_journal_sending row = {2, 0};
    ck_assert_int_eq(journal_mark_sending(j, &row, 1), OCB_OK);
    ck_assert_int_eq(requesters_entry_fill(&r, "app1", "cmd-1", "reply/1", NULL, 0, 0), OCB_OK);
    journal_requester_put(j, &r, now + 60000);
    barrier(st);
    ck_assert_int_eq(state_reader_open(dir, &db), OCB_OK);
    FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(journal_report(db, now, f), OCB_OK);
    fclose(f);
    sqlite3_close(db);
    ck_assert_msg(strstr(buf, "unfinished commands: 3, oldest 5 s\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "  app app1: 1 queued, oldest 5 s\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "  app app1: 1 sending, oldest 5 s\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "  app app2: 1 queued, oldest 5 s\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "requesters: 1\n") != NULL, "%s", buf);
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

/* PRAGMA max_page_count=ctx: SQLite keeps it at least the current size, so 1 = "no growth". */
static int limit_fn(sqlite3 *db, void *ctx)
{
    char sql[64];

    snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%d", (int)(intptr_t)ctx);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

START_TEST(a_disk_that_refuses_fails_the_append_and_frees_its_slot)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    struct appended ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct ocb_journal_append op[2];
    struct ocb_journal_cmd c[2];
    static char big[200000];
    double errors = (double)metrics_value("ocb_journal_write_errors_total", "");

    fresh_dir();
    memset(big, 'x', sizeof(big) - 1);
    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_int_eq(journal_open(st, 1, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, NULL), OCB_OK);
    ck_assert_int_eq(state_run(st, limit_fn, (void *)(intptr_t)1), OCB_OK); /* disk "full" */
    ck_assert_int_eq(journal_reserve(j), 1);
    c[0] = cmd_for(1, "iot/a/d/command", big);
    ck_assert_int_eq(journal_append(j, &op[0], &c[0], on_appended, &ap), OCB_OK);
    barrier_any(st);
    ck_assert_uint_eq(ap.n, 1);
    ck_assert_int_eq(ap.rc[0], OCB_ERR_IO);
    ck_assert_uint_eq(journal_rows(j), 0); /* the slot is free again */
    ck_assert(metrics_value("ocb_journal_write_errors_total", "") >= errors + 1);
    /* Space returns: the next append works, with the next id. */
    ck_assert_int_eq(state_run(st, limit_fn, (void *)(intptr_t)1073741823), OCB_OK);
    ck_assert_int_eq(journal_reserve(j), 2);
    c[1] = cmd_for(2, "iot/a/d/command", big);
    ck_assert_int_eq(journal_append(j, &op[1], &c[1], on_appended, &ap), OCB_OK);
    barrier(st);
    ck_assert_int_eq(ap.rc[1], OCB_OK);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM journal"), 1);
    journal_free(j);
    state_close(st);
    rm_dir();
}
END_TEST

/* Schema 1 as the first release wrote it, with two spooled pushes. */
START_TEST(migration_from_schema_1_keeps_spooled_messages)
{
    struct ocb_state *st = NULL;
    struct ocb_journal *j = NULL;
    sqlite3 *db = NULL;
    char path[300];

    fresh_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, OCB_STATE_DB_NAME);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "PRAGMA journal_mode=WAL;"
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
                                  " received_ms INTEGER NOT NULL);"
                                  "INSERT INTO spool(app, topic, body, utf8, received_ms) VALUES"
                                  " ('app1', 'iot/app1/d/deviceDataChanged', '{\"n\":1}', 1, 1),"
                                  " ('app1', 'iot/app1/d/deviceDataChanged', '{\"n\":2}', 1, 2);"
                                  "INSERT INTO meta VALUES('k', 'v');"
                                  "PRAGMA user_version=1;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    ck_assert_int_eq(state_open(dir, 64, &st), OCB_OK);
    ck_assert_uint_eq(state_quarantined(st), 0);
    ck_assert_int_eq(journal_open(st, 8, &j), OCB_OK);
    ck_assert_int_eq(journal_load(j, NULL, NULL, NULL), OCB_OK);
    journal_free(j);
    state_close(st);
    ck_assert_int_eq(reader_int("PRAGMA user_version"), 2);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM spool"), 2);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM spool WHERE body = '{\"n\":2}'"), 1);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM meta"), 1);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM journal"), 0);
    ck_assert_int_eq(reader_int("SELECT count(*) FROM requesters"), 0);
    rm_dir();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tests[] = {append_state_moves_and_load_in_order,
                                  first_create_time_is_kept_with_sending,
                                  the_row_bound_refuses_and_frees,
                                  requesters_put_prune_load,
                                  report_lists_unfinished_commands_and_requesters,
                                  migration_from_schema_1_keeps_spooled_messages,
                                  a_disk_that_refuses_fails_the_append_and_frees_its_slot,
                                  NULL};
    const struct th_case cases[] = {{.name = "journal", .timeout_s = 60, .tests = tests},
                                    {.name = NULL}};

    return th_main(argc, argv, "journal", cases);
}
