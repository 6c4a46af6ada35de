/*
 * log.c: levelled log lines on stderr, as text or as JSON lines.
 *
 * Each line is formatted into a bounded stack buffer and written with one
 * write(2), so lines from MHD, paho and worker threads never interleave.  The
 * level and format are atomics so SIGHUP can change them while other threads
 * log.  Messages longer than the buffer are truncated with a marker.
 */
#include "ocb/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static _Atomic int log_level = OCB_LOG_INFO;
static _Atomic int log_format = OCB_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool log_level_parse(const char *s, enum ocb_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum ocb_log_level)i;
            return true;
        }
    }
    return false;
}

bool log_format_parse(const char *s, enum ocb_log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = OCB_LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = OCB_LOG_JSON;
    else
        return false;
    return true;
}

void log_setup(enum ocb_log_level level, enum ocb_log_format format)
{
    atomic_store(&log_level, (int)level);
    atomic_store(&log_format, (int)format);
}

/* Append printf output, clamping pos to the buffer on truncation. */
static void append(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *pos = (size_t)n >= cap - *pos ? cap - 1 : *pos + (size_t)n;
}

/* Append s as the inside of a JSON string. */
static void append_json(char *buf, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            append(buf, cap, pos, "\\%c", c);
        else if (c < 0x20)
            append(buf, cap, pos, "\\u%04x", c);
        else
            buf[(*pos)++] = (char)c;
    }
    buf[*pos] = '\0';
}

void log_msg(enum ocb_log_level level, const char *module, const char *reqid, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;

    char msg[LOG_LINE_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    else if ((size_t)n >= sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    char line[LOG_LINE_MAX];
    size_t pos = 0;
    if (atomic_load(&log_format) == OCB_LOG_JSON) {
        append(line, sizeof(line), &pos, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"", when,
               level_names[level]);
        append_json(line, sizeof(line), &pos, module);
        if (reqid) {
            append(line, sizeof(line), &pos, "\",\"request_id\":\"");
            append_json(line, sizeof(line), &pos, reqid);
        }
        append(line, sizeof(line), &pos, "\",\"msg\":\"");
        append_json(line, sizeof(line), &pos, msg);
        append(line, sizeof(line), &pos, "\"}");
    } else {
        append(line, sizeof(line), &pos, "%s %-5s %s: ", when, level_names[level], module);
        if (reqid)
            append(line, sizeof(line), &pos, "[%s] ", reqid);
        append(line, sizeof(line), &pos, "%s", msg);
    }
    if (pos > sizeof(line) - 2)
        pos = sizeof(line) - 2;
    line[pos++] = '\n';

    /* One write per line; a short write to stderr is not worth retrying. */
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}
