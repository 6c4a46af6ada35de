/*
 * sim_faults.c: fault injection on the API port, set through POST /faults on the admin port.
 *
 * A rule matches by method and path prefix, fires with probability `rate` for at most `count`
 * requests, and then delays (latency_ms), drops the connection, answers an error status, or
 * answers HTTP 200 with an error body (the platform's habit for e.g. 100428).  A rule with only a
 * latency lets the request through after the delay.  drop_after lets the request through too and
 * then closes the connection instead of sending the answer: the platform acted (a command was
 * created) but the client never learns it, the case a create reconciliation exists for.  Rules are
 * checked in order; the first that fires wins.  Faulted requests bypass authentication and
 * throttling, like a failing gateway.
 */
#include "sim.h"

#include <stdio.h>
#include <string.h>

static bool read_str(const cJSON *spec, const char *key, char *dst, size_t cap, char *err,
                     size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        snprintf(err, errlen, "%s: expected a string shorter than %zu", key, cap);
        return false;
    }
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}

static bool read_num(const cJSON *spec, const char *key, double min, double max, double *out,
                     char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!v || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max) {
        snprintf(err, errlen, "%s: expected a number in %g..%g", key, min, max);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

static bool parse_rule(const cJSON *spec, struct sim_fault *f, char *err, size_t errlen)
{
    static const char *known[] = {
        "path_prefix", "method",     "rate",  "count",          "latency_ms",      "status",
        "error_code",  "error_desc", "shape", "body_200_error", "drop_connection", "drop_after"};
    memset(f, 0, sizeof *f);
    f->rate = 1.0;
    f->count = -1;
    if (!cJSON_IsObject(spec)) {
        snprintf(err, errlen, "each fault must be a JSON object");
        return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, spec)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok = ok || strcmp(known[i], it->string) == 0;
        if (!ok) {
            snprintf(err, errlen, "unknown fault field \"%s\"", it->string);
            return false;
        }
    }
    double count = -1, latency = 0, status = 0;
    char shape[16] = "error_code";
    if (!read_str(spec, "path_prefix", f->path_prefix, sizeof f->path_prefix, err, errlen) ||
        !read_str(spec, "method", f->method, sizeof f->method, err, errlen) ||
        !read_str(spec, "error_code", f->error_code, sizeof f->error_code, err, errlen) ||
        !read_str(spec, "error_desc", f->error_desc, sizeof f->error_desc, err, errlen) ||
        !read_str(spec, "body_200_error", f->body_200_error, sizeof f->body_200_error, err,
                  errlen) ||
        !read_str(spec, "shape", shape, sizeof shape, err, errlen) ||
        !read_num(spec, "rate", 0, 1, &f->rate, err, errlen) ||
        !read_num(spec, "count", -1, 1e9, &count, err, errlen) ||
        !read_num(spec, "latency_ms", 0, 120000, &latency, err, errlen) ||
        !read_num(spec, "status", 0, 599, &status, err, errlen))
        return false;
    if (strcmp(shape, "resultcode") != 0 && strcmp(shape, "error_code") != 0) {
        snprintf(err, errlen, "shape: expected error_code or resultcode");
        return false;
    }
    if (status != 0 && status < 100) {
        snprintf(err, errlen, "status: expected 100..599");
        return false;
    }
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(spec, "drop_connection");
    if (drop && !cJSON_IsBool(drop)) {
        snprintf(err, errlen, "drop_connection: expected true or false");
        return false;
    }
    f->drop_connection = cJSON_IsTrue(drop);
    const cJSON *after = cJSON_GetObjectItemCaseSensitive(spec, "drop_after");
    if (after && !cJSON_IsBool(after)) {
        snprintf(err, errlen, "drop_after: expected true or false");
        return false;
    }
    f->drop_after = cJSON_IsTrue(after);
    if (f->drop_after && (f->drop_connection || status != 0 || f->body_200_error[0])) {
        snprintf(err, errlen, "drop_after: cannot be combined with another answer");
        return false;
    }
    f->resultcode_shape = strcmp(shape, "resultcode") == 0;
    f->count = (long)count;
    f->latency_ms = (long)latency;
    f->status = (int)status;
    if (!f->error_desc[0])
        snprintf(f->error_desc, sizeof f->error_desc, "Injected fault.");
    return true;
}

enum ocb_err sim_faults_set_locked(const cJSON *spec, char *err, size_t errlen)
{
    struct sim_fault rules[SIM_MAX_FAULTS];
    size_t n = 0;
    if (cJSON_IsArray(spec)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, spec)
        {
            if (n >= SIM_MAX_FAULTS) {
                snprintf(err, errlen, "at most %d fault rules", SIM_MAX_FAULTS);
                return OCB_ERR_TOO_BIG;
            }
            if (!parse_rule(it, &rules[n++], err, errlen))
                return OCB_ERR_INVALID;
        }
    } else if (cJSON_IsObject(spec) && cJSON_GetArraySize(spec) == 0) {
        n = 0; /* {} clears */
    } else if (!parse_rule(spec, &rules[n++], err, errlen)) {
        return OCB_ERR_INVALID;
    }
    memcpy(g_sim.faults, rules, n * sizeof *rules);
    g_sim.nfaults = n;
    SIM_INFO("faults", "%zu fault rules set", n);
    return OCB_OK;
}

cJSON *sim_faults_json_locked(void)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < g_sim.nfaults; i++) {
        const struct sim_fault *f = &g_sim.faults[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddStringToObject(o, "path_prefix", f->path_prefix);
        cJSON_AddStringToObject(o, "method", f->method);
        cJSON_AddNumberToObject(o, "rate", f->rate);
        cJSON_AddNumberToObject(o, "count", (double)f->count);
        cJSON_AddNumberToObject(o, "latency_ms", (double)f->latency_ms);
        cJSON_AddNumberToObject(o, "status", f->status);
        cJSON_AddStringToObject(o, "error_code", f->error_code);
        cJSON_AddStringToObject(o, "error_desc", f->error_desc);
        cJSON_AddStringToObject(o, "shape", f->resultcode_shape ? "resultcode" : "error_code");
        cJSON_AddStringToObject(o, "body_200_error", f->body_200_error);
        cJSON_AddBoolToObject(o, "drop_connection", f->drop_connection);
        cJSON_AddBoolToObject(o, "drop_after", f->drop_after);
        cJSON_AddNumberToObject(o, "hits", (double)f->hits);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

bool sim_faults_match_locked(const char *method, const char *path, struct sim_fault *out)
{
    for (size_t i = 0; i < g_sim.nfaults; i++) {
        struct sim_fault *f = &g_sim.faults[i];
        if (f->count == 0)
            continue;
        if (f->method[0] && strcmp(f->method, method) != 0)
            continue;
        if (strncmp(path, f->path_prefix, strlen(f->path_prefix)) != 0)
            continue;
        if (f->rate < 1.0 && sim_prng_unit(&g_sim.prng) >= f->rate)
            continue;
        if (f->count > 0)
            f->count--;
        f->hits++;
        *out = *f;
        return true;
    }
    return false;
}
