/*
 * log.h: levelled logging to stderr, as text or JSON lines.
 *
 * Every line carries a level, the module and, where there is one, the request
 * id of the push or command it belongs to.  Secrets are never passed here.
 * Thread-safe: yes (one write(2) per line, level read atomically).
 */
#ifndef OCB_LOG_H
#define OCB_LOG_H

#include <stdbool.h>

enum ocb_log_level {
    OCB_LOG_DEBUG = 0,
    OCB_LOG_INFO,
    OCB_LOG_WARN,
    OCB_LOG_ERROR,
};

enum ocb_log_format {
    OCB_LOG_TEXT = 0,
    OCB_LOG_JSON,
};

/* Parse "debug|info|warn|error" / "text|json"; false when unknown. */
bool log_level_parse(const char *s, enum ocb_log_level *out);
bool log_format_parse(const char *s, enum ocb_log_format *out);

/* Set the threshold and format; may be called again at any time (SIGHUP). */
void log_setup(enum ocb_log_level level, enum ocb_log_format format);

/* Log one line.  reqid may be NULL.  The message must not contain secrets. */
void log_msg(enum ocb_log_level level, const char *module, const char *reqid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(mod, rid, ...) log_msg(OCB_LOG_DEBUG, mod, rid, __VA_ARGS__)
#define log_info(mod, rid, ...)  log_msg(OCB_LOG_INFO, mod, rid, __VA_ARGS__)
#define log_warn(mod, rid, ...)  log_msg(OCB_LOG_WARN, mod, rid, __VA_ARGS__)
#define log_error(mod, rid, ...) log_msg(OCB_LOG_ERROR, mod, rid, __VA_ARGS__)

#endif
