/*
 * sim_admin.c: the control API on the admin port (plain HTTP, loopback).  Tests and demos use it
 * to see what the simulator received and sent, to drive devices and commands, and to inject
 * notifications and faults.  JSON in and out; the whole list is in README.md.
 *
 * Runs on MHD connection threads; every handler takes g_sim.lock for its short work.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is(const struct sim_req *r, const char *method, const char *path)
{
    return strcmp(r->method, method) == 0 && strcmp(r->path, path) == 0;
}

/* "/devices/{id}/online" -> id copied into out, rest = "online".  false when the shape differs. */
static bool split_id(const char *path, const char *prefix, char *out, size_t cap, const char **rest)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0 || !path[pl])
        return false;
    const char *id = path + pl;
    const char *slash = strchr(id, '/');
    size_t n = slash ? (size_t)(slash - id) : strlen(id);
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, id, n);
    out[n] = '\0';
    *rest = slash ? slash + 1 : "";
    return true;
}

static unsigned long since_param(const struct sim_req *req)
{
    long v = 0;
    const char *s = sim_req_query(req, "since");
    if (s && !sim_parse_long(s, 0, 0x7fffffffL, &v))
        v = 0;
    return (unsigned long)v;
}

static void ok_count(struct sim_resp *resp, const char *key, double n)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, key, n);
    sim_resp_json(resp, 200, o);
}

static void inject(const struct sim_req *req, struct sim_resp *resp)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *app = sim_json_str(in, "appId");
    const char *url = sim_json_str(in, "url");
    const char *raw = sim_json_str(in, "raw");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(in, "body");
    cJSON *parsed = raw ? cJSON_Parse(raw) : NULL;
    char *text = NULL;
    if (!raw && !cJSON_IsObject(body)) {
        sim_resp_error(resp, 400, "INVALID", "need \"body\" (object) or \"raw\" (string)");
        goto out;
    }
    /* "raw" is pushed byte for byte; "body" is pushed as compact JSON, as the platform does. */
    text = raw ? strdup(raw) : cJSON_PrintUnformatted(body);
    if (!text) {
        sim_resp_error(resp, 500, "NOMEM", "out of memory");
        goto out;
    }
    if (url) {
        if (sim_push_enqueue(url, text, "injected") != OCB_OK)
            sim_resp_error(resp, 503, "FULL", "push queue full");
        else
            ok_count(resp, "queued", 1);
        goto out;
    }
    const char *type = sim_json_str(raw ? parsed : body, "notifyType");
    if (!type) {
        sim_resp_error(resp, 400, "INVALID", "body has no notifyType; give \"url\" to push it");
        goto out;
    }
    sim_state_lock();
    bool known_app = app && sim_auth_app_locked(app);
    size_t n = known_app ? sim_subs_push_locked(app, type, text) : 0;
    sim_state_unlock();
    if (!known_app)
        sim_resp_error(resp, 404, "UNKNOWN_APP", "unknown appId");
    else
        ok_count(resp, "queued", (double)n);
out:
    free(text);
    cJSON_Delete(parsed);
    cJSON_Delete(in);
}

static void add_device(const struct sim_req *req, struct sim_resp *resp)
{
    cJSON *in = req->body_len ? sim_req_json_object(req, resp) : cJSON_CreateObject();
    if (!in)
        return;
    const char *app = sim_json_str(in, "appId"), *id = sim_json_str(in, "deviceId"),
               *node = sim_json_str(in, "nodeId");
    const cJSON *online = cJSON_GetObjectItemCaseSensitive(in, "online");
    sim_state_lock();
    if (!app)
        app = g_sim.apps[0].id;
    if (!sim_auth_app_locked(app)) {
        sim_resp_error(resp, 404, "UNKNOWN_APP", "unknown appId");
    } else if ((id && (strlen(id) == 0 || strlen(id) > 36)) || (node && strlen(node) > 31)) {
        sim_resp_error(resp, 400, "INVALID", "deviceId is 1..36 chars, nodeId up to 31");
    } else {
        struct sim_device *d = sim_devices_add_locked(app, id, node, cJSON_IsTrue(online));
        if (!d) {
            sim_resp_error(resp, 409, "CONFLICT", "device exists or table full");
        } else {
            sim_devices_push_added_locked(d);
            cJSON *arr = sim_devices_json_locked();
            cJSON *mine = NULL;
            for (int i = arr ? cJSON_GetArraySize(arr) - 1 : -1; i >= 0 && !mine; i--) {
                cJSON *it = cJSON_GetArrayItem(arr, i);
                if (strcmp(sim_json_str(it, "deviceId"), d->id) == 0)
                    mine = cJSON_DetachItemFromArray(arr, i);
            }
            cJSON_Delete(arr);
            sim_resp_json(resp, 201, mine);
        }
    }
    sim_state_unlock();
    cJSON_Delete(in);
}

static void device_action(const struct sim_req *req, struct sim_resp *resp, const char *id,
                          const char *action)
{
    cJSON *services = NULL, *in = NULL;
    if (strcmp(action, "report") == 0 && req->body_len) {
        in = sim_req_json_object(req, resp);
        if (!in)
            return;
        services = cJSON_GetObjectItemCaseSensitive(in, "services");
        if (!cJSON_IsArray(services)) {
            sim_resp_error(resp, 400, "INVALID", "\"services\" must be an array");
            cJSON_Delete(in);
            return;
        }
    }
    sim_state_lock();
    struct sim_device *d = sim_devices_find_locked(id);
    if (!d) {
        sim_resp_error(resp, 404, "UNKNOWN_DEVICE", "no such device");
    } else if (strcmp(req->method, "DELETE") == 0 && !*action) {
        sim_devices_remove_locked(id);
        sim_resp_empty(resp, 204);
    } else if (strcmp(req->method, "POST") != 0) {
        sim_resp_error(resp, 405, "METHOD", "method not allowed");
    } else if (strcmp(action, "online") == 0 || strcmp(action, "offline") == 0) {
        sim_devices_set_online_locked(d, strcmp(action, "online") == 0);
        sim_resp_empty(resp, 204);
    } else if (strcmp(action, "bind") == 0) {
        /* A registered device binds by coming online (which pushes bindDevice itself). */
        if (d->bound)
            sim_devices_push_bind_locked(d);
        sim_devices_set_online_locked(d, true);
        sim_resp_empty(resp, 204);
    } else if (strcmp(action, "added") == 0) {
        sim_devices_push_added_locked(d);
        sim_resp_empty(resp, 204);
    } else if (strcmp(action, "report") == 0) {
        if (sim_devices_report_locked(d, services) != OCB_OK)
            sim_resp_error(resp, 400, "INVALID", "services[]: need serviceId and data object");
        else
            sim_resp_empty(resp, 204);
    } else {
        sim_resp_error(resp, 404, "UNKNOWN_PATH", "unknown device action");
    }
    sim_state_unlock();
    cJSON_Delete(in);
}

static void complete_command(const struct sim_req *req, struct sim_resp *resp, const char *id)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *code = sim_json_str(in, "resultCode");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(in, "resultDetail");
    sim_state_lock();
    struct sim_cmd *c = sim_cmds_find_locked(id);
    if (!c)
        sim_resp_error(resp, 404, "UNKNOWN_COMMAND", "no such command");
    else if (sim_cmds_complete_locked(c, code ? code : "SUCCESSFUL",
                                      cJSON_IsNull(detail) ? NULL : (detail ? detail : c->paras)) !=
             OCB_OK)
        sim_resp_error(resp, 409, "INVALID_STATE",
                       "command is not SENT/DELIVERED or resultCode is not "
                       "DELIVERED|SUCCESSFUL|FAILED|TIMEOUT");
    else
        sim_resp_empty(resp, 204);
    sim_state_unlock();
    cJSON_Delete(in);
}

static void set_faults(const struct sim_req *req, struct sim_resp *resp)
{
    cJSON *in = cJSON_ParseWithLength(req->body, req->body_len);
    char err[256] = "";
    if (!in) {
        sim_resp_error(resp, 400, "INVALID", "body is not JSON");
        return;
    }
    sim_state_lock();
    enum ocb_err rc = sim_faults_set_locked(in, err, sizeof err);
    cJSON *out = rc == OCB_OK ? sim_faults_json_locked() : NULL;
    sim_state_unlock();
    if (rc != OCB_OK)
        sim_resp_error(resp, 400, "INVALID", err);
    else
        sim_resp_json(resp, 200, out);
    cJSON_Delete(in);
}

static void locked_json(struct sim_resp *resp, cJSON *(*fn)(void))
{
    sim_state_lock();
    cJSON *o = fn();
    sim_state_unlock();
    sim_resp_json(resp, 200, o);
}

void sim_admin_handle(const struct sim_req *req, struct sim_resp *resp)
{
    char id[SIM_APP_ID_MAX + 1];
    const char *rest = NULL;
    if (is(req, "GET", "/health")) {
        sim_resp_text(resp, 200, "ok");
    } else if (is(req, "GET", "/devices")) {
        locked_json(resp, sim_devices_json_locked);
    } else if (is(req, "POST", "/devices")) {
        add_device(req, resp);
    } else if (split_id(req->path, "/devices/", id, sizeof id, &rest)) {
        device_action(req, resp, id, rest);
    } else if (is(req, "POST", "/inject")) {
        inject(req, resp);
    } else if (is(req, "GET", "/requests")) {
        sim_state_lock();
        cJSON *o = sim_reqlog_json_locked(since_param(req), sim_req_query(req, "path"));
        sim_state_unlock();
        sim_resp_json(resp, 200, o);
    } else if (is(req, "GET", "/pushes")) {
        sim_resp_json(resp, 200, sim_push_log_json(since_param(req)));
    } else if (is(req, "GET", "/push-targets")) {
        sim_resp_json(resp, 200, sim_push_targets_json());
    } else if (is(req, "GET", "/subscriptions")) {
        locked_json(resp, sim_subs_json_locked);
    } else if (is(req, "GET", "/commands")) {
        sim_state_lock();
        const char *dev = sim_req_query(req, "deviceId");
        cJSON *o = sim_cmds_json_locked(dev && *dev ? dev : NULL);
        sim_state_unlock();
        sim_resp_json(resp, 200, o);
    } else if (split_id(req->path, "/commands/", id, sizeof id, &rest) &&
               strcmp(rest, "complete") == 0 && strcmp(req->method, "POST") == 0) {
        complete_command(req, resp, id);
    } else if (is(req, "GET", "/faults")) {
        locked_json(resp, sim_faults_json_locked);
    } else if (is(req, "POST", "/faults")) {
        set_faults(req, resp);
    } else if (is(req, "DELETE", "/faults")) {
        sim_state_lock();
        g_sim.nfaults = 0;
        sim_state_unlock();
        sim_resp_empty(resp, 204);
    } else if (is(req, "POST", "/reset")) {
        sim_state_reset();
        sim_resp_empty(resp, 204);
    } else if (split_id(req->path, "/apps/", id, sizeof id, &rest) && strcmp(rest, "revoke") == 0 &&
               strcmp(req->method, "POST") == 0) {
        sim_state_lock();
        struct sim_app *a = sim_auth_app_locked(id);
        if (a)
            sim_auth_revoke_locked(a);
        sim_state_unlock();
        if (a)
            sim_resp_empty(resp, 204);
        else
            sim_resp_error(resp, 404, "UNKNOWN_APP", "unknown appId");
    } else {
        sim_resp_error(resp, 404, "UNKNOWN_PATH", "unknown control endpoint");
    }
}
