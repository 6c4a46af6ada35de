/*
 * test_util.c: the one clock (util.h): deadlines on the monotonic clock,
 * timed waits on a condition variable made with ocb_cond_init(), and the
 * NULL-tolerant copies.  No assertion is on speed: a wait is checked to last
 * at least until its deadline, never at most.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/util.h"
#include "th_main.h"

START_TEST(deadlines_are_on_the_monotonic_clock)
{
    int64_t now = ocb_now_ms();
    ck_assert_int_gt(now, 0);
    ck_assert_int_ge(ocb_now_ms(), now);
    ck_assert_int_ge(ocb_now_ns() / 1000000, now);

    ck_assert(ocb_deadline_passed(ocb_deadline_in(0)));
    ck_assert(ocb_deadline_passed(now - 1));
    ck_assert(!ocb_deadline_passed(ocb_deadline_in(60000)));
    ck_assert_int_ge(ocb_deadline_in(60000), now + 60000);
    /* "Never" saturates instead of wrapping into the past. */
    ck_assert_int_eq(ocb_deadline_in(INT64_MAX), INT64_MAX);
    ck_assert(!ocb_deadline_passed(INT64_MAX));

    ck_assert_int_eq(ocb_ms_until(now - 5), 0);
    ck_assert_int_le(ocb_ms_until(ocb_deadline_in(1000)), 1000);
    ck_assert_int_gt(ocb_ms_until(ocb_deadline_in(60000)), 1000);
    ck_assert_int_eq(ocb_ms_until(INT64_MAX), INT32_MAX);

    /* The wall clock is a date: far from the monotonic clock's origin at boot. */
    ck_assert_int_gt(ocb_wall_ms(), 1600000000000LL);
    ck_assert(ocb_seconds_since(ocb_now_ns()) >= 0.0);
}
END_TEST

START_TEST(timed_waits_last_until_their_deadline)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;

    ck_assert_int_eq(ocb_cond_init(&cv), 0);
    pthread_mutex_lock(&mu);
    /* A deadline already passed: no wait at all. */
    ck_assert(ocb_cond_wait_until(&cv, &mu, ocb_now_ms() - 1));
    /* A short one: nobody signals, so the wait ends at (not before) the deadline,
     * spurious wake-ups aside, which return false and are waited again. */
    int64_t deadline = ocb_deadline_in(30);
    while (!ocb_cond_wait_until(&cv, &mu, deadline))
        ;
    ck_assert(ocb_deadline_passed(deadline));
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);

    int64_t before = ocb_now_ms();
    ocb_sleep_ms(20);
    ck_assert_int_ge(ocb_now_ms() - before, 20);
}
END_TEST

struct waker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int flag;
};

static void *wake(void *arg)
{
    struct waker *w = arg;
    pthread_mutex_lock(&w->mu);
    w->flag = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

START_TEST(a_signal_ends_a_timed_wait_early)
{
    struct waker w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t t;

    ck_assert_int_eq(ocb_cond_init(&w.cv), 0);
    pthread_mutex_lock(&w.mu);
    ck_assert_int_eq(pthread_create(&t, NULL, wake, &w), 0);
    int64_t deadline = ocb_deadline_in(60000);
    bool passed = false;
    while (!w.flag && !passed)
        passed = ocb_cond_wait_until(&w.cv, &w.mu, deadline);
    ck_assert(!passed);
    ck_assert_int_eq(w.flag, 1);
    pthread_mutex_unlock(&w.mu);
    pthread_join(t, NULL);
    pthread_cond_destroy(&w.cv);
}
END_TEST

START_TEST(copies_tolerate_null)
{
    ck_assert_ptr_null(ocb_memdup(NULL, 3));
    ck_assert_ptr_null(ocb_memdup("abc", 0));
    ck_assert_ptr_null(ocb_strdup_or_null(NULL));
    char *s = ocb_strdup_or_null("abc");
    ck_assert_str_eq(s, "abc");
    free(s);
    unsigned char *m = ocb_memdup("a\0b", 3);
    ck_assert_int_eq(memcmp(m, "a\0b", 3), 0);
    free(m);
}
END_TEST

/* `ocbridge state`'s ages: whole seconds, rounded down, never negative (a clock set back). */
START_TEST(ages_are_whole_seconds_and_never_negative)
{
    ck_assert_int_eq(ocb_age_s(10000, 5000), 5);
    ck_assert_int_eq(ocb_age_s(10999, 5000), 5);
    ck_assert_int_eq(ocb_age_s(11000, 5000), 6);
    ck_assert_int_eq(ocb_age_s(5999, 5000), 0);
    ck_assert_int_eq(ocb_age_s(5000, 5000), 0);
    ck_assert_int_eq(ocb_age_s(4000, 5000), 0);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const util_tests[] = {
        deadlines_are_on_the_monotonic_clock,      timed_waits_last_until_their_deadline,
        a_signal_ends_a_timed_wait_early,          copies_tolerate_null,
        ages_are_whole_seconds_and_never_negative, NULL};
    const struct th_case cases[] = {
        {.name = "util", .tests = util_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "util", cases);
}
