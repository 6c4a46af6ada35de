/*
 * th_fakebroker.h: a scripted MQTT broker for tests, in-process.
 *
 * Real brokers differ in what they refuse and when they hang up: a CONNACK
 * that cuts the session expiry, a SUBACK that refuses a filter, a server-sent
 * MQTT 5 DISCONNECT, a connection that dies in the middle of a PUBLISH, a
 * PUBACK that never comes.  Mosquitto can show none of these on demand, so
 * this broker speaks just enough MQTT 3.1.1 and 5 to play each one
 * deterministically: one client at a time (the bridge), on a 127.0.0.1 port of
 * its own, served by one thread.  It remembers a session (the subscribed
 * filters) per client id while clean start is off, like a persistent broker,
 * and records what the client did as text lines for the test to wait on:
 *
 *   CONNECT v5 id=<client id> clean=0|1 keepalive=<s>
 *   SUBSCRIBE <filter>            (one line per filter)
 *   UNSUBSCRIBE <filter>
 *   PUBLISH <topic> qos=<n> <payload>
 *   DISCONNECT                    (the client's own)
 *   CLOSED                        (the connection is gone, for whatever reason)
 *
 * Thread-safe: every function may be called from the test's thread while the
 * broker thread serves the client; a script change applies to the packets
 * that arrive after it.
 */
#ifndef OCB_TH_FAKEBROKER_H
#define OCB_TH_FAKEBROKER_H

#include <stdbool.h>
#include <stddef.h>

#define TH_FB_MAX_CODES 16

/* What the broker answers.  th_fb_script_init() gives a plain, accepting broker. */
struct th_fb_script {
    int connack_rc;       /* CONNACK return / reason code (0: accepted) */
    bool refuse_v5;       /* answer an MQTT 5 CONNECT as a 3.1.1-only broker does:
                             a 3.1.1 CONNACK "unacceptable protocol version", then close */
    long session_expiry;  /* MQTT 5 CONNACK Session Expiry Interval; -1: not sent */
    int shared_sub_avail; /* MQTT 5 CONNACK Shared Subscription Available; -1: not sent */
    int retain_avail;     /* MQTT 5 CONNACK Retain Available; -1: not sent */
    unsigned char suback[TH_FB_MAX_CODES]; /* SUBACK code for the i-th filter of a SUBSCRIBE */
    size_t n_suback;                       /* filters past n_suback are granted QoS 1 */
    bool hold_pubacks;                     /* queue PUBACKs until th_fb_release_pubacks() */
    bool mute;                             /* read everything, answer nothing (not even PINGREQ) */
};

struct th_fb;

void th_fb_script_init(struct th_fb_script *s);

/* Listen on a free 127.0.0.1 port and serve in a thread.  Aborts the test on failure. */
struct th_fb *th_fb_start(const struct th_fb_script *script);
/* "tcp://127.0.0.1:<port>" */
const char *th_fb_url(const struct th_fb *fb);
void th_fb_set_script(struct th_fb *fb, const struct th_fb_script *script);

/* Send an MQTT 5 DISCONNECT with this reason code, then close the connection. */
void th_fb_disconnect(struct th_fb *fb, unsigned reason);
/* Close the connection without a word. */
void th_fb_drop(struct th_fb *fb);
/* Send the first half of a PUBLISH to the client, then close the connection. */
void th_fb_drop_mid_publish(struct th_fb *fb, const char *topic);
/* Deliver a message to the client (QoS 1, the packet id chosen by the broker). */
void th_fb_publish(struct th_fb *fb, const char *topic, const void *payload, size_t len,
                   bool retained);
/* Send the PUBACKs held back so far; returns how many. */
size_t th_fb_release_pubacks(struct th_fb *fb);
size_t th_fb_held_pubacks(struct th_fb *fb);

/* Whether a client is connected now (CONNACK accepted and not closed). */
bool th_fb_connected(struct th_fb *fb);
/* How many CONNECT packets arrived so far. */
size_t th_fb_connects(struct th_fb *fb);
/* th_now_ms() of the i-th CONNECT (0-based) and of the i-th close; -1 when none yet. */
long long th_fb_connect_ms(struct th_fb *fb, size_t i);
long long th_fb_close_ms(struct th_fb *fb, size_t i);
/* Poll until at least n CONNECT packets arrived. */
bool th_fb_wait_connects(struct th_fb *fb, size_t n, int timeout_ms);

/* Whether the event log contains line (a whole line, e.g. "SUBSCRIBE a/+/b"); the wait
 * form polls.  Count counts the lines equal to line. */
bool th_fb_saw(struct th_fb *fb, const char *line);
bool th_fb_wait_saw(struct th_fb *fb, const char *line, int timeout_ms);
size_t th_fb_count(struct th_fb *fb, const char *line);
/* The whole event log (NUL-terminated copy; caller frees). */
char *th_fb_events(struct th_fb *fb);

/* The filters in client_id's session now (as the broker would deliver to), "\n"-separated
 * and sorted, into out; "" when there is no session. */
void th_fb_session(struct th_fb *fb, const char *client_id, char *out, size_t cap);
/* Store a session for client_id as if it had subscribed these filters earlier. */
void th_fb_seed_session(struct th_fb *fb, const char *client_id, const char *const *filters,
                        size_t n);

/* Stop the thread, close everything, free.  NULL is a no-op. */
void th_fb_free(struct th_fb *fb);

#endif
