/*
 * config.h: the configuration, as docs/design.md section 5 defines it.
 *
 * One declarative table in config.c lists every key with its type, default
 * and bounds; loading is: defaults -> JSON file -> OCB_* environment
 * overrides -> ${VAR} expansion in strings -> cross-key checks.  Unknown keys
 * and bad values are errors reported as "FILE: key.path: reason".
 *
 * Pure apart from reading the file and the environment.  A loaded
 * struct ocb_config is immutable and may be read from any thread; a reload
 * (SIGHUP) builds a new one and swaps it.
 *
 * References.  A configuration is reference-counted so that a reload can
 * retire the old one without waiting for exit: whoever keeps a configuration
 * beyond a call (a module for its lifetime, an HTTP request, the command
 * worker's apps) holds a reference taken with config_ref() and gives it back
 * with config_unref(); the last one frees it.  The count is the one field
 * that changes after loading, atomically, so references may be taken and
 * dropped on any thread.  Taking a reference needs one already held (or the
 * lock that guards the pointer it was read from): config_ref() on a
 * configuration whose last reference another thread may be dropping is a
 * use after free.
 */
#ifndef OCB_CONFIG_H
#define OCB_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/err.h"
#include "ocb/grammar.h"
#include "ocb/log.h"

#define OCB_MAX_APPS       64
#define OCB_MAX_SUBSCRIBE  32
#define OCB_MAX_ALLOW_FROM 32

struct ocb_app {
    char *app_id;
    char *secret;     /* never logged */
    char *push_token; /* "" = no token required */
    char *subscribe[OCB_MAX_SUBSCRIBE];
    size_t n_subscribe;
    /* apps[].api: the device API operations allowed over MQTT, bits of enum
     * ocb_api_op (api.h); OCB_API_READ_OPS when the key is absent. */
    unsigned api_ops;
    bool api_given; /* the key was set (file or environment) */
};

/* spool.mode: what happens to a push the broker cannot take right now (spool.h). */
enum ocb_spool_mode {
    OCB_SPOOL_OUTAGE = 0, /* publish directly; spool when the broker cannot ack in time */
    OCB_SPOOL_ALWAYS,     /* every push is durable before its 200, then published */
    OCB_SPOOL_OFF,        /* no spool: 503 when the broker cannot ack in time */
};

struct ocb_config {
    atomic_uint refs; /* config_ref()/config_unref(); the only mutable field */
    char *path;       /* the file it came from, for messages */

    struct {
        char *listen;     /* "host:port" */
        char *public_url; /* what the platform is told, e.g. callbackUrl base */
        char *tls_cert;
        char *tls_key;
        char *tls_client_ca;
        size_t max_body_bytes;
        struct ocb_cidr allow_from[OCB_MAX_ALLOW_FROM];
        size_t n_allow_from;
        unsigned threads;       /* MHD worker threads */
        unsigned retry_after_s; /* value of Retry-After on 503 */
    } http;

    struct {
        char *url;
        char *client_id;
        int version; /* 5 or 4 (= 3.1.1) */
        char *username;
        char *password; /* never logged */
        char *ca_file;
        char *cert_file;
        char *key_file;
        char *topic_prefix;
        int qos;
        unsigned publish_timeout_ms;
        unsigned max_inflight;
        char *shared_group;
        size_t max_topic_len;
        unsigned keepalive_s;
        unsigned session_expiry_s;
        unsigned reconnect_min_ms;
        unsigned reconnect_max_ms;
    } mqtt;

    struct {
        char *url;
        char *ca_file;
        char *cert_file;
        char *key_file;
        bool verify_hostname;
        unsigned rate_calls;
        unsigned rate_per_seconds;
        bool manage_subscriptions;
        unsigned connect_timeout_ms;
        unsigned timeout_ms;
        size_t max_reply_bytes;
        unsigned max_queue;          /* commands waiting for the platform */
        unsigned max_in_flight;      /* concurrent REST requests */
        unsigned command_deadline_s; /* retry budget per command */
        size_t max_command_bytes;    /* cap on an MQTT command payload */
    } platform;

    struct {
        char *mode_name;          /* "outage", "always" or "off" */
        enum ocb_spool_mode mode; /* mode_name, parsed */
        size_t max_bytes;
        unsigned max_age_s;
    } spool;

    struct {
        char *dir; /* holds ocbridge.db */
    } state;

    struct {
        unsigned dedup_window_s; /* 0 = off */
    } push;
    /* Several bridges for one app (coord.h).  redis_url "" = one instance. */
    struct {
        char *redis_url;
        char *replica_id;              /* "" = <hostname>-<pid> */
        char *key_prefix;              /* Redis key prefix */
        unsigned local_rate_share_pct; /* of platform.rate_limit while Redis is down */
        unsigned connect_timeout_ms;
        unsigned timeout_ms; /* per Redis command */
    } coordination;

    struct ocb_app apps[OCB_MAX_APPS];
    size_t n_apps;

    struct {
        enum ocb_log_level level;
        enum ocb_log_format format;
    } log;
};

/*
 * Load FILE (NULL = defaults plus environment only).  On success *out is a
 * new configuration holding one reference, the caller's (config_unref() or
 * config_free() gives it back).  On failure returns
 * OCB_ERR_INVALID (or NOMEM/IO) and writes "FILE: key.path: reason" to err.
 */
enum ocb_err config_load(const char *path, struct ocb_config **out, char *err, size_t errlen);

/* Same, from a JSON text in memory (name is used in messages). */
enum ocb_err config_parse(const char *name, const char *json, size_t len, struct ocb_config **out,
                          char *err, size_t errlen);

/* Take one more reference to cfg (held by the caller already, see above) and return cfg.
 * Any thread. */
const struct ocb_config *config_ref(const struct ocb_config *cfg);

/* Give back one reference; the last one frees cfg.  NULL is a no-op.  Any thread. */
void config_unref(const struct ocb_config *cfg);

/* Copy every field of src but its count into dst, whose count starts at one:
 * a shallow view (the strings stay src's, so the caller keeps a reference to
 * src while dst is in use).  A plain struct assignment would read src's count
 * while other threads change it.  Any thread. */
void config_copy_shallow(struct ocb_config *dst, const struct ocb_config *src);

/* How many configurations exist in this process (loaded and not yet freed):
 * the running one and those still held by work that began under an older one. */
unsigned config_alive(void);

/* The same as config_unref(), for a configuration that was never shared (the
 * command line's, the tests'). */
void config_free(struct ocb_config *cfg);

/*
 * For a reload (SIGHUP): keep in `next` the running value of every key that
 * cannot change without a restart (listeners, TLS files, broker, platform);
 * only apps[], http.max_body_bytes, http.allow_from, http.retry_after_s and
 * log.* take effect.  Writes the paths whose new value was not applied,
 * comma-separated, to kept ("" when none).  OCB_ERR_NOMEM on allocation failure.
 */
enum ocb_err config_reload_merge(struct ocb_config *next, const struct ocb_config *running,
                                 char *kept, size_t cap);

/* The effective value of a scalar key ("mqtt.url") as text, for scripts
 * (`ocbridge --print-key`).  OCB_ERR_NOT_FOUND for an unknown key,
 * OCB_ERR_TOO_BIG when it does not fit. */
enum ocb_err config_format_key(const struct ocb_config *cfg, const char *path, char *out,
                               size_t cap);

/* The app with this id, or NULL.  Borrowed from cfg. */
const struct ocb_app *config_find_app(const struct ocb_config *cfg, const char *app_id);

/* True when any app has a secret, i.e. the command half is on. */
bool config_commands_enabled(const struct ocb_config *cfg);

#endif
