/*
 * th_http.c: an HTTP(S) client for tests on libcurl, synchronous or on a
 * thread of its own (to hold several requests in flight at once), and the
 * helpers that start the bridge and read its /readyz and /metrics.
 */
#include "harness.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

struct buf {
    char *data;
    size_t len;
};

struct upload {
    const char *data;
    size_t len, pos;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    char *nd = realloc(b->data, b->len + n + 1);

    if (nd == NULL)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->len += n;
    nd[b->len] = '\0';
    b->data = nd;
    return n;
}

/* Feed the body in small pieces so that chunked uploads really are chunked. */
static size_t on_read(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct upload *u = ud;
    size_t n = size * nmemb;

    if (n > 4096)
        n = 4096;
    if (n > u->len - u->pos)
        n = u->len - u->pos;
    memcpy(ptr, u->data + u->pos, n);
    u->pos += n;
    return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
}

bool th_http(const char *method, const char *url, const void *body, size_t len,
             const struct th_http_opts *opts, struct th_http_resp *resp)
{
    struct th_http_opts none;
    struct buf data = {0}, hdrs = {0};
    struct upload up = {body, len, 0};
    struct curl_slist *headers = NULL;
    char ct[128];
    CURL *h;
    CURLcode cc;

    pthread_once(&curl_once, curl_init_once);
    memset(resp, 0, sizeof(*resp));
    memset(&none, 0, sizeof(none));
    if (opts == NULL)
        opts = &none;
    h = curl_easy_init();
    ck_assert_msg(h != NULL, "curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->timeout_ms > 0 ? opts->timeout_ms : 20000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &data);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hdrs);
    if (opts->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, opts->ca_file);
    if (opts->cert_file != NULL)
        curl_easy_setopt(h, CURLOPT_SSLCERT, opts->cert_file);
    if (opts->key_file != NULL)
        curl_easy_setopt(h, CURLOPT_SSLKEY, opts->key_file);

    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        if (opts->chunked) {
            headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h, CURLOPT_READDATA, &up);
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 opts->content_type != NULL ? opts->content_type : "application/json");
        headers = curl_slist_append(headers, ct);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (headers != NULL)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

    cc = curl_easy_perform(h);
    resp->curl_code = (int)cc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->body = data.data != NULL ? data.data : calloc(1, 1);
    resp->len = data.len;
    resp->headers = hdrs.data != NULL ? hdrs.data : calloc(1, 1);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return resp->status > 0;
}

const char *th_http_header(const struct th_http_resp *resp, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *line = resp->headers;

    while (line != NULL && *line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t llen = eol != NULL ? (size_t)(eol - line) : strlen(line);

        if (llen > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            size_t vlen;

            while (*v == ' ' || *v == '\t')
                v++;
            vlen = llen - (size_t)(v - line);
            while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
                vlen--;
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return out;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return NULL;
}

void th_http_resp_free(struct th_http_resp *resp)
{
    free(resp->body);
    free(resp->headers);
    memset(resp, 0, sizeof(*resp));
}

struct th_http_async {
    pthread_t thread;
    char *method, *url, *body;
    size_t len;
    struct th_http_opts opts;
    char *ca, *cert, *key, *ct;
    struct th_http_resp resp;
    bool ok;
};

static void *async_main(void *arg)
{
    struct th_http_async *a = arg;

    a->ok = th_http(a->method, a->url, a->body, a->len, &a->opts, &a->resp);
    return NULL;
}

static char *dup_opt(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

struct th_http_async *th_http_start(const char *method, const char *url, const void *body,
                                    size_t len, const struct th_http_opts *opts)
{
    struct th_http_async *a = calloc(1, sizeof(*a));

    ck_assert(a != NULL);
    a->method = strdup(method);
    a->url = strdup(url);
    a->body = malloc(len + 1);
    ck_assert(a->method != NULL && a->url != NULL && a->body != NULL);
    if (len > 0)
        memcpy(a->body, body, len);
    a->len = len;
    if (opts != NULL) {
        a->opts = *opts;
        a->opts.ca_file = a->ca = dup_opt(opts->ca_file);
        a->opts.cert_file = a->cert = dup_opt(opts->cert_file);
        a->opts.key_file = a->key = dup_opt(opts->key_file);
        a->opts.content_type = a->ct = dup_opt(opts->content_type);
    }
    ck_assert_msg(pthread_create(&a->thread, NULL, async_main, a) == 0, "pthread_create");
    return a;
}

bool th_http_join(struct th_http_async *a, struct th_http_resp *resp)
{
    bool ok;

    pthread_join(a->thread, NULL);
    *resp = a->resp;
    ok = a->ok;
    free(a->method);
    free(a->url);
    free(a->body);
    free(a->ca);
    free(a->cert);
    free(a->key);
    free(a->ct);
    free(a);
    return ok;
}

/* ---- the bridge */

void th_bridge_start(struct th_bridge *b, const char *config_json, bool tls)
{
    char name[32];
    char *argv[4];

    ck_assert_msg(b->port > 0, "set th_bridge.port (the port the config listens on) first");
    snprintf(name, sizeof(name), "bridge-%d.json", b->port);
    th_path(b->config, sizeof(b->config), name);
    ck_assert_msg(th_write_file(b->config, config_json, strlen(config_json)),
                  "cannot write the bridge config");
    snprintf(b->base, sizeof(b->base), "%s://127.0.0.1:%d", tls ? "https" : "http", b->port);
    snprintf(name, sizeof(name), "bridge-%d", b->port);
    argv[0] = (char *)th_env("OCB_BRIDGE_BIN");
    argv[1] = "-c";
    argv[2] = b->config;
    argv[3] = NULL;
    /* Every bridge gets a state directory of its own (kept across restarts on
     * the same port), unless its config names one. */
    if (strstr(config_json, "\"state\"") == NULL) {
        char dir[TH_PATH_MAX];

        snprintf(name, sizeof(name), "state-%d", b->port);
        th_path(dir, sizeof(dir), name);
        setenv("OCB_STATE_DIR", dir, 1);
    }
    snprintf(name, sizeof(name), "bridge-%d", b->port);
    th_spawn(&b->proc, name, argv);
    unsetenv("OCB_STATE_DIR");
    if (!th_wait_port(b->port, 15000)) {
        th_log_dump(&b->proc, 60);
        ck_abort_msg("the bridge did not listen on port %d", b->port);
    }
}

int th_bridge_stop(struct th_bridge *b)
{
    return th_stop(&b->proc, SIGTERM, 15000);
}

bool th_bridge_wait_ready(struct th_bridge *b, const struct th_http_opts *opts, int timeout_ms)
{
    char url[128];
    long long end = th_now_ms() + timeout_ms;

    snprintf(url, sizeof(url), "%s/readyz", b->base);
    do {
        struct th_http_resp r;
        bool ok = th_http("GET", url, NULL, 0, opts, &r) && r.status == 200;

        th_http_resp_free(&r);
        /* /readyz stays 200 while the spool takes pushes with the broker away;
         * tests mean "connected" too. */
        if (ok && th_metric(b, opts, "ocb_mqtt_connected") == 1)
            return true;
        th_sleep_ms(50);
    } while (th_now_ms() < end);
    return false;
}

double th_metric(struct th_bridge *b, const struct th_http_opts *opts, const char *series)
{
    char url[128];
    struct th_http_resp r;
    double v = -1;
    size_t slen = strlen(series);
    const char *line;

    snprintf(url, sizeof(url), "%s/metrics", b->base);
    if (!th_http("GET", url, NULL, 0, opts, &r) || r.status != 200) {
        th_http_resp_free(&r);
        return -1;
    }
    for (line = r.body; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');

        if (strncmp(line, series, slen) == 0 && line[slen] == ' ') {
            v = strtod(line + slen + 1, NULL);
            break;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    th_http_resp_free(&r);
    return v;
}

bool th_wait_metric(struct th_bridge *b, const struct th_http_opts *opts, const char *series,
                    double want, int timeout_ms)
{
    long long end = th_now_ms() + timeout_ms;

    do {
        if (th_metric(b, opts, series) == want)
            return true;
        th_sleep_ms(20);
    } while (th_now_ms() < end);
    return false;
}
