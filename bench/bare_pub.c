/*
 * bare_pub.c: the ceiling for bench/push — a bare paho MQTTAsync QoS 1
 * publisher with a fixed window of publishes awaiting their PUBACK, the same
 * shape of work the bridge does for each push, minus HTTP and JSON.  Each
 * message is the one the bridge publishes: MQTT 5 with the same properties
 * (content type, payload format indicator, the notifyType and ocbRequestId
 * user properties), so the ratio measures the bridge and not the protocol.
 *
 *   bench_bare_pub URL TOPIC_PREFIX COUNT WINDOW PAYLOAD_FILE
 *
 * Prints "bare_pub: N msgs in S s = R msg/s".
 */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long acked, failed;
static int connected = -1;

static void on_connect(void *ctx, MQTTAsync_successData5 *r)
{
    (void)ctx;
    (void)r;
    pthread_mutex_lock(&lock);
    connected = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)ctx;
    (void)r;
    pthread_mutex_lock(&lock);
    connected = 0;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_ack(void *ctx, MQTTAsync_successData5 *r)
{
    (void)ctx;
    (void)r;
    pthread_mutex_lock(&lock);
    acked++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_nack(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)ctx;
    (void)r;
    pthread_mutex_lock(&lock);
    failed++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s URL TOPIC_PREFIX COUNT WINDOW PAYLOAD_FILE\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[3], NULL, 10), window = strtol(argv[4], NULL, 10);
    if (count <= 0 || window <= 0 || window > 65535)
        return 2;
    FILE *f = fopen(argv[5], "rb");
    if (!f)
        return 2;
    char payload[65536];
    size_t plen = fread(payload, 1, sizeof(payload), f);
    fclose(f);

    MQTTAsync client;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
    if (MQTTAsync_createWithOptions(&client, argv[1], "bench-bare-pub", MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &co) != MQTTASYNC_SUCCESS)
        return 1;
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
    opts.cleanstart = 1;
    opts.keepAliveInterval = 30;
    opts.maxInflight = (int)window + 1;
    opts.onSuccess5 = on_connect;
    opts.onFailure5 = on_connect_fail;
    if (MQTTAsync_connect(client, &opts) != MQTTASYNC_SUCCESS)
        return 1;
    pthread_mutex_lock(&lock);
    while (connected < 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    if (!connected) {
        fprintf(stderr, "bare_pub: cannot connect to %s\n", argv[1]);
        return 1;
    }

    MQTTProperties shared = MQTTProperties_initializer;
    MQTTProperty ct = {.identifier = MQTTPROPERTY_CODE_CONTENT_TYPE};
    ct.value.data.data = "application/json";
    ct.value.data.len = 16;
    MQTTProperties_add(&shared, &ct);
    MQTTProperty pfi = {.identifier = MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR};
    pfi.value.byte = 1;
    MQTTProperties_add(&shared, &pfi);
    MQTTProperty nt = {.identifier = MQTTPROPERTY_CODE_USER_PROPERTY};
    nt.value.data.data = "notifyType";
    nt.value.data.len = 10;
    nt.value.value.data = "deviceDataChanged";
    nt.value.value.len = 17;
    MQTTProperties_add(&shared, &nt);

    double start = now();
    for (long i = 0; i < count; i++) {
        pthread_mutex_lock(&lock);
        while (i - acked - failed >= window)
            pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
        char topic[256];
        snprintf(topic, sizeof(topic), "%s/%04ld/deviceDataChanged", argv[2], i % 1000);
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess5 = on_ack;
        ro.onFailure5 = on_nack;
        MQTTAsync_message m = MQTTAsync_message_initializer;
        char rid[17];
        m.payload = payload;
        m.payloadlen = (int)plen;
        m.qos = 1;
        /* The shared properties, then this message's request id, as the bridge adds them. */
        m.properties = MQTTProperties_copy(&shared);
        snprintf(rid, sizeof(rid), "%016lx", (unsigned long)i);
        MQTTProperty id = {.identifier = MQTTPROPERTY_CODE_USER_PROPERTY};
        id.value.data.data = "ocbRequestId";
        id.value.data.len = 12;
        id.value.value.data = rid;
        id.value.value.len = 16;
        MQTTProperties_add(&m.properties, &id);
        if (MQTTAsync_sendMessage(client, topic, &m, &ro) != MQTTASYNC_SUCCESS) {
            pthread_mutex_lock(&lock);
            failed++;
            pthread_mutex_unlock(&lock);
        }
        MQTTProperties_free(&m.properties);
    }
    pthread_mutex_lock(&lock);
    while (acked + failed < count)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    double secs = now() - start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("bare_pub: %ld msgs in %.2f s = %.0f msg/s (%ld failed), cpu %.1f us/msg\n", acked, secs,
           (double)acked / secs, failed, cpu * 1e6 / (double)(acked ? acked : 1));
    MQTTProperties_free(&shared);
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnect(client, &d);
    MQTTAsync_destroy(&client);
    return failed ? 1 : 0;
}
