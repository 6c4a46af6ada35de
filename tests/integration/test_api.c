/*
 * test_api.c: the device API over MQTT, end to end (real broker, simulator
 * and bridge): every operation's round trip on <prefix>/<app>/<dev|_>/api
 * and its apiResponse; the MQTT 5 response topic with its correlation data
 * (what mosquitto_rr does), where alone a register's psk goes; refusals that
 * never reach the platform (OPERATION_NOT_ALLOWED, INVALID_TOPIC,
 * UNKNOWN_OPERATION, UNKNOWN_APP); a device's whole life from MQTT only
 * (register, deviceAdded, bindDevice, reports in its history, a command,
 * delete, deviceDeleted); and the no-double rules against real faults: a
 * register whose answer is lost creates one device and answers
 * reconciled:true, a delete whose answer is lost answers ok, a read is
 * retried through 503s, and a write in flight when the bridge is killed is
 * answered after the restart.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "th_docker.h"
#include "th_main.h"
#include "th_platform.h"

#define REG_PATH    "/iocm/app/reg/v1.1.0/deviceCredentials"
#define DM_PATH     "/iocm/app/dm/v1.4.0/devices"
#define GROUPS_PATH "/iocm/app/devgroup/v1.3.0/devGroups"

static char state_dir[TH_PATH_MAX];

/* The bridge with app1 allowed every op (unless the test set fx_app_extra), a state dir. */
static void start_bridge(const char *platform_extra)
{
    static char cfg[4096];
    if (!fx_bridge.port)
        fx_bridge.port = th_free_port();
    if (!state_dir[0])
        th_path(state_dir, sizeof(state_dir), "state");
    fx_bridge_config(cfg, sizeof(cfg), &fx_bridge, "bridge-1", NULL, platform_extra);
    int n = (int)strlen(cfg);
    ck_assert(n > 0 && cfg[n - 1] == '}');
    cfg[n - 1] = '\0';
    n = snprintf(cfg + n - 1, sizeof(cfg) - (size_t)n + 1, ",\"state\":{\"dir\":\"%s\"}}",
                 state_dir);
    ck_assert(n > 0);
    th_bridge_start(&fx_bridge, cfg, false);
    ck_assert_msg(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS), "bridge not ready");
}

static void setup_all(void)
{
    fx_app_extra = ",\"api\":[\"all\"]";
    fx_start_platform(NULL, "iot/#");
    ck_assert(th_mqtt_subscribe(fx_client, "reply/#", 1));
}

/* Message m parsed, when it was published on topic with correlationId corr; else NULL. */
static cJSON *answer_of(const struct th_msg *m, const char *topic, const char *corr)
{
    if (strcmp(m->topic, topic) != 0)
        return NULL;
    cJSON *j = cJSON_Parse((const char *)m->payload);
    const char *c = j ? fx_str(j, "correlationId") : NULL;
    if (c && strcmp(c, corr) == 0)
        return j;
    cJSON_Delete(j);
    return NULL;
}

/* The apiResponse (on topic) whose correlationId is corr, parsed (caller deletes); NULL if none. */
static cJSON *find_answer(const char *topic, const char *corr)
{
    size_t total = th_mqtt_count(fx_client);
    for (size_t i = 0; i < total; i++) {
        cJSON *j = answer_of(th_mqtt_msg(fx_client, i), topic, corr);
        if (j)
            return j;
    }
    return NULL;
}

static size_t count_answers(const char *topic, const char *corr)
{
    size_t n = 0, total = th_mqtt_count(fx_client);
    for (size_t i = 0; i < total; i++) {
        cJSON *j = answer_of(th_mqtt_msg(fx_client, i), topic, corr);
        n += j != NULL;
        cJSON_Delete(j);
    }
    return n;
}

/* Publish {payload} with correlationId corr on iot/app1/<dev>/api; wait for its answer. */
static cJSON *api_call_wait(const char *dev, const char *corr, const char *payload, int wait_ms)
{
    char topic[256], answer[256], body[4096];
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/api", dev);
    snprintf(answer, sizeof(answer), "iot/" APP "/%s/apiResponse", dev);
    size_t n = strlen(payload);
    ck_assert(n >= 2 && payload[0] == '{');
    snprintf(body, sizeof(body), "{\"correlationId\":\"%s\"%s%s", corr, n > 2 ? "," : "",
             payload + 1);
    fx_publish(topic, body);
    cJSON *a = NULL;
    for (long long end = th_now_ms() + wait_ms; !(a = find_answer(answer, corr)); th_sleep_ms(30))
        ck_assert_msg(th_now_ms() < end, "no answer to %s on %s", body, answer);
    return a;
}

static cJSON *api_call(const char *dev, const char *corr, const char *payload)
{
    return api_call_wait(dev, corr, payload, WAIT_MS);
}

/* Assert an ok answer of op; returns a (for more checks). */
static cJSON *assert_ok(cJSON *a, const char *op)
{
    char *text = cJSON_PrintUnformatted(a);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")), "not ok: %s", text);
    ck_assert_msg(fx_str(a, "op") && strcmp(fx_str(a, "op"), op) == 0, "op: %s", text);
    free(text);
    return a;
}

/* How many of the simulator's devices have this nodeId. */
static int devices_with_node(const char *node)
{
    cJSON *all = fx_sim_call("GET", "/devices", NULL);
    int n = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, all)
    {
        const char *nid = fx_str(d, "nodeId");
        n += nid && strcmp(nid, node) == 0;
    }
    cJSON_Delete(all);
    return n;
}

/* The first serviceId of fx_devices[0] (for setShadow). */
static void first_service(char *out, size_t cap)
{
    cJSON *all = fx_sim_call("GET", "/devices", NULL);
    const cJSON *d;
    out[0] = '\0';
    cJSON_ArrayForEach(d, all)
    {
        const char *id = fx_str(d, "deviceId");
        if (!id || strcmp(id, fx_devices[0]) != 0)
            continue;
        const cJSON *svc = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "services"), 0);
        if (svc && fx_str(svc, "serviceId"))
            snprintf(out, cap, "%s", fx_str(svc, "serviceId"));
    }
    cJSON_Delete(all);
    ck_assert_msg(out[0], "device 0 has no service");
}

START_TEST(every_op_round_trips)
{
    char p[1024], svc[64], dev_id[128], group[128];
    const char *d0 = fx_devices[0];

    setup_all();
    start_bridge(NULL);
    first_service(svc, sizeof(svc));

    cJSON *a = assert_ok(api_call("_", "r1", "{\"op\":\"register\",\"nodeId\":\"NODE-RT-1\"}"),
                         "register");
    const cJSON *pl = cJSON_GetObjectItem(a, "platform");
    ck_assert_ptr_nonnull(fx_str(pl, "deviceId"));
    ck_assert_ptr_nonnull(fx_str(pl, "psk")); /* no response topic: apiResponse has it */
    snprintf(dev_id, sizeof(dev_id), "%s", fx_str(pl, "deviceId"));
    ck_assert_int_eq((int)cJSON_GetObjectItem(a, "httpStatus")->valuedouble, 200);
    cJSON_Delete(a);

    a = assert_ok(api_call(d0, "g1", "{\"op\":\"get\"}"), "get");
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "platform"), "deviceId"), d0);
    cJSON_Delete(a);
    a = assert_ok(api_call("_", "l1", "{\"op\":\"list\",\"pageSize\":50}"), "list");
    ck_assert(cJSON_GetArraySize(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "devices")) >= 3);
    cJSON_Delete(a);
    a = assert_ok(api_call(d0, "u1", "{\"op\":\"update\",\"name\":\"kitchen meter\"}"), "update");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(a, "platform")));
    cJSON_Delete(a);
    a = assert_ok(api_call(d0, "g2", "{\"op\":\"get\"}"), "get");
    ck_assert_str_eq(
        fx_str(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "deviceInfo"), "name"),
        "kitchen meter");
    cJSON_Delete(a);
    cJSON_Delete(assert_ok(api_call(d0, "h1", "{\"op\":\"history\",\"pageSize\":5}"), "history"));
    cJSON_Delete(assert_ok(api_call(d0, "c1", "{\"op\":\"capabilities\"}"), "capabilities"));
    cJSON_Delete(assert_ok(api_call(d0, "s1", "{\"op\":\"shadow\"}"), "shadow"));
    snprintf(p, sizeof(p),
             "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"%s\",\"desired\":{"
             "\"reportInterval\":60}}]}",
             svc);
    cJSON_Delete(assert_ok(api_call(d0, "s2", p), "setShadow"));

    a = assert_ok(
        api_call("_", "gc", "{\"op\":\"groupCreate\",\"name\":\"floor1\",\"maxDevNum\":10}"),
        "groupCreate");
    ck_assert_ptr_nonnull(fx_str(cJSON_GetObjectItem(a, "platform"), "id"));
    snprintf(group, sizeof(group), "%s", fx_str(cJSON_GetObjectItem(a, "platform"), "id"));
    cJSON_Delete(a);
    cJSON_Delete(
        assert_ok(api_call("_", "gl", "{\"op\":\"groupList\",\"name\":\"floor1\"}"), "groupList"));
    snprintf(p, sizeof(p), "{\"op\":\"groupGet\",\"groupId\":\"%s\"}", group);
    cJSON_Delete(assert_ok(api_call("_", "gg", p), "groupGet"));
    snprintf(p, sizeof(p), "{\"op\":\"groupUpdate\",\"groupId\":\"%s\",\"description\":\"f1\"}",
             group);
    cJSON_Delete(assert_ok(api_call("_", "gu", p), "groupUpdate"));
    snprintf(p, sizeof(p), "{\"op\":\"groupAdd\",\"groupId\":\"%s\",\"deviceIds\":[\"%s\"]}", group,
             d0);
    cJSON_Delete(assert_ok(api_call("_", "ga", p), "groupAdd"));
    snprintf(p, sizeof(p), "{\"op\":\"groupMembers\",\"groupId\":\"%s\"}", group);
    a = assert_ok(api_call("_", "gm", p), "groupMembers");
    ck_assert_str_eq(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "deviceIds"), 0)
            ->valuestring,
        d0);
    cJSON_Delete(a);
    snprintf(p, sizeof(p), "{\"op\":\"groupRemove\",\"groupId\":\"%s\",\"deviceIds\":[\"%s\"]}",
             group, d0);
    cJSON_Delete(assert_ok(api_call("_", "gr", p), "groupRemove"));
    snprintf(p, sizeof(p), "{\"op\":\"groupDelete\",\"groupId\":\"%s\"}", group);
    cJSON_Delete(assert_ok(api_call("_", "gd", p), "groupDelete"));
    /* A definite platform error is passed on. */
    a = api_call("_", "gd2", p);
    fx_assert_platform_error(a, 404, "100603");
    ck_assert_str_eq(fx_str(a, "op"), "groupDelete");
    cJSON_Delete(a);

    cJSON_Delete(assert_ok(api_call(dev_id, "d1", "{\"op\":\"delete\"}"), "delete"));
    ck_assert_int_eq(devices_with_node("NODE-RT-1"), 0);
    a = api_call(dev_id, "d2", "{\"op\":\"get\"}");
    fx_assert_platform_error(a, 404, "100403");
    cJSON_Delete(a);
    ck_assert_int_eq(
        (int)fx_metric("ocb_api_requests_total{app=\"" APP "\",op=\"get\",result=\"ok\"}"), 2);
    ck_assert_int_eq((int)fx_metric("ocb_api_requests_total{app=\"" APP
                                    "\",op=\"get\",result=\"platform_error\"}"),
                     1);
}
END_TEST

START_TEST(response_topic_gets_the_answer_and_alone_the_psk)
{
    setup_all();
    start_bridge(NULL);
    const char *req = "{\"op\":\"register\",\"nodeId\":\"NODE-RR-1\",\"correlationId\":\"rr1\"}";
    ck_assert(th_mqtt_publish(fx_client, "iot/" APP "/_/api", req, strlen(req), 1, false,
                              "reply/me", "corr\x01\x02", 6));
    ck_assert_msg(fx_wait_on("reply/me", 1, WAIT_MS), "no answer on the response topic");
    const struct th_msg *m = fx_nth_on("reply/me", 0);
    ck_assert_uint_eq(m->correlation_len, 6);
    ck_assert(memcmp(m->correlation, "corr\x01\x02", 6) == 0);
    cJSON *a = assert_ok(cJSON_Parse((const char *)m->payload), "register");
    ck_assert_ptr_nonnull(fx_str(cJSON_GetObjectItem(a, "platform"), "psk"));
    cJSON_Delete(a);
    ck_assert_msg(fx_wait_on("iot/" APP "/_/apiResponse", 1, WAIT_MS), "no apiResponse copy");
    a = assert_ok(cJSON_Parse((const char *)fx_nth_on("iot/" APP "/_/apiResponse", 0)->payload),
                  "register");
    ck_assert_ptr_nonnull(fx_str(cJSON_GetObjectItem(a, "platform"), "deviceId"));
    ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "psk"));
    cJSON_Delete(a);

    /* A read answers on both, the same. */
    const char *get = "{\"op\":\"get\",\"correlationId\":\"rr2\"}";
    char topic[256];
    fx_topic(topic, sizeof(topic), APP, 1, "api");
    ck_assert(th_mqtt_publish(fx_client, topic, get, strlen(get), 1, false, "reply/me", "c2", 2));
    ck_assert_msg(fx_wait_on("reply/me", 2, WAIT_MS), "no second answer on the response topic");
    a = assert_ok(cJSON_Parse((const char *)fx_nth_on("reply/me", 1)->payload), "get");
    ck_assert_str_eq(fx_str(a, "correlationId"), "rr2");
    cJSON_Delete(a);
}
END_TEST

/* The real mosquitto_rr: it sets a response topic and correlation data and waits. */
START_TEST(mosquitto_rr_gets_its_answer)
{
    char rr[TH_PATH_MAX], port[16];
    struct th_proc p;

    if (!th_which("mosquitto_rr", rr, sizeof(rr))) {
        fprintf(stderr, "SKIP: mosquitto_rr is not installed (mosquitto-clients)\n");
        return;
    }
    setup_all();
    start_bridge(NULL);
    snprintf(port, sizeof(port), "%d", fx_broker.port);
    char *argv[] = {rr,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    port,
                    "-t",
                    "iot/" APP "/_/api",
                    "-e",
                    "rr/me",
                    "-W",
                    "20",
                    "-m",
                    "{\"op\":\"list\",\"pageSize\":10}",
                    NULL};
    ck_assert_int_eq(th_run(&p, "mosquitto_rr", argv, 2 * WAIT_MS), 0);
    char *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(out);
    cJSON *a = cJSON_Parse(out);
    ck_assert_msg(a != NULL, "mosquitto_rr printed: %s", out);
    assert_ok(a, "list");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(a, "correlationId")));
    ck_assert_int_ge(
        (int)cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "totalCount")->valuedouble, 3);
    cJSON_Delete(a);
    free(out);
}
END_TEST

START_TEST(refusals_never_reach_the_platform)
{
    char topic[256];
    fx_app_extra = ""; /* the default: read only */
    fx_start_platform(NULL, "iot/#");
    start_bridge(NULL);
    int before = fx_count_prefix(NULL, "/iocm/app/reg");

    cJSON *a = api_call("_", "n1", "{\"op\":\"register\",\"nodeId\":\"NODE-NO\"}");
    fx_assert_bridge_error(a, "OPERATION_NOT_ALLOWED");
    ck_assert_str_eq(fx_str(a, "op"), "register");
    cJSON_Delete(a);
    a = api_call(fx_devices[0], "n2", "{\"op\":\"delete\"}");
    fx_assert_bridge_error(a, "OPERATION_NOT_ALLOWED");
    cJSON_Delete(a);
    a = api_call("_", "n3", "{\"op\":\"get\"}"); /* an op on a device, published on _ */
    fx_assert_bridge_error(a, "INVALID_TOPIC");
    cJSON_Delete(a);
    a = api_call("_", "n4", "{\"op\":\"frobnicate\"}");
    fx_assert_bridge_error(a, "UNKNOWN_OPERATION");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(a, "op")));
    cJSON_Delete(a);
    a = api_call(fx_devices[0], "n5", "{\"op\":\"get\",\"bogus\":1}");
    fx_assert_bridge_error(a, "INVALID_PAYLOAD");
    cJSON_Delete(a);
    /* An app that is not configured: the answer commands get. */
    const char *p = "{\"op\":\"list\",\"correlationId\":\"n6\"}";
    fx_publish("iot/nosuchApp/_/api", p);
    const struct th_msg *m = th_mqtt_wait_topic(fx_client, "iot/nosuchApp/_/apiResponse", WAIT_MS);
    ck_assert_ptr_nonnull(m);
    a = cJSON_Parse((const char *)m->payload);
    fx_assert_bridge_error(a, "UNKNOWN_APP");
    cJSON_Delete(a);
    /* A read works. */
    cJSON_Delete(assert_ok(api_call(fx_devices[0], "n7", "{\"op\":\"get\"}"), "get"));

    ck_assert_int_eq(fx_count_prefix(NULL, "/iocm/app/reg"), before);
    ck_assert_int_eq(fx_count_prefix(NULL, DM_PATH), 1); /* the one get */
    ck_assert_int_eq(devices_with_node("NODE-NO"), 0);
    ck_assert_int_eq((int)fx_metric("ocb_api_requests_total{app=\"" APP
                                    "\",op=\"register\",result=\"OPERATION_NOT_ALLOWED\"}"),
                     1);
    fx_topic(topic, sizeof(topic), APP, 0, "apiResponse");
    ck_assert_uint_eq(count_answers(topic, "n2"), 1);
}
END_TEST

/* The first message on topic whose payload contains needle, waited for. */
static bool wait_payload(const char *topic, const char *needle, int wait_ms)
{
    for (long long end = th_now_ms() + wait_ms; th_now_ms() < end; th_sleep_ms(50)) {
        size_t total = th_mqtt_count(fx_client);
        for (size_t i = 0; i < total; i++) {
            const struct th_msg *m = th_mqtt_msg(fx_client, i);
            if (strcmp(m->topic, topic) == 0 && strstr((const char *)m->payload, needle))
                return true;
        }
    }
    return false;
}

START_TEST(a_device_lives_its_whole_life_over_mqtt)
{
    char dev[128], topic[256], path[256];

    fx_app_extra = ",\"api\":[\"all\"],\"subscribe\":[\"deviceAdded\",\"bindDevice\","
                   "\"deviceInfoChanged\",\"deviceDataChanged\",\"deviceDeleted\"]";
    fx_start_platform(NULL, "iot/#");
    start_bridge(",\"manage_subscriptions\":true");
    for (long long end = th_now_ms() + WAIT_MS;; th_sleep_ms(100)) {
        cJSON *subs = fx_sim_call("GET", "/subscriptions", NULL);
        int n = cJSON_GetArraySize(subs);
        cJSON_Delete(subs);
        if (n >= 5)
            break;
        ck_assert_msg(th_now_ms() < end, "the bridge did not subscribe (%d of 5)", n);
    }

    cJSON *a = assert_ok(
        api_call("_", "life1", "{\"op\":\"register\",\"nodeId\":\"NODE-LIFE\",\"timeout\":0}"),
        "register");
    snprintf(dev, sizeof(dev), "%s", fx_str(cJSON_GetObjectItem(a, "platform"), "deviceId"));
    cJSON_Delete(a);
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/deviceAdded", dev);
    ck_assert_msg(th_mqtt_wait_topic(fx_client, topic, WAIT_MS), "no deviceAdded");

    snprintf(path, sizeof(path), "/devices/%s/bind", dev);
    fx_sim_post(path, "{}");
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/bindDevice", dev);
    ck_assert_msg(th_mqtt_wait_topic(fx_client, topic, WAIT_MS), "no bindDevice");
    snprintf(path, sizeof(path), "/devices/%s/report", dev);
    fx_sim_post(path, NULL);
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/deviceDataChanged", dev);
    ck_assert_msg(th_mqtt_wait_topic(fx_client, topic, WAIT_MS), "no report");

    a = assert_ok(api_call(dev, "life2", "{\"op\":\"history\"}"), "history");
    ck_assert_int_ge(
        (int)cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "totalCount")->valuedouble, 1);
    cJSON_Delete(a);

    snprintf(topic, sizeof(topic), "iot/" APP "/%s/command", dev);
    fx_publish(topic, "{\"serviceId\":\"Meter\",\"method\":\"SET\",\"paras\":{\"v\":1},"
                      "\"correlationId\":\"life3\"}");
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/commandResponse", dev);
    ck_assert_msg(wait_payload(topic, "\"life3\"", WAIT_MS), "no command answer");
    ck_assert_msg(wait_payload(topic, "\"ok\":true", WAIT_MS), "the command failed");
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 1);

    cJSON_Delete(assert_ok(api_call(dev, "life4", "{\"op\":\"delete\"}"), "delete"));
    snprintf(topic, sizeof(topic), "iot/" APP "/%s/deviceDeleted", dev);
    ck_assert_msg(th_mqtt_wait_topic(fx_client, topic, WAIT_MS), "no deviceDeleted");
}
END_TEST

START_TEST(a_register_whose_answer_is_lost_is_reconciled)
{
    setup_all();
    start_bridge(",\"timeout_ms\":1500,\"command_deadline_s\":30");
    fx_sim_post("/faults", "{\"path_prefix\":\"" REG_PATH "\",\"method\":\"POST\","
                           "\"drop_after\":true,\"count\":1}");
    cJSON *a =
        api_call_wait("_", "lost1", "{\"op\":\"register\",\"nodeId\":\"NODE-LOST\"}", 2 * WAIT_MS);
    assert_ok(a, "register");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "reconciled")));
    const cJSON *dinfo = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "deviceInfo");
    ck_assert_str_eq(fx_str(dinfo, "nodeId"), "NODE-LOST");
    cJSON_Delete(a);
    ck_assert_int_eq(devices_with_node("NODE-LOST"), 1);
    ck_assert_int_eq(fx_count("POST", REG_PATH, -1), 1); /* never sent again */
    ck_assert_int_ge(fx_count_prefix(NULL, DM_PATH), 1); /* the query */
}
END_TEST

START_TEST(a_delete_whose_answer_is_lost_answers_ok)
{
    char path[256];
    setup_all();
    start_bridge(",\"timeout_ms\":1500,\"command_deadline_s\":30");
    snprintf(path, sizeof(path), DM_PATH "/%s", fx_devices[2]);
    char rule[512];
    snprintf(rule, sizeof(rule),
             "{\"path_prefix\":\"%s\",\"method\":\"DELETE\",\"drop_after\":true,\"count\":1}",
             path);
    fx_sim_post("/faults", rule);
    cJSON *a = api_call_wait(fx_devices[2], "del1", "{\"op\":\"delete\"}", 2 * WAIT_MS);
    assert_ok(a, "delete");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "reconciled")));
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("DELETE", path, -1), 2);
}
END_TEST

START_TEST(a_read_is_retried_through_503s)
{
    char path[256];
    setup_all();
    start_bridge(NULL);
    snprintf(path, sizeof(path), DM_PATH "/%s", fx_devices[1]);
    char rule[512];
    snprintf(rule, sizeof(rule),
             "{\"path_prefix\":\"%s\",\"method\":\"GET\",\"status\":503,"
             "\"count\":2}",
             path);
    fx_sim_post("/faults", rule);
    cJSON *a = assert_ok(api_call(fx_devices[1], "rd1", "{\"op\":\"get\"}"), "get");
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "platform"), "deviceId"), fx_devices[1]);
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("GET", path, 503), 2);
    ck_assert_int_eq(fx_count("GET", path, 200), 1);
}
END_TEST

START_TEST(a_write_in_flight_at_a_kill_is_answered_after_the_restart)
{
    setup_all();
    start_bridge(",\"command_deadline_s\":60,\"timeout_ms\":8000");
    fx_sim_post("/faults", "{\"path_prefix\":\"" REG_PATH "\",\"method\":\"POST\","
                           "\"latency_ms\":3000,\"count\":1}");
    fx_publish("iot/" APP "/_/api",
               "{\"op\":\"register\",\"nodeId\":\"NODE-KILL\",\"correlationId\":\"k1\"}");
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"sending\"}", 1, WAIT_MS),
        "the register never went out");
    /* The row says sending before the request reaches the platform: kill only once it has. */
    ck_assert_msg(fx_wait_fault_hits(1, WAIT_MS), "the register never reached the platform");
    th_stop(&fx_bridge.proc, SIGKILL, 5000);
    ck_assert_uint_eq(count_answers("iot/" APP "/_/apiResponse", "k1"), 0);
    /* The platform finishes the register the dead bridge sent. */
    ck_assert(fx_wait_count("POST", REG_PATH, -1, 1, WAIT_MS));
    start_bridge(",\"command_deadline_s\":60,\"timeout_ms\":2000");
    for (long long end = th_now_ms() + 2 * WAIT_MS;
         count_answers("iot/" APP "/_/apiResponse", "k1") < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "the journaled register was not answered");
    cJSON *a = find_answer("iot/" APP "/_/apiResponse", "k1");
    assert_ok(a, "register");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "reconciled")));
    cJSON_Delete(a);
    ck_assert_int_eq(devices_with_node("NODE-KILL"), 1);
    ck_assert_int_eq(fx_count("POST", REG_PATH, -1), 1);
    ck_assert_int_eq((int)fx_metric("ocb_journal_recovered_total{state=\"sending\"}"), 1);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tests[] = {every_op_round_trips,
                                  response_topic_gets_the_answer_and_alone_the_psk,
                                  mosquitto_rr_gets_its_answer,
                                  refusals_never_reach_the_platform,
                                  a_device_lives_its_whole_life_over_mqtt,
                                  a_register_whose_answer_is_lost_is_reconciled,
                                  a_delete_whose_answer_is_lost_answers_ok,
                                  a_read_is_retried_through_503s,
                                  a_write_in_flight_at_a_kill_is_answered_after_the_restart,
                                  NULL};
    const struct th_case cases[] = {{.name = "api", .timeout_s = 150, .tests = tests},
                                    {.name = NULL}};

    return th_main(argc, argv, "api", cases);
}
