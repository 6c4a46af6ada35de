/*
 * fuzz_route.c: any bytes pushed as a body either route to a topic made of
 * exactly four valid levels -- prefix, app, a deviceId that is "_" only when
 * the body named none, and the notifyType -- under the length cap, or are
 * refused with a one-line reason.  Never a crash, a leak, a wildcard or a
 * NUL in a topic.  The first input byte varies the topic cap so that the
 * length check is exercised too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/grammar.h"
#include "ocb/route.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ocb_route r;
    enum ocb_route_reject why;
    char reason[160];
    size_t max_topic;
    enum ocb_err rc;

    if (size == 0)
        return 0;
    max_topic = 16 + (size_t)data[0] * 4;
    rc = route_from_push("iot", "fuzzApp", (const char *)data + 1, size - 1, max_topic, &r, &why,
                         reason, sizeof(reason));
    if (rc != OCB_OK) {
        REQUIRE(rc == OCB_ERR_INVALID || rc == OCB_ERR_NOMEM);
        REQUIRE(r.topic == NULL && r.notify_type == NULL && r.device_id == NULL);
        if (rc == OCB_ERR_INVALID)
            REQUIRE(why == OCB_ROUTE_BAD_JSON || why == OCB_ROUTE_BAD_TOPIC);
        REQUIRE(reason[0] != '\0' && strchr(reason, '\n') == NULL);
        return 0;
    }
    {
        size_t len = strlen(r.topic);
        const char *p = r.topic, *slash;
        int levels = 0;

        REQUIRE(why == OCB_ROUTE_OK);
        REQUIRE(len <= max_topic);
        REQUIRE(strncmp(r.topic, "iot/fuzzApp/", 12) == 0);
        for (;;) {
            slash = strchr(p, '/');
            size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
            REQUIRE(grammar_level_valid(p, n));
            levels++;
            if (slash == NULL)
                break;
            p = slash + 1;
        }
        REQUIRE(levels == 4);
        REQUIRE(strcmp(strrchr(r.topic, '/') + 1, r.notify_type) == 0);
        REQUIRE(strncmp(r.topic + 12, r.device_id, strlen(r.device_id)) == 0);
        if (r.kind == OCB_ROUTE_COMMAND_STATUS)
            REQUIRE(r.command_id != NULL && strcmp(r.notify_type, OCB_ROUTE_STATUS_LEVEL) == 0);
        else
            REQUIRE(r.command_id == NULL && strcmp(r.notify_type, OCB_ROUTE_STATUS_LEVEL) != 0 &&
                    strcmp(r.notify_type, "command") != 0);
        if (r.request_id != NULL)
            REQUIRE(grammar_utf8_valid(r.request_id, strlen(r.request_id)));
        REQUIRE(r.payload_utf8 == grammar_utf8_valid((const char *)data + 1, size - 1));
    }
    route_cleanup(&r);
    return 0;
}
