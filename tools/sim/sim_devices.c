/*
 * sim_devices.c: the virtual devices, their periodic reports and lifecycle notifications
 * (docs/platform-api.md §1.3-§1.4).
 *
 * Devices are generated from --seed, so the same flags give the same deviceIds and nodeIds every
 * run.  They belong to the apps round-robin (or all to the first with --devices-first-app).  Each
 * has two services, Battery and Temperature; a report pushes one deviceDataChanged per service
 * (the platform's rule for multi-service reports) or one deviceDatasChanged with --report-mode
 * datas.  Pushes carry the platform's habits: compact JSON, "requestId":null, full deviceInfo
 * objects with nulls.  Only subscribers of the notification's type receive it.
 *
 * Devices registered through the API (sim_dm.c) start unbound and OFFLINE/NOT_ACTIVE: the first
 * time such a device comes online (control API /online or /bind, or a report) it binds, which
 * pushes bindDevice (succeeded) before its deviceInfoChanged; one that does not come online within
 * its registration timeout is dropped (bindDevice expired, then deviceDeleted: UNCONFIRMED).
 * Every report is kept in the device's data history (a ring of --history-max records, grown as
 * reports come so that idle devices cost nothing), which the history API reads.  Shadow desired
 * properties written while the device is offline are delivered (and their
 * deviceDesiredPropertiesModifyStatusChanged pushed) when it comes online.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *protocol_name(enum sim_device_kind k)
{
    return k == SIM_DEV_MQTT ? "MQTT" : "CoAP";
}

static void free_device(struct sim_device *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nsvc; i++) {
        cJSON_Delete(d->svc[i].data);
        cJSON_Delete(d->svc[i].desired);
    }
    for (size_t i = 0; d->hist && i < d->hist_n; i++)
        cJSON_Delete(d->hist[(d->hist_head + i) % d->hist_cap].data);
    free(d->hist);
    cJSON_Delete(d->attrs);
    free(d);
}

struct sim_device *sim_devices_find_locked(const char *id)
{
    for (size_t i = 0; id && i < g_sim.ndevices; i++)
        if (strcmp(g_sim.devices[i]->id, id) == 0)
            return g_sim.devices[i];
    return NULL;
}

static bool add_service(struct sim_device *d, const char *id, cJSON *data)
{
    if (d->nsvc >= SIM_MAX_SERVICES || !data) {
        cJSON_Delete(data);
        return false;
    }
    struct sim_service *s = &d->svc[d->nsvc++];
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->type, sizeof s->type, "%s", id);
    s->data = data;
    return true;
}

struct sim_device *sim_devices_add_locked(const char *app, const char *id, const char *node_id,
                                          bool online)
{
    if (id && sim_devices_find_locked(id))
        return NULL;
    if (sim_grow((void **)&g_sim.devices, &g_sim.cap_devices, g_sim.ndevices + 1,
                 sizeof(struct sim_device *), SIM_MAX_DEVICES) != OCB_OK)
        return NULL;
    struct sim_device *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (id)
        snprintf(d->id, sizeof d->id, "%s", id);
    else
        sim_uuid_from(&g_sim.prng, d->id);
    if (node_id) {
        snprintf(d->node_id, sizeof d->node_id, "%s", node_id);
    } else { /* an IMEI-shaped nodeId: 15 digits */
        uint64_t r = sim_prng_next(&g_sim.prng) % 100000000000000ULL;
        snprintf(d->node_id, sizeof d->node_id, "8%014" PRIu64, r);
    }
    snprintf(d->app, sizeof d->app, "%s", app);
    d->online = online;
    d->bound = true;
    d->created = d->modified = time(NULL);
    d->kind = g_sim.opts->device_kind;
    cJSON *bat = cJSON_CreateObject(), *tmp = cJSON_CreateObject();
    if (bat)
        cJSON_AddNumberToObject(bat, "batteryLevel", 100);
    if (tmp)
        cJSON_AddNumberToObject(tmp, "temperature", 21.5);
    if (!add_service(d, "Battery", bat) || !add_service(d, "Temperature", tmp)) {
        free_device(d);
        return NULL;
    }
    if (g_sim.opts->report_interval_s > 0)
        d->next_report_ms = sim_now_ms() + (int64_t)(g_sim.opts->report_interval_s * 1000);
    g_sim.devices[g_sim.ndevices++] = d;
    g_sim.next_device_index++;
    return d;
}

enum ocb_err sim_devices_init_locked(void)
{
    const struct sim_opts *o = g_sim.opts;
    for (long i = 0; i < o->devices; i++) {
        size_t app = o->devices_first_app ? 0 : (size_t)i % g_sim.napps;
        if (!sim_devices_add_locked(g_sim.apps[app].id, NULL, NULL, true))
            return OCB_ERR_NOMEM;
    }
    return OCB_OK;
}

void sim_devices_free_locked(void)
{
    for (size_t i = 0; i < g_sim.ndevices; i++)
        free_device(g_sim.devices[i]);
    g_sim.ndevices = 0;
}

void sim_devices_remove_locked(const char *id)
{
    for (size_t i = 0; i < g_sim.ndevices; i++) {
        struct sim_device *d = g_sim.devices[i];
        if (strcmp(d->id, id) != 0)
            continue;
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "notifyType", "deviceDeleted");
            cJSON_AddStringToObject(o, "deviceId", d->id);
            cJSON_AddStringToObject(o, "gatewayId", d->id);
            char *s = cJSON_PrintUnformatted(o);
            if (s)
                sim_subs_push_locked(d->app, "deviceDeleted", s);
            free(s);
            cJSON_Delete(o);
        }
        sim_groups_forget_device_locked(d->id);
        free_device(d);
        memmove(&g_sim.devices[i], &g_sim.devices[i + 1],
                (g_sim.ndevices - i - 1) * sizeof(struct sim_device *));
        g_sim.ndevices--;
        return;
    }
}

void sim_device_status(const struct sim_device *d, const char **status, const char **detail)
{
    *status = d->online ? "ONLINE" : "OFFLINE";
    *detail = d->online || d->bound ? "NONE" : "NOT_ACTIVE";
}

/* A modified field overrides the generated one in full deviceInfo objects. */
static void apply_attrs(cJSON *o, const cJSON *attrs)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (cJSON_GetObjectItemCaseSensitive(o, a->string))
            cJSON_ReplaceItemInObjectCaseSensitive(o, a->string, cJSON_Duplicate(a, true));
    }
}

cJSON *sim_device_info_json(const struct sim_device *d, const char *status, const char *detail,
                            bool full)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    sim_json_add_str_or_null(o, "nodeId", full ? d->node_id : NULL);
    cJSON_AddNullToObject(o, "name");
    cJSON_AddNullToObject(o, "description");
    sim_json_add_str_or_null(o, "manufacturerId", full ? "ocbsim" : NULL);
    sim_json_add_str_or_null(o, "manufacturerName", full ? "ocbridge-sim" : NULL);
    cJSON_AddNullToObject(o, "mac");
    cJSON_AddNullToObject(o, "location");
    sim_json_add_str_or_null(o, "deviceType", full ? "MultiSensor" : NULL);
    sim_json_add_str_or_null(o, "model", full ? "SIM01" : NULL);
    cJSON_AddNullToObject(o, "swVersion");
    cJSON_AddNullToObject(o, "fwVersion");
    cJSON_AddNullToObject(o, "hwVersion");
    sim_json_add_str_or_null(o, "protocolType", full ? protocol_name(d->kind) : NULL);
    cJSON_AddNullToObject(o, "bridgeId");
    sim_json_add_str_or_null(o, "status", status);
    sim_json_add_str_or_null(o, "statusDetail", detail);
    sim_json_add_str_or_null(o, "mute", full ? "FALSE" : NULL);
    cJSON_AddNullToObject(o, "supportedSecurity");
    cJSON_AddNullToObject(o, "isSecurity");
    cJSON_AddNullToObject(o, "signalStrength");
    cJSON_AddNullToObject(o, "sigVersion");
    cJSON_AddNullToObject(o, "serialNumber");
    cJSON_AddNullToObject(o, "batteryLevel");
    cJSON_AddNullToObject(o, "isHD");
    if (full && d->attrs)
        apply_attrs(o, d->attrs);
    return o;
}

static void push_json_locked(const char *app, const char *type, cJSON *o)
{
    if (!o)
        return;
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s)
        sim_subs_push_locked(app, type, s);
    free(s);
}

void sim_devices_push_added_locked(const struct sim_device *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "notifyType", "deviceAdded");
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON_AddStringToObject(o, "gatewayId", d->id);
    cJSON_AddStringToObject(o, "nodeType", "GATEWAY");
    cJSON_AddItemToObject(o, "deviceInfo", sim_device_info_json(d, "OFFLINE", "NOT_ACTIVE", true));
    push_json_locked(d->app, "deviceAdded", o);
}

void sim_devices_push_bind_locked(const struct sim_device *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "notifyType", "bindDevice");
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON_AddStringToObject(o, "resultCode", "succeeded");
    cJSON_AddItemToObject(o, "deviceInfo", sim_device_info_json(d, "ONLINE", "NONE", true));
    push_json_locked(d->app, "bindDevice", o);
}

void sim_devices_push_changed_locked(const struct sim_device *d, const cJSON *changed)
{
    const char *status, *detail;
    sim_device_status(d, &status, &detail);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "notifyType", "deviceInfoChanged");
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON_AddStringToObject(o, "gatewayId", d->id);
    cJSON *info = sim_device_info_json(d, status, detail, false);
    if (info)
        apply_attrs(info, changed);
    cJSON_AddItemToObject(o, "deviceInfo", info);
    push_json_locked(d->app, "deviceInfoChanged", o);
}

/* The device takes its desired properties: they become its reported data, and the platform says
 * so with deviceDesiredPropertiesModifyStatusChanged (status DELIVERED). */
static void deliver_desired_locked(struct sim_device *d, struct sim_service *s)
{
    s->desired_pending = false;
    if (!s->desired)
        return;
    if (!s->data)
        s->data = cJSON_CreateObject();
    const cJSON *p;
    cJSON_ArrayForEach(p, s->desired)
    {
        if (!s->data)
            break;
        cJSON_DeleteItemFromObjectCaseSensitive(s->data, p->string);
        cJSON_AddItemToObject(s->data, p->string, cJSON_Duplicate(p, true));
    }
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "notifyType", "deviceDesiredPropertiesModifyStatusChanged");
    cJSON_AddStringToObject(o, "deviceId", d->id);
    cJSON_AddStringToObject(o, "serviceId", s->id);
    cJSON_AddItemToObject(o, "properties", cJSON_Duplicate(s->desired, true));
    cJSON_AddStringToObject(o, "status", "DELIVERED");
    push_json_locked(d->app, "deviceDesiredPropertiesModifyStatusChanged", o);
}

void sim_devices_desired_locked(struct sim_device *d, struct sim_service *s)
{
    d->modified = time(NULL);
    if (d->online)
        deliver_desired_locked(d, s);
    else
        s->desired_pending = true;
}

void sim_devices_set_online_locked(struct sim_device *d, bool online)
{
    if (d->online == online)
        return;
    if (online && !d->bound) { /* the first connection of a registered device binds it */
        d->bound = true;
        d->bind_deadline_ms = 0;
        d->online = true;
        SIM_INFO("devices", "device %s bound", d->id);
        sim_devices_push_bind_locked(d);
    }
    d->online = online;
    SIM_INFO("devices", "device %s is %s", d->id, online ? "ONLINE" : "OFFLINE");
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "notifyType", "deviceInfoChanged");
        cJSON_AddStringToObject(o, "deviceId", d->id);
        cJSON_AddStringToObject(o, "gatewayId", d->id);
        cJSON_AddNullToObject(o, "networkStatus");
        cJSON_AddItemToObject(
            o, "deviceInfo", sim_device_info_json(d, online ? "ONLINE" : "OFFLINE", "NONE", false));
        push_json_locked(d->app, "deviceInfoChanged", o);
    }
    if (online) {
        if (g_sim.opts->report_interval_s > 0)
            d->next_report_ms = sim_now_ms() + (int64_t)(g_sim.opts->report_interval_s * 1000);
        sim_cmds_device_online_locked(d);
        for (size_t i = 0; i < d->nsvc; i++)
            if (d->svc[i].desired_pending)
                deliver_desired_locked(d, &d->svc[i]);
    }
}

/* Keep one history record.  The array grows until it holds --history-max records (the head stays
 * at 0 meanwhile, so growing never splits the ring); then the oldest makes room. */
static void history_add(struct sim_device *d, const struct sim_service *s, time_t t)
{
    size_t max = (size_t)g_sim.opts->history_max;
    if (max == 0)
        return;
    size_t slot;
    if (d->hist_n == max) {
        slot = d->hist_head;
        cJSON_Delete(d->hist[slot].data);
        d->hist_head = (d->hist_head + 1) % d->hist_cap;
    } else {
        if (sim_grow((void **)&d->hist, &d->hist_cap, d->hist_n + 1, sizeof *d->hist, max) !=
            OCB_OK)
            return;
        slot = d->hist_n++;
    }
    d->hist[slot].t = t;
    snprintf(d->hist[slot].service, sizeof d->hist[slot].service, "%s", s->id);
    d->hist[slot].data = s->data ? cJSON_Duplicate(s->data, true) : cJSON_CreateObject();
}

static struct sim_service *service_slot(struct sim_device *d, const char *id)
{
    for (size_t i = 0; i < d->nsvc; i++)
        if (strcmp(d->svc[i].id, id) == 0)
            return &d->svc[i];
    if (d->nsvc >= SIM_MAX_SERVICES || strlen(id) > 64)
        return NULL;
    struct sim_service *s = &d->svc[d->nsvc++];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->type, sizeof s->type, "%s", id);
    return s;
}

/* New readings: the battery drains one percent per report, the temperature wanders. */
static void generate_readings(struct sim_device *d)
{
    for (size_t i = 0; i < d->nsvc; i++) {
        cJSON *data = d->svc[i].data;
        if (strcmp(d->svc[i].id, "Battery") == 0) {
            cJSON_Delete(data);
            data = cJSON_CreateObject();
            if (data)
                cJSON_AddNumberToObject(data, "batteryLevel", (double)(100 - d->reports % 100));
        } else if (strcmp(d->svc[i].id, "Temperature") == 0) {
            cJSON_Delete(data);
            data = cJSON_CreateObject();
            double t = 18.0 + (double)(sim_prng_next(&g_sim.prng) % 100) / 10.0;
            if (data)
                cJSON_AddNumberToObject(data, "temperature", t);
        }
        d->svc[i].data = data;
    }
}

static cJSON *service_json(const struct sim_service *s, const char *event_time)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "serviceId", s->id);
    cJSON_AddStringToObject(o, "serviceType", s->type);
    cJSON_AddItemToObject(o, "data",
                          s->data ? cJSON_Duplicate(s->data, true) : cJSON_CreateObject());
    cJSON_AddStringToObject(o, "eventTime", event_time);
    return o;
}

enum ocb_err sim_devices_report_locked(struct sim_device *d, const cJSON *services)
{
    struct sim_service *only[SIM_MAX_SERVICES];
    size_t nonly = 0;
    if (services) {
        const cJSON *s;
        cJSON_ArrayForEach(s, services)
        {
            const char *id = sim_json_str(s, "serviceId");
            const cJSON *data = cJSON_GetObjectItemCaseSensitive(s, "data");
            struct sim_service *slot =
                id && *id && cJSON_IsObject(data) ? service_slot(d, id) : NULL;
            if (!slot || nonly >= SIM_MAX_SERVICES)
                return OCB_ERR_INVALID;
            cJSON_Delete(slot->data);
            slot->data = cJSON_Duplicate(data, true);
            only[nonly++] = slot;
        }
    } else {
        generate_readings(d);
        for (size_t i = 0; i < d->nsvc; i++)
            only[nonly++] = &d->svc[i];
    }
    /* A device that reports is online (§1.3): an offline one comes ONLINE first, which pushes
     * deviceInfoChanged and sends its PENDING commands (§3.1), then its data goes out. */
    sim_devices_set_online_locked(d, true);
    d->reports++;
    time_t t = time(NULL);
    for (size_t i = 0; i < nonly; i++) {
        only[i]->event_time = t;
        history_add(d, only[i], t);
    }
    char now[17];
    sim_time_format(t, now);
    if (g_sim.opts->report_mode == SIM_REPORT_DATAS) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return OCB_ERR_NOMEM;
        cJSON_AddStringToObject(o, "notifyType", "deviceDatasChanged");
        cJSON_AddNullToObject(o, "requestId");
        cJSON_AddStringToObject(o, "deviceId", d->id);
        cJSON_AddStringToObject(o, "gatewayId", d->id);
        cJSON *arr = cJSON_AddArrayToObject(o, "services");
        for (size_t i = 0; arr && i < nonly; i++)
            cJSON_AddItemToArray(arr, service_json(only[i], now));
        push_json_locked(d->app, "deviceDatasChanged", o);
        return OCB_OK;
    }
    for (size_t i = 0; i < nonly; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return OCB_ERR_NOMEM;
        cJSON_AddStringToObject(o, "notifyType", "deviceDataChanged");
        cJSON_AddStringToObject(o, "deviceId", d->id);
        cJSON_AddStringToObject(o, "gatewayId", d->id);
        cJSON_AddNullToObject(o, "requestId");
        cJSON_AddItemToObject(o, "service", service_json(only[i], now));
        push_json_locked(d->app, "deviceDataChanged", o);
    }
    return OCB_OK;
}

/* Registered devices that did not come online within their timeout are dropped. */
static void expire_registrations_locked(int64_t now_ms)
{
    for (size_t i = g_sim.ndevices; i-- > 0;) {
        struct sim_device *d = g_sim.devices[i];
        if (d->bound || d->bind_deadline_ms == 0 || d->bind_deadline_ms > now_ms)
            continue;
        SIM_INFO("devices", "device %s: registration expired", d->id);
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "notifyType", "bindDevice");
            cJSON_AddStringToObject(o, "deviceId", d->id);
            cJSON_AddStringToObject(o, "resultCode", "expired");
            push_json_locked(d->app, "bindDevice", o);
        }
        sim_devices_remove_locked(d->id);
    }
}

void sim_devices_tick_locked(int64_t now_ms)
{
    expire_registrations_locked(now_ms);
    double interval = g_sim.opts->report_interval_s;
    if (interval <= 0)
        return;
    int64_t step = (int64_t)(interval * 1000);
    for (size_t i = 0; i < g_sim.ndevices; i++) {
        struct sim_device *d = g_sim.devices[i];
        /* Offline devices stay quiet: a periodic report would bring them back online by itself
         * (a report makes a device ONLINE), undoing the control API's /offline. */
        if (!d->online || d->next_report_ms > now_ms)
            continue;
        sim_devices_report_locked(d, NULL);
        d->next_report_ms += step;
        if (d->next_report_ms <= now_ms) /* fell behind: do not burst */
            d->next_report_ms = now_ms + step;
    }
}

cJSON *sim_devices_json_locked(void)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < g_sim.ndevices; i++) {
        const struct sim_device *d = g_sim.devices[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddStringToObject(o, "deviceId", d->id);
        cJSON_AddStringToObject(o, "appId", d->app);
        cJSON_AddBoolToObject(o, "online", d->online);
        cJSON_AddBoolToObject(o, "bound", d->bound);
        cJSON_AddStringToObject(o, "nodeId", d->node_id);
        cJSON_AddStringToObject(o, "protocolType", protocol_name(d->kind));
        cJSON *svcs = cJSON_AddArrayToObject(o, "services");
        for (size_t j = 0; svcs && j < d->nsvc; j++) {
            cJSON *s = cJSON_CreateObject();
            if (!s)
                break;
            cJSON_AddStringToObject(s, "serviceId", d->svc[j].id);
            cJSON_AddStringToObject(s, "serviceType", d->svc[j].type);
            cJSON_AddItemToObject(s, "data",
                                  d->svc[j].data ? cJSON_Duplicate(d->svc[j].data, true)
                                                 : cJSON_CreateObject());
            cJSON_AddItemToArray(svcs, s);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}
