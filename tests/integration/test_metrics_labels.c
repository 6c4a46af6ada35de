/*
 * test_metrics_labels.c: hostile ids against the /metrics exposition.
 *
 * App ids and notifyTypes are operator and platform input that ends up in
 * label values.  The bridge is started with app ids full of quotes,
 * backslashes, label-syntax look-alikes and UTF-8 (everything the topic-level
 * rule allows; newlines it does not), pushes arrive for them with equally
 * hostile notifyTypes, and the whole /metrics page is then read by a strict
 * Prometheus text-format parser written here: every line must parse, and
 * each hostile value must come back, unescaped, as exactly the value sent.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "th_main.h"

#define WAIT_MS (10000 * th_time_scale())

/* ---- a Prometheus text-format (0.0.4) parser */

#define PROM_MAX_LABELS 8
#define PROM_MAX_VALUE  512

struct prom_sample {
    char name[128];
    size_t n_labels;
    char label_names[PROM_MAX_LABELS][64];
    char label_values[PROM_MAX_LABELS][PROM_MAX_VALUE]; /* unescaped */
    double value;
};

static bool name_start(char c, bool metric)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}

static bool name_char(char c, bool metric)
{
    return name_start(c, metric) || (c >= '0' && c <= '9');
}

/* A metric or label name at *p into out; advances *p. */
static bool prom_name(const char **p, char *out, size_t cap, bool metric)
{
    size_t n = 0;

    if (!name_start(**p, metric))
        return false;
    while (name_char(**p, metric)) {
        if (n + 1 >= cap)
            return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    return true;
}

/* True when s[0..len) is valid UTF-8 (the exposition format's encoding). */
static bool utf8_ok(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (n == 0 || i + n > len || (n == 2 && c < 0xC2))
            return false;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n;
    }
    return true;
}

/* A quoted label value at *p (just past the opening quote) into out, unescaped. */
static bool prom_label_value(const char **p, char *out, size_t cap)
{
    size_t n = 0;

    for (;;) {
        char c = *(*p)++;
        if (c == '\0' || c == '\n')
            return false;
        if (c == '"')
            break;
        if (c == '\\') {
            char e = *(*p)++;
            c = e == '\\' ? '\\' : e == '"' ? '"' : e == 'n' ? '\n' : '\0';
            if (c == '\0')
                return false; /* the format knows only these three escapes */
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return utf8_ok((const unsigned char *)out, n);
}

static bool prom_value(const char *s, double *v)
{
    char *end = NULL;

    if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 || strcmp(s, "NaN") == 0) {
        *v = s[0] == '-' ? -INFINITY : s[0] == '+' ? INFINITY : NAN;
        return true;
    }
    if (s[0] == '\0' || s[0] == ' ')
        return false;
    *v = strtod(s, &end);
    /* An optional integer timestamp may follow. */
    if (*end == ' ') {
        const char *t = end + 1;
        if (*t == '-')
            t++;
        if (*t == '\0')
            return false;
        while (*t >= '0' && *t <= '9')
            t++;
        return *t == '\0';
    }
    return end != s && *end == '\0';
}

/* One sample line (no newline) into *out. */
static bool prom_sample_line(const char *line, struct prom_sample *out)
{
    const char *p = line;

    memset(out, 0, sizeof(*out));
    if (!prom_name(&p, out->name, sizeof(out->name), true))
        return false;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (out->n_labels == PROM_MAX_LABELS)
                return false;
            if (!prom_name(&p, out->label_names[out->n_labels], sizeof(out->label_names[0]),
                           false) ||
                *p++ != '=' || *p++ != '"' ||
                !prom_label_value(&p, out->label_values[out->n_labels],
                                  sizeof(out->label_values[0])))
                return false;
            for (size_t k = 0; k < out->n_labels; k++)
                if (strcmp(out->label_names[k], out->label_names[out->n_labels]) == 0)
                    return false; /* a label twice */
            out->n_labels++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return false;
        }
        p++;
    }
    if (*p++ != ' ')
        return false;
    return prom_value(p, &out->value);
}

/* "# HELP name text" / "# TYPE name type" / other "# " comments. */
static bool prom_comment_line(const char *line)
{
    char name[128];
    const char *p;

    if (strncmp(line, "# TYPE ", 7) == 0) {
        p = line + 7;
        if (!prom_name(&p, name, sizeof(name), true) || *p++ != ' ')
            return false;
        return !strcmp(p, "counter") || !strcmp(p, "gauge") || !strcmp(p, "histogram") ||
               !strcmp(p, "summary") || !strcmp(p, "untyped");
    }
    if (strncmp(line, "# HELP ", 7) == 0) {
        p = line + 7;
        if (!prom_name(&p, name, sizeof(name), true) || (*p != ' ' && *p != '\0'))
            return false;
        for (; *p; p++)
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                return false;
            else if (*p == '\\')
                p++;
        return true;
    }
    return line[0] == '#';
}

/*
 * Parse a whole exposition.  Every line must be a sample, a comment or
 * empty, and the text must end with a newline.  Samples go to out[] (up to
 * cap; *n counts them).  On failure *bad_line points at the offending line.
 */
static bool prom_parse(const char *text, struct prom_sample *out, size_t cap, size_t *n,
                       const char **bad_line)
{
    char line[2048];

    *n = 0;
    if (!utf8_ok((const unsigned char *)text, strlen(text)))
        return *bad_line = text, false;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        if (nl == NULL || (size_t)(nl - p) >= sizeof(line))
            return *bad_line = p, false;
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        *bad_line = p;
        if (line[0] == '#') {
            if (!prom_comment_line(line))
                return false;
        } else if (line[0] != '\0') {
            if (*n >= cap || !prom_sample_line(line, &out[*n]))
                return false;
            (*n)++;
        }
        p = nl + 1;
    }
    return true;
}

/* The value of the label called name in s, or NULL. */
static const char *prom_label(const struct prom_sample *s, const char *name)
{
    for (size_t k = 0; k < s->n_labels; k++)
        if (strcmp(s->label_names[k], name) == 0)
            return s->label_values[k];
    return NULL;
}

/* ---- the parser is strict: these must fail, so a pass below means something */

START_TEST(parser_refuses_broken_expositions)
{
    static const char *const bad[] = {
        "m{a=\"x\"y\"} 1\n",      /* a raw quote inside a value */
        "m{a=\"x\\q\"} 1\n",      /* an unknown escape */
        "m{a=\"x\n\"} 1\n",       /* a raw newline inside a value */
        "m{a=\"x\\\"} 1\n",       /* an escaped closing quote: unterminated */
        "m{a=\"x\",a=\"y\"} 1\n", /* a label twice */
        "m{a=x} 1\n",
        "m{1a=\"x\"} 1\n",
        "m 1x\n",
        "m{a=\"\xff\"} 1\n", /* not UTF-8 */
        "# TYPE m countr\n",
        "m 1", /* no final newline */
        "m{a=\"x\"}1\n",
    };
    static const char good[] = "# HELP m a \\\\ help\\n text\n# TYPE m counter\n"
                               "m{a=\"q\\\"\\\\\\n\xc3\xa9\",b=\"\"} 2\nm 1 1700000000\n"
                               "h_bucket{le=\"+Inf\"} 3\nn NaN\n\n";
    struct prom_sample s[8];
    size_t n;
    const char *where;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!prom_parse(bad[i], s, 8, &n, &where), "parsed: %s", bad[i]);
    ck_assert_msg(prom_parse(good, s, 8, &n, &where), "refused: %s", where);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(prom_label(&s[0], "a"), "q\"\\\n\xc3\xa9");
    ck_assert_str_eq(prom_label(&s[0], "b"), "");
    ck_assert(s[0].value == 2);
}
END_TEST

/* ---- the bridge with hostile ids */

static const char *const hostile[] = {
    "q\"uote",
    "back\\slash",
    "trail\\",
    "evil\"} 1\nx",                              /* replaced below: newlines are no topic level */
    "\"},outcome=\"ok",                          /* label injection */
    "\xe4\xb8\xad\xe6\x96\x87-\xf0\x9f\x98\x80", /* UTF-8 */
    "nb\xc2\xa0sp \\\" =,{}",
};
#define N_HOSTILE (sizeof(hostile) / sizeof(hostile[0]))

/* The ids actually used: hostile[] with the one newline (which the configuration would
 * refuse) turned into a space. */
static char ids[N_HOSTILE][64];

static void json_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '"' || *s == '\\')
            out[o++] = '\\';
        out[o++] = *s;
    }
    out[o] = '\0';
}

static void url_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

START_TEST(hostile_ids_round_trip_through_metrics)
{
    static struct th_broker broker;
    static struct th_bridge bridge;
    char cfg[4096], esc[160], url[512], path[256], body[512], topic[256];
    size_t o;
    struct th_mqtt *sub;

    for (size_t i = 0; i < N_HOSTILE; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s", hostile[i]);
        for (char *c = ids[i]; *c; c++)
            if (*c == '\n')
                *c = ' ';
    }
    memset(&broker, 0, sizeof(broker));
    memset(&bridge, 0, sizeof(bridge));
    th_broker_start(&broker, NULL);
    bridge.port = th_free_port();
    o = (size_t)snprintf(cfg, sizeof(cfg),
                         "{\"http\":{\"listen\":\"127.0.0.1:%d\"},\"mqtt\":{\"url\":\"%s\","
                         "\"client_id\":\"ocb-it-labels\"},\"apps\":[",
                         bridge.port, broker.url);
    for (size_t i = 0; i < N_HOSTILE; i++) {
        json_escape(ids[i], esc, sizeof(esc));
        o += (size_t)snprintf(cfg + o, sizeof(cfg) - o, "%s{\"app_id\":\"%s\"}", i ? "," : "", esc);
    }
    snprintf(cfg + o, sizeof(cfg) - o, "]}");
    th_bridge_start(&bridge, cfg, false);
    ck_assert_msg(th_bridge_wait_ready(&bridge, NULL, WAIT_MS), "bridge never became ready");
    sub = th_mqtt_connect(broker.url, "it-labels-sub", 5);
    ck_assert_ptr_nonnull(sub);
    ck_assert(th_mqtt_subscribe(sub, "iot/#", 1));

    /* App i gets a push whose notifyType is hostile id i, delivered to its exact topic. */
    for (size_t i = 0; i < N_HOSTILE; i++) {
        struct th_http_resp r;

        url_escape(ids[i], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/push/%s", esc);
        snprintf(url, sizeof(url), "%s%s", bridge.base, path);
        json_escape(ids[i], esc, sizeof(esc));
        snprintf(body, sizeof(body), "{\"notifyType\":\"%s\",\"deviceId\":\"d1\"}", esc);
        ck_assert(th_http("POST", url, body, strlen(body), NULL, &r));
        ck_assert_msg(r.status == 200, "%s: %ld %s", ids[i], r.status, r.body);
        th_http_resp_free(&r);
        snprintf(topic, sizeof(topic), "iot/%s/d1/%s", ids[i], ids[i]);
        const struct th_msg *m = th_mqtt_wait_topic(sub, topic, WAIT_MS);
        ck_assert_msg(m != NULL, "nothing on %s", topic);
        ck_assert_str_eq((const char *)m->payload, body);
    }

    /* The whole page parses, and every hostile value comes back exactly. */
    struct th_http_resp r;
    static struct prom_sample samples[1024];
    size_t n;
    const char *where = NULL;
    snprintf(url, sizeof(url), "%s/metrics", bridge.base);
    ck_assert(th_http("GET", url, NULL, 0, NULL, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(prom_parse(r.body, samples, 1024, &n, &where), "unparseable line: %.200s", where);
    for (size_t i = 0; i < N_HOSTILE; i++) {
        bool ok = false;
        for (size_t k = 0; k < n; k++) {
            const char *nt = prom_label(&samples[k], "notify_type");
            const char *out = prom_label(&samples[k], "outcome");
            if (strcmp(samples[k].name, "ocb_pushes_total") != 0 || nt == NULL || out == NULL ||
                strcmp(nt, ids[i]) != 0)
                continue;
            ck_assert_uint_eq(samples[k].n_labels, 2);
            ok = ok || (strcmp(out, "ok") == 0 && samples[k].value == 1);
        }
        ck_assert_msg(ok, "no ok series for \"%s\" in:\n%s", ids[i], r.body);
    }
    /* No value leaked into a label or series of its own. */
    for (size_t k = 0; k < n; k++) {
        ck_assert_msg(strncmp(samples[k].name, "ocb_", 4) == 0, "stray series %s", samples[k].name);
        if (strcmp(samples[k].name, "ocb_pushes_total") == 0)
            ck_assert(samples[k].n_labels == 2 && prom_label(&samples[k], "notify_type") &&
                      prom_label(&samples[k], "outcome"));
    }
    th_http_resp_free(&r);

    th_mqtt_free(sub);
    ck_assert_int_eq(th_bridge_stop(&bridge), 0);
    th_broker_stop(&broker);
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const metrics_labels_tests[] = {parser_refuses_broken_expositions,
                                                 hostile_ids_round_trip_through_metrics, NULL};
    const struct th_case cases[] = {
        {.name = "metrics_labels", .timeout_s = 120, .tests = metrics_labels_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "metrics_labels", cases);
}
