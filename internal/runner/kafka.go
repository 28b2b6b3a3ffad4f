package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// startKafka builds the Kafka sink. When the brokers cannot be reached it
// does not stop start-up: one sink's outage must never stop the other, and
// that includes an outage that began before `ingest run` did. The sink is
// then built on first use and the loader's Kafka pipelines replay from
// their checkpoint with back-off until it succeeds. A config error or a
// missing topic still fails start-up: waiting would not fix them.
func startKafka(ctx context.Context, cfg kafkasink.Config, log *slog.Logger) (*lazyKafka, error) {
	k := &lazyKafka{cfg: cfg, log: log}
	s, err := kafkasink.New(ctx, cfg)
	if err == nil {
		k.sink = s
		return k, nil
	}
	var cerr *kafkasink.ConfigError
	var terr *kafkasink.MissingTopicError
	if errors.As(err, &cerr) || errors.As(err, &terr) || ctx.Err() != nil {
		return nil, err
	}
	k.lastErr = err
	k.lastTry = time.Now()
	log.Error("kafka is unreachable; loading the other sinks and retrying Kafka in the background", "err", err)
	return k, nil
}

// lazyKafka is the Kafka sink, or the promise of one while the brokers are
// unreachable.
type lazyKafka struct {
	cfg kafkasink.Config
	log *slog.Logger

	mu      sync.Mutex
	sink    *kafkasink.Sink
	lastErr error
	lastTry time.Time
}

// retryEvery spaces attempts to reach the brokers; the loader's own
// back-off spaces the batches that ask.
const retryEvery = 5 * time.Second

func (k *lazyKafka) Name() string { return k.cfg.Name }

func (k *lazyKafka) get(ctx context.Context) (*kafkasink.Sink, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sink != nil {
		return k.sink, nil
	}
	if time.Since(k.lastTry) < retryEvery {
		return nil, fmt.Errorf("kafka sink not started: %w", k.lastErr)
	}
	k.lastTry = time.Now()
	s, err := kafkasink.New(ctx, k.cfg)
	if err != nil {
		k.lastErr = err
		return nil, fmt.Errorf("kafka sink not started: %w", err)
	}
	k.log.Info("kafka reachable again: sink started")
	k.sink = s
	return s, nil
}

// Submit implements loader.Sink.
func (k *lazyKafka) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	s, err := k.get(ctx)
	if err != nil {
		return err
	}
	return s.Submit(ctx, b, ack)
}

// ready reports whether the sink has started, for /readyz.
func (k *lazyKafka) ready(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sink == nil {
		return fmt.Errorf("kafka sink not started: %w", k.lastErr)
	}
	return nil
}

// Close closes the sink if it was started.
func (k *lazyKafka) Close(ctx context.Context) error {
	k.mu.Lock()
	s := k.sink
	k.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Close(ctx)
}
