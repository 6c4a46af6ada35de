/*
 * th_docker.h: harness helpers for the operator-facing files (docker/,
 * examples/, docs/): find and run external programs (docker-compose, groff,
 * systemd-analyze, python3, node, npm) and start Mosquitto from the compose
 * stack's own configuration.
 *
 * Like harness.h, everything here is for Check test bodies on the test's main
 * thread and aborts the test on setup failures.
 */
#ifndef OCB_TEST_TH_DOCKER_H
#define OCB_TEST_TH_DOCKER_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

/* The demo users of docker/mosquitto/passwd (documented in README.md, "Docker"). */
#define TH_DOCKER_BRIDGE_USER "ocbridge"
#define TH_DOCKER_BRIDGE_PASS "ocbridge-demo-password"
#define TH_DOCKER_CLIENT_USER "client"
#define TH_DOCKER_CLIENT_PASS "client-demo-password"
#define TH_DOCKER_VIEWER_USER "viewer"
#define TH_DOCKER_VIEWER_PASS "viewer-demo-password"

/* The absolute path of prog found in PATH (then /usr/sbin, /sbin) into out;
 * false when it is not installed. */
bool th_which(const char *prog, char *out, size_t cap);

/* Run argv (argv[0] an absolute path) to completion with its output in
 * th_tmpdir()/<name>.log; *out receives a copy of the finished process (its
 * log path and status).  Returns the exit status; a process still running
 * after timeout_ms is killed and the test aborted.  At most 32 per test. */
int th_run(struct th_proc *out, const char *name, char *const argv[], int timeout_ms);

/* OCB_SOURCE_DIR/rel into out. */
void th_source_path(char *out, size_t cap, const char *rel);

/*
 * Start Mosquitto from docker/mosquitto/mosquitto.conf as shipped, changing
 * only what a test must: the listener (127.0.0.1 and a free port), the paths
 * of the password file, the ACL and the persistence directory, and, when the
 * tests run as root, `user root` (Mosquitto would otherwise drop to a user
 * that cannot write the test's directory).  b->url is the broker's URL.
 */
void th_docker_broker_start(struct th_broker *b);

#endif
