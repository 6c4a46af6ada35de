/*
 * test_commands.c: MQTT commands through the real bridge to ocbridge-sim
 * (mutual TLS) and back: the exact REST request, commandResponse, command
 * statuses, MQTT 5 request/response (also with the real mosquitto_rr),
 * cancel, and every invalid payload.  Failure paths (tokens, throttling,
 * faults, outages, queues, shared groups) are in test_commands_faults.c.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "th_platform.h"
#include "th_main.h"

/* The access token of the last successful login/refresh recorded before seq. */
static char *token_before(int seq)
{
    cJSON *all = fx_requests("/iocm/app/sec");
    char *token = NULL;
    const cJSON *r;
    cJSON_ArrayForEach(r, all)
    {
        if (cJSON_GetObjectItem(r, "seq")->valueint > seq ||
            cJSON_GetObjectItem(r, "status")->valueint != 200)
            continue;
        cJSON *resp = cJSON_Parse(fx_str(r, "response"));
        free(token);
        token = strdup(fx_str(resp, "accessToken"));
        cJSON_Delete(resp);
    }
    cJSON_Delete(all);
    ck_assert_ptr_nonnull(token);
    return token;
}

START_TEST(create_exact_request_answer_and_statuses)
{
    char topic[256], answer_topic[256], status_topic[256], expected[1024];
    fx_start(NULL, NULL, NULL);
    /* A plain MQTT 3.1.1 requester: it correlates through correlationId. */
    struct th_mqtt *v4 = th_mqtt_connect(fx_broker.url, "requester-v4", 4);
    ck_assert_ptr_nonnull(v4);
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_topic(answer_topic, sizeof(answer_topic), APP, 0, "commandResponse");
    fx_topic(status_topic, sizeof(status_topic), APP, 0, "commandStatus");
    const char *payload = "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"on\":1,"
                          "\"level\":\"high\"},\"expireTime\":30,\"maxRetransmit\":2,"
                          "\"correlationId\":\"req-1\"}";
    ck_assert(th_mqtt_publish(v4, topic, payload, strlen(payload), 1, false, NULL, NULL, 0));

    cJSON *a = fx_answer(answer_topic, 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 201);
    ck_assert_str_eq(fx_str(a, "correlationId"), "req-1");
    ck_assert_str_eq(fx_str(a, "status"), "SENT");
    const char *command_id = fx_str(a, "commandId");
    ck_assert_ptr_nonnull(command_id);
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "platform"), "commandId"), command_id);

    /* Exactly one create, exactly as documented. */
    cJSON *reqs = fx_requests(CMD_PATH);
    ck_assert_int_eq(cJSON_GetArraySize(reqs), 1);
    const cJSON *r = cJSON_GetArrayItem(reqs, 0);
    ck_assert_str_eq(fx_str(r, "method"), "POST");
    ck_assert_str_eq(fx_str(r, "path"), CMD_PATH);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "query")), 0);
    const cJSON *h = cJSON_GetObjectItem(r, "headers");
    ck_assert_str_eq(fx_str(h, "app_key"), APP);
    ck_assert_str_eq(fx_str(h, "content-type"), "application/json");
    char *token = token_before(cJSON_GetObjectItem(r, "seq")->valueint);
    char bearer[128];
    snprintf(bearer, sizeof(bearer), "Bearer %s", token);
    ck_assert_str_eq(fx_str(h, "authorization"), bearer);
    free(token);
    snprintf(expected, sizeof(expected),
             "{\"deviceId\":\"%s\",\"command\":{\"serviceId\":\"Light\",\"method\":\"SET\","
             "\"paras\":{\"on\":1,\"level\":\"high\"}},\"callbackUrl\":\"http://127.0.0.1:%d/"
             "push/" APP "\",\"expireTime\":30,\"maxRetransmit\":2}",
             fx_devices[0], fx_bridge.port);
    cJSON *want = cJSON_Parse(expected);
    cJSON *got = cJSON_Parse(fx_str(r, "body"));
    ck_assert_msg(cJSON_Compare(want, got, true), "body %s", fx_str(r, "body"));
    cJSON_Delete(want);
    cJSON_Delete(got);

    /* The statuses come home through the callbackUrl onto commandStatus. */
    ck_assert_msg(fx_wait_on(status_topic, 3, WAIT_MS), "statuses missing");
    const char *seen[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < 3; i++) {
        cJSON *s = cJSON_Parse((const char *)fx_nth_on(status_topic, i)->payload);
        ck_assert_str_eq(fx_str(s, "commandId"), command_id);
        const char *rc = fx_str(cJSON_GetObjectItem(s, "result"), "resultCode");
        if (strcmp(rc, "SENT") == 0)
            seen[0] = "x";
        else if (strcmp(rc, "DELIVERED") == 0)
            seen[1] = "x";
        else if (strcmp(rc, "SUCCESSFUL") == 0)
            seen[2] = "x";
        cJSON_Delete(s);
    }
    ck_assert_msg(seen[0] && seen[1] && seen[2], "expected SENT, DELIVERED and SUCCESSFUL");
    cJSON_Delete(reqs);
    cJSON_Delete(a);

    /* The same through the mosquitto_pub binary. */
    char cmd[1024];
    fx_topic(topic, sizeof(topic), APP, 1, "command");
    fx_topic(answer_topic, sizeof(answer_topic), APP, 1, "commandResponse");
    snprintf(cmd, sizeof(cmd),
             "mosquitto_pub -p %d -q 1 -t '%s' -m '{\"serviceId\":\"S\",\"method\":\"M\","
             "\"paras\":{},\"correlationId\":7}'",
             fx_broker.port, topic);
    ck_assert_int_eq(system(cmd), 0);
    a = fx_answer(answer_topic, 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "correlationId")->valueint, 7);
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 2);

    ck_assert(fx_metric("ocb_commands_total{outcome=\"ok\"}") == 2);
    ck_assert(fx_metric("ocb_token_refreshes_total{kind=\"login\"}") >= 1);
    ck_assert(fx_metric("ocb_platform_request_seconds_count{op=\"createCommand\"}") == 2);
    ck_assert(fx_metric("ocb_command_queue_depth") == 0);

    /* An unknown device: the platform answers HTTP 200 with error body 100418 (create-command
     * errors, docs/platform-api.md 3.1); the bridge passes it on as a definite platform error. */
    snprintf(topic, sizeof(topic), "iot/%s/00000000-0000-4000-8000-000000000000/command", APP);
    snprintf(answer_topic, sizeof(answer_topic),
             "iot/%s/00000000-0000-4000-8000-000000000000/commandResponse", APP);
    fx_publish(topic, "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{}}");
    a = fx_answer(answer_topic, 0);
    fx_assert_platform_error(a, 200, "100418");
    cJSON_Delete(a);
    th_mqtt_free(v4);
    /* A clean exit: no leak or sanitizer report on the command path. */
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(mqtt5_response_topic_gets_answer_and_statuses)
{
    char topic[256];
    fx_start(NULL, NULL, NULL);
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    const char *payload = "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"on\":0}}";
    ck_assert(th_mqtt_publish(fx_client, topic, payload, strlen(payload), 1, false, "reply/me",
                              "corr\x01\x02", 6));
    /* The answer, then SENT, DELIVERED and SUCCESSFUL, all with our correlation data. */
    ck_assert_msg(fx_wait_on("reply/me", 4, WAIT_MS), "expected 4 messages on reply/me");
    for (size_t i = 0; i < 4; i++) {
        const struct th_msg *m = fx_nth_on("reply/me", i);
        ck_assert_uint_eq(m->correlation_len, 6);
        ck_assert(memcmp(m->correlation, "corr\x01\x02", 6) == 0);
    }
    cJSON *a = cJSON_Parse((const char *)fx_nth_on("reply/me", 0)->payload);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(a, "correlationId")));
    const char *id = fx_str(a, "commandId");
    for (size_t i = 1; i < 4; i++) {
        cJSON *s = cJSON_Parse((const char *)fx_nth_on("reply/me", i)->payload);
        ck_assert_str_eq(fx_str(s, "commandId"), id);
        cJSON_Delete(s);
    }
    /* A status for this commandId pushed under another app's URL is that app's business: it
     * goes to that app's commandStatus topic, never to this requester's response topic. */
    {
        char url[256], forged[512], other[256];
        struct th_http_resp r;

        snprintf(forged, sizeof(forged),
                 "{\"deviceId\":\"d\",\"commandId\":\"%s\",\"result\":{\"resultCode\":"
                 "\"FAILED\",\"resultDetail\":null}}",
                 id);
        snprintf(url, sizeof(url), "%s/push/pushOnly", fx_bridge.base);
        ck_assert(th_http("POST", url, forged, strlen(forged), NULL, &r));
        ck_assert_int_eq(r.status, 200);
        th_http_resp_free(&r);
        snprintf(other, sizeof(other), "iot/pushOnly/d/commandStatus");
        ck_assert(fx_wait_on(other, 1, WAIT_MS));
        th_sleep_ms(300);
        ck_assert_uint_eq(fx_count_on("reply/me"), 4);
    }
    cJSON_Delete(a);
    /* The ordinary topic got the answer too. */
    fx_topic(topic, sizeof(topic), APP, 0, "commandResponse");
    ck_assert(fx_wait_on(topic, 1, WAIT_MS));

    /* The real mosquitto_rr: publish with a response topic, print the answer. */
    char cmd[1024], out[4096];
    fx_topic(topic, sizeof(topic), APP, 2, "command");
    snprintf(cmd, sizeof(cmd),
             "mosquitto_rr -p %d -q 1 -t '%s' -e 'reply/rr' -W 10 "
             "-m '{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"x\":1}}'",
             fx_broker.port, topic);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    a = cJSON_Parse(out);
    ck_assert_msg(a != NULL, "mosquitto_rr printed %s", out);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")), "mosquitto_rr printed %s", out);
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 201);
    cJSON_Delete(a);
}
END_TEST

START_TEST(cancel_one_and_cancel_all)
{
    char topic[256], cancel[256], answer[256], path[256];
    fx_start(NULL, NULL, NULL);
    /* An offline device: commands stay PENDING and can be cancelled. */
    snprintf(path, sizeof(path), "/devices/%s/offline", fx_devices[3]);
    fx_sim_post(path, "{}");
    fx_topic(topic, sizeof(topic), APP, 3, "command");
    fx_topic(cancel, sizeof(cancel), APP, 3, "commandCancel");
    fx_topic(answer, sizeof(answer), APP, 3, "commandResponse");
    const char *cmd = "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":300}";
    fx_publish(topic, cmd);
    fx_publish(topic, cmd);
    fx_publish(topic, cmd);
    cJSON *a = fx_answer(answer, 0);
    ck_assert_str_eq(fx_str(a, "status"), "PENDING");
    char id[64];
    snprintf(id, sizeof(id), "%s", fx_str(a, "commandId"));
    cJSON_Delete(a);
    cJSON_Delete(fx_answer(answer, 2));

    char body[256];
    snprintf(body, sizeof(body), "{\"commandId\":\"%s\",\"correlationId\":\"c1\"}", id);
    fx_publish(cancel, body);
    a = fx_answer(answer, 3);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 200);
    ck_assert_str_eq(fx_str(a, "correlationId"), "c1");
    ck_assert_str_eq(fx_str(a, "commandId"), id);
    ck_assert_str_eq(fx_str(a, "status"), "CANCELED");
    cJSON_Delete(a);
    snprintf(path, sizeof(path), CMD_PATH "/%s", id);
    cJSON *reqs = fx_requests(path);
    ck_assert_int_eq(cJSON_GetArraySize(reqs), 1);
    ck_assert_str_eq(fx_str(cJSON_GetArrayItem(reqs, 0), "method"), "PUT");
    ck_assert_str_eq(fx_str(cJSON_GetArrayItem(reqs, 0), "body"), "{\"status\":\"CANCELED\"}");
    cJSON_Delete(reqs);

    fx_publish(cancel, "{\"all\":true}");
    a = fx_answer(answer, 4);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 201);
    ck_assert_ptr_nonnull(fx_str(a, "taskId"));
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(a, "platform"), "totalCount")->valueint, 2);
    cJSON_Delete(a);
    reqs = fx_requests("/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks");
    ck_assert_int_eq(cJSON_GetArraySize(reqs), 1);
    cJSON *got = cJSON_Parse(fx_str(cJSON_GetArrayItem(reqs, 0), "body"));
    ck_assert_str_eq(fx_str(got, "deviceId"), fx_devices[3]);
    ck_assert_int_eq(cJSON_GetArraySize(got), 1);
    cJSON_Delete(got);
    cJSON_Delete(reqs);

    /* Cancelling again is a definite platform error, passed on as such. */
    fx_publish(cancel, body);
    a = fx_answer(answer, 5);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")));
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "error"), "source"), "platform");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "retryable")));
    cJSON_Delete(a);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

/* Every invalid command, its topic, and the code it must get. */
static const struct {
    const char *leaf;
    const char *payload;
    const char *code;
} invalid[] = {
    {"command", "not json", "INVALID_PAYLOAD"},
    {"command", "[1]", "INVALID_PAYLOAD"},
    {"command", "{\"method\":\"M\",\"paras\":{}}", "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":7,\"method\":\"M\",\"paras\":{}}", "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"paras\":{}}", "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":[]}", "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\"}", "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":-5}",
     "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expireTime\":2.5}",
     "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"maxRetransmit\":4}",
     "INVALID_PAYLOAD"},
    {"command", "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"expiretime\":5}",
     "INVALID_PAYLOAD"},
    {"commandCancel", "{}", "INVALID_PAYLOAD"},
    {"commandCancel", "{\"all\":false}", "INVALID_PAYLOAD"},
    {"commandCancel", "{\"commandId\":5}", "INVALID_PAYLOAD"},
};

START_TEST(invalid_payloads_unknown_apps_and_oversize)
{
    char topic[256], answer[256];
    fx_start(NULL, NULL, ",\"max_command_bytes\":256");
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    size_t n = sizeof(invalid) / sizeof(invalid[0]);
    for (size_t i = 0; i < n; i++) {
        fx_topic(topic, sizeof(topic), APP, 0, invalid[i].leaf);
        fx_publish(topic, invalid[i].payload);
        cJSON *a = fx_answer(answer, i);
        fx_assert_bridge_error(a, invalid[i].code);
        ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "retryable")));
        cJSON_Delete(a);
    }
    /* Over platform.max_command_bytes. */
    char big[600];
    int len = snprintf(big, sizeof(big),
                       "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"x\":\"%0400d\"}}", 0);
    ck_assert_int_lt(len, (int)sizeof(big));
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_publish(topic, big);
    cJSON *a = fx_answer(answer, n);
    fx_assert_bridge_error(a, "PAYLOAD_TOO_LARGE");
    cJSON_Delete(a);

    /* An app the bridge does not know, and a push-only app (no secret). */
    const char *ok = "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":\"u\"}";
    fx_publish("iot/strangerApp/dev1/command", ok);
    a = fx_answer("iot/strangerApp/dev1/commandResponse", 0);
    fx_assert_bridge_error(a, "UNKNOWN_APP");
    ck_assert_str_eq(fx_str(a, "correlationId"), "u");
    cJSON_Delete(a);
    fx_publish("iot/pushOnly/dev1/command", ok);
    a = fx_answer("iot/pushOnly/dev1/commandResponse", 0);
    fx_assert_bridge_error(a, "COMMANDS_DISABLED");
    cJSON_Delete(a);

    /* None of it reached the platform. */
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 0);
    ck_assert(fx_metric("ocb_commands_total{outcome=\"INVALID_PAYLOAD\"}") == (double)n);
    ck_assert(fx_metric("ocb_commands_total{outcome=\"UNKNOWN_APP\"}") == 1);
}
END_TEST

START_TEST(retained_command_is_never_executed)
{
    char topic[256], answer[256];
    /* A retained command waiting on the broker before the bridge starts. */
    fx_start_platform(NULL, "iot/+/+/commandResponse");
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    const char *cmd = "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":\"r\"}";
    ck_assert(th_mqtt_publish(fx_client, topic, cmd, strlen(cmd), 1, true, NULL, NULL, 0));
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, NULL, true);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "RETAINED_COMMAND_IGNORED");
    ck_assert_str_eq(fx_str(a, "correlationId"), "r");
    cJSON_Delete(a);

    /* And one published retained while the bridge is subscribed. */
    fx_topic(topic, sizeof(topic), APP, 1, "command");
    fx_topic(answer, sizeof(answer), APP, 1, "commandResponse");
    ck_assert(th_mqtt_publish(fx_client, topic, cmd, strlen(cmd), 1, true, NULL, NULL, 0));
    a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "RETAINED_COMMAND_IGNORED");
    cJSON_Delete(a);

    /* Clearing it (an empty retained message) is no command and gets no second answer. */
    ck_assert(th_mqtt_publish(fx_client, topic, "", 0, 1, true, NULL, NULL, 0));
    ck_assert(th_log_wait(&fx_bridge.proc, "a retained command was cleared", WAIT_MS));
    th_sleep_ms(300);
    ck_assert_uint_eq(fx_count_on(answer), 1);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 0);
}
END_TEST

/* With spool.mode always, status callbacks reach MQTT through the spool; the requester's
 * response topic still gets every status (http_rx reports a status once it is durable). */
START_TEST(statuses_through_the_spool_reach_the_requester)
{
    char topic[256];

    setenv("OCB_SPOOL_MODE", "always", 1); /* inherited by the bridge fx_start() spawns */
    fx_start(NULL, NULL, NULL);
    unsetenv("OCB_SPOOL_MODE");
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    const char *payload = "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"on\":1}}";
    ck_assert(
        th_mqtt_publish(fx_client, topic, payload, strlen(payload), 1, false, "reply/sp", "c", 1));
    ck_assert_msg(fx_wait_on("reply/sp", 4, WAIT_MS), "expected the answer and 3 statuses");
    fx_topic(topic, sizeof(topic), APP, 0, "commandStatus");
    ck_assert(fx_wait_on(topic, 3, WAIT_MS));
    ck_assert(th_metric(&fx_bridge, NULL, "ocb_spool_written_total") >= 3);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const commands_tests[] = {create_exact_request_answer_and_statuses,
                                           mqtt5_response_topic_gets_answer_and_statuses,
                                           cancel_one_and_cancel_all,
                                           invalid_payloads_unknown_apps_and_oversize,
                                           retained_command_is_never_executed,
                                           statuses_through_the_spool_reach_the_requester,
                                           NULL};
    const struct th_case cases[] = {
        {.name = "commands", .timeout_s = 90, .tests = commands_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "commands", cases);
}
