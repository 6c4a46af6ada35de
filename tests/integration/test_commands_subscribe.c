/*
 * test_commands_subscribe.c: `ocbridge subscribe -c FILE` and
 * platform.manage_subscriptions against ocbridge-sim: create what is
 * missing, leave what is right, replace a conflicting subscription
 * (409/100227), remove what this bridge no longer wants, subscribe the
 * upgrade types through the device-management API, and fail loudly on a
 * wrong secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_fixture.h"

static int bridge_port;

/* Write a config with this subscribe list, push token and secret; run `ocbridge subscribe`. */
static int run_subscribe(const char *subscribe_json, const char *push_token, const char *secret,
                         struct th_proc *p)
{
    char cfg[4096], path[TH_PATH_MAX];
    int n = snprintf(cfg, sizeof(cfg),
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"public_url\":\"http://"
                     "127.0.0.1:%d\"},"
                     "\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                     "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\"},"
                     "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"%s\",\"push_token\":\"%s\","
                     "\"subscribe\":%s}]}",
                     bridge_port, bridge_port, fx_api, fx_certs, fx_certs, fx_certs, secret,
                     push_token, subscribe_json);
    ck_assert(n > 0 && (size_t)n < sizeof(cfg));
    th_path(path, sizeof(path), "subscribe.json");
    ck_assert(th_write_file(path, cfg, strlen(cfg)));
    char *argv[] = {(char *)th_env("OCB_BRIDGE_BIN"), "subscribe", "-c", path, NULL};
    th_spawn(p, "subscribe", argv);
    return th_wait_exit(p, 30000);
}

/* The app's v1.2.0 subscription of type, its callbackUrl into url; false when none. */
static bool subscription(const char *type, char *url, size_t cap, int *count)
{
    cJSON *subs = fx_sim_call("GET", "/subscriptions", NULL);
    bool found = false;
    int n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, subs)
    {
        if (strcmp(fx_str(s, "notifyType"), type) != 0)
            continue;
        n++;
        found = true;
        const char *u = fx_str(s, "callbackUrl");
        if (!u)
            u = fx_str(s, "callbackurl");
        snprintf(url, cap, "%s", u ? u : "");
    }
    cJSON_Delete(subs);
    if (count)
        *count = n;
    return found;
}

static struct th_proc sub_proc;

START_TEST(subscribe_command_reconciles)
{
    char url[512], want[512];
    fx_sim_start(NULL);
    bridge_port = th_free_port();
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/push/" APP, bridge_port);

    /* From nothing: two business types and one upgrade type. */
    ck_assert_int_eq(run_subscribe("[\"deviceDataChanged\",\"deviceAdded\","
                                   "\"fwUpgradeResultNotify\"]",
                                   "", SECRET, &sub_proc),
                     0);
    ck_assert(th_log_contains(&sub_proc, "deviceDataChanged subscribed"));
    int count = 0;
    ck_assert(subscription("deviceDataChanged", url, sizeof(url), &count));
    ck_assert_str_eq(url, want);
    ck_assert_int_eq(count, 1);
    ck_assert(subscription("deviceAdded", url, sizeof(url), NULL));
    ck_assert_str_eq(url, want);
    ck_assert(subscription("fwUpgradeResultNotify", url, sizeof(url), NULL));
    ck_assert_int_eq(fx_count("POST", "/iodm/app/sub/v1.1.0/subscribe", 200), 1);
    ck_assert_int_eq(fx_count("POST", "/iocm/app/sub/v1.2.0/subscriptions", 201), 2);

    /* Again: nothing to create. */
    ck_assert_int_eq(run_subscribe("[\"deviceDataChanged\",\"deviceAdded\","
                                   "\"fwUpgradeResultNotify\"]",
                                   "", SECRET, &sub_proc),
                     0);
    ck_assert(th_log_contains(&sub_proc, "deviceAdded already subscribed"));
    ck_assert_int_eq(fx_count("POST", "/iocm/app/sub/v1.2.0/subscriptions", -1), 2);

    /* A push token now, and deviceAdded no longer wanted: the platform's
     * 409 for deviceDataChanged is resolved by replacing, deviceAdded goes. */
    ck_assert_int_eq(run_subscribe("[\"deviceDataChanged\"]", "t0k", SECRET, &sub_proc), 0);
    ck_assert_int_ge(fx_count("POST", "/iocm/app/sub/v1.2.0/subscriptions", 409), 1);
    ck_assert(subscription("deviceDataChanged", url, sizeof(url), &count));
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/push/" APP "/t0k", bridge_port);
    ck_assert_str_eq(url, want);
    ck_assert_int_eq(count, 1);
    ck_assert(!subscription("deviceAdded", url, sizeof(url), NULL));

    /* A wrong secret: a clear failure, not silence. */
    ck_assert_int_eq(run_subscribe("[\"deviceDataChanged\"]", "", "wrong", &sub_proc), 1);
    ck_assert(th_log_contains(&sub_proc, "100208"));
}
END_TEST

START_TEST(manage_subscriptions_at_start_up_brings_pushes_home)
{
    th_broker_start(&fx_broker, NULL);
    fx_sim_start(NULL);
    fx_load_devices();
    fx_client = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/#", 1));
    fx_app_extra = ",\"subscribe\":[\"deviceDataChanged\",\"deviceAdded\"]";
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, ",\"manage_subscriptions\":true", true);
    char url[512], want[512], path[256], topic[256];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/push/" APP, fx_bridge.port);
    long long end = th_now_ms() + WAIT_MS;
    while (!subscription("deviceDataChanged", url, sizeof(url), NULL) && th_now_ms() < end)
        th_sleep_ms(100);
    ck_assert_str_eq(url, want);
    /* A device report now reaches MQTT through that subscription. */
    snprintf(path, sizeof(path), "/devices/%s/report", fx_devices[0]);
    fx_sim_post(path, NULL);
    fx_topic(topic, sizeof(topic), APP, 0, "deviceDataChanged");
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(fx_client, topic, WAIT_MS));
}
END_TEST

static Suite *subscribe_suite(void)
{
    Suite *s = suite_create("commands_subscribe");
    TCase *tc = tcase_create("subscribe");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, subscribe_command_reconciles);
    tcase_add_test(tc, manage_subscriptions_at_start_up_brings_pushes_home);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(subscribe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
