/*
 * util.c: small helpers shared by the modules (util.h): the one clock and
 * NULL-tolerant copies.
 */
#include "ocb/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_MS  1000000LL
#define NS_PER_SEC 1000000000LL

int64_t ocb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

int64_t ocb_now_ms(void)
{
    return ocb_now_ns() / NS_PER_MS;
}

double ocb_seconds_since(int64_t t0_ns)
{
    return (double)(ocb_now_ns() - t0_ns) / 1e9;
}

int64_t ocb_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / NS_PER_MS;
}

int64_t ocb_age_s(int64_t now_ms, int64_t then_ms)
{
    return now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
}

int64_t ocb_deadline_in(int64_t ms)
{
    int64_t now = ocb_now_ms();

    /* Saturate rather than wrap: "never" stays in the future. */
    return ms > INT64_MAX - now ? INT64_MAX : now + ms;
}

bool ocb_deadline_passed(int64_t deadline)
{
    return ocb_now_ms() >= deadline;
}

int ocb_ms_until(int64_t deadline)
{
    int64_t left = deadline - ocb_now_ms();

    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

int ocb_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc;

    rc = pthread_condattr_init(&ca);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

bool ocb_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
{
    struct timespec ts;

    if (ocb_deadline_passed(deadline))
        return true;
    if (deadline == INT64_MAX) { /* never (ocb_deadline_in() saturated) */
        pthread_cond_wait(cv, mu);
        return false;
    }
    ts.tv_sec = (time_t)(deadline / 1000);
    ts.tv_nsec = (long)(deadline % 1000) * (long)NS_PER_MS;
    return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT;
}

void ocb_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * (long)NS_PER_MS};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void *ocb_memdup(const void *p, size_t n)
{
    void *d;

    if (p == NULL || n == 0)
        return NULL;
    d = malloc(n);
    if (d != NULL)
        memcpy(d, p, n);
    return d;
}

char *ocb_strdup_or_null(const char *s)
{
    return s != NULL ? ocb_memdup(s, strlen(s) + 1) : NULL;
}
