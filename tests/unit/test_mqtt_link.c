/*
 * test_mqtt_link.c: the link's contract, driven through its API against the
 * scripted broker (tests/support/th_fakebroker.c, linked into this suite
 * alone): publishes in flight are failed exactly once whichever way the
 * connection ends, two reports of one ending make one reconnect, and the
 * "filters subscribed last time" seam unsubscribes what is no longer wanted
 * and reports the new set.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ocb/config.h"
#include "ocb/log.h"
#include "ocb/mqtt_link.h"
#include "th_fakebroker.h"
#include "th_main.h"

#define WAIT_MS 15000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int done_ok, done_not_connected, done_other;
static char reported[512];
static int n_reported;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_done(void *ctx, enum ocb_err rc)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (rc == OCB_OK)
        done_ok++;
    else if (rc == OCB_ERR_NOT_CONNECTED)
        done_not_connected++;
    else
        done_other++;
    pthread_mutex_unlock(&mu);
}

static void on_subscribed(void *ctx, const char *const *filters, size_t n)
{
    size_t used = 0;

    (void)ctx;
    pthread_mutex_lock(&mu);
    reported[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w =
            snprintf(reported + used, sizeof(reported) - used, "%s%s", i ? " " : "", filters[i]);
        if (w < 0 || (size_t)w >= sizeof(reported) - used)
            break;
        used += (size_t)w;
    }
    n_reported++;
    pthread_mutex_unlock(&mu);
}

static int count(const int *v)
{
    int n;
    pthread_mutex_lock(&mu);
    n = *v;
    pthread_mutex_unlock(&mu);
    return n;
}

static struct ocb_config *make_config(const char *url, const char *mqtt_extra)
{
    char json[1024], err[256];
    struct ocb_config *cfg = NULL;
    int n = snprintf(json, sizeof(json),
                     "{\"mqtt\":{\"url\":\"%s\",\"client_id\":\"unit-link\",\"version\":5,"
                     "\"publish_timeout_ms\":60000,\"reconnect_min_ms\":300,"
                     "\"reconnect_max_ms\":300%s},\"apps\":[{\"app_id\":\"a\"}]}",
                     url, mqtt_extra != NULL ? mqtt_extra : "");
    ck_assert(n > 0 && (size_t)n < sizeof(json));
    ck_assert_msg(config_parse("unit", json, strlen(json), &cfg, err, sizeof(err)) == OCB_OK, "%s",
                  err);
    return cfg;
}

static bool wait_connected(struct ocb_mqtt_link *link, bool want)
{
    for (long long end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(10)) {
        if (mqtt_link_connected(link) == want)
            return true;
    }
    return false;
}

static void reset_counts(void)
{
    pthread_mutex_lock(&mu);
    done_ok = done_not_connected = done_other = 0;
    reported[0] = '\0';
    n_reported = 0;
    pthread_mutex_unlock(&mu);
}

/* Held PUBACKs, then the connection ends in one of several ways (two at once for the last):
 * each publish's done runs exactly once, with OCB_ERR_NOT_CONNECTED, and one reconnect. */
static void check_inflight_failed_once(int how)
{
    struct th_fb_script s;
    struct th_fb *fb;
    struct ocb_config *cfg;
    struct ocb_mqtt_link *link;
    struct ocb_mqtt_pub pub = {.topic = "t/x", .payload = "p", .len = 1};

    reset_counts();
    th_fb_script_init(&s);
    s.hold_pubacks = true;
    fb = th_fb_start(&s);
    cfg = make_config(th_fb_url(fb), NULL);
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(mqtt_link_start(link), OCB_OK);
    ck_assert(wait_connected(link, true));
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(mqtt_link_publish(link, &pub, on_done, NULL), OCB_OK);
    for (long long end = now_ms() + WAIT_MS; th_fb_held_pubacks(fb) < 5;) {
        ck_assert(now_ms() < end);
        sleep_ms(10);
    }
    ck_assert_uint_eq(mqtt_link_inflight(link), 5);
    if (how == 0) {
        th_fb_disconnect(fb, 0x8E);
    } else if (how == 1) {
        th_fb_drop(fb);
    } else {
        /* A DISCONNECT immediately followed by the socket closing under it. */
        th_fb_disconnect(fb, 0x98);
        th_fb_drop(fb);
    }
    for (long long end = now_ms() + WAIT_MS; count(&done_not_connected) < 5;) {
        ck_assert_msg(now_ms() < end, "only %d of 5 publishes failed", count(&done_not_connected));
        sleep_ms(10);
    }
    ck_assert_uint_eq(mqtt_link_inflight(link), 0);
    ck_assert(th_fb_wait_connects(fb, 2, WAIT_MS));
    ck_assert(wait_connected(link, true));
    /* paho resends the unacknowledged publishes on the resumed session; let their acks come
     * now: they must not call done a second time. */
    s.hold_pubacks = false;
    th_fb_set_script(fb, &s);
    sleep_ms(700);
    ck_assert_int_eq(count(&done_not_connected), 5);
    ck_assert_int_eq(count(&done_ok), 0);
    ck_assert_int_eq(count(&done_other), 0);
    /* One ending, one reconnect: no third CONNECT from a doubly reported loss. */
    ck_assert_uint_eq(th_fb_connects(fb), 2);
    mqtt_link_free(link);
    config_free(cfg);
    th_fb_free(fb);
}

START_TEST(test_inflight_failed_once_on_disconnect)
{
    check_inflight_failed_once(0);
}
END_TEST

START_TEST(test_inflight_failed_once_on_loss)
{
    check_inflight_failed_once(1);
}
END_TEST

START_TEST(test_inflight_failed_once_on_both)
{
    check_inflight_failed_once(2);
}
END_TEST

/* The memory seam: an old prefix's filters remembered from the last run are unsubscribed on
 * a resumed session, and the granted set is reported. */
START_TEST(test_previous_subscriptions_reconciled)
{
    static const char *const old[] = {"old/+/+/command", "$share/g/new/+/+/command"};
    struct th_fb *fb = th_fb_start(NULL);
    struct ocb_config *cfg = make_config(th_fb_url(fb), NULL);
    struct ocb_mqtt_link *link;
    char set[512];

    reset_counts();
    th_fb_seed_session(fb, "unit-link", old, 2);
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(mqtt_link_add_subscription(link, "new/+/+/command"), OCB_OK);
    ck_assert_int_eq(mqtt_link_set_previous_subscriptions(link, old, 2, on_subscribed, NULL),
                     OCB_OK);
    ck_assert_int_eq(mqtt_link_start(link), OCB_OK);
    for (long long end = now_ms() + WAIT_MS; count(&n_reported) < 1;) {
        ck_assert(now_ms() < end);
        sleep_ms(10);
    }
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE old/+/+/command"));
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE $share/g/new/+/+/command"));
    ck_assert(!th_fb_saw(fb, "UNSUBSCRIBE new/+/+/command"));
    th_fb_session(fb, "unit-link", set, sizeof(set));
    ck_assert_str_eq(set, "new/+/+/command");
    pthread_mutex_lock(&mu);
    ck_assert_str_eq(reported, "new/+/+/command");
    pthread_mutex_unlock(&mu);
    ck_assert(mqtt_link_subscriptions_ok(link, NULL, 0));
    mqtt_link_free(link);
    config_free(cfg);
    th_fb_free(fb);
}
END_TEST

/* One stale filter (paho reports a single UNSUBACK code differently from several). */
START_TEST(test_single_stale_filter_unsubscribed)
{
    static const char *const old[] = {"old/+/+/command"};
    struct th_fb *fb = th_fb_start(NULL);
    struct ocb_config *cfg = make_config(th_fb_url(fb), NULL);
    struct ocb_mqtt_link *link;
    char set[512];

    reset_counts();
    th_fb_seed_session(fb, "unit-link", old, 1);
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(mqtt_link_add_subscription(link, "new/+/+/command"), OCB_OK);
    ck_assert_int_eq(mqtt_link_set_previous_subscriptions(link, old, 1, on_subscribed, NULL),
                     OCB_OK);
    ck_assert_int_eq(mqtt_link_start(link), OCB_OK);
    for (long long end = now_ms() + WAIT_MS; count(&n_reported) < 1;) {
        ck_assert(now_ms() < end);
        sleep_ms(10);
    }
    ck_assert(th_fb_saw(fb, "UNSUBSCRIBE old/+/+/command"));
    th_fb_session(fb, "unit-link", set, sizeof(set));
    ck_assert_str_eq(set, "new/+/+/command");
    mqtt_link_free(link);
    config_free(cfg);
    th_fb_free(fb);
}
END_TEST

/* A new session holds nothing: no UNSUBSCRIBE at all. */
START_TEST(test_new_session_unsubscribes_nothing)
{
    static const char *const old[] = {"old/+/+/command"};
    struct th_fb *fb = th_fb_start(NULL);
    struct ocb_config *cfg = make_config(th_fb_url(fb), ",\"shared_group\":\"g\"");
    struct ocb_mqtt_link *link;

    reset_counts();
    ck_assert_int_eq(mqtt_link_new(cfg, &link), OCB_OK);
    ck_assert_int_eq(mqtt_link_add_subscription(link, "$share/g/new/+/+/command"), OCB_OK);
    ck_assert_int_eq(mqtt_link_set_previous_subscriptions(link, old, 1, on_subscribed, NULL),
                     OCB_OK);
    ck_assert_int_eq(mqtt_link_start(link), OCB_OK);
    for (long long end = now_ms() + WAIT_MS; count(&n_reported) < 1;) {
        ck_assert(now_ms() < end);
        sleep_ms(10);
    }
    {
        char *ev = th_fb_events(fb);
        ck_assert_msg(strstr(ev, "UNSUBSCRIBE") == NULL, "%s", ev);
        free(ev);
    }
    mqtt_link_free(link);
    config_free(cfg);
    th_fb_free(fb);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const contract_tests[] = {test_inflight_failed_once_on_disconnect,
                                           test_inflight_failed_once_on_loss,
                                           test_inflight_failed_once_on_both,
                                           test_previous_subscriptions_reconciled,
                                           test_single_stale_filter_unsubscribed,
                                           test_new_session_unsubscribes_nothing,
                                           NULL};
    const struct th_case cases[] = {
        {.name = "contract", .timeout_s = 60, .tests = contract_tests},
        {.name = NULL},
    };

    log_setup(OCB_LOG_WARN, OCB_LOG_TEXT);
    return th_main(argc, argv, "mqtt_link", cases);
}
