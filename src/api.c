/*
 * api.c: device API requests from MQTT in, platform calls out (api.h).
 *
 * Every operation is one row of `ops`: its name, whether it names a device
 * (topic level) or none ("_"), the platform method and path, how it may be
 * retried, and its parameters as a table of fields.  A field says where it
 * goes (query, body or a path segment), its JSON type and its bounds.  One
 * generic loop validates a request against its row and builds the call, so
 * adding an operation is adding a row, and the fuzz target can check every
 * operation with the same invariants.
 *
 * Validation is as strict as command.c's and for the same reason: an unknown
 * key is a typo that would otherwise be dropped silently, so it is
 * INVALID_PAYLOAD.  Bounds follow the platform's documented ones (the
 * simulator's Device API table) so that a request we accept is one the
 * platform accepts; where the platform is vaguer we are not stricter than
 * it is documented to be.
 *
 * The app's allowed set is checked right after the op is known and before
 * any parameter: a refused op says nothing about its parameters and never
 * yields a call.
 *
 * Pure: no I/O, no locks.  Every cJSON tree is freed before returning.
 */
#include "ocb/api.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/reconcile.h"

#define INT32_TOP   2147483647LL
#define PAGE_NO_MAX 1000000LL
#define ID_MAX      128

/* Where a field goes in the call. */
enum where { W_QUERY, W_BODY, W_PATH };

/* What a field holds. */
enum kind {
    F_STR,    /* string of lo..hi bytes */
    F_NAME,   /* string of lo..hi characters (UTF-8 code points) */
    F_HEX,    /* string of lo..hi hex digits */
    F_TIME,   /* "yyyyMMddTHHmmssZ" */
    F_INT,    /* integer lo..hi */
    F_BOOL,   /* true/false; in a query "true"/"false" */
    F_SORT,   /* "ASC" or "DESC" */
    F_MUTE,   /* "TRUE" or "FALSE" */
    F_IDS,    /* array of lo..hi device ids (strings of 1..ID_MAX bytes), no repeats */
    F_SHADOW, /* serviceDesireds: array of 1..OCB_API_SHADOW_MAX {serviceId, desired{}} */
};

struct field {
    const char *key; /* in the MQTT request */
    const char *out; /* in the platform call; NULL = key */
    enum where where;
    enum kind kind;
    long long lo, hi;
    bool required;
};

struct opdef {
    const char *name;
    bool device; /* the topic names a device; else "_" */
    bool read;
    enum ocb_api_retry retry;
    const char *method;
    const char *base;         /* the path before the device / path fields */
    bool device_in_path;      /* base/<deviceId> */
    const char *device_query; /* the device goes in the query under this name */
    bool gateway_default;     /* gatewayId defaults to the deviceId (history) */
    bool need_one;            /* at least one body field (modify-style PUTs) */
    const char *reconcile;    /* RETRY_RECONCILE: the field the scan matches */
    const struct field *fields;
};

#define DM_DEVICES "/iocm/app/dm/v1.4.0/devices"
#define DEVGROUPS  "/iocm/app/devgroup/v1.3.0/devGroups"
#define SHADOW     "/iocm/app/shadow/v1.5.0/devices"

#define PAGE_NO                                                                                    \
    {                                                                                              \
        "pageNo", NULL, W_QUERY, F_INT, 0, PAGE_NO_MAX, false                                      \
    }
#define PAGE_SIZE(max)                                                                             \
    {                                                                                              \
        "pageSize", NULL, W_QUERY, F_INT, 1, (max), false                                          \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, NULL, W_QUERY, F_STR, 0, 0, false                                                    \
    }

static const struct field f_none[] = {END};
static const struct field f_register[] = {
    {"nodeId", NULL, W_BODY, F_STR, 1, 64, true},
    {"verifyCode", NULL, W_BODY, F_STR, 1, 64, false},
    {"psk", NULL, W_BODY, F_HEX, 8, 32, false},
    {"timeout", NULL, W_BODY, F_INT, 0, INT32_TOP, false},
    {"endUserId", NULL, W_BODY, F_STR, 1, 256, false},
    {"deviceName", NULL, W_BODY, F_STR, 1, 256, false},
    END,
};
static const struct field f_list[] = {
    {"gatewayId", NULL, W_QUERY, F_STR, 1, ID_MAX, false},
    {"nodeType", NULL, W_QUERY, F_STR, 1, 32, false},
    {"deviceType", NULL, W_QUERY, F_STR, 1, 256, false},
    {"status", NULL, W_QUERY, F_STR, 1, 32, false},
    {"startTime", NULL, W_QUERY, F_TIME, 0, 0, false},
    {"endTime", NULL, W_QUERY, F_TIME, 0, 0, false},
    {"sort", NULL, W_QUERY, F_SORT, 0, 0, false},
    PAGE_NO,
    PAGE_SIZE(250),
    END,
};
static const struct field f_update[] = {
    {"name", NULL, W_BODY, F_STR, 0, 256, false},
    {"endUser", NULL, W_BODY, F_STR, 0, 256, false},
    {"mute", NULL, W_BODY, F_MUTE, 0, 0, false},
    {"manufacturerId", NULL, W_BODY, F_STR, 0, 256, false},
    {"manufacturerName", NULL, W_BODY, F_STR, 0, 256, false},
    {"deviceType", NULL, W_BODY, F_STR, 0, 256, false},
    {"model", NULL, W_BODY, F_STR, 0, 256, false},
    {"location", NULL, W_BODY, F_STR, 0, 256, false},
    {"protocolType", NULL, W_BODY, F_STR, 0, 256, false},
    {"region", NULL, W_BODY, F_STR, 0, 256, false},
    {"organization", NULL, W_BODY, F_STR, 0, 256, false},
    {"timezone", NULL, W_BODY, F_STR, 0, 256, false},
    {"imsi", NULL, W_BODY, F_STR, 0, 256, false},
    END,
};
static const struct field f_delete[] = {
    {"cascade", NULL, W_QUERY, F_BOOL, 0, 0, false},
    END,
};
static const struct field f_history[] = {
    {"gatewayId", NULL, W_QUERY, F_STR, 1, ID_MAX, false},
    {"serviceId", NULL, W_QUERY, F_STR, 1, 64, false},
    {"property", NULL, W_QUERY, F_STR, 1, 128, false},
    {"startTime", NULL, W_QUERY, F_TIME, 0, 0, false},
    {"endTime", NULL, W_QUERY, F_TIME, 0, 0, false},
    PAGE_NO,
    PAGE_SIZE(2000),
    END,
};
static const struct field f_capabilities[] = {
    {"gatewayId", NULL, W_QUERY, F_STR, 1, ID_MAX, false},
    END,
};
static const struct field f_set_shadow[] = {
    {"serviceDesireds", NULL, W_BODY, F_SHADOW, 1, OCB_API_SHADOW_MAX, true},
    END,
};
static const struct field f_group_create[] = {
    {"name", NULL, W_BODY, F_NAME, 1, 50, true},
    {"description", NULL, W_BODY, F_STR, 0, 1024, false},
    {"maxDevNum", NULL, W_BODY, F_INT, 0, INT32_TOP, false},
    {"deviceIds", NULL, W_BODY, F_IDS, 0, OCB_API_IDS_MAX, false},
    END,
};
static const struct field f_group_list[] = {
    {"name", NULL, W_QUERY, F_NAME, 1, 50, false},
    PAGE_NO,
    PAGE_SIZE(1000),
    END,
};
static const struct field f_group_id[] = {
    {"groupId", NULL, W_PATH, F_STR, 1, ID_MAX, true},
    END,
};
static const struct field f_group_update[] = {
    {"groupId", NULL, W_PATH, F_STR, 1, ID_MAX, true},
    {"name", NULL, W_BODY, F_NAME, 1, 50, false},
    {"description", NULL, W_BODY, F_STR, 0, 1024, false},
    {"maxDevNum", NULL, W_BODY, F_INT, 0, INT32_TOP, false},
    END,
};
static const struct field f_group_members[] = {
    {"groupId", "devGroupId", W_QUERY, F_STR, 1, ID_MAX, true},
    PAGE_NO,
    PAGE_SIZE(1000),
    END,
};
static const struct field f_group_tag[] = {
    {"groupId", "devGroupId", W_BODY, F_STR, 1, ID_MAX, true},
    {"deviceIds", NULL, W_BODY, F_IDS, 1, OCB_API_IDS_MAX, true},
    END,
};

/* Indexed by enum ocb_api_op. */
static const struct opdef ops[OCB_API_N_OPS] = {
    [OCB_API_REGISTER] = {"register", false, false, OCB_API_RETRY_RECONCILE, "POST",
                          "/iocm/app/reg/v1.1.0/deviceCredentials", false, NULL, false, false,
                          "nodeId", f_register},
    [OCB_API_GET] = {"get", true, true, OCB_API_RETRY_READ, "GET", DM_DEVICES, true, NULL, false,
                     false, NULL, f_none},
    [OCB_API_LIST] = {"list", false, true, OCB_API_RETRY_READ, "GET", DM_DEVICES, false, NULL,
                      false, false, NULL, f_list},
    [OCB_API_UPDATE] = {"update", true, false, OCB_API_RETRY_IDEMPOTENT, "PUT", DM_DEVICES, true,
                        NULL, false, true, NULL, f_update},
    [OCB_API_DELETE] = {"delete", true, false, OCB_API_RETRY_DELETE, "DELETE", DM_DEVICES, true,
                        NULL, false, false, NULL, f_delete},
    [OCB_API_HISTORY] = {"history", true, true, OCB_API_RETRY_READ, "GET",
                         "/iocm/app/data/v1.2.0/deviceDataHistory", false, "deviceId", true, false,
                         NULL, f_history},
    [OCB_API_CAPABILITIES] = {"capabilities", true, true, OCB_API_RETRY_READ, "GET",
                              "/iocm/app/data/v1.1.0/deviceCapabilities", false, "deviceId", false,
                              false, NULL, f_capabilities},
    [OCB_API_SHADOW] = {"shadow", true, true, OCB_API_RETRY_READ, "GET", SHADOW, true, NULL, false,
                        false, NULL, f_none},
    [OCB_API_SET_SHADOW] = {"setShadow", true, false, OCB_API_RETRY_IDEMPOTENT, "PUT", SHADOW, true,
                            NULL, false, false, NULL, f_set_shadow},
    [OCB_API_GROUP_CREATE] = {"groupCreate", false, false, OCB_API_RETRY_RECONCILE, "POST",
                              DEVGROUPS, false, NULL, false, false, "name", f_group_create},
    [OCB_API_GROUP_LIST] = {"groupList", false, true, OCB_API_RETRY_READ, "GET", DEVGROUPS, false,
                            NULL, false, false, NULL, f_group_list},
    [OCB_API_GROUP_GET] = {"groupGet", false, true, OCB_API_RETRY_READ, "GET", DEVGROUPS, false,
                           NULL, false, false, NULL, f_group_id},
    [OCB_API_GROUP_UPDATE] = {"groupUpdate", false, false, OCB_API_RETRY_IDEMPOTENT, "PUT",
                              DEVGROUPS, false, NULL, false, true, NULL, f_group_update},
    [OCB_API_GROUP_DELETE] = {"groupDelete", false, false, OCB_API_RETRY_DELETE, "DELETE",
                              DEVGROUPS, false, NULL, false, false, NULL, f_group_id},
    [OCB_API_GROUP_MEMBERS] = {"groupMembers", false, true, OCB_API_RETRY_READ, "GET",
                               "/iocm/app/dm/v1.2.0/devices/ids", false, NULL, false, false, NULL,
                               f_group_members},
    [OCB_API_GROUP_ADD] = {"groupAdd", false, false, OCB_API_RETRY_IDEMPOTENT, "POST",
                           "/iocm/app/dm/v1.1.0/devices/addDevGroupTagToDevices", false, NULL,
                           false, false, NULL, f_group_tag},
    [OCB_API_GROUP_REMOVE] = {"groupRemove", false, false, OCB_API_RETRY_IDEMPOTENT, "POST",
                              "/iocm/app/dm/v1.1.0/devices/deleteDevGroupTagFromDevices", false,
                              NULL, false, false, NULL, f_group_tag},
};

const char *api_op_name(enum ocb_api_op op)
{
    if ((unsigned)op >= OCB_API_N_OPS)
        return NULL;
    return ops[op].name;
}

bool api_op_from_name(const char *name, enum ocb_api_op *out)
{
    for (unsigned i = 0; name && i < OCB_API_N_OPS; i++) {
        if (strcmp(name, ops[i].name) == 0) {
            *out = (enum ocb_api_op)i;
            return true;
        }
    }
    return false;
}

bool api_ops_word(const char *word, unsigned *bits)
{
    enum ocb_api_op op;
    if (!word)
        return false;
    if (strcmp(word, "read") == 0)
        *bits = OCB_API_READ_OPS;
    else if (strcmp(word, "write") == 0)
        *bits = OCB_API_WRITE_OPS;
    else if (strcmp(word, "all") == 0)
        *bits = OCB_API_ALL_OPS;
    else if (api_op_from_name(word, &op))
        *bits = OCB_API_OP_BIT(op);
    else
        return false;
    return true;
}

static enum ocb_err copy_level(const char *s, size_t n, char *out)
{
    if (n == 0)
        return OCB_ERR_INVALID;
    if (n > OCB_COMMAND_ID_MAX)
        return OCB_ERR_TOO_BIG;
    memcpy(out, s, n);
    out[n] = '\0';
    return OCB_OK;
}

enum ocb_err api_topic_parse(const char *prefix, const char *topic, struct ocb_api_target *out)
{
    memset(out, 0, sizeof(*out));
    if (!prefix || !topic)
        return OCB_ERR_INVALID;
    size_t plen = strlen(prefix);
    if (strncmp(topic, prefix, plen) != 0 || topic[plen] != '/')
        return OCB_ERR_INVALID;
    const char *app = topic + plen + 1;
    const char *slash1 = strchr(app, '/');
    if (!slash1)
        return OCB_ERR_INVALID;
    const char *dev = slash1 + 1;
    const char *slash2 = strchr(dev, '/');
    if (!slash2 || strcmp(slash2 + 1, "api") != 0)
        return OCB_ERR_INVALID;
    enum ocb_err rc = copy_level(app, (size_t)(slash1 - app), out->app_id);
    if (rc == OCB_OK)
        rc = copy_level(dev, (size_t)(slash2 - dev), out->device_id);
    if (rc == OCB_OK && strcmp(out->device_id, "_") == 0) {
        out->no_device = true;
        out->device_id[0] = '\0';
    }
    return rc;
}

enum ocb_err api_response_topic(const char *prefix, const struct ocb_api_target *t, char *out,
                                size_t cap)
{
    int n = snprintf(out, cap, "%s/%s/%s/apiResponse", prefix, t->app_id,
                     t->no_device ? "_" : t->device_id);
    return n < 0 || (size_t)n >= cap ? OCB_ERR_TOO_BIG : OCB_OK;
}

/* ---- validation ---- */

__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t whylen, const char *fmt,
                                                          ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* Copy s for a one-line message: control bytes and quotes become '?'. */
static void printable(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        out[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"') ? '?' : *s;
    out[o] = '\0';
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

static bool is_integer(const cJSON *v, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || floor(d) != d || d < (double)lo || d > (double)hi)
        return false;
    *out = (long long)d;
    return true;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool is_string_of(const cJSON *v, long long lo, long long hi)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return false;
    size_t n = strlen(v->valuestring);
    return (long long)n >= lo && (long long)n <= hi;
}

static bool is_ids(const cJSON *v, long long lo, long long hi)
{
    if (!cJSON_IsArray(v))
        return false;
    long long n = 0;
    for (const cJSON *a = v->child; a; a = a->next, n++) {
        if (n >= hi || !is_string_of(a, 1, ID_MAX))
            return false;
        for (const cJSON *b = v->child; b != a; b = b->next)
            if (strcmp(a->valuestring, b->valuestring) == 0)
                return false;
    }
    return n >= lo;
}

static bool is_shadow(const cJSON *v, long long lo, long long hi)
{
    if (!cJSON_IsArray(v))
        return false;
    long long n = 0;
    for (const cJSON *e = v->child; e; e = e->next, n++) {
        if (n >= hi || !cJSON_IsObject(e))
            return false;
        unsigned keys = 0;
        for (const cJSON *k = e->child; k; k = k->next, keys++)
            if (!k->string ||
                (strcmp(k->string, "serviceId") != 0 && strcmp(k->string, "desired") != 0))
                return false;
        if (keys != 2 || !is_string_of(cJSON_GetObjectItemCaseSensitive(e, "serviceId"), 1, 64) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(e, "desired")))
            return false;
    }
    return n >= lo;
}

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
            return false;
    return true;
}

/* Check one present value against its field; false with a reason in why. */
static bool field_ok(const struct field *f, const cJSON *v, char *why, size_t whylen)
{
    long long n;
    long long tm;
    switch (f->kind) {
    case F_STR:
        if (is_string_of(v, f->lo, f->hi))
            return true;
        set_why(why, whylen, "%s must be a string of %lld..%lld bytes", f->key, f->lo, f->hi);
        return false;
    case F_NAME:
        if (cJSON_IsString(v) && v->valuestring && (long long)utf8_chars(v->valuestring) >= f->lo &&
            (long long)utf8_chars(v->valuestring) <= f->hi)
            return true;
        set_why(why, whylen, "%s must be a string of %lld..%lld characters", f->key, f->lo, f->hi);
        return false;
    case F_HEX:
        if (is_string_of(v, f->lo, f->hi) && is_hex(v->valuestring))
            return true;
        set_why(why, whylen, "%s must be %lld..%lld hex digits", f->key, f->lo, f->hi);
        return false;
    case F_TIME:
        if (cJSON_IsString(v) && reconcile_time_parse(v->valuestring, &tm))
            return true;
        set_why(why, whylen, "%s must be a UTC time yyyyMMddTHHmmssZ", f->key);
        return false;
    case F_INT:
        if (is_integer(v, f->lo, f->hi, &n))
            return true;
        set_why(why, whylen, "%s must be an integer %lld..%lld", f->key, f->lo, f->hi);
        return false;
    case F_BOOL:
        if (cJSON_IsBool(v))
            return true;
        set_why(why, whylen, "%s must be true or false", f->key);
        return false;
    case F_SORT:
        if (cJSON_IsString(v) && v->valuestring &&
            (!strcmp(v->valuestring, "ASC") || !strcmp(v->valuestring, "DESC")))
            return true;
        set_why(why, whylen, "%s must be \"ASC\" or \"DESC\"", f->key);
        return false;
    case F_MUTE:
        if (cJSON_IsString(v) && v->valuestring &&
            (!strcmp(v->valuestring, "TRUE") || !strcmp(v->valuestring, "FALSE")))
            return true;
        set_why(why, whylen, "%s must be \"TRUE\" or \"FALSE\"", f->key);
        return false;
    case F_IDS:
        if (is_ids(v, f->lo, f->hi))
            return true;
        set_why(why, whylen,
                "%s must be an array of %lld..%lld distinct device ids (strings of 1..128 bytes)",
                f->key, f->lo, f->hi);
        return false;
    case F_SHADOW:
        if (is_shadow(v, f->lo, f->hi))
            return true;
        set_why(why, whylen,
                "%s must be an array of %lld..%lld objects {\"serviceId\": string of 1..64 "
                "bytes, \"desired\": object}",
                f->key, f->lo, f->hi);
        return false;
    }
    return false;
}

/* ---- building the call ---- */

/* The path under construction, in a fixed buffer. */
struct pathb {
    char buf[OCB_API_PATH_MAX];
    size_t len;
    bool query; /* a '?' is already there */
    bool over;
};

static void pb_raw(struct pathb *pb, const char *s)
{
    size_t n = strlen(s);
    if (pb->over || pb->len + n >= sizeof(pb->buf)) {
        pb->over = true;
        return;
    }
    memcpy(pb->buf + pb->len, s, n + 1);
    pb->len += n;
}

static void pb_escaped(struct pathb *pb, const char *s)
{
    if (pb->over)
        return;
    if (command_url_escape(s, pb->buf + pb->len, sizeof(pb->buf) - pb->len) != OCB_OK)
        pb->over = true;
    else
        pb->len += strlen(pb->buf + pb->len);
}

static void pb_segment(struct pathb *pb, const char *s)
{
    pb_raw(pb, "/");
    pb_escaped(pb, s);
}

static void pb_param(struct pathb *pb, const char *name, const char *value)
{
    pb_raw(pb, pb->query ? "&" : "?");
    pb->query = true;
    pb_escaped(pb, name);
    pb_raw(pb, "=");
    pb_escaped(pb, value);
}

/* The value of a validated field as query text into out. */
static void query_text(const struct field *f, const cJSON *v, char *out, size_t cap)
{
    if (f->kind == F_INT)
        snprintf(out, cap, "%lld", (long long)v->valuedouble);
    else if (f->kind == F_BOOL)
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else
        snprintf(out, cap, "%s", v->valuestring);
}

static const cJSON *get(const cJSON *root, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(root, key);
}

static bool key_known(const struct opdef *d, const char *key)
{
    if (!strcmp(key, "op") || !strcmp(key, "correlationId"))
        return true;
    for (const struct field *f = d->fields; f->key; f++)
        if (!strcmp(key, f->key))
            return true;
    return false;
}

/* Validate root against d's fields and build path and body into out. */
static enum ocb_command_code build(const struct opdef *d, const struct ocb_api_target *t,
                                   const cJSON *root, struct ocb_api_req *out, char *why,
                                   size_t whylen)
{
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string || !key_known(d, it->string)) {
            char key[65];
            printable(it->string ? it->string : "", key, sizeof(key));
            set_why(why, whylen, "unknown parameter \"%s\" for this op", key);
            return OCB_CMD_INVALID_PAYLOAD;
        }
    }
    /* "." and ".." would be path steps, not ids: the path must stay under its base. */
    if (d->device_in_path || d->device_query) {
        if (!strcmp(t->device_id, ".") || !strcmp(t->device_id, "..")) {
            set_why(why, whylen, "\"%s\" is not a deviceId", t->device_id);
            return OCB_CMD_INVALID_TOPIC;
        }
    }
    unsigned body_fields = 0;
    for (const struct field *f = d->fields; f->key; f++) {
        const cJSON *v = get(root, f->key);
        if (!v) {
            if (f->required) {
                set_why(why, whylen, "%s is required", f->key);
                return OCB_CMD_INVALID_PAYLOAD;
            }
            continue;
        }
        if (!field_ok(f, v, why, whylen))
            return OCB_CMD_INVALID_PAYLOAD;
        if (f->where == W_PATH && (!strcmp(v->valuestring, ".") || !strcmp(v->valuestring, ".."))) {
            set_why(why, whylen, "%s must not be \"%s\"", f->key, v->valuestring);
            return OCB_CMD_INVALID_PAYLOAD;
        }
        body_fields += f->where == W_BODY;
    }
    if (d->need_one && body_fields == 0) {
        set_why(why, whylen, "%s changes nothing: give at least one field to change", d->name);
        return OCB_CMD_INVALID_PAYLOAD;
    }

    struct pathb *pb = calloc(1, sizeof(*pb));
    cJSON *body = NULL;
    enum ocb_command_code code = OCB_CMD_INTERNAL;
    if (!pb)
        goto out;
    pb_raw(pb, d->base);
    if (d->device_in_path)
        pb_segment(pb, t->device_id);
    for (const struct field *f = d->fields; f->key; f++)
        if (f->where == W_PATH && get(root, f->key))
            pb_segment(pb, get(root, f->key)->valuestring);
    if (d->device_query)
        pb_param(pb, d->device_query, t->device_id);
    if (d->gateway_default && !get(root, "gatewayId"))
        pb_param(pb, "gatewayId", t->device_id);
    if (strcmp(d->method, "POST") == 0 || strcmp(d->method, "PUT") == 0) {
        if (!(body = cJSON_CreateObject()))
            goto out;
    }
    for (const struct field *f = d->fields; f->key; f++) {
        const cJSON *v = get(root, f->key);
        const char *name = f->out ? f->out : f->key;
        if (!v || f->where == W_PATH)
            continue;
        if (f->where == W_QUERY) {
            char text[1100];
            query_text(f, v, text, sizeof(text));
            pb_param(pb, name, text);
        } else if (body) {
            cJSON *copy = cJSON_Duplicate(v, true);
            if (!copy || !cJSON_AddItemToObject(body, name, copy)) {
                cJSON_Delete(copy);
                goto out;
            }
        }
    }
    if (pb->over) {
        set_why(why, whylen, "the platform path would be over %d bytes", OCB_API_PATH_MAX);
        goto out;
    }
    if (!(out->path = dup_string(pb->buf)))
        goto out;
    if (body && !(out->body = cJSON_PrintUnformatted(body)))
        goto out;
    if (d->reconcile && !(out->reconcile_key = dup_string(get(root, d->reconcile)->valuestring)))
        goto out;
    out->method = d->method;
    out->retry = d->retry;
    code = OCB_CMD_OK;
out:
    if (code == OCB_CMD_INTERNAL && why && whylen && !why[0])
        snprintf(why, whylen, "out of memory");
    cJSON_Delete(body);
    free(pb);
    return code;
}

/* correlationId: a string or a number, kept verbatim as JSON text. */
static enum ocb_command_code take_correlation(const cJSON *root, struct ocb_api_req *out, char *why,
                                              size_t whylen)
{
    const cJSON *c = get(root, "correlationId");
    if (!c)
        return OCB_CMD_OK;
    if (!cJSON_IsString(c) && !cJSON_IsNumber(c)) {
        set_why(why, whylen, "correlationId must be a string or a number");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    char *text = cJSON_PrintUnformatted(c);
    if (!text)
        return OCB_CMD_INTERNAL;
    if (strlen(text) > OCB_COMMAND_CORRELATION_MAX) {
        cJSON_free(text);
        set_why(why, whylen, "correlationId is too long");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    out->correlation_id = dup_string(text);
    cJSON_free(text);
    return out->correlation_id ? OCB_CMD_OK : OCB_CMD_INTERNAL;
}

static void drop_call(struct ocb_api_req *req)
{
    free(req->path);
    if (req->body)
        cJSON_free(req->body);
    free(req->reconcile_key);
    req->path = NULL;
    req->body = NULL;
    req->reconcile_key = NULL;
    req->method = NULL;
}

enum ocb_command_code api_parse(const struct ocb_api_target *t, unsigned allowed,
                                const void *payload, size_t len, size_t max_bytes,
                                struct ocb_api_req *out, char *why, size_t whylen)
{
    enum ocb_command_code code = OCB_CMD_INVALID_PAYLOAD;
    cJSON *root = NULL;

    memset(out, 0, sizeof(*out));
    if (why && whylen)
        why[0] = '\0';
    if (len > max_bytes) {
        set_why(why, whylen, "payload is over the configured cap");
        return OCB_CMD_PAYLOAD_TOO_LARGE;
    }
    if (len == 0 || !payload) {
        set_why(why, whylen, "payload is empty");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    /* cJSON stops at an embedded NUL: the whole payload must be the JSON text. */
    if (memchr(payload, '\0', len)) {
        set_why(why, whylen, "payload contains a NUL byte");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(payload, len, &end, false);
    if (!root) {
        set_why(why, whylen, "payload is not JSON");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    for (const char *p = end; p < (const char *)payload + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            set_why(why, whylen, "trailing data after the JSON value");
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        set_why(why, whylen, "payload is not a JSON object");
        goto out;
    }
    code = take_correlation(root, out, why, whylen);
    if (code != OCB_CMD_OK)
        goto out;
    code = OCB_CMD_INVALID_PAYLOAD;
    const cJSON *op = get(root, "op");
    if (!cJSON_IsString(op) || !op->valuestring) {
        set_why(why, whylen, "op must be a string naming the operation");
        goto out;
    }
    if (!api_op_from_name(op->valuestring, &out->op)) {
        char name[65];
        printable(op->valuestring, name, sizeof(name));
        set_why(why, whylen, "unknown op \"%s\"", name);
        code = OCB_CMD_UNKNOWN_OPERATION;
        goto out;
    }
    out->op_known = true;
    const struct opdef *d = &ops[out->op];
    if (!(allowed & OCB_API_OP_BIT(out->op))) {
        set_why(why, whylen, "op %s is not allowed for this app (apps[].api)", d->name);
        code = OCB_CMD_OPERATION_NOT_ALLOWED;
        goto out;
    }
    if (d->device && (t->no_device || !t->device_id[0])) {
        set_why(why, whylen,
                "op %s names a device: publish it on <prefix>/<appId>/<deviceId>/api, "
                "not .../_/api",
                d->name);
        code = OCB_CMD_INVALID_TOPIC;
        goto out;
    }
    if (!d->device && !t->no_device) {
        set_why(why, whylen, "op %s names no device: publish it on <prefix>/<appId>/_/api",
                d->name);
        code = OCB_CMD_INVALID_TOPIC;
        goto out;
    }
    code = build(d, t, root, out, why, whylen);
out:
    if (code != OCB_CMD_OK)
        drop_call(out);
    cJSON_Delete(root);
    return code;
}

void api_req_cleanup(struct ocb_api_req *req)
{
    if (!req)
        return;
    drop_call(req);
    free(req->correlation_id);
    memset(req, 0, sizeof(*req));
}

bool api_gone_is_done(enum ocb_api_op op, long status, const char *code)
{
    if (status != 404 || !code)
        return false;
    if (op == OCB_API_DELETE)
        return strcmp(code, "100403") == 0;
    if (op == OCB_API_GROUP_DELETE)
        return strcmp(code, "100603") == 0;
    return false;
}

/* ---- reconciliation ---- */

enum ocb_err api_reconcile_path(const struct ocb_api_req *req, long long since_s, long page_no,
                                long page_size, char *out, size_t cap)
{
    char num[32];
    if (!req || !req->reconcile_key || page_no < 0 || page_size < 1)
        return OCB_ERR_INVALID;
    struct pathb *pb = calloc(1, sizeof(*pb));
    if (!pb)
        return OCB_ERR_NOMEM;
    enum ocb_err rc = OCB_ERR_INVALID;
    if (req->op == OCB_API_REGISTER) {
        char since[17];
        if (reconcile_time_format(since_s < 0 ? 0 : since_s, since) != OCB_OK)
            goto out;
        pb_raw(pb, DM_DEVICES);
        pb_param(pb, "startTime", since);
        pb_param(pb, "sort", "ASC");
    } else if (req->op == OCB_API_GROUP_CREATE) {
        pb_raw(pb, DEVGROUPS);
        pb_param(pb, "name", req->reconcile_key);
    } else {
        goto out;
    }
    snprintf(num, sizeof(num), "%ld", page_no);
    pb_param(pb, "pageNo", num);
    snprintf(num, sizeof(num), "%ld", page_size);
    pb_param(pb, "pageSize", num);
    rc = OCB_ERR_TOO_BIG;
    if (pb->over)
        goto out;
    int n = snprintf(out, cap, "%s", pb->buf);
    if (n >= 0 && (size_t)n < cap)
        rc = OCB_OK;
out:
    free(pb);
    return rc;
}

static bool string_is(const cJSON *obj, const char *key, const char *want)
{
    const cJSON *v = get(obj, key);
    return cJSON_IsString(v) && v->valuestring && strcmp(v->valuestring, want) == 0;
}

enum ocb_err api_reconcile_scan_page(const struct ocb_api_req *req, const char *body, size_t len,
                                     struct ocb_api_scan *scan)
{
    const char *arr_key, *id_key;
    if (!req || !req->reconcile_key)
        return OCB_ERR_INVALID;
    if (req->op == OCB_API_REGISTER) {
        arr_key = "devices";
        id_key = "deviceId";
    } else if (req->op == OCB_API_GROUP_CREATE) {
        arr_key = "list";
        id_key = "id";
    } else {
        return OCB_ERR_INVALID;
    }
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    enum ocb_err rc = OCB_ERR_PROTOCOL;
    const cJSON *arr = get(root, arr_key);
    if (!cJSON_IsObject(root) || !cJSON_IsArray(arr))
        goto out;
    scan->page_items = (size_t)cJSON_GetArraySize(arr);
    long long total;
    scan->total = is_integer(get(root, "totalCount"), 0, INT64_MAX / 2, &total)
                      ? total
                      : (long long)scan->page_items;
    rc = OCB_OK;
    for (const cJSON *e = arr->child; e && !scan->found; e = e->next) {
        bool match = req->op == OCB_API_REGISTER
                         ? string_is(get(e, "deviceInfo"), "nodeId", req->reconcile_key)
                         : string_is(e, "name", req->reconcile_key);
        const cJSON *id = get(e, id_key);
        if (!match || !is_string_of(id, 1, OCB_COMMAND_ID_MAX))
            continue;
        char *text = cJSON_PrintUnformatted(e);
        if (!text) {
            rc = OCB_ERR_NOMEM;
            goto out;
        }
        free(scan->resource);
        scan->resource = dup_string(text);
        cJSON_free(text);
        if (!scan->resource) {
            rc = OCB_ERR_NOMEM;
            goto out;
        }
        scan->resource_len = strlen(scan->resource);
        snprintf(scan->id, sizeof(scan->id), "%s", id->valuestring);
        scan->found = true;
    }
out:
    cJSON_Delete(root);
    return rc;
}

bool api_reconcile_more(const struct ocb_api_scan *scan, long page_no, long page_size)
{
    if (scan->found || page_no < 0 || page_size < 1 || scan->page_items == 0)
        return false;
    long long next_first = ((long long)page_no + 1) * (long long)page_size;
    return next_first < scan->total && next_first < OCB_API_RECONCILE_SCAN_MAX;
}

void api_scan_cleanup(struct ocb_api_scan *scan)
{
    if (!scan)
        return;
    free(scan->resource);
    memset(scan, 0, sizeof(*scan));
}
