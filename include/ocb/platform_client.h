/*
 * platform_client.h: the northbound REST client (docs/design.md section 4).
 *
 * One libcurl multi handle (OpenSSL, mutual TLS, connection reuse, several
 * requests in flight) plus a token manager per app: log in (form-encoded),
 * refresh before expiresIn, fall back to a new login on the token errors
 * (401/100208, 403/1010005, 401/100002), and never run two logins at once for
 * one app, because each login kills the tokens issued before it.  Callers
 * just submit calls; tokens, app_key and Authorization are added here.
 *
 * Retrying, rate limiting and deadlines are the caller's business (the
 * command worker): a completed call reports a class (ok, token, throttled,
 * retryable, failed) that tells the caller what to do.  A request whose body
 * went out is never re-sent behind the caller's back (libcurl would, on a
 * reused connection that died without an answer); the reply says `sent`
 * instead, so the caller can find out what the platform did.
 *
 * Threads: not thread-safe.  Everything runs on one thread (the command
 * worker, or main for `ocbridge subscribe`); completions run on that thread
 * from inside platform_client_run().  Only platform_client_wakeup() and
 * platform_client_ready() may be called from any thread.
 */
#ifndef OCB_PLATFORM_CLIENT_H
#define OCB_PLATFORM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/config.h"
#include "ocb/err.h"

struct ocb_platform_client;

/* What the caller should do with a completed call. */
enum ocb_platform_class {
    OCB_PLATFORM_OK,        /* 2xx without an error body */
    OCB_PLATFORM_TOKEN,     /* token rejected even after a fresh login */
    OCB_PLATFORM_THROTTLED, /* 1010009 (or 429): back off, then retry */
    OCB_PLATFORM_RETRY,     /* 5xx, network error, timeout: retry later */
    OCB_PLATFORM_FAILED,    /* a definite answer: do not retry */
};

struct ocb_platform_reply {
    enum ocb_platform_class cls;
    enum ocb_err transport; /* OCB_OK when an HTTP answer arrived */
    long status;            /* HTTP status, 0 when there was none */
    const char *body;       /* NUL-terminated, borrowed for the callback; "" when none */
    size_t len;
    /* No HTTP answer, but the whole request (headers and body) had gone out:
     * the platform may have acted on it (a create's outcome is unknown). */
    bool sent;
    char code[32];  /* the platform's error_code/resultcode, "" when none */
    char desc[256]; /* the platform's error text, or why the transport failed */
};

/* "OK", "TOKEN", ...; for logs and metric labels. */
const char *platform_client_class_name(enum ocb_platform_class cls);

/*
 * Pure: fill r->cls, r->code and r->desc from an HTTP answer.  Reads both
 * error shapes ({error_code,error_desc} and {resultcode,resultmsg}); an
 * error code in a 2xx body is an error.  r->transport must be OCB_OK.
 */
void platform_client_classify(long status, const char *body, size_t len,
                              struct ocb_platform_reply *r);

/* The longest access or refresh token kept, NUL included. */
#define OCB_PLATFORM_TOKEN_MAX 512

/* What a login or refresh reply grants. */
struct ocb_platform_token {
    char access[OCB_PLATFORM_TOKEN_MAX];  /* never "" when parsed */
    char refresh[OCB_PLATFORM_TOKEN_MAX]; /* "" when absent or too long */
    long long expires_in_s;               /* 1 .. 30 days; 3600 when absent or unusable */
};

/*
 * Pure; thread-safe: read a login/refresh reply body
 * {"accessToken","refreshToken","expiresIn"} into t.  expiresIn may be a
 * number or a numeric string; it is clamped to 30 days.  false (t undefined)
 * when there is no non-empty string accessToken shorter than
 * OCB_PLATFORM_TOKEN_MAX.
 */
bool platform_client_token_parse(const char *body, size_t len, struct ocb_platform_token *t);

/* One REST call; every pointer is borrowed and copied by submit. */
struct ocb_platform_call {
    const char *app_id; /* an app with a secret */
    const char *op;     /* short name for logs and the op="" metric label */
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *path;   /* absolute path with query, e.g. "/iocm/app/cmd/v1.4.0/deviceCommands" */
    const char *body;   /* JSON text, or NULL */
};

/* Runs once per submitted call, on the client's thread; reply is borrowed. */
typedef void (*ocb_platform_done)(void *ctx, const struct ocb_platform_reply *reply);

/* Holds references to cfg (config.h) until platform_client_free(); the caller keeps its own.
 * OCB_ERR_TLS/IO when libcurl cannot start. */
enum ocb_err platform_client_new(const struct ocb_config *cfg, struct ocb_platform_client **out);

/* Completes every outstanding call with transport OCB_ERR_STOPPED, then frees.  NULL is a no-op. */
void platform_client_free(struct ocb_platform_client *pc);

/* Log every app with a secret in now (logins otherwise start on first use). */
void platform_client_login_all(struct ocb_platform_client *pc);

/*
 * Queue a call.  OCB_OK: done runs exactly once, later, from
 * platform_client_run().  Otherwise (OCB_ERR_NOT_FOUND: no such app or it has
 * no secret; OCB_ERR_NOMEM; OCB_ERR_INVALID) done never runs.
 */
enum ocb_err platform_client_submit(struct ocb_platform_client *pc,
                                    const struct ocb_platform_call *call, ocb_platform_done done,
                                    void *ctx);

/*
 * Wait up to max_wait_ms for network activity, a timer of the client's own
 * (token refresh, login retry) or platform_client_wakeup(), then do all the
 * work that is due, including completions.
 */
enum ocb_err platform_client_run(struct ocb_platform_client *pc, int max_wait_ms);

/* Submit and run until this call has completed (for `ocbridge subscribe`). */
enum ocb_err platform_client_call_sync(struct ocb_platform_client *pc,
                                       const struct ocb_platform_call *call, ocb_platform_done done,
                                       void *ctx);

struct ocb_coord;

/*
 * Before the first call, on the client's thread (or before that thread
 * starts): share the apps' tokens with other replicas through coord
 * (coord.h; borrowed, must outlive the client).  The client then uses
 * coord's synchronous calls, on its own thread.  NULL = local tokens.
 */
void platform_client_set_coord(struct ocb_platform_client *pc, struct ocb_coord *coord);

/* Make a platform_client_run() in progress return early.  Any thread. */
void platform_client_wakeup(struct ocb_platform_client *pc);

/* Any thread: every app with a secret holds a token from a successful login. */
bool platform_client_ready(const struct ocb_platform_client *pc);

/*
 * Worker thread: take the apps of a reloaded configuration (SIGHUP).  New
 * apps with a secret log in; an app whose secret changed logs in again; apps
 * gone (or without a secret now) stop counting for readiness, while calls
 * already accepted for them finish.  Connection keys (platform.url, TLS) keep
 * their start-up values.  Each app holds a reference to the configuration
 * it was last named in, so cfg may be given back by the caller at once.
 */
void platform_client_reload(struct ocb_platform_client *pc, const struct ocb_config *cfg);

/* Calls submitted and not yet completed. */
unsigned platform_client_outstanding(const struct ocb_platform_client *pc);

#endif
