/*
 * th_sim.c: start/stop ocbridge-sim, talk to it over HTTPS with libcurl, receive its pushes
 * with a real libmicrohttpd server.  See th_sim.h.  The clock, sleeps and the binary's path
 * come from the shared harness (th_proc.c).
 */
#include "th_sim.h"

#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char th_sim_certs[256];
char th_sim_other_certs[256];

static void make_certs_into(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/ocbsim-certs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *args[] = {"--make-certs", dir, NULL};
    char err[512];
    ck_assert_int_eq(th_sim_run(args, err, sizeof err), 0);
}

static void remove_dir(char *dir)
{
    static const char *files[] = {"ca.pem", "server.pem", "server-key.pem", "client.pem",
                                  "client-key.pem"};
    if (!dir[0])
        return;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    dir[0] = '\0';
}

void th_sim_make_certs(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_certs_into(th_sim_certs, sizeof th_sim_certs);
}

void th_sim_remove_certs(void)
{
    remove_dir(th_sim_certs);
    remove_dir(th_sim_other_certs);
}

int th_sim_run(const char *const *args, char *err, size_t errlen)
{
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *argv[64];
        size_t n = 0;
        argv[n++] = th_env("OCB_SIM_BIN");
        for (size_t i = 0; args[i] && n < 63; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        dup2(pipefd[1], 2);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        close(pipefd[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t r;
    char buf[512];
    while ((r = read(pipefd[0], buf, sizeof buf)) > 0) {
        size_t take = (size_t)r;
        if (len + take >= errlen)
            take = errlen - len - 1;
        memcpy(err + len, buf, take);
        len += take;
    }
    err[len] = '\0';
    close(pipefd[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

void th_sim_start(struct th_sim *s, const char *const *args)
{
    memset(s, 0, sizeof *s);
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    bool plain = false;
    for (size_t i = 0; args && args[i]; i++)
        plain = plain || strcmp(args[i], "--plain") == 0;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *argv[96];
        size_t n = 0;
        argv[n++] = th_env("OCB_SIM_BIN");
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
        argv[n++] = "--admin";
        argv[n++] = "127.0.0.1:0";
        argv[n++] = "--certs";
        argv[n++] = th_sim_certs;
        argv[n++] = "--log-level";
        argv[n++] = "warn";
        for (size_t i = 0; args && args[i] && n < 95; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    s->pid = pid;
    char line[256];
    size_t len = 0;
    long long deadline = th_now_ms() + 15000;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        struct pollfd p = {pipefd[0], POLLIN, 0};
        long long left = deadline - th_now_ms();
        ck_assert_msg(left > 0, "ocbridge-sim did not print its start line");
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t r = read(pipefd[0], line + len, sizeof line - 1 - len);
        ck_assert_msg(r > 0, "ocbridge-sim exited before listening");
        len += (size_t)r;
    }
    line[len] = '\0';
    close(pipefd[0]);
    char scheme[8];
    ck_assert_msg(sscanf(line, "ocbridge-sim: api %7[a-z]://127.0.0.1:%u admin http://127.0.0.1:%u",
                         scheme, &s->api_port, &s->admin_port) == 3,
                  "unexpected start line: %s", line);
    s->tls = strcmp(scheme, "https") == 0;
    ck_assert(s->tls == !plain);
    snprintf(s->api, sizeof s->api, "%s://127.0.0.1:%u", scheme, s->api_port);
    snprintf(s->admin, sizeof s->admin, "http://127.0.0.1:%u", s->admin_port);
}

void th_sim_stop(struct th_sim *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int st = 0;
    long long deadline = th_now_ms() + 10000;
    pid_t w;
    while ((w = waitpid(s->pid, &st, WNOHANG)) == 0 && th_now_ms() < deadline)
        th_sleep_ms(20);
    if (w == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
        s->pid = 0;
        ck_abort_msg("ocbridge-sim did not stop within 10 s of SIGTERM");
    }
    s->pid = 0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ocbridge-sim exit status %d", st);
}

/* ---- HTTP client ---- */

struct buf {
    char *p;
    size_t n;
};

static size_t on_data(char *d, size_t size, size_t nm, void *ud)
{
    struct buf *b = ud;
    size_t add = size * nm;
    char *np = realloc(b->p, b->n + add + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, d, add);
    b->p = np;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

struct th_sim_resp th_sim_http(const char *method, const char *url, const char *const *headers,
                               const char *body, enum th_sim_cert cert)
{
    struct th_sim_resp r = {0};
    struct buf b = {calloc(1, 1), 0};
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    char ca[300], crt[300], key[300];
    const char *dir = cert == TH_SIM_CERT_OTHER_CA ? th_sim_other_certs : th_sim_certs;
    snprintf(ca, sizeof ca, "%s/ca.pem", th_sim_certs);
    snprintf(crt, sizeof crt, "%s/client.pem", dir);
    snprintf(key, sizeof key, "%s/client-key.pem", dir);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    if (cert != TH_SIM_CERT_NONE) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, crt);
        curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    }
    r.curl_rc = (int)curl_easy_perform(c);
    if (r.curl_rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            snprintf(r.content_type, sizeof r.content_type, "%s", ct);
    }
    r.body = b.p;
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r;
}

void th_sim_resp_free(struct th_sim_resp *r)
{
    free(r->body);
    r->body = NULL;
}

cJSON *th_sim_json(const struct th_sim_resp *r)
{
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    ck_assert_msg(j != NULL, "not JSON: %s", r->body ? r->body : "(null)");
    return j;
}

struct th_sim_resp th_sim_api(const struct th_sim *s, const char *method, const char *path,
                              const char *app, const char *token, const char *body)
{
    char url[1024], k[256], a[256];
    snprintf(url, sizeof url, "%s%s", s->api, path);
    snprintf(k, sizeof k, "app_key: %s", app ? app : "");
    snprintf(a, sizeof a, "Authorization: Bearer %s", token ? token : "");
    const char *hs[4];
    size_t n = 0;
    if (app)
        hs[n++] = k;
    if (token)
        hs[n++] = a;
    hs[n++] = "Content-Type: application/json";
    hs[n] = NULL;
    return th_sim_http(method, url, hs, body, TH_SIM_CERT_CLIENT);
}

struct th_sim_resp th_sim_admin(const struct th_sim *s, const char *method, const char *path,
                                const char *body)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", s->admin, path);
    return th_sim_http(method, url, NULL, body, TH_SIM_CERT_NONE);
}

char *th_sim_login(const struct th_sim *s, const char *app, const char *secret)
{
    char url[256], body[256];
    snprintf(url, sizeof url, "%s/iocm/app/sec/v1.1.0/login", s->api);
    snprintf(body, sizeof body, "appId=%s&secret=%s", app, secret);
    const char *hs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    struct th_sim_resp r = th_sim_http("POST", url, hs, body, TH_SIM_CERT_CLIENT);
    ck_assert_msg(r.status == 200, "login %s: %ld %s", app, r.status, r.body);
    cJSON *j = th_sim_json(&r);
    const cJSON *t = cJSON_GetObjectItem(j, "accessToken");
    ck_assert(cJSON_IsString(t));
    char *tok = strdup(t->valuestring);
    cJSON_Delete(j);
    th_sim_resp_free(&r);
    return tok;
}

void th_sim_expect(const struct th_sim_resp *r, long status, const char *body)
{
    ck_assert_msg(r->status == status, "expected %ld, got %ld (curl %d): %s", status, r->status,
                  r->curl_rc, r->body ? r->body : "");
    if (body)
        ck_assert_str_eq(r->body ? r->body : "", body);
}

void th_sim_first_device(const struct th_sim *s, const char *app, char out[37])
{
    struct th_sim_resp r = th_sim_admin(s, "GET", "/devices", NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *arr = th_sim_json(&r);
    const cJSON *d;
    out[0] = '\0';
    cJSON_ArrayForEach(d, arr)
    {
        const cJSON *a = cJSON_GetObjectItem(d, "appId");
        if (!app || strcmp(a->valuestring, app) == 0) {
            snprintf(out, 37, "%s", cJSON_GetObjectItem(d, "deviceId")->valuestring);
            break;
        }
    }
    cJSON_Delete(arr);
    th_sim_resp_free(&r);
    ck_assert_msg(out[0], "no device for %s", app ? app : "(any)");
}

cJSON *th_sim_pushes(const struct th_sim *s)
{
    struct th_sim_resp r = th_sim_admin(s, "GET", "/pushes", NULL);
    th_sim_expect(&r, 200, NULL);
    cJSON *j = th_sim_json(&r);
    th_sim_resp_free(&r);
    return j;
}

void th_sim_subscribe(const struct th_sim *s, const char *app, const char *token, const char *type,
                      const struct th_sim_receiver *r, const char *path)
{
    char body[512];
    snprintf(body, sizeof body, "{\"notifyType\":\"%s\",\"callbackUrl\":\"http://127.0.0.1:%u%s\"}",
             type, th_sim_recv_port(r), path);
    struct th_sim_resp resp =
        th_sim_api(s, "POST", "/iocm/app/sub/v1.2.0/subscriptions", app, token, body);
    th_sim_expect(&resp, 201, NULL);
    th_sim_resp_free(&resp);
}

/* ---- push receiver ---- */

#define RECV_MAX 512

struct th_sim_receiver {
    struct MHD_Daemon *d;
    unsigned port;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct th_sim_push got[RECV_MAX];
    size_t n;
    int script[64];
    size_t nscript, next;
    int dflt;
    long hang_ms;
    char *key, *cert;
};

struct rctx {
    char *body;
    size_t n;
};

static enum MHD_Result on_push(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *up,
                               size_t *up_size, void **con_cls)
{
    (void)method;
    (void)version;
    struct th_sim_receiver *r = cls;
    struct rctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        c->body = calloc(1, 1);
        *con_cls = c;
        return MHD_YES;
    }
    if (*up_size) {
        char *nb = realloc(c->body, c->n + *up_size + 1);
        if (!nb)
            return MHD_NO;
        memcpy(nb + c->n, up, *up_size);
        c->n += *up_size;
        nb[c->n] = '\0';
        c->body = nb;
        *up_size = 0;
        return MHD_YES;
    }
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    pthread_mutex_lock(&r->lock);
    int status = r->next < r->nscript ? r->script[r->next] : r->dflt;
    r->next++;
    if (r->n < RECV_MAX) {
        struct th_sim_push *p = &r->got[r->n++];
        snprintf(p->path, sizeof p->path, "%s", url);
        snprintf(p->content_type, sizeof p->content_type, "%s", ct ? ct : "");
        p->body = strdup(c->body);
    }
    long hang = r->hang_ms;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (status < 0) {
        th_sleep_ms(hang);
        status = 200;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct rctx *c = *con_cls;
    if (c) {
        free(c->body);
        free(c);
    }
    *con_cls = NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *b = calloc(1, 65536);
    size_t n = fread(b, 1, 65535, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

struct th_sim_receiver *th_sim_recv_start(bool tls)
{
    struct th_sim_receiver *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->dflt = 200;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (tls) {
        char p[512];
        snprintf(p, sizeof p, "%s/server-key.pem", th_sim_certs);
        r->key = slurp(p);
        snprintf(p, sizeof p, "%s/server.pem", th_sim_certs);
        r->cert = slurp(p);
        r->d = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, on_push, r,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                MHD_OPTION_NOTIFY_COMPLETED, on_done, r, MHD_OPTION_HTTPS_MEM_KEY,
                                r->key, MHD_OPTION_HTTPS_MEM_CERT, r->cert, MHD_OPTION_END);
    } else {
        r->d = MHD_start_daemon(flags, 0, NULL, NULL, on_push, r, MHD_OPTION_SOCK_ADDR,
                                (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_done, r,
                                MHD_OPTION_END);
    }
    ck_assert_ptr_nonnull(r->d);
    r->port = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return r;
}

void th_sim_recv_stop(struct th_sim_receiver *r)
{
    if (!r)
        return;
    MHD_stop_daemon(r->d);
    for (size_t i = 0; i < r->n; i++)
        free(r->got[i].body);
    free(r->key);
    free(r->cert);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

unsigned th_sim_recv_port(const struct th_sim_receiver *r)
{
    return r->port;
}

void th_sim_recv_script(struct th_sim_receiver *r, const int *statuses, size_t n, int dflt,
                        long hang_ms)
{
    pthread_mutex_lock(&r->lock);
    ck_assert_uint_le(n, 64);
    memcpy(r->script, statuses, n * sizeof *statuses);
    r->nscript = n;
    r->next = 0;
    r->dflt = dflt;
    r->hang_ms = hang_ms;
    pthread_mutex_unlock(&r->lock);
}

size_t th_sim_recv_wait(struct th_sim_receiver *r, size_t n, long deadline_ms)
{
    long long end = th_now_ms() + deadline_ms;
    pthread_mutex_lock(&r->lock);
    while (r->n < n && th_now_ms() < end) {
        pthread_mutex_unlock(&r->lock);
        th_sleep_ms(10);
        pthread_mutex_lock(&r->lock);
    }
    size_t got = r->n;
    pthread_mutex_unlock(&r->lock);
    return got;
}

size_t th_sim_recv_count(struct th_sim_receiver *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

struct th_sim_push th_sim_recv_get(struct th_sim_receiver *r, size_t i)
{
    pthread_mutex_lock(&r->lock);
    ck_assert_uint_lt(i, r->n);
    struct th_sim_push p = r->got[i];
    p.body = strdup(p.body);
    pthread_mutex_unlock(&r->lock);
    return p;
}

cJSON *th_sim_recv_bodies(struct th_sim_receiver *r, const char *path)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        if (!path || strcmp(r->got[i].path, path) == 0) {
            cJSON *j = cJSON_Parse(r->got[i].body);
            ck_assert_msg(j != NULL, "push body is not JSON: %s", r->got[i].body);
            cJSON_AddItemToArray(arr, j);
        }
    pthread_mutex_unlock(&r->lock);
    return arr;
}

void th_sim_make_other_certs(void)
{
    if (!th_sim_other_certs[0])
        make_certs_into(th_sim_other_certs, sizeof th_sim_other_certs);
}
