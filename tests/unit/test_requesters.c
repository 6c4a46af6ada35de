/*
 * test_requesters.c: the commandId -> requester map (requesters.h): entry
 * bounds, insert/lookup/remove/expire, eviction of the oldest, statuses
 * forwarded or kept until their requester is inserted, and, across two
 * threads, that every status reaches its requester once and in order.
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ocb/requesters.h"
#include "th_main.h"

#define SEEN_MAX 256

struct seen {
    pthread_mutex_t lock;
    unsigned n;
    char what[SEEN_MAX][160]; /* "<command>|<topic>|<body>" */
};

static void record(void *ctx, const struct ocb_requester *r, const char *body, size_t len)
{
    struct seen *s = ctx;
    pthread_mutex_lock(&s->lock);
    if (s->n < SEEN_MAX)
        snprintf(s->what[s->n++], sizeof(s->what[0]), "%.40s|%.40s|%.*s", r->command_id,
                 r->response_topic, (int)(len > 40 ? 40 : len), body);
    pthread_mutex_unlock(&s->lock);
}

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
}

static struct ocb_requester entry(const char *app, const char *cmd, const char *topic,
                                  int64_t expires)
{
    struct ocb_requester e;
    ck_assert_int_eq(requesters_entry_fill(&e, app, cmd, topic, "corr", 4, expires), OCB_OK);
    return e;
}

START_TEST(entry_fill_bounds)
{
    struct ocb_requester e;
    char long_topic[OCB_REQUESTERS_TOPIC_MAX + 1];
    memset(long_topic, 't', sizeof(long_topic) - 1);
    long_topic[sizeof(long_topic) - 1] = '\0';
    ck_assert_int_eq(requesters_entry_fill(&e, "a", "c", long_topic, NULL, 0, 1), OCB_ERR_TOO_BIG);
    long_topic[OCB_REQUESTERS_TOPIC_MAX - 1] = '\0'; /* exactly fits with its NUL */
    ck_assert_int_eq(requesters_entry_fill(&e, "a", "c", long_topic, NULL, 0, 1), OCB_OK);
    ck_assert_uint_eq(strlen(e.response_topic), OCB_REQUESTERS_TOPIC_MAX - 1);
    unsigned char corr[OCB_REQUESTERS_CORR_MAX + 1] = {0};
    ck_assert_int_eq(requesters_entry_fill(&e, "a", "c", "r", corr, sizeof(corr), 1),
                     OCB_ERR_TOO_BIG);
    ck_assert_int_eq(requesters_entry_fill(&e, "a", "c", "r", corr, sizeof(corr) - 1, 1), OCB_OK);
    ck_assert_uint_eq(e.corr_len, OCB_REQUESTERS_CORR_MAX);
    ck_assert_int_eq(requesters_entry_fill(&e, "", "c", "r", NULL, 0, 1), OCB_ERR_INVALID);
    ck_assert_int_eq(requesters_entry_fill(&e, "a", NULL, "r", NULL, 0, 1), OCB_ERR_INVALID);
    ck_assert_int_eq(requesters_entry_fill(&e, "a", "c", "", NULL, 0, 1), OCB_ERR_INVALID);
    char long_id[OCB_COMMAND_ID_MAX + 2];
    memset(long_id, 'i', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ck_assert_int_eq(requesters_entry_fill(&e, "a", long_id, "r", NULL, 0, 1), OCB_ERR_TOO_BIG);
}
END_TEST

START_TEST(insert_lookup_remove_expire)
{
    struct ocb_requesters *rq = NULL;
    ck_assert_int_eq(requesters_new(0, &rq), OCB_ERR_INVALID);
    ck_assert_int_eq(requesters_new(8, &rq), OCB_OK);
    struct ocb_requester e = entry("app1", "c1", "replies/1", 1000), got;
    ck_assert_int_eq(requesters_insert(rq, &e, 0, NULL, NULL, NULL), OCB_OK);
    e = entry("app2", "c1", "replies/2", 2000);
    ck_assert_int_eq(requesters_insert(rq, &e, 0, NULL, NULL, NULL), OCB_OK);
    ck_assert_uint_eq(requesters_count(rq), 2);

    ck_assert(requesters_lookup(rq, "app1", "c1", &got));
    ck_assert_str_eq(got.response_topic, "replies/1");
    ck_assert_uint_eq(got.corr_len, 4);
    ck_assert_mem_eq(got.corr, "corr", 4);
    ck_assert(requesters_lookup(rq, "app2", "c1", &got));
    ck_assert_str_eq(got.response_topic, "replies/2");
    ck_assert(!requesters_lookup(rq, "app3", "c1", &got));
    ck_assert(!requesters_lookup(rq, "app1", "c2", &got));

    /* A newer insert of the same command shadows the older one; removing it uncovers it. */
    e = entry("app1", "c1", "replies/1b", 3000);
    ck_assert_int_eq(requesters_insert(rq, &e, 0, NULL, NULL, NULL), OCB_OK);
    ck_assert(requesters_lookup(rq, "app1", "c1", &got));
    ck_assert_str_eq(got.response_topic, "replies/1b");
    ck_assert(requesters_remove(rq, "app1", "c1"));
    ck_assert(requesters_lookup(rq, "app1", "c1", &got));
    ck_assert_str_eq(got.response_topic, "replies/1");
    ck_assert(requesters_remove(rq, "app1", "c1"));
    ck_assert(!requesters_remove(rq, "app1", "c1"));

    /* Expiry is inclusive of expires_ms. */
    ck_assert_uint_eq(requesters_expire(rq, 1999), 0);
    ck_assert_uint_eq(requesters_expire(rq, 2000), 1);
    ck_assert_uint_eq(requesters_count(rq), 0);
    requesters_free(rq);
    requesters_free(NULL);
}
END_TEST

START_TEST(full_map_forgets_the_oldest)
{
    struct ocb_requesters *rq = NULL;
    ck_assert_int_eq(requesters_new(3, &rq), OCB_OK);
    bool evicted = true;
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        struct ocb_requester e = entry("a", id, "r", 10000);
        ck_assert_int_eq(requesters_insert(rq, &e, 0, NULL, NULL, &evicted), OCB_OK);
        ck_assert(!evicted);
    }
    struct ocb_requester e = entry("a", "c3", "r", 10000);
    ck_assert_int_eq(requesters_insert(rq, &e, 0, NULL, NULL, &evicted), OCB_OK);
    ck_assert(evicted);
    ck_assert(!requesters_lookup(rq, "a", "c0", NULL));
    ck_assert(requesters_lookup(rq, "a", "c1", NULL));
    ck_assert(requesters_lookup(rq, "a", "c3", NULL));
    /* An expired entry makes room instead of the oldest live one. */
    struct ocb_requester shortlived = entry("a", "c4", "r", 50);
    requesters_remove(rq, "a", "c3");
    ck_assert_int_eq(requesters_insert(rq, &shortlived, 0, NULL, NULL, &evicted), OCB_OK);
    ck_assert(!evicted);
    e = entry("a", "c5", "r", 10000);
    ck_assert_int_eq(requesters_insert(rq, &e, 60, NULL, NULL, &evicted), OCB_OK);
    ck_assert(!evicted);
    ck_assert(requesters_lookup(rq, "a", "c1", NULL));
    ck_assert(!requesters_lookup(rq, "a", "c4", NULL));
    requesters_free(rq);
}
END_TEST

START_TEST(statuses_forwarded_and_final_shortens)
{
    struct ocb_requesters *rq = NULL;
    struct seen s;
    seen_init(&s);
    ck_assert_int_eq(requesters_new(8, &rq), OCB_OK);
    struct ocb_requester e = entry("a", "c1", "r1", 100000), got;
    ck_assert_int_eq(requesters_insert(rq, &e, 0, record, &s, NULL), OCB_OK);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(requesters_on_status(rq, "a", "c1", "SENT", 4, false, 500, 10, record, &s));
    ck_assert(!requesters_on_status(rq, "b", "c1", "X", 1, false, 500, 10, record, &s));
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.what[0], "c1|r1|SENT");
    ck_assert(requesters_on_status(rq, "a", "c1", "SUCCESSFUL", 10, true, 500, 20, record, &s));
    ck_assert(requesters_lookup(rq, "a", "c1", &got));
    ck_assert_int_eq(got.expires_ms, 520);
    /* A late, out-of-order status still arrives within the grace. */
    ck_assert(requesters_on_status(rq, "a", "c1", "DELIVERED", 9, false, 500, 519, record, &s));
    ck_assert(!requesters_on_status(rq, "a", "c1", "LATE", 4, false, 500, 520, record, &s));
    ck_assert_uint_eq(s.n, 3);
    requesters_free(rq);
}
END_TEST

START_TEST(early_statuses_replayed_in_order)
{
    struct ocb_requesters *rq = NULL;
    struct seen s;
    seen_init(&s);
    ck_assert_int_eq(requesters_new(8, &rq), OCB_OK);
    ck_assert(!requesters_on_status(rq, "a", "c1", "SENT", 4, false, 500, 0, record, &s));
    ck_assert(!requesters_on_status(rq, "b", "c1", "OTHERAPP", 8, false, 500, 1, record, &s));
    ck_assert(!requesters_on_status(rq, "a", "c1", "DELIVERED", 9, false, 500, 2, record, &s));
    ck_assert(!requesters_on_status(rq, "a", "c2", "STALE", 5, false, 500, 3, record, &s));
    char big[OCB_REQUESTERS_EARLY_BODY_MAX + 1];
    memset(big, 'x', sizeof(big));
    ck_assert(!requesters_on_status(rq, "a", "c3", big, sizeof(big), false, 500, 3, record, &s));
    ck_assert_uint_eq(s.n, 0);

    struct ocb_requester e = entry("a", "c1", "r1", 100000);
    ck_assert_int_eq(requesters_insert(rq, &e, 5, record, &s, NULL), OCB_OK);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_str_eq(s.what[0], "c1|r1|SENT");
    ck_assert_str_eq(s.what[1], "c1|r1|DELIVERED");
    /* Replayed statuses are forgotten: a second insert gets none. */
    ck_assert_int_eq(requesters_insert(rq, &e, 6, record, &s, NULL), OCB_OK);
    ck_assert_uint_eq(s.n, 2);
    /* Kept statuses expire. */
    e = entry("a", "c2", "r2", 100000);
    ck_assert_int_eq(
        requesters_insert(rq, &e, 3 + OCB_REQUESTERS_EARLY_KEEP_MS + 1, record, &s, NULL), OCB_OK);
    ck_assert_uint_eq(s.n, 2);
    /* Over the body cap: not kept. */
    e = entry("a", "c3", "r3", 100000);
    ck_assert_int_eq(requesters_insert(rq, &e, 10, record, &s, NULL), OCB_OK);
    ck_assert_uint_eq(s.n, 2);
    requesters_free(rq);
}
END_TEST

/* ---- two threads: statuses racing their requester's insert */

#define RACE_COMMANDS 30 /* 2 statuses each: all fit the early ring */

struct race {
    struct ocb_requesters *rq;
    struct seen *s;
};

static void *race_statuses(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < RACE_COMMANDS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        requesters_on_status(r->rq, "a", id, "1", 1, false, 500, 0, record, r->s);
        requesters_on_status(r->rq, "a", id, "2", 1, false, 500, 0, record, r->s);
    }
    return NULL;
}

START_TEST(racing_statuses_arrive_once_in_order)
{
    struct ocb_requesters *rq = NULL;
    static struct seen s;
    seen_init(&s);
    ck_assert_int_eq(requesters_new(64, &rq), OCB_OK);
    struct race r = {rq, &s};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, race_statuses, &r), 0);
    for (int i = 0; i < RACE_COMMANDS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        struct ocb_requester e = entry("a", id, "r", 100000);
        ck_assert_int_eq(requesters_insert(rq, &e, 0, record, &s, NULL), OCB_OK);
    }
    pthread_join(t, NULL);
    /* Whatever the interleaving, each command got "1" then "2", once each. */
    ck_assert_uint_eq(s.n, 2 * RACE_COMMANDS);
    for (int i = 0; i < RACE_COMMANDS; i++) {
        char want1[32], want2[32];
        snprintf(want1, sizeof(want1), "c%d|r|1", i);
        snprintf(want2, sizeof(want2), "c%d|r|2", i);
        int at1 = -1, at2 = -1;
        for (unsigned k = 0; k < s.n; k++) {
            if (strcmp(s.what[k], want1) == 0) {
                ck_assert_int_eq(at1, -1);
                at1 = (int)k;
            } else if (strcmp(s.what[k], want2) == 0) {
                ck_assert_int_eq(at2, -1);
                at2 = (int)k;
            }
        }
        ck_assert_msg(at1 >= 0 && at2 > at1, "c%d: %d %d", i, at1, at2);
    }
    requesters_free(rq);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const requesters_tests[] = {entry_fill_bounds,
                                             insert_lookup_remove_expire,
                                             full_map_forgets_the_oldest,
                                             statuses_forwarded_and_final_shortens,
                                             early_statuses_replayed_in_order,
                                             racing_statuses_arrive_once_in_order,
                                             NULL};
    const struct th_loop requesters_loops[] = {{racing_statuses_arrive_once_in_order, 0, 20},
                                               {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "requesters", .tests = requesters_tests, .loops = requesters_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "requesters", cases);
}
