/*
 * subscriptions.h: make the platform's subscriptions match apps[].subscribe
 * (docs/design.md section 4): `ocbridge subscribe -c FILE`, and
 * platform.manage_subscriptions at start-up (run by the command worker).
 *
 * For every app with a secret: list its subscriptions, create the missing
 * ones with callbackUrl = http.public_url + "/push/<appId>[/<push_token>]",
 * replace a conflicting one (409/100227), delete those that point at this
 * bridge for types no longer wanted, and subscribe the upgrade types
 * (sw/fwUpgrade*) through /iodm/app/sub/v1.1.0/subscribe, which has no list.
 * When http.public_url moved to another IP:port, every subscription of the
 * app at another IP:port is deleted first (the platform wants one IP:port
 * per app), each deletion logged at warn level and reported.
 *
 * The sync is a state machine driven by replies: it makes one platform
 * call at a time through platform_client_submit(), the path the commands
 * use, and never waits itself, so the command worker keeps executing
 * commands while a sync is slow.  `ocbridge subscribe` drives the same
 * machine with a plain loop.
 *
 * Threads: not thread-safe; everything runs on the thread that owns pc (the
 * command worker, or main for `ocbridge subscribe`).
 */
#ifndef OCB_SUBSCRIPTIONS_H
#define OCB_SUBSCRIPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/platform_client.h"

struct ocb_subs_sync;

/*
 * A sync of every app with a secret in cfg, not started yet: the first
 * subscriptions_sync_step() makes the first call.  Holds a reference to cfg
 * (config.h) until subscriptions_sync_free(); pc is borrowed and must
 * outlive the sync; report (may be NULL) gets one line per action
 * for humans; everything is logged too.
 */
enum ocb_err subscriptions_sync_new(struct ocb_platform_client *pc, const struct ocb_config *cfg,
                                    FILE *report, struct ocb_subs_sync **out);

/*
 * Act on the reply that came (if any) and submit the next call.  Never
 * waits: returns false while a call is in flight (its completion, from
 * platform_client_run(), makes the next step worthwhile), true once the
 * sync is over.  Call it after every platform_client_run().
 */
bool subscriptions_sync_step(struct ocb_subs_sync *y);

/* A call of y is in flight: y must not be freed before it completes. */
bool subscriptions_sync_busy(const struct ocb_subs_sync *y);

/*
 * Once step returned true: OCB_OK when every app is in sync, else the first
 * error (the other apps were still tried); OCB_ERR_STOPPED when the
 * platform client was freed under it.
 */
enum ocb_err subscriptions_sync_result(const struct ocb_subs_sync *y);

/*
 * NULL is a no-op.  Only when not busy; platform_client_free() completes a
 * call in flight, so freeing the client first is always safe.
 */
void subscriptions_sync_free(struct ocb_subs_sync *y);

/*
 * Whether two http(s) callback URLs share the IP:port the platform compares:
 * host case-insensitively as written, port explicit or the scheme's default,
 * scheme and path ignored.  false when either is not http(s)://HOST[:PORT].
 * Pure; thread-safe.
 */
bool subscriptions_same_endpoint(const char *a, const char *b);

/* One listed subscription; the sync marks gone the ones it deleted. */
struct ocb_subs_entry {
    char *id;   /* subscriptionId */
    char *type; /* notifyType */
    char *url;  /* callbackUrl (callbackurl on older deployments) */
    bool gone;
};

/*
 * Pure; thread-safe: append the usable entries (string subscriptionId,
 * notifyType and callbackUrl) of one list page body
 * {"totalCount","pageNo","pageSize","subscriptions":[...]} to *subs and *n_subs
 * (a malloc'd array: free with subscriptions_entries_free()).  *listed grows
 * by every entry of the page, usable or not; *more says whether to ask for
 * another page (entries listed < totalCount, or a full page of page_size
 * when totalCount is absent).  OCB_ERR_PROTOCOL when the body has no
 * subscriptions array, OCB_ERR_NOMEM; on error nothing is appended.
 */
enum ocb_err subscriptions_page_parse(const char *body, size_t len, size_t page_size,
                                      struct ocb_subs_entry **subs, size_t *n_subs, size_t *listed,
                                      bool *more);

/* Free n entries and the array; NULL is a no-op. */
void subscriptions_entries_free(struct ocb_subs_entry *subs, size_t n);

/* `ocbridge subscribe`: sync with a client of its own; returns the exit status. */
int subscriptions_main(const struct ocb_config *cfg);

#endif
