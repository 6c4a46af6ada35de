/*
 * test_cli.c: the daemon's command line as an operator meets it:
 * --version, --help, -t (configuration check), usage errors, start-up
 * failures with a clear log line and exit status 1, and SIGINT/SIGTERM
 * shutting down cleanly (exit 0).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_main.h"

/* Run the bridge with argv (NULL-terminated, without argv[0]); return its exit status and
 * leave its output in *out (caller frees). */
static int run(char **out, const char *name, const char *const *args)
{
    char *argv[8];
    /* Static: the harness keeps a pointer to every child it started until the test process
     * exits and then kills what it finds there; a stack struct left it a dangling pointer
     * whose stale "pid" could name the test process itself (a flaky SIGKILL). */
    static struct th_proc p;
    int n = 0, st;

    memset(&p, 0, sizeof(p));
    argv[n++] = (char *)th_env("OCB_BRIDGE_BIN");
    while (*args != NULL && n < 7)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    th_spawn(&p, name, argv);
    st = th_wait_exit(&p, 15000);
    ck_assert_msg(st >= 0, "%s did not exit", name);
    *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(*out);
    return st;
}

static void write_config(char *path, size_t cap, const char *name, const char *json)
{
    th_path(path, cap, name);
    ck_assert(th_write_file(path, json, strlen(json)));
}

START_TEST(version_and_help)
{
    char *out;

    ck_assert_int_eq(run(&out, "version", (const char *[]){"--version", NULL}), 0);
    ck_assert_msg(strncmp(out, "ocbridge ", 9) == 0, "got: %s", out);
    free(out);
    ck_assert_int_eq(run(&out, "help", (const char *[]){"--help", NULL}), 0);
    ck_assert_ptr_nonnull(strstr(out, "ocbridge -t -c FILE"));
    free(out);
    /* usage errors: exit 2 with the usage text */
    ck_assert_int_eq(run(&out, "noargs", (const char *[]){NULL}), 2);
    ck_assert_ptr_nonnull(strstr(out, "-c FILE is required"));
    free(out);
    ck_assert_int_eq(run(&out, "badarg", (const char *[]){"--frobnicate", NULL}), 2);
    ck_assert_ptr_nonnull(strstr(out, "usage:"));
    free(out);
}
END_TEST

START_TEST(config_check)
{
    char good[512], bad[512], *out, want[600];

    write_config(good, sizeof(good), "good.json", "{\"apps\":[{\"app_id\":\"a\"}]}");
    ck_assert_int_eq(run(&out, "check-good", (const char *[]){"-t", "-c", good, NULL}), 0);
    ck_assert_str_eq(out, "configuration OK\n");
    free(out);

    write_config(bad, sizeof(bad), "bad.json",
                 "{\"apps\":[{\"app_id\":\"a\"}],\"mqtt\":{\"qos\":7}}");
    ck_assert_int_eq(run(&out, "check-bad", (const char *[]){"-t", "-c", bad, NULL}), 1);
    snprintf(want, sizeof(want), "%s: mqtt.qos: ", bad);
    ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "got: %s", out);
    free(out);

    /* Running with a bad file fails the same way, before anything starts. */
    ck_assert_int_eq(run(&out, "run-bad", (const char *[]){"-c", bad, NULL}), 1);
    ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "got: %s", out);
    free(out);

    /* An app id with U+0085 (a C1 control) is no topic level: routing would answer every
     * push to it with 400, so the check refuses it with the same rule (issue 9). */
    write_config(bad, sizeof(bad), "c1.json", "{\"apps\":[{\"app_id\":\"a\\u0085b\"}]}");
    ck_assert_int_eq(run(&out, "check-c1", (const char *[]){"-t", "-c", bad, NULL}), 1);
    snprintf(want, sizeof(want), "%s: apps[0].app_id: ", bad);
    ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "got: %s", out);
    ck_assert_msg(strstr(out, "control character") != NULL, "got: %s", out);
    ck_assert_ptr_null(strstr(out, "configuration OK"));
    free(out);
}
END_TEST

START_TEST(listen_failure_exits_1)
{
    struct th_broker b;
    struct th_bridge first;
    char cfg[1024], *out;

    memset(&b, 0, sizeof(b));
    memset(&first, 0, sizeof(first));
    th_broker_start(&b, NULL);
    first.port = th_free_port();
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\"},\"mqtt\":{\"url\":\"%s\"},"
             "\"apps\":[{\"app_id\":\"a\"}]}",
             first.port, b.url);
    th_bridge_start(&first, cfg, false);

    /* A second bridge on the same port cannot listen: it says so and exits 1. */
    {
        char path[512], dir[512], cfg2[1600];
        th_path(dir, sizeof(dir), "second-state");
        snprintf(cfg2, sizeof(cfg2),
                 "{\"http\":{\"listen\":\"127.0.0.1:%d\"},\"mqtt\":{\"url\":\"%s\"},"
                 "\"state\":{\"dir\":\"%s\"},\"apps\":[{\"app_id\":\"a\"}]}",
                 first.port, b.url, dir);
        write_config(path, sizeof(path), "second.json", cfg2);
        ck_assert_int_eq(run(&out, "second", (const char *[]){"-c", path, NULL}), 1);
        ck_assert_msg(strstr(out, "cannot listen") != NULL, "got: %s", out);
        /* Every line that names a port names the configured one. */
        {
            char want[32];
            snprintf(want, sizeof(want), "port %d", first.port);
            ck_assert_msg(strstr(out, want) != NULL, "no '%s' in: %s", want, out);
            ck_assert_msg(strstr(out, "port 0") == NULL, "names port 0: %s", out);
        }
        free(out);
    }

    /* SIGINT stops the first one cleanly. */
    ck_assert_int_eq(th_stop(&first.proc, SIGINT, 15000), 0);
    ck_assert(th_log_contains(&first.proc, "SIGINT received"));
    ck_assert(th_log_contains(&first.proc, "stopped"));
    th_broker_stop(&b);
}
END_TEST

START_TEST(unusable_state_dir_exits_1)
{
    char path[512], file[512], cfg[1200], *out;

    /* state.dir names a regular file: it can be neither created nor written. */
    th_path(file, sizeof(file), "not-a-dir");
    ck_assert(th_write_file(file, "x", 1));
    snprintf(cfg, sizeof(cfg),
             "{\"http\":{\"listen\":\"127.0.0.1:%d\"},\"state\":{\"dir\":\"%s/sub\"},"
             "\"apps\":[{\"app_id\":\"a\"}]}",
             th_free_port(), file);
    write_config(path, sizeof(path), "bad-state.json", cfg);
    ck_assert_int_eq(run(&out, "bad-state", (const char *[]){"-c", path, NULL}), 1);
    ck_assert_msg(strstr(out, "state.dir") != NULL && strstr(out, "cannot create") != NULL,
                  "got: %s", out);
    free(out);
}
END_TEST

START_TEST(state_command_reads_an_empty_or_missing_store)
{
    char path[512], dir[512], cfg[1200], *out;

    th_path(dir, sizeof(dir), "cli-state");
    snprintf(cfg, sizeof(cfg), "{\"state\":{\"dir\":\"%s\"},\"apps\":[{\"app_id\":\"a\"}]}", dir);
    write_config(path, sizeof(path), "state.json", cfg);
    ck_assert_int_eq(run(&out, "state", (const char *[]){"state", "-c", path, NULL}), 0);
    ck_assert_msg(strstr(out, "(not created yet)") != NULL, "got: %s", out);
    ck_assert_msg(strstr(out, "spool: 0 message(s), 0 bytes") != NULL, "got: %s", out);
    ck_assert_msg(strstr(out, "unfinished commands: 0\nrequesters: 0\n") != NULL, "got: %s", out);
    free(out);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const cli_tests[] = {version_and_help,
                                      config_check,
                                      listen_failure_exits_1,
                                      unusable_state_dir_exits_1,
                                      state_command_reads_an_empty_or_missing_store,
                                      NULL};
    const struct th_case cases[] = {
        {.name = "cli", .timeout_s = 60, .tests = cli_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "cli", cases);
}
