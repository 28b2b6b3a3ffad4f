/*
 * rdk.h: the part of librdkafka's C API that this binding calls, declared
 * by us instead of including librdkafka's 10,000-line rdkafka.h.
 *
 * Only what rdk.go uses is here: the opaque handles, the structs whose
 * fields it reads or fills (complete, because librdkafka indexes arrays of
 * them), the enum values and macros it uses (with their values spelled
 * out), and the functions' prototypes. Every name is librdkafka's, so cgo
 * code reads the same as against the real header.
 *
 * These declarations must agree with the librdkafka that
 * confluent-kafka-go (go.mod) bundles and links. TestHeaderMatchesLibrdkafka
 * (header_test.go) compiles them against the rdkafka.h inside that module
 * and fails on any difference: struct sizes, field offsets, sizes and types,
 * enum and macro values, prototypes. Add a declaration here only together
 * with its use.
 *
 * With RDK_CHECK_PROTOTYPES defined, only the prototypes are declared: the
 * check includes librdkafka's header first and then these, so that the
 * compiler itself rejects a prototype that differs from librdkafka's.
 */
#ifndef RDK_H
#define RDK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef RDK_CHECK_PROTOTYPES

/* Opaque handles: only pointers to them are used. */
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_op_s rd_kafka_event_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;

/*
 * Error codes. The binding passes codes on to confluent-kafka-go's
 * kafka.ErrorCode, which names them all; C code needs only these two. The
 * negative value makes the enum an int, as librdkafka's is.
 */
typedef enum {
	RD_KAFKA_RESP_ERR__FATAL = -150,
	RD_KAFKA_RESP_ERR_NO_ERROR = 0,
} rd_kafka_resp_err_t;

typedef enum rd_kafka_type_t {
	RD_KAFKA_PRODUCER = 0,
} rd_kafka_type_t;

typedef enum {
	RD_KAFKA_CONF_OK = 0,
} rd_kafka_conf_res_t;

/* Kinds of the (kind, value) pairs rd_kafka_produceva takes. */
typedef enum rd_kafka_vtype_t {
	RD_KAFKA_VTYPE_RKT = 2,
	RD_KAFKA_VTYPE_PARTITION = 3,
	RD_KAFKA_VTYPE_VALUE = 4,
	RD_KAFKA_VTYPE_KEY = 5,
	RD_KAFKA_VTYPE_OPAQUE = 6,
	RD_KAFKA_VTYPE_MSGFLAGS = 7,
	RD_KAFKA_VTYPE_TIMESTAMP = 8,
	RD_KAFKA_VTYPE_HEADER = 9,
} rd_kafka_vtype_t;

/*
 * One (kind, value) pair for rd_kafka_produceva. The union is padded to 64
 * bytes by librdkafka; _pad keeps the size, which librdkafka uses to step
 * through the array. Members the binding does not set are left out (a
 * union's members all start at 0).
 */
typedef struct rd_kafka_vu_s {
	rd_kafka_vtype_t vtype;
	union {
		rd_kafka_topic_t *rkt;
		int i;
		int32_t i32;
		int64_t i64;
		struct {
			void *ptr;
			size_t size;
		} mem;
		struct {
			const char *name;
			const void *val;
			ssize_t size;
		} header;
		void *ptr;
		char _pad[64];
	} u;
} rd_kafka_vu_t;

/* A delivery report's message; _private is the opaque given at produce. */
typedef struct rd_kafka_message_s {
	rd_kafka_resp_err_t err;
	rd_kafka_topic_t *rkt;
	int32_t partition;
	void *payload;
	size_t len;
	void *key;
	size_t key_len;
	int64_t offset;
	void *_private;
} rd_kafka_message_t;

/* Metadata, as rd_kafka_metadata returns it (arrays of these structs). */
typedef struct rd_kafka_metadata_broker {
	int32_t id;
	char *host;
	int port;
} rd_kafka_metadata_broker_t;

typedef struct rd_kafka_metadata_topic {
	char *topic;
	int partition_cnt;
	struct rd_kafka_metadata_partition *partitions; /* not read */
	rd_kafka_resp_err_t err;
} rd_kafka_metadata_topic_t;

typedef struct rd_kafka_metadata {
	int broker_cnt;
	struct rd_kafka_metadata_broker *brokers;
	int topic_cnt;
	struct rd_kafka_metadata_topic *topics;
	int32_t orig_broker_id;
	char *orig_broker_name;
} rd_kafka_metadata_t;

typedef int rd_kafka_event_type_t;

#define RD_KAFKA_EVENT_DR 0x1
#define RD_KAFKA_EVENT_LOG 0x4
#define RD_KAFKA_EVENT_ERROR 0x8

#define RD_KAFKA_PARTITION_UA ((int32_t)-1)
#define RD_KAFKA_MSG_F_COPY 0x2

#define RD_KAFKA_PURGE_F_QUEUE 0x1
#define RD_KAFKA_PURGE_F_INFLIGHT 0x2
#define RD_KAFKA_PURGE_F_NON_BLOCKING 0x4

#endif /* RDK_CHECK_PROTOTYPES */

/* Configuration and the handle. */
rd_kafka_conf_t *rd_kafka_conf_new(void);
rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                                      char *errstr, size_t errstr_size);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int events);
rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_last_error(void);
rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
rd_kafka_resp_err_t rd_kafka_test_fatal_error(rd_kafka_t *rk, rd_kafka_resp_err_t err, const char *reason);
rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags);

/* Topics. */
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf);
const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);

/* Producing. */
rd_kafka_error_t *rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt);
rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);
int rd_kafka_error_is_fatal(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);

/* Queues and events: delivery reports, errors and logs. */
rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);
rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms);
void rd_kafka_queue_yield(rd_kafka_queue_t *rkqu);
void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
rd_kafka_event_type_t rd_kafka_event_type(const rd_kafka_event_t *rkev);
void rd_kafka_event_destroy(rd_kafka_event_t *rkev);
const rd_kafka_message_t *rd_kafka_event_message_next(rd_kafka_event_t *rkev);
const char *rd_kafka_message_produce_errstr(const rd_kafka_message_t *rkmessage);
rd_kafka_resp_err_t rd_kafka_event_error(rd_kafka_event_t *rkev);
const char *rd_kafka_event_error_string(rd_kafka_event_t *rkev);
int rd_kafka_event_error_is_fatal(rd_kafka_event_t *rkev);
int rd_kafka_event_log(rd_kafka_event_t *rkev, const char **fac, const char **str, int *level);

/* Metadata. */
rd_kafka_resp_err_t rd_kafka_metadata(rd_kafka_t *rk, int all_topics, rd_kafka_topic_t *only_rkt,
                                      const struct rd_kafka_metadata **metadatap, int timeout_ms);
void rd_kafka_metadata_destroy(const struct rd_kafka_metadata *metadata);
int32_t rd_kafka_controllerid(rd_kafka_t *rk, int timeout_ms);

#endif /* RDK_H */
