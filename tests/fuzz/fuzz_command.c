/*
 * fuzz_command.c: any bytes published as a command (or cancel) either
 * validate into a request whose platform body is well-formed JSON carrying
 * exactly the validated fields, or are refused with a code and a one-line
 * reason.  The same bytes taken as a platform reply are classified without
 * crashing, and rendered into a commandResponse that is valid JSON (or
 * refused as not an object).  The first byte picks the topic kind, the
 * payload cap and the HTTP status.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/command.h"
#include "ocb/platform_client.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const char *text, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(text, len);
    REQUIRE(cJSON_IsObject(j));
    REQUIRE(cJSON_GetObjectItem(j, "ok") != NULL);
    REQUIRE(cJSON_GetObjectItem(j, "correlationId") != NULL);
    cJSON_Delete(j);
}

static void check_request(const struct ocb_command_req *req)
{
    char *body = NULL;
    if (req->kind == OCB_COMMAND_CREATE) {
        REQUIRE(req->service_id && *req->service_id && strlen(req->service_id) <= 64);
        REQUIRE(req->method && *req->method && strlen(req->method) <= 128);
        REQUIRE(req->expire_time >= -1 && req->max_retransmit >= -1 && req->max_retransmit <= 3);
        REQUIRE(command_create_body(req, "dev", "http://h:1/push/a", &body) == OCB_OK);
        cJSON *j = cJSON_Parse(body);
        const cJSON *cmd = cJSON_GetObjectItem(j, "command");
        REQUIRE(cJSON_IsObject(cJSON_GetObjectItem(cmd, "paras")));
        REQUIRE(strcmp(cJSON_GetObjectItem(cmd, "serviceId")->valuestring, req->service_id) == 0);
        REQUIRE(strcmp(cJSON_GetObjectItem(cmd, "method")->valuestring, req->method) == 0);
        REQUIRE((cJSON_GetObjectItem(j, "expireTime") != NULL) == (req->expire_time >= 0));
        REQUIRE((cJSON_GetObjectItem(j, "maxRetransmit") != NULL) == (req->max_retransmit >= 0));
        cJSON_Delete(j);
    } else if (req->kind == OCB_COMMAND_CANCEL) {
        REQUIRE(req->command_id && *req->command_id);
    } else {
        REQUIRE(command_cancel_all_body("dev", &body) == OCB_OK);
    }
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool cancel = data[0] & 1;
    size_t cap = 64 + (size_t)(data[0] >> 1) * 64;
    const char *payload = (const char *)data + 1;
    size_t len = size - 1;

    struct ocb_command_req req;
    char why[160];
    enum ocb_command_code code = command_parse(cancel, payload, len, cap, &req, why, sizeof(why));
    if (code == OCB_CMD_OK) {
        REQUIRE(len <= cap);
        check_request(&req);
    } else {
        REQUIRE(code == OCB_CMD_INVALID_PAYLOAD || code == OCB_CMD_PAYLOAD_TOO_LARGE ||
                code == OCB_CMD_INTERNAL);
        REQUIRE(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    if (req.correlation_id) {
        cJSON *c = cJSON_Parse(req.correlation_id);
        REQUIRE(cJSON_IsString(c) || cJSON_IsNumber(c));
        cJSON_Delete(c);
    }

    /* The same bytes as the platform's answer. */
    struct ocb_platform_reply r;
    memset(&r, 0, sizeof(r));
    long status = 100 + (long)data[0] * 2;
    platform_client_classify(status, payload, len, &r);
    REQUIRE(r.cls >= OCB_PLATFORM_OK && r.cls <= OCB_PLATFORM_FAILED);
    REQUIRE(strlen(r.code) < sizeof(r.code));
    if (r.cls != OCB_PLATFORM_OK)
        REQUIRE(r.desc[0] != '\0');

    struct ocb_command_outcome o = {
        .correlation_id = req.correlation_id,
        .ok = r.cls == OCB_PLATFORM_OK,
        .http_status = status,
        .platform_body = payload,
        .platform_len = len,
        .code = r.code[0] ? r.code : "HTTP_ERROR",
        .desc = r.desc,
        .from_platform = true,
    };
    char *out = NULL;
    size_t out_len = 0;
    enum ocb_err rc = command_response_format(&o, &out, &out_len);
    if (rc == OCB_OK) {
        REQUIRE(out_len == strlen(out));
        check_json(out, out_len);
    } else {
        REQUIRE(o.ok && (rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM));
        REQUIRE(out == NULL);
    }
    free(out);
    command_req_cleanup(&req);
    return 0;
}
