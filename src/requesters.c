/*
 * requesters.c: the commandId -> requester map and the statuses that came
 * too early (see requesters.h).
 *
 * A doubly linked list, oldest insert first, so that a full map forgets the
 * oldest entry and a lookup from the tail finds the newest.  At most
 * max_entries nodes (OCB_CMD_REQUESTERS_MAX for the worker), each a fixed
 * size, so the memory is bounded whatever clients put in their MQTT 5
 * properties.  Early statuses live in a ring of OCB_REQUESTERS_EARLY_MAX
 * slots: a burst of statuses for unknown commands pushes the oldest out.
 *
 * Everything runs under `lock`; the callers are the command worker (insert)
 * and libmicrohttpd's threads (on_status).
 */
#include "ocb/requesters.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocb/list.h"

struct node {
    struct ocb_list link; /* in rq->nodes */
    struct ocb_requester e;
};

/* A status that came before its requester was known. */
struct early {
    char app_id[OCB_COMMAND_ID_MAX + 1];
    char command_id[OCB_COMMAND_ID_MAX + 1];
    char *body; /* NULL: free slot */
    size_t len;
    int64_t expires_ms;
};

struct ocb_requesters {
    pthread_mutex_t lock;
    unsigned max_entries;
    struct ocb_list nodes; /* struct node, oldest first */
    unsigned n;
    struct early early[OCB_REQUESTERS_EARLY_MAX];
    unsigned early_pos; /* the next slot to overwrite, i.e. the oldest */
};

enum ocb_err requesters_new(unsigned max_entries, struct ocb_requesters **out)
{
    *out = NULL;
    if (max_entries == 0)
        return OCB_ERR_INVALID;
    struct ocb_requesters *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return OCB_ERR_NOMEM;
    pthread_mutex_init(&rq->lock, NULL);
    rq->max_entries = max_entries;
    ocb_list_init(&rq->nodes);
    *out = rq;
    return OCB_OK;
}

static struct node *node_of(struct ocb_list *l)
{
    return ocb_list_entry(l, struct node, link);
}

static void unlink_node(struct ocb_requesters *rq, struct node *nd)
{
    ocb_list_remove(&nd->link);
    rq->n--;
    free(nd);
}

void requesters_free(struct ocb_requesters *rq)
{
    if (!rq)
        return;
    struct ocb_list *pos, *tmp;
    /* The whole list goes: no unlinking. */
    ocb_list_for_each_safe (pos, tmp, &rq->nodes)
        free(node_of(pos));
    for (unsigned i = 0; i < OCB_REQUESTERS_EARLY_MAX; i++)
        free(rq->early[i].body);
    pthread_mutex_destroy(&rq->lock);
    free(rq);
}

static enum ocb_err copy_str(char *dst, size_t cap, const char *src)
{
    if (!src || !*src)
        return OCB_ERR_INVALID;
    size_t n = strlen(src);
    if (n >= cap)
        return OCB_ERR_TOO_BIG;
    memcpy(dst, src, n + 1);
    return OCB_OK;
}

enum ocb_err requesters_entry_fill(struct ocb_requester *e, const char *app_id,
                                   const char *command_id, const char *response_topic,
                                   const void *corr, size_t corr_len, int64_t expires_ms)
{
    memset(e, 0, sizeof(*e));
    enum ocb_err rc = copy_str(e->app_id, sizeof(e->app_id), app_id);
    if (rc == OCB_OK)
        rc = copy_str(e->command_id, sizeof(e->command_id), command_id);
    if (rc == OCB_OK)
        rc = copy_str(e->response_topic, sizeof(e->response_topic), response_topic);
    if (rc == OCB_OK && corr_len > sizeof(e->corr))
        rc = OCB_ERR_TOO_BIG;
    if (rc != OCB_OK) {
        memset(e, 0, sizeof(*e));
        return rc;
    }
    if (corr && corr_len)
        memcpy(e->corr, corr, corr_len);
    e->corr_len = corr ? corr_len : 0;
    e->expires_ms = expires_ms;
    return OCB_OK;
}

/* Caller holds the lock. */
static unsigned expire_locked(struct ocb_requesters *rq, int64_t now)
{
    unsigned gone = 0;
    struct ocb_list *pos, *tmp;
    ocb_list_for_each_safe (pos, tmp, &rq->nodes) {
        struct node *nd = node_of(pos);
        if (now >= nd->e.expires_ms) {
            unlink_node(rq, nd);
            gone++;
        }
    }
    return gone;
}

/* The newest entry for the pair.  Caller holds the lock. */
static struct node *find_locked(struct ocb_requesters *rq, const char *app_id,
                                const char *command_id)
{
    struct ocb_list *pos;
    ocb_list_for_each_reverse (pos, &rq->nodes) {
        struct node *nd = node_of(pos);
        if (strcmp(nd->e.command_id, command_id) == 0 && strcmp(nd->e.app_id, app_id) == 0)
            return nd;
    }
    return NULL;
}

/* Hand the kept statuses of e's command to emit, oldest first.  Caller holds the lock. */
static void early_replay(struct ocb_requesters *rq, const struct ocb_requester *e, int64_t now,
                         ocb_requester_emit emit, void *ctx)
{
    for (unsigned i = 0; i < OCB_REQUESTERS_EARLY_MAX; i++) {
        struct early *k = &rq->early[(rq->early_pos + i) % OCB_REQUESTERS_EARLY_MAX];
        if (!k->body || now > k->expires_ms || strcmp(k->command_id, e->command_id) != 0 ||
            strcmp(k->app_id, e->app_id) != 0)
            continue;
        if (emit)
            emit(ctx, e, k->body, k->len);
        free(k->body);
        k->body = NULL;
    }
}

enum ocb_err requesters_insert(struct ocb_requesters *rq, const struct ocb_requester *e,
                               int64_t now, ocb_requester_emit emit, void *ctx, bool *evicted)
{
    if (evicted)
        *evicted = false;
    struct node *nd = malloc(sizeof(*nd));
    if (!nd)
        return OCB_ERR_NOMEM;
    nd->e = *e;
    pthread_mutex_lock(&rq->lock);
    expire_locked(rq, now);
    if (rq->n >= rq->max_entries) {
        /* Full: forget the oldest; its statuses still reach commandStatus. */
        unlink_node(rq, node_of(ocb_list_front(&rq->nodes)));
        if (evicted)
            *evicted = true;
    }
    ocb_list_push_back(&rq->nodes, &nd->link);
    rq->n++;
    early_replay(rq, &nd->e, now, emit, ctx);
    pthread_mutex_unlock(&rq->lock);
    return OCB_OK;
}

bool requesters_lookup(struct ocb_requesters *rq, const char *app_id, const char *command_id,
                       struct ocb_requester *out)
{
    if (!app_id || !command_id)
        return false;
    pthread_mutex_lock(&rq->lock);
    struct node *nd = find_locked(rq, app_id, command_id);
    if (nd && out)
        *out = nd->e;
    pthread_mutex_unlock(&rq->lock);
    return nd != NULL;
}

bool requesters_remove(struct ocb_requesters *rq, const char *app_id, const char *command_id)
{
    if (!app_id || !command_id)
        return false;
    pthread_mutex_lock(&rq->lock);
    struct node *nd = find_locked(rq, app_id, command_id);
    if (nd)
        unlink_node(rq, nd);
    pthread_mutex_unlock(&rq->lock);
    return nd != NULL;
}

unsigned requesters_expire(struct ocb_requesters *rq, int64_t now)
{
    pthread_mutex_lock(&rq->lock);
    unsigned gone = expire_locked(rq, now);
    pthread_mutex_unlock(&rq->lock);
    return gone;
}

unsigned requesters_count(struct ocb_requesters *rq)
{
    pthread_mutex_lock(&rq->lock);
    unsigned n = rq->n;
    pthread_mutex_unlock(&rq->lock);
    return n;
}

/* Keep a status of an unknown command.  Caller holds the lock. */
static void early_keep(struct ocb_requesters *rq, const char *app_id, const char *command_id,
                       const char *body, size_t len, int64_t now)
{
    if (len > OCB_REQUESTERS_EARLY_BODY_MAX || strlen(app_id) > OCB_COMMAND_ID_MAX ||
        strlen(command_id) > OCB_COMMAND_ID_MAX)
        return;
    struct early *k = &rq->early[rq->early_pos];
    rq->early_pos = (rq->early_pos + 1) % OCB_REQUESTERS_EARLY_MAX;
    free(k->body);
    /* One byte more, so that an empty body still marks the slot as used. */
    k->body = malloc(len + 1);
    k->len = 0;
    if (!k->body)
        return;
    memcpy(k->body, body, len);
    k->body[len] = '\0';
    k->len = len;
    snprintf(k->app_id, sizeof(k->app_id), "%s", app_id);
    snprintf(k->command_id, sizeof(k->command_id), "%s", command_id);
    k->expires_ms = now + OCB_REQUESTERS_EARLY_KEEP_MS;
}

bool requesters_on_status(struct ocb_requesters *rq, const char *app_id, const char *command_id,
                          const char *body, size_t len, bool final, int64_t final_keep_ms,
                          int64_t now, ocb_requester_emit emit, void *ctx)
{
    if (!app_id || !command_id || !body)
        return false;
    pthread_mutex_lock(&rq->lock);
    expire_locked(rq, now);
    struct node *nd = find_locked(rq, app_id, command_id);
    if (nd) {
        if (emit)
            emit(ctx, &nd->e, body, len);
        if (final && nd->e.expires_ms > now + final_keep_ms)
            nd->e.expires_ms = now + final_keep_ms;
    } else {
        early_keep(rq, app_id, command_id, body, len, now);
    }
    pthread_mutex_unlock(&rq->lock);
    return nd != NULL;
}
