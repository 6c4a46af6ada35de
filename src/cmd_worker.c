/*
 * cmd_worker.c: MQTT commands -> platform deviceCommands, outcomes -> MQTT.
 *
 * Thread layout.  paho's callback thread only copies an arriving message
 * onto `inbox` (a mutex-protected list) and wakes the worker; when the
 * number of commands the worker holds reaches platform.max_queue it answers
 * QUEUE_FULL itself instead (a pure parse and a non-blocking publish).  The
 * worker thread owns everything else: the platform client, the jobs, the
 * rate limiters, the subscription sync and the outbox.  The one piece of
 * state libmicrohttpd's threads touch, the requester map (commandId ->
 * MQTT 5 response topic), is a module of its own (requesters.c) with its
 * own mutex; the worker only inserts into it.
 *
 * A job is a validated command.  It sits in its app's FIFO until the app's
 * rate limiter (rate_limit.c, a pure module), the global max_in_flight and
 * its own backoff allow a call; it is in flight at most once at a time.
 * Its lifecycle is an explicit state (enum job_state: QUEUED -> SENDING ->
 * ANSWERED, with BACKOFF between retries), checked on every transition.
 * Outcomes: success, a definite platform error, or, when retries (5xx,
 * network, timeouts, throttling) run past platform.command_deadline_s,
 * PLATFORM_UNREACHABLE; a job that never got a turn before its deadline is
 * EXPIRED_IN_QUEUE.
 *
 * Creates never double.  The platform has no idempotency key, so a create
 * that went out and got no answer (a timeout, the connection lost after
 * sending) has an unknown outcome; its next call is not a create but a query
 * of the device's commands since the first attempt, and a command with the
 * same content that no other job of ours claimed is adopted (see the
 * reconcile_* functions and reconcile.h).  Only when even the query cannot be
 * answered before the deadline is the answer OUTCOME_UNKNOWN.
 *
 * The rate limiter is a sliding window per app (rate_limit.h says why a
 * window and not a bucket).  Throttle answers still happen (other clients
 * of the same app, other bridges) and back the whole app off.
 *
 * The subscription sync (platform.manage_subscriptions: at start-up, after a
 * reload, and a minute after a failed one) is a state machine stepped once
 * per turn of the loop (subscriptions_turn): it makes one platform call at
 * a time through the same platform client, and the loop never waits for
 * it, so queued commands keep going out while a sync is slow.  Its calls
 * count neither against max_in_flight nor against the rate limit, as
 * before.
 *
 * Several replicas (coordination.redis_url, coord.h).  The worker is the
 * one thread that talks to Redis synchronously, with short timeouts: the
 * shared rate window is asked after the local one allows a call (Redis
 * down: a local window at coordination.local_rate_share_pct of the limit
 * instead), a create's requester is written to Redis after its answer, and
 * the subscription sync runs only for the apps whose sync lease this replica
 * holds.  Status callbacks the local requester map does not know are handed
 * to coord's own thread, which looks them up in Redis and publishes.
 *
 * Answers that cannot be published (broker down, in-flight window full)
 * wait in a bounded outbox and are retried; past its bound or age they are
 * dropped with a log line and a metric.
 *
 * The command journal (journal.h, with cmd_worker_use_state()) makes all of
 * this survive a crash.  paho's thread does not put a message on the inbox
 * itself: it submits the message's row and the store's writer thread puts it
 * there once the row is durable (on_journaled), so no command runs that a
 * crash could forget.  The journal is touched at four points of a job's
 * life, each in a function of its own: the append (cmd_worker_on_message),
 * `sending` before the call leaves (send_pending: one durable write per
 * dispatch pass, which the worker waits for), the answer stored and the row
 * deleted once every copy of it was PUBACKed (answer_publish, answer_send,
 * struct jtrack), and the load at start (journal_recover, journal_resume,
 * journal_taken).  A graceful stop leaves unfinished journaled jobs in the
 * journal instead of answering them SHUTTING_DOWN.
 *
 * Device API requests (<prefix>/<app>/<device or _>/api) are jobs too, told
 * apart by their topic from paho's thread to the journal row (whose topic says
 * what it is, so the journal needs no kind).  take_api_message() validates
 * them (api_parse with the app's apps[].api); from there they share every
 * step above, and the api_job_* functions (api_job.h) decide what differs per
 * operation: the call (the op's own, or for register/groupCreate after a lost
 * answer the query for what it may have created), and what a reply means (a
 * retried delete's not-found after a lost answer is its success).  Their
 * answers carry "op" and count in ocb_api_requests_total; answer_send() keeps a
 * register's psk off apiResponse when the requester has a response topic.
 */
#include "ocb/cmd_worker.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ocb/api.h"
#include "ocb/api_job.h"
#include "ocb/command.h"
#include "ocb/coord.h"
#include "ocb/journal.h"
#include "ocb/list.h"
#include "ocb/log.h"
#include "ocb/util.h"
#include "ocb/metrics.h"
#include "ocb/platform_client.h"
#include "ocb/rate_limit.h"
#include "ocb/reconcile.h"
#include "ocb/requesters.h"
#include "ocb/subscriptions.h"

#define MOD "command"

#define TOPIC_MAX            1024
#define PATH_MAX_LEN         1024
#define RETRY_BASE_MS        500
#define RETRY_MAX_MS         10000
#define OUTBOX_MAX_AGE_MS    300000
#define SUBS_RETRY_MS        60000
#define FINAL_GRACE_MS       30000 /* statuses may arrive out of order */
#define DEVICE_RETRANSMIT_MS 180000
#define LAST_TRY_MARGIN_MS   200
#define RECONCILE_CLAIMS     1024   /* commandIds of this bridge's creates, remembered */
#define LEASE_MS             300000 /* subscription-sync lease; renewed every LEASE_RENEW_MS */
#define LEASE_RENEW_MS       60000
#define PRUNE_EVERY_MS       60000 /* persisted requesters: expiry sweep */

#define PATH_COMMANDS     "/iocm/app/cmd/v1.4.0/deviceCommands"
#define PATH_CANCEL_TASKS "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"

/* A message copied off paho's thread. */
struct inmsg {
    struct ocb_list link; /* in w->inbox */
    char *topic;
    char *payload;
    size_t len;
    bool retained;
    char *response_topic;
    void *corr;
    size_t corr_len;
    int64_t arrived_ms;
    /* the command journal (0: not journaled) */
    int64_t jid;
    enum ocb_err jrc;    /* the append's outcome */
    int jstate;          /* recovered: the row's state; -1 = a live message */
    int64_t deadline_ms; /* recovered: the deadline (ocb_now_ms clock) */
    long long first_s;   /* recovered: the first create attempt */
    char *answer;        /* recovered (answered): the stored commandResponse */
    size_t answer_len;
    struct ocb_journal_cmd jc; /* what the append writes (points into this message) */
    struct ocb_journal_append jop;
    struct ocb_cmd_worker *w;
};

struct wapp;

/*
 * A job's lifecycle.  The journal that is to persist jobs records exactly
 * these states; SENDING means the request was handed to the platform
 * client (libcurl), so after a restart it may or may not have reached the
 * platform.
 *
 *   NEW -> QUEUED -> SENDING -> ANSWERED
 *                      |  ^
 *                      v  |
 *                    BACKOFF -> ANSWERED
 *
 * QUEUED and BACKOFF jobs also go to ANSWERED when their deadline passes,
 * a submit fails or the bridge stops.  A job waiting for the rate limit,
 * the app's throttle pause or a free in-flight slot stays QUEUED/BACKOFF.
 */
enum job_state {
    JOB_NEW,      /* validated, not yet in its app's FIFO */
    JOB_QUEUED,   /* in the FIFO, never sent */
    JOB_SENDING,  /* a call is in flight (at most one per job) */
    JOB_BACKOFF,  /* sent before, waiting for next_try_ms */
    JOB_ANSWERED, /* the answer is out (or in the outbox); freed next */
};

/*
 * A create's reconciliation state (reconcile_* functions).  unknown: a
 * create went out and got no answer, so the next call is the query, page by
 * page, and then either the adoption or a create.
 */
struct job_reconcile {
    bool unknown;
    bool grace;           /* the first query after an unanswered create is yet to come */
    bool querying;        /* the call in flight is the query */
    long long first_s;    /* UTC seconds of the first create attempt; 0 = none yet */
    long page, page_size; /* page_size 0 = OCB_RECONCILE_PAGE_SIZE */
    char path[PATH_MAX_LEN];
    char *callback_url; /* what the create sent, to compare with */
    struct ocb_reconcile_scan scan;
};

struct job {
    struct ocb_list link; /* in app->jobs (initialised at creation, so unlinking is safe) */
    struct ocb_cmd_worker *w;
    struct wapp *app;
    struct ocb_command_target target;
    struct ocb_command_req req;
    char answer_topic[TOPIC_MAX];
    char *response_topic;
    void *corr;
    size_t corr_len;
    char *body; /* REST body or NULL */
    char path[PATH_MAX_LEN];
    const char *method;
    const char *op;
    int64_t deadline_ms;
    int64_t next_try_ms;
    unsigned attempts;
    enum job_state state;
    char rate_member[OCB_COORD_VALUE_MAX]; /* the shared window's slot of the call in flight */
    bool in_rate_local;                    /* the call in flight counts in app->rate_local */
    /* the last retryable failure, for the PLATFORM_UNREACHABLE answer */
    long last_status;
    enum ocb_platform_class last_cls;
    char last_code[32];
    char last_text[256];
    char last_desc[320]; /* code and text, for logs */
    struct job_reconcile rec;
    int64_t jid;               /* the journal row, 0 = not journaled */
    bool jsending;             /* the row is in state sending */
    struct ocb_list send_link; /* in dispatch's list of calls waiting for the journal */
    struct ocb_platform_call call;
    /* A device API request (<prefix>/<app>/<device>/api) instead of a command: req
     * holds only its correlation_id, aj the rest (api_job.h). */
    bool api;
    struct ocb_api_job aj;
};

/* Per-app state, worker thread only. */
struct wapp {
    const struct ocb_app *cfg;
    const struct ocb_config *owner; /* a reference to the configuration cfg points into */
    bool active;          /* in the current configuration with a secret (see apply_reload) */
    struct ocb_list jobs; /* struct job (link), arrival order */
    struct ocb_rate_limit rate;
    struct ocb_rate_limit rate_local; /* local_rate_share_pct of the limit, while Redis is down */
    bool lease_held;                  /* this replica holds the app's subscription-sync lease */
    int64_t throttled_until_ms;
    unsigned throttle_backoff_ms;
};

struct outmsg {
    struct ocb_list link; /* in w->outbox */
    char *topic;
    char *payload;
    size_t len;
    void *corr;
    size_t corr_len;
    int64_t born_ms;
    struct jtrack *track; /* a journaled answer's reference, or NULL */
};

struct ocb_cmd_worker {
    const struct ocb_config *cfg; /* a reference: the start-up one, for restart-only keys */
    struct ocb_mqtt_link *link;
    struct ocb_platform_client *pc;
    struct ocb_coord *coord; /* NULL: one instance */

    /* shared with paho's thread */
    pthread_mutex_t lock;
    struct ocb_list inbox; /* struct inmsg, arrival order */
    unsigned held;         /* commands in the inbox or in jobs, <= platform.max_queue */
    bool stopping;

    /* shared with libmicrohttpd's threads; thread-safe on its own */
    struct ocb_requesters *requesters;

    /* The command journal (journal.h), thread-safe on its own; NULL without a store. */
    struct ocb_journal *journal;
    int64_t prune_next_ms; /* worker thread */

    /* A configuration handed over by cmd_worker_reload() (a reference), under lock. */
    const struct ocb_config *pending_cfg;

    /* worker thread only */
    const struct ocb_config *apps_cfg; /* apps[] as of the last reload (a reference) */
    pthread_t thread;
    bool started;
    struct wapp apps[OCB_MAX_APPS];
    size_t n_apps;
    unsigned in_flight;
    struct ocb_list outbox; /* struct outmsg: answers the broker could not take yet, in order */
    unsigned n_out;
    unsigned rand_state;
    int64_t subs_next_ms;       /* 0 = no subscription sync due */
    struct ocb_subs_sync *subs; /* the sync under way, or NULL */
    struct ocb_config subs_cfg; /* with coordination: the apps whose lease we hold (shallow) */
    const struct ocb_config *subs_owner; /* a reference to the configuration subs_cfg copies */
    int64_t lease_renew_ms;
    uint64_t seen[2048];               /* dispatch's per-pass device set (SEEN_SLOTS) */
    uint64_t claims[RECONCILE_CLAIMS]; /* hashes of commandIds created or adopted (a ring) */
    unsigned claims_next;
};

static void count_outcome(const char *outcome)
{
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "outcome", outcome, NULL);
    metrics_counter_add("ocb_commands_total", labels, 1);
}

/* ocb_api_requests_total{app,op,result}; op "" (no known op) is counted as "unknown". */
static void count_api(const char *app_id, const char *op, const char *result)
{
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "app", app_id && *app_id ? app_id : "unknown", "op",
                   op && *op ? op : "unknown", "result", result, NULL);
    metrics_counter_add("ocb_api_requests_total", labels, 1);
}

/* The <prefix>/<app>/<device>/api topics (and their apiResponse answers). */
static bool is_api_topic(const char *topic)
{
    size_t n = topic ? strlen(topic) : 0;
    return n >= 4 && strcmp(topic + n - 4, "/api") == 0;
}

/* ---- publishing answers (any thread; the outbox is the worker's) */

/*
 * A journaled answer's copies in flight (the commandResponse topic and the
 * requester's response topic).  The journal row is deleted once every copy
 * was PUBACKed; a copy dropped from the outbox, or whose connection went
 * before its PUBACK, keeps the row (state answered), so the answer is
 * published again at the next start.  References: one per publish awaiting
 * its done callback (paho's thread), one per outbox entry, one held by
 * answer_send() while it publishes.
 */
struct jtrack {
    struct ocb_journal *journal;
    int64_t jid;
    atomic_uint refs;
    atomic_bool failed;
};

static struct jtrack *jtrack_new(struct ocb_journal *journal, int64_t jid)
{
    struct jtrack *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->journal = journal;
    t->jid = jid;
    atomic_init(&t->refs, 1);
    atomic_init(&t->failed, false);
    return t;
}

static void jtrack_get(struct jtrack *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
}

static void jtrack_put(struct jtrack *t, bool ok)
{
    if (!t)
        return;
    if (!ok)
        atomic_store(&t->failed, true);
    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    if (!atomic_load(&t->failed))
        journal_delete(t->journal, t->jid);
    free(t);
}

/* An ocb_mqtt_done (paho's thread) for a journaled copy. */
static void jtrack_done(void *ctx, enum ocb_err rc)
{
    jtrack_put(ctx, rc == OCB_OK);
}

static enum ocb_err publish(struct ocb_cmd_worker *w, const char *topic, const char *payload,
                            size_t len, const void *corr, size_t corr_len, struct jtrack *t)
{
    struct ocb_mqtt_pub pub = {
        .topic = topic,
        .payload = payload,
        .len = len,
        .notify_type = "commandResponse",
        .content_type = "application/json",
        .correlation = corr,
        .correlation_len = corr_len,
    };
    jtrack_get(t);
    enum ocb_err rc = mqtt_link_publish(w->link, &pub, t ? jtrack_done : NULL, t);
    if (rc != OCB_OK && t)
        atomic_fetch_sub(&t->refs, 1); /* done never runs; answer_send still holds one */
    return rc;
}

/* Worker thread: keep an answer the broker could not take yet. */
static void outbox_add(struct ocb_cmd_worker *w, const char *topic, const char *payload, size_t len,
                       const void *corr, size_t corr_len, struct jtrack *t)
{
    struct outmsg *m = NULL;
    if (w->n_out >= w->cfg->platform.max_queue)
        goto drop;
    m = calloc(1, sizeof(*m));
    if (!m)
        goto drop;
    m->topic = ocb_strdup_or_null(topic);
    m->payload = ocb_memdup(payload, len + 1);
    m->len = len;
    m->corr = ocb_memdup(corr, corr_len);
    m->corr_len = corr ? corr_len : 0;
    m->born_ms = ocb_now_ms();
    if (!m->topic || !m->payload || (corr && corr_len && !m->corr))
        goto drop;
    jtrack_get(t);
    m->track = t;
    ocb_list_push_back(&w->outbox, &m->link);
    w->n_out++;
    return;
drop:
    if (t)
        atomic_store(&t->failed, true);
    if (m) {
        free(m->topic);
        free(m->payload);
        free(m->corr);
        free(m);
    }
    metrics_counter_add("ocb_command_answers_dropped_total", "", 1);
    log_error(MOD, NULL, "answer on %s dropped: broker unavailable and outbox full", topic);
}

static void outmsg_free(struct outmsg *m)
{
    free(m->topic);
    free(m->payload);
    free(m->corr);
    free(m);
}

static void outbox_flush(struct ocb_cmd_worker *w)
{
    int64_t now = ocb_now_ms();
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &w->outbox) {
        struct outmsg *m = ocb_list_entry(pos, struct outmsg, link);
        if (now - m->born_ms > OUTBOX_MAX_AGE_MS) {
            metrics_counter_add("ocb_command_answers_dropped_total", "", 1);
            log_error(MOD, NULL, "answer on %s dropped: broker unavailable for too long", m->topic);
            jtrack_put(m->track, false);
        } else if (publish(w, m->topic, m->payload, m->len, m->corr, m->corr_len, m->track) !=
                   OCB_OK) {
            return; /* still down or full: keep order, try again later */
        } else {
            jtrack_put(m->track, true); /* the publish holds its own reference now */
        }
        ocb_list_remove(&m->link);
        w->n_out--;
        outmsg_free(m);
    }
}

/*
 * Publish an answer on its commandResponse topic and, for MQTT 5 requesters,
 * on their response topic.  on_worker: failures go to the outbox; on paho's
 * thread they are only logged (it must not touch worker state).  jid: the
 * journal row (0: none), deleted once every copy was PUBACKed.
 */
static void answer_send_tracked(struct ocb_cmd_worker *w, bool on_worker, const char *topic,
                                const char *response_topic, const void *corr, size_t corr_len,
                                const char *payload, size_t len, struct jtrack *t)
{
    const char *topics[2] = {topic, response_topic};
    for (int i = 0; i < 2; i++) {
        if (!topics[i] || !*topics[i])
            continue;
        const void *c = i == 1 ? corr : NULL;
        size_t cl = i == 1 ? corr_len : 0;
        /* Keep the order of answers: once something waits, queue behind it. */
        enum ocb_err rc = (on_worker && !ocb_list_empty(&w->outbox))
                              ? OCB_ERR_FULL
                              : publish(w, topics[i], payload, len, c, cl, t);
        if (rc == OCB_OK)
            continue;
        if (on_worker) {
            outbox_add(w, topics[i], payload, len, c, cl, t);
        } else {
            metrics_counter_add("ocb_command_answers_dropped_total", "", 1);
            log_error(MOD, NULL, "answer on %s not published: %s", topics[i], ocb_strerror(rc));
        }
    }
}

static void answer_send(struct ocb_cmd_worker *w, bool on_worker, const char *topic,
                        const char *response_topic, const void *corr, size_t corr_len,
                        const char *payload, size_t len, int64_t jid)
{
    struct jtrack *t = jid && w->journal && on_worker ? jtrack_new(w->journal, jid) : NULL;
    char *redacted = NULL;
    size_t rlen = 0;
    size_t tlen = topic ? strlen(topic) : 0;

    /* A register answer holds the device's psk: when the requester named a response
     * topic, that topic alone gets it, and apiResponse the answer without it. */
    if (response_topic && *response_topic && tlen >= 12 &&
        strcmp(topic + tlen - 12, "/apiResponse") == 0 &&
        api_job_redact_psk(payload, len, &redacted, &rlen) == OCB_OK) {
        answer_send_tracked(w, on_worker, topic, NULL, NULL, 0, redacted, rlen, t);
        answer_send_tracked(w, on_worker, NULL, response_topic, corr, corr_len, payload, len, t);
    } else {
        answer_send_tracked(w, on_worker, topic, response_topic, corr, corr_len, payload, len, t);
    }
    free(redacted);
    jtrack_put(t, true);
}

/* answer_send(), after storing the answer (and the commandId) in the journal row first:
 * the store runs the update before the delete that a PUBACK triggers. */
static void answer_publish(struct ocb_cmd_worker *w, bool on_worker, const char *topic,
                           const char *response_topic, const void *corr, size_t corr_len,
                           const char *payload, size_t len, int64_t jid, const char *command_id)
{
    if (jid && w->journal && on_worker)
        journal_answer(w->journal, jid, command_id, payload, len);
    answer_send(w, on_worker, topic, response_topic, corr, corr_len, payload, len, jid);
}

struct answer {
    const char *topic;
    const char *response_topic;
    const void *corr;
    size_t corr_len;
    const char *correlation_id; /* JSON text */
    int64_t jid;                /* the journal row, 0 = none */
    /* A device API answer: its op ("" when none is known) and app; NULL for commands. */
    const char *op;
    const char *app_id;
};

/* A bridge-side error answer. */
static void answer_bridge(struct ocb_cmd_worker *w, bool on_worker, const struct answer *a,
                          enum ocb_command_code code, long http_status, const char *desc,
                          bool retryable)
{
    struct ocb_command_outcome o = {
        .correlation_id = a->correlation_id,
        .ok = false,
        .http_status = http_status,
        .code = command_code_name(code),
        .desc = desc,
        .from_platform = false,
        .retryable = retryable,
        .op = a->op,
    };
    char *payload = NULL;
    size_t len = 0;
    if (a->op)
        count_api(a->app_id, a->op, command_code_name(code));
    else
        count_outcome(command_code_name(code));
    if (command_response_format(&o, &payload, &len) != OCB_OK) {
        log_error(MOD, NULL, "cannot format the %s answer for %s", command_code_name(code),
                  a->topic);
        return;
    }
    log_info(MOD, NULL, "%s: %s (%s)", a->topic, command_code_name(code), desc);
    answer_publish(w, on_worker, a->topic, a->response_topic, a->corr, a->corr_len, payload, len,
                   a->jid, NULL);
    free(payload);
}

/* <...>/command -> <...>/commandResponse (<...>/api -> <...>/apiResponse), for any topic
 * with a last level. */
static bool answer_topic_for(const char *topic, char *out, size_t cap)
{
    const char *slash = strrchr(topic, '/');
    if (!slash)
        return false;
    int n = snprintf(out, cap, "%.*s/%s", (int)(slash - topic), topic,
                     is_api_topic(topic) ? "apiResponse" : "commandResponse");
    return n > 0 && (size_t)n < cap;
}

/*
 * For an answer without a job (QUEUE_FULL, SHUTTING_DOWN, a journal that
 * failed): what the payload says of itself, parsed leniently.  Fills a's
 * correlation_id (and, for the api topics, op and app_id) from storage the
 * caller releases with answer_meta_cleanup().
 */
struct answer_meta {
    struct ocb_command_req req;
    struct ocb_api_target at;
    struct ocb_api_req areq;
};

static void answer_meta_fill(const struct ocb_cmd_worker *w, const char *topic, const char *payload,
                             size_t len, struct answer_meta *mm, struct answer *a)
{
    memset(mm, 0, sizeof(*mm));
    if (is_api_topic(topic)) {
        (void)api_topic_parse(w->cfg->mqtt.topic_prefix, topic, &mm->at);
        api_parse(&mm->at, OCB_API_ALL_OPS, payload, len, w->cfg->platform.max_command_bytes,
                  &mm->areq, NULL, 0);
        a->correlation_id = mm->areq.correlation_id;
        a->op = mm->areq.op_known ? api_op_name(mm->areq.op) : "";
        a->app_id = mm->at.app_id;
        return;
    }
    size_t tl = strlen(topic);
    bool cancel = tl >= 14 && strcmp(topic + tl - 14, "/commandCancel") == 0;
    command_parse(cancel, payload, len, w->cfg->platform.max_command_bytes, &mm->req, NULL, 0);
    a->correlation_id = mm->req.correlation_id;
}

static void answer_meta_cleanup(struct answer_meta *mm)
{
    command_req_cleanup(&mm->req);
    api_req_cleanup(&mm->areq);
}

/* ---- the inbox (paho's thread) */

static void inmsg_free(struct inmsg *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->payload);
    free(m->response_topic);
    free(m->corr);
    free(m->answer);
    free(m);
}

/* Any thread: hand m to the worker (a live message once journaled, or a recovered one). */
static void inbox_push(struct ocb_cmd_worker *w, struct inmsg *m)
{
    pthread_mutex_lock(&w->lock);
    ocb_list_push_back(&w->inbox, &m->link);
    /* Under the lock: cmd_worker_stop() sets `stopping` under it before the
     * platform client goes away, so pc is alive here.  The wakeup is one
     * non-blocking write; the gauge is set under the lock so that racing
     * updates cannot leave a stale depth behind.  A message that comes in
     * while the worker stops stays in its journal row for the next start. */
    if (!w->stopping && w->pc)
        platform_client_wakeup(w->pc);
    metrics_gauge_set("ocb_command_queue_depth", "", (int64_t)w->held);
    pthread_mutex_unlock(&w->lock);
}

/* The store's writer thread: the append of m is durable (or failed); the job may run now. */
static void on_journaled(void *ctx, enum ocb_err rc)
{
    struct inmsg *m = ctx;
    m->jrc = rc;
    if (rc != OCB_OK)
        m->jid = 0; /* there is no row */
    inbox_push(m->w, m);
}

/* Answer QUEUE_FULL (or SHUTTING_DOWN) without queueing: pure parse + publish. */
static void reject_now(struct ocb_cmd_worker *w, const struct ocb_mqtt_msg *msg,
                       enum ocb_command_code code, const char *desc)
{
    char topic[TOPIC_MAX];
    if (!answer_topic_for(msg->topic, topic, sizeof(topic)))
        return;
    struct answer_meta mm;
    struct answer a = {
        .topic = topic,
        .response_topic = msg->response_topic,
        .corr = msg->correlation,
        .corr_len = msg->correlation_len,
    };
    answer_meta_fill(w, msg->topic, msg->payload, msg->len, &mm, &a);
    answer_bridge(w, false, &a, code, 0, desc, true);
    answer_meta_cleanup(&mm);
}

static void release_slot(struct ocb_cmd_worker *w);

void cmd_worker_on_message(void *ctx, const struct ocb_mqtt_msg *msg)
{
    struct ocb_cmd_worker *w = ctx;
    if (!w || !msg || !msg->topic)
        return;
    pthread_mutex_lock(&w->lock);
    bool stopping = w->stopping;
    bool full = w->held >= w->cfg->platform.max_queue;
    if (!stopping && !full)
        w->held++;
    pthread_mutex_unlock(&w->lock);
    if (stopping) {
        reject_now(w, msg, OCB_CMD_SHUTTING_DOWN, "the bridge is shutting down");
        return;
    }
    if (full) {
        reject_now(w, msg, OCB_CMD_QUEUE_FULL, "platform.max_queue commands are waiting");
        return;
    }
    int64_t jid = 0;
    if (w->journal && !(jid = journal_reserve(w->journal))) {
        release_slot(w);
        reject_now(w, msg, OCB_CMD_QUEUE_FULL,
                   "the command journal is full (unfinished commands and unacknowledged answers)");
        return;
    }
    /* Copy only what is bounded: payloads over the cap are kept short (their
     * answer is PAYLOAD_TOO_LARGE), so a hostile publisher cannot grow memory. */
    size_t keep = msg->len;
    if (keep > w->cfg->platform.max_command_bytes)
        keep = 0;
    struct inmsg *m = calloc(1, sizeof(*m));
    if (m) {
        m->topic = ocb_strdup_or_null(msg->topic);
        m->payload = malloc(keep + 1);
        if (m->payload && keep)
            memcpy(m->payload, msg->payload, keep);
        if (m->payload)
            m->payload[keep] = '\0';
        m->len = keep == msg->len ? keep : SIZE_MAX;
        m->retained = msg->retained;
        m->response_topic = ocb_strdup_or_null(msg->response_topic);
        m->corr = ocb_memdup(msg->correlation, msg->correlation_len);
        m->corr_len = m->corr ? msg->correlation_len : 0;
        m->arrived_ms = ocb_now_ms();
        m->w = w;
        m->jid = jid;
        m->jstate = -1;
    }
    if (!m || !m->topic || !m->payload || (msg->response_topic && !m->response_topic) ||
        (msg->correlation && msg->correlation_len && !m->corr)) {
        inmsg_free(m);
        if (jid)
            journal_unreserve(w->journal);
        release_slot(w);
        reject_now(w, msg, OCB_CMD_INTERNAL, "out of memory");
        return;
    }
    if (jid) {
        /* The loss window: paho has acknowledged the message; until this write
         * commits (one group commit) a crash loses it.  The worker sees it only
         * once it is durable (on_journaled), so nothing runs unjournaled. */
        int64_t now = ocb_wall_ms();
        m->jc = (struct ocb_journal_cmd){
            .id = jid,
            .topic = m->topic,
            .payload = m->payload,
            .len = m->len == SIZE_MAX ? 0 : m->len,
            .oversize = m->len == SIZE_MAX,
            .retained = m->retained,
            .response_topic = m->response_topic,
            .corr = m->corr,
            .corr_len = m->corr_len,
            .arrived_ms = now,
            .deadline_ms = now + (int64_t)w->cfg->platform.command_deadline_s * 1000,
        };
        enum ocb_err rc = journal_append(w->journal, &m->jop, &m->jc, on_journaled, m);
        if (rc != OCB_OK) {
            inmsg_free(m);
            journal_unreserve(w->journal);
            release_slot(w);
            log_error(MOD, NULL, "command on %s refused: the command journal cannot take it (%s)",
                      msg->topic, ocb_strerror(rc));
            reject_now(w, msg, rc == OCB_ERR_FULL ? OCB_CMD_QUEUE_FULL : OCB_CMD_INTERNAL,
                       "the command journal cannot take the command now (state store busy or "
                       "stopping)");
        }
        return;
    }
    inbox_push(w, m);
}

static void release_slot(struct ocb_cmd_worker *w)
{
    pthread_mutex_lock(&w->lock);
    if (w->held > 0)
        w->held--;
    metrics_gauge_set("ocb_command_queue_depth", "", (int64_t)w->held);
    pthread_mutex_unlock(&w->lock);
}

/* ---- MQTT 5 requesters (the map is requesters.c; these run on any thread) */

/* An ocb_requester_emit: forward one status; runs under the map's lock and only queues. */
static void publish_status(void *ctx, const struct ocb_requester *r, const char *body, size_t len)
{
    struct ocb_cmd_worker *w = ctx;
    struct ocb_mqtt_pub pub = {
        .topic = r->response_topic,
        .payload = body,
        .len = len,
        .notify_type = "commandStatus",
        .content_type = "application/json",
        .correlation = r->corr_len ? r->corr : NULL,
        .correlation_len = r->corr_len,
    };
    enum ocb_err rc = mqtt_link_publish(w->link, &pub, NULL, NULL);
    if (rc != OCB_OK) {
        metrics_counter_add("ocb_command_answers_dropped_total", "", 1);
        log_warn(MOD, NULL, "status of %s not forwarded to %s: %s", r->command_id,
                 r->response_topic, ocb_strerror(rc));
    }
}

/*
 * A create without a requester: tell the other replicas there is nothing to
 * forward, so that they do not look for one each time a status arrives.
 */
static void share_no_requester(struct ocb_cmd_worker *w, const struct job *job,
                               const char *command_id)
{
    struct ocb_requester e;
    memset(&e, 0, sizeof(e));
    snprintf(e.app_id, sizeof(e.app_id), "%s", job->target.app_id);
    snprintf(e.command_id, sizeof(e.command_id), "%s", command_id);
    int64_t life_ms =
        (job->req.expire_time >= 0 ? job->req.expire_time : 172800) * 1000LL + DEVICE_RETRANSMIT_MS;
    enum ocb_err rc = coord_requester_put_async(w->coord, &e, life_ms);
    if (rc != OCB_OK)
        log_debug(MOD, NULL, "command %s not marked in redis: %s", command_id, ocb_strerror(rc));
}

/*
 * Worker thread: publish a create's answer, then remember its requester.
 * In that order no status of this command can reach the response topic
 * before the answer: until the insert, its statuses are only kept, and the
 * insert replays them.
 */
/* A requester to share once the broker has the answer (coord.h). */
struct acked_put {
    struct ocb_coord *coord;
    struct ocb_requester e;
    int64_t ttl_ms;
    struct jtrack *t; /* the journal row's copy count, or NULL */
};

/*
 * paho's thread (or whichever ends the publish): the answer on the response
 * topic is with the broker, so another replica's forwarded status can no
 * longer overtake it there.  Queued for coord's thread: this one must not
 * wait on Redis.  Shared even when the publish failed: the answer is then
 * in the outbox, and losing the statuses would be worse than a reorder.
 */
static void share_after_ack(void *ctx, enum ocb_err rc)
{
    struct acked_put *p = ctx;
    enum ocb_err qrc = coord_requester_put_async(p->coord, &p->e, p->ttl_ms);
    if (qrc != OCB_OK)
        log_warn(MOD, NULL, "requester of %s not shared: %s", p->e.command_id, ocb_strerror(qrc));
    jtrack_put(p->t, rc == OCB_OK);
    free(p);
}

/*
 * With coordination: the answer on its commandResponse topic, then on the
 * response topic with share_after_ack as its done.  Publishes from two
 * replicas travel on two connections, so "shared after published" is not
 * enough for order; "shared after the broker acknowledged" is.
 */
static void answer_and_share(struct ocb_cmd_worker *w, const struct job *job,
                             const struct ocb_requester *e, int64_t life_ms, const char *payload,
                             size_t len)
{
    /* The journal row keeps the answer until every copy was PUBACKed (answer_publish). */
    struct jtrack *t = NULL;
    if (job->jid && w->journal) {
        journal_answer(w->journal, job->jid, e->command_id, payload, len);
        t = jtrack_new(w->journal, job->jid);
    }
    answer_send_tracked(w, true, job->answer_topic, NULL, NULL, 0, payload, len, t);
    struct acked_put *p = malloc(sizeof(*p));
    enum ocb_err rc = OCB_ERR_NOMEM;
    if (p) {
        p->coord = w->coord;
        p->e = *e;
        p->ttl_ms = life_ms;
        p->t = t;
        struct ocb_mqtt_pub pub = {
            .topic = job->response_topic,
            .payload = payload,
            .len = len,
            .notify_type = "commandResponse",
            .content_type = "application/json",
            .correlation = job->corr,
            .correlation_len = job->corr_len,
        };
        jtrack_get(t); /* share_after_ack's */
        /* Keep the order of answers: once something waits, queue behind it. */
        rc = !ocb_list_empty(&w->outbox) ? OCB_ERR_FULL
                                         : mqtt_link_publish(w->link, &pub, share_after_ack, p);
        if (rc != OCB_OK && t)
            atomic_fetch_sub(&t->refs, 1); /* share_after_ack never runs */
    }
    if (rc == OCB_OK) {
        jtrack_put(t, true); /* this function's; share_after_ack owns p */
        return;
    }
    free(p);
    outbox_add(w, job->response_topic, payload, len, job->corr, job->corr_len, t);
    jtrack_put(t, true);
    if ((rc = coord_requester_put(w->coord, e, life_ms)) != OCB_OK)
        log_warn(MOD, NULL,
                 "%s: requester of %s not shared (%s): statuses pushed to another replica will "
                 "not reach %s",
                 job->answer_topic, e->command_id, ocb_strerror(rc), job->response_topic);
}

/*
 * Worker thread: publish a create's answer, then remember its requester.
 * In that order no status of this command can reach the response topic
 * before the answer: until the insert, its statuses are only kept, and the
 * insert replays them.
 */
static void answer_and_remember(struct ocb_cmd_worker *w, const struct job *job,
                                const char *command_id, const char *payload, size_t len)
{
    int64_t now = ocb_now_ms();
    /* The entry lives as long as statuses can come: the command's cache
     * time (platform default 48 h) plus the device retransmission window. */
    int64_t life_ms =
        (job->req.expire_time >= 0 ? job->req.expire_time : 172800) * 1000LL + DEVICE_RETRANSMIT_MS;
    struct ocb_requester e;
    enum ocb_err rc = requesters_entry_fill(&e, job->target.app_id, command_id, job->response_topic,
                                            job->corr, job->corr_len, now + life_ms);
    if (w->coord && rc == OCB_OK)
        answer_and_share(w, job, &e, life_ms, payload, len);
    else
        answer_publish(w, true, job->answer_topic, job->response_topic, job->corr, job->corr_len,
                       payload, len, job->jid, command_id);
    bool evicted = false;
    if (rc == OCB_OK)
        rc = requesters_insert(w->requesters, &e, now, publish_status, w, &evicted);
    if (evicted)
        metrics_counter_add("ocb_command_requesters_evicted_total", "", 1);
    /* Persisted too (asynchronously), so statuses after a restart still find it. */
    if (rc == OCB_OK && w->journal)
        journal_requester_put(w->journal, &e, ocb_wall_ms() + life_ms);
    if (rc != OCB_OK)
        log_warn(MOD, NULL, "%s: statuses of %s will not reach %s: %s", job->answer_topic,
                 command_id, job->response_topic, ocb_strerror(rc));
}

void cmd_worker_on_status(void *ctx, const char *app_id, const char *device_id,
                          const char *command_id, const char *body, size_t len)
{
    struct ocb_cmd_worker *w = ctx;
    char parsed_id[OCB_COMMAND_ID_MAX + 1];
    char result[64] = "";
    (void)device_id;
    if (!w || !app_id || !command_id || !body)
        return;
    /* Only the resultCode is needed from the body (to know when the
     * command is over); an unreadable one is forwarded all the same. */
    if (command_status_parse(body, len, parsed_id, sizeof(parsed_id), result, sizeof(result)) !=
        OCB_OK)
        result[0] = '\0';
    bool final = command_status_is_final(result);
    bool known = requesters_on_status(w->requesters, app_id, command_id, body, len, final,
                                      FINAL_GRACE_MS, ocb_now_ms(), publish_status, w);
    /* Another replica may have created it: coord's thread asks Redis and
     * publishes from there (this is an MHD thread; it must not wait).  A
     * final status goes there in any case, to shorten the shared entry. */
    enum ocb_err rc;
    if ((!known || final) && w->coord &&
        (rc = coord_status_forward(w->coord, app_id, command_id, body, len, final, FINAL_GRACE_MS,
                                   publish_status, w)) != OCB_OK)
        log_warn(MOD, NULL, "status of %s not looked up in redis: %s", command_id,
                 ocb_strerror(rc));
}

/* ---- jobs (worker thread) */

/* The app's state, active or not (a reload may have dropped it). */
static struct wapp *find_wapp_any(struct ocb_cmd_worker *w, const char *app_id)
{
    for (size_t i = 0; i < w->n_apps; i++)
        if (strcmp(w->apps[i].cfg->app_id, app_id) == 0)
            return &w->apps[i];
    return NULL;
}

/* The app's state when commands are on for it. */
static struct wapp *find_wapp(struct ocb_cmd_worker *w, const char *app_id)
{
    struct wapp *app = find_wapp_any(w, app_id);
    return app && app->active ? app : NULL;
}

/* Move job to state `to`; any other transition than the diagram's is a bug. */
static void job_to(struct job *job, enum job_state to)
{
    static const unsigned allowed[] = {
        [JOB_NEW] = 1u << JOB_QUEUED,
        [JOB_QUEUED] = 1u << JOB_SENDING | 1u << JOB_ANSWERED,
        [JOB_SENDING] = 1u << JOB_BACKOFF | 1u << JOB_ANSWERED,
        [JOB_BACKOFF] = 1u << JOB_SENDING | 1u << JOB_ANSWERED,
        [JOB_ANSWERED] = 0,
    };
    assert(job->state <= JOB_ANSWERED && (allowed[job->state] & (1u << to)));
    (void)allowed; /* without assertions (NDEBUG) */
    job->state = to;
}

static void job_free(struct job *job)
{
    if (!job)
        return;
    command_req_cleanup(&job->req);
    api_job_cleanup(&job->aj);
    reconcile_scan_cleanup(&job->rec.scan);
    free(job->rec.callback_url);
    free(job->response_topic);
    free(job->corr);
    free(job->body);
    free(job);
}

static struct answer job_answer(const struct job *job)
{
    struct answer a = {
        .topic = job->answer_topic,
        .response_topic = job->response_topic,
        .corr = job->corr,
        .corr_len = job->corr_len,
        .correlation_id = job->req.correlation_id,
        .jid = job->jid,
        .op = job->api ? (job->aj.req.op_known ? api_op_name(job->aj.req.op) : "") : NULL,
        .app_id = job->target.app_id,
    };
    return a;
}

/* The job was answered: unlink it from its app's FIFO, free it and give its queue slot back. */
static void job_finish(struct ocb_cmd_worker *w, struct job *job)
{
    job_to(job, JOB_ANSWERED);
    ocb_list_remove(&job->link); /* a no-op when it never reached the FIFO */
    job_free(job);
    release_slot(w);
}

/* Build the REST call of a validated command. */
static enum ocb_err job_prepare(struct ocb_cmd_worker *w, struct job *job)
{
    char esc[3 * OCB_COMMAND_ID_MAX + 1];
    char url[2048];
    enum ocb_err rc;
    switch (job->req.kind) {
    case OCB_COMMAND_CREATE:
        rc = command_callback_url(w->cfg->http.public_url, job->app->cfg->app_id,
                                  job->app->cfg->push_token, url, sizeof(url));
        if (rc == OCB_OK)
            rc = command_create_body(&job->req, job->target.device_id, url, &job->body);
        if (rc == OCB_OK && !(job->rec.callback_url = ocb_strdup_or_null(url)))
            rc = OCB_ERR_NOMEM;
        snprintf(job->path, sizeof(job->path), "%s", PATH_COMMANDS);
        job->method = "POST";
        job->op = "createCommand";
        return rc;
    case OCB_COMMAND_CANCEL:
        rc = command_url_escape(job->req.command_id, esc, sizeof(esc));
        if (rc == OCB_OK)
            snprintf(job->path, sizeof(job->path), "%s/%s", PATH_COMMANDS, esc);
        job->body = ocb_strdup_or_null("{\"status\":\"CANCELED\"}");
        job->method = "PUT";
        job->op = "cancelCommand";
        return rc != OCB_OK ? rc : job->body ? OCB_OK : OCB_ERR_NOMEM;
    case OCB_COMMAND_CANCEL_ALL:
        snprintf(job->path, sizeof(job->path), "%s", PATH_CANCEL_TASKS);
        job->method = "POST";
        job->op = "cancelAllCommands";
        return command_cancel_all_body(job->target.device_id, &job->body);
    }
    return OCB_ERR_INVALID;
}

/* ---- the command journal's points in a job's life (worker thread unless said) */

/* A journaled message that needs no answer: its row goes. */
static void journal_forget(struct ocb_cmd_worker *w, int64_t jid)
{
    if (jid && w->journal)
        journal_delete(w->journal, jid);
}

/*
 * Before validation: a message whose append failed is answered and not run
 * (it is nowhere on disk, so it must not be executed: a crash could not
 * account for it); a recovered row that was answered already is only
 * published again.  True when m was dealt with (job freed, slot released).
 */
static bool journal_taken(struct ocb_cmd_worker *w, struct inmsg *m, struct job *job)
{
    if (m->jrc != OCB_OK) {
        struct answer_meta mm;
        struct answer a = {
            .topic = job->answer_topic,
            .response_topic = m->response_topic,
            .corr = m->corr,
            .corr_len = m->corr_len,
        };
        answer_meta_fill(w, m->topic, m->payload, m->len == SIZE_MAX ? 0 : m->len, &mm, &a);
        answer_bridge(w, true, &a, OCB_CMD_INTERNAL, 0,
                      "the command journal cannot be written (state.dir full or failing): the "
                      "command was not executed",
                      true);
        answer_meta_cleanup(&mm);
    } else if (m->jstate == OCB_JOURNAL_ANSWERED) {
        log_info(MOD, NULL, "%s: publishing the journaled answer again", job->answer_topic);
        answer_send(w, true, job->answer_topic, m->response_topic, m->corr, m->corr_len, m->answer,
                    m->answer_len, m->jid);
    } else {
        return false;
    }
    job_free(job);
    release_slot(w);
    return true;
}

/*
 * A recovered row re-enters as it left: its own deadline, and a row found
 * `sending` has an unknown outcome, so a create queries the platform before
 * it creates again (reconcile_begin); a cancel is simply sent again.
 */
static void reconcile_begin(struct job *job, long long first_s);

static void journal_resume(const struct inmsg *m, struct job *job)
{
    if (m->jstate < 0)
        return;
    job->deadline_ms = m->deadline_ms;
    if (m->jstate != OCB_JOURNAL_SENDING)
        return;
    job->jsending = true;
    if (job->api) {
        api_job_resume_sending(&job->aj, m->first_s, (long long)time(NULL));
        if (api_job_in_grace(&job->aj)) /* as for a create, below */
            job->next_try_ms = ocb_now_ms() + job->w->cfg->platform.timeout_ms;
        return;
    }
    if (job->req.kind != OCB_COMMAND_CREATE)
        return;
    reconcile_begin(job, m->first_s > 0 ? m->first_s : (long long)time(NULL));
    /* The create may have left just before the crash and still be on its way through the
     * platform: give it platform.timeout_ms, as for any unanswered create, before asking. */
    job->rec.grace = false;
    job->next_try_ms = ocb_now_ms() + job->w->cfg->platform.timeout_ms;
}

/* A validated job into its app's FIFO, with the requester's MQTT 5 properties. */
static void job_enqueue(struct ocb_cmd_worker *w, struct inmsg *m, struct job *job)
{
    job->response_topic = m->response_topic;
    job->corr = m->corr;
    job->corr_len = m->corr_len;
    m->response_topic = NULL;
    m->corr = NULL;
    job->deadline_ms = m->arrived_ms + (int64_t)w->cfg->platform.command_deadline_s * 1000;
    job->next_try_ms = 0;
    journal_resume(m, job);
    job_to(job, JOB_QUEUED);
    ocb_list_push_back(&job->app->jobs, &job->link);
}

/*
 * What refuses an inbox message before its payload counts, in the same order
 * for commands and api requests: retained, a bad topic, an unknown app, an
 * app without a secret.  kind names the topics ("command", "api"), form is the
 * expected topic after <prefix>/<appId>/, off says what a secret-less app
 * lacks.  Returns OCB_CMD_OK (why untouched) and sets job->app when nothing
 * refuses it.
 */
static enum ocb_command_code refuse_envelope(struct ocb_cmd_worker *w, const struct inmsg *m,
                                             struct job *job, bool topic_ok, bool app_known,
                                             const char *kind, const char *form, const char *off,
                                             char *why, size_t cap)
{
    if (m->retained) {
        snprintf(why, cap, "retained messages on %s topics are never executed", kind);
        return OCB_CMD_RETAINED_COMMAND_IGNORED;
    }
    if (!topic_ok) {
        snprintf(why, cap, "expected %s/<appId>/%s", w->cfg->mqtt.topic_prefix, form);
        return OCB_CMD_INVALID_TOPIC;
    }
    if (!app_known) {
        snprintf(why, cap, "app \"%.64s\" is not configured", job->target.app_id);
        return OCB_CMD_UNKNOWN_APP;
    }
    if (!(job->app = find_wapp(w, job->target.app_id))) {
        snprintf(why, cap, "app \"%.64s\" has no secret: %s", job->target.app_id, off);
        return OCB_CMD_COMMANDS_DISABLED;
    }
    return OCB_CMD_OK;
}

/*
 * An inbox message on an api topic: validated (api_parse with the app's
 * apps[].api) into a job, or answered now.  The same precedence as for
 * commands: retained, topic, unknown app, app without a secret, then the
 * payload (whose correlationId every answer echoes).
 */
static void take_api_message(struct ocb_cmd_worker *w, struct inmsg *m, struct job *job)
{
    struct ocb_api_job *aj = &job->aj;
    char why[160] = "";
    enum ocb_command_code code;

    job->api = true;
    api_job_init(aj);
    enum ocb_err trc = api_topic_parse(w->cfg->mqtt.topic_prefix, m->topic, &aj->target);
    const struct ocb_app *cfg_app =
        trc == OCB_OK ? config_find_app(w->apps_cfg, aj->target.app_id) : NULL;
    unsigned allowed = cfg_app ? cfg_app->api_ops : OCB_API_ALL_OPS;
    if (m->len == SIZE_MAX)
        code = api_parse(&aj->target, allowed, "", 1, 0, &aj->req, why, sizeof(why));
    else
        code = api_parse(&aj->target, allowed, m->payload, m->len,
                         w->cfg->platform.max_command_bytes, &aj->req, why, sizeof(why));
    job->req.correlation_id = aj->req.correlation_id; /* where every answer looks for it */
    aj->req.correlation_id = NULL;
    snprintf(job->target.app_id, sizeof(job->target.app_id), "%s", aj->target.app_id);
    snprintf(job->target.device_id, sizeof(job->target.device_id), "%s",
             aj->target.no_device ? "_" : aj->target.device_id);
    enum ocb_command_code refused =
        refuse_envelope(w, m, job, trc == OCB_OK, cfg_app != NULL, "api", "<deviceId or _>/api",
                        "the device API is off", why, sizeof(why));
    if (refused != OCB_CMD_OK)
        code = refused;
    if (code != OCB_CMD_OK) {
        struct answer a = job_answer(job);
        answer_bridge(w, true, &a, code, 0, why, code == OCB_CMD_INTERNAL);
        job_free(job);
        release_slot(w);
        return;
    }
    job->op = api_op_name(aj->req.op);
    job->method = aj->req.method;
    job_enqueue(w, m, job);
}

/* Validate one inbox message: either a job in its app's FIFO, or an answer now. */
static void take_message(struct ocb_cmd_worker *w, struct inmsg *m)
{
    struct job *job = calloc(1, sizeof(*job));
    char why[160] = "";
    if (job) {
        ocb_list_init(&job->link);
        ocb_list_init(&job->send_link);
        job->w = w;
        job->jid = m->jid;
    }
    enum ocb_command_code code = OCB_CMD_OK;
    struct answer a = {
        .topic = NULL,
        .response_topic = m->response_topic,
        .corr = m->corr,
        .corr_len = m->corr_len,
        .jid = m->jid,
    };
    if (!job) {
        char topic[TOPIC_MAX];
        if (answer_topic_for(m->topic, topic, sizeof(topic))) {
            a.topic = topic;
            answer_bridge(w, true, &a, OCB_CMD_INTERNAL, 0, "out of memory", true);
        }
        release_slot(w);
        return;
    }
    /* An empty message is how a client clears a retained command
     * (mosquitto_pub -r -n): the broker forwards it, and answering it would
     * only add a second RETAINED_COMMAND_IGNORED for the same mistake.  It
     * is never a command, and MQTT 3.1.1 brokers deliver it live with the
     * retain flag cleared, so it is a clear whatever the flag says. */
    if (m->len == 0) {
        log_info(MOD, NULL, "empty message on %s: a retained command was cleared", m->topic);
        count_outcome("retained_cleared");
        journal_forget(w, m->jid);
        job_free(job);
        release_slot(w);
        return;
    }
    if (!answer_topic_for(m->topic, job->answer_topic, sizeof(job->answer_topic))) {
        log_warn(MOD, NULL, "message on %s ignored: not a command topic", m->topic);
        count_outcome(command_code_name(OCB_CMD_INVALID_TOPIC));
        journal_forget(w, m->jid);
        job_free(job);
        release_slot(w);
        return;
    }
    if (journal_taken(w, m, job))
        return;
    if (is_api_topic(m->topic)) {
        take_api_message(w, m, job);
        return;
    }
    enum ocb_err trc = command_topic_parse(w->cfg->mqtt.topic_prefix, m->topic, &job->target);
    bool cancel = job->target.cancel;
    /* Parse even when something else is wrong: the answer echoes correlationId. */
    if (m->len == SIZE_MAX) {
        code = command_parse(cancel, "", 1, 0, &job->req, why, sizeof(why));
    } else {
        code = command_parse(cancel, m->payload, m->len, w->cfg->platform.max_command_bytes,
                             &job->req, why, sizeof(why));
    }
    enum ocb_command_code refused = refuse_envelope(
        w, m, job, trc == OCB_OK, trc == OCB_OK && config_find_app(w->apps_cfg, job->target.app_id),
        "command", "<deviceId>/command|commandCancel", "commands are off", why, sizeof(why));
    if (refused != OCB_CMD_OK)
        code = refused;
    if (code == OCB_CMD_OK && job_prepare(w, job) != OCB_OK) {
        code = OCB_CMD_INVALID_PAYLOAD;
        snprintf(why, sizeof(why), "the command does not fit the platform's limits");
    }
    if (code != OCB_CMD_OK) {
        a = job_answer(job);
        answer_bridge(w, true, &a, code, 0, why, code == OCB_CMD_INTERNAL);
        job_free(job);
        release_slot(w);
        return;
    }
    job_enqueue(w, m, job);
}

static unsigned jitter(struct ocb_cmd_worker *w, unsigned ms)
{
    /* +-25 %: bridges restarted together must not retry in lockstep. */
    unsigned span = ms / 2 + 1;
    return ms - ms / 4 + (unsigned)(rand_r(&w->rand_state) % span);
}

/* The platform's own error, passed on (error.source = "platform"). */
static void answer_platform_error(struct ocb_cmd_worker *w, const struct job *job, long status,
                                  const char *code, const char *desc, bool retryable)
{
    struct answer a = job_answer(job);
    struct ocb_command_outcome o = {
        .correlation_id = job->req.correlation_id,
        .ok = false,
        .http_status = status,
        .code = code[0] ? code : "HTTP_ERROR",
        .desc = desc,
        .from_platform = true,
        .retryable = retryable,
        .op = a.op,
    };
    char *payload = NULL;
    size_t len = 0;
    if (a.op)
        count_api(a.app_id, a.op, "platform_error");
    else
        count_outcome("platform_error");
    log_info(MOD, NULL, "%s: %s failed: HTTP %ld %s %s", job->answer_topic, job->op, status, code,
             desc);
    if (command_response_format(&o, &payload, &len) == OCB_OK)
        answer_publish(w, true, a.topic, a.response_topic, a.corr, a.corr_len, payload, len, a.jid,
                       NULL);
    free(payload);
}

/*
 * Out of time.  A platform that kept throttling us was reachable and said
 * no: its 403/1010009 is passed on (retryable).  Anything else (5xx, no
 * answer, timeouts) is PLATFORM_UNREACHABLE.
 */
static bool reconcile_answer_unknown(struct ocb_cmd_worker *w, const struct job *job);

static void answer_unreachable(struct ocb_cmd_worker *w, struct job *job)
{
    if (reconcile_answer_unknown(w, job))
        return;
    if (job->last_cls == OCB_PLATFORM_THROTTLED) {
        answer_platform_error(w, job, job->last_status, job->last_code, job->last_text, true);
        return;
    }
    char desc[400];
    snprintf(desc, sizeof(desc), "gave up after %u attempt(s) in %u s: %s", job->attempts,
             w->cfg->platform.command_deadline_s, job->last_desc[0] ? job->last_desc : "no answer");
    struct answer a = job_answer(job);
    answer_bridge(w, true, &a, OCB_CMD_PLATFORM_UNREACHABLE, job->last_status, desc, true);
}

static void remember_failure(struct job *job, const struct ocb_platform_reply *r)
{
    job->last_status = r->status;
    job->last_cls = r->cls;
    snprintf(job->last_code, sizeof(job->last_code), "%s", r->code);
    snprintf(job->last_text, sizeof(job->last_text), "%s", r->desc);
    snprintf(job->last_desc, sizeof(job->last_desc), "%s%s%s", r->code, r->code[0] ? " " : "",
             r->desc);
}

/* ---- create reconciliation (worker thread)
 *
 * The narrow interface to a job: reconcile_note_create() after each create
 * attempt, reconcile_call() when a call is built, reconcile_on_reply() for
 * the query's answers, reconcile_answer_unknown() at the deadline, and
 * reconcile_claim() for every commandId a create of ours got.  A journal that
 * finds a create in state `sending` at start would call reconcile_begin().
 */

static uint64_t device_hash(const char *s);

static void count_reconciliation(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    metrics_counter_add("ocb_command_reconciliations_total", labels, 1);
}

/* Remember that command_id is ours, so no other job adopts it. */
static void reconcile_claim(struct ocb_cmd_worker *w, const char *command_id)
{
    w->claims[w->claims_next] = device_hash(command_id);
    w->claims_next = (w->claims_next + 1) % RECONCILE_CLAIMS;
}

static bool reconcile_is_claimed(void *ctx, const char *command_id)
{
    const struct ocb_cmd_worker *w = ctx;
    uint64_t h = device_hash(command_id);
    for (size_t i = 0; i < RECONCILE_CLAIMS; i++)
        if (w->claims[i] == h)
            return true;
    return false;
}

/* The create's outcome is unknown from now on: its next call is the query. */
static void reconcile_begin(struct job *job, long long first_s)
{
    struct job_reconcile *rec = &job->rec;
    rec->unknown = true;
    rec->grace = true;
    rec->querying = false;
    rec->page = 0;
    if (!rec->first_s || first_s < rec->first_s)
        rec->first_s = first_s;
    reconcile_scan_cleanup(&rec->scan);
}

/* After a create attempt: did it go out and get no answer? */
static void reconcile_note_create(struct job *job, const struct ocb_platform_reply *r)
{
    if (!job->api && job->req.kind == OCB_COMMAND_CREATE && r->transport != OCB_OK && r->sent &&
        r->cls == OCB_PLATFORM_RETRY)
        reconcile_begin(job, job->rec.first_s);
}

/*
 * The delay before the first query after an unanswered create: at least
 * platform.timeout_ms, so a platform that is merely slow (still working on
 * the create we gave up on) has had as long again to store it before we ask
 * whether it did.  Later retries of the query back off as usual.
 */
static unsigned reconcile_delay(const struct ocb_cmd_worker *w, const struct job *job,
                                unsigned delay)
{
    bool grace = job->api ? api_job_in_grace(&job->aj) : job->rec.unknown && job->rec.grace;
    if (grace && delay < w->cfg->platform.timeout_ms)
        return w->cfg->platform.timeout_ms;
    return delay;
}

/* Dispatch: the call to make for job, the query while the outcome is unknown. */
static enum ocb_err reconcile_call(struct job *job, struct ocb_platform_call *call)
{
    struct job_reconcile *rec = &job->rec;
    if (job->api)
        return api_job_call(&job->aj, (long long)time(NULL), call);
    if (job->req.kind != OCB_COMMAND_CREATE)
        return OCB_OK;
    if (!rec->unknown) {
        if (!rec->first_s)
            rec->first_s = (long long)time(NULL);
        return OCB_OK;
    }
    long long since = rec->first_s - OCB_RECONCILE_MARGIN_S;
    if (!rec->page_size)
        rec->page_size = OCB_RECONCILE_PAGE_SIZE;
    enum ocb_err rc = reconcile_query_path(job->target.device_id, since > 0 ? since : 0, rec->page,
                                           rec->page_size, rec->path, sizeof(rec->path));
    if (rc != OCB_OK)
        return rc;
    call->op = "queryCommands";
    call->method = "GET";
    call->path = rec->path;
    call->body = NULL;
    rec->querying = true;
    rec->grace = false;
    return OCB_OK;
}

enum reconcile_step {
    RECONCILE_ANSWERED, /* adopted and answered: finish the job */
    RECONCILE_NEXT,     /* the next page, or the create: call again at once */
    RECONCILE_FAILED,   /* the query failed: *failed says how, retry it like any call */
};

/* Answer job with the command the query found (the normal success answer, reconciled). */
static void reconcile_adopt(struct ocb_cmd_worker *w, const struct job *job, long status)
{
    const struct ocb_reconcile_scan *scan = &job->rec.scan;
    struct answer a = job_answer(job);
    struct ocb_command_outcome o = {
        .correlation_id = job->req.correlation_id,
        .ok = true,
        .http_status = status,
        .platform_body = scan->resource,
        .platform_len = scan->resource_len,
        .reconciled = true,
    };
    char *payload = NULL;
    size_t len = 0;
    reconcile_claim(w, scan->command_id);
    count_reconciliation("adopted");
    if (command_response_format(&o, &payload, &len) != OCB_OK) {
        answer_bridge(w, true, &a, OCB_CMD_INTERNAL, status,
                      "out of memory answering an adopted command", true);
        return;
    }
    count_outcome("ok");
    log_info(MOD, NULL,
             "%s: the create's answer was lost; adopted command %s the platform created "
             "(%u match(es), %u already ours)",
             job->answer_topic, scan->command_id, scan->matches, scan->claimed);
    if (job->response_topic) {
        answer_and_remember(w, job, scan->command_id, payload, len);
    } else {
        answer_publish(w, true, a.topic, a.response_topic, a.corr, a.corr_len, payload, len, a.jid,
                       scan->command_id);
        if (w->coord)
            share_no_requester(w, job, scan->command_id);
    }
    free(payload);
}

/* The query's answer.  On RECONCILE_FAILED *failed is the reply to retry on. */
static enum reconcile_step reconcile_on_reply(struct ocb_cmd_worker *w, struct job *job,
                                              const struct ocb_platform_reply *r,
                                              struct ocb_platform_reply *failed)
{
    struct job_reconcile *rec = &job->rec;
    rec->querying = false;
    if (r->cls == OCB_PLATFORM_OK) {
        const struct ocb_reconcile_want want = {
            .device_id = job->target.device_id,
            .service_id = job->req.service_id,
            .method = job->req.method,
            .paras = job->req.paras,
            .callback_url = job->rec.callback_url,
            .expire_time = job->req.expire_time,
            .max_retransmit = job->req.max_retransmit,
            .since_s = rec->first_s - OCB_RECONCILE_MARGIN_S,
        };
        enum ocb_err rc =
            reconcile_scan_page(&want, r->body, r->len, reconcile_is_claimed, w, &rec->scan);
        if (rc == OCB_OK) {
            if (reconcile_scan_more(&rec->scan, rec->page, rec->page_size)) {
                rec->page++;
                return RECONCILE_NEXT;
            }
            if (rec->scan.found) {
                reconcile_adopt(w, job, r->status);
                return RECONCILE_ANSWERED;
            }
            /* Not there: the platform never took the create.  Create it now; should that
             * be lost too, the query starts from the first attempt again. */
            log_info(MOD, NULL,
                     "%s: the platform has no command from the unanswered create "
                     "(%u identical one(s), all already ours); creating it",
                     job->answer_topic, rec->scan.claimed);
            count_reconciliation("created");
            rec->unknown = false;
            reconcile_scan_cleanup(&rec->scan);
            return RECONCILE_NEXT;
        }
        *failed = *r;
        failed->cls = OCB_PLATFORM_RETRY;
        snprintf(failed->desc, sizeof(failed->desc), "deviceCommands query answer unusable: %s",
                 ocb_strerror(rc));
    } else if (r->transport == OCB_ERR_TOO_BIG && rec->page_size > 1) {
        /* Big commands: a page over platform.max_reply_bytes.  Smaller pages, from the start. */
        rec->page_size /= 2;
        rec->page = 0;
        reconcile_scan_cleanup(&rec->scan);
        log_info(MOD, NULL, "%s: query page over the reply cap; asking for %ld at a time",
                 job->answer_topic, rec->page_size);
        return RECONCILE_NEXT;
    } else {
        /* Even a definite error (4xx) is not an answer to "was it created?": keep asking
         * until the deadline, then say the outcome is unknown. */
        *failed = *r;
        if (failed->cls == OCB_PLATFORM_FAILED)
            failed->cls = OCB_PLATFORM_RETRY;
    }
    /* Start the query over: a page that failed may be followed by a changed list. */
    rec->page = 0;
    reconcile_scan_cleanup(&rec->scan);
    return RECONCILE_FAILED;
}

/* At the deadline: if the create's outcome is still unknown, say so (and true). */
static bool reconcile_answer_unknown(struct ocb_cmd_worker *w, const struct job *job)
{
    if (job->api && job->aj.unknown) {
        char desc[480];
        snprintf(desc, sizeof(desc),
                 "the platform may have done it: a %s went unanswered and %s within %u s (%u "
                 "attempt(s)); last: %s",
                 job->op,
                 job->aj.req.retry == OCB_API_RETRY_RECONCILE
                     ? "what it may have created could not be queried"
                     : "no retry got an answer",
                 w->cfg->platform.command_deadline_s, job->attempts,
                 job->last_desc[0] ? job->last_desc : "no answer");
        struct answer a = job_answer(job);
        answer_bridge(w, true, &a, OCB_CMD_OUTCOME_UNKNOWN, job->last_status, desc, false);
        return true;
    }
    if (!job->rec.unknown)
        return false;
    char desc[480];
    snprintf(desc, sizeof(desc),
             "the platform may have created the command: a create went unanswered and its "
             "commands could not be queried within %u s (%u attempt(s)); last: %s",
             w->cfg->platform.command_deadline_s, job->attempts,
             job->last_desc[0] ? job->last_desc : "no answer");
    count_reconciliation("unknown");
    struct answer a = job_answer(job);
    answer_bridge(w, true, &a, OCB_CMD_OUTCOME_UNKNOWN, job->last_status, desc, false);
    return true;
}

/* The call of job completed (or never left): its slots in the app's windows count from now. */
static void rate_done(struct ocb_cmd_worker *w, struct job *job, int64_t now)
{
    struct wapp *app = job->app;

    rate_limit_completed(&app->rate, now);
    if (job->in_rate_local)
        rate_limit_completed(&app->rate_local, now);
    job->in_rate_local = false;
    if (job->rate_member[0]) {
        (void)coord_rate_done(w->coord, app->cfg->app_id, job->rate_member);
        job->rate_member[0] = '\0';
    }
}

/*
 * A device API write whose answer was lost, answered from what the retry
 * found: the delete already done (platform null), or the resource a
 * reconciliation query found (platform = the device or group).  Both ok,
 * "reconciled":true.
 */
static void api_answer_found(struct ocb_cmd_worker *w, const struct job *job, long status)
{
    const struct ocb_api_scan *scan = &job->aj.scan;
    bool found = scan->found;
    struct answer a = job_answer(job);
    struct ocb_command_outcome o = {
        .correlation_id = job->req.correlation_id,
        .ok = true,
        .http_status = found ? status : 0,
        .platform_body = found ? scan->resource : NULL,
        .platform_len = found ? scan->resource_len : 0,
        .reconciled = true,
        .op = a.op,
    };
    char *payload = NULL;
    size_t len = 0;
    if (command_response_format(&o, &payload, &len) != OCB_OK) {
        answer_bridge(w, true, &a, OCB_CMD_INTERNAL, status, "out of memory answering", true);
        return;
    }
    count_api(a.app_id, a.op, "ok");
    if (found)
        log_info(MOD, NULL, "%s: the %s's answer was lost; found %s on the platform",
                 job->answer_topic, job->op, scan->id);
    else
        log_info(MOD, NULL, "%s: the %s's answer was lost; the retry found it done",
                 job->answer_topic, job->op);
    answer_publish(w, true, a.topic, a.response_topic, a.corr, a.corr_len, payload, len, a.jid,
                   NULL);
    free(payload);
}

static void on_reply(void *ctx, const struct ocb_platform_reply *r)
{
    struct job *job = ctx;
    struct ocb_cmd_worker *w = job->w;
    struct wapp *app = job->app;
    int64_t now = ocb_now_ms();
    struct answer a = job_answer(job);

    assert(job->state == JOB_SENDING);
    w->in_flight--;
    rate_done(w, job, now);

    if (r->transport == OCB_ERR_STOPPED) {
        /* A journaled command keeps its row (`sending`): the next start reconciles it. */
        if (!job->jid)
            answer_bridge(w, true, &a, OCB_CMD_SHUTTING_DOWN, 0,
                          "the bridge stopped before the platform answered", true);
        job_finish(w, job);
        return;
    }
    struct ocb_platform_reply failed_query;
    if (job->api) {
        switch (api_job_on_reply(&job->aj, r, &failed_query)) {
        case OCB_API_STEP_PASS:
            break;
        case OCB_API_STEP_GONE:
        case OCB_API_STEP_RECONCILED:
            app->throttle_backoff_ms = 0;
            api_answer_found(w, job, r->status);
            job_finish(w, job);
            return;
        case OCB_API_STEP_NEXT: /* the next page, or the write itself: at once */
            app->throttle_backoff_ms = 0;
            job_to(job, JOB_BACKOFF);
            job->next_try_ms = now;
            return;
        case OCB_API_STEP_FAILED:
            r = &failed_query; /* retried below, like any failed call */
            break;
        }
    } else if (job->rec.querying) {
        switch (reconcile_on_reply(w, job, r, &failed_query)) {
        case RECONCILE_ANSWERED:
            app->throttle_backoff_ms = 0;
            job_finish(w, job);
            return;
        case RECONCILE_NEXT: /* the next page, or the create: at once */
            app->throttle_backoff_ms = 0;
            job_to(job, JOB_BACKOFF);
            job->next_try_ms = now;
            return;
        case RECONCILE_FAILED:
            r = &failed_query; /* retried below, like any failed call */
            break;
        }
    } else {
        reconcile_note_create(job, r);
    }
    if (r->cls == OCB_PLATFORM_OK) {
        app->throttle_backoff_ms = 0;
        struct ocb_command_outcome o = {
            .correlation_id = job->req.correlation_id,
            .ok = true,
            .http_status = r->status,
            .platform_body = r->body,
            .platform_len = r->len,
            .op = a.op,
        };
        char *payload = NULL;
        size_t len = 0;
        enum ocb_err rc = command_response_format(&o, &payload, &len);
        if (rc != OCB_OK) {
            answer_bridge(w, true, &a, OCB_CMD_INVALID_REPLY, r->status,
                          "the platform's success reply is not a JSON object", false);
            job_finish(w, job);
            return;
        }
        char command_id[OCB_COMMAND_ID_MAX + 1];
        if (a.op)
            count_api(a.app_id, a.op, "ok");
        else
            count_outcome("ok");
        log_info(MOD, NULL, "%s: %s ok (HTTP %ld, attempt %u)", job->answer_topic, job->op,
                 r->status, job->attempts);
        bool created =
            !job->api && job->req.kind == OCB_COMMAND_CREATE &&
            command_reply_command_id(r->body, r->len, command_id, sizeof(command_id)) == OCB_OK;
        if (created)
            reconcile_claim(w, command_id);
        if (created && job->response_topic) {
            answer_and_remember(w, job, command_id, payload, len);
        } else {
            answer_publish(w, true, a.topic, a.response_topic, a.corr, a.corr_len, payload, len,
                           a.jid, created ? command_id : NULL);
            if (created && w->coord)
                share_no_requester(w, job, command_id);
        }
        free(payload);
        job_finish(w, job);
        return;
    }
    if (r->cls == OCB_PLATFORM_FAILED || now >= job->deadline_ms) {
        if (r->cls != OCB_PLATFORM_FAILED) {
            remember_failure(job, r);
            answer_unreachable(w, job);
            job_finish(w, job);
            return;
        }
        if (r->transport != OCB_OK) {
            /* No usable HTTP answer (reply over the cap): ours to report. */
            answer_bridge(w, true, &a, OCB_CMD_INVALID_REPLY, r->status, r->desc, false);
        } else {
            answer_platform_error(w, job, r->status, r->code, r->desc, false);
        }
        job_finish(w, job);
        return;
    }

    /* Retryable: throttled, 5xx, network, timeout, or a token that keeps failing. */
    job_to(job, JOB_BACKOFF);
    remember_failure(job, r);
    unsigned delay;
    if (r->cls == OCB_PLATFORM_THROTTLED) {
        metrics_counter_add("ocb_platform_throttled_total", "", 1);
        /* Back the whole app off: start at one call's share of the window
         * and double up to the window, so a backlog drains at the limit. */
        unsigned share = 1000;
        if (w->cfg->platform.rate_calls)
            share = (unsigned)((uint64_t)w->cfg->platform.rate_per_seconds * 1000 /
                               w->cfg->platform.rate_calls);
        if (share < 200)
            share = 200;
        app->throttle_backoff_ms = app->throttle_backoff_ms ? app->throttle_backoff_ms * 2 : share;
        unsigned cap = w->cfg->platform.rate_per_seconds * 1000;
        if (app->throttle_backoff_ms > cap)
            app->throttle_backoff_ms = cap;
        delay = jitter(w, app->throttle_backoff_ms);
        app->throttled_until_ms = now + delay;
        log_warn(MOD, NULL, "app %s throttled by the platform; pausing %u ms", app->cfg->app_id,
                 delay);
    } else {
        unsigned shift = job->attempts > 6 ? 5 : job->attempts - 1; /* attempts >= 1 here */
        unsigned base = RETRY_BASE_MS << shift;
        delay = reconcile_delay(w, job, jitter(w, base > RETRY_MAX_MS ? RETRY_MAX_MS : base));
        log_warn(MOD, NULL, "%s: %s attempt %u failed (%s), retrying in %u ms%s", job->answer_topic,
                 job->op, job->attempts, job->last_desc, delay,
                 job->rec.unknown || api_job_in_grace(&job->aj)
                     ? "; its outcome is unknown, querying the platform first"
                     : "");
    }
    job->next_try_ms = now + delay;
    if (job->next_try_ms >= job->deadline_ms) {
        /* Use the whole budget: one last attempt just before the deadline,
         * unless there is no time left for one. */
        if (job->deadline_ms - now > 2 * LAST_TRY_MARGIN_MS) {
            job->next_try_ms = job->deadline_ms - LAST_TRY_MARGIN_MS;
        } else {
            answer_unreachable(w, job);
            job_finish(w, job);
        }
    }
}

/*
 * Device ordering: a command starts only when no earlier command of its app's
 * FIFO targets the same device, so a device gets its commands in the order
 * they were published even though calls for different devices overlap.
 * A pass remembers the devices it has seen in a small hash set; a collision
 * only serialises two devices needlessly, it never reorders.
 */
#define SEEN_SLOTS 2048

static uint64_t device_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h | 1; /* 0 marks an empty slot */
}

/* Record h; true when it was already there. */
static bool seen_add(uint64_t *seen, uint64_t h)
{
    for (size_t i = 0, slot = h % SEEN_SLOTS; i < SEEN_SLOTS; i++, slot = (slot + 1) % SEEN_SLOTS) {
        if (seen[slot] == h)
            return true;
        if (seen[slot] == 0) {
            seen[slot] = h;
            return false;
        }
    }
    return true; /* full: serialise */
}

/*
 * May the app make one more call now?  Alone: its sliding window.  With
 * coordination: that window bounds this replica, the shared one in Redis
 * bounds all replicas together; when Redis cannot answer, a local window at
 * coordination.local_rate_share_pct of the limit stands in.  A slot taken
 * in Redis is named in job->rate_member until the call completes.
 */
static bool rate_allows(struct ocb_cmd_worker *w, struct wapp *app, struct job *job, int64_t now,
                        int64_t *when)
{
    if (!rate_limit_allows(&app->rate, now, when))
        return false;
    if (!w->coord || app->rate.calls == 0)
        return true;
    int64_t retry = 0;
    enum ocb_err rc = coord_rate_take(w->coord, app->cfg->app_id, app->rate.calls,
                                      app->rate.window_ms, job->rate_member, &retry);
    if (rc == OCB_OK)
        return true;
    job->rate_member[0] = '\0';
    if (rc == OCB_ERR_FULL) {
        *when = now + retry;
        return false;
    }
    return rate_limit_allows(&app->rate_local, now, when);
}

/*
 * Hand the calls a dispatch pass chose to libcurl, after their journal rows
 * say `sending` durably: one write (one group commit) for the whole pass,
 * which the worker waits for.  In this order a crash never leaves a row
 * `queued` whose create may have reached the platform (a restart would
 * create it blindly a second time); a row may say `sending` for a call
 * that never left, which costs one query after a restart, never a double.
 * When the journal cannot be written, the calls do not go out: they back
 * off and try again until their deadline (still never sent, so
 * EXPIRED_IN_QUEUE then).
 */
static struct job *sending_of(struct ocb_list *l)
{
    return ocb_list_entry(l, struct job, send_link);
}

static void send_pending(struct ocb_cmd_worker *w, struct ocb_list *list)
{
    size_t n = 0;
    enum ocb_err jrc = OCB_OK;
    struct ocb_list *pos, *tmp;
    ocb_list_for_each (pos, list)
        n += sending_of(pos)->jid && !sending_of(pos)->jsending;
    if (n && w->journal) {
        struct ocb_journal_sending *rows = calloc(n, sizeof(*rows));
        size_t i = 0;
        if (!rows) {
            jrc = OCB_ERR_NOMEM;
        } else {
            ocb_list_for_each (pos, list) {
                const struct job *job = sending_of(pos);
                if (job->jid && !job->jsending)
                    rows[i++] = (struct ocb_journal_sending){
                        .id = job->jid,
                        .first_s = job->api ? (api_job_is_write(&job->aj) ? job->aj.first_s : 0)
                                   : job->req.kind == OCB_COMMAND_CREATE ? job->rec.first_s
                                                                         : 0,
                    };
            }
            jrc = journal_mark_sending(w->journal, rows, n);
            free(rows);
        }
    }
    ocb_list_for_each_safe (pos, tmp, list) {
        struct job *job = sending_of(pos);
        ocb_list_remove(&job->send_link);
        int64_t now = ocb_now_ms();
        if (job->jid && !job->jsending) {
            if (jrc != OCB_OK) {
                /* Not sent after all: give the turn back and try again shortly. */
                w->in_flight--;
                rate_done(w, job, now);
                job->attempts--;
                job->rec.querying = false;
                job->aj.querying = false;
                job_to(job, JOB_BACKOFF);
                job->next_try_ms = now + RETRY_BASE_MS * 2;
                snprintf(job->last_desc, sizeof(job->last_desc),
                         "the command journal cannot be written: %s", ocb_strerror(jrc));
                log_warn(MOD, NULL, "%s: not sent: %s", job->answer_topic, job->last_desc);
                continue;
            }
            job->jsending = true;
        }
        enum ocb_err rc = platform_client_submit(w->pc, &job->call, on_reply, job);
        if (rc != OCB_OK) {
            w->in_flight--;
            rate_done(w, job, now);
            struct answer a = job_answer(job);
            answer_bridge(w, true, &a, OCB_CMD_INTERNAL, 0, ocb_strerror(rc), true);
            job_finish(w, job);
        }
    }
}

/* Start every call that is due and allowed; return the next time to look again. */
static int64_t dispatch(struct ocb_cmd_worker *w)
{
    int64_t now = ocb_now_ms();
    int64_t next = now + 1000;
    struct ocb_list to_send; /* struct job (send_link): calls for send_pending() */
    ocb_list_init(&to_send);
    for (size_t i = 0; i < w->n_apps; i++) {
        struct wapp *app = &w->apps[i];
        struct ocb_list *pos, *tmp;
        bool blocked = false;
        memset(w->seen, 0, sizeof(w->seen));
        ocb_list_for_each_safe (pos, tmp, &app->jobs) {
            struct job *job = ocb_list_entry(pos, struct job, link);
            bool device_busy = seen_add(w->seen, device_hash(job->target.device_id));
            if (job->state == JOB_SENDING) {
                continue;
            }
            if (now >= job->deadline_ms) {
                if (job->attempts == 0 && !job->rec.unknown && !(job->api && job->aj.unknown)) {
                    struct answer a = job_answer(job);
                    answer_bridge(w, true, &a, OCB_CMD_EXPIRED_IN_QUEUE, 0,
                                  "no platform call was possible before the deadline", true);
                } else {
                    answer_unreachable(w, job);
                }
                job_finish(w, job);
                continue;
            }
            if (job->deadline_ms < next)
                next = job->deadline_ms;
            if (blocked || device_busy || job->next_try_ms > now) {
                /* A busy device wakes us by its own completion or retry time. */
                if (!blocked && !device_busy && job->next_try_ms < next)
                    next = job->next_try_ms;
                continue;
            }
            int64_t when = 0;
            if (w->in_flight >= w->cfg->platform.max_in_flight) {
                blocked = true; /* woken by a completion */
            } else if (app->throttled_until_ms > now) {
                blocked = true;
                if (app->throttled_until_ms < next)
                    next = app->throttled_until_ms;
            } else if (!rate_allows(w, app, job, now, &when)) {
                blocked = true;
                if (when < next)
                    next = when;
            } else {
                job->call = (struct ocb_platform_call){
                    .app_id = app->cfg->app_id,
                    .op = job->op,
                    .method = job->method,
                    .path = job->path,
                    .body = job->body,
                };
                enum ocb_err rc = reconcile_call(job, &job->call);
                if (rc != OCB_OK) {
                    struct answer a = job_answer(job);
                    answer_bridge(w, true, &a, OCB_CMD_INTERNAL, 0, ocb_strerror(rc), true);
                    job_finish(w, job);
                } else {
                    /* Counted as sent now, so the rest of the pass sees the limits;
                     * handed to libcurl by send_pending() below. */
                    rate_limit_sent(&app->rate);
                    /* The share window keeps the recent past too, as far as it
                     * holds it, so a switch to degraded mode starts from it. */
                    if (rate_limit_allows(&app->rate_local, now, NULL)) {
                        rate_limit_sent(&app->rate_local);
                        job->in_rate_local = true;
                    }
                    job->attempts++;
                    job_to(job, JOB_SENDING);
                    w->in_flight++;
                    ocb_list_push_back(&to_send, &job->send_link);
                }
            }
        }
    }
    send_pending(w, &to_send);
    return next;
}

static void take_inbox(struct ocb_cmd_worker *w)
{
    struct ocb_list taken, *pos, *tmp;
    ocb_list_init(&taken);
    pthread_mutex_lock(&w->lock);
    ocb_list_splice_back(&taken, &w->inbox);
    pthread_mutex_unlock(&w->lock);
    ocb_list_for_each_safe (pos, tmp, &taken) {
        struct inmsg *m = ocb_list_entry(pos, struct inmsg, link);
        ocb_list_remove(&m->link);
        take_message(w, m);
        inmsg_free(m);
    }
}

/*
 * Start a due subscription sync, or step the one under way.  The sync makes
 * one platform call at a time and only acts on replies, so commands keep
 * flowing while it runs.  A sync asked for while one is under way (a
 * reload) starts when that one is over, with the newest configuration.
 */
/*
 * With coordination: the configuration the sync should reconcile, i.e. the
 * apps whose subscription-sync lease this replica holds (taken or renewed
 * here); the others are left to their holder, with a log line.  Redis
 * unreachable: every app, as with one instance (a sync is idempotent).
 * NULL when no app is ours.
 */
static const struct ocb_config *sync_config(struct ocb_cmd_worker *w)
{
    if (!w->coord)
        return w->apps_cfg;
    /* Shallow: the strings stay apps_cfg's, which a reload may retire while the sync
     * runs, so the copy holds a reference to it; the copy's own count starts at one
     * (the sync's references on it never reach zero: it is not ours to free). */
    config_unref(w->subs_owner);
    w->subs_owner = config_ref(w->apps_cfg);
    config_copy_shallow(&w->subs_cfg, w->apps_cfg);
    w->subs_cfg.n_apps = 0;
    for (size_t i = 0; i < w->apps_cfg->n_apps; i++) {
        const struct ocb_app *a = &w->apps_cfg->apps[i];
        struct wapp *app = find_wapp(w, a->app_id);
        char holder[OCB_COORD_REPLICA_MAX] = "";
        enum ocb_err rc = OCB_OK;
        if (app)
            rc =
                coord_lease(w->coord, a->app_id, "subscriptions", LEASE_MS, holder, sizeof(holder));
        if (app)
            app->lease_held = rc == OCB_OK;
        if (rc == OCB_ERR_FULL) {
            char labels[OCB_METRICS_LABELS_MAX];
            metrics_labels(labels, sizeof(labels), "replica", coord_replica_id(w->coord), NULL);
            metrics_counter_add("ocb_coord_subscription_syncs_skipped_total", labels, 1);
            log_info(MOD, NULL,
                     "app %s: subscription sync skipped: replica %s holds the sync lease",
                     a->app_id, holder);
            continue;
        }
        if (rc != OCB_OK)
            log_warn(MOD, NULL, "app %s: sync lease unknown (%s); syncing locally", a->app_id,
                     ocb_strerror(rc));
        w->subs_cfg.apps[w->subs_cfg.n_apps++] = *a;
    }
    w->lease_renew_ms = ocb_now_ms() + LEASE_RENEW_MS;
    return w->subs_cfg.n_apps ? &w->subs_cfg : NULL;
}

/* The holder keeps its leases while it runs, so another replica's reload does not sync too. */
static void renew_leases(struct ocb_cmd_worker *w, int64_t now)
{
    if (!w->coord || now < w->lease_renew_ms)
        return;
    w->lease_renew_ms = now + LEASE_RENEW_MS;
    for (size_t i = 0; i < w->n_apps; i++) {
        struct wapp *app = &w->apps[i];
        if (!app->lease_held || !app->active)
            continue;
        enum ocb_err rc =
            coord_lease(w->coord, app->cfg->app_id, "subscriptions", LEASE_MS, NULL, 0);
        if (rc == OCB_ERR_FULL) {
            app->lease_held = false;
            log_warn(MOD, NULL, "app %s: subscription-sync lease lost to another replica",
                     app->cfg->app_id);
        }
    }
}

static void subscriptions_turn(struct ocb_cmd_worker *w, int64_t now)
{
    if (!w->subs && w->subs_next_ms && now >= w->subs_next_ms) {
        w->subs_next_ms = 0;
        const struct ocb_config *scfg = sync_config(w);
        if (scfg == NULL)
            return;
        if (subscriptions_sync_new(w->pc, scfg, NULL, &w->subs) != OCB_OK) {
            w->subs = NULL;
            w->subs_next_ms = now + SUBS_RETRY_MS;
            log_error(MOD, NULL, "out of memory starting the subscription sync");
            return;
        }
        log_info(MOD, NULL, "platform subscriptions: sync started");
    }
    if (!w->subs || !subscriptions_sync_step(w->subs))
        return;
    enum ocb_err rc = subscriptions_sync_result(w->subs);
    subscriptions_sync_free(w->subs);
    w->subs = NULL;
    if (rc == OCB_OK) {
        log_info(MOD, NULL, "platform subscriptions: in sync");
    } else if (w->subs_next_ms == 0) {
        w->subs_next_ms = ocb_now_ms() + SUBS_RETRY_MS;
        log_warn(MOD, NULL, "platform subscriptions not in sync (%s); retrying in %d s",
                 ocb_strerror(rc), SUBS_RETRY_MS / 1000);
    }
}

/* Point app at a, an app of owner, holding a reference to owner instead of
 * the one it held.  An app a reload dropped keeps its last configuration
 * (its queued commands still run under it): at most one retired
 * configuration per app slot stays alive that way. */
static void wapp_set_cfg(struct wapp *app, const struct ocb_config *owner, const struct ocb_app *a)
{
    config_ref(owner);
    config_unref(app->owner);
    app->owner = owner;
    app->cfg = a;
}

/* Append the state of one app with a secret of owner; OCB_ERR_FULL past OCB_MAX_APPS. */
static enum ocb_err wapp_add(struct ocb_cmd_worker *w, const struct ocb_config *owner,
                             const struct ocb_app *a)
{
    unsigned calls;
    int64_t window_ms;
    if (w->n_apps == OCB_MAX_APPS)
        return OCB_ERR_FULL;
    rate_limit_scale(w->cfg->platform.rate_calls, w->cfg->platform.rate_per_seconds, &calls,
                     &window_ms);
    struct wapp *app = &w->apps[w->n_apps];
    memset(app, 0, sizeof(*app));
    ocb_list_init(&app->jobs);
    app->active = true;
    /* A 10 ms margin for the platform's clock granularity. */
    enum ocb_err rc = rate_limit_init(&app->rate, calls, window_ms + 10);
    if (rc != OCB_OK)
        return rc;
    unsigned share =
        calls ? (unsigned)((uint64_t)calls * w->cfg->coordination.local_rate_share_pct / 100) : 0;
    rc = rate_limit_init(&app->rate_local, calls && share == 0 ? 1 : share, window_ms + 10);
    if (rc != OCB_OK) {
        rate_limit_cleanup(&app->rate);
        return rc;
    }
    wapp_set_cfg(app, owner, a);
    w->n_apps++;
    return OCB_OK;
}

/*
 * Worker thread: take a configuration handed over by cmd_worker_reload(),
 * with its reference.  Apps keep their queues and rate windows across a
 * reload; a dropped app's queued commands still run (its wapp keeps a
 * reference to its old configuration), new ones are refused as for any
 * unknown app.  The previous apps_cfg is given back: a subscription sync
 * under way holds its own reference.
 */
static void apply_reload(struct ocb_cmd_worker *w)
{
    pthread_mutex_lock(&w->lock);
    const struct ocb_config *cfg = w->pending_cfg;
    w->pending_cfg = NULL;
    pthread_mutex_unlock(&w->lock);
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < w->n_apps; i++)
        w->apps[i].active = false;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct ocb_app *a = &cfg->apps[i];
        if (!a->secret || !*a->secret)
            continue;
        struct wapp *app = find_wapp_any(w, a->app_id);
        if (app != NULL) {
            wapp_set_cfg(app, cfg, a);
            app->active = true;
        } else if (wapp_add(w, cfg, a) != OCB_OK) {
            log_error(MOD, NULL, "app %s: cannot add it until a restart", a->app_id);
        }
    }
    config_unref(w->apps_cfg);
    w->apps_cfg = cfg;
    platform_client_reload(w->pc, cfg);
    if (cfg->platform.manage_subscriptions)
        w->subs_next_ms = ocb_now_ms();
    log_info(MOD, NULL, "commands: configuration reloaded");
}

static bool is_stopping(struct ocb_cmd_worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool s = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return s;
}

static void *worker_main(void *arg)
{
    struct ocb_cmd_worker *w = arg;
    platform_client_login_all(w->pc);
    if (w->cfg->platform.manage_subscriptions)
        w->subs_next_ms = ocb_now_ms();
    while (!is_stopping(w)) {
        coord_poll(w->coord);
        renew_leases(w, ocb_now_ms());
        apply_reload(w);
        take_inbox(w);
        int64_t next = dispatch(w);
        outbox_flush(w);
        int64_t now = ocb_now_ms();
        if (w->journal && now >= w->prune_next_ms) {
            journal_requesters_prune(w->journal, ocb_wall_ms(), OCB_CMD_REQUESTERS_MAX);
            w->prune_next_ms = now + PRUNE_EVERY_MS;
        }
        subscriptions_turn(w, now);
        if (w->subs_next_ms && !w->subs && w->subs_next_ms < next)
            next = w->subs_next_ms;
        if (!ocb_list_empty(&w->outbox) && next > now + 200)
            next = now + 200; /* the broker gives no signal when it is back */
        int wait = next > now ? (int)(next - now) : 0;
        platform_client_run(w->pc, wait);
    }
    return NULL;
}

/* After the loop: let calls in flight finish for up to drain_ms, answer the rest. */
static void drain(struct ocb_cmd_worker *w, unsigned drain_ms)
{
    int64_t until = ocb_now_ms() + drain_ms;
    take_inbox(w);
    while (w->in_flight > 0 && ocb_now_ms() < until)
        platform_client_run(w->pc, 50);
    for (size_t i = 0; i < w->n_apps; i++) {
        struct ocb_list *pos, *tmp;
        ocb_list_for_each_safe (pos, tmp, &w->apps[i].jobs) {
            struct job *job = ocb_list_entry(pos, struct job, link);
            if (job->state != JOB_SENDING) {
                /* A journaled command stays in the journal and resumes at the next start. */
                if (!job->jid) {
                    struct answer a = job_answer(job);
                    answer_bridge(w, true, &a, OCB_CMD_SHUTTING_DOWN, 0,
                                  "the bridge stopped before the command was sent", true);
                }
                job_finish(w, job);
            }
        }
    }
    /* Calls still in flight complete with OCB_ERR_STOPPED -> SHUTTING_DOWN;
     * a sync's call completes into the sync, which is over then. */
    platform_client_free(w->pc);
    w->pc = NULL;
    if (w->subs)
        log_info(MOD, NULL, "subscription sync interrupted: the bridge is stopping");
    subscriptions_sync_free(w->subs);
    w->subs = NULL;
    outbox_flush(w);
    if (w->n_out)
        log_warn(MOD, NULL, "%u answer(s) not published at shutdown", w->n_out);
}

enum ocb_err cmd_worker_new(const struct ocb_config *cfg, struct ocb_mqtt_link *link,
                            struct ocb_cmd_worker **out)
{
    *out = NULL;
    struct ocb_cmd_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return OCB_ERR_NOMEM;
    w->cfg = config_ref(cfg);
    w->link = link;
    w->rand_state = (unsigned)ocb_now_ms() ^ (unsigned)(uintptr_t)w;
    pthread_mutex_init(&w->lock, NULL);
    ocb_list_init(&w->inbox);
    ocb_list_init(&w->outbox);
    enum ocb_err rc = requesters_new(OCB_CMD_REQUESTERS_MAX, &w->requesters);
    if (rc != OCB_OK)
        goto fail;
    rc = platform_client_new(cfg, &w->pc);
    if (rc != OCB_OK)
        goto fail;
    w->apps_cfg = config_ref(cfg);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct ocb_app *a = &cfg->apps[i];
        if (a->secret && *a->secret && (rc = wapp_add(w, cfg, a)) != OCB_OK)
            goto fail;
    }
    metrics_describe("ocb_subscription_changes_total", OCB_METRIC_COUNTER,
                     "Platform subscriptions created, replaced or deleted by the sync, and failed "
                     "changes");
    metrics_describe("ocb_commands_total", OCB_METRIC_COUNTER,
                     "MQTT commands by outcome (ok, platform_error or a bridge code)");
    metrics_describe("ocb_api_requests_total", OCB_METRIC_COUNTER,
                     "Device API requests over MQTT by app, op and result (ok, platform_error or "
                     "a bridge code)");
    metrics_describe("ocb_command_reconciliations_total", OCB_METRIC_COUNTER,
                     "Creates whose answer was lost, by result of the query: adopted, created, "
                     "unknown");
    metrics_describe("ocb_command_queue_depth", OCB_METRIC_GAUGE,
                     "Commands accepted and not yet answered");
    metrics_describe("ocb_platform_throttled_total", OCB_METRIC_COUNTER,
                     "Platform answers 1010009 (app throttle exceeded)");
    metrics_describe("ocb_command_answers_dropped_total", OCB_METRIC_COUNTER,
                     "commandResponse answers that could not be published");
    metrics_describe("ocb_command_requesters_evicted_total", OCB_METRIC_COUNTER,
                     "Response-topic requesters forgotten early because the map was full");
    metrics_gauge_set("ocb_command_queue_depth", "", 0);
    *out = w;
    return OCB_OK;
fail:
    cmd_worker_free(w);
    return rc;
}

enum ocb_err cmd_worker_attach(struct ocb_cmd_worker *w)
{
    static const char *const leaves[] = {"command", "commandCancel"};
    const struct ocb_config *cfg = w->cfg;
    for (size_t i = 0; i < 2; i++) {
        char filter[TOPIC_MAX];
        int n;
        if (cfg->mqtt.shared_group && *cfg->mqtt.shared_group)
            n = snprintf(filter, sizeof(filter), "$share/%s/%s/+/+/%s", cfg->mqtt.shared_group,
                         cfg->mqtt.topic_prefix, leaves[i]);
        else
            n = snprintf(filter, sizeof(filter), "%s/+/+/%s", cfg->mqtt.topic_prefix, leaves[i]);
        if (n < 0 || (size_t)n >= sizeof(filter))
            return OCB_ERR_TOO_BIG;
        enum ocb_err rc = mqtt_link_add_subscription(w->link, filter);
        if (rc != OCB_OK)
            return rc;
    }
    /* The device API: only when some app with a secret allows an operation at start (a
     * reload that allows the first one needs a restart to subscribe). */
    bool api = false;
    for (size_t i = 0; i < cfg->n_apps; i++)
        api |= cfg->apps[i].secret && *cfg->apps[i].secret && cfg->apps[i].api_ops != 0;
    if (api) {
        char filter[TOPIC_MAX];
        int n;
        if (cfg->mqtt.shared_group && *cfg->mqtt.shared_group)
            n = snprintf(filter, sizeof(filter), "$share/%s/%s/+/+/api", cfg->mqtt.shared_group,
                         cfg->mqtt.topic_prefix);
        else
            n = snprintf(filter, sizeof(filter), "%s/+/+/api", cfg->mqtt.topic_prefix);
        if (n < 0 || (size_t)n >= sizeof(filter))
            return OCB_ERR_TOO_BIG;
        enum ocb_err rc = mqtt_link_add_subscription(w->link, filter);
        if (rc != OCB_OK)
            return rc;
    }
    mqtt_link_set_handlers(w->link, cmd_worker_on_message, NULL, w);
    return OCB_OK;
}

enum ocb_err cmd_worker_use_state(struct ocb_cmd_worker *w, struct ocb_state *state)
{
    if (w->journal || w->started)
        return OCB_ERR_INVALID;
    /* Unfinished commands (max_queue) plus answers awaiting their PUBACK (the outbox's bound). */
    return journal_open(state, 2 * w->cfg->platform.max_queue, &w->journal);
}

/* Main thread, before the worker starts: a journal row back into the inbox, in order. */
static void recover_row(void *ctx, const struct ocb_journal_row *r)
{
    struct ocb_cmd_worker *w = ctx;
    int64_t mono = ocb_now_ms(), wall = ocb_wall_ms();
    struct inmsg *m = calloc(1, sizeof(*m));
    if (m) {
        m->w = w;
        m->topic = ocb_strdup_or_null(r->cmd.topic);
        m->payload = malloc(r->cmd.len + 1);
        if (m->payload) {
            if (r->cmd.len)
                memcpy(m->payload, r->cmd.payload, r->cmd.len);
            m->payload[r->cmd.len] = '\0';
        }
        m->len = r->cmd.oversize ? SIZE_MAX : r->cmd.len;
        m->retained = r->cmd.retained;
        m->response_topic = ocb_strdup_or_null(r->cmd.response_topic);
        m->corr = ocb_memdup(r->cmd.corr, r->cmd.corr_len);
        m->corr_len = m->corr ? r->cmd.corr_len : 0;
        m->arrived_ms = mono - (wall - r->cmd.arrived_ms);
        m->deadline_ms = mono + (r->cmd.deadline_ms - wall);
        m->jid = r->cmd.id;
        m->jstate = (int)r->state;
        /* A commandId the last run got is ours: never adopted by another job's query. */
        if (r->command_id)
            reconcile_claim(w, r->command_id);
        m->first_s = r->first_s;
        if (r->answer) {
            m->answer = ocb_memdup(r->answer, r->answer_len + 1);
            if (m->answer)
                m->answer[r->answer_len] = '\0';
            m->answer_len = r->answer_len;
        }
    }
    if (!m || !m->topic || !m->payload || (r->cmd.response_topic && !m->response_topic) ||
        (r->cmd.corr && r->cmd.corr_len && !m->corr) || (r->answer && !m->answer)) {
        inmsg_free(m);
        log_error(MOD, NULL, "journal row %lld: out of memory, left for the next start",
                  (long long)r->cmd.id);
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->held++;
    pthread_mutex_unlock(&w->lock);
    inbox_push(w, m);
}

static void recover_requester(void *ctx, const struct ocb_requester *r, int64_t expires_ms)
{
    struct ocb_cmd_worker *w = ctx;
    struct ocb_requester e = *r;
    int64_t now = ocb_now_ms();
    e.expires_ms = now + (expires_ms - ocb_wall_ms());
    requesters_insert(w->requesters, &e, now, NULL, NULL, NULL);
    reconcile_claim(w, r->command_id);
}

/* Load what the journal holds: requesters first (answers re-published may have some), then
 * every unfinished command, in arrival order, ahead of anything MQTT brings. */
static enum ocb_err journal_recover(struct ocb_cmd_worker *w)
{
    if (!w->journal)
        return OCB_OK;
    enum ocb_err rc = journal_requesters_load(w->journal, ocb_wall_ms(), recover_requester, w);
    if (rc != OCB_OK)
        log_error(MOD, NULL, "persisted requesters cannot be read: %s", ocb_strerror(rc));
    rc = journal_load(w->journal, recover_row, w, NULL);
    if (rc != OCB_OK)
        log_error(MOD, NULL, "the command journal cannot be read: %s", ocb_strerror(rc));
    return rc;
}

enum ocb_err cmd_worker_start(struct ocb_cmd_worker *w)
{
    if (w->started)
        return OCB_OK;
    enum ocb_err rc = journal_recover(w);
    if (rc != OCB_OK)
        return rc;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return OCB_ERR_IO;
    w->started = true;
    return OCB_OK;
}

void cmd_worker_stop(struct ocb_cmd_worker *w, unsigned drain_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    bool already = w->stopping;
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    if (already)
        return;
    if (w->started) {
        platform_client_wakeup(w->pc);
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    if (w->pc)
        drain(w, drain_ms);
}

enum ocb_err cmd_worker_reload(struct ocb_cmd_worker *w, const struct ocb_config *cfg)
{
    const struct ocb_config *unapplied;

    config_ref(cfg);
    pthread_mutex_lock(&w->lock);
    unapplied = w->pending_cfg; /* two reloads before the worker's next turn */
    w->pending_cfg = cfg;
    pthread_mutex_unlock(&w->lock);
    config_unref(unapplied);
    platform_client_wakeup(w->pc);
    return OCB_OK;
}

void cmd_worker_set_coord(struct ocb_cmd_worker *w, struct ocb_coord *coord)
{
    w->coord = coord;
    platform_client_set_coord(w->pc, coord);
}

bool cmd_worker_ready(void *ctx)
{
    const struct ocb_cmd_worker *w = ctx;
    return w && w->pc && platform_client_ready(w->pc);
}

void cmd_worker_free(struct ocb_cmd_worker *w)
{
    if (!w)
        return;
    cmd_worker_stop(w, 0);
    /* Before the inbox goes: appends still in the store land in it. */
    journal_free(w->journal);
    w->journal = NULL;
    platform_client_free(w->pc);
    subscriptions_sync_free(w->subs);
    for (size_t i = 0; i < w->n_apps; i++) {
        rate_limit_cleanup(&w->apps[i].rate);
        rate_limit_cleanup(&w->apps[i].rate_local);
        config_unref(w->apps[i].owner);
    }
    config_unref(w->subs_owner);
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &w->inbox) {
        ocb_list_remove(pos);
        inmsg_free(ocb_list_entry(pos, struct inmsg, link));
    }
    ocb_list_for_each_safe (pos, tmp, &w->outbox) {
        struct outmsg *o = ocb_list_entry(pos, struct outmsg, link);
        ocb_list_remove(&o->link);
        jtrack_put(o->track, false); /* the row stays: published again at the next start */
        outmsg_free(o);
    }
    requesters_free(w->requesters);
    pthread_mutex_destroy(&w->lock);
    config_unref(w->pending_cfg);
    config_unref(w->apps_cfg);
    config_unref(w->cfg);
    free(w);
}
