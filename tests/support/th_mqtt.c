/*
 * th_mqtt.c: an MQTT client for tests (paho MQTTClient, synchronous API with
 * the message callback on paho's thread) that records every message with its
 * exact payload bytes, QoS, retain flag and MQTT 5 properties.
 */
#include "harness.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <MQTTClient.h>

#define MAX_MESSAGES 20000

struct th_mqtt {
    MQTTClient client;
    int version;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct th_msg **msgs;
    size_t n, cap;
};

static char *dup_len(const void *data, size_t len)
{
    char *s = malloc(len + 1);

    if (s != NULL) {
        if (len > 0)
            memcpy(s, data, len);
        s[len] = '\0';
    }
    return s;
}

static void msg_free(struct th_msg *m)
{
    if (m == NULL)
        return;
    free(m->topic);
    free(m->payload);
    free(m->content_type);
    free(m->response_topic);
    free(m->correlation);
    for (size_t i = 0; i < m->n_user; i++) {
        free(m->user_key[i]);
        free(m->user_val[i]);
    }
    free(m);
}

static int on_arrived(void *ctx, char *topic, int topic_len, MQTTClient_message *pm)
{
    struct th_mqtt *c = ctx;
    struct th_msg *m = calloc(1, sizeof(*m));

    if (m == NULL)
        goto out;
    m->topic = topic_len > 0 ? dup_len(topic, (size_t)topic_len) : dup_len(topic, strlen(topic));
    m->len = (size_t)pm->payloadlen;
    m->payload = (unsigned char *)dup_len(pm->payload, m->len);
    m->qos = pm->qos;
    m->retained = pm->retained != 0;
    m->payload_format = -1;
    for (int i = 0; i < pm->properties.count; i++) {
        MQTTProperty *p = &pm->properties.array[i];

        switch (p->identifier) {
        case MQTTPROPERTY_CODE_CONTENT_TYPE:
            m->content_type = dup_len(p->value.data.data, (size_t)p->value.data.len);
            break;
        case MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR:
            m->payload_format = p->value.byte;
            break;
        case MQTTPROPERTY_CODE_RESPONSE_TOPIC:
            m->response_topic = dup_len(p->value.data.data, (size_t)p->value.data.len);
            break;
        case MQTTPROPERTY_CODE_CORRELATION_DATA:
            m->correlation =
                (unsigned char *)dup_len(p->value.data.data, (size_t)p->value.data.len);
            m->correlation_len = (size_t)p->value.data.len;
            break;
        case MQTTPROPERTY_CODE_USER_PROPERTY:
            if (m->n_user < TH_MAX_USER_PROPS) {
                m->user_key[m->n_user] = dup_len(p->value.data.data, (size_t)p->value.data.len);
                m->user_val[m->n_user] = dup_len(p->value.value.data, (size_t)p->value.value.len);
                m->n_user++;
            }
            break;
        default:
            break;
        }
    }
    pthread_mutex_lock(&c->mu);
    if (c->n < MAX_MESSAGES) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 64;
            struct th_msg **nm = realloc(c->msgs, cap * sizeof(*nm));
            if (nm != NULL) {
                c->msgs = nm;
                c->cap = cap;
            }
        }
        if (c->n < c->cap) {
            c->msgs[c->n++] = m;
            m = NULL;
        }
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    msg_free(m);
out:
    MQTTClient_freeMessage(&pm);
    MQTTClient_free(topic);
    return 1;
}

static void on_lost(void *ctx, char *cause)
{
    (void)ctx;
    (void)cause;
}

struct th_mqtt *th_mqtt_connect(const char *url, const char *client_id, int version)
{
    return th_mqtt_connect_auth(url, client_id, version, NULL, NULL);
}

struct th_mqtt *th_mqtt_connect_auth(const char *url, const char *client_id, int version,
                                     const char *username, const char *password)
{
    MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
    struct th_mqtt *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return NULL;
    c->version = version;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    co.MQTTVersion = version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    rc = MQTTClient_createWithOptions(&c->client, url, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                      &co);
    if (rc != MQTTCLIENT_SUCCESS)
        goto fail;
    MQTTClient_setCallbacks(c->client, c, on_lost, on_arrived, NULL);
    if (version == 5) {
        MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer5;
        MQTTResponse r;

        o.cleanstart = 1;
        o.username = username;
        o.password = password;
        o.keepAliveInterval = 20;
        o.connectTimeout = 5;
        r = MQTTClient_connect5(c->client, &o, NULL, NULL);
        rc = r.reasonCode;
        MQTTResponse_free(r);
    } else {
        MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;

        o.cleansession = 1;
        o.username = username;
        o.password = password;
        o.keepAliveInterval = 20;
        o.connectTimeout = 5;
        o.MQTTVersion = MQTTVERSION_3_1_1;
        rc = MQTTClient_connect(c->client, &o);
    }
    if (rc != MQTTCLIENT_SUCCESS)
        goto fail;
    return c;
fail:
    th_mqtt_free(c);
    return NULL;
}

bool th_mqtt_subscribe(struct th_mqtt *c, const char *filter, int qos)
{
    if (c->version == 5) {
        MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
        MQTTResponse r = MQTTClient_subscribe5(c->client, filter, qos, &so, NULL);
        bool ok = (int)r.reasonCode == qos;

        MQTTResponse_free(r);
        return ok;
    }
    return MQTTClient_subscribe(c->client, filter, qos) == MQTTCLIENT_SUCCESS;
}

bool th_mqtt_publish(struct th_mqtt *c, const char *topic, const void *payload, size_t len, int qos,
                     bool retained, const char *response_topic, const void *correlation,
                     size_t correlation_len)
{
    MQTTClient_message m = MQTTClient_message_initializer;
    MQTTClient_deliveryToken tok = 0;
    int rc;

    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = qos;
    m.retained = retained;
    if (c->version == 5) {
        MQTTResponse r;

        if (response_topic != NULL) {
            MQTTProperty p;
            memset(&p, 0, sizeof(p));
            p.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC;
            p.value.data.data = (char *)response_topic;
            p.value.data.len = (int)strlen(response_topic);
            MQTTProperties_add(&m.properties, &p);
        }
        if (correlation != NULL) {
            MQTTProperty p;
            memset(&p, 0, sizeof(p));
            p.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
            p.value.data.data = (char *)correlation;
            p.value.data.len = (int)correlation_len;
            MQTTProperties_add(&m.properties, &p);
        }
        r = MQTTClient_publishMessage5(c->client, topic, &m, &tok);
        rc = r.reasonCode;
        MQTTResponse_free(r);
        MQTTProperties_free(&m.properties);
    } else {
        rc = MQTTClient_publishMessage(c->client, topic, &m, &tok);
    }
    if (rc != MQTTCLIENT_SUCCESS)
        return false;
    return qos == 0 || MQTTClient_waitForCompletion(c->client, tok, 10000) == MQTTCLIENT_SUCCESS;
}

size_t th_mqtt_count(struct th_mqtt *c)
{
    size_t n;

    pthread_mutex_lock(&c->mu);
    n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool th_mqtt_wait(struct th_mqtt *c, size_t n, int timeout_ms)
{
    struct timespec ts;
    bool ok;

    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (c->n < n) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            break;
    }
    ok = c->n >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

const struct th_msg *th_mqtt_msg(struct th_mqtt *c, size_t i)
{
    const struct th_msg *m = NULL;

    pthread_mutex_lock(&c->mu);
    if (i < c->n)
        m = c->msgs[i];
    pthread_mutex_unlock(&c->mu);
    return m;
}

const struct th_msg *th_mqtt_wait_topic(struct th_mqtt *c, const char *topic, int timeout_ms)
{
    struct timespec ts;
    const struct th_msg *found = NULL;
    size_t seen = 0;

    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        for (; seen < c->n && found == NULL; seen++) {
            if (strcmp(c->msgs[seen]->topic, topic) == 0)
                found = c->msgs[seen];
        }
        if (found != NULL || pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

void th_mqtt_clear(struct th_mqtt *c)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        msg_free(c->msgs[i]);
    c->n = 0;
    pthread_mutex_unlock(&c->mu);
}

void th_mqtt_free(struct th_mqtt *c)
{
    if (c == NULL)
        return;
    if (c->client != NULL) {
        if (MQTTClient_isConnected(c->client)) {
            if (c->version == 5)
                MQTTClient_disconnect5(c->client, 1000, MQTTREASONCODE_SUCCESS, NULL);
            else
                MQTTClient_disconnect(c->client, 1000);
        }
        MQTTClient_destroy(&c->client);
    }
    th_mqtt_clear(c);
    free(c->msgs);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *th_msg_user_prop(const struct th_msg *m, const char *key)
{
    for (size_t i = 0; i < m->n_user; i++) {
        if (strcmp(m->user_key[i], key) == 0)
            return m->user_val[i];
    }
    return NULL;
}
