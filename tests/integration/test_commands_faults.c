/*
 * test_commands_faults.c: the command path when things go wrong: tokens
 * expiring or revoked mid-run, platform throttling, 5xx, timeouts and
 * dropped connections, the platform down past the deadline, a full queue,
 * commands published while the bridge was down, and two bridges sharing
 * one subscription group.  Deadlines and TTLs are small so the suite stays
 * short; the assertions are about outcomes, never about speed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_platform.h"
#include "th_main.h"

static struct th_bridge fx_bridge2;

static void publish_n(int dev_mod, int n, const char *extra)
{
    char topic[256], payload[256];
    for (int i = 0; i < n; i++) {
        fx_topic(topic, sizeof(topic), APP, i % dev_mod, "command");
        snprintf(payload, sizeof(payload),
                 "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"i\":%d},"
                 "\"correlationId\":\"n%d\"%s}",
                 i, i, extra ? extra : "");
        fx_publish(topic, payload);
    }
}

/* Wait for n answers over all devices' commandResponse topics; count the ok ones. */
static int wait_answers(int dev_mod, int n, int timeout_ms)
{
    char topic[256];
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        size_t got = 0;
        for (int d = 0; d < dev_mod; d++) {
            fx_topic(topic, sizeof(topic), APP, d, "commandResponse");
            got += fx_count_on(topic);
        }
        if ((int)got >= n || th_now_ms() > end)
            break;
        th_sleep_ms(50);
    }
    int ok = 0;
    for (int d = 0; d < dev_mod; d++) {
        fx_topic(topic, sizeof(topic), APP, d, "commandResponse");
        for (size_t k = 0; k < fx_count_on(topic); k++) {
            cJSON *a = cJSON_Parse((const char *)fx_nth_on(topic, k)->payload);
            if (cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")))
                ok++;
            else
                fprintf(stderr, "not ok: %s\n", fx_nth_on(topic, k)->payload);
            cJSON_Delete(a);
        }
    }
    return ok;
}

START_TEST(token_expiry_and_revocation_lose_nothing)
{
    /* Tokens live 2 s: the bridge must refresh (or log in again) mid-run. */
    fx_start("--token-ttl 2", NULL, NULL);
    for (int round = 0; round < 10; round++) {
        publish_n(4, 1, NULL);
        th_sleep_ms(450);
    }
    /* Revoked behind the bridge's back: the next call gets 403/1010005. */
    fx_sim_post("/apps/" APP "/revoke", "{}");
    publish_n(4, 2, NULL);
    ck_assert_int_eq(wait_answers(4, 12, WAIT_MS), 12);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 12);
    int refreshes = fx_count("POST", "/iocm/app/sec/v1.1.0/refreshToken", 200);
    int logins = fx_count("POST", "/iocm/app/sec/v1.1.0/login", 200);
    ck_assert_msg(refreshes + logins >= 3, "only %d refreshes and %d logins", refreshes, logins);
    ck_assert_int_ge(logins, 2); /* the revocation forced a new login */
    ck_assert(fx_metric("ocb_token_refreshes_total{kind=\"refresh\"}") >= 1);
    /* The revoked token had not expired: counted and explained once, not taken for expiry. */
    ck_assert(fx_metric("ocb_platform_tokens_superseded_total{app=\"" APP "\"}") >= 1);
    ck_assert(th_log_contains(&fx_bridge.proc, "rejected a token before it expired"));
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(throttle_at_the_limit_rate)
{
    /* Platform and bridge agree on 3 calls per second. */
    fx_start("--throttle 3/1", NULL, ",\"rate_limit\":{\"calls\":3,\"per_seconds\":1}");
    publish_n(4, 10, NULL);
    ck_assert_int_eq(wait_answers(4, 10, 20000), 10);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 10);
    /* The bridge paced itself: the platform never had to refuse. */
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 403), 0);
}
END_TEST

START_TEST(platform_throttling_is_backed_off_and_retried)
{
    /* The bridge believes in 100/s, the platform allows 3/s: 1010009 answers. */
    fx_start("--throttle 3/1", NULL,
             ",\"rate_limit\":{\"calls\":100,\"per_seconds\":1},\"command_deadline_s\":30");
    publish_n(4, 9, NULL);
    ck_assert_int_eq(wait_answers(4, 9, 30000), 9);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 9);
    ck_assert_int_ge(fx_count("POST", CMD_PATH, 403), 1);
    ck_assert(fx_metric("ocb_platform_throttled_total") >= 1);
}
END_TEST

START_TEST(throttled_past_the_deadline_passes_the_platform_answer_on)
{
    fx_start(NULL, NULL, ",\"command_deadline_s\":3");
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"status\":403,\"error_code\":"
                           "\"1010009\",\"error_desc\":\"app throttle exceed.\","
                           "\"shape\":\"resultcode\"}");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_n(1, 1, NULL);
    cJSON *a = fx_answer(answer, 0);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 403);
    const cJSON *err = cJSON_GetObjectItem(a, "error");
    ck_assert_str_eq(fx_str(err, "code"), "1010009");
    ck_assert_str_eq(fx_str(err, "desc"), "app throttle exceed.");
    ck_assert_str_eq(fx_str(err, "source"), "platform");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "retryable")));
    cJSON_Delete(a);
    ck_assert_int_ge(fx_count("POST", CMD_PATH, 403), 2);
    ck_assert(fx_metric("ocb_platform_throttled_total") >= 2);
}
END_TEST

START_TEST(server_errors_timeouts_and_drops_are_retried)
{
    fx_start(NULL, NULL, ",\"timeout_ms\":800,\"command_deadline_s\":20");
    fx_sim_post("/faults", "[{\"path_prefix\":\"" CMD_PATH "\",\"status\":503,\"count\":1},"
                           "{\"path_prefix\":\"" CMD_PATH "\",\"status\":500,\"error_code\":"
                           "\"100001\",\"count\":1},"
                           "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"drop_connection\":true,\"count\":1},"
                           "{\"path_prefix\":\"" CMD_PATH "\",\"method\":\"POST\","
                           "\"latency_ms\":2000,\"count\":1}]");
    publish_n(1, 1, NULL);
    ck_assert_int_eq(wait_answers(1, 1, 20000), 1);
    /* Four failed creates.  The dropped one and the slow one went out unanswered, so each
     * was followed by a query instead of a blind retry: the first found nothing, the second
     * found the command the slow create did make, and adopted it.  Created once. */
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 1);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 4);
    ck_assert_int_ge(fx_count("GET", CMD_PATH, 200), 2);
    char first[256];
    fx_topic(first, sizeof(first), APP, 0, "commandResponse");
    cJSON *adopted = fx_answer(first, 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(adopted, "reconciled")));
    cJSON_Delete(adopted);

    /* HTTP 200 with an error body is an error, not a success. */
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"body_200_error\":\"100428\","
                           "\"count\":1}");
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_n(1, 1, NULL);
    cJSON *a = fx_answer(answer, 1);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItem(a, "httpStatus")->valueint, 200);
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "error"), "code"), "100428");
    ck_assert_str_eq(fx_str(cJSON_GetObjectItem(a, "error"), "source"), "platform");
    cJSON_Delete(a);
}
END_TEST

START_TEST(platform_down_past_the_deadline)
{
    fx_start(NULL, NULL, ",\"command_deadline_s\":3,\"connect_timeout_ms\":500");
    th_stop(&fx_sim, SIGTERM, 5000);
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    long long t0 = th_now_ms();
    publish_n(1, 1, NULL);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "PLATFORM_UNREACHABLE");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "retryable")));
    ck_assert_str_eq(fx_str(a, "correlationId"), "n0");
    /* It kept trying for its whole budget first. */
    ck_assert_int_ge(th_now_ms() - t0, 2000);
    cJSON_Delete(a);
    ck_assert(fx_metric("ocb_commands_total{outcome=\"PLATFORM_UNREACHABLE\"}") == 1);

    /* /readyz follows the platform login once the token has to be renewed:
     * a fresh bridge cannot log in, so it is not ready; with the platform
     * back it becomes ready. */
    th_bridge_stop(&fx_bridge);
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, NULL, false);
    th_sleep_ms(1500);
    struct th_http_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", fx_bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    ck_assert_int_eq(r.status, 503);
    th_http_resp_free(&r);
    fx_sim_start(NULL);
    ck_assert_msg(th_bridge_wait_ready(&fx_bridge, NULL, 20000),
                  "not ready after the platform came back");
}
END_TEST

START_TEST(wrong_secret_is_a_definite_answer_and_not_ready)
{
    fx_start_platform(NULL, "iot/#");
    fx_secret = "not-the-secret";
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, NULL, false);
    /* /readyz needs a working platform login. */
    ck_assert(!th_bridge_wait_ready(&fx_bridge, NULL, 2000));
    /* Not ready, but its command subscription is in place (a first start has no session yet). */
    ck_assert(th_log_wait(&fx_bridge.proc, "subscribed ", WAIT_MS));
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_n(1, 1, NULL);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_platform_error(a, 401, "100208");
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 0);
    ck_assert(th_log_contains(&fx_bridge.proc, "login failed"));
    ck_assert(!th_log_contains(&fx_bridge.proc, "not-the-secret"));
}
END_TEST

START_TEST(the_platform_certificate_is_always_verified)
{
    /* A CA that did not sign the simulator's certificate: even with
     * verify_hostname off, the chain is checked and the handshake fails. */
    static char other[TH_PATH_MAX];
    th_path(other, sizeof(other), "other-ca");
    th_make_certs(other);
    fx_ca_dir = other;
    fx_start_platform(NULL, "iot/#");
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, ",\"command_deadline_s\":2", false);
    ck_assert(!th_bridge_wait_ready(&fx_bridge, NULL, 1500));
    ck_assert(th_log_wait(&fx_bridge.proc, "subscribed ", WAIT_MS));
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    publish_n(1, 1, NULL);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "PLATFORM_UNREACHABLE");
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("POST", "/iocm/app/sec/v1.1.0/login", -1), 0);
    th_bridge_stop(&fx_bridge);

    /* With the right CA and the hostname check on (the simulator's
     * certificate names 127.0.0.1), everything works. */
    fx_ca_dir = NULL;
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, ",\"verify_hostname\":true", true);
    publish_n(1, 1, NULL);
    a = fx_answer(answer, 1);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    cJSON_Delete(a);
}
END_TEST

START_TEST(a_reply_over_the_cap_is_refused)
{
    /* The create reply echoes paras: 2 KiB of them overflow a 1 KiB reply cap. */
    fx_start(NULL, NULL, ",\"max_reply_bytes\":1024");
    char topic[256], answer[256], payload[2600];
    int n = snprintf(payload, sizeof(payload),
                     "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"blob\":\"%02048d\"}}", 0);
    ck_assert(n > 0 && (size_t)n < sizeof(payload));
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    fx_publish(topic, payload);
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "INVALID_REPLY");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "retryable")));
    cJSON_Delete(a);
    /* Not retried: the platform did create it once. */
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 1);
}
END_TEST

START_TEST(full_queue_and_expiry_in_queue)
{
    /* One call at a time, each taking 4 s (all six arrive well inside the first, even on a loaded
     * machine), room for two commands. */
    fx_start(NULL, NULL,
             ",\"max_queue\":2,\"max_in_flight\":1,\"command_deadline_s\":20,\"timeout_ms\":10000");
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"latency_ms\":4000}");
    publish_n(4, 6, NULL);
    int ok = wait_answers(4, 6, 30000);
    ck_assert_int_eq(ok, 2);
    ck_assert(fx_metric("ocb_commands_total{outcome=\"QUEUE_FULL\"}") == 4);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 2);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

START_TEST(expired_in_queue_when_the_rate_allows_no_call)
{
    /* One call per minute and a 2 s deadline: the second command never gets a turn. */
    fx_start(NULL, NULL,
             ",\"rate_limit\":{\"calls\":1,\"per_seconds\":60},\"command_deadline_s\":2");
    publish_n(2, 2, NULL);
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 1, "commandResponse");
    cJSON *a = fx_answer(answer, 0);
    fx_assert_bridge_error(a, "EXPIRED_IN_QUEUE");
    cJSON_Delete(a);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 1);
}
END_TEST

START_TEST(commands_published_while_the_bridge_is_down_run_after_start)
{
    fx_start(NULL, NULL, NULL);
    /* The bridge's persistent session holds its subscriptions while it is away. */
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    publish_n(4, 4, NULL);
    th_sleep_ms(300);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, -1), 0);
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, NULL, true);
    ck_assert_int_eq(wait_answers(4, 4, WAIT_MS), 4);
    ck_assert_int_eq(fx_count("POST", CMD_PATH, 201), 4);
}
END_TEST

START_TEST(answers_wait_out_a_broker_outage)
{
    /* The platform takes 2 s; the broker is down when the answer is due. */
    fx_start(NULL, ",\"reconnect_min_ms\":2500,\"reconnect_max_ms\":3000", ",\"timeout_ms\":5000");
    fx_sim_post("/faults", "{\"path_prefix\":\"" CMD_PATH "\",\"latency_ms\":2000}");
    publish_n(1, 1, NULL);
    ck_assert(fx_wait_fault_hits(1, WAIT_MS)); /* the create is at the platform */
    th_mqtt_free(fx_client);
    th_broker_stop(&fx_broker);
    /* The create completes meanwhile; the answer cannot go out. */
    ck_assert(fx_wait_count("POST", CMD_PATH, 201, 1, WAIT_MS));
    /* The tester is back before the bridge (held stopped), so it sees the answer go out. */
    th_signal(&fx_bridge.proc, SIGSTOP);
    th_broker_restart(&fx_broker);
    fx_client = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/#", 1));
    th_signal(&fx_bridge.proc, SIGCONT);
    char answer[256];
    fx_topic(answer, sizeof(answer), APP, 0, "commandResponse");
    cJSON *a = fx_answer(answer, 0);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")), "%s", fx_nth_on(answer, 0)->payload);
    ck_assert_str_eq(fx_str(a, "correlationId"), "n0");
    cJSON_Delete(a);
    ck_assert(fx_metric("ocb_command_answers_dropped_total") <= 0);
}
END_TEST

START_TEST(two_bridges_in_one_shared_group_create_each_command_once)
{
    fx_start(NULL, ",\"shared_group\":\"cmd\"", ",\"command_deadline_s\":30");
    fx_bridge_start(&fx_bridge2, "bridge-2", ",\"shared_group\":\"cmd\"",
                    ",\"command_deadline_s\":30", true);
    publish_n(4, 12, NULL);
    ck_assert_int_eq(wait_answers(4, 12, 30000), 12);
    th_sleep_ms(500);
    /* Each command exactly once on the platform, and answered exactly once. */
    cJSON *cmds = fx_sim_call("GET", "/commands", NULL);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 12);
    int seen[12] = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cmds)
    {
        int i = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "command"), "paras"),
                                    "i")
                    ->valueint;
        ck_assert(i >= 0 && i < 12);
        seen[i]++;
    }
    for (int i = 0; i < 12; i++)
        ck_assert_msg(seen[i] == 1, "command %d created %d times", i, seen[i]);
    cJSON_Delete(cmds);
    ck_assert_int_eq(wait_answers(4, 12, 100), 12);
    /* Both bridges took a share (shared subscriptions round-robin). */
    ck_assert(th_metric(&fx_bridge, NULL, "ocb_commands_total{outcome=\"ok\"}") >= 1);
    ck_assert(th_metric(&fx_bridge2, NULL, "ocb_commands_total{outcome=\"ok\"}") >= 1);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    ck_assert_int_eq(th_bridge_stop(&fx_bridge2), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const faults_tests[] = {
        token_expiry_and_revocation_lose_nothing,
        throttle_at_the_limit_rate,
        platform_throttling_is_backed_off_and_retried,
        throttled_past_the_deadline_passes_the_platform_answer_on,
        server_errors_timeouts_and_drops_are_retried,
        platform_down_past_the_deadline,
        wrong_secret_is_a_definite_answer_and_not_ready,
        the_platform_certificate_is_always_verified,
        a_reply_over_the_cap_is_refused,
        full_queue_and_expiry_in_queue,
        expired_in_queue_when_the_rate_allows_no_call,
        commands_published_while_the_bridge_is_down_run_after_start,
        answers_wait_out_a_broker_outage,
        two_bridges_in_one_shared_group_create_each_command_once,
        NULL};
    const struct th_case cases[] = {
        {.name = "faults", .timeout_s = 90, .tests = faults_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "commands_faults", cases);
}
