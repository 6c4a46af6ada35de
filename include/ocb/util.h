/*
 * util.h: the few small helpers several modules need: a monotonic clock in
 * milliseconds and NULL-tolerant copies.  Pure or allocation-only;
 * thread-safe.  The caller frees what the copies return.
 */
#ifndef OCB_UTIL_H
#define OCB_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: for deadlines and durations, never dates. */
int64_t ocb_now_ms(void);

/* A malloc'd copy of p[0..n), or NULL when p is NULL, n is 0 or memory ran out. */
void *ocb_memdup(const void *p, size_t n);

/* A malloc'd copy of s, or NULL when s is NULL or memory ran out. */
char *ocb_strdup_or_null(const char *s);

#endif
