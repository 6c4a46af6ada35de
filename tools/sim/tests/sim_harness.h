/*
 * sim_harness.h: what the simulator's integration suites share.  They see ocbridge-sim only as
 * users do: the binary ($OCB_SIM_BIN) on ephemeral loopback ports, HTTPS with the certificates it
 * made, the control API, and a real HTTP server (libmicrohttpd) receiving its pushes.
 *
 * Functions assert with Check (ck_assert) and so must run inside a test or a fixture.
 * Thread-safety: the receiver is thread-safe (MHD threads record, the test reads); the rest is
 * for the test's own thread.
 */
#ifndef SIM_HARNESS_H
#define SIM_HARNESS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A certificate directory made by `ocbridge-sim --make-certs` (once per suite). */
extern char h_certs[256];
void h_make_certs(void);   /* unchecked fixture setup */
void h_remove_certs(void); /* unchecked fixture teardown */

struct h_sim {
    pid_t pid;
    unsigned api_port, admin_port;
    bool tls;
    char api[64];   /* "https://127.0.0.1:PORT" */
    char admin[64]; /* "http://127.0.0.1:PORT" */
};

/* Start the sim on ephemeral ports with --certs h_certs plus args (NULL-terminated). */
void h_sim_start(struct h_sim *s, const char *const *args);
/* SIGTERM and assert a clean exit 0 within 10 s. */
void h_sim_stop(struct h_sim *s);
/* Run the binary with args and return its exit status; stderr captured into err. */
int h_sim_run(const char *const *args, char *err, size_t errlen);

struct h_resp {
    long status; /* 0 when the transfer failed */
    int curl_rc;
    char *body;
    char content_type[128]; /* "" when the answer had none */
};
void h_resp_free(struct h_resp *r);
cJSON *h_json(const struct h_resp *r); /* parse or fail the test */

enum h_cert { H_CERT_CLIENT = 0, H_CERT_NONE, H_CERT_OTHER_CA };
extern char h_other_certs[256]; /* a second CA's certificates */
void h_make_other_certs(void);  /* make them (once) */

/* One HTTP request.  headers NULL-terminated or NULL. */
struct h_resp h_http(const char *method, const char *url, const char *const *headers,
                     const char *body, enum h_cert cert);
/* API call with client certificate and app_key/Authorization headers (token NULL = none). */
struct h_resp h_api(const struct h_sim *s, const char *method, const char *path, const char *app,
                    const char *token, const char *body);
/* Control API call. */
struct h_resp h_admin(const struct h_sim *s, const char *method, const char *path,
                      const char *body);
/* Log in and return the access token (caller frees). */
char *h_login(const struct h_sim *s, const char *app, const char *secret);
/* Assert status and exact body. */
void h_expect(const struct h_resp *r, long status, const char *body);
/* First device of the sim (from GET /devices), copied into out[37]. */
void h_first_device(const struct h_sim *s, const char *app, char out[37]);

/* ---- push receiver ---- */

struct h_push {
    char path[256];
    char content_type[64];
    char *body;
};

struct h_receiver;
/* Start on an ephemeral port; tls = serve HTTPS with h_certs/server.pem. */
struct h_receiver *h_recv_start(bool tls);
void h_recv_stop(struct h_receiver *r);
unsigned h_recv_port(const struct h_receiver *r);
/* Answers: statuses[i] for the i-th request, then dflt.  -1 = hang hang_ms then 200. */
void h_recv_script(struct h_receiver *r, const int *statuses, size_t n, int dflt, long hang_ms);
/* Wait until at least n requests arrived (deadline ms); returns the count. */
size_t h_recv_wait(struct h_receiver *r, size_t n, long deadline_ms);
size_t h_recv_count(struct h_receiver *r);
/* Copy of request i (caller frees body). */
struct h_push h_recv_get(struct h_receiver *r, size_t i);
/* Requests whose path equals path, in arrival order, as a JSON array of parsed bodies. */
cJSON *h_recv_bodies(struct h_receiver *r, const char *path);

/* Subscribe app to type at http://127.0.0.1:<port><path>; asserts 201. */
void h_subscribe(const struct h_sim *s, const char *app, const char *token, const char *type,
                 const struct h_receiver *r, const char *path);

/* Poll GET /pushes until pred returns true or the deadline passes. */
cJSON *h_pushes(const struct h_sim *s);
void h_sleep_ms(long ms);

#endif
