/*
 * test_route.c: every sample body of docs/platform-api.md sections 1 and 2 routes
 * to its exact topic; hostile ids are refused, never published elsewhere.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/grammar.h"
#include "ocb/route.h"
#include "th_main.h"

#define MAX_TOPIC 1024

struct sample {
    const char *body;
    const char *topic;
    const char *request_id;
    const char *command_id;
};

/* The bodies exactly as docs/platform-api.md shows them (sections 1.4 and 2). */
static const struct sample samples[] = {
    {"{\"notifyType\":\"deviceAdded\",\"deviceId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\","
     "\"gatewayId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\",\"nodeType\":\"GATEWAY\","
     "\"deviceInfo\":{\"nodeId\":\"862177041314827\",\"name\":null,\"description\":null,"
     "\"manufacturerId\":null,\"manufacturerName\":null,\"mac\":null,\"location\":null,"
     "\"deviceType\":null,\"model\":null,\"swVersion\":null,\"fwVersion\":null,\"hwVersion\":null,"
     "\"protocolType\":null,\"bridgeId\":null,\"status\":\"OFFLINE\",\"statusDetail\":\"NOT_"
     "ACTIVE\",\"mute\":null,\"supportedSecurity\":null,\"isSecurity\":null,\"signalStrength\":"
     "null,\"sigVersion\":null,\"serialNumber\":null,\"batteryLevel\":null,\"isHD\":null}}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceAdded", NULL, NULL},
    {"{\"notifyType\":\"bindDevice\",\"deviceId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\","
     "\"resultCode\":\"succeeded\",\"deviceInfo\":{\"nodeId\":\"862177041314827\",\"name\":"
     "\"xuss\",\"manufacturerId\":\"eefbbff1f59f4fc18fdfa67d650d3d56\",\"manufacturerName\":\"STAR-"
     "IoT\",\"location\":\"Shenzhen\",\"deviceType\":\"Motion\",\"model\":\"NBWatch_OTA\","
     "\"protocolType\":\"CoAP\",\"status\":\"ONLINE\",\"statusDetail\":\"NONE\",\"mute\":\"FALSE\"}"
     "}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/bindDevice", NULL, NULL},
    {"{\"notifyType\":\"deviceInfoChanged\",\"deviceId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\","
     "\"gatewayId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\",\"networkStatus\":null,\"deviceInfo\":"
     "{\"nodeId\":null,\"name\":null,\"status\":\"ONLINE\",\"statusDetail\":\"NONE\",\"mute\":null}"
     "}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceInfoChanged", NULL, NULL},
    {"{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"c2dc6ecc-495f-48ff-95b1-177855ce5c69\","
     "\"gatewayId\":\"c2dc6ecc-495f-48ff-95b1-177855ce5c69\",\"requestId\":null,\"service\":{"
     "\"serviceId\":\"NBWatch\",\"serviceType\":\"NBWatch\",\"data\":{\"MessageType\":\"UPLOAD\","
     "\"Battery\":\"100\",\"HeartRate\":\"074\"},\"eventTime\":\"20200603T061701Z\"}}",
     "iot/demoApp/c2dc6ecc-495f-48ff-95b1-177855ce5c69/deviceDataChanged", NULL, NULL},
    {"{\"notifyType\":\"deviceDatasChanged\",\"requestId\":null,\"deviceId\":\"b8b92cc7-2622-4f27-"
     "a24b-041ab26f0b80\",\"gatewayId\":\"b8b92cc7-2622-4f27-a24b-041ab26f0b80\",\"services\":[{"
     "\"serviceId\":\"Header\",\"serviceType\":\"Header\",\"data\":{\"VID\":221,\"UID\":3},"
     "\"eventTime\":\"20170214T170220Z\"},{\"serviceId\":\"Payload\",\"serviceType\":\"Payload\","
     "\"data\":{\"LENGTH\":4,\"DATA_1\":3},\"eventTime\":\"20170214T170220Z\"}]}",
     "iot/demoApp/b8b92cc7-2622-4f27-a24b-041ab26f0b80/deviceDatasChanged", NULL, NULL},
    {"{\"notifyType\":\"deviceCapabilitiesAdded\",\"appId\":\"PcH6DS2vvO4_0ywnlaCF4Hfb01oa\","
     "\"deviceType\":\"MultiSensor\",\"manufacturerName\":\"wulian\",\"manufacturerId\":"
     "\"wulian01\",\"model\":\"SM01\",\"protocolType\":\"zigbee\"}",
     "iot/demoApp/_/deviceCapabilitiesAdded", NULL, NULL},
    {"{\"notifyType\":\"deviceDeleted\",\"deviceId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\","
     "\"gatewayId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\"}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceDeleted", NULL, NULL},
    {"{\"notifyType\":\"messageConfirm\",\"header\":{\"requestId\":\"1a2b3c\",\"from\":\"/devices/"
     "<deviceId>/services/"
     "Camera\",\"to\":\"<userId>\",\"status\":\"delivered\",\"timestamp\":\"20151212T121212Z\"},"
     "\"body\":{}}",
     "iot/demoApp/_/messageConfirm", "1a2b3c", NULL},
    {"{\"notifyType\":\"commandRsp\",\"header\":{\"requestId\":\"1a2b3c\",\"from\":\"<addr>\","
     "\"to\":\"<addr>\",\"deviceId\":\"762634d2-be6e-42d4-bc26-c3a751adcee7\",\"serviceType\":"
     "\"Camera\",\"method\":\"MUTE_COMMANDS\"},\"body\":{}}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/commandRsp", "1a2b3c", NULL},
    {"{\"notifyType\":\"deviceEvent\",\"header\":{\"eventType\":\"alarm\",\"from\":\"<addr>\","
     "\"timestamp\":\"20151212T121212Z\",\"eventTime\":\"20151212T121212Z\",\"deviceId\":"
     "\"762634d2-be6e-42d4-bc26-c3a751adcee7\",\"serviceType\":\"Storage\"},\"body\":{"
     "\"usedPercent\":95}}",
     "iot/demoApp/762634d2-be6e-42d4-bc26-c3a751adcee7/deviceEvent", NULL, NULL},
    {"{\"notifyType\":\"serviceInfoChanged\",\"deviceId\":\"762634d2-...\",\"gatewayId\":"
     "\"762634d2-...\",\"serviceId\":\"Camera\",\"serviceType\":\"Camera\",\"serviceInfo\":{"
     "\"muteCmds\":[\"VIDEO_RECORD\"]}}",
     "iot/demoApp/762634d2-.../serviceInfoChanged", NULL, NULL},
    {"{\"notifyType\":\"ruleEvent\",\"author\":\"user01\",\"ruleId\":\"r-0001\",\"ruleName\":"
     "\"highTemp\",\"logic\":\"and\",\"reasons\":[{\"satisfactionTime\":\"20180102T030405Z\","
     "\"type\":\"DEVICE_DATA\",\"id\":\"1\",\"info\":{\"deviceId\":\"762634d2-...\",\"path\":"
     "\"Sensor/"
     "temperature\",\"value\":42}}],\"triggerTime\":\"20180102T030405Z\",\"actionsResults\":[{"
     "\"type\":\"DEVICE_CMD\",\"id\":\"1\",\"result\":{\"statusCode\":201,\"body\":{}}}]}",
     "iot/demoApp/_/ruleEvent", NULL, NULL},
    {"{\"notifyType\":\"deviceDesiredPropertiesModifyStatusChanged\",\"deviceId\":\"762634d2-...\","
     "\"serviceId\":\"Device\",\"properties\":{\"Model Number\":1,\"Serial Number\":2,\"Firmware "
     "Version\":\"v1.1.0\"},\"status\":\"DELIVERED\"}",
     "iot/demoApp/762634d2-.../deviceDesiredPropertiesModifyStatusChanged", NULL, NULL},
    {"{\"notifyType\":\"swUpgradeStateChangeNotify\",\"deviceId\":\"762634d2-...\",\"appId\":"
     "\"PcH6DS2vvO4_0ywnlaCF4Hfb01oa\",\"operationId\":\"op-1\",\"subOperationId\":\"sub-1\","
     "\"swUpgradeState\":\"downloading\"}",
     "iot/demoApp/762634d2-.../swUpgradeStateChangeNotify", NULL, NULL},
    {"{\"notifyType\":\"swUpgradeResultNotify\",\"deviceId\":\"762634d2-...\",\"appId\":\"PcH6..."
     "\",\"operationId\":\"op-1\",\"subOperationId\":\"sub-1\",\"curVersion\":\"1.3\","
     "\"targetVersion\":\"1.5\",\"sourceVersion\":\"1.0\",\"swUpgradeResult\":\"SUCCESS\","
     "\"upgradeTime\":\"120\",\"resultDesc\":\"ok\",\"errorCode\":\"0\",\"description\":\"\"}",
     "iot/demoApp/762634d2-.../swUpgradeResultNotify", NULL, NULL},
    {"{\"notifyType\":\"fwUpgradeStateChangeNotify\",\"deviceId\":\"762634d2-...\",\"appId\":"
     "\"PcH6...\",\"operationId\":\"op-1\",\"subOperationId\":\"sub-1\",\"step\":\"1\","
     "\"stepDesc\":\"downloading\"}",
     "iot/demoApp/762634d2-.../fwUpgradeStateChangeNotify", NULL, NULL},
    {"{\"notifyType\":\"fwUpgradeResultNotify\",\"deviceId\":\"762634d2-...\",\"appId\":\"PcH6..."
     "\",\"operationId\":\"op-1\",\"subOperationId\":\"sub-1\",\"curVersion\":\"1.6\","
     "\"targetVersion\":\"1.6\",\"sourceVersion\":\"1.3\",\"status\":\"SUCCESS\",\"statusDesc\":"
     "\"success\",\"upgradeTime\":\"300\"}",
     "iot/demoApp/762634d2-.../fwUpgradeResultNotify", NULL, NULL},
    {"{\"notifyType\":\"deviceModelAdded\",\"appId\":\"PcH6...\",\"deviceType\":\"WaterMeter\","
     "\"manufacturerName\":\"ACME\",\"manufacturerId\":\"acme\",\"model\":\"WM1\",\"protocolType\":"
     "\"CoAP\"}",
     "iot/demoApp/_/deviceModelAdded", NULL, NULL},
    {"{\"deviceId\":\"ae446a4e-1617-46e7-bb36-bbb4738b4ef3\",\"commandId\":"
     "\"5c2534b13b4343fb966ecc461100e462\",\"result\":{\"resultCode\":\"DELIVERED\","
     "\"resultDetail\":null}}",
     "iot/demoApp/ae446a4e-1617-46e7-bb36-bbb4738b4ef3/commandStatus", NULL,
     "5c2534b13b4343fb966ecc461100e462"},
    {"{\"deviceId\":\"ae446a4e-1617-46e7-bb36-bbb4738b4ef3\",\"commandId\":"
     "\"5c2534b13b4343fb966ecc461100e462\",\"result\":{\"resultCode\":\"SUCCESSFUL\","
     "\"resultDetail\":{\"light_state\":1}}}",
     "iot/demoApp/ae446a4e-1617-46e7-bb36-bbb4738b4ef3/commandStatus", NULL,
     "5c2534b13b4343fb966ecc461100e462"},
};
#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

static enum ocb_err route(const char *body, struct ocb_route *r, enum ocb_route_reject *why,
                          char *reason, size_t cap)
{
    return route_from_push("iot", "demoApp", body, strlen(body), MAX_TOPIC, r, why, reason, cap);
}

static void check_sample(const struct sample *s)
{
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160];

    ck_assert_int_eq(route(s->body, &r, &why, reason, sizeof(reason)), OCB_OK);
    ck_assert_int_eq(why, OCB_ROUTE_OK);
    ck_assert_str_eq(r.topic, s->topic);
    ck_assert_str_eq(strrchr(s->topic, '/') + 1, r.notify_type);
    if (s->request_id != NULL)
        ck_assert_str_eq(r.request_id, s->request_id);
    else
        ck_assert_ptr_null(r.request_id);
    if (s->command_id != NULL) {
        ck_assert_int_eq(r.kind, OCB_ROUTE_COMMAND_STATUS);
        ck_assert_str_eq(r.command_id, s->command_id);
    } else {
        ck_assert_int_eq(r.kind, OCB_ROUTE_NOTIFY);
        ck_assert_ptr_null(r.command_id);
    }
    ck_assert(r.payload_utf8);
    route_cleanup(&r);
}

START_TEST(every_platform_sample_routes_to_its_topic)
{
    check_sample(&samples[_i]);
}
END_TEST

/* Bodies that must be refused, with the rejection class and a reason fragment. */
struct bad {
    const char *body;
    size_t len; /* 0 = strlen */
    enum ocb_route_reject why;
    const char *reason;
};

static const struct bad bad_bodies[] = {
    {"", 0, OCB_ROUTE_BAD_JSON, "not valid JSON"},
    {"not json", 0, OCB_ROUTE_BAD_JSON, "not valid JSON"},
    {"{\"notifyType\":\"deviceAdded\"", 0, OCB_ROUTE_BAD_JSON, "not valid JSON"},
    {"[{\"notifyType\":\"deviceAdded\"}]", 0, OCB_ROUTE_BAD_JSON, "not a JSON object"},
    {"\"deviceAdded\"", 0, OCB_ROUTE_BAD_JSON, "not a JSON object"},
    {"{}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"deviceId\":\"d1\"}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"deviceId\":\"d1\",\"commandId\":\"c1\"}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"deviceId\":\"d1\",\"result\":{}}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"deviceId\":\"d1\",\"commandId\":7,\"result\":{}}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"notifyType\":null,\"deviceId\":\"d1\"}", 0, OCB_ROUTE_BAD_JSON, "no notifyType"},
    {"{\"notifyType\":42}", 0, OCB_ROUTE_BAD_JSON, "notifyType is not a string"},
    {"{\"notifyType\":[\"deviceAdded\"]}", 0, OCB_ROUTE_BAD_JSON, "notifyType is not a string"},
    {"{\"notifyType\":\"deviceAdded\",\"notifyType\":\"x\"}", 0, OCB_ROUTE_BAD_JSON, "repeats"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d1\",\"deviceId\":\"d2\"}", 0, OCB_ROUTE_BAD_JSON,
     "repeats"},
    {"{\"notifyType\":\"a\",\"header\":{\"deviceId\":\"d1\",\"deviceId\":\"d2\"}}", 0,
     OCB_ROUTE_BAD_JSON, "repeats"},
    /* notifyType levels */
    {"{\"notifyType\":\"\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"a/b\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"a+\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"#\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"a\\u0000b\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"a\\nb\"}", 0, OCB_ROUTE_BAD_TOPIC, "notifyType is not a valid"},
    {"{\"notifyType\":\"command\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"commandCancel\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"commandResponse\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"commandStatus\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"api\",\"deviceId\":\"d\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"apiResponse\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    /* deviceId levels */
    {"{\"notifyType\":\"a\",\"deviceId\":\"\"}", 0, OCB_ROUTE_BAD_TOPIC, "deviceId is not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"_\"}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"a\",\"header\":{\"deviceId\":\"_\"}}", 0, OCB_ROUTE_BAD_TOPIC, "reserved"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"x/y\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"+\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d#\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"\\u0000\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"dev\\u0000ice\"}", 0, OCB_ROUTE_BAD_TOPIC,
     "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\\u001f\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\\u007f\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\\u0085\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\\uffff\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\\ufdd0\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\xff\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\xc0\xaf\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\xed\xa0\x80\"}", 0, OCB_ROUTE_BAD_TOPIC,
     "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\xe2\x82\"}", 0, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    {"{\"notifyType\":\"a\",\"deviceId\":7}", 0, OCB_ROUTE_BAD_TOPIC, "deviceId is not a string"},
    {"{\"notifyType\":\"a\",\"deviceId\":{\"id\":\"d1\"}}", 0, OCB_ROUTE_BAD_TOPIC,
     "deviceId is not a string"},
    {"{\"notifyType\":\"a\",\"header\":{\"deviceId\":true}}", 0, OCB_ROUTE_BAD_TOPIC,
     "header.deviceId is not a string"},
    /* a raw NUL inside the body (not escaped) */
    {"{\"notifyType\":\"a\",\"deviceId\":\"d\0x\"}", 35, OCB_ROUTE_BAD_TOPIC, "not a valid"},
    /* command status callbacks with bad ids */
    {"{\"deviceId\":\"a/b\",\"commandId\":\"c1\",\"result\":{}}", 0, OCB_ROUTE_BAD_TOPIC,
     "deviceId is not a valid"},
    {"{\"deviceId\":\"d1\",\"commandId\":\"\",\"result\":{}}", 0, OCB_ROUTE_BAD_TOPIC, "commandId"},
    {"{\"deviceId\":\"d1\",\"commandId\":\"c\\n1\",\"result\":{}}", 0, OCB_ROUTE_BAD_TOPIC,
     "commandId"},
};
#define N_BAD (sizeof(bad_bodies) / sizeof(bad_bodies[0]))

START_TEST(hostile_bodies_are_refused_with_a_reason)
{
    const struct bad *b = &bad_bodies[_i];
    size_t len = b->len ? b->len : strlen(b->body);
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160];

    ck_assert_msg(route_from_push("iot", "demoApp", b->body, len, MAX_TOPIC, &r, &why, reason,
                                  sizeof(reason)) == OCB_ERR_INVALID,
                  "body %zu was accepted: %s", (size_t)_i, b->body);
    ck_assert_msg(why == b->why, "body %zu: class %d, want %d (%s)", (size_t)_i, why, b->why,
                  reason);
    ck_assert_msg(strstr(reason, b->reason) != NULL, "body %zu: reason '%s' lacks '%s'", (size_t)_i,
                  reason, b->reason);
    ck_assert_ptr_null(strchr(reason, '\n'));
    ck_assert_ptr_null(r.topic);
}
END_TEST

/* Edge cases that must route: fallbacks, unicode, future types, requestId choice. */
static const struct sample good_bodies[] = {
    /* null deviceId falls back to header.deviceId, then to "_" */
    {"{\"notifyType\":\"x\",\"deviceId\":null,\"header\":{\"deviceId\":\"h1\"}}",
     "iot/demoApp/h1/x", NULL, NULL},
    {"{\"notifyType\":\"x\",\"deviceId\":null}", "iot/demoApp/_/x", NULL, NULL},
    /* the body's deviceId wins over the header's; a header that is not an object is ignored */
    {"{\"notifyType\":\"x\",\"deviceId\":\"b1\",\"header\":{\"deviceId\":\"h1\"}}",
     "iot/demoApp/b1/x", NULL, NULL},
    {"{\"notifyType\":\"x\",\"header\":\"h\"}", "iot/demoApp/_/x", NULL, NULL},
    /* a future notifyType and non-ASCII ids, escaped and raw */
    {"{\"notifyType\":\"futureThing\",\"deviceId\":\"\\u8bbe\\u5907-1\"}",
     "iot/demoApp/\xe8\xae\xbe\xe5\xa4\x87-1/futureThing", NULL, NULL},
    /* the deviceDatasChanged doc bug: "service" as an array */
    {"{\"notifyType\":\"deviceDatasChanged\",\"deviceId\":\"d\xc3\xa9\",\"service\":[{"
     "\"serviceId\":\"a\"},{\"serviceId\":\"b\"}]}",
     "iot/demoApp/d\xc3\xa9/deviceDatasChanged", NULL, NULL},
    /* an escaped backslash before "u0000" is not a NUL escape */
    {"{\"notifyType\":\"x\",\"deviceId\":\"a\\\\u0000\"}", "iot/demoApp/a\\u0000/x", NULL, NULL},
    /* requestId: the body's, else the header's; unusable ones are dropped, not fatal */
    {"{\"notifyType\":\"x\",\"requestId\":\"r-1\",\"header\":{\"requestId\":\"h-1\"}}",
     "iot/demoApp/_/x", "r-1", NULL},
    {"{\"notifyType\":\"x\",\"requestId\":null,\"header\":{\"requestId\":\"h-1\"}}",
     "iot/demoApp/_/x", "h-1", NULL},
    {"{\"notifyType\":\"x\",\"requestId\":5}", "iot/demoApp/_/x", NULL, NULL},
    {"{\"notifyType\":\"x\",\"requestId\":\"a\\u0001b\"}", "iot/demoApp/_/x", NULL, NULL},
    /* a status callback with a null result detail and no deviceId */
    {"{\"commandId\":\"c1\",\"result\":{\"resultCode\":\"SENT\",\"resultDetail\":null}}",
     "iot/demoApp/_/commandStatus", NULL, "c1"},
};
#define N_GOOD (sizeof(good_bodies) / sizeof(good_bodies[0]))

START_TEST(edge_cases_route)
{
    check_sample(&good_bodies[_i]);
}
END_TEST

START_TEST(topic_length_is_capped)
{
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160], body[600];
    char dev[400];

    memset(dev, 'd', sizeof(dev) - 1);
    dev[sizeof(dev) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"notifyType\":\"x\",\"deviceId\":\"%s\"}", dev);
    /* "iot/demoApp/" + 399 + "/x" = 413 bytes */
    ck_assert_int_eq(route_from_push("iot", "demoApp", body, strlen(body), 413, &r, &why, reason,
                                     sizeof(reason)),
                     OCB_OK);
    ck_assert_uint_eq(strlen(r.topic), 413);
    route_cleanup(&r);
    ck_assert_int_eq(route_from_push("iot", "demoApp", body, strlen(body), 412, &r, &why, reason,
                                     sizeof(reason)),
                     OCB_ERR_INVALID);
    ck_assert_int_eq(why, OCB_ROUTE_BAD_TOPIC);
    ck_assert_ptr_nonnull(strstr(reason, "413 bytes"));
}
END_TEST

START_TEST(app_id_and_payload_checks)
{
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160];
    const char *body = "{\"notifyType\":\"x\",\"data\":\"\xff\"}";

    ck_assert_int_eq(route_from_push("iot", "a+b", "{\"notifyType\":\"x\"}", 17, MAX_TOPIC, &r,
                                     &why, reason, sizeof(reason)),
                     OCB_ERR_INVALID);
    ck_assert_int_eq(why, OCB_ROUTE_BAD_TOPIC);
    /* Invalid UTF-8 outside the ids is forwarded, but not flagged as UTF-8. */
    ck_assert_int_eq(route(body, &r, &why, reason, sizeof(reason)), OCB_OK);
    ck_assert(!r.payload_utf8);
    route_cleanup(&r);
    /* Reading never goes past len: the same body cut short is not JSON. */
    ck_assert_int_eq(
        route_from_push("iot", "demoApp", body, 10, MAX_TOPIC, &r, &why, reason, sizeof(reason)),
        OCB_ERR_INVALID);
    ck_assert_int_eq(why, OCB_ROUTE_BAD_JSON);
    route_cleanup(NULL);
}
END_TEST

START_TEST(level_validation)
{
    ck_assert(grammar_level_valid("abc", 3));
    ck_assert(grammar_level_valid("\xf0\x9f\x98\x80", 4)); /* U+1F600 */
    ck_assert(!grammar_level_valid("", 0));
    ck_assert(!grammar_level_valid("a b\x7f", 4));
    ck_assert(!grammar_level_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    ck_assert(!grammar_level_valid("\xef\xbf\xbe", 3));     /* U+FFFE */
    ck_assert(!grammar_level_valid("\xf0\x9f\xbf\xbf", 4)); /* U+1FFFF */
    ck_assert(grammar_utf8_valid("\xe4\xb8\xad", 3));
    ck_assert(!grammar_utf8_valid("\xe0\x80\xaf", 3)); /* overlong */
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const route_tests[] = {every_platform_sample_routes_to_its_topic,
                                        hostile_bodies_are_refused_with_a_reason,
                                        edge_cases_route,
                                        topic_length_is_capped,
                                        app_id_and_payload_checks,
                                        level_validation,
                                        NULL};
    const struct th_loop route_loops[] = {
        {every_platform_sample_routes_to_its_topic, 0, (int)N_SAMPLES},
        {hostile_bodies_are_refused_with_a_reason, 0, (int)N_BAD},
        {edge_cases_route, 0, (int)N_GOOD},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "route", .tests = route_tests, .loops = route_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "route", cases);
}
