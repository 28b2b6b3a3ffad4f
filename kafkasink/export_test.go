package kafkasink

import (
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// InjectFatalError raises a fatal error in the sink's current producer, as
// the idempotent producer does on an unrecoverable sequence error
// (librdkafka's rd_kafka_test_fatal_error, through the Producer).
func InjectFatalError(s *Sink, code kafka.ErrorCode) kafka.ErrorCode {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	return g.p.TestFatalError(code, "injected by test")
}

// InFlight is the number of batches produced on the sink's current
// producer and not finished: Submit hands batches to a goroutine, and a
// test that needs them in librdkafka waits for this.
func InFlight(s *Sink) int {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.inflight)
}

// SetCreateTimeout shortens the CreateTopics admin request for tests
// against the mock cluster, which never answers it.
func SetCreateTimeout(d time.Duration) (restore func()) {
	old := createTimeout
	createTimeout = d
	return func() { createTimeout = old }
}

// SetConfigRefresh shortens how often the sink re-reads its topics'
// configs. Set it before New: the supervisor reads it when it starts.
func SetConfigRefresh(d time.Duration) (restore func()) {
	old := configRefreshEvery
	configRefreshEvery = d
	return func() { configRefreshEvery = old }
}

// NewUnbuilt is a [Lazy] whose background start never runs: the test
// decides when the sink is built with SetBuilt.
func NewUnbuilt(cfg Config) *Lazy {
	return &Lazy{cfg: cfg, log: slog.New(slog.DiscardHandler), cancel: func() {},
		built: make(chan struct{}), tried: make(chan struct{}), done: make(chan struct{}), fatal: make(chan error, 1)}
}

// SetBuilt hands k the sink, as a successful first attempt would.
func SetBuilt(k *Lazy, s *Sink) {
	k.mu.Lock()
	k.sink = s
	k.mu.Unlock()
	close(k.built)
	close(k.tried)
	close(k.done)
}
