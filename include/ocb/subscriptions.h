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
 * Threads: runs on the thread that owns pc (blocking, bounded by the
 * platform timeouts of each call).
 */
#ifndef OCB_SUBSCRIPTIONS_H
#define OCB_SUBSCRIPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "ocb/config.h"
#include "ocb/err.h"
#include "ocb/platform_client.h"

/*
 * Sync every app with a secret.  report (may be NULL) gets one line per
 * action for humans; everything is logged too.  OCB_OK when every app is in
 * sync, else the first error (the other apps are still tried).
 */
enum ocb_err subscriptions_sync(struct ocb_platform_client *pc, const struct ocb_config *cfg,
                                FILE *report);

/*
 * Whether two http(s) callback URLs share the IP:port the platform compares:
 * host case-insensitively as written, port explicit or the scheme's default,
 * scheme and path ignored.  false when either is not http(s)://HOST[:PORT].
 * Pure; thread-safe.
 */
bool subscriptions_same_endpoint(const char *a, const char *b);

/* `ocbridge subscribe`: sync with a client of its own; returns the exit status. */
int subscriptions_main(const struct ocb_config *cfg);

#endif
