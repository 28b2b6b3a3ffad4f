package rdk

/*
#include <stdlib.h>
#include <string.h>
#ifdef RDK_DYNAMIC
// -tags dynamic (link_dynamic.go): the system's librdkafka and its own
// header, found by pkg-config, as confluent-kafka-go does with that tag.
#include <librdkafka/rdkafka.h>
#if RD_KAFKA_VERSION < 0x020b0100
#error "kafkasink/internal/rdk: -tags dynamic needs librdkafka 2.11.1 or later (the version confluent-kafka-go v2.11.1 requires); the system's is older"
#endif
#else
// The librdkafka confluent-kafka-go bundles (and links): our declarations
// of what this file uses, checked against its header by header_test.go.
#include "rdk.h"
#endif

// One message of a batch: offsets into the batch's byte arena, so that the
// Go memory handed to C holds no Go pointers.
typedef struct {
	rd_kafka_topic_t *rkt;
	int64_t  ts;     // milliseconds since the epoch; 0: librdkafka stamps it
	uint64_t opaque;
	uint32_t key_off, key_len;
	uint32_t val_off, val_len;
	uint32_t hdr_off[4], hdr_len[4];
} rdk_msg_t;

typedef struct {
	uint64_t opaque;
	rd_kafka_topic_t *rkt;
	int32_t  err;
	int32_t  partition;
	int32_t  errstr; // index of the failure's message in the poll's errs, -1: none
} rdk_report_t;

// A poll keeps the messages of up to RDK_ERRSTRS failed reports (the
// broker's own words for why it refused them) and stops early when they are
// used up: failures are rare, and the next poll goes on from there.
#define RDK_ERRSTRS 16
#define RDK_ERRSTR_LEN 256

// A non-delivery event: an error or a log line.
typedef struct {
	int  type;   // 0: none, 1: error, 2: log
	int  code;
	int  fatal;
	int  level;
	char fac[64];
	char str[512];
} rdk_event_t;

enum { RDK_EV_NONE = 0, RDK_EV_ERROR = 1, RDK_EV_LOG = 2 };

// rdk_produce enqueues msgs[0..n) and returns how many it enqueued; when
// that is less than n, *errp says why message [return value] was refused.
static int rdk_produce(rd_kafka_t *rk, const char *buf, const rdk_msg_t *msgs, int n,
                       char **hnames, int nh, rd_kafka_resp_err_t *errp, int *fatalp) {
	rd_kafka_vu_t vu[16];
	for (int i = 0; i < n; i++) {
		const rdk_msg_t *m = &msgs[i];
		int c = 0;
		vu[c].vtype = RD_KAFKA_VTYPE_RKT;
		vu[c++].u.rkt = m->rkt;
		vu[c].vtype = RD_KAFKA_VTYPE_PARTITION;
		vu[c++].u.i32 = RD_KAFKA_PARTITION_UA;
		vu[c].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
		vu[c++].u.i = RD_KAFKA_MSG_F_COPY;
		vu[c].vtype = RD_KAFKA_VTYPE_KEY;
		vu[c].u.mem.ptr = (void *)(buf + m->key_off);
		vu[c++].u.mem.size = m->key_len;
		vu[c].vtype = RD_KAFKA_VTYPE_VALUE;
		vu[c].u.mem.ptr = (void *)(buf + m->val_off);
		vu[c++].u.mem.size = m->val_len;
		vu[c].vtype = RD_KAFKA_VTYPE_OPAQUE;
		vu[c++].u.ptr = (void *)(uintptr_t)m->opaque;
		if (m->ts) {
			vu[c].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
			vu[c++].u.i64 = m->ts;
		}
		for (int h = 0; h < nh; h++) {
			vu[c].vtype = RD_KAFKA_VTYPE_HEADER;
			vu[c].u.header.name = hnames[h];
			vu[c].u.header.val = buf + m->hdr_off[h];
			vu[c++].u.header.size = (ssize_t)m->hdr_len[h];
		}
		rd_kafka_error_t *e = rd_kafka_produceva(rk, vu, (size_t)c);
		if (e) {
			*errp = rd_kafka_error_code(e);
			*fatalp = rd_kafka_error_is_fatal(e);
			rd_kafka_error_destroy(e);
			return i;
		}
	}
	return n;
}

static void rdk_copy(char *dst, size_t size, const char *src) {
	if (!src) src = "";
	strncpy(dst, src, size - 1);
	dst[size - 1] = 0;
}

// rdk_poll writes up to max delivery reports into out and returns how many.
// It waits up to timeout_ms for the first event only. It stops early at an
// error or log event, which it returns in ev, and when errs is full. *cur
// keeps a delivery-report event that was not read to its end for the next
// call.
static int rdk_poll(rd_kafka_t *rk, rd_kafka_queue_t *q, rd_kafka_event_t **cur, int timeout_ms,
                    rdk_report_t *out, int max, char (*errs)[RDK_ERRSTR_LEN], rdk_event_t *ev) {
	int n = 0, nerr = 0;
	ev->type = RDK_EV_NONE;
	while (n < max) {
		if (!*cur) {
			rd_kafka_event_t *e = rd_kafka_queue_poll(q, n == 0 ? timeout_ms : 0);
			if (!e) break;
			switch (rd_kafka_event_type(e)) {
			case RD_KAFKA_EVENT_DR:
				*cur = e;
				break;
			case RD_KAFKA_EVENT_ERROR: {
				ev->type = RDK_EV_ERROR;
				ev->code = rd_kafka_event_error(e);
				ev->fatal = rd_kafka_event_error_is_fatal(e);
				rdk_copy(ev->str, sizeof ev->str, rd_kafka_event_error_string(e));
				if (ev->code == RD_KAFKA_RESP_ERR__FATAL) {
					// The event only says "fatal"; the cause is kept here.
					ev->code = rd_kafka_fatal_error(rk, ev->str, sizeof ev->str);
					ev->fatal = 1;
				}
				rd_kafka_event_destroy(e);
				return n;
			}
			case RD_KAFKA_EVENT_LOG: {
				const char *fac = NULL, *str = NULL;
				int level = 0;
				rd_kafka_event_log(e, &fac, &str, &level);
				ev->type = RDK_EV_LOG;
				ev->level = level;
				rdk_copy(ev->fac, sizeof ev->fac, fac);
				rdk_copy(ev->str, sizeof ev->str, str);
				rd_kafka_event_destroy(e);
				return n;
			}
			default:
				rd_kafka_event_destroy(e);
				continue;
			}
		}
		const rd_kafka_message_t *m = NULL;
		while (n < max && nerr < RDK_ERRSTRS && (m = rd_kafka_event_message_next(*cur))) {
			out[n].opaque = (uint64_t)(uintptr_t)m->_private;
			out[n].rkt = m->rkt;
			out[n].err = m->err;
			out[n].partition = m->partition;
			out[n].errstr = -1;
			if (m->err) {
				const char *es = rd_kafka_message_produce_errstr(m);
				if (es) {
					rdk_copy(errs[nerr], RDK_ERRSTR_LEN, es);
					out[n].errstr = nerr++;
				}
			}
			n++;
		}
		if (m) // out or errs is full: the rest of the event is for the next call
			return n;
		rd_kafka_event_destroy(*cur);
		*cur = NULL;
	}
	return n;
}

static rd_kafka_resp_err_t rdk_partition_count(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms, int *cnt) {
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	*cnt = 0;
	if (err) return err;
	if (md->topic_cnt > 0) {
		err = md->topics[0].err;
		*cnt = md->topics[0].partition_cnt;
	}
	rd_kafka_metadata_destroy(md);
	return err;
}
*/
import "C"

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Producer is one librdkafka producer handle.
type Producer struct {
	rk     *C.rd_kafka_t
	q      *C.rd_kafka_queue_t
	hnames **C.char // header names, C memory, len(headerNames)
	nh     int

	topicsMu sync.Mutex
	topics   map[string]*C.rd_kafka_topic_t

	cur *C.rd_kafka_event_t // Poll only: a partly read delivery-report event
}

// New creates a producer from librdkafka properties. headerNames are the
// keys of the headers every message carries, in the order
// [Batch.Add] takes their values (at most 4).
func New(conf map[string]string, headerNames []string) (*Producer, error) {
	if len(headerNames) > 4 {
		return nil, fmt.Errorf("rdk: at most 4 headers, got %d", len(headerNames))
	}
	cconf := C.rd_kafka_conf_new()
	errstr := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errstr))
	// Sorted, so that with several bad properties the error is stable.
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	set := func(k, v string) error {
		ck, cv := C.CString(k), C.CString(v)
		defer C.free(unsafe.Pointer(ck))
		defer C.free(unsafe.Pointer(cv))
		if C.rd_kafka_conf_set(cconf, ck, cv, errstr, 512) != C.RD_KAFKA_CONF_OK {
			return kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
		}
		return nil
	}
	for _, k := range keys {
		if err := set(k, conf[k]); err != nil {
			C.rd_kafka_conf_destroy(cconf)
			return nil, err
		}
	}
	// Logs go to the main queue with everything else (see Poll).
	if err := set("log.queue", "true"); err != nil {
		C.rd_kafka_conf_destroy(cconf)
		return nil, err
	}
	C.rd_kafka_conf_set_events(cconf, C.RD_KAFKA_EVENT_DR|C.RD_KAFKA_EVENT_ERROR|C.RD_KAFKA_EVENT_LOG)
	rk := C.rd_kafka_new(C.RD_KAFKA_PRODUCER, cconf, errstr, 512)
	if rk == nil {
		// On failure rd_kafka_new leaves the conf to us.
		C.rd_kafka_conf_destroy(cconf)
		return nil, kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
	}
	p := &Producer{rk: rk, q: C.rd_kafka_queue_get_main(rk), topics: map[string]*C.rd_kafka_topic_t{}, nh: len(headerNames)}
	C.rd_kafka_set_log_queue(rk, nil)
	if len(headerNames) > 0 {
		p.hnames = (**C.char)(C.malloc(C.size_t(len(headerNames)) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		names := unsafe.Slice(p.hnames, len(headerNames))
		for i, h := range headerNames {
			names[i] = C.CString(h)
		}
	}
	return p, nil
}

// Topic is a topic handle for [Batch.Add].
type Topic struct{ rkt *C.rd_kafka_topic_t }

// Topic returns the handle of topic name, created on first use. Creating
// it does not ask the brokers about the topic.
func (p *Producer) Topic(name string) (Topic, error) {
	p.topicsMu.Lock()
	defer p.topicsMu.Unlock()
	if rkt, ok := p.topics[name]; ok {
		return Topic{rkt}, nil
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	rkt := C.rd_kafka_topic_new(p.rk, cn, nil)
	if rkt == nil {
		return Topic{}, kafka.NewError(kafka.ErrorCode(C.rd_kafka_last_error()), "topic "+name, false)
	}
	p.topics[name] = rkt
	return Topic{rkt}, nil
}

// Batch collects messages for one [Producer.Produce] call. The zero value
// is ready; Reset reuses its memory.
type Batch struct {
	buf  []byte
	msgs []C.rdk_msg_t
	nhdr int // header values added to the last message
}

// Len is the number of messages added since the last Reset.
func (b *Batch) Len() int { return len(b.msgs) }

// Reset empties b, keeping its memory.
func (b *Batch) Reset() { b.buf, b.msgs = b.buf[:0], b.msgs[:0] }

// Size is the number of bytes of keys, values and header values held.
func (b *Batch) Size() int { return len(b.buf) }

// Add starts a message; Header and HeaderString then add its header
// values, in the order of New's headerNames (missing ones are empty). Key,
// value and header values are copied. ts is the message timestamp (zero:
// librdkafka stamps the produce time); opaque comes back in the message's
// [Report] and must not be 0.
func (b *Batch) Add(t Topic, key string, value []byte, ts time.Time, opaque uint64) {
	m := C.rdk_msg_t{rkt: t.rkt, opaque: C.uint64_t(opaque)}
	if !ts.IsZero() {
		m.ts = C.int64_t(ts.UnixMilli())
	}
	m.key_off, m.key_len = put(b, key)
	m.val_off, m.val_len = put(b, value)
	b.msgs = append(b.msgs, m)
	b.nhdr = 0
}

// Header adds the next header value of the last message.
func (b *Batch) Header(v []byte) { b.header(put(b, v)) }

// HeaderString adds the next header value of the last message.
func (b *Batch) HeaderString(v string) { b.header(put(b, v)) }

func (b *Batch) header(off, n C.uint32_t) {
	if b.nhdr >= len(b.msgs[len(b.msgs)-1].hdr_off) {
		panic("rdk: more header values than header names")
	}
	m := &b.msgs[len(b.msgs)-1]
	m.hdr_off[b.nhdr], m.hdr_len[b.nhdr] = off, n
	b.nhdr++
}

func put[T string | []byte](b *Batch, s T) (off, n C.uint32_t) {
	if len(b.buf)+len(s) > math.MaxUint32 {
		panic("rdk: batch larger than 4 GiB")
	}
	off, n = C.uint32_t(len(b.buf)), C.uint32_t(len(s))
	b.buf = append(b.buf, s...)
	return off, n
}

// Produce enqueues b's messages from index from on, in order, and returns
// the index of the first message it did not enqueue (b.Len() when all
// were) with librdkafka's reason: kafka.ErrQueueFull (wait for delivery
// reports, then call again from there), kafka.ErrMsgSizeTooLarge (that
// message alone), kafka.ErrFatal (the producer raised a fatal error, see
// FatalError), or an argument error. Safe for concurrent use.
func (p *Producer) Produce(b *Batch, from int) (int, error) {
	n := len(b.msgs) - from
	if n <= 0 {
		return len(b.msgs), nil
	}
	var (
		cerr  C.rd_kafka_resp_err_t
		fatal C.int
	)
	buf := unsafe.Pointer(nil)
	if len(b.buf) > 0 {
		buf = unsafe.Pointer(&b.buf[0])
	}
	done := int(C.rdk_produce(p.rk, (*C.char)(buf), &b.msgs[from], C.int(n), p.hnames, C.int(p.nh), &cerr, &fatal))
	if done == n {
		return len(b.msgs), nil
	}
	code := kafka.ErrorCode(cerr)
	if fatal != 0 || code == kafka.ErrFatal {
		// produceva reports the cause's code; callers branch on ErrFatal.
		return from + done, kafka.NewError(kafka.ErrFatal, "fatal error: "+code.String(), true)
	}
	return from + done, kafka.NewError(code, "", false)
}

// Report is the delivery report of one message.
type Report struct {
	Opaque uint64
	Err    kafka.ErrorCode // ErrNoError when delivered
	// ErrStr is why a message failed in the broker's words when it gave
	// any (Kafka's error_message, e.g. the batch size and the topic's
	// limit), else librdkafka's; empty when delivered.
	ErrStr    string
	Partition int32
	rkt       *C.rd_kafka_topic_t
}

// Topic is the name of the report's topic. It is valid until the
// producer is closed.
func (r Report) Topic() string { return C.GoString(C.rd_kafka_topic_name(r.rkt)) }

// Event is an error or a log line from librdkafka.
type Event struct {
	Log               bool        // a log line (Level, Facility, Message), else an error
	Err               kafka.Error // the error, with IsFatal for a fatal one
	Level             int         // syslog level of a log line
	Facility, Message string
}

// Poller reads a producer's events. One goroutine owns it.
type Poller struct {
	p    *Producer
	out  []C.rdk_report_t
	errs [C.RDK_ERRSTRS][C.RDK_ERRSTR_LEN]C.char // the failures' messages of the last poll
	ev   C.rdk_event_t
}

// Poller returns a poller that returns up to size reports per call.
func (p *Producer) Poller(size int) *Poller {
	return &Poller{p: p, out: make([]C.rdk_report_t, max(size, 1))}
}

// Poll waits up to timeout for events and returns the delivery reports
// that arrived (reused by the next call) and, when one came, an error or
// log event. With neither, the wait timed out or [Producer.Wake] ran.
func (pl *Poller) Poll(timeout time.Duration, reports []Report) ([]Report, *Event) {
	n := int(C.rdk_poll(pl.p.rk, pl.p.q, &pl.p.cur, C.int(timeout.Milliseconds()), &pl.out[0], C.int(len(pl.out)), &pl.errs[0], &pl.ev))
	reports = reports[:0]
	for _, r := range pl.out[:n] {
		rep := Report{Opaque: uint64(r.opaque), Err: kafka.ErrorCode(r.err), Partition: int32(r.partition), rkt: r.rkt}
		if r.errstr >= 0 {
			rep.ErrStr = C.GoString(&pl.errs[r.errstr][0])
		}
		reports = append(reports, rep)
	}
	switch pl.ev._type {
	case C.RDK_EV_ERROR:
		code := kafka.ErrorCode(pl.ev.code)
		return reports, &Event{Err: kafka.NewError(code, C.GoString(&pl.ev.str[0]), pl.ev.fatal != 0)}
	case C.RDK_EV_LOG:
		return reports, &Event{Log: true, Level: int(pl.ev.level), Facility: C.GoString(&pl.ev.fac[0]), Message: C.GoString(&pl.ev.str[0])}
	}
	return reports, nil
}

// Wake makes a Poll waiting for events return now.
func (p *Producer) Wake() { C.rd_kafka_queue_yield(p.q) }

// TopicInfo describes a topic in a metadata listing.
type TopicInfo struct {
	Err        kafka.ErrorCode
	Partitions int
}

// Topics lists every topic on the cluster. Listing all, rather than asking
// for one by name, never makes a broker auto-create a topic.
func (p *Producer) Topics(timeout time.Duration) (map[string]TopicInfo, error) {
	var md *C.struct_rd_kafka_metadata
	if err := C.rd_kafka_metadata(p.rk, 1, nil, &md, timeoutMs(timeout)); err != C.RD_KAFKA_RESP_ERR_NO_ERROR {
		return nil, kafka.NewError(kafka.ErrorCode(err), "", false)
	}
	defer C.rd_kafka_metadata_destroy(md)
	out := make(map[string]TopicInfo, int(md.topic_cnt))
	for _, t := range unsafe.Slice(md.topics, int(md.topic_cnt)) {
		out[C.GoString(t.topic)] = TopicInfo{Err: kafka.ErrorCode(t.err), Partitions: int(t.partition_cnt)}
	}
	return out, nil
}

// AskTopic asks the brokers about one topic by name, which makes brokers
// with auto.create.topics.enable (and librdkafka's mock cluster) create it.
// It returns the partition count. For development set-ups only.
func (p *Producer) AskTopic(name string, timeout time.Duration) (int, error) {
	t, err := p.Topic(name)
	if err != nil {
		return 0, err
	}
	var cnt C.int
	if err := C.rdk_partition_count(p.rk, t.rkt, timeoutMs(timeout), &cnt); err != C.RD_KAFKA_RESP_ERR_NO_ERROR {
		return 0, kafka.NewError(kafka.ErrorCode(err), "topic "+name, false)
	}
	return int(cnt), nil
}

// HasController reports whether the brokers name a controller that is
// one of them. librdkafka sends admin requests such as DescribeConfigs to
// the controller and waits until there is one; librdkafka's mock cluster
// names controller 0, which is none of its brokers (they are 1..n).
func (p *Producer) HasController(timeout time.Duration) (bool, error) {
	var md *C.struct_rd_kafka_metadata
	if err := C.rd_kafka_metadata(p.rk, 0, nil, &md, timeoutMs(timeout)); err != C.RD_KAFKA_RESP_ERR_NO_ERROR {
		return false, kafka.NewError(kafka.ErrorCode(err), "", false)
	}
	defer C.rd_kafka_metadata_destroy(md)
	// The metadata call has just cached the controller id: no wait.
	ctrl := C.rd_kafka_controllerid(p.rk, 0)
	for _, b := range unsafe.Slice(md.brokers, int(md.broker_cnt)) {
		if b.id == ctrl {
			return true, nil
		}
	}
	return false, nil
}

// FatalError returns the producer's fatal error, if it raised one.
func (p *Producer) FatalError() error {
	buf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(buf))
	if code := C.rd_kafka_fatal_error(p.rk, buf, 512); code != C.RD_KAFKA_RESP_ERR_NO_ERROR {
		return kafka.NewError(kafka.ErrorCode(code), C.GoString(buf), true)
	}
	return nil
}

// TestFatalError raises a fatal error as the idempotent producer does on
// an unrecoverable sequence error. Tests only.
func (p *Producer) TestFatalError(code kafka.ErrorCode, reason string) kafka.ErrorCode {
	cr := C.CString(reason)
	defer C.free(unsafe.Pointer(cr))
	return kafka.ErrorCode(C.rd_kafka_test_fatal_error(p.rk, C.rd_kafka_resp_err_t(code), cr))
}

// Purge drops the messages librdkafka still holds, queued and in flight,
// without waiting: they get delivery reports with a purge error. It makes
// Close prompt when brokers are unreachable.
func (p *Producer) Purge() error {
	flags := C.RD_KAFKA_PURGE_F_QUEUE | C.RD_KAFKA_PURGE_F_INFLIGHT | C.RD_KAFKA_PURGE_F_NON_BLOCKING
	if err := C.rd_kafka_purge(p.rk, C.int(flags)); err != C.RD_KAFKA_RESP_ERR_NO_ERROR {
		return kafka.NewError(kafka.ErrorCode(err), "purge", false)
	}
	return nil
}

// Close destroys the producer. No Produce or Poll may run during or after
// it. Messages still held are dropped: Purge first, so that it does not
// wait for brokers.
func (p *Producer) Close() {
	if p.cur != nil {
		C.rd_kafka_event_destroy(p.cur)
		p.cur = nil
	}
	p.topicsMu.Lock()
	for name, rkt := range p.topics {
		C.rd_kafka_topic_destroy(rkt)
		delete(p.topics, name)
	}
	p.topicsMu.Unlock()
	C.rd_kafka_queue_destroy(p.q)
	C.rd_kafka_destroy(p.rk)
	if p.hnames != nil {
		for _, n := range unsafe.Slice(p.hnames, p.nh) {
			C.free(unsafe.Pointer(n))
		}
		C.free(unsafe.Pointer(p.hnames))
		p.hnames = nil
	}
}

func timeoutMs(d time.Duration) C.int {
	return C.int(min(max(d.Milliseconds(), 1), math.MaxInt32))
}
