/*
 * test_sim_it_tls.c: --make-certs output, mutual TLS on the API port, --plain and
 * --no-client-auth, bad flags and clean shutdown.
 */
#include "th_sim.h"

#include <check.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "th_main.h"

static X509 *load_cert(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", th_sim_certs, name);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(x);
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", th_sim_certs, name);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 077, 0); /* private keys are not world-readable */
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(k);
    return k;
}

static bool verifies(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    bool ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

START_TEST(make_certs_are_standard)
{
    X509 *ca = load_cert("ca.pem"), *srv = load_cert("server.pem"), *cli = load_cert("client.pem");
    EVP_PKEY *sk = load_key("server-key.pem"), *ck = load_key("client-key.pem");
    ck_assert_int_eq(X509_check_ca(ca), 1);
    ck_assert_int_eq(X509_check_ca(srv), 0);
    ck_assert(verifies(ca, srv, X509_PURPOSE_SSL_SERVER));
    ck_assert(verifies(ca, cli, X509_PURPOSE_SSL_CLIENT));
    ck_assert(!verifies(ca, cli, X509_PURPOSE_SSL_SERVER)); /* EKU clientAuth only */
    ck_assert(!verifies(ca, srv, X509_PURPOSE_SSL_CLIENT)); /* EKU serverAuth only */
    ck_assert_int_eq(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_private_key(srv, sk), 1);
    ck_assert_int_eq(X509_check_private_key(cli, ck), 1);
    int days = 0, secs = 0;
    ck_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca)));
    ck_assert_int_ge(days, 9 * 365);
    ck_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(srv)));
    ck_assert_int_ge(days, 9 * 365);
    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(ck);
}
END_TEST

START_TEST(mutual_tls_required)
{
    th_sim_make_other_certs();
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", NULL};
    th_sim_start(&s, args);
    char url[128];
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/login", s.api);
    /* No client certificate: refused at the TLS layer, no HTTP answer at all. */
    struct th_sim_resp r =
        th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_NONE);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_ne(r.curl_rc, 0);
    th_sim_resp_free(&r);
    /* A certificate from another CA: refused too. */
    r = th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_OTHER_CA);
    ck_assert_int_eq(r.status, 0);
    th_sim_resp_free(&r);
    /* The client certificate made by --make-certs: accepted, also by name "localhost". */
    r = th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_CLIENT);
    ck_assert_int_eq(r.status, 200);
    th_sim_resp_free(&r);
    snprintf(url, sizeof url, "https://localhost:%u/iocm/app/sec/v1.1.0/login", s.api_port);
    r = th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_CLIENT);
    ck_assert_int_eq(r.status, 200);
    th_sim_resp_free(&r);
    /* The refusals are in the request log only as far as HTTP went: nothing for them. */
    r = th_sim_admin(&s, "GET", "/requests", NULL);
    cJSON *log = th_sim_json(&r);
    ck_assert_int_eq(cJSON_GetArraySize(log), 2);
    cJSON_Delete(log);
    th_sim_resp_free(&r);
    th_sim_stop(&s);
}
END_TEST

START_TEST(no_client_auth_and_plain)
{
    struct th_sim s;
    const char *a1[] = {"--app", "app1:sec1", "--no-client-auth", NULL};
    th_sim_start(&s, a1);
    char url[128];
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/login", s.api);
    struct th_sim_resp r =
        th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_NONE);
    ck_assert_int_eq(r.status, 200);
    th_sim_resp_free(&r);
    th_sim_stop(&s);

    const char *a2[] = {"--app", "app1:sec1", "--plain", NULL};
    th_sim_start(&s, a2);
    ck_assert(!s.tls);
    ck_assert(strncmp(s.api, "http://", 7) == 0);
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/login", s.api);
    r = th_sim_http("POST", url, NULL, "appId=app1&secret=sec1", TH_SIM_CERT_NONE);
    ck_assert_int_eq(r.status, 200);
    th_sim_resp_free(&r);
    th_sim_stop(&s);
}
END_TEST

START_TEST(bad_flags_exit_2_with_a_reason)
{
    static const struct {
        const char *args[8];
        const char *says;
    } cases[] = {
        {{"--plain", NULL}, "--app"},
        {{"--app", "a:b", NULL}, "--certs"},
        {{"--plain", "--app", "nocolon", NULL}, "--app"},
        {{"--plain", "--app", "a:b", "--throttle", "ten", NULL}, "--throttle"},
        {{"--plain", "--app", "a:b", "--bogus", NULL}, "bogus"},
        {{"--plain", "--app", "a:b", "--listen", "nowhere", NULL}, "--listen"},
        {{"--app", "a:b", "--certs", "/nonexistent-dir", NULL}, "cannot read"},
        {{"--plain", "--app", "a:b", "--listen", "192.0.2.1:8743", NULL}, "cannot listen"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[2048];
        int rc = th_sim_run(cases[i].args, err, sizeof err);
        ck_assert_msg(rc != 0, "case %zu exited 0", i);
        ck_assert_msg(strstr(err, "ocbridge-sim: ") && strstr(err, cases[i].says),
                      "case %zu: stderr lacks \"%s\": %s", i, cases[i].says, err);
    }
}
END_TEST

START_TEST(oversized_body_413_and_unknown_path_404)
{
    struct th_sim s;
    const char *args[] = {"--app", "app1:sec1", "--max-body", "2048", NULL};
    th_sim_start(&s, args);
    char *big = malloc(4096);
    memset(big, 'a', 4095);
    big[4095] = '\0';
    struct th_sim_resp r =
        th_sim_api(&s, "POST", "/iocm/app/sub/v1.2.0/subscriptions", "app1", "x", big);
    th_sim_expect(&r, 413, NULL);
    th_sim_resp_free(&r);
    free(big);
    r = th_sim_api(&s, "GET", "/nothing/here", NULL, NULL, NULL);
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    r = th_sim_admin(&s, "GET", "/nothing", NULL);
    th_sim_expect(&r, 404, NULL);
    th_sim_resp_free(&r);
    th_sim_stop(&s);
}
END_TEST

static cJSON *devices_of(const struct th_sim *sim)
{
    struct th_sim_resp r = th_sim_admin(sim, "GET", "/devices", NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    return j;
}

START_TEST(config_file_seeded_devices_round_robin)
{
    char cfg[] = "/tmp/ocbsim-config-XXXXXX";
    int fd = mkstemp(cfg);
    ck_assert_int_ge(fd, 0);
    const char *text = "{\"apps\":[{\"appId\":\"cfgA\",\"secret\":\"sa\"},"
                       "{\"appId\":\"cfgB\",\"secret\":\"sb\"}],\"devices\":4}";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct th_sim a, b;
    const char *args[] = {"--config", cfg, "--seed", "7", NULL};
    th_sim_start(&a, args);
    th_sim_start(&b, args);
    free(th_sim_login(&a, "cfgB", "sb"));
    cJSON *da = devices_of(&a), *db = devices_of(&b);
    ck_assert_int_eq(cJSON_GetArraySize(da), 4);
    char *ta = cJSON_PrintUnformatted(da), *tb = cJSON_PrintUnformatted(db);
    ck_assert_str_eq(ta, tb); /* same seed, same devices */
    for (int i = 0; i < 4; i++) {
        cJSON *d = cJSON_GetArrayItem(da, i);
        ck_assert_str_eq(cJSON_GetObjectItem(d, "appId")->valuestring, i % 2 ? "cfgB" : "cfgA");
        ck_assert_int_eq(strlen(cJSON_GetObjectItem(d, "deviceId")->valuestring), 36);
        ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(d, "online")));
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(d, "services")), 2);
    }
    free(ta);
    free(tb);
    cJSON_Delete(da);
    cJSON_Delete(db);
    th_sim_stop(&a);
    th_sim_stop(&b);

    const char *other_seed[] = {"--config", cfg, "--seed", "8", "--devices-first-app", NULL};
    th_sim_start(&a, other_seed);
    da = devices_of(&a);
    cJSON *d;
    cJSON_ArrayForEach(d, da)
        ck_assert_str_eq(cJSON_GetObjectItem(d, "appId")->valuestring, "cfgA");
    cJSON_Delete(da);
    th_sim_stop(&a);

    fd = open(cfg, O_WRONLY | O_TRUNC);
    const char *typo = "{\"apps\":[],\"devcies\":1}";
    ck_assert_int_eq(write(fd, typo, strlen(typo)), (ssize_t)strlen(typo));
    close(fd);
    const char *bad[] = {"--plain", "--config", cfg, NULL};
    char err[1024];
    ck_assert_int_eq(th_sim_run(bad, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "devcies"));
    unlink(cfg);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const tls_tests[] = {make_certs_are_standard,
                                      mutual_tls_required,
                                      no_client_auth_and_plain,
                                      bad_flags_exit_2_with_a_reason,
                                      oversized_body_413_and_unknown_path_404,
                                      config_file_seeded_devices_round_robin,
                                      NULL};
    const struct th_case cases[] = {
        {.name = "tls",
         .timeout_s = 60,
         .tests = tls_tests,
         .unchecked_setup = th_sim_make_certs,
         .unchecked_teardown = th_sim_remove_certs},
        {.name = NULL},
    };

    return th_main(argc, argv, "sim_tls", cases);
}
