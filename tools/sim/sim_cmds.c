/*
 * sim_cmds.c: device commands v1.4.0 (docs/platform-api.md §3) and their lifecycle (§2).
 *
 * A command is created PENDING (device offline, expireTime > 0) or SENT (device online).  PENDING
 * commands leave when the device comes online (also by reporting), when they expire (EXPIRED) or
 * are canceled (CANCELED).  A SENT command then walks, driven by the ticker:
 *     SENT --delay--> DELIVERED --delay--> SUCCESSFUL (resultDetail = the paras) | FAILED
 *     SENT --3*delay--> TIMEOUT           (at --command-timeout-rate, or device went offline)
 * The outcome is drawn from the seeded PRNG when the command is sent.  With --command-manual the
 * command stops at DELIVERED until POST /commands/{id}/complete.  Each status change is pushed as
 * the §2 callback body to the command's callbackUrl (EXPIRED/CANCELED only with
 * --push-final-states: UNCONFIRMED).  MQTT devices also produce messageConfirm and commandRsp
 * notifications for the app's subscribers.
 */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_BASE       "/iocm/app/cmd/v1.4.0/deviceCommands"
#define CANCEL_BASE    "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
#define DEFAULT_EXPIRE 172800L

static const char *const status_names[] = {
    "PENDING", "SENT", "DELIVERED", "SUCCESSFUL", "FAILED", "TIMEOUT", "EXPIRED", "CANCELED",
};

const char *sim_cmd_status_name(enum sim_cmd_status s)
{
    return status_names[s];
}

bool sim_cmd_status_parse(const char *s, enum sim_cmd_status *out)
{
    for (size_t i = 0; s && i < sizeof status_names / sizeof *status_names; i++)
        if (strcmp(status_names[i], s) == 0) {
            *out = (enum sim_cmd_status)i;
            return true;
        }
    return false;
}

static bool is_final(enum sim_cmd_status s)
{
    return s >= SIM_CMD_SUCCESSFUL;
}

void sim_cmd_free(struct sim_cmd *c)
{
    if (!c)
        return;
    free(c->service_id);
    free(c->method);
    free(c->callback);
    cJSON_Delete(c->paras);
    cJSON_Delete(c->result_detail);
    free(c);
}

static void add_time(cJSON *o, const char *key, time_t t)
{
    if (t == 0)
        return; /* REST answers omit absent values (§0) */
    char buf[17];
    sim_time_format(t, buf);
    cJSON_AddStringToObject(o, key, buf);
}

static cJSON *cmd_json(const struct sim_cmd *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "commandId", c->id);
    cJSON_AddStringToObject(o, "appId", c->app);
    cJSON_AddStringToObject(o, "deviceId", c->device);
    cJSON *cmd = cJSON_AddObjectToObject(o, "command");
    if (cmd) {
        cJSON_AddStringToObject(cmd, "serviceId", c->service_id);
        cJSON_AddStringToObject(cmd, "method", c->method);
        cJSON_AddItemToObject(cmd, "paras", cJSON_Duplicate(c->paras, true));
    }
    if (c->callback)
        cJSON_AddStringToObject(o, "callbackUrl", c->callback);
    cJSON_AddNumberToObject(o, "expireTime", (double)c->expire_s);
    cJSON_AddStringToObject(o, "status", sim_cmd_status_name(c->status));
    if (c->has_result) {
        cJSON *r = cJSON_AddObjectToObject(o, "result");
        if (r) {
            cJSON_AddStringToObject(r, "resultCode", sim_cmd_status_name(c->status));
            cJSON_AddItemToObject(r, "resultDetail",
                                  c->result_detail ? cJSON_Duplicate(c->result_detail, true)
                                                   : cJSON_CreateNull());
        }
    }
    add_time(o, "creationTime", c->creation);
    add_time(o, "executeTime", c->executed);
    add_time(o, "platformIssuedTime", c->issued);
    add_time(o, "deliveredTime", c->delivered);
    cJSON_AddNumberToObject(o, "issuedTimes", (double)c->issued_times);
    if (c->max_retransmit >= 0)
        cJSON_AddNumberToObject(o, "maxRetransmit", (double)c->max_retransmit);
    return o;
}

char *sim_cmds_callback_body(const struct sim_cmd *c, enum sim_cmd_status s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "deviceId", c->device);
    cJSON_AddStringToObject(o, "commandId", c->id);
    cJSON *r = cJSON_AddObjectToObject(o, "result");
    if (r) {
        cJSON_AddStringToObject(r, "resultCode", sim_cmd_status_name(s));
        cJSON_AddItemToObject(r, "resultDetail",
                              c->result_detail ? cJSON_Duplicate(c->result_detail, true)
                                               : cJSON_CreateNull());
    }
    char *s_out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s_out;
}

static void push_status_locked(const struct sim_cmd *c)
{
    if (!c->callback)
        return;
    char *body = sim_cmds_callback_body(c, c->status);
    if (body)
        sim_push_enqueue(c->callback, body, "commandStatus");
    free(body);
}

/* MQTT devices also report message confirmation and the command response as notifications. */
static void push_mqtt_locked(const struct sim_cmd *c, bool response)
{
    const struct sim_device *d = sim_devices_find_locked(c->device);
    if (!d || d->kind != SIM_DEV_MQTT)
        return;
    char now[17], from[256], rsp_method[160];
    sim_time_format(time(NULL), now);
    snprintf(from, sizeof from, "/devices/%s/services/%s", c->device, c->service_id);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "notifyType", response ? "commandRsp" : "messageConfirm");
    cJSON *h = cJSON_AddObjectToObject(o, "header");
    if (h) {
        cJSON_AddStringToObject(h, "requestId", c->id);
        cJSON_AddStringToObject(h, "from", from);
        cJSON_AddStringToObject(h, "to", c->app);
        if (response) {
            snprintf(rsp_method, sizeof rsp_method, "%s-RSP", c->method);
            cJSON_AddStringToObject(h, "deviceId", c->device);
            cJSON_AddStringToObject(h, "serviceType", c->service_id);
            cJSON_AddStringToObject(h, "method", rsp_method);
        } else {
            cJSON_AddStringToObject(h, "status", "delivered");
            cJSON_AddStringToObject(h, "timestamp", now);
        }
    }
    cJSON_AddItemToObject(o, "body",
                          response && c->result_detail ? cJSON_Duplicate(c->result_detail, true)
                                                       : cJSON_CreateObject());
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s)
        sim_subs_push_locked(c->app, response ? "commandRsp" : "messageConfirm", s);
    free(s);
}

static void finish_locked(struct sim_cmd *c, enum sim_cmd_status st, const cJSON *detail)
{
    c->status = st;
    c->next_ms = 0;
    /* executeTime only when the device executed it (answered SUCCESSFUL or FAILED); EXPIRED,
     * CANCELED and TIMEOUT never ran, and REST answers omit absent values (§3.1). */
    if (st == SIM_CMD_SUCCESSFUL || st == SIM_CMD_FAILED)
        c->executed = time(NULL);
    c->has_result = true;
    cJSON_Delete(c->result_detail);
    c->result_detail = detail ? cJSON_Duplicate(detail, true) : NULL;
    SIM_INFO("cmds", "command %s (device %s) -> %s", c->id, c->device, sim_cmd_status_name(st));
    if (st == SIM_CMD_EXPIRED || st == SIM_CMD_CANCELED) {
        if (g_sim.opts->push_final_states)
            push_status_locked(c);
        return;
    }
    push_status_locked(c);
    if (st == SIM_CMD_SUCCESSFUL)
        push_mqtt_locked(c, true);
}

static void deliver_locked(struct sim_cmd *c, int64_t now)
{
    c->status = SIM_CMD_DELIVERED;
    c->delivered = time(NULL);
    c->issued_times = 1;
    SIM_INFO("cmds", "command %s (device %s) -> DELIVERED", c->id, c->device);
    push_status_locked(c);
    push_mqtt_locked(c, false);
    c->next_ms = g_sim.opts->command_manual ? 0 : now + g_sim.opts->command_delay_ms;
}

static void send_locked(struct sim_cmd *c, int64_t now)
{
    const struct sim_opts *o = g_sim.opts;
    c->status = SIM_CMD_SENT;
    c->issued = time(NULL);
    double r = sim_prng_unit(&g_sim.prng);
    if (r < o->command_timeout_rate)
        c->outcome = SIM_CMD_TIMEOUT;
    else if (r < o->command_timeout_rate + o->command_fail_rate)
        c->outcome = SIM_CMD_FAILED;
    else
        c->outcome = SIM_CMD_SUCCESSFUL;
    c->next_ms = now + (c->outcome == SIM_CMD_TIMEOUT ? 3 : 1) * o->command_delay_ms;
    if (c->next_ms == 0)
        c->next_ms = 1;
    SIM_INFO("cmds", "command %s (device %s) -> SENT", c->id, c->device);
    push_status_locked(c);
}

static void step_locked(struct sim_cmd *c, int64_t now)
{
    const struct sim_device *d = sim_devices_find_locked(c->device);
    if (c->status == SIM_CMD_SENT) {
        if (c->outcome == SIM_CMD_TIMEOUT || !d || !d->online)
            finish_locked(c, SIM_CMD_TIMEOUT, NULL);
        else
            deliver_locked(c, now);
    } else if (c->status == SIM_CMD_DELIVERED) {
        if (c->outcome == SIM_CMD_SUCCESSFUL)
            finish_locked(c, SIM_CMD_SUCCESSFUL, c->paras);
        else
            finish_locked(c, c->outcome, NULL);
    } else {
        c->next_ms = 0;
    }
}

void sim_cmds_tick_locked(int64_t now_ms)
{
    for (size_t i = 0; i < g_sim.ncmds; i++) {
        struct sim_cmd *c = g_sim.cmds[i];
        if (c->status == SIM_CMD_PENDING) {
            if (c->created_ms + (int64_t)c->expire_s * 1000 <= now_ms)
                finish_locked(c, SIM_CMD_EXPIRED, NULL);
            continue;
        }
        if (c->next_ms && c->next_ms <= now_ms)
            step_locked(c, now_ms);
    }
}

void sim_cmds_device_online_locked(const struct sim_device *dev)
{
    int64_t now = sim_now_ms();
    for (size_t i = 0; i < g_sim.ncmds; i++) {
        struct sim_cmd *c = g_sim.cmds[i];
        if (c->status == SIM_CMD_PENDING && strcmp(c->device, dev->id) == 0)
            send_locked(c, now);
    }
}

struct sim_cmd *sim_cmds_find_locked(const char *id)
{
    for (size_t i = 0; i < g_sim.ncmds; i++)
        if (strcmp(g_sim.cmds[i]->id, id) == 0)
            return g_sim.cmds[i];
    return NULL;
}

enum ocb_err sim_cmds_complete_locked(struct sim_cmd *c, const char *result_code,
                                      const cJSON *detail)
{
    enum sim_cmd_status st;
    if (!sim_cmd_status_parse(result_code, &st))
        return OCB_ERR_INVALID;
    if (c->status != SIM_CMD_SENT && c->status != SIM_CMD_DELIVERED)
        return OCB_ERR_INVALID;
    if (st == SIM_CMD_DELIVERED && c->status == SIM_CMD_SENT) {
        deliver_locked(c, sim_now_ms());
        c->next_ms = 0;
        return OCB_OK;
    }
    if (st != SIM_CMD_SUCCESSFUL && st != SIM_CMD_FAILED && st != SIM_CMD_TIMEOUT)
        return OCB_ERR_INVALID;
    finish_locked(c, st, detail);
    return OCB_OK;
}

/* Keep the table bounded: forget the oldest finished command when full. */
static enum ocb_err make_room_locked(void)
{
    if (g_sim.ncmds < SIM_MAX_COMMANDS)
        return sim_grow((void **)&g_sim.cmds, &g_sim.cap_cmds, g_sim.ncmds + 1,
                        sizeof(struct sim_cmd *), SIM_MAX_COMMANDS);
    for (size_t i = 0; i < g_sim.ncmds; i++)
        if (is_final(g_sim.cmds[i]->status)) {
            sim_cmd_free(g_sim.cmds[i]);
            memmove(&g_sim.cmds[i], &g_sim.cmds[i + 1],
                    (g_sim.ncmds - i - 1) * sizeof(struct sim_cmd *));
            g_sim.ncmds--;
            return OCB_OK;
        }
    return OCB_ERR_FULL;
}

static bool json_int(const cJSON *v, long min, long max, long *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return false;
    *out = (long)v->valuedouble;
    return true;
}

static bool str_len_ok(const char *s, size_t min, size_t max)
{
    return s && strlen(s) >= min && strlen(s) <= max;
}

/* The create page's own error list gives HTTP 200 with 100418 for an unknown device (§3.1);
 * the general table's 404/100403 stays available as --unknown-device-404. */
static void unknown_device(struct sim_resp *resp)
{
    if (g_sim.opts->unknown_device_404)
        sim_resp_error(resp, 404, "100403", "The device is not existed.");
    else
        sim_resp_error(resp, 200, "100418", "The deviceData is not existed.");
}

static void create(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const struct sim_opts *o = g_sim.opts;
    struct sim_cmd *c = NULL;
    cJSON *body = sim_req_json_object(req, resp);
    if (!body)
        return;
    const char *device_id = sim_json_str(body, "deviceId");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(body, "command");
    const char *service_id = sim_json_str(cmd, "serviceId");
    const char *method = sim_json_str(cmd, "method");
    const cJSON *paras = cJSON_GetObjectItemCaseSensitive(cmd, "paras");
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callbackUrl");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(body, "expireTime");
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(body, "maxRetransmit");
    /* A body "appId" is ignored (§3.1: real clients send it, its effect is UNCONFIRMED; lenient):
     * the command always belongs to the calling app, only ?appId= selects another one. */
    long expire = DEFAULT_EXPIRE, max_retx = -1;
    if (!str_len_ok(device_id, 1, 64) || !cJSON_IsObject(cmd) || !str_len_ok(service_id, 1, 64) ||
        !str_len_ok(method, 1, 128) || !cJSON_IsObject(paras) ||
        (exp && !cJSON_IsNull(exp) && !json_int(exp, 0, 2147483647L, &expire)) ||
        (mr && !cJSON_IsNull(mr) && !json_int(mr, 0, 3, &max_retx)) ||
        (cb && !cJSON_IsNull(cb) && !cJSON_IsString(cb))) {
        SIM_INFO("cmds", "app %s: create command: invalid input", app->id);
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        goto out;
    }
    const char *callback = cb && cJSON_IsString(cb) && cb->valuestring[0] ? cb->valuestring : NULL;
    if (callback && !sim_url_callback_ok(callback)) {
        sim_resp_error(resp, 400, "100222", "The request callbackurl is illegal.");
        goto out;
    }
    struct sim_device *d = sim_devices_find_locked(device_id);
    if (!d || strcmp(d->app, app->id) != 0) {
        SIM_INFO("cmds", "app %s: create command: unknown device %s", app->id, device_id);
        unknown_device(resp);
        goto out;
    }
    const char *endpoint = sim_subs_endpoint_locked(app->id);
    if (o->callback_check && callback && endpoint && !sim_url_same_endpoint(endpoint, callback)) {
        SIM_INFO("cmds", "app %s: callback %s conflicts with subscriptions at %s", app->id,
                 callback, endpoint);
        sim_resp_error(resp, 403, o->callback_conflict_code,
                       "The callbackUrl conflicts with the subscription callback address.");
        goto out;
    }
    /* An immediate command (expireTime 0) is never cached, so the PENDING limit cannot apply
     * to it: an offline device answers 100428 whatever its cache holds. */
    if (expire == 0 && !d->online) {
        SIM_INFO("cmds", "app %s: device %s not online for an immediate command", app->id, d->id);
        sim_resp_error(resp, 200, "100428", "The device is not online.");
        goto out;
    }
    long pending = 0;
    for (size_t i = 0; i < g_sim.ncmds; i++)
        if (g_sim.cmds[i]->status == SIM_CMD_PENDING && strcmp(g_sim.cmds[i]->device, d->id) == 0)
            pending++;
    if (pending >= o->max_pending) {
        SIM_INFO("cmds", "app %s: device %s has %ld PENDING commands", app->id, d->id, pending);
        sim_resp_error(resp, 400, "100223", "Command counts has reached the upLimit.");
        goto out;
    }
    if (make_room_locked() != OCB_OK) {
        sim_resp_error(resp, 500, "100001", "Internal server error.");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    sim_rand_hex(c->id, 32);
    snprintf(c->app, sizeof c->app, "%s", app->id);
    snprintf(c->device, sizeof c->device, "%s", d->id);
    c->service_id = strdup(service_id);
    c->method = strdup(method);
    c->paras = cJSON_Duplicate(paras, true);
    c->callback = callback ? strdup(callback) : NULL;
    if (!c->service_id || !c->method || !c->paras || (callback && !c->callback))
        goto oom;
    c->expire_s = expire;
    c->max_retransmit = max_retx;
    c->creation = time(NULL);
    c->created_ms = sim_now_ms();
    c->status = SIM_CMD_PENDING;
    g_sim.cmds[g_sim.ncmds++] = c;
    SIM_INFO("cmds", "app %s: command %s for device %s (%s.%s, expireTime %ld)", app->id, c->id,
             d->id, service_id, method, expire);
    /* The 201 shows the state at creation; the lifecycle pushes follow. */
    if (d->online) {
        c->status = SIM_CMD_SENT;
        c->issued = c->creation;
    }
    sim_resp_json(resp, 201, cmd_json(c));
    if (d->online)
        send_locked(c, c->created_ms);
    c = NULL;
    goto out;
oom:
    sim_resp_error(resp, 500, "100001", "Internal server error.");
out:
    sim_cmd_free(c);
    cJSON_Delete(body);
}

static bool time_filter(const struct sim_req *req, struct sim_resp *resp, time_t *start,
                        time_t *end)
{
    const char *s = sim_req_query(req, "startTime"), *e = sim_req_query(req, "endTime");
    *start = 0;
    *end = (time_t)INT64_MAX;
    if ((s && *s && !sim_time_parse(s, start)) || (e && *e && !sim_time_parse(e, end))) {
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        return false;
    }
    return true;
}

/* {"pagination":{pageNo,pageSize,totalSize},"data":[...]}; takes ownership of data. */
static cJSON *paged(long page_no, long page_size, size_t total, cJSON *data)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *pg = o ? cJSON_AddObjectToObject(o, "pagination") : NULL;
    if (!pg) {
        cJSON_Delete(o);
        cJSON_Delete(data);
        return NULL;
    }
    cJSON_AddNumberToObject(pg, "pageNo", (double)page_no);
    cJSON_AddNumberToObject(pg, "pageSize", (double)page_size);
    cJSON_AddNumberToObject(pg, "totalSize", (double)total);
    cJSON_AddItemToObject(o, "data", data);
    return o;
}

static void query(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    time_t start, end;
    if (!sim_req_paging(req, resp, 1000, 1000, &page_no, &page_size) ||
        !time_filter(req, resp, &start, &end))
        return;
    const char *dev = sim_req_query(req, "deviceId");
    cJSON *data = cJSON_CreateArray();
    size_t total = 0, first = (size_t)page_no * (size_t)page_size;
    for (size_t i = 0; data && i < g_sim.ncmds; i++) {
        const struct sim_cmd *c = g_sim.cmds[i];
        if (strcmp(c->app, app->id) != 0 || (dev && *dev && strcmp(c->device, dev) != 0) ||
            c->creation < start || c->creation > end)
            continue;
        if (total >= first && total < first + (size_t)page_size)
            cJSON_AddItemToArray(data, cmd_json(c));
        total++;
    }
    sim_resp_json(resp, 200, paged(page_no, page_size, total, data));
}

static void modify(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                   const char *id)
{
    cJSON *body = sim_req_json_object(req, resp);
    if (!body)
        return;
    const char *st = sim_json_str(body, "status");
    struct sim_cmd *c = sim_cmds_find_locked(id);
    if (!st || strcmp(st, "CANCELED") != 0) {
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
    } else if (!c || strcmp(c->app, app->id) != 0) {
        sim_resp_error(resp, 404, "100022", "The command does not exist.");
    } else if (c->status != SIM_CMD_PENDING) {
        SIM_INFO("cmds", "command %s: cannot cancel in status %s", id,
                 sim_cmd_status_name(c->status));
        sim_resp_error(resp, 400, "100022", "Only PENDING commands can be canceled.");
    } else {
        finish_locked(c, SIM_CMD_CANCELED, NULL);
        c->has_result = false;
        sim_resp_json(resp, 200, cmd_json(c));
    }
    cJSON_Delete(body);
}

static cJSON *task_json(const struct sim_task *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "taskId", t->id);
    cJSON_AddStringToObject(o, "appId", t->app);
    cJSON_AddStringToObject(o, "deviceId", t->device);
    cJSON_AddStringToObject(o, "status", "SUCCESS");
    cJSON_AddNumberToObject(o, "totalCount", cJSON_GetArraySize(t->commands));
    cJSON_AddItemToObject(o, "deviceCommands", cJSON_Duplicate(t->commands, true));
    return o;
}

static void cancel_task(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    cJSON *body = sim_req_json_object(req, resp);
    if (!body)
        return;
    const char *dev = sim_json_str(body, "deviceId");
    struct sim_device *d = dev ? sim_devices_find_locked(dev) : NULL;
    if (!dev || !*dev) {
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        goto out;
    }
    if (!d || strcmp(d->app, app->id) != 0) {
        sim_resp_error(resp, 404, "100403", "The device is not existed.");
        goto out;
    }
    if (g_sim.ntasks >= SIM_MAX_TASKS) { /* bounded: forget the oldest task */
        cJSON_Delete(g_sim.tasks[0].commands);
        memmove(&g_sim.tasks[0], &g_sim.tasks[1], (g_sim.ntasks - 1) * sizeof *g_sim.tasks);
        g_sim.ntasks--;
    }
    cJSON *cmds = cJSON_CreateArray();
    if (!cmds || sim_grow((void **)&g_sim.tasks, &g_sim.cap_tasks, g_sim.ntasks + 1,
                          sizeof *g_sim.tasks, SIM_MAX_TASKS) != OCB_OK) {
        cJSON_Delete(cmds);
        sim_resp_error(resp, 500, "100001", "Internal server error.");
        goto out;
    }
    for (size_t i = 0; i < g_sim.ncmds; i++) {
        struct sim_cmd *c = g_sim.cmds[i];
        if (c->status != SIM_CMD_PENDING || strcmp(c->device, d->id) != 0)
            continue;
        finish_locked(c, SIM_CMD_CANCELED, NULL);
        c->has_result = false;
        cJSON_AddItemToArray(cmds, cmd_json(c));
    }
    struct sim_task *t = &g_sim.tasks[g_sim.ntasks++];
    memset(t, 0, sizeof *t);
    sim_rand_hex(t->id, 32);
    snprintf(t->app, sizeof t->app, "%s", app->id);
    snprintf(t->device, sizeof t->device, "%s", d->id);
    t->creation = time(NULL);
    t->commands = cmds;
    SIM_INFO("cmds", "app %s: cancel task %s canceled %d commands of %s", app->id, t->id,
             cJSON_GetArraySize(cmds), d->id);
    sim_resp_json(resp, 201, task_json(t));
out:
    cJSON_Delete(body);
}

static void query_tasks(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    time_t start, end;
    if (!sim_req_paging(req, resp, 1000, 1000, &page_no, &page_size) ||
        !time_filter(req, resp, &start, &end))
        return;
    const char *task = sim_req_query(req, "taskId"), *dev = sim_req_query(req, "deviceId"),
               *st = sim_req_query(req, "status");
    cJSON *data = cJSON_CreateArray();
    size_t total = 0, first = (size_t)page_no * (size_t)page_size;
    for (size_t i = 0; data && i < g_sim.ntasks; i++) {
        const struct sim_task *t = &g_sim.tasks[i];
        if (strcmp(t->app, app->id) != 0 || (task && *task && strcmp(t->id, task) != 0) ||
            (dev && *dev && strcmp(t->device, dev) != 0) ||
            (st && *st && strcmp(st, "SUCCESS") != 0) || t->creation < start || t->creation > end)
            continue;
        if (total >= first && total < first + (size_t)page_size)
            cJSON_AddItemToArray(data, task_json(t));
        total++;
    }
    sim_resp_json(resp, 200, paged(page_no, page_size, total, data));
}

bool sim_cmds_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const char *m = req->method, *p = req->path;
    if (strcmp(p, CMD_BASE) == 0) {
        if (strcmp(m, "POST") == 0)
            create(req, resp, app);
        else if (strcmp(m, "GET") == 0)
            query(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    if (strncmp(p, CMD_BASE "/", sizeof CMD_BASE) == 0 && p[sizeof CMD_BASE] &&
        !strchr(p + sizeof CMD_BASE, '/')) {
        if (strcmp(m, "PUT") == 0)
            modify(req, resp, app, p + sizeof CMD_BASE);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    if (strcmp(p, CANCEL_BASE) == 0) {
        if (strcmp(m, "POST") == 0)
            cancel_task(req, resp, app);
        else if (strcmp(m, "GET") == 0)
            query_tasks(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", "Method not allowed.");
        return true;
    }
    return false;
}

cJSON *sim_cmds_json_locked(const char *device)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < g_sim.ncmds; i++)
        if (!device || strcmp(g_sim.cmds[i]->device, device) == 0)
            cJSON_AddItemToArray(arr, cmd_json(g_sim.cmds[i]));
    return arr;
}
