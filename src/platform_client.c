/*
 * platform_client.c: libcurl multi + a token manager per app.
 *
 * Each call is a struct request with its own easy handle; the multi handle
 * pools connections (mutual TLS handshakes are the expensive part), so
 * consecutive calls reuse them.  An API call for an app without a token is
 * parked on that app's wait list and a login is started unless one is
 * already running: the platform keeps only the latest token, so two
 * concurrent logins would invalidate each other's result.
 *
 * Token errors on an API call: if the token the call used has since been
 * replaced, it is simply resent with the new one; otherwise the token is
 * dropped, the call is parked and a login runs.  A call is re-sent at most
 * MAX_TOKEN_RETRIES times, so a platform that keeps rejecting fresh tokens
 * yields OCB_PLATFORM_TOKEN instead of a loop.
 *
 * A failed login fails the parked calls at once (the caller owns retrying
 * and deadlines) and is retried on its own with backoff, so that readiness
 * recovers without traffic.  While that backoff runs, new calls fail fast
 * with the last login failure instead of hammering the login endpoint.
 *
 * Several replicas (coordination.redis_url, coord.h): the token lives in
 * Redis and every login or refresh goes through shared_auth() first.  It
 * adopts the shared token when that one is usable (not the token just
 * rejected, not expired, not due for refresh); otherwise it takes the app's
 * lock, reads again (another replica may have renewed it in between), and
 * only then lets the login/refresh run; auth_done() stores the result with
 * compare-and-set on the epoch and releases the lock.  A replica that finds
 * the lock taken parks its calls and looks again shortly (peer_wait_ms).
 * With Redis unreachable everything is local, as with one instance.
 *
 * Single-threaded by contract; the only shared state is each app's atomic
 * readiness flag, read by /readyz from libmicrohttpd's threads.
 */
#include "ocb/platform_client.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "ocb/command.h"
#include "ocb/coord.h"
#include "ocb/list.h"
#include "ocb/log.h"
#include "ocb/util.h"
#include "ocb/metrics.h"

#define MOD "platform"

#define PATH_LOGIN         "/iocm/app/sec/v1.1.0/login"
#define PATH_REFRESH       "/iocm/app/sec/v1.1.0/refreshToken"
#define TOKEN_MAX          OCB_PLATFORM_TOKEN_MAX
#define MAX_TOKEN_RETRIES  2
#define LOGIN_BACKOFF_MIN  1000
#define LOGIN_BACKOFF_MAX  30000
#define DEFAULT_EXPIRES_IN 3600
#define SUPERSEDED_WARN_MS 60000 /* at most one "token superseded" warning a minute per app */
#define PEER_WAIT_MS       250   /* another replica holds the token lock: look again then */

enum req_kind { REQ_API, REQ_LOGIN, REQ_REFRESH };

struct app;

struct request {
    struct ocb_list wlink; /* on an app's wait list or the deferred list */
    struct ocb_list alink; /* on pc->active while a transfer runs (linked = running) */
    struct app *app;
    enum req_kind kind;
    char *op, *method, *path, *body;
    size_t body_len, body_pos; /* the body is handed to libcurl by read_body() */
    ocb_platform_done done;
    void *ctx;
    CURL *easy;
    struct curl_slist *headers;
    char *buf; /* reply body, NUL-terminated */
    size_t len, cap;
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];
    char token_used[TOKEN_MAX];
    int token_retries;
    int64_t started_ms;
    /* deferred completion (a failure decided outside a transfer) */
    struct ocb_platform_reply deferred;
};

struct app {
    const struct ocb_app *cfg;
    const struct ocb_config *owner; /* a reference to the configuration cfg points into */
    char token[TOKEN_MAX];
    char refresh[TOKEN_MAX];
    bool have_token;
    int64_t refresh_at_ms, expires_at_ms;
    bool auth_running;         /* a login or refresh is in flight */
    int64_t login_retry_at_ms; /* 0 = no failed login pending a retry */
    unsigned backoff_ms;
    struct ocb_platform_reply last_failure; /* of the last login (body unused) */
    struct ocb_list wait; /* struct request (wlink), parked until a token, oldest first */
    atomic_bool ready;
    /* Reload state.  An app dropped by a reload (or whose secret was removed)
     * goes inactive: it no longer counts for readiness and gets no timers,
     * but calls already accepted for it still finish.  stale_auth: the
     * secret changed while a login was running, so its result is not used. */
    atomic_bool active;
    bool stale_auth;
    int64_t superseded_warned_ms; /* last "token superseded" warning, to keep the log readable */
    /* Shared token (coord.h).  lock_value is non-empty while this replica
     * holds the app's token lock for the login/refresh in flight; lock_epoch
     * is the epoch read under it (for the compare-and-set); rejected is the
     * last token the platform refused or that expired, never adopted again. */
    char lock_value[OCB_COORD_VALUE_MAX];
    uint64_t lock_epoch;
    char rejected[TOKEN_MAX];
    int64_t peer_wait_ms; /* 0, or when to look at the shared token again */
};

struct ocb_platform_client {
    const struct ocb_config *cfg; /* a reference: the start-up one, for the connection keys */
    CURLM *multi;
    char *base; /* platform.url without a trailing '/' */
    struct app apps[OCB_MAX_APPS];
    /* Grows on reload (worker thread); read by platform_client_ready() on
     * other threads, hence atomic.  A slot is filled before it is counted. */
    _Atomic size_t n_apps;
    struct ocb_list deferred; /* struct request (wlink), failures to report from run */
    struct ocb_list active;   /* struct request (alink): transfers added to the multi handle */
    unsigned outstanding;
    struct ocb_coord *coord; /* NULL: one instance, tokens are local */
};

const char *platform_client_class_name(enum ocb_platform_class cls)
{
    switch (cls) {
    case OCB_PLATFORM_OK:
        return "ok";
    case OCB_PLATFORM_TOKEN:
        return "token";
    case OCB_PLATFORM_THROTTLED:
        return "throttled";
    case OCB_PLATFORM_RETRY:
        return "retry";
    case OCB_PLATFORM_FAILED:
        return "failed";
    }
    return "failed";
}

/* Copy s (NULL: "") into out, cut to cap - 1 bytes.  out and s are distinct fields (often
 * of one struct, which is why this is not snprintf: gcc's -Wrestrict cannot tell them apart). */
static void copy_trunc(char *out, size_t cap, const char *s)
{
    size_t n = s != NULL && cap > 0 ? strnlen(s, cap - 1) : 0;

    if (cap == 0)
        return;
    if (n > 0)
        memcpy(out, s, n);
    out[n] = '\0';
}

/* error_code/error_desc or resultcode/resultmsg; codes may be strings or numbers. */
static void read_error_body(const char *body, size_t len, struct ocb_platform_reply *r)
{
    static const char *const shapes[][2] = {
        {"error_code", "error_desc"},
        {"resultcode", "resultmsg"},
        {"error_code", "error_msg"},
    };
    cJSON *root = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(root))
        goto out;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]) && !r->code[0]; i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, shapes[i][0]);
        if (cJSON_IsString(c) && c->valuestring && *c->valuestring)
            copy_trunc(r->code, sizeof(r->code), c->valuestring);
        else if (cJSON_IsNumber(c))
            snprintf(r->code, sizeof(r->code), "%.0f", c->valuedouble);
        else
            continue;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, shapes[i][1]);
        if (cJSON_IsString(d) && d->valuestring)
            copy_trunc(r->desc, sizeof(r->desc), d->valuestring);
    }
out:
    cJSON_Delete(root);
}

void platform_client_classify(long status, const char *body, size_t len,
                              struct ocb_platform_reply *r)
{
    r->status = status;
    r->code[0] = '\0';
    r->desc[0] = '\0';
    read_error_body(body, len, r);
    bool is_2xx = status >= 200 && status < 300;
    /* Some platform builds answer success with "error_code":"0"; only a
     * non-zero code in a 2xx body is an error (lenient reading). */
    if (is_2xx && (!r->code[0] || strcmp(r->code, "0") == 0)) {
        r->code[0] = '\0';
        r->cls = OCB_PLATFORM_OK;
        return;
    }
    if (!r->desc[0])
        snprintf(r->desc, sizeof(r->desc), "HTTP %ld", status);
    if (strcmp(r->code, "1010009") == 0 || status == 429)
        r->cls = OCB_PLATFORM_THROTTLED;
    else if (strcmp(r->code, "1010005") == 0 || strcmp(r->code, "100002") == 0 ||
             strcmp(r->code, "100208") == 0 || (status == 401 && !r->code[0]))
        r->cls = OCB_PLATFORM_TOKEN;
    else if (status >= 500 || status == 408)
        r->cls = OCB_PLATFORM_RETRY;
    else
        r->cls = OCB_PLATFORM_FAILED;
}

static enum ocb_err transport_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return OCB_ERR_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return OCB_ERR_NOT_CONNECTED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
        return OCB_ERR_TLS;
    case CURLE_OUT_OF_MEMORY:
        return OCB_ERR_NOMEM;
    default:
        return OCB_ERR_IO;
    }
}

/*
 * The request body goes through a read callback instead of POSTFIELDS for one
 * reason: libcurl silently re-sends a request whose reused connection died
 * without an answer ("Connection died, retrying a fresh connect").  For a
 * create that the platform did process, that is a second command.  A body
 * that cannot be rewound once any of it was read makes libcurl fail that
 * retry with CURLE_SEND_FAIL_REWIND instead, which transfer_done() reports
 * as sent-without-answer, and the command worker reconciles.
 */
static size_t read_body(char *buf, size_t size, size_t nmemb, void *userp)
{
    struct request *req = userp;
    size_t n = size * nmemb, left = req->body_len - req->body_pos;
    if (n > left)
        n = left;
    memcpy(buf, req->body + req->body_pos, n);
    req->body_pos += n;
    return n;
}

static int seek_body(void *userp, curl_off_t offset, int origin)
{
    const struct request *req = userp;
    /* Rewinding what was never read is harmless; anything else would re-send. */
    if (origin == SEEK_SET && offset == 0 && req->body_pos == 0)
        return CURL_SEEKFUNC_OK;
    return CURL_SEEKFUNC_CANTSEEK;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *req = userp;
    size_t n = size * nmemb;
    if (n > req->cap - req->len) {
        req->too_big = true;
        return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
    }
    memcpy(req->buf + req->len, data, n);
    req->len += n;
    req->buf[req->len] = '\0';
    return n;
}

static void request_free(struct request *req)
{
    if (!req)
        return;
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->op);
    free(req->method);
    free(req->path);
    free(req->body);
    free(req->buf);
    free(req);
}

static struct request *request_new(struct ocb_platform_client *pc, struct app *app,
                                   enum req_kind kind, const char *op, const char *method,
                                   const char *path, const char *body)
{
    struct request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    ocb_list_init(&req->wlink);
    ocb_list_init(&req->alink);
    req->app = app;
    req->kind = kind;
    req->op = ocb_strdup_or_null(op ? op : "call");
    req->method = ocb_strdup_or_null(method);
    req->path = ocb_strdup_or_null(path);
    req->body = ocb_strdup_or_null(body);
    /* The reply cap is checked before growing: one buffer of the cap plus
     * the terminating NUL, allocated once per call. */
    req->cap = pc->cfg->platform.max_reply_bytes;
    req->buf = malloc(req->cap + 1);
    if (!req->op || !req->method || !req->path || (body && !req->body) || !req->buf) {
        request_free(req);
        return NULL;
    }
    req->buf[0] = '\0';
    return req;
}

static void fail_reply(struct ocb_platform_reply *r, enum ocb_err transport, const char *desc)
{
    memset(r, 0, sizeof(*r));
    r->cls = (transport == OCB_ERR_TOO_BIG || transport == OCB_ERR_INVALID) ? OCB_PLATFORM_FAILED
                                                                            : OCB_PLATFORM_RETRY;
    r->transport = transport;
    r->body = "";
    copy_trunc(r->desc, sizeof(r->desc), desc);
}

/* Complete an API call: run its callback and free it. */
static void complete(struct ocb_platform_client *pc, struct request *req,
                     const struct ocb_platform_reply *reply)
{
    if (pc->outstanding > 0)
        pc->outstanding--;
    if (req->done)
        req->done(req->ctx, reply);
    request_free(req);
}

/* Fail later, from platform_client_run(): keeps callbacks off the submit path. */
static void defer_failure(struct ocb_platform_client *pc, struct request *req,
                          const struct ocb_platform_reply *reply)
{
    req->deferred = *reply;
    req->deferred.body = "";
    req->deferred.len = 0;
    ocb_list_push_back(&pc->deferred, &req->wlink);
}

static void park(struct app *app, struct request *req)
{
    ocb_list_push_back(&app->wait, &req->wlink);
}

static struct request *waiting_of(struct ocb_list *l)
{
    return ocb_list_entry(l, struct request, wlink);
}

static void active_add(struct ocb_platform_client *pc, struct request *req)
{
    ocb_list_push_front(&pc->active, &req->alink);
}

static void active_remove(struct ocb_platform_client *pc, struct request *req)
{
    if (!ocb_list_linked(&req->alink))
        return;
    ocb_list_remove(&req->alink);
    curl_multi_remove_handle(pc->multi, req->easy);
}

/* "name: value"; an empty value with name "Expect" removes libcurl's default. */
static enum ocb_err add_header(struct request *req, const char *name, const char *value)
{
    char line[TOKEN_MAX + 64];
    int n = snprintf(line, sizeof(line), "%s:%s%s", name, *value ? " " : "", value);
    if (n < 0 || (size_t)n >= sizeof(line))
        return OCB_ERR_TOO_BIG;
    struct curl_slist *l = curl_slist_append(req->headers, line);
    if (!l)
        return OCB_ERR_NOMEM;
    req->headers = l;
    return OCB_OK;
}

/* Build the easy handle and hand it to the multi handle. */
static enum ocb_err start_transfer(struct ocb_platform_client *pc, struct request *req)
{
    const struct ocb_config *cfg = pc->cfg;
    enum ocb_err rc = OCB_ERR_NOMEM;
    char url[2048];

    if (req->easy) {
        active_remove(pc, req);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
    }
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->body_len = req->body ? strlen(req->body) : 0;
    req->body_pos = 0;
    req->len = 0;
    req->buf[0] = '\0';
    req->too_big = false;
    req->errbuf[0] = '\0';

    int n = snprintf(url, sizeof(url), "%s%s", pc->base, req->path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return OCB_ERR_TOO_BIG;
    req->easy = curl_easy_init();
    if (!req->easy)
        return OCB_ERR_NOMEM;

    if (req->kind == REQ_LOGIN) {
        rc = add_header(req, "Content-Type", "application/x-www-form-urlencoded");
    } else {
        rc = add_header(req, "Content-Type", "application/json");
        if (rc == OCB_OK && req->kind == REQ_API) {
            rc = add_header(req, "app_key", req->app->cfg->app_id);
            char bearer[TOKEN_MAX + 8];
            snprintf(bearer, sizeof(bearer), "Bearer %s", req->app->token);
            if (rc == OCB_OK)
                rc = add_header(req, "Authorization", bearer);
            copy_trunc(req->token_used, sizeof(req->token_used), req->app->token);
        }
    }
    if (rc == OCB_OK)
        rc = add_header(req, "Accept", "application/json");
    /* No "Expect: 100-continue" round trip: bodies are small. */
    if (rc == OCB_OK)
        rc = add_header(req, "Expect", "");
    if (rc != OCB_OK)
        return rc;

    CURL *e = req->easy;
    CURLcode cc = CURLE_OK;
#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_PRIVATE, req);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, req);
    SETOPT(CURLOPT_HTTPHEADER, req->headers);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->platform.connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)cfg->platform.timeout_ms);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    if (cfg->platform.ca_file && *cfg->platform.ca_file)
        SETOPT(CURLOPT_CAINFO, cfg->platform.ca_file);
    if (cfg->platform.cert_file && *cfg->platform.cert_file)
        SETOPT(CURLOPT_SSLCERT, cfg->platform.cert_file);
    if (cfg->platform.key_file && *cfg->platform.key_file)
        SETOPT(CURLOPT_SSLKEY, cfg->platform.key_file);
    /* The platform is usually addressed by IP with a certificate naming
     * something else: the hostname check is optional, the chain check is not. */
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, cfg->platform.verify_hostname ? 2L : 0L);
    if (strcmp(req->method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(req->method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body) {
            SETOPT(CURLOPT_POST, 1L);
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SETOPT(CURLOPT_READFUNCTION, read_body);
            SETOPT(CURLOPT_READDATA, req);
            SETOPT(CURLOPT_SEEKFUNCTION, seek_body);
            SETOPT(CURLOPT_SEEKDATA, req);
        } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
            SETOPT(CURLOPT_POSTFIELDS, "");
            SETOPT(CURLOPT_POSTFIELDSIZE, 0L);
        } else {
            /* A bodiless DELETE has no body to refuse the rewind of (read_body), so on a
             * reused connection that died without an answer libcurl would re-send it
             * silently: the caller would see the retry's 404, never the lost answer.
             * A fresh connection is never retried that way. */
            SETOPT(CURLOPT_FRESH_CONNECT, 1L);
        }
    }
#undef SETOPT
    if (cc != CURLE_OK) {
        log_error(MOD, NULL, "curl option: %s", curl_easy_strerror(cc));
        return OCB_ERR_INVALID;
    }
    req->started_ms = ocb_now_ms();
    if (curl_multi_add_handle(pc->multi, e) != CURLM_OK)
        return OCB_ERR_NOMEM;
    active_add(pc, req);
    return OCB_OK;
}

static void start_or_defer(struct ocb_platform_client *pc, struct request *req)
{
    enum ocb_err rc = start_transfer(pc, req);
    if (rc != OCB_OK) {
        struct ocb_platform_reply r;
        fail_reply(&r, rc, ocb_strerror(rc));
        defer_failure(pc, req, &r);
    }
}

static void set_ready(struct app *app, bool ready)
{
    atomic_store(&app->ready, ready);
}

static void start_waiting(struct ocb_platform_client *pc, struct app *app);

/* Monotonic deadline for a wall-clock time of the shared token. */
static int64_t mono_of(int64_t wall_ms, int64_t now_wall, int64_t now_mono)
{
    return now_mono + (wall_ms - now_wall);
}

/* Can this replica use the shared token t instead of logging in (or refreshing)? */
static bool shared_usable(const struct app *app, const struct ocb_coord_token *t, bool refresh,
                          int64_t now_wall)
{
    if (!t->access[0] || strcmp(t->access, app->rejected) == 0 || t->expires_wall_ms <= now_wall)
        return false;
    if (refresh) /* ours is due for refresh: only a newer one with time left helps */
        return strcmp(t->access, app->token) != 0 && t->refresh_wall_ms > now_wall;
    return true;
}

static void adopt(struct ocb_platform_client *pc, struct app *app, const struct ocb_coord_token *t)
{
    int64_t now = ocb_now_ms(), wall = ocb_wall_ms();
    copy_trunc(app->token, sizeof(app->token), t->access);
    copy_trunc(app->refresh, sizeof(app->refresh), t->refresh);
    app->expires_at_ms = mono_of(t->expires_wall_ms, wall, now);
    app->refresh_at_ms = mono_of(t->refresh_wall_ms, wall, now);
    if (app->refresh_at_ms > app->expires_at_ms)
        app->refresh_at_ms = app->expires_at_ms;
    app->have_token = true;
    app->login_retry_at_ms = 0;
    app->backoff_ms = 0;
    app->peer_wait_ms = 0;
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "replica", coord_replica_id(pc->coord), NULL);
    metrics_counter_add("ocb_coord_tokens_adopted_total", labels, 1);
    if (!atomic_load(&app->ready))
        log_info(MOD, NULL, "app %s: using the shared token (epoch %llu)", app->cfg->app_id,
                 (unsigned long long)t->epoch);
    else
        log_debug(MOD, NULL, "app %s: shared token epoch %llu", app->cfg->app_id,
                  (unsigned long long)t->epoch);
    set_ready(app, true);
    start_waiting(pc, app);
}

/*
 * Before a login or refresh with coordination on.  true: settled without
 * one (the shared token was adopted, or another replica holds the lock and
 * we look again in PEER_WAIT_MS).  false: go ahead; if the lock was taken,
 * app->lock_value says so and auth_done() stores and releases.  Redis
 * unreachable also answers false: a local login, as with one instance.
 */
static bool shared_auth(struct ocb_platform_client *pc, struct app *app, bool refresh)
{
    const char *id = app->cfg->app_id;
    struct ocb_coord_token t;
    enum ocb_err rc = coord_token_get(pc->coord, id, &t);
    if (rc == OCB_OK && shared_usable(app, &t, refresh, ocb_wall_ms())) {
        adopt(pc, app, &t);
        return true;
    }
    if (rc != OCB_OK && rc != OCB_ERR_NOT_FOUND)
        return false;
    unsigned ttl = pc->cfg->platform.connect_timeout_ms + pc->cfg->platform.timeout_ms + 2000;
    char value[OCB_COORD_VALUE_MAX];
    rc = coord_lock_take(pc->coord, id, "token", ttl, value);
    if (rc == OCB_ERR_FULL) {
        char labels[OCB_METRICS_LABELS_MAX];
        metrics_labels(labels, sizeof(labels), "replica", coord_replica_id(pc->coord), NULL);
        metrics_counter_add("ocb_coord_lock_waits_total", labels, 1);
        log_debug(MOD, NULL, "app %s: another replica is renewing the token; waiting", id);
        if (refresh && app->have_token)
            app->refresh_at_ms = ocb_now_ms() + PEER_WAIT_MS; /* ours still works meanwhile */
        else
            app->peer_wait_ms = ocb_now_ms() + PEER_WAIT_MS;
        return true;
    }
    if (rc != OCB_OK)
        return false;
    /* Under the lock: someone may have stored a fresh token since we looked. */
    rc = coord_token_get(pc->coord, id, &t);
    if (rc == OCB_OK && shared_usable(app, &t, refresh, ocb_wall_ms())) {
        (void)coord_lock_release(pc->coord, id, "token", value);
        adopt(pc, app, &t);
        return true;
    }
    if (rc != OCB_OK && rc != OCB_ERR_NOT_FOUND) {
        (void)coord_lock_release(pc->coord, id, "token", value);
        return false;
    }
    /* Refresh with the newest refresh token anyone holds. */
    if (rc == OCB_OK && refresh && t.refresh[0])
        copy_trunc(app->refresh, sizeof(app->refresh), t.refresh);
    app->lock_epoch = t.epoch;
    copy_trunc(app->lock_value, sizeof(app->lock_value), value);
    return false;
}

/* After a login/refresh under the lock: store the new token (ok) and release. */
static void shared_done(struct ocb_platform_client *pc, struct app *app, bool ok)
{
    if (!app->lock_value[0])
        return;
    const char *id = app->cfg->app_id;
    if (ok) {
        int64_t now = ocb_now_ms(), wall = ocb_wall_ms();
        struct ocb_coord_token t;
        memset(&t, 0, sizeof(t));
        copy_trunc(t.access, sizeof(t.access), app->token);
        copy_trunc(t.refresh, sizeof(t.refresh), app->refresh);
        t.expires_wall_ms = wall + (app->expires_at_ms - now);
        t.refresh_wall_ms = wall + (app->refresh_at_ms - now);
        enum ocb_err rc = coord_token_store(pc->coord, id, app->lock_epoch, &t);
        if (rc == OCB_OK)
            log_info(MOD, NULL, "app %s: token shared (epoch %llu)", id,
                     (unsigned long long)t.epoch);
        else
            log_warn(MOD, NULL, "app %s: new token not shared: %s", id,
                     rc == OCB_ERR_FULL ? "another replica stored one first (lock expired?)"
                                        : ocb_strerror(rc));
    }
    enum ocb_err rc = coord_lock_release(pc->coord, id, "token", app->lock_value);
    if (rc == OCB_ERR_NOT_FOUND)
        log_warn(MOD, NULL, "app %s: the token lock expired before the login finished", id);
    app->lock_value[0] = '\0';
}

static void start_auth(struct ocb_platform_client *pc, struct app *app, bool refresh)
{
    if (app->auth_running)
        return;
    if (refresh && !app->refresh[0])
        refresh = false; /* some deployments return refreshToken null */
    app->peer_wait_ms = 0;
    if (pc->coord && shared_auth(pc, app, refresh))
        return;
    if (refresh && !app->refresh[0])
        refresh = false;
    char *body = NULL;
    const char *secret = app->cfg->secret ? app->cfg->secret : "";
    if (refresh) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddItemToObject(o, "appId", cJSON_CreateString(app->cfg->app_id));
            cJSON_AddItemToObject(o, "secret", cJSON_CreateString(secret));
            cJSON_AddItemToObject(o, "refreshToken", cJSON_CreateString(app->refresh));
            body = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
        }
    } else {
        size_t cap = 3 * (strlen(app->cfg->app_id) + strlen(secret)) + 32;
        char *a = malloc(cap), *s = malloc(cap);
        body = malloc(2 * cap + 32);
        if (a && s && body && command_url_escape(app->cfg->app_id, a, cap) == OCB_OK &&
            command_url_escape(secret, s, cap) == OCB_OK)
            snprintf(body, 2 * cap + 32, "appId=%s&secret=%s", a, s);
        else {
            free(body);
            body = NULL;
        }
        free(a);
        free(s);
    }
    struct request *req = body ? request_new(pc, app, refresh ? REQ_REFRESH : REQ_LOGIN,
                                             refresh ? "refreshToken" : "login", "POST",
                                             refresh ? PATH_REFRESH : PATH_LOGIN, body)
                               : NULL;
    if (refresh && body)
        cJSON_free(body);
    else
        free(body);
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "kind", refresh ? "refresh" : "login", NULL);
    metrics_counter_add("ocb_token_refreshes_total", labels, 1);
    if (pc->coord) {
        /* The same, per replica: what the shared token saves shows here. */
        metrics_labels(labels, sizeof(labels), "replica", coord_replica_id(pc->coord), "kind",
                       refresh ? "refresh" : "login", NULL);
        metrics_counter_add("ocb_coord_token_renewals_total", labels, 1);
    }
    if (!req || start_transfer(pc, req) != OCB_OK) {
        request_free(req);
        if (pc->coord)
            shared_done(pc, app, false);
        log_error(MOD, NULL, "app %s: cannot start %s", app->cfg->app_id,
                  refresh ? "token refresh" : "login");
        app->login_retry_at_ms = ocb_now_ms() + LOGIN_BACKOFF_MIN;
        return;
    }
    app->auth_running = true;
    log_debug(MOD, NULL, "app %s: %s", app->cfg->app_id, refresh ? "refreshing token" : "login");
}

/* Fail every parked call of app with reply r. */
static void fail_waiting(struct ocb_platform_client *pc, struct app *app,
                         const struct ocb_platform_reply *r)
{
    struct ocb_list parked, *pos, *tmp;

    ocb_list_init(&parked);
    ocb_list_splice_back(&parked, &app->wait); /* complete() may park new calls */
    ocb_list_for_each_safe (pos, tmp, &parked) {
        ocb_list_remove(pos);
        complete(pc, waiting_of(pos), r);
    }
}

static void start_waiting(struct ocb_platform_client *pc, struct app *app)
{
    struct ocb_list parked, *pos, *tmp;

    ocb_list_init(&parked);
    ocb_list_splice_back(&parked, &app->wait); /* start_or_defer() may park a call again */
    ocb_list_for_each_safe (pos, tmp, &parked) {
        ocb_list_remove(pos);
        start_or_defer(pc, waiting_of(pos));
    }
}

bool platform_client_token_parse(const char *body, size_t len, struct ocb_platform_token *t)
{
    const long long max_secs = 30LL * 86400;
    cJSON *root = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "accessToken");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(root, "refreshToken");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "expiresIn");
    bool ok = cJSON_IsString(at) && at->valuestring && *at->valuestring &&
              strlen(at->valuestring) < sizeof(t->access);
    if (!ok)
        goto out;
    copy_trunc(t->access, sizeof(t->access), at->valuestring);
    if (cJSON_IsString(rt) && rt->valuestring && strlen(rt->valuestring) < sizeof(t->refresh))
        copy_trunc(t->refresh, sizeof(t->refresh), rt->valuestring);
    else
        t->refresh[0] = '\0';
    /* expiresIn is documented as an integer ("fixed 3600"); accept a
     * numeric string too and fall back to the documented value.  Clamp
     * before converting: a double beyond long long's range is undefined. */
    t->expires_in_s = DEFAULT_EXPIRES_IN;
    if (cJSON_IsNumber(ex) && ex->valuedouble >= 1)
        t->expires_in_s =
            ex->valuedouble >= (double)max_secs ? max_secs : (long long)ex->valuedouble;
    else if (cJSON_IsString(ex) && ex->valuestring) {
        char *end = NULL;
        long long v = strtoll(ex->valuestring, &end, 10);
        if (end && end != ex->valuestring && *end == '\0' && v >= 1)
            t->expires_in_s = v;
    }
    if (t->expires_in_s > max_secs)
        t->expires_in_s = max_secs;
out:
    cJSON_Delete(root);
    return ok;
}

/* A token reply: {"accessToken","refreshToken","expiresIn"}. */
static bool take_token(struct app *app, const char *body, size_t len)
{
    struct ocb_platform_token t;
    bool ok = platform_client_token_parse(body, len, &t);
    if (ok) {
        memcpy(app->token, t.access, sizeof(app->token));
        memcpy(app->refresh, t.refresh, sizeof(app->refresh));
        long long secs = t.expires_in_s;
        /* Refresh when 80 % of the lifetime is gone, at most 5 minutes
         * early: short test TTLs still refresh before expiry. */
        long long margin_ms = secs * 1000 / 5;
        if (margin_ms > 300000)
            margin_ms = 300000;
        int64_t now = ocb_now_ms();
        app->expires_at_ms = now + secs * 1000;
        app->refresh_at_ms = app->expires_at_ms - margin_ms;
        app->have_token = true;
    }
    return ok;
}

static void auth_done(struct ocb_platform_client *pc, struct request *req,
                      struct ocb_platform_reply *r)
{
    struct app *app = req->app;
    bool refresh = req->kind == REQ_REFRESH;
    app->auth_running = false;
    if (app->stale_auth) {
        /* Started with the secret a reload replaced: log in with the new one. */
        app->stale_auth = false;
        if (pc->coord)
            shared_done(pc, app, false);
        start_auth(pc, app, false);
        return;
    }
    bool got = r->cls == OCB_PLATFORM_OK && take_token(app, r->body, r->len);
    if (pc->coord)
        shared_done(pc, app, got);
    if (got) {
        app->login_retry_at_ms = 0;
        app->backoff_ms = 0;
        if (!atomic_load(&app->ready))
            log_info(MOD, NULL, "app %s: logged in", app->cfg->app_id);
        set_ready(app, true);
        start_waiting(pc, app);
        return;
    }
    if (r->cls == OCB_PLATFORM_OK) {
        r->cls = OCB_PLATFORM_RETRY;
        copy_trunc(r->desc, sizeof(r->desc), "token reply without accessToken");
    }
    if (refresh) {
        /* An expired or rejected refresh token answers 401/100208: the
         * documented way out is a fresh login. */
        log_warn(MOD, NULL, "app %s: token refresh failed (%ld %s %s), logging in again",
                 app->cfg->app_id, r->status, r->code, r->desc);
        /* Not the shared token either, or the login below would just adopt it again. */
        copy_trunc(app->rejected, sizeof(app->rejected), app->token);
        start_auth(pc, app, false);
        return;
    }
    app->have_token = false;
    set_ready(app, false);
    app->backoff_ms = app->backoff_ms ? app->backoff_ms * 2 : LOGIN_BACKOFF_MIN;
    if (app->backoff_ms > LOGIN_BACKOFF_MAX)
        app->backoff_ms = LOGIN_BACKOFF_MAX;
    app->login_retry_at_ms = ocb_now_ms() + app->backoff_ms;
    /* A wrong secret looks like a token error to the classifier; for a
     * login it is a definite answer, not something a new token fixes. */
    if (r->cls == OCB_PLATFORM_TOKEN)
        r->cls = OCB_PLATFORM_FAILED;
    app->last_failure = *r;
    app->last_failure.body = "";
    app->last_failure.len = 0;
    log_error(MOD, NULL, "app %s: login failed: HTTP %ld %s %s; retrying in %u ms",
              app->cfg->app_id, r->status, r->code, r->desc, app->backoff_ms);
    fail_waiting(pc, app, r);
}

static void api_done(struct ocb_platform_client *pc, struct request *req,
                     struct ocb_platform_reply *r)
{
    struct app *app = req->app;
    if (r->cls == OCB_PLATFORM_TOKEN && req->token_retries < MAX_TOKEN_RETRIES) {
        req->token_retries++;
        if (app->have_token && strcmp(app->token, req->token_used) != 0) {
            start_or_defer(pc, req); /* a newer token exists: just resend */
            return;
        }
        int64_t now = ocb_now_ms();
        if (app->have_token && now < app->expires_at_ms) {
            /* Rejected before its time: revoked, or superseded by another client's login
             * with this appId (the platform keeps only an app's newest token). */
            char labels[OCB_METRICS_LABELS_MAX];
            metrics_labels(labels, sizeof(labels), "app", app->cfg->app_id, NULL);
            metrics_counter_add("ocb_platform_tokens_superseded_total", labels, 1);
            if (now - app->superseded_warned_ms >= SUPERSEDED_WARN_MS ||
                app->superseded_warned_ms == 0) {
                app->superseded_warned_ms = now;
                log_warn(MOD, NULL,
                         "app %s: the platform rejected a token before it expired (%ld %s): "
                         "another client logging in with this appId makes the two of you "
                         "take turns; logging in again",
                         app->cfg->app_id, r->status, r->code);
            }
        } else {
            log_info(MOD, NULL, "app %s: token rejected (%ld %s), logging in again",
                     app->cfg->app_id, r->status, r->code);
        }
        if (app->have_token)
            copy_trunc(app->rejected, sizeof(app->rejected), app->token);
        app->have_token = false;
        if (!app->auth_running && app->login_retry_at_ms && ocb_now_ms() < app->login_retry_at_ms) {
            complete(pc, req, &app->last_failure); /* logins are backing off */
            return;
        }
        park(app, req);
        app->login_retry_at_ms = 0;
        start_auth(pc, app, false);
        return;
    }
    complete(pc, req, r);
}

/*
 * A failed transfer: had libcurl written the whole request?  REQUEST_SIZE
 * counts header bytes sent, SIZE_UPLOAD body bytes; a request that never
 * left (no connection, TLS failure) has none of either.
 */
static bool request_sent(CURL *easy, const struct request *req)
{
    long header_bytes = 0;
    curl_off_t body_bytes = 0;
    if (curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &header_bytes) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &body_bytes) != CURLE_OK)
        return false;
    return header_bytes > 0 && body_bytes >= 0 && (size_t)body_bytes >= req->body_len;
}

static void transfer_done(struct ocb_platform_client *pc, CURL *easy, CURLcode cc)
{
    struct request *req = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
    if (!req) {
        curl_multi_remove_handle(pc->multi, easy);
        return;
    }
    active_remove(pc, req);
    struct ocb_platform_reply r;
    memset(&r, 0, sizeof(r));
    r.body = req->buf;
    r.len = req->len;
    double secs = (double)(ocb_now_ms() - req->started_ms) / 1000.0;
    char labels[OCB_METRICS_LABELS_MAX];
    metrics_labels(labels, sizeof(labels), "op", req->op, NULL);
    metrics_histogram_observe("ocb_platform_request_seconds", labels, secs);

    if (cc != CURLE_OK) {
        enum ocb_err t = req->too_big ? OCB_ERR_TOO_BIG : transport_error(cc);
        fail_reply(&r, t,
                   req->too_big ? "reply over platform.max_reply_bytes"
                                : (req->errbuf[0] ? req->errbuf : curl_easy_strerror(cc)));
        r.body = req->buf;
        r.len = req->len;
        /* A refused rewind means libcurl wanted to re-send a request that had gone out. */
        r.sent = cc == CURLE_SEND_FAIL_REWIND || request_sent(easy, req);
        log_warn(MOD, NULL, "%s %s (%s): %s%s", req->method, req->path, req->op, r.desc,
                 r.sent ? " (after the request was sent)" : "");
    } else {
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        r.transport = OCB_OK;
        platform_client_classify(status, req->buf, req->len, &r);
        log_debug(MOD, NULL, "%s %s (%s): %ld %s", req->method, req->path, req->op, status,
                  platform_client_class_name(r.cls));
    }
    char rlabels[OCB_METRICS_LABELS_MAX];
    metrics_labels(rlabels, sizeof(rlabels), "op", req->op, "result",
                   platform_client_class_name(r.cls), NULL);
    metrics_counter_add("ocb_platform_requests_total", rlabels, 1);

    if (req->kind == REQ_API) {
        api_done(pc, req, &r);
    } else {
        auth_done(pc, req, &r);
        request_free(req);
    }
}

static void run_timers(struct ocb_platform_client *pc)
{
    int64_t now = ocb_now_ms();
    for (size_t i = 0; i < pc->n_apps; i++) {
        struct app *app = &pc->apps[i];
        if (app->auth_running || (!atomic_load(&app->active) && ocb_list_empty(&app->wait)))
            continue;
        if (app->have_token && now >= app->expires_at_ms) {
            copy_trunc(app->rejected, sizeof(app->rejected), app->token);
            app->have_token = false;
            start_auth(pc, app, false);
        } else if (!app->have_token && app->peer_wait_ms && now >= app->peer_wait_ms) {
            start_auth(pc, app, false);
        } else if (app->have_token && now >= app->refresh_at_ms) {
            start_auth(pc, app, true);
        } else if (!app->have_token && app->login_retry_at_ms && now >= app->login_retry_at_ms) {
            app->login_retry_at_ms = 0;
            start_auth(pc, app, false);
        }
    }
}

static int64_t next_timer_ms(const struct ocb_platform_client *pc)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < pc->n_apps; i++) {
        const struct app *app = &pc->apps[i];
        if (app->auth_running || (!atomic_load(&app->active) && ocb_list_empty(&app->wait)))
            continue;
        if (app->have_token && app->refresh_at_ms < next)
            next = app->refresh_at_ms;
        if (!app->have_token && app->login_retry_at_ms && app->login_retry_at_ms < next)
            next = app->login_retry_at_ms;
        if (!app->have_token && app->peer_wait_ms && app->peer_wait_ms < next)
            next = app->peer_wait_ms;
    }
    return next;
}

static void run_deferred(struct ocb_platform_client *pc)
{
    struct ocb_list due, *pos, *tmp;

    ocb_list_init(&due);
    ocb_list_splice_back(&due, &pc->deferred); /* a callback may defer new failures */
    ocb_list_for_each_safe (pos, tmp, &due) {
        struct request *req = waiting_of(pos);
        struct ocb_platform_reply r = req->deferred;

        ocb_list_remove(pos);
        complete(pc, req, &r);
    }
}

enum ocb_err platform_client_run(struct ocb_platform_client *pc, int max_wait_ms)
{
    run_timers(pc);
    int wait = max_wait_ms < 0 ? 0 : max_wait_ms;
    int64_t next = next_timer_ms(pc);
    if (next != INT64_MAX) {
        int64_t in = next - ocb_now_ms();
        if (in < wait)
            wait = in < 0 ? 0 : (int)in;
    }
    if (!ocb_list_empty(&pc->deferred))
        wait = 0;
    /* curl_multi_poll also honours libcurl's own, shorter timeouts and
     * returns early on curl_multi_wakeup(). */
    CURLMcode mc = curl_multi_poll(pc->multi, NULL, 0, wait, NULL);
    if (mc != CURLM_OK) {
        log_error(MOD, NULL, "curl_multi_poll: %s", curl_multi_strerror(mc));
        return OCB_ERR_IO;
    }
    int running = 0;
    mc = curl_multi_perform(pc->multi, &running);
    if (mc != CURLM_OK) {
        log_error(MOD, NULL, "curl_multi_perform: %s", curl_multi_strerror(mc));
        return OCB_ERR_IO;
    }
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(pc->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE)
            transfer_done(pc, m->easy_handle, m->data.result);
    }
    run_deferred(pc);
    run_timers(pc);
    return OCB_OK;
}

static struct app *find_app(struct ocb_platform_client *pc, const char *app_id)
{
    for (size_t i = 0; i < pc->n_apps; i++)
        if (strcmp(pc->apps[i].cfg->app_id, app_id) == 0)
            return &pc->apps[i];
    return NULL;
}

enum ocb_err platform_client_submit(struct ocb_platform_client *pc,
                                    const struct ocb_platform_call *call, ocb_platform_done done,
                                    void *ctx)
{
    if (!call || !call->app_id || !call->method || !call->path || call->path[0] != '/')
        return OCB_ERR_INVALID;
    struct app *app = find_app(pc, call->app_id);
    if (!app)
        return OCB_ERR_NOT_FOUND;
    struct request *req =
        request_new(pc, app, REQ_API, call->op, call->method, call->path, call->body);
    if (!req)
        return OCB_ERR_NOMEM;
    req->done = done;
    req->ctx = ctx;
    pc->outstanding++;
    if (app->have_token) {
        start_or_defer(pc, req);
    } else if (app->peer_wait_ms) {
        park(app, req); /* another replica is logging in for everyone */
    } else if (!app->auth_running && app->login_retry_at_ms &&
               ocb_now_ms() < app->login_retry_at_ms) {
        defer_failure(pc, req, &app->last_failure);
    } else {
        park(app, req);
        app->login_retry_at_ms = 0;
        start_auth(pc, app, false);
    }
    return OCB_OK;
}

struct sync_call {
    ocb_platform_done done;
    void *ctx;
    bool finished;
};

static void sync_done(void *ctx, const struct ocb_platform_reply *reply)
{
    struct sync_call *s = ctx;
    s->finished = true;
    if (s->done)
        s->done(s->ctx, reply);
}

enum ocb_err platform_client_call_sync(struct ocb_platform_client *pc,
                                       const struct ocb_platform_call *call, ocb_platform_done done,
                                       void *ctx)
{
    struct sync_call s = {.done = done, .ctx = ctx, .finished = false};
    enum ocb_err rc = platform_client_submit(pc, call, sync_done, &s);
    if (rc != OCB_OK)
        return rc;
    /* Bounded: every transfer has connect and total timeouts, and a login
     * failure fails the parked call at once. */
    while (!s.finished) {
        rc = platform_client_run(pc, 200);
        if (rc != OCB_OK && !s.finished)
            return rc; /* the call stays owned by pc and completes at free */
    }
    return OCB_OK;
}

void platform_client_set_coord(struct ocb_platform_client *pc, struct ocb_coord *coord)
{
    pc->coord = coord;
}

void platform_client_wakeup(struct ocb_platform_client *pc)
{
    if (pc)
        curl_multi_wakeup(pc->multi);
}

bool platform_client_ready(const struct ocb_platform_client *pc)
{
    if (!pc)
        return false;
    for (size_t i = 0; i < pc->n_apps; i++)
        if (atomic_load(&pc->apps[i].active) && !atomic_load(&pc->apps[i].ready))
            return false;
    return true;
}

unsigned platform_client_outstanding(const struct ocb_platform_client *pc)
{
    return pc ? pc->outstanding : 0;
}

void platform_client_login_all(struct ocb_platform_client *pc)
{
    for (size_t i = 0; i < pc->n_apps; i++)
        if (atomic_load(&pc->apps[i].active) && !pc->apps[i].have_token)
            start_auth(pc, &pc->apps[i], false);
}

static void describe_metrics(void)
{
    metrics_describe("ocb_platform_request_seconds", OCB_METRIC_HISTOGRAM,
                     "Duration of platform REST calls, by operation");
    metrics_describe("ocb_platform_requests_total", OCB_METRIC_COUNTER,
                     "Platform REST calls by operation and result class");
    metrics_describe("ocb_platform_tokens_superseded_total", OCB_METRIC_COUNTER,
                     "Tokens the platform rejected before they expired (revoked, or another "
                     "client logged in with the same appId)");
    metrics_describe("ocb_token_refreshes_total", OCB_METRIC_COUNTER,
                     "Platform token acquisitions started (kind=login|refresh)");
}

/* Point app at a, an app of owner, holding a reference to owner instead of
 * the one it held: a retired configuration lives as long as an app of the
 * client still points into it (an app a reload dropped keeps its last one). */
static void app_set_cfg(struct app *app, const struct ocb_config *owner, const struct ocb_app *a)
{
    config_ref(owner);
    config_unref(app->owner);
    app->owner = owner;
    app->cfg = a;
}

enum ocb_err platform_client_new(const struct ocb_config *cfg, struct ocb_platform_client **out)
{
    static atomic_flag curl_inited = ATOMIC_FLAG_INIT;
    *out = NULL;
    /* curl_global_init is not thread-safe before 7.84; do it once, here,
     * which is before any worker thread exists. */
    if (!atomic_flag_test_and_set(&curl_inited) && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return OCB_ERR_TLS;
    struct ocb_platform_client *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return OCB_ERR_NOMEM;
    ocb_list_init(&pc->deferred);
    ocb_list_init(&pc->active);
    pc->cfg = config_ref(cfg);
    pc->base = ocb_strdup_or_null(cfg->platform.url ? cfg->platform.url : "");
    pc->multi = curl_multi_init();
    if (!pc->base || !pc->multi) {
        /* Nothing was submitted yet: no list to empty (platform_client_free() would walk the
         * apps' wait lists, which are initialised only below). */
        if (pc->multi)
            curl_multi_cleanup(pc->multi);
        free(pc->base);
        config_unref(pc->cfg);
        free(pc);
        return OCB_ERR_NOMEM;
    }
    size_t n = strlen(pc->base);
    while (n > 0 && pc->base[n - 1] == '/')
        pc->base[--n] = '\0';
    long conns = cfg->platform.max_in_flight ? (long)cfg->platform.max_in_flight : 8;
    curl_multi_setopt(pc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
    curl_multi_setopt(pc->multi, CURLMOPT_MAXCONNECTS, conns);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct ocb_app *a = &cfg->apps[i];
        if (!a->secret || !*a->secret)
            continue; /* push-only app: no platform calls */
        struct app *app = &pc->apps[pc->n_apps];
        app_set_cfg(app, cfg, a);
        ocb_list_init(&app->wait);
        atomic_init(&app->ready, false);
        atomic_init(&app->active, true);
        pc->n_apps++;
    }
    describe_metrics();
    *out = pc;
    return OCB_OK;
}

void platform_client_reload(struct ocb_platform_client *pc, const struct ocb_config *cfg)
{
    bool keep[OCB_MAX_APPS] = {false};
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct ocb_app *a = &cfg->apps[i];
        if (!a->secret || !*a->secret)
            continue;
        struct app *app = find_app(pc, a->app_id);
        if (app == NULL) {
            if (pc->n_apps == OCB_MAX_APPS) {
                log_error(MOD, NULL, "app %s: no room for another app until a restart", a->app_id);
                continue;
            }
            app = &pc->apps[pc->n_apps];
            memset(app, 0, sizeof(*app));
            app_set_cfg(app, cfg, a);
            ocb_list_init(&app->wait);
            atomic_init(&app->ready, false);
            atomic_init(&app->active, true);
            pc->n_apps++;
            log_info(MOD, NULL, "app %s: added by reload", a->app_id);
            start_auth(pc, app, false);
        } else {
            bool new_secret = strcmp(app->cfg->secret, a->secret) != 0;
            app_set_cfg(app, cfg, a);
            atomic_store(&app->active, true);
            if (new_secret) {
                /* Tokens of the old secret may still work, but a wrong new
                 * secret must show at once (readiness), so log in again now. */
                log_info(MOD, NULL, "app %s: secret changed, logging in again", a->app_id);
                copy_trunc(app->rejected, sizeof(app->rejected), app->token);
                app->have_token = false;
                set_ready(app, false);
                app->login_retry_at_ms = 0;
                app->backoff_ms = 0;
                if (app->auth_running)
                    app->stale_auth = true;
                else
                    start_auth(pc, app, false);
            }
        }
        keep[app - pc->apps] = true;
    }
    for (size_t i = 0; i < pc->n_apps; i++) {
        if (!keep[i] && atomic_load(&pc->apps[i].active)) {
            log_info(MOD, NULL, "app %s: commands off after reload", pc->apps[i].cfg->app_id);
            atomic_store(&pc->apps[i].active, false);
        }
    }
}

void platform_client_free(struct ocb_platform_client *pc)
{
    if (!pc)
        return;
    struct ocb_platform_reply stopped;
    fail_reply(&stopped, OCB_ERR_STOPPED, "bridge is shutting down");
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &pc->active) {
        struct request *req = ocb_list_entry(pos, struct request, alink);
        active_remove(pc, req);
        if (req->kind == REQ_API)
            complete(pc, req, &stopped);
        else
            request_free(req);
    }
    for (size_t i = 0; i < pc->n_apps; i++) {
        fail_waiting(pc, &pc->apps[i], &stopped);
        if (pc->coord)
            shared_done(pc, &pc->apps[i], false);
    }
    run_deferred(pc);
    if (pc->multi)
        curl_multi_cleanup(pc->multi);
    free(pc->base);
    for (size_t i = 0; i < pc->n_apps; i++)
        config_unref(pc->apps[i].owner);
    config_unref(pc->cfg);
    free(pc);
}
