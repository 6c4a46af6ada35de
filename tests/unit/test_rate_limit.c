/*
 * test_rate_limit.c: the per-app sliding window (rate_limit.h).
 *
 * A table of decisions for hand-picked sequences, and a property: for
 * random (seeded; the seed is printed on failure) sequences of sends and
 * completion times, no half-open interval of the window's length ever
 * touches more than `calls` calls, where a call occupies [sent, completed]
 * (the platform counts it at some unknown point of that span).
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ocb/rate_limit.h"
#include "th_main.h"

enum op_kind { ASK, SEND, DONE };

struct op {
    enum op_kind kind;
    int64_t at;
    bool allowed; /* ASK: the expected answer */
    int64_t when; /* ASK refused: the expected hint */
};

struct decision_case {
    const char *name;
    unsigned calls;
    int64_t window_ms;
    struct op ops[12];
    size_t n_ops;
};

static const struct decision_case decisions[] = {
    {"unlimited",
     0,
     0,
     {{ASK, 0, true, 0}, {SEND, 0, 0, 0}, {SEND, 0, 0, 0}, {ASK, 0, true, 0}},
     4},
    {"in flight counts for the whole window",
     2,
     1000,
     {{ASK, 0, true, 0},
      {SEND, 0, 0, 0},
      {ASK, 0, true, 0},
      {SEND, 0, 0, 0},
      {ASK, 5000, false, 6000}},
     5},
    {"a completion counts from its own time",
     1,
     1000,
     {{SEND, 0, 0, 0},
      {DONE, 300, 0, 0},
      {ASK, 900, false, 1300},
      {ASK, 1299, false, 1300},
      {ASK, 1300, true, 0}},
     5},
    {"the oldest completion leaves first",
     2,
     1000,
     {{SEND, 0, 0, 0},
      {SEND, 0, 0, 0},
      {DONE, 100, 0, 0},
      {DONE, 700, 0, 0},
      {ASK, 1099, false, 1100},
      {ASK, 1100, true, 0},
      {SEND, 1100, 0, 0},
      {ASK, 1650, false, 1700},
      {ASK, 1700, true, 0}},
     9},
    {"one in flight, one done",
     2,
     500,
     {{SEND, 0, 0, 0},
      {SEND, 10, 0, 0},
      {DONE, 20, 0, 0},
      {ASK, 400, false, 520},
      {ASK, 520, true, 0}},
     5},
};

START_TEST(table_of_decisions)
{
    const struct decision_case *c = &decisions[_i];
    struct ocb_rate_limit rl;
    ck_assert_int_eq(rate_limit_init(&rl, c->calls, c->window_ms), OCB_OK);
    for (size_t k = 0; k < c->n_ops; k++) {
        const struct op *op = &c->ops[k];
        int64_t when = -1;
        switch (op->kind) {
        case ASK:
            ck_assert_msg(rate_limit_allows(&rl, op->at, &when) == op->allowed,
                          "%s: step %zu at %lld", c->name, k, (long long)op->at);
            if (!op->allowed)
                ck_assert_msg(when == op->when, "%s: step %zu: when %lld, want %lld", c->name, k,
                              (long long)when, (long long)op->when);
            break;
        case SEND:
            ck_assert_msg(rate_limit_allows(&rl, op->at, NULL), "%s: step %zu", c->name, k);
            rate_limit_sent(&rl);
            break;
        case DONE:
            rate_limit_completed(&rl, op->at);
            break;
        }
    }
    rate_limit_cleanup(&rl);
}
END_TEST

START_TEST(init_bounds)
{
    struct ocb_rate_limit rl;
    ck_assert_int_eq(rate_limit_init(&rl, OCB_RATE_LIMIT_CALLS_MAX + 1, 1000), OCB_ERR_INVALID);
    ck_assert_int_eq(rate_limit_init(&rl, 3, 0), OCB_ERR_INVALID);
    rate_limit_cleanup(&rl);
    rate_limit_cleanup(NULL);
    unsigned calls;
    int64_t window;
    rate_limit_scale(50, 10, &calls, &window);
    ck_assert_uint_eq(calls, 50);
    ck_assert_int_eq(window, 10000);
    rate_limit_scale(OCB_RATE_LIMIT_CALLS_MAX * 2, 10, &calls, &window);
    ck_assert_uint_eq(calls, OCB_RATE_LIMIT_CALLS_MAX);
    ck_assert_int_eq(window, 5000);
}
END_TEST

/* ---- the property */

#define PROP_RUNS  200
#define PROP_CALLS 400

struct span {
    int64_t sent, done; /* done = INT64_MAX while in flight */
};

/* The most calls whose [sent, done] meets one interval [t, t + window). */
static unsigned worst_window(const struct span *s, size_t n, int64_t window)
{
    unsigned worst = 0;
    /* The count only rises when t moves down to a completion time, so the
     * maximum is reached at one of them (or at any t when none completed). */
    for (size_t k = 0; k <= n; k++) {
        int64_t t = k < n ? s[k].done : INT64_MIN / 2;
        if (k < n && t == INT64_MAX)
            continue;
        unsigned count = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i].done >= t && s[i].sent < t + window)
                count++;
        if (count > worst)
            worst = count;
    }
    return worst;
}

START_TEST(never_more_than_n_in_any_window)
{
    unsigned seed = (unsigned)(0x5eed0000u + (unsigned)_i);
    srand(seed);
    unsigned calls = 1 + (unsigned)(rand() % 6);
    int64_t window = 50 + rand() % 1000;
    struct ocb_rate_limit rl;
    ck_assert_int_eq(rate_limit_init(&rl, calls, window), OCB_OK);

    static struct span spans[PROP_CALLS];
    size_t n = 0;
    size_t order[PROP_CALLS]; /* in-flight calls, in completion order */
    int64_t finish_at[PROP_CALLS];
    size_t n_flight = 0;
    int64_t now = 0;
    for (unsigned step = 0; step < 20 * PROP_CALLS && n < PROP_CALLS; step++) {
        now += rand() % (window / 4 + 2);
        /* Complete, in time order, the calls whose latency has run out. */
        for (;;) {
            size_t best = SIZE_MAX;
            for (size_t k = 0; k < n_flight; k++)
                if (finish_at[k] <= now && (best == SIZE_MAX || finish_at[k] < finish_at[best]))
                    best = k;
            if (best == SIZE_MAX)
                break;
            /* Reported when seen (now), after its latency ran out, as the worker does. */
            spans[order[best]].done = now;
            rate_limit_completed(&rl, now);
            order[best] = order[n_flight - 1];
            finish_at[best] = finish_at[n_flight - 1];
            n_flight--;
        }
        /* Try to send a burst, as a backlog would. */
        int burst = rand() % 4;
        for (int b = 0; b < burst && n < PROP_CALLS; b++) {
            int64_t when = 0;
            if (!rate_limit_allows(&rl, now, &when)) {
                ck_assert_msg(when > now, "seed %u: hint %lld not after now %lld", seed,
                              (long long)when, (long long)now);
                break;
            }
            rate_limit_sent(&rl);
            spans[n].sent = now;
            spans[n].done = INT64_MAX;
            order[n_flight] = n;
            /* Latencies from nothing to several windows. */
            finish_at[n_flight] = now + rand() % (3 * window + 1);
            n_flight++;
            n++;
        }
    }
    unsigned worst = worst_window(spans, n, window);
    ck_assert_msg(worst <= calls, "seed %u: %u calls in one window of %lld ms, limit %u", seed,
                  worst, (long long)window, calls);
    ck_assert_msg(n > calls, "seed %u: only %zu calls sent", seed, n);
    rate_limit_cleanup(&rl);
}
END_TEST

/* The checker itself must see a violation (a test that cannot fail proves nothing). */
START_TEST(checker_sees_a_violation)
{
    struct span s[3] = {{0, 10}, {5, 20}, {900, 950}};
    ck_assert_uint_eq(worst_window(s, 3, 1000), 3);
    ck_assert_uint_eq(worst_window(s, 3, 800), 2);
    struct span t[2] = {{0, 100}, {1100, INT64_MAX}};
    ck_assert_uint_eq(worst_window(t, 2, 1000), 1);
    ck_assert_uint_eq(worst_window(t, 2, 1001), 2);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const rate_limit_tests[] = {table_of_decisions, init_bounds,
                                             checker_sees_a_violation,
                                             never_more_than_n_in_any_window, NULL};
    const struct th_loop rate_limit_loops[] = {
        {table_of_decisions, 0, (int)(sizeof(decisions) / sizeof(decisions[0]))},
        {never_more_than_n_in_any_window, 0, PROP_RUNS},
        {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "rate_limit", .tests = rate_limit_tests, .loops = rate_limit_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "rate_limit", cases);
}
