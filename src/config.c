/*
 * config.c: loading and checking the configuration (docs/design.md section 5).
 *
 * The `keys` table below is the whole schema: every scalar key with its type,
 * default and bounds.  Loading runs four passes over that one table:
 * defaults, the JSON file (an unknown key is an error: typos must not pass
 * silently), OCB_* environment overrides (the upper-cased key path, e.g.
 * OCB_MQTT_URL), then cross-key checks.  `${VAR}` and `${VAR:-default}` in file
 * strings are expanded; an unset variable without a default is an error.
 * `apps` is the only array of objects and has its own small parser; it can be
 * replaced whole with OCB_APPS (JSON text) and patched per field with
 * OCB_APPS_<n>_<KEY>.
 *
 * Every message has the form "FILE: key.path: reason".  Pure apart from
 * reading the file, checking that referenced files are readable, and getenv.
 */
#include "ocb/config.h"
#include "ocb/api.h"
#include "ocb/coord.h"
#include "ocb/grammar.h"
#include "ocb/notify.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#include <cjson/cJSON.h>

#define CONFIG_FILE_MAX (1u << 20)

/* Configurations parsed and not yet freed, in the whole process (config_alive()). */
static atomic_uint alive;
#define ID_MAX_LEN 128

enum kind {
    K_STR,    /* char * */
    K_FILE,   /* char *, a path that must be readable when non-empty */
    K_UINT,   /* unsigned */
    K_INT,    /* int */
    K_SIZE,   /* size_t */
    K_BOOL,   /* bool */
    K_LEVEL,  /* enum ocb_log_level */
    K_FORMAT, /* enum ocb_log_format */
    K_CIDRS,  /* http.allow_from */
};

struct key {
    const char *path;
    enum kind kind;
    size_t off;
    const char *def_str;
    long long def_num, min, max;
};

#define OFF(field) offsetof(struct ocb_config, field)
#define STR(p, f, d)                                                                               \
    {                                                                                              \
        p, K_STR, OFF(f), d, 0, 0, 0                                                               \
    }
#define FILEKEY(p, f)                                                                              \
    {                                                                                              \
        p, K_FILE, OFF(f), "", 0, 0, 0                                                             \
    }
#define NUM(p, k, f, d, lo, hi)                                                                    \
    {                                                                                              \
        p, k, OFF(f), NULL, d, lo, hi                                                              \
    }

static const struct key keys[] = {
    STR("http.listen", http.listen, "0.0.0.0:8080"),
    STR("http.public_url", http.public_url, ""),
    FILEKEY("http.tls_cert", http.tls_cert),
    FILEKEY("http.tls_key", http.tls_key),
    FILEKEY("http.tls_client_ca", http.tls_client_ca),
    NUM("http.max_body_bytes", K_SIZE, http.max_body_bytes, 262144, 1024, 16 << 20),
    {"http.allow_from", K_CIDRS, OFF(http.allow_from), NULL, 0, 0, 0},
    NUM("http.threads", K_UINT, http.threads, 4, 1, 64),
    NUM("http.retry_after_s", K_UINT, http.retry_after_s, 5, 1, 3600),

    STR("mqtt.url", mqtt.url, "tcp://127.0.0.1:1883"),
    STR("mqtt.client_id", mqtt.client_id, "ocbridge"),
    NUM("mqtt.version", K_INT, mqtt.version, 5, 4, 5),
    STR("mqtt.username", mqtt.username, ""),
    STR("mqtt.password", mqtt.password, ""),
    FILEKEY("mqtt.ca_file", mqtt.ca_file),
    FILEKEY("mqtt.cert_file", mqtt.cert_file),
    FILEKEY("mqtt.key_file", mqtt.key_file),
    STR("mqtt.topic_prefix", mqtt.topic_prefix, "iot"),
    NUM("mqtt.qos", K_INT, mqtt.qos, 1, 0, 2),
    NUM("mqtt.publish_timeout_ms", K_UINT, mqtt.publish_timeout_ms, 5000, 50, 600000),
    NUM("mqtt.max_inflight", K_UINT, mqtt.max_inflight, 1024, 1, 65535),
    STR("mqtt.shared_group", mqtt.shared_group, ""),
    NUM("mqtt.max_topic_len", K_SIZE, mqtt.max_topic_len, 1024, 16, 65535),
    NUM("mqtt.keepalive_s", K_UINT, mqtt.keepalive_s, 30, 1, 65535),
    NUM("mqtt.session_expiry_s", K_UINT, mqtt.session_expiry_s, 86400, 0, 4294967295LL),
    NUM("mqtt.reconnect_min_ms", K_UINT, mqtt.reconnect_min_ms, 500, 10, 3600000),
    NUM("mqtt.reconnect_max_ms", K_UINT, mqtt.reconnect_max_ms, 30000, 10, 3600000),

    STR("platform.url", platform.url, "https://127.0.0.1:8743"),
    FILEKEY("platform.ca_file", platform.ca_file),
    FILEKEY("platform.cert_file", platform.cert_file),
    FILEKEY("platform.key_file", platform.key_file),
    NUM("platform.verify_hostname", K_BOOL, platform.verify_hostname, 0, 0, 1),
    NUM("platform.rate_limit.calls", K_UINT, platform.rate_calls, 100, 0, 1000000),
    NUM("platform.rate_limit.per_seconds", K_UINT, platform.rate_per_seconds, 60, 1, 86400),
    NUM("platform.manage_subscriptions", K_BOOL, platform.manage_subscriptions, 0, 0, 1),
    NUM("platform.connect_timeout_ms", K_UINT, platform.connect_timeout_ms, 5000, 10, 600000),
    NUM("platform.timeout_ms", K_UINT, platform.timeout_ms, 15000, 10, 600000),
    NUM("platform.max_reply_bytes", K_SIZE, platform.max_reply_bytes, 1 << 20, 1024, 64 << 20),
    NUM("platform.max_queue", K_UINT, platform.max_queue, 1000, 1, 1000000),
    NUM("platform.max_in_flight", K_UINT, platform.max_in_flight, 4, 1, 256),
    NUM("platform.command_deadline_s", K_UINT, platform.command_deadline_s, 120, 1, 172800),
    NUM("platform.max_command_bytes", K_SIZE, platform.max_command_bytes, 65536, 64, 16 << 20),

    STR("spool.mode", spool.mode_name, "outage"),
    NUM("spool.max_bytes", K_SIZE, spool.max_bytes, 1LL << 30, 4096, 1LL << 44),
    NUM("spool.max_age_s", K_UINT, spool.max_age_s, 7 * 86400, 1, 10 * 365 * 86400LL),
    STR("state.dir", state.dir, "/var/lib/ocbridge"),
    NUM("push.dedup_window_s", K_UINT, push.dedup_window_s, 0, 0, 86400),
    STR("coordination.redis_url", coordination.redis_url, ""),
    STR("coordination.replica_id", coordination.replica_id, ""),
    STR("coordination.key_prefix", coordination.key_prefix, "ocb"),
    NUM("coordination.local_rate_share_pct", K_UINT, coordination.local_rate_share_pct, 50, 1, 100),
    NUM("coordination.connect_timeout_ms", K_UINT, coordination.connect_timeout_ms, 500, 10, 60000),
    NUM("coordination.timeout_ms", K_UINT, coordination.timeout_ms, 250, 10, 60000),

    NUM("log.level", K_LEVEL, log.level, OCB_LOG_INFO, 0, 0),
    NUM("log.format", K_FORMAT, log.format, OCB_LOG_TEXT, 0, 0),
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Loading state: the config being built and where errors go. */
struct loader {
    struct ocb_config *cfg;
    const char *name;
    char *err;
    size_t errlen;
};

static enum ocb_err fail(struct loader *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum ocb_err fail(struct loader *ld, const char *path, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(ld->err, ld->errlen, "%s: %s: %s", ld->name, path, reason);
    return OCB_ERR_INVALID;
}

static void *field(struct ocb_config *cfg, const struct key *k)
{
    return (char *)cfg + k->off;
}

static const struct key *find_key(const char *path)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

/* True when some key lives below path (so path names an object). */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.')
            return true;
    return false;
}

static enum ocb_err set_string(struct loader *ld, char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return OCB_ERR_NOMEM;
    free(*slot);
    *slot = copy;
    (void)ld;
    return OCB_OK;
}

/*
 * Expand ${VAR} and ${VAR:-default} in s.  The result is at most 4 KiB; a
 * missing variable without a default is an error naming it.
 */
static enum ocb_err expand(struct loader *ld, const char *path, const char *s, char **out)
{
    char buf[4096];
    size_t o = 0;
    while (*s) {
        if (s[0] == '$' && s[1] == '{') {
            const char *end = strchr(s + 2, '}');
            if (!end)
                return fail(ld, path, "unterminated ${ in \"%s\"", s);
            char name[128];
            size_t n = (size_t)(end - (s + 2));
            if (n == 0 || n >= sizeof(name))
                return fail(ld, path, "bad variable reference");
            memcpy(name, s + 2, n);
            name[n] = '\0';
            const char *def = NULL;
            char *colon = strstr(name, ":-");
            if (colon) {
                *colon = '\0';
                def = colon + 2;
            }
            const char *val = getenv(name);
            if (!val || (def && !*val))
                val = def;
            if (!val)
                return fail(ld, path, "environment variable %s is not set", name);
            size_t vl = strlen(val);
            if (o + vl >= sizeof(buf))
                return fail(ld, path, "value too long after expansion");
            memcpy(buf + o, val, vl);
            o += vl;
            s = end + 1;
        } else {
            if (o + 1 >= sizeof(buf))
                return fail(ld, path, "value too long after expansion");
            buf[o++] = *s++;
        }
    }
    buf[o] = '\0';
    *out = strdup(buf);
    return *out ? OCB_OK : OCB_ERR_NOMEM;
}

static enum ocb_err set_cidrs(struct loader *ld, const char *path, const char *const *items,
                              size_t n)
{
    struct ocb_config *cfg = ld->cfg;
    if (n > OCB_MAX_ALLOW_FROM)
        return fail(ld, path, "at most %d entries", OCB_MAX_ALLOW_FROM);
    for (size_t i = 0; i < n; i++)
        if (grammar_cidr_parse(items[i], &cfg->http.allow_from[i]) != OCB_OK)
            return fail(ld, path, "\"%s\" is not an address or CIDR", items[i]);
    cfg->http.n_allow_from = n;
    return OCB_OK;
}

/* Set a numeric-like key from an integer value, checking its bounds. */
static enum ocb_err set_number(struct loader *ld, const struct key *k, long long v)
{
    void *f = field(ld->cfg, k);
    if (v < k->min || v > k->max)
        return fail(ld, k->path, "must be between %lld and %lld", k->min, k->max);
    switch (k->kind) {
    case K_UINT:
        *(unsigned *)f = (unsigned)v;
        break;
    case K_INT:
        *(int *)f = (int)v;
        break;
    case K_SIZE:
        *(size_t *)f = (size_t)v;
        break;
    case K_BOOL:
        *(bool *)f = v != 0;
        break;
    default:
        break;
    }
    return OCB_OK;
}

/* Set a key from text (environment variables, and string-typed JSON values). */
static enum ocb_err set_from_text(struct loader *ld, const struct key *k, const char *text)
{
    void *f = field(ld->cfg, k);
    switch (k->kind) {
    case K_STR:
    case K_FILE:
        return set_string(ld, (char **)f, text);
    case K_LEVEL:
        if (!log_level_parse(text, (enum ocb_log_level *)f))
            return fail(ld, k->path, "must be one of debug, info, warn, error");
        return OCB_OK;
    case K_FORMAT:
        if (!log_format_parse(text, (enum ocb_log_format *)f))
            return fail(ld, k->path, "must be text or json");
        return OCB_OK;
    case K_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
            return set_number(ld, k, 1);
        if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
            return set_number(ld, k, 0);
        return fail(ld, k->path, "must be true or false");
    case K_CIDRS: {
        /* Comma-separated list; "" clears it. */
        char copy[2048];
        const char *items[OCB_MAX_ALLOW_FROM + 1];
        size_t n = 0;
        if (snprintf(copy, sizeof(copy), "%s", text) >= (int)sizeof(copy))
            return fail(ld, k->path, "list too long");
        char *save = NULL;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            if (n == OCB_MAX_ALLOW_FROM + 1)
                break;
            items[n++] = t;
        }
        return set_cidrs(ld, k->path, items, n);
    }
    default: {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return fail(ld, k->path, "\"%s\" is not an integer", text);
        return set_number(ld, k, v);
    }
    }
}

static enum ocb_err set_from_json(struct loader *ld, const struct key *k, const cJSON *v)
{
    switch (k->kind) {
    case K_STR:
    case K_FILE:
    case K_LEVEL:
    case K_FORMAT: {
        if (!cJSON_IsString(v))
            return fail(ld, k->path, "expected a string");
        char *expanded = NULL;
        enum ocb_err rc = expand(ld, k->path, v->valuestring, &expanded);
        if (rc == OCB_OK)
            rc = set_from_text(ld, k, expanded);
        free(expanded);
        return rc;
    }
    case K_BOOL:
        if (!cJSON_IsBool(v))
            return fail(ld, k->path, "expected true or false");
        return set_number(ld, k, cJSON_IsTrue(v));
    case K_CIDRS: {
        if (!cJSON_IsArray(v))
            return fail(ld, k->path, "expected an array of CIDR strings");
        const char *items[OCB_MAX_ALLOW_FROM + 1];
        size_t n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, v)
        {
            if (!cJSON_IsString(it))
                return fail(ld, k->path, "expected an array of CIDR strings");
            if (n == OCB_MAX_ALLOW_FROM + 1)
                break;
            items[n++] = it->valuestring;
        }
        return set_cidrs(ld, k->path, items, n);
    }
    default:
        if (!cJSON_IsNumber(v))
            return fail(ld, k->path, "expected a number");
        double d = v->valuedouble;
        if (d < -9.2e18 || d > 9.2e18 || d != (double)(long long)d) /* range before the cast */
            return fail(ld, k->path, "expected an integer");
        return set_number(ld, k, (long long)d);
    }
}

/* Reject a JSON object with the same key twice: the later one would silently win. */
static enum ocb_err check_duplicates(struct loader *ld, const char *path, const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return fail(ld, path[0] ? path : "(top level)", "duplicate key \"%s\"", a->string);
    return OCB_OK;
}

static bool valid_token(const char *s)
{
    if (strlen(s) > ID_MAX_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._~", *p))
            return false;
    return true;
}

static enum ocb_err parse_app(struct loader *ld, size_t idx, const cJSON *obj, struct ocb_app *app)
{
    char path[64];

    assert(app != NULL); /* &cfg->apps[idx]; also tells the analyzer so */
    snprintf(path, sizeof(path), "apps[%zu]", idx);
    if (!cJSON_IsObject(obj))
        return fail(ld, path, "expected an object");
    enum ocb_err rc = check_duplicates(ld, path, obj);
    if (rc != OCB_OK)
        return rc;
    for (const cJSON *it = obj->child; it; it = it->next) {
        char kp[128];
        snprintf(kp, sizeof(kp), "%s.%s", path, it->string);
        char **slot = !strcmp(it->string, "app_id")       ? &app->app_id
                      : !strcmp(it->string, "secret")     ? &app->secret
                      : !strcmp(it->string, "push_token") ? &app->push_token
                                                          : NULL;
        if (slot) {
            if (!cJSON_IsString(it))
                return fail(ld, kp, "expected a string");
            char *v = NULL;
            if ((rc = expand(ld, kp, it->valuestring, &v)) != OCB_OK)
                return rc;
            free(*slot);
            *slot = v;
        } else if (!strcmp(it->string, "subscribe")) {
            if (!cJSON_IsArray(it))
                return fail(ld, kp, "expected an array of notifyType strings");
            for (size_t i = 0; i < app->n_subscribe; i++)
                free(app->subscribe[i]);
            app->n_subscribe = 0;
            const cJSON *t;
            cJSON_ArrayForEach(t, it)
            {
                if (!cJSON_IsString(t))
                    return fail(ld, kp, "expected an array of notifyType strings");
                if (app->n_subscribe == OCB_MAX_SUBSCRIBE)
                    return fail(ld, kp, "at most %d types", OCB_MAX_SUBSCRIBE);
                if (!(app->subscribe[app->n_subscribe++] = strdup(t->valuestring)))
                    return OCB_ERR_NOMEM;
            }
        } else if (!strcmp(it->string, "api")) {
            /* A list of op names and the shorthands read, write, all; [] allows none. */
            if (!cJSON_IsArray(it))
                return fail(ld, kp, "expected an array of operation names or read, write, all");
            unsigned ops = 0;
            size_t n = 0;
            const cJSON *t;
            cJSON_ArrayForEach(t, it)
            {
                unsigned bits;
                snprintf(kp, sizeof(kp), "%s.api[%zu]", path, n++);
                if (!cJSON_IsString(t))
                    return fail(ld, kp, "expected an operation name or read, write, all");
                if (!api_ops_word(t->valuestring, &bits))
                    return fail(ld, kp,
                                "\"%.64s\" is no operation (register, get, list, update, delete, "
                                "history, capabilities, shadow, setShadow, groupCreate, groupList, "
                                "groupGet, groupUpdate, groupDelete, groupMembers, groupAdd, "
                                "groupRemove) and none of read, write, all",
                                t->valuestring);
                ops |= bits;
            }
            app->api_ops = ops;
            app->api_given = true;
        } else {
            return fail(ld, kp, "unknown key");
        }
    }
    return OCB_OK;
}

static void app_cleanup(struct ocb_app *app)
{
    free(app->app_id);
    free(app->secret);
    free(app->push_token);
    for (size_t i = 0; i < app->n_subscribe; i++)
        free(app->subscribe[i]);
    memset(app, 0, sizeof(*app));
}

static enum ocb_err parse_apps(struct loader *ld, const cJSON *arr)
{
    struct ocb_config *cfg = ld->cfg;
    if (!cJSON_IsArray(arr))
        return fail(ld, "apps", "expected an array of app objects");
    for (size_t i = 0; i < cfg->n_apps; i++)
        app_cleanup(&cfg->apps[i]);
    cfg->n_apps = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (cfg->n_apps == OCB_MAX_APPS)
            return fail(ld, "apps", "at most %d apps", OCB_MAX_APPS);
        enum ocb_err rc = parse_app(ld, cfg->n_apps, it, &cfg->apps[cfg->n_apps]);
        cfg->n_apps++;
        if (rc != OCB_OK)
            return rc;
    }
    return OCB_OK;
}

/* Walk a JSON object whose keys live under prefix ("" for the top level). */
static enum ocb_err walk(struct loader *ld, const char *prefix, const cJSON *obj)
{
    enum ocb_err rc = check_duplicates(ld, prefix, obj);
    if (rc != OCB_OK)
        return rc;
    for (const cJSON *it = obj->child; it; it = it->next) {
        char path[128];
        if (snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", it->string) >=
            (int)sizeof(path))
            return fail(ld, prefix, "key name too long");
        const struct key *k = find_key(path);
        if (k)
            rc = set_from_json(ld, k, it);
        else if (!prefix[0] && !strcmp(it->string, "apps"))
            rc = parse_apps(ld, it);
        else if (is_section(path))
            rc = cJSON_IsObject(it) ? walk(ld, path, it) : fail(ld, path, "expected an object");
        else
            rc = fail(ld, path, "unknown key");
        if (rc != OCB_OK)
            return rc;
    }
    return OCB_OK;
}

/* OCB_HTTP_LISTEN for "http.listen". */
static void env_name(const char *path, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "OCB_");
    for (const char *p = path; *p && o + 1 < cap; p++)
        out[o++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
}

/* The per-app variables OCB_APPS_<n>_<env> and the apps[] key each one sets. */
static const struct {
    const char *env, *key;
} app_fields[] = {{"APP_ID", "app_id"},
                  {"SECRET", "secret"},
                  {"PUSH_TOKEN", "push_token"},
                  {"SUBSCRIBE", "subscribe"},
                  {"API", "api"}};
#define N_APP_FIELDS (sizeof(app_fields) / sizeof(app_fields[0]))

/* The NAME of an environ entry NAME=VALUE, truncated to fit out. */
static void env_entry_name(const char *entry, char *out, size_t cap)
{
    size_t n = strcspn(entry, "=");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), entry);
}

/* OCB_APPS_<n>_<FIELD> with a FIELD that is none of app_fields is a typo
 * (OCB_APPS_0_SECRT) and must not pass silently. */
static enum ocb_err check_app_env(struct loader *ld)
{
    for (char **e = environ; *e != NULL; e++) {
        const char *p = *e, *field;
        char *end, name[64];
        bool known = false;

        if (strncmp(p, "OCB_APPS_", 9) != 0 || !isdigit((unsigned char)p[9]))
            continue;
        (void)strtoul(p + 9, &end, 10); /* only where the number ends matters */
        if (*end != '_')
            continue;
        field = end + 1;
        for (size_t f = 0; f < N_APP_FIELDS; f++) {
            size_t n = strlen(app_fields[f].env);
            known = known || (strncmp(field, app_fields[f].env, n) == 0 && field[n] == '=');
        }
        if (!known) {
            env_entry_name(p, name, sizeof(name));
            return fail(ld, "apps",
                        "unknown environment variable %s (per-app variables are "
                        "OCB_APPS_<n>_APP_ID, _SECRET, _PUSH_TOKEN, _SUBSCRIBE, _API)",
                        name);
        }
    }
    return OCB_OK;
}

/* OCB_HTTP_*, OCB_MQTT_*, OCB_PLATFORM_*, OCB_LOG_*, OCB_SPOOL_*, OCB_STATE_* and
 * OCB_PUSH_* name keys; one that
 * names none is a typo (OCB_MQTT_URLL) and must not pass silently.  Other
 * OCB_* names stay free for ${VAR} expansion and the scripts' own settings. */
static enum ocb_err check_section_env(struct loader *ld)
{
    static const char *const sections[] = {"OCB_HTTP_", "OCB_MQTT_",        "OCB_PLATFORM_",
                                           "OCB_LOG_",  "OCB_SPOOL_",       "OCB_STATE_",
                                           "OCB_PUSH_", "OCB_COORDINATION_"};

    for (char **e = environ; *e != NULL; e++) {
        size_t n = strcspn(*e, "=");
        bool in_section = false, known = false;
        char name[96];

        for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++)
            in_section = in_section || strncmp(*e, sections[s], strlen(sections[s])) == 0;
        if (!in_section)
            continue;
        for (size_t i = 0; i < N_KEYS && !known; i++) {
            env_name(keys[i].path, name, sizeof(name));
            known = strlen(name) == n && strncmp(*e, name, n) == 0;
        }
        if (!known) {
            env_entry_name(*e, name, sizeof(name));
            return fail(ld, "environment",
                        "%s names no configuration key (OCB_HTTP_*, OCB_MQTT_*, "
                        "OCB_PLATFORM_*, OCB_LOG_*, OCB_SPOOL_*, OCB_STATE_*, OCB_PUSH_* and "
                        "OCB_COORDINATION_* variables must be keys)",
                        name);
        }
    }
    return OCB_OK;
}

/* Apply OCB_APPS_<idx>_<FIELD>=v to apps[idx].  SUBSCRIBE and API take a JSON array
 * or a comma-separated list (notifyTypes; operations); the other fields are plain
 * strings.  An empty API value is the empty list: no operation allowed. */
static enum ocb_err apply_app_env(struct loader *ld, size_t idx, const char *key, const char *name,
                                  const char *v)
{
    cJSON *obj = cJSON_CreateObject(), *val = NULL;
    enum ocb_err rc;

    if (obj == NULL)
        return OCB_ERR_NOMEM;
    if (strcmp(key, "subscribe") != 0 && strcmp(key, "api") != 0) {
        val = cJSON_CreateString(v);
    } else if (v[strspn(v, " \t")] == '[') {
        val = cJSON_Parse(v);
        if (val == NULL) {
            cJSON_Delete(obj);
            return fail(ld, "apps", "%s is not a JSON array", name);
        }
    } else {
        val = cJSON_CreateArray();
        for (const char *p = v; val != NULL && *p != '\0';) {
            size_t n;
            char type[128];
            cJSON *t;

            p += strspn(p, " \t");
            n = strcspn(p, ",");
            while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;

            snprintf(type, sizeof(type), "%.*s", (int)(n < sizeof(type) ? n : sizeof(type) - 1), p);
            if (type[0] != '\0') {
                t = cJSON_CreateString(type);
                if (t == NULL || !cJSON_AddItemToArray(val, t)) {
                    cJSON_Delete(t);
                    cJSON_Delete(val);
                    val = NULL;
                }
            }
            p += strcspn(p, ",");
            if (*p == ',')
                p++;
        }
    }
    if (val == NULL || !cJSON_AddItemToObject(obj, key, val)) {
        cJSON_Delete(val);
        cJSON_Delete(obj);
        return OCB_ERR_NOMEM;
    }
    rc = parse_app(ld, idx, obj, &ld->cfg->apps[idx]);
    cJSON_Delete(obj);
    return rc;
}

static enum ocb_err apply_env(struct loader *ld)
{
    enum ocb_err rc = OCB_OK;
    for (size_t i = 0; i < N_KEYS && rc == OCB_OK; i++) {
        char name[96];
        env_name(keys[i].path, name, sizeof(name));
        const char *v = getenv(name);
        if (v)
            rc = set_from_text(ld, &keys[i], v);
    }
    if (rc != OCB_OK)
        return rc;

    const char *apps = getenv("OCB_APPS");
    if (apps) {
        cJSON *arr = cJSON_Parse(apps);
        if (!arr)
            return fail(ld, "apps", "OCB_APPS is not a JSON array");
        rc = parse_apps(ld, arr);
        cJSON_Delete(arr);
        if (rc != OCB_OK)
            return rc;
    }
    /* Per-field overrides: OCB_APPS_0_SECRET, OCB_APPS_1_SUBSCRIBE, ... Each is
     * fed to parse_app() as a one-key object, so it is checked like the file. */
    for (size_t a = 0; a < OCB_MAX_APPS; a++) {
        for (size_t f = 0; f < N_APP_FIELDS; f++) {
            char name[64];
            snprintf(name, sizeof(name), "OCB_APPS_%zu_%s", a, app_fields[f].env);
            const char *v = getenv(name);
            if (!v)
                continue;
            if (a > ld->cfg->n_apps)
                return fail(ld, "apps", "%s skips an app index", name);
            if ((rc = apply_app_env(ld, a, app_fields[f].key, name, v)) != OCB_OK)
                return rc;
            if (a == ld->cfg->n_apps)
                ld->cfg->n_apps++;
        }
    }
    /* Misspelt variables must not pass silently. */
    if ((rc = check_section_env(ld)) != OCB_OK)
        return rc;
    return check_app_env(ld);
}

static enum ocb_err check_file(struct loader *ld, const char *path, const char *file)
{
    if (file && file[0] && access(file, R_OK) != 0) {
        char msg[128] = "unreadable";
        if (strerror_r(errno, msg, sizeof(msg)) != 0)
            snprintf(msg, sizeof(msg), "unreadable");
        return fail(ld, path, "cannot read \"%s\": %s", file, msg);
    }
    return OCB_OK;
}

static enum ocb_err check_pair(struct loader *ld, const char *a_path, const char *a,
                               const char *b_path, const char *b)
{
    if (!a[0] != !b[0])
        return fail(ld, a[0] ? b_path : a_path, "must be set together with %s",
                    a[0] ? a_path : b_path);
    return OCB_OK;
}

static enum ocb_err check(struct loader *ld)
{
    struct ocb_config *cfg = ld->cfg;
    enum ocb_err rc;
    struct ocb_endpoint listen;
    struct ocb_url url;
    const char *why;

    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].kind == K_FILE &&
            (rc = check_file(ld, keys[i].path, *(char **)field(cfg, &keys[i]))) != OCB_OK)
            return rc;
    if (grammar_endpoint_parse(cfg->http.listen, false, &listen) != OCB_OK)
        return fail(ld, "http.listen", "expected HOST:PORT with a port in 1..65535");
    if ((rc = check_pair(ld, "http.tls_cert", cfg->http.tls_cert, "http.tls_key",
                         cfg->http.tls_key)) != OCB_OK)
        return rc;
    if (cfg->http.tls_client_ca[0] && !cfg->http.tls_cert[0])
        return fail(ld, "http.tls_client_ca", "needs http.tls_cert and http.tls_key");
    if (cfg->http.public_url[0] &&
        grammar_url_parse(cfg->http.public_url, OCB_URL_SCHEMES_HTTP, false, &url) != OCB_OK)
        return fail(ld, "http.public_url",
                    "expected http(s)://HOST:PORT[/path] with an explicit port "
                    "(the platform rejects callback URLs without one)");
    if (grammar_url_parse(cfg->mqtt.url, OCB_URL_SCHEMES_MQTT, false, &url) != OCB_OK)
        return fail(ld, "mqtt.url", "expected tcp://, ssl://, ws:// or wss:// HOST:PORT");
    if (!cfg->mqtt.client_id[0] || strlen(cfg->mqtt.client_id) > 64)
        return fail(ld, "mqtt.client_id", "must be 1..64 characters");
    if ((rc = check_pair(ld, "mqtt.cert_file", cfg->mqtt.cert_file, "mqtt.key_file",
                         cfg->mqtt.key_file)) != OCB_OK)
        return rc;
    /* The prefix may span levels ("site/iot") but each level must be valid. */
    if ((why = grammar_topic_prefix_problem(cfg->mqtt.topic_prefix, 128)) != NULL)
        return fail(ld, "mqtt.topic_prefix", "must be 1..128 bytes of topic levels: %s", why);
    if (cfg->mqtt.shared_group[0] &&
        ((why = grammar_level_problem(cfg->mqtt.shared_group, strlen(cfg->mqtt.shared_group))) ||
         (why = strlen(cfg->mqtt.shared_group) > 64 ? "is over 64 bytes" : NULL)))
        return fail(ld, "mqtt.shared_group", "must be one topic level: %s", why);
    if (cfg->mqtt.reconnect_min_ms > cfg->mqtt.reconnect_max_ms)
        return fail(ld, "mqtt.reconnect_min_ms", "must not exceed mqtt.reconnect_max_ms");
    if (!strcmp(cfg->spool.mode_name, "outage"))
        cfg->spool.mode = OCB_SPOOL_OUTAGE;
    else if (!strcmp(cfg->spool.mode_name, "always"))
        cfg->spool.mode = OCB_SPOOL_ALWAYS;
    else if (!strcmp(cfg->spool.mode_name, "off"))
        cfg->spool.mode = OCB_SPOOL_OFF;
    else
        return fail(ld, "spool.mode", "must be one of outage, always, off");
    if (!cfg->state.dir[0])
        return fail(ld, "state.dir", "must not be empty");
    if (grammar_url_parse(cfg->platform.url, OCB_URL_SCHEMES_HTTP, true, &url) != OCB_OK)
        return fail(ld, "platform.url", "expected https://HOST:PORT");
    if ((rc = check_pair(ld, "platform.cert_file", cfg->platform.cert_file, "platform.key_file",
                         cfg->platform.key_file)) != OCB_OK)
        return rc;

    if (cfg->coordination.redis_url[0]) {
        struct ocb_coord_url cu;
        char cwhy[160];
        if (coord_url_parse(cfg->coordination.redis_url, &cu, cwhy, sizeof(cwhy)) != OCB_OK)
            return fail(ld, "coordination.redis_url", "%s", cwhy);
    }
    if (strlen(cfg->coordination.replica_id) >= OCB_COORD_REPLICA_MAX - 16 ||
        (cfg->coordination.replica_id[0] &&
         (why = grammar_level_problem(cfg->coordination.replica_id,
                                      strlen(cfg->coordination.replica_id))) != NULL))
        return fail(ld, "coordination.replica_id", "must be one topic level of up to %d bytes%s%s",
                    OCB_COORD_REPLICA_MAX - 17, why != NULL ? ": " : "", why != NULL ? why : "");
    if (!cfg->coordination.key_prefix[0] || strlen(cfg->coordination.key_prefix) > 64 ||
        strpbrk(cfg->coordination.key_prefix, "{} \t\r\n"))
        return fail(ld, "coordination.key_prefix", "must be 1..64 bytes without braces or spaces");

    for (size_t i = 0; i < cfg->n_apps; i++) {
        struct ocb_app *app = &cfg->apps[i];
        char path[64];
        snprintf(path, sizeof(path), "apps[%zu].app_id", i);
        /* Fields absent from the file read as "". */
        char **slots[] = {&app->app_id, &app->secret, &app->push_token};
        for (size_t s = 0; s < 3; s++)
            if (!*slots[s] && (rc = set_string(ld, slots[s], "")) != OCB_OK)
                return rc;
        if (!app->app_id[0])
            return fail(ld, path, "is required");
        /* The app id is a topic level of every push: the rule routing applies. */
        if ((why = grammar_level_problem(app->app_id, strlen(app->app_id))) != NULL ||
            (why = strlen(app->app_id) > ID_MAX_LEN ? "is too long" : NULL) != NULL ||
            (why = !strcmp(app->app_id, "_") ? "is \"_\", the placeholder for no device" : NULL))
            return fail(ld, path, "must be a topic level of 1..%d bytes: %s", ID_MAX_LEN, why);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->apps[j].app_id, app->app_id))
                return fail(ld, path, "\"%s\" appears twice", app->app_id);
        if (!valid_token(app->push_token)) {
            snprintf(path, sizeof(path), "apps[%zu].push_token", i);
            return fail(ld, path, "must be up to %d characters of A-Z a-z 0-9 - . _ ~", ID_MAX_LEN);
        }
        if (!app->api_given)
            app->api_ops = OCB_API_READ_OPS;
        for (size_t s = 0; s < app->n_subscribe; s++) {
            snprintf(path, sizeof(path), "apps[%zu].subscribe[%zu]", i, s);
            if (notify_type_api(app->subscribe[s]) == OCB_NOTIFY_UNKNOWN)
                return fail(ld, path, "\"%s\" is not a notifyType the platform knows",
                            app->subscribe[s]);
            for (size_t t = 0; t < s; t++)
                if (!strcmp(app->subscribe[t], app->subscribe[s]))
                    return fail(ld, path, "\"%s\" appears twice", app->subscribe[s]);
        }
    }

    /* The public URL defaults to the listen address, so callbacks work on one machine; a
     * wildcard listener (0.0.0.0, *, [::]) is reached at 127.0.0.1. */
    if (!cfg->http.public_url[0]) {
        char buf[300];
        const char *scheme = cfg->http.tls_cert[0] ? "https" : "http";
        if (grammar_endpoint_is_wildcard(&listen))
            snprintf(buf, sizeof(buf), "%s://127.0.0.1:%u", scheme, (unsigned)listen.port);
        else
            snprintf(buf, sizeof(buf), "%s://%s", scheme, cfg->http.listen);
        if ((rc = set_string(ld, &cfg->http.public_url, buf)) != OCB_OK)
            return rc;
    }
    size_t n = strlen(cfg->http.public_url);
    while (n > 0 && cfg->http.public_url[n - 1] == '/')
        cfg->http.public_url[--n] = '\0';
    return OCB_OK;
}

static enum ocb_err defaults(struct loader *ld)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        enum ocb_err rc = OCB_OK;
        if (k->kind == K_STR || k->kind == K_FILE)
            rc = set_string(ld, (char **)field(ld->cfg, k), k->def_str);
        else if (k->kind == K_LEVEL)
            ld->cfg->log.level = (enum ocb_log_level)k->def_num;
        else if (k->kind == K_FORMAT)
            ld->cfg->log.format = (enum ocb_log_format)k->def_num;
        else if (k->kind != K_CIDRS)
            rc = set_number(ld, k, k->def_num);
        if (rc != OCB_OK)
            return rc;
    }
    return OCB_OK;
}

enum ocb_err config_parse(const char *name, const char *json, size_t len, struct ocb_config **out,
                          char *err, size_t errlen)
{
    struct ocb_config *cfg = calloc(1, sizeof(*cfg));
    struct loader ld = {.cfg = cfg, .name = name, .err = err, .errlen = errlen};
    cJSON *root = NULL;
    enum ocb_err rc = OCB_ERR_NOMEM;
    if (!cfg)
        goto out;
    atomic_init(&cfg->refs, 1);
    atomic_fetch_add_explicit(&alive, 1, memory_order_relaxed);
    if (!(cfg->path = strdup(name)))
        goto out;
    if ((rc = defaults(&ld)) != OCB_OK)
        goto out;
    if (json) {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(json, len, &end, false);
        if (!root) {
            unsigned line = 1;
            for (const char *c = json; end && c < end && c < json + len; c++)
                line += *c == '\n';
            rc = fail(&ld, "(top level)", "invalid JSON near line %u", line);
            goto out;
        }
        if (!cJSON_IsObject(root)) {
            rc = fail(&ld, "(top level)", "expected a JSON object");
            goto out;
        }
        if ((rc = walk(&ld, "", root)) != OCB_OK)
            goto out;
    }
    if ((rc = apply_env(&ld)) != OCB_OK)
        goto out;
    rc = check(&ld);
out:
    cJSON_Delete(root);
    if (rc != OCB_OK) {
        if (rc == OCB_ERR_NOMEM)
            snprintf(err, errlen, "%s: out of memory", name);
        config_free(cfg);
        cfg = NULL;
    }
    *out = cfg;
    return rc;
}

enum ocb_err config_load(const char *path, struct ocb_config **out, char *err, size_t errlen)
{
    if (!path)
        return config_parse("(defaults)", NULL, 0, out, err, errlen);
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        char msg[128] = "cannot open";
        if (strerror_r(errno, msg, sizeof(msg)) != 0)
            snprintf(msg, sizeof(msg), "cannot open");
        snprintf(err, errlen, "%s: (file): %s", path, msg);
        return OCB_ERR_IO;
    }
    /* A buffer the size of the file (one byte more, to see it end), grown
     * up to the cap for files whose size is unknown: a reload should not
     * cost a megabyte of heap for a file of a few hundred bytes. */
    struct stat st;
    size_t cap = 4096, n = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0)
        cap = (uint64_t)st.st_size < CONFIG_FILE_MAX ? (size_t)st.st_size + 1 : CONFIG_FILE_MAX + 1;
    char *buf = malloc(cap);
    bool nomem = !buf;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap == CONFIG_FILE_MAX + 1)
            break; /* the end, an error, or over the cap */
        size_t bigger = cap > CONFIG_FILE_MAX / 2 ? CONFIG_FILE_MAX + 1 : cap * 2;
        char *nb = realloc(buf, bigger);
        if (!nb) {
            nomem = true;
            break;
        }
        buf = nb;
        cap = bigger;
    }
    bool read_error = ferror(f);
    fclose(f);
    if (nomem) {
        free(buf);
        return OCB_ERR_NOMEM;
    }
    enum ocb_err rc;
    if (read_error) {
        snprintf(err, errlen, "%s: (file): read error", path);
        rc = OCB_ERR_IO;
    } else if (n > CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: (file): larger than %u bytes", path, CONFIG_FILE_MAX);
        rc = OCB_ERR_TOO_BIG;
    } else {
        rc = config_parse(path, buf, n, out, err, errlen);
    }
    free(buf);
    return rc;
}

unsigned config_alive(void)
{
    return atomic_load_explicit(&alive, memory_order_relaxed);
}

const struct ocb_config *config_ref(const struct ocb_config *cfg)
{
    /* The count is the one mutable field of an otherwise immutable object,
     * which was allocated writable: casting const away is sound here.
     * Relaxed: the caller already holds a reference, so nothing is published. */
    atomic_fetch_add_explicit(&((struct ocb_config *)cfg)->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_copy_shallow(struct ocb_config *dst, const struct ocb_config *src)
{
    /* refs is the first field; everything after it is immutable once shared. */
    static_assert(offsetof(struct ocb_config, refs) == 0, "refs must lead struct ocb_config");
    const size_t from = offsetof(struct ocb_config, path);
    memcpy((char *)dst + from, (const char *)src + from, sizeof(*dst) - from);
    atomic_init(&dst->refs, 1);
}

static void destroy(struct ocb_config *cfg);

void config_unref(const struct ocb_config *cfg)
{
    struct ocb_config *c = (struct ocb_config *)cfg;

    if (!c)
        return;
    /* acq_rel: every thread's reads of the configuration happen before its
     * drop, and the drop of the last reference before the free. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        destroy(c);
}

void config_free(struct ocb_config *cfg)
{
    config_unref(cfg);
}

static void destroy(struct ocb_config *cfg)
{
    atomic_fetch_sub_explicit(&alive, 1, memory_order_relaxed);
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].kind == K_STR || keys[i].kind == K_FILE)
            free(*(char **)field(cfg, &keys[i]));
    for (size_t i = 0; i < cfg->n_apps; i++)
        app_cleanup(&cfg->apps[i]);
    free(cfg->path);
    free(cfg);
}

const struct ocb_app *config_find_app(const struct ocb_config *cfg, const char *app_id)
{
    for (size_t i = 0; i < cfg->n_apps; i++)
        if (!strcmp(cfg->apps[i].app_id, app_id))
            return &cfg->apps[i];
    return NULL;
}

bool config_commands_enabled(const struct ocb_config *cfg)
{
    for (size_t i = 0; i < cfg->n_apps; i++)
        if (cfg->apps[i].secret && cfg->apps[i].secret[0])
            return true;
    return false;
}

/* Keys a reload (SIGHUP) may change in a running bridge.  Everything else —
 * listeners, certificates, the broker and the platform connection — is bound
 * to sockets and sessions made at start-up, so a reload keeps the running
 * value and says so.  apps[] is reloadable as a whole. */
static const char *const reloadable_keys[] = {
    "http.max_body_bytes", "http.allow_from", "http.retry_after_s", "log.level", "log.format",
};

static bool is_reloadable(const char *path)
{
    for (size_t i = 0; i < sizeof(reloadable_keys) / sizeof(reloadable_keys[0]); i++)
        if (!strcmp(path, reloadable_keys[i]))
            return true;
    return false;
}

static size_t key_size(enum kind kind)
{
    switch (kind) {
    case K_UINT:
        return sizeof(unsigned);
    case K_INT:
        return sizeof(int);
    case K_SIZE:
        return sizeof(size_t);
    case K_BOOL:
        return sizeof(bool);
    case K_LEVEL:
        return sizeof(enum ocb_log_level);
    case K_FORMAT:
        return sizeof(enum ocb_log_format);
    default:
        return 0;
    }
}

enum ocb_err config_reload_merge(struct ocb_config *next, const struct ocb_config *running,
                                 char *kept, size_t cap)
{
    size_t o = 0;
    if (cap)
        kept[0] = '\0';
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (is_reloadable(k->path))
            continue;
        void *nf = field(next, k);
        const void *rf = (const char *)running + k->off;
        bool differ;
        if (k->kind == K_STR || k->kind == K_FILE) {
            differ = strcmp(*(char **)nf, *(char *const *)rf) != 0;
            if (differ) {
                char *copy = strdup(*(char *const *)rf);
                if (!copy)
                    return OCB_ERR_NOMEM;
                free(*(char **)nf);
                *(char **)nf = copy;
            }
        } else {
            differ = memcmp(nf, rf, key_size(k->kind)) != 0;
            memcpy(nf, rf, key_size(k->kind));
        }
        if (differ && o < cap) {
            int n = snprintf(kept + o, cap - o, "%s%s", o ? ", " : "", k->path);
            o = n < 0 ? o : (size_t)n >= cap - o ? cap - 1 : o + (size_t)n;
        }
    }
    /* Parsed from spool.mode, which was just kept. */
    next->spool.mode = running->spool.mode;
    return OCB_OK;
}

/* apps[N].app_id, .push_token, .subscribe and .api (comma-separated) and .secret, which
 * prints only whether it is set: secrets never leave the process. */
static enum ocb_err format_app_key(const struct ocb_config *cfg, const char *path, char *out,
                                   size_t cap)
{
    size_t o = 0;
    int used = 0, n;
    char field[16], *end = NULL;

    /* strtoull, not sscanf's %zu: an out-of-range index must fail, not overflow. */
    errno = 0;
    unsigned long long idx = strncmp(path, "apps[", 5) == 0 && isdigit((unsigned char)path[5])
                                 ? strtoull(path + 5, &end, 10)
                                 : ULLONG_MAX;
    if (!end || errno != 0 || sscanf(end, "].%15[a-z_]%n", field, &used) != 1 ||
        end[used] != '\0' || idx >= cfg->n_apps)
        return OCB_ERR_NOT_FOUND;
    const struct ocb_app *app = &cfg->apps[idx];
    if (!strcmp(field, "app_id"))
        n = snprintf(out, cap, "%s", app->app_id);
    else if (!strcmp(field, "push_token"))
        n = snprintf(out, cap, "%s", app->push_token ? app->push_token : "");
    else if (!strcmp(field, "secret"))
        n = snprintf(out, cap, "%s", app->secret && app->secret[0] ? "(set)" : "(not set)");
    else if (!strcmp(field, "subscribe")) {
        out[0] = '\0';
        for (size_t i = 0; i < app->n_subscribe && o < cap; i++) {
            n = snprintf(out + o, cap - o, "%s%s", i ? "," : "", app->subscribe[i]);
            if (n < 0)
                break;
            o += (size_t)n;
        }
        n = (int)o;
    } else if (!strcmp(field, "api")) {
        /* The allowed operations, resolved: shorthands print as the ops they mean. */
        out[0] = '\0';
        for (unsigned op = 0; op < OCB_API_N_OPS && o < cap; op++) {
            if (!(app->api_ops & OCB_API_OP_BIT(op)))
                continue;
            n = snprintf(out + o, cap - o, "%s%s", o ? "," : "", api_op_name((enum ocb_api_op)op));
            if (n < 0)
                break;
            o += (size_t)n;
        }
        n = (int)o;
    } else
        return OCB_ERR_NOT_FOUND;
    return n < 0 || (size_t)n >= cap ? OCB_ERR_TOO_BIG : OCB_OK;
}

enum ocb_err config_format_key(const struct ocb_config *cfg, const char *path, char *out,
                               size_t cap)
{
    const struct key *k = find_key(path);
    if (!k)
        return format_app_key(cfg, path, out, cap);
    const void *f = (const char *)cfg + k->off;
    int n = 0;
    switch (k->kind) {
    case K_STR:
    case K_FILE:
        n = snprintf(out, cap, "%s", *(char *const *)f);
        break;
    case K_UINT:
        n = snprintf(out, cap, "%u", *(const unsigned *)f);
        break;
    case K_INT:
        n = snprintf(out, cap, "%d", *(const int *)f);
        break;
    case K_SIZE:
        n = snprintf(out, cap, "%zu", *(const size_t *)f);
        break;
    case K_BOOL:
        n = snprintf(out, cap, "%s", *(const bool *)f ? "true" : "false");
        break;
    case K_LEVEL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        n = snprintf(out, cap, "%s", names[cfg->log.level]);
        break;
    }
    case K_FORMAT:
        n = snprintf(out, cap, "%s", cfg->log.format == OCB_LOG_JSON ? "json" : "text");
        break;
    case K_CIDRS: {
        size_t o = 0;
        out[0] = '\0';
        for (size_t i = 0; i < cfg->http.n_allow_from && o < cap; i++) {
            char cidr[64] = "";
            (void)grammar_cidr_format(&cfg->http.allow_from[i], cidr, sizeof(cidr));
            n = snprintf(out + o, cap - o, "%s%s", i ? "," : "", cidr);
            if (n < 0 || (size_t)n >= cap - o)
                return OCB_ERR_TOO_BIG;
            o += (size_t)n;
        }
        return OCB_OK;
    }
    }
    return n < 0 || (size_t)n >= cap ? OCB_ERR_TOO_BIG : OCB_OK;
}
