/*
 * ha_fixture.h: the several-bridges bed shared by tests/ha/ (README "Running
 * several bridges").
 *
 * Everything real, on loopback, started and stopped by the test by PID:
 * redis-server (no persistence), haproxy (round robin with fast health
 * checks) in front of two bridges, "a" and "b", each with
 * coordination.redis_url pointing at that Redis (unless ha_coordinated is
 * false).  The broker and the simulator come from the fault fixture
 * (fault_fixture.h).  Include it once per test program.
 */
#ifndef OCB_HA_FIXTURE_H
#define OCB_HA_FIXTURE_H

#include <signal.h>
#include <unistd.h>

#include "../faults/fault_fixture.h"

#define HA_THROTTLE  "10/2"
#define LOGIN_PATH   "/iocm/app/sec/v1.1.0/login"
#define REFRESH_PATH "/iocm/app/sec/v1.1.0/refreshToken"

static struct th_proc ha_redis, ha_lb;
static int ha_redis_port, ha_lb_port;
static struct th_bridge ha_b[2];
static const char *const ha_names[2] = {"a", "b"};
/* false: the bridges do not share anything (no coordination.redis_url), for the comparison. */
static bool ha_coordinated = true;
/* More top-level keys for every bridge's configuration (",\"push\":{...}"), or NULL. */
static const char *ha_top_extra;
/* More keys for every bridge's "mqtt" object (",\"publish_timeout_ms\":1000"), or NULL. */
static const char *ha_mqtt_extra;

/* ---- redis-server and haproxy */

static inline void ha_redis_start(void)
{
    static char port[16], dir[TH_PATH_MAX];
    if (!ha_redis_port)
        ha_redis_port = th_free_port();
    snprintf(port, sizeof(port), "%d", ha_redis_port);
    th_path(dir, sizeof(dir), "");
    char *argv[] = {(char *)th_env("OCB_REDIS_BIN"),
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    dir,
                    "--loglevel",
                    "warning",
                    NULL};
    th_spawn(&ha_redis, "redis", argv);
    ck_assert_msg(th_wait_port(ha_redis_port, 10000), "redis-server did not listen");
}

static inline void ha_lb_start(void)
{
    static char cfg[TH_PATH_MAX];
    char text[1024];
    ha_lb_port = th_free_port();
    th_path(cfg, sizeof(cfg), "haproxy.cfg");
    /* Round robin with fast health checks; a refused or cut connection is
     * redispatched to the other server, and what still fails is re-pushed by
     * the platform (the simulator). */
    int n = snprintf(text, sizeof(text),
                     "defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n"
                     "  timeout server 10s\n  retries 3\n  option redispatch\n"
                     "  retry-on conn-failure empty-response\n"
                     "frontend push\n  bind 127.0.0.1:%d\n  option http-buffer-request\n"
                     "  default_backend bridges\n"
                     "backend bridges\n  balance roundrobin\n  option httpchk GET /healthz\n"
                     "  server a 127.0.0.1:%d check inter 200 fall 1 rise 2\n"
                     "  server b 127.0.0.1:%d check inter 200 fall 1 rise 2\n",
                     ha_lb_port, ha_b[0].port, ha_b[1].port);
    ck_assert(n > 0 && (size_t)n < sizeof(text));
    ck_assert(th_write_file(cfg, text, (size_t)n));
    char *argv[] = {(char *)th_env("OCB_HAPROXY_BIN"), "-f", cfg, "-db", NULL};
    th_spawn(&ha_lb, "haproxy", argv);
    ck_assert_msg(th_wait_port(ha_lb_port, 10000), "haproxy did not listen");
}

/* ---- the bridges */

/* Replace the first from in s (cap bytes) with to. */
static inline void ha_replace(char *s, size_t cap, const char *from, const char *to)
{
    char *p = strstr(s, from);
    ck_assert_msg(p != NULL, "%s not in the config", from);
    size_t fl = strlen(from), tl = strlen(to), rest = strlen(p + fl);
    ck_assert(strlen(s) - fl + tl < cap);
    memmove(p + tl, p + fl, rest + 1);
    memcpy(p, to, tl);
}

/* Bridge i with callbacks at public_port, coordination through Redis.  Redis timeouts of 2 s,
 * not the default 250 ms: one slow call on a loaded test machine would put a replica in degraded
 * mode (its own login and rate window) and change the counts the tests compare; a killed Redis
 * is still seen at once (connection refused). */
static inline void ha_bridge_start(int i, int public_port, const char *platform_extra)
{
    char cfg[4096], from[64], to[64], coord[256];
    struct th_bridge *b = &ha_b[i];
    char client_id[32];
    snprintf(client_id, sizeof(client_id), "bridge-%s", ha_names[i]);
    char mqtt[256];
    snprintf(mqtt, sizeof(mqtt), ",\"shared_group\":\"cmd\"%s", ha_mqtt_extra ? ha_mqtt_extra : "");
    fx_bridge_config(cfg, sizeof(cfg), b, client_id, mqtt, platform_extra);
    snprintf(from, sizeof(from), "\"public_url\":\"http://127.0.0.1:%d\"", b->port);
    snprintf(to, sizeof(to), "\"public_url\":\"http://127.0.0.1:%d\"", public_port);
    ha_replace(cfg, sizeof(cfg), from, to);
    snprintf(coord, sizeof(coord),
             "\"coordination\":{\"redis_url\":\"redis://127.0.0.1:%d/0\",\"replica_id\":\"%s\","
             "\"connect_timeout_ms\":2000,\"timeout_ms\":2000},"
             "\"log\":",
             ha_redis_port, ha_names[i]);
    if (ha_coordinated)
        ha_replace(cfg, sizeof(cfg), "\"log\":", coord);
    if (ha_top_extra) {
        /* Before the last brace. */
        size_t n = strlen(cfg);
        ck_assert(n > 0 && cfg[n - 1] == '}' && n + strlen(ha_top_extra) < sizeof(cfg));
        snprintf(cfg + n - 1, sizeof(cfg) - n + 1, "%s}", ha_top_extra);
    }
    th_bridge_start(b, cfg, false);
}

static inline void ha_ports(void)
{
    for (int i = 0; i < 2; i++)
        if (!ha_b[i].port)
            ha_b[i].port = th_free_port();
}

/* Sum of name{replica="<r>"<more>} over the first n replicas (absent = 0). */
static inline double ha_metric_sum(int n, const char *name, const char *more)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        char series[256];
        snprintf(series, sizeof(series), "%s{replica=\"%s\"%s}", name, ha_names[i], more);
        double v = th_metric(&ha_b[i], NULL, series);
        sum += v > 0 ? v : 0;
    }
    return sum;
}

static inline bool ha_readyz_says(int i, const char *needle)
{
    char url[128];
    struct th_http_resp r;
    snprintf(url, sizeof(url), "%s/readyz", ha_b[i].base);
    if (!th_http("GET", url, NULL, 0, NULL, &r))
        return false;
    bool yes = r.status == 200 && strstr(r.body, needle) != NULL;
    th_http_resp_free(&r);
    return yes;
}

#endif
