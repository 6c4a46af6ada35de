/*
 * coord.c: the bridges' shared state in Redis (coord.h has the contract).
 *
 * Why Redis and these shapes.  The platform keeps only an app's newest
 * token, so replicas must share one: the token is a hash (access, refresh,
 * expires, refresh_at, epoch) that only the holder of the app's token lock
 * replaces, with a compare-and-set on the epoch as a second guard should
 * the lock have expired under a slow login.  The lock is SET NX PX with a
 * random value and is released by a script that deletes it only while it
 * still holds that value (the usual single-instance Redis lock).  The rate
 * window is a sorted set of call times trimmed and counted inside one
 * script, with Redis's own clock, so replicas with skewed clocks still agree.
 * Requesters are small hashes with a TTL; the subscription-sync lease is a
 * key whose value names the replica holding it.  The push de-duplication
 * window is one key per accepted body (its digest), written with SET NX PX
 * once the push was answered 200 and only read (EXISTS) by the check, so
 * that a push that ends in 503 leaves nothing a re-push could be taken for.
 *
 * Connections.  hiredis contexts are not thread-safe, so each thread that
 * talks to Redis has its own (struct conn): the command worker's (the
 * synchronous calls) and the coord thread's (the asynchronous ones, which
 * is how libmicrohttpd's threads get answers without waiting).  Every
 * connect and command has a timeout.  A failed call closes the context and
 * arms a reconnect backoff (250 ms doubling to 5 s); until it passes, calls
 * fail at once with OCB_ERR_NOT_CONNECTED, so a dead Redis costs the worker
 * at most one timeout per backoff step, never a stall per command.
 *
 * The coord thread sleeps on a condition variable until an operation is
 * queued, a retry is due, or its one-second heartbeat (a PING, so that
 * degraded mode ends without traffic).  Its queue is bounded
 * (OCB_COORD_QUEUE_MAX); callers learn at once when it is full.
 */
#include "ocb/coord.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ocb/list.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/util.h"

#define MOD "coord"

#define BACKOFF_MIN_MS  250
#define BACKOFF_MAX_MS  5000
#define HEARTBEAT_MS    1000
#define STATUS_RETRY_MS 500
#define KEY_MAX         512
#define TOKEN_KEY_TTL_S                                                                            \
    (30 * 86400) /* the token hash outlives any token; epochs stay monotonic                       \
                  */

/* ---- scripts (EVAL: small, and the server caches them by digest) */

static const char LUA_RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

static const char LUA_TOKEN_CAS[] =
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') "
    "if cur ~= tonumber(ARGV[1]) then return -1 end "
    "local e = cur + 1 "
    "redis.call('HSET', KEYS[1], 'epoch', e, 'access', ARGV[2], 'refresh', ARGV[3], "
    "'expires', ARGV[4], 'refresh_at', ARGV[5]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[6]) "
    "return e";

/* KEYS[1] window; ARGV: limit, window_ms, member.  {1,0} taken, {0,retry_ms} full. */
static const char LUA_RATE_TAKE[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local limit = tonumber(ARGV[1]) local win = tonumber(ARGV[2]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win) "
    "if redis.call('ZCARD', KEYS[1]) < limit then "
    "  redis.call('ZADD', KEYS[1], now, ARGV[3]) "
    "  redis.call('PEXPIRE', KEYS[1], win + 60000) "
    "  return {1, 0} "
    "end "
    "local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') "
    "return {0, tonumber(first[2]) + win - now + 1}";

/* A completed call's slot counts from its completion, like rate_limit.c's window. */
static const char LUA_RATE_DONE[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])";

static const char LUA_REQUESTER_PUT[] =
    "redis.call('HSET', KEYS[1], 'topic', ARGV[1], 'corr', ARGV[2], 'replica', ARGV[3]) "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[4])";

/* 1 = ours (taken or renewed); otherwise the holder's name. */
static const char LUA_LEASE[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return v";

/* ---- connections */

struct conn {
    const char *name; /* "worker" or "coord", for logs */
    redisContext *ctx;
    int64_t next_try_ms; /* reconnect not before (0 = now) */
    unsigned backoff_ms;
    atomic_bool down;
};

enum op_kind { OP_STATUS, OP_DEDUP, OP_DEDUP_RECORD, OP_PUT };

struct op {
    struct ocb_list link; /* in c->ops */
    enum op_kind kind;
    char app_id[OCB_COMMAND_ID_MAX + 1];
    /* OP_STATUS */
    char command_id[OCB_COMMAND_ID_MAX + 1];
    char *body;
    size_t len;
    bool final;
    int64_t final_keep_ms;
    ocb_requester_emit emit;
    /* OP_PUT */
    struct ocb_requester put;
    int64_t put_ttl_ms;
    /* OP_DEDUP, OP_DEDUP_RECORD */
    char digest[OCB_COORD_DIGEST_MAX];
    int64_t window_ms;
    ocb_coord_seen_fn seen;
    void *ctx;
    int64_t due_ms, give_up_ms;
};

struct ocb_coord {
    const struct ocb_config *cfg;
    struct ocb_coord_url url;
    char replica[OCB_COORD_REPLICA_MAX];
    char replica_labels[OCB_METRICS_LABELS_MAX];
    struct conn sync;    /* the command worker's */
    struct conn own;     /* the coord thread's */
    uint64_t member_seq; /* rate-window members, sync connection's owner only */

    /* degraded-mode transitions: one log line and a consistent gauge */
    pthread_mutex_t state_mu;
    bool degraded_logged;

    /* the coord thread's queue */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ocb_list ops; /* struct op, in queueing order */
    unsigned n_ops;
    bool stopping;
    bool started;
    pthread_t thread;
};

/* ---- URL */

static enum ocb_err url_fail(char *why, size_t cap, const char *msg)
{
    if (cap)
        snprintf(why, cap, "%s", msg);
    return OCB_ERR_INVALID;
}

static bool parse_uint(const char *s, size_t n, unsigned long max, unsigned *out)
{
    char buf[16];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 10);
    if (errno || *end || buf[0] == '-' || buf[0] == '+' || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

enum ocb_err coord_url_parse(const char *url, struct ocb_coord_url *out, char *why, size_t cap)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url)
        return url_fail(why, cap, "is empty");
    if (strncmp(url, "rediss://", 9) == 0)
        return url_fail(why, cap,
                        "rediss:// needs a hiredis with TLS, and this build's has none "
                        "(Debian 12: hiredis 0.14); use a TLS tunnel or unix://");
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/' || n >= sizeof(out->host))
            return url_fail(why, cap, "expected unix:///absolute/path[?db=N]");
        memcpy(out->host, p, n);
        out->host[n] = '\0';
        out->unix_socket = true;
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || !parse_uint(q + 4, strlen(q + 4), 15, &out->db))
                return url_fail(why, cap, "expected ?db=N with N in 0..15 after the socket path");
        }
        return OCB_OK;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return url_fail(why, cap,
                        "expected redis://[user:password@]host:port[/db] or unix:///path");
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    const char *slash = strchr(at ? at : p, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        size_t pl = (size_t)(at - pw);
        if (ul >= sizeof(out->user) || pl >= sizeof(out->password))
            return url_fail(why, cap, "user or password too long");
        memcpy(out->user, p, ul);
        out->user[ul] = '\0';
        memcpy(out->password, pw, pl);
        out->password[pl] = '\0';
        p = at + 1;
    }
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *hp = p;
    size_t host_len = hl;
    out->port = 6379;
    const char *colon = NULL;
    if (hl && hp[0] == '[') {
        const char *rb = memchr(hp, ']', hl);
        if (!rb)
            return url_fail(why, cap, "unterminated [IPv6] host");
        hp++;
        host_len = (size_t)(rb - hp);
        if (rb + 1 < p + hl) {
            if (rb[1] != ':')
                return url_fail(why, cap, "expected :port after [IPv6]");
            colon = rb + 1;
        }
    } else {
        colon = memchr(hp, ':', hl);
        if (colon)
            host_len = (size_t)(colon - hp);
    }
    if (colon && !parse_uint(colon + 1, (size_t)(p + hl - colon - 1), 65535, &out->port))
        return url_fail(why, cap, "port must be 1..65535");
    if (out->port == 0)
        return url_fail(why, cap, "port must be 1..65535");
    if (host_len == 0 || host_len >= sizeof(out->host))
        return url_fail(why, cap, "expected a host");
    memcpy(out->host, hp, host_len);
    out->host[host_len] = '\0';
    if (slash && slash[1] && !parse_uint(slash + 1, strlen(slash + 1), 15, &out->db))
        return url_fail(why, cap, "the database after / must be 0..15");
    return OCB_OK;
}

/* ---- metrics and degraded mode */

static void count(struct ocb_coord *c, const char *name, const char *k, const char *v)
{
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "replica", c->replica, k, v, NULL);
    metrics_counter_add(name, labels, 1);
}

static void note_state(struct ocb_coord *c, struct conn *cn, bool down, const char *why)
{
    if (atomic_load(&cn->down) == down)
        return;
    pthread_mutex_lock(&c->state_mu);
    atomic_store(&cn->down, down);
    bool now_degraded = atomic_load(&c->sync.down) || atomic_load(&c->own.down);
    metrics_gauge_set("ocb_coord_degraded", c->replica_labels, now_degraded ? 1 : 0);
    if (now_degraded && !c->degraded_logged) {
        c->degraded_logged = true;
        log_warn(MOD, NULL,
                 "replica %s: redis unreachable (%s connection: %s); degraded: commands use the "
                 "local token and %u%% of the rate limit, pushes the local de-duplication "
                 "window, until it is back",
                 c->replica, cn->name, why ? why : "error",
                 c->cfg->coordination.local_rate_share_pct);
    } else if (!now_degraded && c->degraded_logged) {
        c->degraded_logged = false;
        log_info(MOD, NULL,
                 "replica %s: redis reachable again; shared token, rate limit and "
                 "de-duplication window",
                 c->replica);
    }
    pthread_mutex_unlock(&c->state_mu);
}

static void conn_close(struct conn *cn)
{
    if (cn->ctx)
        redisFree(cn->ctx);
    cn->ctx = NULL;
}

static void conn_fail(struct ocb_coord *c, struct conn *cn, const char *why)
{
    conn_close(cn);
    cn->backoff_ms = cn->backoff_ms ? cn->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (cn->backoff_ms > BACKOFF_MAX_MS)
        cn->backoff_ms = BACKOFF_MAX_MS;
    cn->next_try_ms = ocb_now_ms() + cn->backoff_ms;
    count(c, "ocb_coord_errors_total", "kind", "connection");
    note_state(c, cn, true, why);
}

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* A command on an open context; NULL reply = the connection is gone. */
static redisReply *raw(struct conn *cn, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(cn->ctx, argc, argv, lens);
}

static bool conn_open(struct ocb_coord *c, struct conn *cn)
{
    if (cn->ctx)
        return true;
    if (cn->next_try_ms && ocb_now_ms() < cn->next_try_ms)
        return false;
    struct timeval ct = tv_ms(c->cfg->coordination.connect_timeout_ms);
    cn->ctx = c->url.unix_socket ? redisConnectUnixWithTimeout(c->url.host, ct)
                                 : redisConnectWithTimeout(c->url.host, (int)c->url.port, ct);
    if (!cn->ctx || cn->ctx->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", cn->ctx ? cn->ctx->errstr : "out of memory");
        conn_fail(c, cn, why);
        return false;
    }
    redisSetTimeout(cn->ctx, tv_ms(c->cfg->coordination.timeout_ms));
    if (!c->url.unix_socket)
        redisEnableKeepAlive(cn->ctx);
    const char *why = NULL;
    if (c->url.password[0]) {
        const char *argv[3] = {"AUTH", c->url.user, c->url.password};
        redisReply *r = c->url.user[0]
                            ? raw(cn, 3, argv, NULL)
                            : raw(cn, 2, (const char *[]){"AUTH", c->url.password}, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR)
            why = "AUTH refused";
        if (r)
            freeReplyObject(r);
    }
    if (!why && c->url.db) {
        char db[16];
        snprintf(db, sizeof(db), "%u", c->url.db);
        redisReply *r = raw(cn, 2, (const char *[]){"SELECT", db}, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR)
            why = "SELECT refused";
        if (r)
            freeReplyObject(r);
    }
    if (why) {
        conn_fail(c, cn, why);
        return false;
    }
    cn->backoff_ms = 0;
    cn->next_try_ms = 0;
    note_state(c, cn, false, NULL);
    return true;
}

/*
 * Run one command.  OCB_OK with *out (caller frees); OCB_ERR_NOT_CONNECTED
 * when Redis is unreachable (connection closed, backoff armed);
 * OCB_ERR_PROTOCOL for an error reply (logged, connection kept).
 */
static enum ocb_err cmd(struct ocb_coord *c, struct conn *cn, const char *what, int argc,
                        const char **argv, const size_t *lens, redisReply **out)
{
    *out = NULL;
    if (!conn_open(c, cn))
        return OCB_ERR_NOT_CONNECTED;
    redisReply *r = raw(cn, argc, argv, lens);
    if (!r) {
        char why[160];
        snprintf(why, sizeof(why), "%s: %s", what, cn->ctx->errstr);
        conn_fail(c, cn, why);
        return OCB_ERR_NOT_CONNECTED;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn(MOD, NULL, "redis %s: %.*s", what, (int)r->len, r->str ? r->str : "");
        count(c, "ocb_coord_errors_total", "kind", "reply");
        freeReplyObject(r);
        return OCB_ERR_PROTOCOL;
    }
    *out = r;
    return OCB_OK;
}

static enum ocb_err key_for(const struct ocb_coord *c, char *out, const char *app_id,
                            const char *what, const char *extra)
{
    int n = snprintf(out, KEY_MAX, "%s:{%s}:%s%s%s", c->cfg->coordination.key_prefix, app_id, what,
                     extra ? ":" : "", extra ? extra : "");
    return n < 0 || n >= KEY_MAX ? OCB_ERR_TOO_BIG : OCB_OK;
}

/* ---- lifecycle */

static void *coord_main(void *arg);

enum ocb_err coord_new(const struct ocb_config *cfg, struct ocb_coord **out)
{
    *out = NULL;
    struct ocb_coord *c = calloc(1, sizeof(*c));
    if (!c)
        return OCB_ERR_NOMEM;
    c->cfg = cfg;
    char why[160];
    if (coord_url_parse(cfg->coordination.redis_url, &c->url, why, sizeof(why)) != OCB_OK) {
        log_error(MOD, NULL, "coordination.redis_url: %s", why);
        free(c);
        return OCB_ERR_INVALID;
    }
    if (cfg->coordination.replica_id[0]) {
        snprintf(c->replica, sizeof(c->replica), "%s", cfg->coordination.replica_id);
    } else {
        char host[64] = "host";
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "host");
        host[sizeof(host) - 1] = '\0';
        snprintf(c->replica, sizeof(c->replica), "%s-%ld", host, (long)getpid());
    }
    metrics_labels(c->replica_labels, sizeof(c->replica_labels), "replica", c->replica, NULL);
    c->sync.name = "worker";
    c->own.name = "coord";
    atomic_init(&c->sync.down, false);
    atomic_init(&c->own.down, false);
    pthread_mutex_init(&c->state_mu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    ocb_list_init(&c->ops);
    ocb_cond_init(&c->cv);

    metrics_describe("ocb_coord_degraded", OCB_METRIC_GAUGE,
                     "1 while Redis is unreachable and commands use local state");
    metrics_describe("ocb_coord_info", OCB_METRIC_GAUGE, "This replica's coordination.replica_id");
    metrics_describe("ocb_coord_errors_total", OCB_METRIC_COUNTER,
                     "Redis failures (kind=connection|reply)");
    metrics_describe("ocb_coord_token_renewals_total", OCB_METRIC_COUNTER,
                     "Logins and refreshes this replica made itself (kind=login|refresh)");
    metrics_describe("ocb_coord_lock_waits_total", OCB_METRIC_COUNTER,
                     "Token renewals left to another replica holding the app's lock");
    metrics_describe("ocb_coord_tokens_adopted_total", OCB_METRIC_COUNTER,
                     "Platform tokens taken from Redis instead of logging in");
    metrics_describe("ocb_coord_tokens_stored_total", OCB_METRIC_COUNTER,
                     "Platform tokens this replica obtained and stored (result=ok|lost)");
    metrics_describe("ocb_coord_rate_denied_total", OCB_METRIC_COUNTER,
                     "Calls held back by the app's shared rate window");
    metrics_describe("ocb_coord_statuses_forwarded_total", OCB_METRIC_COUNTER,
                     "Status callbacks forwarded to a requester of another replica");
    metrics_describe("ocb_coord_subscription_syncs_skipped_total", OCB_METRIC_COUNTER,
                     "Subscription syncs left to the replica holding the app's lease");
    metrics_describe("ocb_coord_dedup_records_total", OCB_METRIC_COUNTER,
                     "Accepted pushes marked in the shared de-duplication window");
    metrics_gauge_set("ocb_coord_degraded", c->replica_labels, 0);
    metrics_gauge_set("ocb_coord_info", c->replica_labels, 1);
    log_info(MOD, NULL, "replica %s: coordination through redis %s%s", c->replica,
             c->url.unix_socket ? "unix:" : "", c->url.host);
    *out = c;
    return OCB_OK;
}

enum ocb_err coord_start(struct ocb_coord *c)
{
    if (c->started)
        return OCB_OK;
    if (pthread_create(&c->thread, NULL, coord_main, c) != 0)
        return OCB_ERR_IO;
    c->started = true;
    return OCB_OK;
}

static void op_free(struct op *o)
{
    if (o) {
        free(o->body);
        free(o);
    }
}

void coord_stop(struct ocb_coord *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    struct ocb_list left; /* the queue, moved out */
    ocb_list_init(&left);
    struct ocb_list *l;
    while ((l = ocb_list_pop_front(&c->ops)) != NULL)
        ocb_list_push_back(&left, l);
    c->n_ops = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->started) {
        pthread_join(c->thread, NULL);
        c->started = false;
    }
    unsigned dropped = 0;
    while ((l = ocb_list_pop_front(&left)) != NULL) {
        struct op *o = ocb_list_entry(l, struct op, link);
        if (o->kind == OP_DEDUP)
            o->seen(o->ctx, OCB_ERR_STOPPED, false);
        else
            dropped++;
        op_free(o);
    }
    if (dropped)
        log_warn(MOD, NULL, "%u queued status forward(s) or requester(s) dropped at shutdown",
                 dropped);
}

void coord_free(struct ocb_coord *c)
{
    if (!c)
        return;
    coord_stop(c);
    conn_close(&c->sync);
    conn_close(&c->own);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->state_mu);
    free(c);
}

const char *coord_replica_id(const struct ocb_coord *c)
{
    return c ? c->replica : "";
}

bool coord_degraded(const struct ocb_coord *c)
{
    return c && (atomic_load(&c->sync.down) || atomic_load(&c->own.down));
}

void coord_poll(struct ocb_coord *c)
{
    if (c && !c->sync.ctx && atomic_load(&c->sync.down))
        (void)conn_open(c, &c->sync);
}

/* ---- synchronous calls */

static bool reply_str(const redisReply *r, char *out, size_t cap)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len >= cap)
        return false;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return true;
}

static bool reply_i64(const redisReply *r, int64_t *out)
{
    char buf[32];
    if (r && r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return true;
    }
    if (!reply_str(r, buf, sizeof(buf)))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end)
        return false;
    *out = v;
    return true;
}

enum ocb_err coord_token_get(struct ocb_coord *c, const char *app_id, struct ocb_coord_token *t)
{
    char key[KEY_MAX];
    memset(t, 0, sizeof(*t));
    if (key_for(c, key, app_id, "token", NULL) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    const char *argv[] = {"HMGET", key, "access", "refresh", "expires", "refresh_at", "epoch"};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "HMGET token", 7, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    int64_t exp = 0, ref = 0, epoch = 0;
    rc = OCB_ERR_PROTOCOL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 5) {
        if (r->element[4]->type == REDIS_REPLY_NIL) {
            rc = OCB_ERR_NOT_FOUND;
        } else if (reply_i64(r->element[4], &epoch) && epoch >= 0) {
            t->epoch = (uint64_t)epoch;
            rc = OCB_ERR_NOT_FOUND;
            if (reply_str(r->element[0], t->access, sizeof(t->access)) && t->access[0] &&
                reply_i64(r->element[2], &exp) && reply_i64(r->element[3], &ref)) {
                if (!reply_str(r->element[1], t->refresh, sizeof(t->refresh)))
                    t->refresh[0] = '\0';
                t->expires_wall_ms = exp;
                t->refresh_wall_ms = ref;
                rc = OCB_OK;
            }
        }
    }
    freeReplyObject(r);
    return rc;
}

enum ocb_err coord_token_store(struct ocb_coord *c, const char *app_id, uint64_t expected_epoch,
                               struct ocb_coord_token *t)
{
    char key[KEY_MAX], ep[24], ex[24], rf[24], ttl[24];
    if (key_for(c, key, app_id, "token", NULL) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    snprintf(ep, sizeof(ep), "%" PRIu64, expected_epoch);
    snprintf(ex, sizeof(ex), "%" PRId64, t->expires_wall_ms);
    snprintf(rf, sizeof(rf), "%" PRId64, t->refresh_wall_ms);
    snprintf(ttl, sizeof(ttl), "%d", TOKEN_KEY_TTL_S);
    const char *argv[] = {"EVAL", LUA_TOKEN_CAS, "1", key, ep, t->access, t->refresh, ex, rf, ttl};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "token store", 10, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    rc = OCB_ERR_PROTOCOL;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) {
            rc = OCB_ERR_FULL;
        } else {
            t->epoch = (uint64_t)r->integer;
            rc = OCB_OK;
        }
    }
    freeReplyObject(r);
    count(c, "ocb_coord_tokens_stored_total", "result", rc == OCB_OK ? "ok" : "lost");
    return rc;
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char b[16];
    if (bytes > sizeof(b))
        bytes = sizeof(b);
    if (getrandom(b, bytes, 0) != (ssize_t)bytes) {
        /* Unlikely (the pool is seeded by now); the value only has to differ between holders. */
        uint64_t x = (uint64_t)ocb_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < bytes; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            b[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

enum ocb_err coord_lock_take(struct ocb_coord *c, const char *app_id, const char *name,
                             unsigned ttl_ms, char *value)
{
    char key[KEY_MAX], px[16];
    if (key_for(c, key, app_id, "lock", name) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    random_hex(value, 16);
    snprintf(px, sizeof(px), "%u", ttl_ms);
    const char *argv[] = {"SET", key, value, "NX", "PX", px};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "lock", 6, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    rc = r->type == REDIS_REPLY_STATUS ? OCB_OK
         : r->type == REDIS_REPLY_NIL  ? OCB_ERR_FULL
                                       : OCB_ERR_PROTOCOL;
    freeReplyObject(r);
    return rc;
}

enum ocb_err coord_lock_release(struct ocb_coord *c, const char *app_id, const char *name,
                                const char *value)
{
    char key[KEY_MAX];
    if (key_for(c, key, app_id, "lock", name) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    const char *argv[] = {"EVAL", LUA_RELEASE, "1", key, value};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "unlock", 5, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    rc = r->type == REDIS_REPLY_INTEGER ? (r->integer == 1 ? OCB_OK : OCB_ERR_NOT_FOUND)
                                        : OCB_ERR_PROTOCOL;
    freeReplyObject(r);
    return rc;
}

enum ocb_err coord_rate_take(struct ocb_coord *c, const char *app_id, unsigned calls,
                             int64_t window_ms, char *member, int64_t *retry_ms)
{
    char key[KEY_MAX], lim[16], win[24];
    *retry_ms = 0;
    if (key_for(c, key, app_id, "rate", NULL) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    snprintf(member, OCB_COORD_VALUE_MAX, "%.40s:%" PRIu64, c->replica, ++c->member_seq);
    snprintf(lim, sizeof(lim), "%u", calls);
    snprintf(win, sizeof(win), "%" PRId64, window_ms);
    const char *argv[] = {"EVAL", LUA_RATE_TAKE, "1", key, lim, win, member};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "rate", 7, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    rc = OCB_ERR_PROTOCOL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer == 1) {
            rc = OCB_OK;
        } else {
            rc = OCB_ERR_FULL;
            *retry_ms = r->element[1]->integer > 0 ? r->element[1]->integer : 1;
            count(c, "ocb_coord_rate_denied_total", "app", app_id);
        }
    }
    freeReplyObject(r);
    return rc;
}

enum ocb_err coord_rate_done(struct ocb_coord *c, const char *app_id, const char *member)
{
    char key[KEY_MAX];
    if (key_for(c, key, app_id, "rate", NULL) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    const char *argv[] = {"EVAL", LUA_RATE_DONE, "1", key, member};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "rate done", 5, argv, NULL, &r);
    if (r)
        freeReplyObject(r);
    return rc;
}

static enum ocb_err requester_put(struct ocb_coord *c, struct conn *cn,
                                  const struct ocb_requester *e, int64_t ttl_ms);

enum ocb_err coord_requester_put(struct ocb_coord *c, const struct ocb_requester *e, int64_t ttl_ms)
{
    return requester_put(c, &c->sync, e, ttl_ms);
}

static enum ocb_err requester_put(struct ocb_coord *c, struct conn *cn,
                                  const struct ocb_requester *e, int64_t ttl_ms)
{
    char key[KEY_MAX], px[24];

    assert(e != NULL);
    if (key_for(c, key, e->app_id, "req", e->command_id) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    snprintf(px, sizeof(px), "%" PRId64, ttl_ms > 0 ? ttl_ms : 1);
    const char *argv[] = {
        "EVAL", LUA_REQUESTER_PUT, "1", key, e->response_topic, (const char *)e->corr, c->replica,
        px};
    size_t lens[] = {
        4,           strlen(LUA_REQUESTER_PUT), 1,         strlen(key), strlen(e->response_topic),
        e->corr_len, strlen(c->replica),        strlen(px)};
    redisReply *r;
    enum ocb_err rc = cmd(c, cn, "requester", 8, argv, lens, &r);
    if (r)
        freeReplyObject(r);
    return rc;
}

enum ocb_err coord_lease(struct ocb_coord *c, const char *app_id, const char *name, unsigned ttl_ms,
                         char *holder, size_t cap)
{
    char key[KEY_MAX], px[16];
    if (key_for(c, key, app_id, "lease", name) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    snprintf(px, sizeof(px), "%u", ttl_ms);
    const char *argv[] = {"EVAL", LUA_LEASE, "1", key, c->replica, px};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->sync, "lease", 6, argv, NULL, &r);
    if (rc != OCB_OK)
        return rc;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        rc = OCB_OK;
    } else if (r->type == REDIS_REPLY_STRING) {
        rc = OCB_ERR_FULL;
        if (holder && cap)
            snprintf(holder, cap, "%.*s", (int)r->len, r->str);
    } else {
        rc = OCB_ERR_PROTOCOL;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- asynchronous calls (queued for the coord thread) */

static enum ocb_err enqueue(struct ocb_coord *c, struct op *o)
{
    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return OCB_ERR_STOPPED;
    }
    if (c->n_ops >= OCB_COORD_QUEUE_MAX) {
        pthread_mutex_unlock(&c->mu);
        return OCB_ERR_FULL;
    }
    ocb_list_push_back(&c->ops, &o->link);
    c->n_ops++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return OCB_OK;
}

enum ocb_err coord_status_forward(struct ocb_coord *c, const char *app_id, const char *command_id,
                                  const char *body, size_t len, bool final, int64_t final_keep_ms,
                                  ocb_requester_emit emit, void *ctx)
{
    if (!c || !app_id || !command_id || !body || !emit)
        return OCB_ERR_INVALID;
    if (len > OCB_COORD_STATUS_BODY_MAX)
        return OCB_ERR_TOO_BIG;
    if (strlen(app_id) > OCB_COMMAND_ID_MAX || strlen(command_id) > OCB_COMMAND_ID_MAX)
        return OCB_ERR_TOO_BIG;
    struct op *o = calloc(1, sizeof(*o));
    char *copy = o ? ocb_memdup(body, len ? len : 1) : NULL;
    if (!o || !copy) {
        free(o);
        return OCB_ERR_NOMEM;
    }
    o->kind = OP_STATUS;
    snprintf(o->app_id, sizeof(o->app_id), "%s", app_id);
    snprintf(o->command_id, sizeof(o->command_id), "%s", command_id);
    o->body = copy;
    o->len = len;
    o->final = final;
    o->final_keep_ms = final_keep_ms;
    o->emit = emit;
    o->ctx = ctx;
    int64_t now = ocb_now_ms();
    o->due_ms = now;
    o->give_up_ms = now + OCB_REQUESTERS_EARLY_KEEP_MS;
    enum ocb_err rc = enqueue(c, o);
    if (rc != OCB_OK)
        op_free(o);
    return rc;
}

enum ocb_err coord_requester_put_async(struct ocb_coord *c, const struct ocb_requester *e,
                                       int64_t ttl_ms)
{
    if (!c || !e)
        return OCB_ERR_INVALID;
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return OCB_ERR_NOMEM;
    o->kind = OP_PUT;
    o->put = *e;
    o->put_ttl_ms = ttl_ms;
    o->due_ms = ocb_now_ms();
    enum ocb_err rc = enqueue(c, o);
    if (rc != OCB_OK)
        free(o);
    return rc;
}

/* A queued de-duplication op; NULL when an argument is out of bounds (*rc says why). */
static struct op *dedup_op(enum op_kind kind, const char *app_id, const char *digest,
                           enum ocb_err *rc)
{
    *rc = OCB_ERR_TOO_BIG;
    if (strlen(app_id) > OCB_COMMAND_ID_MAX || strlen(digest) >= OCB_COORD_DIGEST_MAX)
        return NULL;
    *rc = OCB_ERR_NOMEM;
    struct op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->kind = kind;
    snprintf(o->app_id, sizeof(o->app_id), "%s", app_id);
    snprintf(o->digest, sizeof(o->digest), "%s", digest);
    o->due_ms = ocb_now_ms();
    *rc = OCB_OK;
    return o;
}

enum ocb_err coord_dedup_seen(struct ocb_coord *c, const char *app_id, const char *digest,
                              ocb_coord_seen_fn done, void *ctx)
{
    if (!c || !app_id || !digest || !digest[0] || !done)
        return OCB_ERR_INVALID;
    enum ocb_err rc;
    struct op *o = dedup_op(OP_DEDUP, app_id, digest, &rc);
    if (!o)
        return rc;
    /* Known down: answer now rather than queue behind the reconnect backoff. */
    if (atomic_load(&c->own.down)) {
        free(o);
        done(ctx, OCB_ERR_NOT_CONNECTED, false);
        return OCB_OK;
    }
    o->seen = done;
    o->ctx = ctx;
    rc = enqueue(c, o);
    if (rc != OCB_OK)
        free(o);
    return rc;
}

enum ocb_err coord_dedup_record(struct ocb_coord *c, const char *app_id, const char *digest,
                                int64_t window_ms)
{
    if (!c || !app_id || !digest || !digest[0] || window_ms <= 0)
        return OCB_ERR_INVALID;
    if (atomic_load(&c->own.down))
        return OCB_ERR_NOT_CONNECTED;
    enum ocb_err rc;
    struct op *o = dedup_op(OP_DEDUP_RECORD, app_id, digest, &rc);
    if (!o)
        return rc;
    o->window_ms = window_ms;
    rc = enqueue(c, o);
    if (rc != OCB_OK)
        free(o);
    return rc;
}

/* ---- the coord thread */

/* true when the op is finished (free it), false to retry it at o->due_ms. */
static bool run_status(struct ocb_coord *c, struct op *o)
{
    char key[KEY_MAX];
    if (key_for(c, key, o->app_id, "req", o->command_id) != OCB_OK)
        return true;
    const char *argv[] = {"HMGET", key, "topic", "corr", "replica"};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->own, "HMGET requester", 5, argv, NULL, &r);
    int64_t now = ocb_now_ms();
    if (rc != OCB_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        /* Not there (yet: the creating replica writes it after its answer), or Redis is away. */
        if (now + STATUS_RETRY_MS > o->give_up_ms) {
            log_debug(MOD, NULL, "status of %s: no requester known to any replica", o->command_id);
            return true;
        }
        o->due_ms = now + STATUS_RETRY_MS;
        return false;
    }
    struct ocb_requester e;
    char replica[OCB_COORD_REPLICA_MAX] = "";
    (void)reply_str(r->element[2], replica, sizeof(replica));
    const redisReply *corr = r->element[1];
    enum ocb_err frc = requesters_entry_fill(&e, o->app_id, o->command_id, r->element[0]->str,
                                             corr->type == REDIS_REPLY_STRING ? corr->str : NULL,
                                             corr->type == REDIS_REPLY_STRING ? corr->len : 0, 0);
    freeReplyObject(r);
    /* The creating replica's own map forwards its statuses (it also holds the
     * ones that overtake the answer); forwarding here too would duplicate.  A
     * command without a requester is stored with an empty topic (frc fails):
     * found, nothing to forward, no retries. */
    if (frc == OCB_OK && strcmp(replica, c->replica) != 0) {
        o->emit(o->ctx, &e, o->body, o->len);
        count(c, "ocb_coord_statuses_forwarded_total", "app", o->app_id);
    }
    /* Whoever sees the final status cuts the entry's life to the grace time. */
    if (o->final) {
        char px[24];
        snprintf(px, sizeof(px), "%" PRId64, o->final_keep_ms);
        const char *pargv[] = {"PEXPIRE", key, px};
        if (cmd(c, &c->own, "PEXPIRE requester", 3, pargv, NULL, &r) == OCB_OK)
            freeReplyObject(r);
    }
    return true;
}

static void run_dedup(struct ocb_coord *c, struct op *o)
{
    char key[KEY_MAX];
    if (key_for(c, key, o->app_id, "dedup", o->digest) != OCB_OK) {
        o->seen(o->ctx, OCB_ERR_TOO_BIG, false);
        return;
    }
    const char *argv[] = {"EXISTS", key};
    redisReply *r;
    enum ocb_err rc = cmd(c, &c->own, "dedup check", 2, argv, NULL, &r);
    if (rc != OCB_OK) {
        o->seen(o->ctx, rc, false);
        return;
    }
    bool seen = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    rc = r->type == REDIS_REPLY_INTEGER ? OCB_OK : OCB_ERR_PROTOCOL;
    freeReplyObject(r);
    o->seen(o->ctx, rc, seen);
}

static void run_dedup_record(struct ocb_coord *c, struct op *o)
{
    char key[KEY_MAX], px[24];
    if (key_for(c, key, o->app_id, "dedup", o->digest) != OCB_OK)
        return;
    snprintf(px, sizeof(px), "%" PRId64, o->window_ms);
    /* NX: the window counts from the first acceptance, as a re-push must not extend it. */
    const char *argv[] = {"SET", key, "1", "NX", "PX", px};
    redisReply *r;
    if (cmd(c, &c->own, "dedup record", 6, argv, NULL, &r) == OCB_OK) {
        freeReplyObject(r);
        count(c, "ocb_coord_dedup_records_total", "app", o->app_id);
    }
}

static void heartbeat(struct ocb_coord *c)
{
    redisReply *r;
    const char *argv[] = {"PING"};
    if (cmd(c, &c->own, "PING", 1, argv, NULL, &r) == OCB_OK)
        freeReplyObject(r);
}

static void *coord_main(void *arg)
{
    struct ocb_coord *c = arg;
    int64_t next_beat = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        int64_t now = ocb_now_ms();
        /* Take the first due op; keep the others in order. */
        struct op *due = NULL;
        int64_t wake = next_beat;
        struct ocb_list *pos;
        ocb_list_for_each (pos, &c->ops) {
            struct op *o = ocb_list_entry(pos, struct op, link);
            if (o->due_ms <= now) {
                due = o;
                break;
            }
            if (o->due_ms < wake)
                wake = o->due_ms;
        }
        if (due) {
            ocb_list_remove(&due->link);
            c->n_ops--;
        }
        if (!due && now < next_beat) {
            ocb_cond_wait_until(&c->cv, &c->mu, wake);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        if (!due) {
            heartbeat(c);
            next_beat = ocb_now_ms() + HEARTBEAT_MS;
            pthread_mutex_lock(&c->mu);
            continue;
        }
        bool finished = true;
        if (due->kind == OP_DEDUP)
            run_dedup(c, due);
        else if (due->kind == OP_DEDUP_RECORD)
            run_dedup_record(c, due);
        else if (due->kind == OP_PUT)
            (void)requester_put(c, &c->own, &due->put, due->put_ttl_ms);
        else
            finished = run_status(c, due);
        pthread_mutex_lock(&c->mu);
        if (finished || c->stopping) {
            if (!finished)
                log_debug(MOD, NULL, "status of %s dropped: stopping", due->command_id);
            pthread_mutex_unlock(&c->mu);
            op_free(due);
            pthread_mutex_lock(&c->mu);
        } else {
            ocb_list_push_back(&c->ops, &due->link);
            c->n_ops++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    conn_close(&c->own);
    return NULL;
}
