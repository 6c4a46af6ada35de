/*
 * test_metrics.c: the Prometheus registry renders what was counted, caps its
 * series, and escapes label values; plus the small err/log contracts.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ocb/err.h"
#include "ocb/log.h"
#include "ocb/metrics.h"
#include "th_main.h"

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(metrics_render(&text, &len), OCB_OK);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

START_TEST(counters_gauges_and_histograms_render)
{
    metrics_describe("ocb_t_total", OCB_METRIC_COUNTER, "Test counter.");
    metrics_describe("ocb_t_seconds", OCB_METRIC_HISTOGRAM, "Test histogram.");
    metrics_counter_add("ocb_t_total", "outcome=\"ok\"", 2);
    metrics_counter_add("ocb_t_total", "outcome=\"ok\"", 3);
    metrics_gauge_set("ocb_t_gauge", "", 7);
    metrics_gauge_add("ocb_t_gauge", "", -2);
    metrics_histogram_observe("ocb_t_seconds", "", 0.003);
    metrics_histogram_observe("ocb_t_seconds", "", 100);
    ck_assert_int_eq(metrics_value("ocb_t_total", "outcome=\"ok\""), 5);
    ck_assert_int_eq(metrics_value("ocb_t_gauge", ""), 5);
    ck_assert_int_eq(metrics_value("ocb_t_seconds", ""), 2);
    ck_assert_int_eq(metrics_value("ocb_absent", ""), 0);

    char *text = render();
    ck_assert_ptr_nonnull(strstr(text,
                                 "# HELP ocb_t_total Test counter.\n# TYPE ocb_t_total counter\n"
                                 "ocb_t_total{outcome=\"ok\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_gauge 5\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_seconds_bucket{le=\"0.0025\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_seconds_bucket{le=\"0.005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_seconds_bucket{le=\"30\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_seconds_bucket{le=\"+Inf\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_seconds_count 2\n"));
    free(text);
}
END_TEST

/* Four threads update the same series, some of them created in the race: nothing is lost. */
#define RACE_THREADS 4
#define RACE_ROUNDS  20000

static void *race(void *arg)
{
    char labels[32];

    snprintf(labels, sizeof(labels), "t=\"%d\"", (int)(intptr_t)arg);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        metrics_counter_add("ocb_race_total", "", 1);
        metrics_counter_add("ocb_race_total", labels, 2);
        metrics_gauge_add("ocb_race_gauge", "", i % 2 ? -1 : 1);
        metrics_histogram_observe("ocb_race_seconds", "", 0.001);
    }
    return NULL;
}

START_TEST(concurrent_updates_lose_nothing)
{
    pthread_t t[RACE_THREADS];

    metrics_reset();
    for (intptr_t i = 0; i < RACE_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, race, (void *)i), 0);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(metrics_value("ocb_race_total", ""), RACE_THREADS * RACE_ROUNDS);
    ck_assert_int_eq(metrics_value("ocb_race_total", "t=\"2\""), 2 * RACE_ROUNDS);
    ck_assert_int_eq(metrics_value("ocb_race_gauge", ""), 0);
    ck_assert_int_eq(metrics_value("ocb_race_seconds", ""), RACE_THREADS * RACE_ROUNDS);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "ocb_race_seconds_bucket{le=\"0.001\"} 80000\n"));
    ck_assert_ptr_nonnull(strstr(text, "ocb_race_seconds_sum 80.000000\n"));
    free(text);
}
END_TEST

START_TEST(series_are_capped)
{
    metrics_reset();
    for (int i = 0; i < OCB_METRICS_MAX_SERIES + 200; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "notify_type=\"t%d\"", i);
        metrics_counter_add("ocb_t_many", labels, 1);
    }
    ck_assert_int_eq(metrics_value("ocb_t_many", "notify_type=\"t0\""), 1);
    ck_assert_int_eq(metrics_value("ocb_t_many", "overflow=\"true\""), 200);
    char *text = render();
    ck_assert_ptr_null(strstr(text, "t600"));
    free(text);
}
END_TEST

START_TEST(label_values_are_escaped)
{
    char out[32];
    ck_assert(metrics_label_escape("a\"b\\c\nd", out, sizeof(out)));
    ck_assert_str_eq(out, "a\\\"b\\\\c\\nd");
    ck_assert(!metrics_label_escape("abcdefgh", out, 4));
    ck_assert_str_eq(out, "abc");
    /* Cut short before an escape or a UTF-8 sequence, never inside one. */
    ck_assert(!metrics_label_escape("ab\"", out, 4));
    ck_assert_str_eq(out, "ab");
    ck_assert(!metrics_label_escape("a\xe4\xb8\xad", out, 3));
    ck_assert_str_eq(out, "a");
    ck_assert(metrics_label_escape("\xe4\xb8\xad\xf0\x9f\x98\x80", out, sizeof(out)));
    ck_assert_str_eq(out, "\xe4\xb8\xad\xf0\x9f\x98\x80");
    /* Bytes that are no UTF-8 become U+FFFD: the exposition format is UTF-8. */
    ck_assert(metrics_label_escape("a\xff\xe4\xb8", out, sizeof(out)));
    ck_assert_str_eq(out, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}
END_TEST

/* Every label set is built by metrics_labels(): each value escaped, an oversized set
 * folded into overflow="true" rather than cut into a look-alike of another series. */
START_TEST(label_sets_escape_every_value)
{
    char out[OCB_METRICS_LABELS_MAX], big[300];

    ck_assert_int_eq(metrics_labels(out, sizeof(out), "app", "a\"b\\c", "outcome", "ok", NULL),
                     OCB_OK);
    ck_assert_str_eq(out, "app=\"a\\\"b\\\\c\",outcome=\"ok\"");
    ck_assert_int_eq(metrics_labels(out, sizeof(out), NULL), OCB_OK);
    ck_assert_str_eq(out, "");
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(metrics_labels(out, sizeof(out), "app", big, NULL), OCB_ERR_TOO_BIG);
    ck_assert_str_eq(out, "overflow=\"true\"");
    ck_assert_int_eq(metrics_labels(out, 7, "app", "x", NULL), OCB_ERR_TOO_BIG);
    ck_assert_str_eq(out, "");

    /* The rendered line carries the escaped value: one series, one line. */
    metrics_reset();
    ck_assert_int_eq(metrics_labels(out, sizeof(out), "app", "q\"\\\n\xc3\xa9", NULL), OCB_OK);
    metrics_counter_add("ocb_t_app", out, 2);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "ocb_t_app{app=\"q\\\"\\\\\\n\xc3\xa9\"} 2\n"));
    free(text);
}
END_TEST

START_TEST(every_error_has_a_description)
{
    for (int rc = OCB_OK; rc <= OCB_ERR_STOPPED; rc++)
        ck_assert_str_ne(ocb_strerror((enum ocb_err)rc), "unknown error");
    ck_assert_str_eq(ocb_strerror((enum ocb_err)999), "unknown error");
}
END_TEST

/* Capture what log_msg writes to stderr. */
static char *capture_log(enum ocb_log_format fmt, const char *msg)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    log_setup(OCB_LOG_INFO, fmt);
    log_debug("test", NULL, "hidden");
    log_info("test", "req1", "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    static char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

START_TEST(log_lines_text_and_json)
{
    enum ocb_log_level lvl;
    enum ocb_log_format fmt;
    ck_assert(log_level_parse("warn", &lvl) && lvl == OCB_LOG_WARN);
    ck_assert(!log_level_parse("loud", &lvl));
    ck_assert(log_format_parse("json", &fmt) && fmt == OCB_LOG_JSON);

    char *text = capture_log(OCB_LOG_TEXT, "hello");
    ck_assert_ptr_null(strstr(text, "hidden"));
    ck_assert_ptr_nonnull(strstr(text, "info  test: [req1] hello\n"));

    text = capture_log(OCB_LOG_JSON, "say \"hi\"\n");
    ck_assert_ptr_nonnull(strstr(text,
                                 "\"level\":\"info\",\"module\":\"test\",\"request_id\":\"req1\","
                                 "\"msg\":\"say \\\"hi\\\"\\u000a\"}\n"));
}
END_TEST

int main(int argc, char **argv)
{
    const TTest *const metrics_tests[] = {counters_gauges_and_histograms_render,
                                          concurrent_updates_lose_nothing,
                                          series_are_capped,
                                          label_values_are_escaped,
                                          label_sets_escape_every_value,
                                          every_error_has_a_description,
                                          log_lines_text_and_json,
                                          NULL};
    const struct th_case cases[] = {
        {.name = "metrics", .tests = metrics_tests},
        {.name = NULL},
    };

    return th_main(argc, argv, "metrics", cases);
}
