/*
 * rate_limit.h: the per-app sliding-window rate limit of platform calls
 * (platform.rate_limit; DESIGN.md section 4).
 *
 * The platform counts a call when it arrives, some time between our send
 * and our reading of its answer.  This limiter counts every call from its
 * completion, and a call in flight as "now, and for a whole window", which
 * is never less than the platform's count whatever the network delay: a
 * call is allowed when fewer than `calls` calls are in flight or completed
 * within the last window.  Hence the invariant the unit test checks: in any
 * half-open interval of window_ms, at most `calls` calls are sent or in
 * flight or completed.
 *
 * Pure: no clock (times are passed in, milliseconds on one monotonic
 * clock), no locks, no I/O and no allocation after rate_limit_init().
 * Thread-safe: no; one owner (the command worker) calls everything.
 */
#ifndef OCB_RATE_LIMIT_H
#define OCB_RATE_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "ocb/err.h"

/* The most calls one window remembers; larger limits are scaled (rate_limit_scale). */
#define OCB_RATE_LIMIT_CALLS_MAX 4096

struct ocb_rate_limit {
    unsigned calls;    /* per window; 0 = unlimited */
    int64_t window_ms; /* > 0 when calls > 0 */
    int64_t *done;     /* FIFO ring of completion times inside the window, `calls` slots */
    unsigned n_done, done_head, n_pending;
};

/*
 * The limit to configure for "calls per per_seconds": a calls value over
 * OCB_RATE_LIMIT_CALLS_MAX becomes the same average rate over a
 * proportionally shorter window, so the ring stays bounded.
 */
void rate_limit_scale(unsigned calls, unsigned per_seconds, unsigned *out_calls,
                      int64_t *out_window_ms);

/*
 * Allocate the ring for `calls` calls per window_ms (calls 0: unlimited,
 * nothing allocated).  OCB_ERR_INVALID when calls is over
 * OCB_RATE_LIMIT_CALLS_MAX or window_ms <= 0 with calls > 0.  Free with
 * rate_limit_cleanup(), which is also safe on a zeroed struct.
 */
enum ocb_err rate_limit_init(struct ocb_rate_limit *rl, unsigned calls, int64_t window_ms);
void rate_limit_cleanup(struct ocb_rate_limit *rl);

/*
 * May a call start at now?  When not, *when (which may be NULL) is the
 * earliest time worth asking again: when the oldest completion leaves the
 * window, or now + 1000 when everything counted is still in flight (a
 * completion will come first).  Completions that have left the window are
 * forgotten here.  now must not go backwards between calls.
 */
bool rate_limit_allows(struct ocb_rate_limit *rl, int64_t now, int64_t *when);

/* A call allowed by rate_limit_allows() was sent. */
void rate_limit_sent(struct ocb_rate_limit *rl);

/* A sent call completed (any outcome) at now; times come in order. */
void rate_limit_completed(struct ocb_rate_limit *rl, int64_t now);

#endif
