/*
 * sim_util.c: small pure helpers of the simulator: time formats, ids, numbers, URLs, form bodies
 * and the logger.
 *
 * Nothing here touches simulator state.  The logger writes each line with one write(2), so lines
 * from different threads never interleave.
 */
#include "sim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int64_t sim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_time_format(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) == 0)
        out[0] = '\0';
}

bool sim_time_parse(const char *s, time_t *out)
{
    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i]))
            return false;
    struct tm tm = {0};
    int v[6];
    static const int off[6] = {0, 4, 6, 9, 11, 13};
    static const int len[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        int x = 0;
        for (int j = 0; j < len[i]; j++)
            x = x * 10 + (s[off[i] + j] - '0');
        v[i] = x;
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return false;
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    *out = timegm(&tm);
    return true;
}

uint64_t sim_prng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double sim_prng_unit(uint64_t *state)
{
    return (double)(sim_prng_next(state) >> 11) / 9007199254740992.0;
}

static void fill_random(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* No entropy source: fall back to a time-seeded PRNG; ids only need uniqueness. */
            uint64_t s = (uint64_t)sim_now_ms() ^ (uint64_t)getpid() << 32;
            for (; got < n; got++)
                buf[got] = (unsigned char)sim_prng_next(&s);
            return;
        }
        got += (size_t)r;
    }
}

void sim_rand_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char buf[64];
    size_t done = 0;
    while (done < n) {
        size_t chunk = (n - done + 1) / 2;
        if (chunk > sizeof buf)
            chunk = sizeof buf;
        fill_random(buf, chunk);
        for (size_t i = 0; i < chunk * 2 && done < n; i++)
            out[done++] = hex[(buf[i / 2] >> ((i & 1) ? 0 : 4)) & 0xf];
    }
    out[n] = '\0';
}

static void uuid_format(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xf];
    }
    out[o] = '\0';
}

static void uuid_v4_bits(unsigned char b[16])
{
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
}

void sim_uuid_from(uint64_t *state, char out[37])
{
    unsigned char b[16];
    uint64_t x = sim_prng_next(state), y = sim_prng_next(state);
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(x >> (8 * i));
        b[8 + i] = (unsigned char)(y >> (8 * i));
    }
    uuid_v4_bits(b);
    uuid_format(b, out);
}

void sim_uuid_random(char out[37])
{
    unsigned char b[16];
    fill_random(b, sizeof b);
    uuid_v4_bits(b);
    uuid_format(b, out);
}

bool sim_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool sim_parse_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

enum ocb_err sim_read_file(const char *path, size_t max, char **out, size_t *len)
{
    enum ocb_err rc = OCB_ERR_IO;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        goto out;
    buf = malloc(max + 1);
    if (!buf) {
        rc = OCB_ERR_NOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, max + 1, f);
    if (ferror(f))
        goto out;
    if (n > max) {
        rc = OCB_ERR_TOO_BIG;
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    buf = NULL;
    rc = OCB_OK;
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

bool sim_url_parse(const char *url, struct sim_url *out)
{
    memset(out, 0, sizeof *out);
    out->port = -1;
    const char *p = strstr(url, "://");
    if (!p || p == url || (size_t)(p - url) >= sizeof out->scheme)
        return false;
    memcpy(out->scheme, url, (size_t)(p - url));
    out->scheme[p - url] = '\0';
    if (strcasecmp(out->scheme, "http") != 0 && strcasecmp(out->scheme, "https") != 0)
        return false;
    const char *h = p + 3;
    const char *end = h + strcspn(h, "/?#");
    const char *host_end = end;
    if (*h == '[') { /* IPv6 literal */
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return false;
        host_end = rb + 1;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        if (colon)
            host_end = colon;
    }
    size_t hl = (size_t)(host_end - h);
    if (hl == 0 || hl >= sizeof out->host)
        return false;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    if (host_end < end) {
        if (*host_end != ':')
            return false;
        char portbuf[8];
        size_t pl = (size_t)(end - host_end - 1);
        if (pl == 0 || pl >= sizeof portbuf)
            return false;
        memcpy(portbuf, host_end + 1, pl);
        portbuf[pl] = '\0';
        if (!sim_parse_long(portbuf, 1, 65535, &out->port))
            return false;
    }
    out->path = (*end == '/') ? end : NULL;
    return true;
}

bool sim_url_callback_ok(const char *url)
{
    struct sim_url u;
    if (!url || strlen(url) > SIM_URL_MAX || !sim_url_parse(url, &u))
        return false;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ')
            return false;
    return u.port > 0 && u.path != NULL;
}

bool sim_url_same_endpoint(const char *a, const char *b)
{
    struct sim_url ua, ub;
    if (!sim_url_parse(a, &ua) || !sim_url_parse(b, &ub))
        return false;
    return strcasecmp(ua.host, ub.host) == 0 && ua.port == ub.port;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool sim_form_get(const char *body, size_t len, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && body[i] != '&')
            i++;
        const char *pair = body + start;
        size_t plen = i - start;
        i++; /* skip '&' */
        if (plen <= klen || memcmp(pair, key, klen) != 0 || pair[klen] != '=')
            continue;
        size_t o = 0;
        for (size_t j = klen + 1; j < plen; j++) {
            char c = pair[j];
            if (c == '+') {
                c = ' ';
            } else if (c == '%' && j + 2 < plen && hexval(pair[j + 1]) >= 0 &&
                       hexval(pair[j + 2]) >= 0) {
                c = (char)(hexval(pair[j + 1]) * 16 + hexval(pair[j + 2]));
                j += 2;
            }
            if (o + 1 >= outlen)
                return false;
            out[o++] = c;
        }
        out[o] = '\0';
        return true;
    }
    return false;
}

/* ---- logging ---- */

static int log_level = 1;
static int log_fd = 2;

void sim_log_setup(int level, const char *path)
{
    log_level = level;
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            log_fd = fd;
    }
}

void sim_log(int level, const char *mod, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level || level < 0 || level > 3)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s sim.%s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level], mod);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t total = (size_t)n + (size_t)m;
    if (total > sizeof line - 2)
        total = sizeof line - 2; /* truncated: keep the line, mark nothing */
    line[total++] = '\n';
    ssize_t w = write(log_fd, line, total);
    (void)w;
}
