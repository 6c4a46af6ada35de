/*
 * th_platform.h: the command-half test bed: Mosquitto, ocbridge-sim over
 * mutual TLS and the real bridge, plus helpers to read what the simulator
 * recorded and what arrived on MQTT.  Shared by the test_commands*.c
 * suites, test_broker_link, test_reload, test_rabbitmq and the fault matrix
 * (tests/faults/fault_fixture.h).
 *
 * One test bed per test process (Check forks one per test): its state is
 * the fx_* variables below, which a test may set before fx_start() to shape
 * the bridge's configuration.  Process structs live as long as the process:
 * the harness keeps pointers to them until it exits.
 *
 * Everything here may ck_assert (see harness.h): call it from a test body
 * or a fixture.  Thread-safe: no; the test's main thread only.
 */
#ifndef OCB_TEST_PLATFORM_H
#define OCB_TEST_PLATFORM_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

#define APP      "app1"
#define SECRET   "sec1"
#define WAIT_MS  (15000 * th_time_scale())
#define CMD_PATH "/iocm/app/cmd/v1.4.0/deviceCommands"

extern struct th_broker fx_broker;
extern struct th_proc fx_sim;
extern int fx_api, fx_admin; /* the simulator's API and admin ports */
extern char fx_certs[TH_PATH_MAX];
extern struct th_bridge fx_bridge;
extern struct th_mqtt *fx_client;
extern char fx_devices[8][64]; /* the simulator's device ids (fx_load_devices) */
/* Extra keys for app1's entry in the bridge config, e.g. ,"subscribe":[...] */
extern const char *fx_app_extra;
/* app1's secret in the bridge config (the simulator always expects SECRET). */
extern const char *fx_secret;
/* Where the bridge's platform.ca_file comes from (NULL: the simulator's CA). */
extern const char *fx_ca_dir;

/* ---- the simulator */

/* Start the simulator (made certificates and picked ports on the first call, so a restart
 * keeps them); extra_args: more options, separated by spaces, or NULL. */
void fx_sim_start(const char *extra_args);
/* GET/POST on the admin port; the parsed JSON answer (caller deletes) or NULL. */
cJSON *fx_sim_call(const char *method, const char *path, const char *body);
/* POST on the admin port, asserting a 2xx answer. */
void fx_sim_post(const char *path, const char *body);
/* Fill fx_devices from the simulator's device list (at least four). */
void fx_load_devices(void);
/* Recorded API requests whose path starts with prefix (caller deletes). */
cJSON *fx_requests(const char *prefix);
/* How many recorded requests have this method (NULL: any) and a path starting with prefix. */
int fx_count_prefix(const char *method, const char *prefix);
/* How many recorded requests have this method, exact path and status (-1: any). */
int fx_count(const char *method, const char *path, int status);
/* Wait until at least min such requests are recorded: a request the bridge is still making
 * (e.g. right after it turned not ready) is not in the log yet. */
bool fx_wait_count(const char *method, const char *path, int status, int min, int timeout_ms);
/* Wait until the simulator's faults (GET /faults) have fired at least min times in all: a
 * request held by a latency fault has reached the simulator, but is not logged until answered. */
bool fx_wait_fault_hits(int min, int timeout_ms);

/* ---- the bridge */

/* The bridge's JSON configuration for b (its port set) into out: the broker, the simulator
 * over mutual TLS, app1 (fx_secret, fx_app_extra) and pushOnly; mqtt_extra and
 * platform_extra are appended to those objects (",\"key\":value..." or NULL). */
void fx_bridge_config(char *out, size_t cap, const struct th_bridge *b, const char *client_id,
                      const char *mqtt_extra, const char *platform_extra);
/* Start b (a free port unless b->port is set) with that configuration; wait_ready: wait for
 * /readyz. */
void fx_bridge_start(struct th_bridge *b, const char *client_id, const char *mqtt_extra,
                     const char *platform_extra, bool wait_ready);
/* Everything but the bridge: a broker, the simulator with its devices loaded, and the
 * test's MQTT client subscribed to filter. */
void fx_start_platform(const char *sim_args, const char *filter);
/* Broker + simulator + one ready bridge (fx_bridge, "bridge-1") + a v5 client subscribed to
 * iot/# and reply/#. */
void fx_start(const char *sim_args, const char *mqtt_extra, const char *platform_extra);

/* ---- MQTT */

/* Publish at QoS 1 from the test's client, asserting it was sent. */
void fx_publish(const char *topic, const char *payload);
/* "iot/<app>/<fx_devices[dev]>/<leaf>" into out. */
void fx_topic(char *out, size_t cap, const char *app, int dev, const char *leaf);
/* Messages received on exactly topic so far. */
size_t fx_count_on(const char *topic);
/* Wait until n messages arrived on topic; false on timeout. */
bool fx_wait_on(const char *topic, size_t n, int timeout_ms);
/* The k-th message on topic (arrival order), or NULL. */
const struct th_msg *fx_nth_on(const char *topic, size_t k);
/* The k-th answer on topic, parsed (caller deletes); fails the test on timeout. */
cJSON *fx_answer(const char *topic, size_t k);
/* o[key] when it is a string, else NULL. */
const char *fx_str(const cJSON *o, const char *key);
/* Assert a bridge-side error answer with this code. */
void fx_assert_bridge_error(const cJSON *a, const char *code);
/* Assert a definite (not retryable) platform error answer with this HTTP status and code. */
void fx_assert_platform_error(const cJSON *a, long http_status, const char *code);
/* A series' value on fx_bridge's /metrics (see th_metric()). */
double fx_metric(const char *series);

#endif
