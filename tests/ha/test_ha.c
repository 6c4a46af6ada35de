/*
 * test_ha.c: several bridges for one app (README "Running several bridges").
 *
 * Everything real, on loopback, started and stopped by the test by PID:
 * Mosquitto, redis-server, the simulator with its throttle on at a scaled
 * limit (10 calls / 2 s) and short token lifetimes, two bridges sharing one
 * Redis and one MQTT shared-subscription group, and (for pushes) haproxy in
 * front of them.
 *   (a) push load through haproxy, one bridge killed with SIGKILL: every
 *       report the simulator generated reaches MQTT; one replica syncs the
 *       subscriptions, the other skips (the lease);
 *   (b) commands from two publishers through the shared group, with one and
 *       with two replicas: each created exactly once, one login for the whole
 *       run (refreshes renew it), never a 1010009 answer;
 *   (c) in (b) every bridge's callbackUrl names the *other* replica, so every
 *       status callback lands where the command was not created and must come
 *       through Redis to the requester's MQTT 5 response topic, after its
 *       commandResponse;
 *   (d) Redis killed and restarted mid-run: /readyz says degraded, no command
 *       is lost, and the replicas go back to one shared token.
 * (b) runs a third time with two replicas that share nothing (no Redis), for
 * the comparison only.  Each case prints one "fault-matrix: ha_…" line with
 * its figures (scripts/test gathers them into its closing table).
 */
#include "ha_fixture.h"
#include "th_main.h"

#define HA_MAX_CMDS 64

/* ---- (a) pushes through haproxy, one bridge killed */

START_TEST(a_push_through_haproxy_one_bridge_killed)
{
    char app_extra[128];
    th_broker_start(&fx_broker, NULL);
    ha_redis_start();
    fx_sim_start("--push-timeout " FX_PUSH_TIMEOUT_S " --repush-interval " FX_REPUSH_S
                 " --repush-window 8 --blacklist-after 10 --throttle " HA_THROTTLE);
    fx_load_devices();
    fx_col_start();
    ha_ports();
    ha_lb_start();
    snprintf(app_extra, sizeof(app_extra), ",\"subscribe\":[\"deviceDataChanged\"]");
    fx_app_extra = app_extra;
    for (int i = 0; i < 2; i++)
        ha_bridge_start(i, ha_lb_port, ",\"manage_subscriptions\":true");
    for (int i = 0; i < 2; i++)
        ck_assert_msg(th_bridge_wait_ready(&ha_b[i], NULL, WAIT_MS), "bridge %d not ready", i);
    fx_wait_subscribed();
    /* One sync: the lease holder's; the other replica says it skipped. */
    bool skipped = false;
    for (long long end = th_now_ms() + WAIT_MS; !skipped && th_now_ms() < end; th_sleep_ms(100))
        skipped = th_log_contains(&ha_b[0].proc, "subscription sync skipped") ||
                  th_log_contains(&ha_b[1].proc, "subscription sync skipped");
    ck_assert_msg(skipped, "both replicas synced the subscriptions");
    ck_assert(!(th_log_contains(&ha_b[0].proc, "subscription sync skipped") &&
                th_log_contains(&ha_b[1].proc, "subscription sync skipped")));

    fx_report_for(20, 3000);
    th_stop(&ha_b[0].proc, SIGKILL, 5000);
    fx_report_for(20, 4000);
    unsigned delivered, total = 0;
    for (long long end = th_now_ms() + 60000LL * th_time_scale();; th_sleep_ms(100)) {
        delivered = fx_col_delivered(fx_generated, &total);
        if (delivered == fx_generated || th_now_ms() > end)
            break;
    }
    bool url_invalid;
    unsigned answered = fx_answered_200(&url_invalid);
    fx_report_line("ha_a_push_kill9 replicas=2 generated=%u answered_200=%u delivered=%u lost=%u "
                   "duplicated=%u",
                   fx_generated, answered, delivered, fx_generated - delivered, total - delivered);
    ck_assert_msg(delivered == fx_generated, "%u of %u reports never reached MQTT",
                  fx_generated - delivered, fx_generated);
    ck_assert_msg(!url_invalid, "the platform marked the load balancer's URL invalid");
    ck_assert_int_eq(th_bridge_stop(&ha_b[1]), 0);
}
END_TEST

/* ---- commands from two publishers */

struct publisher {
    struct th_mqtt *c;
    char reply[32];
};

static struct publisher ha_pub[2];

static void ha_publishers(void)
{
    for (int p = 0; p < 2; p++) {
        char id[32];
        snprintf(id, sizeof(id), "publisher-%d", p);
        ha_pub[p].c = th_mqtt_connect(fx_broker.url, id, 5);
        ck_assert_ptr_nonnull(ha_pub[p].c);
        snprintf(ha_pub[p].reply, sizeof(ha_pub[p].reply), "reply/p%d", p);
        ck_assert(th_mqtt_subscribe(ha_pub[p].c, ha_pub[p].reply, 1));
    }
}

/* Command k (global numbering) from publisher k % 2, correlation data "c<k>". */
static void ha_command(int k)
{
    char topic[256], payload[256], corr[16];
    struct publisher *p = &ha_pub[k % 2];
    fx_topic(topic, sizeof(topic), APP, k % 4, "command");
    snprintf(payload, sizeof(payload),
             "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"k\":%d},\"correlationId\":%d}", k,
             k);
    int n = snprintf(corr, sizeof(corr), "c%d", k);
    ck_assert(th_mqtt_publish(p->c, topic, payload, strlen(payload), 1, false, p->reply, corr,
                              (size_t)n));
}

/* On the publisher's response topic: index of command k's commandResponse (or -1) and how many
 * statuses (bodies with a resultCode) came after it. */
static long ha_find(int k, int *statuses_after, bool *ok)
{
    struct publisher *p = &ha_pub[k % 2];
    char corr[16];
    int n = snprintf(corr, sizeof(corr), "c%d", k);
    long first = -1;
    *statuses_after = 0;
    *ok = false;
    size_t total = th_mqtt_count(p->c);
    for (size_t i = 0; i < total; i++) {
        const struct th_msg *m = th_mqtt_msg(p->c, i);
        if (m->correlation_len != (size_t)n || memcmp(m->correlation, corr, (size_t)n) != 0)
            continue;
        bool status = strstr((const char *)m->payload, "resultCode") != NULL &&
                      strstr((const char *)m->payload, "\"httpStatus\"") == NULL;
        if (!status && first < 0) {
            first = (long)i;
            *ok = strstr((const char *)m->payload, "\"ok\":true") != NULL;
        } else if (status && first >= 0) {
            (*statuses_after)++;
        } else if (status) {
            ck_abort_msg("a status of command %d overtook its commandResponse", k);
        }
    }
    return first;
}

/* Wait until commands [from, to) have an ok commandResponse (and, with statuses, one status
 * after it).  Returns how many do. */
static int ha_wait_answers(int from, int to, bool statuses, int timeout_ms)
{
    int done = 0;
    for (long long end = th_now_ms() + timeout_ms;; th_sleep_ms(100)) {
        done = 0;
        for (int k = from; k < to; k++) {
            int after;
            bool ok;
            if (ha_find(k, &after, &ok) >= 0 && ok && (!statuses || after >= 1))
                done++;
        }
        if (done == to - from || th_now_ms() > end)
            return done;
    }
}

/* Each command [0, n) exactly once on the platform. */
static void ha_assert_created_once(int n)
{
    int seen[HA_MAX_CMDS] = {0};
    cJSON *cmds = fx_sim_call("GET", "/commands", NULL);
    const cJSON *c;
    cJSON_ArrayForEach(c, cmds)
    {
        const cJSON *k = cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(c, "command"), "paras"), "k");
        ck_assert(cJSON_IsNumber(k) && k->valueint >= 0 && k->valueint < n);
        seen[k->valueint]++;
    }
    cJSON_Delete(cmds);
    for (int k = 0; k < n; k++)
        ck_assert_msg(seen[k] == 1, "command %d created %d times", k, seen[k]);
}

static int ha_throttled(void)
{
    cJSON *all = fx_requests(CMD_PATH);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, all)
    {
        const char *resp = fx_str(r, "response");
        if (resp && strstr(resp, "1010009"))
            n++;
    }
    cJSON_Delete(all);
    return n;
}

/* The command bed: broker, Redis, the simulator throttling at 10/2 s with tokens of ttl_s,
 * replicas bridges whose callbackUrl is the other one's (or its own, alone). */
static void ha_command_bed(int replicas, const char *ttl_s)
{
    char args[256];
    th_broker_start(&fx_broker, NULL);
    ha_redis_start();
    snprintf(args, sizeof(args), "--throttle " HA_THROTTLE " --token-ttl %s --refresh-ttl 600",
             ttl_s);
    fx_sim_start(args);
    fx_load_devices();
    fx_client = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/#", 1));
    ha_ports();
    const char *platform = ",\"rate_limit\":{\"calls\":10,\"per_seconds\":2},"
                           "\"command_deadline_s\":60";
    for (int i = 0; i < replicas; i++)
        ha_bridge_start(i, replicas == 2 ? ha_b[1 - i].port : ha_b[i].port, platform);
    for (int i = 0; i < replicas; i++)
        ck_assert_msg(th_bridge_wait_ready(&ha_b[i], NULL, WAIT_MS), "bridge %d not ready", i);
    ha_publishers();
}

START_TEST(b_c_commands_from_two_publishers)
{
    /* 1 and 2 coordinated replicas, then 2 uncoordinated ones: the same load, for the figures. */
    int replicas = _i == 0 ? 1 : 2;
    ha_coordinated = _i < 2;
    const int n = 40;
    ha_command_bed(replicas, "6");
    for (int k = 0; k < n; k++) {
        ha_command(k);
        th_sleep_ms(100); /* 10 a second, twice the platform's limit: the window must hold */
    }
    int done = ha_wait_answers(0, n, ha_coordinated, 60000 * th_time_scale());
    int logins = fx_count("POST", LOGIN_PATH, 200);
    int refreshes = fx_count("POST", REFRESH_PATH, 200);
    int throttled = ha_throttled();
    double forwarded =
        ha_metric_sum(replicas, "ocb_coord_statuses_forwarded_total", ",app=\"" APP "\"");
    /* Redis failures explain a failed count below (a replica that fell back to local state). */
    double redis_errors =
        ha_metric_sum(replicas, "ocb_coord_errors_total", ",kind=\"connection\"") +
        ha_metric_sum(replicas, "ocb_coord_errors_total", ",kind=\"reply\"");
    fx_report_line("ha_b_commands replicas=%d redis=%s commands=%d answered=%d logins=%d "
                   "refreshes=%d throttled_1010009=%d statuses_via_redis=%.0f redis_errors=%.0f",
                   replicas, ha_coordinated ? "yes" : "no", n, done, logins, refreshes, throttled,
                   forwarded, redis_errors);
    if (!ha_coordinated) {
        /* Without Redis the replicas log each other out and each keeps its own window: only
         * the figures are of interest (the statuses of the other replica's commands are lost,
         * so only the answers are required). */
        for (int i = 0; i < replicas; i++)
            ck_assert_int_eq(th_bridge_stop(&ha_b[i]), 0);
        return;
    }
    ck_assert_msg(done == n, "only %d of %d commands answered ok with a status after", done, n);
    ha_assert_created_once(n);
    ck_assert_msg(logins == 1, "%d logins for %d replicas", logins, replicas);
    /* The bridges count the same: one login between them. */
    ck_assert(ha_metric_sum(replicas, "ocb_coord_token_renewals_total", ",kind=\"login\"") == 1);
    ck_assert_msg(refreshes >= 1, "the run outlived no token (test too short)");
    ck_assert_msg(throttled == 0, "the platform throttled %d calls", throttled);
    if (replicas == 2) {
        /* Every status callback went to the replica that had not created the command. */
        ck_assert_msg(forwarded >= n, "only %.0f statuses came through redis", forwarded);
        for (int i = 0; i < 2; i++) {
            char series[128];
            snprintf(series, sizeof(series), "ocb_commands_total{outcome=\"ok\"}");
            ck_assert_msg(th_metric(&ha_b[i], NULL, series) >= 1, "replica %d took no command", i);
        }
    }
    for (int i = 0; i < replicas; i++)
        ck_assert_int_eq(th_bridge_stop(&ha_b[i]), 0);
}
END_TEST

/* ---- (d) Redis killed and restarted mid-run */

START_TEST(d_redis_killed_and_restarted)
{
    const int per = 10;
    ha_command_bed(2, "15");
    for (int k = 0; k < per; k++)
        ha_command(k);
    ck_assert_int_eq(ha_wait_answers(0, per, false, 30000 * th_time_scale()), per);

    th_stop(&ha_redis, SIGKILL, 5000);
    for (int k = per; k < 2 * per; k++)
        ha_command(k);
    bool degraded = false;
    for (long long end = th_now_ms() + WAIT_MS; !degraded && th_now_ms() < end; th_sleep_ms(100))
        degraded = ha_readyz_says(0, "degraded: redis unreachable") &&
                   ha_readyz_says(1, "degraded: redis unreachable");
    ck_assert_msg(degraded, "/readyz does not say degraded");
    ck_assert(ha_metric_sum(2, "ocb_coord_degraded", "") == 2);
    ck_assert_int_eq(ha_wait_answers(per, 2 * per, false, 30000 * th_time_scale()), per);
    ck_assert(th_log_contains(&ha_b[0].proc, "redis unreachable"));

    ha_redis_start(); /* empty: no persistence */
    bool back = false;
    for (long long end = th_now_ms() + WAIT_MS; !back && th_now_ms() < end; th_sleep_ms(100))
        back = ha_readyz_says(0, "ready\n") && ha_readyz_says(1, "ready\n");
    ck_assert_msg(back, "still degraded after redis came back");
    int logins_back = fx_count("POST", LOGIN_PATH, 200);
    int refreshes_back = fx_count("POST", REFRESH_PATH, 200);
    /* Commands over more than a token lifetime (15 s): renewals go through Redis again. */
    for (int k = 2 * per; k < 3 * per; k++) {
        ha_command(k);
        th_sleep_ms(1700);
    }
    ck_assert_int_eq(ha_wait_answers(2 * per, 3 * per, false, 30000 * th_time_scale()), per);
    ha_assert_created_once(3 * per);
    int logins = fx_count("POST", LOGIN_PATH, 200);
    int refreshes = fx_count("POST", REFRESH_PATH, 200);
    fx_report_line("ha_d_redis_restart replicas=2 commands=%d answered=%d logins_total=%d "
                   "logins_after_redis_back=%d renewals_after_redis_back=%d throttled_1010009=%d",
                   3 * per, 3 * per, logins, logins - logins_back,
                   (logins - logins_back) + (refreshes - refreshes_back), ha_throttled());
    ck_assert_msg(refreshes - refreshes_back >= 1, "no token renewal after redis came back");
    ck_assert_msg(logins - logins_back == 0, "%d logins after redis came back",
                  logins - logins_back);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(th_bridge_stop(&ha_b[i]), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const ha_tests[] = {a_push_through_haproxy_one_bridge_killed,
                                     b_c_commands_from_two_publishers, d_redis_killed_and_restarted,
                                     NULL};
    const struct th_loop ha_loops[] = {{b_c_commands_from_two_publishers, 0, 3}, {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "ha", .timeout_s = 240, .tests = ha_tests, .loops = ha_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "ha", cases);
}
