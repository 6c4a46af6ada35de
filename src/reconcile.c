/*
 * reconcile.c: the pure half of create reconciliation (see reconcile.h).
 *
 * A page is parsed once; the wanted paras are parsed once per page and
 * compared with cJSON_Compare, so a platform that re-serialises the object
 * (other key order, 1.0 for 1, other spacing) still matches, while a
 * different value does not.  Strings are compared exactly: the platform
 * stores serviceId, method and callbackUrl as given.
 *
 * Time: the platform's "yyyyMMddTHHmmssZ" is UTC; the conversion is done by
 * hand (days from the civil date) so that it depends on no time zone and no
 * non-standard timegm().
 */
#include "ocb/reconcile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define PATH_COMMANDS "/iocm/app/cmd/v1.4.0/deviceCommands"

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

bool reconcile_time_parse(const char *s, long long *out)
{
    unsigned y, mo, d, h, mi, se;
    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z' || !digits(s, 4, &y) ||
        !digits(s + 4, 2, &mo) || !digits(s + 6, 2, &d) || !digits(s + 9, 2, &h) ||
        !digits(s + 11, 2, &mi) || !digits(s + 13, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return true;
}

enum ocb_err reconcile_time_format(long long t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    out[0] = '\0';
    if (t < 0 || (long long)tt != t || !gmtime_r(&tt, &tm) ||
        strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        out[0] = '\0';
        return OCB_ERR_INVALID;
    }
    return OCB_OK;
}

enum ocb_err reconcile_query_path(const char *device_id, long long since_s, long page_no,
                                  long page_size, char *out, size_t cap)
{
    char esc[3 * OCB_COMMAND_ID_MAX + 1];
    char since[17];
    if (!device_id || page_no < 0 || page_size < 1)
        return OCB_ERR_INVALID;
    enum ocb_err rc = command_url_escape(device_id, esc, sizeof(esc));
    if (rc == OCB_OK)
        rc = reconcile_time_format(since_s, since);
    if (rc != OCB_OK)
        return rc;
    int n = snprintf(out, cap, "%s?deviceId=%s&startTime=%s&pageNo=%ld&pageSize=%ld", PATH_COMMANDS,
                     esc, since, page_no, page_size);
    return n < 0 || (size_t)n >= cap ? OCB_ERR_TOO_BIG : OCB_OK;
}

static bool str_field_is(const cJSON *obj, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) && v->valuestring && strcmp(v->valuestring, want) == 0;
}

/* An optional number the request set: absent in the resource is no evidence either way. */
static bool num_field_agrees(const cJSON *obj, const char *key, long long want)
{
    if (want < 0)
        return true;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return true;
    return cJSON_IsNumber(v) && v->valuedouble == (double)want;
}

static bool callback_agrees(const cJSON *obj, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "callbackUrl");
    bool have = cJSON_IsString(v) && v->valuestring && v->valuestring[0];
    if (!want || !want[0])
        return !have;
    return have && strcmp(v->valuestring, want) == 0;
}

/* Does resource r describe the command want asked for?  paras is want's, parsed. */
static bool matches(const struct ocb_reconcile_want *want, const cJSON *paras, const cJSON *r,
                    long long *creation_s)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(r, "command");
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(r, "deviceId");
    if (!cJSON_IsObject(r) || !cJSON_IsObject(cmd))
        return false;
    /* The query names the device; a resource that names another is not ours. */
    if (dev && !cJSON_IsNull(dev) && !str_field_is(r, "deviceId", want->device_id))
        return false;
    if (!str_field_is(cmd, "serviceId", want->service_id) ||
        !str_field_is(cmd, "method", want->method) ||
        !cJSON_Compare(cJSON_GetObjectItemCaseSensitive(cmd, "paras"), paras, true) ||
        !callback_agrees(r, want->callback_url) ||
        !num_field_agrees(r, "expireTime", want->expire_time) ||
        !num_field_agrees(r, "maxRetransmit", want->max_retransmit))
        return false;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(r, "creationTime");
    *creation_s = LLONG_MAX;
    if (cJSON_IsString(ct) && reconcile_time_parse(ct->valuestring, creation_s) &&
        want->since_s > 0 && *creation_s < want->since_s)
        return false;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "commandId");
    return cJSON_IsString(id) && id->valuestring && id->valuestring[0] &&
           strlen(id->valuestring) <= OCB_COMMAND_ID_MAX;
}

static enum ocb_err keep(struct ocb_reconcile_scan *scan, const cJSON *r, long long creation_s)
{
    char *text = cJSON_PrintUnformatted(r);
    if (!text)
        return OCB_ERR_NOMEM;
    free(scan->resource);
    scan->resource = text;
    scan->resource_len = strlen(text);
    scan->creation_s = creation_s;
    snprintf(scan->command_id, sizeof(scan->command_id), "%s",
             cJSON_GetObjectItemCaseSensitive(r, "commandId")->valuestring);
    scan->found = true;
    return OCB_OK;
}

enum ocb_err reconcile_scan_page(const struct ocb_reconcile_want *want, const char *body,
                                 size_t len, ocb_reconcile_claimed_fn claimed, void *ctx,
                                 struct ocb_reconcile_scan *scan)
{
    enum ocb_err rc = OCB_ERR_PROTOCOL;
    cJSON *paras = NULL;
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    scan->page_items = 0;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(root) || (data && !cJSON_IsArray(data)))
        goto out;
    const cJSON *pg = cJSON_GetObjectItemCaseSensitive(root, "pagination");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(pg, "totalSize");
    size_t n = data ? (size_t)cJSON_GetArraySize(data) : 0;
    scan->page_items = n;
    if (cJSON_IsNumber(total) && total->valuedouble >= 0 && total->valuedouble < 1e15)
        scan->total_size = (long long)total->valuedouble;
    else
        scan->total_size = (long long)n; /* no usable pagination: this page is all there is */
    rc = OCB_ERR_NOMEM;
    paras = cJSON_Parse(want->paras ? want->paras : "{}");
    if (!paras) {
        /* Our own validated text: only memory can make it fail. */
        goto out;
    }
    rc = OCB_OK;
    const cJSON *r;
    cJSON_ArrayForEach(r, data)
    {
        long long creation_s;
        if (!matches(want, paras, r, &creation_s))
            continue;
        scan->matches++;
        const char *id = cJSON_GetObjectItemCaseSensitive(r, "commandId")->valuestring;
        if (claimed && claimed(ctx, id)) {
            scan->claimed++;
            continue;
        }
        /* Ties keep the first seen: the platform's own order then decides. */
        if (scan->found && creation_s >= scan->creation_s)
            continue;
        rc = keep(scan, r, creation_s);
        if (rc != OCB_OK)
            break;
    }
out:
    cJSON_Delete(paras);
    cJSON_Delete(root);
    return rc;
}

bool reconcile_scan_more(const struct ocb_reconcile_scan *scan, long page_no, long page_size)
{
    if (scan->page_items == 0 || page_no < 0 || page_size < 1)
        return false;
    long long read = (long long)(page_no + 1) * page_size;
    return read < scan->total_size && read < OCB_RECONCILE_SCAN_MAX;
}

void reconcile_scan_cleanup(struct ocb_reconcile_scan *scan)
{
    if (!scan)
        return;
    free(scan->resource);
    memset(scan, 0, sizeof(*scan));
}
