/*
 * th_main.c: the shared test runner (th_main.h).
 */
#include "th_main.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Ports are handed out below Linux's ephemeral range (32768 and up by default): a port taken
 * from that range and closed again can be picked by any outgoing connection on the machine
 * (curl, paho, another test) before the server it was meant for binds it, or while that server
 * is down for a restart.  Each process walks the range from its own pid-derived start. */
#define PORT_FIRST 20000
#define PORT_COUNT 12000
#define PORT_STEP  7919 /* prime, so the walk visits every port of the range once */

/* Whether 127.0.0.1:port can be bound now (no listener, no socket left on it). */
static bool port_free(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    ck_assert_msg(fd >= 0, "socket failed");
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

int th_free_port(void)
{
    static pid_t owner;
    static unsigned next;

    if (owner != getpid()) { /* a new process (Check forks one per test): a new start */
        owner = getpid();
        next = ((unsigned)owner * 2654435761u) % PORT_COUNT;
    }
    for (int tries = 0; tries < PORT_COUNT; tries++) {
        int port = PORT_FIRST + (int)(next % PORT_COUNT);

        next += PORT_STEP;
        if (port_free(port))
            return port;
    }
    ck_abort_msg("no free port in %d..%d", PORT_FIRST, PORT_FIRST + PORT_COUNT - 1);
    return -1;
}

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
