/*
 * api_job.h: one device API request in the command worker (issue 13; README
 * "The device API over MQTT"; docs/design.md section 4).
 *
 * api.h turns an MQTT request into a platform call and says how it may be
 * retried (enum ocb_api_retry).  This module is the per-request state the
 * command worker keeps on top of that, and the decisions that follow from
 * each reply, so that cmd_worker.c only glues them to its job machinery
 * (queue, rate limit, journal, deadline, answers):
 *
 *   - which call goes out next (api_job_call): the operation's own call, or,
 *     for register/groupCreate after a send whose outcome is unknown, the
 *     reconciliation query page by page (api_reconcile_path);
 *   - what a reply means (api_job_on_reply): pass it on (success, definite
 *     error, or a retryable failure the worker retries as for any call),
 *     the delete that the earlier unanswered attempt already did (GONE), the
 *     resource a reconciliation found (RECONCILED), the next page or the
 *     resend now (NEXT), or a failed query to be retried (FAILED);
 *   - the register answer without its psk, for the apiResponse copy when the
 *     requester has an MQTT 5 response topic (api_job_redact_psk).
 *
 * "Unknown outcome" means what it means for command creates (reconcile.h): a
 * write that went out completely and got no HTTP answer.  A 5xx or a refused
 * connection is an answer (or no send): the platform did not do it.
 *
 * No I/O, no locks: the worker thread owns each job.  cJSON trees do not
 * leave api_job.c.
 */
#ifndef OCB_API_JOB_H
#define OCB_API_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/api.h"
#include "ocb/err.h"
#include "ocb/platform_client.h"

struct ocb_api_job {
    struct ocb_api_target target;
    struct ocb_api_req req; /* owned; correlation_id is moved out by the worker */
    /* A write went out unanswered: delete-style ops accept not-found as done,
     * reconciled ops query before they send again. */
    bool unknown;
    bool grace;        /* the first query after the unanswered send is yet to come */
    bool querying;     /* the call in flight is the reconciliation query */
    long long first_s; /* UTC seconds of the first send of a write; 0 = none yet */
    long page;
    char path[OCB_API_PATH_MAX]; /* the query's path */
    struct ocb_api_scan scan;
};

/* Zero j; j->req and j->target are then filled by the caller (api_parse). */
void api_job_init(struct ocb_api_job *j);

/* Free what j owns.  Idempotent. */
void api_job_cleanup(struct ocb_api_job *j);

/* Is this a write (journal first_s, an unknown outcome possible)? */
bool api_job_is_write(const struct ocb_api_job *j);

/*
 * Worker thread, at start: the journal found the request `sending`, first
 * sent at first_s (UTC s; 0 = unknown, then now_s): its outcome is unknown.
 */
void api_job_resume_sending(struct ocb_api_job *j, long long first_s, long long now_s);

/*
 * The call to make now into *call (app_id is the caller's): the op's own
 * call, or the reconciliation query.  now_s is the UTC clock (the first
 * send's time is recorded).  OCB_ERR_TOO_BIG/INVALID when the query path
 * cannot be built.
 */
enum ocb_err api_job_call(struct ocb_api_job *j, long long now_s, struct ocb_platform_call *call);

/* Waiting for the platform to finish an unanswered send before the first query? */
bool api_job_in_grace(const struct ocb_api_job *j);

enum ocb_api_step {
    OCB_API_STEP_PASS,       /* the op's own reply: success, error or retry as usual */
    OCB_API_STEP_GONE,       /* delete-style: the earlier attempt did it; answer ok */
    OCB_API_STEP_RECONCILED, /* the query found it: answer ok with j->scan.resource */
    OCB_API_STEP_NEXT,       /* call again at once (next page, or send the write now) */
    OCB_API_STEP_FAILED,     /* the query failed: retry *failed like any failed call */
};

/*
 * A reply to the call api_job_call() built.  On OCB_API_STEP_FAILED *failed
 * is the reply to retry on (class RETRY even for a definite error: a failed
 * query does not answer "was it done?").
 */
enum ocb_api_step api_job_on_reply(struct ocb_api_job *j, const struct ocb_platform_reply *r,
                                   struct ocb_platform_reply *failed);

/*
 * An apiResponse payload (JSON text) without platform.psk: *out is a new
 * string the caller frees.  OCB_ERR_NOT_FOUND when the answer is not a
 * register answer holding a psk (nothing to hide), OCB_ERR_PROTOCOL when it
 * is not JSON, OCB_ERR_NOMEM.
 */
enum ocb_err api_job_redact_psk(const char *answer, size_t len, char **out, size_t *out_len);

#endif
