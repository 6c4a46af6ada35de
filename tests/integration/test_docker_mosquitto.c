/*
 * test_docker_mosquitto.c: the compose stack's broker, as shipped.
 *
 * Mosquitto runs from docker/mosquitto/ (config, users, ACL; only the
 * listener and paths are pointed at the test) and the bridge from
 * docker/ocbridge.json with the OCB_* variables an operator would set.  What
 * the compose stack promises must hold: the bridge's pushes reach a client
 * with the client credentials, commands from the client reach the bridge's
 * subscription, and neither a read-only user nor an anonymous client can get
 * a command to the bridge.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_docker.h"
#include "th_main.h"

#define WAIT_MS 15000

static struct th_mqtt *connect_as(const struct th_broker *b, const char *id, const char *user,
                                  const char *pass)
{
    struct th_mqtt *c = th_mqtt_connect_auth(b->url, id, 5, user, pass);

    ck_assert_msg(c != NULL, "%s cannot connect as %s", id, user);
    return c;
}

/* Run the bridge with docker/ocbridge.json as shipped, pointed at this test's broker. */
static void bridge_start_shipped(struct th_bridge *br, const struct th_broker *b)
{
    char path[TH_PATH_MAX], v[128];

    th_source_path(path, sizeof(path), "docker/ocbridge.json");
    char *json = th_read_file(path, NULL);
    ck_assert_ptr_nonnull(json);
    br->port = th_free_port();
    snprintf(v, sizeof(v), "127.0.0.1:%d", br->port);
    setenv("OCB_HTTP_LISTEN", v, 1);
    snprintf(v, sizeof(v), "http://127.0.0.1:%d", br->port);
    setenv("OCB_HTTP_PUBLIC_URL", v, 1);
    setenv("OCB_MQTT_URL", b->url, 1);
    /* No platform in this test: the app is push-only. */
    setenv("OCB_PLATFORM_CA_FILE", "", 1);
    setenv("OCB_PLATFORM_CERT_FILE", "", 1);
    setenv("OCB_PLATFORM_KEY_FILE", "", 1);
    setenv("OCB_APPS_0_SECRET", "", 1);
    th_bridge_start(br, json, false);
    free(json);
    ck_assert_msg(th_bridge_wait_ready(br, NULL, WAIT_MS),
                  "the bridge did not connect with the credentials in docker/ocbridge.json");
}

START_TEST(bridge_pushes_reach_clients_with_the_shipped_credentials)
{
    static struct th_broker b;
    static struct th_bridge br;
    char url[128], path[TH_PATH_MAX];

    th_docker_broker_start(&b);
    bridge_start_shipped(&br, &b);
    struct th_mqtt *client =
        connect_as(&b, "t-client", TH_DOCKER_CLIENT_USER, TH_DOCKER_CLIENT_PASS);
    struct th_mqtt *viewer =
        connect_as(&b, "t-viewer", TH_DOCKER_VIEWER_USER, TH_DOCKER_VIEWER_PASS);
    ck_assert(th_mqtt_subscribe(client, "iot/#", 1));
    ck_assert(th_mqtt_subscribe(viewer, "iot/#", 1));

    th_source_path(path, sizeof(path), "examples/notifications/deviceDataChanged.json");
    size_t len;
    char *body = th_read_file(path, &len);
    ck_assert_ptr_nonnull(body);
    snprintf(url, sizeof(url), "%s/push/demoApp", br.base);
    struct th_http_resp r;
    ck_assert(th_http("POST", url, body, len, NULL, &r));
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);

    const char *topic = "iot/demoApp/c2dc6ecc-495f-48ff-95b1-177855ce5c69/deviceDataChanged";
    const struct th_msg *m = th_mqtt_wait_topic(client, topic, WAIT_MS);
    ck_assert_msg(m != NULL, "the client did not receive the push");
    ck_assert_uint_eq(m->len, len);
    ck_assert_mem_eq(m->payload, body, len);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(viewer, topic, WAIT_MS));

    th_mqtt_free(viewer);
    th_mqtt_free(client);
    free(body);
    ck_assert_int_eq(th_bridge_stop(&br), 0);
    th_broker_stop(&b);
}
END_TEST

START_TEST(only_clients_can_command_the_bridge)
{
    static struct th_broker b;
    const char *cmd_topic = "iot/demoApp/dev1/command";

    th_docker_broker_start(&b);
    /* The bridge's own subscription, with its credentials. */
    struct th_mqtt *bridge =
        connect_as(&b, "t-bridge", TH_DOCKER_BRIDGE_USER, TH_DOCKER_BRIDGE_PASS);
    ck_assert(th_mqtt_subscribe(bridge, "iot/+/+/command", 1));
    ck_assert(th_mqtt_subscribe(bridge, "iot/+/+/commandCancel", 1));

    /* Anonymous clients and wrong passwords are refused at CONNECT. */
    ck_assert_ptr_null(th_mqtt_connect_auth(b.url, "t-anon", 5, NULL, NULL));
    ck_assert_ptr_null(th_mqtt_connect_auth(b.url, "t-anon4", 4, NULL, NULL));
    ck_assert_ptr_null(
        th_mqtt_connect_auth(b.url, "t-wrong", 5, TH_DOCKER_CLIENT_USER, "not-the-password"));

    /* The read-only user connects, but its command and cancel go nowhere.
     * It publishes first and its publishes complete before the client's
     * start, so if the broker delivered them they would arrive first. */
    struct th_mqtt *viewer =
        connect_as(&b, "t-viewer", TH_DOCKER_VIEWER_USER, TH_DOCKER_VIEWER_PASS);
    const char *bad = "{\"serviceId\":\"Light\",\"method\":\"SWITCH\",\"paras\":{},\"v\":1}";
    th_mqtt_publish(viewer, cmd_topic, bad, strlen(bad), 1, false, NULL, NULL, 0);
    th_mqtt_publish(viewer, "iot/demoApp/dev1/commandCancel", "{\"all\":true}", 12, 1, false, NULL,
                    NULL, 0);
    /* Nor may it impersonate the bridge. */
    th_mqtt_publish(viewer, "iot/demoApp/dev1/deviceDataChanged", "{}", 2, 1, false, NULL, NULL, 0);

    struct th_mqtt *client =
        connect_as(&b, "t-client", TH_DOCKER_CLIENT_USER, TH_DOCKER_CLIENT_PASS);
    const char *good = "{\"serviceId\":\"Light\",\"method\":\"SWITCH\",\"paras\":{}}";
    ck_assert(th_mqtt_publish(client, cmd_topic, good, strlen(good), 1, false, "replies/client/x",
                              "c1", 2));
    ck_assert(th_mqtt_publish(client, "iot/demoApp/dev1/commandCancel", "{\"all\":true}", 12, 1,
                              false, NULL, NULL, 0));
    ck_assert(th_mqtt_wait(bridge, 2, WAIT_MS));
    const struct th_msg *m = th_mqtt_msg(bridge, 0);
    ck_assert_str_eq(m->topic, cmd_topic);
    ck_assert_str_eq((const char *)m->payload, good);
    ck_assert_str_eq(m->response_topic, "replies/client/x");
    ck_assert_str_eq(th_mqtt_msg(bridge, 1)->topic, "iot/demoApp/dev1/commandCancel");

    /* The client may not publish data as if it were the bridge, and the
     * bridge may answer on the client's reply topic, which the client reads. */
    ck_assert(th_mqtt_subscribe(client, "replies/client/#", 1));
    ck_assert(th_mqtt_subscribe(viewer, "iot/#", 1));
    th_mqtt_publish(client, "iot/demoApp/dev1/deviceDataChanged", "{\"fake\":1}", 10, 1, false,
                    NULL, NULL, 0);
    ck_assert(
        th_mqtt_publish(bridge, "replies/client/x", "{\"ok\":true}", 11, 1, false, NULL, NULL, 0));
    ck_assert(th_mqtt_publish(bridge, "iot/demoApp/dev1/commandResponse", "{}", 2, 1, false, NULL,
                              NULL, 0));
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(client, "replies/client/x", WAIT_MS));
    ck_assert(th_mqtt_wait(viewer, 1, WAIT_MS));
    ck_assert_str_eq(th_mqtt_msg(viewer, 0)->topic, "iot/demoApp/dev1/commandResponse");
    ck_assert_uint_eq(th_mqtt_count(bridge), 2);

    th_mqtt_free(client);
    th_mqtt_free(viewer);
    th_mqtt_free(bridge);
    th_broker_stop(&b);
}
END_TEST

/* The device API lines of docker/mosquitto/acl (README "The device API over MQTT"): the bridge
 * reads every app's api topics, the client may publish on demoApp's, the viewer only on
 * dashApp's (an app the bridge would limit to the reads). */
START_TEST(api_topics_follow_the_acl)
{
    static struct th_broker b;
    const char *req = "{\"op\":\"register\",\"nodeId\":\"n1\"}";

    th_docker_broker_start(&b);
    struct th_mqtt *bridge =
        connect_as(&b, "t-bridge", TH_DOCKER_BRIDGE_USER, TH_DOCKER_BRIDGE_PASS);
    ck_assert(th_mqtt_subscribe(bridge, "iot/+/+/api", 1));
    struct th_mqtt *viewer =
        connect_as(&b, "t-viewer", TH_DOCKER_VIEWER_USER, TH_DOCKER_VIEWER_PASS);
    struct th_mqtt *client =
        connect_as(&b, "t-client", TH_DOCKER_CLIENT_USER, TH_DOCKER_CLIENT_PASS);
    /* Refused first, so that a delivery would arrive before the allowed ones. */
    th_mqtt_publish(viewer, "iot/demoApp/_/api", req, strlen(req), 1, false, NULL, NULL, 0);
    th_mqtt_publish(client, "iot/dashApp/_/api", req, strlen(req), 1, false, NULL, NULL, 0);
    ck_assert(th_mqtt_publish(client, "iot/demoApp/_/api", req, strlen(req), 1, false,
                              "replies/client/a", "c1", 2));
    ck_assert(
        th_mqtt_publish(viewer, "iot/dashApp/_/api", req, strlen(req), 1, false, NULL, NULL, 0));
    ck_assert(th_mqtt_wait(bridge, 2, WAIT_MS));
    ck_assert_str_eq(th_mqtt_msg(bridge, 0)->topic, "iot/demoApp/_/api");
    ck_assert_str_eq(th_mqtt_msg(bridge, 0)->response_topic, "replies/client/a");
    ck_assert_str_eq(th_mqtt_msg(bridge, 1)->topic, "iot/dashApp/_/api");
    th_sleep_ms(300);
    ck_assert_uint_eq(th_mqtt_count(bridge), 2);

    th_mqtt_free(client);
    th_mqtt_free(viewer);
    th_mqtt_free(bridge);
    th_broker_stop(&b);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const broker_tests[] = {bridge_pushes_reach_clients_with_the_shipped_credentials,
                                         only_clients_can_command_the_bridge,
                                         api_topics_follow_the_acl, NULL};
    const struct th_case cases[] = {
        {.name = "broker", .timeout_s = 120, .tests = broker_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "docker_mosquitto", cases);
}
