/*
 * th_sim.h: what the simulator's integration suites share.  They see ocbridge-sim only as
 * users do: the binary ($OCB_SIM_BIN) on ephemeral loopback ports, HTTPS with the certificates it
 * made, the control API, and a real HTTP server (libmicrohttpd) receiving its pushes.
 *
 * Functions assert with Check (ck_assert) and so must run inside a test or a fixture.
 * Thread-safety: the receiver is thread-safe (MHD threads record, the test reads); the rest is
 * for the test's own thread.
 */
#ifndef OCB_TEST_SIM_H
#define OCB_TEST_SIM_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h" /* th_sleep_ms(), th_now_ms(), th_env() */

/* A certificate directory made by `ocbridge-sim --make-certs` (once per suite). */
extern char th_sim_certs[256];
void th_sim_make_certs(void);   /* unchecked fixture setup */
void th_sim_remove_certs(void); /* unchecked fixture teardown */

struct th_sim {
    pid_t pid;
    unsigned api_port, admin_port;
    bool tls;
    char api[64];   /* "https://127.0.0.1:PORT" */
    char admin[64]; /* "http://127.0.0.1:PORT" */
};

/* Start the sim on ephemeral ports with --certs th_sim_certs plus args (NULL-terminated). */
void th_sim_start(struct th_sim *s, const char *const *args);
/* SIGTERM and assert a clean exit 0 within 10 s. */
void th_sim_stop(struct th_sim *s);
/* Run the binary with args and return its exit status; stderr captured into err. */
int th_sim_run(const char *const *args, char *err, size_t errlen);

struct th_sim_resp {
    long status; /* 0 when the transfer failed */
    int curl_rc;
    char *body;
    char content_type[128]; /* "" when the answer had none */
};
void th_sim_resp_free(struct th_sim_resp *r);
cJSON *th_sim_json(const struct th_sim_resp *r); /* parse or fail the test */

enum th_sim_cert { TH_SIM_CERT_CLIENT = 0, TH_SIM_CERT_NONE, TH_SIM_CERT_OTHER_CA };
extern char th_sim_other_certs[256]; /* a second CA's certificates */
void th_sim_make_other_certs(void);  /* make them (once) */

/* One HTTP request.  headers NULL-terminated or NULL. */
struct th_sim_resp th_sim_http(const char *method, const char *url, const char *const *headers,
                               const char *body, enum th_sim_cert cert);
/* API call with client certificate and app_key/Authorization headers (token NULL = none). */
struct th_sim_resp th_sim_api(const struct th_sim *s, const char *method, const char *path,
                              const char *app, const char *token, const char *body);
/* Control API call. */
struct th_sim_resp th_sim_admin(const struct th_sim *s, const char *method, const char *path,
                                const char *body);
/* Log in and return the access token (caller frees). */
char *th_sim_login(const struct th_sim *s, const char *app, const char *secret);
/* Assert status and exact body. */
void th_sim_expect(const struct th_sim_resp *r, long status, const char *body);
/* First device of the sim (from GET /devices), copied into out[37]. */
void th_sim_first_device(const struct th_sim *s, const char *app, char out[37]);

/* ---- push receiver ---- */

struct th_sim_push {
    char path[256];
    char content_type[64];
    char *body;
};

struct th_sim_receiver;
/* Start on an ephemeral port; tls = serve HTTPS with th_sim_certs/server.pem. */
struct th_sim_receiver *th_sim_recv_start(bool tls);
void th_sim_recv_stop(struct th_sim_receiver *r);
unsigned th_sim_recv_port(const struct th_sim_receiver *r);
/* Answers: statuses[i] for the i-th request, then dflt.  -1 = hang hang_ms then 200. */
void th_sim_recv_script(struct th_sim_receiver *r, const int *statuses, size_t n, int dflt,
                        long hang_ms);
/* Wait until at least n requests arrived (deadline ms); returns the count. */
size_t th_sim_recv_wait(struct th_sim_receiver *r, size_t n, long deadline_ms);
size_t th_sim_recv_count(struct th_sim_receiver *r);
/* Copy of request i (caller frees body). */
struct th_sim_push th_sim_recv_get(struct th_sim_receiver *r, size_t i);
/* Requests whose path equals path, in arrival order, as a JSON array of parsed bodies. */
cJSON *th_sim_recv_bodies(struct th_sim_receiver *r, const char *path);

/* Subscribe app to type at http://127.0.0.1:<port><path>; asserts 201. */
void th_sim_subscribe(const struct th_sim *s, const char *app, const char *token, const char *type,
                      const struct th_sim_receiver *r, const char *path);

/* The simulator's push log (GET /pushes on the control API), parsed; caller deletes. */
cJSON *th_sim_pushes(const struct th_sim *s);

#endif
