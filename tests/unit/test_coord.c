/*
 * test_coord.c: the Redis coordination module (coord.h) against a real
 * redis-server started by the test on a free loopback port (no mocks).
 *
 * URL parsing is a table.  With Redis: the token lock (taken once, released
 * only by its holder), compare-and-set on the token epoch, the shared rate
 * window across two replicas, the sync lease, the shared requester reaching
 * another replica's status forward (on the coord thread), the de-duplication
 * window, and degraded mode: Redis killed -> calls fail fast and
 * coord_degraded(); Redis back -> shared state again.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ocb/config.h"
#include "ocb/coord.h"
#include "ocb/util.h"
#include "th_main.h"

/* ---- URL table */

struct url_case {
    const char *url;
    bool ok;
    bool unix_socket;
    const char *host;
    unsigned port, db;
    const char *user, *password;
};

static const struct url_case urls[] = {
    {"redis://127.0.0.1:6380/2", true, false, "127.0.0.1", 6380, 2, "", ""},
    {"redis://redis", true, false, "redis", 6379, 0, "", ""},
    {"redis://:s3cret@redis:1/0", true, false, "redis", 1, 0, "", "s3cret"},
    {"redis://bridge:pw@[::1]:7000/15", true, false, "::1", 7000, 15, "bridge", "pw"},
    {"unix:///run/redis.sock?db=3", true, true, "/run/redis.sock", 0, 3, "", ""},
    {"unix:///run/redis.sock", true, true, "/run/redis.sock", 0, 0, "", ""},
    {"rediss://redis:6380", false, false, NULL, 0, 0, NULL, NULL},
    {"redis://redis:0", false, false, NULL, 0, 0, NULL, NULL},
    {"redis://redis:65536", false, false, NULL, 0, 0, NULL, NULL},
    {"redis://redis/16", false, false, NULL, 0, 0, NULL, NULL},
    {"redis://", false, false, NULL, 0, 0, NULL, NULL},
    {"unix://relative", false, false, NULL, 0, 0, NULL, NULL},
    {"http://redis:6379", false, false, NULL, 0, 0, NULL, NULL},
    {"", false, false, NULL, 0, 0, NULL, NULL},
};

START_TEST(test_url)
{
    const struct url_case *c = &urls[_i];
    struct ocb_coord_url u;
    char why[200] = "";
    enum ocb_err rc = coord_url_parse(c->url, &u, why, sizeof(why));
    ck_assert_msg((rc == OCB_OK) == c->ok, "%s: %s", c->url, why);
    if (!c->ok) {
        ck_assert_msg(why[0], "%s: no reason given", c->url);
        return;
    }
    ck_assert_int_eq(u.unix_socket, c->unix_socket);
    ck_assert_str_eq(u.host, c->host);
    if (!c->unix_socket)
        ck_assert_uint_eq(u.port, c->port);
    ck_assert_uint_eq(u.db, c->db);
    ck_assert_str_eq(u.user, c->user);
    ck_assert_str_eq(u.password, c->password);
}
END_TEST

START_TEST(test_rediss_reason)
{
    struct ocb_coord_url u;
    char why[200] = "";
    ck_assert_int_eq(coord_url_parse("rediss://r:6380", &u, why, sizeof(why)), OCB_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(why, "TLS"));
}
END_TEST

/* ---- a real redis-server */

static pid_t redis_pid;
static unsigned redis_port;
static char redis_dir[64];

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", redis_port);
    redis_pid = fork();
    ck_assert_int_ge(redis_pid, 0);
    if (redis_pid == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(getenv("OCB_REDIS_BIN") ? getenv("OCB_REDIS_BIN") : "/usr/bin/redis-server",
              "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
              "no", "--dir", redis_dir, "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    /* Ready when it accepts a connection (bounded: 10 s). */
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)redis_port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return;
        usleep(50000);
    }
    ck_abort_msg("redis-server did not start on port %u", redis_port);
}

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

static struct ocb_config *cfg_a, *cfg_b;

static struct ocb_config *make_cfg(const char *replica)
{
    char json[512], err[256];
    struct ocb_config *cfg = NULL;
    snprintf(json, sizeof(json),
             "{\"apps\":[{\"app_id\":\"app1\",\"secret\":\"s\"}],\"coordination\":{"
             "\"redis_url\":\"redis://127.0.0.1:%u/1\",\"replica_id\":\"%s\","
             "\"connect_timeout_ms\":2000,\"timeout_ms\":2000}}",
             redis_port, replica);
    ck_assert_msg(config_parse("test", json, strlen(json), &cfg, err, sizeof(err)) == OCB_OK, "%s",
                  err);
    return cfg;
}

static void setup(void)
{
    snprintf(redis_dir, sizeof(redis_dir), "/tmp/ocb-coord-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(redis_dir));
    redis_port = th_free_port();
    redis_start();
    cfg_a = make_cfg("replica-a");
    cfg_b = make_cfg("replica-b");
}

static void teardown(void)
{
    redis_kill();
    config_free(cfg_a);
    config_free(cfg_b);
    rmdir(redis_dir);
}

START_TEST(test_lock_and_token)
{
    struct ocb_coord *a, *b;
    ck_assert_int_eq(coord_new(cfg_a, &a), OCB_OK);
    ck_assert_int_eq(coord_new(cfg_b, &b), OCB_OK);
    ck_assert_str_eq(coord_replica_id(a), "replica-a");

    struct ocb_coord_token t;
    ck_assert_int_eq(coord_token_get(a, "app1", &t), OCB_ERR_NOT_FOUND);
    ck_assert_uint_eq(t.epoch, 0);

    char va[OCB_COORD_VALUE_MAX], vb[OCB_COORD_VALUE_MAX];
    ck_assert_int_eq(coord_lock_take(a, "app1", "token", 5000, va), OCB_OK);
    ck_assert_int_eq(coord_lock_take(b, "app1", "token", 5000, vb), OCB_ERR_FULL);
    /* Only the holder's value releases it. */
    ck_assert_int_eq(coord_lock_release(b, "app1", "token", vb), OCB_ERR_NOT_FOUND);
    ck_assert_int_eq(coord_lock_take(b, "app1", "token", 5000, vb), OCB_ERR_FULL);

    memset(&t, 0, sizeof(t));
    snprintf(t.access, sizeof(t.access), "access-1");
    snprintf(t.refresh, sizeof(t.refresh), "refresh-1");
    t.expires_wall_ms = ocb_wall_ms() + 3600000;
    t.refresh_wall_ms = ocb_wall_ms() + 3000000;
    ck_assert_int_eq(coord_token_store(a, "app1", 0, &t), OCB_OK);
    ck_assert_uint_eq(t.epoch, 1);
    /* A store that read epoch 0 before loses. */
    struct ocb_coord_token late = t;
    snprintf(late.access, sizeof(late.access), "access-late");
    ck_assert_int_eq(coord_token_store(b, "app1", 0, &late), OCB_ERR_FULL);
    ck_assert_int_eq(coord_lock_release(a, "app1", "token", va), OCB_OK);

    struct ocb_coord_token got;
    ck_assert_int_eq(coord_token_get(b, "app1", &got), OCB_OK);
    ck_assert_str_eq(got.access, "access-1");
    ck_assert_str_eq(got.refresh, "refresh-1");
    ck_assert_uint_eq(got.epoch, 1);
    ck_assert_int_eq(got.expires_wall_ms, t.expires_wall_ms);
    ck_assert_int_eq(got.refresh_wall_ms, t.refresh_wall_ms);
    ck_assert_int_eq(coord_lock_take(b, "app1", "token", 5000, vb), OCB_OK);
    snprintf(got.access, sizeof(got.access), "access-2");
    ck_assert_int_eq(coord_token_store(b, "app1", 1, &got), OCB_OK);
    ck_assert_uint_eq(got.epoch, 2);
    ck_assert_int_eq(coord_lock_release(b, "app1", "token", vb), OCB_OK);
    ck_assert(!coord_degraded(a) && !coord_degraded(b));
    coord_free(a);
    coord_free(b);
}
END_TEST

START_TEST(test_shared_rate_window)
{
    struct ocb_coord *a, *b;
    ck_assert_int_eq(coord_new(cfg_a, &a), OCB_OK);
    ck_assert_int_eq(coord_new(cfg_b, &b), OCB_OK);
    char m[OCB_COORD_VALUE_MAX];
    int64_t retry = 0;
    /* 4 calls per 2 s between two replicas. */
    ck_assert_int_eq(coord_rate_take(a, "app1", 4, 2000, m, &retry), OCB_OK);
    ck_assert_int_eq(coord_rate_take(b, "app1", 4, 2000, m, &retry), OCB_OK);
    ck_assert_int_eq(coord_rate_take(a, "app1", 4, 2000, m, &retry), OCB_OK);
    ck_assert_int_eq(coord_rate_take(b, "app1", 4, 2000, m, &retry), OCB_OK);
    ck_assert_int_eq(coord_rate_done(b, "app1", m), OCB_OK);
    ck_assert_int_eq(coord_rate_take(a, "app1", 4, 2000, m, &retry), OCB_ERR_FULL);
    ck_assert_int_gt(retry, 0);
    ck_assert_int_le(retry, 2001);
    ck_assert_int_eq(coord_rate_take(b, "app1", 4, 2000, m, &retry), OCB_ERR_FULL);
    int64_t wait_ms = retry;
    /* Another app has its own window. */
    ck_assert_int_eq(coord_rate_take(a, "app2", 4, 2000, m, &retry), OCB_OK);
    /* The oldest slot frees when the window has passed it. */
    usleep((useconds_t)(wait_ms + 50) * 1000);
    ck_assert_int_eq(coord_rate_take(b, "app1", 4, 2000, m, &retry), OCB_OK);
    coord_free(a);
    coord_free(b);
}
END_TEST

START_TEST(test_lease)
{
    struct ocb_coord *a, *b;
    ck_assert_int_eq(coord_new(cfg_a, &a), OCB_OK);
    ck_assert_int_eq(coord_new(cfg_b, &b), OCB_OK);
    char holder[OCB_COORD_REPLICA_MAX] = "";
    /* Leases of 3 s: long enough that b's first try always falls inside a's lease, even when the
     * test is descheduled for a while. */
    ck_assert_int_eq(coord_lease(a, "app1", "subscriptions", 3000, holder, sizeof(holder)), OCB_OK);
    ck_assert_int_eq(coord_lease(b, "app1", "subscriptions", 3000, holder, sizeof(holder)),
                     OCB_ERR_FULL);
    ck_assert_str_eq(holder, "replica-a");
    ck_assert_int_eq(coord_lease(a, "app1", "subscriptions", 3000, NULL, 0), OCB_OK); /* renew */
    usleep(3500000);
    ck_assert_int_eq(coord_lease(b, "app1", "subscriptions", 3000, holder, sizeof(holder)), OCB_OK);
    coord_free(a);
    coord_free(b);
}
END_TEST

/* ---- asynchronous calls: results arrive on the coord thread */

static pthread_mutex_t got_mu = PTHREAD_MUTEX_INITIALIZER;
static char got_topic[OCB_REQUESTERS_TOPIC_MAX];
static char got_body[256];
static unsigned char got_corr[16];
static size_t got_corr_len;
static atomic_int n_emitted, n_seen_answers, n_seen_true;

static void on_emit(void *ctx, const struct ocb_requester *r, const char *body, size_t len)
{
    (void)ctx;
    pthread_mutex_lock(&got_mu);
    snprintf(got_topic, sizeof(got_topic), "%s", r->response_topic);
    snprintf(got_body, sizeof(got_body), "%.*s", (int)len, body);
    got_corr_len = r->corr_len < sizeof(got_corr) ? r->corr_len : sizeof(got_corr);
    memcpy(got_corr, r->corr, got_corr_len);
    pthread_mutex_unlock(&got_mu);
    atomic_fetch_add(&n_emitted, 1);
}

static void on_seen(void *ctx, enum ocb_err rc, bool seen)
{
    (void)ctx;
    ck_assert_int_eq(rc, OCB_OK);
    if (seen)
        atomic_fetch_add(&n_seen_true, 1);
    atomic_fetch_add(&n_seen_answers, 1);
}

/* ctx: where to write the rc (a check answered while Redis is down). */
static void on_seen_rc(void *ctx, enum ocb_err rc, bool seen)
{
    atomic_store((atomic_int *)ctx, seen ? -1 : (int)rc);
}

static bool wait_for(atomic_int *v, int want, int ms)
{
    for (int i = 0; i < ms / 20 && atomic_load(v) < want; i++)
        usleep(20000);
    return atomic_load(v) >= want;
}

START_TEST(test_status_forward_and_dedup)
{
    struct ocb_coord *a, *b;
    ck_assert_int_eq(coord_new(cfg_a, &a), OCB_OK);
    ck_assert_int_eq(coord_new(cfg_b, &b), OCB_OK);
    ck_assert_int_eq(coord_start(a), OCB_OK);
    ck_assert_int_eq(coord_start(b), OCB_OK);
    atomic_store(&n_emitted, 0);

    /* The status reaches b before a has shared its requester: b keeps looking. */
    const char *body = "{\"commandId\":\"c1\",\"result\":{\"resultCode\":\"DELIVERED\"}}";
    ck_assert_int_eq(
        coord_status_forward(b, "app1", "c1", body, strlen(body), false, 30000, on_emit, NULL),
        OCB_OK);
    usleep(300000);
    ck_assert_int_eq(atomic_load(&n_emitted), 0);
    struct ocb_requester e;
    const unsigned char corr[] = {0, 1, 2, 0xff};
    ck_assert_int_eq(requesters_entry_fill(&e, "app1", "c1", "reply/here", corr, sizeof(corr), 0),
                     OCB_OK);
    ck_assert_int_eq(coord_requester_put(a, &e, 60000), OCB_OK);
    ck_assert(wait_for(&n_emitted, 1, 5000));
    pthread_mutex_lock(&got_mu);
    ck_assert_str_eq(got_topic, "reply/here");
    ck_assert_str_eq(got_body, body);
    ck_assert_uint_eq(got_corr_len, sizeof(corr));
    ck_assert_mem_eq(got_corr, corr, sizeof(corr));
    pthread_mutex_unlock(&got_mu);

    /* The creating replica's own statuses are its local map's business; a final one
     * still cuts the shared entry's life to the grace time. */
    ck_assert_int_eq(
        coord_status_forward(a, "app1", "c1", body, strlen(body), true, 30000, on_emit, NULL),
        OCB_OK);
    redisContext *rc = redisConnect("127.0.0.1", (int)redis_port);
    ck_assert(rc && !rc->err);
    redisReply *sel = redisCommand(rc, "SELECT 1");
    freeReplyObject(sel);
    long long pttl = -1;
    for (int i = 0; i < 50; i++) {
        redisReply *t = redisCommand(rc, "PTTL ocb:{app1}:req:c1");
        pttl = t && t->type == REDIS_REPLY_INTEGER ? t->integer : -1;
        freeReplyObject(t);
        if (pttl > 0 && pttl <= 30000)
            break;
        usleep(20000);
    }
    ck_assert_msg(pttl > 0 && pttl <= 30000, "PTTL %lld after a final status", pttl);
    ck_assert_int_eq(atomic_load(&n_emitted), 1);

    /* A command without a requester is marked with an empty topic: nothing to forward. */
    struct ocb_requester none;
    memset(&none, 0, sizeof(none));
    snprintf(none.app_id, sizeof(none.app_id), "app1");
    snprintf(none.command_id, sizeof(none.command_id), "c3");
    ck_assert_int_eq(coord_requester_put_async(a, &none, 60000), OCB_OK);
    bool marked = false;
    for (int i = 0; i < 50 && !marked; i++) {
        redisReply *t = redisCommand(rc, "HGET ocb:{app1}:req:c3 replica");
        marked = t && t->type == REDIS_REPLY_STRING && strcmp(t->str, "replica-a") == 0;
        freeReplyObject(t);
        if (!marked)
            usleep(20000);
    }
    ck_assert_msg(marked, "the command without a requester was not marked");
    ck_assert_int_eq(
        coord_status_forward(b, "app1", "c3", body, strlen(body), false, 30000, on_emit, NULL),
        OCB_OK);
    usleep(300000);
    ck_assert_int_eq(atomic_load(&n_emitted), 1);
    redisFree(rc);

    atomic_store(&n_seen_answers, 0);
    atomic_store(&n_seen_true, 0);
    const char *dg = "00112233445566778899aabbccddeeff";
    /* Checks only read: unknown to both until one replica records its acceptance. */
    ck_assert_int_eq(coord_dedup_seen(a, "app1", dg, on_seen, NULL), OCB_OK);
    ck_assert(wait_for(&n_seen_answers, 1, 5000));
    ck_assert_int_eq(coord_dedup_seen(b, "app1", dg, on_seen, NULL), OCB_OK);
    ck_assert(wait_for(&n_seen_answers, 2, 5000));
    ck_assert_int_eq(atomic_load(&n_seen_true), 0);
    ck_assert_int_eq(coord_dedup_record(a, "app1", dg, 1500), OCB_OK);
    /* The record is queued on a's thread: b sees it once a ran it. */
    bool seen_by_b = false;
    for (int i = 0; i < 50 && !seen_by_b; i++) {
        int before = atomic_load(&n_seen_answers);
        ck_assert_int_eq(coord_dedup_seen(b, "app1", dg, on_seen, NULL), OCB_OK);
        ck_assert(wait_for(&n_seen_answers, before + 1, 5000));
        seen_by_b = atomic_load(&n_seen_true) == 1;
        if (!seen_by_b)
            usleep(20000);
    }
    ck_assert_msg(seen_by_b, "b never saw a's record");
    /* Another app's identical body is another message. */
    int before = atomic_load(&n_seen_answers);
    ck_assert_int_eq(coord_dedup_seen(b, "app2", dg, on_seen, NULL), OCB_OK);
    ck_assert(wait_for(&n_seen_answers, before + 1, 5000));
    ck_assert_int_eq(atomic_load(&n_seen_true), 1);
    /* The window (PX) passes: no longer a duplicate. */
    usleep(1700000);
    before = atomic_load(&n_seen_answers);
    ck_assert_int_eq(coord_dedup_seen(b, "app1", dg, on_seen, NULL), OCB_OK);
    ck_assert(wait_for(&n_seen_answers, before + 1, 5000));
    ck_assert_int_eq(atomic_load(&n_seen_true), 1);
    ck_assert_int_eq(coord_dedup_seen(b, "app1", "", on_seen, NULL), OCB_ERR_INVALID);
    ck_assert_int_eq(coord_dedup_record(b, "app1", dg, 0), OCB_ERR_INVALID);
    coord_stop(a);
    coord_stop(b);
    ck_assert_int_eq(
        coord_status_forward(a, "app1", "c2", body, strlen(body), false, 30000, on_emit, NULL),
        OCB_ERR_STOPPED);
    coord_free(a);
    coord_free(b);
}
END_TEST

START_TEST(test_degraded_and_back)
{
    struct ocb_coord *a;
    ck_assert_int_eq(coord_new(cfg_a, &a), OCB_OK);
    ck_assert_int_eq(coord_start(a), OCB_OK);
    struct ocb_coord_token t;
    ck_assert_int_eq(coord_token_get(a, "app1", &t), OCB_ERR_NOT_FOUND);
    redis_kill();
    ck_assert_int_eq(coord_token_get(a, "app1", &t), OCB_ERR_NOT_CONNECTED);
    ck_assert(coord_degraded(a));
    /* Fails fast during the backoff: no connect attempt, no timeout. */
    int64_t t0 = ocb_now_ms();
    char m[OCB_COORD_VALUE_MAX];
    int64_t retry;
    ck_assert_int_eq(coord_rate_take(a, "app1", 4, 1000, m, &retry), OCB_ERR_NOT_CONNECTED);
    ck_assert_int_lt(ocb_now_ms() - t0, 1000); /* a timeout would take 2 s */
    /* Once the coord thread's connection is down too (its heartbeat), a re-push check is
     * answered at once on the caller's thread, and a record is not queued. */
    static atomic_int seen_rc;
    bool at_once = false;
    for (int i = 0; i < 60 && !at_once; i++) {
        atomic_store(&seen_rc, OCB_ERR_TIMEOUT);
        ck_assert_int_eq(coord_dedup_seen(a, "app1", "abcd", on_seen_rc, &seen_rc), OCB_OK);
        at_once = atomic_load(&seen_rc) == OCB_ERR_NOT_CONNECTED;
        if (!at_once)
            usleep(100000); /* queued: answered on the coord thread */
    }
    ck_assert_msg(at_once, "a check was still queued with redis down");
    ck_assert_int_eq(coord_dedup_record(a, "app1", "abcd", 1000), OCB_ERR_NOT_CONNECTED);
    redis_start();
    /* Back within the backoff cap plus a heartbeat. */
    bool back = false;
    for (int i = 0; i < 100 && !back; i++) {
        usleep(100000);
        coord_poll(a);
        back = !coord_degraded(a);
    }
    ck_assert_msg(back, "still degraded after redis came back");
    ck_assert_int_eq(coord_rate_take(a, "app1", 4, 1000, m, &retry), OCB_OK);
    coord_free(a);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const url_tests[] = {test_url, test_rediss_reason, NULL};
    const struct th_loop url_loops[] = {{test_url, 0, (int)(sizeof(urls) / sizeof(urls[0]))},
                                        {NULL, 0, 0}};
    const TTest *const redis_tests[] = {
        test_lock_and_token,           test_shared_rate_window, test_lease,
        test_status_forward_and_dedup, test_degraded_and_back,  NULL};
    const struct th_case cases[] = {
        {.name = "url", .tests = url_tests, .loops = url_loops},
        {.name = "redis",
         .setup = setup,
         .teardown = teardown,
         .timeout_s = 60,
         .tests = redis_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "coord", cases);
}
