package kafkasink

import (
	"context"
	"fmt"
)

// Ping asks the cluster for its metadata through the sink's own producer
// and returns nil once a broker answered; otherwise librdkafka's error
// after ctx's deadline (10 s without one: librdkafka's call cannot be
// cancelled, so give ctx a deadline). It is what `ingest run`'s /readyz
// asks: the producer keeps retrying through an outage without a word to
// its caller, so only a request tells whether a broker answers now.
//
// The request lists every topic (a broker answers it from its metadata
// cache, and it never makes a broker auto-create a topic); callers that
// may ask often should space their calls.
func (s *Sink) Ping(ctx context.Context) error {
	g, err := s.current(ctx)
	if err != nil {
		return err
	}
	// Hold the producer against retirement for the call.
	g.use.RLock()
	defer g.use.RUnlock()
	if _, err := g.p.GetMetadata(nil, true, timeoutMs(timeout(ctx))); err != nil {
		return fmt.Errorf("no broker of %s answered a metadata request: %w", s.cfg.Brokers, err)
	}
	return nil
}
