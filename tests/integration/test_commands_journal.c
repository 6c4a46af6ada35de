/*
 * test_commands_journal.c: the command journal across restarts, end to end
 * (real broker, simulator and bridge, the bridge's own state directory):
 * a graceful stop keeps queued commands for the next start (no
 * SHUTTING_DOWN, each created once after the restart); `ocbridge state`
 * shows them while the bridge runs; an MQTT 5 requester still gets its
 * statuses after the bridge was killed and restarted; an answer the broker
 * never took (it was down) is published after the restart; and a kept
 * command whose deadline passed while the bridge was down is answered
 * EXPIRED_IN_QUEUE, not executed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "th_main.h"
#include "th_platform.h"

static char state_dir[TH_PATH_MAX];
static char bridge_json[4096];

/* The bridge with platform_extra and a state directory of the test's own. */
static void start_bridge(const char *platform_extra)
{
    if (!fx_bridge.port)
        fx_bridge.port = th_free_port();
    if (!state_dir[0])
        th_path(state_dir, sizeof(state_dir), "state");
    fx_bridge_config(bridge_json, sizeof(bridge_json), &fx_bridge, "bridge-1", NULL,
                     platform_extra);
    int n = (int)strlen(bridge_json);
    ck_assert(n > 0 && bridge_json[n - 1] == '}');
    bridge_json[n - 1] = '\0';
    n = snprintf(bridge_json + n - 1, sizeof(bridge_json) - (size_t)n + 1,
                 ",\"state\":{\"dir\":\"%s\"}}", state_dir);
    ck_assert(n > 0);
    th_bridge_start(&fx_bridge, bridge_json, false);
    ck_assert_msg(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS), "bridge not ready");
}

/* `ocbridge state -c <the bridge's config>`: its output (caller frees). */
static char *state_output(void)
{
    static unsigned runs;
    char name[32];
    struct th_proc p;
    char *argv[] = {(char *)th_env("OCB_BRIDGE_BIN"), "state", "-c", fx_bridge.config, NULL};

    memset(&p, 0, sizeof(p));
    snprintf(name, sizeof(name), "state-cmd-%u", runs++);
    th_spawn(&p, name, argv);
    ck_assert_int_eq(th_wait_exit(&p, 15000), 0);
    char *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(out);
    return out;
}

static void publish_level(int dev, int level, const char *correlation)
{
    char topic[256], payload[256];
    fx_topic(topic, sizeof(topic), APP, dev, "command");
    snprintf(payload, sizeof(payload),
             "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"level\":%d},"
             "\"correlationId\":\"%s\"}",
             level, correlation);
    fx_publish(topic, payload);
}

/* Answers on any commandResponse topic naming this correlationId, and how many are ok. */
static unsigned answers_for(const char *correlation, unsigned *ok)
{
    size_t total = th_mqtt_count(fx_client);
    unsigned n = 0;

    *ok = 0;
    for (size_t i = 0; i < total; i++) {
        const struct th_msg *m = th_mqtt_msg(fx_client, i);
        const char *leaf = strrchr(m->topic, '/');
        if (!leaf || strcmp(leaf, "/commandResponse") != 0)
            continue;
        cJSON *j = cJSON_Parse((const char *)m->payload);
        const char *c = j ? fx_str(j, "correlationId") : NULL;
        if (c && strcmp(c, correlation) == 0) {
            n++;
            *ok += cJSON_IsTrue(cJSON_GetObjectItem(j, "ok"));
        }
        cJSON_Delete(j);
    }
    return n;
}

static int sim_command_count(void)
{
    cJSON *all = fx_sim_call("GET", "/commands", NULL);
    int n = cJSON_GetArraySize(all);
    cJSON_Delete(all);
    return n;
}

START_TEST(graceful_stop_keeps_queued_commands_for_the_next_start)
{
    unsigned ok;

    fx_start_platform(NULL, "iot/#");
    /* One call a minute: the first command goes out, the other two wait. */
    start_bridge(",\"rate_limit\":{\"calls\":1,\"per_seconds\":60},\"command_deadline_s\":120");
    publish_level(0, 1, "g1");
    publish_level(1, 2, "g2");
    publish_level(2, 3, "g3");
    ck_assert_msg(fx_wait_count("POST", CMD_PATH, -1, 1, WAIT_MS), "the first create never came");
    for (long long end = th_now_ms() + WAIT_MS; answers_for("g1", &ok) < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "g1 was never answered");
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"queued\"}", 2, WAIT_MS),
        "the two waiting commands are not in the journal");
    /* `ocbridge state` while the daemon runs. */
    char *out = state_output();
    ck_assert_msg(strstr(out, "unfinished commands: 2") != NULL, "got: %s", out);
    ck_assert_msg(strstr(out, "  app " APP ": 2 queued") != NULL, "got: %s", out);
    free(out);

    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    /* Kept, not answered SHUTTING_DOWN. */
    ck_assert_uint_eq(answers_for("g2", &ok), 0);
    ck_assert_uint_eq(answers_for("g3", &ok), 0);
    out = state_output();
    ck_assert_msg(strstr(out, "unfinished commands: 2") != NULL, "got: %s", out);
    free(out);

    /* The next start (without the limit) runs them, in order, once each. */
    start_bridge(",\"command_deadline_s\":120");
    for (long long end = th_now_ms() + WAIT_MS;
         answers_for("g2", &ok) < 1 || answers_for("g3", &ok) < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "the kept commands were not run after the restart");
    ck_assert_uint_eq(answers_for("g2", &ok), 1);
    ck_assert_uint_eq(ok, 1);
    ck_assert_uint_eq(answers_for("g3", &ok), 1);
    ck_assert_uint_eq(ok, 1);
    ck_assert_int_eq(sim_command_count(), 3);
    ck_assert_int_eq((int)fx_metric("ocb_journal_recovered_total{state=\"queued\"}"), 2);
    /* Once their answers were acknowledged the journal is empty. */
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"answered\"}", 0, WAIT_MS),
        "answered rows were not deleted after their PUBACK");
    ck_assert_int_eq((int)fx_metric("ocb_journal_commands{state=\"queued\"}"), 0);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    out = state_output();
    ck_assert_msg(strstr(out, "unfinished commands: 0") != NULL, "got: %s", out);
    free(out);
}
END_TEST

START_TEST(requester_gets_statuses_after_a_kill_and_restart)
{
    char topic[256], path[256];
    const char *payload = "{\"serviceId\":\"Light\",\"method\":\"SET\",\"paras\":{\"on\":1}}";

    /* Commands stop at DELIVERED until the test completes them. */
    fx_start_platform("--command-manual", "iot/#");
    ck_assert(th_mqtt_subscribe(fx_client, "reply/#", 1));
    start_bridge(NULL);
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    ck_assert(th_mqtt_publish(fx_client, topic, payload, strlen(payload), 1, false, "reply/me",
                              "corr\x01\x02", 6));
    ck_assert_msg(fx_wait_on("reply/me", 1, WAIT_MS), "no answer on reply/me");
    cJSON *a = cJSON_Parse((const char *)fx_nth_on("reply/me", 0)->payload);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    char id[128];
    snprintf(id, sizeof(id), "%s", fx_str(a, "commandId"));
    cJSON_Delete(a);
    /* The requester is persisted (asynchronously): wait until the store says so. */
    for (long long end = th_now_ms() + WAIT_MS;; th_sleep_ms(100)) {
        char *out = state_output();
        bool there = strstr(out, "requesters: 1") != NULL;
        free(out);
        if (there)
            break;
        ck_assert_msg(th_now_ms() < end, "the requester never reached the store");
    }
    th_stop(&fx_bridge.proc, SIGKILL, 5000);
    start_bridge(NULL);
    size_t before = fx_count_on("reply/me");
    snprintf(path, sizeof(path), "/commands/%s/complete", id);
    fx_sim_post(path, "{\"resultCode\":\"SUCCESSFUL\"}");
    /* The final status reaches the response topic of the requester the last run knew. */
    for (long long end = th_now_ms() + WAIT_MS;; th_sleep_ms(50)) {
        bool found = false;
        for (size_t k = before; k < fx_count_on("reply/me") && !found; k++) {
            const struct th_msg *m = fx_nth_on("reply/me", k);
            found = strstr((const char *)m->payload, "SUCCESSFUL") != NULL &&
                    strstr((const char *)m->payload, id) != NULL && m->correlation_len == 6 &&
                    memcmp(m->correlation, "corr\x01\x02", 6) == 0;
        }
        if (found)
            break;
        ck_assert_msg(th_now_ms() < end, "the status after the restart never reached reply/me");
    }
}
END_TEST

START_TEST(answer_the_broker_never_took_is_published_after_a_restart)
{
    char answer[256];
    unsigned ok;

    fx_start_platform(NULL, "iot/#");
    start_bridge(",\"command_deadline_s\":60,\"timeout_ms\":8000");
    /* The create is held 4 s at the platform; meanwhile the broker goes away, so the answer
     * waits in the outbox (its row `answered`) when the bridge is killed. */
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"latency_ms\":4000,\"count\":1}");
    publish_level(0, 7, "w1");
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"sending\"}", 1, WAIT_MS),
        "the create never went out");
    th_mqtt_free(fx_client);
    fx_client = NULL;
    th_broker_stop(&fx_broker);
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"answered\"}", 1, WAIT_MS),
        "the answer was never stored");
    th_stop(&fx_bridge.proc, SIGKILL, 5000);
    th_broker_restart(&fx_broker);
    fx_client = th_mqtt_connect(fx_broker.url, "tester-2", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/#", 1));
    start_bridge(",\"command_deadline_s\":60");
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    for (long long end = th_now_ms() + WAIT_MS; answers_for("w1", &ok) < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "the stored answer was not published after the restart");
    ck_assert_uint_eq(ok, 1);
    ck_assert_int_eq((int)fx_metric("ocb_journal_recovered_total{state=\"answered\"}"), 1);
    ck_assert_int_eq(sim_command_count(), 1); /* published again, never executed again */
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"answered\"}", 0, WAIT_MS),
        "the row stayed after the PUBACK");
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(a_kept_command_past_its_deadline_is_expired_at_the_next_start)
{
    unsigned ok;

    fx_start_platform(NULL, "iot/#");
    /* A deadline of 12 s: e1's create and answer and a graceful stop fit well inside it even on
     * a loaded machine, so e2 is still queued, not expired, when the bridge stops. */
    start_bridge(",\"rate_limit\":{\"calls\":1,\"per_seconds\":60},\"command_deadline_s\":12");
    publish_level(0, 1, "e1");
    publish_level(1, 2, "e2");
    for (long long end = th_now_ms() + WAIT_MS; answers_for("e1", &ok) < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "e1 was never answered");
    ck_assert_msg(
        th_wait_metric(&fx_bridge, NULL, "ocb_journal_commands{state=\"queued\"}", 1, WAIT_MS),
        "e2 is not in the journal");
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    ck_assert_uint_eq(answers_for("e2", &ok), 0);
    th_sleep_ms(12500); /* past e2's deadline while the bridge is down */
    start_bridge(",\"command_deadline_s\":12");
    for (long long end = th_now_ms() + WAIT_MS; answers_for("e2", &ok) < 1; th_sleep_ms(50))
        ck_assert_msg(th_now_ms() < end, "e2 was never answered after the restart");
    size_t total = th_mqtt_count(fx_client);
    for (size_t i = 0; i < total; i++) {
        const struct th_msg *m = th_mqtt_msg(fx_client, i);
        const char *leaf = strrchr(m->topic, '/');
        if (leaf && strcmp(leaf, "/commandResponse") == 0 &&
            strstr((const char *)m->payload, "\"e2\"") != NULL) {
            cJSON *a = cJSON_Parse((const char *)m->payload);
            fx_assert_bridge_error(a, "EXPIRED_IN_QUEUE");
            cJSON_Delete(a);
        }
    }
    ck_assert_int_eq((int)fx_metric("ocb_journal_recovered_total{state=\"queued\"}"), 1);
    ck_assert_int_eq(sim_command_count(), 1); /* e2 was never created */
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tests[] = {graceful_stop_keeps_queued_commands_for_the_next_start,
                                  requester_gets_statuses_after_a_kill_and_restart,
                                  answer_the_broker_never_took_is_published_after_a_restart,
                                  a_kept_command_past_its_deadline_is_expired_at_the_next_start,
                                  NULL};
    const struct th_case cases[] = {{.name = "journal", .timeout_s = 120, .tests = tests},
                                    {.name = NULL}};

    return th_main(argc, argv, "commands_journal", cases);
}
