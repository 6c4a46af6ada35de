/*
 * th_fakebroker.c: the scripted MQTT broker (th_fakebroker.h).
 *
 * One thread owns the listening socket and reads the client; the test's
 * thread may write to the client (DISCONNECT, PUBLISH, released PUBACKs) or
 * shut its socket down.  One mutex guards everything but the read buffer,
 * and every write happens under it, so packets never interleave.  Writes are
 * small and the client is a live paho, so a blocking send under the mutex
 * cannot stall for long.
 */
#include "th_fakebroker.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#define FB_MAX_PACKET   (256 * 1024)
#define FB_MAX_SESSIONS 8
#define FB_MAX_FILTERS  32
#define FB_MAX_TIMES    64
#define FB_MAX_HELD     256
#define FB_ID_MAX       128
#define FB_EVENTS_MAX   (1024 * 1024)

struct fb_session {
    bool used;
    char id[FB_ID_MAX];
    char *filters[FB_MAX_FILTERS];
    size_t n;
};

struct th_fb {
    pthread_mutex_t mu;
    pthread_t thread;
    bool stop;
    int lfd;
    int cfd; /* -1 when no client */
    int wake[2];
    char url[64];

    /* Guarded by mu. */
    struct th_fb_script script;
    int version; /* of the current client */
    bool connected;
    bool close_marked; /* the current connection's close time is recorded */
    char client_id[FB_ID_MAX];
    struct fb_session sessions[FB_MAX_SESSIONS];
    char *events;
    size_t ev_len;
    long long connect_ms[FB_MAX_TIMES];
    size_t n_connects;
    long long close_ms[FB_MAX_TIMES];
    size_t n_closes;
    uint16_t held[FB_MAX_HELD];
    size_t n_held;
    uint16_t next_pid;

    /* Broker thread only. */
    unsigned char *rbuf;
    size_t rlen;
};

/* Self-contained (no harness.h) so that unit tests can link this file alone. */
static long long fb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fb_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void th_fb_script_init(struct th_fb_script *s)
{
    memset(s, 0, sizeof(*s));
    s->session_expiry = -1;
    s->shared_sub_avail = -1;
    s->retain_avail = -1;
}

/* ---- helpers (mu held) */

static void event_locked(struct th_fb *fb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void event_locked(struct th_fb *fb, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    for (int i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    if (fb->ev_len + (size_t)n + 2 > FB_EVENTS_MAX)
        return;
    memcpy(fb->events + fb->ev_len, line, (size_t)n);
    fb->ev_len += (size_t)n;
    fb->events[fb->ev_len++] = '\n';
    fb->events[fb->ev_len] = '\0';
}

static void send_locked(struct th_fb *fb, const unsigned char *data, size_t len)
{
    while (fb->cfd >= 0 && len > 0) {
        ssize_t w = send(fb->cfd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        data += w;
        len -= (size_t)w;
    }
}

/* A packet: fixed header byte, remaining length, body. */
static void send_packet_locked(struct th_fb *fb, unsigned char first, const unsigned char *body,
                               size_t len)
{
    unsigned char hdr[5];
    size_t n = 0, rest = len;

    hdr[n++] = first;
    do {
        unsigned char b = rest % 128;
        rest /= 128;
        if (rest > 0)
            b |= 0x80;
        hdr[n++] = b;
    } while (rest > 0 && n < sizeof(hdr));
    send_locked(fb, hdr, n);
    if (len > 0)
        send_locked(fb, body, len);
}

static void mark_closed_locked(struct th_fb *fb)
{
    if (fb->close_marked)
        return;
    fb->close_marked = true;
    fb->connected = false;
    if (fb->n_closes < FB_MAX_TIMES)
        fb->close_ms[fb->n_closes++] = fb_now_ms();
}

static void shutdown_locked(struct th_fb *fb)
{
    if (fb->cfd < 0)
        return;
    mark_closed_locked(fb);
    shutdown(fb->cfd, SHUT_RDWR);
}

static struct fb_session *session_find_locked(struct th_fb *fb, const char *id, bool create)
{
    for (size_t i = 0; i < FB_MAX_SESSIONS; i++) {
        if (fb->sessions[i].used && strcmp(fb->sessions[i].id, id) == 0)
            return &fb->sessions[i];
    }
    if (!create)
        return NULL;
    for (size_t i = 0; i < FB_MAX_SESSIONS; i++) {
        if (!fb->sessions[i].used) {
            fb->sessions[i].used = true;
            snprintf(fb->sessions[i].id, sizeof(fb->sessions[i].id), "%s", id);
            return &fb->sessions[i];
        }
    }
    return NULL;
}

static void session_clear(struct fb_session *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->filters[i]);
    memset(s, 0, sizeof(*s));
}

static void session_add(struct fb_session *s, const char *filter)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->filters[i], filter) == 0)
            return;
    }
    if (s->n < FB_MAX_FILTERS) {
        s->filters[s->n] = strdup(filter);
        if (s->filters[s->n] != NULL)
            s->n++;
    }
}

static bool session_remove(struct fb_session *s, const char *filter)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->filters[i], filter) == 0) {
            free(s->filters[i]);
            s->filters[i] = s->filters[--s->n];
            return true;
        }
    }
    return false;
}

/* ---- packet reading (broker thread) */

struct rd {
    const unsigned char *p;
    size_t left;
    bool bad;
};

static unsigned rd_u8(struct rd *r)
{
    if (r->left < 1) {
        r->bad = true;
        return 0;
    }
    r->left--;
    return *r->p++;
}

static unsigned rd_u16(struct rd *r)
{
    unsigned hi = rd_u8(r);
    return (hi << 8) | rd_u8(r);
}

static size_t rd_varint(struct rd *r)
{
    size_t v = 0, mul = 1;
    for (int i = 0; i < 4; i++) {
        unsigned b = rd_u8(r);
        v += (b & 0x7f) * mul;
        if ((b & 0x80) == 0)
            return v;
        mul *= 128;
    }
    r->bad = true;
    return 0;
}

static void rd_skip(struct rd *r, size_t n)
{
    if (r->left < n) {
        r->bad = true;
        r->left = 0;
        return;
    }
    r->p += n;
    r->left -= n;
}

/* A length-prefixed string into out (truncated to cap - 1). */
static void rd_str(struct rd *r, char *out, size_t cap)
{
    size_t n = rd_u16(r);
    size_t k = n < cap - 1 ? n : cap - 1;

    if (r->bad || r->left < n) {
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, r->p, k);
    out[k] = '\0';
    rd_skip(r, n);
}

/* ---- packet handling (broker thread, mu held) */

static void handle_connect(struct th_fb *fb, struct rd *r)
{
    char proto[16], id[FB_ID_MAX];
    unsigned level, flags, keepalive;
    bool clean;
    struct fb_session *s;
    int sp = 0;
    unsigned char body[64];
    size_t n = 0;

    rd_str(r, proto, sizeof(proto));
    level = rd_u8(r);
    flags = rd_u8(r);
    keepalive = rd_u16(r);
    if (level == 5)
        rd_skip(r, rd_varint(r));
    rd_str(r, id, sizeof(id));
    clean = (flags & 0x02) != 0;
    fb->version = (int)level;
    snprintf(fb->client_id, sizeof(fb->client_id), "%s", id);
    if (fb->n_connects < FB_MAX_TIMES)
        fb->connect_ms[fb->n_connects] = fb_now_ms();
    fb->n_connects++;
    event_locked(fb, "CONNECT v%u id=%s clean=%d keepalive=%u", level, id, clean ? 1 : 0,
                 keepalive);
    if (level == 5 && fb->script.refuse_v5) {
        static const unsigned char refuse[] = {0x00, 0x01};
        send_packet_locked(fb, 0x20, refuse, sizeof(refuse));
        shutdown_locked(fb);
        return;
    }
    if (fb->script.connack_rc != 0) {
        body[n++] = 0;
        body[n++] = (unsigned char)fb->script.connack_rc;
        if (level == 5)
            body[n++] = 0;
        send_packet_locked(fb, 0x20, body, n);
        shutdown_locked(fb);
        return;
    }
    s = session_find_locked(fb, id, false);
    if (clean && s != NULL) {
        session_clear(s);
        s = NULL;
    }
    if (s != NULL)
        sp = 1;
    else if (!clean)
        session_find_locked(fb, id, true);
    body[n++] = (unsigned char)sp;
    body[n++] = 0;
    if (level == 5) {
        unsigned char props[32];
        size_t k = 0;
        if (fb->script.session_expiry >= 0) {
            uint32_t v = (uint32_t)fb->script.session_expiry;
            props[k++] = 0x11;
            props[k++] = (unsigned char)(v >> 24);
            props[k++] = (unsigned char)(v >> 16);
            props[k++] = (unsigned char)(v >> 8);
            props[k++] = (unsigned char)v;
        }
        if (fb->script.retain_avail >= 0) {
            props[k++] = 0x25;
            props[k++] = (unsigned char)fb->script.retain_avail;
        }
        if (fb->script.shared_sub_avail >= 0) {
            props[k++] = 0x2A;
            props[k++] = (unsigned char)fb->script.shared_sub_avail;
        }
        body[n++] = (unsigned char)k;
        memcpy(body + n, props, k);
        n += k;
    }
    send_packet_locked(fb, 0x20, body, n);
    fb->connected = true;
}

static void handle_subscribe(struct th_fb *fb, struct rd *r)
{
    unsigned pid = rd_u16(r);
    unsigned char body[4 + FB_MAX_FILTERS];
    size_t n = 0, i = 0;
    struct fb_session *s = session_find_locked(fb, fb->client_id, false);

    body[n++] = (unsigned char)(pid >> 8);
    body[n++] = (unsigned char)pid;
    if (fb->version == 5) {
        rd_skip(r, rd_varint(r));
        body[n++] = 0;
    }
    while (r->left > 0 && !r->bad && i < FB_MAX_FILTERS) {
        char filter[512];
        unsigned code;

        rd_str(r, filter, sizeof(filter));
        rd_u8(r); /* options */
        if (r->bad)
            break;
        code = i < fb->script.n_suback ? fb->script.suback[i] : 1;
        event_locked(fb, "SUBSCRIBE %s", filter);
        if (code < 0x80 && s != NULL)
            session_add(s, filter);
        body[n++] = (unsigned char)code;
        i++;
    }
    send_packet_locked(fb, 0x90, body, n);
}

static void handle_unsubscribe(struct th_fb *fb, struct rd *r)
{
    unsigned pid = rd_u16(r);
    unsigned char body[4 + FB_MAX_FILTERS];
    size_t n = 0, i = 0;
    struct fb_session *s = session_find_locked(fb, fb->client_id, false);

    body[n++] = (unsigned char)(pid >> 8);
    body[n++] = (unsigned char)pid;
    if (fb->version == 5) {
        rd_skip(r, rd_varint(r));
        body[n++] = 0;
    }
    while (r->left > 0 && !r->bad && i < FB_MAX_FILTERS) {
        char filter[512];
        bool had;

        rd_str(r, filter, sizeof(filter));
        if (r->bad)
            break;
        had = s != NULL && session_remove(s, filter);
        event_locked(fb, "UNSUBSCRIBE %s", filter);
        if (fb->version == 5)
            body[n++] = had ? 0x00 : 0x11; /* success / no subscription existed */
        i++;
    }
    send_packet_locked(fb, 0xB0, body, n);
}

static void handle_publish(struct th_fb *fb, unsigned flags, struct rd *r)
{
    char topic[512];
    unsigned qos = (flags >> 1) & 3, pid = 0;
    char payload[256];
    size_t k;

    rd_str(r, topic, sizeof(topic));
    if (qos > 0)
        pid = rd_u16(r);
    if (fb->version == 5)
        rd_skip(r, rd_varint(r));
    if (r->bad)
        return;
    k = r->left < sizeof(payload) - 1 ? r->left : sizeof(payload) - 1;
    memcpy(payload, r->p, k);
    payload[k] = '\0';
    event_locked(fb, "PUBLISH %s qos=%u %s", topic, qos, payload);
    if (qos == 0)
        return;
    if (fb->script.hold_pubacks) {
        if (fb->n_held < FB_MAX_HELD)
            fb->held[fb->n_held++] = (uint16_t)pid;
        return;
    }
    {
        unsigned char ack[2] = {(unsigned char)(pid >> 8), (unsigned char)pid};
        send_packet_locked(fb, qos == 1 ? 0x40 : 0x50, ack, sizeof(ack));
    }
}

/* false: close the connection. */
static bool handle_packet(struct th_fb *fb, unsigned first, const unsigned char *body, size_t len)
{
    struct rd r = {body, len, false};
    unsigned type = first >> 4;

    if (type == 1) {
        handle_connect(fb, &r);
        return true;
    }
    if (fb->script.mute)
        return true;
    switch (type) {
    case 3:
        handle_publish(fb, first & 0x0f, &r);
        break;
    case 6: /* PUBREL (QoS 2 from the client): PUBCOMP */
        if (len >= 2) {
            unsigned char ack[2] = {body[0], body[1]};
            send_packet_locked(fb, 0x70, ack, sizeof(ack));
        }
        break;
    case 8:
        handle_subscribe(fb, &r);
        break;
    case 10:
        handle_unsubscribe(fb, &r);
        break;
    case 12:
        send_packet_locked(fb, 0xD0, NULL, 0);
        break;
    case 14:
        event_locked(fb, "DISCONNECT");
        return false;
    default: /* PUBACK, PUBREC, PUBCOMP from the client: nothing to do */
        break;
    }
    return true;
}

/* ---- the broker thread */

static void close_client_locked(struct th_fb *fb)
{
    if (fb->cfd < 0)
        return;
    mark_closed_locked(fb);
    close(fb->cfd);
    fb->cfd = -1;
    fb->rlen = 0;
    fb->n_held = 0;
    event_locked(fb, "CLOSED");
}

/* Parse every whole packet in rbuf. */
static void drain_packets(struct th_fb *fb)
{
    size_t off = 0;

    while (fb->cfd >= 0) {
        size_t avail = fb->rlen - off, rem = 0, mul = 1, hl = 1;
        bool whole = false;

        if (avail < 2)
            break;
        while (hl < 5 && hl < avail) {
            unsigned char b = fb->rbuf[off + hl];
            rem += (size_t)(b & 0x7f) * mul;
            mul *= 128;
            hl++;
            if ((b & 0x80) == 0) {
                whole = true;
                break;
            }
        }
        if (!whole || avail < hl + rem) {
            if (hl >= 5 || rem > FB_MAX_PACKET) {
                close_client_locked(fb);
                return;
            }
            break;
        }
        if (!handle_packet(fb, fb->rbuf[off], fb->rbuf + off + hl, rem)) {
            close_client_locked(fb);
            return;
        }
        off += hl + rem;
    }
    if (fb->cfd >= 0 && off > 0) {
        memmove(fb->rbuf, fb->rbuf + off, fb->rlen - off);
        fb->rlen -= off;
    }
}

static void *fb_main(void *arg)
{
    struct th_fb *fb = arg;

    for (;;) {
        struct pollfd pf[3];
        int n = 0, cfd;

        pthread_mutex_lock(&fb->mu);
        if (fb->stop) {
            pthread_mutex_unlock(&fb->mu);
            break;
        }
        cfd = fb->cfd;
        pthread_mutex_unlock(&fb->mu);
        pf[n++] = (struct pollfd){fb->wake[0], POLLIN, 0};
        pf[n++] = (struct pollfd){fb->lfd, POLLIN, 0};
        if (cfd >= 0)
            pf[n++] = (struct pollfd){cfd, POLLIN, 0};
        if (poll(pf, (nfds_t)n, 200) < 0 && errno != EINTR)
            break;
        if (pf[0].revents & POLLIN) {
            char c[16];
            ssize_t ignored = read(fb->wake[0], c, sizeof(c));
            (void)ignored;
        }
        if (pf[1].revents & POLLIN) {
            int nfd = accept(fb->lfd, NULL, NULL);
            if (nfd >= 0) {
                pthread_mutex_lock(&fb->mu);
                /* One client at a time: a newcomer takes over. */
                close_client_locked(fb);
                fb->cfd = nfd;
                fb->close_marked = false;
                fb->connected = false;
                pthread_mutex_unlock(&fb->mu);
                continue;
            }
        }
        if (cfd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t got;

            if (fb->rlen >= FB_MAX_PACKET + 8) {
                pthread_mutex_lock(&fb->mu);
                close_client_locked(fb);
                pthread_mutex_unlock(&fb->mu);
                continue;
            }
            got = recv(cfd, fb->rbuf + fb->rlen, FB_MAX_PACKET + 8 - fb->rlen, 0);
            pthread_mutex_lock(&fb->mu);
            if (fb->cfd == cfd) {
                if (got <= 0) {
                    close_client_locked(fb);
                } else {
                    fb->rlen += (size_t)got;
                    drain_packets(fb);
                }
            }
            pthread_mutex_unlock(&fb->mu);
        }
    }
    return NULL;
}

/* ---- public */

struct th_fb *th_fb_start(const struct th_fb_script *script)
{
    struct th_fb *fb = calloc(1, sizeof(*fb));
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1;

    ck_assert_ptr_nonnull(fb);
    fb->events = calloc(1, FB_EVENTS_MAX);
    fb->rbuf = malloc(FB_MAX_PACKET + 8);
    ck_assert_ptr_nonnull(fb->events);
    ck_assert_ptr_nonnull(fb->rbuf);
    pthread_mutex_init(&fb->mu, NULL);
    fb->cfd = -1;
    fb->next_pid = 1;
    if (script != NULL)
        fb->script = *script;
    else
        th_fb_script_init(&fb->script);
    ck_assert_int_eq(pipe(fb->wake), 0);
    fb->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fb->lfd >= 0, "socket failed");
    setsockopt(fb->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(bind(fb->lfd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind failed");
    ck_assert_msg(listen(fb->lfd, 8) == 0, "listen failed");
    ck_assert_msg(getsockname(fb->lfd, (struct sockaddr *)&a, &alen) == 0, "getsockname failed");
    snprintf(fb->url, sizeof(fb->url), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    ck_assert_int_eq(pthread_create(&fb->thread, NULL, fb_main, fb), 0);
    return fb;
}

const char *th_fb_url(const struct th_fb *fb)
{
    return fb->url;
}

void th_fb_set_script(struct th_fb *fb, const struct th_fb_script *script)
{
    pthread_mutex_lock(&fb->mu);
    fb->script = *script;
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_disconnect(struct th_fb *fb, unsigned reason)
{
    unsigned char body[2] = {(unsigned char)reason, 0};

    pthread_mutex_lock(&fb->mu);
    if (fb->cfd >= 0) {
        send_packet_locked(fb, 0xE0, body, sizeof(body));
        shutdown_locked(fb);
    }
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_drop(struct th_fb *fb)
{
    pthread_mutex_lock(&fb->mu);
    shutdown_locked(fb);
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_drop_mid_publish(struct th_fb *fb, const char *topic)
{
    unsigned char body[600];
    size_t tl = strlen(topic), n = 0;

    ck_assert_uint_lt(tl, 256);
    body[n++] = (unsigned char)(tl >> 8);
    body[n++] = (unsigned char)tl;
    memcpy(body + n, topic, tl);
    n += tl;
    pthread_mutex_lock(&fb->mu);
    if (fb->cfd >= 0) {
        /* Announce 200 bytes of body, send the topic only. */
        unsigned char hdr[3] = {0x30, 0xC8, 0x01};
        send_locked(fb, hdr, sizeof(hdr));
        send_locked(fb, body, n);
        shutdown_locked(fb);
    }
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_publish(struct th_fb *fb, const char *topic, const void *payload, size_t len,
                   bool retained)
{
    size_t tl = strlen(topic), n = 0;
    unsigned char *body = malloc(tl + len + 8);

    ck_assert_ptr_nonnull(body);
    body[n++] = (unsigned char)(tl >> 8);
    body[n++] = (unsigned char)tl;
    memcpy(body + n, topic, tl);
    n += tl;
    pthread_mutex_lock(&fb->mu);
    body[n++] = (unsigned char)(fb->next_pid >> 8);
    body[n++] = (unsigned char)fb->next_pid;
    fb->next_pid = (uint16_t)(fb->next_pid == 65535 ? 1 : fb->next_pid + 1);
    if (fb->version == 5)
        body[n++] = 0;
    if (len > 0)
        memcpy(body + n, payload, len);
    n += len;
    send_packet_locked(fb, (unsigned char)(0x32 | (retained ? 1 : 0)), body, n);
    pthread_mutex_unlock(&fb->mu);
    free(body);
}

size_t th_fb_release_pubacks(struct th_fb *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->mu);
    n = fb->n_held;
    for (size_t i = 0; i < n; i++) {
        unsigned char ack[2] = {(unsigned char)(fb->held[i] >> 8), (unsigned char)fb->held[i]};
        send_packet_locked(fb, 0x40, ack, sizeof(ack));
    }
    fb->n_held = 0;
    pthread_mutex_unlock(&fb->mu);
    return n;
}

size_t th_fb_held_pubacks(struct th_fb *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->mu);
    n = fb->n_held;
    pthread_mutex_unlock(&fb->mu);
    return n;
}

bool th_fb_connected(struct th_fb *fb)
{
    bool c;

    pthread_mutex_lock(&fb->mu);
    c = fb->connected;
    pthread_mutex_unlock(&fb->mu);
    return c;
}

size_t th_fb_connects(struct th_fb *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->mu);
    n = fb->n_connects;
    pthread_mutex_unlock(&fb->mu);
    return n;
}

long long th_fb_connect_ms(struct th_fb *fb, size_t i)
{
    long long t = -1;

    pthread_mutex_lock(&fb->mu);
    if (i < fb->n_connects && i < FB_MAX_TIMES)
        t = fb->connect_ms[i];
    pthread_mutex_unlock(&fb->mu);
    return t;
}

long long th_fb_close_ms(struct th_fb *fb, size_t i)
{
    long long t = -1;

    pthread_mutex_lock(&fb->mu);
    if (i < fb->n_closes)
        t = fb->close_ms[i];
    pthread_mutex_unlock(&fb->mu);
    return t;
}

bool th_fb_wait_connects(struct th_fb *fb, size_t n, int timeout_ms)
{
    long long end = fb_now_ms() + timeout_ms;

    do {
        if (th_fb_connects(fb) >= n)
            return true;
        fb_sleep_ms(10);
    } while (fb_now_ms() < end);
    return th_fb_connects(fb) >= n;
}

size_t th_fb_count(struct th_fb *fb, const char *line)
{
    size_t n = 0, ll = strlen(line);
    const char *p;

    pthread_mutex_lock(&fb->mu);
    p = fb->events;
    while ((p = strstr(p, line)) != NULL) {
        if ((p == fb->events || p[-1] == '\n') && p[ll] == '\n')
            n++;
        p += ll;
    }
    pthread_mutex_unlock(&fb->mu);
    return n;
}

bool th_fb_saw(struct th_fb *fb, const char *line)
{
    return th_fb_count(fb, line) > 0;
}

bool th_fb_wait_saw(struct th_fb *fb, const char *line, int timeout_ms)
{
    long long end = fb_now_ms() + timeout_ms;

    do {
        if (th_fb_saw(fb, line))
            return true;
        fb_sleep_ms(10);
    } while (fb_now_ms() < end);
    return th_fb_saw(fb, line);
}

char *th_fb_events(struct th_fb *fb)
{
    char *s;

    pthread_mutex_lock(&fb->mu);
    s = strdup(fb->events);
    pthread_mutex_unlock(&fb->mu);
    ck_assert_ptr_nonnull(s);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void th_fb_session(struct th_fb *fb, const char *client_id, char *out, size_t cap)
{
    struct fb_session *s;
    char *sorted[FB_MAX_FILTERS];
    size_t n = 0, used = 0;

    out[0] = '\0';
    pthread_mutex_lock(&fb->mu);
    s = session_find_locked(fb, client_id, false);
    if (s != NULL) {
        n = s->n;
        memcpy(sorted, s->filters, n * sizeof(sorted[0]));
        qsort(sorted, n, sizeof(sorted[0]), cmp_str);
        for (size_t i = 0; i < n; i++) {
            int w = snprintf(out + used, cap - used, "%s%s", i > 0 ? "\n" : "", sorted[i]);
            if (w < 0 || (size_t)w >= cap - used)
                break;
            used += (size_t)w;
        }
    }
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_seed_session(struct th_fb *fb, const char *client_id, const char *const *filters,
                        size_t n)
{
    struct fb_session *s;

    pthread_mutex_lock(&fb->mu);
    s = session_find_locked(fb, client_id, true);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        session_add(s, filters[i]);
    pthread_mutex_unlock(&fb->mu);
}

void th_fb_free(struct th_fb *fb)
{
    if (fb == NULL)
        return;
    pthread_mutex_lock(&fb->mu);
    fb->stop = true;
    pthread_mutex_unlock(&fb->mu);
    {
        ssize_t ignored = write(fb->wake[1], "x", 1);
        (void)ignored;
    }
    pthread_join(fb->thread, NULL);
    pthread_mutex_lock(&fb->mu);
    close_client_locked(fb);
    pthread_mutex_unlock(&fb->mu);
    close(fb->lfd);
    close(fb->wake[0]);
    close(fb->wake[1]);
    for (size_t i = 0; i < FB_MAX_SESSIONS; i++)
        session_clear(&fb->sessions[i]);
    free(fb->events);
    free(fb->rbuf);
    pthread_mutex_destroy(&fb->mu);
    free(fb);
}
