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
 * IP:port (platform-api.md §2, §5.4): while any subscription of the app, of
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
 */
#include "ocb/subscriptions.h"

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

struct sub {
    char *id;
    char *type;
    char *url;
    bool gone; /* deleted during this run */
};

struct app_sync {
    struct ocb_platform_client *pc;
    const struct ocb_config *cfg;
    const struct ocb_app *app;
    FILE *report;
    char url[URL_MAX];  /* our callbackUrl */
    char base[URL_MAX]; /* <public_url>/push/<appId> */
    struct sub *subs;
    size_t n_subs;
    enum ocb_err rc;
};

static void on_result(void *ctx, const struct ocb_platform_reply *r)
{
    struct result *res = ctx;
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
    }
}

/* One blocking call; res->body is freed by the caller. */
static enum ocb_err call(struct app_sync *s, const char *op, const char *method, const char *path,
                         const char *body, struct result *res)
{
    memset(res, 0, sizeof(*res));
    struct ocb_platform_call c = {
        .app_id = s->app->app_id,
        .op = op,
        .method = method,
        .path = path,
        .body = body,
    };
    enum ocb_err rc = platform_client_call_sync(s->pc, &c, on_result, res);
    if (rc != OCB_OK)
        return rc;
    if (res->cls == OCB_PLATFORM_OK)
        return OCB_OK;
    return res->transport != OCB_OK ? res->transport : OCB_ERR_PROTOCOL;
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

static void free_subs(struct app_sync *s)
{
    for (size_t i = 0; i < s->n_subs; i++) {
        free(s->subs[i].id);
        free(s->subs[i].type);
        free(s->subs[i].url);
    }
    free(s->subs);
    s->subs = NULL;
    s->n_subs = 0;
}

/* Append one page of the list; *more when the platform has further pages.  *listed counts
 * every entry read so far, usable or not, against totalCount: the platform may honour a
 * smaller pageSize than asked for, so a short page does not mean the last one. */
static enum ocb_err take_page(struct app_sync *s, const char *body, size_t len, bool *more,
                              size_t *listed)
{
    enum ocb_err rc = OCB_ERR_PROTOCOL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "subscriptions");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(root, "totalCount");
    *more = false;
    if (!cJSON_IsArray(arr))
        goto out;
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct sub *grown = realloc(s->subs, (s->n_subs + n + 1) * sizeof(*grown));
    if (!grown) {
        rc = OCB_ERR_NOMEM;
        goto out;
    }
    s->subs = grown;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        struct sub sub = {
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
        s->subs[s->n_subs++] = sub;
    }
    *listed += n;
    if (cJSON_IsNumber(total))
        *more = n > 0 && (double)*listed < total->valuedouble;
    else
        *more = n == PAGE_SIZE;
    rc = OCB_OK;
out:
    cJSON_Delete(root);
    return rc;
}

static enum ocb_err list_subs(struct app_sync *s)
{
    bool more = true;
    size_t listed = 0;
    for (int page = 0; more && page < MAX_PAGES; page++) {
        char path[256];
        snprintf(path, sizeof(path), "%s?pageNo=%d&pageSize=%d", PATH_SUBS, page, PAGE_SIZE);
        struct result res;
        enum ocb_err rc = call(s, "listSubscriptions", "GET", path, NULL, &res);
        if (rc == OCB_OK)
            rc = take_page(s, res.body, res.len, &more, &listed);
        if (rc != OCB_OK) {
            fail(s, "subscriptions", "list", &res);
            free(res.body);
            return rc;
        }
        free(res.body);
    }
    return OCB_OK;
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
static bool elsewhere(const struct app_sync *s, const struct sub *sub)
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

/* Delete one listed subscription; on success say what at level.  404 means already gone. */
static bool delete_sub(struct app_sync *s, struct sub *sub, enum ocb_log_level level,
                       const char *what)
{
    char esc[512], path[768];
    if (command_url_escape(sub->id, esc, sizeof(esc)) != OCB_OK)
        return false;
    snprintf(path, sizeof(path), "%s/%s", PATH_SUBS, esc);
    struct result res;
    enum ocb_err rc = call(s, "deleteSubscription", "DELETE", path, NULL, &res);
    free(res.body);
    if (rc != OCB_OK && res.status != 404) {
        char why[URL_MAX + 32];
        snprintf(why, sizeof(why), "delete of %s", sub->url);
        fail(s, sub->type, why, &res);
        return false;
    }
    sub->gone = true;
    count_change("deleted");
    say_at(s, level, sub->type, what);
    return true;
}

/* Delete everything holding type, so that ours can take its place. */
static void free_type(struct app_sync *s, const char *type)
{
    bool listed = false;
    for (size_t i = 0; i < s->n_subs; i++) {
        struct sub *sub = &s->subs[i];
        if (!sub->gone && strcmp(sub->type, type) == 0) {
            char what[URL_MAX + 32];
            snprintf(what, sizeof(what), "replaced (%s)", sub->url);
            listed = true;
            delete_sub(s, sub, OCB_LOG_INFO, what);
        }
    }
    if (listed)
        return;
    /* The conflict is not in our list (another channel or owner): batch delete by type. */
    char esc[256], path[512];
    if (command_url_escape(type, esc, sizeof(esc)) != OCB_OK)
        return;
    snprintf(path, sizeof(path), "%s?notifyType=%s", PATH_SUBS, esc);
    struct result res;
    if (call(s, "deleteSubscriptions", "DELETE", path, NULL, &res) != OCB_OK)
        fail(s, type, "batch delete", &res);
    free(res.body);
}

/*
 * Make room at our IP:port: delete every listed subscription pointing at
 * another one.  Types not wanted go first: they must go in any case, and a
 * failure after them still leaves the wanted types delivering to the old
 * address.  false when one could not be deleted: the rest still block us,
 * so the caller creates nothing (it would only fail).
 */
static bool move_here(struct app_sync *s)
{
    char what[2 * URL_MAX + 160];
    for (int pass = 0; pass < 2; pass++) {
        bool wanted_pass = pass == 1;
        for (size_t i = 0; i < s->n_subs; i++) {
            struct sub *sub = &s->subs[i];
            if (!elsewhere(s, sub) || wanted(s->app, sub->type) != wanted_pass)
                continue;
            if (wanted_pass)
                snprintf(what, sizeof(what), "deleted at its old address %s (moving to %s)",
                         sub->url, s->url);
            else
                snprintf(what, sizeof(what),
                         "DELETED at another address %s: not in apps[].subscribe, and all of an "
                         "app's callbacks must share the IP:port of %s",
                         sub->url, s->url);
            if (!delete_sub(s, sub, OCB_LOG_WARN, what))
                return false;
        }
    }
    return true;
}

static void ensure(struct app_sync *s, const char *type)
{
    char *body = sub_body(type, s->url);
    if (!body) {
        s->rc = OCB_ERR_NOMEM;
        return;
    }
    struct result res;
    enum ocb_err rc = call(s, "subscribe", "POST", PATH_SUBS, body, &res);
    bool replaced = false;
    if (rc != OCB_OK && res.status == 409) {
        free(res.body);
        free_type(s, type);
        replaced = true;
        rc = call(s, "subscribe", "POST", PATH_SUBS, body, &res);
    }
    if (rc == OCB_OK) {
        count_change(replaced ? "replaced" : "created");
        say(s, type, replaced ? "subscribed (replacing a conflicting subscription)" : "subscribed");
    } else
        fail(s, type, "subscribe", &res);
    free(res.body);
    cJSON_free(body);
}

static void ensure_upgrade(struct app_sync *s, const char *type)
{
    char *body = sub_body(type, s->url);
    if (!body) {
        s->rc = OCB_ERR_NOMEM;
        return;
    }
    struct result res;
    if (call(s, "subscribeManagement", "POST", PATH_IODM_SUB, body, &res) == OCB_OK) {
        count_change("created");
        say(s, type, "subscribed (device management)");
    } else
        fail(s, type, "subscribe (device management)", &res);
    free(res.body);
    cJSON_free(body);
}

/* List, plan, move if needed, create, remove what is ours and unwanted. */
static enum ocb_err sync_app(struct ocb_platform_client *pc, const struct ocb_config *cfg,
                             const struct ocb_app *app, FILE *report)
{
    struct app_sync s = {.pc = pc, .cfg = cfg, .app = app, .report = report, .rc = OCB_OK};
    if (command_callback_url(cfg->http.public_url, app->app_id, app->push_token, s.url,
                             sizeof(s.url)) != OCB_OK ||
        command_callback_url(cfg->http.public_url, app->app_id, NULL, s.base, sizeof(s.base)) !=
            OCB_OK) {
        log_error(MOD, NULL, "app %s: callback URL too long", app->app_id);
        return OCB_ERR_TOO_BIG;
    }
    enum ocb_err rc = list_subs(&s);
    if (rc != OCB_OK) {
        free_subs(&s);
        return rc;
    }
    /* Only a create needs the address to ourselves: with nothing to create,
     * subscriptions elsewhere are not ours to delete. */
    bool need_create = false;
    for (size_t i = 0; i < app->n_subscribe; i++)
        need_create = need_create || !listed_here(&s, app->subscribe[i]);
    bool moved = !need_create || move_here(&s);
    for (size_t i = 0; i < app->n_subscribe; i++) {
        const char *type = app->subscribe[i];
        if (listed_here(&s, type))
            say(&s, type, "already subscribed");
        else if (!moved)
            say_at(&s, OCB_LOG_ERROR, type,
                   "NOT subscribed: a subscription at another IP:port could not be deleted");
        else if (notify_type_api(type) == OCB_NOTIFY_MANAGEMENT)
            ensure_upgrade(&s, type);
        else
            ensure(&s, type);
    }
    for (size_t i = 0; i < s.n_subs; i++) {
        struct sub *sub = &s.subs[i];
        if (sub->gone || !points_here(&s, sub->url) || wanted(app, sub->type))
            continue;
        char what[URL_MAX + 64];
        snprintf(what, sizeof(what), "removed (no longer wanted) (%s)", sub->url);
        delete_sub(&s, sub, OCB_LOG_INFO, what);
    }
    free_subs(&s);
    return s.rc;
}

enum ocb_err subscriptions_sync(struct ocb_platform_client *pc, const struct ocb_config *cfg,
                                FILE *report)
{
    enum ocb_err first = OCB_OK;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct ocb_app *app = &cfg->apps[i];
        if (!app->secret || !*app->secret)
            continue;
        enum ocb_err rc = sync_app(pc, cfg, app, report);
        if (rc != OCB_OK && first == OCB_OK)
            first = rc;
    }
    return first;
}

int subscriptions_main(const struct ocb_config *cfg)
{
    if (!config_commands_enabled(cfg)) {
        fprintf(stderr, "ocbridge subscribe: no app has a secret; nothing to do\n");
        return 1;
    }
    struct ocb_platform_client *pc = NULL;
    enum ocb_err rc = platform_client_new(cfg, &pc);
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge subscribe: %s\n", ocb_strerror(rc));
        return 1;
    }
    rc = subscriptions_sync(pc, cfg, stdout);
    platform_client_free(pc);
    if (rc != OCB_OK) {
        fprintf(stderr, "ocbridge subscribe: not every subscription is in place (%s)\n",
                ocb_strerror(rc));
        return 1;
    }
    return 0;
}
