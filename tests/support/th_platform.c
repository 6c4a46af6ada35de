/*
 * th_platform.c: the command-half test bed (th_platform.h).  The simulator
 * runs with one app (APP:SECRET), four devices and a 100 ms command delay;
 * the bridge gets short deadlines unless a test sets its own.
 */
#include "th_platform.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct th_broker fx_broker;
struct th_proc fx_sim;
int fx_api, fx_admin;
char fx_certs[TH_PATH_MAX];
struct th_bridge fx_bridge;
struct th_mqtt *fx_client;
char fx_devices[8][64];
const char *fx_app_extra = "";
const char *fx_secret = SECRET;
const char *fx_ca_dir = NULL;

/* ---- the simulator */

void fx_sim_start(const char *extra_args)
{
    char *argv[48];
    int n = 0;
    static char buf[1024], listen[32], admin[32];
    const char *sim = th_env("OCB_SIM_BIN");

    if (!fx_certs[0]) {
        th_path(fx_certs, sizeof(fx_certs), "certs");
        static struct th_proc mk; /* the harness keeps a pointer until exit */
        char *mkargv[] = {(char *)sim, "--make-certs", fx_certs, NULL};
        th_spawn(&mk, "make-certs", mkargv);
        ck_assert_int_eq(th_wait_exit(&mk, 20000), 0);
        fx_api = th_free_port();
        fx_admin = th_free_port();
    }
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx_api);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", fx_admin);
    argv[n++] = (char *)sim;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--admin";
    argv[n++] = admin;
    argv[n++] = "--certs";
    argv[n++] = fx_certs;
    argv[n++] = "--app";
    argv[n++] = APP ":" SECRET;
    argv[n++] = "--devices";
    argv[n++] = "4";
    argv[n++] = "--devices-first-app";
    argv[n++] = "--command-delay-ms";
    argv[n++] = "100";
    snprintf(buf, sizeof(buf), "%s", extra_args ? extra_args : "");
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && n < 46;
         tok = strtok_r(NULL, " ", &save))
        argv[n++] = tok;
    argv[n] = NULL;
    th_spawn(&fx_sim, "sim", argv);
    ck_assert_msg(th_wait_port(fx_admin, 15000) && th_wait_port(fx_api, 15000),
                  "the simulator did not listen");
}

/* GET/POST on the admin port; the parsed JSON answer (caller deletes) or NULL. */
cJSON *fx_sim_call(const char *method, const char *path, const char *body)
{
    char url[512];
    struct th_http_resp r;
    int n = snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fx_admin, path);
    ck_assert(n > 0 && (size_t)n < sizeof(url));
    ck_assert_msg(th_http(method, url, body, body ? strlen(body) : 0, NULL, &r), "%s %s", method,
                  path);
    ck_assert_msg(r.status >= 200 && r.status < 300, "%s %s: %ld %s", method, path, r.status,
                  r.body);
    cJSON *j = cJSON_Parse(r.body);
    th_http_resp_free(&r);
    return j;
}

void fx_sim_post(const char *path, const char *body)
{
    cJSON_Delete(fx_sim_call("POST", path, body));
}

void fx_load_devices(void)
{
    cJSON *devs = fx_sim_call("GET", "/devices", NULL);
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, devs)
    {
        if (i >= 8)
            break;
        snprintf(fx_devices[i++], sizeof(fx_devices[0]), "%s",
                 cJSON_GetObjectItem(d, "deviceId")->valuestring);
    }
    cJSON_Delete(devs);
    ck_assert_int_ge(i, 4);
}

/* Recorded API requests whose path starts with prefix (caller deletes). */
cJSON *fx_requests(const char *prefix)
{
    char path[512];
    int n = snprintf(path, sizeof(path), "/requests?path=%s", prefix);
    ck_assert(n > 0 && (size_t)n < sizeof(path));
    cJSON *all = fx_sim_call("GET", path, NULL);
    ck_assert_ptr_nonnull(all);
    return all;
}

/* How many recorded requests have this method, exact path and status (-1: any). */
int fx_count(const char *method, const char *path, int status)
{
    cJSON *all = fx_requests(path);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, all)
    {
        const cJSON *m = cJSON_GetObjectItem(r, "method");
        const cJSON *p = cJSON_GetObjectItem(r, "path");
        const cJSON *s = cJSON_GetObjectItem(r, "status");
        if (strcmp(m->valuestring, method) == 0 && strcmp(p->valuestring, path) == 0 &&
            (status < 0 || (cJSON_IsNumber(s) && s->valueint == status)))
            n++;
    }
    cJSON_Delete(all);
    return n;
}

int fx_count_prefix(const char *method, const char *prefix)
{
    cJSON *all = fx_requests(prefix);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, all)
    {
        const char *m = fx_str(r, "method");
        n += method == NULL || (m != NULL && strcmp(m, method) == 0);
    }
    cJSON_Delete(all);
    return n;
}

/* Wait until at least min such requests are recorded: a request the bridge is still making
 * (e.g. right after it turned not ready) is not in the log yet. */
bool fx_wait_count(const char *method, const char *path, int status, int min, int timeout_ms)
{
    for (long long end = th_now_ms() + timeout_ms;; th_sleep_ms(50)) {
        if (fx_count(method, path, status) >= min)
            return true;
        if (th_now_ms() > end)
            return false;
    }
}

bool fx_wait_fault_hits(int min, int timeout_ms)
{
    for (long long end = th_now_ms() + timeout_ms;; th_sleep_ms(50)) {
        cJSON *faults = fx_sim_call("GET", "/faults", NULL);
        const cJSON *f;
        int hits = 0;

        ck_assert_ptr_nonnull(faults);
        cJSON_ArrayForEach(f, faults)
        {
            const cJSON *h = cJSON_GetObjectItem(f, "hits");
            hits += cJSON_IsNumber(h) ? h->valueint : 0;
        }
        cJSON_Delete(faults);
        if (hits >= min)
            return true;
        if (th_now_ms() > end)
            return false;
    }
}

/* ---- the bridge */

void fx_bridge_config(char *out, size_t cap, const struct th_bridge *b, const char *client_id,
                      const char *mqtt_extra, const char *platform_extra)
{
    const char *pe = platform_extra ? platform_extra : "";
    int n = snprintf(out, cap,
                     "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"public_url\":\"http://"
                     "127.0.0.1:%d\"},"
                     "\"mqtt\":{\"url\":\"%s\",\"client_id\":\"%s\",\"version\":5%s},"
                     "\"platform\":{\"url\":\"https://127.0.0.1:%d\",\"ca_file\":\"%s/ca.pem\","
                     "\"cert_file\":\"%s/client.pem\",\"key_file\":\"%s/client-key.pem\""
                     "%s%s%s},"
                     "\"apps\":[{\"app_id\":\"" APP "\",\"secret\":\"%s\"%s},"
                     "{\"app_id\":\"pushOnly\"}],"
                     "\"log\":{\"level\":\"debug\"}}",
                     b->port, b->port, fx_broker.url, client_id, mqtt_extra ? mqtt_extra : "",
                     fx_api, fx_ca_dir ? fx_ca_dir : fx_certs, fx_certs, fx_certs,
                     /* Short defaults unless the test sets its own.  The platform timeout is
                      * long enough that a slow answer on a loaded machine is never taken for a
                      * lost one (which would add a reconcile query to the counts tests compare);
                      * tests of timeouts set their own. */
                     strstr(pe, "command_deadline_s") ? "" : ",\"command_deadline_s\":10",
                     strstr(pe, "\"timeout_ms") ? "" : ",\"timeout_ms\":4000", pe, fx_secret,
                     fx_app_extra);
    ck_assert_msg(n > 0 && (size_t)n < cap, "bridge config too long");
}

void fx_bridge_start(struct th_bridge *b, const char *client_id, const char *mqtt_extra,
                     const char *platform_extra, bool wait_ready)
{
    char cfg[4096];
    if (!b->port)
        b->port = th_free_port();
    fx_bridge_config(cfg, sizeof(cfg), b, client_id, mqtt_extra, platform_extra);
    th_bridge_start(b, cfg, false);
    if (wait_ready)
        ck_assert_msg(th_bridge_wait_ready(b, NULL, WAIT_MS), "bridge not ready");
}

/* Broker + simulator + one bridge + a v5 client subscribed to everything. */
/* Everything but the bridge: a broker, the simulator with its devices loaded, and the
 * test's MQTT client subscribed to filter. */
void fx_start_platform(const char *sim_args, const char *filter)
{
    th_broker_start(&fx_broker, NULL);
    fx_sim_start(sim_args);
    fx_load_devices();
    fx_client = th_mqtt_connect(fx_broker.url, "tester", 5);
    ck_assert_ptr_nonnull(fx_client);
    ck_assert(th_mqtt_subscribe(fx_client, filter, 1));
}

void fx_start(const char *sim_args, const char *mqtt_extra, const char *platform_extra)
{
    fx_start_platform(sim_args, "iot/#");
    ck_assert(th_mqtt_subscribe(fx_client, "reply/#", 1));
    fx_bridge_start(&fx_bridge, "bridge-1", mqtt_extra, platform_extra, true);
}

/* ---- MQTT */

void fx_publish(const char *topic, const char *payload)
{
    ck_assert_msg(
        th_mqtt_publish(fx_client, topic, payload, strlen(payload), 1, false, NULL, NULL, 0),
        "publish on %s", topic);
}

void fx_topic(char *out, size_t cap, const char *app, int dev, const char *leaf)
{
    int n = snprintf(out, cap, "iot/%s/%s/%s", app, fx_devices[dev], leaf);
    ck_assert(n > 0 && (size_t)n < cap);
}

/* Messages received on exactly topic so far. */
size_t fx_count_on(const char *topic)
{
    size_t n = 0, total = th_mqtt_count(fx_client);
    for (size_t i = 0; i < total; i++)
        if (strcmp(th_mqtt_msg(fx_client, i)->topic, topic) == 0)
            n++;
    return n;
}

/* Wait until n messages arrived on topic; false on timeout. */
bool fx_wait_on(const char *topic, size_t n, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;
    while (fx_count_on(topic) < n) {
        if (th_now_ms() > end)
            return false;
        th_sleep_ms(20);
    }
    return true;
}

/* The k-th message on topic (arrival order), or NULL. */
const struct th_msg *fx_nth_on(const char *topic, size_t k)
{
    size_t total = th_mqtt_count(fx_client);
    for (size_t i = 0; i < total; i++) {
        const struct th_msg *m = th_mqtt_msg(fx_client, i);
        if (strcmp(m->topic, topic) == 0 && k-- == 0)
            return m;
    }
    return NULL;
}

/* The k-th answer on topic, parsed (caller deletes); fails the test on timeout. */
cJSON *fx_answer(const char *topic, size_t k)
{
    ck_assert_msg(fx_wait_on(topic, k + 1, WAIT_MS), "no answer #%zu on %s", k, topic);
    cJSON *j = cJSON_Parse((const char *)fx_nth_on(topic, k)->payload);
    ck_assert_msg(j != NULL, "answer on %s is not JSON", topic);
    return j;
}

const char *fx_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Assert a bridge-side error answer with this code. */
void fx_assert_bridge_error(const cJSON *a, const char *code)
{
    char *text = cJSON_PrintUnformatted(a);
    ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")), "not ok:false: %s", text);
    const cJSON *err = cJSON_GetObjectItem(a, "error");
    ck_assert_msg(err && fx_str(err, "code") && strcmp(fx_str(err, "code"), code) == 0,
                  "expected %s: %s", code, text);
    ck_assert_str_eq(fx_str(err, "source"), "bridge");
    ck_assert_msg(fx_str(err, "desc") && fx_str(err, "desc")[0], "no desc: %s", text);
    free(text);
}

/* Assert a definite (not retryable) platform error answer with this HTTP status and code. */
void fx_assert_platform_error(const cJSON *a, long http_status, const char *code)
{
    char *text = cJSON_PrintUnformatted(a);
    const cJSON *err = cJSON_GetObjectItem(a, "error");
    ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItem(a, "ok")), "not ok:false: %s", text);
    ck_assert_msg(cJSON_GetObjectItem(a, "httpStatus")->valueint == http_status,
                  "expected HTTP %ld: %s", http_status, text);
    ck_assert_msg(err && fx_str(err, "code") && strcmp(fx_str(err, "code"), code) == 0,
                  "expected %s: %s", code, text);
    ck_assert_str_eq(fx_str(err, "source"), "platform");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "retryable")));
    free(text);
}

double fx_metric(const char *series)
{
    return th_metric(&fx_bridge, NULL, series);
}
