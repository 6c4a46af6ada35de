/*
 * test_sim_it_api.c: outside-client conformance.  Every device, subscription and command call a
 * platform SDK makes, checked the way an SDK reads the answer: status code, Content-Type, field
 * names and JSON types (written from the shapes in tools/sim/README.md "Device API", i.e. the
 * Java SDK's DTOs), and the pushes each side effect produces, received by a real HTTP server.
 */
#include "th_sim.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "th_main.h"

#define SUBS     "/iocm/app/sub/v1.2.0/subscriptions"
#define REG      "/iocm/app/reg/v1.1.0/deviceCredentials"
#define DEVS     "/iocm/app/dm/v1.4.0/devices"
#define HIST     "/iocm/app/data/v1.2.0/deviceDataHistory"
#define CAPS     "/iocm/app/data/v1.1.0/deviceCapabilities"
#define SHADOW   "/iocm/app/shadow/v1.5.0/devices/"
#define GROUPS   "/iocm/app/devgroup/v1.3.0/devGroups"
#define CMDS     "/iocm/app/cmd/v1.4.0/deviceCommands"
#define NOT_DEV  "{\"error_code\":\"100403\",\"error_desc\":\"The device is not existed.\"}"
#define NO_GROUP "{\"error_code\":\"100603\",\"error_desc\":\"The device group is not existed.\"}"

/* Shapes: "key:T" comma-separated; T is s string, n number, o object, a array, b bool; a
 * trailing '?' makes the key optional.  Keys not listed are allowed (clients ignore them). */
#define SHAPE_REG "deviceId:s,verifyCode:s,timeout:n,psk:s"
#define SHAPE_DEVICE                                                                               \
    "deviceId:s,gatewayId:s,nodeType:s,createTime:s,lastModifiedTime:s,deviceInfo:o,services:a"
#define SHAPE_INFO      "nodeId:s,status:s,statusDetail:s,protocolType:s?,name:s?,mute:s?"
#define SHAPE_SERVICE   "serviceId:s,serviceType:s,data:o,eventTime:s?"
#define SHAPE_PAGE      "totalCount:n,pageNo:n,pageSize:n"
#define SHAPE_HIST      "deviceId:s,gatewayId:s,appId:s,serviceId:s,data:o,timestamp:s"
#define SHAPE_SCAP      "serviceId:s,serviceType:s,option:s,commands:a,properties:a"
#define SHAPE_PROP      "propertyName:s,dataType:s,required:b,method:s"
#define SHAPE_SHADOWSVC "serviceId:s,serviceType:s,reportedProps:o,desiredProps:o,eventTime:s?"
#define SHAPE_GROUP     "name:s,id:s,appId:s,maxDevNum:n,curDevNum:n,description:s?"
#define SHAPE_SUB       "subscriptionId:s,notifyType:s,callbackUrl:s"
#define SHAPE_CMD       "commandId:s,appId:s,deviceId:s,command:o,expireTime:n,status:s,creationTime:s"

static struct th_sim s;
static char *tok;
static struct th_sim_receiver *rx;

static const char *const push_types[] = {
    "deviceAdded",
    "bindDevice",
    "deviceInfoChanged",
    "deviceDataChanged",
    "deviceDeleted",
    "deviceDesiredPropertiesModifyStatusChanged",
    NULL,
};

static void start_with(const char *extra)
{
    const char *args[] = {"--app", "app1:sec1",           "--app", "app2:sec2", "--devices",
                          "2",     "--devices-first-app", extra,   NULL};
    th_sim_start(&s, args);
    tok = th_sim_login(&s, "app1", "sec1");
    rx = th_sim_recv_start(false);
    for (size_t i = 0; push_types[i]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/cb/%s", push_types[i]);
        th_sim_subscribe(&s, "app1", tok, push_types[i], rx, path);
    }
}

static void start(void)
{
    start_with(NULL);
}

static void stop(void)
{
    th_sim_recv_stop(rx);
    free(tok);
    th_sim_stop(&s);
}

static bool type_ok(const cJSON *v, char t)
{
    switch (t) {
    case 's':
        return cJSON_IsString(v);
    case 'n':
        return cJSON_IsNumber(v);
    case 'o':
        return cJSON_IsObject(v);
    case 'a':
        return cJSON_IsArray(v);
    case 'b':
        return cJSON_IsBool(v);
    default:
        return false;
    }
}

static void check_shape(const cJSON *o, const char *shape)
{
    ck_assert_msg(cJSON_IsObject(o), "not an object (shape %s)", shape);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", shape);
    for (char *f = buf, *next; f && *f; f = next) {
        next = strchr(f, ',');
        if (next)
            *next++ = '\0';
        char *colon = strchr(f, ':');
        ck_assert_ptr_nonnull(colon);
        *colon = '\0';
        bool optional = colon[2] == '?';
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
        char *text = cJSON_PrintUnformatted(o);
        ck_assert_msg((optional && (!v || cJSON_IsNull(v))) || type_ok(v, colon[1]),
                      "key %s: want %c in %s", f, colon[1], text);
        free(text);
    }
}

static void check_each(const cJSON *arr, const char *shape)
{
    ck_assert(cJSON_IsArray(arr));
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        check_shape(e, shape);
    }
}

/* One call: status, Content-Type application/json, and (shape non-NULL) a JSON object of that
 * shape, returned; shape "" = the body must be empty (NULL returned). */
static cJSON *call(const char *method, const char *path, const char *body, long status,
                   const char *shape)
{
    struct th_sim_resp r = th_sim_api(&s, method, path, "app1", tok, body);
    th_sim_expect(&r, status, NULL);
    ck_assert_msg(strncmp(r.content_type, "application/json", 16) == 0,
                  "%s %s: Content-Type \"%s\"", method, path, r.content_type);
    cJSON *j = NULL;
    if (shape && !*shape) {
        ck_assert_msg(!r.body || !*r.body, "%s %s: body %s", method, path, r.body);
    } else if (shape) {
        j = th_sim_json(&r);
        check_shape(j, shape);
    }
    th_sim_resp_free(&r);
    return j;
}

/* An error answer: status and exact body, JSON Content-Type. */
static void call_err(const char *method, const char *path, const char *body, long status,
                     const char *want)
{
    struct th_sim_resp r = th_sim_api(&s, method, path, "app1", tok, body);
    th_sim_expect(&r, status, want);
    ck_assert_str_eq(r.content_type, "application/json");
    cJSON *j = th_sim_json(&r);
    check_shape(j, "error_code:s,error_desc:s");
    cJSON_Delete(j);
    th_sim_resp_free(&r);
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsString(v), "no string %s", k);
    return v->valuestring;
}

/* Wait for the n-th push of type (1-based) and return a copy of it. */
static cJSON *push_n(const char *type, int n)
{
    char path[128];
    snprintf(path, sizeof path, "/cb/%s", type);
    for (int tries = 0; tries < 500; tries++) {
        cJSON *all = th_sim_recv_bodies(rx, path);
        if (cJSON_GetArraySize(all) >= n) {
            cJSON *one = cJSON_DetachItemFromArray(all, n - 1);
            cJSON_Delete(all);
            ck_assert_str_eq(str(one, "notifyType"), type);
            return one;
        }
        cJSON_Delete(all);
        th_sleep_ms(20);
    }
    ck_abort_msg("no push #%d of %s", n, type);
    return NULL;
}

static int push_count(const char *type)
{
    char path[128];
    snprintf(path, sizeof path, "/cb/%s", type);
    cJSON *all = th_sim_recv_bodies(rx, path);
    int n = cJSON_GetArraySize(all);
    cJSON_Delete(all);
    return n;
}

static cJSON *reg(const char *path, const char *body)
{
    return call("POST", path, body, 200, SHAPE_REG);
}

static void admin_ok(const char *method, const char *path, const char *body)
{
    struct th_sim_resp r = th_sim_admin(&s, method, path, body);
    ck_assert_msg(r.status == 204 || r.status == 200, "%s %s: %ld", method, path, r.status);
    th_sim_resp_free(&r);
}

START_TEST(every_answer_has_a_content_type)
{
    start();
    char url[128];
    snprintf(url, sizeof url,
             "{\"notifyType\":\"deviceDatasChanged\",\"callbackurl\":"
             "\"http://127.0.0.1:%u/cb/x\"}",
             th_sim_recv_port(rx));
    /* The empty 201/200 that broke the Java SDK. */
    call("POST", "/iocm/app/sub/v1.1.0/subscribe", url, 201, "");
    snprintf(url, sizeof url,
             "{\"notifyType\":\"fwUpgradeResultNotify\",\"callbackurl\":"
             "\"http://127.0.0.1:%u/cb/fw\"}",
             th_sim_recv_port(rx));
    call("POST", "/iodm/app/sub/v1.1.0/subscribe", url, 200, "");
    /* Subscription calls. */
    cJSON *list = call("GET", SUBS "?pageSize=100", NULL, 200, SHAPE_PAGE ",subscriptions:a");
    check_each(cJSON_GetObjectItem(list, "subscriptions"), SHAPE_SUB);
    char one[160];
    snprintf(
        one, sizeof one, SUBS "/%s",
        str(cJSON_GetArrayItem(cJSON_GetObjectItem(list, "subscriptions"), 0), "subscriptionId"));
    cJSON_Delete(call("GET", one, NULL, 200, SHAPE_SUB));
    call("DELETE", one, NULL, 204, "");
    call_err("GET", one, NULL, 404, NULL);
    call("DELETE", SUBS "?notifyType=bindDevice", NULL, 204, "");
    cJSON_Delete(list);
    /* Errors of every layer. */
    call_err("GET", "/iocm/app/nosuch/v1.0.0/x", NULL, 404,
             "{\"error_code\":\"100022\",\"error_desc\":\"Unknown API path.\"}");
    struct th_sim_resp r = th_sim_api(&s, "GET", SUBS, "app1", "stale", NULL);
    th_sim_expect(&r, 403, NULL);
    ck_assert_str_eq(r.content_type, "application/json");
    th_sim_resp_free(&r);
    /* The deprecated logout kills the token it names. */
    char body[128];
    snprintf(body, sizeof body, "{\"accessToken\":\"%s\"}", tok);
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/logout", s.api);
    const char *hs[] = {"Content-Type: application/json", NULL};
    r = th_sim_http("POST", url, hs, body, TH_SIM_CERT_CLIENT);
    th_sim_expect(&r, 204, NULL);
    ck_assert_str_eq(r.content_type, "application/json");
    th_sim_resp_free(&r);
    r = th_sim_http("POST", url, hs, "{}", TH_SIM_CERT_CLIENT);
    th_sim_expect(
        &r, 400,
        "{\"error_code\":\"102202\",\"error_desc\":\"Required Parameter is null or empty.\"}");
    th_sim_resp_free(&r);
    r = th_sim_api(&s, "GET", SUBS, "app1", tok, NULL);
    th_sim_expect(&r, 403, NULL);
    th_sim_resp_free(&r);
    stop();
}
END_TEST

START_TEST(command_calls)
{
    start();
    char dev[37], body[512], path[200];
    th_sim_first_device(&s, "app1", dev);
    snprintf(body, sizeof body,
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"SET\","
             "\"paras\":{\"on\":1}},\"expireTime\":60}",
             dev);
    cJSON *c = call("POST", CMDS, body, 201, SHAPE_CMD);
    cJSON *list = call("GET", CMDS "?pageSize=10", NULL, 200, "pagination:o,data:a");
    check_shape(cJSON_GetObjectItem(list, "pagination"), "pageNo:n,pageSize:n,totalSize:n");
    check_each(cJSON_GetObjectItem(list, "data"), SHAPE_CMD);
    cJSON_Delete(list);
    snprintf(path, sizeof path, "/devices/%s/offline", dev);
    admin_ok("POST", path, NULL);
    cJSON *pending = call("POST", CMDS, body, 201, SHAPE_CMD);
    ck_assert_str_eq(str(pending, "status"), "PENDING");
    snprintf(path, sizeof path, CMDS "/%s", str(pending, "commandId"));
    cJSON_Delete(call("PUT", path, "{\"status\":\"CANCELED\"}", 200, SHAPE_CMD));
    snprintf(body, sizeof body, "{\"deviceId\":\"%s\"}", dev);
    cJSON *task = call("POST", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", body, 201,
                       "taskId:s,appId:s,deviceId:s,status:s,totalCount:n,deviceCommands:a");
    cJSON_Delete(task);
    cJSON_Delete(call("GET", "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", NULL, 200, NULL));
    cJSON_Delete(pending);
    cJSON_Delete(c);
    stop();
}
END_TEST

/* The whole life of a device: register, bind, report, history, query, modify, capabilities,
 * shadow, delete; with each push. */
START_TEST(device_lifecycle)
{
    start();
    cJSON *r = reg(REG, "{\"nodeId\":\"861234567890123\",\"timeout\":0}");
    char id[37], path[256];
    snprintf(id, sizeof id, "%s", str(r, "deviceId"));
    ck_assert_int_eq(strlen(id), 36);
    ck_assert_str_eq(str(r, "verifyCode"), "861234567890123");
    ck_assert_int_eq(cJSON_GetObjectItem(r, "timeout")->valueint, 0);
    cJSON_Delete(r);
    cJSON *p = push_n("deviceAdded", 1);
    check_shape(p, "notifyType:s,deviceId:s,gatewayId:s,nodeType:s,deviceInfo:o");
    ck_assert_str_eq(str(p, "deviceId"), id);
    ck_assert_str_eq(str(cJSON_GetObjectItem(p, "deviceInfo"), "statusDetail"), "NOT_ACTIVE");
    cJSON_Delete(p);
    /* The nodeId is taken: not yet bound = duplicate; bound = already bounded (HTTP 200). */
    call_err("POST", REG, "{\"nodeId\":\"861234567890123\"}", 400,
             "{\"error_code\":\"100426\",\"error_desc\":\"The nodeId is duplicated.\"}");
    call_err("POST", REG, "{\"verifyCode\":\"x\"}", 400, NULL);
    call_err("POST", REG, "{\"nodeId\":\"n1\",\"timeout\":-1}", 400, NULL);
    call_err("POST", REG, "{\"nodeId\":\"n1\",\"psk\":\"nothex!!\"}", 400, NULL);

    snprintf(path, sizeof path, DEVS "/%s", id);
    cJSON *d = call("GET", path, NULL, 200, SHAPE_DEVICE);
    check_shape(cJSON_GetObjectItem(d, "deviceInfo"), SHAPE_INFO);
    ck_assert_str_eq(str(cJSON_GetObjectItem(d, "deviceInfo"), "status"), "OFFLINE");
    check_each(cJSON_GetObjectItem(d, "services"), SHAPE_SERVICE);
    cJSON_Delete(d);

    /* A shadow write while offline waits for the device. */
    snprintf(path, sizeof path, SHADOW "%s", id);
    call("PUT", path,
         "{\"serviceDesireds\":[{\"serviceId\":\"Temperature\",\"desired\":{\"target\":19}}]}", 200,
         "");
    call_err("PUT", path, "{\"serviceDesireds\":[{\"serviceId\":\"Nope\",\"desired\":{}}]}", 400,
             NULL);
    call_err("PUT", path, "{\"serviceDesireds\":[]}", 400, NULL);
    ck_assert_int_eq(push_count("deviceDesiredPropertiesModifyStatusChanged"), 0);
    /* So does a command: PENDING until the device binds. */
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"ON\","
             "\"paras\":{}},\"expireTime\":60}",
             id);
    cJSON *c = call("POST", CMDS, cmd, 201, SHAPE_CMD);
    ck_assert_str_eq(str(c, "status"), "PENDING");
    char cmd_path[200];
    snprintf(cmd_path, sizeof cmd_path, "/commands?deviceId=%s", id);
    cJSON_Delete(c);

    /* First online: bindDevice, then deviceInfoChanged ONLINE, then the shadow is delivered. */
    snprintf(path, sizeof path, "/devices/%s/online", id);
    admin_ok("POST", path, NULL);
    p = push_n("bindDevice", 1);
    check_shape(p, "notifyType:s,deviceId:s,resultCode:s,deviceInfo:o");
    ck_assert_str_eq(str(p, "resultCode"), "succeeded");
    ck_assert_str_eq(str(cJSON_GetObjectItem(p, "deviceInfo"), "status"), "ONLINE");
    cJSON_Delete(p);
    p = push_n("deviceInfoChanged", 1);
    ck_assert_str_eq(str(cJSON_GetObjectItem(p, "deviceInfo"), "status"), "ONLINE");
    cJSON_Delete(p);
    p = push_n("deviceDesiredPropertiesModifyStatusChanged", 1);
    check_shape(p, "notifyType:s,deviceId:s,serviceId:s,properties:o,status:s");
    ck_assert_str_eq(str(p, "status"), "DELIVERED");
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "properties"), "target")->valueint,
                     19);
    cJSON_Delete(p);
    struct th_sim_resp cr = th_sim_admin(&s, "GET", cmd_path, NULL);
    cJSON *cmds = th_sim_json(&cr);
    th_sim_resp_free(&cr);
    ck_assert_str_ne(str(cJSON_GetArrayItem(cmds, 0), "status"), "PENDING"); /* sent at bind */
    cJSON_Delete(cmds);
    call_err("POST", REG, "{\"nodeId\":\"861234567890123\"}", 200,
             "{\"error_code\":\"100416\",\"error_desc\":\"The device has already been bounded.\"}");
    /* Going offline and online again is no second bind. */
    snprintf(path, sizeof path, "/devices/%s/offline", id);
    admin_ok("POST", path, NULL);
    snprintf(path, sizeof path, "/devices/%s/online", id);
    admin_ok("POST", path, NULL);
    cJSON_Delete(push_n("deviceInfoChanged", 3));
    ck_assert_int_eq(push_count("bindDevice"), 1);

    /* Reports feed the history, newest first. */
    snprintf(path, sizeof path, "/devices/%s/report", id);
    admin_ok("POST", path,
             "{\"services\":[{\"serviceId\":\"Battery\",\"data\":{\"batteryLevel\":"
             "77}}]}");
    admin_ok("POST", path,
             "{\"services\":[{\"serviceId\":\"Temperature\",\"data\":{"
             "\"temperature\":20.5}}]}");
    cJSON_Delete(push_n("deviceDataChanged", 2));
    snprintf(path, sizeof path, HIST "?deviceId=%s&gatewayId=%s", id, id);
    cJSON *h = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceDataHistoryDTOs:a");
    cJSON *recs = cJSON_GetObjectItem(h, "deviceDataHistoryDTOs");
    check_each(recs, SHAPE_HIST);
    ck_assert_int_eq(cJSON_GetObjectItem(h, "totalCount")->valueint, 2);
    ck_assert_str_eq(str(cJSON_GetArrayItem(recs, 0), "serviceId"), "Temperature");
    ck_assert_str_eq(str(cJSON_GetArrayItem(recs, 1), "serviceId"), "Battery");
    cJSON_Delete(h);
    snprintf(path, sizeof path, HIST "?deviceId=%s&serviceId=Battery&pageSize=1&pageNo=0", id);
    h = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceDataHistoryDTOs:a");
    ck_assert_int_eq(cJSON_GetObjectItem(h, "totalCount")->valueint, 1);
    ck_assert_int_eq(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(
                cJSON_GetArrayItem(cJSON_GetObjectItem(h, "deviceDataHistoryDTOs"), 0), "data"),
            "batteryLevel")
            ->valueint,
        77);
    cJSON_Delete(h);
    /* Time ranges: nothing after the far future; everything since 2000; older data/v1.1.0. */
    snprintf(path, sizeof path, HIST "?deviceId=%s&startTime=29990101T000000Z", id);
    h = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceDataHistoryDTOs:a");
    ck_assert_int_eq(cJSON_GetObjectItem(h, "totalCount")->valueint, 0);
    cJSON_Delete(h);
    snprintf(path, sizeof path,
             "/iocm/app/data/v1.1.0/deviceDataHistory?deviceId=%s&startTime=20000101T000000Z"
             "&endTime=29990101T000000Z&property=temperature",
             id);
    h = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceDataHistoryDTOs:a");
    ck_assert_int_eq(cJSON_GetObjectItem(h, "totalCount")->valueint, 1);
    cJSON_Delete(h);
    snprintf(path, sizeof path, HIST "?deviceId=%s&startTime=yesterday", id);
    call_err("GET", path, NULL, 400, NULL);
    call_err("GET", HIST, NULL, 400, NULL);

    /* Lists with filters, in every dm version clients call. */
    cJSON *l = call("GET", DEVS "?status=ONLINE&pageSize=250", NULL, 200, SHAPE_PAGE ",devices:a");
    check_each(cJSON_GetObjectItem(l, "devices"), SHAPE_DEVICE);
    ck_assert_int_eq(cJSON_GetObjectItem(l, "totalCount")->valueint, 3); /* 2 seeded + ours */
    cJSON_Delete(l);
    snprintf(path, sizeof path, DEVS "?gatewayId=%s&nodeType=GATEWAY&sort=DESC", id);
    l = call("GET", path, NULL, 200, SHAPE_PAGE ",devices:a");
    ck_assert_int_eq(cJSON_GetObjectItem(l, "totalCount")->valueint, 1);
    cJSON_Delete(l);
    l = call("GET", "/iocm/app/dm/v1.3.0/devices?pageNo=1&pageSize=2", NULL, 200,
             SHAPE_PAGE ",devices:a");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(l, "devices")), 1);
    cJSON_Delete(l);
    call_err("GET", DEVS "?pageSize=251", NULL, 400, NULL);
    call_err("GET", DEVS "?sort=UP", NULL, 400, NULL);

    /* Modify: 204, deviceInfoChanged with the new name, visible to a v1.1.0 query. */
    snprintf(path, sizeof path, DEVS "/%s", id);
    call("PUT", path, "{\"name\":\"kitchen\",\"location\":\"home\",\"mute\":\"FALSE\"}", 204, "");
    p = push_n("deviceInfoChanged", 4);
    ck_assert_str_eq(str(cJSON_GetObjectItem(p, "deviceInfo"), "name"), "kitchen");
    cJSON_Delete(p);
    call_err("PUT", path, "{\"mute\":\"maybe\"}", 400, NULL);
    call_err("PUT", path, "{\"name\":5}", 400, NULL);
    snprintf(path, sizeof path, "/iocm/app/dm/v1.1.0/devices/%s", id);
    d = call("GET", path, NULL, 200, SHAPE_DEVICE);
    ck_assert_str_eq(str(cJSON_GetObjectItem(d, "deviceInfo"), "name"), "kitchen");
    ck_assert_str_eq(str(cJSON_GetObjectItem(d, "deviceInfo"), "location"), "home");
    cJSON_Delete(d);

    /* Capabilities and the shadow. */
    snprintf(path, sizeof path, CAPS "?deviceId=%s", id);
    cJSON *caps = call("GET", path, NULL, 200, "deviceCapabilities:a");
    cJSON *dc = cJSON_GetArrayItem(cJSON_GetObjectItem(caps, "deviceCapabilities"), 0);
    check_shape(dc, "deviceId:s,serviceCapabilities:a");
    check_each(cJSON_GetObjectItem(dc, "serviceCapabilities"), SHAPE_SCAP);
    check_each(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(dc, "serviceCapabilities"), 0),
                            "properties"),
        SHAPE_PROP);
    cJSON_Delete(caps);
    call_err("GET", CAPS, NULL, 400, NULL);
    snprintf(path, sizeof path, SHADOW "%s", id);
    cJSON *sh = call("GET", path, NULL, 200,
                     "deviceId:s,gatewayId:s,nodeType:s,createTime:s,deviceInfo:o,services:a");
    check_each(cJSON_GetObjectItem(sh, "services"), SHAPE_SHADOWSVC);
    cJSON_Delete(sh);
    call("PUT", path,
         "{\"serviceDesireds\":[{\"serviceId\":\"Battery\",\"desired\":{\"mode\":\"eco\"}}]}", 200,
         "");
    p = push_n("deviceDesiredPropertiesModifyStatusChanged", 2); /* online: at once */
    ck_assert_str_eq(str(p, "serviceId"), "Battery");
    cJSON_Delete(p);

    /* Delete: cascade checked, 204, deviceDeleted; afterwards every path says 404/100403. */
    snprintf(path, sizeof path, DEVS "/%s?cascade=perhaps", id);
    call_err("DELETE", path, NULL, 400, NULL);
    snprintf(path, sizeof path, DEVS "/%s?cascade=false", id);
    call("DELETE", path, NULL, 204, "");
    p = push_n("deviceDeleted", 1);
    check_shape(p, "notifyType:s,deviceId:s,gatewayId:s");
    ck_assert_str_eq(str(p, "deviceId"), id);
    cJSON_Delete(p);
    call_err("DELETE", path, NULL, 404, NOT_DEV);
    snprintf(path, sizeof path, DEVS "/%s", id);
    call_err("GET", path, NULL, 404, NOT_DEV);
    call_err("PUT", path, "{\"name\":\"x\"}", 404, NOT_DEV);
    snprintf(path, sizeof path, HIST "?deviceId=%s", id);
    call_err("GET", path, NULL, 404, NOT_DEV);
    snprintf(path, sizeof path, SHADOW "%s", id);
    call_err("GET", path, NULL, 404, NOT_DEV);
    snprintf(path, sizeof path, CAPS "?deviceId=%s", id);
    call_err("GET", path, NULL, 404, NOT_DEV);
    stop();
}
END_TEST

/* Older registration paths, another app's device, registration timeout. */
START_TEST(registration_variants_and_timeout)
{
    start();
    cJSON *r = reg("/iocm/app/reg/v1.2.0/devices",
                   "{\"nodeId\":\"old-1\",\"verifyCode\":\"VC1\",\"psk\":\"0123456789abcdef\","
                   "\"deviceInfo\":{\"name\":\"first\",\"deviceType\":\"Meter\"}}");
    ck_assert_str_eq(str(r, "verifyCode"), "VC1");
    ck_assert_str_eq(str(r, "psk"), "0123456789abcdef");
    ck_assert_int_eq(cJSON_GetObjectItem(r, "timeout")->valueint, 180); /* the default */
    char path[256];
    snprintf(path, sizeof path, "/iocm/app/dm/v1.2.0/devices/%s", str(r, "deviceId"));
    cJSON *d = call("GET", path, NULL, 200, SHAPE_DEVICE);
    ck_assert_str_eq(str(cJSON_GetObjectItem(d, "deviceInfo"), "name"), "first");
    cJSON_Delete(d);
    cJSON *l = call("GET", DEVS "?deviceType=Meter", NULL, 200, SHAPE_PAGE ",devices:a");
    ck_assert_int_eq(cJSON_GetObjectItem(l, "totalCount")->valueint, 1);
    cJSON_Delete(l);
    /* Another app cannot see it. */
    char *tok2 = th_sim_login(&s, "app2", "sec2");
    struct th_sim_resp hr = th_sim_api(&s, "GET", path, "app2", tok2, NULL);
    th_sim_expect(&hr, 404, NOT_DEV);
    th_sim_resp_free(&hr);
    free(tok2);
    cJSON_Delete(r);
    /* v2.0.0 path, 1 s to come online: the registration expires. */
    r = reg("/iocm/app/reg/v2.0.0/deviceCredentials", "{\"nodeId\":\"late-1\",\"timeout\":1}");
    char id[37];
    snprintf(id, sizeof id, "%s", str(r, "deviceId"));
    cJSON_Delete(r);
    cJSON *p = push_n("bindDevice", 1);
    ck_assert_str_eq(str(p, "resultCode"), "expired");
    ck_assert_str_eq(str(p, "deviceId"), id);
    cJSON_Delete(p);
    snprintf(path, sizeof path, DEVS "/%s", id);
    call_err("GET", path, NULL, 404, NOT_DEV);
    /* The nodeId is free again. */
    r = reg(REG, "{\"nodeId\":\"late-1\"}");
    cJSON_Delete(r);
    stop();
}
END_TEST

/* --history-max bounds the records kept per device: the oldest go first. */
START_TEST(history_is_bounded)
{
    start_with("--history-max=2");
    char dev[37], path[256];
    th_sim_first_device(&s, "app1", dev);
    snprintf(path, sizeof path, "/devices/%s/report", dev);
    for (int level = 1; level <= 3; level++) {
        char body[128];
        snprintf(body, sizeof body,
                 "{\"services\":[{\"serviceId\":\"Battery\",\"data\":{\"batteryLevel\":%d}}]}",
                 level);
        admin_ok("POST", path, body);
    }
    snprintf(path, sizeof path, HIST "?deviceId=%s", dev);
    cJSON *h = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceDataHistoryDTOs:a");
    cJSON *recs = cJSON_GetObjectItem(h, "deviceDataHistoryDTOs");
    ck_assert_int_eq(cJSON_GetObjectItem(h, "totalCount")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 0), "data"),
                                         "batteryLevel")
                         ->valueint,
                     3);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 1), "data"),
                                         "batteryLevel")
                         ->valueint,
                     2);
    cJSON_Delete(h);
    stop();
}
END_TEST

/* _i = 0 defaults; _i = 1 --devgroup-create-201 --devgroup-ids-empty (the NULL in the defaults
 * ends the list before the second flag). */
START_TEST(device_groups)
{
    bool flags = _i == 1;
    const char *args[] = {
        "--app",
        "app1:sec1",
        "--devices",
        "3",
        flags ? "--devgroup-create-201" : NULL,
        "--devgroup-ids-empty",
        NULL,
    };
    th_sim_start(&s, args);
    tok = th_sim_login(&s, "app1", "sec1");
    rx = th_sim_recv_start(false);
    struct th_sim_resp ar = th_sim_admin(&s, "GET", "/devices", NULL);
    cJSON *devs = th_sim_json(&ar);
    th_sim_resp_free(&ar);
    char d0[37], d1[37], d2[37], body[512], path[256];
    snprintf(d0, sizeof d0, "%s", str(cJSON_GetArrayItem(devs, 0), "deviceId"));
    snprintf(d1, sizeof d1, "%s", str(cJSON_GetArrayItem(devs, 1), "deviceId"));
    snprintf(d2, sizeof d2, "%s", str(cJSON_GetArrayItem(devs, 2), "deviceId"));
    cJSON_Delete(devs);

    snprintf(body, sizeof body,
             "{\"name\":\"floor1\",\"description\":\"first floor\",\"maxDevNum\":2,"
             "\"deviceIds\":[\"%s\"]}",
             d0);
    cJSON *g = call("POST", GROUPS, body, flags ? 201 : 200, SHAPE_GROUP ",deviceIds:a");
    ck_assert_int_eq(cJSON_GetObjectItem(g, "curDevNum")->valueint, 1);
    char gid[37];
    snprintf(gid, sizeof gid, "%s", str(g, "id"));
    cJSON_Delete(g);
    call_err("POST", GROUPS, "{\"name\":\"floor1\"}", 400, NULL); /* name taken */
    call_err("POST", GROUPS, "{\"description\":\"x\"}", 400, NULL);
    call_err("POST", GROUPS, "{\"name\":\"x\",\"deviceIds\":[\"nosuch\"]}", 404, NOT_DEV);
    call_err("POST", GROUPS "?accessAppId=other", "{\"name\":\"y\"}", 403, NULL);

    cJSON *l = call("GET", GROUPS "?pageNo=0&pageSize=10", NULL, 200, SHAPE_PAGE ",list:a");
    check_each(cJSON_GetObjectItem(l, "list"), SHAPE_GROUP);
    ck_assert_int_eq(cJSON_GetObjectItem(l, "totalCount")->valueint, 1);
    cJSON_Delete(l);
    snprintf(path, sizeof path, GROUPS "/%s", gid);
    cJSON_Delete(call("GET", path, NULL, 200, SHAPE_GROUP ",creator:s"));
    g = call("PUT", path, "{\"name\":\"floorOne\",\"maxDevNum\":3}", 200,
             "name:s,id:s,appId:s,maxDevNum:n");
    ck_assert_str_eq(str(g, "name"), "floorOne");
    cJSON_Delete(g);

    /* Members. */
    snprintf(body, sizeof body, "{\"devGroupId\":\"%s\",\"deviceIds\":[\"%s\",\"%s\"]}", gid, d1,
             d2);
    g = call("POST", "/iocm/app/dm/v1.1.0/devices/addDevGroupTagToDevices", body, 200,
             "devGroupId:s,deviceIds:a");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(g, "deviceIds")), flags ? 0 : 2);
    cJSON_Delete(g);
    snprintf(path, sizeof path, "/iocm/app/dm/v1.2.0/devices/ids?devGroupId=%s&pageSize=2", gid);
    g = call("GET", path, NULL, 200, SHAPE_PAGE ",deviceIds:a");
    ck_assert_int_eq(cJSON_GetObjectItem(g, "totalCount")->valueint, 3);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(g, "deviceIds")), 2);
    cJSON_Delete(g);
    snprintf(path, sizeof path, GROUPS "/%s", gid);
    call_err("PUT", path, "{\"maxDevNum\":2}", 400, NULL); /* below curDevNum */
    snprintf(body, sizeof body, "{\"devGroupId\":\"%s\",\"deviceIds\":[\"%s\"]}", gid, d1);
    cJSON_Delete(call("POST", "/iocm/app/dm/v1.1.0/devices/deleteDevGroupTagFromDevices", body, 200,
                      "devGroupId:s,deviceIds:a"));
    /* A deleted device leaves its groups. */
    snprintf(path, sizeof path, DEVS "/%s", d2);
    call("DELETE", path, NULL, 204, "");
    snprintf(path, sizeof path, GROUPS "/%s", gid);
    g = call("GET", path, NULL, 200, SHAPE_GROUP);
    ck_assert_int_eq(cJSON_GetObjectItem(g, "curDevNum")->valueint, 1);
    cJSON_Delete(g);
    call_err("GET", "/iocm/app/dm/v1.2.0/devices/ids", NULL, 400, NULL);

    call("DELETE", path, NULL, 200, "");
    call_err("GET", path, NULL, 404, NO_GROUP);
    call_err("DELETE", path, NULL, 404, NO_GROUP);
    snprintf(body, sizeof body, "{\"devGroupId\":\"%s\",\"deviceIds\":[]}", gid);
    call_err("POST", "/iocm/app/dm/v1.1.0/devices/addDevGroupTagToDevices", body, 404, NO_GROUP);
    stop();
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const api_tests[] = {every_answer_has_a_content_type,
                                      command_calls,
                                      device_lifecycle,
                                      registration_variants_and_timeout,
                                      history_is_bounded,
                                      device_groups,
                                      NULL};
    const struct th_loop api_loops[] = {{device_groups, 0, 2}, {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "api",
         .timeout_s = 60,
         .tests = api_tests,
         .loops = api_loops,
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_api", cases);
}
