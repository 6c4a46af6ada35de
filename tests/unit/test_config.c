/*
 * test_config.c: the configuration contract (docs/design.md section 5): defaults
 * for every key, file values, OCB_* overrides, ${VAR} expansion, and every
 * kind of bad input rejected as "FILE: key.path: reason".
 */
#include <check.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocb/api.h"
#include "ocb/config.h"
#include "th_main.h"

static char err[512];

static struct ocb_config *parse_ok(const char *json)
{
    struct ocb_config *cfg = NULL;
    err[0] = '\0';
    enum ocb_err rc = config_parse("t.json", json, strlen(json), &cfg, err, sizeof(err));
    ck_assert_msg(rc == OCB_OK, "expected OK for %s, got %s", json, err);
    return cfg;
}

static void parse_fails(const char *json, const char *expected_err)
{
    struct ocb_config *cfg = (struct ocb_config *)1;
    err[0] = '\0';
    enum ocb_err rc = config_parse("t.json", json, strlen(json), &cfg, err, sizeof(err));
    ck_assert_msg(rc != OCB_OK, "expected failure for %s", json);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, expected_err) != NULL, "error \"%s\" lacks \"%s\"", err,
                  expected_err);
}

START_TEST(minimal_push_only_config_has_every_default)
{
    struct ocb_config *cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\"}]}");
    ck_assert_str_eq(cfg->http.listen, "0.0.0.0:8080");
    ck_assert_str_eq(cfg->http.public_url, "http://127.0.0.1:8080");
    ck_assert_uint_eq(cfg->http.max_body_bytes, 262144);
    ck_assert_str_eq(cfg->mqtt.url, "tcp://127.0.0.1:1883");
    ck_assert_str_eq(cfg->mqtt.client_id, "ocbridge");
    ck_assert_int_eq(cfg->mqtt.version, 5);
    ck_assert_str_eq(cfg->mqtt.topic_prefix, "iot");
    ck_assert_int_eq(cfg->mqtt.qos, 1);
    ck_assert_uint_eq(cfg->mqtt.publish_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->mqtt.max_inflight, 1024);
    ck_assert_str_eq(cfg->platform.url, "https://127.0.0.1:8743");
    ck_assert(!cfg->platform.verify_hostname);
    ck_assert_uint_eq(cfg->platform.rate_calls, 100);
    ck_assert_uint_eq(cfg->platform.rate_per_seconds, 60);
    ck_assert(!cfg->platform.manage_subscriptions);
    ck_assert_uint_eq(cfg->n_apps, 1);
    ck_assert_str_eq(cfg->apps[0].app_id, "a");
    ck_assert_str_eq(cfg->apps[0].secret, "");
    ck_assert_str_eq(cfg->apps[0].push_token, "");
    ck_assert_int_eq(cfg->log.level, OCB_LOG_INFO);
    ck_assert_int_eq(cfg->log.format, OCB_LOG_TEXT);
    ck_assert_str_eq(cfg->spool.mode_name, "outage");
    ck_assert_int_eq(cfg->spool.mode, OCB_SPOOL_OUTAGE);
    ck_assert_uint_eq(cfg->spool.max_bytes, 1u << 30);
    ck_assert_uint_eq(cfg->spool.max_age_s, 7 * 86400);
    ck_assert_str_eq(cfg->state.dir, "/var/lib/ocbridge");
    ck_assert_uint_eq(cfg->push.dedup_window_s, 0);
    ck_assert(!config_commands_enabled(cfg));
    ck_assert_ptr_nonnull(config_find_app(cfg, "a"));
    ck_assert_ptr_null(config_find_app(cfg, "b"));
    config_free(cfg);
}
END_TEST

START_TEST(spool_state_and_dedup_keys)
{
    struct ocb_config *cfg =
        parse_ok("{\"spool\":{\"mode\":\"always\",\"max_bytes\":65536,\"max_age_s\":60},"
                 "\"state\":{\"dir\":\"/tmp/s\"},\"push\":{\"dedup_window_s\":30}}");
    char out[64];

    ck_assert_int_eq(cfg->spool.mode, OCB_SPOOL_ALWAYS);
    ck_assert_uint_eq(cfg->spool.max_bytes, 65536);
    ck_assert_uint_eq(cfg->spool.max_age_s, 60);
    ck_assert_str_eq(cfg->state.dir, "/tmp/s");
    ck_assert_uint_eq(cfg->push.dedup_window_s, 30);
    ck_assert_int_eq(config_format_key(cfg, "spool.mode", out, sizeof(out)), OCB_OK);
    ck_assert_str_eq(out, "always");
    config_free(cfg);

    setenv("OCB_SPOOL_MODE", "off", 1);
    setenv("OCB_STATE_DIR", "/tmp/other", 1);
    setenv("OCB_PUSH_DEDUP_WINDOW_S", "5", 1);
    cfg = parse_ok("{\"spool\":{\"mode\":\"always\"}}");
    ck_assert_int_eq(cfg->spool.mode, OCB_SPOOL_OFF);
    ck_assert_str_eq(cfg->state.dir, "/tmp/other");
    ck_assert_uint_eq(cfg->push.dedup_window_s, 5);
    config_free(cfg);
    unsetenv("OCB_SPOOL_MODE");
    unsetenv("OCB_STATE_DIR");
    unsetenv("OCB_PUSH_DEDUP_WINDOW_S");

    parse_fails("{\"spool\":{\"mode\":\"sometimes\"}}",
                "t.json: spool.mode: must be one of outage, always, off");
    parse_fails("{\"spool\":{\"max_bytes\":10}}", "t.json: spool.max_bytes: must be between");
    parse_fails("{\"state\":{\"dir\":\"\"}}", "t.json: state.dir: must not be empty");
    parse_fails("{\"push\":{\"dedup_window_s\":-1}}", "t.json: push.dedup_window_s:");
}
END_TEST

START_TEST(design_example_parses)
{
    setenv("OCB_DEMOAPP_SECRET", "s3cret", 1);
    struct ocb_config *cfg = parse_ok(
        "{\"http\":{\"listen\":\"0.0.0.0:8080\",\"public_url\":\"http://bridge.example.com:8080\","
        "\"tls_cert\":\"\",\"tls_key\":\"\",\"tls_client_ca\":\"\",\"max_body_bytes\":262144,"
        "\"allow_from\":[]},"
        "\"mqtt\":{\"url\":\"tcp://127.0.0.1:1883\",\"client_id\":\"ocbridge\",\"version\":5,"
        "\"username\":\"\",\"password\":\"\",\"ca_file\":\"\",\"cert_file\":\"\",\"key_file\":\"\","
        "\"topic_prefix\":\"iot\",\"qos\":1,\"publish_timeout_ms\":5000,\"max_inflight\":1024,"
        "\"shared_group\":\"\"},"
        "\"platform\":{\"url\":\"https://127.0.0.1:8743\",\"ca_file\":\"\",\"cert_file\":\"\","
        "\"key_file\":\"\",\"verify_hostname\":false,\"rate_limit\":{\"calls\":100,"
        "\"per_seconds\":60},\"manage_subscriptions\":false},"
        "\"apps\":[{\"app_id\":\"demoApp\",\"secret\":\"${OCB_DEMOAPP_SECRET}\",\"push_token\":"
        "\"\","
        "\"subscribe\":[\"deviceDataChanged\",\"deviceDatasChanged\",\"deviceAdded\"]}],"
        "\"log\":{\"level\":\"info\",\"format\":\"text\"}}");
    ck_assert_str_eq(cfg->apps[0].secret, "s3cret");
    ck_assert_uint_eq(cfg->apps[0].n_subscribe, 3);
    ck_assert_str_eq(cfg->apps[0].subscribe[2], "deviceAdded");
    ck_assert_str_eq(cfg->http.public_url, "http://bridge.example.com:8080");
    ck_assert(config_commands_enabled(cfg));
    config_free(cfg);
    unsetenv("OCB_DEMOAPP_SECRET");
}
END_TEST

START_TEST(environment_overrides_file_values)
{
    setenv("OCB_MQTT_URL", "tcp://10.0.0.1:1884", 1);
    setenv("OCB_MQTT_QOS", "0", 1);
    setenv("OCB_PLATFORM_RATE_LIMIT_CALLS", "7", 1);
    setenv("OCB_PLATFORM_VERIFY_HOSTNAME", "true", 1);
    setenv("OCB_HTTP_ALLOW_FROM", "127.0.0.1/8, ::1", 1);
    setenv("OCB_LOG_FORMAT", "json", 1);
    setenv("OCB_APPS_0_SECRET", "fromenv", 1);
    struct ocb_config *cfg =
        parse_ok("{\"mqtt\":{\"url\":\"tcp://127.0.0.1:1883\",\"qos\":1},\"apps\":[{\"app_id\":"
                 "\"a\"}]}");
    ck_assert_str_eq(cfg->mqtt.url, "tcp://10.0.0.1:1884");
    ck_assert_int_eq(cfg->mqtt.qos, 0);
    ck_assert_uint_eq(cfg->platform.rate_calls, 7);
    ck_assert(cfg->platform.verify_hostname);
    ck_assert_uint_eq(cfg->http.n_allow_from, 2);
    ck_assert_int_eq(cfg->log.format, OCB_LOG_JSON);
    ck_assert_str_eq(cfg->apps[0].secret, "fromenv");
    config_free(cfg);

    setenv("OCB_MQTT_QOS", "three", 1);
    parse_fails("{}", "t.json: mqtt.qos: \"three\" is not an integer");
    unsetenv("OCB_MQTT_URL");
    unsetenv("OCB_MQTT_QOS");
    unsetenv("OCB_PLATFORM_RATE_LIMIT_CALLS");
    unsetenv("OCB_PLATFORM_VERIFY_HOSTNAME");
    unsetenv("OCB_HTTP_ALLOW_FROM");
    unsetenv("OCB_LOG_FORMAT");
    unsetenv("OCB_APPS_0_SECRET");
}
END_TEST

START_TEST(apps_from_environment_json)
{
    setenv("OCB_APPS", "[{\"app_id\":\"x\",\"push_token\":\"tok\"},{\"app_id\":\"y\"}]", 1);
    struct ocb_config *cfg = parse_ok("{}");
    ck_assert_uint_eq(cfg->n_apps, 2);
    ck_assert_str_eq(cfg->apps[0].push_token, "tok");
    ck_assert_str_eq(cfg->apps[1].app_id, "y");
    config_free(cfg);
    setenv("OCB_APPS", "not json", 1);
    parse_fails("{}", "t.json: apps: OCB_APPS is not a JSON array");
    unsetenv("OCB_APPS");
}
END_TEST

/* The default public URL is the listen address; a wildcard host is reached at 127.0.0.1. */
START_TEST(api_allowed_sets)
{
    struct ocb_config *cfg =
        parse_ok("{\"apps\":[{\"app_id\":\"a\"},{\"app_id\":\"b\",\"api\":[]},"
                 "{\"app_id\":\"c\",\"api\":[\"read\",\"register\",\"delete\"]},"
                 "{\"app_id\":\"d\",\"api\":[\"all\"]},{\"app_id\":\"e\",\"api\":[\"write\"]}]}");
    /* Absent: read-only.  []: nothing. */
    ck_assert_uint_eq(cfg->apps[0].api_ops, OCB_API_READ_OPS);
    ck_assert_uint_eq(cfg->apps[1].api_ops, 0);
    ck_assert_uint_eq(cfg->apps[2].api_ops, OCB_API_READ_OPS | OCB_API_OP_BIT(OCB_API_REGISTER) |
                                                OCB_API_OP_BIT(OCB_API_DELETE));
    ck_assert_uint_eq(cfg->apps[3].api_ops, OCB_API_ALL_OPS);
    ck_assert_uint_eq(cfg->apps[4].api_ops, OCB_API_WRITE_OPS);
    char out[512];
    ck_assert_int_eq(config_format_key(cfg, "apps[0].api", out, sizeof(out)), OCB_OK);
    ck_assert_str_eq(out, "get,list,history,capabilities,shadow,groupList,groupGet,groupMembers");
    ck_assert_int_eq(config_format_key(cfg, "apps[1].api", out, sizeof(out)), OCB_OK);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(config_format_key(cfg, "apps[2].api", out, sizeof(out)), OCB_OK);
    ck_assert_str_eq(out, "register,get,list,delete,history,capabilities,shadow,groupList,"
                          "groupGet,groupMembers");
    config_free(cfg);

    /* The environment: a comma list, a JSON array, or empty for none. */
    setenv("OCB_APPS_0_API", " get , setShadow ", 1);
    setenv("OCB_APPS_1_API", "[\"all\"]", 1);
    setenv("OCB_APPS_2_API", "", 1);
    cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\",\"api\":[\"all\"]},{\"app_id\":\"b\"},"
                   "{\"app_id\":\"c\"}]}");
    ck_assert_uint_eq(cfg->apps[0].api_ops,
                      OCB_API_OP_BIT(OCB_API_GET) | OCB_API_OP_BIT(OCB_API_SET_SHADOW));
    ck_assert_uint_eq(cfg->apps[1].api_ops, OCB_API_ALL_OPS);
    ck_assert_uint_eq(cfg->apps[2].api_ops, 0);
    config_free(cfg);
    setenv("OCB_APPS_0_API", "get,nope", 1);
    parse_fails("{\"apps\":[{\"app_id\":\"a\"}]}",
                "t.json: apps[0].api[1]: \"nope\" is no operation");
    unsetenv("OCB_APPS_0_API");
    unsetenv("OCB_APPS_1_API");
    unsetenv("OCB_APPS_2_API");
}
END_TEST

START_TEST(public_url_defaults_to_the_listener)
{
    static const char *const cases[][2] = {
        {"0.0.0.0:8081", "http://127.0.0.1:8081"}, {"*:8082", "http://127.0.0.1:8082"},
        {"[::]:8083", "http://127.0.0.1:8083"},    {"[::1]:8084", "http://[::1]:8084"},
        {"10.1.2.3:8085", "http://10.1.2.3:8085"},
    };
    char json[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ocb_config *cfg;

        snprintf(json, sizeof(json), "{\"http\":{\"listen\":\"%s\"}}", cases[i][0]);
        cfg = parse_ok(json);
        ck_assert_str_eq(cfg->http.public_url, cases[i][1]);
        config_free(cfg);
    }
}
END_TEST

/* Every per-app field has its variable, checked like the file; a misspelt one is an error. */
START_TEST(app_fields_from_environment)
{
    struct ocb_config *cfg;

    setenv("OCB_APPS_0_SUBSCRIBE", " deviceAdded, deviceDataChanged ", 1);
    setenv("OCB_APPS_1_APP_ID", "second", 1);
    setenv("OCB_APPS_1_SUBSCRIBE", "[\"commandRsp\"]", 1);
    cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\",\"subscribe\":[\"deviceDeleted\"]}]}");
    ck_assert_uint_eq(cfg->n_apps, 2);
    ck_assert_uint_eq(cfg->apps[0].n_subscribe, 2);
    ck_assert_str_eq(cfg->apps[0].subscribe[0], "deviceAdded");
    ck_assert_str_eq(cfg->apps[0].subscribe[1], "deviceDataChanged");
    ck_assert_str_eq(cfg->apps[1].app_id, "second");
    ck_assert_uint_eq(cfg->apps[1].n_subscribe, 1);
    ck_assert_str_eq(cfg->apps[1].subscribe[0], "commandRsp");
    config_free(cfg);
    unsetenv("OCB_APPS_1_APP_ID");
    unsetenv("OCB_APPS_1_SUBSCRIBE");

    setenv("OCB_APPS_0_SUBSCRIBE", "[\"nope\"]", 1);
    parse_fails("{\"apps\":[{\"app_id\":\"a\"}]}",
                "t.json: apps[0].subscribe[0]: \"nope\" is not a notifyType the platform knows");
    setenv("OCB_APPS_0_SUBSCRIBE", "[", 1);
    parse_fails("{\"apps\":[{\"app_id\":\"a\"}]}",
                "t.json: apps: OCB_APPS_0_SUBSCRIBE is not a JSON array");
    unsetenv("OCB_APPS_0_SUBSCRIBE");

    /* The same for the key sections; other OCB_* names stay free for ${VAR} and scripts. */
    setenv("OCB_MQTT_URLL", "tcp://127.0.0.1:1883", 1);
    parse_fails("{}", "t.json: environment: OCB_MQTT_URLL names no configuration key");
    unsetenv("OCB_MQTT_URLL");
    setenv("OCB_RUN_DIR", "/tmp/run", 1);
    config_free(parse_ok("{}"));
    unsetenv("OCB_RUN_DIR");
    setenv("OCB_SPOOL_MODEE", "off", 1);
    parse_fails("{}", "t.json: environment: OCB_SPOOL_MODEE names no configuration key");
    unsetenv("OCB_SPOOL_MODEE");

    setenv("OCB_APPS_0_SECRT", "typo", 1);
    parse_fails("{\"apps\":[{\"app_id\":\"a\"}]}",
                "t.json: apps: unknown environment variable OCB_APPS_0_SECRT (per-app variables "
                "are OCB_APPS_<n>_APP_ID, _SECRET, _PUSH_TOKEN, _SUBSCRIBE, _API)");
    unsetenv("OCB_APPS_0_SECRT");
}
END_TEST

START_TEST(variable_expansion)
{
    setenv("OCB_T_HOST", "broker", 1);
    unsetenv("OCB_T_UNSET");
    struct ocb_config *cfg =
        parse_ok("{\"mqtt\":{\"url\":\"tcp://${OCB_T_HOST}:${OCB_T_UNSET:-1883}\"}}");
    ck_assert_str_eq(cfg->mqtt.url, "tcp://broker:1883");
    config_free(cfg);
    parse_fails("{\"mqtt\":{\"password\":\"${OCB_T_UNSET}\"}}",
                "t.json: mqtt.password: environment variable OCB_T_UNSET is not set");
    parse_fails("{\"mqtt\":{\"password\":\"${OCB_T_HOST\"}}",
                "t.json: mqtt.password: unterminated");
    unsetenv("OCB_T_HOST");
}
END_TEST

/* Each bad input and the exact "FILE: key.path: reason" prefix it must produce. */
static const struct {
    const char *json, *err;
} bad[] = {
    {"[]", "t.json: (top level): expected a JSON object"},
    {"{\"http\":", "t.json: (top level): invalid JSON near line 1"},
    {"{\"htp\":{}}", "t.json: htp: unknown key"},
    {"{\"apps\":[{\"app_id\":\"a\",\"api\":\"all\"}]}",
     "t.json: apps[0].api: expected an array of operation names or read, write, all"},
    {"{\"apps\":[{\"app_id\":\"a\",\"api\":[\"get\",\"reboot\"]}]}",
     "t.json: apps[0].api[1]: \"reboot\" is no operation"},
    {"{\"apps\":[{\"app_id\":\"a\",\"api\":[\"Get\"]}]}", "t.json: apps[0].api[0]: \"Get\""},
    {"{\"apps\":[{\"app_id\":\"a\",\"api\":[1]}]}",
     "t.json: apps[0].api[0]: expected an operation name or read, write, all"},
    {"{\"http\":{\"lisen\":\"x\"}}", "t.json: http.lisen: unknown key"},
    {"{\"http\":{\"listen\":8080}}", "t.json: http.listen: expected a string"},
    {"{\"http\":{\"listen\":\"nohostport\"}}", "t.json: http.listen: expected HOST:PORT"},
    {"{\"http\":{\"listen\":\"0.0.0.0:70000\"}}", "t.json: http.listen: expected HOST:PORT"},
    {"{\"http\":{\"max_body_bytes\":10}}", "t.json: http.max_body_bytes: must be between"},
    {"{\"http\":{\"max_body_bytes\":1.5}}", "t.json: http.max_body_bytes: expected an integer"},
    /* fuzz_config: a number beyond long long was converted before the range check (UB). */
    {"{\"http\":{\"max_body_bytes\":2.6e29}}", "t.json: http.max_body_bytes: expected an integer"},
    {"{\"http\":{\"allow_from\":[\"10.0.0.0/33\"]}}", "t.json: http.allow_from: \"10.0.0.0/33\""},
    {"{\"http\":{\"allow_from\":\"10.0.0.0/8\"}}", "t.json: http.allow_from: expected an array"},
    {"{\"http\":{\"public_url\":\"http://example.com/cb\"}}",
     "t.json: http.public_url: expected http(s)://HOST:PORT"},
    {"{\"http\":{\"tls_cert\":\"/nonexistent/cert.pem\"}}",
     "t.json: http.tls_cert: cannot read \"/nonexistent/cert.pem\""},
    {"{\"mqtt\":{\"version\":3}}", "t.json: mqtt.version: must be between 4 and 5"},
    {"{\"mqtt\":{\"qos\":\"1\"}}", "t.json: mqtt.qos: expected a number"},
    {"{\"mqtt\":{\"url\":\"http://x:1\"}}", "t.json: mqtt.url: expected"},
    {"{\"mqtt\":{\"topic_prefix\":\"a/#\"}}", "t.json: mqtt.topic_prefix: must be"},
    {"{\"mqtt\":{\"topic_prefix\":\"\"}}", "t.json: mqtt.topic_prefix: must be"},
    {"{\"mqtt\":{\"shared_group\":\"a/b\"}}", "t.json: mqtt.shared_group: must be"},
    {"{\"mqtt\":\"x\"}", "t.json: mqtt: expected an object"},
    {"{\"mqtt\":{\"qos\":1,\"qos\":2}}", "t.json: mqtt: duplicate key \"qos\""},
    {"{\"platform\":{\"rate_limit\":{\"call\":1}}}",
     "t.json: platform.rate_limit.call: unknown key"},
    {"{\"platform\":{\"verify_hostname\":1}}", "t.json: platform.verify_hostname: expected true"},
    {"{\"platform\":{\"cert_file\":\"/dev/null\"}}",
     "t.json: platform.key_file: must be set together with platform.cert_file"},
    {"{\"apps\":{}}", "t.json: apps: expected an array"},
    {"{\"apps\":[{}]}", "t.json: apps[0].app_id: is required"},
    {"{\"apps\":[{\"app_id\":\"a/b\"}]}", "t.json: apps[0].app_id: must be"},
    /* The topic-level rule routing applies (grammar.h), not a looser copy of it. */
    {"{\"apps\":[{\"app_id\":\"a\\u0085b\"}]}",
     "t.json: apps[0].app_id: must be a topic level of 1..128 bytes: contains a control character"},
    {"{\"apps\":[{\"app_id\":\"a\xff\"}]}",
     "t.json: apps[0].app_id: must be a topic level of 1..128 "
     "bytes: is not valid UTF-8"},
    {"{\"apps\":[{\"app_id\":\"\\ufdd0\"}]}", "apps[0].app_id: must be a topic level of 1..128 "
                                              "bytes: contains a Unicode noncharacter"},
    {"{\"apps\":[{\"app_id\":\"_\"}]}", "t.json: apps[0].app_id: must be a topic level"},
    {"{\"mqtt\":{\"topic_prefix\":\"site/io\\u009bt\"}}",
     "t.json: mqtt.topic_prefix: must be 1..128 bytes of topic levels: contains a control"},
    {"{\"mqtt\":{\"topic_prefix\":\"$SYS/x\"}}", "t.json: mqtt.topic_prefix: must be"},
    {"{\"mqtt\":{\"topic_prefix\":\"a//b\"}}", "t.json: mqtt.topic_prefix: must be"},
    {"{\"mqtt\":{\"shared_group\":\"g\\u0085\"}}", "t.json: mqtt.shared_group: must be"},
    {"{\"http\":{\"listen\":\":8080\"}}", "t.json: http.listen: expected HOST:PORT"},
    {"{\"http\":{\"listen\":\"h:+80\"}}", "t.json: http.listen: expected HOST:PORT"},
    {"{\"http\":{\"listen\":\"[::1]8080\"}}", "t.json: http.listen: expected HOST:PORT"},
    {"{\"mqtt\":{\"url\":\"tcp://host\"}}", "t.json: mqtt.url: expected"},
    {"{\"mqtt\":{\"url\":\"TCP://host:1883\"}}", "t.json: mqtt.url: expected"},
    {"{\"platform\":{\"url\":\"https://h:99999\"}}", "t.json: platform.url: expected"},
    {"{\"http\":{\"allow_from\":[\"10.0.0.0/+8\"]}}", "t.json: http.allow_from: \"10.0.0.0/+8\""},
    {"{\"apps\":[{\"app_id\":\"a\"},{\"app_id\":\"a\"}]}",
     "t.json: apps[1].app_id: \"a\" appears twice"},
    {"{\"apps\":[{\"app_id\":\"a\",\"secrt\":\"x\"}]}", "t.json: apps[0].secrt: unknown key"},
    {"{\"apps\":[{\"app_id\":\"a\",\"push_token\":\"has space\"}]}", "t.json: apps[0].push_token:"},
    {"{\"apps\":[{\"app_id\":\"a\",\"subscribe\":[\"deviceDataChange\"]}]}",
     "t.json: apps[0].subscribe[0]: \"deviceDataChange\" is not a notifyType"},
    {"{\"log\":{\"level\":\"verbose\"}}", "t.json: log.level: must be one of"},
    {"{\"log\":{\"format\":\"xml\"}}", "t.json: log.format: must be text or json"},
};

START_TEST(bad_values_are_rejected_with_their_path)
{
    parse_fails(bad[_i].json, bad[_i].err);
}
END_TEST

START_TEST(load_reports_missing_file_and_reads_real_one)
{
    struct ocb_config *cfg = NULL;
    ck_assert_int_ne(config_load("/nonexistent/ocb.json", &cfg, err, sizeof(err)), OCB_OK);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, "/nonexistent/ocb.json: (file):") != NULL, "%s", err);

    char path[] = "/tmp/ocb-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text =
        "{\n  \"apps\": [{\"app_id\": \"file\"}],\n  \"log\": {\"level\": \"debug\"}\n}\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    ck_assert_int_eq(config_load(path, &cfg, err, sizeof(err)), OCB_OK);
    ck_assert_str_eq(cfg->apps[0].app_id, "file");
    ck_assert_int_eq(cfg->log.level, OCB_LOG_DEBUG);
    config_free(cfg);
    unlink(path);
    config_free(NULL);
}
END_TEST

/* The loader reads a file of any size up to the cap (its buffer follows the file), and
 * not a byte more. */
START_TEST(load_reads_files_of_any_size_up_to_the_cap)
{
    static const char head[] = "{\"apps\":[{\"app_id\":\"big\"}]";
    const size_t sizes[] = {sizeof(head), 4095, 4096, 4097, 100000, 1u << 20, (1u << 20) + 1};
    char path[] = "/tmp/ocb-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];
        char *text = malloc(size);
        ck_assert_ptr_nonnull(text);
        memset(text, ' ', size);
        memcpy(text, head, sizeof(head) - 1);
        text[size - 1] = '}';
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(text, 1, size, f), size);
        fclose(f);
        free(text);
        struct ocb_config *cfg = NULL;
        enum ocb_err rc = config_load(path, &cfg, err, sizeof(err));
        if (size <= (1u << 20)) {
            ck_assert_msg(rc == OCB_OK, "%zu bytes: %s", size, err);
            ck_assert_str_eq(cfg->apps[0].app_id, "big");
        } else {
            ck_assert_int_eq(rc, OCB_ERR_TOO_BIG);
            ck_assert_msg(strstr(err, "larger than 1048576 bytes") != NULL, "%s", err);
            ck_assert_ptr_null(cfg);
        }
        config_free(cfg);
    }
    unlink(path);
}
END_TEST

#define REF_THREADS 4
#define REF_ROUNDS  20000

static void *ref_and_unref(void *arg)
{
    const struct ocb_config *cfg = arg;
    for (int i = 0; i < REF_ROUNDS; i++) {
        const struct ocb_config *mine = config_ref(cfg);
        ck_assert_ptr_eq(mine, cfg);
        ck_assert_str_eq(mine->apps[0].app_id, "a");
        config_unref(mine);
    }
    config_unref(cfg); /* the reference this thread was handed */
    return NULL;
}

/* A configuration lives until its last reference is dropped, on whichever thread. */
START_TEST(references_keep_a_configuration_until_the_last_one_goes)
{
    unsigned before = config_alive();
    struct ocb_config *cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\"}]}");
    ck_assert_uint_eq(config_alive(), before + 1);

    pthread_t threads[REF_THREADS];
    for (int t = 0; t < REF_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, ref_and_unref, (void *)config_ref(cfg)),
                         0);
    config_unref(cfg); /* the loader's: the threads' references keep it */
    for (int t = 0; t < REF_THREADS; t++)
        pthread_join(threads[t], NULL);
    ck_assert_uint_eq(config_alive(), before);

    cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\"}]}");
    const struct ocb_config *held = config_ref(cfg);
    config_free(cfg);
    ck_assert_uint_eq(config_alive(), before + 1);
    ck_assert_str_eq(held->apps[0].app_id, "a");
    config_unref(held);
    ck_assert_uint_eq(config_alive(), before);
    config_unref(NULL);
}
END_TEST

START_TEST(cidr_matching)
{
    struct ocb_cidr c;
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    ck_assert(OCB_OK == grammar_cidr_parse("10.1.0.0/16", &c));
    inet_pton(AF_INET, "10.1.200.3", &in.sin_addr);
    ck_assert(grammar_cidr_match(&c, &in));
    inet_pton(AF_INET, "10.2.0.1", &in.sin_addr);
    ck_assert(!grammar_cidr_match(&c, &in));
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
    ck_assert(grammar_cidr_match(&c, &in6));
    ck_assert(OCB_OK == grammar_cidr_parse("2001:db8::/32", &c));
    inet_pton(AF_INET6, "2001:db8:1::7", &in6.sin6_addr);
    ck_assert(grammar_cidr_match(&c, &in6));
    ck_assert(OCB_OK == grammar_cidr_parse("127.0.0.1", &c));
    ck_assert_uint_eq(c.prefix, 32);
    ck_assert(OCB_OK != grammar_cidr_parse("300.0.0.1", &c));
    ck_assert(OCB_OK != grammar_cidr_parse("1.2.3.4/", &c));
    ck_assert(OCB_OK != grammar_cidr_parse("", &c));
}
END_TEST

START_TEST(reload_keeps_restart_only_keys)
{
    struct ocb_config *running = parse_ok(
        "{\"mqtt\":{\"url\":\"tcp://127.0.0.1:1883\",\"qos\":1},\"http\":{\"max_body_bytes\":2048},"
        "\"apps\":[{\"app_id\":\"a\"}]}");
    struct ocb_config *next = parse_ok(
        "{\"mqtt\":{\"url\":\"tcp://127.0.0.1:1999\",\"qos\":0},\"http\":{\"max_body_bytes\":4096,"
        "\"listen\":\"127.0.0.1:9\"},\"apps\":[{\"app_id\":\"a\"},{\"app_id\":\"b\"}],"
        "\"log\":{\"level\":\"debug\"}}");
    char kept[256];
    ck_assert_int_eq(config_reload_merge(next, running, kept, sizeof(kept)), OCB_OK);
    ck_assert_str_eq(next->mqtt.url, "tcp://127.0.0.1:1883");
    ck_assert_int_eq(next->mqtt.qos, 1);
    ck_assert_str_eq(next->http.listen, "0.0.0.0:8080");
    ck_assert_uint_eq(next->http.max_body_bytes, 4096);
    ck_assert_int_eq(next->log.level, OCB_LOG_DEBUG);
    ck_assert_uint_eq(next->n_apps, 2);
    ck_assert_str_eq(kept, "http.listen, http.public_url, mqtt.url, mqtt.qos");

    ck_assert_int_eq(config_reload_merge(next, running, kept, sizeof(kept)), OCB_OK);
    ck_assert_str_eq(kept, "");
    config_free(next);
    config_free(running);
}
END_TEST

/* config_format_key(cfg, key) succeeds and prints want. */
static void key_is(const struct ocb_config *cfg, const char *key, const char *want)
{
    char out[128];
    ck_assert_msg(config_format_key(cfg, key, out, sizeof(out)) == OCB_OK, "%s: not printable",
                  key);
    ck_assert_msg(strcmp(out, want) == 0, "%s printed \"%s\", want \"%s\"", key, out, want);
}

START_TEST(format_key_prints_effective_values)
{
    setenv("OCB_MQTT_URL", "tcp://10.9.8.7:1883", 1);
    struct ocb_config *cfg = parse_ok(
        "{\"http\":{\"allow_from\":[\"10.0.0.0/8\",\"::1\"]},\"log\":{\"format\":\"json\"}}");
    unsetenv("OCB_MQTT_URL");
    char out[128];
    key_is(cfg, "mqtt.url", "tcp://10.9.8.7:1883");
    key_is(cfg, "mqtt.max_inflight", "1024");
    key_is(cfg, "platform.verify_hostname", "false");
    key_is(cfg, "log.format", "json");
    key_is(cfg, "http.allow_from", "10.0.0.0/8,::1/128");
    ck_assert_int_eq(config_format_key(cfg, "mqtt.nope", out, sizeof(out)), OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(config_format_key(cfg, "mqtt.url", out, 4), OCB_ERR_TOO_BIG);
    config_free(cfg);

    /* apps[N].field, with the secret reported only as set or not */
    cfg = parse_ok("{\"apps\":[{\"app_id\":\"a\"},{\"app_id\":\"b\",\"secret\":\"s3cr3t\","
                   "\"push_token\":\"t\",\"subscribe\":[\"deviceAdded\",\"commandRsp\"]}]}");
    key_is(cfg, "apps[1].app_id", "b");
    key_is(cfg, "apps[1].subscribe", "deviceAdded,commandRsp");
    key_is(cfg, "apps[1].push_token", "t");
    key_is(cfg, "apps[1].secret", "(set)");
    key_is(cfg, "apps[0].secret", "(not set)");
    ck_assert_int_eq(config_format_key(cfg, "apps[2].app_id", out, sizeof(out)), OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(config_format_key(cfg, "apps[0].nope", out, sizeof(out)), OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(config_format_key(cfg, "apps[0].app_idx", out, sizeof(out)),
                     OCB_ERR_NOT_FOUND);
    config_free(cfg);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const config_tests[] = {minimal_push_only_config_has_every_default,
                                         design_example_parses,
                                         spool_state_and_dedup_keys,
                                         environment_overrides_file_values,
                                         apps_from_environment_json,
                                         app_fields_from_environment,
                                         public_url_defaults_to_the_listener,
                                         api_allowed_sets,
                                         variable_expansion,
                                         bad_values_are_rejected_with_their_path,
                                         load_reports_missing_file_and_reads_real_one,
                                         load_reads_files_of_any_size_up_to_the_cap,
                                         references_keep_a_configuration_until_the_last_one_goes,
                                         cidr_matching,
                                         reload_keeps_restart_only_keys,
                                         format_key_prints_effective_values,
                                         NULL};
    const struct th_loop config_loops[] = {
        {bad_values_are_rejected_with_their_path, 0, (int)(sizeof(bad) / sizeof(bad[0]))},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "config", .tests = config_tests, .loops = config_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "config", cases);
}
