/*
 * subscriptions.c: reconcile the platform's subscriptions with the config.
 *
 * The platform allows one subscription per (app, notifyType): creating a
 * second answers 409/100227.  So "replace" means delete what holds the type
 * and create ours.  Only subscriptions whose callbackUrl points at this
 * bridge's /push/<appId> are ever removed for being unwanted: another
 * service subscribed to other types of the same app is left alone...
 *
 * ...unless it blocks a move.  All of an app's callbacks must share one
 * IP:port (docs/platform-api.md §2, §5.4): while any subscription of the app, of
 * any type, points at another address, creating ours fails with 400/100222.
 * When something must be created, sync_app therefore plans a move from the
 * list: it deletes every subscription at another IP:port first (those of
 * types not wanted before those of wanted types, so a failure midway leaves
 * the wanted types still subscribed at the old address), then creates ours.
 * Each such deletion is destructive to whoever owned it, so it is logged at
 * warn level with the old URL and printed in the report.  A failed deletion
 * stops the move before anything else is touched; a re-run picks up where
 * it stopped, and once everything points here a run changes nothing.
 *
 * The upgrade types (sw/fwUpgrade*) live in the device-management API,
 * which has no list or delete of its own.  Where the v1.2.0 list shows them
 * (the simulator does; UNCONFIRMED on the real platform, so lenient) they
 * are moved like the others and not subscribed again once in place;
 * otherwise they are simply (re)subscribed every time, which is harmless.
 *
 * The sync is a state machine (struct ocb_subs_sync, enum phase) so that
 * the command worker can run it beside the commands: each step acts on the
 * reply that came and submits the next call, one at a time, in the same
 * order the plan above needs (list pages; the move's deletions; per wanted
 * type a create, after a 409 the deletions of its holders and the create
 * once more; the removals).  A step never waits: the reply arrives through
 * platform_client_run(), which the owner's loop calls anyway.  The machine
 * only borrows the platform client, so it must not be freed while a call
 * is in flight; freeing the client first completes that call (STOPPED),
 * which ends the sync.
 */
#include "ocb/subscriptions.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "ocb/command.h"
#include "ocb/grammar.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/notify.h"

#define MOD "subscriptions"

#define PATH_SUBS     "/iocm/app/sub/v1.2.0/subscriptions"
#define PATH_IODM_SUB "/iodm/app/sub/v1.1.0/subscribe"
#define PAGE_SIZE     1000
#define MAX_PAGES     100
#define URL_MAX       2048

struct result {
    enum ocb_platform_class cls;
    enum ocb_err transport;
    long status;
    char code[32];
    char desc[256];
    char *body;
    size_t len;
};

struct app_sync {
    const struct ocb_app *app;
    FILE *report;
    char url[URL_MAX];  /* our callbackUrl */
    char base[URL_MAX]; /* <public_url>/push/<appId> */
    struct ocb_subs_entry *subs;
    size_t n_subs;
    enum ocb_err rc;
};

/*
 * Where the sync stands.  A P_* state does local work and either submits
 * one call, moving to the matching W_* state, or moves on; a W_* state
 * waits for that call's reply.
 */
enum phase {
    P_APP,       /* pick the next app with a secret, or finish */
    W_LIST,      /* a page of the list */
    P_MOVE,      /* the next subscription at another IP:port to delete */
    W_MOVE,      /* ...its deletion */
    P_ENSURE,    /* the next wanted type */
    W_CREATE,    /* POST v1.2.0 subscription */
    W_UPGRADE,   /* POST iodm subscribe */
    P_FREE_TYPE, /* after a 409: the next listed holder of the type to delete */
    W_FREE,      /* ...its deletion */
    W_BATCH,     /* the batch delete by type (no listed holder) */
    P_RECREATE,  /* the create once more, the type being free */
    P_REMOVE,    /* the next subscription of ours no longer wanted */
    W_REMOVE,    /* ...its deletion */
    P_DONE,
};

struct ocb_subs_sync {
    struct ocb_platform_client *pc;
    const struct ocb_config *cfg;
    FILE *report;
    enum phase phase;
    size_t app_i;                 /* the current app in cfg->apps, or the next one to look at */
    struct app_sync s;            /* the current app */
    int page;                     /* W_LIST: the page asked for */
    size_t listed;                /* entries read so far, against totalCount */
    int pass;                     /* P_MOVE: 0 = types not wanted, 1 = wanted types */
    size_t idx;                   /* P_MOVE, P_FREE_TYPE, P_REMOVE: the subscription at hand */
    size_t type_i;                /* P_ENSURE and after: the entry of app->subscribe at hand */
    bool moved;                   /* nothing at another IP:port blocks our creates */
    bool replaced;                /* W_CREATE: this is the create after a 409 */
    bool free_listed;             /* P_FREE_TYPE: a listed holder was found */
    char *create_body;            /* the current type's subscription body (cJSON_free) */
    char what[2 * URL_MAX + 160]; /* what to say once the deletion in flight succeeds */
    enum ocb_log_level what_level;
    char path[URL_MAX];
    bool in_flight;  /* a call was submitted and its reply has not come */
    bool have_reply; /* `reply` holds a reply not yet acted upon */
    struct result reply;
    enum ocb_err rc; /* the first failure */
};

/* The platform client's callback: keep a copy; the next step acts on it. */
static void on_reply(void *ctx, const struct ocb_platform_reply *r)
{
    struct ocb_subs_sync *y = ctx;
    struct result *res = &y->reply;
    memset(res, 0, sizeof(*res));
    res->cls = r->cls;
    res->transport = r->transport;
    res->status = r->status;
    snprintf(res->code, sizeof(res->code), "%s", r->code);
    snprintf(res->desc, sizeof(res->desc), "%s", r->desc);
    res->body = malloc(r->len + 1);
    if (res->body) {
        memcpy(res->body, r->body, r->len);
        res->body[r->len] = '\0';
        res->len = r->len;
    } else if (res->transport == OCB_OK) {
        res->cls = OCB_PLATFORM_FAILED;
        res->transport = OCB_ERR_NOMEM;
        snprintf(res->desc, sizeof(res->desc), "out of memory for the reply");
    }
    y->in_flight = false;
    y->have_reply = true;
}

/* OCB_OK for a success, else why not. */
static enum ocb_err result_rc(const struct result *res)
{
    if (res->cls == OCB_PLATFORM_OK && res->transport == OCB_OK)
        return OCB_OK;
    return res->transport != OCB_OK ? res->transport : OCB_ERR_PROTOCOL;
}

/*
 * Submit one call for the current app and wait for it in state `wait`.
 * When the submit itself fails, that failure is the reply, at once.
 * path and body must stay valid until the call is submitted (they are
 * copied then).
 */
static void call(struct ocb_subs_sync *y, enum phase wait, const char *op, const char *method,
                 const char *path, const char *body)
{
    struct ocb_platform_call c = {
        .app_id = y->s.app->app_id,
        .op = op,
        .method = method,
        .path = path,
        .body = body,
    };
    y->phase = wait;
    enum ocb_err rc = platform_client_submit(y->pc, &c, on_reply, y);
    if (rc == OCB_OK) {
        y->in_flight = true;
        return;
    }
    memset(&y->reply, 0, sizeof(y->reply));
    y->reply.cls = OCB_PLATFORM_FAILED;
    y->reply.transport = rc;
    snprintf(y->reply.desc, sizeof(y->reply.desc), "%s", ocb_strerror(rc));
    y->have_reply = true;
}

/* One line for the log at level and the same line in the report. */
static void say_at(struct app_sync *s, enum ocb_log_level level, const char *type, const char *what)
{
    log_msg(level, MOD, NULL, "app %s: %s %s", s->app->app_id, type, what);
    if (s->report)
        fprintf(s->report, "%s: %s %s\n", s->app->app_id, type, what);
}

static void say(struct app_sync *s, const char *type, const char *what)
{
    say_at(s, OCB_LOG_INFO, type, what);
}

/* Every change the sync makes on the platform, and every failed one, is counted. */
static void count_change(const char *action)
{
    char labels[OCB_METRICS_LABELS_MAX];

    metrics_labels(labels, sizeof(labels), "action", action, NULL);
    metrics_counter_add("ocb_subscription_changes_total", labels, 1);
}

static void fail(struct app_sync *s, const char *type, const char *what, const struct result *res)
{
    log_error(MOD, NULL, "app %s: %s: %s failed: HTTP %ld %s %s", s->app->app_id, type, what,
              res->status, res->code, res->desc);
    if (s->report)
        fprintf(s->report, "%s: %s %s FAILED: HTTP %ld %s %s\n", s->app->app_id, type, what,
                res->status, res->code, res->desc);
    count_change("failed");
    if (s->rc == OCB_OK)
        s->rc = res->transport != OCB_OK ? res->transport : OCB_ERR_PROTOCOL;
}

static char *json_string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return NULL;
    size_t n = strlen(v->valuestring);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, v->valuestring, n + 1);
    return d;
}

void subscriptions_entries_free(struct ocb_subs_entry *subs, size_t n)
{
    for (size_t i = 0; subs && i < n; i++) {
        free(subs[i].id);
        free(subs[i].type);
        free(subs[i].url);
    }
    free(subs);
}

static void free_subs(struct app_sync *s)
{
    subscriptions_entries_free(s->subs, s->n_subs);
    s->subs = NULL;
    s->n_subs = 0;
}

/* *listed counts every entry read so far, usable or not, against totalCount: the platform
 * may honour a smaller pageSize than asked for, so a short page does not mean the last one. */
enum ocb_err subscriptions_page_parse(const char *body, size_t len, size_t page_size,
                                      struct ocb_subs_entry **subs, size_t *n_subs, size_t *listed,
                                      bool *more)
{
    enum ocb_err rc = OCB_ERR_PROTOCOL;
    cJSON *root = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "subscriptions");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(root, "totalCount");
    *more = false;
    if (!cJSON_IsArray(arr))
        goto out;
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct ocb_subs_entry *grown = realloc(*subs, (*n_subs + n + 1) * sizeof(*grown));
    if (!grown) {
        rc = OCB_ERR_NOMEM;
        goto out;
    }
    *subs = grown;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        struct ocb_subs_entry sub = {
            .id = json_string(it, "subscriptionId"),
            .type = json_string(it, "notifyType"),
            .url = json_string(it, "callbackUrl"),
        };
        if (!sub.url)
            sub.url = json_string(it, "callbackurl"); /* older deployments */
        if (!sub.id || !sub.type || !sub.url) {
            free(sub.id);
            free(sub.type);
            free(sub.url);
            continue;
        }
        grown[(*n_subs)++] = sub;
    }
    *listed += n;
    if (cJSON_IsNumber(total))
        *more = n > 0 && (double)*listed < total->valuedouble;
    else
        *more = n == page_size;
    rc = OCB_OK;
out:
    cJSON_Delete(root);
    return rc;
}

/* http(s)://HOST[:PORT]... (grammar_url_parse(), scheme in any case); the port
 * defaults by scheme.  false when url is not that. */
static bool endpoint_parse(const char *url, struct ocb_url *u)
{
    if (grammar_url_parse(url, OCB_URL_SCHEMES_HTTP | OCB_URL_ANY_CASE, true, u) != OCB_OK)
        return false;
    if (!u->authority.has_port)
        u->authority.port = u->scheme == OCB_URL_HTTPS ? 443 : 80;
    return true;
}

bool subscriptions_same_endpoint(const char *a, const char *b)
{
    struct ocb_url ua, ub;
    return endpoint_parse(a, &ua) && endpoint_parse(b, &ub) &&
           ua.authority.port == ub.authority.port &&
           ua.authority.bracketed == ub.authority.bracketed &&
           strcasecmp(ua.authority.host, ub.authority.host) == 0;
}

/*
 * Whether sub stands in the way of our callbacks: it points at another
 * IP:port.  A URL we cannot parse is left alone (the platform accepted it,
 * we cannot judge where it points); if it does block, the create fails and
 * says so.
 */
static bool elsewhere(const struct app_sync *s, const struct ocb_subs_entry *sub)
{
    struct ocb_url u;
    return !sub->gone && endpoint_parse(sub->url, &u) &&
           !subscriptions_same_endpoint(sub->url, s->url);
}

/* Ours: <public_url>/push/<appId> with or without a push token. */
static bool points_here(const struct app_sync *s, const char *url)
{
    size_t n = strlen(s->base);
    return strncmp(url, s->base, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

/* The list shows type already going to exactly our callbackUrl. */
static bool listed_here(const struct app_sync *s, const char *type)
{
    for (size_t i = 0; i < s->n_subs; i++)
        if (!s->subs[i].gone && strcmp(s->subs[i].type, type) == 0 &&
            strcmp(s->subs[i].url, s->url) == 0)
            return true;
    return false;
}

static bool wanted(const struct ocb_app *app, const char *type)
{
    for (size_t i = 0; i < app->n_subscribe; i++)
        if (strcmp(app->subscribe[i], type) == 0)
            return true;
    return false;
}

static char *sub_body(const char *type, const char *url)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "notifyType", cJSON_CreateString(type));
    cJSON_AddItemToObject(o, "callbackUrl", cJSON_CreateString(url));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/*
 * Delete subscription y->idx of the current app, waiting in `wait`; on
 * success y->what is said at level.  false when its id cannot be put in a
 * path: nothing was submitted.
 */
static bool delete_listed(struct ocb_subs_sync *y, enum phase wait, enum ocb_log_level level)
{
    char esc[512];
    if (command_url_escape(y->s.subs[y->idx].id, esc, sizeof(esc)) != OCB_OK)
        return false;
    snprintf(y->path, sizeof(y->path), "%s/%s", PATH_SUBS, esc);
    y->what_level = level;
    call(y, wait, "deleteSubscription", "DELETE", y->path, NULL);
    return true;
}

/* The reply to delete_listed(): true when the subscription is gone (404: already was). */
static bool deleted(struct ocb_subs_sync *y, const struct result *res)
{
    struct ocb_subs_entry *sub = &y->s.subs[y->idx];
    if (result_rc(res) != OCB_OK && res->status != 404) {
        char why[URL_MAX + 32];
        snprintf(why, sizeof(why), "delete of %s", sub->url);
        fail(&y->s, sub->type, why, res);
        return false;
    }
    sub->gone = true;
    count_change("deleted");
    say_at(&y->s, y->what_level, sub->type, y->what);
    return true;
}

static void list_page(struct ocb_subs_sync *y)
{
    snprintf(y->path, sizeof(y->path), "%s?pageNo=%d&pageSize=%d", PATH_SUBS, y->page, PAGE_SIZE);
    call(y, W_LIST, "listSubscriptions", "GET", y->path, NULL);
}

/* P_APP: start on the next app with a secret (its first list page), or finish. */
static void app_begin(struct ocb_subs_sync *y)
{
    const struct ocb_config *cfg = y->cfg;
    for (; y->app_i < cfg->n_apps; y->app_i++) {
        const struct ocb_app *app = &cfg->apps[y->app_i];
        if (!app->secret || !*app->secret)
            continue;
        memset(&y->s, 0, sizeof(y->s));
        y->s.app = app;
        y->s.report = y->report;
        y->s.rc = OCB_OK;
        if (command_callback_url(cfg->http.public_url, app->app_id, app->push_token, y->s.url,
                                 sizeof(y->s.url)) != OCB_OK ||
            command_callback_url(cfg->http.public_url, app->app_id, NULL, y->s.base,
                                 sizeof(y->s.base)) != OCB_OK) {
            log_error(MOD, NULL, "app %s: callback URL too long", app->app_id);
            if (y->rc == OCB_OK)
                y->rc = OCB_ERR_TOO_BIG;
            continue;
        }
        y->page = 0;
        y->listed = 0;
        list_page(y);
        return;
    }
    y->phase = P_DONE;
}

/* The current app is done, in sync or not: on to the next. */
static void app_end(struct ocb_subs_sync *y)
{
    if (y->s.rc != OCB_OK && y->rc == OCB_OK)
        y->rc = y->s.rc;
    free_subs(&y->s);
    cJSON_free(y->create_body);
    y->create_body = NULL;
    y->app_i++;
    y->phase = P_APP;
}

static void ensure_from(struct ocb_subs_sync *y, bool moved)
{
    y->moved = moved;
    y->type_i = 0;
    y->phase = P_ENSURE;
}

/* The current type is done: on to the next. */
static void ensure_next(struct ocb_subs_sync *y)
{
    cJSON_free(y->create_body);
    y->create_body = NULL;
    y->type_i++;
    y->phase = P_ENSURE;
}

/*
 * P_MOVE: make room at our IP:port by deleting every listed subscription
 * pointing at another one.  Types not wanted go first: they must go in any
 * case, and a failure after them still leaves the wanted types delivering
 * to the old address.  A deletion that fails stops the move (moved =
 * false): the rest still block us, so nothing is created (it would only
 * fail).
 */
static void move_next(struct ocb_subs_sync *y)
{
    struct app_sync *s = &y->s;
    for (; y->pass < 2; y->pass++, y->idx = 0) {
        bool wanted_pass = y->pass == 1;
        for (; y->idx < s->n_subs; y->idx++) {
            struct ocb_subs_entry *sub = &s->subs[y->idx];
            if (!elsewhere(s, sub) || wanted(s->app, sub->type) != wanted_pass)
                continue;
            if (wanted_pass)
                snprintf(y->what, sizeof(y->what), "deleted at its old address %s (moving to %s)",
                         sub->url, s->url);
            else
                snprintf(y->what, sizeof(y->what),
                         "DELETED at another address %s: not in apps[].subscribe, and all of an "
                         "app's callbacks must share the IP:port of %s",
                         sub->url, s->url);
            if (!delete_listed(y, W_MOVE, OCB_LOG_WARN))
                ensure_from(y, false);
            return;
        }
    }
    ensure_from(y, true);
}

/* P_ENSURE: the next wanted type: already there, blocked, or one create. */
static void ensure_step(struct ocb_subs_sync *y)
{
    struct app_sync *s = &y->s;
    if (y->type_i >= s->app->n_subscribe) {
        y->idx = 0;
        y->phase = P_REMOVE;
        return;
    }
    const char *type = s->app->subscribe[y->type_i];
    if (listed_here(s, type)) {
        say(s, type, "already subscribed");
        ensure_next(y);
        return;
    }
    if (!y->moved) {
        say_at(s, OCB_LOG_ERROR, type,
               "NOT subscribed: a subscription at another IP:port could not be deleted");
        ensure_next(y);
        return;
    }
    y->create_body = sub_body(type, s->url);
    if (!y->create_body) {
        s->rc = OCB_ERR_NOMEM;
        ensure_next(y);
        return;
    }
    y->replaced = false;
    if (notify_type_api(type) == OCB_NOTIFY_MANAGEMENT)
        call(y, W_UPGRADE, "subscribeManagement", "POST", PATH_IODM_SUB, y->create_body);
    else
        call(y, W_CREATE, "subscribe", "POST", PATH_SUBS, y->create_body);
}

/*
 * P_FREE_TYPE: after a 409, delete everything holding the type so that ours
 * can take its place; when the holder is not in our list (another channel
 * or owner), delete by type in one batch.  Then the create once more.
 */
static void free_type_next(struct ocb_subs_sync *y)
{
    struct app_sync *s = &y->s;
    const char *type = s->app->subscribe[y->type_i];
    for (; y->idx < s->n_subs; y->idx++) {
        struct ocb_subs_entry *sub = &s->subs[y->idx];
        if (sub->gone || strcmp(sub->type, type) != 0)
            continue;
        y->free_listed = true;
        snprintf(y->what, sizeof(y->what), "replaced (%s)", sub->url);
        if (delete_listed(y, W_FREE, OCB_LOG_INFO))
            return;
    }
    char esc[256];
    if (y->free_listed || command_url_escape(type, esc, sizeof(esc)) != OCB_OK) {
        y->phase = P_RECREATE;
        return;
    }
    snprintf(y->path, sizeof(y->path), "%s?notifyType=%s", PATH_SUBS, esc);
    call(y, W_BATCH, "deleteSubscriptions", "DELETE", y->path, NULL);
}

/* P_REMOVE: the next subscription pointing here for a type no longer wanted. */
static void remove_next(struct ocb_subs_sync *y)
{
    struct app_sync *s = &y->s;
    for (; y->idx < s->n_subs; y->idx++) {
        struct ocb_subs_entry *sub = &s->subs[y->idx];
        if (sub->gone || !points_here(s, sub->url) || wanted(s->app, sub->type))
            continue;
        snprintf(y->what, sizeof(y->what), "removed (no longer wanted) (%s)", sub->url);
        if (delete_listed(y, W_REMOVE, OCB_LOG_INFO))
            return;
    }
    app_end(y);
}

/* Local work of a P_* state: moves on, or submits a call. */
static void advance(struct ocb_subs_sync *y)
{
    switch (y->phase) {
    case P_APP:
        app_begin(y);
        break;
    case P_MOVE:
        move_next(y);
        break;
    case P_ENSURE:
        ensure_step(y);
        break;
    case P_FREE_TYPE:
        free_type_next(y);
        break;
    case P_RECREATE:
        call(y, W_CREATE, "subscribe", "POST", PATH_SUBS, y->create_body);
        break;
    case P_REMOVE:
        remove_next(y);
        break;
    default:
        assert(!"advance() in a waiting or final state");
        y->phase = P_DONE;
        break;
    }
}

/* The reply of the call made in state y->phase (a W_* state). */
static void on_result(struct ocb_subs_sync *y, const struct result *res)
{
    struct app_sync *s = &y->s;
    const char *type = y->type_i < s->app->n_subscribe ? s->app->subscribe[y->type_i] : "";
    if (res->transport == OCB_ERR_STOPPED) {
        /* The platform client is going away: no further call can be made. */
        log_info(MOD, NULL, "app %s: subscription sync interrupted: the bridge is stopping",
                 s->app->app_id);
        if (y->rc == OCB_OK)
            y->rc = OCB_ERR_STOPPED;
        free_subs(s);
        cJSON_free(y->create_body);
        y->create_body = NULL;
        y->phase = P_DONE;
        return;
    }
    switch (y->phase) {
    case W_LIST: {
        bool more = false;
        enum ocb_err rc = result_rc(res);
        if (rc == OCB_OK)
            rc = subscriptions_page_parse(res->body, res->len, PAGE_SIZE, &s->subs, &s->n_subs,
                                          &y->listed, &more);
        if (rc != OCB_OK) {
            fail(s, "subscriptions", "list", res);
            s->rc = rc;
            app_end(y);
            return;
        }
        if (more && ++y->page < MAX_PAGES) {
            list_page(y);
            return;
        }
        /* Only a create needs the address to ourselves: with nothing to
         * create, subscriptions elsewhere are not ours to delete. */
        bool need_create = false;
        for (size_t i = 0; i < s->app->n_subscribe; i++)
            need_create = need_create || !listed_here(s, s->app->subscribe[i]);
        if (need_create) {
            y->pass = 0;
            y->idx = 0;
            y->phase = P_MOVE;
        } else {
            ensure_from(y, true);
        }
        return;
    }
    case W_MOVE:
        if (deleted(y, res)) {
            y->idx++;
            y->phase = P_MOVE;
        } else {
            ensure_from(y, false);
        }
        return;
    case W_CREATE:
        if (result_rc(res) != OCB_OK && res->status == 409 && !y->replaced) {
            y->replaced = true;
            y->free_listed = false;
            y->idx = 0;
            y->phase = P_FREE_TYPE;
            return;
        }
        if (result_rc(res) == OCB_OK) {
            count_change(y->replaced ? "replaced" : "created");
            say(s, type,
                y->replaced ? "subscribed (replacing a conflicting subscription)" : "subscribed");
        } else {
            fail(s, type, "subscribe", res);
        }
        ensure_next(y);
        return;
    case W_UPGRADE:
        if (result_rc(res) == OCB_OK) {
            count_change("created");
            say(s, type, "subscribed (device management)");
        } else {
            fail(s, type, "subscribe (device management)", res);
        }
        ensure_next(y);
        return;
    case W_FREE:
        deleted(y, res);
        y->idx++;
        y->phase = P_FREE_TYPE;
        return;
    case W_BATCH:
        if (result_rc(res) != OCB_OK)
            fail(s, type, "batch delete", res);
        y->phase = P_RECREATE;
        return;
    case W_REMOVE:
        deleted(y, res);
        y->idx++;
        y->phase = P_REMOVE;
        return;
    default:
        assert(!"a reply in a state that made no call");
        y->phase = P_DONE;
        return;
    }
}

enum ocb_err subscriptions_sync_new(struct ocb_platform_client *pc, const struct ocb_config *cfg,
                                    FILE *report, struct ocb_subs_sync **out)
{
    *out = NULL;
    struct ocb_subs_sync *y = calloc(1, sizeof(*y));
    if (!y)
        return OCB_ERR_NOMEM;
    y->pc = pc;
    y->cfg = config_ref(cfg);
    y->report = report;
    y->phase = P_APP;
    y->rc = OCB_OK;
    *out = y;
    return OCB_OK;
}

bool subscriptions_sync_step(struct ocb_subs_sync *y)
{
    /* Bounded: every pass either submits a call (and returns until its
     * reply), or moves a cursor (app, page, subscription, type) forward. */
    for (;;) {
        if (y->phase == P_DONE)
            return true;
        if (y->in_flight)
            return false;
        if (y->have_reply) {
            struct result res = y->reply;
            memset(&y->reply, 0, sizeof(y->reply));
            y->have_reply = false;
            on_result(y, &res);
            free(res.body);
            continue;
        }
        advance(y);
    }
}

bool subscriptions_sync_busy(const struct ocb_subs_sync *y)
{
    return y && y->in_flight;
}

enum ocb_err subscriptions_sync_result(const struct ocb_subs_sync *y)
{
    return y->phase == P_DONE ? y->rc : OCB_ERR_INVALID;
}

void subscriptions_sync_free(struct ocb_subs_sync *y)
{
    if (!y)
        return;
    /* The platform client still holds y as the context of that call. */
    assert(!y->in_flight);
    free_subs(&y->s);
    free(y->reply.body);
    cJSON_free(y->create_body);
    config_unref(y->cfg);
    free(y);
}

int subscriptions_main(const struct ocb_config *cfg)
{
    if (!config_commands_enabled(cfg)) {
        fprintf(stderr, "ocbridge subscribe: no app has a secret; nothing to do\n");
        return 1;
    }
    struct ocb_platform_client *pc = NULL;
    struct ocb_subs_sync *y = NULL;
    enum ocb_err rc = platform_client_new(cfg, &pc);
    if (rc == OCB_OK)
        rc = subscriptions_sync_new(pc, cfg, stdout, &y);
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge subscribe: %s\n", ocb_strerror(rc));
        platform_client_free(pc);
        return 1;
    }
    /* The simple driver: the same state machine the command worker steps,
     * with nothing else to do between replies.  Bounded by the platform
     * timeouts of each call. */
    while (!subscriptions_sync_step(y)) {
        rc = platform_client_run(pc, 200);
        if (rc != OCB_OK)
            break;
    }
    if (rc == OCB_OK)
        rc = subscriptions_sync_result(y);
    /* First the client: a call still in flight completes into y, stopped. */
    platform_client_free(pc);
    subscriptions_sync_free(y);
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge subscribe: not every subscription is in place (%s)\n",
                ocb_strerror(rc));
        return 1;
    }
    return 0;
}
