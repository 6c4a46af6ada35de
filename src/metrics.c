/*
 * metrics.c: the process-wide Prometheus registry.
 *
 * A series is (name, labels) -> value, kept in an open-addressing hash table
 * of fixed size, so an update never allocates after the series exists and
 * the registry can never grow past OCB_METRICS_MAX_SERIES (plus a small
 * reserve for the per-name `overflow="true"` series that absorbs the rest).
 * Updates are lock-free once their series exists: a slot is filled under the
 * mutex and then published by a release store of `ready`, after which its
 * name, labels and type never change, and its numbers are atomics.  Every
 * push updates five series from three threads, and a mutex here cost the
 * push path 5-20 % of its CPU in bench/push (contention wakes threads).  The
 * mutex still guards creation, the descriptions and rendering.
 *
 * Label sets arrive rendered, and every caller renders them with
 * metrics_labels(): values such as app ids and notifyTypes come from
 * configuration and from pushes, and one unescaped '"' or '\\' would make
 * the whole /metrics page unparseable for Prometheus.
 */
#include "ocb/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/grammar.h"

#define NAME_MAX_LEN     64
#define LABELS_MAX_LEN   OCB_METRICS_LABELS_MAX
#define OVERFLOW_RESERVE 64
#define TABLE_SIZE       1024 /* power of two, > MAX_SERIES + OVERFLOW_RESERVE */
#define MAX_DESCRIBED    64

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,   0.5,   1,      2.5,   5,    10,    30};
#define N_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct series {
    atomic_bool ready; /* set last (release): the fields below it are then fixed */
    enum ocb_metric_type type;
    char name[NAME_MAX_LEN];
    char labels[LABELS_MAX_LEN];
    _Atomic int64_t value;                   /* counter / gauge */
    _Atomic uint64_t buckets[N_BUCKETS + 1]; /* histogram, not cumulative; [N_BUCKETS] = +Inf */
    _Atomic uint64_t sum_ns;
};

struct description {
    char name[NAME_MAX_LEN];
    enum ocb_metric_type type;
    const char *help; /* static string */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series table[TABLE_SIZE];
static size_t n_series;
static struct description described[MAX_DESCRIBED];
static size_t n_described;

static uint32_t hash(const char *name, const char *labels)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '{') * 16777619u;
    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

/* The published series (name, labels), or NULL; then *empty (when not NULL)
 * is the slot where the probe stopped, the one to fill for a new series
 * (NULL if the table is full).  Lock-free: slots only ever go from empty to
 * ready, so a probe that meets an empty slot is done. */
static struct series *find(const char *name, const char *labels, struct series **empty)
{
    uint32_t i = hash(name, labels) & (TABLE_SIZE - 1);
    if (empty != NULL)
        *empty = NULL;
    for (size_t probe = 0; probe < TABLE_SIZE; probe++, i = (i + 1) & (TABLE_SIZE - 1)) {
        struct series *s = &table[i];
        if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
            if (empty != NULL)
                *empty = s;
            return NULL;
        }
        if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

/* Find or create a series; NULL only if the name or labels do not fit. */
static struct series *lookup(const char *name, const char *labels, enum ocb_metric_type type)
{
    struct series *found, *slot;

    if (!labels)
        labels = "";
    if (strlen(name) >= NAME_MAX_LEN || strlen(labels) >= LABELS_MAX_LEN)
        labels = "overflow=\"true\"";
    found = find(name, labels, NULL);
    if (found != NULL)
        return found;
    /* Create under the lock, after probing again: another thread may have
     * created it meanwhile, and only one may fill a slot. */
    pthread_mutex_lock(&lock);
    for (int attempt = 0; attempt < 2 && found == NULL; attempt++) {
        size_t limit = OCB_METRICS_MAX_SERIES + (attempt ? OVERFLOW_RESERVE : 0);
        found = find(name, labels, &slot);
        if (found == NULL && slot != NULL && n_series < limit) {
            slot->type = type;
            snprintf(slot->name, sizeof(slot->name), "%s", name);
            snprintf(slot->labels, sizeof(slot->labels), "%s", labels);
            n_series++;
            atomic_store_explicit(&slot->ready, true, memory_order_release);
            found = slot;
        }
        /* Full: fold this label set into the name's overflow series. */
        labels = "overflow=\"true\"";
    }
    pthread_mutex_unlock(&lock);
    return found;
}

void metrics_describe(const char *name, enum ocb_metric_type type, const char *help)
{
    pthread_mutex_lock(&lock);
    bool known = false;
    for (size_t i = 0; i < n_described; i++)
        known = known || strcmp(described[i].name, name) == 0;
    if (!known && n_described < MAX_DESCRIBED && strlen(name) < NAME_MAX_LEN) {
        struct description *d = &described[n_described++];
        snprintf(d->name, sizeof(d->name), "%s", name);
        d->type = type;
        d->help = help;
    }
    pthread_mutex_unlock(&lock);
}

void metrics_counter_add(const char *name, const char *labels, uint64_t v)
{
    struct series *s = lookup(name, labels, OCB_METRIC_COUNTER);
    if (s)
        atomic_fetch_add_explicit(&s->value, (int64_t)v, memory_order_relaxed);
}

void metrics_gauge_set(const char *name, const char *labels, int64_t v)
{
    struct series *s = lookup(name, labels, OCB_METRIC_GAUGE);
    if (s)
        atomic_store_explicit(&s->value, v, memory_order_relaxed);
}

void metrics_gauge_add(const char *name, const char *labels, int64_t delta)
{
    struct series *s = lookup(name, labels, OCB_METRIC_GAUGE);
    if (s)
        atomic_fetch_add_explicit(&s->value, delta, memory_order_relaxed);
}

void metrics_histogram_observe(const char *name, const char *labels, double seconds)
{
    struct series *s = lookup(name, labels, OCB_METRIC_HISTOGRAM);
    size_t b = 0;

    if (!s)
        return;
    while (b < N_BUCKETS && !(seconds <= bucket_bounds[b]))
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    if (seconds > 0)
        atomic_fetch_add_explicit(&s->sum_ns, (uint64_t)(seconds * 1e9 + 0.5),
                                  memory_order_relaxed);
}

/* A histogram's count: the sum of its buckets, so that a render is consistent with itself. */
static uint64_t histogram_count(const struct series *s, uint64_t *buckets)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= N_BUCKETS; b++) {
        buckets[b] = atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        n += buckets[b];
    }
    return n;
}

int64_t metrics_value(const char *name, const char *labels)
{
    uint64_t buckets[N_BUCKETS + 1];
    struct series *s = find(name, labels ? labels : "", NULL);

    if (s == NULL)
        return 0;
    return s->type == OCB_METRIC_HISTOGRAM ? (int64_t)histogram_count(s, buckets)
                                           : atomic_load_explicit(&s->value, memory_order_relaxed);
}

/* A growable output buffer with a hard cap, so a render can never run away. */
struct out {
    char *buf;
    size_t len, cap;
    bool failed;
};

#define RENDER_MAX (4u << 20)

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !o->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t want = o->cap * 2 + (size_t)n;
        char *nb = want <= RENDER_MAX ? realloc(o->buf, want) : NULL;
        if (!nb) {
            o->failed = true;
            return;
        }
        o->buf = nb;
        o->cap = want;
    }
}

static const char *type_name(enum ocb_metric_type t)
{
    return t == OCB_METRIC_COUNTER ? "counter" : t == OCB_METRIC_GAUGE ? "gauge" : "histogram";
}

static void render_series(struct out *o, const struct series *s)
{
    const char *sep = s->labels[0] ? "," : "";
    if (s->type != OCB_METRIC_HISTOGRAM) {
        long long v = (long long)atomic_load_explicit(&s->value, memory_order_relaxed);
        if (s->labels[0])
            out_printf(o, "%s{%s} %lld\n", s->name, s->labels, v);
        else
            out_printf(o, "%s %lld\n", s->name, v);
        return;
    }
    uint64_t buckets[N_BUCKETS + 1];
    uint64_t count = histogram_count(s, buckets), cumulative = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        cumulative += buckets[b];
        out_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", s->name, s->labels, sep, bucket_bounds[b],
                   (unsigned long long)cumulative);
    }
    out_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", s->name, s->labels, sep,
               (unsigned long long)count);
    const char *open = s->labels[0] ? "{" : "", *close = s->labels[0] ? "}" : "";
    out_printf(o, "%s_sum%s%s%s %.6f\n", s->name, open, s->labels, close,
               (double)atomic_load_explicit(&s->sum_ns, memory_order_relaxed) / 1e9);
    out_printf(o, "%s_count%s%s%s %llu\n", s->name, open, s->labels, close,
               (unsigned long long)count);
}

enum ocb_err metrics_render(char **out, size_t *len)
{
    struct out o = {.buf = malloc(8192), .cap = 8192};
    if (!o.buf)
        return OCB_ERR_NOMEM;
    o.buf[0] = '\0';

    pthread_mutex_lock(&lock);
    /* Described metrics first, in the order they were described, with HELP and
     * TYPE even before their first sample, so dashboards see every name. */
    for (size_t d = 0; d < n_described; d++) {
        out_printf(&o, "# HELP %s %s\n# TYPE %s %s\n", described[d].name, described[d].help,
                   described[d].name, type_name(described[d].type));
        for (size_t i = 0; i < TABLE_SIZE; i++)
            if (atomic_load_explicit(&table[i].ready, memory_order_acquire) &&
                strcmp(table[i].name, described[d].name) == 0)
                render_series(&o, &table[i]);
    }
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        if (!atomic_load_explicit(&table[i].ready, memory_order_acquire))
            continue;
        bool is_described = false;
        for (size_t d = 0; d < n_described && !is_described; d++)
            is_described = strcmp(table[i].name, described[d].name) == 0;
        if (!is_described)
            render_series(&o, &table[i]);
    }
    pthread_mutex_unlock(&lock);

    if (o.failed) {
        free(o.buf);
        return OCB_ERR_NOMEM;
    }
    *out = o.buf;
    *len = o.len;
    return OCB_OK;
}

/* Length of the UTF-8 sequence a lead byte announces (0: not a lead byte). */
static size_t utf8_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        return 2;
    if ((c & 0xF0) == 0xE0)
        return 3;
    if ((c & 0xF8) == 0xF0)
        return 4;
    return 0;
}

bool metrics_label_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;

    if (cap == 0)
        return *s == '\0';
    while (*s) {
        char esc[4];
        const char *piece = s;
        size_t n = utf8_len((unsigned char)*s), used;

        if (*s == '\\' || *s == '"' || *s == '\n') {
            esc[0] = '\\';
            esc[1] = *s == '\n' ? 'n' : *s;
            piece = esc;
            n = 2;
            used = 1;
        } else if (n == 0 || (n > 1 && (strnlen(s, n) < n || !grammar_utf8_valid(s, n)))) {
            piece = "\xEF\xBF\xBD"; /* U+FFFD for a byte that is no UTF-8 */
            n = 3;
            used = 1;
        } else {
            used = n;
        }
        if (o + n >= cap) {
            out[o] = '\0';
            return false;
        }
        memcpy(out + o, piece, n);
        o += n;
        s += used;
    }
    out[o] = '\0';
    return true;
}

enum ocb_err metrics_labels(char *out, size_t cap, ...)
{
    static const char overflow[] = "overflow=\"true\"";
    enum ocb_err rc = OCB_OK;
    size_t o = 0;
    const char *name;
    va_list ap;

    if (cap == 0)
        return OCB_ERR_TOO_BIG;
    out[0] = '\0';
    va_start(ap, cap);
    while (rc == OCB_OK && (name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        int n = snprintf(out + o, cap - o, "%s%s=\"", o ? "," : "", name);
        if (n < 0 || (size_t)n >= cap - o) {
            rc = OCB_ERR_TOO_BIG;
            break;
        }
        o += (size_t)n;
        if (!metrics_label_escape(value != NULL ? value : "", out + o, cap - o)) {
            rc = OCB_ERR_TOO_BIG;
            break;
        }
        o += strlen(out + o);
        if (o + 1 >= cap) {
            rc = OCB_ERR_TOO_BIG;
            break;
        }
        out[o++] = '"';
        out[o] = '\0';
    }
    va_end(ap);
    if (rc != OCB_OK)
        snprintf(out, cap, "%s", cap >= sizeof(overflow) ? overflow : "");
    return rc;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(table, 0, sizeof(table));
    n_series = 0;
    pthread_mutex_unlock(&lock);
}
