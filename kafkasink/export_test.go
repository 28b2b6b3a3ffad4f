package kafkasink

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// InjectFatalError raises a fatal error in the sink's current producer, as
// the idempotent producer does on an unrecoverable sequence error
// (librdkafka's rd_kafka_test_fatal_error).
func InjectFatalError(s *Sink, code kafka.ErrorCode) kafka.ErrorCode {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	return g.p.TestFatalError(code, "injected by test")
}

// SetCreateTimeout shortens the CreateTopics admin request for tests
// against the mock cluster, which never answers it.
func SetCreateTimeout(d time.Duration) (restore func()) {
	old := createTimeout
	createTimeout = d
	return func() { createTimeout = old }
}
