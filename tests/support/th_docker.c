/*
 * th_docker.c: running the operator-facing files for real.
 *
 * The compose stack cannot be started here (no container engine), so the
 * tests take its parts one by one: the Mosquitto configuration, users and ACL
 * run in a real Mosquitto (th_docker_broker_start), and the tools an operator
 * would run (docker-compose, groff, systemd-analyze, the example clients) are
 * found in PATH and run as child processes of the test (th_which, th_run).
 */
#include "th_docker.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONF_MAX (64 * 1024)
#define RUN_MAX  32

bool th_which(const char *prog, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    size_t start = 0;

    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin", path != NULL ? path : "/usr/bin:/bin");
    for (size_t i = 0;; i++) {
        if (dirs[i] != ':' && dirs[i] != '\0')
            continue;
        if (i > start) {
            int n = snprintf(out, cap, "%.*s/%s", (int)(i - start), dirs + start, prog);
            if (n > 0 && (size_t)n < cap && access(out, X_OK) == 0)
                return true;
        }
        if (dirs[i] == '\0')
            break;
        start = i + 1;
    }
    return false;
}

int th_run(struct th_proc *out, const char *name, char *const argv[], int timeout_ms)
{
    /* The harness keeps a pointer to every th_proc until the test exits, so
     * the processes run here live in this pool, not on the caller's stack. */
    static struct th_proc pool[RUN_MAX];
    static size_t used;
    struct th_proc *p;
    int st;

    ck_assert_msg(used < RUN_MAX, "more than %d th_run() calls in one test", RUN_MAX);
    p = &pool[used++];
    th_spawn(p, name, argv);
    st = th_wait_exit(p, timeout_ms);
    if (st < 0) {
        th_stop(p, SIGKILL, 5000);
        th_log_dump(p, 40);
        ck_abort_msg("%s did not finish within %d ms", name, timeout_ms);
    }
    *out = *p;
    return st;
}

void th_source_path(char *out, size_t cap, const char *rel)
{
    int n = snprintf(out, cap, "%s/%s", th_env("OCB_SOURCE_DIR"), rel);

    ck_assert_msg(n > 0 && (size_t)n < cap, "path too long: %s", rel);
}

/* Append one line to the config being built; abort when it does not fit. */
static void conf_add(char *conf, size_t *len, const char *line)
{
    int n = snprintf(conf + *len, CONF_MAX - *len, "%s\n", line);

    ck_assert_msg(n > 0 && (size_t)n < CONF_MAX - *len, "mosquitto config too long");
    *len += (size_t)n;
}

void th_docker_broker_start(struct th_broker *b)
{
    char src[TH_PATH_MAX], line[TH_PATH_MAX + 64], dir[TH_PATH_MAX], name[48];
    char *shipped, *conf, *next;
    size_t len = 0;
    bool listener = false;

    th_source_path(src, sizeof(src), "docker/mosquitto/mosquitto.conf");
    shipped = th_read_file(src, NULL);
    ck_assert_msg(shipped != NULL, "cannot read %s", src);
    conf = malloc(CONF_MAX);
    ck_assert_ptr_nonnull(conf);
    if (b->port == 0)
        b->port = th_free_port();
    snprintf(b->url, sizeof(b->url), "tcp://127.0.0.1:%d", b->port);
    if (geteuid() == 0)
        conf_add(conf, &len, "user root");

    /* Line by line: the shipped settings stay, four are pointed at the test. */
    for (char *l = shipped; *l != '\0'; l = next) {
        next = strchr(l, '\n');
        if (next != NULL)
            *next++ = '\0';
        else
            next = l + strlen(l);
        if (strncmp(l, "listener ", 9) == 0) {
            ck_assert_msg(!listener, "the test expects one listener in %s", src);
            listener = true;
            snprintf(line, sizeof(line), "listener %d 127.0.0.1", b->port);
        } else if (strncmp(l, "password_file ", 14) == 0) {
            th_source_path(dir, sizeof(dir), "docker/mosquitto/passwd");
            snprintf(line, sizeof(line), "password_file %s", dir);
        } else if (strncmp(l, "acl_file ", 9) == 0) {
            th_source_path(dir, sizeof(dir), "docker/mosquitto/acl");
            snprintf(line, sizeof(line), "acl_file %s", dir);
        } else if (strncmp(l, "persistence_location ", 21) == 0) {
            snprintf(line, sizeof(line), "persistence_location %s/", th_tmpdir());
        } else {
            snprintf(line, sizeof(line), "%s", l);
        }
        conf_add(conf, &len, line);
    }
    ck_assert_msg(listener, "no listener line in %s", src);
    snprintf(name, sizeof(name), "mosquitto-docker-%d.conf", b->port);
    th_path(b->conf, sizeof(b->conf), name);
    ck_assert_msg(th_write_file(b->conf, conf, len), "cannot write %s", b->conf);
    free(conf);
    free(shipped);
    th_broker_restart(b);
}
