/*
 * test_api_sim.c: every device API operation that api.c builds, sent by the
 * bridge's own platform client (tokens, mutual TLS) to the real simulator,
 * which must accept it as the platform would; the answers render as
 * apiResponse payloads.  The no-double rules are checked against real
 * answers: a register or groupCreate is found again by its reconciliation
 * query, a blind resend of the register is refused by the platform, and a
 * delete retried after it succeeded is recognised as done.
 *
 * This is the pure half's conformance test; the MQTT round trip through the
 * bridge is test_api.c.  Links ocbridge_core (tests/CMakeLists.txt).
 */
#include <check.h>
#include <signal.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "th_main.h"

#include "ocb/api.h"
#include "ocb/command.h"
#include "ocb/config.h"
#include "ocb/platform_client.h"

#define APP    "app1"
#define SECRET "sec1"

static struct th_proc sim;
static int api_port, admin_port;
static char certs[TH_PATH_MAX];
static struct ocb_config *cfg;
static struct ocb_platform_client *pc;

static void sim_start(void)
{
    static char listen[32], admin[32];
    char *sim_bin = (char *)th_env("OCB_SIM_BIN");
    static struct th_proc mk;
    th_path(certs, sizeof(certs), "certs");
    char *mkargv[] = {sim_bin, "--make-certs", certs, NULL};
    th_spawn(&mk, "make-certs", mkargv);
    ck_assert_int_eq(th_wait_exit(&mk, 20000), 0);
    api_port = th_free_port();
    admin_port = th_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", api_port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", admin_port);
    char *argv[] = {sim_bin, "--listen", listen,         "--admin",   admin, "--certs",
                    certs,   "--app",    APP ":" SECRET, "--devices", "2",   "--devices-first-app",
                    NULL};
    th_spawn(&sim, "sim", argv);
    ck_assert_msg(th_wait_port(admin_port, 15000) && th_wait_port(api_port, 15000),
                  "the simulator did not listen");
}

static void setup(void)
{
    char json[2048], err[512];
    sim_start();
    int n =
        snprintf(json, sizeof(json),
                 "{\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                 "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\"},"
                 "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"" SECRET "\",\"api\":[\"all\"]}]}",
                 api_port, certs, certs, certs);
    ck_assert(n > 0 && (size_t)n < sizeof(json));
    ck_assert_msg(config_parse("api.json", json, strlen(json), &cfg, err, sizeof(err)) == OCB_OK,
                  "%s", err);
    ck_assert_int_eq(platform_client_new(cfg, &pc), OCB_OK);
}

static void teardown(void)
{
    platform_client_free(pc);
    config_free(cfg);
    th_stop(&sim, SIGTERM, 10000);
}

/* What a completed call said. */
struct answer {
    bool done;
    enum ocb_platform_class cls;
    long status;
    char code[32];
    char *body;
    size_t len;
};

static void on_done(void *ctx, const struct ocb_platform_reply *r)
{
    struct answer *a = ctx;
    a->done = true;
    a->cls = r->cls;
    a->status = r->status;
    snprintf(a->code, sizeof(a->code), "%s", r->code);
    a->len = r->len;
    a->body = malloc(r->len + 1);
    ck_assert_ptr_nonnull(a->body);
    memcpy(a->body, r->body, r->len);
    a->body[r->len] = '\0';
}

static void call(const char *op, const char *method, const char *path, const char *body,
                 struct answer *a)
{
    struct ocb_platform_call c = {
        .app_id = APP, .op = op, .method = method, .path = path, .body = body};
    memset(a, 0, sizeof(*a));
    ck_assert_int_eq(platform_client_call_sync(pc, &c, on_done, a), OCB_OK);
    ck_assert(a->done);
}

/* The answer as the worker would publish it: a JSON apiResponse. */
static void check_envelope(const char *op, const struct answer *a)
{
    struct ocb_command_outcome o = {.op = op, .http_status = a->status};
    if (a->cls == OCB_PLATFORM_OK) {
        o.ok = true;
        o.platform_body = a->body;
        o.platform_len = a->len;
    } else {
        o.code = a->code;
        o.desc = "x";
        o.from_platform = true;
    }
    char *text = NULL;
    ck_assert_int_eq(command_response_format(&o, &text, NULL), OCB_OK);
    cJSON *j = cJSON_Parse(text);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "op")->valuestring, op);
    ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")), a->cls == OCB_PLATFORM_OK);
    cJSON_Delete(j);
    free(text);
}

/* Parse an MQTT request as published on device (or "_") and send its call. */
static void run(const char *device, const char *json, long want_status, struct answer *a,
                struct ocb_api_req *keep)
{
    struct ocb_api_target t;
    memset(&t, 0, sizeof(t));
    snprintf(t.app_id, sizeof(t.app_id), APP);
    t.no_device = strcmp(device, "_") == 0;
    snprintf(t.device_id, sizeof(t.device_id), "%s", t.no_device ? "" : device);
    struct ocb_api_req req;
    char why[256];
    enum ocb_command_code code =
        api_parse(&t, cfg->apps[0].api_ops, json, strlen(json), 65536, &req, why, sizeof(why));
    ck_assert_msg(code == OCB_CMD_OK, "%s: %s", json, why);
    call(api_op_name(req.op), req.method, req.path, req.body, a);
    ck_assert_msg(a->status == want_status, "%s %s -> %ld %s", req.method, req.path, a->status,
                  a->body);
    check_envelope(api_op_name(req.op), a);
    if (keep)
        *keep = req;
    else
        api_req_cleanup(&req);
}

static const char *str(const char *body, const char *key, char *out, size_t cap)
{
    cJSON *j = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItem(j, key);
    ck_assert_msg(cJSON_IsString(v), "no %s in %s", key, body);
    snprintf(out, cap, "%s", v->valuestring);
    cJSON_Delete(j);
    return out;
}

/* Scan pages of the reconciliation query until found or done; the id found, or "". */
static void reconcile(const struct ocb_api_req *req, long long since, char *id, size_t cap)
{
    struct ocb_api_scan scan;
    memset(&scan, 0, sizeof(scan));
    for (long page = 0;; page++) {
        char path[OCB_API_PATH_MAX];
        struct answer a;
        ck_assert_int_eq(api_reconcile_path(req, since, page, 1, path, sizeof(path)), OCB_OK);
        call("reconcile", "GET", path, NULL, &a);
        ck_assert_msg(a.status == 200, "%s -> %ld %s", path, a.status, a.body);
        ck_assert_int_eq(api_reconcile_scan_page(req, a.body, a.len, &scan), OCB_OK);
        free(a.body);
        if (!api_reconcile_more(&scan, page, 1))
            break;
    }
    snprintf(id, cap, "%s", scan.found ? scan.id : "");
    api_scan_cleanup(&scan);
}

START_TEST(every_op_against_the_simulator)
{
    struct answer a;
    struct ocb_api_req reg, grp;
    char dev[64], node[64], fresh[128], group[128], json[1024], found[128];
    long long since = (long long)time(NULL) - 60;

    /* A virtual device of the simulator, and its nodeId. */
    run("_", "{\"op\":\"list\",\"pageSize\":1}", 200, &a, NULL);
    cJSON *list = cJSON_Parse(a.body);
    const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(list, "devices"), 0);
    snprintf(dev, sizeof(dev), "%s", cJSON_GetObjectItem(d0, "deviceId")->valuestring);
    snprintf(node, sizeof(node), "%s",
             cJSON_GetObjectItem(cJSON_GetObjectItem(d0, "deviceInfo"), "nodeId")->valuestring);
    cJSON_Delete(list);
    free(a.body);

    /* register: reconciliation finds it (page size 1, so it pages), a blind resend is refused. */
    run("_", "{\"op\":\"register\",\"nodeId\":\"api node 1\",\"timeout\":0}", 200, &a, &reg);
    str(a.body, "deviceId", fresh, sizeof(fresh));
    free(a.body);
    reconcile(&reg, since, found, sizeof(found));
    ck_assert_str_eq(found, fresh);
    run("_", "{\"op\":\"register\",\"nodeId\":\"api node 1\"}", 400, &a, NULL);
    ck_assert_str_eq(a.code, "100426");
    free(a.body);
    api_req_cleanup(&reg);
    /* A device created before `since` is not adopted; without the bound it is found. */
    snprintf(json, sizeof(json), "{\"op\":\"register\",\"nodeId\":\"%s\"}", node);
    struct ocb_api_target none = {.no_device = true, .app_id = APP};
    char why[200];
    ck_assert_int_eq(
        api_parse(&none, OCB_API_ALL_OPS, json, strlen(json), 4096, &reg, why, sizeof(why)),
        OCB_CMD_OK);
    reconcile(&reg, (long long)time(NULL) + 120, found, sizeof(found));
    ck_assert_str_eq(found, "");
    reconcile(&reg, 0, found, sizeof(found));
    ck_assert_str_eq(found, dev);
    api_req_cleanup(&reg);

    /* Reads and writes on one device. */
    snprintf(json, sizeof(json), "{\"op\":\"get\"}");
    run(fresh, json, 200, &a, NULL);
    free(a.body);
    run(fresh, "{\"op\":\"update\",\"name\":\"kitchen meter\",\"mute\":\"FALSE\"}", 204, &a, NULL);
    free(a.body);
    run(fresh, "{\"op\":\"get\"}", 200, &a, NULL);
    ck_assert_ptr_nonnull(strstr(a.body, "\"name\":\"kitchen meter\""));
    free(a.body);
    run("_",
        "{\"op\":\"list\",\"sort\":\"DESC\",\"startTime\":\"20200101T000000Z\",\"pageNo\":0,"
        "\"pageSize\":250,\"status\":\"OFFLINE\"}",
        200, &a, NULL);
    free(a.body);
    run(dev, "{\"op\":\"history\",\"pageSize\":5,\"startTime\":\"20200101T000000Z\"}", 200, &a,
        NULL);
    ck_assert_ptr_nonnull(strstr(a.body, "\"deviceDataHistoryDTOs\""));
    free(a.body);
    run(dev, "{\"op\":\"capabilities\"}", 200, &a, NULL);
    free(a.body);
    run(dev, "{\"op\":\"shadow\"}", 200, &a, NULL);
    cJSON *sh = cJSON_Parse(a.body);
    const cJSON *svc = cJSON_GetArrayItem(cJSON_GetObjectItem(sh, "services"), 0);
    ck_assert_ptr_nonnull(svc);
    snprintf(json, sizeof(json),
             "{\"op\":\"setShadow\",\"serviceDesireds\":[{\"serviceId\":\"%s\",\"desired\":"
             "{\"reportInterval\":60}}]}",
             cJSON_GetObjectItem(svc, "serviceId")->valuestring);
    cJSON_Delete(sh);
    free(a.body);
    run(dev, json, 200, &a, NULL);
    free(a.body);

    /* Groups, with groupCreate reconciled by name. */
    snprintf(json, sizeof(json),
             "{\"op\":\"groupCreate\",\"name\":\"floor 1\",\"maxDevNum\":5,\"deviceIds\":[\"%s\"]}",
             dev);
    run("_", json, 200, &a, &grp);
    str(a.body, "id", group, sizeof(group));
    free(a.body);
    reconcile(&grp, since, found, sizeof(found));
    ck_assert_str_eq(found, group);
    api_req_cleanup(&grp);
    run("_", "{\"op\":\"groupList\",\"name\":\"floor 1\"}", 200, &a, NULL);
    free(a.body);
    snprintf(json, sizeof(json), "{\"op\":\"groupGet\",\"groupId\":\"%s\"}", group);
    run("_", json, 200, &a, NULL);
    free(a.body);
    snprintf(json, sizeof(json),
             "{\"op\":\"groupUpdate\",\"groupId\":\"%s\",\"description\":\"d\"}", group);
    run("_", json, 200, &a, NULL);
    free(a.body);
    snprintf(json, sizeof(json), "{\"op\":\"groupAdd\",\"groupId\":\"%s\",\"deviceIds\":[\"%s\"]}",
             group, fresh);
    run("_", json, 200, &a, NULL);
    free(a.body);
    snprintf(json, sizeof(json), "{\"op\":\"groupMembers\",\"groupId\":\"%s\",\"pageSize\":10}",
             group);
    run("_", json, 200, &a, NULL);
    ck_assert_ptr_nonnull(strstr(a.body, fresh));
    free(a.body);
    snprintf(json, sizeof(json),
             "{\"op\":\"groupRemove\",\"groupId\":\"%s\",\"deviceIds\":[\"%s\"]}", group, fresh);
    run("_", json, 200, &a, NULL);
    free(a.body);
    snprintf(json, sizeof(json), "{\"op\":\"groupDelete\",\"groupId\":\"%s\"}", group);
    run("_", json, 200, &a, NULL);
    free(a.body);
    /* A groupDelete retried after it succeeded: not found, which the worker takes as done. */
    run("_", json, 404, &a, NULL);
    ck_assert(api_gone_is_done(OCB_API_GROUP_DELETE, a.status, a.code));
    free(a.body);

    /* delete, and the same after it succeeded. */
    run(fresh, "{\"op\":\"delete\",\"cascade\":false}", 204, &a, NULL);
    free(a.body);
    run(fresh, "{\"op\":\"delete\"}", 404, &a, NULL);
    ck_assert(api_gone_is_done(OCB_API_DELETE, a.status, a.code));
    ck_assert_int_eq(a.cls, OCB_PLATFORM_FAILED);
    free(a.body);
    run(fresh, "{\"op\":\"shadow\"}", 404, &a, NULL);
    ck_assert_str_eq(a.code, "100403");
    free(a.body);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tests[] = {every_op_against_the_simulator, NULL};
    const struct th_case cases[] = {
        {.name = "api_sim", .setup = setup, .teardown = teardown, .timeout_s = 120, .tests = tests},
        {.name = NULL},
    };
    return th_main(argc, argv, "api_sim", cases);
}
