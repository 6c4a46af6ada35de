/*
 * test_list.c: the intrusive list (list.h): a table of operation scripts
 * with the expected contents after each, and a randomized run of push,
 * remove and pop against an array model, checking order both ways, the
 * linked flags, the safe iteration that frees as it goes, and splicing.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/list.h"
#include "th_main.h"

#define N_ITEMS 64

struct item {
    int id;
    struct ocb_list link;
};

static struct item items[N_ITEMS];

/* The list's ids front to back into out (at most cap); also checks the back-to-front walk. */
static size_t ids_of(const struct ocb_list *l, int *out, size_t cap)
{
    size_t n = 0, m = 0;
    struct ocb_list *pos;

    ocb_list_for_each (pos, l) {
        ck_assert_uint_lt(n, cap);
        out[n++] = ocb_list_entry(pos, struct item, link)->id;
    }
    ocb_list_for_each_reverse (pos, l) {
        ck_assert_uint_lt(m, n);
        ck_assert_int_eq(ocb_list_entry(pos, struct item, link)->id, out[n - 1 - m]);
        m++;
    }
    ck_assert_uint_eq(m, n);
    ck_assert(ocb_list_empty(l) == (n == 0));
    return n;
}

/* ---- table: a script of operations on items 0..9 and the ids expected after it */

struct script {
    const char *ops;  /* B<d>: push_back item d, F<d>: push_front, R<d>: remove, P: pop_front */
    const char *want; /* ids front to back as digits; "" for empty */
    int popped;       /* id of the last P, -1 when it found the list empty (or no P) */
};

static const struct script scripts[] = {
    {"", "", -1},
    {"B1", "1", -1},
    {"B1B2B3", "123", -1},
    {"F1F2F3", "321", -1},
    {"B1F2B3F4", "4213", -1},
    {"B1B2B3R2", "13", -1},
    {"B1B2B3R1", "23", -1},
    {"B1B2B3R3", "12", -1},
    {"B1R1", "", -1},
    {"B1R1R1", "", -1}, /* removing twice is harmless */
    {"B1B2P", "2", 1},
    {"P", "", -1},
    {"B1PP", "", -1},
    {"B1B2R1B1", "21", -1}, /* a removed member can be pushed again */
    {"B5B6B7R6F6P", "57", 6},
};

START_TEST(scripted)
{
    const struct script *s = &scripts[_i];
    struct ocb_list l;
    int got[N_ITEMS], popped = -1;
    char want[N_ITEMS + 1] = "";

    ocb_list_init(&l);
    for (int i = 0; i < 10; i++) {
        items[i].id = i;
        ocb_list_init(&items[i].link);
    }
    for (const char *p = s->ops; *p; p++) {
        if (*p == 'P') {
            struct ocb_list *n = ocb_list_pop_front(&l);
            popped = n ? ocb_list_entry(n, struct item, link)->id : -1;
            if (n)
                ck_assert(!ocb_list_linked(n));
            continue;
        }
        struct ocb_list *n = &items[p[1] - '0'].link;
        if (*p == 'B')
            ocb_list_push_back(&l, n);
        else if (*p == 'F')
            ocb_list_push_front(&l, n);
        else
            ocb_list_remove(n);
        ck_assert(ocb_list_linked(n) == (*p != 'R'));
        p++;
    }
    size_t n = ids_of(&l, got, N_ITEMS);
    for (size_t i = 0; i < n; i++)
        want[i] = (char)('0' + got[i]);
    want[n] = '\0';
    ck_assert_str_eq(want, s->want);
    ck_assert_int_eq(popped, s->popped);
    if (n > 0) {
        ck_assert_int_eq(ocb_list_entry(ocb_list_front(&l), struct item, link)->id, got[0]);
        ck_assert_int_eq(ocb_list_entry(ocb_list_back(&l), struct item, link)->id, got[n - 1]);
    } else {
        ck_assert_ptr_null(ocb_list_front(&l));
        ck_assert_ptr_null(ocb_list_back(&l));
    }
}
END_TEST

START_TEST(static_head_is_empty)
{
    static struct ocb_list l = OCB_LIST_HEAD_INIT(l);

    ck_assert(ocb_list_empty(&l));
    ck_assert_ptr_null(ocb_list_pop_front(&l));
}
END_TEST

/* ---- randomized against an array model */

START_TEST(randomized_against_an_array)
{
    struct ocb_list l;
    int model[N_ITEMS], got[N_ITEMS];
    size_t n = 0;
    bool on[N_ITEMS] = {false};
    unsigned seed = 12345u + (unsigned)_i;

    ocb_list_init(&l);
    for (int i = 0; i < N_ITEMS; i++)
        items[i].id = i;
    for (int step = 0; step < 2000; step++) {
        int op = rand_r(&seed) % 4;
        int id = rand_r(&seed) % N_ITEMS;

        if (op <= 1 && !on[id]) {
            if (op == 0) {
                ocb_list_push_back(&l, &items[id].link);
                model[n++] = id;
            } else {
                ocb_list_push_front(&l, &items[id].link);
                memmove(model + 1, model, n * sizeof(model[0]));
                model[0] = id;
                n++;
            }
            on[id] = true;
        } else if (op == 2 && on[id]) {
            ocb_list_remove(&items[id].link);
            size_t k = 0;
            while (model[k] != id)
                k++;
            memmove(model + k, model + k + 1, (n - k - 1) * sizeof(model[0]));
            n--;
            on[id] = false;
            ck_assert(!ocb_list_linked(&items[id].link));
        } else if (op == 3) {
            struct ocb_list *f = ocb_list_pop_front(&l);
            if (n == 0) {
                ck_assert_ptr_null(f);
            } else {
                ck_assert_ptr_nonnull(f);
                ck_assert_int_eq(ocb_list_entry(f, struct item, link)->id, model[0]);
                on[model[0]] = false;
                memmove(model, model + 1, (n - 1) * sizeof(model[0]));
                n--;
            }
        }
        ck_assert_uint_eq(ids_of(&l, got, N_ITEMS), n);
        ck_assert(memcmp(got, model, n * sizeof(model[0])) == 0);
    }
}
END_TEST

/* The safe walk frees as it goes (ASan sees any touch of a freed element). */
START_TEST(safe_walk_frees_every_other)
{
    struct ocb_list l, *pos, *tmp;
    int got[N_ITEMS];

    ocb_list_init(&l);
    for (int i = 0; i < 10; i++) {
        struct item *it = malloc(sizeof(*it));
        ck_assert_ptr_nonnull(it);
        it->id = i;
        ocb_list_push_back(&l, &it->link);
    }
    ocb_list_for_each_safe (pos, tmp, &l) {
        struct item *it = ocb_list_entry(pos, struct item, link);
        if (it->id % 2 == 0) {
            ocb_list_remove(pos);
            free(it);
        }
    }
    ck_assert_uint_eq(ids_of(&l, got, N_ITEMS), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(got[i], 2 * i + 1);
    ocb_list_for_each_safe (pos, tmp, &l) {
        ocb_list_remove(pos);
        free(ocb_list_entry(pos, struct item, link));
    }
    ck_assert(ocb_list_empty(&l));
}
END_TEST

/* ---- splice: a whole list moves to the back of another in order, leaving its head empty */

static void push_ids(struct ocb_list *l, int from, int to)
{
    for (int i = from; i < to; i++) {
        items[i].id = i;
        ocb_list_push_back(l, &items[i].link);
    }
}

START_TEST(splice_moves_all_in_order)
{
    struct ocb_list dst, src;
    int got[N_ITEMS];

    ocb_list_init(&dst);
    ocb_list_init(&src);
    ocb_list_splice_back(&dst, &src); /* empty into empty */
    ck_assert_uint_eq(ids_of(&dst, got, N_ITEMS), 0);
    ck_assert_uint_eq(ids_of(&src, got, N_ITEMS), 0);

    push_ids(&src, 0, 3);
    ocb_list_splice_back(&dst, &src); /* into an empty list */
    ck_assert_uint_eq(ids_of(&src, got, N_ITEMS), 0);
    ck_assert_uint_eq(ids_of(&dst, got, N_ITEMS), 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(got[i], i);

    ocb_list_splice_back(&dst, &src); /* an empty source changes nothing */
    ck_assert_uint_eq(ids_of(&dst, got, N_ITEMS), 3);

    push_ids(&src, 3, 7);
    ocb_list_splice_back(&dst, &src); /* behind existing members */
    ck_assert_uint_eq(ids_of(&src, got, N_ITEMS), 0);
    ck_assert_uint_eq(ids_of(&dst, got, N_ITEMS), 7);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(got[i], i);

    push_ids(&src, 7, 8); /* the emptied source is a usable head */
    ck_assert_uint_eq(ids_of(&src, got, N_ITEMS), 1);
    ck_assert_int_eq(got[0], 7);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const list_tests[] = {scripted,
                                       static_head_is_empty,
                                       randomized_against_an_array,
                                       safe_walk_frees_every_other,
                                       splice_moves_all_in_order,
                                       NULL};
    const struct th_loop list_loops[] = {{scripted, 0, (int)(sizeof(scripts) / sizeof(scripts[0]))},
                                         {randomized_against_an_array, 0, 4},
                                         {NULL, 0, 0}};
    const struct th_case cases[] = {
        {.name = "list", .tests = list_tests, .loops = list_loops},
        {.name = NULL},
    };

    return th_main(argc, argv, "list", cases);
}
