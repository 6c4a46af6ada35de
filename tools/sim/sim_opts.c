/*
 * sim_opts.c: the command line (docs/design.md §7 is the contract) and the optional --config file.
 *
 * Every flag is a long option; a bad value is a one-line error naming the flag, and main exits
 * with status 2.  Behaviour the platform documentation leaves UNCONFIRMED is a flag whose default
 * is the reading in docs/platform-api.md (see README.md for the list).
 */
#include "sim.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    O_MAKE_CERTS = 256,
    O_LISTEN,
    O_ADMIN,
    O_CERTS,
    O_PLAIN,
    O_NO_CLIENT_AUTH,
    O_APP,
    O_CONFIG,
    O_DEVICES,
    O_REPORT_INTERVAL,
    O_THROTTLE,
    O_TOKEN_TTL,
    O_REFRESH_TTL,
    O_PUSH_TIMEOUT,
    O_REPUSH_INTERVAL,
    O_REPUSH_WINDOW,
    O_PROBE_INTERVAL,
    O_BLACKLIST_AFTER,
    O_REPUSH_ANY,
    O_PUSH_WORKERS,
    O_PUSH_CA,
    O_PUSH_CERT,
    O_PUSH_KEY,
    O_PUSH_INSECURE,
    O_CMD_DELAY,
    O_CMD_FAIL,
    O_CMD_TIMEOUT,
    O_CMD_MANUAL,
    O_PUSH_FINAL,
    O_MAX_PENDING,
    O_MAX_PAGE_SIZE,
    O_UNKNOWN_404,
    O_UNKNOWN_200,
    O_NO_CB_CHECK,
    O_CB_CODE,
    O_THROTTLE_SHAPE,
    O_MIXED_CB,
    O_DUP_TYPES,
    O_V11_REPLACE,
    O_REFRESH_REVOKES,
    O_HISTORY_MAX,
    O_GROUP_201,
    O_GROUP_IDS_EMPTY,
    O_DEVICE_TYPE,
    O_REPORT_MODE,
    O_FIRST_APP,
    O_SEED,
    O_MAX_BODY,
    O_LOG_FILE,
    O_LOG_LEVEL,
    O_HELP,
};

static const struct option long_opts[] = {
    {"make-certs", required_argument, NULL, O_MAKE_CERTS},
    {"listen", required_argument, NULL, O_LISTEN},
    {"admin", required_argument, NULL, O_ADMIN},
    {"certs", required_argument, NULL, O_CERTS},
    {"plain", no_argument, NULL, O_PLAIN},
    {"no-client-auth", no_argument, NULL, O_NO_CLIENT_AUTH},
    {"app", required_argument, NULL, O_APP},
    {"config", required_argument, NULL, O_CONFIG},
    {"devices", required_argument, NULL, O_DEVICES},
    {"report-interval", required_argument, NULL, O_REPORT_INTERVAL},
    {"throttle", required_argument, NULL, O_THROTTLE},
    {"token-ttl", required_argument, NULL, O_TOKEN_TTL},
    {"refresh-ttl", required_argument, NULL, O_REFRESH_TTL},
    {"push-timeout", required_argument, NULL, O_PUSH_TIMEOUT},
    {"repush-interval", required_argument, NULL, O_REPUSH_INTERVAL},
    {"repush-window", required_argument, NULL, O_REPUSH_WINDOW},
    {"probe-interval", required_argument, NULL, O_PROBE_INTERVAL},
    {"blacklist-after", required_argument, NULL, O_BLACKLIST_AFTER},
    {"repush-any-error", no_argument, NULL, O_REPUSH_ANY},
    {"push-workers", required_argument, NULL, O_PUSH_WORKERS},
    {"push-ca", required_argument, NULL, O_PUSH_CA},
    {"push-cert", required_argument, NULL, O_PUSH_CERT},
    {"push-key", required_argument, NULL, O_PUSH_KEY},
    {"push-insecure", no_argument, NULL, O_PUSH_INSECURE},
    {"command-delay-ms", required_argument, NULL, O_CMD_DELAY},
    {"command-fail-rate", required_argument, NULL, O_CMD_FAIL},
    {"command-timeout-rate", required_argument, NULL, O_CMD_TIMEOUT},
    {"command-manual", no_argument, NULL, O_CMD_MANUAL},
    {"push-final-states", no_argument, NULL, O_PUSH_FINAL},
    {"max-pending", required_argument, NULL, O_MAX_PENDING},
    {"max-page-size", required_argument, NULL, O_MAX_PAGE_SIZE},
    {"unknown-device-404", no_argument, NULL, O_UNKNOWN_404},
    /* Old name from when 404/100403 was the default: still accepted, now the default. */
    {"unknown-device-200", no_argument, NULL, O_UNKNOWN_200},
    {"no-callback-check", no_argument, NULL, O_NO_CB_CHECK},
    {"callback-conflict-code", required_argument, NULL, O_CB_CODE},
    {"throttle-shape", required_argument, NULL, O_THROTTLE_SHAPE},
    {"allow-mixed-callbacks", no_argument, NULL, O_MIXED_CB},
    {"allow-duplicate-types", no_argument, NULL, O_DUP_TYPES},
    {"v11-subscribe-replaces", no_argument, NULL, O_V11_REPLACE},
    {"refresh-revokes", no_argument, NULL, O_REFRESH_REVOKES},
    {"history-max", required_argument, NULL, O_HISTORY_MAX},
    {"devgroup-create-201", no_argument, NULL, O_GROUP_201},
    {"devgroup-ids-empty", no_argument, NULL, O_GROUP_IDS_EMPTY},
    {"device-type", required_argument, NULL, O_DEVICE_TYPE},
    {"report-mode", required_argument, NULL, O_REPORT_MODE},
    {"devices-first-app", no_argument, NULL, O_FIRST_APP},
    {"seed", required_argument, NULL, O_SEED},
    {"max-body", required_argument, NULL, O_MAX_BODY},
    {"log-file", required_argument, NULL, O_LOG_FILE},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

void sim_opts_defaults(struct sim_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->listen, sizeof o->listen, "127.0.0.1:8743");
    snprintf(o->admin, sizeof o->admin, "127.0.0.1:8744");
    o->throttle_calls = 100;
    o->throttle_period_s = 60;
    o->token_ttl_s = 3600;
    o->refresh_ttl_s = 86400;
    o->push_timeout_s = 15;
    o->repush_interval_s = 30;
    o->repush_window_s = 600;
    o->probe_interval_s = -1; /* = repush interval */
    o->blacklist_after = 10;
    o->push_workers = 4;
    o->command_delay_ms = 200;
    o->max_pending = 20;
    o->max_page_size = 1000;
    o->history_max = 1000;
    o->callback_check = true;
    snprintf(o->callback_conflict_code, sizeof o->callback_conflict_code, "100229");
    o->throttle_resultcode = true;
    o->seed = 1;
    o->max_body = SIM_DEFAULT_BODY_MAX;
    o->log_level = 1;
}

bool sim_opts_parse_app(const char *s, struct sim_app_cfg *cfg)
{
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || colon[1] == '\0')
        return false;
    size_t idl = (size_t)(colon - s), sl = strlen(colon + 1);
    if (idl > SIM_APP_ID_MAX || sl > SIM_SECRET_MAX)
        return false;
    for (size_t i = 0; i < idl; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    memcpy(cfg->id, s, idl);
    cfg->id[idl] = '\0';
    memcpy(cfg->secret, colon + 1, sl + 1);
    return true;
}

bool sim_opts_parse_throttle(const char *s, long *calls, long *period)
{
    if (strcmp(s, "0") == 0 || strcmp(s, "off") == 0) {
        *calls = 0;
        *period = 0;
        return true;
    }
    const char *slash = strchr(s, '/');
    char buf[32];
    if (!slash || (size_t)(slash - s) >= sizeof buf)
        return false;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = '\0';
    long c, p;
    if (!sim_parse_long(buf, 0, 1000000, &c) || !sim_parse_long(slash + 1, 1, 86400, &p))
        return false;
    *calls = c;
    *period = c ? p : 0;
    return true;
}

static bool add_app(struct sim_opts *o, const struct sim_app_cfg *a, char *err, size_t errlen)
{
    if (o->napps >= SIM_MAX_APPS) {
        snprintf(err, errlen, "too many apps (max %d)", SIM_MAX_APPS);
        return false;
    }
    for (size_t i = 0; i < o->napps; i++)
        if (strcmp(o->apps[i].id, a->id) == 0) {
            snprintf(err, errlen, "app %s given twice", a->id);
            return false;
        }
    o->apps[o->napps++] = *a;
    return true;
}

/* --config FILE: {"apps":[{"appId":"…","secret":"…"}], "devices": N} */
static bool load_config(struct sim_opts *o, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    bool ok = false;
    cJSON *root = NULL;
    if (sim_read_file(path, 1024 * 1024, &text, NULL) != OCB_OK) {
        snprintf(err, errlen, "--config: cannot read %s", path);
        goto out;
    }
    root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "--config: %s is not a JSON object", path);
        goto out;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "apps") == 0 && cJSON_IsArray(item)) {
            const cJSON *a;
            cJSON_ArrayForEach(a, item)
            {
                const char *id = sim_json_str(a, "appId"), *sec = sim_json_str(a, "secret");
                struct sim_app_cfg cfg;
                char both[SIM_APP_ID_MAX + SIM_SECRET_MAX + 2];
                if (!id || !sec ||
                    snprintf(both, sizeof both, "%s:%s", id, sec) >= (int)sizeof both ||
                    !sim_opts_parse_app(both, &cfg)) {
                    snprintf(err, errlen, "--config: apps[]: need appId and secret strings");
                    goto out;
                }
                if (!add_app(o, &cfg, err, errlen))
                    goto out;
            }
        } else if (strcmp(item->string, "devices") == 0 && cJSON_IsNumber(item) &&
                   item->valuedouble >= 0 && item->valuedouble <= SIM_MAX_DEVICES) {
            o->devices = (long)item->valuedouble;
        } else {
            snprintf(err, errlen, "--config: unknown or invalid key \"%s\"", item->string);
            goto out;
        }
    }
    ok = true;
out:
    cJSON_Delete(root);
    free(text);
    return ok;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return OCB_ERR_INVALID;                                                                    \
    } while (0)

static bool copy_addr(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap || !strchr(src, ':'))
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

enum ocb_err sim_opts_parse(struct sim_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        const char *a = optarg;
        long l;
        switch (c) {
        case O_MAKE_CERTS:
            o->make_certs_dir = a;
            break;
        case O_LISTEN:
            if (!copy_addr(o->listen, sizeof o->listen, a))
                BAD("--listen: expected IP:PORT, got \"%s\"", a);
            break;
        case O_ADMIN:
            if (!copy_addr(o->admin, sizeof o->admin, a))
                BAD("--admin: expected IP:PORT, got \"%s\"", a);
            break;
        case O_CERTS:
            o->certs_dir = a;
            break;
        case O_PLAIN:
            o->plain = true;
            break;
        case O_NO_CLIENT_AUTH:
            o->no_client_auth = true;
            break;
        case O_APP: {
            struct sim_app_cfg cfg;
            if (!sim_opts_parse_app(a, &cfg))
                BAD("--app: expected APPID:SECRET (appId of [A-Za-z0-9_.-]), got \"%s\"", a);
            if (!add_app(o, &cfg, err, errlen))
                return OCB_ERR_INVALID;
            break;
        }
        case O_CONFIG:
            o->config_file = a;
            if (!load_config(o, a, err, errlen))
                return OCB_ERR_INVALID;
            break;
        case O_DEVICES:
            if (!sim_parse_long(a, 0, SIM_MAX_DEVICES, &o->devices))
                BAD("--devices: expected 0..%d, got \"%s\"", SIM_MAX_DEVICES, a);
            break;
        case O_REPORT_INTERVAL:
            if (!sim_parse_double(a, 0, 86400, &o->report_interval_s) ||
                (o->report_interval_s > 0 && o->report_interval_s < 0.05))
                BAD("--report-interval: expected 0 or 0.05..86400 seconds, got \"%s\"", a);
            break;
        case O_THROTTLE:
            if (!sim_opts_parse_throttle(a, &o->throttle_calls, &o->throttle_period_s))
                BAD("--throttle: expected CALLS/SECONDS or 0, got \"%s\"", a);
            break;
        case O_TOKEN_TTL:
            if (!sim_parse_long(a, 1, 100000000, &o->token_ttl_s))
                BAD("--token-ttl: expected seconds >= 1, got \"%s\"", a);
            break;
        case O_REFRESH_TTL:
            if (!sim_parse_long(a, 1, 100000000, &o->refresh_ttl_s))
                BAD("--refresh-ttl: expected seconds >= 1, got \"%s\"", a);
            break;
        case O_PUSH_TIMEOUT:
            if (!sim_parse_double(a, 0.05, 600, &o->push_timeout_s))
                BAD("--push-timeout: expected 0.05..600 seconds, got \"%s\"", a);
            break;
        case O_REPUSH_INTERVAL:
            if (!sim_parse_double(a, 0.05, 86400, &o->repush_interval_s))
                BAD("--repush-interval: expected 0.05..86400 seconds, got \"%s\"", a);
            break;
        case O_REPUSH_WINDOW:
            if (!sim_parse_double(a, 0, 604800, &o->repush_window_s))
                BAD("--repush-window: expected 0..604800 seconds, got \"%s\"", a);
            break;
        case O_PROBE_INTERVAL:
            if (!sim_parse_double(a, 0.05, 86400, &o->probe_interval_s))
                BAD("--probe-interval: expected 0.05..86400 seconds, got \"%s\"", a);
            break;
        case O_BLACKLIST_AFTER:
            if (!sim_parse_long(a, 0, 1000000, &o->blacklist_after))
                BAD("--blacklist-after: expected N >= 0 (0 = never), got \"%s\"", a);
            break;
        case O_REPUSH_ANY:
            o->repush_any_error = true;
            break;
        case O_PUSH_WORKERS:
            if (!sim_parse_long(a, 1, 64, &o->push_workers))
                BAD("--push-workers: expected 1..64, got \"%s\"", a);
            break;
        case O_PUSH_CA:
            o->push_ca = a;
            break;
        case O_PUSH_CERT:
            o->push_cert = a;
            break;
        case O_PUSH_KEY:
            o->push_key = a;
            break;
        case O_PUSH_INSECURE:
            o->push_insecure = true;
            break;
        case O_CMD_DELAY:
            if (!sim_parse_long(a, 0, 3600000, &o->command_delay_ms))
                BAD("--command-delay-ms: expected 0..3600000, got \"%s\"", a);
            break;
        case O_CMD_FAIL:
            if (!sim_parse_double(a, 0, 1, &o->command_fail_rate))
                BAD("--command-fail-rate: expected 0..1, got \"%s\"", a);
            break;
        case O_CMD_TIMEOUT:
            if (!sim_parse_double(a, 0, 1, &o->command_timeout_rate))
                BAD("--command-timeout-rate: expected 0..1, got \"%s\"", a);
            break;
        case O_CMD_MANUAL:
            o->command_manual = true;
            break;
        case O_PUSH_FINAL:
            o->push_final_states = true;
            break;
        case O_MAX_PENDING:
            if (!sim_parse_long(a, 0, 100000, &o->max_pending))
                BAD("--max-pending: expected 0..100000, got \"%s\"", a);
            break;
        case O_MAX_PAGE_SIZE:
            if (!sim_parse_long(a, 1, 1000, &o->max_page_size))
                BAD("--max-page-size: expected 1..1000, got \"%s\"", a);
            break;
        case O_UNKNOWN_404:
            o->unknown_device_404 = true;
            break;
        case O_UNKNOWN_200:
            o->unknown_device_404 = false;
            break;
        case O_NO_CB_CHECK:
            o->callback_check = false;
            break;
        case O_CB_CODE:
            if (!sim_parse_long(a, 0, 999999999, &l))
                BAD("--callback-conflict-code: expected digits, got \"%s\"", a);
            snprintf(o->callback_conflict_code, sizeof o->callback_conflict_code, "%s", a);
            break;
        case O_THROTTLE_SHAPE:
            if (strcmp(a, "resultcode") == 0)
                o->throttle_resultcode = true;
            else if (strcmp(a, "error_code") == 0)
                o->throttle_resultcode = false;
            else
                BAD("--throttle-shape: expected resultcode or error_code, got \"%s\"", a);
            break;
        case O_MIXED_CB:
            o->allow_mixed_callbacks = true;
            break;
        case O_DUP_TYPES:
            o->allow_duplicate_types = true;
            break;
        case O_V11_REPLACE:
            o->v11_subscribe_replaces = true;
            break;
        case O_REFRESH_REVOKES:
            o->refresh_revokes = true;
            break;
        case O_HISTORY_MAX:
            if (!sim_parse_long(a, 0, SIM_HISTORY_MAX, &o->history_max))
                BAD("--history-max: expected 0..%d, got \"%s\"", SIM_HISTORY_MAX, a);
            break;
        case O_GROUP_201:
            o->devgroup_create_201 = true;
            break;
        case O_GROUP_IDS_EMPTY:
            o->devgroup_ids_empty = true;
            break;
        case O_DEVICE_TYPE:
            if (strcasecmp(a, "coap") == 0)
                o->device_kind = SIM_DEV_COAP;
            else if (strcasecmp(a, "mqtt") == 0)
                o->device_kind = SIM_DEV_MQTT;
            else
                BAD("--device-type: expected coap or mqtt, got \"%s\"", a);
            break;
        case O_REPORT_MODE:
            if (strcmp(a, "data") == 0)
                o->report_mode = SIM_REPORT_DATA;
            else if (strcmp(a, "datas") == 0)
                o->report_mode = SIM_REPORT_DATAS;
            else
                BAD("--report-mode: expected data or datas, got \"%s\"", a);
            break;
        case O_FIRST_APP:
            o->devices_first_app = true;
            break;
        case O_SEED: {
            char *end = NULL;
            unsigned long long v = strtoull(a, &end, 10);
            if (!*a || *end)
                BAD("--seed: expected an unsigned integer, got \"%s\"", a);
            o->seed = v;
            break;
        }
        case O_MAX_BODY:
            if (!sim_parse_long(a, 1024, 64L * 1024 * 1024, &l))
                BAD("--max-body: expected 1024..67108864 bytes, got \"%s\"", a);
            o->max_body = (size_t)l;
            break;
        case O_LOG_FILE:
            o->log_file = a;
            break;
        case O_LOG_LEVEL: {
            static const char *lv[] = {"debug", "info", "warn", "error"};
            int found = -1;
            for (int i = 0; i < 4; i++)
                if (strcmp(a, lv[i]) == 0)
                    found = i;
            if (found < 0)
                BAD("--log-level: expected debug|info|warn|error, got \"%s\"", a);
            o->log_level = found;
            break;
        }
        case O_HELP:
            BAD("help");
        default:
            if (optopt >= O_MAKE_CERTS)
                BAD("%s needs a value", argv[optind - 1]);
            BAD("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        BAD("unexpected argument \"%s\"", argv[optind]);
    if (o->make_certs_dir)
        return OCB_OK;
    if (o->napps == 0)
        BAD("at least one --app APPID:SECRET (or --config FILE) is required");
    if (!o->certs_dir && !o->plain)
        BAD("--certs DIR is required unless --plain is given");
    if (o->probe_interval_s < 0)
        o->probe_interval_s = o->repush_interval_s;
    if ((o->push_cert == NULL) != (o->push_key == NULL))
        BAD("--push-cert and --push-key go together");
    if (o->command_fail_rate + o->command_timeout_rate > 1.0)
        BAD("--command-fail-rate plus --command-timeout-rate exceed 1");
    return OCB_OK;
}
