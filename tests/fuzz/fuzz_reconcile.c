/*
 * fuzz_reconcile.c: any bytes taken as a deviceCommands query answer are
 * either refused as not a page, or scanned into a result that holds: a match
 * has a non-empty commandId that was not claimed, its resource text is a JSON
 * object naming that commandId, and scanning that resource again as a page
 * of its own finds it again (the match does not depend on its neighbours).
 * The first byte picks which commandId counts as claimed and the page number.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/reconcile.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const claimed_ids[] = {"a", "b", "c1", ""};

static bool is_claimed(void *ctx, const char *id)
{
    const char *claimed = ctx;
    REQUIRE(id && *id);
    return strcmp(id, claimed) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *claimed = claimed_ids[data[0] % 4];
    long page_no = data[0] >> 2;
    const struct ocb_reconcile_want want = {
        .device_id = "dev",
        .service_id = "S",
        .method = "M",
        .paras = "{\"k\":1}",
        .callback_url = (data[0] & 1) ? "http://h/push/a" : NULL,
        .expire_time = (data[0] & 2) ? 300 : -1,
        .max_retransmit = -1,
        .since_s = (data[0] & 4) ? 1700000000 : 0,
    };
    struct ocb_reconcile_scan scan = {0};
    enum ocb_err rc = reconcile_scan_page(&want, (const char *)data + 1, size - 1, is_claimed,
                                          (void *)claimed, &scan);
    REQUIRE(rc == OCB_OK || rc == OCB_ERR_PROTOCOL || rc == OCB_ERR_NOMEM);
    REQUIRE(scan.claimed <= scan.matches);
    REQUIRE(scan.total_size >= 0);
    if (rc == OCB_ERR_PROTOCOL)
        REQUIRE(!scan.found);
    /* More pages only when this one had items and the total says so, and never without bound. */
    if (reconcile_scan_more(&scan, page_no, OCB_RECONCILE_PAGE_SIZE)) {
        REQUIRE(scan.page_items > 0);
        REQUIRE((page_no + 1) * OCB_RECONCILE_PAGE_SIZE < OCB_RECONCILE_SCAN_MAX);
        REQUIRE((page_no + 1) * OCB_RECONCILE_PAGE_SIZE < scan.total_size);
    }
    if (scan.found) {
        REQUIRE(scan.command_id[0] && strcmp(scan.command_id, claimed) != 0);
        REQUIRE(scan.resource && scan.resource_len == strlen(scan.resource));
        REQUIRE(scan.matches >= 1);
        cJSON *r = cJSON_Parse(scan.resource);
        REQUIRE(cJSON_IsObject(r));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "commandId");
        REQUIRE(cJSON_IsString(id) && strcmp(id->valuestring, scan.command_id) == 0);
        cJSON *page = cJSON_CreateObject();
        cJSON *arr = page ? cJSON_AddArrayToObject(page, "data") : NULL;
        char *text = NULL;
        if (arr) {
            cJSON_AddItemToArray(arr, r);
            r = NULL;
            text = cJSON_PrintUnformatted(page);
        }
        if (text) {
            struct ocb_reconcile_scan again = {0};
            if (reconcile_scan_page(&want, text, strlen(text), is_claimed, (void *)claimed,
                                    &again) == OCB_OK) {
                REQUIRE(again.found && strcmp(again.command_id, scan.command_id) == 0);
            }
            reconcile_scan_cleanup(&again);
        }
        free(text);
        cJSON_Delete(page);
        cJSON_Delete(r);
    } else {
        REQUIRE(!scan.resource);
    }
    reconcile_scan_cleanup(&scan);
    return 0;
}
