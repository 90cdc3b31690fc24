#pragma once
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

// rd_kafka_producev is variadic and does not import into Swift; this wraps the one call shape
// Vigil uses. The topic is a handle the caller keeps: named by a string instead, every message
// took the client's write lock to look it up. On success librdkafka owns `headers` (may be NULL);
// on failure the caller frees them.
static inline rd_kafka_resp_err_t vigil_rd_kafka_produce(
    rd_kafka_t *rk, rd_kafka_topic_t *topic, const void *key, size_t key_len,
    const void *value, size_t value_len, rd_kafka_headers_t *headers, void *opaque) {
    return rd_kafka_producev(rk,
                             RD_KAFKA_V_RKT(topic),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY((void *)key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_HEADERS(headers),
                             RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}
