/*
 * fuzz_api.c: any bytes published on an api topic either validate into one
 * platform call, or are refused with a code and a one-line reason.  A call's
 * path starts with /iocm/app/, holds no raw space, control or non-ASCII byte
 * and no "." or ".." step; its body is a JSON object exactly for POST and
 * PUT; the op was allowed; reads are exactly the freely retried calls and
 * the reconciled writes carry their key and a valid query.  A refused op
 * never yields a call.  The same bytes as a platform page are scanned for
 * reconciliation without crashing, and every outcome renders as a JSON
 * apiResponse.  data[0] picks the topic's device level, data[1] the app's
 * allowed set; the rest is the payload.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/api.h"
#include "ocb/command.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *path)
{
    REQUIRE(strncmp(path, "/iocm/app/", 10) == 0);
    REQUIRE(strlen(path) < OCB_API_PATH_MAX);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        REQUIRE(*p > 0x20 && *p < 0x7f && *p != '#');
    /* Only the base's and the query's own '?', once. */
    const char *q = strchr(path, '?');
    REQUIRE(!q || strchr(q + 1, '?') == NULL);
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    for (const char *s = path; s < path + plen;) {
        const char *seg = s + 1;
        const char *next = memchr(seg, '/', (size_t)(path + plen - seg));
        size_t n = next ? (size_t)(next - seg) : (size_t)(path + plen - seg);
        REQUIRE(n > 0);
        REQUIRE(!(n == 1 && seg[0] == '.') && !(n == 2 && seg[0] == '.' && seg[1] == '.'));
        s = seg + n;
    }
}

static void check_call(const struct ocb_api_req *req, unsigned allowed)
{
    REQUIRE(req->op_known && (unsigned)req->op < OCB_API_N_OPS);
    REQUIRE(allowed & OCB_API_OP_BIT(req->op));
    REQUIRE(req->method && req->path);
    check_path(req->path);
    bool has_body = !strcmp(req->method, "POST") || !strcmp(req->method, "PUT");
    REQUIRE(has_body || !strcmp(req->method, "GET") || !strcmp(req->method, "DELETE"));
    REQUIRE((req->body != NULL) == has_body);
    if (req->body) {
        cJSON *j = cJSON_Parse(req->body);
        REQUIRE(cJSON_IsObject(j));
        cJSON_Delete(j);
    }
    bool read = (OCB_API_READ_OPS & OCB_API_OP_BIT(req->op)) != 0;
    REQUIRE(read == (req->retry == OCB_API_RETRY_READ));
    REQUIRE(read == !strcmp(req->method, "GET"));
    REQUIRE((req->reconcile_key != NULL) == (req->retry == OCB_API_RETRY_RECONCILE));
    if (req->reconcile_key) {
        char path[OCB_API_PATH_MAX];
        REQUIRE(api_reconcile_path(req, 1767225600, 3, OCB_API_RECONCILE_PAGE_SIZE, path,
                                   sizeof(path)) == OCB_OK);
        check_path(path);
    }
}

static void check_answer(const struct ocb_command_outcome *o)
{
    char *out = NULL;
    size_t len = 0;
    enum ocb_err rc = command_response_format(o, &out, &len);
    if (rc != OCB_OK) {
        REQUIRE(o->ok && (rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM) && out == NULL);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(out, len);
    REQUIRE(cJSON_IsObject(j));
    REQUIRE(cJSON_GetObjectItem(j, "op") != NULL);
    REQUIRE(cJSON_GetObjectItem(j, "correlationId") != NULL);
    REQUIRE(cJSON_IsBool(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const devices[] = {"_", "dev-1", "a b?&#%+", "..", ".", "\xc3\xa9\x01", ""};
    if (size < 2)
        return 0;
    struct ocb_api_target t;
    memset(&t, 0, sizeof(t));
    snprintf(t.app_id, sizeof(t.app_id), "app1");
    const char *dev = devices[data[0] % (sizeof(devices) / sizeof(devices[0]))];
    t.no_device = strcmp(dev, "_") == 0;
    snprintf(t.device_id, sizeof(t.device_id), "%s", t.no_device ? "" : dev);
    unsigned allowed = data[1] == 0   ? OCB_API_ALL_OPS
                       : data[1] == 1 ? OCB_API_READ_OPS
                       : data[1] == 2 ? OCB_API_WRITE_OPS
                       : data[1] == 3 ? 0u
                                      : ((unsigned)data[1] * 0x9E37u) & OCB_API_ALL_OPS;
    size_t cap = 64 + (size_t)(data[0] >> 3) * 256;
    const char *payload = (const char *)data + 2;
    size_t len = size - 2;

    struct ocb_api_req req;
    char why[200];
    enum ocb_command_code code = api_parse(&t, allowed, payload, len, cap, &req, why, sizeof(why));
    if (code == OCB_CMD_OK) {
        REQUIRE(len <= cap);
        check_call(&req, allowed);
    } else {
        REQUIRE(code == OCB_CMD_INVALID_PAYLOAD || code == OCB_CMD_PAYLOAD_TOO_LARGE ||
                code == OCB_CMD_INTERNAL || code == OCB_CMD_UNKNOWN_OPERATION ||
                code == OCB_CMD_OPERATION_NOT_ALLOWED || code == OCB_CMD_INVALID_TOPIC);
        REQUIRE(why[0] != '\0' && strchr(why, '\n') == NULL);
        /* A refused request never yields a call. */
        REQUIRE(!req.method && !req.path && !req.body && !req.reconcile_key);
        if (code == OCB_CMD_OPERATION_NOT_ALLOWED)
            REQUIRE(req.op_known && !(allowed & OCB_API_OP_BIT(req.op)));
        if (code == OCB_CMD_UNKNOWN_OPERATION)
            REQUIRE(!req.op_known);
    }
    if (req.correlation_id) {
        cJSON *c = cJSON_Parse(req.correlation_id);
        REQUIRE(cJSON_IsString(c) || cJSON_IsNumber(c));
        cJSON_Delete(c);
    }
    const char *op = req.op_known ? api_op_name(req.op) : "";
    REQUIRE(op != NULL);

    /* The same bytes as a reconciliation page, for a register and a groupCreate. */
    static const char *const writes[] = {"{\"op\":\"register\",\"nodeId\":\"n\"}",
                                         "{\"op\":\"groupCreate\",\"name\":\"n\"}"};
    for (size_t i = 0; i < 2; i++) {
        struct ocb_api_target none = {.no_device = true, .app_id = "app1"};
        struct ocb_api_req w;
        struct ocb_api_scan scan;
        char wwhy[200];
        REQUIRE(api_parse(&none, OCB_API_ALL_OPS, writes[i], strlen(writes[i]), 256, &w, wwhy,
                          sizeof(wwhy)) == OCB_CMD_OK);
        memset(&scan, 0, sizeof(scan));
        enum ocb_err rc = api_reconcile_scan_page(&w, payload, len, &scan);
        REQUIRE(rc == OCB_OK || rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM);
        if (scan.found)
            REQUIRE(rc == OCB_OK && scan.id[0] && scan.resource &&
                    strlen(scan.resource) == scan.resource_len);
        (void)api_reconcile_more(&scan, data[0], 1 + data[1]);
        api_scan_cleanup(&scan);
        api_req_cleanup(&w);
    }

    /* Every outcome renders: the bridge's refusal, and the bytes as the platform's answer. */
    struct ocb_command_outcome o = {
        .correlation_id = req.correlation_id,
        .code = command_code_name(code),
        .desc = why,
        .op = op,
    };
    check_answer(&o);
    o = (struct ocb_command_outcome){
        .correlation_id = req.correlation_id,
        .ok = true,
        .http_status = 200,
        .platform_body = payload,
        .platform_len = len,
        .op = op,
    };
    check_answer(&o);
    api_req_cleanup(&req);
    return 0;
}
