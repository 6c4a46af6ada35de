/*
 * spool.c: the push spool (spool.h) on the state store.
 *
 * Rows live in the `spool` table; this file keeps an in-memory index of
 * them, one small entry per row in id order (a growable array whose head
 * advances as rows leave).  The index answers "how many, how big, how old"
 * without touching the disk, tells the drainer what to publish next, and
 * records per row what is going on with it:
 *
 *   ORIGIN    its own publish (the HTTP request's) is still awaiting the ack:
 *             not published by the drainer until spool_origin_done()
 *   READY     waiting for the drainer
 *   SENDING   published by the drainer, awaiting the PUBACK
 *   DELETING  acknowledged (or expired, or refused): the DELETE is queued
 *   GONE      deleted and committed; popped from the head
 *
 * Entries are added in the store's done callbacks, which run in commit
 * order on the one writer thread, so the index is in id order without
 * sorting.  Deletes are batched: ids collect in `del` and one delete op at
 * a time carries all of them to the writer.  A delete that fails (disk
 * full) goes back into `del` and is retried on the next drainer tick; the
 * row stays counted until its delete is durable, so the numbers never claim
 * space that is not free yet.
 *
 * The drain thread wakes on appends, acks and every DRAIN_TICK_MS, checks
 * the link with mqtt_link_connected() and publishes up to `window` READY
 * rows.  Polling the link instead of chaining the link's on_state handler
 * keeps this module independent of who else registers one; the cost is at
 * most one tick of delay after a reconnect.
 *
 * Lock: sp->mu guards everything below it in struct ocb_spool except the
 * drainer's reader connection (drainer thread only).  Under sp->mu we may
 * call state_submit() (which takes the store's leaf mutex); never a publish
 * or a disk read.
 */
#include "ocb/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/util.h"

#define MOD "spool"

#define DRAIN_TICK_MS 250
#define DRAIN_WINDOW  64
#define DEL_BATCH_MAX 4096
#define INDEX_INITIAL 256

enum est {
    E_ORIGIN,
    E_READY,
    E_SENDING,
    E_DELETING,
    E_GONE,
};

struct entry {
    int64_t id;
    int64_t received_ms;
    uint32_t size;
    uint8_t state;
    bool maybe_sent;
};

struct del_batch {
    struct ocb_state_op op;
    struct ocb_spool *sp;
    size_t n;
    int64_t ids[];
};

struct app_op {
    struct ocb_state_op op;
    struct ocb_spool *sp;
    ocb_spool_appended done;
    void *ctx;
    unsigned flags;
    uint32_t size;
    int64_t id;
    /* copies of the message */
    const char *app, *topic, *notify_type, *request_id, *ocb_request_id, *content_type;
    const void *body;
    size_t len;
    bool utf8;
    int64_t received_ms;
    char data[];
};

struct drain_ctx {
    struct ocb_spool *sp;
    int64_t id;
};

struct ocb_spool {
    struct ocb_state *st;
    struct ocb_mqtt_link *link;
    uint64_t max_bytes;
    unsigned max_age_s;
    unsigned window;

    sqlite3 *rdb; /* drainer thread only (and spool_new before it starts) */
    sqlite3_stmt *rstmt;

    pthread_mutex_t mu;
    pthread_cond_t cv;  /* the drainer's wake-up */
    pthread_cond_t ocv; /* outstanding ops reached 0 */
    struct entry *e;
    size_t start, n, cap;
    size_t count;   /* rows committed and not yet deleted */
    uint64_t bytes; /* their sizes */
    unsigned pending_appends;
    uint64_t pending_bytes;
    int64_t *del;
    size_t ndel, delcap;
    bool del_inflight;
    unsigned inflight;    /* drainer publishes awaiting their ack */
    unsigned outstanding; /* store ops submitted and not done */
    struct ocb_state_op probe;
    bool probe_inflight;
    bool stop, started, stopped_submits;
    pthread_t thread;
};

static uint32_t msg_size(size_t body_len, size_t topic_len)
{
    uint64_t s = (uint64_t)body_len + topic_len;

    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

/* ---- the index (sp->mu held) */

static struct entry *find_locked(struct ocb_spool *sp, int64_t id)
{
    size_t lo = sp->start, hi = sp->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sp->e[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sp->n && sp->e[lo].id == id ? &sp->e[lo] : NULL;
}

static enum ocb_err push_entry_locked(struct ocb_spool *sp, const struct entry *en)
{
    if (sp->start > 0 && sp->start >= sp->n / 2) {
        /* Most of the array is behind the head: slide the live part down. */
        memmove(sp->e, sp->e + sp->start, (sp->n - sp->start) * sizeof(*sp->e));
        sp->n -= sp->start;
        sp->start = 0;
    }
    if (sp->n == sp->cap) {
        size_t cap = sp->cap > 0 ? sp->cap * 2 : INDEX_INITIAL;
        struct entry *ne = realloc(sp->e, cap * sizeof(*ne));
        if (ne == NULL)
            return OCB_ERR_NOMEM;
        sp->e = ne;
        sp->cap = cap;
    }
    sp->e[sp->n++] = *en;
    sp->count++;
    sp->bytes += en->size;
    return OCB_OK;
}

static void pop_gone_locked(struct ocb_spool *sp)
{
    while (sp->start < sp->n && sp->e[sp->start].state == E_GONE)
        sp->start++;
    if (sp->start == sp->n)
        sp->start = sp->n = 0;
}

static void gauges_locked(struct ocb_spool *sp)
{
    int64_t oldest = 0;

    for (size_t i = sp->start; i < sp->n; i++) {
        if (sp->e[i].state != E_GONE && sp->e[i].state != E_DELETING) {
            oldest = ocb_age_s(ocb_wall_ms(), sp->e[i].received_ms);
            break;
        }
    }
    metrics_gauge_set("ocb_spool_messages", "", (int64_t)sp->count);
    metrics_gauge_set("ocb_spool_bytes", "", (int64_t)sp->bytes);
    metrics_gauge_set("ocb_spool_oldest_age_seconds", "", oldest);
}

static void count_dropped(const char *reason, uint64_t n)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    metrics_counter_add("ocb_spool_dropped_total", labels, n);
}

/* ---- deletes */

static int del_fn(sqlite3 *db, void *ctx)
{
    struct del_batch *b = ctx;
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db, "DELETE FROM spool WHERE id = ?1", -1, &s, NULL);

    for (size_t i = 0; src == SQLITE_OK && i < b->n; i++) {
        sqlite3_bind_int64(s, 1, b->ids[i]);
        src = sqlite3_step(s);
        if (src == SQLITE_DONE)
            src = SQLITE_OK;
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return src;
}

static void kick_deletes_locked(struct ocb_spool *sp);

/* Queue id for the next delete batch (sp->mu held); false when out of memory. */
static bool del_push_locked(struct ocb_spool *sp, int64_t id)
{
    if (sp->ndel == sp->delcap) {
        size_t cap = sp->delcap > 0 ? sp->delcap * 2 : INDEX_INITIAL;
        int64_t *nd = realloc(sp->del, cap * sizeof(*nd));
        if (nd == NULL)
            return false;
        sp->del = nd;
        sp->delcap = cap;
    }
    sp->del[sp->ndel++] = id;
    return true;
}

static void del_done(void *ctx, enum ocb_err rc)
{
    struct del_batch *b = ctx;
    struct ocb_spool *sp = b->sp;

    pthread_mutex_lock(&sp->mu);
    if (rc == OCB_OK) {
        for (size_t i = 0; i < b->n; i++) {
            struct entry *en = find_locked(sp, b->ids[i]);
            if (en == NULL || en->state == E_GONE)
                continue;
            en->state = E_GONE;
            sp->count--;
            sp->bytes -= en->size;
        }
        pop_gone_locked(sp);
    } else {
        /* Back into the queue; the drainer's next tick retries.  An id that finds no room
         * (out of memory) makes its row READY again rather than DELETING for ever: it is
         * published once more and counted as a possible duplicate. */
        for (size_t i = 0; i < b->n; i++) {
            if (del_push_locked(sp, b->ids[i]))
                continue;
            struct entry *en = find_locked(sp, b->ids[i]);
            if (en != NULL && en->state == E_DELETING) {
                en->state = E_READY;
                en->maybe_sent = true;
            }
        }
    }
    sp->del_inflight = false;
    if (rc == OCB_OK)
        kick_deletes_locked(sp);
    gauges_locked(sp);
    sp->outstanding--;
    pthread_cond_broadcast(&sp->ocv);
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    free(b);
}

static void kick_deletes_locked(struct ocb_spool *sp)
{
    struct del_batch *b;
    size_t n;

    if (sp->del_inflight || sp->ndel == 0 || sp->stopped_submits)
        return;
    n = sp->ndel < DEL_BATCH_MAX ? sp->ndel : DEL_BATCH_MAX;
    b = malloc(sizeof(*b) + n * sizeof(b->ids[0]));
    if (b == NULL)
        return;
    b->sp = sp;
    b->n = n;
    memcpy(b->ids, sp->del, n * sizeof(b->ids[0]));
    b->op = (struct ocb_state_op){.fn = del_fn, .done = del_done, .ctx = b};
    if (state_submit(sp->st, &b->op) != OCB_OK) {
        free(b); /* the store is busy or stopping: the next tick retries */
        return;
    }
    memmove(sp->del, sp->del + n, (sp->ndel - n) * sizeof(sp->del[0]));
    sp->ndel -= n;
    sp->del_inflight = true;
    sp->outstanding++;
}

/* Mark en for deletion (sp->mu held).  The row stays counted until the delete commits. */
static void delete_locked(struct ocb_spool *sp, struct entry *en)
{
    if (!del_push_locked(sp, en->id))
        return; /* stays as it is; a later ack or tick tries again */
    en->state = E_DELETING;
}

/* ---- appends */

static int app_fn(sqlite3 *db, void *ctx)
{
    struct app_op *a = ctx;
    sqlite3_stmt *s = NULL;
    int src;

    src = sqlite3_prepare_v2(db,
                             "INSERT INTO spool(app, topic, body, notify_type, request_id, "
                             "ocb_request_id, content_type, utf8, received_ms) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                             -1, &s, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(s, 1, a->app, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, a->topic, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(s, 3, a->body, a->len, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, a->notify_type, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, a->request_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, a->ocb_request_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, a->content_type, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 8, a->utf8 ? 1 : 0);
        sqlite3_bind_int64(s, 9, a->received_ms);
        src = sqlite3_step(s);
        if (src == SQLITE_DONE) {
            src = SQLITE_OK;
            a->id = sqlite3_last_insert_rowid(db);
        }
    }
    sqlite3_finalize(s);
    return src;
}

static void app_done(void *ctx, enum ocb_err rc)
{
    struct app_op *a = ctx;
    struct ocb_spool *sp = a->sp;

    pthread_mutex_lock(&sp->mu);
    sp->pending_appends--;
    sp->pending_bytes -= a->size;
    if (rc == OCB_OK) {
        struct entry en = {.id = a->id,
                           .received_ms = a->received_ms,
                           .size = a->size,
                           .state = (a->flags & OCB_SPOOL_ORIGIN_PENDING) ? E_ORIGIN : E_READY,
                           .maybe_sent = (a->flags & OCB_SPOOL_MAYBE_SENT) != 0};
        if (push_entry_locked(sp, &en) != OCB_OK) {
            /* The row is durable but the index has no room: it is found again
             * at the next start.  Counting it is all we can do now. */
            log_error(MOD, NULL, "out of memory indexing spooled row %" PRId64, a->id);
        }
        metrics_counter_add("ocb_spool_written_total", "", 1);
        gauges_locked(sp);
        pthread_cond_signal(&sp->cv);
    }
    pthread_mutex_unlock(&sp->mu);

    if (a->done != NULL)
        a->done(a->ctx, rc, a->id);

    pthread_mutex_lock(&sp->mu);
    sp->outstanding--;
    pthread_cond_broadcast(&sp->ocv);
    pthread_mutex_unlock(&sp->mu);
    free(a);
}

static char *pack(char **p, const char *s)
{
    char *at = *p;
    size_t n;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    memcpy(at, s, n);
    *p += n;
    return at;
}

enum ocb_err spool_append(struct ocb_spool *sp, const struct ocb_spool_msg *msg, unsigned flags,
                          ocb_spool_appended done, void *ctx)
{
    const char *strs[] = {msg->app,        msg->topic,          msg->notify_type,
                          msg->request_id, msg->ocb_request_id, msg->content_type};
    size_t extra = msg->len;
    struct app_op *a;
    char *p;
    enum ocb_err rc;

    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        extra += strs[i] != NULL ? strlen(strs[i]) + 1 : 0;
    a = malloc(sizeof(*a) + extra);
    if (a == NULL)
        return OCB_ERR_NOMEM;
    memset(a, 0, sizeof(*a));
    p = a->data;
    memcpy(p, msg->body, msg->len);
    a->body = p;
    p += msg->len;
    a->len = msg->len;
    a->app = pack(&p, msg->app);
    a->topic = pack(&p, msg->topic);
    a->notify_type = pack(&p, msg->notify_type);
    a->request_id = pack(&p, msg->request_id);
    a->ocb_request_id = pack(&p, msg->ocb_request_id);
    a->content_type = pack(&p, msg->content_type);
    a->utf8 = msg->utf8;
    a->received_ms = msg->received_ms != 0 ? msg->received_ms : ocb_wall_ms();
    a->sp = sp;
    a->done = done;
    a->ctx = ctx;
    a->flags = flags;
    a->size = msg_size(msg->len, strlen(msg->topic));
    a->op = (struct ocb_state_op){.fn = app_fn, .done = app_done, .ctx = a};

    pthread_mutex_lock(&sp->mu);
    if (sp->stopped_submits) {
        rc = OCB_ERR_STOPPED;
    } else if (sp->bytes + sp->pending_bytes + a->size > sp->max_bytes) {
        rc = OCB_ERR_FULL;
    } else {
        rc = state_submit(sp->st, &a->op);
        if (rc == OCB_OK) {
            sp->pending_appends++;
            sp->pending_bytes += a->size;
            sp->outstanding++;
        }
    }
    pthread_mutex_unlock(&sp->mu);
    if (rc != OCB_OK) {
        if (rc == OCB_ERR_FULL)
            count_dropped("full", 1); /* refused, not lost: the caller answers 503 */
        free(a);
    }
    return rc;
}

void spool_origin_done(struct ocb_spool *sp, int64_t id, enum ocb_err rc)
{
    struct entry *en;

    pthread_mutex_lock(&sp->mu);
    en = find_locked(sp, id);
    if (en != NULL && en->state == E_ORIGIN) {
        if (rc == OCB_OK) {
            /* Delivered by its own publish: the spooled copy must not go out again. */
            delete_locked(sp, en);
            kick_deletes_locked(sp);
        } else {
            en->state = E_READY;
            en->maybe_sent = rc != OCB_ERR_PROTOCOL;
            pthread_cond_signal(&sp->cv);
        }
    }
    pthread_mutex_unlock(&sp->mu);
}

size_t spool_messages(struct ocb_spool *sp)
{
    size_t n;

    pthread_mutex_lock(&sp->mu);
    n = sp->count;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

bool spool_busy(struct ocb_spool *sp)
{
    bool busy;

    pthread_mutex_lock(&sp->mu);
    busy = sp->count > 0 || sp->pending_appends > 0;
    pthread_mutex_unlock(&sp->mu);
    return busy;
}

bool spool_accepting(struct ocb_spool *sp, char *why, size_t cap)
{
    bool full;

    pthread_mutex_lock(&sp->mu);
    /* "Full" for readiness: not even a small message fits. */
    full = sp->bytes + sp->pending_bytes + 1024 > sp->max_bytes;
    pthread_mutex_unlock(&sp->mu);
    if (full) {
        snprintf(why, cap, "spool full (spool.max_bytes)");
        return false;
    }
    if (state_failing(sp->st)) {
        snprintf(why, cap, "spool cannot write (disk full or I/O error)");
        return false;
    }
    why[0] = '\0';
    return true;
}

/* ---- recovering from a failed write
 *
 * After a batch failed (disk full), the store reports "failing" until a
 * commit succeeds, and /readyz says the spool cannot take pushes.  Pushes
 * would clear it, but an orchestrator that acts on /readyz may have stopped
 * sending any: so while the store is failing the drainer's tick writes a
 * small probe row, and the first one that commits clears the condition. */

static int probe_fn(sqlite3 *db, void *ctx)
{
    (void)ctx;
    return sqlite3_exec(db,
                        "INSERT INTO meta(key, value) VALUES('spool.write_probe', "
                        "strftime('%s', 'now')) ON CONFLICT(key) DO UPDATE SET value = "
                        "excluded.value",
                        NULL, NULL, NULL);
}

static void probe_done(void *ctx, enum ocb_err rc)
{
    struct ocb_spool *sp = ctx;

    (void)rc;
    pthread_mutex_lock(&sp->mu);
    sp->probe_inflight = false;
    sp->outstanding--;
    pthread_cond_broadcast(&sp->ocv);
    pthread_mutex_unlock(&sp->mu);
}

static void probe_locked(struct ocb_spool *sp)
{
    if (sp->probe_inflight || sp->stopped_submits || !state_failing(sp->st))
        return;
    sp->probe = (struct ocb_state_op){.fn = probe_fn, .done = probe_done, .ctx = sp};
    if (state_submit(sp->st, &sp->probe) == OCB_OK) {
        sp->probe_inflight = true;
        sp->outstanding++;
    }
}

/* ---- the drainer */

static void drain_done(void *ctx, enum ocb_err rc)
{
    struct drain_ctx *d = ctx;
    struct ocb_spool *sp = d->sp;
    struct entry *en;

    pthread_mutex_lock(&sp->mu);
    sp->inflight--;
    en = find_locked(sp, d->id);
    if (en != NULL && en->state == E_SENDING) {
        if (rc == OCB_OK) {
            metrics_counter_add("ocb_spool_drained_total", "", 1);
            delete_locked(sp, en);
        } else if (rc == OCB_ERR_PROTOCOL) {
            /* The broker refuses this message (e.g. an ACL): retrying cannot help. */
            log_error(MOD, NULL, "the broker refused spooled message %" PRId64 "; dropping it",
                      d->id);
            count_dropped("refused", 1);
            delete_locked(sp, en);
        } else {
            en->state = E_READY;
            en->maybe_sent = true;
        }
        kick_deletes_locked(sp);
    }
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    free(d);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

/* Publish row id (drainer thread).  OCB_ERR_NOT_FOUND when the row is gone. */
static enum ocb_err drain_one(struct ocb_spool *sp, int64_t id, bool maybe_sent)
{
    struct ocb_mqtt_pub pub;
    struct drain_ctx *d;
    enum ocb_err rc = OCB_ERR_IO;
    int src;

    if (sp->rstmt == NULL &&
        sqlite3_prepare_v2(sp->rdb,
                           "SELECT topic, body, notify_type, request_id, ocb_request_id, "
                           "content_type, utf8 FROM spool WHERE id = ?1",
                           -1, &sp->rstmt, NULL) != SQLITE_OK) {
        log_error(MOD, NULL, "cannot read the spool: %s", sqlite3_errmsg(sp->rdb));
        return OCB_ERR_IO;
    }
    sqlite3_bind_int64(sp->rstmt, 1, id);
    src = sqlite3_step(sp->rstmt);
    if (src == SQLITE_DONE) {
        rc = OCB_ERR_NOT_FOUND;
        goto out;
    }
    if (src != SQLITE_ROW) {
        log_error(MOD, NULL, "cannot read spooled row %" PRId64 ": %s", id,
                  sqlite3_errmsg(sp->rdb));
        goto out;
    }
    d = malloc(sizeof(*d));
    if (d == NULL) {
        rc = OCB_ERR_NOMEM;
        goto out;
    }
    d->sp = sp;
    d->id = id;
    memset(&pub, 0, sizeof(pub));
    pub.topic = col_text(sp->rstmt, 0);
    pub.payload = sqlite3_column_blob(sp->rstmt, 1);
    pub.len = (size_t)sqlite3_column_bytes(sp->rstmt, 1);
    if (pub.payload == NULL)
        pub.payload = "";
    pub.notify_type = col_text(sp->rstmt, 2);
    pub.request_id = col_text(sp->rstmt, 3);
    pub.ocb_request_id = col_text(sp->rstmt, 4);
    pub.content_type = col_text(sp->rstmt, 5);
    pub.payload_utf8 = sqlite3_column_int(sp->rstmt, 6) != 0;
    rc = mqtt_link_publish(sp->link, &pub, drain_done, d);
    if (rc != OCB_OK)
        free(d);
    else if (maybe_sent)
        metrics_counter_add("ocb_spool_duplicates_total", "", 1);
out:
    sqlite3_reset(sp->rstmt); /* ends the read transaction: checkpoints may proceed */
    return rc;
}

static void expire_locked(struct ocb_spool *sp)
{
    int64_t cutoff = ocb_wall_ms() - (int64_t)sp->max_age_s * 1000;
    uint64_t n = 0;

    for (size_t i = sp->start; i < sp->n; i++) {
        struct entry *en = &sp->e[i];
        if (en->received_ms >= cutoff)
            break;
        if (en->state == E_READY) {
            delete_locked(sp, en);
            n++;
        }
    }
    if (n > 0) {
        log_warn(MOD, NULL,
                 "dropped %" PRIu64 " spooled message(s) older than spool.max_age_s (%u s)", n,
                 sp->max_age_s);
        count_dropped("expired", n);
        kick_deletes_locked(sp);
    }
}

static void *drain_main(void *arg)
{
    struct ocb_spool *sp = arg;
    int64_t last_tick_s = -1;
    int64_t ids[DRAIN_WINDOW];
    bool sent[DRAIN_WINDOW];

    pthread_mutex_lock(&sp->mu);
    while (!sp->stop) {
        int64_t now_s = ocb_now_ms() / 1000;
        size_t k = 0;
        bool connected;

        if (now_s != last_tick_s) {
            last_tick_s = now_s;
            expire_locked(sp);
            kick_deletes_locked(sp);
            probe_locked(sp);
            gauges_locked(sp);
        }
        pthread_mutex_unlock(&sp->mu);
        connected = mqtt_link_connected(sp->link);
        pthread_mutex_lock(&sp->mu);
        for (size_t i = sp->start; connected && i < sp->n && sp->inflight < sp->window; i++) {
            struct entry *en = &sp->e[i];
            if (en->state != E_READY)
                continue;
            en->state = E_SENDING;
            ids[k] = en->id;
            sent[k] = en->maybe_sent;
            k++;
            sp->inflight++;
        }
        if (k == 0) {
            ocb_cond_wait_until(&sp->cv, &sp->mu, ocb_deadline_in(DRAIN_TICK_MS));
            continue;
        }
        pthread_mutex_unlock(&sp->mu);
        size_t done = 0;
        enum ocb_err rc = OCB_OK;
        for (; done < k; done++) {
            rc = drain_one(sp, ids[done], sent[done]);
            if (rc != OCB_OK)
                break;
        }
        pthread_mutex_lock(&sp->mu);
        /* What was not handed to the link goes back to READY (or leaves, when its row is gone). */
        for (size_t j = done; j < k; j++) {
            struct entry *en = find_locked(sp, ids[j]);
            sp->inflight--;
            if (en == NULL || en->state != E_SENDING)
                continue;
            if (j == done && rc == OCB_ERR_NOT_FOUND) {
                en->state = E_GONE;
                sp->count--;
                sp->bytes -= en->size;
                pop_gone_locked(sp);
            } else {
                en->state = E_READY;
            }
        }
        if (rc != OCB_OK && rc != OCB_ERR_NOT_FOUND) {
            /* Not connected, window full, or a read error: wait for a tick. */
            ocb_cond_wait_until(&sp->cv, &sp->mu, ocb_deadline_in(DRAIN_TICK_MS));
        }
    }
    pthread_mutex_unlock(&sp->mu);
    return NULL;
}

/* ---- lifecycle */

static enum ocb_err load(struct ocb_spool *sp)
{
    sqlite3_stmt *s = NULL;
    enum ocb_err rc = OCB_OK;
    int src;

    if (sqlite3_prepare_v2(sp->rdb,
                           "SELECT id, received_ms, length(CAST(body AS BLOB)) + "
                           "length(CAST(topic AS BLOB)) FROM spool ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK) {
        log_error(MOD, NULL, "cannot read the spool: %s", sqlite3_errmsg(sp->rdb));
        return OCB_ERR_IO;
    }
    pthread_mutex_lock(&sp->mu);
    while ((src = sqlite3_step(s)) == SQLITE_ROW && rc == OCB_OK) {
        int64_t size = sqlite3_column_int64(s, 2);
        struct entry en = {.id = sqlite3_column_int64(s, 0),
                           .received_ms = sqlite3_column_int64(s, 1),
                           .size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size,
                           .state = E_READY,
                           /* Spooled by an earlier run: whether its publish then got
                            * through is unknown (no duplicate is counted for it). */
                           .maybe_sent = false};
        rc = push_entry_locked(sp, &en);
    }
    if (rc == OCB_OK && src != SQLITE_DONE) {
        log_error(MOD, NULL, "cannot read the spool: %s", sqlite3_errmsg(sp->rdb));
        rc = OCB_ERR_IO;
    }
    gauges_locked(sp);
    if (sp->count > 0)
        log_info(MOD, NULL, "%zu spooled message(s), %" PRIu64 " bytes, to deliver", sp->count,
                 sp->bytes);
    pthread_mutex_unlock(&sp->mu);
    sqlite3_finalize(s);
    return rc;
}

enum ocb_err spool_new(struct ocb_state *st, struct ocb_mqtt_link *link,
                       const struct ocb_config *cfg, struct ocb_spool **out)
{
    struct ocb_spool *sp;
    enum ocb_err rc;
    char dir[4096];
    const char *path = state_path(st);
    const char *slash = strrchr(path, '/');

    *out = NULL;
    metrics_describe("ocb_spool_messages", OCB_METRIC_GAUGE, "Pushes held in the spool");
    metrics_describe("ocb_spool_bytes", OCB_METRIC_GAUGE,
                     "Bytes held in the spool (bodies and topics)");
    metrics_describe("ocb_spool_oldest_age_seconds", OCB_METRIC_GAUGE,
                     "Age of the oldest spooled push");
    metrics_describe("ocb_spool_written_total", OCB_METRIC_COUNTER,
                     "Pushes written to the spool (durable)");
    metrics_describe("ocb_spool_drained_total", OCB_METRIC_COUNTER,
                     "Spooled pushes published and acknowledged");
    metrics_describe("ocb_spool_dropped_total", OCB_METRIC_COUNTER,
                     "Pushes not kept, by reason (full: refused with 503; expired; refused by "
                     "the broker)");
    metrics_describe("ocb_spool_duplicates_total", OCB_METRIC_COUNTER,
                     "Spooled pushes published again after a publish that may have arrived");
    metrics_counter_add("ocb_spool_written_total", "", 0);
    metrics_counter_add("ocb_spool_drained_total", "", 0);
    metrics_counter_add("ocb_spool_duplicates_total", "", 0);

    sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return OCB_ERR_NOMEM;
    sp->st = st;
    sp->link = link;
    sp->max_bytes = cfg->spool.max_bytes;
    sp->max_age_s = cfg->spool.max_age_s;
    sp->window = cfg->mqtt.max_inflight / 2;
    if (sp->window > DRAIN_WINDOW)
        sp->window = DRAIN_WINDOW;
    if (sp->window == 0)
        sp->window = 1;
    pthread_mutex_init(&sp->mu, NULL);
    ocb_cond_init(&sp->cv);
    pthread_cond_init(&sp->ocv, NULL);

    snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path) : 1,
             slash != NULL ? path : ".");
    rc = state_reader_open(dir, &sp->rdb);
    if (rc == OCB_OK)
        rc = load(sp);
    if (rc != OCB_OK) {
        spool_free(sp);
        return rc;
    }
    *out = sp;
    return OCB_OK;
}

enum ocb_err spool_start(struct ocb_spool *sp)
{
    if (pthread_create(&sp->thread, NULL, drain_main, sp) != 0)
        return OCB_ERR_IO;
    sp->started = true;
    return OCB_OK;
}

void spool_stop(struct ocb_spool *sp)
{
    if (sp == NULL || !sp->started)
        return;
    pthread_mutex_lock(&sp->mu);
    sp->stop = true;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->thread, NULL);
    sp->started = false;
}

void spool_free(struct ocb_spool *sp)
{
    if (sp == NULL)
        return;
    spool_stop(sp);
    pthread_mutex_lock(&sp->mu);
    /* Deletes still queued get one last chance; then nothing more is submitted. */
    kick_deletes_locked(sp);
    while (sp->outstanding > 0)
        pthread_cond_wait(&sp->ocv, &sp->mu);
    sp->stopped_submits = true;
    pthread_mutex_unlock(&sp->mu);
    sqlite3_finalize(sp->rstmt);
    sqlite3_close(sp->rdb);
    pthread_cond_destroy(&sp->ocv);
    pthread_cond_destroy(&sp->cv);
    pthread_mutex_destroy(&sp->mu);
    free(sp->e);
    free(sp->del);
    free(sp);
}

enum ocb_err spool_report(sqlite3 *db, int64_t now, FILE *out)
{
    sqlite3_stmt *s = NULL;
    enum ocb_err rc = OCB_OK;
    int64_t total_n = 0, total_b = 0, oldest = 0;
    int src;

    if (sqlite3_prepare_v2(db,
                           "SELECT app, count(*), sum(length(CAST(body AS BLOB)) + "
                           "length(CAST(topic AS BLOB))), min(received_ms) FROM spool "
                           "GROUP BY app ORDER BY app",
                           -1, &s, NULL) != SQLITE_OK)
        return OCB_ERR_IO;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(s, 1), b = sqlite3_column_int64(s, 2);
        int64_t o = sqlite3_column_int64(s, 3);
        total_n += n;
        total_b += b;
        if (oldest == 0 || o < oldest)
            oldest = o;
    }
    if (src != SQLITE_DONE)
        rc = OCB_ERR_IO;
    fprintf(out, "spool: %" PRId64 " message(s), %" PRId64 " bytes", total_n, total_b);
    if (total_n > 0)
        fprintf(out, ", oldest %" PRId64 " s", ocb_age_s(now, oldest));
    fprintf(out, "\n");
    sqlite3_reset(s);
    while (rc == OCB_OK && sqlite3_step(s) == SQLITE_ROW) {
        fprintf(out, "  app %s: %" PRId64 " message(s), %" PRId64 " bytes, oldest %" PRId64 " s\n",
                col_text(s, 0), (int64_t)sqlite3_column_int64(s, 1),
                (int64_t)sqlite3_column_int64(s, 2), ocb_age_s(now, sqlite3_column_int64(s, 3)));
    }
    sqlite3_finalize(s);
    return rc;
}
