package kafkasink

import (
	"errors"
	"fmt"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/loader"
)

// The errors a batch can fail with that callers may want to tell apart (for
// a log line or a metric label). For the loader every failure means the
// same: wait for the stream's other batches, then replay from the
// checkpoint. Errors carry librdkafka's kafka.Error where there is one, so
// errors.As(err, new(kafka.Error)) finds the broker's error code.
var (
	// ErrClosed: Submit after Close, or a batch whose messages were not all
	// delivered within Config.ShutdownTimeout when Close ran.
	ErrClosed = errors.New("kafkasink: sink closed")
	// ErrFatal: the producer raised a fatal error (for the idempotent
	// producer, e.g. an out-of-order sequence or a fenced producer id).
	// Every batch in flight on it fails with ErrFatal and the sink builds a
	// fresh producer for the batches that follow.
	ErrFatal = errors.New("kafkasink: fatal producer error; producer rebuilt")
	// ErrEarlierBatchFailed: a batch of the same stream submitted before
	// this one, in the same epoch, failed, so the loader will replay this
	// one too ([loader.Batch.Err]; it is [loader.ErrEpochCancelled]).
	// Failing it rather than delivering it keeps every stream's
	// acknowledgements a prefix of its submissions, and producing nothing
	// more for a stream that is about to rewind keeps per-key order in the
	// topic. The rewind starts a new epoch.
	ErrEarlierBatchFailed = loader.ErrEpochCancelled
)

// MissingTopicError is returned by [New] and [Sink.CheckTopics] (and by
// Submit, for a topic first seen there) when topics the sink must produce
// to do not exist. Brokers normally run with auto.create.topics.enable=false,
// and the sink never relies on auto-creation: its message says how to
// create them.
type MissingTopicError struct {
	Topics  []string // sorted
	Brokers string
}

func (e *MissingTopicError) Error() string {
	var b strings.Builder
	quoted := make([]string, len(e.Topics))
	for i, t := range e.Topics {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	if len(e.Topics) == 1 {
		fmt.Fprintf(&b, "kafkasink: topic %s does not exist on %s; create it", quoted[0], e.Brokers)
	} else {
		fmt.Fprintf(&b, "kafkasink: topics %s do not exist on %s; create them", strings.Join(quoted, ", "), e.Brokers)
	}
	b.WriteString(" (choose partitions and replication for production), e.g.:")
	for _, t := range e.Topics {
		fmt.Fprintf(&b, "\n\tkafka-topics.sh --bootstrap-server %s --create --topic %s --partitions 12 --replication-factor 3", e.Brokers, t)
	}
	b.WriteString("\nor, in development only, let the sink create them (ingest run --create-topics; Config.CreateTopics in Go)")
	return b.String()
}

// deliveryError is a message's failed delivery report.
type deliveryError struct {
	topic     string
	partition int32
	record    int // index in the batch
	err       error
}

func (e *deliveryError) Error() string {
	return fmt.Sprintf("kafkasink: delivery of record %d to %s[%d] failed: %v", e.record, e.topic, e.partition, e.err)
}

func (e *deliveryError) Unwrap() error { return e.err }

// kafkaErrorNames are Kafka's protocol names of the broker errors a dead
// letter can carry, as the broker's logs and Kafka's documentation spell
// them (librdkafka's descriptions differ).
var kafkaErrorNames = map[kafka.ErrorCode]string{
	kafka.ErrMsgSizeTooLarge:    "MESSAGE_TOO_LARGE",
	kafka.ErrRecordListTooLarge: "RECORD_LIST_TOO_LARGE",
}

// brokerError describes a broker's error code and message (Kafka sends a
// message with few errors; for MESSAGE_TOO_LARGE it sends none).
func brokerError(c kafka.ErrorCode, msg string) string {
	s := fmt.Sprintf("error %d", int(c))
	if name, ok := kafkaErrorNames[c]; ok {
		s = name + " (" + s + ")"
	}
	s += ": " + c.String()
	if msg != "" && msg != c.String() {
		s += ": " + msg
	}
	return s
}

// code returns err's librdkafka error code, or ErrNoError when err is not a
// kafka.Error.
func code(err error) kafka.ErrorCode {
	if err == nil {
		// Produce's common case, once per message: errors.As below
		// would allocate ke on the heap for nothing.
		return kafka.ErrNoError
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Code()
	}
	return kafka.ErrNoError
}
