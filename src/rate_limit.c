/*
 * rate_limit.c: a sliding window over completion times (see rate_limit.h).
 *
 * Why a window and not a token bucket: a bucket that starts full lets 2N
 * calls through in the first window, which trips the platform's 1010009
 * exactly when a backlog is being drained.  Why completion times: see the
 * header.  Completions arrive in time order, so the completion times form a
 * FIFO whose front leaves the window first; `calls` slots always suffice,
 * because a call is only sent while n_pending + n_done < calls.
 */
#include "ocb/rate_limit.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void rate_limit_scale(unsigned calls, unsigned per_seconds, unsigned *out_calls,
                      int64_t *out_window_ms)
{
    int64_t window_ms = (int64_t)per_seconds * 1000;
    if (calls > OCB_RATE_LIMIT_CALLS_MAX) {
        window_ms = window_ms * OCB_RATE_LIMIT_CALLS_MAX / calls;
        calls = OCB_RATE_LIMIT_CALLS_MAX;
    }
    *out_calls = calls;
    *out_window_ms = window_ms;
}

enum ocb_err rate_limit_init(struct ocb_rate_limit *rl, unsigned calls, int64_t window_ms)
{
    memset(rl, 0, sizeof(*rl));
    if (calls == 0)
        return OCB_OK;
    if (calls > OCB_RATE_LIMIT_CALLS_MAX || window_ms <= 0)
        return OCB_ERR_INVALID;
    rl->done = calloc(calls, sizeof(*rl->done));
    if (!rl->done)
        return OCB_ERR_NOMEM;
    rl->calls = calls;
    rl->window_ms = window_ms;
    return OCB_OK;
}

void rate_limit_cleanup(struct ocb_rate_limit *rl)
{
    if (!rl)
        return;
    free(rl->done);
    memset(rl, 0, sizeof(*rl));
}

bool rate_limit_allows(struct ocb_rate_limit *rl, int64_t now, int64_t *when)
{
    if (rl->calls == 0)
        return true;
    while (rl->n_done > 0 && now - rl->done[rl->done_head] >= rl->window_ms) {
        rl->done_head = (rl->done_head + 1) % rl->calls;
        rl->n_done--;
    }
    if (rl->n_pending + rl->n_done < rl->calls)
        return true;
    if (when)
        *when = rl->n_done > 0 ? rl->done[rl->done_head] + rl->window_ms : now + 1000;
    return false;
}

void rate_limit_sent(struct ocb_rate_limit *rl)
{
    if (rl->calls == 0)
        return;
    /* Only after rate_limit_allows() said yes: a programmer error otherwise. */
    assert(rl->n_pending + rl->n_done < rl->calls);
    rl->n_pending++;
}

void rate_limit_completed(struct ocb_rate_limit *rl, int64_t now)
{
    if (rl->calls == 0)
        return;
    assert(rl->n_pending > 0);
    if (rl->n_pending == 0)
        return;
    assert(rl->n_done == 0 || now >= rl->done[(rl->done_head + rl->n_done - 1) % rl->calls]);
    rl->n_pending--;
    /* n_pending + n_done <= calls held when the call was sent. */
    rl->done[(rl->done_head + rl->n_done) % rl->calls] = now;
    rl->n_done++;
}
