/*
 * journal.c: the command journal and the persisted requesters (journal.h).
 *
 * A thin layer of SQL over the state store.  Nothing here keeps rows in
 * memory: the command worker owns the jobs, and the journal only mirrors
 * their state changes to disk.  Ids are assigned here (journal_reserve: one
 * atomic counter, continued from the largest id found at start), so the
 * caller knows a row's id before its insert commits and can queue later
 * changes behind it: the store runs ops in submission order, so an update
 * or a delete never overtakes the insert it refers to.
 *
 * Counters: `rows` bounds the table (reserve .. delete committed); the
 * per-state counts feed the ocb_journal_commands{state} gauge.  Each op's fn
 * reads the row's previous state inside the transaction and its done
 * adjusts the counts only once the write is durable, so a rolled-back batch
 * changes nothing.
 *
 * Asynchronous ops are heap-allocated and free themselves in done;
 * `pending` counts them so that journal_free() can wait for the last one
 * (the store calls done even for ops it fails).  Lock: j->mu guards
 * `pending` and serialises the gauge updates; nothing but metrics is called
 * under it.
 */
#include "ocb/journal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/util.h"

#define MOD "journal"

struct ocb_journal {
    struct ocb_state *st;
    unsigned max_rows;
    atomic_int_fast64_t next_id;
    atomic_uint rows;
    atomic_int counts[OCB_JOURNAL_STATES];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
};

static const char *const state_names[OCB_JOURNAL_STATES] = {"queued", "sending", "answered"};

const char *journal_state_name(enum ocb_journal_state s)
{
    return (unsigned)s < OCB_JOURNAL_STATES ? state_names[s] : "unknown";
}

static void publish_gauges(struct ocb_journal *j)
{
    for (int i = 0; i < OCB_JOURNAL_STATES; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "state=\"%s\"", state_names[i]);
        metrics_gauge_set("ocb_journal_commands", labels, atomic_load(&j->counts[i]));
    }
}

/* Under j->mu so that two threads (the writer's done, the worker's mark) cannot leave an
 * older value in the gauge last. */
static void count_move(struct ocb_journal *j, int from, int to)
{
    pthread_mutex_lock(&j->mu);
    if (from >= 0 && from < OCB_JOURNAL_STATES)
        atomic_fetch_sub(&j->counts[from], 1);
    if (to >= 0 && to < OCB_JOURNAL_STATES)
        atomic_fetch_add(&j->counts[to], 1);
    publish_gauges(j);
    pthread_mutex_unlock(&j->mu);
}

static void write_error(const char *what, int64_t id, enum ocb_err rc)
{
    metrics_counter_add("ocb_journal_write_errors_total", "", 1);
    log_error(MOD, NULL, "command journal: %s of row %" PRId64 " failed: %s", what, id,
              ocb_strerror(rc));
}

/* The last '/' before p, or NULL. */
static const char *prev_slash(const char *start, const char *p)
{
    while (p > start) {
        p--;
        if (*p == '/')
            return p;
    }
    return NULL;
}

/* The app level of <prefix>/<app>/<device>/<leaf>, or "" when the topic has fewer levels. */
static void topic_app(const char *topic, char *out, size_t cap)
{
    const char *s3 = strrchr(topic, '/');
    const char *s2 = s3 ? prev_slash(topic, s3) : NULL;
    const char *s1 = s2 ? prev_slash(topic, s2) : NULL;
    const char *begin = s1 ? s1 + 1 : topic;

    out[0] = '\0';
    if (s2)
        snprintf(out, cap, "%.*s", (int)(s2 - begin), begin);
}

/* ---- pending async ops */

static void pending_add(struct ocb_journal *j)
{
    pthread_mutex_lock(&j->mu);
    j->pending++;
    pthread_mutex_unlock(&j->mu);
}

static void pending_done(struct ocb_journal *j)
{
    pthread_mutex_lock(&j->mu);
    j->pending--;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void describe_metrics(void)
{
    metrics_describe("ocb_journal_commands", OCB_METRIC_GAUGE,
                     "Commands held by the command journal, by state (queued, sending, answered "
                     "awaiting the broker's PUBACK)");
    metrics_describe("ocb_journal_recovered_total", OCB_METRIC_COUNTER,
                     "Journaled commands found at start-up and resumed, by their state then");
    metrics_describe("ocb_journal_write_errors_total", OCB_METRIC_COUNTER,
                     "Command journal writes the store refused (disk full, I/O error, full queue)");
    metrics_counter_add("ocb_journal_write_errors_total", "", 0);
    for (int i = 0; i < OCB_JOURNAL_STATES; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "state=\"%s\"", state_names[i]);
        metrics_counter_add("ocb_journal_recovered_total", labels, 0);
    }
}

enum ocb_err journal_open(struct ocb_state *st, unsigned max_rows, struct ocb_journal **out)
{
    *out = NULL;
    struct ocb_journal *j = calloc(1, sizeof(*j));
    if (!j)
        return OCB_ERR_NOMEM;
    j->st = st;
    j->max_rows = max_rows ? max_rows : 1;
    atomic_init(&j->next_id, 1);
    atomic_init(&j->rows, 0);
    for (int i = 0; i < OCB_JOURNAL_STATES; i++)
        atomic_init(&j->counts[i], 0);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    describe_metrics();
    publish_gauges(j);
    *out = j;
    return OCB_OK;
}

void journal_free(struct ocb_journal *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    while (j->pending > 0)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

unsigned journal_rows(struct ocb_journal *j)
{
    return atomic_load(&j->rows);
}

/* ---- load */

struct load_ctx {
    struct ocb_journal *j;
    ocb_journal_row_fn fn;
    void *ctx;
    size_t n;
    int64_t max_id;
    unsigned per_state[OCB_JOURNAL_STATES];
};

static int load_fn(sqlite3 *db, void *arg)
{
    struct load_ctx *lc = arg;
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db,
                                 "SELECT id, topic, payload, oversize, retained, response_topic, "
                                 "corr, arrived_ms, deadline_ms, state, first_s, command_id, "
                                 "answer FROM journal ORDER BY id",
                                 -1, &s, NULL);
    if (src != SQLITE_OK)
        return src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        struct ocb_journal_row r;
        memset(&r, 0, sizeof(r));
        r.cmd.id = sqlite3_column_int64(s, 0);
        r.cmd.topic = (const char *)sqlite3_column_text(s, 1);
        r.cmd.payload = (const char *)sqlite3_column_blob(s, 2);
        r.cmd.len = (size_t)sqlite3_column_bytes(s, 2);
        if (!r.cmd.payload)
            r.cmd.payload = "";
        r.cmd.oversize = sqlite3_column_int(s, 3) != 0;
        r.cmd.retained = sqlite3_column_int(s, 4) != 0;
        r.cmd.response_topic = (const char *)sqlite3_column_text(s, 5);
        r.cmd.corr = sqlite3_column_blob(s, 6);
        r.cmd.corr_len = r.cmd.corr ? (size_t)sqlite3_column_bytes(s, 6) : 0;
        r.cmd.arrived_ms = sqlite3_column_int64(s, 7);
        r.cmd.deadline_ms = sqlite3_column_int64(s, 8);
        int state = sqlite3_column_int(s, 9);
        r.state = state >= 0 && state < OCB_JOURNAL_STATES ? (enum ocb_journal_state)state
                                                           : OCB_JOURNAL_SENDING;
        r.first_s = sqlite3_column_int64(s, 10);
        r.command_id = (const char *)sqlite3_column_text(s, 11);
        r.answer = (const char *)sqlite3_column_blob(s, 12);
        r.answer_len = r.answer ? (size_t)sqlite3_column_bytes(s, 12) : 0;
        if (r.state == OCB_JOURNAL_ANSWERED && !r.answer)
            r.state = OCB_JOURNAL_SENDING; /* cannot happen; never lose the command */
        if (!r.cmd.topic)
            continue;
        if (r.cmd.id > lc->max_id)
            lc->max_id = r.cmd.id;
        lc->per_state[r.state]++;
        lc->n++;
        if (lc->fn)
            lc->fn(lc->ctx, &r);
    }
    sqlite3_finalize(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

enum ocb_err journal_load(struct ocb_journal *j, ocb_journal_row_fn fn, void *ctx, size_t *n)
{
    struct load_ctx lc = {.j = j, .fn = fn, .ctx = ctx};
    enum ocb_err rc = state_run(j->st, load_fn, &lc);
    if (n)
        *n = lc.n;
    if (rc != OCB_OK)
        return rc;
    atomic_store(&j->next_id, lc.max_id + 1);
    atomic_store(&j->rows, (unsigned)lc.n);
    for (int i = 0; i < OCB_JOURNAL_STATES; i++) {
        atomic_store(&j->counts[i], (int)lc.per_state[i]);
        if (lc.per_state[i]) {
            char labels[64];
            snprintf(labels, sizeof(labels), "state=\"%s\"", state_names[i]);
            metrics_counter_add("ocb_journal_recovered_total", labels, lc.per_state[i]);
        }
    }
    publish_gauges(j);
    if (lc.n)
        log_info(MOD, NULL,
                 "command journal: resuming %zu command(s) (%u queued, %u sending, %u answered "
                 "awaiting the broker)",
                 lc.n, lc.per_state[0], lc.per_state[1], lc.per_state[2]);
    return OCB_OK;
}

/* ---- append */

int64_t journal_reserve(struct ocb_journal *j)
{
    unsigned rows = atomic_load(&j->rows);
    do {
        if (rows >= j->max_rows)
            return 0;
    } while (!atomic_compare_exchange_weak(&j->rows, &rows, rows + 1));
    return atomic_fetch_add(&j->next_id, 1);
}

void journal_unreserve(struct ocb_journal *j)
{
    atomic_fetch_sub(&j->rows, 1);
}

static int append_fn(sqlite3 *db, void *arg)
{
    struct ocb_journal_append *a = arg;
    const struct ocb_journal_cmd *c = a->cmd;
    char app[256];
    sqlite3_stmt *s = NULL;
    topic_app(c->topic, app, sizeof(app));
    int src = sqlite3_prepare_v2(db,
                                 "INSERT INTO journal(id, app, topic, payload, oversize, retained, "
                                 "response_topic, corr, arrived_ms, deadline_ms, state) "
                                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
                                 -1, &s, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, c->id);
        sqlite3_bind_text(s, 2, app, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, c->topic, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, c->payload ? c->payload : "", (int)c->len, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, c->oversize);
        sqlite3_bind_int(s, 6, c->retained);
        if (c->response_topic)
            sqlite3_bind_text(s, 7, c->response_topic, -1, SQLITE_STATIC);
        if (c->corr && c->corr_len)
            sqlite3_bind_blob(s, 8, c->corr, (int)c->corr_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 9, c->arrived_ms);
        sqlite3_bind_int64(s, 10, c->deadline_ms);
        src = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    return src;
}

static void append_done(void *arg, enum ocb_err rc)
{
    struct ocb_journal_append *a = arg;
    struct ocb_journal *j = a->j;
    ocb_journal_done done = a->done;
    void *ctx = a->ctx;
    int64_t id = a->cmd->id;
    if (rc == OCB_OK) {
        count_move(j, -1, OCB_JOURNAL_QUEUED);
    } else {
        atomic_fetch_sub(&j->rows, 1);
        write_error("the append", id, rc);
    }
    /* a may be freed by done: nothing of it is used after this call. */
    done(ctx, rc);
    pending_done(j);
}

enum ocb_err journal_append(struct ocb_journal *j, struct ocb_journal_append *a,
                            const struct ocb_journal_cmd *cmd, ocb_journal_done done, void *ctx)
{
    if (cmd->len > INT32_MAX || cmd->corr_len > INT32_MAX)
        return OCB_ERR_TOO_BIG;
    a->j = j;
    a->cmd = cmd;
    a->done = done;
    a->ctx = ctx;
    a->op.fn = append_fn;
    a->op.done = append_done;
    a->op.ctx = a;
    pending_add(j);
    enum ocb_err rc = state_submit(j->st, &a->op);
    if (rc != OCB_OK) {
        pending_done(j);
        metrics_counter_add("ocb_journal_write_errors_total", "", 1);
    }
    return rc;
}

/* ---- state changes */

/* The row's state now, or -1 when it is not there. */
static int row_state(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *s = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "SELECT state FROM journal WHERE id = ?1", -1, &s, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    return v;
}

struct mark_ctx {
    const struct ocb_journal_sending *rows;
    size_t n;
    unsigned moved; /* rows that were queued */
};

static int mark_fn(sqlite3 *db, void *arg)
{
    struct mark_ctx *mc = arg;
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db,
                                 "UPDATE journal SET state = 1, first_s = ?2 "
                                 "WHERE id = ?1 AND state = 0",
                                 -1, &s, NULL);
    mc->moved = 0;
    for (size_t i = 0; src == SQLITE_OK && i < mc->n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, mc->rows[i].id);
        sqlite3_bind_int64(s, 2, mc->rows[i].first_s);
        src = sqlite3_step(s);
        if (src == SQLITE_DONE) {
            mc->moved += (unsigned)sqlite3_changes(db);
            src = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return src;
}

enum ocb_err journal_mark_sending(struct ocb_journal *j, const struct ocb_journal_sending *rows,
                                  size_t n)
{
    struct mark_ctx mc = {.rows = rows, .n = n};
    if (n == 0)
        return OCB_OK;
    enum ocb_err rc = state_run(j->st, mark_fn, &mc);
    if (rc != OCB_OK) {
        write_error("marking sending", rows[0].id, rc);
        return rc;
    }
    for (unsigned i = 0; i < mc.moved; i++)
        count_move(j, OCB_JOURNAL_QUEUED, OCB_JOURNAL_SENDING);
    return OCB_OK;
}

/* One asynchronous change of one row. */
enum change_kind { CH_ANSWER, CH_DELETE, CH_REQ_PUT, CH_REQ_PRUNE };

struct change {
    struct ocb_state_op op;
    struct ocb_journal *j;
    enum change_kind kind;
    int64_t id;
    int prev; /* the row's state before (fn), -1 none */
    char *command_id;
    char *answer;
    size_t answer_len;
    struct ocb_requester req;
    int64_t when_ms;
    unsigned max;
};

static int change_fn(sqlite3 *db, void *arg)
{
    struct change *c = arg;
    sqlite3_stmt *s = NULL;
    int src;
    switch (c->kind) {
    case CH_ANSWER:
        c->prev = row_state(db, c->id);
        src = sqlite3_prepare_v2(db,
                                 "UPDATE journal SET state = 2, command_id = ?2, answer = ?3 "
                                 "WHERE id = ?1",
                                 -1, &s, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_int64(s, 1, c->id);
            if (c->command_id)
                sqlite3_bind_text(s, 2, c->command_id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(s, 3, c->answer, (int)c->answer_len, SQLITE_STATIC);
            src = sqlite3_step(s);
        }
        break;
    case CH_DELETE:
        c->prev = row_state(db, c->id);
        src = sqlite3_prepare_v2(db, "DELETE FROM journal WHERE id = ?1", -1, &s, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_int64(s, 1, c->id);
            src = sqlite3_step(s);
        }
        break;
    case CH_REQ_PUT:
        src = sqlite3_prepare_v2(db,
                                 "INSERT INTO requesters(app, command_id, response_topic, corr, "
                                 "expires_ms) VALUES(?1, ?2, ?3, ?4, ?5)",
                                 -1, &s, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_text(s, 1, c->req.app_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, c->req.command_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 3, c->req.response_topic, -1, SQLITE_STATIC);
            if (c->req.corr_len)
                sqlite3_bind_blob(s, 4, c->req.corr, (int)c->req.corr_len, SQLITE_STATIC);
            sqlite3_bind_int64(s, 5, c->when_ms);
            src = sqlite3_step(s);
        }
        break;
    case CH_REQ_PRUNE:
        src = sqlite3_prepare_v2(db,
                                 "DELETE FROM requesters WHERE expires_ms <= ?1 OR id <= "
                                 "(SELECT id FROM requesters ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                                 -1, &s, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_int64(s, 1, c->when_ms);
            sqlite3_bind_int64(s, 2, c->max);
            src = sqlite3_step(s);
        }
        break;
    default:
        src = SQLITE_MISUSE;
    }
    sqlite3_finalize(s);
    return src;
}

static void change_done(void *arg, enum ocb_err rc)
{
    struct change *c = arg;
    struct ocb_journal *j = c->j;
    static const char *const what[] = {"storing the answer", "the delete", "storing a requester",
                                       "pruning requesters"};
    if (rc != OCB_OK) {
        write_error(what[c->kind], c->id, rc);
    } else if (c->kind == CH_ANSWER && c->prev >= 0 && c->prev != OCB_JOURNAL_ANSWERED) {
        count_move(j, c->prev, OCB_JOURNAL_ANSWERED);
    } else if (c->kind == CH_DELETE && c->prev >= 0) {
        atomic_fetch_sub(&j->rows, 1);
        count_move(j, c->prev, -1);
    }
    free(c->command_id);
    free(c->answer);
    free(c);
    pending_done(j);
}

static void change_submit(struct ocb_journal *j, struct change *c)
{
    c->j = j;
    c->prev = -1;
    c->op.fn = change_fn;
    c->op.done = change_done;
    c->op.ctx = c;
    pending_add(j);
    enum ocb_err rc = state_submit(j->st, &c->op);
    if (rc != OCB_OK) {
        change_done(c, rc);
    }
}

void journal_answer(struct ocb_journal *j, int64_t id, const char *command_id, const char *answer,
                    size_t len)
{
    struct change *c = calloc(1, sizeof(*c));
    if (c) {
        c->kind = CH_ANSWER;
        c->id = id;
        c->command_id = command_id ? ocb_strdup_or_null(command_id) : NULL;
        c->answer = ocb_memdup(answer, len ? len : 1);
        c->answer_len = len;
    }
    if (!c || !c->answer || (command_id && !c->command_id) || len > INT32_MAX) {
        if (c) {
            free(c->command_id);
            free(c->answer);
            free(c);
        }
        write_error("storing the answer", id, OCB_ERR_NOMEM);
        return;
    }
    change_submit(j, c);
}

void journal_delete(struct ocb_journal *j, int64_t id)
{
    struct change *c = calloc(1, sizeof(*c));
    if (!c) {
        write_error("the delete", id, OCB_ERR_NOMEM);
        return;
    }
    c->kind = CH_DELETE;
    c->id = id;
    change_submit(j, c);
}

void journal_requester_put(struct ocb_journal *j, const struct ocb_requester *r, int64_t expires_ms)
{
    struct change *c = calloc(1, sizeof(*c));
    if (!c) {
        write_error("storing a requester", 0, OCB_ERR_NOMEM);
        return;
    }
    c->kind = CH_REQ_PUT;
    c->req = *r;
    c->when_ms = expires_ms;
    change_submit(j, c);
}

void journal_requesters_prune(struct ocb_journal *j, int64_t now_ms, unsigned max)
{
    struct change *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->kind = CH_REQ_PRUNE;
    c->when_ms = now_ms;
    c->max = max;
    change_submit(j, c);
}

struct req_load {
    ocb_journal_requester_fn fn;
    void *ctx;
    int64_t now_ms;
};

static int req_load_fn(sqlite3 *db, void *arg)
{
    struct req_load *rl = arg;
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db,
                                 "SELECT app, command_id, response_topic, corr, expires_ms "
                                 "FROM requesters WHERE expires_ms > ?1 ORDER BY id",
                                 -1, &s, NULL);
    if (src != SQLITE_OK)
        return src;
    sqlite3_bind_int64(s, 1, rl->now_ms);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        struct ocb_requester r;
        const void *corr = sqlite3_column_blob(s, 3);
        size_t corr_len = corr ? (size_t)sqlite3_column_bytes(s, 3) : 0;
        int64_t expires = sqlite3_column_int64(s, 4);
        if (requesters_entry_fill(&r, (const char *)sqlite3_column_text(s, 0),
                                  (const char *)sqlite3_column_text(s, 1),
                                  (const char *)sqlite3_column_text(s, 2), corr, corr_len,
                                  0) == OCB_OK)
            rl->fn(rl->ctx, &r, expires);
    }
    sqlite3_finalize(s);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

enum ocb_err journal_requesters_load(struct ocb_journal *j, int64_t now_ms,
                                     ocb_journal_requester_fn fn, void *ctx)
{
    struct req_load rl = {.fn = fn, .ctx = ctx, .now_ms = now_ms};
    return state_run(j->st, req_load_fn, &rl);
}

/* ---- ocbridge state */

enum ocb_err journal_report(sqlite3 *db, int64_t now, FILE *out)
{
    sqlite3_stmt *s = NULL;
    int64_t total = 0, oldest = 0;
    int src;

    if (sqlite3_prepare_v2(db,
                           "SELECT app, state, count(*), min(arrived_ms) FROM journal "
                           "GROUP BY app, state ORDER BY app, state",
                           -1, &s, NULL) != SQLITE_OK) {
        /* A database the daemon has not migrated yet (schema 1) has no journal. */
        sqlite3_finalize(s);
        fprintf(out, "unfinished commands: 0\nrequesters: 0\n");
        return OCB_OK;
    }
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t o = sqlite3_column_int64(s, 3);
        total += sqlite3_column_int64(s, 2);
        if (oldest == 0 || o < oldest)
            oldest = o;
    }
    if (src != SQLITE_DONE) {
        sqlite3_finalize(s);
        return OCB_ERR_IO;
    }
    fprintf(out, "unfinished commands: %" PRId64, total);
    if (total > 0)
        fprintf(out, ", oldest %" PRId64 " s", ocb_age_s(now, oldest));
    fprintf(out, "\n");
    sqlite3_reset(s);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *app = sqlite3_column_text(s, 0);
        int64_t o = sqlite3_column_int64(s, 3);
        fprintf(out, "  app %s: %" PRId64 " %s, oldest %" PRId64 " s\n",
                app ? (const char *)app : "", (int64_t)sqlite3_column_int64(s, 2),
                journal_state_name((enum ocb_journal_state)sqlite3_column_int(s, 1)),
                ocb_age_s(now, o));
    }
    sqlite3_finalize(s);
    s = NULL;
    if (src != SQLITE_DONE)
        return OCB_ERR_IO;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM requesters WHERE expires_ms > ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return OCB_ERR_IO;
    sqlite3_bind_int64(s, 1, now);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        fprintf(out, "requesters: %" PRId64 "\n", (int64_t)sqlite3_column_int64(s, 0));
    sqlite3_finalize(s);
    return src == SQLITE_ROW ? OCB_OK : OCB_ERR_IO;
}
