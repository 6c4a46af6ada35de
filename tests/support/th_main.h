/*
 * th_main.h: the one main() of every Check test program.
 *
 * A program lists its test cases (name, fixtures, timeout, tests) and hands
 * them to th_main(), which builds the suite and runs it.  Named on the
 * command line, only those tests run, so one failing test can be rerun
 * alone under a debugger or with OCB_TEST_KEEP=1:
 *
 *   build-test/tests/it_test_commands retained_command_is_never_executed
 *   build-test/tests/unit_test_config --list
 *
 * A name that matches no test is an error (exit 2), not a silent pass.
 * Naming a loop test runs all of its iterations.
 * Depends on Check only, so unit, integration and fault suites all link it.
 */
#ifndef OCB_TEST_MAIN_H
#define OCB_TEST_MAIN_H

#include <check.h>

/* A loop test (tcase_add_loop_test): runs once for each i in [start, end). */
struct th_loop {
    const TTest *test;
    int start, end;
};

/* Write these with designated initializers; fields left out are NULL or 0. */
struct th_case {
    const char *name;
    void (*setup)(void); /* a checked fixture (runs in each test's process); may be NULL */
    void (*teardown)(void);
    double timeout_s;          /* 0: Check's default (CK_DEFAULT_TIMEOUT) */
    const TTest *const *tests; /* NULL-terminated, in the order they run */
    /* Which of tests are loop tests, and their ranges; terminated by a NULL test; may be NULL. */
    const struct th_loop *loops;
    /* An unchecked fixture: runs once in the runner's process around the case's tests (for
     * what every test shares, e.g. certificates); either may be NULL. */
    void (*unchecked_setup)(void);
    void (*unchecked_teardown)(void);
};

/* A TCP port on 127.0.0.1, free a moment ago, outside the ephemeral range (th_main.c says why).
 * Every test program may use it: it needs only libc. */
int th_free_port(void);

/* Run the cases (terminated by an entry whose name is NULL) as one suite.  argv may name
 * tests to run; "--list" prints every test's name.  Returns the exit status. */
int th_main(int argc, char **argv, const char *suite, const struct th_case *cases);

#endif
