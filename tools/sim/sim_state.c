/*
 * sim_state.c: the one state object (g_sim), its lock, reset and the request log.
 *
 * Every API and admin request takes g_sim.lock for its whole (short) handling; the ticker takes it
 * once per tick.  Nothing does I/O while holding it except queueing pushes, which only copies.
 * The request log is a ring of the last SIM_REQUEST_LOG_MAX requests, each kept as compact JSON
 * so GET /requests is a cheap concatenation.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

struct sim_state g_sim = {.lock = PTHREAD_MUTEX_INITIALIZER};

enum ocb_err sim_grow(void **arr, size_t *cap, size_t need, size_t elem, size_t max)
{
    if (need <= *cap)
        return OCB_OK;
    if (need > max)
        return OCB_ERR_FULL;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    if (ncap > max)
        ncap = max;
    void *n = realloc(*arr, ncap * elem);
    if (!n)
        return OCB_ERR_NOMEM;
    *arr = n;
    *cap = ncap;
    return OCB_OK;
}

void sim_state_lock(void)
{
    pthread_mutex_lock(&g_sim.lock);
}

void sim_state_unlock(void)
{
    pthread_mutex_unlock(&g_sim.lock);
}

static void clear_dynamic_locked(void)
{
    for (size_t i = 0; i < g_sim.ncmds; i++)
        sim_cmd_free(g_sim.cmds[i]);
    g_sim.ncmds = 0;
    for (size_t i = 0; i < g_sim.ntasks; i++)
        cJSON_Delete(g_sim.tasks[i].commands);
    g_sim.ntasks = 0;
    g_sim.nsubs = 0;
    g_sim.nfaults = 0;
    sim_groups_free_locked();
    sim_devices_free_locked();
    sim_auth_reset_locked();
    sim_reqlog_clear_locked();
}

enum ocb_err sim_state_init(const struct sim_opts *o)
{
    g_sim.opts = o;
    g_sim.prng = o->seed;
    g_sim.napps = o->napps;
    for (size_t i = 0; i < o->napps; i++) {
        struct sim_app *a = &g_sim.apps[i];
        memset(a, 0, sizeof *a);
        memcpy(a->id, o->apps[i].id, sizeof a->id);
        memcpy(a->secret, o->apps[i].secret, sizeof a->secret);
        if (o->throttle_calls > 0) {
            a->calls_cap = (size_t)o->throttle_calls;
            a->calls = calloc(a->calls_cap, sizeof *a->calls);
            if (!a->calls)
                return OCB_ERR_NOMEM;
        }
    }
    if (sim_jlog_init(&g_sim.reqlog, SIM_REQUEST_LOG_MAX) != OCB_OK)
        return OCB_ERR_NOMEM;
    return sim_devices_init_locked();
}

void sim_state_reset(void)
{
    sim_state_lock();
    clear_dynamic_locked();
    g_sim.prng = g_sim.opts->seed;
    g_sim.next_device_index = 0;
    enum ocb_err rc = sim_devices_init_locked();
    sim_state_unlock();
    sim_push_reset();
    if (rc != OCB_OK)
        SIM_ERROR("state", "reset: devices could not be recreated");
    SIM_INFO("state", "state reset");
}

void sim_state_free(void)
{
    clear_dynamic_locked();
    free(g_sim.devices);
    free(g_sim.cmds);
    free(g_sim.subs);
    free(g_sim.tasks);
    free(g_sim.groups);
    g_sim.groups = NULL;
    g_sim.cap_groups = 0;
    sim_jlog_free(&g_sim.reqlog);
    for (size_t i = 0; i < g_sim.napps; i++)
        free(g_sim.apps[i].calls);
    g_sim.devices = NULL;
    g_sim.cmds = NULL;
    g_sim.subs = NULL;
    g_sim.tasks = NULL;
    g_sim.cap_devices = g_sim.cap_cmds = g_sim.cap_subs = g_sim.cap_tasks = 0;
}

/* ---- request log ---- */

static cJSON *kv_object(const struct sim_kv *kv, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < n; i++)
        cJSON_AddStringToObject(o, kv[i].key, kv[i].val);
    return o;
}

void sim_reqlog_add_locked(const struct sim_req *req, const struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    char now[17];
    sim_time_format(time(NULL), now);
    cJSON_AddStringToObject(o, "time", now);
    cJSON_AddStringToObject(o, "method", req->method);
    cJSON_AddStringToObject(o, "path", req->path);
    cJSON_AddItemToObject(o, "query", kv_object(req->query, req->nquery));
    cJSON_AddItemToObject(o, "headers", kv_object(req->headers, req->nheaders));
    /* Bodies are logged as text; a body with NULs is cut at the first one. */
    cJSON_AddStringToObject(o, "body", req->body ? req->body : "");
    if (resp->drop && resp->processed) {
        /* drop_after: what the simulator did, and that the client never saw it. */
        cJSON_AddNumberToObject(o, "status", resp->status);
        cJSON_AddStringToObject(o, "response", resp->body ? resp->body : "");
        cJSON_AddTrueToObject(o, "dropped");
    } else if (resp->drop) {
        cJSON_AddNullToObject(o, "status");
        cJSON_AddStringToObject(o, "response", "");
        cJSON_AddTrueToObject(o, "dropped");
    } else {
        cJSON_AddNumberToObject(o, "status", resp->status);
        cJSON_AddStringToObject(o, "response", resp->body ? resp->body : "");
    }
    sim_jlog_add(&g_sim.reqlog, o);
}

cJSON *sim_reqlog_json_locked(unsigned long since, const char *path_prefix)
{
    return sim_jlog_json(&g_sim.reqlog, since, path_prefix ? "path" : NULL, path_prefix);
}

void sim_reqlog_clear_locked(void)
{
    sim_jlog_clear(&g_sim.reqlog);
}
