/*
 * sim_subs.c: the subscription API (docs/platform-api.md §5) and fan-out of notifications to
 * subscribers.
 *
 * Rules enforced: one subscription per (app, notifyType) on v1.2.0 (409/100227); callback URLs need
 * an explicit port and a path (400/100222); all of an app's callbacks share one IP:port
 * (400/100222, --allow-mixed-callbacks turns that off).  The older v1.1.0 subscribe documents no
 * rule of its own for a type already subscribed, so the documented 409 applies to it too
 * (--v11-subscribe-replaces re-points the existing one instead: UNCONFIRMED).  The management
 * (/iodm) subscribe returns no id and lists no 409, so a second call for the same type replaces
 * the URL (UNCONFIRMED, lenient).  Both `callbackUrl` and `callbackurl` are accepted everywhere.
 * A body "appId" (§5.1: "only when subscribing for an authorized app") naming another app is
 * refused like ?appId=: this simulator has no authorizations between apps.
 */
#include "sim.h"

#include "ocb/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB_V12    "/iocm/app/sub/v1.2.0/subscriptions"
#define SUB_V11    "/iocm/app/sub/v1.1.0/subscribe"
#define SUB_IODM   "/iodm/app/sub/v1.1.0/subscribe"
#define LIST_LIMIT 1000

/* The platform's subscribable types are the same facts the bridge checks
 * its configuration against: one table (src/notify.c) serves both. */
bool sim_subs_type_known(const char *type, bool management)
{
    return notify_type_api(type) == (management ? OCB_NOTIFY_MANAGEMENT : OCB_NOTIFY_BUSINESS);
}

static cJSON *sub_json(const struct sim_sub *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "subscriptionId", s->id);
        cJSON_AddStringToObject(o, "notifyType", s->type);
        cJSON_AddStringToObject(o, "callbackUrl", s->url);
    }
    return o;
}

static struct sim_sub *find_type_locked(const char *app, const char *type)
{
    for (size_t i = 0; i < g_sim.nsubs; i++)
        if (strcmp(g_sim.subs[i].app, app) == 0 && strcmp(g_sim.subs[i].type, type) == 0)
            return &g_sim.subs[i];
    return NULL;
}

const char *sim_subs_endpoint_locked(const char *app)
{
    for (size_t i = 0; i < g_sim.nsubs; i++)
        if (strcmp(g_sim.subs[i].app, app) == 0)
            return g_sim.subs[i].url;
    return NULL;
}

static void create(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                   enum sim_sub_api api)
{
    const struct sim_opts *o = g_sim.opts;
    cJSON *body = sim_req_json_object(req, resp);
    if (!body)
        return;
    const char *type = sim_json_str(body, "notifyType");
    const char *url = sim_json_str(body, "callbackUrl");
    if (!url)
        url = sim_json_str(body, "callbackurl");
    const char *channel = sim_json_str(body, "channel");
    const char *for_app = sim_json_str(body, "appId");
    if (for_app && *for_app && strcmp(for_app, app->id) != 0) {
        SIM_INFO("subs", "app %s: subscribe for app %s refused (not authorized)", app->id, for_app);
        sim_resp_error(resp, 403, "100217", "The application hasn't been authorized.");
        goto out;
    }
    if (!type || !*type) {
        sim_resp_error(resp, 400, "102202", "Required Parameter is null or empty.");
        goto out;
    }
    if (!sim_subs_type_known(type, api == SIM_SUB_IODM)) {
        SIM_INFO("subs", "app %s: notifyType %s not subscribable here", app->id, type);
        sim_resp_error(resp, 400, api == SIM_SUB_IODM ? "100228" : "100022",
                       api == SIM_SUB_IODM ? "The application input is invalid."
                                           : "The input is invalid.");
        goto out;
    }
    if (channel &&
        (strlen(channel) > 32 || (strcmp(channel, "HTTP") != 0 && strcmp(channel, "MQTT") != 0))) {
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        goto out;
    }
    if (!url || !sim_url_callback_ok(url)) {
        SIM_INFO("subs", "app %s: callbackUrl %s refused", app->id, url ? url : "(none)");
        sim_resp_error(resp, 400, "100222", "The request callbackurl is illegal.");
        goto out;
    }
    struct sim_sub *same = find_type_locked(app->id, type);
    bool replaces =
        same && (api == SIM_SUB_IODM || (api == SIM_SUB_V11 && o->v11_subscribe_replaces));
    if (!o->allow_mixed_callbacks) {
        for (size_t i = 0; i < g_sim.nsubs; i++) {
            const struct sim_sub *s = &g_sim.subs[i];
            if (strcmp(s->app, app->id) != 0 || (replaces && s == same))
                continue;
            if (!sim_url_same_endpoint(s->url, url)) {
                SIM_INFO("subs", "app %s: %s is not on the IP:port of %s", app->id, url, s->url);
                sim_resp_error(resp, 400, "100222", "The request callbackurl is illegal.");
                goto out;
            }
        }
    }
    if (same && !replaces && (!o->allow_duplicate_types || strcmp(same->url, url) == 0)) {
        SIM_INFO("subs", "app %s: %s already subscribed (%s)", app->id, type, same->id);
        sim_resp_error(resp, 409, "100227", "The resource is conflicted.");
        goto out;
    }
    if (replaces) {
        snprintf(same->url, sizeof same->url, "%s", url);
        SIM_INFO("subs", "app %s: %s now goes to %s", app->id, type, url);
    } else {
        if (sim_grow((void **)&g_sim.subs, &g_sim.cap_subs, g_sim.nsubs + 1, sizeof *g_sim.subs,
                     SIM_MAX_SUBS) != OCB_OK) {
            sim_resp_error(resp, 500, "100001", "Internal server error.");
            goto out;
        }
        same = &g_sim.subs[g_sim.nsubs++];
        memset(same, 0, sizeof *same);
        sim_uuid_random(same->id);
        snprintf(same->app, sizeof same->app, "%s", app->id);
        snprintf(same->type, sizeof same->type, "%s", type);
        snprintf(same->url, sizeof same->url, "%s", url);
        snprintf(same->channel, sizeof same->channel, "%s", channel ? channel : "HTTP");
        same->api = api;
        SIM_INFO("subs", "app %s: subscribed %s -> %s (%s)", app->id, type, url, same->id);
    }
    if (api == SIM_SUB_V12) {
        cJSON *made = sub_json(same);
        /* §5.1 shows clientIds in the 201; only meaningful for MQTT subscribers (its semantics
         * are UNCONFIRMED): present, empty, when channel is MQTT, omitted otherwise. */
        if (made && strcmp(same->channel, "MQTT") == 0)
            cJSON_AddArrayToObject(made, "clientIds");
        sim_resp_json(resp, 201, made);
    } else
        sim_resp_empty(resp, api == SIM_SUB_IODM ? 200 : 201);
out:
    cJSON_Delete(body);
}

static bool sub_matches(const struct sim_sub *s, const struct sim_app *app,
                        const struct sim_req *req)
{
    const char *type = sim_req_query(req, "notifyType");
    const char *url = sim_req_query(req, "callbackUrl");
    const char *channel = sim_req_query(req, "channel");
    if (!url)
        url = sim_req_query(req, "callbackurl");
    return strcmp(s->app, app->id) == 0 && (!type || !*type || strcmp(s->type, type) == 0) &&
           (!url || !*url || strcmp(s->url, url) == 0) &&
           (!channel || !*channel || strcmp(s->channel, channel) == 0);
}

static void list(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    /* The subscription query pages by 10 unless told otherwise: clients must page.  A
     * deployment may also honour less than the pageSize asked for (--max-page-size). */
    if (!sim_req_paging(req, resp, 10, 1000, &page_no, &page_size))
        return;
    if (page_size > g_sim.opts->max_page_size)
        page_size = g_sim.opts->max_page_size;
    size_t total = 0;
    for (size_t i = 0; i < g_sim.nsubs; i++)
        if (sub_matches(&g_sim.subs[i], app, req))
            total++;
    if (total > LIST_LIMIT) {
        sim_resp_error(resp, 400, "100224",
                       "The resource exceeds 1000, please refine query conditions.");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    size_t idx = 0, first = (size_t)page_no * (size_t)page_size;
    for (size_t i = 0; arr && i < g_sim.nsubs; i++) {
        if (!sub_matches(&g_sim.subs[i], app, req))
            continue;
        if (idx >= first && idx < first + (size_t)page_size)
            cJSON_AddItemToArray(arr, sub_json(&g_sim.subs[i]));
        idx++;
    }
    if (o) {
        cJSON_AddNumberToObject(o, "totalCount", (double)total);
        cJSON_AddNumberToObject(o, "pageNo", (double)page_no);
        cJSON_AddNumberToObject(o, "pageSize", (double)page_size);
        cJSON_AddItemToObject(o, "subscriptions", arr);
    } else {
        cJSON_Delete(arr);
    }
    sim_resp_json(resp, 200, o);
}

static void remove_at_locked(size_t i)
{
    memmove(&g_sim.subs[i], &g_sim.subs[i + 1], (g_sim.nsubs - i - 1) * sizeof *g_sim.subs);
    g_sim.nsubs--;
}

static void batch_delete(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    size_t removed = 0;
    for (size_t i = g_sim.nsubs; i-- > 0;)
        if (sub_matches(&g_sim.subs[i], app, req)) {
            remove_at_locked(i);
            removed++;
        }
    SIM_INFO("subs", "app %s: batch delete removed %zu subscriptions", app->id, removed);
    sim_resp_empty(resp, 204);
}

static void one(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                const char *id)
{
    for (size_t i = 0; i < g_sim.nsubs; i++) {
        if (strcmp(g_sim.subs[i].id, id) != 0 || strcmp(g_sim.subs[i].app, app->id) != 0)
            continue;
        if (strcmp(req->method, "GET") == 0) {
            sim_resp_json(resp, 200, sub_json(&g_sim.subs[i]));
        } else {
            SIM_INFO("subs", "app %s: deleted %s", app->id, id);
            remove_at_locked(i);
            sim_resp_empty(resp, 204);
        }
        return;
    }
    sim_resp_error(resp, 404, "100022", "The subscription does not exist.");
}

bool sim_subs_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const char *m = req->method, *p = req->path;
    if (strcmp(p, SUB_V12) == 0) {
        if (strcmp(m, "POST") == 0)
            create(req, resp, app, SIM_SUB_V12);
        else if (strcmp(m, "GET") == 0)
            list(req, resp, app);
        else if (strcmp(m, "DELETE") == 0)
            batch_delete(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    if (strncmp(p, SUB_V12 "/", sizeof SUB_V12) == 0 && p[sizeof SUB_V12] != '\0' &&
        !strchr(p + sizeof SUB_V12, '/')) {
        if (strcmp(m, "GET") == 0 || strcmp(m, "DELETE") == 0)
            one(req, resp, app, p + sizeof SUB_V12);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    if (strcmp(p, SUB_V11) == 0 || strcmp(p, SUB_IODM) == 0) {
        if (strcmp(m, "POST") == 0)
            create(req, resp, app, strcmp(p, SUB_V11) == 0 ? SIM_SUB_V11 : SIM_SUB_IODM);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    return false;
}

size_t sim_subs_push_locked(const char *app, const char *type, const char *body)
{
    size_t n = 0;
    for (size_t i = 0; i < g_sim.nsubs; i++) {
        const struct sim_sub *s = &g_sim.subs[i];
        if (strcmp(s->app, app) != 0 || strcmp(s->type, type) != 0)
            continue;
        if (sim_push_enqueue(s->url, body, type) == OCB_OK)
            n++;
    }
    return n;
}

cJSON *sim_subs_json_locked(void)
{
    static const char *api_names[] = {"v1.2.0", "v1.1.0", "iodm"};
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < g_sim.nsubs; i++) {
        cJSON *o = sub_json(&g_sim.subs[i]);
        if (!o)
            continue;
        cJSON_AddStringToObject(o, "appId", g_sim.subs[i].app);
        cJSON_AddStringToObject(o, "channel", g_sim.subs[i].channel);
        cJSON_AddStringToObject(o, "api", api_names[g_sim.subs[i].api]);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}
