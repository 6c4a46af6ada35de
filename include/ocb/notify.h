/*
 * notify.h: the notification types the platform lets an app subscribe to
 * (docs/platform-api.md sections 1.2 and 5), and which subscription API each one
 * belongs to.  One table serves the configuration check, the bridge's
 * subscription sync and the simulator's subscription rules, so they cannot
 * drift apart.  Pure; thread-safe.
 */
#ifndef OCB_NOTIFY_H
#define OCB_NOTIFY_H

enum ocb_notify_api {
    OCB_NOTIFY_UNKNOWN = 0, /* not a subscribable type */
    OCB_NOTIFY_BUSINESS,    /* /iocm/app/sub/v1.2.0/subscriptions (and v1.1.0) */
    OCB_NOTIFY_MANAGEMENT,  /* /iodm/app/sub/v1.1.0/subscribe: the sw/fw upgrade types */
};

/* Which API subscribes to type; OCB_NOTIFY_UNKNOWN for anything else (and NULL). */
enum ocb_notify_api notify_type_api(const char *type);

#endif
