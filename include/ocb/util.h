/*
 * util.h: the few small helpers several modules need: one clock (monotonic
 * time, deadlines, timed waits on a condition variable, sleeps), the wall
 * clock for dates, and NULL-tolerant copies.  Pure or allocation-only;
 * thread-safe.  The caller frees what the copies return.
 *
 * One clock.  Every deadline and duration in the daemon is an int64_t of
 * milliseconds on CLOCK_MONOTONIC (ocb_now_ms()); a condition variable that
 * waits for one is made with ocb_cond_init(), so its timed waits measure on
 * the same clock and a wall-clock step (NTP, an operator) neither fires a
 * timeout early nor holds it back.  Latencies below a millisecond (metrics
 * histograms) use ocb_now_ns().  CLOCK_REALTIME (ocb_wall_ms()) is for dates
 * only: what a spooled message records as its arrival.
 */
#ifndef OCB_UTIL_H
#define OCB_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: for deadlines and durations, never dates. */
int64_t ocb_now_ms(void);

/* CLOCK_MONOTONIC in nanoseconds, for latencies shorter than a millisecond. */
int64_t ocb_now_ns(void);

/* Seconds since t0_ns (an ocb_now_ns() value), for duration histograms. */
double ocb_seconds_since(int64_t t0_ns);

/* CLOCK_REALTIME in milliseconds since the epoch: for dates, never deadlines. */
int64_t ocb_wall_ms(void);

/* Whole seconds from then_ms to now_ms (ocb_wall_ms() values); 0 when then_ms is not earlier. */
int64_t ocb_age_s(int64_t now_ms, int64_t then_ms);

/* The deadline ms milliseconds from now, on the ocb_now_ms() clock. */
int64_t ocb_deadline_in(int64_t ms);

/* True once the ocb_now_ms() clock has reached deadline. */
bool ocb_deadline_passed(int64_t deadline);

/* Milliseconds left until deadline: 0 once it passed, at most INT32_MAX (a poll timeout). */
int ocb_ms_until(int64_t deadline);

/* pthread_cond_init() with timed waits measured on CLOCK_MONOTONIC (attr: none).
 * Returns pthread_cond_init()'s result. */
int ocb_cond_init(pthread_cond_t *cv);

/*
 * pthread_cond_timedwait() on cv (made with ocb_cond_init(); mu held) until
 * deadline, an ocb_now_ms() value.  Returns true when the deadline has
 * passed, false when woken before it (a signal or a spurious wake-up: the
 * caller checks its condition again).
 */
bool ocb_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline);

/* Sleep for ms milliseconds, resuming after signals. */
void ocb_sleep_ms(unsigned ms);

/* A malloc'd copy of p[0..n), or NULL when p is NULL, n is 0 or memory ran out. */
void *ocb_memdup(const void *p, size_t n);

/* A malloc'd copy of s, or NULL when s is NULL or memory ran out. */
char *ocb_strdup_or_null(const char *s);

#endif
