/*
 * test_commands_reconcile.c: creates never double.  The platform creates a
 * command and the connection drops before its 201 arrives (the simulator's
 * drop_after fault): the bridge must query the device's commands and adopt
 * that one instead of creating a second.  A create that never reached the
 * platform's logic is created once; two identical commands stay two; and
 * when not even the query gets through before the deadline the answer says
 * the outcome is unknown.  Counted by what the simulator holds, never by time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_platform.h"
#include "th_main.h"

#define SLOW ",\"command_deadline_s\":20"

static void publish_cmd(int dev, const char *correlation, int value)
{
    char topic[256], payload[256];
    fx_topic(topic, sizeof(topic), APP, dev, "command");
    snprintf(payload, sizeof(payload),
             "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"level\":%d,\"on\":true},"
             "\"correlationId\":\"%s\"}",
             value, correlation);
    fx_publish(topic, payload);
}

/* The commands the simulator holds for device dev (caller deletes). */
static cJSON *sim_commands(int dev)
{
    char path[160];
    snprintf(path, sizeof(path), "/commands?deviceId=%s", fx_devices[dev]);
    cJSON *all = fx_sim_call("GET", path, NULL);
    ck_assert(cJSON_IsArray(all));
    return all;
}

static const char *command_id_of(const cJSON *resource)
{
    return fx_str(resource, "commandId");
}

static void assert_ok(const cJSON *a, bool reconciled)
{
    char *text = cJSON_PrintUnformatted(a);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")), "not ok: %s", text);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(a, "reconciled")) == reconciled,
                  "reconciled should be %d: %s", reconciled, text);
    ck_assert_msg(fx_str(a, "commandId") && fx_str(a, "status"), "no commandId/status: %s", text);
    free(text);
}

START_TEST(a_create_whose_answer_was_lost_is_adopted)
{
    fx_start(NULL, NULL, SLOW);
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_after\":true,\"count\":1}");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_cmd(0, "r1", 3);
    cJSON *a = fx_answer(answer, 0);
    /* Exactly one command exists (a blind retry makes two), and the answer names it. */
    cJSON *cmds = sim_commands(0);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 1);
    assert_ok(a, true);
    ck_assert_str_eq(fx_str(a, "correlationId"), "r1");
    ck_assert_str_eq(fx_str(a, "commandId"), command_id_of(cJSON_GetArrayItem(cmds, 0)));
    /* The platform's resource is passed on as for a normal create. */
    const cJSON *platform = cJSON_GetObjectItem(a, "platform");
    ck_assert_str_eq(fx_str(platform, "commandId"), fx_str(a, "commandId"));
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(platform, "command"), "paras"),
                            "level")
            ->valueint,
        3);
    cJSON_Delete(cmds);
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 1);
    ck_assert_int_ge(fx_count("GET", CMD_PATH, 200), 1);
    ck_assert(fx_metric("ocb_command_reconciliations_total{result=\"adopted\"}") == 1);
    ck_assert(th_log_contains(&fx_bridge.proc, "adopted command"));
    /* The statuses of the adopted command still reach commandStatus. */
    char status[256];
    fx_topic(status, sizeof(status), APP, 0, "commandStatus");
    ck_assert_msg(fx_wait_on(status, 1, WAIT_MS), "no status of the adopted command");
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(two_identical_lost_creates_adopt_one_each)
{
    fx_start(NULL, NULL, SLOW);
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_after\":true,\"count\":2}");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 1, "commandResponse");
    /* The same command twice, on purpose: the user wants it executed twice. */
    publish_cmd(1, "same", 7);
    publish_cmd(1, "same", 7);
    cJSON *a = fx_answer(answer, 0);
    cJSON *b = fx_answer(answer, 1);
    assert_ok(a, true);
    assert_ok(b, true);
    ck_assert_str_ne(fx_str(a, "commandId"), fx_str(b, "commandId"));
    cJSON *cmds = sim_commands(1);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 2);
    cJSON_Delete(cmds);
    cJSON_Delete(a);
    cJSON_Delete(b);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 2);
    ck_assert(fx_metric("ocb_command_reconciliations_total{result=\"adopted\"}") == 2);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(a_create_the_platform_never_processed_is_created_once)
{
    fx_start(NULL, NULL, SLOW);
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 2, "commandResponse");
    /* A first command that went through normally: the same content again later must not
     * adopt it, it is already this bridge's. */
    publish_cmd(2, "first", 5);
    cJSON *first = fx_answer(answer, 0);
    assert_ok(first, false);
    /* The connection drops before the platform handles the request. */
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_connection\":true,\"count\":1}");
    publish_cmd(2, "second", 5);
    cJSON *second = fx_answer(answer, 1);
    assert_ok(second, false);
    ck_assert_str_ne(fx_str(first, "commandId"), fx_str(second, "commandId"));
    /* It asked before creating again, found only the first (ours), and created it once. */
    ck_assert_int_ge(fx_count("GET", CMD_PATH, 200), 1);
    cJSON *cmds = sim_commands(2);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 2);
    cJSON_Delete(cmds);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 2);
    ck_assert(fx_metric("ocb_command_reconciliations_total{result=\"created\"}") == 1);
    ck_assert(fx_metric("ocb_command_reconciliations_total{result=\"adopted\"}") <= 0);
    cJSON_Delete(first);
    cJSON_Delete(second);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(no_answer_to_the_query_before_the_deadline_is_outcome_unknown)
{
    /* 8 s: room for several queries (backoff ~1 s) even on a loaded machine. */
    fx_start(NULL, NULL, ",\"command_deadline_s\":8,\"timeout_ms\":800");
    fx_sim_post("/faults", "[{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_after\":true,\"count\":1},"
                           "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"GET\","
                           "\"status\":503}]");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 3, "commandResponse");
    publish_cmd(3, "u1", 1);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "OUTCOME_UNKNOWN");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "retryable")));
    ck_assert_ptr_nonnull(
        strstr(fx_str(cJSON_GetObjectItem(a, "error"), "desc"), "may have created"));
    ck_assert_str_eq(fx_str(a, "correlationId"), "u1");
    cJSON_Delete(a);
    /* It kept asking, and never created a second one. */
    ck_assert_int_ge(fx_count("GET", CMD_PATH, 503), 2);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 1);
    cJSON *cmds = sim_commands(3);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 1);
    cJSON_Delete(cmds);
    ck_assert(fx_metric("ocb_command_reconciliations_total{result=\"unknown\"}") == 1);
    ck_assert(fx_metric("ocb_commands_total{outcome=\"OUTCOME_UNKNOWN\"}") == 1);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(the_query_pages_within_the_reply_cap)
{
    /* Replies capped at 1 KiB: a page of a few commands is over it, so the bridge asks for
     * smaller pages until one fits, and reads them all. */
    fx_start(NULL, NULL, SLOW ",\"max_reply_bytes\":1024");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_cmd(0, "p1", 1);
    publish_cmd(0, "p2", 2);
    cJSON *a = fx_answer(answer, 1);
    cJSON_Delete(a);
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_after\":true,\"count\":1}");
    publish_cmd(0, "p3", 3);
    a = fx_answer(answer, 2);
    assert_ok(a, true);
    ck_assert_str_eq(fx_str(a, "correlationId"), "p3");
    cJSON_Delete(a);
    cJSON *cmds = sim_commands(0);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 3);
    cJSON_Delete(cmds);
    ck_assert_int_ge(fx_count("GET", CMD_PATH, 200), 3); /* too big, ..., then pages */
    ck_assert(th_log_contains(&fx_bridge.proc, "over the reply cap"));
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const reconcile_tests[] = {
        a_create_whose_answer_was_lost_is_adopted,
        two_identical_lost_creates_adopt_one_each,
        a_create_the_platform_never_processed_is_created_once,
        no_answer_to_the_query_before_the_deadline_is_outcome_unknown,
        the_query_pages_within_the_reply_cap,
        NULL};
    const struct th_case cases[] = {
        {.name = "reconcile", .timeout_s = 90, .tests = reconcile_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "commands_reconcile", cases);
}
