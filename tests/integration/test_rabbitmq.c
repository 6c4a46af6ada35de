/*
 * test_rabbitmq.c: the push and command round trip through a second real
 * broker, RabbitMQ's MQTT plugin (Debian's rabbitmq-server, MQTT 3.1.1 only,
 * so mqtt.version 4).  Mosquitto is the broker of every other suite; this
 * one proves the bridge does not lean on anything Mosquitto does beyond the
 * standard.
 *
 * The test starts its own node: a private epmd and RabbitMQ on 127.0.0.1
 * ports of their own, with config, data, logs and the Erlang cookie under
 * the test's temporary directory, and stops both by PID.  Without the
 * package the suite exits 77 (ctest: skipped) and says why.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_platform.h"
#include "harness.h"
#include "th_main.h"

#define RABBIT_SERVER "/usr/lib/rabbitmq/bin/rabbitmq-server"
#define EPMD          "/usr/bin/epmd"
#define START_MS      (90000 * th_time_scale())

static struct th_proc epmd, rabbit;
static pid_t beam_pid;
static unsigned long long beam_started; /* its start time, so a reused PID is never signalled */
static char rabbit_url[64];

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 when the process is gone. */
static unsigned long long start_time_of(pid_t pid)
{
    char path[64], *text, *p;
    unsigned long long v = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    text = th_read_file(path, NULL);
    if (text == NULL)
        return 0;
    p = strrchr(text, ')'); /* the command name may hold spaces */
    for (int field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p != NULL)
        v = strtoull(p + 1, NULL, 10);
    free(text);
    return v;
}

/* The VM we started is still running (and its PID not reused by someone else). */
static bool beam_alive(void)
{
    return beam_pid > 0 && beam_started != 0 && start_time_of(beam_pid) == beam_started;
}

/* The Erlang VM the rabbitmq-server script started (its one child), so that it can be
 * stopped by PID even when the script is gone. */
static pid_t child_of(pid_t parent)
{
    char path[64], *text;
    long v = 0;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
    text = th_read_file(path, NULL);
    if (text != NULL) {
        v = strtol(text, NULL, 10);
        free(text);
    }
    return (pid_t)v;
}

static void rabbit_start(void)
{
    char dir[TH_PATH_MAX], conf[TH_PATH_MAX], plugins[TH_PATH_MAX], text[1024];
    char epmd_port[16], dist_port[16], node[64], mnesia[TH_PATH_MAX], logs[TH_PATH_MAX];
    int mqtt = th_free_port(), amqp = th_free_port(), dist = th_free_port(), ep = th_free_port(), n;

    snprintf(dir, sizeof(dir), "%s", th_tmpdir());
    snprintf(epmd_port, sizeof(epmd_port), "%d", ep);
    snprintf(dist_port, sizeof(dist_port), "%d", dist);
    snprintf(node, sizeof(node), "ocbit%d@localhost", mqtt);
    th_path(conf, sizeof(conf), "rabbitmq.conf");
    th_path(plugins, sizeof(plugins), "enabled_plugins");
    th_path(mnesia, sizeof(mnesia), "rabbit-data");
    th_path(logs, sizeof(logs), "rabbit-logs");
    n = snprintf(text, sizeof(text),
                 "listeners.tcp.default = 127.0.0.1:%d\n"
                 "mqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                 "mqtt.allow_anonymous = true\n"
                 "loopback_users = none\n"
                 "log.console = true\n"
                 "log.file = false\n",
                 amqp, mqtt);
    ck_assert(n > 0 && (size_t)n < sizeof(text));
    ck_assert(th_write_file(conf, text, strlen(text)));
    ck_assert(th_write_file(plugins, "[rabbitmq_mqtt].\n", 17));
    snprintf(rabbit_url, sizeof(rabbit_url), "tcp://127.0.0.1:%d", mqtt);

    {
        char *argv[] = {EPMD, "-port", epmd_port, "-address", "127.0.0.1", NULL};
        th_spawn(&epmd, "epmd", argv);
        ck_assert_msg(th_wait_port(ep, 15000), "epmd did not listen");
    }
    /* The environment reaches the node through th_spawn; this test process is one Check
     * fork of its own, so changing it here touches nothing else. */
    setenv("HOME", dir, 1); /* the Erlang cookie goes there */
    setenv("ERL_EPMD_PORT", epmd_port, 1);
    setenv("ERL_EPMD_ADDRESS", "127.0.0.1", 1);
    setenv("RABBITMQ_NODENAME", node, 1);
    setenv("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1", 1);
    setenv("RABBITMQ_DIST_PORT", dist_port, 1);
    /* RABBITMQ_CONFIG_FILE names the file without its .conf suffix. */
    conf[strlen(conf) - 5] = '\0';
    setenv("RABBITMQ_CONFIG_FILE", conf, 1);
    setenv("RABBITMQ_ENABLED_PLUGINS_FILE", plugins, 1);
    setenv("RABBITMQ_MNESIA_BASE", mnesia, 1);
    setenv("RABBITMQ_LOG_BASE", logs, 1);
    setenv("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}", 1);
    {
        char *argv[] = {RABBIT_SERVER, NULL};
        th_spawn(&rabbit, "rabbitmq", argv);
    }
    ck_assert_msg(th_wait_port(mqtt, START_MS), "RabbitMQ's MQTT listener did not come up");
    beam_pid = child_of(rabbit.pid);
    beam_started = beam_pid > 0 ? start_time_of(beam_pid) : 0;
}

static void rabbit_stop(void)
{
    if (rabbit.pid > 0)
        th_stop(&rabbit, SIGTERM, 30000);
    /* The script stops the VM on SIGTERM; if it could not, stop the VM by its PID. */
    if (beam_alive()) {
        kill(beam_pid, SIGTERM);
        for (int i = 0; i < 300 && beam_alive(); i++)
            th_sleep_ms(100);
        if (beam_alive())
            kill(beam_pid, SIGKILL);
    }
    beam_pid = 0;
    beam_started = 0;
    if (epmd.pid > 0)
        th_stop(&epmd, SIGTERM, 5000);
}

static void teardown(void)
{
    if (fx_bridge.proc.pid > 0)
        ck_assert_int_eq(th_bridge_stop(&fx_bridge), 0);
    th_mqtt_free(fx_client);
    fx_client = NULL;
    rabbit_stop();
}

START_TEST(test_push_and_command_round_trip_v4)
{
    char cfg[4096], url[128], topic[256];
    struct th_http_resp r;
    const struct th_msg *m;
    cJSON *answer, *cmds;
    int n;

    rabbit_start();
    fx_sim_start(NULL);
    fx_load_devices();
    fx_client = th_mqtt_connect(rabbit_url, "tester", 4);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, "iot/#", 1));

    fx_bridge.port = th_free_port();
    n = snprintf(cfg, sizeof(cfg),
                 "{\"http\":{\"listen\":\"127.0.0.1:%d\"},"
                 "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"ocb-rabbit\",\"version\":4},"
                 "\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                 "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\","
                 "\"timeout_ms\":2000,\"command_deadline_s\":20},"
                 "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"" SECRET "\"},"
                 "{\"app_id\":\"pushOnly\"}],\"log\":{\"level\":\"debug\"}}",
                 fx_bridge.port, rabbit_url, fx_api, fx_certs, fx_certs, fx_certs);
    ck_assert(n > 0 && (size_t)n < sizeof(cfg));
    th_bridge_start(&fx_bridge, cfg, false);
    /* Ready means connected, logged in and both command filters granted. */
    ck_assert_msg(th_bridge_wait_ready(&fx_bridge, NULL, WAIT_MS), "bridge not ready on RabbitMQ");

    /* Push: the platform's notification comes out on its topic. */
    snprintf(url, sizeof(url), "%s/push/pushOnly", fx_bridge.base);
    {
        const char *body = "{\"notifyType\":\"deviceDataChanged\",\"deviceId\":\"dev-r\"}";
        ck_assert(th_http("POST", url, body, strlen(body), NULL, &r));
        ck_assert_int_eq(r.status, 200);
        th_http_resp_free(&r);
    }
    m = th_mqtt_wait_topic(fx_client, "iot/pushOnly/dev-r/deviceDataChanged", WAIT_MS);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(strstr((const char *)m->payload, "\"deviceId\":\"dev-r\""));

    /* Command: one MQTT command, one platform command, one answer. */
    fx_topic(topic, sizeof(topic), APP, 0, "command");
    fx_publish(topic, "{\"serviceId\":\"S\",\"method\":\"M\",\"paras\":{\"v\":1},"
                      "\"correlationId\":\"rabbit-1\"}");
    fx_topic(topic, sizeof(topic), APP, 0, "commandResponse");
    m = th_mqtt_wait_topic(fx_client, topic, WAIT_MS);
    ck_assert_msg(m != NULL, "no commandResponse through RabbitMQ");
    answer = cJSON_Parse((const char *)m->payload);
    ck_assert_ptr_nonnull(answer);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(answer, "ok")), "answer: %s", m->payload);
    ck_assert_str_eq(fx_str(answer, "correlationId"), "rabbit-1");
    cJSON_Delete(answer);
    cmds = fx_sim_call("GET", "/commands", NULL);
    ck_assert_int_eq(cJSON_GetArraySize(cmds), 1);
    cJSON_Delete(cmds);
    ck_assert_double_eq(th_metric(&fx_bridge, NULL, "ocb_mqtt_subscriptions_refused_total"), 0);
}
END_TEST

int main(int argc, char **argv)
{
    if (access(RABBIT_SERVER, X_OK) != 0 || access(EPMD, X_OK) != 0) {
        printf("test_rabbitmq: skipped: RabbitMQ is not installed (apt-get install "
               "rabbitmq-server, or scripts/install-deps)\n");
        return 77;
    }
    const TTest *const round_trip_tests[] = {test_push_and_command_round_trip_v4, NULL};
    const struct th_case cases[] = {
        {.name = "round_trip", .teardown = teardown, .timeout_s = 240, .tests = round_trip_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "rabbitmq", cases);
}
