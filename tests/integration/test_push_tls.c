/*
 * test_push_tls.c: TLS on both sides of the bridge, with certificates the
 * test makes itself (openssl CLI): the HTTPS push listener, its client-CA
 * mode, and an MQTT broker that requires TLS (and a client certificate).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_main.h"

#define WAIT_MS 10000

static const char *const BODY = "{\"notifyType\":\"deviceAdded\",\"deviceId\":\"tls-dev\"}";

static char certs[512];
static struct th_broker broker;
static struct th_bridge bridge;

static void cert(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", certs, name);
}

/* Once for all tests (unchecked fixture, in the parent): each test runs in a child process
 * that inherits the path; the parent's temporary directory lives until the suite ends. */
static void make_certs(void)
{
    th_path(certs, sizeof(certs), "certs");
    th_make_certs(certs);
}

static void setup(void)
{
    memset(&broker, 0, sizeof(broker));
    memset(&bridge, 0, sizeof(bridge));
}

static void teardown(void)
{
    if (bridge.proc.pid > 0)
        ck_assert_int_eq(th_bridge_stop(&bridge), 0);
    th_broker_stop(&broker);
}

/* Start the bridge with the given "http" and "mqtt" members. */
static void start_bridge(const char *http, const char *mqtt, bool tls)
{
    char cfg[8192];

    bridge.port = th_free_port();
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\"%s},"
             "\"mqtt\":{\"client_id\":\"ocb-it-tls\",\"publish_timeout_ms\":2000,"
             "\"reconnect_min_ms\":50,\"reconnect_max_ms\":300%s},"
             "\"apps\":[{\"app_id\":\"demoApp\"}],\"log\":{\"level\":\"debug\"}}",
             bridge.port, http, mqtt);
    th_bridge_start(&bridge, cfg, tls);
}

static long push(const struct th_http_opts *o, int *curl_code)
{
    struct th_http_resp r;
    char url[128];
    long status;

    snprintf(url, sizeof(url), "%s/push/demoApp", bridge.base);
    th_http("POST", url, BODY, strlen(BODY), o, &r);
    status = r.status;
    if (curl_code != NULL)
        *curl_code = r.curl_code;
    th_http_resp_free(&r);
    return status;
}

static long get(const struct th_http_opts *o, const char *path)
{
    struct th_http_resp r;
    char url[128];
    long status;

    snprintf(url, sizeof(url), "%s%s", bridge.base, path);
    th_http("GET", url, NULL, 0, o, &r);
    status = r.status;
    th_http_resp_free(&r);
    return status;
}

START_TEST(https_listener)
{
    char ca[600], crt[600], key[600], http[2048], mqtt[256];
    struct th_http_opts o = {0};
    struct th_mqtt *sub;
    int cc;

    th_broker_start(&broker, NULL);
    cert(ca, sizeof(ca), "ca.pem");
    cert(crt, sizeof(crt), "server.pem");
    cert(key, sizeof(key), "server-key.pem");
    snprintf(http, sizeof(http), ",\"tls_cert\":\"%s\",\"tls_key\":\"%s\"", crt, key);
    snprintf(mqtt, sizeof(mqtt), ",\"url\":\"%s\"", broker.url);
    start_bridge(http, mqtt, true);
    o.ca_file = ca;
    ck_assert(th_bridge_wait_ready(&bridge, &o, WAIT_MS));
    sub = th_mqtt_connect(broker.url, "it-sub-tls", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));

    ck_assert_int_eq(push(&o, NULL), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/demoApp/tls-dev/deviceAdded", WAIT_MS));
    /* A client that does not trust the bridge's CA never gets to push. */
    ck_assert_int_eq(push(NULL, &cc), 0);
    ck_assert_int_ne(cc, 0);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(https_listener_requires_client_certificates)
{
    char ca[600], crt[600], key[600], ccrt[600], ckey[600], ocrt[600], okey[600];
    char http[4096], mqtt[256];
    struct th_http_opts o = {0};
    struct th_mqtt *sub;
    long st;

    th_broker_start(&broker, NULL);
    cert(ca, sizeof(ca), "ca.pem");
    cert(crt, sizeof(crt), "server.pem");
    cert(key, sizeof(key), "server-key.pem");
    cert(ccrt, sizeof(ccrt), "client.pem");
    cert(ckey, sizeof(ckey), "client-key.pem");
    cert(ocrt, sizeof(ocrt), "other-client.pem");
    cert(okey, sizeof(okey), "other-client-key.pem");
    snprintf(http, sizeof(http), ",\"tls_cert\":\"%s\",\"tls_key\":\"%s\",\"tls_client_ca\":\"%s\"",
             crt, key, ca);
    snprintf(mqtt, sizeof(mqtt), ",\"url\":\"%s\"", broker.url);
    start_bridge(http, mqtt, true);
    sub = th_mqtt_connect(broker.url, "it-sub-mtls", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));

    o.ca_file = ca;
    /* no client certificate */
    ck_assert_int_eq(push(&o, NULL), 403);
    /* ...except liveness, for probes that hold none; readiness and metrics still need one */
    ck_assert_int_eq(get(&o, "/healthz"), 200);
    ck_assert_int_eq(get(&o, "/readyz"), 403);
    ck_assert_int_eq(get(&o, "/metrics"), 403);
    /* a certificate from a CA the bridge does not trust: refused, in the handshake or by 403 */
    o.cert_file = ocrt;
    o.key_file = okey;
    st = push(&o, NULL);
    ck_assert_msg(st == 403 || st == 0, "untrusted client certificate got %ld", st);
    /* the right one */
    o.cert_file = ccrt;
    o.key_file = ckey;
    ck_assert(th_bridge_wait_ready(&bridge, &o, WAIT_MS));
    ck_assert_int_eq(push(&o, NULL), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/demoApp/tls-dev/deviceAdded", WAIT_MS));
    th_sleep_ms(200);
    ck_assert_uint_eq(th_mqtt_count(sub), 1);
    ck_assert(th_metric(&bridge, &o, "ocb_push_rejections_total{reason=\"not_allowed\"}") >= 1);
    th_mqtt_free(sub);
}
END_TEST

START_TEST(mqtt_over_tls_with_a_client_certificate)
{
    char ca[600], crt[600], key[600], ccrt[600], ckey[600], extra[4096], mqtt[2048];
    int tls_port = th_free_port();
    struct th_mqtt *sub;

    cert(ca, sizeof(ca), "ca.pem");
    cert(crt, sizeof(crt), "server.pem");
    cert(key, sizeof(key), "server-key.pem");
    cert(ccrt, sizeof(ccrt), "client.pem");
    cert(ckey, sizeof(ckey), "client-key.pem");
    /* The plain listener stays for the test's subscriber; the bridge must use TLS. */
    snprintf(extra, sizeof(extra),
             "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
             "require_certificate true\n",
             tls_port, ca, crt, key);
    th_broker_start(&broker, extra);
    ck_assert(th_wait_port(tls_port, WAIT_MS));
    sub = th_mqtt_connect(broker.url, "it-sub-mqtts", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));

    snprintf(mqtt, sizeof(mqtt),
             ",\"url\":\"mqtts://127.0.0.1:%d\",\"ca_file\":\"%s\",\"cert_file\":\"%s\","
             "\"key_file\":\"%s\"",
             tls_port, ca, ccrt, ckey);
    start_bridge("", mqtt, false);
    ck_assert_msg(th_bridge_wait_ready(&bridge, NULL, WAIT_MS), "no TLS connection to the broker");
    ck_assert_int_eq(push(NULL, NULL), 200);
    ck_assert_ptr_nonnull(th_mqtt_wait_topic(sub, "iot/demoApp/tls-dev/deviceAdded", WAIT_MS));
    th_mqtt_free(sub);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tls_tests[] = {https_listener, https_listener_requires_client_certificates,
                                      mqtt_over_tls_with_a_client_certificate, NULL};
    const struct th_case cases[] = {
        {.name = "tls",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 120,
         .tests = tls_tests,
         .unchecked_setup = make_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "push_tls", cases);
}
