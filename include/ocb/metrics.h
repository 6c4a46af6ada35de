/*
 * metrics.h: a process-wide Prometheus registry.
 *
 * Series are identified by a metric name and a pre-rendered label string
 * (`notify_type="deviceAdded",outcome="ok"`, or "" for none).  The number of
 * series is capped (OCB_METRICS_MAX_SERIES); past it, new label sets are
 * folded into one series labelled `overflow="true"` so that hostile
 * notifyTypes cannot grow memory.  Every label set is built with
 * metrics_labels(), which escapes every value, so no app id or notifyType
 * can break the exposition format.
 *
 * Thread-safe: yes.  Updating an existing series is lock-free (a hash lookup
 * and an atomic add); creating a series and rendering take a mutex.
 */
#ifndef OCB_METRICS_H
#define OCB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ocb/err.h"

#define OCB_METRICS_MAX_SERIES 512
/* Cap on a rendered label set, NUL included; longer sets count as overflow="true". */
#define OCB_METRICS_LABELS_MAX 192

enum ocb_metric_type {
    OCB_METRIC_COUNTER,
    OCB_METRIC_GAUGE,
    OCB_METRIC_HISTOGRAM,
};

/* Declare a metric's type and help text (once, at start-up; idempotent). */
void metrics_describe(const char *name, enum ocb_metric_type type, const char *help);

void metrics_counter_add(const char *name, const char *labels, uint64_t v);
void metrics_gauge_set(const char *name, const char *labels, int64_t v);
void metrics_gauge_add(const char *name, const char *labels, int64_t delta);
/* Observe a duration in seconds into the fixed latency buckets (0.5 ms .. 30 s). */
void metrics_histogram_observe(const char *name, const char *labels, double seconds);

/* Current value of a counter or gauge series (0 when absent); for tests. */
int64_t metrics_value(const char *name, const char *labels);

/*
 * Render every series in the Prometheus text format into a new string the
 * caller frees with free().  OCB_ERR_NOMEM on allocation failure.
 */
enum ocb_err metrics_render(char **out, size_t *len);

/*
 * Escape s for use inside a label value of the Prometheus text format:
 * '\\' -> "\\\\", '"' -> "\\\"", newline -> "\\n", and a byte that is not
 * part of valid UTF-8 -> U+FFFD (the format is UTF-8).  out is always
 * NUL-terminated; false when s was cut short to fit cap (never inside an
 * escape or a UTF-8 sequence).
 */
bool metrics_label_escape(const char *s, char *out, size_t cap);

/*
 * Render a label set -- name="value" pairs joined by ',' -- into out, every
 * value through metrics_label_escape().  The arguments after cap are
 * (const char *name, const char *value) pairs ending with one NULL; names
 * are the caller's literals ([a-zA-Z_][a-zA-Z0-9_]*).  OCB_OK, or
 * OCB_ERR_TOO_BIG when the set does not fit in cap: out then holds
 * `overflow="true"`, the series the registry folds oversized sets into, so a
 * cut-short value never poses as another series.
 */
enum ocb_err metrics_labels(char *out, size_t cap, ...) __attribute__((sentinel));

/* Forget every series (tests only: no update may run at the same time). */
void metrics_reset(void);

#endif
