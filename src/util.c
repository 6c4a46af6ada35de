/*
 * util.c: small helpers shared by the modules (util.h).
 */
#include "ocb/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t ocb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *ocb_memdup(const void *p, size_t n)
{
    void *d;

    if (p == NULL || n == 0)
        return NULL;
    d = malloc(n);
    if (d != NULL)
        memcpy(d, p, n);
    return d;
}

char *ocb_strdup_or_null(const char *s)
{
    return s != NULL ? ocb_memdup(s, strlen(s) + 1) : NULL;
}
