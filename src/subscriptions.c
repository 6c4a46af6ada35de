/*
 * subscriptions.c: reconcile the platform's subscriptions with the config.
 *
 * The platform allows one subscription per (app, notifyType): creating a
 * second answers 409/100227.  So "replace" means delete what holds the type
 * and create ours.  Only subscriptions whose callbackUrl points at this
 * bridge's /push/<appId> are ever removed for being unwanted: another
 * service subscribed to other types of the same app is left alone.
 *
 * The upgrade types (sw/fwUpgrade*) live in the device-management API,
 * which can neither list nor delete; subscribing them again is harmless, so
 * they are simply (re)subscribed every time.
 */
#include "ocb/subscriptions.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/command.h"
#include "ocb/log.h"
#include "ocb/notify.h"

#define MOD "subscriptions"

#define PATH_SUBS     "/iocm/app/sub/v1.2.0/subscriptions"
#define PATH_IODM_SUB "/iodm/app/sub/v1.1.0/subscribe"
#define PAGE_SIZE     1000
#define MAX_PAGES     10
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

static void say(struct app_sync *s, const char *type, const char *what)
{
    log_info(MOD, NULL, "app %s: %s %s", s->app->app_id, type, what);
    if (s->report)
        fprintf(s->report, "%s: %s %s\n", s->app->app_id, type, what);
}

static void fail(struct app_sync *s, const char *type, const char *what, const struct result *res)
{
    log_error(MOD, NULL, "app %s: %s: %s failed: HTTP %ld %s %s", s->app->app_id, type, what,
              res->status, res->code, res->desc);
    if (s->report)
        fprintf(s->report, "%s: %s %s FAILED: HTTP %ld %s %s\n", s->app->app_id, type, what,
                res->status, res->code, res->desc);
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

/* Append one page of the list; *more when the platform has further pages. */
static enum ocb_err take_page(struct app_sync *s, const char *body, size_t len, bool *more)
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
    *more = n == PAGE_SIZE && cJSON_IsNumber(total) && (double)s->n_subs < total->valuedouble;
    rc = OCB_OK;
out:
    cJSON_Delete(root);
    return rc;
}

static enum ocb_err list_subs(struct app_sync *s)
{
    bool more = true;
    for (int page = 0; more && page < MAX_PAGES; page++) {
        char path[256];
        snprintf(path, sizeof(path), "%s?pageNo=%d&pageSize=%d", PATH_SUBS, page, PAGE_SIZE);
        struct result res;
        enum ocb_err rc = call(s, "listSubscriptions", "GET", path, NULL, &res);
        if (rc == OCB_OK)
            rc = take_page(s, res.body, res.len, &more);
        if (rc != OCB_OK) {
            fail(s, "subscriptions", "list", &res);
            free(res.body);
            return rc;
        }
        free(res.body);
    }
    return OCB_OK;
}

/* Ours: <public_url>/push/<appId> with or without a push token. */
static bool points_here(const struct app_sync *s, const char *url)
{
    size_t n = strlen(s->base);
    return strncmp(url, s->base, n) == 0 && (url[n] == '\0' || url[n] == '/');
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

static bool delete_sub(struct app_sync *s, const struct sub *sub, const char *why)
{
    char esc[512], path[768];
    if (command_url_escape(sub->id, esc, sizeof(esc)) != OCB_OK)
        return false;
    snprintf(path, sizeof(path), "%s/%s", PATH_SUBS, esc);
    struct result res;
    enum ocb_err rc = call(s, "deleteSubscription", "DELETE", path, NULL, &res);
    free(res.body);
    if (rc != OCB_OK && res.status != 404) {
        fail(s, sub->type, why, &res);
        return false;
    }
    char what[URL_MAX + 64];
    snprintf(what, sizeof(what), "%s (%s)", why, sub->url);
    say(s, sub->type, what);
    return true;
}

/* Delete everything holding type, so that ours can take its place. */
static void free_type(struct app_sync *s, const char *type)
{
    bool listed = false;
    for (size_t i = 0; i < s->n_subs; i++) {
        if (strcmp(s->subs[i].type, type) == 0) {
            listed = true;
            delete_sub(s, &s->subs[i], "replaced");
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

static void ensure(struct app_sync *s, const char *type)
{
    for (size_t i = 0; i < s->n_subs; i++) {
        if (strcmp(s->subs[i].type, type) == 0 && strcmp(s->subs[i].url, s->url) == 0) {
            say(s, type, "already subscribed");
            return;
        }
    }
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
    if (rc == OCB_OK)
        say(s, type, replaced ? "subscribed (replacing a conflicting subscription)" : "subscribed");
    else
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
    if (call(s, "subscribeManagement", "POST", PATH_IODM_SUB, body, &res) == OCB_OK)
        say(s, type, "subscribed (device management)");
    else
        fail(s, type, "subscribe (device management)", &res);
    free(res.body);
    cJSON_free(body);
}

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
    for (size_t i = 0; i < app->n_subscribe; i++) {
        if (notify_type_api(app->subscribe[i]) == OCB_NOTIFY_MANAGEMENT)
            ensure_upgrade(&s, app->subscribe[i]);
        else
            ensure(&s, app->subscribe[i]);
    }
    for (size_t i = 0; i < s.n_subs; i++)
        if (points_here(&s, s.subs[i].url) && !wanted(app, s.subs[i].type))
            delete_sub(&s, &s.subs[i], "removed (no longer wanted)");
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
