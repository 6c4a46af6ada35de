/*
 * test_commands_subscribe.c: `ocbridge subscribe -c FILE` and
 * platform.manage_subscriptions against ocbridge-sim: create what is
 * missing, leave what is right, replace a conflicting subscription
 * (409/100227), remove what this bridge no longer wants, subscribe the
 * upgrade types through the device-management API, and fail loudly on a
 * wrong secret.  And a move: once http.public_url points at another
 * IP:port, the subscriptions at the old one are deleted (also those of
 * types not wanted, which would block us) and ours created, both by the
 * command and at start-up; a failed deletion changes nothing else.
 * And the sync runs beside the commands: with the simulator's subscription
 * paths slowed down, commands are answered while it is under way, and
 * stopping the bridge in the middle of it is clean.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th_platform.h"
#include "th_main.h"

static int bridge_port;

/* Write a config with public URL port, this subscribe list, push token and secret; run
 * `ocbridge subscribe`. */
static int run_subscribe_at(int port, const char *subscribe_json, const char *push_token,
                            const char *secret, struct th_proc *p)
{
    char cfg[4096], path[TH_PATH_MAX];
    int n = snprintf(cfg, sizeof(cfg),
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"public_url\":\"http://"
                     "127.0.0.1:%d\"},"
                     "\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                     "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\"},"
                     "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"%s\",\"push_token\":\"%s\","
                     "\"subscribe\":%s}]}",
                     port, port, fx_api, fx_certs, fx_certs, fx_certs, secret, push_token,
                     subscribe_json);
    ck_assert(n > 0 && (size_t)n < sizeof(cfg));
    th_path(path, sizeof(path), "subscribe.json");
    ck_assert(th_write_file(path, cfg, strlen(cfg)));
    char *argv[] = {(char *)th_env("OCB_BRIDGE_BIN"), "subscribe", "-c", path, NULL};
    /* A log of its own per run, so each run's report is checked alone. */
    static int runs;
    char name[32];
    snprintf(name, sizeof(name), "subscribe-%d", ++runs);
    th_spawn(p, name, argv);
    return th_wait_exit(p, 30000);
}

static int run_subscribe(const char *subscribe_json, const char *push_token, const char *secret,
                         struct th_proc *p)
{
    return run_subscribe_at(bridge_port, subscribe_json, push_token, secret, p);
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

/* How many of the app's subscriptions there are; *here of them have exactly url. */
static int subscriptions_at(const char *url, int *here)
{
    cJSON *subs = fx_sim_call("GET", "/subscriptions", NULL);
    int n = 0;
    *here = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, subs)
    {
        if (strcmp(fx_str(s, "appId"), APP) != 0)
            continue;
        n++;
        if (strcmp(fx_str(s, "callbackUrl"), url) == 0)
            (*here)++;
    }
    cJSON_Delete(subs);
    return n;
}

/* Push attempts the simulator made to a URL containing needle. */
static int pushes_to(const char *needle)
{
    cJSON *all = fx_sim_call("GET", "/pushes", NULL);
    int n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, all)
    {
        const char *u = fx_str(p, "url");
        if (u && strstr(u, needle))
            n++;
    }
    cJSON_Delete(all);
    return n;
}

/* Assert that p's output contains text followed directly by tail. */
static void assert_log(const struct th_proc *p, const char *text, const char *tail)
{
    char needle[1024];
    int n = snprintf(needle, sizeof(needle), "%s%s", text, tail);
    ck_assert(n > 0 && (size_t)n < sizeof(needle));
    ck_assert_msg(th_log_contains(p, needle), "log lacks: %s", needle);
}

#define MOVED_TYPES                                                                                \
    "[\"deviceDataChanged\",\"deviceAdded\",\"deviceDatasChanged\",\"fwUpgradeResultNotify\"]"
#define OLD_TYPES "[\"deviceDataChanged\",\"deviceAdded\",\"ruleEvent\",\"fwUpgradeResultNotify\"]"
#define SUB_POST  "/iocm/app/sub/v1.2.0/subscriptions"
#define IODM_POST "/iodm/app/sub/v1.1.0/subscribe"

static struct th_proc sub_proc;

/* A platform that honours a smaller pageSize than asked for (here 2): the sync must page by
 * totalCount, or it misses subscriptions and "re-creates" them on every run. */
START_TEST(listing_pages_by_total_count)
{
    static const char types[] = "[\"deviceDataChanged\",\"deviceAdded\",\"deviceDeleted\","
                                "\"deviceInfoChanged\",\"bindDevice\"]";
    fx_sim_start("--max-page-size 2");
    bridge_port = th_free_port();
    ck_assert_int_eq(run_subscribe(types, "", SECRET, &sub_proc), 0);
    ck_assert_int_eq(fx_count("POST", "/iocm/app/sub/v1.2.0/subscriptions", 201), 5);

    /* Again: all five are found across three pages, nothing is created or replaced. */
    ck_assert_int_eq(run_subscribe(types, "", SECRET, &sub_proc), 0);
    ck_assert_int_eq(fx_count("POST", "/iocm/app/sub/v1.2.0/subscriptions", -1), 5);
    cJSON *reqs = fx_requests("/iocm/app/sub/v1.2.0/subscriptions");
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        ck_assert_str_ne(fx_str(r, "method"), "DELETE");
    }
    cJSON_Delete(reqs);
    ck_assert(th_log_contains(&sub_proc, "bindDevice already subscribed"));
}
END_TEST

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
    fx_start_platform(NULL, "iot/#");
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

/* The audit's case: subscriptions at A, public URL now B. */
START_TEST(subscribe_command_moves_an_app_to_a_new_public_url)
{
    fx_start(NULL, NULL, NULL); /* the bridge listens at B = fx_bridge.port */
    int old_port = th_free_port();
    char old_url[256], new_url[256], path[256], topic[256];
    snprintf(old_url, sizeof(old_url), "http://127.0.0.1:%d/push/" APP, old_port);
    snprintf(new_url, sizeof(new_url), "http://127.0.0.1:%d/push/" APP, fx_bridge.port);

    ck_assert_int_eq(run_subscribe_at(old_port, OLD_TYPES, "", SECRET, &sub_proc), 0);
    int here = 0;
    ck_assert_int_eq(subscriptions_at(old_url, &here), 4);
    ck_assert_int_eq(here, 4);

    /* Move to B: ruleEvent is no longer wanted, deviceDatasChanged is new. */
    int rc = run_subscribe_at(fx_bridge.port, MOVED_TYPES, "", SECRET, &sub_proc);
    if (rc != 0)
        th_log_dump(&sub_proc, 40);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(subscriptions_at(new_url, &here), 4);
    ck_assert_int_eq(here, 4);
    char url[512];
    ck_assert(!subscription("ruleEvent", url, sizeof(url), NULL));
    ck_assert(subscription("deviceDatasChanged", url, sizeof(url), NULL));
    ck_assert(subscription("fwUpgradeResultNotify", url, sizeof(url), NULL));
    ck_assert_str_eq(url, new_url);
    /* The destructive part is loud: warn lines and report lines with the old URL. */
    assert_log(&sub_proc, "warn  subscriptions: app " APP ": ruleEvent DELETED at another address ",
               old_url);
    assert_log(&sub_proc, APP ": ruleEvent DELETED at another address ", old_url);
    assert_log(&sub_proc,
               "warn  subscriptions: app " APP ": deviceDataChanged deleted at its old address ",
               old_url);
    assert_log(&sub_proc, APP ": deviceDatasChanged subscribed", "\n");

    /* Pushes now reach the bridge at B, and none went to A. */
    snprintf(path, sizeof(path), "/devices/%s/report", fx_devices[0]);
    fx_sim_post(path, NULL);
    fx_topic(topic, sizeof(topic), APP, 0, "deviceDataChanged");
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(fx_client, topic, WAIT_MS));
    snprintf(path, sizeof(path), ":%d/", old_port);
    ck_assert_int_eq(pushes_to(path), 0);

    /* A second run changes nothing. */
    int posts = fx_count_prefix("POST", SUB_POST), iodm = fx_count_prefix("POST", IODM_POST);
    int deletes = fx_count_prefix("DELETE", SUB_POST);
    ck_assert_int_eq(run_subscribe_at(fx_bridge.port, MOVED_TYPES, "", SECRET, &sub_proc), 0);
    ck_assert_int_eq(fx_count_prefix("POST", SUB_POST), posts);
    ck_assert_int_eq(fx_count_prefix("POST", IODM_POST), iodm);
    ck_assert_int_eq(fx_count_prefix("DELETE", SUB_POST), deletes);
    ck_assert(th_log_contains(&sub_proc, APP ": fwUpgradeResultNotify already subscribed"));
    ck_assert(!th_log_contains(&sub_proc, "DELETED"));
    ck_assert_int_eq(subscriptions_at(new_url, &here), 4);
    ck_assert_int_eq(here, 4);
}
END_TEST

/* A deletion refused midway: nothing else is touched, exit 1, and a re-run completes the move. */
START_TEST(failed_deletion_stops_the_move_and_a_rerun_converges)
{
    fx_sim_start(NULL);
    int old_port = th_free_port();
    bridge_port = th_free_port();
    char old_url[256], new_url[256];
    snprintf(old_url, sizeof(old_url), "http://127.0.0.1:%d/push/" APP, old_port);
    snprintf(new_url, sizeof(new_url), "http://127.0.0.1:%d/push/" APP, bridge_port);
    ck_assert_int_eq(run_subscribe_at(old_port, OLD_TYPES, "", SECRET, &sub_proc), 0);

    fx_sim_post("/faults", "{\"method\":\"DELETE\",\"path_prefix\":\"" SUB_POST "/\","
                           "\"status\":400,\"error_code\":\"100022\",\"count\":1}");
    int posts = fx_count_prefix("POST", SUB_POST);
    ck_assert_int_eq(run_subscribe(MOVED_TYPES, "", SECRET, &sub_proc), 1);
    ck_assert(th_log_contains(&sub_proc, "ruleEvent delete of"));
    ck_assert(th_log_contains(&sub_proc, APP ": deviceDataChanged NOT subscribed"));
    /* The first deletion failed, so everything still points at A and nothing was created. */
    int here = 0;
    ck_assert_int_eq(subscriptions_at(old_url, &here), 4);
    ck_assert_int_eq(here, 4);
    ck_assert_int_eq(fx_count_prefix("POST", SUB_POST), posts);
    ck_assert_int_eq(fx_count_prefix("DELETE", SUB_POST), 1);

    ck_assert_int_eq(run_subscribe(MOVED_TYPES, "", SECRET, &sub_proc), 0);
    ck_assert_int_eq(subscriptions_at(new_url, &here), 4);
    ck_assert_int_eq(here, 4);
}
END_TEST

/* platform.manage_subscriptions with a moved public URL: the bridge moves them at start-up. */
START_TEST(manage_subscriptions_at_start_up_moves_the_app)
{
    fx_start_platform(NULL, "iot/#");
    int old_port = th_free_port();
    char old_url[256], new_url[256], path[256], topic[256];
    snprintf(old_url, sizeof(old_url), "http://127.0.0.1:%d/push/" APP, old_port);
    ck_assert_int_eq(
        run_subscribe_at(old_port, "[\"deviceDataChanged\",\"ruleEvent\"]", "", SECRET, &sub_proc),
        0);

    fx_app_extra = ",\"subscribe\":[\"deviceDataChanged\",\"deviceAdded\"]";
    fx_bridge_start(&fx_bridge, "bridge-1", NULL, ",\"manage_subscriptions\":true", true);
    snprintf(new_url, sizeof(new_url), "http://127.0.0.1:%d/push/" APP, fx_bridge.port);
    int here = 0;
    long long end = th_now_ms() + WAIT_MS;
    while ((subscriptions_at(new_url, &here) != 2 || here != 2) && th_now_ms() < end)
        th_sleep_ms(100);
    ck_assert_int_eq(subscriptions_at(new_url, &here), 2);
    ck_assert_int_eq(here, 2);
    char url[512];
    ck_assert(!subscription("ruleEvent", url, sizeof(url), NULL));
    assert_log(&fx_bridge.proc, "app " APP ": ruleEvent DELETED at another address ", old_url);
    ck_assert(!th_log_contains(&fx_bridge.proc, "not in sync"));
    /* Counted: ruleEvent and the old deviceDataChanged deleted, two created, nothing failed. */
    ck_assert(fx_metric("ocb_subscription_changes_total{action=\"deleted\"}") == 2);
    ck_assert(fx_metric("ocb_subscription_changes_total{action=\"created\"}") == 2);
    ck_assert(fx_metric("ocb_subscription_changes_total{action=\"failed\"}") == -1);

    snprintf(path, sizeof(path), "/devices/%s/report", fx_devices[1]);
    fx_sim_post(path, NULL);
    fx_topic(topic, sizeof(topic), APP, 1, "deviceDataChanged");
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(fx_client, topic, WAIT_MS));
}
END_TEST

/* Replace the first occurrence of from in the running bridge's config file. */
static void edit_bridge_config(const char *from, const char *to)
{
    size_t len;
    char *text = th_read_file(fx_bridge.config, &len);
    ck_assert_ptr_nonnull(text);
    char *at = strstr(text, from);
    ck_assert_ptr_nonnull(at);
    char out[8192];
    int n = snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    ck_assert(n > 0 && (size_t)n < sizeof(out));
    ck_assert(th_write_file(fx_bridge.config, out, (size_t)n));
    free(text);
}

#define SLOW_MS 6000 /* injected latency of every v1.2.0 subscription call */

static void slow_subscription_calls(void)
{
    char rule[256];
    snprintf(rule, sizeof(rule), "{\"path_prefix\":\"%s\",\"latency_ms\":%d}", SUB_POST,
             SLOW_MS * th_time_scale());
    fx_sim_post("/faults", rule);
}

/*
 * The sync runs beside the commands, not in front of them: with every
 * subscription call slowed down, a SIGHUP that adds a type starts a sync
 * (a list, then a create: two slow calls), and a command published
 * meanwhile is answered before the sync is over, within one injected
 * latency.  The sync still completes.
 */
START_TEST(commands_are_answered_while_a_slow_sync_runs)
{
    char url[512], topic[256], answer_topic[256];
    fx_start_platform(NULL, "iot/#");
    fx_app_extra = ",\"subscribe\":[\"deviceDataChanged\"]";
    /* Platform calls may take the injected latency and more. */
    fx_bridge_start(&fx_bridge, "bridge-1", NULL,
                    ",\"manage_subscriptions\":true,\"timeout_ms\":20000", true);
    ck_assert(th_log_wait(&fx_bridge.proc, "platform subscriptions: in sync", WAIT_MS));
    ck_assert(subscription("deviceDataChanged", url, sizeof(url), NULL));

    slow_subscription_calls();
    edit_bridge_config("\"subscribe\":[\"deviceDataChanged\"]",
                       "\"subscribe\":[\"deviceDataChanged\",\"deviceAdded\"]");
    th_signal(&fx_bridge.proc, SIGHUP);
    /* The worker starts the sync in the same turn as it applies the reload. */
    ck_assert(th_log_wait(&fx_bridge.proc, "commands: configuration reloaded", WAIT_MS));

    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_topic(answer_topic, sizeof(answer_topic), APP, 0, "commandResponse");
    long long sent = th_now_ms();
    fx_publish(topic,
               "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{},\"correlationId\":\"during\"}");
    cJSON *a = fx_answer(answer_topic, 0);
    long long took = th_now_ms() - sent;
    /* Answered before the sync could have created deviceAdded... */
    ck_assert_msg(!subscription("deviceAdded", url, sizeof(url), NULL),
                  "the sync finished before the command was answered (%lld ms)", took);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
    ck_assert_str_eq(fx_str(a, "correlationId"), "during");
    cJSON_Delete(a);
    /* ...and sooner than even one of its slow calls takes. */
    ck_assert_msg(took < SLOW_MS * th_time_scale(), "answered after %lld ms", took);

    /* The sync completes all the same. */
    long long end = th_now_ms() + 4LL * SLOW_MS * th_time_scale() + WAIT_MS;
    while (!subscription("deviceAdded", url, sizeof(url), NULL) && th_now_ms() < end)
        th_sleep_ms(100);
    ck_assert(subscription("deviceAdded", url, sizeof(url), NULL));
    char want[256];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/push/" APP, fx_bridge.port);
    ck_assert_str_eq(url, want);
    ck_assert(th_log_wait(&fx_bridge.proc, "app " APP ": deviceAdded subscribed", WAIT_MS));
    ck_assert(!th_log_contains(&fx_bridge.proc, "not in sync"));
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
}
END_TEST

/* Stopping while a slow sync call is in flight: a clean, prompt exit (the call is abandoned). */
START_TEST(stop_during_a_slow_sync_is_clean)
{
    fx_start_platform(NULL, "iot/#");
    slow_subscription_calls();
    fx_app_extra = ",\"subscribe\":[\"deviceDataChanged\"]";
    fx_bridge_start(&fx_bridge, "bridge-1", NULL,
                    ",\"manage_subscriptions\":true,\"timeout_ms\":20000", true);
    ck_assert(th_log_wait(&fx_bridge.proc, "platform subscriptions: sync started", WAIT_MS));
    ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    ck_assert(th_log_contains(&fx_bridge.proc, "subscription sync interrupted"));
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const subscribe_tests[] = {subscribe_command_reconciles,
                                            listing_pages_by_total_count,
                                            manage_subscriptions_at_start_up_brings_pushes_home,
                                            subscribe_command_moves_an_app_to_a_new_public_url,
                                            failed_deletion_stops_the_move_and_a_rerun_converges,
                                            manage_subscriptions_at_start_up_moves_the_app,
                                            commands_are_answered_while_a_slow_sync_runs,
                                            stop_during_a_slow_sync_is_clean,
                                            NULL};
    const struct th_case cases[] = {
        {.name = "subscribe", .timeout_s = 90, .tests = subscribe_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "commands_subscribe", cases);
}
