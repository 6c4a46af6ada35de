/*
 * harness.h: the integration-test harness.  Tests see ocbridge only as users
 * do: real processes (the bridge, Mosquitto, the simulator), real sockets,
 * real certificates.  Everything here is for Check test bodies and aborts
 * the test (ck_abort_msg) on setup failures, so tests read as the behaviour
 * they check.
 *
 * Process hygiene: every child is started with PR_SET_PDEATHSIG (it dies
 * with the test process, even when Check kills a hung test) and registered;
 * at exit every registered child still running is killed by its PID and,
 * when the test failed (non-zero exit status), the tail of each child's log
 * is printed to stderr so `ctest --output-on-failure` shows it.  Each test
 * process (Check forks one per test) gets its own temporary directory,
 * removed at exit unless OCB_TEST_KEEP is set.
 *
 * Everything here may ck_assert, so call it from a test body, a checked
 * fixture or an unchecked fixture -- not from main() before the runner
 * starts (Check has nowhere to report to there).
 *
 * Thread-safe: the MQTT client and th_http*() may be used from several
 * threads; the process and broker helpers are for the test's main thread.
 */
#ifndef OCB_TEST_HARNESS_H
#define OCB_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "th_main.h"

#define TH_PATH_MAX       512
#define TH_MAX_USER_PROPS 16

/* ---- environment and files */

/* getenv(name), aborting the test when it is unset. */
const char *th_env(const char *name);
/* This test process's temporary directory (created on first use). */
const char *th_tmpdir(void);
/* th_tmpdir()/name into out. */
void th_path(char *out, size_t cap, const char *name);
bool th_write_file(const char *path, const void *data, size_t len);
/* The whole file, NUL-terminated, or NULL; *len may be NULL.  Caller frees. */
char *th_read_file(const char *path, size_t *len);
/* Sleep for ms milliseconds. */
void th_sleep_ms(unsigned ms);
/* Milliseconds on a monotonic clock. */
long long th_now_ms(void);
/* How much slower than a plain build the binaries under test run: OCB_TEST_TIME_SCALE
 * (1-10, default 1).  scripts/test sets it for the ThreadSanitizer stage; functional
 * deadlines (waits for an answer) are multiplied by it, never timing assertions. */
int th_time_scale(void);

/* ---- ports and processes */

/* th_free_port() is in th_main.h. */
/* Poll until 127.0.0.1:port accepts a connection; false after timeout_ms. */
bool th_wait_port(int port, int timeout_ms);

struct th_proc {
    pid_t pid; /* 0 when not running */
    char name[32];
    char log[TH_PATH_MAX]; /* stdout and stderr, appended across restarts */
    int status;            /* exit status once reaped: code, or 128 + signal */
};

/* Start argv[0] with argv, output to th_tmpdir()/<name>.log.  Aborts on failure. */
void th_spawn(struct th_proc *p, const char *name, char *const argv[]);
/* Send sig (if running) and wait up to timeout_ms for exit; then SIGKILL.
 * Returns the exit status (code, or 128 + signal). */
int th_stop(struct th_proc *p, int sig, int timeout_ms);
/* Wait up to timeout_ms for the process to exit by itself.  Returns its exit
 * status, or -1 if it is still running. */
int th_wait_exit(struct th_proc *p, int timeout_ms);
bool th_running(struct th_proc *p);
void th_signal(const struct th_proc *p, int sig);
/* Poll the process's log until it contains needle. */
bool th_log_wait(const struct th_proc *p, const char *needle, int timeout_ms);
bool th_log_contains(const struct th_proc *p, const char *needle);
/* Print the last max_lines lines of the log to stderr. */
void th_log_dump(const struct th_proc *p, int max_lines);

/* ---- Mosquitto (binary from OCB_MOSQUITTO_BIN) */

struct th_broker {
    int port; /* chosen on first start, kept across restarts */
    struct th_proc proc;
    char conf[TH_PATH_MAX];
    char url[64]; /* "tcp://127.0.0.1:<port>" */
};

/* Start a broker on 127.0.0.1 (anonymous, no persistence).  extra_conf (may
 * be NULL) is appended to the generated config, e.g. a TLS listener. */
void th_broker_start(struct th_broker *b, const char *extra_conf);
void th_broker_stop(struct th_broker *b);
/* Start again on the same port with the same config. */
void th_broker_restart(struct th_broker *b);
/* SIGSTOP / SIGCONT: the broker keeps its sockets but answers nothing. */
void th_broker_pause(struct th_broker *b);
void th_broker_resume(struct th_broker *b);

/* ---- MQTT client (paho MQTTClient), collects every message it receives */

struct th_msg {
    char *topic;
    unsigned char *payload; /* NUL-terminated for convenience; len excludes it */
    size_t len;
    int qos;
    bool retained;
    /* MQTT 5 properties (absent: NULL / -1 / 0) */
    char *content_type;
    int payload_format; /* -1 when absent */
    char *response_topic;
    unsigned char *correlation;
    size_t correlation_len;
    size_t n_user;
    char *user_key[TH_MAX_USER_PROPS];
    char *user_val[TH_MAX_USER_PROPS];
};

struct th_mqtt;

/* Connect (version 5 or 4 = 3.1.1, clean start).  NULL on failure. */
struct th_mqtt *th_mqtt_connect(const char *url, const char *client_id, int version);
/* The same with a user name and password (NULL: none).  NULL when the broker refuses. */
struct th_mqtt *th_mqtt_connect_auth(const char *url, const char *client_id, int version,
                                     const char *username, const char *password);
bool th_mqtt_subscribe(struct th_mqtt *c, const char *filter, int qos);
/* Publish and wait for completion (QoS 1/2: the ack).  MQTT 5 props may be NULL. */
bool th_mqtt_publish(struct th_mqtt *c, const char *topic, const void *payload, size_t len, int qos,
                     bool retained, const char *response_topic, const void *correlation,
                     size_t correlation_len);
size_t th_mqtt_count(struct th_mqtt *c);
/* Wait until at least n messages arrived. */
bool th_mqtt_wait(struct th_mqtt *c, size_t n, int timeout_ms);
/* The i-th message (arrival order); valid until th_mqtt_clear() or th_mqtt_free(). */
const struct th_msg *th_mqtt_msg(struct th_mqtt *c, size_t i);
/* Wait for the first message on exactly this topic; NULL after timeout_ms. */
const struct th_msg *th_mqtt_wait_topic(struct th_mqtt *c, const char *topic, int timeout_ms);
void th_mqtt_clear(struct th_mqtt *c);
void th_mqtt_free(struct th_mqtt *c);
/* The value of MQTT 5 user property key, or NULL. */
const char *th_msg_user_prop(const struct th_msg *m, const char *key);

/* ---- HTTP client (libcurl, never via a proxy) */

struct th_http_opts {
    const char *ca_file;   /* TLS: trust this CA (peer and host are verified) */
    const char *cert_file; /* TLS client certificate */
    const char *key_file;
    const char *content_type; /* default application/json for bodies */
    bool chunked;             /* send the body with Transfer-Encoding: chunked */
    long timeout_ms;          /* default 20000 */
};

struct th_http_resp {
    long status;   /* 0 when no HTTP answer arrived */
    int curl_code; /* CURLcode */
    char *body;    /* NUL-terminated */
    size_t len;
    char *headers; /* raw header block */
};

/* One request.  true when an HTTP answer arrived (any status).  opts may be NULL. */
bool th_http(const char *method, const char *url, const void *body, size_t len,
             const struct th_http_opts *opts, struct th_http_resp *resp);
/* Case-insensitive header lookup into out; NULL when absent. */
const char *th_http_header(const struct th_http_resp *resp, const char *name, char *out,
                           size_t cap);
void th_http_resp_free(struct th_http_resp *resp);

/* The same request on a thread of its own (body and opts strings are copied). */
struct th_http_async;
struct th_http_async *th_http_start(const char *method, const char *url, const void *body,
                                    size_t len, const struct th_http_opts *opts);
/* Wait for it; fills resp and frees a. */
bool th_http_join(struct th_http_async *a, struct th_http_resp *resp);

/* ---- the bridge (binary from OCB_BRIDGE_BIN) */

struct th_bridge {
    int port; /* the HTTP port the config listens on: set before start */
    struct th_proc proc;
    char config[TH_PATH_MAX];
    char base[64]; /* "http://127.0.0.1:<port>" (https when tls) */
};

/* Write config_json to a file and start `ocbridge -c FILE`; wait for the port.  Aborts
 * on failure (printing the bridge's log).  Unless config_json has a "state" section, the
 * bridge's state.dir is th_tmpdir()/state-<port> (OCB_STATE_DIR), so a restart on the
 * same port finds what the last run stored. */
void th_bridge_start(struct th_bridge *b, const char *config_json, bool tls);
/* SIGTERM and wait; returns the exit status. */
int th_bridge_stop(struct th_bridge *b);
/* Poll GET base/readyz until 200 and the broker is connected (ocb_mqtt_connected 1; with
 * the spool, /readyz is 200 without a broker); opts for TLS may be NULL. */
bool th_bridge_wait_ready(struct th_bridge *b, const struct th_http_opts *opts, int timeout_ms);
/* The value of one /metrics series, e.g. `ocb_pushes_total{notify_type="x",outcome="ok"}`;
 * -1 when absent. */
double th_metric(struct th_bridge *b, const struct th_http_opts *opts, const char *series);
/* Poll th_metric() until it equals want; false after timeout_ms. */
bool th_wait_metric(struct th_bridge *b, const struct th_http_opts *opts, const char *series,
                    double want, int timeout_ms);

/* ---- certificates (openssl CLI) */

/* Make dir (if needed) and in it ca.pem, ca-key.pem, server.pem, server-key.pem (CN localhost, SAN
 * localhost + 127.0.0.1), client.pem, client-key.pem, and a second, unrelated
 * CA's client: other-client.pem, other-client-key.pem.  Aborts on failure. */
void th_make_certs(const char *dir);

#endif
