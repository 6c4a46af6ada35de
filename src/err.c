/*
 * err.c: descriptions for enum ocb_err.  The table is indexed by the enum; a
 * code added without a description reads "unknown error", which the unit
 * test catches.
 */
#include "ocb/err.h"

#include <stddef.h>

static const char *const descriptions[] = {
    [OCB_OK] = "success",
    [OCB_ERR_NOMEM] = "out of memory",
    [OCB_ERR_INVALID] = "invalid input",
    [OCB_ERR_TOO_BIG] = "input too large",
    [OCB_ERR_NOT_FOUND] = "not found",
    [OCB_ERR_IO] = "input/output error",
    [OCB_ERR_TLS] = "TLS error",
    [OCB_ERR_TIMEOUT] = "timed out",
    [OCB_ERR_FULL] = "queue full",
    [OCB_ERR_NOT_CONNECTED] = "not connected",
    [OCB_ERR_PROTOCOL] = "protocol error",
    [OCB_ERR_STOPPED] = "stopped",
};

const char *ocb_strerror(enum ocb_err rc)
{
    if ((size_t)rc >= sizeof(descriptions) / sizeof(descriptions[0]) || !descriptions[rc])
        return "unknown error";
    return descriptions[rc];
}
