/*
 * http_rx.c: the push listener.
 *
 * One `struct req` per HTTP request, created on MHD's first call for it.
 * Cheap checks run before the body is read (allow_from, method, path, app,
 * token, Content-Length), so a rejected request costs no buffering; the body
 * is then collected under http.max_body_bytes, routed (route.c) and handed
 * to mqtt_link_publish().
 *
 * While the publish is in flight the MHD connection is suspended.  Two
 * parties may finish it: the link's done callback (paho's thread) and the
 * timeout timer (our one timer thread).  Whoever resolves the request first
 * records the outcome and resumes the connection; MHD then calls the access
 * handler again, on its own thread, and that call sends the answer.  The
 * second party finds the request resolved and does nothing.  The request is
 * reference-counted (MHD, the pending publish, the timer list each hold one)
 * so a late ack after a timeout touches valid memory.
 *
 * All publishes share one timeout, so the timer list is a FIFO whose head
 * always has the earliest deadline: insertion and removal are O(1) and the
 * timer thread sleeps exactly until the next deadline.
 *
 * With spool.mode outage or always, a push may instead (or also) be written
 * to the spool (spool.h): the spool's append callback, on the state store's
 * writer thread, is then a third party that resolves the request -- 200
 * once the row is durable.  The section "the spool" below tells which path
 * leads there and how a late PUBACK is matched to its spooled row.
 *
 * Re-pushes (push.dedup_window_s).  A body this process accepted within the
 * window is answered 200 at once (dedup.c).  With coordination the window is
 * also shared: a body the local table does not know is looked up in Redis on
 * the coord thread (coord_dedup_seen()) while the connection is suspended,
 * with a timer entry like a publish's, so coord's answer or the deadline
 * resumes it -- an MHD thread never waits on Redis, and an unreachable or
 * slow Redis leaves the local window to decide (a duplicate at worst, never
 * a lost message).  A push is written to the shared window only once it was
 * answered 200 (coord_dedup_record()), so a 503 leaves no mark that would
 * swallow the platform's re-push.
 *
 * Configurations.  rx->cfg is the configuration new requests start under;
 * the receiver holds a reference to it, and http_rx_reload() swaps it.  Each
 * request takes a reference of its own in req_new() and gives it back when
 * it is freed, so it runs under one configuration from its first byte to its
 * answer (its app, push token, body cap and Retry-After), and a retired
 * configuration is freed by whichever thread drops its last request -- MHD's,
 * paho's, the timer's or the store writer's.  Reading the pointer and taking
 * the reference happen together under cfg_mu: otherwise a reload could drop
 * the receiver's reference, the last one, in between.  It is a short lock,
 * taken once per request.
 *
 * Lock order: req->mu before rx->tmu, and req->mu before the spool's and the
 * store's mutexes (spool_append() is called under req->mu; the spool calls
 * back with none of its locks held).  The timer thread pops under tmu and
 * resolves after releasing it; no MHD or paho call is made under tmu.
 * cfg_mu is a leaf: nothing else is taken under it.
 */
#include "ocb/http_rx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "ocb/coord.h"
#include "ocb/dedup.h"
#include "ocb/grammar.h"
#include "ocb/list.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/route.h"
#include "ocb/spool.h"
#include "ocb/util.h"

#define MOD "http"

#define APP_ID_MAX       128
#define TOKEN_MAX        256
#define REASON_MAX       160
#define BODY_INITIAL_CAP 16384
#define PEM_MAX          (1u << 20)
#define CONNECTION_LIMIT 4096
#define IDLE_TIMEOUT_S   30
/* Past max_body_bytes we keep reading (to be able to answer 413) for at most
 * this much more before cutting the connection. */
#define DISCARD_MAX        (1u << 20)
#define STOP_FORCE_WAIT_MS 2000

enum phase {
    PH_NEW = 0,
    PH_BODY,  /* collecting the upload */
    PH_CHECK, /* the shared re-push check in flight (suspended unless already answered) */
    PH_WAIT,  /* publish in flight (suspended unless already resolved) */
    PH_DONE,  /* an answer is queued */
};

enum outcome {
    OUT_NONE = 0,
    OUT_ACKED,
    OUT_FAILED,       /* connection dropped / broker refused */
    OUT_TIMEOUT,      /* no ack within publish_timeout_ms */
    OUT_STOPPED,      /* shutting down */
    OUT_SPOOLED,      /* written to the spool, durable */
    OUT_SPOOL_FAILED, /* could not be spooled (full, disk error) */
};

/* The shared re-push check (coordination; guarded by req->mu). */
enum check_state {
    CK_NONE = 0,
    CK_PENDING,  /* coord_dedup_seen() queued, no answer yet */
    CK_NEW,      /* no replica accepted this body within the window */
    CK_DUP,      /* another replica (or this one) accepted it: a re-push */
    CK_FALLBACK, /* Redis could not say (down, error, no answer in time): the local window decided
                  */
};

/* What a timer entry waits for (guarded by rx->tmu). */
enum timer_kind {
    TK_PUBLISH = 0, /* the broker's ack */
    TK_CHECK,       /* coord's answer to the shared re-push check */
};

/* Where a request stands with the spool (guarded by req->mu). */
enum spool_phase {
    SP_NONE = 0,
    SP_WRITING, /* spool_append() submitted, not yet durable */
    SP_SPOOLED, /* durable as row spool_id */
};

struct ready_hook {
    const char *name;
    ocb_http_ready_fn fn;
    void *ctx;
    bool note; /* http_rx_add_ready_note: says something, does not make /readyz fail */
};

struct ocb_http_rx {
    /* A reference, swapped by http_rx_reload(); each request takes its own
     * reference to it in req_new() and keeps that configuration (and its
     * apps) for its whole life.  Under cfg_mu (see the head of the file). */
    pthread_mutex_t cfg_mu;
    const struct ocb_config *cfg;
    struct ocb_mqtt_link *link;
    struct MHD_Daemon *daemon;
    uint16_t port;
    char *tls_key, *tls_cert, *tls_ca; /* PEM text, kept for the daemon's lifetime */

    struct ready_hook hooks[OCB_HTTP_MAX_READY_HOOKS];
    size_t n_hooks;
    ocb_http_command_status_fn on_status;
    void *on_status_ctx;
    struct ocb_spool *spool; /* NULL: spool.mode off */
    struct ocb_dedup *dedup; /* NULL: push.dedup_window_s 0 */
    struct ocb_coord *coord; /* NULL: no coordination.redis_url (the window is this process's) */
    int64_t dedup_window_ms; /* push.dedup_window_s at start */

    atomic_bool stopping;
    atomic_int active; /* requests between MHD's first call and completion */
    atomic_uint_fast64_t seq;
    uint32_t id_salt;
    bool stopped;

    /* The timer: FIFO of requests waiting for an ack, under tmu. */
    pthread_mutex_t tmu;
    pthread_cond_t tcv;
    struct ocb_list timers; /* struct req by tlink, oldest deadline first */
    bool tidle;             /* the timer waits with no deadline: a new entry must wake it */
    bool tstop;
    pthread_t timer;
    bool timer_started;
};

struct req {
    atomic_int refs;
    pthread_mutex_t mu;
    struct ocb_http_rx *rx;
    const struct ocb_config *cfg; /* the configuration this request runs under: a reference */
    struct MHD_Connection *conn;
    char id[17];
    enum phase phase;
    bool is_push;

    const struct ocb_app *app;
    char *body;
    size_t len, cap;
    size_t discarded;
    bool too_large;
    struct ocb_route route;
    char digest[OCB_DEDUP_DIGEST_HEX]; /* the shared window's key; "" when not asked */

    /* Guarded by mu. */
    bool suspended;
    enum outcome outcome;
    enum ocb_err publish_rc;
    enum check_state check;
    enum spool_phase sp_phase;
    int64_t spool_id;
    bool orig_done;       /* the direct publish reported back while SP_WRITING */
    enum ocb_err orig_rc; /* ... with this */
    int64_t received_ms;

    /* Guarded by rx->tmu. */
    struct ocb_list tlink; /* in rx->timers, or pointing at itself */
    enum timer_kind tkind;
    int64_t deadline; /* ocb_now_ms() clock */
};

/* ---- configurations */

/* A reference to the configuration new requests start under.  Any thread. */
static const struct ocb_config *cfg_acquire(struct ocb_http_rx *rx)
{
    const struct ocb_config *cfg;

    pthread_mutex_lock(&rx->cfg_mu);
    cfg = config_ref(rx->cfg);
    pthread_mutex_unlock(&rx->cfg_mu);
    return cfg;
}

/* ---- requests and their references */

static void req_unref(struct req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    route_cleanup(&r->route);
    free(r->body);
    pthread_mutex_destroy(&r->mu);
    /* Possibly the last reference to a retired configuration: r->app points into it. */
    config_unref(r->cfg);
    free(r);
}

static struct req *req_new(struct ocb_http_rx *rx, struct MHD_Connection *conn)
{
    struct req *r = calloc(1, sizeof(*r));
    uint64_t n;

    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1); /* MHD's, released in on_completed() */
    pthread_mutex_init(&r->mu, NULL);
    ocb_list_init(&r->tlink);
    r->rx = rx;
    r->cfg = cfg_acquire(rx);
    r->conn = conn;
    /* 16 hex chars: a per-process random salt and a counter, so ids are
     * unique within a run and unlikely to repeat across restarts. */
    n = atomic_fetch_add(&rx->seq, 1);
    snprintf(r->id, sizeof(r->id), "%08" PRIx32 "%08" PRIx32, rx->id_salt ^ (uint32_t)(n >> 32),
             (uint32_t)n);
    return r;
}

/* ---- answers */

static void count_push(const struct req *r, const char *outcome)
{
    char labels[OCB_METRICS_LABELS_MAX];

    metrics_labels(labels, sizeof(labels), "notify_type",
                   r->route.notify_type != NULL ? r->route.notify_type : "unknown", "outcome",
                   outcome, NULL);
    metrics_counter_add("ocb_pushes_total", labels, 1);
}

/*
 * Queue an answer.  body is sent as is (with "\n" appended unless it is the
 * 200 "ok" of a push, which stays exactly "ok" like Huawei's own receivers).
 */
static enum MHD_Result answer(struct req *r, unsigned status, const char *body,
                              const char *content_type, const char *allow)
{
    struct ocb_http_rx *rx = r->rx;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char retry[16];

    resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type != NULL ? content_type : "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
        snprintf(retry, sizeof(retry), "%u", r->cfg->http.retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
    if (allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load(&rx->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->phase = PH_DONE;
    return ret;
}

static enum MHD_Result answer_text(struct req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result answer_text(struct req *r, unsigned status, const char *fmt, ...)
{
    char buf[REASON_MAX + 64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
    else if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    if (n >= 0) {
        buf[n] = '\n';
        buf[n + 1] = '\0';
    }
    return answer(r, status, buf, NULL, NULL);
}

/* A request refused before publishing: logged once, counted, answered. */
static enum MHD_Result reject(struct req *r, unsigned status, const char *metric_reason,
                              const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result reject(struct req *r, unsigned status, const char *metric_reason,
                              const char *allow, const char *fmt, ...)
{
    char reason[REASON_MAX], labels[OCB_METRICS_LABELS_MAX], body[REASON_MAX + 2];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    metrics_labels(labels, sizeof(labels), "reason", metric_reason, NULL);
    metrics_counter_add("ocb_push_rejections_total", labels, 1);
    if (r->is_push)
        count_push(r, "rejected");
    log_warn(MOD, r->id, "%u %s%s%s", status, reason, r->app != NULL ? " app=" : "",
             r->app != NULL ? r->app->app_id : "");
    snprintf(body, sizeof(body), "%s\n", reason);
    return answer(r, status, body, NULL, allow);
}

static enum MHD_Result unavailable(struct req *r, const char *outcome, const char *why)
{
    count_push(r, outcome);
    log_warn(MOD, r->id, "503 %s app=%s topic=%s", why, r->app != NULL ? r->app->app_id : "-",
             r->route.topic != NULL ? r->route.topic : "-");
    return answer_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", why);
}

/* ---- the timeout timer */

static void timer_add_locked(struct ocb_http_rx *rx, struct req *r, enum timer_kind kind)
{
    r->deadline = ocb_deadline_in(r->cfg->mqtt.publish_timeout_ms);
    atomic_fetch_add(&r->refs, 1);
    r->tkind = kind;
    ocb_list_push_back(&rx->timers, &r->tlink);
    /* Every entry has the same timeout (mqtt.publish_timeout_ms is kept
     * across reloads; a shared re-push check waits as long as a publish), so
     * the list is in deadline order
     * and a new entry's deadline is never earlier than the one the timer
     * already sleeps towards: it finds the new head when it wakes.  Only a
     * timer waiting with no deadline at all needs a signal; signalling it
     * for every push cost a context switch per request (bench/push). */
    if (rx->tidle)
        pthread_cond_signal(&rx->tcv);
}

/* Unless what r waits for (TK_CHECK: coord's answer to the re-push check; TK_PUBLISH: the
 * broker's ack) has already come, suspend its connection and put it on the timer list, both
 * under r->mu so that the answer's thread sees r->suspended.  Returns true when it was
 * suspended (resuming it makes MHD call again); false: the caller answers now. */
static bool suspend_waiting(struct req *r, enum timer_kind kind)
{
    struct ocb_http_rx *rx = r->rx;
    bool waiting;

    pthread_mutex_lock(&r->mu);
    waiting = kind == TK_CHECK ? r->check == CK_PENDING : r->outcome == OUT_NONE;
    if (waiting) {
        MHD_suspend_connection(r->conn);
        r->suspended = true;
        pthread_mutex_lock(&rx->tmu);
        timer_add_locked(rx, r, kind);
        pthread_mutex_unlock(&rx->tmu);
    }
    pthread_mutex_unlock(&r->mu);
    return waiting;
}

/* Unlink r from the timer list (tmu held).  Returns true when the list's reference passed to
 * the caller. */
static bool timer_unlink_locked(struct ocb_http_rx *rx, struct req *r)
{
    (void)rx;
    if (!ocb_list_linked(&r->tlink))
        return false;
    ocb_list_remove(&r->tlink);
    return true;
}

/* The entry with the earliest deadline, or NULL (tmu held). */
static struct req *timer_head_locked(struct ocb_http_rx *rx)
{
    struct ocb_list *l = ocb_list_front(&rx->timers);

    return l != NULL ? ocb_list_entry(l, struct req, tlink) : NULL;
}

/* Record the outcome once and wake the suspended connection (r->mu held). */
static void resolve_locked(struct req *r, enum outcome o, enum ocb_err rc)
{
    if (r->outcome == OUT_NONE) {
        r->outcome = o;
        r->publish_rc = rc;
        if (r->suspended) {
            r->suspended = false;
            MHD_resume_connection(r->conn);
        }
    }
}

static void resolve(struct req *r, enum outcome o, enum ocb_err rc)
{
    pthread_mutex_lock(&r->mu);
    resolve_locked(r, o, rc);
    pthread_mutex_unlock(&r->mu);
}

/* ---- the spool (spool.mode outage and always)
 *
 * A request reaches the spool from one of four places: the MHD thread
 * (spool.mode always; the spool already holds messages, so that this one
 * does not overtake them; or the link refused the publish outright), the
 * link's done callback (the publish failed), or the timer (no ack within
 * mqtt.publish_timeout_ms, the publish still pending).  Whichever it is sets
 * sp_phase under r->mu, so a request is spooled at most once; the spool's
 * append callback (the store's writer thread) resolves it: 200 once durable,
 * 503 when the write failed.
 *
 * In the timer's case the direct publish is still in flight ("origin
 * pending"): its ack may arrive while the row is being written (orig_done
 * records it and the append callback reports it) or after (the done
 * callback reports it), and spool_origin_done() then deletes the row so the
 * message is not published twice; a failure hands the row to the drainer.
 * An ack that arrives before the write is durable answers 200 at once: the
 * broker has the message.
 */

static bool spooling(const struct req *r)
{
    return r->rx->spool != NULL && r->cfg->spool.mode != OCB_SPOOL_OFF &&
           !atomic_load(&r->rx->stopping);
}

static void on_spooled(void *ctx, enum ocb_err rc, int64_t id)
{
    struct req *r = ctx;
    int64_t origin_id = 0;
    enum ocb_err origin_rc = OCB_OK;

    pthread_mutex_lock(&r->mu);
    if (rc == OCB_OK) {
        r->sp_phase = SP_SPOOLED;
        r->spool_id = id;
        if (r->orig_done) {
            origin_id = id;
            origin_rc = r->orig_rc;
        }
        resolve_locked(r, OUT_SPOOLED, OCB_OK);
    } else {
        r->sp_phase = SP_NONE;
        resolve_locked(r, OUT_SPOOL_FAILED, rc);
    }
    pthread_mutex_unlock(&r->mu);
    if (origin_id != 0)
        spool_origin_done(r->rx->spool, origin_id, origin_rc);
    req_unref(r); /* the append's */
}

/* Start writing r to the spool; r->mu held and r->sp_phase SP_NONE.  On OCB_OK
 * on_spooled() will run; otherwise nothing changed. */
static enum ocb_err spool_request_locked(struct req *r, unsigned flags)
{
    struct ocb_spool_msg m = {
        .app = r->app->app_id,
        .topic = r->route.topic,
        .body = r->body != NULL ? r->body : "",
        .len = r->len,
        .notify_type = r->route.notify_type,
        .request_id = r->route.request_id,
        .ocb_request_id = r->id,
        .content_type = "application/json",
        .utf8 = r->route.payload_utf8,
        .received_ms = r->received_ms,
    };
    enum ocb_err rc;

    atomic_fetch_add(&r->refs, 1); /* the append's, released in on_spooled() */
    r->sp_phase = SP_WRITING;
    rc = spool_append(r->rx->spool, &m, flags, on_spooled, r);
    if (rc != OCB_OK) {
        r->sp_phase = SP_NONE;
        atomic_fetch_sub(&r->refs, 1);
    }
    return rc;
}

/* The shared check's answer is in (r->mu held, r->check CK_PENDING): wake the connection. */
static void check_resolve_locked(struct req *r, enum check_state st)
{
    r->check = st;
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

/* A deadline passed (timer thread): the publish's, or the shared check's. */
static void on_deadline(struct req *r, enum timer_kind kind)
{
    pthread_mutex_lock(&r->mu);
    if (kind == TK_CHECK) {
        /* Redis did not answer in time: the local window decides.  An entry
         * popped just as the answer came finds the check no longer pending. */
        if (r->check == CK_PENDING && r->outcome == OUT_NONE)
            check_resolve_locked(r, CK_FALLBACK);
    } else if (r->outcome == OUT_NONE && r->sp_phase == SP_NONE) {
        if (!spooling(r) || spool_request_locked(r, OCB_SPOOL_ORIGIN_PENDING) != OCB_OK)
            resolve_locked(r, OUT_TIMEOUT, OCB_ERR_TIMEOUT);
    }
    pthread_mutex_unlock(&r->mu);
}

static void *timer_main(void *arg)
{
    struct ocb_http_rx *rx = arg;

    pthread_mutex_lock(&rx->tmu);
    while (!rx->tstop) {
        struct req *r = timer_head_locked(rx);

        if (r == NULL) {
            rx->tidle = true;
            pthread_cond_wait(&rx->tcv, &rx->tmu);
            rx->tidle = false;
            continue;
        }
        if (!ocb_deadline_passed(r->deadline)) {
            /* Whatever woke us, the head may have changed while tmu was released. */
            ocb_cond_wait_until(&rx->tcv, &rx->tmu, r->deadline);
            continue;
        }
        enum timer_kind kind = r->tkind;

        timer_unlink_locked(rx, r);
        pthread_mutex_unlock(&rx->tmu);
        on_deadline(r, kind);
        req_unref(r);
        pthread_mutex_lock(&rx->tmu);
    }
    pthread_mutex_unlock(&rx->tmu);
    return NULL;
}

/* The link's done callback (paho's thread, or the thread stopping the link). */
static void on_published(void *ctx, enum ocb_err rc)
{
    struct req *r = ctx;
    struct ocb_http_rx *rx = r->rx;
    bool had_timer_ref;
    int64_t origin_id = 0;

    pthread_mutex_lock(&r->mu);
    switch (r->sp_phase) {
    case SP_NONE:
        /* A failed publish is spooled (outage mode) unless the broker refused
         * the message itself: sending it again would be refused again. */
        if (rc != OCB_OK && rc != OCB_ERR_PROTOCOL && r->outcome == OUT_NONE && spooling(r) &&
            spool_request_locked(r, OCB_SPOOL_MAYBE_SENT) == OCB_OK)
            break;
        resolve_locked(r, rc == OCB_OK ? OUT_ACKED : OUT_FAILED, rc);
        break;
    case SP_WRITING:
        r->orig_done = true;
        r->orig_rc = rc;
        if (rc == OCB_OK)
            resolve_locked(r, OUT_ACKED, rc);
        break;
    case SP_SPOOLED:
        origin_id = r->spool_id;
        break;
    }
    pthread_mutex_unlock(&r->mu);
    if (origin_id != 0)
        spool_origin_done(rx->spool, origin_id, rc);
    pthread_mutex_lock(&rx->tmu);
    had_timer_ref = timer_unlink_locked(rx, r);
    pthread_mutex_unlock(&rx->tmu);
    if (had_timer_ref)
        req_unref(r);
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): a reference count the analyzer cannot follow. */
    req_unref(r); /* the publish's reference */
}

/* ---- request handling */

static void add_reason(char *why, size_t cap, size_t *n, const char *name)
{
    int w;

    if (*n >= cap)
        return;
    w = snprintf(why + *n, cap - *n, "%s%s", *n > 0 ? ", " : "", name);
    *n = w < 0 ? cap : *n + (size_t)w;
}

/* True when ready; otherwise why lists every failing condition ("a, b"). */
static bool ready(struct ocb_http_rx *rx, char *why, size_t cap)
{
    size_t n = 0;

    why[0] = '\0';
    if (atomic_load(&rx->stopping))
        add_reason(why, cap, &n, "stopping");
    if (!mqtt_link_connected(rx->link)) {
        const struct ocb_config *cfg = cfg_acquire(rx);
        char sw[96];

        /* While the spool takes pushes, a broker outage is no reason to have
         * the platform mark our URL as failing: that is the spool's point. */
        if (rx->spool == NULL || cfg->spool.mode == OCB_SPOOL_OFF) {
            add_reason(why, cap, &n, "broker not connected");
        } else if (!spool_accepting(rx->spool, sw, sizeof(sw))) {
            add_reason(why, cap, &n, "broker not connected");
            add_reason(why, cap, &n, sw);
        }
        config_unref(cfg);
    } else {
        char subs[256];

        /* A refused command filter leaves the bridge unable to receive commands. */
        if (!mqtt_link_subscriptions_ok(rx->link, subs, sizeof(subs)))
            add_reason(why, cap, &n, subs);
    }
    for (size_t i = 0; i < rx->n_hooks; i++) {
        if (!rx->hooks[i].note && !rx->hooks[i].fn(rx->hooks[i].ctx))
            add_reason(why, cap, &n, rx->hooks[i].name);
    }
    return n == 0;
}

/* "; <note>" for every note hook whose condition holds ("" when none). */
static void ready_notes(struct ocb_http_rx *rx, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < rx->n_hooks; i++) {
        if (!rx->hooks[i].note || !rx->hooks[i].fn(rx->hooks[i].ctx))
            continue;
        int w = snprintf(out + n, cap - n, "; %s", rx->hooks[i].name);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
}

static enum MHD_Result serve_metrics(struct req *r)
{
    char *text = NULL;
    size_t len = 0;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (metrics_render(&text, &len) != OCB_OK)
        return answer_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    ret = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->phase = PH_DONE;
    return ret;
}

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* With http.tls_client_ca set, GnuTLS only *requests* a client certificate;
 * requiring one (and checking it against the CA) is ours to do. */
static bool client_cert_ok(struct req *r)
{
    const union MHD_ConnectionInfo *ci;
    unsigned status = 0;

    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return false;
    if (gnutls_certificate_verify_peers2((gnutls_session_t)ci->tls_session, &status) < 0)
        return false;
    return status == 0;
}

static bool client_allowed(struct req *r)
{
    const struct ocb_config *cfg = r->cfg;
    const union MHD_ConnectionInfo *ci;

    if (cfg->http.n_allow_from == 0)
        return true;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return false;
    for (size_t i = 0; i < cfg->http.n_allow_from; i++) {
        if (grammar_cidr_match(&cfg->http.allow_from[i], ci->client_addr))
            return true;
    }
    return false;
}

/* MHD's first call for a request: everything decidable from the headers. */
static enum MHD_Result begin(struct req *r, const char *url, const char *method)
{
    struct ocb_http_rx *rx = r->rx;
    const struct ocb_config *cfg = r->cfg;
    char app_id[APP_ID_MAX], token[TOKEN_MAX];
    char why[REASON_MAX];
    const char *cl;

    /* Liveness tells nothing and must work for probes that hold no client
     * certificate (an orchestrator's HTTPS check); everything else needs one. */
    if (strcmp(url, "/healthz") == 0) {
        if (!is_get(method))
            return reject(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "GET, HEAD",
                          "method %s not allowed on /healthz", method);
        return answer(r, MHD_HTTP_OK, "ok\n", NULL, NULL);
    }
    if (cfg->http.tls_client_ca[0] != '\0' && !client_cert_ok(r))
        return reject(r, MHD_HTTP_FORBIDDEN, "not_allowed", NULL,
                      "a client certificate signed by the configured CA is required");

    if (strcmp(url, "/readyz") == 0) {
        if (!is_get(method))
            return reject(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "GET, HEAD",
                          "method %s not allowed on /readyz", method);
        char notes[64];

        ready_notes(rx, notes, sizeof(notes));
        if (ready(rx, why, sizeof(why))) {
            size_t held = rx->spool != NULL ? spool_messages(rx->spool) : 0;

            if (held > 0)
                return answer_text(r, MHD_HTTP_OK, "ready (spooling: %zu messages)%s", held, notes);
            if (!mqtt_link_connected(rx->link))
                return answer_text(r, MHD_HTTP_OK, "ready (broker not connected: spooling)%s",
                                   notes);
            return notes[0] ? answer_text(r, MHD_HTTP_OK, "ready%s", notes)
                            : answer(r, MHD_HTTP_OK, "ready\n", NULL, NULL);
        }
        return answer_text(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s%s", why, notes);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!is_get(method))
            return reject(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "GET, HEAD",
                          "method %s not allowed on /metrics", method);
        return serve_metrics(r);
    }
    if (strncmp(url, "/push/", 6) != 0 && strcmp(url, "/push") != 0)
        return reject(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such path");

    /* A push.  allow_from guards only this path: probes and Prometheus
     * usually come from elsewhere than the platform. */
    r->is_push = true;
    if (!client_allowed(r))
        return reject(r, MHD_HTTP_FORBIDDEN, "not_allowed", NULL,
                      "client address not in http.allow_from");
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return reject(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method", "POST",
                      "method %s not allowed on /push", method);
    if (!http_rx_parse_push_path(url, app_id, sizeof(app_id), token, sizeof(token)))
        return reject(r, MHD_HTTP_NOT_FOUND, "not_found", NULL,
                      "expected /push/<appId> or /push/<appId>/<pushToken>");
    r->app = config_find_app(cfg, app_id);
    if (r->app == NULL)
        return reject(r, MHD_HTTP_NOT_FOUND, "unknown_app", NULL, "unknown app");
    if (!http_rx_token_ok(r->app->push_token, token))
        return reject(r, MHD_HTTP_UNAUTHORIZED, "bad_token", NULL,
                      token[0] == '\0' ? "push token required" : "wrong push token");
    if (atomic_load(&rx->stopping))
        return unavailable(r, "unavailable", "shutting down");

    cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        char *end = NULL;
        unsigned long long v;

        errno = 0;
        v = strtoull(cl, &end, 10);
        /* MHD answers a malformed or overflowing Content-Length itself (400, 413)
         * before calling us; this only sees a number. */
        if (errno != 0 || end == cl || *end != '\0' || v > cfg->http.max_body_bytes)
            return reject(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                          "body over http.max_body_bytes (%zu)", cfg->http.max_body_bytes);
        r->cap = v > 0 ? (size_t)v : 1;
    }
    r->phase = PH_BODY;
    return MHD_YES;
}

static enum MHD_Result collect(struct req *r, const char *data, size_t n)
{
    size_t max = r->cfg->http.max_body_bytes;

    if (r->too_large || n > max - r->len) {
        /* Keep reading (bounded) so that the client gets a 413, not a reset. */
        r->too_large = true;
        r->discarded += n;
        return r->discarded > DISCARD_MAX + max ? MHD_NO : MHD_YES;
    }
    if (r->len + n > r->cap || r->body == NULL) {
        size_t cap = r->cap > 0 ? r->cap : BODY_INITIAL_CAP;
        char *nb;

        while (cap < r->len + n)
            cap = cap > max / 2 ? max : cap * 2;
        nb = realloc(r->body, cap);
        if (nb == NULL)
            return MHD_NO;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

static enum MHD_Result finish(struct req *r);

/* Straight to the spool (MHD thread): answer once the write is durable. */
static enum MHD_Result spool_first(struct req *r)
{
    enum ocb_err rc;
    bool resolved_early = false;

    r->phase = PH_WAIT;
    pthread_mutex_lock(&r->mu);
    rc = spool_request_locked(r, 0);
    if (rc == OCB_OK) {
        resolved_early = r->outcome != OUT_NONE;
        if (!resolved_early) {
            MHD_suspend_connection(r->conn);
            r->suspended = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (rc != OCB_OK) {
        return unavailable(r, rc == OCB_ERR_FULL ? "spool_full" : "unavailable",
                           rc == OCB_ERR_FULL      ? "spool full"
                           : rc == OCB_ERR_STOPPED ? "shutting down"
                                                   : "spool unavailable");
    }
    metrics_gauge_add("ocb_push_inflight", "", 1);
    return resolved_early ? finish(r) : MHD_YES;
}

static void count_check(const char *result)
{
    char labels[OCB_METRICS_LABELS_MAX];

    metrics_labels(labels, sizeof(labels), "result", result, NULL);
    metrics_counter_add("ocb_push_dedup_checks_total", labels, 1);
}

/* A re-push of a body accepted within the window: 200 without publishing.
 * where: "local" (this process's table) or "shared" (Redis). */
static enum MHD_Result duplicate(struct req *r, const char *where)
{
    char labels[OCB_METRICS_LABELS_MAX];

    metrics_labels(labels, sizeof(labels), "app", r->app->app_id, NULL);
    metrics_counter_add("ocb_push_duplicates_total", labels, 1);
    count_check(strcmp(where, "shared") == 0 ? "duplicate_shared" : "duplicate_local");
    count_push(r, "duplicate");
    log_info(MOD, r->id,
             "200 duplicate of a push accepted within push.dedup_window_s; "
             "not published again app=%s window=%s",
             r->app->app_id, where);
    return answer(r, MHD_HTTP_OK, "ok", NULL, NULL);
}

static enum MHD_Result send_push(struct req *r);

/* The shared check answered (or gave up): answer a duplicate, else publish. */
static enum MHD_Result after_check(struct req *r)
{
    enum check_state ck;
    enum outcome o;

    pthread_mutex_lock(&r->mu);
    ck = r->check;
    o = r->outcome;
    pthread_mutex_unlock(&r->mu);
    if (o != OUT_NONE) /* http_rx_stop() gave up waiting */
        return unavailable(r, "unavailable", "shutting down");
    switch (ck) {
    case CK_PENDING:
        return MHD_YES; /* spurious wake-up; still waiting */
    case CK_DUP:
        return duplicate(r, "shared");
    case CK_NEW:
        count_check("new");
        break;
    case CK_NONE:
    case CK_FALLBACK:
    default:
        count_check("fallback");
        log_debug(MOD, r->id, "redis could not say whether this is a re-push: local window only");
        break;
    }
    return send_push(r);
}

/*
 * coord's answer to the shared check: on the coord thread (Redis answered or
 * failed), on the MHD thread inside coord_dedup_seen() (Redis known down),
 * or on main at coord_stop() (OCB_ERR_STOPPED).
 */
static void on_checked(void *ctx, enum ocb_err rc, bool seen)
{
    struct req *r = ctx;
    struct ocb_http_rx *rx = r->rx;
    bool had_timer_ref = false;

    pthread_mutex_lock(&r->mu);
    if (r->check == CK_PENDING) {
        /* Still pending, so the only timer entry is the check's (not a publish's). */
        pthread_mutex_lock(&rx->tmu);
        had_timer_ref = timer_unlink_locked(rx, r);
        pthread_mutex_unlock(&rx->tmu);
        check_resolve_locked(r, rc != OCB_OK ? CK_FALLBACK : seen ? CK_DUP : CK_NEW);
    }
    pthread_mutex_unlock(&r->mu);
    if (had_timer_ref)
        req_unref(r);
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): a reference count the analyzer cannot follow. */
    req_unref(r); /* the check's */
}

/* Ask the replicas' shared window (Redis) about r->digest; suspend until it answers, at most
 * mqtt.publish_timeout_ms (the timer), then decide as the local window did. */
static enum MHD_Result check_shared(struct req *r)
{
    struct ocb_http_rx *rx = r->rx;
    enum ocb_err rc;

    r->phase = PH_CHECK;
    pthread_mutex_lock(&r->mu);
    r->check = CK_PENDING;
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_add(&r->refs, 1); /* the check's, released in on_checked() */
    rc = coord_dedup_seen(rx->coord, r->app->app_id, r->digest, on_checked, r);
    if (rc != OCB_OK) {
        /* Not queued (queue full, stopping, out of memory): on_checked never runs. */
        atomic_fetch_sub(&r->refs, 1);
        pthread_mutex_lock(&r->mu);
        r->check = CK_FALLBACK;
        pthread_mutex_unlock(&r->mu);
        return after_check(r);
    }
    /* Answered already (Redis known down, or faster than this thread): MHD would not call again. */
    return suspend_waiting(r, TK_CHECK) ? MHD_YES : after_check(r);
}

/* The whole body is in: route, check for a re-push, publish. */
static enum MHD_Result publish(struct req *r)
{
    struct ocb_http_rx *rx = r->rx;
    const struct ocb_config *cfg = r->cfg;
    enum ocb_route_reject why;
    char reason[REASON_MAX];
    enum ocb_err rc;

    if (r->too_large)
        return reject(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                      "body over http.max_body_bytes (%zu)", cfg->http.max_body_bytes);
    rc = route_from_push(cfg->mqtt.topic_prefix, r->app->app_id, r->body != NULL ? r->body : "",
                         r->len, cfg->mqtt.max_topic_len, &r->route, &why, reason, sizeof(reason));
    if (rc == OCB_ERR_NOMEM)
        return unavailable(r, "unavailable", "out of memory");
    if (rc != OCB_OK)
        return reject(r, MHD_HTTP_BAD_REQUEST,
                      why == OCB_ROUTE_BAD_TOPIC ? "bad_topic" : "bad_json", NULL, "%s", reason);
    if (atomic_load(&rx->stopping))
        return unavailable(r, "unavailable", "shutting down");
    r->received_ms = ocb_wall_ms();
    if (rx->dedup != NULL) {
        if (dedup_seen(rx->dedup, r->app->app_id, r->body, r->len))
            return duplicate(r, "local");
        if (rx->coord != NULL) {
            if (dedup_digest(r->app->app_id, r->body, r->len, r->digest))
                return check_shared(r);
            count_check("fallback");
        } else {
            count_check("new");
        }
    }
    return send_push(r);
}

/* Publish (or spool) a push no window knows. */
static enum MHD_Result send_push(struct req *r)
{
    struct ocb_http_rx *rx = r->rx;
    const struct ocb_config *cfg = r->cfg;
    struct ocb_mqtt_pub pub;
    enum ocb_err rc;

    /* Through the spool: always, or while it holds messages (no overtaking). */
    if (spooling(r) && (cfg->spool.mode == OCB_SPOOL_ALWAYS || spool_busy(rx->spool)))
        return spool_first(r);

    memset(&pub, 0, sizeof(pub));
    pub.topic = r->route.topic;
    pub.payload = r->body != NULL ? r->body : "";
    pub.len = r->len;
    pub.notify_type = r->route.notify_type;
    pub.request_id = r->route.request_id;
    pub.ocb_request_id = r->id;
    pub.content_type = "application/json";
    pub.payload_utf8 = r->route.payload_utf8;

    r->phase = PH_WAIT;
    atomic_fetch_add(&r->refs, 1); /* the publish's, released in on_published() */
    rc = mqtt_link_publish(rx->link, &pub, on_published, r);
    if (rc != OCB_OK) {
        atomic_fetch_sub(&r->refs, 1);
        if ((rc == OCB_ERR_FULL || rc == OCB_ERR_NOT_CONNECTED) && spooling(r))
            return spool_first(r);
        switch (rc) {
        case OCB_ERR_FULL:
            return unavailable(r, "unavailable", "too many publishes awaiting the broker");
        case OCB_ERR_NOT_CONNECTED:
            return unavailable(r, "unavailable", "broker not connected");
        case OCB_ERR_STOPPED:
            return unavailable(r, "unavailable", "shutting down");
        default:
            return unavailable(r, "unavailable", ocb_strerror(rc));
        }
    }
    metrics_gauge_add("ocb_push_inflight", "", 1);

    /* An ack faster than this thread: answer now, MHD would not call again. */
    return suspend_waiting(r, TK_PUBLISH) ? MHD_YES : finish(r);
}

/* The publish finished (or timed out): answer. */
static enum MHD_Result finish(struct req *r)
{
    struct ocb_http_rx *rx = r->rx;
    enum outcome o;
    enum ocb_err rc;

    pthread_mutex_lock(&r->mu);
    o = r->outcome;
    rc = r->publish_rc;
    pthread_mutex_unlock(&r->mu);
    if (o == OUT_NONE)
        return MHD_YES; /* spurious wake-up; still waiting */
    metrics_gauge_add("ocb_push_inflight", "", -1);

    switch (o) {
    case OUT_ACKED:
    case OUT_SPOOLED:
        /* A spooled status callback is reported now, once durable: it will
         * reach MQTT, and the requester's bookkeeping need not wait for the broker. */
        if (r->route.kind == OCB_ROUTE_COMMAND_STATUS && rx->on_status != NULL)
            rx->on_status(rx->on_status_ctx, r->app->app_id, r->route.device_id,
                          r->route.command_id, r->body != NULL ? r->body : "", r->len);
        if (rx->dedup != NULL) {
            dedup_record(rx->dedup, r->app->app_id, r->body, r->len);
            /* Shared only now that it is accepted: a 503 leaves no mark behind. */
            if (rx->coord != NULL && r->digest[0] != '\0')
                (void)coord_dedup_record(rx->coord, r->app->app_id, r->digest, rx->dedup_window_ms);
        }
        count_push(r, o == OUT_ACKED ? "ok" : "spooled");
        log_debug(MOD, r->id, "200 %sapp=%s topic=%s bytes=%zu", o == OUT_ACKED ? "" : "spooled ",
                  r->app->app_id, r->route.topic, r->len);
        return answer(r, MHD_HTTP_OK, "ok", NULL, NULL);
    case OUT_SPOOL_FAILED:
        return unavailable(r, rc == OCB_ERR_FULL ? "spool_full" : "unavailable",
                           rc == OCB_ERR_FULL ? "spool full" : "spool write failed");
    case OUT_TIMEOUT:
        return unavailable(r, "timeout", "broker did not acknowledge in time");
    case OUT_STOPPED:
        return unavailable(r, "unavailable", "shutting down");
    case OUT_FAILED:
    default:
        return unavailable(r, "unavailable",
                           rc == OCB_ERR_PROTOCOL ? "broker refused the message"
                                                  : "broker connection lost");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct ocb_http_rx *rx = cls;
    struct req *r = *con_cls;

    (void)version;
    if (r == NULL) {
        r = req_new(rx, conn);
        if (r == NULL)
            return MHD_NO; /* out of memory: drop the connection, the platform retries */
        atomic_fetch_add(&rx->active, 1);
        *con_cls = r;
        return begin(r, url, method);
    }
    switch (r->phase) {
    case PH_BODY:
        if (*upload_data_size > 0) {
            enum MHD_Result ret = collect(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return ret;
        }
        return publish(r);
    case PH_CHECK:
        return after_check(r);
    case PH_WAIT:
        return finish(r);
    case PH_NEW:
    case PH_DONE:
    default:
        *upload_data_size = 0; /* an answer is queued; ignore the rest */
        return MHD_YES;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ocb_http_rx *rx = cls;
    struct req *r = *con_cls;

    (void)conn;
    if (r == NULL)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->phase != PH_DONE)
        log_info(MOD, r->id, "request ended without an answer (MHD code %d)", (int)toe);
    *con_cls = NULL;
    atomic_fetch_sub(&rx->active, 1);
    req_unref(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    log_warn(MOD, NULL, "libmicrohttpd: %s", buf);
}

/* ---- pure helpers */

bool http_rx_parse_push_path(const char *url, char *app, size_t app_cap, char *token,
                             size_t token_cap)
{
    const char *p, *slash;
    size_t n;

    if (strncmp(url, "/push/", 6) != 0)
        return false;
    p = url + 6;
    slash = strchr(p, '/');
    n = slash != NULL ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= app_cap)
        return false;
    memcpy(app, p, n);
    app[n] = '\0';
    if (slash == NULL) {
        token[0] = '\0';
        return true;
    }
    p = slash + 1;
    if (strchr(p, '/') != NULL)
        return false;
    n = strlen(p);
    if (n >= token_cap)
        return false;
    memcpy(token, p, n);
    token[n] = '\0';
    return true;
}

bool http_rx_token_ok(const char *expected, const char *given)
{
    size_t elen = strlen(expected), glen = strlen(given);
    unsigned char diff;

    if (elen == 0)
        return true;
    /* Touch every byte of the expected token whatever the given one is, so
     * timing reveals at most the expected length. */
    diff = (unsigned char)(elen != glen);
    for (size_t i = 0; i < elen; i++) {
        // NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign): i < glen = strlen(given)
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)expected[i] ^ g;
    }
    return diff == 0;
}

/* ---- lifecycle */

static enum ocb_err read_pem(const char *path, char **out)
{
    enum ocb_err rc = OCB_ERR_TLS;
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto out;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > PEM_MAX)
        goto out;
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = OCB_ERR_NOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    buf = NULL;
    rc = OCB_OK;
out:
    if (rc != OCB_OK)
        log_error(MOD, NULL, "cannot read PEM file %s", path);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* http.listen (grammar_endpoint_parse()'s "host:port" or "[v6]:port") -> a socket address. */
static bool parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct ocb_endpoint ep;
    char host[OCB_GRAMMAR_HOST_MAX + 1];
    uint16_t port;

    memset(ss, 0, sizeof(*ss));
    if (grammar_endpoint_parse(s, false, &ep) != OCB_OK)
        return false;
    port = ep.port;
    snprintf(host, sizeof(host), "%s", strcmp(ep.host, "*") == 0 ? "0.0.0.0" : ep.host);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            *len = sizeof(*a4);
            return true;
        }
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            *len = sizeof(*a6);
            return true;
        }
    }
    /* A host name: the listener binds the first address it resolves to, as
     * `ocbridge -t` accepted it. */
    {
        struct addrinfo hints, *res = NULL;
        bool ok = false;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        if (getaddrinfo(host, NULL, &hints, &res) != 0)
            return false;
        if (res != NULL && res->ai_addrlen <= sizeof(*ss) &&
            (res->ai_family == AF_INET || res->ai_family == AF_INET6)) {
            memcpy(ss, res->ai_addr, res->ai_addrlen);
            *len = res->ai_addrlen;
            if (res->ai_family == AF_INET)
                ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
            ok = true;
        }
        freeaddrinfo(res);
        return ok;
    }
}

enum ocb_err http_rx_new(const struct ocb_config *cfg, struct ocb_mqtt_link *link,
                         struct ocb_http_rx **out)
{
    struct ocb_http_rx *rx;

    *out = NULL;
    rx = calloc(1, sizeof(*rx));
    if (rx == NULL)
        return OCB_ERR_NOMEM;
    pthread_mutex_init(&rx->cfg_mu, NULL);
    rx->cfg = config_ref(cfg);
    rx->link = link;
    if (getrandom(&rx->id_salt, sizeof(rx->id_salt), GRND_NONBLOCK) != sizeof(rx->id_salt))
        rx->id_salt = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    pthread_mutex_init(&rx->tmu, NULL);
    ocb_list_init(&rx->timers);
    ocb_cond_init(&rx->tcv);

    metrics_describe("ocb_pushes_total", OCB_METRIC_COUNTER,
                     "Push requests by notifyType and outcome");
    metrics_describe("ocb_push_rejections_total", OCB_METRIC_COUNTER,
                     "Requests refused with a 4xx answer, by reason");
    metrics_describe("ocb_push_inflight", OCB_METRIC_GAUGE,
                     "Push requests waiting for the broker's acknowledgement");
    metrics_gauge_set("ocb_push_inflight", "", 0);
    if (cfg->push.dedup_window_s > 0) {
        metrics_describe("ocb_push_duplicates_total", OCB_METRIC_COUNTER,
                         "Pushes answered 200 without publishing: byte-identical to one accepted "
                         "within push.dedup_window_s");
        metrics_describe("ocb_push_dedup_checks_total", OCB_METRIC_COUNTER,
                         "Re-push checks by result: new, duplicate_local, duplicate_shared, "
                         "fallback (redis could not say; the local window decided)");
        rx->dedup_window_ms = (int64_t)cfg->push.dedup_window_s * 1000;
        if (dedup_new(cfg->push.dedup_window_s, &rx->dedup) != OCB_OK) {
            http_rx_free(rx);
            return OCB_ERR_NOMEM;
        }
    }
    *out = rx;
    return OCB_OK;
}

enum ocb_err http_rx_add_ready_hook(struct ocb_http_rx *rx, const char *name, ocb_http_ready_fn fn,
                                    void *ctx)
{
    if (rx->n_hooks >= OCB_HTTP_MAX_READY_HOOKS)
        return OCB_ERR_FULL;
    rx->hooks[rx->n_hooks].name = name;
    rx->hooks[rx->n_hooks].fn = fn;
    rx->hooks[rx->n_hooks].ctx = ctx;
    rx->n_hooks++;
    return OCB_OK;
}

void http_rx_set_spool(struct ocb_http_rx *rx, struct ocb_spool *sp)
{
    rx->spool = sp;
}

void http_rx_set_coord(struct ocb_http_rx *rx, struct ocb_coord *coord)
{
    rx->coord = coord;
}

enum ocb_err http_rx_add_ready_note(struct ocb_http_rx *rx, const char *note, ocb_http_ready_fn fn,
                                    void *ctx)
{
    enum ocb_err rc = http_rx_add_ready_hook(rx, note, fn, ctx);
    if (rc == OCB_OK)
        rx->hooks[rx->n_hooks - 1].note = true;
    return rc;
}

void http_rx_set_command_status_hook(struct ocb_http_rx *rx, ocb_http_command_status_fn fn,
                                     void *ctx)
{
    rx->on_status = fn;
    rx->on_status_ctx = ctx;
}

static enum ocb_err start_under(struct ocb_http_rx *rx, const struct ocb_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    /* poll(), not epoll: libmicrohttpd 0.9.75 (Debian 12) aborts the process at random when
     * MHD_quiesce_daemon() races its epoll thread, which removes the listen socket from the
     * epoll set too and panics on the ENOENT ("Failed to remove listen FD from epoll set",
     * seen once at a SIGTERM right after a push).  With poll() quiescing only wakes the
     * thread through its ITC.  The push listener holds few connections (the platform's), so
     * poll's walk over them costs nothing measurable (bench/README.md). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    struct MHD_OptionItem opts[16];
    size_t n = 0;
    const union MHD_DaemonInfo *di;
    uint16_t bind_port;
    enum ocb_err rc;

    if (!parse_listen(cfg->http.listen, &ss, &sslen)) {
        log_error(MOD, NULL, "http.listen: cannot parse or resolve %s", cfg->http.listen);
        return OCB_ERR_INVALID;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* First, so that MHD's own messages from the other options come here too. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, rx};
    if (cfg->http.tls_cert[0] != '\0') {
        rc = read_pem(cfg->http.tls_cert, &rx->tls_cert);
        if (rc == OCB_OK)
            rc = read_pem(cfg->http.tls_key, &rx->tls_key);
        if (rc == OCB_OK && cfg->http.tls_client_ca[0] != '\0')
            rc = read_pem(cfg->http.tls_client_ca, &rx->tls_ca);
        if (rc != OCB_OK)
            return rc;
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, rx->tls_cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, rx->tls_key};
        if (rx->tls_ca != NULL)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, rx->tls_ca};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, rx};
    if (cfg->http.threads > 1)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->http.threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    if (pthread_create(&rx->timer, NULL, timer_main, rx) != 0)
        return OCB_ERR_IO;
    rx->timer_started = true;

    /* MHD binds to SOCK_ADDR, but names the port argument in its own
     * messages ("Failed to bind to port ..."): give it the configured one. */
    bind_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    rx->daemon = MHD_start_daemon(flags, bind_port, NULL, NULL, on_request, rx, MHD_OPTION_ARRAY,
                                  opts, MHD_OPTION_END);
    if (rx->daemon == NULL) {
        log_error(MOD, NULL, "cannot listen on %s (port %u)", cfg->http.listen,
                  (unsigned)bind_port);
        return OCB_ERR_IO;
    }
    di = MHD_get_daemon_info(rx->daemon, MHD_DAEMON_INFO_BIND_PORT);
    rx->port = di != NULL ? di->port : 0;
    log_info(MOD, NULL, "listening on %s (port %u%s%s)", cfg->http.listen, (unsigned)rx->port,
             rx->tls_cert != NULL ? ", TLS" : "",
             rx->tls_ca != NULL ? ", client certificates required" : "");
    return OCB_OK;
}

enum ocb_err http_rx_start(struct ocb_http_rx *rx)
{
    const struct ocb_config *cfg = cfg_acquire(rx);
    enum ocb_err rc = start_under(rx, cfg);

    config_unref(cfg);
    return rc;
}

void http_rx_reload(struct ocb_http_rx *rx, const struct ocb_config *cfg)
{
    const struct ocb_config *old;

    config_ref(cfg);
    pthread_mutex_lock(&rx->cfg_mu);
    old = rx->cfg;
    rx->cfg = cfg;
    pthread_mutex_unlock(&rx->cfg_mu);
    /* Requests under way hold their own references: the old one lives on until they are done. */
    config_unref(old);
}

uint16_t http_rx_port(const struct ocb_http_rx *rx)
{
    return rx->port;
}

/* Wait until no request is open, for up to ms.  True when none is. */
static bool wait_idle(struct ocb_http_rx *rx, unsigned ms)
{
    for (unsigned waited = 0; atomic_load(&rx->active) > 0; waited += 10) {
        if (waited >= ms)
            return false;
        ocb_sleep_ms(10);
    }
    return true;
}

void http_rx_stop(struct ocb_http_rx *rx, unsigned drain_ms)
{
    if (rx->stopped)
        return;
    rx->stopped = true;
    atomic_store(&rx->stopping, true);
    if (rx->daemon != NULL) {
        /* MHD's threads stop polling the listen socket only when they next
         * wake: it may be closed once the daemon has stopped, not before
         * (the fd could be reused under MHD's feet). */
        MHD_socket listen_fd = MHD_quiesce_daemon(rx->daemon);
        log_info(MOD, NULL, "stopped accepting; %d request(s) in flight", atomic_load(&rx->active));
        if (!wait_idle(rx, drain_ms)) {
            /* Whatever still waits for an ack gets its 503 now. */
            struct req *r;

            pthread_mutex_lock(&rx->tmu);
            while ((r = timer_head_locked(rx)) != NULL) {
                timer_unlink_locked(rx, r);
                pthread_mutex_unlock(&rx->tmu);
                resolve(r, OUT_STOPPED, OCB_ERR_STOPPED);
                req_unref(r);
                pthread_mutex_lock(&rx->tmu);
            }
            pthread_mutex_unlock(&rx->tmu);
            if (!wait_idle(rx, STOP_FORCE_WAIT_MS))
                log_warn(MOD, NULL, "%d request(s) still open at shutdown",
                         atomic_load(&rx->active));
        }
        MHD_stop_daemon(rx->daemon);
        rx->daemon = NULL;
        if (listen_fd != MHD_INVALID_SOCKET)
            close(listen_fd);
    }
    if (rx->timer_started) {
        pthread_mutex_lock(&rx->tmu);
        rx->tstop = true;
        pthread_cond_signal(&rx->tcv);
        pthread_mutex_unlock(&rx->tmu);
        pthread_join(rx->timer, NULL);
        rx->timer_started = false;
    }
}

void http_rx_free(struct ocb_http_rx *rx)
{
    if (rx == NULL)
        return;
    http_rx_stop(rx, 0);
    /* Requests still referenced by a pending publish are released by its
     * done callback, which mqtt_link_stop() guarantees to run. */
    pthread_mutex_lock(&rx->tmu);
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &rx->timers) {
        struct req *r = ocb_list_entry(pos, struct req, tlink);

        ocb_list_remove(pos); /* before its reference goes: r may be freed */
        req_unref(r);
    }
    pthread_mutex_unlock(&rx->tmu);
    pthread_cond_destroy(&rx->tcv);
    pthread_mutex_destroy(&rx->tmu);
    config_unref(rx->cfg);
    pthread_mutex_destroy(&rx->cfg_mu);
    free(rx->tls_cert);
    free(rx->tls_key);
    free(rx->tls_ca);
    dedup_free(rx->dedup);
    free(rx);
}
