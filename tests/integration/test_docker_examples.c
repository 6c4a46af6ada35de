/*
 * test_docker_examples.c: the examples do what they say, against the real
 * stack: Mosquitto from docker/mosquitto/, ocbridge-sim as the platform and
 * the bridge from docker/ocbridge.json (the compose demo, without containers).
 *
 * - the Python and Node clients see a virtual device's data and get the
 *   commandResponse of the command they send (MQTT 5 response topic and
 *   correlation data, and the correlationId field);
 * - with --register they register a device over the device API, read its
 *   history and delete it, as the client user of docker/mosquitto/acl, and
 *   the simulator holds no such device afterwards;
 * - examples/curl/push-all.sh pushes every notification type and each lands
 *   on the topic its comment names;
 * - every metric the Grafana dashboard and the alert rules use is exported
 *   by the running bridge.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "th_docker.h"
#include "th_main.h"

#define WAIT_MS        20000
#define CLIENT_TIMEOUT "20"
#define NPM_TIMEOUT_MS 300000
#define COMMAND        "{\"serviceId\":\"Light\",\"method\":\"SWITCH\",\"paras\":{\"state\":\"ON\"}}"

struct stack {
    struct th_broker broker;
    struct th_proc sim;
    struct th_bridge bridge;
    int sim_admin;
    char device[128];
};

/* One stack per test process (Check forks each test); static because the
 * harness remembers its processes until exit. */
static struct stack S;

static void set_env(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_env(const char *name, const char *fmt, ...)
{
    char v[TH_PATH_MAX + 32];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof(v));
    ck_assert_int_eq(setenv(name, v, 1), 0);
}

/* The first virtual device's id, from the simulator's control API. */
static void first_device(struct stack *s)
{
    char url[96];
    struct th_http_resp r;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/devices", s->sim_admin);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r) && r.status == 200);
    cJSON *arr = cJSON_Parse(r.body);
    const char *id = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, 0), "deviceId"));
    ck_assert_msg(id != NULL, "no device in %s", r.body);
    snprintf(s->device, sizeof(s->device), "%s", id);
    cJSON_Delete(arr);
    th_http_resp_free(&r);
}

static void stack_start(struct stack *s)
{
    char certs[TH_PATH_MAX], path[TH_PATH_MAX], listen[64], admin[64];
    struct th_proc done;

    th_docker_broker_start(&s->broker);

    /* The compose demo's `certs` and `sim` services. */
    th_path(certs, sizeof(certs), "certs");
    char *mkargv[] = {(char *)th_env("OCB_SIM_BIN"), "--make-certs", certs, NULL};
    ck_assert_int_eq(th_run(&done, "sim-certs", mkargv, WAIT_MS), 0);
    int api = th_free_port();
    s->sim_admin = th_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", api);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", s->sim_admin);
    char *simargv[] = {(char *)th_env("OCB_SIM_BIN"),
                       "--listen",
                       listen,
                       "--admin",
                       admin,
                       "--certs",
                       certs,
                       "--app",
                       "demoApp:demoSecret",
                       "--devices",
                       "1",
                       "--report-interval",
                       "1",
                       NULL};
    th_spawn(&s->sim, "sim", simargv);
    ck_assert(th_wait_port(api, WAIT_MS) && th_wait_port(s->sim_admin, WAIT_MS));
    first_device(s);

    /* docker/ocbridge.json as shipped; the variables move it from the
     * compose network's names to this test's ports and files. */
    th_source_path(path, sizeof(path), "docker/ocbridge.json");
    char *json = th_read_file(path, NULL);
    ck_assert_ptr_nonnull(json);
    s->bridge.port = th_free_port();
    set_env("OCB_HTTP_LISTEN", "127.0.0.1:%d", s->bridge.port);
    set_env("OCB_HTTP_PUBLIC_URL", "http://127.0.0.1:%d", s->bridge.port);
    set_env("OCB_MQTT_URL", "%s", s->broker.url);
    set_env("OCB_PLATFORM_URL", "https://127.0.0.1:%d", api);
    set_env("OCB_PLATFORM_CA_FILE", "%s/ca.pem", certs);
    set_env("OCB_PLATFORM_CERT_FILE", "%s/client.pem", certs);
    set_env("OCB_PLATFORM_KEY_FILE", "%s/client-key.pem", certs);
    th_bridge_start(&s->bridge, json, false);
    free(json);
    ck_assert_msg(th_bridge_wait_ready(&s->bridge, NULL, WAIT_MS), "the bridge is not ready");

    /* The compose demo's `subscribe` step: from now on the devices' data comes. */
    char *subargv[] = {(char *)th_env("OCB_BRIDGE_BIN"), "subscribe", "-c", s->bridge.config, NULL};
    ck_assert_int_eq(th_run(&done, "subscribe", subargv, WAIT_MS), 0);
}

static void stack_stop(struct stack *s)
{
    ck_assert_int_eq(th_bridge_stop(&s->bridge), 0);
    th_stop(&s->sim, SIGTERM, 5000);
    th_broker_stop(&s->broker);
}

/* What an example client printed: the device's data, then the command's response. */
static void check_client_output(const struct th_proc *p)
{
    char want[256];
    char *out = th_read_file(p->log, NULL);

    ck_assert_ptr_nonnull(out);
    ck_assert_msg(p->status == 0, "%s exited %d:\n%s", p->name, p->status, out);
    snprintf(want, sizeof(want), "data iot/demoApp/%s/deviceDataChanged {", S.device);
    ck_assert_msg(strstr(out, want) != NULL, "%s did not print \"%s\":\n%s", p->name, want, out);
    const char *resp = strstr(out, "commandResponse {");
    ck_assert_msg(resp != NULL, "%s printed no commandResponse:\n%s", p->name, out);
    ck_assert_msg(strstr(resp, "\"ok\":true") != NULL && strstr(resp, "\"commandId\"") != NULL &&
                      strstr(resp, "\"correlationId\"") != NULL,
                  "unexpected commandResponse:\n%s", resp);
    /* Exactly one answer line: a status arriving after it must not be printed as another. */
    size_t answers = strncmp(out, "commandResponse ", 16) == 0;
    for (const char *l = strchr(out, '\n'); l != NULL; l = strchr(l + 1, '\n'))
        answers += strncmp(l + 1, "commandResponse ", 16) == 0;
    ck_assert_msg(answers == 1, "%s printed %zu commandResponse lines:\n%s", p->name, answers, out);
    free(out);
}

/* How many of the simulator's devices have this nodeId. */
static int devices_with_node(const char *node)
{
    char url[96];
    struct th_http_resp r;
    int n = 0;
    const cJSON *d;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/devices", S.sim_admin);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r) && r.status == 200);
    cJSON *arr = cJSON_Parse(r.body);
    cJSON_ArrayForEach(d, arr)
    {
        const char *nid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "nodeId"));
        n += nid && strcmp(nid, node) == 0;
    }
    cJSON_Delete(arr);
    th_http_resp_free(&r);
    return n;
}

/* The --register flow: register, history, delete, each answered ok on the response topic. */
static void run_register(const char *name, char *interpreter, char *script, const char *node)
{
    char port[16], log_name[64];
    struct th_proc p;

    snprintf(port, sizeof(port), "%d", S.broker.port);
    snprintf(log_name, sizeof(log_name), "%s-register", name);
    char *argv[] = {interpreter,  script,
                    "--port",     port,
                    "--user",     TH_DOCKER_CLIENT_USER,
                    "--password", TH_DOCKER_CLIENT_PASS,
                    "--app",      "demoApp",
                    "--register", (char *)node,
                    "--timeout",  CLIENT_TIMEOUT,
                    NULL};
    th_run(&p, log_name, argv, 3 * WAIT_MS);
    char *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(p.status == 0, "%s exited %d:\n%s", log_name, p.status, out);
    static const char *const ops[] = {"register", "history", "delete"};
    for (size_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "apiResponse %s {", ops[i]);
        const char *line = strstr(out, want);
        ck_assert_msg(line != NULL, "%s printed no %s answer:\n%s", log_name, ops[i], out);
        const char *eol = strchr(line, '\n');
        char *one = strndup(line, eol ? (size_t)(eol - line) : strlen(line));
        ck_assert_ptr_nonnull(one);
        ck_assert_msg(strstr(one, "\"ok\":true") != NULL, "%s: %s not ok:\n%s", log_name, ops[i],
                      out);
        free(one);
    }
    free(out);
    ck_assert_int_eq(devices_with_node(node), 0);
}

/* Run one example client against a fresh stack; both clients take the same arguments. */
static void run_client(const char *name, char *interpreter, char *script)
{
    char port[16], node[32];
    struct th_proc p;

    stack_start(&S);
    snprintf(port, sizeof(port), "%d", S.broker.port);
    char *argv[] = {interpreter,  script,
                    "--port",     port,
                    "--user",     TH_DOCKER_CLIENT_USER,
                    "--password", TH_DOCKER_CLIENT_PASS,
                    "--app",      "demoApp",
                    "--device",   S.device,
                    "--command",  COMMAND,
                    "--timeout",  CLIENT_TIMEOUT,
                    NULL};
    th_run(&p, name, argv, 3 * WAIT_MS);
    check_client_output(&p);
    snprintf(node, sizeof(node), "NODE-%s", name);
    run_register(name, interpreter, script, node);
    stack_stop(&S);
}

START_TEST(python_client_sees_data_and_gets_its_command_response)
{
    char script[TH_PATH_MAX], python[TH_PATH_MAX];

    /* Debian's interpreter, where python3-paho-mqtt is installed. */
    if (access("/usr/bin/python3", X_OK) == 0)
        snprintf(python, sizeof(python), "/usr/bin/python3");
    else
        ck_assert_msg(th_which("python3", python, sizeof(python)), "python3 is not installed");
    th_source_path(script, sizeof(script), "examples/clients/python/ocbridge_client.py");
    run_client("python-client", python, script);
}
END_TEST

START_TEST(node_client_sees_data_and_gets_its_command_response)
{
    char node[TH_PATH_MAX], npm[TH_PATH_MAX], src[TH_PATH_MAX], dst[TH_PATH_MAX];
    struct th_proc p;

    if (!th_which("node", node, sizeof(node)) || !th_which("npm", npm, sizeof(npm))) {
        fprintf(stderr, "SKIP: node or npm is not installed (scripts/install-deps)\n");
        return;
    }
    /* npm ci into this test's directory, not the source tree. */
    static const char *const files[] = {"package.json", "package-lock.json", "client.js"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char rel[64];
        size_t len;
        snprintf(rel, sizeof(rel), "examples/clients/node/%s", files[i]);
        th_source_path(src, sizeof(src), rel);
        char *text = th_read_file(src, &len);
        ck_assert_msg(text != NULL, "cannot read %s", src);
        th_path(dst, sizeof(dst), files[i]);
        ck_assert(th_write_file(dst, text, len));
        free(text);
    }
    char *ci[] = {npm, "ci", "--no-audit", "--no-fund", "--prefix", (char *)th_tmpdir(), NULL};
    ck_assert_msg(th_run(&p, "npm-ci", ci, NPM_TIMEOUT_MS) == 0, "npm ci failed (see npm-ci.log)");

    th_path(dst, sizeof(dst), "client.js");
    run_client("node-client", node, dst);
}
END_TEST

START_TEST(curl_examples_land_on_their_topics)
{
    char script[TH_PATH_MAX], topic[256];
    struct th_proc p;

    stack_start(&S);
    struct th_mqtt *c = th_mqtt_connect_auth(S.broker.url, "t-curl", 5, TH_DOCKER_VIEWER_USER,
                                             TH_DOCKER_VIEWER_PASS);
    ck_assert_ptr_nonnull(c);
    ck_assert(th_mqtt_subscribe(c, "iot/demoApp/+/+", 1));

    th_source_path(script, sizeof(script), "examples/curl/push-all.sh");
    char *argv[] = {"/bin/sh", script, S.bridge.base, "demoApp", NULL};
    ck_assert_int_eq(th_run(&p, "push-all", argv, 3 * WAIT_MS), 0);
    char *out = th_read_file(p.log, NULL);
    char *text = th_read_file(script, NULL);
    ck_assert(out != NULL && text != NULL);

    /* Each "# -> iot/<appId>/<deviceId>/<type>" comment names where the next line lands. */
    size_t n = 0;
    for (const char *l = strstr(text, "# -> "); l != NULL; l = strstr(l + 1, "# -> ")) {
        const char *t = l + 5, *end = strchr(t, '\n');
        ck_assert(end != NULL && strncmp(t, "iot/<appId>/", 12) == 0);
        snprintf(topic, sizeof(topic), "iot/demoApp/%.*s", (int)(end - t - 12), t + 12);
        ck_assert_msg(th_mqtt_wait_topic(c, topic, WAIT_MS) != NULL, "nothing on %s", topic);
        n++;
    }
    ck_assert_uint_eq(n, 22);
    size_t oks = 0;
    for (const char *o = strstr(out, "ok 200\n"); o != NULL; o = strstr(o + 1, "ok 200\n"))
        oks++;
    ck_assert_msg(oks == n, "push-all.sh printed:\n%s", out);
    free(text);
    free(out);
    th_mqtt_free(c);
    stack_stop(&S);
}
END_TEST

/* Append every ocb_* name in s (histogram suffixes stripped) to names. */
static void collect_metric_names(const char *s, char names[][64], size_t *n, size_t cap)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};

    for (const char *p = strstr(s, "ocb_"); p != NULL; p = strstr(p + 1, "ocb_")) {
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz_0123456789");
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)len, p);
        for (size_t i = 0; i < 3; i++) {
            size_t sl = strlen(suffixes[i]), nl = strlen(name);
            if (nl > sl && strcmp(name + nl - sl, suffixes[i]) == 0)
                name[nl - sl] = '\0';
        }
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = strcmp(names[i], name) == 0;
        if (!seen && *n < cap)
            snprintf(names[(*n)++], 64, "%s", name);
        p += len - 1;
    }
}

START_TEST(dashboard_metrics_are_exported)
{
    char path[TH_PATH_MAX], url[128], names[64][64], want[96];
    size_t n = 0;

    static const char *const files[] = {"examples/prometheus/grafana-dashboard.json",
                                        "examples/prometheus/alerts.yml"};
    for (size_t i = 0; i < 2; i++) {
        th_source_path(path, sizeof(path), files[i]);
        char *text = th_read_file(path, NULL);
        ck_assert_ptr_nonnull(text);
        collect_metric_names(text, names, &n, 64);
        free(text);
    }
    ck_assert_uint_ge(n, 11);

    stack_start(&S);
    snprintf(url, sizeof(url), "%s/metrics", S.bridge.base);
    struct th_http_resp r;
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r) && r.status == 200);
    for (size_t i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "# TYPE %.63s ", names[i]);
        ck_assert_msg(strstr(r.body, want) != NULL, "the dashboard uses %s, /metrics has no %s",
                      names[i], names[i]);
    }
    th_http_resp_free(&r);
    stack_stop(&S);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const examples_tests[] = {python_client_sees_data_and_gets_its_command_response,
                                           node_client_sees_data_and_gets_its_command_response,
                                           curl_examples_land_on_their_topics,
                                           dashboard_metrics_are_exported, NULL};
    const struct th_case cases[] = {
        {.name = "examples", .timeout_s = 400, .tests = examples_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "docker_examples", cases);
}
