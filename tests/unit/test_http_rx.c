/*
 * test_http_rx.c: the push listener's answers that need no broker.
 *
 * The pure helpers (push path, token comparison) are table-driven; then a
 * real receiver listens on loopback with a link whose broker does not exist,
 * and libcurl checks the answers the platform would get: 4xx for bad
 * requests (decided before any publish), 503 + Retry-After when the broker
 * is down, /healthz, /readyz with its hooks, /metrics.  Everything that
 * needs a broker is in tests/integration.
 */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ocb/config.h"
#include "ocb/http_rx.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "ocb/mqtt_link.h"
#include "th_main.h"

/* ---- pure helpers */

static const struct {
    const char *url;
    bool ok;
    const char *app, *token;
} paths[] = {
    {"/push/demoApp", true, "demoApp", ""},
    {"/push/demoApp/", true, "demoApp", ""},
    {"/push/demoApp/tok-1", true, "demoApp", "tok-1"},
    {"/push/", false, NULL, NULL},
    {"/push", false, NULL, NULL},
    {"/push//tok", false, NULL, NULL},
    {"/push/a/b/c", false, NULL, NULL},
    {"/pushx/a", false, NULL, NULL},
    {"/other/a", false, NULL, NULL},
};

START_TEST(push_paths)
{
    char app[16], token[16];
    bool ok = http_rx_parse_push_path(paths[_i].url, app, sizeof(app), token, sizeof(token));

    ck_assert_msg(ok == paths[_i].ok, "%s", paths[_i].url);
    if (ok) {
        ck_assert_str_eq(app, paths[_i].app);
        ck_assert_str_eq(token, paths[_i].token);
    }
}
END_TEST

START_TEST(push_path_parts_must_fit)
{
    char app[8], token[4];

    ck_assert(http_rx_parse_push_path("/push/1234567/123", app, sizeof(app), token, sizeof(token)));
    ck_assert(!http_rx_parse_push_path("/push/12345678", app, sizeof(app), token, sizeof(token)));
    ck_assert(!http_rx_parse_push_path("/push/a/1234", app, sizeof(app), token, sizeof(token)));
}
END_TEST

START_TEST(token_comparison)
{
    ck_assert(http_rx_token_ok("", ""));
    ck_assert(http_rx_token_ok("", "anything")); /* no token required */
    ck_assert(http_rx_token_ok("s3cret", "s3cret"));
    ck_assert(!http_rx_token_ok("s3cret", ""));
    ck_assert(!http_rx_token_ok("s3cret", "s3cre"));
    ck_assert(!http_rx_token_ok("s3cret", "s3crett"));
    ck_assert(!http_rx_token_ok("s3cret", "S3cret"));
    ck_assert(!http_rx_token_ok("s3cret", "s3cres"));
}
END_TEST

/* ---- a live receiver without a broker */

static struct ocb_config *cfg;
static struct ocb_mqtt_link *link_;
static struct ocb_http_rx *rx;
static char base[64];
static bool hook_answer;

static bool platform_hook(void *ctx)
{
    (void)ctx;
    return hook_answer;
}

/* A receiver on a free port whose link points at 127.0.0.1:mqtt_port. */
static void start_receiver(int mqtt_port, ocb_http_command_status_fn status_fn)
{
    char json[1024], err[512];
    int port = th_free_port();

    log_setup(OCB_LOG_ERROR, OCB_LOG_TEXT);
    snprintf(json, sizeof(json),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"max_body_bytes\":1024,"
             "\"retry_after_s\":9},"
             "\"mqtt\":{\"url\":\"tcp://127.0.0.1:%d\",\"reconnect_min_ms\":50,"
             "\"reconnect_max_ms\":100},"
             "\"apps\":[{\"app_id\":\"demoApp\"},{\"app_id\":\"tokApp\",\"push_token\":\"t0k\"}]}",
             port, mqtt_port);
    ck_assert_msg(config_parse("test", json, strlen(json), &cfg, err, sizeof(err)) == OCB_OK, "%s",
                  err);
    ck_assert_int_eq(mqtt_link_new(cfg, &link_), OCB_OK);
    ck_assert_int_eq(mqtt_link_start(link_), OCB_OK);
    ck_assert_int_eq(http_rx_new(cfg, link_, &rx), OCB_OK);
    hook_answer = true;
    ck_assert_int_eq(http_rx_add_ready_hook(rx, "platform login", platform_hook, NULL), OCB_OK);
    if (status_fn != NULL)
        http_rx_set_command_status_hook(rx, status_fn, NULL);
    ck_assert_int_eq(http_rx_start(rx), OCB_OK);
    ck_assert_int_eq(http_rx_port(rx), port);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
}

/* No broker listens on the link's port. */
static void setup(void)
{
    start_receiver(th_free_port(), NULL);
}

static void teardown(void)
{
    http_rx_stop(rx, 1000);
    mqtt_link_stop(link_, 0);
    http_rx_free(rx);
    mqtt_link_free(link_);
    config_free(cfg);
}

struct answer {
    long status;
    char body[512];
    char headers[2048];
};

static size_t append(char *ptr, size_t size, size_t nmemb, void *ud, size_t cap)
{
    char *dst = ud;
    size_t have = strlen(dst), n = size * nmemb;

    if (have + n >= cap)
        n = cap - have - 1;
    memcpy(dst + have, ptr, n);
    dst[have + n] = '\0';
    return size * nmemb;
}

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    return append(p, s, n, ud, sizeof(((struct answer *)0)->body));
}

static size_t on_header(char *p, size_t s, size_t n, void *ud)
{
    return append(p, s, n, ud, sizeof(((struct answer *)0)->headers));
}

static void request(const char *method, const char *path, const char *body, struct answer *a)
{
    char url[256];
    CURL *h = curl_easy_init();

    memset(a, 0, sizeof(*a));
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a->headers);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_easy_cleanup(h);
}

static bool has_header(const struct answer *a, const char *line)
{
    return strstr(a->headers, line) != NULL;
}

START_TEST(answers_without_a_broker)
{
    struct answer a;
    char big[1100];

    request("GET", "/healthz", NULL, &a);
    ck_assert_int_eq(a.status, 200);
    request("GET", "/readyz", NULL, &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert_str_eq(a.body, "not ready: broker not connected\n");

    /* A valid push cannot be published: 503 with Retry-After, at once. */
    request("POST", "/push/demoApp", "{\"notifyType\":\"deviceAdded\",\"deviceId\":\"d1\"}", &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert(has_header(&a, "Retry-After: 9\r\n"));
    ck_assert_str_eq(a.body, "broker not connected\n");

    /* Everything decidable without the broker is decided without it. */
    request("POST", "/push/demoApp", "{\"deviceId\":\"d1\"}", &a);
    ck_assert_int_eq(a.status, 400);
    request("POST", "/push/demoApp", "{\"notifyType\":\"a#\"}", &a);
    ck_assert_int_eq(a.status, 400);
    request("POST", "/push/nope", "{\"notifyType\":\"x\"}", &a);
    ck_assert_int_eq(a.status, 404);
    request("POST", "/push/tokApp/wrong", "{\"notifyType\":\"x\"}", &a);
    ck_assert_int_eq(a.status, 401);
    request("DELETE", "/push/demoApp", NULL, &a);
    ck_assert_int_eq(a.status, 405);
    ck_assert(has_header(&a, "Allow: POST\r\n"));
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    request("POST", "/push/demoApp", big, &a);
    ck_assert_int_eq(a.status, 413);
    /* Each answer carries a request id. */
    ck_assert(has_header(&a, "X-Request-Id: "));

    ck_assert_int_eq(metrics_value("ocb_push_rejections_total", "reason=\"bad_json\""), 1);
    ck_assert_int_eq(metrics_value("ocb_push_rejections_total", "reason=\"bad_topic\""), 1);
    ck_assert_int_eq(metrics_value("ocb_push_rejections_total", "reason=\"too_large\""), 1);
    ck_assert_int_eq(
        metrics_value("ocb_pushes_total", "notify_type=\"deviceAdded\",outcome=\"unavailable\""),
        1);
    request("GET", "/metrics", NULL, &a);
    ck_assert_int_eq(a.status, 200);
    ck_assert_ptr_nonnull(strstr(a.body, "ocb_mqtt_connected 0\n"));
}
END_TEST

START_TEST(stop_closes_the_listener)
{
    char url[256];
    CURL *h = curl_easy_init();

    http_rx_stop(rx, 0);
    http_rx_stop(rx, 0); /* idempotent */
    snprintf(url, sizeof(url), "%s/healthz", base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_COULDNT_CONNECT);
    curl_easy_cleanup(h);
}
END_TEST

START_TEST(ready_hooks_gate_readiness)
{
    struct answer a;

    /* Every failing condition is named. */
    hook_answer = false;
    request("GET", "/readyz", NULL, &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert_str_eq(a.body, "not ready: broker not connected, platform login\n");
    ck_assert_int_eq(http_rx_add_ready_hook(rx, "b", platform_hook, NULL), OCB_OK);
    ck_assert_int_eq(http_rx_add_ready_hook(rx, "c", platform_hook, NULL), OCB_OK);
    ck_assert_int_eq(http_rx_add_ready_hook(rx, "d", platform_hook, NULL), OCB_OK);
    ck_assert_int_eq(http_rx_add_ready_hook(rx, "e", platform_hook, NULL), OCB_ERR_FULL);
}
END_TEST

/* http.listen takes host names too ("127.1" goes the resolver's way without DNS); one that
 * does not resolve fails the start with a log line rather than binding somewhere unexpected.
 * One that does not parse ("[::1" without its bracket) never gets that far: the config check
 * refuses it with the grammar the listener uses. */
START_TEST(listen_names_resolve_or_fail_the_start)
{
    static const struct {
        const char *host;
        bool starts;
    } cases[] = {{"localhost", true}, {"127.1", true}, {"no-such-host.invalid", false}};
    char json[512], err[512];

    log_setup(OCB_LOG_ERROR, OCB_LOG_TEXT);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ocb_config *c = NULL;
        struct ocb_mqtt_link *l = NULL;
        struct ocb_http_rx *x = NULL;
        int port = th_free_port();

        snprintf(json, sizeof(json),
                 "{\"http\":{\"listen\":\"%s:%d\"},\"apps\":[{\"app_id\":\"a\"}]}", cases[i].host,
                 port);
        ck_assert_msg(config_parse("test", json, strlen(json), &c, err, sizeof(err)) == OCB_OK,
                      "%s", err);
        ck_assert_int_eq(mqtt_link_new(c, &l), OCB_OK);
        ck_assert_int_eq(http_rx_new(c, l, &x), OCB_OK);
        ck_assert_msg((http_rx_start(x) == OCB_OK) == cases[i].starts, "%s", cases[i].host);
        if (cases[i].starts)
            ck_assert_int_eq(http_rx_port(x), port);
        http_rx_stop(x, 0);
        http_rx_free(x);
        mqtt_link_free(l);
        config_free(c);
    }
    {
        struct ocb_config *c = NULL;
        snprintf(json, sizeof(json), "{\"http\":{\"listen\":\"[::1:%d\"}}", th_free_port());
        ck_assert_int_ne(config_parse("test", json, strlen(json), &c, err, sizeof(err)), OCB_OK);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(err, "http.listen: expected HOST:PORT") != NULL, "%s", err);
    }
}
END_TEST

/* ---- with a real broker: the seams the command half plugs into */

static pid_t broker_pid;
static char status_seen[512];
static size_t status_len;

static void on_status(void *ctx, const char *app_id, const char *device_id, const char *command_id,
                      const char *body, size_t len)
{
    (void)ctx;
    snprintf(status_seen, sizeof(status_seen), "%s|%s|%s|%.*s", app_id, device_id, command_id,
             (int)len, body);
    status_len = len;
}

static void setup_broker(void)
{
    char conf[256], path[64];
    int mport = th_free_port();
    const char *bin = getenv("OCB_MOSQUITTO_BIN");
    FILE *f;

    ck_assert_msg(bin != NULL, "OCB_MOSQUITTO_BIN is not set (run through ctest)");
    snprintf(path, sizeof(path), "/tmp/ocb-unit-http-%d.conf", (int)getpid());
    snprintf(conf, sizeof(conf), "listener %d 127.0.0.1\nallow_anonymous true\n%s", mport,
             geteuid() == 0 ? "user root\n" : "");
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(conf, f);
    fclose(f);
    broker_pid = fork();
    ck_assert_int_ge(broker_pid, 0);
    if (broker_pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "-c", path, (char *)NULL);
        _exit(127);
    }

    start_receiver(mport, on_status);
    for (int i = 0; i < 500 && !mqtt_link_connected(link_); i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(mqtt_link_connected(link_), "no connection to the test broker");
    unlink(path);
}

static void teardown_broker(void)
{
    teardown();
    kill(broker_pid, SIGTERM);
    waitpid(broker_pid, NULL, 0);
}

START_TEST(command_status_hook_and_readiness)
{
    static const char body[] = "{\"deviceId\":\"dev-9\",\"commandId\":\"c0ffee\","
                               "\"result\":{\"resultCode\":\"DELIVERED\",\"resultDetail\":null}}";
    struct answer a;

    request("GET", "/readyz", NULL, &a);
    ck_assert_int_eq(a.status, 200);
    hook_answer = false;
    request("GET", "/readyz", NULL, &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert_str_eq(a.body, "not ready: platform login\n");

    /* A status callback is published, acknowledged, then reported to the hook. */
    request("POST", "/push/demoApp", body, &a);
    ck_assert_int_eq(a.status, 200);
    ck_assert_str_eq(a.body, "ok");
    ck_assert_uint_eq(status_len, sizeof(body) - 1);
    ck_assert_str_eq(status_seen,
                     "demoApp|dev-9|c0ffee|" /* then the body, byte for byte */
                     "{\"deviceId\":\"dev-9\",\"commandId\":\"c0ffee\","
                     "\"result\":{\"resultCode\":\"DELIVERED\",\"resultDetail\":null}}");
    /* A notification does not reach the status hook. */
    status_seen[0] = '\0';
    request("POST", "/push/demoApp", "{\"notifyType\":\"deviceAdded\",\"deviceId\":\"d\"}", &a);
    ck_assert_int_eq(a.status, 200);
    ck_assert_str_eq(status_seen, "");
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const pure_tests[] = {push_paths, push_path_parts_must_fit, token_comparison,
                                       listen_names_resolve_or_fail_the_start, NULL};
    const struct th_loop pure_loops[] = {{push_paths, 0, (int)(sizeof(paths) / sizeof(paths[0]))},
                                         {NULL, 0, 0}};
    const TTest *const live_tests[] = {answers_without_a_broker, stop_closes_the_listener,
                                       ready_hooks_gate_readiness, NULL};
    const TTest *const broker_tests[] = {command_status_hook_and_readiness, NULL};
    const struct th_case cases[] = {
        {.name = "pure", .tests = pure_tests, .loops = pure_loops},
        {.name = "live",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 60,
         .tests = live_tests},
        {.name = "broker",
         .setup = setup_broker,
         .teardown = teardown_broker,
         .timeout_s = 60,
         .tests = broker_tests},
        {.name = NULL},
    };

    int rc;

    curl_global_init(CURL_GLOBAL_ALL);
    rc = th_main(argc, argv, "http_rx", cases);
    curl_global_cleanup();
    return rc;
}
