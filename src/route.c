/*
 * route.c: decide the topic of a pushed body, or why it has none.
 *
 * The platform's pushes are compact JSON whose shape we only partly know
 * (docs/platform-api.md section 1), so routing reads exactly four things --
 * notifyType, deviceId, header.deviceId and, for command status callbacks,
 * commandId/result -- and leaves the rest of the body alone: the caller
 * publishes the bytes it received.
 *
 * Everything that becomes a topic level is validated here, by the one rule in
 * grammar.h that `ocbridge -t` also applies to app ids, because a level
 * containing '/', '+' or '#' would publish somewhere else (or be refused by
 * the broker, which then drops the whole connection), and a NUL would cut the
 * id short silently.  cJSON decodes "\u0000" to a NUL byte inside the string,
 * so before parsing we rewrite NULs in a scratch copy to U+0001: an id that
 * contained one then fails validation as a control character instead of
 * being truncated into a different, valid-looking id.
 */
#include "ocb/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/grammar.h"
#include "ocb/util.h"

/* Last topic levels the bridge itself uses for other purposes.  A push naming
 * one of them as its notifyType would publish onto the command topics (where
 * the command half would execute it) or spoof a callback, so it is refused. */
static const char *const reserved_types[] = {
    "command",     "commandCancel", "commandResponse", OCB_ROUTE_STATUS_LEVEL,
    "api", /* the device API's request topic (api.h) */
    "apiResponse",
};

/* A string fit for an MQTT user property or a log line: UTF-8, no controls, capped. */
static bool id_usable(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > OCB_ROUTE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    }
    return grammar_utf8_valid(s, len);
}

/* How many members of obj have this exact key (cJSON keeps duplicates). */
static int count_key(const cJSON *obj, const char *key)
{
    int n = 0;
    const cJSON *it;

    cJSON_ArrayForEach(it, obj)
    {
        if (it->string != NULL && strcmp(it->string, key) == 0)
            n++;
    }
    return n;
}

/*
 * A parse-only copy of the body in which every NUL -- raw, or escaped as
 * \u0000 inside a string -- becomes U+0001 (see the file comment).  The
 * escape scan skips the character after every backslash, so "\\u0000" (an
 * escaped backslash followed by text) is left alone.
 */
static char *scratch_copy(const char *body, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return NULL;
    memcpy(copy, body, len);
    copy[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (copy[i] == '\0') {
            copy[i] = 0x01;
        } else if (copy[i] == '\\' && i + 1 < len) {
            if (copy[i + 1] == 'u' && i + 5 < len && memcmp(copy + i + 2, "0000", 4) == 0)
                copy[i + 5] = '1';
            i++; /* the escaped character */
        }
    }
    return copy;
}

static enum ocb_err reject(enum ocb_route_reject *why, enum ocb_route_reject w, char *reason,
                           size_t reasonlen, const char *msg)
{
    *why = w;
    snprintf(reason, reasonlen, "%s", msg);
    return OCB_ERR_INVALID;
}

/* Read an optional string member: absent or null -> *out NULL and true;
 * a string -> *out points into the tree; anything else -> false. */
static bool optional_string(const cJSON *obj, const char *key, const char **out)
{
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;

    *out = NULL;
    if (v == NULL || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return false;
    *out = v->valuestring;
    return true;
}

enum ocb_err route_from_push(const char *prefix, const char *app_id, const char *body, size_t len,
                             size_t max_topic_len, struct ocb_route *out,
                             enum ocb_route_reject *why, char *reason, size_t reasonlen)
{
    enum ocb_err rc = OCB_ERR_NOMEM;
    char *copy = NULL;
    cJSON *root = NULL;
    const cJSON *header;
    const char *notify_type = NULL, *device_id = NULL, *request_id = NULL, *command_id = NULL;
    size_t topic_len;
    int n;

    memset(out, 0, sizeof(*out));
    *why = OCB_ROUTE_OK;
    if (reasonlen > 0)
        reason[0] = '\0';

    if (!grammar_level_valid(app_id, strlen(app_id)))
        return reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen,
                      "appId is not a valid topic level");

    copy = scratch_copy(body, len);
    if (copy == NULL)
        goto out;
    root = cJSON_ParseWithLength(copy, len);
    if (root == NULL) {
        rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen, "body is not valid JSON");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen, "body is not a JSON object");
        goto out;
    }
    /* With duplicate keys, cJSON sees the first while a subscriber's parser
     * may see the last: the topic would name one device and the payload
     * another.  Refuse the ambiguity for every field that routes. */
    if (count_key(root, "notifyType") > 1 || count_key(root, "deviceId") > 1 ||
        count_key(root, "header") > 1 || count_key(root, "commandId") > 1) {
        rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen, "body repeats a routing key");
        goto out;
    }
    header = cJSON_GetObjectItemCaseSensitive(root, "header");
    if (cJSON_IsObject(header) &&
        (count_key(header, "deviceId") > 1 || count_key(header, "requestId") > 1)) {
        rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen, "header repeats a routing key");
        goto out;
    }

    if (!optional_string(root, "notifyType", &notify_type)) {
        rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen, "notifyType is not a string");
        goto out;
    }
    if (notify_type != NULL) {
        out->kind = OCB_ROUTE_NOTIFY;
        if (!grammar_level_valid(notify_type, strlen(notify_type))) {
            rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen,
                        "notifyType is not a valid topic level");
            goto out;
        }
        for (size_t i = 0; i < sizeof(reserved_types) / sizeof(reserved_types[0]); i++) {
            if (strcmp(notify_type, reserved_types[i]) == 0) {
                *why = OCB_ROUTE_BAD_TOPIC;
                snprintf(reason, reasonlen, "notifyType \"%s\" is reserved for the bridge",
                         reserved_types[i]);
                rc = OCB_ERR_INVALID;
                goto out;
            }
        }
    } else {
        /* docs/platform-api.md section 2: {deviceId, commandId, result{...}}.  Only
         * the presence of result is required (lenient: its shape is the
         * subscriber's business). */
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(root, "result");

        if (!optional_string(root, "commandId", &command_id) || command_id == NULL ||
            result == NULL) {
            rc = reject(why, OCB_ROUTE_BAD_JSON, reason, reasonlen,
                        "no notifyType, and not a command status callback "
                        "(needs string commandId and result)");
            goto out;
        }
        if (!id_usable(command_id)) {
            rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen,
                        "commandId is empty, too long or not printable UTF-8");
            goto out;
        }
        out->kind = OCB_ROUTE_COMMAND_STATUS;
        notify_type = OCB_ROUTE_STATUS_LEVEL;
    }

    if (!optional_string(root, "deviceId", &device_id)) {
        rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen, "deviceId is not a string");
        goto out;
    }
    if (device_id == NULL && !optional_string(header, "deviceId", &device_id)) {
        rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen, "header.deviceId is not a string");
        goto out;
    }
    if (device_id != NULL) {
        if (strcmp(device_id, OCB_ROUTE_NO_DEVICE) == 0) {
            rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen,
                        "deviceId \"_\" is reserved for pushes without a device");
            goto out;
        }
        if (!grammar_level_valid(device_id, strlen(device_id))) {
            rc = reject(why, OCB_ROUTE_BAD_TOPIC, reason, reasonlen,
                        "deviceId is not a valid topic level");
            goto out;
        }
    } else {
        device_id = OCB_ROUTE_NO_DEVICE;
    }

    /* requestId is informational (an MQTT 5 user property): an unusable one
     * is dropped rather than costing the notification. */
    if (!optional_string(root, "requestId", &request_id) || request_id == NULL)
        (void)optional_string(header, "requestId", &request_id);
    if (request_id != NULL && !id_usable(request_id))
        request_id = NULL;

    topic_len = strlen(prefix) + strlen(app_id) + strlen(device_id) + strlen(notify_type) + 3;
    if (topic_len > max_topic_len || topic_len > 65535) {
        *why = OCB_ROUTE_BAD_TOPIC;
        snprintf(reason, reasonlen, "topic would be %zu bytes, over the limit of %zu", topic_len,
                 max_topic_len < 65535 ? max_topic_len : (size_t)65535);
        rc = OCB_ERR_INVALID;
        goto out;
    }

    rc = OCB_ERR_NOMEM;
    out->topic = malloc(topic_len + 1);
    out->notify_type = strdup(notify_type);
    out->device_id = strdup(device_id);
    out->request_id = ocb_strdup_or_null(request_id);
    out->command_id = ocb_strdup_or_null(command_id);
    if (out->topic == NULL || out->notify_type == NULL || out->device_id == NULL ||
        (request_id != NULL && out->request_id == NULL) ||
        (command_id != NULL && out->command_id == NULL))
        goto out;
    n = snprintf(out->topic, topic_len + 1, "%s/%s/%s/%s", prefix, app_id, device_id, notify_type);
    if (n < 0 || (size_t)n != topic_len)
        goto out;
    out->payload_utf8 = grammar_utf8_valid(body, len);
    rc = OCB_OK;

out:
    if (rc != OCB_OK) {
        enum ocb_route_kind kind = out->kind;
        route_cleanup(out);
        out->kind = kind;
        if (rc == OCB_ERR_NOMEM)
            snprintf(reason, reasonlen, "out of memory");
    }
    cJSON_Delete(root);
    free(copy);
    return rc;
}

void route_cleanup(struct ocb_route *r)
{
    if (r == NULL)
        return;
    free(r->topic);
    free(r->notify_type);
    free(r->device_id);
    free(r->request_id);
    free(r->command_id);
    memset(r, 0, sizeof(*r));
}
