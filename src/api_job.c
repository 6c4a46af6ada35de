/*
 * api_job.c: a device API request's retry and reconciliation state
 * (api_job.h).
 *
 * The worker treats an API request like a command: it queues it, rate
 * limits it, journals it and retries retryable failures until the
 * deadline.  What differs per operation is decided here, from
 * enum ocb_api_retry:
 *
 *   READ, IDEMPOTENT  nothing to remember: a repeat means the same.
 *   DELETE            an unanswered send may have deleted it: from then on
 *                     the platform's not-found is the earlier attempt's
 *                     success (api_gone_is_done).
 *   RECONCILE         an unanswered register/groupCreate may have created
 *                     it, and a second one would be a second device/group
 *                     (or a refusal that hides the first one's answer): the
 *                     next call is the query for what was created since the
 *                     first send, after a grace of platform.timeout_ms (the
 *                     worker's reconcile_delay), and only a query that finds
 *                     nothing lets the write go out again.
 *
 * The same shape as the command creates' reconciliation in cmd_worker.c,
 * kept apart so that cmd_worker.c does not grow a second copy of it.
 */
#include "ocb/api_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ocb/reconcile.h"

void api_job_init(struct ocb_api_job *j)
{
    memset(j, 0, sizeof(*j));
}

void api_job_cleanup(struct ocb_api_job *j)
{
    api_req_cleanup(&j->req);
    api_scan_cleanup(&j->scan);
}

bool api_job_is_write(const struct ocb_api_job *j)
{
    return j->req.retry != OCB_API_RETRY_READ;
}

/* From now on the earlier send's outcome is unknown. */
static void unknown_begin(struct ocb_api_job *j, long long first_s)
{
    j->unknown = true;
    j->querying = false;
    j->page = 0;
    api_scan_cleanup(&j->scan);
    if (j->req.retry == OCB_API_RETRY_RECONCILE)
        j->grace = true;
    if (!j->first_s || (first_s && first_s < j->first_s))
        j->first_s = first_s;
}

void api_job_resume_sending(struct ocb_api_job *j, long long first_s, long long now_s)
{
    if (!api_job_is_write(j))
        return;
    unknown_begin(j, first_s > 0 ? first_s : now_s);
}

bool api_job_in_grace(const struct ocb_api_job *j)
{
    return j->unknown && j->grace && j->req.retry == OCB_API_RETRY_RECONCILE;
}

enum ocb_err api_job_call(struct ocb_api_job *j, long long now_s, struct ocb_platform_call *call)
{
    call->op = api_op_name(j->req.op);
    if (api_job_is_write(j) && !j->first_s)
        j->first_s = now_s;
    if (!(j->unknown && j->req.retry == OCB_API_RETRY_RECONCILE)) {
        call->method = j->req.method;
        call->path = j->req.path;
        call->body = j->req.body;
        return OCB_OK;
    }
    long long since = j->first_s - OCB_RECONCILE_MARGIN_S;
    enum ocb_err rc = api_reconcile_path(&j->req, since > 0 ? since : 0, j->page,
                                         OCB_API_RECONCILE_PAGE_SIZE, j->path, sizeof(j->path));
    if (rc != OCB_OK)
        return rc;
    call->op = j->req.op == OCB_API_REGISTER ? "queryDevices" : "queryDevGroups";
    call->method = "GET";
    call->path = j->path;
    call->body = NULL;
    j->querying = true;
    j->grace = false;
    return OCB_OK;
}

/* The reconciliation query's reply. */
static enum ocb_api_step on_query_reply(struct ocb_api_job *j, const struct ocb_platform_reply *r,
                                        struct ocb_platform_reply *failed)
{
    j->querying = false;
    if (r->cls == OCB_PLATFORM_OK) {
        enum ocb_err rc = api_reconcile_scan_page(&j->req, r->body, r->len, &j->scan);
        if (rc == OCB_OK) {
            if (api_reconcile_more(&j->scan, j->page, OCB_API_RECONCILE_PAGE_SIZE)) {
                j->page++;
                return OCB_API_STEP_NEXT;
            }
            if (j->scan.found)
                return OCB_API_STEP_RECONCILED;
            /* Not there: the platform never took the write.  Send it now; should that be
             * lost too, the query starts again from the first send. */
            j->unknown = false;
            j->page = 0;
            api_scan_cleanup(&j->scan);
            return OCB_API_STEP_NEXT;
        }
        *failed = *r;
        failed->cls = OCB_PLATFORM_RETRY;
        snprintf(failed->desc, sizeof(failed->desc), "reconciliation query answer unusable: %s",
                 ocb_strerror(rc));
    } else {
        *failed = *r;
        if (failed->cls == OCB_PLATFORM_FAILED)
            failed->cls = OCB_PLATFORM_RETRY;
    }
    /* Start over: the list may have changed between the pages. */
    j->page = 0;
    api_scan_cleanup(&j->scan);
    return OCB_API_STEP_FAILED;
}

enum ocb_api_step api_job_on_reply(struct ocb_api_job *j, const struct ocb_platform_reply *r,
                                   struct ocb_platform_reply *failed)
{
    if (j->querying)
        return on_query_reply(j, r, failed);
    if (!api_job_is_write(j) || j->req.retry == OCB_API_RETRY_IDEMPOTENT)
        return OCB_API_STEP_PASS;
    if (r->transport != OCB_OK && r->sent && r->cls == OCB_PLATFORM_RETRY) {
        unknown_begin(j, j->first_s);
        return OCB_API_STEP_PASS;
    }
    if (j->unknown && j->req.retry == OCB_API_RETRY_DELETE && r->cls == OCB_PLATFORM_FAILED &&
        r->transport == OCB_OK && api_gone_is_done(j->req.op, r->status, r->code))
        return OCB_API_STEP_GONE;
    return OCB_API_STEP_PASS;
}

enum ocb_err api_job_redact_psk(const char *answer, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    cJSON *root = cJSON_ParseWithLength(answer, len);
    if (!root)
        return OCB_ERR_PROTOCOL;
    enum ocb_err rc = OCB_ERR_NOT_FOUND;
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    cJSON *platform = cJSON_GetObjectItemCaseSensitive(root, "platform");
    if (cJSON_IsString(op) && strcmp(op->valuestring, "register") == 0 &&
        cJSON_IsObject(platform) && cJSON_GetObjectItemCaseSensitive(platform, "psk")) {
        cJSON_DeleteItemFromObjectCaseSensitive(platform, "psk");
        char *s = cJSON_PrintUnformatted(root);
        rc = s ? OCB_OK : OCB_ERR_NOMEM;
        if (s) {
            *out = s;
            *out_len = strlen(s);
        }
    }
    cJSON_Delete(root);
    return rc;
}
