/*
 * dedup.c: the re-push table (dedup.h).
 *
 * A digest picks a bucket of WAYS slots; a slot holds the digest and the
 * monotonic time it was accepted.  Lookups compare whole digests, so a
 * bucket collision is only a slot competition, never a false match; a false
 * match would need a SHA-256 prefix collision.  The app id is hashed with
 * the body (separated by a NUL, which an app id cannot contain) so the same
 * body for two apps is two messages.
 */
#include "ocb/dedup.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ocb/util.h"

#define WAYS    4
#define BUCKETS (OCB_DEDUP_SLOTS / WAYS)
#define DIGEST  16

_Static_assert(2 * DIGEST + 1 == OCB_DEDUP_DIGEST_HEX, "hex digest size");

struct slot {
    unsigned char digest[DIGEST];
    int64_t at_ms; /* 0: empty */
};

struct ocb_dedup {
    pthread_mutex_t mu;
    int64_t window_ms;
    struct slot slots[BUCKETS][WAYS];
};

static int64_t mono_ms(void)
{
    /* +1 so that no real time is 0, the empty marker. */
    return ocb_now_ms() + 1;
}

static bool digest_of(const char *app, const void *body, size_t len, unsigned char out[DIGEST])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(c, app, strlen(app) + 1) == 1 &&
              (len == 0 || EVP_DigestUpdate(c, body, len) == 1) &&
              EVP_DigestFinal_ex(c, full, &n) == 1 && n >= DIGEST;

    EVP_MD_CTX_free(c);
    if (ok)
        memcpy(out, full, DIGEST);
    return ok;
}

static size_t bucket_of(const unsigned char d[DIGEST])
{
    uint32_t v;

    memcpy(&v, d, sizeof(v));
    return v % BUCKETS;
}

enum ocb_err dedup_new(unsigned window_s, struct ocb_dedup **out)
{
    struct ocb_dedup *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (d == NULL)
        return OCB_ERR_NOMEM;
    pthread_mutex_init(&d->mu, NULL);
    d->window_ms = (int64_t)window_s * 1000;
    *out = d;
    return OCB_OK;
}

bool dedup_seen(struct ocb_dedup *d, const char *app, const void *body, size_t len)
{
    unsigned char dg[DIGEST];
    int64_t now = mono_ms();
    bool seen = false;
    struct slot *b;

    if (!digest_of(app, body, len, dg))
        return false; /* cannot tell: publish (a duplicate at worst) */
    b = d->slots[bucket_of(dg)];
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < WAYS && !seen; i++)
        seen = b[i].at_ms != 0 && now - b[i].at_ms <= d->window_ms &&
               memcmp(b[i].digest, dg, DIGEST) == 0;
    pthread_mutex_unlock(&d->mu);
    return seen;
}

void dedup_record(struct ocb_dedup *d, const char *app, const void *body, size_t len)
{
    unsigned char dg[DIGEST];
    int64_t now = mono_ms();
    struct slot *b, *victim;

    if (!digest_of(app, body, len, dg))
        return;
    b = d->slots[bucket_of(dg)];
    pthread_mutex_lock(&d->mu);
    victim = &b[0];
    for (size_t i = 0; i < WAYS; i++) {
        if (memcmp(b[i].digest, dg, DIGEST) == 0 || b[i].at_ms == 0) {
            victim = &b[i];
            break;
        }
        if (b[i].at_ms < victim->at_ms)
            victim = &b[i];
    }
    memcpy(victim->digest, dg, DIGEST);
    victim->at_ms = now;
    pthread_mutex_unlock(&d->mu);
}

bool dedup_digest(const char *app, const void *body, size_t len, char hex[OCB_DEDUP_DIGEST_HEX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char dg[DIGEST];

    hex[0] = '\0';
    if (!digest_of(app, body, len, dg))
        return false;
    for (size_t i = 0; i < DIGEST; i++) {
        hex[2 * i] = digits[dg[i] >> 4];
        hex[2 * i + 1] = digits[dg[i] & 0xf];
    }
    hex[2 * DIGEST] = '\0';
    return true;
}

void dedup_free(struct ocb_dedup *d)
{
    if (d == NULL)
        return;
    pthread_mutex_destroy(&d->mu);
    free(d);
}
