/*
 * sim_push.c: the push engine (docs/platform-api.md §7), the platform acting as an HTTP client.
 *
 * Every notification becomes a message in one bounded queue.  A few worker threads, each with its
 * own libcurl handle (connections are reused), take due messages and POST them with
 * Content-Type: application/json.  Workers run in parallel, so, like the platform, there is no
 * ordering guarantee.  The rules:
 *   - only 200 counts as delivered;
 *   - no answer within --push-timeout (also: no connection) or 501-504: the message stays cached
 *     and is re-pushed, byte-identical, every --repush-interval until --repush-window has passed
 *     since it was created, then dropped;
 *   - any other status (500, 4xx): dropped (UNCONFIRMED; --repush-any-error re-pushes those too);
 *     a dropping answer is not a failure, so it ends a run of consecutive failures;
 *   - --blacklist-after consecutive failures to one callback URL mark it invalid: its messages wait
 *     and one of them probes the URL every --probe-interval; the first 200 restores the URL and
 *     releases the rest.
 * Every attempt is recorded (GET /pushes).  Lock order: callers may hold g_sim.lock when they
 * enqueue; workers never take g_sim.lock.  /reset bumps a generation counter so results of
 * attempts started before the reset are ignored.
 */
#include "sim.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TARGETS 4096

struct push_msg {
    unsigned long id;
    char *url;
    char *body;
    char kind[64];
    int64_t created_ms;
    int64_t next_ms;
    unsigned attempts;
    bool inflight;
};

struct push_target {
    char url[SIM_URL_MAX + 1];
    unsigned long consecutive;
    bool invalid;
    bool probing;
    int64_t next_probe_ms;
    unsigned long delivered, failed, dropped;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const struct sim_opts *o;
    char ca_path[4096];
    struct push_msg **q;
    size_t nq, capq;
    struct push_target *targets;
    size_t ntargets, cap_targets;
    struct sim_jlog log;
    unsigned long next_id, generation;
    pthread_t *workers;
    size_t nworkers;
    bool stop;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

enum sim_push_verdict sim_push_classify(long status, bool repush_any)
{
    if (status == 200)
        return SIM_PUSH_DELIVERED;
    if (status <= 0 || (status >= 501 && status <= 504))
        return SIM_PUSH_RETRY;
    return repush_any ? SIM_PUSH_RETRY : SIM_PUSH_DROP;
}

static struct push_target *target_locked(const char *url)
{
    for (size_t i = 0; i < P.ntargets; i++)
        if (strcmp(P.targets[i].url, url) == 0)
            return &P.targets[i];
    if (sim_grow((void **)&P.targets, &P.cap_targets, P.ntargets + 1, sizeof *P.targets,
                 MAX_TARGETS) != OCB_OK)
        return NULL;
    struct push_target *t = &P.targets[P.ntargets++];
    memset(t, 0, sizeof *t);
    snprintf(t->url, sizeof t->url, "%s", url);
    return t;
}

static void log_add_locked(const struct push_msg *m, long status, const char *error,
                           const char *outcome, bool invalid)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    char now[17];
    sim_time_format(time(NULL), now);
    cJSON_AddNumberToObject(o, "id", (double)m->id);
    cJSON_AddStringToObject(o, "time", now);
    cJSON_AddStringToObject(o, "url", m->url);
    cJSON_AddStringToObject(o, "kind", m->kind);
    cJSON_AddStringToObject(o, "body", m->body);
    cJSON_AddNumberToObject(o, "attempt", m->attempts);
    if (status > 0)
        cJSON_AddNumberToObject(o, "status", (double)status);
    else
        cJSON_AddNullToObject(o, "status");
    sim_json_add_str_or_null(o, "error", error);
    cJSON_AddStringToObject(o, "outcome", outcome);
    cJSON_AddBoolToObject(o, "urlInvalid", invalid);
    sim_jlog_add(&P.log, o);
}

static void msg_free(struct push_msg *m)
{
    if (!m)
        return;
    free(m->url);
    free(m->body);
    free(m);
}

static void remove_msg_locked(struct push_msg *m)
{
    for (size_t i = 0; i < P.nq; i++)
        if (P.q[i] == m) {
            memmove(&P.q[i], &P.q[i + 1], (P.nq - i - 1) * sizeof(struct push_msg *));
            P.nq--;
            break;
        }
    msg_free(m);
}

enum ocb_err sim_push_enqueue(const char *url, const char *body, const char *kind)
{
    enum ocb_err rc = OCB_ERR_NOMEM;
    struct push_msg *m = calloc(1, sizeof *m);
    if (!m)
        return rc;
    m->url = strdup(url);
    m->body = strdup(body);
    snprintf(m->kind, sizeof m->kind, "%s", kind);
    if (!m->url || !m->body) {
        msg_free(m);
        return rc;
    }
    pthread_mutex_lock(&P.lock);
    if (P.nq >= SIM_PUSH_QUEUE_MAX) {
        m->id = ++P.next_id;
        log_add_locked(m, 0, "push queue full", "dropped", false);
        SIM_WARN("push", "queue full (%d): push to %s dropped", SIM_PUSH_QUEUE_MAX, url);
        rc = OCB_ERR_FULL;
        goto out;
    }
    rc = sim_grow((void **)&P.q, &P.capq, P.nq + 1, sizeof(struct push_msg *), SIM_PUSH_QUEUE_MAX);
    if (rc != OCB_OK)
        goto out;
    m->id = ++P.next_id;
    m->created_ms = sim_now_ms();
    m->next_ms = m->created_ms;
    P.q[P.nq++] = m;
    m = NULL;
    pthread_cond_broadcast(&P.cond);
out:
    pthread_mutex_unlock(&P.lock);
    msg_free(m);
    return rc;
}

static int64_t ms(double s)
{
    return (int64_t)(s * 1000.0);
}

/* The next message a worker may send now, or NULL and the time to look again in *wake. */
static struct push_msg *pick_locked(int64_t now, int64_t *wake)
{
    for (size_t i = 0; i < P.nq;) {
        struct push_msg *m = P.q[i];
        if (m->inflight) {
            i++;
            continue;
        }
        struct push_target *t = target_locked(m->url);
        bool waiting = m->attempts > 0 || (t && t->invalid);
        if (waiting && now - m->created_ms > ms(P.o->repush_window_s)) {
            log_add_locked(m, 0, "repush window passed", "expired", t && t->invalid);
            SIM_INFO("push", "message %lu to %s expired after %u attempts", m->id, m->url,
                     m->attempts);
            remove_msg_locked(m);
            continue; /* same index now holds the next message */
        }
        if (t && t->invalid) {
            if (!t->probing && t->next_probe_ms <= now) {
                t->probing = true;
                return m;
            }
            if (!t->probing && t->next_probe_ms < *wake)
                *wake = t->next_probe_ms;
            i++;
            continue;
        }
        if (m->next_ms <= now)
            return m;
        if (m->next_ms < *wake)
            *wake = m->next_ms;
        i++;
    }
    return NULL;
}

static void result_locked(struct push_msg *m, long status, const char *error)
{
    const struct sim_opts *o = P.o;
    int64_t now = sim_now_ms();
    struct push_target *t = target_locked(m->url);
    enum sim_push_verdict v = sim_push_classify(status, o->repush_any_error);
    m->inflight = false;
    if (v == SIM_PUSH_DELIVERED) {
        if (t) {
            t->delivered++;
            t->consecutive = 0;
            if (t->invalid) {
                SIM_INFO("push", "%s answers again: restored", m->url);
                t->invalid = false;
                for (size_t i = 0; i < P.nq; i++)
                    if (strcmp(P.q[i]->url, m->url) == 0)
                        P.q[i]->next_ms = now;
            }
            t->probing = false;
        }
        log_add_locked(m, status, NULL, "delivered", false);
        remove_msg_locked(m);
        pthread_cond_broadcast(&P.cond);
        return;
    }
    if (t && v == SIM_PUSH_DROP) {
        /* An answer that drops the message (500, 4xx, 201, 505, ...) is not a failure in the
         * §7 sense (only no answer and 501-504 are): the URL answers, so the run of consecutive
         * failures ends.  An invalid URL still needs a 200 to be restored. */
        t->dropped++;
        t->consecutive = 0;
        t->probing = false;
        if (t->invalid)
            t->next_probe_ms = now + ms(o->probe_interval_s);
    } else if (t) {
        t->failed++;
        t->consecutive++;
        t->probing = false;
        if (t->invalid) {
            t->next_probe_ms = now + ms(o->probe_interval_s);
        } else if (o->blacklist_after > 0 && t->consecutive >= (unsigned long)o->blacklist_after) {
            SIM_WARN("push", "%s failed %lu times in a row: marked invalid", m->url,
                     t->consecutive);
            t->invalid = true;
            t->next_probe_ms = now + ms(o->probe_interval_s);
        }
    }
    bool invalid = t && t->invalid;
    int64_t next = now + ms(o->repush_interval_s);
    if (v == SIM_PUSH_RETRY && next - m->created_ms <= ms(o->repush_window_s)) {
        m->next_ms = next;
        log_add_locked(m, status, error, "retry", invalid);
        SIM_INFO("push", "message %lu to %s attempt %u failed (%ld%s%s): will re-push", m->id,
                 m->url, m->attempts, status, error ? ", " : "", error ? error : "");
        return;
    }
    log_add_locked(m, status, error, v == SIM_PUSH_RETRY ? "expired" : "dropped", invalid);
    SIM_INFO("push", "message %lu to %s attempt %u failed (%ld%s%s): dropped", m->id, m->url,
             m->attempts, status, error ? ", " : "", error ? error : "");
    remove_msg_locked(m);
}

/* NOLINTNEXTLINE(readability-non-const-parameter): libcurl's write callback type. */
static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static int progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)ud;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return __atomic_load_n(&P.stop, __ATOMIC_RELAXED) ? 1 : 0;
}

static long post(CURL *c, const char *url, const char *body, char *err, size_t errlen)
{
    const struct sim_opts *o = P.o;
    char ebuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ms(o->push_timeout_s));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ms(o->push_timeout_s));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (P.ca_path[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, P.ca_path);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o->push_insecure ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o->push_insecure ? 0L : 2L);
    if (o->push_cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->push_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->push_key);
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    } else {
        snprintf(err, errlen, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return status;
}

static void *worker(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    if (!c) {
        SIM_ERROR("push", "curl_easy_init failed: worker not started");
        return NULL;
    }
    pthread_mutex_lock(&P.lock);
    while (!P.stop) {
        int64_t now = sim_now_ms();
        int64_t wake = now + 1000;
        struct push_msg *m = pick_locked(now, &wake);
        if (!m) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t delta = wake - now;
            if (delta < 1)
                delta = 1;
            ts.tv_sec += delta / 1000;
            ts.tv_nsec += (long)(delta % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&P.cond, &P.lock, &ts);
            continue;
        }
        m->inflight = true;
        m->attempts++;
        unsigned long gen = P.generation;
        char *url = strdup(m->url), *body = strdup(m->body);
        pthread_mutex_unlock(&P.lock);
        char err[CURL_ERROR_SIZE + 32] = "";
        long status = (url && body) ? post(c, url, body, err, sizeof err) : 0;
        if (!url || !body)
            snprintf(err, sizeof err, "out of memory");
        free(url);
        free(body);
        pthread_mutex_lock(&P.lock);
        if (gen == P.generation && !P.stop)
            result_locked(m, status, err[0] ? err : NULL);
    }
    pthread_mutex_unlock(&P.lock);
    curl_easy_cleanup(c);
    return NULL;
}

enum ocb_err sim_push_start(const struct sim_opts *o)
{
    P.o = o;
    P.stop = false;
    if (o->push_ca)
        snprintf(P.ca_path, sizeof P.ca_path, "%s", o->push_ca);
    else if (o->certs_dir)
        snprintf(P.ca_path, sizeof P.ca_path, "%s/ca.pem", o->certs_dir);
    P.workers = calloc((size_t)o->push_workers, sizeof *P.workers);
    if (sim_jlog_init(&P.log, SIM_PUSH_LOG_MAX) != OCB_OK || !P.workers)
        return OCB_ERR_NOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&P.cond);
    pthread_cond_init(&P.cond, &ca);
    pthread_condattr_destroy(&ca);
    for (long i = 0; i < o->push_workers; i++) {
        if (pthread_create(&P.workers[i], NULL, worker, NULL) != 0) {
            sim_push_stop();
            return OCB_ERR_IO;
        }
        P.nworkers++;
    }
    return OCB_OK;
}

static void clear_locked(void)
{
    for (size_t i = 0; i < P.nq; i++)
        msg_free(P.q[i]);
    P.nq = 0;
    P.ntargets = 0;
    sim_jlog_clear(&P.log);
    P.generation++;
}

void sim_push_stop(void)
{
    pthread_mutex_lock(&P.lock);
    __atomic_store_n(&P.stop, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&P.cond);
    pthread_mutex_unlock(&P.lock);
    for (size_t i = 0; i < P.nworkers; i++)
        pthread_join(P.workers[i], NULL);
    P.nworkers = 0;
    pthread_mutex_lock(&P.lock);
    if (P.nq)
        SIM_INFO("push", "%zu undelivered pushes discarded at shutdown", P.nq);
    clear_locked();
    free(P.q);
    free(P.targets);
    sim_jlog_free(&P.log);
    free(P.workers);
    P.q = NULL;
    P.targets = NULL;
    P.workers = NULL;
    P.capq = P.cap_targets = 0;
    pthread_mutex_unlock(&P.lock);
}

void sim_push_reset(void)
{
    pthread_mutex_lock(&P.lock);
    clear_locked();
    pthread_mutex_unlock(&P.lock);
}

cJSON *sim_push_log_json(unsigned long since)
{
    pthread_mutex_lock(&P.lock);
    cJSON *arr = sim_jlog_json(&P.log, since, NULL, NULL);
    pthread_mutex_unlock(&P.lock);
    return arr;
}

cJSON *sim_push_targets_json(void)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&P.lock);
    for (size_t i = 0; arr && i < P.ntargets; i++) {
        const struct push_target *t = &P.targets[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        size_t queued = 0;
        for (size_t j = 0; j < P.nq; j++)
            if (strcmp(P.q[j]->url, t->url) == 0)
                queued++;
        cJSON_AddStringToObject(o, "url", t->url);
        cJSON_AddBoolToObject(o, "invalid", t->invalid);
        cJSON_AddNumberToObject(o, "consecutiveFailures", (double)t->consecutive);
        cJSON_AddNumberToObject(o, "delivered", (double)t->delivered);
        cJSON_AddNumberToObject(o, "failed", (double)t->failed);
        cJSON_AddNumberToObject(o, "dropped", (double)t->dropped);
        cJSON_AddNumberToObject(o, "queued", (double)queued);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&P.lock);
    return arr;
}
