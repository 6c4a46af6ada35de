/*
 * reconcile.h: finding a create whose outcome is unknown (DESIGN.md section 4).
 *
 * The platform has no idempotency key.  When a create was sent and no answer
 * came back (a timeout, the connection lost after the request went out), the
 * platform may or may not hold the command.  Before creating again, the
 * command worker asks the platform for the device's commands created since
 * the first attempt (GET deviceCommands?deviceId=&startTime=, paged) and
 * looks for one with the same serviceId, method, paras, callbackUrl (and
 * expireTime / maxRetransmit when the request had them).  This module is the
 * pure half of that: the query path, the UTC time format of the query, and
 * the scan of the answer pages for the command to adopt.
 *
 * Which one to adopt: the oldest match that the caller has not already
 * claimed (an earlier command of this bridge, created or adopted).  Two
 * identical commands published on purpose must stay two commands: if both
 * creates time out, the first job adopts the oldest, the second must not
 * adopt the same one, so it takes the next or creates its own.  Oldest, so
 * that jobs reconciling in their publishing order adopt in creation order.
 *
 * No I/O, no locks, no global state: thread-safe.  cJSON trees do not leave
 * reconcile.c; what crosses the header is text.
 */
#ifndef OCB_RECONCILE_H
#define OCB_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/command.h"
#include "ocb/err.h"

/* The query starts this long before the first attempt (clock skew with the platform). */
#define OCB_RECONCILE_MARGIN_S 60
/* Commands asked for per page (halved while a page is over the reply cap), and
 * commands read at most per query (a bound, not an expectation). */
#define OCB_RECONCILE_PAGE_SIZE 100
#define OCB_RECONCILE_SCAN_MAX  2000

/* What the create asked for.  Every pointer is borrowed. */
struct ocb_reconcile_want {
    const char *device_id;
    const char *service_id;
    const char *method;
    const char *paras;        /* JSON object text, compared as a JSON value */
    const char *callback_url; /* NULL or "" = none */
    long long expire_time;    /* -1 = absent (the platform's default: any value matches) */
    int max_retransmit;       /* -1 = absent */
    long long since_s;        /* UTC seconds; older creationTimes do not match; 0 = no bound */
};

/* true when command_id already belongs to a command of this bridge (never adopt it). */
typedef bool (*ocb_reconcile_claimed_fn)(void *ctx, const char *command_id);

/* The scan over the answer pages; zero it before the first page. */
struct ocb_reconcile_scan {
    bool found;
    char command_id[OCB_COMMAND_ID_MAX + 1];
    long long creation_s; /* of the match; LLONG_MAX when it had no readable creationTime */
    char *resource;       /* the matching command resource, compact JSON; owned */
    size_t resource_len;
    long long total_size; /* pagination.totalSize of the last page */
    size_t page_items;    /* resources on the last page */
    unsigned matches;     /* matching resources seen on all pages */
    unsigned claimed;     /* of which already claimed */
};

/*
 * Scan one answer page ({"pagination":{...,"totalSize":N},"data":[...]})
 * and keep, in *scan, the oldest unclaimed match seen so far.  claimed may be
 * NULL.  OCB_ERR_PROTOCOL when the body is not such an object (a page without
 * pagination counts as the last one, totalSize = its item count);
 * OCB_ERR_NOMEM.  *scan stays usable on error.
 */
enum ocb_err reconcile_scan_page(const struct ocb_reconcile_want *want, const char *body,
                                 size_t len, ocb_reconcile_claimed_fn claimed, void *ctx,
                                 struct ocb_reconcile_scan *scan);

/* After page page_no (0-based) of page_size was scanned: is there another one to read
 * (within totalSize and OCB_RECONCILE_SCAN_MAX)? */
bool reconcile_scan_more(const struct ocb_reconcile_scan *scan, long page_no, long page_size);

/* Frees scan->resource and zeroes *scan.  NULL is a no-op. */
void reconcile_scan_cleanup(struct ocb_reconcile_scan *scan);

/*
 * "/iocm/app/cmd/v1.4.0/deviceCommands?deviceId=..&startTime=..&pageNo=..&pageSize=.."
 * into out (cap bytes); the device id is percent-encoded.  OCB_ERR_TOO_BIG
 * when it does not fit, OCB_ERR_INVALID for a time that cannot be formatted.
 */
enum ocb_err reconcile_query_path(const char *device_id, long long since_s, long page_no,
                                  long page_size, char *out, size_t cap);

/* UTC seconds <-> the platform's "yyyyMMddTHHmmssZ". */
enum ocb_err reconcile_time_format(long long t, char out[17]);
bool reconcile_time_parse(const char *s, long long *out);

#endif
