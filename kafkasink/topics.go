package kafkasink

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/loader"
)

// metadataTimeout bounds a metadata call when ctx has no deadline:
// librdkafka's calls block with a timeout and cannot be cancelled.
const metadataTimeout = 10 * time.Second

// createTimeout bounds the CreateTopics admin request. Brokers without a
// controller to send it to (librdkafka's mock cluster) never answer it, and
// the dev-only fallback takes over. A variable so tests can shorten it.
var createTimeout = 5 * time.Second

// CheckTopics verifies that every topic in Config.Topics exists, and with
// Config.CreateTopics creates those that do not. It lists all topics rather
// than asking for each one by name: asking by name is what makes a broker
// with auto.create.topics.enable (and librdkafka's mock cluster, always)
// create the topic, and the check must not create what it checks for.
//
// A missing topic yields a *[MissingTopicError] naming it, with the
// kafka-topics.sh command to create it.
//
// It also reads each topic's max.message.bytes (DescribeConfigs), which a
// broker applies to whole record batches, and keeps the producer's
// batch.size under the smallest: when a topic needs smaller batches than
// the live producer makes, the batches in flight on it fail (the loader
// replays them) and a producer with a smaller batch.size replaces it.
func (s *Sink) CheckTopics(ctx context.Context) error {
	if err := s.checkTopics(ctx, s.cfg.Topics); err != nil {
		return err
	}
	s.fitProducer()
	return nil
}

// ensureTopics checks, before anything is produced, the topics of b not yet
// known to exist: producing to a missing topic would make librdkafka ask
// for its metadata by name (auto-creating it where the broker allows) or
// hold the messages until they fail.
func (s *Sink) ensureTopics(ctx context.Context, b *loader.Batch) error {
	var unknown []string
	var last string
	s.topicsMu.Lock()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Table == nil {
			s.topicsMu.Unlock()
			return fmt.Errorf("kafkasink: stream %s batch %d: record at %s has no table", b.Stream, b.Seq, r.Pos)
		}
		if r.Table.Topic == "" {
			// Tables from schema.New always have one.
			s.topicsMu.Unlock()
			return fmt.Errorf("kafkasink: stream %s batch %d: table %q has no topic (build tables with schema.New)", b.Stream, b.Seq, r.Table.Name)
		}
		if t := r.Table.Topic; t != last {
			last = t
			if !s.known[t] && !slices.Contains(unknown, t) {
				unknown = append(unknown, t)
			}
		}
	}
	s.topicsMu.Unlock()
	if len(unknown) == 0 {
		return nil
	}
	if err := s.checkTopics(ctx, unknown); err != nil {
		return err
	}
	s.fitProducer()
	return nil
}

// fitProducer replaces the live producer when its batch.size is above
// what the topics' limits allow. Its batches in flight fail and the loader
// replays them from its checkpoint on the new producer: finishing them on
// the old one while the new one sends later batches could reorder a
// partition.
func (s *Sink) fitProducer() {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if want := s.wantBatchSize(); want < g.batchSize {
		g.kill(fmt.Errorf("kafkasink: a topic's max.message.bytes needs batch.size %d, the producer has %d: %w", want, g.batchSize, errBatchRefused))
		s.requestRebuild()
	}
}

func (s *Sink) checkTopics(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	g, err := s.current(ctx)
	if err != nil {
		return err
	}
	// Hold the producer against retirement for the metadata calls.
	g.use.RLock()
	defer g.use.RUnlock()

	missing, err := s.missingTopics(ctx, g, topics)
	if err != nil {
		return err
	}
	if len(missing) > 0 && s.cfg.CreateTopics {
		s.createTopics(ctx, g, missing)
		// A broker answers CreateTopics once its controller has the
		// topic; the brokers' metadata, which the listing reads, follows
		// a moment later, so a topic just created may not be listed yet.
		deadline := time.Now().Add(createTimeout)
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
			if missing, err = s.missingTopics(ctx, g, missing); err != nil {
				return err
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("kafkasink: waiting for created topics %v: %w", missing, ctx.Err())
			case <-time.After(wait):
			}
		}
	}
	if len(missing) > 0 {
		return &MissingTopicError{Topics: missing, Brokers: s.cfg.Brokers}
	}
	// librdkafka sends DescribeConfigs to the controller and waits for
	// one; librdkafka's mock cluster (`kafka.brokers: embedded`) has none,
	// and enforces no topic limit either.
	ok, err := false, error(nil)
	if !s.noController.Load() {
		ok, err = g.hasController(ctx)
	}
	switch {
	case err != nil:
		s.log.Warn("kafkasink: metadata for the controller; topic limits not read", "err", err)
	case ok:
		s.learnLimits(ctx, topics, true)
	default:
		if !s.noController.Swap(true) {
			s.log.Info("kafkasink: the brokers name no controller (librdkafka's mock cluster?): topic limits not read; batches refused as too large shrink batch.size")
		}
	}
	return nil
}

// missingTopics lists all topics and returns those of want that are not
// among them (sorted), remembering the others as known.
func (s *Sink) missingTopics(ctx context.Context, g *generation, want []string) ([]string, error) {
	md, err := g.p.GetMetadata(nil, true, timeoutMs(timeout(ctx)))
	if err != nil {
		return nil, fmt.Errorf("kafkasink: list topics on %s: %w", s.cfg.Brokers, err)
	}
	var missing []string
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	for _, t := range want {
		tm, ok := md.Topics[t]
		// A topic being deleted, or one the client may not describe, is
		// listed with an error: it is not there to produce to.
		if !ok || tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) == 0 {
			if !slices.Contains(missing, t) {
				missing = append(missing, t)
			}
			continue
		}
		s.known[t] = true
	}
	slices.Sort(missing)
	return missing, nil
}

// createTopics creates topics for development (Config.CreateTopics). It
// logs rather than returns errors: the listing that follows decides.
func (s *Sink) createTopics(ctx context.Context, g *generation, topics []string) {
	conf := kafka.ConfigMap{}
	for k, v := range s.cfg.conf {
		conf[k] = v
	}
	ac, err := kafka.NewAdminClient(&conf)
	if err != nil {
		s.log.Warn("kafkasink: admin client for creating topics", "err", err)
		return
	}
	defer ac.Close()

	partitions := s.cfg.CreatePartitions
	if partitions == 0 {
		partitions = -1 // the broker's num.partitions (Kafka >= 2.4)
	}
	specs := make([]kafka.TopicSpecification, len(topics))
	for i, t := range topics {
		// Replication -1: the broker's default.replication.factor.
		specs[i] = kafka.TopicSpecification{Topic: t, NumPartitions: partitions, ReplicationFactor: -1}
	}
	cctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	res, err := ac.CreateTopics(cctx, specs)
	if err == nil {
		for _, r := range res {
			switch r.Error.Code() {
			case kafka.ErrNoError:
				s.log.Warn("kafkasink: created topic (CreateTopics is for development only)", "topic", r.Topic)
			case kafka.ErrTopicAlreadyExists:
			default:
				s.log.Warn("kafkasink: create topic", "topic", r.Topic, "err", r.Error)
			}
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	// No answer: the broker has no controller for admin requests, which is
	// how librdkafka's mock cluster (`kafka.brokers: embedded`) behaves. A
	// metadata request by name makes brokers that auto-create topics
	// create it; on others it changes nothing and the check still fails.
	s.log.Warn("kafkasink: CreateTopics request failed; asking for the topics by name so the broker auto-creates them",
		"err", err, "topics", topics)
	for _, t := range topics {
		if _, err := g.p.GetMetadata(&t, false, timeoutMs(timeout(ctx))); err != nil {
			s.log.Warn("kafkasink: metadata for topic", "topic", t, "err", err)
		}
	}
}

// hasController reports whether the cluster names a controller that is one
// of its brokers. librdkafka sends admin requests such as DescribeConfigs
// to the controller and waits until there is one; librdkafka's mock
// cluster names none that is a broker, or does not serve DescribeCluster
// at all (ErrUnsupportedFeature), which counts as no controller.
func (g *generation) hasController(ctx context.Context) (bool, error) {
	ac, err := kafka.NewAdminClientFromProducer(g.p)
	if err != nil {
		return false, err
	}
	defer ac.Close() // a derived client: the producer stays open
	cctx, cancel := context.WithTimeout(ctx, min(timeout(ctx), controllerWait))
	defer cancel()
	res, err := ac.DescribeCluster(cctx)
	switch {
	case code(err) == kafka.ErrUnsupportedFeature:
		return false, nil
	case err != nil && ctx.Err() == nil && cctx.Err() != nil:
		// The brokers answered the metadata request just before, so
		// silence here is the mock, which never answers.
		return false, nil
	case err != nil:
		return false, err
	case res.Controller == nil:
		return false, nil
	}
	for _, n := range res.Nodes {
		if n.ID == res.Controller.ID {
			return true, nil
		}
	}
	return false, nil
}

// controllerWait bounds hasController's request: a broker that has just
// answered a metadata request answers it at once, and librdkafka's mock
// never does.
const controllerWait = 3 * time.Second

// timeoutMs is d as a librdkafka timeout in milliseconds (at least 1).
func timeoutMs(d time.Duration) int {
	return int(min(max(d.Milliseconds(), 1), math.MaxInt32))
}

// timeout turns ctx's deadline into a librdkafka timeout.
func timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return metadataTimeout
}
