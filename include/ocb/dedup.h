/*
 * dedup.h: recognising re-pushed bodies (push.dedup_window_s).
 *
 * The platform re-pushes a message byte for byte when it missed our 200.
 * With a window set, a body identical to one accepted (answered 200) for the
 * same app within the window is answered 200 again without publishing.
 * Bodies are remembered by their SHA-256 (first 16 bytes) and acceptance
 * time in a fixed table of OCB_DEDUP_SLOTS entries (4-way buckets): memory
 * is bounded whatever the load.  At the cap, a new body takes the place of
 * the oldest one in its bucket, so a re-push of an evicted body is published
 * again: the table may forget a duplicate (a second copy on MQTT), never
 * drop a message.  Only accepted pushes are recorded, so a push answered 503
 * is never suppressed on its retry.
 *
 * With coordination.redis_url the window is also shared between replicas
 * (http_rx.c asks Redis through coord.h, keyed by dedup_digest()); this
 * table stays the first check and the fallback while Redis is unreachable.
 *
 * Thread-safe: yes (one mutex around a table lookup).
 */
#ifndef OCB_DEDUP_H
#define OCB_DEDUP_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/err.h"

#define OCB_DEDUP_SLOTS      65536
#define OCB_DEDUP_DIGEST_HEX 33 /* dedup_digest()'s hex form, with the NUL */

struct ocb_dedup;

enum ocb_err dedup_new(unsigned window_s, struct ocb_dedup **out);
/* True when body[0..len) was recorded for app within the window. body may be NULL when len is 0. */
bool dedup_seen(struct ocb_dedup *d, const char *app, const void *body, size_t len);
/* Remember body[0..len) for app as accepted now. */
void dedup_record(struct ocb_dedup *d, const char *app, const void *body, size_t len);
/*
 * Pure: the digest body[0..len) is remembered under for app (the first 16
 * bytes of SHA-256 over app, a NUL and the body), as lowercase hex into hex.
 * The shared window (coord_dedup_seen()) keys on it.  false when OpenSSL
 * failed (hex is then "").
 */
bool dedup_digest(const char *app, const void *body, size_t len, char hex[OCB_DEDUP_DIGEST_HEX]);
/* NULL is a no-op. */
void dedup_free(struct ocb_dedup *d);

#endif
