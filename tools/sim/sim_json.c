/*
 * sim_json.c: building answers and reading requests.
 *
 * The platform answers in two error shapes (§6.1): {"error_code","error_desc"} from the
 * applications and {"resultcode","resultmsg"} from the API gateway (tokens, throttling).  Both are
 * produced here so every module says the same thing the same way.  Output is compact JSON, like
 * the platform's.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *sim_req_query(const struct sim_req *r, const char *key)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (strcmp(r->query[i].key, key) == 0)
            return r->query[i].val ? r->query[i].val : "";
    return NULL;
}

const char *sim_req_header(const struct sim_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].key, name) == 0)
            return r->headers[i].val;
    return NULL;
}

static void resp_set(struct sim_resp *r, int status, char *body, const char *type)
{
    free(r->body);
    r->status = status;
    r->body = body;
    r->content_type = type;
}

void sim_resp_json(struct sim_resp *r, int status, cJSON *obj)
{
    char *s = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (obj && !s) {
        resp_set(r, 503, NULL, "application/json");
        return;
    }
    resp_set(r, status, s, "application/json");
}

static void resp_pair(struct sim_resp *r, int status, const char *k1, const char *v1,
                      const char *k2, const char *v2)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, k1, v1);
        cJSON_AddStringToObject(o, k2, v2);
    }
    sim_resp_json(r, status, o);
}

void sim_resp_error(struct sim_resp *r, int status, const char *code, const char *desc)
{
    resp_pair(r, status, "error_code", code, "error_desc", desc);
}

void sim_resp_gw_error(struct sim_resp *r, int status, const char *code, const char *msg)
{
    resp_pair(r, status, "resultcode", code, "resultmsg", msg);
}

/* An empty body still says application/json: Huawei's Java SDK fails (NullPointerException) on
 * an answer without a Content-Type, and the platform's answers always carry one. */
void sim_resp_empty(struct sim_resp *r, int status)
{
    resp_set(r, status, NULL, "application/json");
}

void sim_resp_text(struct sim_resp *r, int status, const char *text)
{
    resp_set(r, status, strdup(text), "text/plain");
}

cJSON *sim_req_json_object(const struct sim_req *req, struct sim_resp *resp)
{
    cJSON *o = NULL;
    if (req->body_len > 0 && strlen(req->body) == req->body_len)
        o = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        return NULL;
    }
    return o;
}

static bool query_long(const struct sim_req *req, const char *key, long min, long max, long def,
                       long *out)
{
    const char *v = sim_req_query(req, key);
    if (!v || !*v) {
        *out = def;
        return true;
    }
    return sim_parse_long(v, min, max, out);
}

bool sim_req_paging(const struct sim_req *req, struct sim_resp *resp, long def_size, long max_size,
                    long *page_no, long *page_size)
{
    if (!query_long(req, "pageNo", 0, 1000000, 0, page_no) ||
        !query_long(req, "pageSize", 1, max_size, def_size, page_size)) {
        sim_resp_error(resp, 400, "100022", "The input is invalid.");
        return false;
    }
    return true;
}

const char *sim_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void sim_json_add_str_or_null(cJSON *obj, const char *key, const char *s)
{
    if (s)
        cJSON_AddStringToObject(obj, key, s);
    else
        cJSON_AddNullToObject(obj, key);
}

enum ocb_err sim_jlog_init(struct sim_jlog *l, size_t cap)
{
    memset(l, 0, sizeof *l);
    l->e = calloc(cap, sizeof *l->e);
    if (!l->e)
        return OCB_ERR_NOMEM;
    l->cap = cap;
    return OCB_OK;
}

void sim_jlog_add(struct sim_jlog *l, cJSON *obj)
{
    if (!obj || !l->e) {
        cJSON_Delete(obj);
        return;
    }
    unsigned long seq = ++l->seq;
    cJSON_AddNumberToObject(obj, "seq", (double)seq);
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s)
        return;
    size_t slot;
    if (l->n == l->cap) { /* full: the oldest record makes room */
        slot = l->head;
        free(l->e[slot].json);
        l->head = (l->head + 1) % l->cap;
    } else {
        slot = (l->head + l->n++) % l->cap;
    }
    l->e[slot].seq = seq;
    l->e[slot].json = s;
}

cJSON *sim_jlog_json(const struct sim_jlog *l, unsigned long since, const char *key,
                     const char *prefix)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && l->e && i < l->n; i++) {
        const struct sim_jlog_entry *e = &l->e[(l->head + i) % l->cap];
        if (e->seq <= since)
            continue;
        cJSON *item = cJSON_Parse(e->json);
        if (!item)
            continue;
        const char *v = key ? sim_json_str(item, key) : NULL;
        if (key && prefix && (!v || strncmp(v, prefix, strlen(prefix)) != 0)) {
            cJSON_Delete(item);
            continue;
        }
        cJSON_AddItemToArray(arr, item);
    }
    return arr;
}

void sim_jlog_clear(struct sim_jlog *l)
{
    for (size_t i = 0; l->e && i < l->n; i++)
        free(l->e[(l->head + i) % l->cap].json);
    l->head = 0;
    l->n = 0;
}

void sim_jlog_free(struct sim_jlog *l)
{
    sim_jlog_clear(l);
    free(l->e);
    l->e = NULL;
    l->cap = 0;
}
