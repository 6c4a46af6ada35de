/*
 * test_docker_files.c: the operator's files are valid as shipped.
 *
 * No container engine runs in CI (tests/docker/smoke runs the image and the
 * compose stack for real, outside ctest), so each file is checked by the tool
 * that consumes it: the compose file by docker-compose's own parser, the systemd
 * unit by systemd-analyze, the man page by groff with every warning on, the
 * Grafana dashboard by a JSON parser.  The Dockerfile cannot be built here;
 * what can be checked is that it builds the way CI does, with the same
 * scripts.  A tool that is not installed skips its check with a message
 * (scripts/install-deps installs docker-compose for CI).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "th_docker.h"
#include "th_main.h"

#define RUN_TIMEOUT_MS 60000

static void skip(const char *what)
{
    fprintf(stderr, "SKIP: %s\n", what);
}

START_TEST(compose_file_parses_with_every_profile)
{
    char compose[TH_PATH_MAX], file[TH_PATH_MAX];
    struct th_proc p;

    if (!th_which("docker-compose", compose, sizeof(compose))) {
        skip("docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    th_source_path(file, sizeof(file), "docker/docker-compose.yml");
    char *plain[] = {compose, "-f", file, "config", "-q", NULL};
    ck_assert_int_eq(th_run(&p, "compose-config", plain, RUN_TIMEOUT_MS), 0);

    /* The demo profile adds the simulator and the subscription step. */
    char *demo[] = {compose, "-f", file, "--profile", "demo", "config", "--services", NULL};
    ck_assert_int_eq(th_run(&p, "compose-services", demo, RUN_TIMEOUT_MS), 0);
    char *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(out);
    static const char *const services[] = {"mosquitto\n", "certs\n", "ocbridge\n", "sim\n",
                                           "subscribe\n"};
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
        ck_assert_msg(strstr(out, services[i]) != NULL, "service %s missing from: %s", services[i],
                      out);
    free(out);
}
END_TEST

/* The host ports default to README's and move with OCB_PUBLISH_* (PORT or
 * IP:PORT), so the stack starts next to a Mosquitto already on 1883.
 * The expected text is docker-compose v1's rendering (Debian 12's). */
static char *compose_ports(const char *compose, const char *file, const char *name)
{
    struct th_proc p;
    char *argv[] = {(char *)compose, "-f", (char *)file, "--profile", "demo", "config", NULL};

    ck_assert_int_eq(th_run(&p, name, argv, RUN_TIMEOUT_MS), 0);
    char *out = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(compose_host_ports_follow_ocb_publish)
{
    char compose[TH_PATH_MAX], file[TH_PATH_MAX];

    if (!th_which("docker-compose", compose, sizeof(compose))) {
        skip("docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    th_source_path(file, sizeof(file), "docker/docker-compose.yml");
    ck_assert_int_eq(unsetenv("OCB_PUBLISH_MQTT"), 0);
    ck_assert_int_eq(unsetenv("OCB_PUBLISH_HTTP"), 0);
    ck_assert_int_eq(unsetenv("OCB_PUBLISH_SIM"), 0);
    char *out = compose_ports(compose, file, "compose-ports-default");
    static const char *const dflt[] = {"published: 1883\n", "published: 8080\n",
                                       "- 127.0.0.1:8744:8744/tcp\n"};
    for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
        ck_assert_msg(strstr(out, dflt[i]) != NULL, "no \"%s\" in: %s", dflt[i], out);
    free(out);

    ck_assert_int_eq(setenv("OCB_PUBLISH_MQTT", "127.0.0.1:11883", 1), 0);
    ck_assert_int_eq(setenv("OCB_PUBLISH_HTTP", "18080", 1), 0);
    ck_assert_int_eq(setenv("OCB_PUBLISH_SIM", "127.0.0.1:18744", 1), 0);
    out = compose_ports(compose, file, "compose-ports-moved");
    static const char *const moved[] = {"- 127.0.0.1:11883:1883/tcp\n", "published: 18080\n",
                                        "- 127.0.0.1:18744:8744/tcp\n"};
    for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++)
        ck_assert_msg(strstr(out, moved[i]) != NULL, "no \"%s\" in: %s", moved[i], out);
    ck_assert_msg(strstr(out, "published: 1883\n") == NULL, "1883 still published: %s", out);
    free(out);
}
END_TEST

START_TEST(dockerfile_builds_with_the_ci_scripts)
{
    char path[TH_PATH_MAX];

    th_source_path(path, sizeof(path), "docker/Dockerfile");
    char *df = th_read_file(path, NULL);
    ck_assert_ptr_nonnull(df);
    ck_assert_ptr_nonnull(strstr(df, "FROM debian:bookworm-slim AS build"));
    ck_assert_ptr_nonnull(strstr(df, "RUN scripts/install-deps"));
    ck_assert_ptr_nonnull(strstr(df, "RUN scripts/build "));
    ck_assert_ptr_nonnull(strstr(df, "HEALTHCHECK"));
    ck_assert_ptr_nonnull(strstr(df, "USER ocbridge"));
    free(df);

    /* Every file the Dockerfile copies out of the build exists in the tree. */
    static const char *const copied[] = {"docker/ocbridge.image.json", "docs/ocbridge.8",
                                         "scripts/install-deps", "scripts/build"};
    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        th_source_path(path, sizeof(path), copied[i]);
        char *f = th_read_file(path, NULL);
        ck_assert_msg(f != NULL, "%s is missing", copied[i]);
        free(f);
    }
}
END_TEST

START_TEST(systemd_unit_verifies)
{
    char analyze[TH_PATH_MAX], unit[TH_PATH_MAX], dir[TH_PATH_MAX], path[TH_PATH_MAX];
    struct th_proc p;

    if (!th_which("systemd-analyze", analyze, sizeof(analyze))) {
        skip("systemd-analyze is not installed");
        return;
    }
    /* Only the binary's path changes: systemd-analyze checks that it exists.
     * Documentation=man:ocbridge(8) is checked against our man page. */
    th_source_path(unit, sizeof(unit), "examples/systemd/ocbridge.service");
    char *text = th_read_file(unit, NULL);
    ck_assert_ptr_nonnull(text);
    const char *bin = th_env("OCB_BRIDGE_BIN");
    const char *from = "/usr/local/bin/ocbridge";
    size_t cap = strlen(text) * 2 + 4096, len = 0;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    for (const char *s = text; *s != '\0';) {
        if (strncmp(s, from, strlen(from)) == 0) {
            len += (size_t)snprintf(out + len, cap - len, "%s", bin);
            s += strlen(from);
        } else {
            out[len++] = *s++;
        }
        ck_assert(len < cap - 1);
    }
    out[len] = '\0';
    ck_assert_msg(strstr(text, "ExecStart=/usr/local/bin/ocbridge -c ") != NULL,
                  "the unit no longer starts /usr/local/bin/ocbridge -c");
    th_path(path, sizeof(path), "ocbridge.service");
    ck_assert(th_write_file(path, out, len));
    th_path(dir, sizeof(dir), "man");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    th_path(dir, sizeof(dir), "man/man8");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    th_path(dir, sizeof(dir), "man/man8/ocbridge.8");
    th_source_path(unit, sizeof(unit), "docs/ocbridge.8");
    ck_assert_int_eq(symlink(unit, dir), 0);
    th_path(dir, sizeof(dir), "man");
    ck_assert_int_eq(setenv("MANPATH", dir, 1), 0);

    /* Without man(1) the Documentation= check cannot run at all. */
    char manbin[TH_PATH_MAX];
    bool have_man = th_which("man", manbin, sizeof(manbin));
    char *verify[] = {analyze, "verify", have_man ? path : "--man=no", have_man ? NULL : path,
                      NULL};
    int st = th_run(&p, "systemd-analyze", verify, RUN_TIMEOUT_MS);
    char *log = th_read_file(p.log, NULL);
    ck_assert_msg(st == 0 && log != NULL && log[0] == '\0', "systemd-analyze verify: %s",
                  log != NULL ? log : "");
    free(log);
    free(out);
    free(text);
}
END_TEST

START_TEST(man_page_renders_without_warnings)
{
    char groff[TH_PATH_MAX], page[TH_PATH_MAX];
    struct th_proc p;

    if (!th_which("groff", groff, sizeof(groff))) {
        skip("groff is not installed (apt-get install groff-base)");
        return;
    }
    th_source_path(page, sizeof(page), "docs/ocbridge.8");
    /* -z: format but discard; only diagnostics reach the log. */
    char *check[] = {groff, "-man", "-Tutf8", "-ww", "-z", page, NULL};
    int st = th_run(&p, "groff-check", check, RUN_TIMEOUT_MS);
    char *log = th_read_file(p.log, NULL);
    ck_assert_msg(st == 0 && log != NULL && log[0] == '\0', "groff: %s", log ? log : "");
    free(log);

    /* And it says what an operator looks for. */
    char *render[] = {groff, "-man", "-Tascii", "-P", "-cbou", page, NULL};
    ck_assert_int_eq(th_run(&p, "groff-render", render, RUN_TIMEOUT_MS), 0);
    char *text = th_read_file(p.log, NULL);
    ck_assert_ptr_nonnull(text);
    static const char *const wanted[] = {
        "SYNOPSIS",  "ocbridge -t -c file", "subscribe", "--version",   "SIGTERM",
        "SIGHUP",    "OCB_MQTT_URL",        "OCB_APPS",  "EXIT STATUS", "FILES",
        "log.format"};
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
        ck_assert_msg(strstr(text, wanted[i]) != NULL, "the man page lacks \"%s\"", wanted[i]);
    free(text);
}
END_TEST

START_TEST(prometheus_files_parse)
{
    char path[TH_PATH_MAX];

    th_source_path(path, sizeof(path), "examples/prometheus/grafana-dashboard.json");
    char *text = th_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    cJSON *dash = cJSON_Parse(text);
    ck_assert_msg(dash != NULL, "grafana-dashboard.json is not JSON");
    cJSON *panels = cJSON_GetObjectItemCaseSensitive(dash, "panels");
    ck_assert(cJSON_IsArray(panels) && cJSON_GetArraySize(panels) > 0);
    size_t exprs = 0;
    cJSON *panel;
    cJSON_ArrayForEach(panel, panels)
    {
        cJSON *t, *targets = cJSON_GetObjectItemCaseSensitive(panel, "targets");
        cJSON_ArrayForEach(t, targets)
        {
            const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "expr"));
            ck_assert_msg(e != NULL && strstr(e, "ocb_") != NULL, "a target without an expr");
            exprs++;
        }
    }
    ck_assert_uint_ge(exprs, 10);
    cJSON_Delete(dash);
    free(text);

    th_source_path(path, sizeof(path), "examples/prometheus/prometheus.yml");
    text = th_read_file(path, NULL);
    ck_assert_msg(text != NULL && strstr(text, "metrics_path: /metrics") != NULL,
                  "prometheus.yml does not scrape /metrics");
    free(text);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const files_tests[] = {compose_file_parses_with_every_profile,
                                        compose_host_ports_follow_ocb_publish,
                                        dockerfile_builds_with_the_ci_scripts,
                                        systemd_unit_verifies,
                                        man_page_renders_without_warnings,
                                        prometheus_files_parse,
                                        NULL};
    const struct th_case cases[] = {
        {.name = "files", .tests = files_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "docker_files", cases);
}
