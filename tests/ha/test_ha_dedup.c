/*
 * test_ha_dedup.c: the re-push window shared by several bridges
 * (push.dedup_window_s with coordination.redis_url; README "Running several
 * bridges").
 *
 * The platform re-pushes a message it did not see answered, and behind
 * haproxy the re-push may reach the other replica.  Two bridges ("a", "b")
 * share one redis-server; haproxy is in front of them; spool.mode is off so
 * that a publish that times out is answered 503.
 *   shared_window: the same body pushed to a, then to b within the window is
 *     published once (b finds it in Redis); the same through haproxy; after
 *     the window it is published again; a push answered 503 by a (broker
 *     stopped) leaves no mark, so its re-push to b is published.
 *   redis_killed: with Redis gone each replica keeps its own window (a
 *     re-push to the same replica is still suppressed, one to the other is
 *     published: a duplicate, never a loss), /readyz says degraded; once
 *     Redis is back the window is shared again.
 */
#include "ha_fixture.h"
#include "th_main.h"

#define DD_WINDOW_S 4

static struct th_mqtt *dd_sub;

static void dd_body(char *out, size_t cap, int seq)
{
    snprintf(out, cap, "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-1\",\"seq\":%d}",
             seq);
}

/* POST body seq to base's /push/app1; the HTTP status. */
static long dd_push(const char *base, int seq)
{
    char url[128], body[160];
    struct th_http_resp r;
    snprintf(url, sizeof(url), "%s/push/" APP, base);
    dd_body(body, sizeof(body), seq);
    ck_assert(th_http("POST", url, body, strlen(body), NULL, &r));
    long status = r.status;
    th_http_resp_free(&r);
    return status;
}

/* How many messages on MQTT carry body seq. */
static unsigned dd_published(int seq)
{
    char body[160];
    unsigned n = 0;
    dd_body(body, sizeof(body), seq);
    size_t total = th_mqtt_count(dd_sub);
    for (size_t i = 0; i < total; i++) {
        const struct th_msg *m = th_mqtt_msg(dd_sub, i);
        if (m->len == strlen(body) && memcmp(m->payload, body, m->len) == 0)
            n++;
    }
    return n;
}

/* Wait until body seq arrived want times, then a moment for any extra copy; the count. */
static unsigned dd_wait_published(int seq, unsigned want)
{
    for (long long end = th_now_ms() + WAIT_MS; dd_published(seq) < want && th_now_ms() < end;)
        th_sleep_ms(50);
    th_sleep_ms(500);
    return dd_published(seq);
}

static double dd_checks(int i, const char *result)
{
    char series[128];
    snprintf(series, sizeof(series), "ocb_push_dedup_checks_total{result=\"%s\"}", result);
    double v = th_metric(&ha_b[i], NULL, series);
    return v > 0 ? v : 0;
}

/* Accepted pushes both replicas have marked in Redis so far. */
static double dd_recorded(void)
{
    return ha_metric_sum(2, "ocb_coord_dedup_records_total", ",app=\"" APP "\"");
}

/* Wait until the replicas have marked min accepted pushes in Redis in all: the mark is set on
 * the coord thread after the 200, and the platform's re-push comes only after its own timeout. */
static void dd_wait_recorded(double min)
{
    for (long long end = th_now_ms() + WAIT_MS;; th_sleep_ms(20)) {
        double n = dd_recorded();
        if (n >= min)
            return;
        ck_assert_msg(th_now_ms() < end, "%.0f of %.0f pushes marked in Redis", n, min);
    }
}

/* Broker, Redis, the simulator, bridges a and b sharing the window, haproxy, a subscriber. */
static void dd_bed(void)
{
    static char top[128];
    th_broker_start(&fx_broker, NULL);
    ha_redis_start();
    fx_sim_start(NULL);
    fx_load_devices();
    ha_ports();
    snprintf(top, sizeof(top), ",\"push\":{\"dedup_window_s\":%d},\"spool\":{\"mode\":\"off\"}",
             DD_WINDOW_S);
    ha_top_extra = top;
    ha_mqtt_extra = ",\"publish_timeout_ms\":1000";
    for (int i = 0; i < 2; i++)
        ha_bridge_start(i, ha_b[i].port, NULL);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(th_bridge_wait_ready(&ha_b[i], NULL, WAIT_MS), "bridge %d not ready", i);
    ha_lb_start();
    dd_sub = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(dd_sub);
    ck_assert(th_mqtt_subscribe(dd_sub, "iot/#", 1));
}

START_TEST(shared_window)
{
    char lb[64];
    dd_bed();
    snprintf(lb, sizeof(lb), "http://127.0.0.1:%d", ha_lb_port);

    /* a accepts it; the platform's re-push lands on b within the window. */
    ck_assert_int_eq(dd_push(ha_b[0].base, 1), 200);
    dd_wait_recorded(1);
    ck_assert_int_eq(dd_push(ha_b[1].base, 1), 200);
    ck_assert_uint_eq(dd_wait_published(1, 1), 1);
    ck_assert(dd_checks(0, "new") == 1);
    ck_assert(dd_checks(1, "duplicate_shared") == 1);
    ck_assert(th_metric(&ha_b[1], NULL, "ocb_push_duplicates_total{app=\"" APP "\"}") == 1);

    /* The same through haproxy (round robin: one each). */
    ck_assert_int_eq(dd_push(lb, 2), 200);
    dd_wait_recorded(2);
    ck_assert_int_eq(dd_push(lb, 2), 200);
    ck_assert_uint_eq(dd_wait_published(2, 1), 1);
    double shared = dd_checks(0, "duplicate_shared") + dd_checks(1, "duplicate_shared");
    double local = dd_checks(0, "duplicate_local") + dd_checks(1, "duplicate_local");
    ck_assert_msg(shared + local == 2, "shared %.0f + local %.0f duplicates", shared, local);

    /* After the window the same body is a new message again, on either replica. */
    th_sleep_ms((DD_WINDOW_S + 1) * 1000);
    ck_assert_int_eq(dd_push(ha_b[1].base, 1), 200);
    ck_assert_uint_eq(dd_wait_published(1, 2), 2);

    /* Answered 503 by a (its broker connection stalls: no PUBACK in time): no mark is left,
     * so the platform's re-push to b is published. */
    double b_new = dd_checks(1, "new");
    th_broker_pause(&fx_broker);
    ck_assert_int_eq(dd_push(ha_b[0].base, 3), 503);
    th_broker_resume(&fx_broker);
    ck_assert(th_bridge_wait_ready(&ha_b[1], NULL, WAIT_MS));
    ck_assert_int_eq(dd_push(ha_b[1].base, 3), 200);
    ck_assert(dd_wait_published(3, 1) >= 1);
    ck_assert(dd_checks(1, "new") == b_new + 1);
    ck_assert(dd_checks(1, "duplicate_shared") + dd_checks(0, "duplicate_shared") == shared);

    fx_report_line("ha_dedup_shared replicas=2 window_s=%d shared_duplicates=%.0f "
                   "local_duplicates=%.0f",
                   DD_WINDOW_S, dd_checks(0, "duplicate_shared") + dd_checks(1, "duplicate_shared"),
                   dd_checks(0, "duplicate_local") + dd_checks(1, "duplicate_local"));
    th_mqtt_free(dd_sub);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(th_bridge_stop(&ha_b[i]), 0);
}
END_TEST

START_TEST(redis_killed)
{
    dd_bed();
    th_stop(&ha_redis, SIGKILL, 5000);
    bool degraded = false;
    for (long long end = th_now_ms() + WAIT_MS; !degraded && th_now_ms() < end; th_sleep_ms(100))
        degraded = ha_readyz_says(0, "degraded: redis unreachable") &&
                   ha_readyz_says(1, "degraded: redis unreachable");
    ck_assert_msg(degraded, "/readyz does not say degraded");

    /* Local windows: a re-push to the same replica is suppressed, one to the other is not. */
    ck_assert_int_eq(dd_push(ha_b[0].base, 10), 200);
    th_sleep_ms(300);
    ck_assert_int_eq(dd_push(ha_b[0].base, 10), 200);
    ck_assert_int_eq(dd_push(ha_b[1].base, 10), 200);
    ck_assert_uint_eq(dd_wait_published(10, 2), 2);
    ck_assert(dd_checks(0, "duplicate_local") == 1);
    ck_assert(dd_checks(0, "fallback") >= 1 && dd_checks(1, "fallback") >= 1);
    ck_assert(th_log_contains(&ha_b[0].proc, "pushes the local de-duplication window"));

    /* Redis back (empty): shared again. */
    ha_redis_start();
    bool back = false;
    for (long long end = th_now_ms() + WAIT_MS; !back && th_now_ms() < end; th_sleep_ms(100))
        back = ha_readyz_says(0, "ready\n") && ha_readyz_says(1, "ready\n");
    ck_assert_msg(back, "still degraded after redis came back");
    double marked = dd_recorded();
    ck_assert_int_eq(dd_push(ha_b[1].base, 11), 200);
    dd_wait_recorded(marked + 1);
    ck_assert_int_eq(dd_push(ha_b[0].base, 11), 200);
    ck_assert_uint_eq(dd_wait_published(11, 1), 1);
    ck_assert(dd_checks(0, "duplicate_shared") == 1);

    fx_report_line("ha_dedup_redis_killed replicas=2 published_while_down=%u "
                   "(1 message re-pushed to both replicas) after_back=%u",
                   dd_published(10), dd_published(11));
    th_mqtt_free(dd_sub);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(th_bridge_stop(&ha_b[i]), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const dedup_tests[] = {shared_window, redis_killed, NULL};
    const struct th_case cases[] = {
        {.name = "ha_dedup", .timeout_s = 180, .tests = dedup_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "ha_dedup", cases);
}
