/*
 * sim_http.c: the libmicrohttpd edge.  Turns a connection's request into a struct sim_req, calls
 * the module's handler and sends its struct sim_resp.
 *
 * One thread per connection: a fault rule may sleep (latency injection) and must delay only its
 * own connection.  Bodies are collected up to max_body; a larger body is answered 413 without
 * keeping it.
 *
 * Mutual TLS: libmicrohttpd (GnuTLS) asks for a client certificate when given a trust list
 * (MHD_OPTION_HTTPS_MEM_TRUST) but does not insist on one, so every request on a TLS listener with
 * a CA is checked here with gnutls_certificate_verify_peers (chain to ca.pem, clientAuth purpose).
 * A request without a valid certificate gets a fatal TLS alert and the connection is closed, which
 * is what a client of the real platform sees when its certificate is refused.
 */
#include "sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KV 128

struct sim_http {
    struct MHD_Daemon *daemon;
    sim_handler_fn handler;
    size_t max_body;
    bool verify_client;
};

struct req_ctx {
    char *body;
    size_t len, cap;
    bool too_big;
};

struct kv_list {
    struct sim_kv *items;
    size_t n;
    bool lower;
};

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct kv_list *l = cls;
    if (l->n >= MAX_KV || !key)
        return MHD_YES;
    char *k = strdup(key);
    char *v = strdup(value ? value : "");
    if (!k || !v) {
        free(k);
        free(v);
        return MHD_NO;
    }
    if (l->lower)
        for (char *c = k; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    l->items[l->n].key = k;
    l->items[l->n].val = v;
    l->n++;
    return MHD_YES;
}

static void free_kv(struct kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].val);
    }
}

static bool client_cert_ok(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return false;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned int n = 0;
    if (gnutls_certificate_type_get(s) != GNUTLS_CRT_X509 || !gnutls_certificate_get_peers(s, &n) ||
        n == 0) {
        SIM_WARN("http", "TLS client presented no certificate");
        return false;
    }
    gnutls_typed_vdata_st purpose = {.type = GNUTLS_DT_KEY_PURPOSE_OID,
                                     .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT};
    unsigned int status = 0;
    int rc = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
    if (rc != GNUTLS_E_SUCCESS || status != 0) {
        gnutls_datum_t txt = {NULL, 0};
        if (rc == GNUTLS_E_SUCCESS &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
            SIM_WARN("http", "TLS client certificate rejected: %s", (char *)txt.data);
            gnutls_free(txt.data);
        } else {
            SIM_WARN("http", "TLS client certificate rejected: %s", gnutls_strerror(rc));
        }
        return false;
    }
    return true;
}

static void refuse_tls(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci && ci->tls_session) {
#ifdef GNUTLS_A_CERTIFICATE_REQUIRED
        gnutls_alert_send((gnutls_session_t)ci->tls_session, GNUTLS_AL_FATAL,
                          GNUTLS_A_CERTIFICATE_REQUIRED);
#else
        gnutls_alert_send((gnutls_session_t)ci->tls_session, GNUTLS_AL_FATAL,
                          GNUTLS_A_BAD_CERTIFICATE);
#endif
    }
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, const struct sim_resp *r)
{
    size_t len = r->body ? strlen(r->body) : 0;
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(len, r->body ? r->body : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!mr)
        return MHD_NO;
    /* Every answer names its type, empty ones included (clients choke on a missing one). */
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct sim_http *h = cls;
    struct req_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
        if (h->verify_client && !client_cert_ok(conn)) {
            refuse_tls(conn);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (ctx->too_big || ctx->len + n > h->max_body) {
            ctx->too_big = true;
            return MHD_YES;
        }
        if (ctx->len + n + 1 > ctx->cap) {
            size_t cap = ctx->cap ? ctx->cap : 1024;
            while (cap < ctx->len + n + 1)
                cap *= 2;
            char *nb = realloc(ctx->body, cap);
            if (!nb)
                return MHD_NO;
            ctx->body = nb;
            ctx->cap = cap;
        }
        memcpy(ctx->body + ctx->len, upload, n);
        ctx->len += n;
        ctx->body[ctx->len] = '\0';
        return MHD_YES;
    }

    struct sim_resp resp = {.status = 500};
    if (ctx->too_big) {
        SIM_WARN("http", "%s %s: body over %zu bytes refused", method, url, h->max_body);
        sim_resp_error(&resp, 413, "100022", "The request body is too large.");
        enum MHD_Result r = send_resp(conn, &resp);
        free(resp.body);
        return r;
    }
    struct sim_kv q[MAX_KV], hd[MAX_KV];
    struct kv_list ql = {q, 0, false}, hl = {hd, 0, true};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &ql);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &hl);
    struct sim_req req = {
        .method = method,
        .path = url,
        .query = q,
        .nquery = ql.n,
        .headers = hd,
        .nheaders = hl.n,
        .body = ctx->body ? ctx->body : "",
        .body_len = ctx->len,
    };
    h->handler(&req, &resp);
    enum MHD_Result ret;
    if (resp.drop) {
        refuse_tls(conn);
        ret = MHD_NO;
    } else {
        ret = send_resp(conn, &resp);
    }
    free(resp.body);
    free_kv(&ql);
    free_kv(&hl);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req_ctx *ctx = *con_cls;
    if (ctx) {
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

/* MHD hands us its own format strings; the attribute tells the compiler so. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    SIM_DEBUG("mhd", "%s", buf);
}

static bool parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return false;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    long port;
    if (!sim_parse_long(colon + 1, 0, 65535, &port))
        return false;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

enum ocb_err sim_http_start(const char *addr, const struct sim_http_tls *tls,
                            sim_handler_fn handler, size_t max_body, struct sim_http **out,
                            unsigned *port_out)
{
    struct sockaddr_in sa;
    if (!parse_addr(addr, &sa))
        return OCB_ERR_INVALID;
    struct sim_http *h = calloc(1, sizeof *h);
    if (!h)
        return OCB_ERR_NOMEM;
    h->handler = handler;
    h->max_body = max_body;
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            SIM_ERROR("http", "this libmicrohttpd has no TLS support; use --plain");
            free(h);
            return OCB_ERR_TLS;
        }
        flags |= MHD_USE_TLS;
        h->verify_client = tls->ca_pem != NULL;
        h->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
            NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_HTTPS_MEM_KEY,
            tls->key_pem, MHD_OPTION_HTTPS_MEM_CERT, tls->cert_pem,
            tls->ca_pem ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, tls->ca_pem, MHD_OPTION_END);
    } else {
        h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                                     (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                                     on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    }
    if (!h->daemon) {
        free(h);
        return OCB_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (port_out)
        *port_out = di ? di->port : ntohs(sa.sin_port);
    *out = h;
    return OCB_OK;
}

void sim_http_stop(struct sim_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
