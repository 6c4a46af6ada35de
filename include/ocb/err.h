/*
 * err.h: the one error type every fallible ocbridge function returns.
 *
 * Library codes (MHD, paho, libcurl, cJSON NULLs, OpenSSL) are translated to
 * these at the module edge, once.  Thread-safe: yes (pure).
 */
#ifndef OCB_ERR_H
#define OCB_ERR_H

enum ocb_err {
    OCB_OK = 0,
    OCB_ERR_NOMEM,         /* allocation failed */
    OCB_ERR_INVALID,       /* bad input or bad configuration */
    OCB_ERR_TOO_BIG,       /* input over its configured cap */
    OCB_ERR_NOT_FOUND,     /* unknown app, path, id */
    OCB_ERR_IO,            /* a system call or socket failed */
    OCB_ERR_TLS,           /* TLS setup or handshake failed */
    OCB_ERR_TIMEOUT,       /* a deadline passed */
    OCB_ERR_FULL,          /* a bounded queue or window is full */
    OCB_ERR_NOT_CONNECTED, /* the broker or platform is unreachable */
    OCB_ERR_PROTOCOL,      /* the peer answered something we cannot use */
    OCB_ERR_STOPPED,       /* the component is shutting down */
};

/* A static, one-line description of rc.  Never NULL. */
const char *ocb_strerror(enum ocb_err rc);

#endif
