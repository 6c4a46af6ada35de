/*
 * sim.h: the internals of ocbridge-sim, a simulator of the platform's northbound API.
 *
 * The simulator is one process with four kinds of threads:
 *   - libmicrohttpd connection threads for the API port (TLS) and the admin port (plain), which
 *     parse a request into a struct sim_req and hand it to sim_api_handle / sim_admin_handle;
 *   - one ticker thread that advances time-driven behaviour (device reports, command lifecycles,
 *     expiry of pending commands);
 *   - a few push workers that POST queued notifications to callback URLs (sim_push.c);
 *   - the main thread, which starts everything and waits for SIGINT/SIGTERM.
 *
 * State: everything the API can see (apps, tokens, subscriptions, commands, devices, faults, the
 * request log) lives in g_sim and is guarded by g_sim.lock.  The push engine owns its own queue
 * under its own lock; callers may enqueue while holding g_sim.lock (lock order: g_sim.lock, then
 * the push lock; push workers never take g_sim.lock).
 *
 * Functions named *_locked expect g_sim.lock to be held by the caller.  Everything else takes the
 * lock itself or is pure.  Strings returned in struct sim_resp are heap-owned by the response.
 */
#ifndef OCB_SIM_H
#define OCB_SIM_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ocb/err.h"

#define SIM_APP_ID_MAX       128
#define SIM_SECRET_MAX       256
#define SIM_MAX_APPS         64
#define SIM_MAX_DEVICES      100000
#define SIM_MAX_SUBS         4096
#define SIM_MAX_COMMANDS     100000
#define SIM_MAX_TASKS        10000
#define SIM_MAX_FAULTS       32
#define SIM_MAX_SERVICES     4
#define SIM_REQUEST_LOG_MAX  20000
#define SIM_PUSH_LOG_MAX     20000
#define SIM_PUSH_QUEUE_MAX   20000
#define SIM_URL_MAX          1024
#define SIM_DEFAULT_BODY_MAX (1024 * 1024)
#define SIM_TOKEN_HEX        32
#define SIM_HISTORY_MAX      100000 /* largest --history-max */
#define SIM_MAX_GROUPS       1000
#define SIM_MAX_GROUP_DEVS   10000

/* ---- options (sim_opts.c) -------------------------------------------------------------- */

struct sim_app_cfg {
    char id[SIM_APP_ID_MAX + 1];
    char secret[SIM_SECRET_MAX + 1];
};

enum sim_report_mode { SIM_REPORT_DATA = 0, SIM_REPORT_DATAS };
enum sim_device_kind { SIM_DEV_COAP = 0, SIM_DEV_MQTT };

struct sim_opts {
    const char *make_certs_dir; /* --make-certs: write certificates and exit */
    char listen[64];
    char admin[64];
    const char *certs_dir;
    bool plain;
    bool no_client_auth;
    struct sim_app_cfg apps[SIM_MAX_APPS];
    size_t napps;
    long devices;
    double report_interval_s; /* 0 = no periodic reports */
    long throttle_calls;      /* 0 = no throttle */
    long throttle_period_s;
    long token_ttl_s;
    long refresh_ttl_s;
    double push_timeout_s;
    double repush_interval_s;
    double repush_window_s;
    double probe_interval_s;
    long blacklist_after;
    bool repush_any_error; /* UNCONFIRMED: re-push after 500/4xx too */
    long push_workers;
    const char *push_ca;
    const char *push_cert;
    const char *push_key;
    bool push_insecure;
    long command_delay_ms;
    double command_fail_rate;
    double command_timeout_rate;
    bool command_manual;
    bool push_final_states; /* UNCONFIRMED: push EXPIRED/CANCELED to the command callback */
    long max_pending;
    long max_page_size;      /* UNCONFIRMED: the largest pageSize a list query honours */
    bool unknown_device_404; /* 404/100403 instead of the documented 200/100418 (§3.1) */
    bool callback_check;     /* command callbackUrl must share the subscriptions' IP:port */
    char callback_conflict_code[16];
    bool throttle_resultcode; /* UNCONFIRMED: 1010009 in resultcode/resultmsg shape */
    bool allow_mixed_callbacks;
    bool allow_duplicate_types;
    bool v11_subscribe_replaces; /* UNCONFIRMED: v1.1.0 re-points a subscribed type, no 409 */
    bool refresh_revokes;        /* UNCONFIRMED: a refresh kills the previous access token */
    long history_max;            /* data-history records kept per device; 0 = none */
    bool devgroup_create_201;    /* devGroups create answers 201 (example) instead of 200 (table) */
    bool devgroup_ids_empty;     /* add/remove members answer deviceIds:[] (observed) */
    enum sim_device_kind device_kind;
    enum sim_report_mode report_mode;
    bool devices_first_app; /* all devices to the first app instead of round-robin */
    uint64_t seed;
    size_t max_body;
    const char *log_file;
    int log_level; /* 0 debug, 1 info, 2 warn, 3 error */
    const char *config_file;
};

/* Fill defaults, then parse argv (and --config).  On error writes a one-line message (without the
 * program name) into err and returns OCB_ERR_INVALID.  Thread-safe: no (start-up only). */
void sim_opts_defaults(struct sim_opts *o);
enum ocb_err sim_opts_parse(struct sim_opts *o, int argc, char **argv, char *err, size_t errlen);
/* Parse "APPID:SECRET" into cfg; false when malformed. Pure. */
bool sim_opts_parse_app(const char *s, struct sim_app_cfg *cfg);
/* Parse "CALLS/SECONDS"; false when malformed. Pure. */
bool sim_opts_parse_throttle(const char *s, long *calls, long *period);

/* ---- utilities (sim_util.c), all pure or thread-safe ------------------------------------- */

int64_t sim_now_ms(void); /* monotonic */
/* Format a UTC time as yyyyMMdd'T'HHmmss'Z' (16 chars + NUL). */
void sim_time_format(time_t t, char out[17]);
/* Parse the same format; false when malformed. */
bool sim_time_parse(const char *s, time_t *out);
uint64_t sim_prng_next(uint64_t *state); /* splitmix64 */
double sim_prng_unit(uint64_t *state);   /* [0, 1) */
/* Random lowercase hex of n chars plus NUL from the OS entropy source. */
void sim_rand_hex(char *out, size_t n);
/* A v4-shaped UUID from the given PRNG (deterministic for a seed). */
void sim_uuid_from(uint64_t *state, char out[37]);
void sim_uuid_random(char out[37]);
bool sim_parse_long(const char *s, long min, long max, long *out);
bool sim_parse_double(const char *s, double min, double max, double *out);
/* Read a whole file (capped at max bytes) into a NUL-terminated heap buffer. */
enum ocb_err sim_read_file(const char *path, size_t max, char **out, size_t *len);

struct sim_url {
    char scheme[8];
    char host[256];
    long port;        /* -1 when not explicit */
    const char *path; /* points into the original string; NULL when absent */
};
/* Split an http(s) URL.  false when not http/https or the host is empty. */
bool sim_url_parse(const char *url, struct sim_url *out);
/* The platform's callback URL rule: http/https, explicit port, a path (at least "/"). */
bool sim_url_callback_ok(const char *url);
/* Same host and port (scheme-insensitive, host case-insensitive). */
bool sim_url_same_endpoint(const char *a, const char *b);
/* Find key in an application/x-www-form-urlencoded body and decode its value into out.
 * false when absent or the decoded value does not fit. */
bool sim_form_get(const char *body, size_t len, const char *key, char *out, size_t outlen);

/* Logging: one line per call to stderr or the log file.  Thread-safe. */
void sim_log_setup(int level, const char *path);
void sim_log(int level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SIM_DEBUG(mod, ...) sim_log(0, mod, __VA_ARGS__)
#define SIM_INFO(mod, ...)  sim_log(1, mod, __VA_ARGS__)
#define SIM_WARN(mod, ...)  sim_log(2, mod, __VA_ARGS__)
#define SIM_ERROR(mod, ...) sim_log(3, mod, __VA_ARGS__)

/* ---- HTTP request / response (sim_http.c builds them) ------------------------------------ */

struct sim_kv {
    char *key;
    char *val;
};

struct sim_req {
    const char *method;
    const char *path;
    struct sim_kv *query;
    size_t nquery;
    struct sim_kv *headers; /* names lower-cased */
    size_t nheaders;
    const char *body; /* NUL-terminated; may contain NULs before body_len */
    size_t body_len;
};

struct sim_resp {
    int status;
    char *body; /* heap, owned; NULL = empty */
    const char *content_type;
    bool drop;      /* close the connection without answering */
    bool processed; /* with drop: the request was handled; status and body are what it withheld */
};

const char *sim_req_query(const struct sim_req *r, const char *key);
const char *sim_req_header(const struct sim_req *r, const char *name); /* case-insensitive */

/* Response helpers (sim_json.c). Each replaces any previous body. */
void sim_resp_json(struct sim_resp *r, int status, cJSON *obj); /* takes ownership of obj */
void sim_resp_error(struct sim_resp *r, int status, const char *code, const char *desc);
void sim_resp_gw_error(struct sim_resp *r, int status, const char *code, const char *msg);
void sim_resp_empty(struct sim_resp *r, int status);
void sim_resp_text(struct sim_resp *r, int status, const char *text);
/* Parse the request body as a JSON object; NULL (and a 400/100022 answer) when it is not one. */
cJSON *sim_req_json_object(const struct sim_req *req, struct sim_resp *resp);
/* Read pageNo/pageSize from the query.  false (and a 400/100022 answer) when out of range. */
bool sim_req_paging(const struct sim_req *req, struct sim_resp *resp, long def_size, long max_size,
                    long *page_no, long *page_size);
/* Optional string member, NULL when absent or not a string. */
const char *sim_json_str(const cJSON *obj, const char *key);
/* Add a string or a JSON null when s is NULL. */
void sim_json_add_str_or_null(cJSON *obj, const char *key, const char *s);

typedef void (*sim_handler_fn)(const struct sim_req *req, struct sim_resp *resp);

struct sim_http_tls {
    char *key_pem;
    char *cert_pem;
    char *ca_pem; /* NULL: no client authentication */
};

struct sim_http;
/* Start a listener on "IP:PORT" (port 0 = ephemeral).  tls NULL = plain HTTP.  The handler runs on
 * MHD connection threads.  *port_out gets the bound port. */
enum ocb_err sim_http_start(const char *addr, const struct sim_http_tls *tls,
                            sim_handler_fn handler, size_t max_body, struct sim_http **out,
                            unsigned *port_out);
void sim_http_stop(struct sim_http *h); /* NULL is a no-op */

/* ---- certificates (sim_certs.c) ----------------------------------------------------------- */

/* Write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem into dir (created). */
enum ocb_err sim_certs_make(const char *dir, char *err, size_t errlen);

/* ---- state (sim_state.c) ------------------------------------------------------------------ */

struct sim_app {
    char id[SIM_APP_ID_MAX + 1];
    char secret[SIM_SECRET_MAX + 1];
    char access[SIM_TOKEN_HEX + 1]; /* "" = none */
    int64_t access_expires_ms;
    char refresh[SIM_TOKEN_HEX + 1];
    int64_t refresh_expires_ms;
    char prev_access[SIM_TOKEN_HEX + 1]; /* still valid after a lenient refresh; "" = none */
    int64_t prev_access_expires_ms;
    int64_t *calls; /* ring of accepted call times for the sliding throttle window */
    size_t calls_cap, calls_head, calls_n;
};

struct sim_service {
    char id[65];
    char type[65];
    cJSON *data;
    time_t event_time;    /* last report; 0 = never */
    cJSON *desired;       /* shadow desired properties; NULL = none */
    bool desired_pending; /* written while offline: delivered when the device comes online */
};

/* One data-history record (a service's data at one report). */
struct sim_hist {
    time_t t;
    char service[65];
    cJSON *data;
};

struct sim_device {
    char id[37];
    char app[SIM_APP_ID_MAX + 1];
    char node_id[65];
    bool online;
    enum sim_device_kind kind;
    struct sim_service svc[SIM_MAX_SERVICES];
    size_t nsvc;
    unsigned long reports;
    int64_t next_report_ms;
    bool bound;               /* false: registered by the API and not yet online (no bindDevice) */
    char verify_code[65];     /* registration only */
    char psk[65];             /* registration only */
    long timeout_s;           /* registration: seconds to come online; 0 = no limit */
    int64_t bind_deadline_ms; /* 0 = none */
    time_t created, modified;
    cJSON *attrs;          /* deviceInfo fields set by modify (strings); NULL = none */
    struct sim_hist *hist; /* ring of up to --history-max records, grown as reports come */
    size_t hist_head, hist_n, hist_cap;
};

struct sim_group {
    char id[37];
    char app[SIM_APP_ID_MAX + 1];
    char name[51];
    char *description; /* NULL = none */
    long max_dev;      /* 0 = unlimited */
    char (*members)[37];
    size_t nmembers, cap_members;
};

enum sim_sub_api { SIM_SUB_V12 = 0, SIM_SUB_V11, SIM_SUB_IODM };

struct sim_sub {
    char id[37];
    char app[SIM_APP_ID_MAX + 1];
    char type[64];
    char url[SIM_URL_MAX + 1];
    char channel[16];
    enum sim_sub_api api;
};

enum sim_cmd_status {
    SIM_CMD_PENDING = 0,
    SIM_CMD_SENT,
    SIM_CMD_DELIVERED,
    SIM_CMD_SUCCESSFUL,
    SIM_CMD_FAILED,
    SIM_CMD_TIMEOUT,
    SIM_CMD_EXPIRED,
    SIM_CMD_CANCELED,
};

struct sim_cmd {
    char id[33];
    char app[SIM_APP_ID_MAX + 1];
    char device[37];
    char *service_id;
    char *method;
    cJSON *paras;
    char *callback; /* NULL = none */
    long expire_s;
    long max_retransmit; /* -1 = not given */
    enum sim_cmd_status status;
    cJSON *result_detail; /* NULL = null */
    bool has_result;
    time_t creation, issued, delivered, executed; /* 0 = unset */
    long issued_times;
    int64_t created_ms;
    int64_t next_ms;             /* next lifecycle step; 0 = none */
    enum sim_cmd_status outcome; /* decided when sent */
};

struct sim_task {
    char id[33];
    char app[SIM_APP_ID_MAX + 1];
    char device[37];
    time_t creation;
    cJSON *commands; /* array of command resources at cancel time */
};

struct sim_fault {
    char path_prefix[256];
    char method[16];
    double rate;
    long count; /* -1 = unlimited */
    long latency_ms;
    int status;
    char error_code[32];
    char error_desc[256];
    bool resultcode_shape;
    char body_200_error[32];
    bool drop_connection;
    bool drop_after; /* handle the request normally, then close without answering */
    long hits;
};

/* A bounded ring of JSON records (the request and push logs).  Not locked: the owner's lock
 * guards it. */
struct sim_jlog_entry {
    unsigned long seq;
    char *json; /* one compact JSON object */
};

struct sim_jlog {
    struct sim_jlog_entry *e;
    size_t cap, head, n;
    unsigned long seq;
};

enum ocb_err sim_jlog_init(struct sim_jlog *l, size_t cap);
/* Stamp obj with the next "seq", store it compactly and free obj. */
void sim_jlog_add(struct sim_jlog *l, cJSON *obj);
/* Records with seq > since (and, when key is given, whose string key starts with prefix). */
cJSON *sim_jlog_json(const struct sim_jlog *l, unsigned long since, const char *key,
                     const char *prefix);
void sim_jlog_clear(struct sim_jlog *l);
void sim_jlog_free(struct sim_jlog *l);

struct sim_state {
    pthread_mutex_t lock;
    const struct sim_opts *opts;
    uint64_t prng;
    struct sim_app apps[SIM_MAX_APPS];
    size_t napps;
    struct sim_device **devices;
    size_t ndevices, cap_devices;
    unsigned long next_device_index;
    struct sim_sub *subs;
    size_t nsubs, cap_subs;
    struct sim_cmd **cmds;
    size_t ncmds, cap_cmds;
    struct sim_task *tasks;
    size_t ntasks, cap_tasks;
    struct sim_fault faults[SIM_MAX_FAULTS];
    size_t nfaults;
    struct sim_group *groups;
    size_t ngroups, cap_groups;
    struct sim_jlog reqlog;
};

extern struct sim_state g_sim;

/* Grow a heap array so it can hold need elements, capped at max.  Pure. */
enum ocb_err sim_grow(void **arr, size_t *cap, size_t need, size_t elem, size_t max);

enum ocb_err sim_state_init(const struct sim_opts *o); /* start-up, before threads */
void sim_state_reset(void);                            /* takes the lock */
void sim_state_free(void);                             /* after all threads stopped */
void sim_state_lock(void);
void sim_state_unlock(void);

/* ---- auth (sim_auth.c) -------------------------------------------------------------------- */

struct sim_app *sim_auth_app_locked(const char *id);
void sim_auth_login(const struct sim_req *req, struct sim_resp *resp);
/* The deprecated logout: JSON {"accessToken"}; 204 and that token is dead. */
void sim_auth_logout(const struct sim_req *req, struct sim_resp *resp);
void sim_auth_refresh(const struct sim_req *req, struct sim_resp *resp);
/* Check app_key + Authorization and the throttle; on success returns the app (caller holds lock),
 * on failure answers resp and returns NULL. */
struct sim_app *sim_auth_check_locked(const struct sim_req *req, struct sim_resp *resp);
/* Sliding-window throttle: true and records the call when allowed.  Pure over app state. */
bool sim_auth_throttle_take(struct sim_app *app, long calls, long period_s, int64_t now_ms);
void sim_auth_revoke_locked(struct sim_app *app);
void sim_auth_reset_locked(void);

/* ---- subscriptions (sim_subs.c) ----------------------------------------------------------- */

bool sim_subs_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app);
/* Queue body to every subscriber of (app, type).  Returns the number of pushes queued. */
size_t sim_subs_push_locked(const char *app, const char *type, const char *body);
/* The IP:port the app's subscriptions use, or NULL when it has none. */
const char *sim_subs_endpoint_locked(const char *app);
cJSON *sim_subs_json_locked(void);
bool sim_subs_type_known(const char *type, bool management);

/* ---- commands (sim_cmds.c) ---------------------------------------------------------------- */

bool sim_cmds_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app);
void sim_cmds_tick_locked(int64_t now_ms);
/* The device came online: send its pending commands. */
void sim_cmds_device_online_locked(const struct sim_device *dev);
cJSON *sim_cmds_json_locked(const char *device);
struct sim_cmd *sim_cmds_find_locked(const char *id);
/* Admin: finish a command now with resultCode/resultDetail. */
enum ocb_err sim_cmds_complete_locked(struct sim_cmd *c, const char *result_code,
                                      const cJSON *detail);
const char *sim_cmd_status_name(enum sim_cmd_status s);
bool sim_cmd_status_parse(const char *s, enum sim_cmd_status *out);
void sim_cmd_free(struct sim_cmd *c);
/* The §2 callback body for a command at status s (resultDetail copied). Caller frees. */
char *sim_cmds_callback_body(const struct sim_cmd *c, enum sim_cmd_status s);

/* ---- devices (sim_devices.c) -------------------------------------------------------------- */

enum ocb_err sim_devices_init_locked(void);
struct sim_device *sim_devices_find_locked(const char *id);
struct sim_device *sim_devices_add_locked(const char *app, const char *id, const char *node_id,
                                          bool online);
void sim_devices_remove_locked(const char *id);
void sim_devices_free_locked(void);
void sim_devices_tick_locked(int64_t now_ms);
void sim_devices_set_online_locked(struct sim_device *d, bool online);
/* Push one report now; services may be NULL to generate values. */
enum ocb_err sim_devices_report_locked(struct sim_device *d, const cJSON *services);
void sim_devices_push_added_locked(const struct sim_device *d);
void sim_devices_push_bind_locked(const struct sim_device *d);
cJSON *sim_devices_json_locked(void);
cJSON *sim_device_info_json(const struct sim_device *d, const char *status, const char *detail,
                            bool full);
/* The device's current status/statusDetail pair (ONLINE/NONE, OFFLINE/NONE, or OFFLINE/NOT_ACTIVE
 * for a registered device that never came online). */
void sim_device_status(const struct sim_device *d, const char **status, const char **detail);
/* deviceInfoChanged after a modify: deviceInfo carries the changed fields, the rest null. */
void sim_devices_push_changed_locked(const struct sim_device *d, const cJSON *changed);
/* Record of the desired properties of service s: push the modify-status notification now when the
 * device is online, else when it comes online. */
void sim_devices_desired_locked(struct sim_device *d, struct sim_service *s);

/* ---- device management API (sim_dm.c): registration, devices, history, capabilities, shadow */

bool sim_dm_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app);

/* ---- device groups (sim_groups.c) --------------------------------------------------------- */

bool sim_groups_route(const struct sim_req *req, struct sim_resp *resp, struct sim_app *app);
/* A device left: drop it from every group. */
void sim_groups_forget_device_locked(const char *id);
void sim_groups_free_locked(void);

/* ---- faults (sim_faults.c) ---------------------------------------------------------------- */

enum ocb_err sim_faults_set_locked(const cJSON *spec, char *err, size_t errlen);
cJSON *sim_faults_json_locked(void);
/* Decide the fault for a request: fills *out and returns true when a rule matched. */
bool sim_faults_match_locked(const char *method, const char *path, struct sim_fault *out);

/* ---- push engine (sim_push.c) ------------------------------------------------------------- */

enum sim_push_verdict { SIM_PUSH_DELIVERED = 0, SIM_PUSH_RETRY, SIM_PUSH_DROP };
/* The delivery rule (§7): 200 delivered; no answer (status 0) or 501-504 re-pushed; anything
 * else dropped unless repush_any.  Pure. */
enum sim_push_verdict sim_push_classify(long status, bool repush_any);

enum ocb_err sim_push_start(const struct sim_opts *o);
void sim_push_stop(void);
/* Queue one push (body copied).  kind is the notifyType or "commandStatus".  Thread-safe. */
enum ocb_err sim_push_enqueue(const char *url, const char *body, const char *kind);
cJSON *sim_push_log_json(unsigned long since);
cJSON *sim_push_targets_json(void);
void sim_push_reset(void);

/* ---- request log, API and admin routers --------------------------------------------------- */

void sim_reqlog_add_locked(const struct sim_req *req, const struct sim_resp *resp);
cJSON *sim_reqlog_json_locked(unsigned long since, const char *path_prefix);
void sim_reqlog_clear_locked(void);
void sim_api_handle(const struct sim_req *req, struct sim_resp *resp);
void sim_admin_handle(const struct sim_req *req, struct sim_resp *resp);

#endif
