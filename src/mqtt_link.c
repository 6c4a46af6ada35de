/*
 * mqtt_link.c: the bridge's one MQTT connection, on paho MQTTAsync.
 *
 * Three parties touch the link: callers of mqtt_link_publish() (MHD threads,
 * the command worker), paho's callback thread (acks, arriving messages,
 * connection loss) and the link's own connector thread.  One mutex guards
 * the link's state; no paho call and no user callback runs under it.
 *
 * Every way a connection ends goes through one function, link_down(): a
 * server-sent MQTT 5 DISCONNECT (paho runs only the disconnected callback
 * then, not connection-lost: its issue 1619), a lost socket or keepalive
 * timeout (connection-lost), a failed connect (the connect failure callback,
 * which paho also runs for an established connection that ended).  It marks
 * the link down, fails what is in flight and schedules the next attempt;
 * each connect attempt has a serial, so a second report of the same ending,
 * or a late one about an older attempt, changes nothing.  /readyz is green
 * only while the link is up and the broker granted every command filter in
 * its SUBACK; a resumed session is first rid of filters no longer wanted.
 *
 * Reconnecting is ours, not paho's: paho's automaticReconnect only covers a
 * connection that once succeeded, counts in whole seconds and gives no hook
 * for the first connect failing.  The connector thread sleeps on a condition
 * variable and (re)connects with exponential backoff between
 * mqtt.reconnect_min_ms and mqtt.reconnect_max_ms, plus up to a quarter of
 * jitter, forever, until stop -- the first attempt after a loss included.
 *
 * The in-flight window: every publish gets a `pending` record on a list
 * before it is handed to paho; paho's success/failure callback carries the
 * record as its context and retires it.  Records that are "active" count
 * against mqtt.max_inflight and still owe their caller a done() call.  When
 * the connection drops, every active record is failed at once
 * (OCB_ERR_NOT_CONNECTED) so that suspended HTTP requests answer 503 now,
 * not after a reconnect; the record then stays on the list, inactive, until
 * paho finally reports on it (it resends unacknowledged publishes after a
 * reconnect, since the session is persistent), so its memory has exactly one
 * owner at every moment.
 */
#include "ocb/mqtt_link.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "ocb/grammar.h"
#include "ocb/list.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/util.h"

#define MOD "mqtt"

#define LINK_MAX_SUBS 16
/* Filters remembered from an earlier run; plus their plain/shared variants. */
#define LINK_MAX_PREV 32
/* Inactive records are normally retired within a reconnect; past this many
 * (times max_inflight) new publishes are refused rather than growing memory. */
#define LINK_ZOMBIE_FACTOR 4
/* Upper bound on the disconnect handshake at stop. */
#define LINK_DISCONNECT_WAIT_MS 2000

struct pending {
    struct ocb_list node; /* in link->pending */
    struct ocb_mqtt_link *link;
    ocb_mqtt_done done;
    void *ctx;
    bool active;
    int64_t started_ns; /* ocb_now_ns(), for the ack latency histogram */
};

/* Where the connection is.  Every way a connection ends -- a server-sent
 * DISCONNECT, a lost socket, a keepalive timeout, a failed connect -- goes
 * through link_down(), which is the only place that leaves LINK_UP or
 * LINK_CONNECTING. */
enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };

/* What the broker made of the command filters on this connection. */
enum subs_state { SUBS_NONE, SUBS_PENDING, SUBS_OK, SUBS_REFUSED };

/* The context of every paho call that belongs to one connect attempt (the
 * connect itself, its SUBSCRIBE and UNSUBSCRIBE).  paho reports on an attempt
 * after a newer one began (its connect failure callback runs after a server
 * DISCONNECT, a failed subscribe after the loss); the serial tells such
 * stale reports from current ones.  A small ring is enough: stale reports
 * arrive within one reconnect. */
#define LINK_ATTEMPT_RING 4
struct attempt {
    struct ocb_mqtt_link *link;
    uint64_t serial;
};

/* CONNACK facts worth one log line per process, not one per reconnect. */
enum {
    SAID_EXPIRY = 1u << 0,
    SAID_NO_SHARED = 1u << 1,
    SAID_NO_RETAIN = 1u << 2,
    SAID_V5_REFUSED = 1u << 3,
    SAID_V5_HINT = 1u << 4,
};

struct ocb_mqtt_link {
    const struct ocb_config *cfg;
    MQTTAsync client;
    bool v5;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* connector wake-ups, drain progress, disconnect done */
    pthread_t connector;
    bool connector_started;

    /* Guarded by mu. */
    enum link_state state;
    uint64_t serial; /* of the current (or last) connect attempt */
    struct attempt attempts[LINK_ATTEMPT_RING];
    bool stopping;
    bool disconnected; /* the stop-time disconnect finished */
    unsigned backoff_ms;
    uint64_t rng;         /* jitter */
    unsigned failures;    /* consecutive failed connect attempts */
    unsigned said;        /* SAID_* bits */
    int64_t next_attempt; /* ocb_now_ms() clock */
    unsigned active;
    size_t n_pending;
    struct ocb_list pending; /* struct pending, oldest first */
    uint64_t connects;
    enum subs_state subs_state;
    char subs_why[256]; /* why subs_state is not SUBS_OK, for /readyz */

    atomic_bool connected;
    atomic_uint inflight_view; /* mirror of active for lock-free readers */

    char *subs[LINK_MAX_SUBS];
    size_t n_subs;
    /* The filters subscribed last time (mqtt_link_set_previous_subscriptions). */
    char *prev[LINK_MAX_PREV];
    size_t n_prev;
    ocb_mqtt_on_subscribed on_subscribed;
    void *subscribed_ctx;

    ocb_mqtt_on_message on_message;
    ocb_mqtt_on_state on_state;
    void *handler_ctx;
};

/* ---- small helpers */

static struct pending *pending_of(struct ocb_list *l)
{
    return ocb_list_entry(l, struct pending, node);
}

static void pending_unlink(struct ocb_mqtt_link *link, struct pending *p)
{
    ocb_list_remove(&p->node);
    link->n_pending--;
}

static bool is_stopping(struct ocb_mqtt_link *link)
{
    bool stopping;

    pthread_mutex_lock(&link->mu);
    stopping = link->stopping;
    pthread_mutex_unlock(&link->mu);
    return stopping;
}

/* Handlers are not called once stop began: main frees their owners (the
 * command worker) between mqtt_link_stop() and mqtt_link_free(). */
static void set_connected(struct ocb_mqtt_link *link, bool up)
{
    atomic_store(&link->connected, up);
    metrics_gauge_set("ocb_mqtt_connected", "", up ? 1 : 0);
    if (link->on_state != NULL && !is_stopping(link))
        link->on_state(link->handler_ctx, up);
}

/*
 * Fail every active record with rc (called with mu held; unlocks around the
 * callbacks).  The (done, ctx) pairs are copied out first because once mu is
 * released paho may retire -- and free -- the records themselves.
 */
static void fail_active_locked(struct ocb_mqtt_link *link, enum ocb_err rc)
{
    struct ocb_list *pos;
    struct {
        ocb_mqtt_done done;
        void *ctx;
    } *calls = NULL;
    size_t n = 0;

    if (link->active == 0)
        return;
    calls = calloc(link->active, sizeof(*calls));
    ocb_list_for_each (pos, &link->pending) {
        struct pending *p = pending_of(pos);

        if (!p->active)
            continue;
        p->active = false;
        link->active--;
        if (calls != NULL) {
            calls[n].done = p->done;
            calls[n].ctx = p->ctx;
            n++;
        } else if (p->done != NULL) {
            /* Out of memory: call under the lock rather than lose an answer. */
            p->done(p->ctx, rc);
        }
    }
    atomic_store(&link->inflight_view, link->active);
    metrics_gauge_set("ocb_mqtt_inflight", "", 0);
    pthread_cond_broadcast(&link->cv);
    pthread_mutex_unlock(&link->mu);
    for (size_t i = 0; i < n; i++) {
        if (calls[i].done != NULL)
            calls[i].done(calls[i].ctx, rc);
    }
    free(calls);
    pthread_mutex_lock(&link->mu);
}

/* One active publish is over (mu held).  Only mqtt_link_stop()'s drain waits
 * for this, so the condition variable is signalled only while stopping: it is
 * shared with the connector thread, and waking that thread on every ack cost
 * a context switch per publish (bench/push). */
static void retire_active_locked(struct ocb_mqtt_link *link)
{
    link->active--;
    atomic_store(&link->inflight_view, link->active);
    metrics_gauge_set("ocb_mqtt_inflight", "", link->active);
    if (link->stopping)
        pthread_cond_broadcast(&link->cv);
}

/* ---- publish completion (paho's callback thread, or the thread in MQTTAsync_destroy) */

static void pending_finish(struct pending *p, enum ocb_err rc)
{
    struct ocb_mqtt_link *link = p->link;
    bool was_active;

    pthread_mutex_lock(&link->mu);
    pending_unlink(link, p);
    was_active = p->active;
    if (was_active)
        retire_active_locked(link);
    pthread_mutex_unlock(&link->mu);

    if (was_active) {
        if (rc == OCB_OK)
            metrics_histogram_observe("ocb_publish_ack_seconds", "",
                                      ocb_seconds_since(p->started_ns));
        if (p->done != NULL)
            p->done(p->ctx, rc);
    }
    free(p);
}

static void on_publish_ok5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    pending_finish(context, OCB_OK);
}

static void on_publish_fail5(void *context, MQTTAsync_failureData5 *response)
{
    enum ocb_err rc = OCB_ERR_NOT_CONNECTED;

    if (response != NULL && response->reasonCode >= 0x80) {
        rc = OCB_ERR_PROTOCOL;
        log_warn(MOD, NULL, "broker refused a publish: reason code 0x%02x",
                 (unsigned)response->reasonCode);
    }
    pending_finish(context, rc);
}

static void on_publish_ok(void *context, MQTTAsync_successData *response)
{
    (void)response;
    pending_finish(context, OCB_OK);
}

static void on_publish_fail(void *context, MQTTAsync_failureData *response)
{
    (void)response;
    pending_finish(context, OCB_ERR_NOT_CONNECTED);
}

/* ---- connection state (paho's callback thread, and the connector thread) */

/* The next wait (mu held): the current backoff plus up to a quarter of it
 * again, so that bridges dropped together by one broker do not come back in
 * step; the backoff then doubles up to mqtt.reconnect_max_ms. */
static unsigned next_wait_locked(struct ocb_mqtt_link *link)
{
    unsigned base = link->backoff_ms, jitter = 0;

    /* xorshift64: the jitter needs no quality, only no shared state. */
    link->rng ^= link->rng << 13;
    link->rng ^= link->rng >> 7;
    link->rng ^= link->rng << 17;
    if (base / 4 > 0)
        jitter = (unsigned)(link->rng % (base / 4 + 1));
    link->backoff_ms =
        base > link->cfg->mqtt.reconnect_max_ms / 2 ? link->cfg->mqtt.reconnect_max_ms : base * 2;
    return base + jitter;
}

/* The attempt a paho callback belongs to, if it is the current one and the
 * link is in one of the states the caller expects (mu held). */
static bool attempt_current_locked(struct ocb_mqtt_link *link, const struct attempt *a)
{
    return a->serial == link->serial && !link->stopping;
}

/*
 * The one way down.  Marks the link down, fails every publish in flight
 * (their done callbacks, once), drops the subscription state and schedules
 * the next connect after the backoff it announces.  serial names the attempt
 * the event belongs to (0: the current one); an event for an older attempt,
 * or for a link that is already down, changes nothing, so paho may report
 * one ending twice (DISCONNECT, then connect failure or connection lost).
 */
static void link_down(struct ocb_mqtt_link *link, uint64_t serial, const char *what,
                      const char *detail)
{
    enum link_state was;
    unsigned wait;

    pthread_mutex_lock(&link->mu);
    if (serial == 0)
        serial = link->serial;
    was = link->state;
    if (serial != link->serial || was == LINK_DOWN) {
        pthread_mutex_unlock(&link->mu);
        log_debug(MOD, NULL, "%s%s%s: already handled", what, detail != NULL ? ": " : "",
                  detail != NULL ? detail : "");
        return;
    }
    link->state = LINK_DOWN;
    link->subs_state = SUBS_NONE;
    if (was == LINK_CONNECTING)
        link->failures++;
    wait = next_wait_locked(link);
    link->next_attempt = ocb_deadline_in(wait);
    atomic_store(&link->connected, false);
    metrics_gauge_set("ocb_mqtt_connected", "", 0);
    fail_active_locked(link, OCB_ERR_NOT_CONNECTED);
    pthread_cond_broadcast(&link->cv);
    pthread_mutex_unlock(&link->mu);

    log_warn(MOD, NULL, "%s%s%s; %s in %u ms", what, detail != NULL ? ": " : "",
             detail != NULL ? detail : "", was == LINK_UP ? "reconnecting" : "retrying", wait);
    if (was == LINK_UP && link->on_state != NULL && !is_stopping(link))
        link->on_state(link->handler_ctx, false);
}

/* The command filters: refused ones keep /readyz red (mqtt_link_subscriptions_ok). */
static void subs_result(struct attempt *a, const int *codes, size_t n)
{
    struct ocb_mqtt_link *link = a->link;
    size_t refused = 0;
    char why[sizeof(link->subs_why)] = "";
    size_t used = 0;

    for (size_t i = 0; i < n && i < link->n_subs; i++) {
        if (codes[i] < 0x80)
            continue;
        refused++;
        metrics_counter_add("ocb_mqtt_subscriptions_refused_total", "", 1);
        log_error(MOD, NULL,
                  "broker refused the subscription to %s (%s, 0x%02x): commands on it are not "
                  "delivered",
                  link->subs[i], link->v5 ? MQTTReasonCode_toString(codes[i]) : "failure",
                  (unsigned)codes[i]);
        if (used < sizeof(why)) {
            int w = snprintf(why + used, sizeof(why) - used, "%sbroker refused subscription %s",
                             used > 0 ? ", " : "", link->subs[i]);
            used = w < 0 ? sizeof(why) : used + (size_t)w;
        }
    }
    pthread_mutex_lock(&link->mu);
    if (!attempt_current_locked(link, a) || link->state != LINK_UP) {
        pthread_mutex_unlock(&link->mu);
        return;
    }
    link->subs_state = refused > 0 ? SUBS_REFUSED : SUBS_OK;
    snprintf(link->subs_why, sizeof(link->subs_why), "%s", why);
    pthread_mutex_unlock(&link->mu);
    if (refused > 0)
        return;
    log_info(MOD, NULL, "subscribed %zu filter(s)", link->n_subs);
    if (link->on_subscribed != NULL && !is_stopping(link))
        link->on_subscribed(link->subscribed_ctx, (const char *const *)link->subs, link->n_subs);
}

static void on_subscribe_ok5(void *context, MQTTAsync_successData5 *response)
{
    struct attempt *a = context;
    int codes[LINK_MAX_SUBS];
    size_t n = a->link->n_subs;

    for (size_t i = 0; i < n; i++) {
        /* paho gives a single filter's code in reasonCode (the array is then
         * not set, whatever reasonCodeCount says), several in the array. */
        if (response == NULL)
            codes[i] = 0;
        else if (n == 1 || response->alt.sub.reasonCodes == NULL)
            codes[i] = (int)response->reasonCode;
        else if ((int)i < response->alt.sub.reasonCodeCount)
            codes[i] = (int)response->alt.sub.reasonCodes[i];
        else
            codes[i] = 0x80;
    }
    subs_result(a, codes, n);
}

static void on_subscribe_ok(void *context, MQTTAsync_successData *response)
{
    struct attempt *a = context;
    int codes[LINK_MAX_SUBS];
    size_t n = a->link->n_subs;

    for (size_t i = 0; i < n; i++) {
        if (response == NULL)
            codes[i] = 0;
        else if (n == 1)
            codes[i] = response->alt.qos;
        else
            codes[i] = response->alt.qosList != NULL ? response->alt.qosList[i] : 0;
    }
    subs_result(a, codes, n);
}

/* paho fails a SUBSCRIBE both when the broker refused it and when the
 * connection dropped first; only the first is a refusal. */
static void subscribe_failed(struct attempt *a, int reason, int code, const char *message)
{
    int codes[LINK_MAX_SUBS];

    if (reason < 0x80) {
        /* The connection ended (or the link stopped) first: link_down() has
         * the story, and the next connection subscribes again. */
        log_debug(MOD, NULL, "subscribing was interrupted (%d%s%s)", code,
                  message != NULL ? ": " : "", message != NULL ? message : "");
        return;
    }
    for (size_t i = 0; i < a->link->n_subs; i++)
        codes[i] = reason;
    subs_result(a, codes, a->link->n_subs);
}

static void on_subscribe_fail5(void *context, MQTTAsync_failureData5 *response)
{
    subscribe_failed(context, response != NULL ? (int)response->reasonCode : 0,
                     response != NULL ? response->code : -1,
                     response != NULL ? response->message : NULL);
}

static void on_subscribe_fail(void *context, MQTTAsync_failureData *response)
{
    /* 3.1.1: a single refused filter arrives as a failure with code 0x80. */
    int code = response != NULL ? response->code : -1;

    subscribe_failed(context, code == 0x80 ? 0x80 : 0, code,
                     response != NULL ? response->message : NULL);
}

static void subscribe_all(struct ocb_mqtt_link *link, struct attempt *a)
{
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    MQTTSubscribe_options sub_opts[LINK_MAX_SUBS];
    int qos[LINK_MAX_SUBS];
    int rc;

    for (size_t i = 0; i < link->n_subs; i++) {
        MQTTSubscribe_options init = MQTTSubscribe_options_initializer;

        qos[i] = 1;
        /* MQTT 5 retain-as-published: a retained command published while we
         * are subscribed keeps its retain flag, so the command worker can
         * refuse it (RETAINED_COMMAND_IGNORED) instead of executing it. */
        init.retainAsPublished = 1;
        sub_opts[i] = init;
    }
    opts.context = a;
    if (link->v5) {
        opts.subscribeOptionsCount = (int)link->n_subs;
        opts.subscribeOptionsList = sub_opts;
        opts.onSuccess5 = on_subscribe_ok5;
        opts.onFailure5 = on_subscribe_fail5;
    } else {
        opts.onSuccess = on_subscribe_ok;
        opts.onFailure = on_subscribe_fail;
    }
    rc = MQTTAsync_subscribeMany(link->client, (int)link->n_subs, link->subs, qos, &opts);
    if (rc != MQTTASYNC_SUCCESS)
        log_error(MOD, NULL, "subscribing %zu filter(s) failed: %s", link->n_subs,
                  MQTTAsync_strerror(rc));
}

static bool wanted(const struct ocb_mqtt_link *link, const char *filter)
{
    for (size_t i = 0; i < link->n_subs; i++) {
        if (strcmp(link->subs[i], filter) == 0)
            return true;
    }
    return false;
}

/* "$share/<group>/<rest>" -> "<rest>"; NULL for a plain filter. */
static const char *unshared(const char *filter)
{
    const char *slash;

    if (strncmp(filter, "$share/", 7) != 0)
        return NULL;
    slash = strchr(filter + 7, '/');
    return slash != NULL ? slash + 1 : NULL;
}

static void add_stale(const struct ocb_mqtt_link *link, char **out, size_t *n, size_t cap,
                      const char *filter)
{
    if (filter == NULL || wanted(link, filter))
        return;
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(out[i], filter) == 0)
            return;
    }
    if (*n < cap)
        out[(*n)++] = (char *)filter;
}

static void on_unsubscribe_ok5(void *context, MQTTAsync_successData5 *response)
{
    (void)context;
    /* 0x11 "no subscription existed" is the common answer and fine; a
     * refusal leaves a filter that may deliver commands twice. */
    if (response == NULL)
        return;
    /* As with SUBACK: one code comes in reasonCode, the array only for several. */
    for (int i = 0; i < response->alt.unsub.reasonCodeCount; i++) {
        enum MQTTReasonCodes rc =
            response->alt.unsub.reasonCodeCount > 1 && response->alt.unsub.reasonCodes != NULL
                ? response->alt.unsub.reasonCodes[i]
                : response->reasonCode;
        if (rc >= 0x80)
            log_warn(MOD, NULL, "the broker refused to unsubscribe a stale filter: %s (0x%02x)",
                     MQTTReasonCode_toString(rc), (unsigned)rc);
    }
}

static void on_unsubscribe_fail5(void *context, MQTTAsync_failureData5 *response)
{
    struct attempt *a = context;

    /* Quiet when the connection ended first: the next one unsubscribes again. */
    if (response != NULL && response->reasonCode >= 0x80)
        log_warn(MOD, NULL, "the broker refused to unsubscribe stale filters: %s (0x%02x)",
                 MQTTReasonCode_toString(response->reasonCode), (unsigned)response->reasonCode);
    else if (!is_stopping(a->link))
        log_debug(MOD, NULL, "unsubscribing stale filters was interrupted (%d)",
                  response != NULL ? response->code : -1);
}

static void on_unsubscribe_ok(void *context, MQTTAsync_successData *response)
{
    (void)context;
    (void)response;
}

static void on_unsubscribe_fail(void *context, MQTTAsync_failureData *response)
{
    on_unsubscribe_fail5(context, NULL);
    (void)response;
}

/*
 * A resumed session still holds what an earlier run subscribed.  A filter
 * that is no longer wanted -- the plain one after mqtt.shared_group was set,
 * the shared one after it was cleared or changed, an old topic_prefix --
 * would deliver every command a second time, so it is unsubscribed before
 * the wanted ones are (re)subscribed.  Without a memory of the last run
 * (mqtt_link_set_previous_subscriptions), the plain variants of the wanted
 * shared filters are the ones we can name; brokers ignore or acknowledge an
 * unsubscribe for a filter they do not hold.
 */
static void unsubscribe_stale(struct ocb_mqtt_link *link, struct attempt *a)
{
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    char *stale[LINK_MAX_PREV + LINK_MAX_SUBS];
    size_t n = 0, cap = sizeof(stale) / sizeof(stale[0]);
    int rc;

    for (size_t i = 0; i < link->n_prev; i++) {
        add_stale(link, stale, &n, cap, link->prev[i]);
        add_stale(link, stale, &n, cap, unshared(link->prev[i]));
    }
    for (size_t i = 0; i < link->n_subs; i++)
        add_stale(link, stale, &n, cap, unshared(link->subs[i]));
    if (n == 0)
        return;
    opts.context = a;
    if (link->v5) {
        opts.onSuccess5 = on_unsubscribe_ok5;
        opts.onFailure5 = on_unsubscribe_fail5;
    } else {
        opts.onSuccess = on_unsubscribe_ok;
        opts.onFailure = on_unsubscribe_fail;
    }
    for (size_t i = 0; i < n; i++)
        log_info(MOD, NULL, "resumed session: unsubscribing %s, no longer wanted", stale[i]);
    rc = MQTTAsync_unsubscribeMany(link->client, (int)n, stale, &opts);
    if (rc != MQTTASYNC_SUCCESS)
        log_error(MOD, NULL, "unsubscribing %zu stale filter(s) failed: %s", n,
                  MQTTAsync_strerror(rc));
}

/* CONNACK properties that change what the bridge can promise; each said once. */
static void check_connack(struct ocb_mqtt_link *link, MQTTProperties *props)
{
    const struct ocb_config *cfg = link->cfg;
    MQTTProperty *p;
    unsigned say = 0;

    if (props == NULL)
        return;
    p = MQTTProperties_getProperty(props, MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL);
    if (p != NULL && (unsigned)p->value.integer4 < cfg->mqtt.session_expiry_s)
        say |= SAID_EXPIRY;
    p = MQTTProperties_getProperty(props, MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE);
    if (p != NULL && p->value.byte == 0 && cfg->mqtt.shared_group[0] != '\0')
        say |= SAID_NO_SHARED;
    p = MQTTProperties_getProperty(props, MQTTPROPERTY_CODE_RETAIN_AVAILABLE);
    if (p != NULL && p->value.byte == 0)
        say |= SAID_NO_RETAIN;
    pthread_mutex_lock(&link->mu);
    say &= ~link->said;
    link->said |= say;
    pthread_mutex_unlock(&link->mu);

    if (say & SAID_EXPIRY) {
        p = MQTTProperties_getProperty(props, MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL);
        log_warn(MOD, NULL,
                 "the broker cut the session expiry from %u s (mqtt.session_expiry_s) to %u s: "
                 "commands published while the bridge is away are kept only that long",
                 cfg->mqtt.session_expiry_s, (unsigned)p->value.integer4);
    }
    if (say & SAID_NO_SHARED)
        log_error(MOD, NULL,
                  "the broker does not offer shared subscriptions, but mqtt.shared_group is "
                  "\"%s\": the command filters will be refused or taken literally",
                  cfg->mqtt.shared_group);
    if (say & SAID_NO_RETAIN)
        log_warn(MOD, NULL, "the broker does not offer retained messages (Retain Available 0)");
}

static void connected_now(struct attempt *a, int session_present, MQTTProperties *props)
{
    struct ocb_mqtt_link *link = a->link;
    uint64_t n;

    pthread_mutex_lock(&link->mu);
    if (!attempt_current_locked(link, a) || link->state != LINK_CONNECTING) {
        /* A connect that completes after stop began (or after its attempt was
         * given up) is left for MQTTAsync_destroy to close; the handlers'
         * owners may already be gone. */
        pthread_mutex_unlock(&link->mu);
        return;
    }
    link->state = LINK_UP;
    link->failures = 0;
    link->backoff_ms = link->cfg->mqtt.reconnect_min_ms;
    link->subs_state = link->n_subs > 0 ? SUBS_PENDING : SUBS_OK;
    snprintf(link->subs_why, sizeof(link->subs_why), "subscribing to the command topics");
    n = ++link->connects;
    pthread_mutex_unlock(&link->mu);

    if (n > 1)
        metrics_counter_add("ocb_mqtt_reconnects_total", "", 1);
    log_info(MOD, NULL, "connected to %s (MQTT %s, session %s)", link->cfg->mqtt.url,
             link->v5 ? "5" : "3.1.1", session_present ? "resumed" : "new");
    check_connack(link, props);
    /* Subscribe before announcing the connection so that commands published
     * the moment readyz turns green are not missed; readyz also waits for
     * the SUBACK (mqtt_link_subscriptions_ok). */
    if (link->n_subs > 0) {
        if (session_present)
            unsubscribe_stale(link, a);
        subscribe_all(link, a);
    }
    atomic_store(&link->connected, true);
    metrics_gauge_set("ocb_mqtt_connected", "", 1);
    if (link->on_state != NULL && !is_stopping(link))
        link->on_state(link->handler_ctx, true);
}

static void on_connect_ok5(void *context, MQTTAsync_successData5 *response)
{
    connected_now(context, response != NULL ? response->alt.connect.sessionPresent : 0,
                  response != NULL ? &response->properties : NULL);
}

static void on_connect_ok(void *context, MQTTAsync_successData *response)
{
    connected_now(context, response != NULL ? response->alt.connect.sessionPresent : 0, NULL);
}

/*
 * paho calls the connect failure callback for a failed attempt and also,
 * with the same context, when an established connection ends (after a
 * server DISCONNECT the connection-lost callback does not run at all:
 * paho issue 1619).  Both are link_down(); the serial tells them apart from
 * a newer attempt.
 */
static void connect_failed(struct attempt *a, int code, int reason, const char *message)
{
    struct ocb_mqtt_link *link = a->link;
    char detail[384];
    enum link_state was;
    unsigned say = 0, failures;
    uint64_t serial;

    pthread_mutex_lock(&link->mu);
    serial = a->serial;
    was = serial == link->serial ? link->state : LINK_DOWN;
    failures = link->failures + 1;
    if (link->v5 && was == LINK_CONNECTING) {
        /* 1: a 3.1.1 broker's "unacceptable protocol version"; 0x84: MQTT 5's. */
        if (code == 1 || reason == MQTTREASONCODE_UNSUPPORTED_PROTOCOL_VERSION)
            say = SAID_V5_REFUSED;
        else if (failures >= 3)
            say = SAID_V5_HINT;
        say &= ~link->said;
        link->said |= say;
    }
    pthread_mutex_unlock(&link->mu);

    snprintf(detail, sizeof(detail), "%d%s%s", code, message != NULL ? ": " : "",
             message != NULL ? message : "");
    if (say & SAID_V5_REFUSED)
        log_error(MOD, NULL,
                  "the broker at %s refused MQTT 5: set mqtt.version 4 for a broker that speaks "
                  "only MQTT 3.1.1",
                  link->cfg->mqtt.url);
    if (say & SAID_V5_HINT)
        log_warn(MOD, NULL,
                 "%u MQTT 5 connects to %s failed in a row; if the broker speaks only MQTT "
                 "3.1.1 (RabbitMQ 3.x, aedes), set mqtt.version 4",
                 failures, link->cfg->mqtt.url);
    if (was == LINK_UP) {
        char what[300];
        snprintf(what, sizeof(what), "connection to %s ended", link->cfg->mqtt.url);
        link_down(link, serial, what, detail);
    } else {
        char what[300];
        snprintf(what, sizeof(what), "connecting to %s failed", link->cfg->mqtt.url);
        link_down(link, serial, what, detail);
    }
}

static void on_connect_fail5(void *context, MQTTAsync_failureData5 *response)
{
    connect_failed(context, response != NULL ? response->code : -1,
                   response != NULL ? (int)response->reasonCode : 0,
                   response != NULL ? response->message : NULL);
}

static void on_connect_fail(void *context, MQTTAsync_failureData *response)
{
    connect_failed(context, response != NULL ? response->code : -1, 0,
                   response != NULL ? response->message : NULL);
}

/* The socket closed or the keepalive expired. */
static void on_connection_lost(void *context, char *cause)
{
    struct ocb_mqtt_link *link = context;
    char what[300];

    snprintf(what, sizeof(what), "connection to %s lost", link->cfg->mqtt.url);
    link_down(link, 0, what, cause);
}

/* MQTT 5 server-initiated DISCONNECT, any reason code.  paho does not run
 * the connection-lost callback after it (issue 1619), so this is an ending
 * of its own. */
static void on_disconnected(void *context, MQTTProperties *props, enum MQTTReasonCodes reason)
{
    struct ocb_mqtt_link *link = context;
    char what[300], detail[64];

    (void)props;
    snprintf(what, sizeof(what), "broker %s sent DISCONNECT", link->cfg->mqtt.url);
    snprintf(detail, sizeof(detail), "%s (0x%02x)", MQTTReasonCode_toString(reason),
             (unsigned)reason);
    link_down(link, 0, what, detail);
}

static int on_message_arrived(void *context, char *topic_name, int topic_len, MQTTAsync_message *m)
{
    struct ocb_mqtt_link *link = context;
    struct ocb_mqtt_msg msg;
    char *topic = NULL, *response_topic = NULL;
    bool delivered = false;

    memset(&msg, 0, sizeof(msg));
    /* topic_len is 0 when the topic is NUL-terminated, else it may embed NULs. */
    if (topic_len > 0) {
        topic = malloc((size_t)topic_len + 1);
        if (topic == NULL)
            goto out;
        memcpy(topic, topic_name, (size_t)topic_len);
        topic[topic_len] = '\0';
        msg.topic = topic;
    } else {
        msg.topic = topic_name;
    }
    msg.payload = m->payload;
    msg.len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    msg.qos = m->qos;
    msg.retained = m->retained != 0;
    if (link->v5) {
        MQTTProperty *p =
            MQTTProperties_getProperty(&m->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC);
        if (p != NULL) {
            response_topic = malloc((size_t)p->value.data.len + 1);
            if (response_topic == NULL)
                goto out;
            memcpy(response_topic, p->value.data.data, (size_t)p->value.data.len);
            response_topic[p->value.data.len] = '\0';
            msg.response_topic = response_topic;
        }
        p = MQTTProperties_getProperty(&m->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
        if (p != NULL) {
            msg.correlation = p->value.data.data;
            msg.correlation_len = (size_t)p->value.data.len;
        }
    }
    if (is_stopping(link)) {
        /* Only a connect that raced with stop gets here; the handler may be gone. */
        log_warn(MOD, NULL, "stopping: dropped a message arriving on %s", msg.topic);
    } else if (link->on_message != NULL) {
        link->on_message(link->handler_ctx, &msg);
    }
    delivered = true;
out:
    if (!delivered)
        log_error(MOD, NULL, "out of memory: dropped an arriving message");
    free(response_topic);
    free(topic);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic_name);
    return 1; /* consumed: paho must not redeliver it */
}

/* ---- the connector thread */

/* The URL schemes config.c accepts that run over TLS: each needs paho's SSL
 * options (CA, client certificate), or paho refuses to connect at all. */
static bool url_uses_tls(const char *url)
{
    struct ocb_url u;
    return grammar_url_parse(url, OCB_URL_SCHEMES_MQTT, false, &u) == OCB_OK && u.tls;
}

static int start_connect(struct ocb_mqtt_link *link, struct attempt *a)
{
    const struct ocb_config *cfg = link->cfg;
    MQTTAsync_connectOptions v3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions v5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions *opts = link->v5 ? &v5 : &v3;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    MQTTProperties props = MQTTProperties_initializer;
    unsigned inflight = cfg->mqtt.max_inflight * 2u + 16u;
    int rc;

    opts->keepAliveInterval = (int)cfg->mqtt.keepalive_s;
    opts->maxInflight = inflight > 65535u ? 65535 : (int)inflight;
    opts->connectTimeout = 10;
    opts->automaticReconnect = 0;
    opts->context = a;
    if (cfg->mqtt.username[0] != '\0')
        opts->username = cfg->mqtt.username;
    if (cfg->mqtt.password[0] != '\0')
        opts->password = cfg->mqtt.password;
    if (url_uses_tls(cfg->mqtt.url)) {
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        if (cfg->mqtt.ca_file[0] != '\0')
            ssl.trustStore = cfg->mqtt.ca_file;
        if (cfg->mqtt.cert_file[0] != '\0')
            ssl.keyStore = cfg->mqtt.cert_file;
        if (cfg->mqtt.key_file[0] != '\0')
            ssl.privateKey = cfg->mqtt.key_file;
        opts->ssl = &ssl;
    }
    if (link->v5) {
        MQTTProperty p;

        /* The command half needs its subscriptions to survive a reconnect:
         * clean start off, the session kept mqtt.session_expiry_s. */
        opts->cleanstart = 0;
        memset(&p, 0, sizeof(p));
        p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
        p.value.integer4 = cfg->mqtt.session_expiry_s;
        MQTTProperties_add(&props, &p);
        opts->connectProperties = &props;
        opts->onSuccess5 = on_connect_ok5;
        opts->onFailure5 = on_connect_fail5;
        opts->MQTTVersion = MQTTVERSION_5;
    } else {
        opts->cleansession = 0;
        opts->onSuccess = on_connect_ok;
        opts->onFailure = on_connect_fail;
        opts->MQTTVersion = MQTTVERSION_3_1_1;
    }
    rc = MQTTAsync_connect(link->client, opts);
    MQTTProperties_free(&props);
    return rc;
}

static void *connector_main(void *arg)
{
    struct ocb_mqtt_link *link = arg;

    pthread_mutex_lock(&link->mu);
    while (!link->stopping) {
        struct attempt *a;
        uint64_t serial;
        int rc;

        if (link->state != LINK_DOWN) {
            pthread_cond_wait(&link->cv, &link->mu);
            continue;
        }
        if (!ocb_deadline_passed(link->next_attempt)) {
            ocb_cond_wait_until(&link->cv, &link->mu, link->next_attempt);
            continue;
        }
        link->state = LINK_CONNECTING;
        serial = ++link->serial;
        a = &link->attempts[serial % LINK_ATTEMPT_RING];
        a->link = link;
        a->serial = serial;
        pthread_mutex_unlock(&link->mu);
        rc = start_connect(link, a);
        if (rc != MQTTASYNC_SUCCESS) {
            char what[300];

            snprintf(what, sizeof(what), "connecting to %s failed", link->cfg->mqtt.url);
            link_down(link, serial, what, MQTTAsync_strerror(rc));
        }
        pthread_mutex_lock(&link->mu);
    }
    pthread_mutex_unlock(&link->mu);
    return NULL;
}

/* ---- public API */

enum ocb_err mqtt_link_new(const struct ocb_config *cfg, struct ocb_mqtt_link **out)
{
    MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
    struct ocb_mqtt_link *link;
    int rc;

    *out = NULL;
    link = calloc(1, sizeof(*link));
    if (link == NULL)
        return OCB_ERR_NOMEM;
    link->cfg = config_ref(cfg);
    link->v5 = cfg->mqtt.version == 5;
    ocb_list_init(&link->pending);
    link->backoff_ms = cfg->mqtt.reconnect_min_ms;
    /* Seeds differ between bridges started together (pid) and between restarts (time). */
    link->rng = ((uint64_t)ocb_now_ns() << 20) ^ (uint64_t)ocb_wall_ms() ^ (uint64_t)getpid();
    if (link->rng == 0)
        link->rng = 0x9e3779b97f4a7c15ull;
    pthread_mutex_init(&link->mu, NULL);
    ocb_cond_init(&link->cv);

    copts.sendWhileDisconnected = 0; /* a push the broker did not ack is a 503, not a queue */
    copts.MQTTVersion = link->v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    rc = MQTTAsync_createWithOptions(&link->client, cfg->mqtt.url, cfg->mqtt.client_id,
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
    if (rc != MQTTASYNC_SUCCESS) {
        log_error(MOD, NULL, "cannot create an MQTT client for %s: %s", cfg->mqtt.url,
                  MQTTAsync_strerror(rc));
        link->client = NULL;
        mqtt_link_free(link);
        return OCB_ERR_INVALID;
    }
    MQTTAsync_setCallbacks(link->client, link, on_connection_lost, on_message_arrived, NULL);
    if (link->v5)
        MQTTAsync_setDisconnected(link->client, link, on_disconnected);

    metrics_describe("ocb_mqtt_connected", OCB_METRIC_GAUGE, "1 while the broker connection is up");
    metrics_describe("ocb_mqtt_reconnects_total", OCB_METRIC_COUNTER,
                     "Successful reconnections to the broker after the first connect");
    metrics_describe("ocb_mqtt_inflight", OCB_METRIC_GAUGE,
                     "Publishes awaiting the broker's acknowledgement");
    metrics_describe("ocb_mqtt_subscriptions_refused_total", OCB_METRIC_COUNTER,
                     "Command filters the broker refused in a SUBACK");
    metrics_describe("ocb_publish_ack_seconds", OCB_METRIC_HISTOGRAM,
                     "Time from publish to the broker's PUBACK");
    metrics_gauge_set("ocb_mqtt_connected", "", 0);
    metrics_gauge_set("ocb_mqtt_inflight", "", 0);
    metrics_counter_add("ocb_mqtt_reconnects_total", "", 0);
    metrics_counter_add("ocb_mqtt_subscriptions_refused_total", "", 0);
    *out = link;
    return OCB_OK;
}

void mqtt_link_set_handlers(struct ocb_mqtt_link *link, ocb_mqtt_on_message on_message,
                            ocb_mqtt_on_state on_state, void *ctx)
{
    link->on_message = on_message;
    link->on_state = on_state;
    link->handler_ctx = ctx;
}

enum ocb_err mqtt_link_add_subscription(struct ocb_mqtt_link *link, const char *filter)
{
    char *copy;

    if (link->n_subs >= LINK_MAX_SUBS)
        return OCB_ERR_FULL;
    copy = strdup(filter);
    if (copy == NULL)
        return OCB_ERR_NOMEM;
    link->subs[link->n_subs++] = copy;
    return OCB_OK;
}

enum ocb_err mqtt_link_set_previous_subscriptions(struct ocb_mqtt_link *link,
                                                  const char *const *filters, size_t n,
                                                  ocb_mqtt_on_subscribed on_subscribed, void *ctx)
{
    for (size_t i = 0; i < link->n_prev; i++)
        free(link->prev[i]);
    link->n_prev = 0;
    link->on_subscribed = on_subscribed;
    link->subscribed_ctx = ctx;
    if (n > LINK_MAX_PREV)
        return OCB_ERR_FULL;
    for (size_t i = 0; i < n; i++) {
        link->prev[i] = strdup(filters[i]);
        if (link->prev[i] == NULL)
            return OCB_ERR_NOMEM;
        link->n_prev++;
    }
    return OCB_OK;
}

enum ocb_err mqtt_link_start(struct ocb_mqtt_link *link)
{
    int rc;

    if (link->connector_started)
        return OCB_OK;
    link->next_attempt = ocb_now_ms();
    rc = pthread_create(&link->connector, NULL, connector_main, link);
    if (rc != 0)
        return OCB_ERR_IO;
    link->connector_started = true;
    return OCB_OK;
}

bool mqtt_link_connected(const struct ocb_mqtt_link *link)
{
    return atomic_load(&link->connected);
}

bool mqtt_link_subscriptions_ok(struct ocb_mqtt_link *link, char *why, size_t cap)
{
    bool ok;

    pthread_mutex_lock(&link->mu);
    ok = link->state == LINK_UP && link->subs_state == SUBS_OK;
    if (!ok && cap > 0)
        snprintf(why, cap, "%s", link->state != LINK_UP ? "broker not connected" : link->subs_why);
    pthread_mutex_unlock(&link->mu);
    return ok;
}

unsigned mqtt_link_inflight(const struct ocb_mqtt_link *link)
{
    return atomic_load(&((struct ocb_mqtt_link *)link)->inflight_view);
}

static enum ocb_err map_send_error(int rc)
{
    switch (rc) {
    case MQTTASYNC_DISCONNECTED:
        return OCB_ERR_NOT_CONNECTED;
    case MQTTASYNC_MAX_MESSAGES_INFLIGHT:
    case MQTTASYNC_MAX_BUFFERED_MESSAGES:
        return OCB_ERR_FULL;
    case MQTTASYNC_BAD_UTF8_STRING:
    case MQTTASYNC_NULL_PARAMETER:
    case MQTTASYNC_BAD_QOS:
    case MQTTASYNC_BAD_STRUCTURE:
        return OCB_ERR_INVALID;
    default:
        return OCB_ERR_NOT_CONNECTED;
    }
}

static void add_string_prop(MQTTProperties *props, int id, const char *name, const char *value)
{
    MQTTProperty p;

    memset(&p, 0, sizeof(p));
    p.identifier = id;
    if (name != NULL) {
        p.value.data.data = (char *)name;
        p.value.data.len = (int)strlen(name);
        p.value.value.data = (char *)value;
        p.value.value.len = (int)strlen(value);
    } else {
        p.value.data.data = (char *)value;
        p.value.data.len = (int)strlen(value);
    }
    MQTTProperties_add(props, &p); /* copies the strings */
}

enum ocb_err mqtt_link_publish(struct ocb_mqtt_link *link, const struct ocb_mqtt_pub *pub,
                               ocb_mqtt_done done, void *ctx)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    struct pending *p;
    enum ocb_err err = OCB_OK;
    size_t cap = (size_t)link->cfg->mqtt.max_inflight * LINK_ZOMBIE_FACTOR + 16;
    int rc;

    if (pub->len > INT_MAX || pub->correlation_len > 65535)
        return OCB_ERR_TOO_BIG;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OCB_ERR_NOMEM;
    p->link = link;
    p->done = done;
    p->ctx = ctx;
    p->active = true;
    p->started_ns = ocb_now_ns();

    pthread_mutex_lock(&link->mu);
    if (link->stopping)
        err = OCB_ERR_STOPPED;
    else if (!atomic_load(&link->connected))
        err = OCB_ERR_NOT_CONNECTED;
    else if (link->active >= link->cfg->mqtt.max_inflight || link->n_pending >= cap)
        err = OCB_ERR_FULL;
    if (err == OCB_OK) {
        ocb_list_push_back(&link->pending, &p->node);
        link->n_pending++;
        link->active++;
        atomic_store(&link->inflight_view, link->active);
        metrics_gauge_set("ocb_mqtt_inflight", "", link->active);
    }
    pthread_mutex_unlock(&link->mu);
    if (err != OCB_OK) {
        free(p);
        return err;
    }

    msg.payload = (void *)pub->payload;
    msg.payloadlen = (int)pub->len;
    msg.qos = link->cfg->mqtt.qos;
    msg.retained = 0;
    opts.context = p;
    if (link->v5) {
        if (pub->content_type != NULL)
            add_string_prop(&msg.properties, MQTTPROPERTY_CODE_CONTENT_TYPE, NULL,
                            pub->content_type);
        if (pub->payload_utf8) {
            MQTTProperty pfi;

            memset(&pfi, 0, sizeof(pfi));
            pfi.identifier = MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR;
            pfi.value.byte = 1;
            MQTTProperties_add(&msg.properties, &pfi);
        }
        if (pub->notify_type != NULL)
            add_string_prop(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, "notifyType",
                            pub->notify_type);
        if (pub->request_id != NULL)
            add_string_prop(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, "requestId",
                            pub->request_id);
        if (pub->ocb_request_id != NULL)
            add_string_prop(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, "ocbRequestId",
                            pub->ocb_request_id);
        if (pub->correlation != NULL) {
            MQTTProperty cd;

            memset(&cd, 0, sizeof(cd));
            cd.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
            cd.value.data.data = (char *)pub->correlation;
            cd.value.data.len = (int)pub->correlation_len;
            MQTTProperties_add(&msg.properties, &cd);
        }
        opts.onSuccess5 = on_publish_ok5;
        opts.onFailure5 = on_publish_fail5;
    } else {
        opts.onSuccess = on_publish_ok;
        opts.onFailure = on_publish_fail;
    }
    /* From here p belongs to paho's callback unless sendMessage fails. */
    rc = MQTTAsync_sendMessage(link->client, pub->topic, &msg, &opts);
    MQTTProperties_free(&msg.properties);
    if (rc != MQTTASYNC_SUCCESS) {
        bool owed;

        pthread_mutex_lock(&link->mu);
        pending_unlink(link, p);
        /* The connection may have ended while paho had the message: then
         * link_down() already failed the record and ran done, which the
         * caller must not see twice (as done and as an error here). */
        owed = p->active;
        if (owed)
            retire_active_locked(link);
        pthread_mutex_unlock(&link->mu);
        free(p);
        log_debug(MOD, NULL, "publish refused by the client library: %s", MQTTAsync_strerror(rc));
        return owed ? map_send_error(rc) : OCB_OK;
    }
    return OCB_OK;
}

static void on_disconnect_done(void *context, MQTTAsync_successData *response)
{
    struct ocb_mqtt_link *link = context;

    (void)response;
    pthread_mutex_lock(&link->mu);
    link->disconnected = true;
    pthread_cond_broadcast(&link->cv);
    pthread_mutex_unlock(&link->mu);
}

static void on_disconnect_fail(void *context, MQTTAsync_failureData *response)
{
    (void)response;
    on_disconnect_done(context, NULL);
}

static void on_disconnect_done5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    on_disconnect_done(context, NULL);
}

static void on_disconnect_fail5(void *context, MQTTAsync_failureData5 *response)
{
    (void)response;
    on_disconnect_done(context, NULL);
}

void mqtt_link_stop(struct ocb_mqtt_link *link, unsigned drain_ms)
{
    int64_t deadline;
    bool was_stopping;
    int rc;

    pthread_mutex_lock(&link->mu);
    was_stopping = link->stopping;
    link->stopping = true;
    pthread_cond_broadcast(&link->cv);
    if (was_stopping) {
        pthread_mutex_unlock(&link->mu);
        return;
    }
    deadline = ocb_deadline_in(drain_ms);
    while (link->active > 0 && atomic_load(&link->connected)) {
        if (ocb_cond_wait_until(&link->cv, &link->mu, deadline))
            break;
    }
    if (link->active > 0)
        log_warn(MOD, NULL, "stopping with %u publish(es) still unacknowledged", link->active);
    pthread_mutex_unlock(&link->mu);

    if (link->connector_started) {
        pthread_join(link->connector, NULL);
        link->connector_started = false;
    }

    if (link->client != NULL && MQTTAsync_isConnected(link->client)) {
        MQTTAsync_disconnectOptions dopts = MQTTAsync_disconnectOptions_initializer;
        MQTTAsync_disconnectOptions dopts5 = MQTTAsync_disconnectOptions_initializer5;
        MQTTAsync_disconnectOptions *d = link->v5 ? &dopts5 : &dopts;

        d->timeout = 500;
        d->context = link;
        if (link->v5) {
            d->onSuccess5 = on_disconnect_done5;
            d->onFailure5 = on_disconnect_fail5;
        } else {
            d->onSuccess = on_disconnect_done;
            d->onFailure = on_disconnect_fail;
        }
        rc = MQTTAsync_disconnect(link->client, d);
        pthread_mutex_lock(&link->mu);
        if (rc == MQTTASYNC_SUCCESS) {
            deadline = ocb_deadline_in(LINK_DISCONNECT_WAIT_MS);
            while (!link->disconnected) {
                if (ocb_cond_wait_until(&link->cv, &link->mu, deadline))
                    break;
            }
        }
        pthread_mutex_unlock(&link->mu);
        log_info(MOD, NULL, "disconnected from %s", link->cfg->mqtt.url);
    }
    if (atomic_load(&link->connected))
        set_connected(link, false);
    pthread_mutex_lock(&link->mu);
    link->state = LINK_DOWN;
    fail_active_locked(link, OCB_ERR_NOT_CONNECTED);
    pthread_mutex_unlock(&link->mu);
}

void mqtt_link_free(struct ocb_mqtt_link *link)
{
    if (link == NULL)
        return;
    mqtt_link_stop(link, 0);
    if (link->client != NULL) {
        /* May run the failure callbacks of records paho still holds; they
         * find the link intact and free themselves. */
        MQTTAsync_destroy(&link->client);
    }
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &link->pending) {
        struct pending *p = pending_of(pos);

        pending_unlink(link, p);
        free(p);
    }
    for (size_t i = 0; i < link->n_subs; i++)
        free(link->subs[i]);
    for (size_t i = 0; i < link->n_prev; i++)
        free(link->prev[i]);
    pthread_cond_destroy(&link->cv);
    pthread_mutex_destroy(&link->mu);
    config_unref(link->cfg);
    free(link);
}
