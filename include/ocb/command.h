/*
 * command.h: the pure half of the command path (docs/design.md sections 2 and 4).
 *
 * MQTT side in: a command topic and payload become a validated request
 * (command_topic_parse, command_parse).  Platform side out: the REST bodies
 * (command_create_body, command_cancel_all_body) and, back on MQTT, the
 * commandResponse payload (command_response_format).  Bridge-side error codes
 * are words (INVALID_PAYLOAD, QUEUE_FULL, ...), named by command_code_name().
 *
 * No I/O, no locks, no global state: thread-safe, callable from paho's
 * callback thread (QUEUE_FULL answers) and from the command worker.
 * cJSON trees never leave command.c; everything crossing the header is text.
 */
#ifndef OCB_COMMAND_H
#define OCB_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "ocb/err.h"

/* Longest appId / deviceId topic level accepted (the platform's are 28 and 36). */
#define OCB_COMMAND_ID_MAX 128
/* Longest correlationId echoed back, as JSON text. */
#define OCB_COMMAND_CORRELATION_MAX 256

enum ocb_command_kind {
    OCB_COMMAND_CREATE = 0, /* .../command */
    OCB_COMMAND_CANCEL,     /* .../commandCancel {"commandId"} */
    OCB_COMMAND_CANCEL_ALL, /* .../commandCancel {"all":true} */
};

/* Bridge-side outcome codes; the name is what users see in error.code. */
enum ocb_command_code {
    OCB_CMD_OK = 0,
    OCB_CMD_INVALID_PAYLOAD,
    OCB_CMD_PAYLOAD_TOO_LARGE,
    OCB_CMD_INVALID_TOPIC,
    OCB_CMD_UNKNOWN_APP,
    OCB_CMD_COMMANDS_DISABLED, /* the app has no secret: push-only */
    OCB_CMD_RETAINED_COMMAND_IGNORED,
    OCB_CMD_QUEUE_FULL,
    OCB_CMD_EXPIRED_IN_QUEUE,
    OCB_CMD_PLATFORM_UNREACHABLE,
    OCB_CMD_INVALID_REPLY, /* the platform answered 2xx with something unusable */
    OCB_CMD_SHUTTING_DOWN,
    OCB_CMD_INTERNAL,              /* out of memory and the like */
    OCB_CMD_OUTCOME_UNKNOWN,       /* a create went out unanswered and could not be reconciled */
    OCB_CMD_UNKNOWN_OPERATION,     /* api: "op" names no operation (api.h) */
    OCB_CMD_OPERATION_NOT_ALLOWED, /* api: the op is not in the app's apps[].api */
};

/* "INVALID_PAYLOAD", ...; "OK" for OCB_CMD_OK.  Never NULL. */
const char *command_code_name(enum ocb_command_code code);

/* Where a command arrived: <prefix>/<appId>/<deviceId>/command|commandCancel. */
struct ocb_command_target {
    bool cancel; /* commandCancel topic */
    char app_id[OCB_COMMAND_ID_MAX + 1];
    char device_id[OCB_COMMAND_ID_MAX + 1];
};

/*
 * Split topic.  OCB_ERR_INVALID when it is not <prefix>/<a>/<d>/command or
 * .../commandCancel with non-empty levels; *out is zeroed first.
 * OCB_ERR_TOO_BIG when a level is over OCB_COMMAND_ID_MAX.
 */
enum ocb_err command_topic_parse(const char *prefix, const char *topic,
                                 struct ocb_command_target *out);

/*
 * A validated request.  Strings are owned by the struct (free with
 * command_req_cleanup); JSON-valued fields hold compact JSON text.
 */
struct ocb_command_req {
    enum ocb_command_kind kind;
    char *correlation_id;  /* JSON text of correlationId, or NULL when absent */
    char *service_id;      /* CREATE */
    char *method;          /* CREATE */
    char *paras;           /* CREATE: JSON object text */
    long long expire_time; /* CREATE: seconds, -1 = absent (platform default 48 h) */
    int max_retransmit;    /* CREATE: 0..3, -1 = absent */
    char *command_id;      /* CANCEL */
};

/*
 * Validate an MQTT payload arriving on a command (cancel = false) or
 * commandCancel (cancel = true) topic.  Returns OCB_CMD_OK and fills *out,
 * or an error code with a one-line reason in why.  Even on error, *out
 * carries correlation_id when the payload had a usable one, so the answer can
 * echo it; call command_req_cleanup() in both cases.
 */
enum ocb_command_code command_parse(bool cancel, const void *payload, size_t len, size_t max_bytes,
                                    struct ocb_command_req *out, char *why, size_t whylen);

void command_req_cleanup(struct ocb_command_req *req);

/*
 * "<public_url>/push/<appId>[/<pushToken>]" into out (cap bytes).
 * OCB_ERR_TOO_BIG when it does not fit.  A trailing '/' on public_url is dropped.
 */
enum ocb_err command_callback_url(const char *public_url, const char *app_id,
                                  const char *push_token, char *out, size_t cap);

/* Percent-encode s for one URL path segment or query value into out. */
enum ocb_err command_url_escape(const char *s, char *out, size_t cap);

/* The deviceCommands create body; *out is a new string the caller frees. */
enum ocb_err command_create_body(const struct ocb_command_req *req, const char *device_id,
                                 const char *callback_url, char **out);

/* The deviceCommandCancelTasks body {"deviceId":...}; caller frees *out. */
enum ocb_err command_cancel_all_body(const char *device_id, char **out);

/* What happened to a command, for the commandResponse payload. */
struct ocb_command_outcome {
    const char *correlation_id; /* JSON text or NULL (rendered as null) */
    bool ok;
    long http_status; /* 0 = no HTTP answer (rendered as null) */
    /* ok: the platform's reply body (a JSON object) */
    const char *platform_body;
    size_t platform_len;
    bool reconciled; /* ok: adopted after a lost answer ("reconciled":true) */
    /* !ok */
    const char *code;   /* platform error code ("1010009") or a bridge word */
    const char *desc;   /* one line */
    bool from_platform; /* error.source = "platform" or "bridge" */
    bool retryable;
    /* API answers (api.h): "op" is added, the platform body may be empty
     * (rendered as "platform":null) and nothing is lifted from it.  NULL for
     * commands; "" renders "op":null (a request without a known op). */
    const char *op;
};

/*
 * Render the commandResponse (or, with o->op set, apiResponse) JSON.  For ok
 * outcomes of commands commandId (or taskId for
 * cancel tasks) and status are lifted from the platform body (for a
 * reconciled create, the command resource found by the query); a body that is
 * not a JSON object gives OCB_ERR_PROTOCOL (the caller answers
 * INVALID_REPLY).  *out is a new NUL-terminated string the caller frees.
 */
enum ocb_err command_response_format(const struct ocb_command_outcome *o, char **out, size_t *len);

/*
 * commandId of a create reply body (a JSON object with a string commandId)
 * into out.  OCB_ERR_NOT_FOUND when absent, OCB_ERR_TOO_BIG when over cap.
 */
enum ocb_err command_reply_command_id(const char *body, size_t len, char *out, size_t cap);

/*
 * The commandId and resultCode of a command status callback body, for
 * forwarding it to a requester; resultcode may be NULL.
 */
enum ocb_err command_status_parse(const char *body, size_t len, char *command_id, size_t idcap,
                                  char *resultcode, size_t rccap);

/* True for the statuses after which the platform sends nothing more. */
bool command_status_is_final(const char *resultcode);

#endif
