/*
 * sim_dm.c: the device-management part of the northbound API: registration, device query (one
 * and paged lists), modify, delete, data history, capabilities and the device shadow
 * (tools/sim/README.md, "Device API").
 *
 * Shapes follow the platform's Java SDK DTOs (RegDirectDeviceOutDTO, QuerySingleDeviceInfoOutDTO,
 * QueryDevicesOutDTO, QueryDeviceDataHistoryOutDTO, QueryDeviceCapabilitiesOutDTO,
 * QueryDeviceShadowOutDTO, ModifyDeviceShadowInDTO) and the API reference; the README marks what
 * is UNCONFIRMED.  Each path is served in every version real clients call (dm v1.1.0-v1.4.0, data
 * v1.1.0/v1.2.0, reg v1.1.0/v2.0.0 and the older reg v1.2.0/devices): the versions differ in
 * fields this simulator does not model, not in the answers it gives.
 *
 * Errors: a device that does not exist, or belongs to another app, is 404/100403 on every path
 * (the real platform's meaning of a 404 here).  Side effects are pushes made by sim_devices.c:
 * deviceAdded on registration, bindDevice when a registered device first comes online,
 * deviceInfoChanged on modify, deviceDeleted on delete, and
 * deviceDesiredPropertiesModifyStatusChanged once a shadow write reaches the device.
 *
 * Runs on MHD connection threads with g_sim.lock held (called from sim_api.c's router).
 */
#include "sim.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_PATH_V11       "/iocm/app/reg/v1.1.0/deviceCredentials"
#define REG_PATH_V20       "/iocm/app/reg/v2.0.0/deviceCredentials"
#define REG_PATH_OLD       "/iocm/app/reg/v1.2.0/devices"
#define CAPS_PATH          "/iocm/app/data/v1.1.0/deviceCapabilities"
#define SHADOW_PREFIX      "/iocm/app/shadow/v1.5.0/devices/"
#define REG_TIMEOUT_DEF    180 /* seconds, the documented default */
#define DEV_PAGE_DEF       25
#define DEV_PAGE_MAX       250
#define HIST_PAGE_DEF      20   /* UNCONFIRMED */
#define HIST_PAGE_MAX      2000 /* UNCONFIRMED */
#define NOT_EXIST          "The device is not existed."
#define INPUT_INVALID      "The input is invalid."
#define REQUIRED_MISSING   "Required Parameter is null or empty."
#define METHOD_NOT_ALLOWED "Method not allowed."

static const char *const dm_versions[] = {"1.1.0", "1.2.0", "1.3.0", "1.4.0", NULL};
static const char *const data_versions[] = {"1.1.0", "1.2.0", NULL};

/* deviceInfo fields a modify may set (ModifyDeviceInfoInDTO; endUser, region, organization,
 * timezone and imsi are kept but are not deviceInfo keys). */
static const char *const modifiable[] = {
    "name",         "endUser",  "mute",     "manufacturerId", "manufacturerName",
    "deviceType",   "model",    "location", "protocolType",   "region",
    "organization", "timezone", "imsi",     "description",    NULL,
};

/* p = head + one of versions + tail + rest: returns rest, else NULL. */
static const char *match_versioned(const char *p, const char *head, const char *const *versions,
                                   const char *tail)
{
    size_t hl = strlen(head);
    if (strncmp(p, head, hl) != 0)
        return NULL;
    p += hl;
    for (size_t i = 0; versions[i]; i++) {
        size_t vl = strlen(versions[i]), tl = strlen(tail);
        if (strncmp(p, versions[i], vl) == 0 && strncmp(p + vl, tail, tl) == 0)
            return p + vl + tl;
    }
    return NULL;
}

static struct sim_device *own_device_locked(const struct sim_app *app, const char *id)
{
    struct sim_device *d = sim_devices_find_locked(id);
    return d && strcmp(d->app, app->id) == 0 ? d : NULL;
}

static void not_exist(struct sim_resp *resp)
{
    sim_resp_error(resp, 404, "100403", NOT_EXIST);
}

static void add_time(cJSON *o, const char *key, time_t t)
{
    char s[17];
    sim_time_format(t, s);
    cJSON_AddStringToObject(o, key, s);
}

/* REST answers omit absent fields where pushes send nulls (platform-api.md §0). */
static cJSON *strip_nulls(cJSON *o)
{
    cJSON *it = o ? o->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (cJSON_IsNull(it))
            cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
    return o;
}

/* QuerySingleDeviceInfoOutDTO / QueryDeviceShadowOutDTO without the services. */
static cJSON *device_head_json(const struct sim_device *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    const char *status, *detail;
    sim_device_status(d, &status, &detail);
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON_AddStringToObject(o, "gatewayId", d->id);
    cJSON_AddStringToObject(o, "nodeType", "GATEWAY");
    add_time(o, "createTime", d->created);
    add_time(o, "lastModifiedTime", d->modified);
    cJSON_AddItemToObject(o, "deviceInfo",
                          strip_nulls(sim_device_info_json(d, status, detail, true)));
    return o;
}

static cJSON *device_json(const struct sim_device *d)
{
    cJSON *o = device_head_json(d);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "services") : NULL;
    for (size_t i = 0; arr && i < d->nsvc; i++) {
        const struct sim_service *s = &d->svc[i];
        cJSON *so = cJSON_CreateObject();
        if (!so)
            break;
        cJSON_AddStringToObject(so, "serviceId", s->id);
        cJSON_AddStringToObject(so, "serviceType", s->type);
        cJSON_AddItemToObject(so, "data",
                              s->data ? cJSON_Duplicate(s->data, true) : cJSON_CreateObject());
        if (s->event_time)
            add_time(so, "eventTime", s->event_time);
        cJSON_AddItemToArray(arr, so);
    }
    return o;
}

/* ---- registration ---- */

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

/* Copy the string members of a v2.0.0/v1.2.0 deviceInfo (and v1.1.0's deviceName) into attrs. */
static cJSON *registration_attrs(const cJSON *in)
{
    cJSON *attrs = cJSON_CreateObject();
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(in, "deviceInfo");
    const cJSON *fields = cJSON_IsObject(info) ? info : NULL, *f;
    cJSON_ArrayForEach(f, fields)
    {
        if (attrs && cJSON_IsString(f) && strcmp(f->string, "nodeId") != 0 &&
            strcmp(f->string, "status") != 0 && strcmp(f->string, "statusDetail") != 0)
            cJSON_AddStringToObject(attrs, f->string, f->valuestring);
    }
    const char *name = sim_json_str(in, "deviceName");
    if (attrs && name && !cJSON_GetObjectItemCaseSensitive(attrs, "name"))
        cJSON_AddStringToObject(attrs, "name", name);
    if (attrs && !attrs->child) {
        cJSON_Delete(attrs);
        return NULL;
    }
    return attrs;
}

static void reg_device(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const char *node = sim_json_str(in, "nodeId"), *vc = sim_json_str(in, "verifyCode"),
               *psk = sim_json_str(in, "psk");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(in, "timeout");
    long timeout = REG_TIMEOUT_DEF;
    if (!node || !*node) {
        sim_resp_error(resp, 400, "102202", REQUIRED_MISSING);
        goto out;
    }
    if (strlen(node) > 64 || (vc && (!*vc || strlen(vc) > 64)) ||
        (psk && (strlen(psk) < 8 || strlen(psk) > 32 || !is_hex(psk)))) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        goto out;
    }
    if (to && !cJSON_IsNull(to)) {
        if (!cJSON_IsNumber(to) || to->valuedouble < 0 || to->valuedouble > 2147483647.0 ||
            floor(to->valuedouble) != to->valuedouble) {
            sim_resp_error(resp, 400, "100022", INPUT_INVALID);
            goto out;
        }
        timeout = (long)to->valuedouble;
    }
    /* A nodeId is unique on the platform: a bound device is "already bounded" (HTTP 200, like
     * the other register errors), one still waiting to come online is a duplicate nodeId. */
    for (size_t i = 0; i < g_sim.ndevices; i++) {
        const struct sim_device *o = g_sim.devices[i];
        if (strcmp(o->node_id, node) != 0)
            continue;
        SIM_INFO("dm", "app %s: nodeId %s already registered (%s)", app->id, node, o->id);
        if (o->bound)
            sim_resp_error(resp, 200, "100416", "The device has already been bounded.");
        else
            sim_resp_error(resp, 400, "100426", "The nodeId is duplicated.");
        goto out;
    }
    struct sim_device *d = sim_devices_add_locked(app->id, NULL, node, false);
    if (!d) {
        sim_resp_error(resp, 200, "100412", "The amount of device has reached the limit.");
        goto out;
    }
    d->bound = false;
    /* UNCONFIRMED: without a verifyCode the platform generates one; NB-IoT devices use their
     * nodeId as verifyCode, which is what this simulator hands out. */
    snprintf(d->verify_code, sizeof d->verify_code, "%s", vc ? vc : node);
    if (psk)
        snprintf(d->psk, sizeof d->psk, "%s", psk);
    else
        sim_rand_hex(d->psk, 32);
    d->timeout_s = timeout;
    d->bind_deadline_ms = timeout > 0 ? sim_now_ms() + (int64_t)timeout * 1000 : 0;
    d->attrs = registration_attrs(in);
    SIM_INFO("dm", "app %s: registered %s (nodeId %s, timeout %ld s)", app->id, d->id, node,
             timeout);
    sim_devices_push_added_locked(d);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "deviceId", d->id);
        cJSON_AddStringToObject(o, "verifyCode", d->verify_code);
        cJSON_AddNumberToObject(o, "timeout", (double)d->timeout_s);
        cJSON_AddStringToObject(o, "psk", d->psk);
    }
    sim_resp_json(resp, 200, o);
out:
    cJSON_Delete(in);
}

/* ---- query, modify, delete ---- */

static bool query_time(const struct sim_req *req, const char *key, time_t *out, bool *given)
{
    const char *v = sim_req_query(req, key);
    *given = v && *v;
    return !*given || sim_time_parse(v, out);
}

static void list_devices(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    if (!sim_req_paging(req, resp, DEV_PAGE_DEF, DEV_PAGE_MAX, &page_no, &page_size))
        return;
    const char *gw = sim_req_query(req, "gatewayId"), *nt = sim_req_query(req, "nodeType"),
               *type = sim_req_query(req, "deviceType"), *st = sim_req_query(req, "status"),
               *sort = sim_req_query(req, "sort");
    time_t from = 0, to = 0;
    bool has_from, has_to;
    if (!query_time(req, "startTime", &from, &has_from) ||
        !query_time(req, "endTime", &to, &has_to) ||
        (sort && *sort && strcmp(sort, "ASC") != 0 && strcmp(sort, "DESC") != 0)) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        return;
    }
    bool desc = sort && strcmp(sort, "DESC") == 0;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    size_t total = 0, first = (size_t)page_no * (size_t)page_size;
    for (size_t k = 0; k < g_sim.ndevices; k++) {
        const struct sim_device *d = g_sim.devices[desc ? g_sim.ndevices - 1 - k : k];
        const char *status, *detail;
        sim_device_status(d, &status, &detail);
        cJSON *info = sim_device_info_json(d, status, detail, true);
        const char *dtype = info ? sim_json_str(info, "deviceType") : NULL;
        bool match = strcmp(d->app, app->id) == 0 && (!gw || !*gw || strcmp(gw, d->id) == 0) &&
                     (!nt || !*nt || strcmp(nt, "GATEWAY") == 0) &&
                     (!type || !*type || (dtype && strcmp(type, dtype) == 0)) &&
                     (!st || !*st || strcmp(st, status) == 0) &&
                     (!has_from || d->created >= from) && (!has_to || d->created <= to);
        cJSON_Delete(info);
        if (!match)
            continue;
        if (arr && total >= first && total < first + (size_t)page_size)
            cJSON_AddItemToArray(arr, device_json(d));
        total++;
    }
    if (o) {
        cJSON_AddNumberToObject(o, "totalCount", (double)total);
        cJSON_AddNumberToObject(o, "pageNo", (double)page_no);
        cJSON_AddNumberToObject(o, "pageSize", (double)page_size);
        cJSON_AddItemToObject(o, "devices", arr);
    } else {
        cJSON_Delete(arr);
    }
    sim_resp_json(resp, 200, o);
}

static bool modifiable_key(const char *k)
{
    for (size_t i = 0; modifiable[i]; i++)
        if (strcmp(modifiable[i], k) == 0)
            return true;
    return false;
}

static void modify_device(const struct sim_req *req, struct sim_resp *resp, struct sim_device *d)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    cJSON *changed = cJSON_CreateObject();
    const cJSON *f;
    cJSON_ArrayForEach(f, in)
    {
        if (!modifiable_key(f->string) || cJSON_IsNull(f))
            continue; /* deviceConfig, ip, tags...: accepted, not modelled */
        if (!cJSON_IsString(f) || strlen(f->valuestring) > 256 ||
            (strcmp(f->string, "mute") == 0 && strcmp(f->valuestring, "TRUE") != 0 &&
             strcmp(f->valuestring, "FALSE") != 0)) {
            sim_resp_error(resp, 400, "100022", INPUT_INVALID);
            goto out;
        }
        if (changed)
            cJSON_AddStringToObject(changed, f->string, f->valuestring);
    }
    if (!changed) {
        sim_resp_error(resp, 503, "100001", "Internal server error.");
        goto out;
    }
    if (!d->attrs)
        d->attrs = cJSON_CreateObject();
    cJSON_ArrayForEach(f, changed)
    {
        if (!d->attrs)
            break;
        cJSON_DeleteItemFromObjectCaseSensitive(d->attrs, f->string);
        cJSON_AddStringToObject(d->attrs, f->string, f->valuestring);
    }
    d->modified = time(NULL);
    SIM_INFO("dm", "app %s: modified device %s", d->app, d->id);
    sim_devices_push_changed_locked(d, changed);
    sim_resp_empty(resp, 204);
out:
    cJSON_Delete(changed);
    cJSON_Delete(in);
}

static void delete_device(const struct sim_req *req, struct sim_resp *resp, struct sim_device *d)
{
    /* cascade only matters for gateways with child devices, which this simulator has none of;
     * its value is still checked. */
    const char *cascade = sim_req_query(req, "cascade");
    if (cascade && *cascade && strcmp(cascade, "true") != 0 && strcmp(cascade, "false") != 0) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        return;
    }
    SIM_INFO("dm", "app %s: deleted device %s", d->app, d->id);
    char id[37];
    memcpy(id, d->id, sizeof id);
    sim_devices_remove_locked(id); /* pushes deviceDeleted */
    sim_resp_empty(resp, 204);
}

static void one_device(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app,
                       const char *id)
{
    const char *m = req->method;
    if (strcmp(m, "GET") != 0 && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0) {
        sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
        return;
    }
    struct sim_device *d = own_device_locked(app, id);
    if (!d)
        not_exist(resp);
    else if (strcmp(m, "GET") == 0)
        sim_resp_json(resp, 200, device_json(d));
    else if (strcmp(m, "PUT") == 0)
        modify_device(req, resp, d);
    else
        delete_device(req, resp, d);
}

/* ---- data history ---- */

static void history(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    long page_no, page_size;
    if (!sim_req_paging(req, resp, HIST_PAGE_DEF, HIST_PAGE_MAX, &page_no, &page_size))
        return;
    const char *id = sim_req_query(req, "deviceId"), *gw = sim_req_query(req, "gatewayId"),
               *svc = sim_req_query(req, "serviceId"), *prop = sim_req_query(req, "property");
    time_t from = 0, to = 0;
    bool has_from, has_to;
    if (!id || !*id) {
        sim_resp_error(resp, 400, "102202", REQUIRED_MISSING);
        return;
    }
    if (!query_time(req, "startTime", &from, &has_from) ||
        !query_time(req, "endTime", &to, &has_to)) {
        sim_resp_error(resp, 400, "100022", INPUT_INVALID);
        return;
    }
    const struct sim_device *d = own_device_locked(app, id);
    if (!d) {
        not_exist(resp);
        return;
    }
    bool gw_ok = !gw || !*gw || strcmp(gw, d->id) == 0;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    size_t total = 0, first = (size_t)page_no * (size_t)page_size;
    /* Newest first. */
    for (size_t k = d->hist_n; gw_ok && d->hist && k-- > 0;) {
        const struct sim_hist *h = &d->hist[(d->hist_head + k) % d->hist_cap];
        if ((svc && *svc && strcmp(svc, h->service) != 0) ||
            (prop && *prop && !cJSON_GetObjectItemCaseSensitive(h->data, prop)) ||
            (has_from && h->t < from) || (has_to && h->t > to))
            continue;
        if (arr && total >= first && total < first + (size_t)page_size) {
            cJSON *r = cJSON_CreateObject();
            if (r) {
                cJSON_AddStringToObject(r, "deviceId", d->id);
                cJSON_AddStringToObject(r, "gatewayId", d->id);
                cJSON_AddStringToObject(r, "appId", d->app);
                cJSON_AddStringToObject(r, "serviceId", h->service);
                cJSON_AddItemToObject(r, "data", cJSON_Duplicate(h->data, true));
                add_time(r, "timestamp", h->t);
                cJSON_AddItemToArray(arr, r);
            }
        }
        total++;
    }
    if (o) {
        cJSON_AddNumberToObject(o, "totalCount", (double)total);
        cJSON_AddNumberToObject(o, "pageNo", (double)page_no);
        cJSON_AddNumberToObject(o, "pageSize", (double)page_size);
        cJSON_AddItemToObject(o, "deviceDataHistoryDTOs", arr);
    } else {
        cJSON_Delete(arr);
    }
    sim_resp_json(resp, 200, o);
}

/* ---- capabilities ---- */

/* ServiceProperty from the service's current data: the simulated profile is what the device
 * reports (UNCONFIRMED beyond the field names). */
static cJSON *property_json(const cJSON *v)
{
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    const char *type = "string";
    if (cJSON_IsNumber(v))
        type = floor(v->valuedouble) == v->valuedouble ? "int" : "decimal";
    else if (cJSON_IsBool(v))
        type = "bool";
    else if (cJSON_IsObject(v) || cJSON_IsArray(v))
        type = "jsonObject";
    cJSON_AddStringToObject(p, "propertyName", v->string);
    cJSON_AddStringToObject(p, "dataType", type);
    cJSON_AddBoolToObject(p, "required", true);
    if (strcmp(v->string, "batteryLevel") == 0) {
        cJSON_AddStringToObject(p, "min", "0");
        cJSON_AddStringToObject(p, "max", "100");
        cJSON_AddNumberToObject(p, "step", 1);
        cJSON_AddStringToObject(p, "unit", "%");
    } else if (strcmp(v->string, "temperature") == 0) {
        cJSON_AddStringToObject(p, "min", "-40");
        cJSON_AddStringToObject(p, "max", "85");
        cJSON_AddNumberToObject(p, "step", 0.1);
        cJSON_AddStringToObject(p, "unit", "Cel");
    }
    cJSON_AddStringToObject(p, "method", "R");
    return p;
}

static cJSON *capability_json(const struct sim_device *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON *arr = cJSON_AddArrayToObject(o, "serviceCapabilities");
    for (size_t i = 0; arr && i < d->nsvc; i++) {
        const struct sim_service *s = &d->svc[i];
        cJSON *c = cJSON_CreateObject();
        if (!c)
            break;
        cJSON_AddStringToObject(c, "serviceId", s->id);
        cJSON_AddStringToObject(c, "serviceType", s->type);
        cJSON_AddStringToObject(c, "option", "Master");
        cJSON_AddStringToObject(c, "description", s->id);
        cJSON_AddArrayToObject(c, "commands");
        cJSON *props = cJSON_AddArrayToObject(c, "properties");
        const cJSON *v;
        cJSON_ArrayForEach(v, s->data)
        {
            if (props)
                cJSON_AddItemToArray(props, property_json(v));
        }
        cJSON_AddItemToArray(arr, c);
    }
    return o;
}

static void capabilities(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const char *id = sim_req_query(req, "deviceId"), *gw = sim_req_query(req, "gatewayId");
    if ((!id || !*id) && (!gw || !*gw)) {
        sim_resp_error(resp, 400, "102202", REQUIRED_MISSING);
        return;
    }
    /* Direct devices are their own gateway: either id names the device. */
    const struct sim_device *d = own_device_locked(app, id && *id ? id : gw);
    if (!d || (id && *id && gw && *gw && strcmp(gw, d->id) != 0)) {
        not_exist(resp);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "deviceCapabilities") : NULL;
    if (arr)
        cJSON_AddItemToArray(arr, capability_json(d));
    sim_resp_json(resp, 200, o);
}

/* ---- shadow ---- */

static cJSON *shadow_json(const struct sim_device *d)
{
    cJSON *o = device_head_json(d);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "services") : NULL;
    for (size_t i = 0; arr && i < d->nsvc; i++) {
        const struct sim_service *s = &d->svc[i];
        cJSON *so = cJSON_CreateObject();
        if (!so)
            break;
        cJSON_AddStringToObject(so, "serviceId", s->id);
        cJSON_AddStringToObject(so, "serviceType", s->type);
        cJSON_AddItemToObject(so, "reportedProps",
                              s->data ? cJSON_Duplicate(s->data, true) : cJSON_CreateObject());
        cJSON_AddItemToObject(so, "desiredProps",
                              s->desired ? cJSON_Duplicate(s->desired, true)
                                         : cJSON_CreateObject());
        if (s->event_time)
            add_time(so, "eventTime", s->event_time);
        cJSON_AddItemToArray(arr, so);
    }
    return o;
}

static struct sim_service *find_service(struct sim_device *d, const char *id)
{
    for (size_t i = 0; id && i < d->nsvc; i++)
        if (strcmp(d->svc[i].id, id) == 0)
            return &d->svc[i];
    return NULL;
}

static void shadow_write(const struct sim_req *req, struct sim_resp *resp, struct sim_device *d)
{
    cJSON *in = sim_req_json_object(req, resp);
    if (!in)
        return;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(in, "serviceDesireds"), *e;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        sim_resp_error(resp, 400, "102202", REQUIRED_MISSING);
        goto out;
    }
    /* Check everything before changing anything. */
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(e, "desired");
        const char *sid = sim_json_str(e, "serviceId");
        if (!sid || !*sid || !cJSON_IsObject(want)) {
            sim_resp_error(resp, 400, "100022", INPUT_INVALID);
            goto out;
        }
        if (!find_service(d, sid)) {
            sim_resp_error(resp, 400, "100431", "The serviceType is not exist.");
            goto out;
        }
    }
    cJSON_ArrayForEach(e, list)
    {
        struct sim_service *s = find_service(d, sim_json_str(e, "serviceId"));
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(e, "desired"), *p;
        if (!s->desired)
            s->desired = cJSON_CreateObject();
        cJSON_ArrayForEach(p, want)
        {
            if (!s->desired)
                break;
            cJSON_DeleteItemFromObjectCaseSensitive(s->desired, p->string);
            cJSON_AddItemToObject(s->desired, p->string, cJSON_Duplicate(p, true));
        }
        sim_devices_desired_locked(d, s);
    }
    SIM_INFO("dm", "app %s: shadow of %s written (%s)", d->app, d->id,
             d->online ? "delivered" : "pending until online");
    sim_resp_empty(resp, 200);
out:
    cJSON_Delete(in);
}

/* ---- router ---- */

bool sim_dm_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app)
{
    const char *m = req->method, *p = req->path, *rest;
    bool get = strcmp(m, "GET") == 0;
    if (strcmp(p, REG_PATH_V11) == 0 || strcmp(p, REG_PATH_V20) == 0 ||
        strcmp(p, REG_PATH_OLD) == 0) {
        if (strcmp(m, "POST") == 0)
            reg_device(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
        return true;
    }
    if ((rest = match_versioned(p, "/iocm/app/dm/v", dm_versions, "/devices")) != NULL) {
        if (*rest == '\0') {
            if (get)
                list_devices(req, resp, app);
            else
                sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
            return true;
        }
        if (rest[0] == '/' && rest[1] && !strchr(rest + 1, '/')) {
            one_device(req, resp, app, rest + 1);
            return true;
        }
        return false;
    }
    if ((rest = match_versioned(p, "/iocm/app/data/v", data_versions, "/deviceDataHistory")) &&
        *rest == '\0') {
        if (get)
            history(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
        return true;
    }
    if (strcmp(p, CAPS_PATH) == 0) {
        if (get)
            capabilities(req, resp, app);
        else
            sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
        return true;
    }
    if (strncmp(p, SHADOW_PREFIX, strlen(SHADOW_PREFIX)) == 0) {
        const char *id = p + strlen(SHADOW_PREFIX);
        if (!*id || strchr(id, '/'))
            return false;
        bool put = strcmp(m, "PUT") == 0;
        if (!get && !put) {
            sim_resp_error(resp, 405, "100022", METHOD_NOT_ALLOWED);
            return true;
        }
        struct sim_device *d = own_device_locked(app, id);
        if (!d)
            not_exist(resp);
        else if (get)
            sim_resp_json(resp, 200, shadow_json(d));
        else
            shadow_write(req, resp, d);
        return true;
    }
    return false;
}
