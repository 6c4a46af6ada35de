/*
 * th_main.c: the shared test runner (th_main.h).
 */
#include "th_main.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool wanted(int argc, char **argv, const char *name, bool *used)
{
    if (argc < 2)
        return true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            used[i] = true;
            return true;
        }
    }
    return false;
}

/* The loop entry of t, or NULL when t is a plain test. */
static const struct th_loop *loop_of(const struct th_case *c, const TTest *t)
{
    if (c->loops == NULL)
        return NULL;
    for (const struct th_loop *l = c->loops; l->test != NULL; l++)
        if (l->test == t)
            return l;
    return NULL;
}

/* Run by hand (not through ctest), a test finds the binaries of its own build tree:
 * OCB_TEST_DEFAULT_ENV ("NAME=value|NAME=value|...", from tests/CMakeLists.txt) sets each
 * variable that is unset; an empty value (a target this build does not have) sets nothing. */
static void default_env(void)
{
#ifdef OCB_TEST_DEFAULT_ENV
    char all[] = OCB_TEST_DEFAULT_ENV;
    char *save = NULL;

    for (char *kv = strtok_r(all, "|", &save); kv != NULL; kv = strtok_r(NULL, "|", &save)) {
        char *eq = strchr(kv, '=');

        if (eq == NULL || eq[1] == '\0')
            continue;
        *eq = '\0';
        setenv(kv, eq + 1, 0);
    }
#endif
}

int th_main(int argc, char **argv, const char *suite_name, const struct th_case *cases)
{
    Suite *s;
    bool *used = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*used));
    size_t n = 0;
    SRunner *sr;
    int failed;

    if (used == NULL)
        return 2;
    default_env();
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (const struct th_case *c = cases; c->name != NULL; c++)
            for (const TTest *const *t = c->tests; *t != NULL; t++)
                printf("%s\n", (*t)->name);
        free(used);
        return 0;
    }
    s = suite_create(suite_name);
    for (const struct th_case *c = cases; c->name != NULL; c++) {
        TCase *tc = NULL;

        for (const TTest *const *t = c->tests; *t != NULL; t++) {
            const struct th_loop *loop;

            if (!wanted(argc, argv, (*t)->name, used))
                continue;
            if (tc == NULL) {
                tc = tcase_create(c->name);
                if (c->setup != NULL || c->teardown != NULL)
                    tcase_add_checked_fixture(tc, c->setup, c->teardown);
                if (c->unchecked_setup != NULL || c->unchecked_teardown != NULL)
                    tcase_add_unchecked_fixture(tc, c->unchecked_setup, c->unchecked_teardown);
                if (c->timeout_s > 0)
                    tcase_set_timeout(tc, c->timeout_s);
            }
            loop = loop_of(c, *t);
            if (loop != NULL)
                tcase_add_loop_test(tc, *t, loop->start, loop->end);
            else
                tcase_add_test(tc, *t);
            n++;
        }
        if (tc != NULL)
            suite_add_tcase(s, tc);
    }
    for (int i = 1; i < argc; i++) {
        if (!used[i]) {
            fprintf(stderr, "%s: no test named %s (--list shows them)\n", argv[0], argv[i]);
            free(used);
            srunner_free(srunner_create(s)); /* frees the suite */
            return 2;
        }
    }
    free(used);
    if (n == 0) {
        fprintf(stderr, "%s: no tests\n", argv[0]);
        srunner_free(srunner_create(s));
        return 2;
    }
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
