/*
 * fuzz_platform_reply.c: any bytes taken as a platform answer go through
 * every pure reader of platform replies, and each keeps its contract:
 * platform_client_classify() gives one of the classes with bounded
 * strings; platform_client_token_parse() (login/refresh) gives a non-empty
 * access token and 1 <= expiresIn <= 30 days; subscriptions_page_parse()
 * appends only complete entries and counts pages consistently;
 * command_reply_command_id() and command_status_parse() (create/query
 * answers, status callbacks) stay within their buffers; and
 * command_response_format() renders a JSON object or refuses.  The first
 * byte picks the HTTP status and the page size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/command.h"
#include "ocb/platform_client.h"
#include "ocb/subscriptions.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = {200, 201, 204, 400, 401, 403, 404, 408, 409, 429, 500, 503};

static void check_classify(long status, const char *body, size_t len)
{
    struct ocb_platform_reply r;
    memset(&r, 0x5a, sizeof(r));
    r.transport = OCB_OK;
    platform_client_classify(status, body, len, &r);
    REQUIRE(r.cls == OCB_PLATFORM_OK || r.cls == OCB_PLATFORM_TOKEN ||
            r.cls == OCB_PLATFORM_THROTTLED || r.cls == OCB_PLATFORM_RETRY ||
            r.cls == OCB_PLATFORM_FAILED);
    REQUIRE(r.status == status);
    REQUIRE(memchr(r.code, '\0', sizeof(r.code)) != NULL);
    REQUIRE(memchr(r.desc, '\0', sizeof(r.desc)) != NULL);
    bool is_2xx = status >= 200 && status < 300;
    if (r.cls == OCB_PLATFORM_OK)
        REQUIRE(is_2xx && r.code[0] == '\0');
    else
        REQUIRE(r.desc[0] != '\0'); /* an error always says something */
    if (status == 429 && !is_2xx)
        REQUIRE(r.cls == OCB_PLATFORM_THROTTLED);
    REQUIRE(platform_client_class_name(r.cls) != NULL);
}

static void check_token(const char *body, size_t len)
{
    struct ocb_platform_token t;
    if (!platform_client_token_parse(body, len, &t))
        return;
    size_t n = strnlen(t.access, sizeof(t.access));
    REQUIRE(n > 0 && n < sizeof(t.access));
    REQUIRE(strnlen(t.refresh, sizeof(t.refresh)) < sizeof(t.refresh));
    REQUIRE(t.expires_in_s >= 1 && t.expires_in_s <= 30LL * 86400);
}

static void check_page(const char *body, size_t len, size_t page_size)
{
    struct ocb_subs_entry *subs = NULL;
    size_t n_subs = 0, listed = 0;
    bool more = true;
    /* Twice: the second page appends to the first. */
    for (int round = 0; round < 2; round++) {
        size_t before_n = n_subs, before_listed = listed;
        enum ocb_err rc =
            subscriptions_page_parse(body, len, page_size, &subs, &n_subs, &listed, &more);
        REQUIRE(rc == OCB_OK || rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM);
        if (rc != OCB_OK) {
            REQUIRE(n_subs == before_n && listed == before_listed && !more);
            break;
        }
        /* Usable entries are among those listed; none is half-filled. */
        REQUIRE(n_subs - before_n <= listed - before_listed);
        if (listed == before_listed)
            REQUIRE(!more);
        for (size_t i = 0; i < n_subs; i++)
            REQUIRE(subs[i].id && subs[i].type && subs[i].url && !subs[i].gone);
    }
    subscriptions_entries_free(subs, n_subs);
}

static void check_command(long status, const char *body, size_t len)
{
    char id[65], rc_text[33];
    memset(id, 'x', sizeof(id));
    enum ocb_err rc = command_reply_command_id(body, len, id, sizeof(id));
    REQUIRE(rc == OCB_OK || rc == OCB_ERR_NOT_FOUND || rc == OCB_ERR_TOO_BIG);
    if (rc == OCB_OK)
        REQUIRE(memchr(id, '\0', sizeof(id)) != NULL);

    memset(rc_text, 'x', sizeof(rc_text));
    rc = command_status_parse(body, len, id, sizeof(id), rc_text, sizeof(rc_text));
    if (rc == OCB_OK) {
        REQUIRE(memchr(id, '\0', sizeof(id)) != NULL);
        REQUIRE(memchr(rc_text, '\0', sizeof(rc_text)) != NULL);
        (void)command_status_is_final(rc_text);
    }

    /* A create or query answer rendered as the commandResponse. */
    struct ocb_command_outcome o = {
        .correlation_id = "\"c-1\"",
        .ok = true,
        .http_status = status,
        .platform_body = body,
        .platform_len = len,
    };
    char *out = NULL;
    size_t out_len = 0;
    rc = command_response_format(&o, &out, &out_len);
    REQUIRE(rc == OCB_OK || rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM);
    if (rc == OCB_OK) {
        REQUIRE(out && strlen(out) == out_len);
        cJSON *j = cJSON_ParseWithLength(out, out_len);
        REQUIRE(cJSON_IsObject(j));
        REQUIRE(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
        cJSON_Delete(j);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    long status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
    size_t page_size = (size_t)(data[0] >> 4) + 1;
    /* The platform client keeps bodies NUL-terminated; so does this copy. */
    size_t len = size - 1;
    char *body = malloc(len + 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, len);
    body[len] = '\0';
    check_classify(status, body, len);
    check_token(body, len);
    check_page(body, len, page_size);
    check_command(status, body, len);
    free(body);
    return 0;
}
