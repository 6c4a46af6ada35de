/*
 * command.c: MQTT command payloads in, platform bodies and commandResponse out.
 *
 * Validation is strict on purpose: a typo such as "expiretime" would
 * otherwise silently give the platform's 48-hour default, so unknown keys are
 * INVALID_PAYLOAD like every other malformed input.  The limits mirror the
 * platform's own (serviceId 1..64, method 1..128, maxRetransmit 0..3,
 * expireTime >= 0) so that a request we accept is one the platform accepts.
 *
 * Pure: no I/O, no locks.  Every cJSON tree is freed before returning.
 */
#include "ocb/command.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define SERVICE_ID_MAX 64
#define METHOD_MAX     128
#define COMMAND_ID_MAX 128
/* The platform documents expireTime as an Integer: keep it in 32 bits. */
#define EXPIRE_TIME_MAX 2147483647LL

static const char *const code_names[] = {
    [OCB_CMD_OK] = "OK",
    [OCB_CMD_INVALID_PAYLOAD] = "INVALID_PAYLOAD",
    [OCB_CMD_PAYLOAD_TOO_LARGE] = "PAYLOAD_TOO_LARGE",
    [OCB_CMD_INVALID_TOPIC] = "INVALID_TOPIC",
    [OCB_CMD_UNKNOWN_APP] = "UNKNOWN_APP",
    [OCB_CMD_COMMANDS_DISABLED] = "COMMANDS_DISABLED",
    [OCB_CMD_RETAINED_COMMAND_IGNORED] = "RETAINED_COMMAND_IGNORED",
    [OCB_CMD_QUEUE_FULL] = "QUEUE_FULL",
    [OCB_CMD_EXPIRED_IN_QUEUE] = "EXPIRED_IN_QUEUE",
    [OCB_CMD_PLATFORM_UNREACHABLE] = "PLATFORM_UNREACHABLE",
    [OCB_CMD_INVALID_REPLY] = "INVALID_REPLY",
    [OCB_CMD_SHUTTING_DOWN] = "SHUTTING_DOWN",
    [OCB_CMD_INTERNAL] = "INTERNAL",
    [OCB_CMD_OUTCOME_UNKNOWN] = "OUTCOME_UNKNOWN",
    [OCB_CMD_UNKNOWN_OPERATION] = "UNKNOWN_OPERATION",
    [OCB_CMD_OPERATION_NOT_ALLOWED] = "OPERATION_NOT_ALLOWED",
};

const char *command_code_name(enum ocb_command_code code)
{
    if ((size_t)code >= sizeof(code_names) / sizeof(code_names[0]) || !code_names[code])
        return "INTERNAL";
    return code_names[code];
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

enum ocb_err command_topic_parse(const char *prefix, const char *topic,
                                 struct ocb_command_target *out)
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
    if (!slash2)
        return OCB_ERR_INVALID;
    const char *leaf = slash2 + 1;
    if (strcmp(leaf, "command") == 0)
        out->cancel = false;
    else if (strcmp(leaf, "commandCancel") == 0)
        out->cancel = true;
    else
        return OCB_ERR_INVALID;
    enum ocb_err rc = copy_level(app, (size_t)(slash1 - app), out->app_id);
    if (rc == OCB_OK)
        rc = copy_level(dev, (size_t)(slash2 - dev), out->device_id);
    /* "_" is the push side's placeholder for "no device"; it names no device. */
    if (rc == OCB_OK && strcmp(out->device_id, "_") == 0)
        rc = OCB_ERR_INVALID;
    return rc;
}

static void set_why(char *why, size_t whylen, const char *reason)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", reason);
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

/* A non-empty string of at most max bytes, or NULL. */
static const char *string_field(const cJSON *v, size_t max)
{
    if (!v || !cJSON_IsString(v) || !v->valuestring)
        return NULL;
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > max)
        return NULL;
    return v->valuestring;
}

/* A JSON number that is an integer in [lo, hi]. */
static bool integer_field(const cJSON *v, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || floor(d) != d || d < (double)lo || d > (double)hi)
        return false;
    *out = (long long)d;
    return true;
}

/* correlationId: a string or a number, echoed back verbatim as JSON text. */
static enum ocb_command_code take_correlation(const cJSON *root, struct ocb_command_req *out,
                                              char *why, size_t whylen)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "correlationId");
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

static bool key_allowed(const char *key, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(key, *allowed) == 0)
            return true;
    return false;
}

static enum ocb_command_code parse_create(const cJSON *root, struct ocb_command_req *out, char *why,
                                          size_t whylen)
{
    const char *service =
        string_field(cJSON_GetObjectItemCaseSensitive(root, "serviceId"), SERVICE_ID_MAX);
    if (!service) {
        set_why(why, whylen, "serviceId must be a string of 1..64 bytes");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    const char *method = string_field(cJSON_GetObjectItemCaseSensitive(root, "method"), METHOD_MAX);
    if (!method) {
        set_why(why, whylen, "method must be a string of 1..128 bytes");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    const cJSON *paras = cJSON_GetObjectItemCaseSensitive(root, "paras");
    if (!cJSON_IsObject(paras)) {
        set_why(why, whylen, "paras must be an object");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "expireTime");
    long long n;
    if (v) {
        if (!integer_field(v, 0, EXPIRE_TIME_MAX, &n)) {
            set_why(why, whylen, "expireTime must be an integer >= 0 (seconds)");
            return OCB_CMD_INVALID_PAYLOAD;
        }
        out->expire_time = n;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "maxRetransmit");
    if (v) {
        if (!integer_field(v, 0, 3, &n)) {
            set_why(why, whylen, "maxRetransmit must be an integer 0..3");
            return OCB_CMD_INVALID_PAYLOAD;
        }
        out->max_retransmit = (int)n;
    }
    out->service_id = dup_string(service);
    out->method = dup_string(method);
    out->paras = cJSON_PrintUnformatted(paras);
    if (!out->service_id || !out->method || !out->paras)
        return OCB_CMD_INTERNAL;
    return OCB_CMD_OK;
}

static enum ocb_command_code parse_cancel(const cJSON *root, struct ocb_command_req *out, char *why,
                                          size_t whylen)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "commandId");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "all");
    if (id && all) {
        set_why(why, whylen, "give either commandId or all, not both");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    if (all) {
        if (!cJSON_IsTrue(all)) {
            set_why(why, whylen, "all must be true");
            return OCB_CMD_INVALID_PAYLOAD;
        }
        out->kind = OCB_COMMAND_CANCEL_ALL;
        return OCB_CMD_OK;
    }
    const char *s = string_field(id, COMMAND_ID_MAX);
    if (!s) {
        set_why(why, whylen, "commandId must be a string of 1..128 bytes");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    out->kind = OCB_COMMAND_CANCEL;
    out->command_id = dup_string(s);
    return out->command_id ? OCB_CMD_OK : OCB_CMD_INTERNAL;
}

enum ocb_command_code command_parse(bool cancel, const void *payload, size_t len, size_t max_bytes,
                                    struct ocb_command_req *out, char *why, size_t whylen)
{
    static const char *const create_keys[] = {
        "serviceId", "method", "paras", "expireTime", "maxRetransmit", "correlationId", NULL};
    static const char *const cancel_keys[] = {"commandId", "all", "correlationId", NULL};
    enum ocb_command_code code = OCB_CMD_OK;
    cJSON *root = NULL;

    memset(out, 0, sizeof(*out));
    out->kind = cancel ? OCB_COMMAND_CANCEL : OCB_COMMAND_CREATE;
    out->expire_time = -1;
    out->max_retransmit = -1;
    set_why(why, whylen, "");

    if (len > max_bytes) {
        set_why(why, whylen, "payload is over the configured cap");
        return OCB_CMD_PAYLOAD_TOO_LARGE;
    }
    if (len == 0 || !payload) {
        set_why(why, whylen, "payload is empty");
        return OCB_CMD_INVALID_PAYLOAD;
    }
    /* cJSON_ParseWithLengthOpts with require_null_terminated = false still
     * stops at an embedded NUL; reject those explicitly: the whole payload
     * must be the JSON text. */
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
            code = OCB_CMD_INVALID_PAYLOAD;
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        set_why(why, whylen, "payload is not a JSON object");
        code = OCB_CMD_INVALID_PAYLOAD;
        goto out;
    }
    code = take_correlation(root, out, why, whylen);
    if (code != OCB_CMD_OK)
        goto out;
    const char *const *allowed = cancel ? cancel_keys : create_keys;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string || !key_allowed(it->string, allowed)) {
            char key[65];
            printable(it->string ? it->string : "", key, sizeof(key));
            if (why && whylen)
                snprintf(why, whylen, "unknown key \"%s\"", key);
            code = OCB_CMD_INVALID_PAYLOAD;
            goto out;
        }
    }
    code = cancel ? parse_cancel(root, out, why, whylen) : parse_create(root, out, why, whylen);
out:
    cJSON_Delete(root);
    return code;
}

void command_req_cleanup(struct ocb_command_req *req)
{
    if (!req)
        return;
    free(req->correlation_id);
    free(req->service_id);
    free(req->method);
    if (req->paras)
        cJSON_free(req->paras);
    free(req->command_id);
    memset(req, 0, sizeof(*req));
}

enum ocb_err command_url_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (o + need >= cap)
            return OCB_ERR_TOO_BIG;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (cap == 0)
        return OCB_ERR_TOO_BIG;
    out[o] = '\0';
    return OCB_OK;
}

enum ocb_err command_callback_url(const char *public_url, const char *app_id,
                                  const char *push_token, char *out, size_t cap)
{
    char app[3 * OCB_COMMAND_ID_MAX + 1];
    char token[3 * 256 + 1];
    if (command_url_escape(app_id, app, sizeof(app)) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    token[0] = '\0';
    if (push_token && *push_token && command_url_escape(push_token, token, sizeof(token)) != OCB_OK)
        return OCB_ERR_TOO_BIG;
    size_t base = strlen(public_url);
    while (base > 0 && public_url[base - 1] == '/')
        base--;
    int n = snprintf(out, cap, "%.*s/push/%s%s%s", (int)base, public_url, app, *token ? "/" : "",
                     token);
    if (n < 0 || (size_t)n >= cap)
        return OCB_ERR_TOO_BIG;
    return OCB_OK;
}

/* Print root compactly into *out (a malloc'd string) and free root. */
static enum ocb_err print_and_free(cJSON *root, char **out, size_t *len)
{
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return OCB_ERR_NOMEM;
    size_t n = strlen(text);
    *out = malloc(n + 1);
    if (*out)
        memcpy(*out, text, n + 1);
    cJSON_free(text);
    if (!*out)
        return OCB_ERR_NOMEM;
    if (len)
        *len = n;
    return OCB_OK;
}

enum ocb_err command_create_body(const struct ocb_command_req *req, const char *device_id,
                                 const char *callback_url, char **out)
{
    *out = NULL;
    if (req->kind != OCB_COMMAND_CREATE || !req->paras)
        return OCB_ERR_INVALID;
    cJSON *root = cJSON_CreateObject();
    cJSON *cmd = cJSON_CreateObject();
    cJSON *paras = cJSON_Parse(req->paras);
    if (!root || !cmd || !paras) {
        cJSON_Delete(root);
        cJSON_Delete(cmd);
        cJSON_Delete(paras);
        return OCB_ERR_NOMEM;
    }
    cJSON_AddItemToObject(root, "deviceId", cJSON_CreateString(device_id));
    cJSON_AddItemToObject(cmd, "serviceId", cJSON_CreateString(req->service_id));
    cJSON_AddItemToObject(cmd, "method", cJSON_CreateString(req->method));
    cJSON_AddItemToObject(cmd, "paras", paras);
    cJSON_AddItemToObject(root, "command", cmd);
    if (callback_url && *callback_url)
        cJSON_AddItemToObject(root, "callbackUrl", cJSON_CreateString(callback_url));
    if (req->expire_time >= 0)
        cJSON_AddItemToObject(root, "expireTime", cJSON_CreateNumber((double)req->expire_time));
    if (req->max_retransmit >= 0)
        cJSON_AddItemToObject(root, "maxRetransmit", cJSON_CreateNumber(req->max_retransmit));
    return print_and_free(root, out, NULL);
}

enum ocb_err command_cancel_all_body(const char *device_id, char **out)
{
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (root)
        cJSON_AddItemToObject(root, "deviceId", cJSON_CreateString(device_id));
    return print_and_free(root, out, NULL);
}

/* correlationId as given (JSON text), or null. */
static void add_correlation(cJSON *root, const char *correlation)
{
    cJSON *c = correlation ? cJSON_Parse(correlation) : NULL;
    cJSON_AddItemToObject(root, "correlationId", c ? c : cJSON_CreateNull());
}

static void add_http_status(cJSON *root, long status)
{
    if (status > 0)
        cJSON_AddItemToObject(root, "httpStatus", cJSON_CreateNumber((double)status));
    else
        cJSON_AddItemToObject(root, "httpStatus", cJSON_CreateNull());
}

/* Copy a string field of the platform body, when there is one. */
static void lift_string(cJSON *root, const cJSON *body, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    if (cJSON_IsString(v) && v->valuestring)
        cJSON_AddItemToObject(root, key, cJSON_CreateString(v->valuestring));
}

enum ocb_err command_response_format(const struct ocb_command_outcome *o, char **out, size_t *len)
{
    *out = NULL;
    cJSON *body = NULL;
    /* API calls answer 204 (or 200) with no body: that is platform:null. */
    bool empty = !o->platform_body || o->platform_len == 0;
    if (o->ok && !(o->op && empty)) {
        body = cJSON_ParseWithLength(o->platform_body ? o->platform_body : "",
                                     o->platform_body ? o->platform_len : 0);
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            return OCB_ERR_PROTOCOL;
        }
    }
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        cJSON_Delete(body);
        return OCB_ERR_NOMEM;
    }
    add_correlation(root, o->correlation_id);
    if (o->op) /* "" when the request named no known op */
        cJSON_AddItemToObject(root, "op", *o->op ? cJSON_CreateString(o->op) : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "ok", cJSON_CreateBool(o->ok));
    add_http_status(root, o->http_status);
    if (o->ok) {
        if (!o->op) {
            lift_string(root, body, "commandId");
            lift_string(root, body, "taskId");
            lift_string(root, body, "status");
        }
        if (o->reconciled)
            cJSON_AddTrueToObject(root, "reconciled");
        cJSON_AddItemToObject(root, "platform", body ? body : cJSON_CreateNull());
    } else {
        cJSON *err = cJSON_CreateObject();
        if (err) {
            cJSON_AddItemToObject(err, "code", cJSON_CreateString(o->code ? o->code : "INTERNAL"));
            cJSON_AddItemToObject(err, "desc", cJSON_CreateString(o->desc ? o->desc : ""));
            cJSON_AddItemToObject(err, "source",
                                  cJSON_CreateString(o->from_platform ? "platform" : "bridge"));
            cJSON_AddItemToObject(root, "error", err);
        }
        cJSON_AddItemToObject(root, "retryable", cJSON_CreateBool(o->retryable));
    }
    return print_and_free(root, out, len);
}

static enum ocb_err copy_string_field(const cJSON *obj, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || !v->valuestring || !*v->valuestring)
        return OCB_ERR_NOT_FOUND;
    size_t n = strlen(v->valuestring);
    if (n >= cap)
        return OCB_ERR_TOO_BIG;
    memcpy(out, v->valuestring, n + 1);
    return OCB_OK;
}

enum ocb_err command_reply_command_id(const char *body, size_t len, char *out, size_t cap)
{
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    enum ocb_err rc =
        cJSON_IsObject(root) ? copy_string_field(root, "commandId", out, cap) : OCB_ERR_NOT_FOUND;
    cJSON_Delete(root);
    return rc;
}

enum ocb_err command_status_parse(const char *body, size_t len, char *command_id, size_t idcap,
                                  char *resultcode, size_t rccap)
{
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    enum ocb_err rc = OCB_ERR_INVALID;
    if (!cJSON_IsObject(root))
        goto out;
    rc = copy_string_field(root, "commandId", command_id, idcap);
    if (rc != OCB_OK || !resultcode)
        goto out;
    resultcode[0] = '\0';
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(root, "result");
    /* A status without a readable resultCode is still forwarded; it is just
     * never taken as final. */
    if (cJSON_IsObject(result) &&
        copy_string_field(result, "resultCode", resultcode, rccap) != OCB_OK)
        resultcode[0] = '\0';
out:
    cJSON_Delete(root);
    return rc;
}

bool command_status_is_final(const char *resultcode)
{
    static const char *const finals[] = {"SUCCESSFUL", "FAILED",   "TIMEOUT",
                                         "EXPIRED",    "CANCELED", NULL};
    if (!resultcode)
        return false;
    for (const char *const *f = finals; *f; f++)
        if (strcmp(resultcode, *f) == 0)
            return true;
    return false;
}
