/*
 * test_api.c: the pure device API module: topics, every operation's
 * validation and the exact platform call it builds (method, escaped path,
 * body, retry class), the privilege check, the reconciliation queries and
 * scans, and the apiResponse envelope users parse.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/api.h"
#include "ocb/command.h"
#include "th_main.h"

static struct ocb_api_target target(const char *device)
{
    struct ocb_api_target t;
    memset(&t, 0, sizeof(t));
    snprintf(t.app_id, sizeof(t.app_id), "app1");
    if (strcmp(device, "_") == 0)
        t.no_device = true;
    else
        snprintf(t.device_id, sizeof(t.device_id), "%s", device);
    return t;
}

/* ---- topics ---- */

START_TEST(topic_parse)
{
    struct ocb_api_target t;
    char topic[256];
    ck_assert_int_eq(api_topic_parse("iot", "iot/app1/dev-1/api", &t), OCB_OK);
    ck_assert(!t.no_device);
    ck_assert_str_eq(t.app_id, "app1");
    ck_assert_str_eq(t.device_id, "dev-1");
    ck_assert_int_eq(api_response_topic("iot", &t, topic, sizeof(topic)), OCB_OK);
    ck_assert_str_eq(topic, "iot/app1/dev-1/apiResponse");
    ck_assert_int_eq(api_topic_parse("a/b", "a/b/app1/_/api", &t), OCB_OK);
    ck_assert(t.no_device);
    ck_assert_str_eq(t.device_id, "");
    ck_assert_int_eq(api_response_topic("a/b", &t, topic, sizeof(topic)), OCB_OK);
    ck_assert_str_eq(topic, "a/b/app1/_/apiResponse");
    ck_assert_int_eq(api_response_topic("a/b", &t, topic, 10), OCB_ERR_TOO_BIG);

    static const char *const bad[] = {
        "iot/app1/dev/apiResponse",
        "iot/app1/api",
        "other/app1/dev/api",
        "iot//dev/api",
        "iot/app1//api",
        "iotx/app1/dev/api",
        "iot/a/b/c/api",
        "iot/a/b/command",
        "iot",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(api_topic_parse("iot", bad[i], &t) != OCB_OK, "%s accepted", bad[i]);
    char big[400] = "iot/a/";
    memset(big + 6, 'd', 200);
    memcpy(big + 206, "/api", 5);
    ck_assert_int_eq(api_topic_parse("iot", big, &t), OCB_ERR_TOO_BIG);
}
END_TEST

/* ---- every op: the call it builds ---- */

static const struct {
    const char *device; /* "_" = no device */
    const char *json;
    const char *method, *path, *body; /* body NULL = none */
    enum ocb_api_retry retry;
    const char *reconcile_key;
} good[] = {
    {"_",
     "{\"op\":\"register\",\"nodeId\":\"8600 01\",\"timeout\":0,\"psk\":\"00112233aabbccdd\","
     "\"deviceName\":\"meter\",\"correlationId\":\"c1\"}",
     "POST", "/iocm/app/reg/v1.1.0/deviceCredentials",
     "{\"nodeId\":\"8600 01\",\"psk\":\"00112233aabbccdd\",\"timeout\":0,\"deviceName\":\"meter\"}",
     OCB_API_RETRY_RECONCILE, "8600 01"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n1\",\"verifyCode\":\"v1\",\"endUserId\":\"u\"}",
     "POST", "/iocm/app/reg/v1.1.0/deviceCredentials",
     "{\"nodeId\":\"n1\",\"verifyCode\":\"v1\",\"endUserId\":\"u\"}", OCB_API_RETRY_RECONCILE,
     "n1"},
    {"dev-1", "{\"op\":\"get\"}", "GET", "/iocm/app/dm/v1.4.0/devices/dev-1", NULL,
     OCB_API_RETRY_READ, NULL},
    /* The deviceId is one path segment, percent-encoded. */
    {"a b&c?\xc3\xa9%", "{\"op\":\"get\",\"correlationId\":7}", "GET",
     "/iocm/app/dm/v1.4.0/devices/a%20b%26c%3F%C3%A9%25", NULL, OCB_API_RETRY_READ, NULL},
    {"_", "{\"op\":\"list\"}", "GET", "/iocm/app/dm/v1.4.0/devices", NULL, OCB_API_RETRY_READ,
     NULL},
    {"_",
     "{\"op\":\"list\",\"pageSize\":250,\"pageNo\":2,\"sort\":\"DESC\",\"startTime\":"
     "\"20260101T000000Z\",\"status\":\"ONLINE\",\"deviceType\":\"Water Meter&x=1\","
     "\"endTime\":\"20261231T235959Z\",\"gatewayId\":\"g\",\"nodeType\":\"GATEWAY\"}",
     "GET",
     "/iocm/app/dm/v1.4.0/devices?gatewayId=g&nodeType=GATEWAY&deviceType=Water%20Meter%26x%3D1"
     "&status=ONLINE&startTime=20260101T000000Z&endTime=20261231T235959Z&sort=DESC&pageNo=2"
     "&pageSize=250",
     NULL, OCB_API_RETRY_READ, NULL},
    {"dev-1", "{\"op\":\"update\",\"mute\":\"TRUE\",\"name\":\"kitchen\"}", "PUT",
     "/iocm/app/dm/v1.4.0/devices/dev-1", "{\"name\":\"kitchen\",\"mute\":\"TRUE\"}",
     OCB_API_RETRY_IDEMPOTENT, NULL},
    {"dev-1", "{\"op\":\"update\",\"location\":\"\",\"imsi\":\"4600\",\"region\":\"r\"}", "PUT",
     "/iocm/app/dm/v1.4.0/devices/dev-1", "{\"location\":\"\",\"region\":\"r\",\"imsi\":\"4600\"}",
     OCB_API_RETRY_IDEMPOTENT, NULL},
    {"dev-1", "{\"op\":\"delete\"}", "DELETE", "/iocm/app/dm/v1.4.0/devices/dev-1", NULL,
     OCB_API_RETRY_DELETE, NULL},
    {"dev-1", "{\"op\":\"delete\",\"cascade\":false}", "DELETE",
     "/iocm/app/dm/v1.4.0/devices/dev-1?cascade=false", NULL, OCB_API_RETRY_DELETE, NULL},
    /* gatewayId defaults to the device itself (a directly connected device). */
    {"dev 1", "{\"op\":\"history\",\"serviceId\":\"Meter\",\"pageSize\":2000}", "GET",
     "/iocm/app/data/v1.2.0/deviceDataHistory?deviceId=dev%201&gatewayId=dev%201&serviceId=Meter"
     "&pageSize=2000",
     NULL, OCB_API_RETRY_READ, NULL},
    {"dev-1",
     "{\"op\":\"history\",\"gatewayId\":\"gw\",\"property\":\"temp\",\"startTime\":"
     "\"20260101T000000Z\",\"endTime\":\"20260102T000000Z\",\"pageNo\":0}",
     "GET",
     "/iocm/app/data/v1.2.0/deviceDataHistory?deviceId=dev-1&gatewayId=gw&property=temp"
     "&startTime=20260101T000000Z&endTime=20260102T000000Z&pageNo=0",
     NULL, OCB_API_RETRY_READ, NULL},
    {"dev-1", "{\"op\":\"capabilities\"}", "GET",
     "/iocm/app/data/v1.1.0/deviceCapabilities?deviceId=dev-1", NULL, OCB_API_RETRY_READ, NULL},
    {"dev-1", "{\"op\":\"capabilities\",\"gatewayId\":\"gw\"}", "GET",
     "/iocm/app/data/v1.1.0/deviceCapabilities?deviceId=dev-1&gatewayId=gw", NULL,
     OCB_API_RETRY_READ, NULL},
    {"dev-1", "{\"op\":\"shadow\"}", "GET", "/iocm/app/shadow/v1.5.0/devices/dev-1", NULL,
     OCB_API_RETRY_READ, NULL},
    {"dev-1",
     "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"Meter\",\"desired\":"
     "{\"interval\":60}},{\"desired\":{},\"serviceId\":\"B\"}]}",
     "PUT", "/iocm/app/shadow/v1.5.0/devices/dev-1",
     "{\"serviceDesireds\":[{\"serviceId\":\"Meter\",\"desired\":{\"interval\":60}},"
     "{\"desired\":{},\"serviceId\":\"B\"}]}",
     OCB_API_RETRY_IDEMPOTENT, NULL},
    {"_",
     "{\"op\":\"groupCreate\",\"name\":\"floor 1\",\"maxDevNum\":10,\"deviceIds\":[\"d1\","
     "\"d2\"],\"description\":\"\"}",
     "POST", "/iocm/app/devgroup/v1.3.0/devGroups",
     "{\"name\":\"floor 1\",\"description\":\"\",\"maxDevNum\":10,\"deviceIds\":[\"d1\",\"d2\"]}",
     OCB_API_RETRY_RECONCILE, "floor 1"},
    {"_", "{\"op\":\"groupList\"}", "GET", "/iocm/app/devgroup/v1.3.0/devGroups", NULL,
     OCB_API_RETRY_READ, NULL},
    {"_", "{\"op\":\"groupList\",\"name\":\"floor 1\",\"pageNo\":0,\"pageSize\":1000}", "GET",
     "/iocm/app/devgroup/v1.3.0/devGroups?name=floor%201&pageNo=0&pageSize=1000", NULL,
     OCB_API_RETRY_READ, NULL},
    {"_", "{\"op\":\"groupGet\",\"groupId\":\"g/1\"}", "GET",
     "/iocm/app/devgroup/v1.3.0/devGroups/g%2F1", NULL, OCB_API_RETRY_READ, NULL},
    {"_", "{\"op\":\"groupUpdate\",\"groupId\":\"g1\",\"description\":\"d\",\"maxDevNum\":0}",
     "PUT", "/iocm/app/devgroup/v1.3.0/devGroups/g1", "{\"description\":\"d\",\"maxDevNum\":0}",
     OCB_API_RETRY_IDEMPOTENT, NULL},
    {"_", "{\"op\":\"groupDelete\",\"groupId\":\"g1\"}", "DELETE",
     "/iocm/app/devgroup/v1.3.0/devGroups/g1", NULL, OCB_API_RETRY_DELETE, NULL},
    {"_", "{\"op\":\"groupMembers\",\"groupId\":\"g 1\",\"pageSize\":10}", "GET",
     "/iocm/app/dm/v1.2.0/devices/ids?devGroupId=g%201&pageSize=10", NULL, OCB_API_RETRY_READ,
     NULL},
    {"_", "{\"op\":\"groupAdd\",\"groupId\":\"g1\",\"deviceIds\":[\"d1\"]}", "POST",
     "/iocm/app/dm/v1.1.0/devices/addDevGroupTagToDevices",
     "{\"devGroupId\":\"g1\",\"deviceIds\":[\"d1\"]}", OCB_API_RETRY_IDEMPOTENT, NULL},
    {"_", "{\"op\":\"groupRemove\",\"deviceIds\":[\"d1\",\"d2\"],\"groupId\":\"g1\"}", "POST",
     "/iocm/app/dm/v1.1.0/devices/deleteDevGroupTagFromDevices",
     "{\"devGroupId\":\"g1\",\"deviceIds\":[\"d1\",\"d2\"]}", OCB_API_RETRY_IDEMPOTENT, NULL},
};

START_TEST(op_builds_its_call)
{
    struct ocb_api_target t = target(good[_i].device);
    struct ocb_api_req req;
    char why[200];
    const char *json = good[_i].json;
    enum ocb_command_code c =
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why));
    ck_assert_msg(c == OCB_CMD_OK, "%s: %s (%s)", json, command_code_name(c), why);
    ck_assert(req.op_known);
    ck_assert_str_eq(req.method, good[_i].method);
    ck_assert_str_eq(req.path, good[_i].path);
    if (good[_i].body)
        ck_assert_str_eq(req.body, good[_i].body);
    else
        ck_assert_ptr_null(req.body);
    ck_assert_int_eq(req.retry, good[_i].retry);
    if (good[_i].reconcile_key)
        ck_assert_str_eq(req.reconcile_key, good[_i].reconcile_key);
    else
        ck_assert_ptr_null(req.reconcile_key);
    /* The op named in the request is the op parsed, and reads are exactly the read set. */
    cJSON *j = cJSON_Parse(json);
    ck_assert_str_eq(api_op_name(req.op), cJSON_GetObjectItem(j, "op")->valuestring);
    ck_assert_int_eq(req.retry == OCB_API_RETRY_READ,
                     (OCB_API_READ_OPS & OCB_API_OP_BIT(req.op)) != 0);
    const cJSON *corr = cJSON_GetObjectItem(j, "correlationId");
    if (corr) {
        char *text = cJSON_PrintUnformatted(corr);
        ck_assert_str_eq(req.correlation_id, text);
        cJSON_free(text);
    } else {
        ck_assert_ptr_null(req.correlation_id);
    }
    cJSON_Delete(j);
    api_req_cleanup(&req);
    ck_assert_ptr_null(req.path);
}
END_TEST

START_TEST(every_op_is_covered)
{
    unsigned seen = 0;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cJSON *j = cJSON_Parse(good[i].json);
        enum ocb_api_op op;
        ck_assert(api_op_from_name(cJSON_GetObjectItem(j, "op")->valuestring, &op));
        seen |= OCB_API_OP_BIT(op);
        cJSON_Delete(j);
    }
    ck_assert_uint_eq(seen, OCB_API_ALL_OPS);
    for (unsigned op = 0; op < OCB_API_N_OPS; op++) {
        enum ocb_api_op back;
        ck_assert(api_op_from_name(api_op_name((enum ocb_api_op)op), &back));
        ck_assert_uint_eq(back, op);
    }
    ck_assert_ptr_null(api_op_name(OCB_API_N_OPS));
    ck_assert_uint_eq(OCB_API_READ_OPS & OCB_API_WRITE_OPS, 0);
    ck_assert_uint_eq(OCB_API_READ_OPS | OCB_API_WRITE_OPS, OCB_API_ALL_OPS);
}
END_TEST

/* ---- refused requests ---- */

static const char *const s65 =
    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"";

static const struct {
    const char *device;
    const char *json;
    enum ocb_command_code code;
    const char *why; /* a substring of the reason */
} bad[] = {
    {"_", "", OCB_CMD_INVALID_PAYLOAD, "empty"},
    {"_", "[]", OCB_CMD_INVALID_PAYLOAD, "not a JSON object"},
    {"_", "{\"op\":\"list\"} x", OCB_CMD_INVALID_PAYLOAD, "trailing"},
    {"_", "{\"op\":\"list\"", OCB_CMD_INVALID_PAYLOAD, "not JSON"},
    {"_", "{}", OCB_CMD_INVALID_PAYLOAD, "op must be a string"},
    {"_", "{\"op\":5}", OCB_CMD_INVALID_PAYLOAD, "op must be a string"},
    {"_", "{\"op\":\"reboot\"}", OCB_CMD_UNKNOWN_OPERATION, "unknown op \"reboot\""},
    {"dev", "{\"op\":\"Get\"}", OCB_CMD_UNKNOWN_OPERATION, "unknown op \"Get\""},
    {"dev", "{\"op\":\"get\",\"correlationId\":{}}", OCB_CMD_INVALID_PAYLOAD, "correlationId"},
    {"dev", "{\"op\":\"get\",\"x\":1}", OCB_CMD_INVALID_PAYLOAD, "unknown parameter \"x\""},
    {"dev", "{\"op\":\"get\",\"pageSize\":1}", OCB_CMD_INVALID_PAYLOAD, "unknown parameter"},
    {"_", "{\"op\":\"get\"}", OCB_CMD_INVALID_TOPIC, "names a device"},
    {"_", "{\"op\":\"setShadow\"}", OCB_CMD_INVALID_TOPIC, "names a device"},
    {"dev", "{\"op\":\"list\"}", OCB_CMD_INVALID_TOPIC, "names no device"},
    {"dev", "{\"op\":\"register\",\"nodeId\":\"n\"}", OCB_CMD_INVALID_TOPIC, "names no device"},
    {"..", "{\"op\":\"get\"}", OCB_CMD_INVALID_TOPIC, "not a deviceId"},
    {"", "{\"op\":\"shadow\"}", OCB_CMD_INVALID_TOPIC, "names a device"},
    {".", "{\"op\":\"history\"}", OCB_CMD_INVALID_TOPIC, "not a deviceId"},
    {"_", "{\"op\":\"register\"}", OCB_CMD_INVALID_PAYLOAD, "nodeId is required"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"\"}", OCB_CMD_INVALID_PAYLOAD, "nodeId must be"},
    {"_", "{\"op\":\"register\",\"nodeId\":7}", OCB_CMD_INVALID_PAYLOAD, "nodeId must be"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"psk\":\"xyz12345\"}", OCB_CMD_INVALID_PAYLOAD,
     "psk must be 8..32 hex"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"psk\":\"0011223\"}", OCB_CMD_INVALID_PAYLOAD,
     "psk"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"timeout\":-1}", OCB_CMD_INVALID_PAYLOAD,
     "timeout must be an integer 0..2147483647"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"timeout\":1.5}", OCB_CMD_INVALID_PAYLOAD,
     "timeout"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"timeout\":2147483648}", OCB_CMD_INVALID_PAYLOAD,
     "timeout"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"verifyCode\":\"\"}", OCB_CMD_INVALID_PAYLOAD,
     "verifyCode"},
    {"_", "{\"op\":\"register\",\"nodeId\":\"n\",\"name\":\"x\"}", OCB_CMD_INVALID_PAYLOAD,
     "unknown parameter \"name\""},
    {"_", "{\"op\":\"list\",\"pageSize\":0}", OCB_CMD_INVALID_PAYLOAD, "pageSize"},
    {"_", "{\"op\":\"list\",\"pageSize\":251}", OCB_CMD_INVALID_PAYLOAD, "pageSize"},
    {"_", "{\"op\":\"list\",\"pageNo\":-1}", OCB_CMD_INVALID_PAYLOAD, "pageNo"},
    {"_", "{\"op\":\"list\",\"pageNo\":\"1\"}", OCB_CMD_INVALID_PAYLOAD, "pageNo"},
    {"_", "{\"op\":\"list\",\"startTime\":\"2026-01-01\"}", OCB_CMD_INVALID_PAYLOAD,
     "startTime must be a UTC time"},
    {"_", "{\"op\":\"list\",\"endTime\":\"20261301T000000Z\"}", OCB_CMD_INVALID_PAYLOAD, "endTime"},
    {"_", "{\"op\":\"list\",\"sort\":\"asc\"}", OCB_CMD_INVALID_PAYLOAD, "sort"},
    {"_", "{\"op\":\"list\",\"status\":\"\"}", OCB_CMD_INVALID_PAYLOAD, "status"},
    {"dev", "{\"op\":\"update\"}", OCB_CMD_INVALID_PAYLOAD, "changes nothing"},
    {"dev", "{\"op\":\"update\",\"mute\":\"yes\"}", OCB_CMD_INVALID_PAYLOAD, "mute"},
    {"dev", "{\"op\":\"update\",\"name\":5}", OCB_CMD_INVALID_PAYLOAD, "name must be a string"},
    {"dev", "{\"op\":\"update\",\"nodeId\":\"x\"}", OCB_CMD_INVALID_PAYLOAD, "unknown parameter"},
    {"dev", "{\"op\":\"delete\",\"cascade\":\"true\"}", OCB_CMD_INVALID_PAYLOAD,
     "cascade must be true or false"},
    {"dev", "{\"op\":\"history\",\"pageSize\":2001}", OCB_CMD_INVALID_PAYLOAD, "pageSize"},
    {"dev", "{\"op\":\"history\",\"deviceId\":\"other\"}", OCB_CMD_INVALID_PAYLOAD,
     "unknown parameter \"deviceId\""},
    {"dev", "{\"op\":\"setShadow\"}", OCB_CMD_INVALID_PAYLOAD, "serviceDesireds is required"},
    {"dev", "{\"op\":\"setShadow\",\"serviceDesireds\":[]}", OCB_CMD_INVALID_PAYLOAD,
     "serviceDesireds must be"},
    {"dev", "{\"op\":\"setShadow\",\"serviceDesireds\":{}}", OCB_CMD_INVALID_PAYLOAD,
     "serviceDesireds"},
    {"dev", "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"S\"}]}",
     OCB_CMD_INVALID_PAYLOAD, "serviceDesireds"},
    {"dev", "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"S\",\"desired\":1}]}",
     OCB_CMD_INVALID_PAYLOAD, "serviceDesireds"},
    {"dev",
     "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"S\",\"desired\":{},\"x\":1}]}",
     OCB_CMD_INVALID_PAYLOAD, "serviceDesireds"},
    {"dev", "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"\",\"desired\":{}}]}",
     OCB_CMD_INVALID_PAYLOAD, "serviceDesireds"},
    {"_", "{\"op\":\"groupCreate\"}", OCB_CMD_INVALID_PAYLOAD, "name is required"},
    {"_", "{\"op\":\"groupCreate\",\"name\":\"\"}", OCB_CMD_INVALID_PAYLOAD,
     "name must be a string of 1..50 characters"},
    {"_", "{\"op\":\"groupCreate\",\"name\":\"g\",\"maxDevNum\":-1}", OCB_CMD_INVALID_PAYLOAD,
     "maxDevNum"},
    {"_", "{\"op\":\"groupCreate\",\"name\":\"g\",\"deviceIds\":[\"a\",\"a\"]}",
     OCB_CMD_INVALID_PAYLOAD, "distinct"},
    {"_", "{\"op\":\"groupCreate\",\"name\":\"g\",\"deviceIds\":[\"\"]}", OCB_CMD_INVALID_PAYLOAD,
     "deviceIds"},
    {"_", "{\"op\":\"groupCreate\",\"name\":\"g\",\"appId\":\"other\"}", OCB_CMD_INVALID_PAYLOAD,
     "unknown parameter \"appId\""},
    {"_", "{\"op\":\"groupGet\"}", OCB_CMD_INVALID_PAYLOAD, "groupId is required"},
    {"_", "{\"op\":\"groupGet\",\"groupId\":\"..\"}", OCB_CMD_INVALID_PAYLOAD,
     "groupId must not be \"..\""},
    {"_", "{\"op\":\"groupDelete\",\"groupId\":\".\"}", OCB_CMD_INVALID_PAYLOAD, "groupId"},
    {"_", "{\"op\":\"groupUpdate\",\"groupId\":\"g\"}", OCB_CMD_INVALID_PAYLOAD, "changes nothing"},
    {"_", "{\"op\":\"groupMembers\"}", OCB_CMD_INVALID_PAYLOAD, "groupId is required"},
    {"_", "{\"op\":\"groupAdd\",\"groupId\":\"g\",\"deviceIds\":[]}", OCB_CMD_INVALID_PAYLOAD,
     "deviceIds must be an array of 1..1000"},
    {"_", "{\"op\":\"groupRemove\",\"groupId\":\"g\"}", OCB_CMD_INVALID_PAYLOAD,
     "deviceIds is required"},
    {"_", "{\"op\":\"groupRemove\",\"groupId\":\"g\",\"deviceIds\":[1]}", OCB_CMD_INVALID_PAYLOAD,
     "deviceIds"},
};

START_TEST(bad_request_is_refused)
{
    struct ocb_api_target t = target(bad[_i].device);
    struct ocb_api_req req;
    char why[300];
    const char *json = bad[_i].json;
    enum ocb_command_code c =
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why));
    ck_assert_msg(c == bad[_i].code, "%s: got %s (%s)", json, command_code_name(c), why);
    ck_assert_msg(strstr(why, bad[_i].why) != NULL, "%s: reason \"%s\" lacks \"%s\"", json, why,
                  bad[_i].why);
    ck_assert_ptr_null(req.method);
    ck_assert_ptr_null(req.path);
    ck_assert_ptr_null(req.body);
    ck_assert_ptr_null(req.reconcile_key);
    api_req_cleanup(&req);
}
END_TEST

START_TEST(limits_and_bytes)
{
    struct ocb_api_target t = target("_");
    struct ocb_api_req req;
    char why[200];
    char json[512];

    /* Over the cap before anything is parsed. */
    const char *small = "{\"op\":\"list\"}";
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, small, strlen(small), 5, &req, why, sizeof(why)),
        OCB_CMD_PAYLOAD_TOO_LARGE);
    api_req_cleanup(&req);
    /* An embedded NUL. */
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, "{\"op\":\"list\"}\0x", 15, 100, &req, why, sizeof(why)),
        OCB_CMD_INVALID_PAYLOAD);
    ck_assert_ptr_nonnull(strstr(why, "NUL"));
    api_req_cleanup(&req);
    /* nodeId: 64 bytes pass, 65 do not. */
    snprintf(json, sizeof(json), "{\"op\":\"register\",\"nodeId\":%.*s\"}", 65, s65);
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why)),
        OCB_CMD_OK);
    api_req_cleanup(&req);
    snprintf(json, sizeof(json), "{\"op\":\"register\",\"nodeId\":%s}", s65);
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why)),
        OCB_CMD_INVALID_PAYLOAD);
    api_req_cleanup(&req);
    /* A group name counts characters: 50 two-byte characters pass, 51 do not. */
    char name[120];
    for (int i = 0; i < 50; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[100] = '\0';
    snprintf(json, sizeof(json), "{\"op\":\"groupCreate\",\"name\":\"%s\"}", name);
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why)),
        OCB_CMD_OK);
    api_req_cleanup(&req);
    snprintf(json, sizeof(json), "{\"op\":\"groupCreate\",\"name\":\"%sx\"}", name);
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, &req, why, sizeof(why)),
        OCB_CMD_INVALID_PAYLOAD);
    api_req_cleanup(&req);
    /* 1001 device ids are over OCB_API_IDS_MAX. */
    size_t cap = 16 + 1001 * 12 + 64, o = 0;
    char *big = malloc(cap);
    ck_assert_ptr_nonnull(big);
    o += (size_t)snprintf(big, cap, "{\"op\":\"groupAdd\",\"groupId\":\"g\",\"deviceIds\":[");
    for (int i = 0; i < 1001; i++)
        o += (size_t)snprintf(big + o, cap - o, "%s\"d%d\"", i ? "," : "", i);
    snprintf(big + o, cap - o, "]}");
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, big, strlen(big), 1 << 20, &req, why, sizeof(why)),
        OCB_CMD_INVALID_PAYLOAD);
    api_req_cleanup(&req);
    free(big);
}
END_TEST

/* ---- least privilege ---- */

START_TEST(privilege_check)
{
    struct ocb_api_target none = target("_"), dev = target("dev");
    struct ocb_api_req req;
    char why[200];
    const char *reg = "{\"op\":\"register\",\"nodeId\":\"n\",\"correlationId\":\"c9\"}";

    /* Read-only (the default): a write is refused, with no call, echoing what it can. */
    ck_assert_int_eq(
        api_parse(&none, OCB_API_READ_OPS, reg, strlen(reg), 4096, &req, why, sizeof(why)),
        OCB_CMD_OPERATION_NOT_ALLOWED);
    ck_assert_ptr_nonnull(strstr(why, "register is not allowed"));
    ck_assert(req.op_known);
    ck_assert_int_eq(req.op, OCB_API_REGISTER);
    ck_assert_str_eq(req.correlation_id, "\"c9\"");
    ck_assert_ptr_null(req.path);
    ck_assert_ptr_null(req.body);
    api_req_cleanup(&req);
    /* Refused before its parameters are looked at, and before the topic check. */
    const char *bad_params = "{\"op\":\"delete\",\"cascade\":\"x\"}";
    ck_assert_int_eq(api_parse(&dev, OCB_API_READ_OPS, bad_params, strlen(bad_params), 4096, &req,
                               why, sizeof(why)),
                     OCB_CMD_OPERATION_NOT_ALLOWED);
    api_req_cleanup(&req);
    ck_assert_int_eq(api_parse(&none, OCB_API_READ_OPS, bad_params, strlen(bad_params), 4096, &req,
                               why, sizeof(why)),
                     OCB_CMD_OPERATION_NOT_ALLOWED);
    api_req_cleanup(&req);
    /* Reads pass. */
    ck_assert_int_eq(
        api_parse(&dev, OCB_API_READ_OPS, "{\"op\":\"shadow\"}", 15, 4096, &req, why, sizeof(why)),
        OCB_CMD_OK);
    api_req_cleanup(&req);
    /* Nothing allowed: even a read is refused; one op allowed: only that op. */
    ck_assert_int_eq(api_parse(&dev, 0, "{\"op\":\"shadow\"}", 15, 4096, &req, why, sizeof(why)),
                     OCB_CMD_OPERATION_NOT_ALLOWED);
    api_req_cleanup(&req);
    unsigned only = OCB_API_OP_BIT(OCB_API_REGISTER);
    ck_assert_int_eq(api_parse(&none, only, reg, strlen(reg), 4096, &req, why, sizeof(why)),
                     OCB_CMD_OK);
    api_req_cleanup(&req);
    ck_assert_int_eq(api_parse(&none, only, "{\"op\":\"list\"}", 13, 4096, &req, why, sizeof(why)),
                     OCB_CMD_OPERATION_NOT_ALLOWED);
    api_req_cleanup(&req);
    /* An unknown op is UNKNOWN_OPERATION whatever is allowed. */
    ck_assert_int_eq(api_parse(&none, 0, "{\"op\":\"x\"}", 10, 4096, &req, why, sizeof(why)),
                     OCB_CMD_UNKNOWN_OPERATION);
    ck_assert(!req.op_known);
    api_req_cleanup(&req);
}
END_TEST

START_TEST(ops_words)
{
    unsigned bits = 0;
    ck_assert(api_ops_word("read", &bits));
    ck_assert_uint_eq(bits, OCB_API_READ_OPS);
    ck_assert(api_ops_word("write", &bits));
    ck_assert_uint_eq(bits, OCB_API_WRITE_OPS);
    ck_assert(api_ops_word("all", &bits));
    ck_assert_uint_eq(bits, OCB_API_ALL_OPS);
    ck_assert(api_ops_word("groupMembers", &bits));
    ck_assert_uint_eq(bits, OCB_API_OP_BIT(OCB_API_GROUP_MEMBERS));
    ck_assert(!api_ops_word("READ", &bits));
    ck_assert(!api_ops_word("", &bits));
    ck_assert(!api_ops_word("createCommand", &bits));
    ck_assert(!api_ops_word(NULL, &bits));
    ck_assert(OCB_API_WRITE_OPS & OCB_API_OP_BIT(OCB_API_SET_SHADOW));
    ck_assert(OCB_API_READ_OPS & OCB_API_OP_BIT(OCB_API_HISTORY));
}
END_TEST

/* ---- no-double rules ---- */

START_TEST(gone_is_done)
{
    ck_assert(api_gone_is_done(OCB_API_DELETE, 404, "100403"));
    ck_assert(!api_gone_is_done(OCB_API_DELETE, 404, "100603"));
    ck_assert(!api_gone_is_done(OCB_API_DELETE, 400, "100403"));
    ck_assert(api_gone_is_done(OCB_API_GROUP_DELETE, 404, "100603"));
    ck_assert(!api_gone_is_done(OCB_API_GROUP_DELETE, 404, "100403"));
    ck_assert(!api_gone_is_done(OCB_API_UPDATE, 404, "100403"));
    ck_assert(!api_gone_is_done(OCB_API_DELETE, 404, NULL));
}
END_TEST

static void parse_ok(const char *device, const char *json, struct ocb_api_req *req)
{
    struct ocb_api_target t = target(device);
    char why[200];
    ck_assert_int_eq(
        api_parse(&t, OCB_API_ALL_OPS, json, strlen(json), 4096, req, why, sizeof(why)),
        OCB_CMD_OK);
}

START_TEST(reconcile_register_by_node_id)
{
    struct ocb_api_req req;
    char path[512];
    parse_ok("_", "{\"op\":\"register\",\"nodeId\":\"n 1\"}", &req);
    ck_assert_int_eq(
        api_reconcile_path(&req, 1767225600, 0, OCB_API_RECONCILE_PAGE_SIZE, path, sizeof(path)),
        OCB_OK);
    ck_assert_str_eq(path, "/iocm/app/dm/v1.4.0/devices?startTime=20260101T000000Z&sort=ASC"
                           "&pageNo=0&pageSize=250");
    ck_assert_int_eq(api_reconcile_path(&req, 0, 3, 10, path, 20), OCB_ERR_TOO_BIG);
    ck_assert_int_eq(api_reconcile_path(&req, 0, -1, 10, path, sizeof(path)), OCB_ERR_INVALID);

    struct ocb_api_scan scan;
    memset(&scan, 0, sizeof(scan));
    const char *page0 = "{\"totalCount\":3,\"pageNo\":0,\"pageSize\":2,\"devices\":["
                        "{\"deviceId\":\"d-a\",\"deviceInfo\":{\"nodeId\":\"n 2\"}},"
                        "{\"deviceId\":\"d-b\",\"deviceInfo\":{\"nodeId\":\"n\"}}]}";
    ck_assert_int_eq(api_reconcile_scan_page(&req, page0, strlen(page0), &scan), OCB_OK);
    ck_assert(!scan.found);
    ck_assert(api_reconcile_more(&scan, 0, 2));
    const char *page1 = "{\"totalCount\":3,\"pageNo\":1,\"pageSize\":2,\"devices\":["
                        "{\"deviceId\":\"d-c\",\"deviceInfo\":{\"nodeId\":\"n 1\","
                        "\"status\":\"OFFLINE\"}}]}";
    ck_assert_int_eq(api_reconcile_scan_page(&req, page1, strlen(page1), &scan), OCB_OK);
    ck_assert(scan.found);
    ck_assert_str_eq(scan.id, "d-c");
    ck_assert_ptr_nonnull(strstr(scan.resource, "\"deviceId\":\"d-c\""));
    ck_assert_uint_eq(scan.resource_len, strlen(scan.resource));
    ck_assert(!api_reconcile_more(&scan, 1, 2));
    api_scan_cleanup(&scan);

    /* Not a device page; the last page; the scan bound. */
    ck_assert_int_eq(api_reconcile_scan_page(&req, "[]", 2, &scan), OCB_ERR_PROTOCOL);
    ck_assert_int_eq(api_reconcile_scan_page(&req, "{\"list\":[]}", 11, &scan), OCB_ERR_PROTOCOL);
    const char *last = "{\"totalCount\":2,\"devices\":[{\"deviceId\":\"x\"},{}]}";
    ck_assert_int_eq(api_reconcile_scan_page(&req, last, strlen(last), &scan), OCB_OK);
    ck_assert(!scan.found);
    ck_assert(!api_reconcile_more(&scan, 0, 2));
    scan.total = 1000000;
    ck_assert(api_reconcile_more(&scan, 0, 250));
    ck_assert(!api_reconcile_more(&scan, OCB_API_RECONCILE_SCAN_MAX / 250 - 1, 250));
    api_scan_cleanup(&scan);
    api_req_cleanup(&req);

    /* Reads and other writes have no reconciliation. */
    parse_ok("dev", "{\"op\":\"update\",\"name\":\"x\"}", &req);
    ck_assert_int_eq(api_reconcile_path(&req, 0, 0, 10, path, sizeof(path)), OCB_ERR_INVALID);
    ck_assert_int_eq(api_reconcile_scan_page(&req, page0, strlen(page0), &scan), OCB_ERR_INVALID);
    api_req_cleanup(&req);
}
END_TEST

START_TEST(reconcile_group_by_name)
{
    struct ocb_api_req req;
    char path[512];
    parse_ok("_", "{\"op\":\"groupCreate\",\"name\":\"floor 1&2\"}", &req);
    ck_assert_int_eq(api_reconcile_path(&req, 99, 1, 100, path, sizeof(path)), OCB_OK);
    ck_assert_str_eq(
        path, "/iocm/app/devgroup/v1.3.0/devGroups?name=floor%201%262&pageNo=1&pageSize=100");
    struct ocb_api_scan scan;
    memset(&scan, 0, sizeof(scan));
    const char *page = "{\"totalCount\":2,\"list\":[{\"name\":\"floor 1\",\"id\":\"g0\"},"
                       "{\"name\":\"floor 1&2\",\"id\":\"g1\",\"curDevNum\":0}]}";
    ck_assert_int_eq(api_reconcile_scan_page(&req, page, strlen(page), &scan), OCB_OK);
    ck_assert(scan.found);
    ck_assert_str_eq(scan.id, "g1");
    api_scan_cleanup(&scan);
    api_req_cleanup(&req);
}
END_TEST

/* ---- the apiResponse envelope ---- */

static cJSON *format(const struct ocb_command_outcome *o)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(command_response_format(o, &text, &len), OCB_OK);
    ck_assert_uint_eq(len, strlen(text));
    cJSON *j = cJSON_Parse(text);
    ck_assert_ptr_nonnull(j);
    free(text);
    return j;
}

START_TEST(envelope)
{
    /* 204 with no body: platform null, nothing lifted. */
    struct ocb_command_outcome o = {
        .correlation_id = "\"c1\"", .ok = true, .http_status = 204, .op = "delete"};
    char *text = NULL;
    ck_assert_int_eq(command_response_format(&o, &text, NULL), OCB_OK);
    ck_assert_str_eq(text,
                     "{\"correlationId\":\"c1\",\"op\":\"delete\",\"ok\":true,\"httpStatus\":204,"
                     "\"platform\":null}");
    free(text);

    /* A body: kept whole under platform; its status is not lifted (that is a command's). */
    const char *dev = "{\"deviceId\":\"d\",\"status\":\"ONLINE\"}";
    o = (struct ocb_command_outcome){.ok = true,
                                     .http_status = 200,
                                     .platform_body = dev,
                                     .platform_len = strlen(dev),
                                     .op = "get"};
    cJSON *j = format(&o);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "correlationId")));
    ck_assert_str_eq(cJSON_GetObjectItem(j, "op")->valuestring, "get");
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "status"));
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "platform"), "deviceId")->valuestring, "d");
    cJSON_Delete(j);

    /* A reconciled register: the device found, marked. */
    o.op = "register";
    o.reconciled = true;
    j = format(&o);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "reconciled")));
    cJSON_Delete(j);

    /* A 2xx body that is not an object is still INVALID_REPLY material. */
    o = (struct ocb_command_outcome){
        .ok = true, .http_status = 200, .platform_body = "[1]", .platform_len = 3, .op = "list"};
    ck_assert_int_eq(command_response_format(&o, &text, NULL), OCB_ERR_PROTOCOL);

    /* Bridge errors: op echoed, or null when the request had no known op. */
    o = (struct ocb_command_outcome){.correlation_id = "5",
                                     .code = command_code_name(OCB_CMD_OPERATION_NOT_ALLOWED),
                                     .desc = "op register is not allowed for this app",
                                     .op = "register"};
    ck_assert_int_eq(command_response_format(&o, &text, NULL), OCB_OK);
    ck_assert_str_eq(text, "{\"correlationId\":5,\"op\":\"register\",\"ok\":false,"
                           "\"httpStatus\":null,\"error\":{\"code\":\"OPERATION_NOT_ALLOWED\","
                           "\"desc\":\"op register is not allowed for this app\",\"source\":"
                           "\"bridge\"},\"retryable\":false}");
    free(text);
    o.op = "";
    o.code = command_code_name(OCB_CMD_UNKNOWN_OPERATION);
    j = format(&o);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "op")));
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring,
                     "UNKNOWN_OPERATION");
    cJSON_Delete(j);

    /* Platform errors. */
    o = (struct ocb_command_outcome){.http_status = 404,
                                     .code = "100403",
                                     .desc = "The device is not existed.",
                                     .from_platform = true,
                                     .op = "shadow"};
    j = format(&o);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "source")->valuestring, "platform");
    ck_assert_int_eq(cJSON_GetObjectItem(j, "httpStatus")->valueint, 404);
    cJSON_Delete(j);

    /* Commands are unchanged: no op key. */
    o = (struct ocb_command_outcome){.ok = true,
                                     .http_status = 201,
                                     .platform_body = "{\"commandId\":\"c\"}",
                                     .platform_len = 17};
    j = format(&o);
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "op"));
    ck_assert_str_eq(cJSON_GetObjectItem(j, "commandId")->valuestring, "c");
    cJSON_Delete(j);
    o.platform_len = 0;
    ck_assert_int_eq(command_response_format(&o, &text, NULL), OCB_ERR_PROTOCOL);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const api_tests[] = {topic_parse,
                                      op_builds_its_call,
                                      every_op_is_covered,
                                      bad_request_is_refused,
                                      limits_and_bytes,
                                      privilege_check,
                                      ops_words,
                                      gone_is_done,
                                      reconcile_register_by_node_id,
                                      reconcile_group_by_name,
                                      envelope,
                                      NULL};
    const struct th_loop api_loops[] = {
        {op_builds_its_call, 0, (int)(sizeof(good) / sizeof(good[0]))},
        {bad_request_is_refused, 0, (int)(sizeof(bad) / sizeof(bad[0]))},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "api", .tests = api_tests, .loops = api_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "api", cases);
}
