/*
 * api.h: the pure half of the device API over MQTT (issue 13; README "The
 * device API over MQTT"; tools/sim/README.md "Device API" is the platform
 * side it is built against).
 *
 * MQTT side in: <prefix>/<appId>/<deviceId>/api (deviceId "_" for the
 * operations on no device) with {"op": ..., params..., "correlationId"?}
 * becomes a validated platform call: method, path with its escaped query,
 * JSON body, and how the call may be retried (enum ocb_api_retry).  The
 * app's allowed set (config apps[].api, a bit mask of ops) is checked here,
 * before any parameter is looked at.  The answer on .../apiResponse is
 * command_response_format() with outcome.op set (see command.h).
 *
 * Writes whose outcome can be unknown and that the platform would not
 * refuse as duplicates when repeated are reconciled before a retry:
 * register by nodeId, groupCreate by name.  There is no query by nodeId, so
 * register's reconciliation lists the app's devices created since the first
 * attempt (api_reconcile_path) and looks for the nodeId in them
 * (api_reconcile_scan_page).
 *
 * No I/O, no locks, no global state: thread-safe, callable from paho's
 * callback thread and the command worker.  cJSON trees never leave api.c.
 */
#ifndef OCB_API_H
#define OCB_API_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/command.h"
#include "ocb/err.h"

/* Longest path with query built for a call. */
#define OCB_API_PATH_MAX 2048
/* Most device ids in one group call (groupCreate, groupAdd, groupRemove). */
#define OCB_API_IDS_MAX 1000
/* Most entries in setShadow's serviceDesireds. */
#define OCB_API_SHADOW_MAX 64
/* Reconciliation: devices/groups asked for per page and read at most per query. */
#define OCB_API_RECONCILE_PAGE_SIZE 250
#define OCB_API_RECONCILE_SCAN_MAX  5000

/* The operations, in the order of api_op_name(); the bit of op is 1u << op. */
enum ocb_api_op {
    OCB_API_REGISTER = 0,  /* write, _ */
    OCB_API_GET,           /* read, device */
    OCB_API_LIST,          /* read, _ */
    OCB_API_UPDATE,        /* write, device */
    OCB_API_DELETE,        /* write, device */
    OCB_API_HISTORY,       /* read, device */
    OCB_API_CAPABILITIES,  /* read, device */
    OCB_API_SHADOW,        /* read, device */
    OCB_API_SET_SHADOW,    /* write, device */
    OCB_API_GROUP_CREATE,  /* write, _ */
    OCB_API_GROUP_LIST,    /* read, _ */
    OCB_API_GROUP_GET,     /* read, _ */
    OCB_API_GROUP_UPDATE,  /* write, _ */
    OCB_API_GROUP_DELETE,  /* write, _ */
    OCB_API_GROUP_MEMBERS, /* read, _ */
    OCB_API_GROUP_ADD,     /* write, _ */
    OCB_API_GROUP_REMOVE,  /* write, _ */
    OCB_API_N_OPS,
};

#define OCB_API_OP_BIT(op) (1u << (unsigned)(op))
#define OCB_API_ALL_OPS    ((1u << (unsigned)OCB_API_N_OPS) - 1u)
/* get, list, history, capabilities, shadow, groupList, groupGet, groupMembers:
 * the default of apps[].api. */
#define OCB_API_READ_OPS                                                                           \
    (OCB_API_OP_BIT(OCB_API_GET) | OCB_API_OP_BIT(OCB_API_LIST) |                                  \
     OCB_API_OP_BIT(OCB_API_HISTORY) | OCB_API_OP_BIT(OCB_API_CAPABILITIES) |                      \
     OCB_API_OP_BIT(OCB_API_SHADOW) | OCB_API_OP_BIT(OCB_API_GROUP_LIST) |                         \
     OCB_API_OP_BIT(OCB_API_GROUP_GET) | OCB_API_OP_BIT(OCB_API_GROUP_MEMBERS))
#define OCB_API_WRITE_OPS (OCB_API_ALL_OPS & ~OCB_API_READ_OPS)

/* "register", "get", ..., "groupRemove": the op of the request, the "op" of
 * the answer and the op="" label of metrics.  NULL for an out-of-range op. */
const char *api_op_name(enum ocb_api_op op);

/* The op named name (case-sensitive).  false when there is none. */
bool api_op_from_name(const char *name, enum ocb_api_op *out);

/*
 * One word of apps[].api into bits: an op name, or "read" (OCB_API_READ_OPS),
 * "write" (OCB_API_WRITE_OPS) or "all".  false for anything else.
 */
bool api_ops_word(const char *word, unsigned *bits);

/* Where a request arrived: <prefix>/<appId>/<deviceId>/api. */
struct ocb_api_target {
    bool no_device; /* the deviceId level was "_" (device_id is then "") */
    char app_id[OCB_COMMAND_ID_MAX + 1];
    char device_id[OCB_COMMAND_ID_MAX + 1];
};

/*
 * Split topic.  OCB_ERR_INVALID when it is not <prefix>/<a>/<d>/api with
 * non-empty levels; OCB_ERR_TOO_BIG when a level is over OCB_COMMAND_ID_MAX.
 * *out is zeroed first.
 */
enum ocb_err api_topic_parse(const char *prefix, const char *topic, struct ocb_api_target *out);

/*
 * "<prefix>/<appId>/<deviceId or _>/apiResponse" into out (cap bytes).
 * OCB_ERR_TOO_BIG when it does not fit.
 */
enum ocb_err api_response_topic(const char *prefix, const struct ocb_api_target *t, char *out,
                                size_t cap);

/* How the worker may retry a call that failed retryably (5xx, network, throttled). */
enum ocb_api_retry {
    /* A read: retry freely until the deadline. */
    OCB_API_RETRY_READ = 0,
    /* A write that means the same when repeated (update, setShadow, groupUpdate,
     * groupAdd, groupRemove): journal it; retry even after an unknown outcome. */
    OCB_API_RETRY_IDEMPOTENT,
    /* delete, groupDelete: journal; retry, and when an earlier attempt's outcome
     * was unknown, a not-found answer to the retry is that attempt's success
     * (api_gone_is_done). */
    OCB_API_RETRY_DELETE,
    /* register, groupCreate: journal; after an unknown outcome never resend
     * before api_reconcile_* found nothing. */
    OCB_API_RETRY_RECONCILE,
};

/*
 * A validated request.  Strings are owned (free with api_req_cleanup);
 * method is a static string.
 */
struct ocb_api_req {
    enum ocb_api_op op;
    bool op_known;        /* op is set (also on errors past the op lookup) */
    char *correlation_id; /* JSON text of correlationId, or NULL when absent */
    const char *method;   /* "GET", "POST", "PUT", "DELETE" */
    char *path;           /* absolute, escaped, with query; starts with /iocm/app/ */
    char *body;           /* compact JSON text, or NULL for no body */
    enum ocb_api_retry retry;
    /* RETRY_RECONCILE: what the scan looks for (register: nodeId, groupCreate: name). */
    char *reconcile_key;
};

/*
 * Validate an MQTT payload published on target t, for an app whose allowed
 * set is `allowed` (bits of enum ocb_api_op).  Returns OCB_CMD_OK and fills
 * *out, or:
 *   OCB_CMD_PAYLOAD_TOO_LARGE   len > max_bytes;
 *   OCB_CMD_INVALID_PAYLOAD     not a JSON object, no string "op", bad or
 *                               unknown parameters;
 *   OCB_CMD_UNKNOWN_OPERATION   "op" names no operation;
 *   OCB_CMD_OPERATION_NOT_ALLOWED  the op is not in `allowed` (checked
 *                               before any parameter, and never with a call);
 *   OCB_CMD_INVALID_TOPIC       the op names a device and the topic has "_",
 *                               or the other way round;
 *   OCB_CMD_INTERNAL            out of memory, or a path over OCB_API_PATH_MAX;
 * with a one-line reason in why.  On error out->method, path and body are
 * NULL; correlation_id (and op, op_known) are kept when the payload had them,
 * so the answer can echo them.  Call api_req_cleanup() in both cases.
 */
enum ocb_command_code api_parse(const struct ocb_api_target *t, unsigned allowed,
                                const void *payload, size_t len, size_t max_bytes,
                                struct ocb_api_req *out, char *why, size_t whylen);

void api_req_cleanup(struct ocb_api_req *req);

/*
 * RETRY_DELETE after an unknown outcome: true when (status, code) of the
 * retry says the resource is already gone (404 with 100403 for delete,
 * 100603 for groupDelete), i.e. the earlier attempt did it.
 */
bool api_gone_is_done(enum ocb_api_op op, long status, const char *code);

/*
 * RETRY_RECONCILE: the query for page page_no (0-based) of page_size of what
 * was created since since_s (UTC seconds; the caller subtracts its clock
 * margin, e.g. OCB_RECONCILE_MARGIN_S):
 *   register:    GET /iocm/app/dm/v1.4.0/devices?startTime=..&sort=ASC&pageNo=..&pageSize=..
 *   groupCreate: GET /iocm/app/devgroup/v1.3.0/devGroups?name=..&pageNo=..&pageSize=..
 * (the group list has no time filter; a group name is unique per app).
 * OCB_ERR_INVALID for another op or bad numbers, OCB_ERR_TOO_BIG when over cap.
 */
enum ocb_err api_reconcile_path(const struct ocb_api_req *req, long long since_s, long page_no,
                                long page_size, char *out, size_t cap);

/* The scan over the answer pages; zero it before the first page. */
struct ocb_api_scan {
    bool found;
    char id[OCB_COMMAND_ID_MAX + 1]; /* the deviceId / group id found */
    char *resource;                  /* the matching device / group, compact JSON; owned */
    size_t resource_len;
    long long total; /* totalCount of the last page */
    size_t page_items;
};

/*
 * Scan one answer page ({"totalCount":N,"devices":[...]} for register, whose
 * match is deviceInfo.nodeId == reconcile_key; {"totalCount":N,"list":[...]}
 * for groupCreate, whose match is name == reconcile_key).  The first match
 * wins.  OCB_ERR_PROTOCOL when the body is not such an object; OCB_ERR_NOMEM.
 */
enum ocb_err api_reconcile_scan_page(const struct ocb_api_req *req, const char *body, size_t len,
                                     struct ocb_api_scan *scan);

/* After page page_no of page_size: another page to read (not found yet, within
 * total and OCB_API_RECONCILE_SCAN_MAX)? */
bool api_reconcile_more(const struct ocb_api_scan *scan, long page_no, long page_size);

/* Frees scan->resource and zeroes *scan.  NULL is a no-op. */
void api_scan_cleanup(struct ocb_api_scan *scan);

#endif
