package consume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
)

// PartitionStatus is where a group stands on one partition. A value that
// could not be read (PostgreSQL or Kafka did not answer, see
// [GroupStatus]) is -1, as is one that does not exist.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Checkpoint is the next offset to load, from PostgreSQL: the
	// group's true position. -1 when the group never committed there.
	Checkpoint int64 `json:"checkpoint"`
	// KafkaCommitted is the group's committed offset in Kafka, which
	// follows Checkpoint for lag tools; -1 when none.
	KafkaCommitted int64 `json:"kafka_committed"`
	// End is the partition's high watermark.
	End int64 `json:"end"`
	// Lag is End minus Checkpoint (minus the partition's beginning when
	// there is no checkpoint): the messages still to load.
	Lag int64 `json:"lag"`
	// LagSeconds is the age, by message timestamp, of the first message
	// still to load (the one at Checkpoint), as the
	// ingest_consume_lag_seconds metric measures it: 0 without lag, -1
	// when the message could not be read within the status's time.
	LagSeconds float64 `json:"lag_seconds"`
}

// GroupStatus is where one consumer group stands on every partition of
// its topics: `ingest status` shows one per group, `ingest consume
// --status` the group it would join.
type GroupStatus struct {
	Group string `json:"consumer_group"`
	// Partitions are sorted by topic and partition.
	Partitions []PartitionStatus `json:"partitions"`
	// Lag is the sum of the partitions' lags; -1 when a side did not
	// answer.
	Lag int64 `json:"lag"`
	// DBError says that PostgreSQL did not answer: checkpoints and lags
	// are -1 and the partitions are those Kafka lists.
	DBError string `json:"db_error,omitempty"`
	// KafkaError says that Kafka did not answer: committed offsets, ends
	// and lags are -1 and the partitions are those with checkpoints.
	KafkaError string `json:"kafka_error,omitempty"`
}

// Status reports, per partition of the consumed topics (Options.Tables),
// the position of the group Options.Group resolves to ([GroupOf]): its
// checkpoint in PostgreSQL, its committed offset in Kafka, the end and the
// lag, for `ingest consume --status`. It joins no group. Unlike [Groups],
// it fails when PostgreSQL or Kafka does not answer.
func Status(ctx context.Context, cfg *config.Config, o Options) ([]PartitionStatus, error) {
	if !cfg.DBEnabled() || !cfg.KafkaEnabled() {
		return nil, argErrorf("consume status needs db.url and kafka.brokers")
	}
	sch, err := cfg.Schema()
	if err != nil {
		return nil, &ArgError{err}
	}
	tt, err := selectTables(sch, o.Tables)
	if err != nil {
		return nil, err
	}
	group, err := GroupOf(cfg, o.Group)
	if err != nil {
		return nil, &ArgError{err}
	}
	if _, err := pgx.ParseConfig(cfg.DB.URL); err != nil {
		return nil, &ArgError{fmt.Errorf("db.url: %w", err)}
	}
	cps, err := readCheckpoints(ctx, cfg.DB.URL)
	if err != nil {
		return nil, fmt.Errorf("group %s: PostgreSQL %w", group, err)
	}
	g := GroupStatus{Group: group}
	var down error
	inspectGroup(ctx, cfg, &g, cps[group], tt.topics(), &down)
	if g.KafkaError != "" {
		return nil, fmt.Errorf("group %s: Kafka: %s", group, g.KafkaError)
	}
	return g.Partitions, nil
}

// Groups reports every consumer group that has checkpoints in PostgreSQL,
// and the config's consume.group even before it has any, for `ingest
// status`. It never fails as a whole: when PostgreSQL or Kafka does not
// answer, each group says so (DBError, KafkaError) and holds what the
// other side told; when PostgreSQL does not answer and no group is
// configured, the default group ([GroupOf]) stands for the groups that
// cannot be listed, with no partitions (Kafka is not asked about a group
// that may not exist). Without db.url or a real kafka.brokers nothing can
// be consumed, and Groups returns nil without dialling anything.
func Groups(ctx context.Context, cfg *config.Config) []GroupStatus {
	if !cfg.DBEnabled() || !cfg.KafkaEnabled() || cfg.Kafka.Brokers == "embedded" {
		return nil
	}
	cps, dbErr := readCheckpoints(ctx, cfg.DB.URL)
	names := make([]string, 0, len(cps)+1)
	for g := range cps {
		names = append(names, g)
	}
	if g := cfg.Consume.Group; g != "" && cps[g] == nil {
		names = append(names, g)
	}
	if dbErr != nil && len(names) == 0 {
		g, _ := GroupOf(cfg, "") // "" when db.url names no database
		return []GroupStatus{{Group: g, Partitions: []PartitionStatus{}, Lag: -1,
			DBError: dbErr.Error() + "; the groups with checkpoints there are not known"}}
	}
	slices.Sort(names)
	// A group without checkpoints is shown on the topics it would
	// consume; a table that does not decode is then no reason to fail.
	var configured []string
	if sch, err := cfg.Schema(); err == nil {
		if tt, err := selectTables(sch, nil); err == nil {
			configured = tt.topics()
		}
	}
	out := make([]GroupStatus, len(names))
	var down error
	for i, name := range names {
		out[i].Group = name
		if dbErr != nil {
			out[i].DBError = dbErr.Error()
		}
		topics := configured
		if streams := cps[name]; len(streams) > 0 {
			topics = nil
			for s := range streams {
				if t, _, ok := splitStream(s); ok && !slices.Contains(topics, t) {
					topics = append(topics, t)
				}
			}
			slices.Sort(topics)
		}
		inspectGroup(ctx, cfg, &out[i], cps[name], topics, &down)
	}
	return out
}

// readCheckpoints returns the checkpoints of every consumer group, by group
// and stream ("<topic>/<partition>"). A database without the checkpoint
// table (never migrated) holds none.
func readCheckpoints(ctx context.Context, url string) (map[string]map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("did not answer: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT "sink", "stream", "offset" FROM `+pgx.Identifier{dbsink.CheckpointTable}.Sanitize()+
		` WHERE starts_with("sink", $1)`, SinkName(""))
	if isUndefinedTable(err) {
		return nil, nil // never migrated: nothing was ever consumed into it
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dbsink.CheckpointTable, err)
	}
	out := map[string]map[string]int64{}
	for rows.Next() {
		var sink, stream string
		var off int64
		if err := rows.Scan(&sink, &stream, &off); err != nil {
			return nil, err
		}
		g := strings.TrimPrefix(sink, SinkName(""))
		if out[g] == nil {
			out[g] = map[string]int64{}
		}
		out[g][stream] = off
	}
	if err := rows.Err(); isUndefinedTable(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dbsink.CheckpointTable, err)
	}
	return out, nil
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// splitStream is the inverse of [Stream].
func splitStream(s string) (topic string, partition int32, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.ParseInt(s[i+1:], 10, 32)
	return s[:i], int32(p), err == nil
}

// inspectGroup fills g's partitions of topics from the group's checkpoints
// cps and from Kafka. *down carries a Kafka failure from one group to the
// next, so that an unreachable cluster costs one timeout, not one per
// group.
func inspectGroup(ctx context.Context, cfg *config.Config, g *GroupStatus, cps map[string]int64, topics []string, down *error) {
	fromCheckpoints := func() {
		g.Partitions = []PartitionStatus{}
		for s, off := range cps {
			if t, p, ok := splitStream(s); ok && slices.Contains(topics, t) {
				g.Partitions = append(g.Partitions, PartitionStatus{Topic: t, Partition: p, Checkpoint: off,
					KafkaCommitted: -1, End: -1, Lag: -1, LagSeconds: -1})
			}
		}
		sortPartitions(g.Partitions)
	}
	g.Lag = -1
	if *down != nil {
		g.KafkaError = (*down).Error()
		fromCheckpoints()
		return
	}
	err := kafkaPositions(ctx, cfg, g, cps, topics)
	if err == nil && g.DBError != "" {
		// Without the checkpoints the lag is not known; what Kafka
		// tells (committed offsets, ends) still is.
		for i := range g.Partitions {
			g.Partitions[i].Lag, g.Partitions[i].LagSeconds = -1, -1
		}
		return
	}
	if err != nil {
		g.KafkaError = err.Error()
		fromCheckpoints()
		var ke kafka.Error
		if !errors.As(err, &ke) || ke.Code() != kafka.ErrUnknownTopicOrPart {
			*down = err
		}
		return
	}
	g.Lag = 0
	for _, p := range g.Partitions {
		g.Lag += max(p.Lag, 0)
	}
}

func sortPartitions(ps []PartitionStatus) {
	slices.SortFunc(ps, func(a, b PartitionStatus) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
}

// kafkaPositions reads, with a consumer of the group that joins nothing,
// each partition's committed offset and watermarks, and the timestamp of
// the first message still to load.
func kafkaPositions(ctx context.Context, cfg *config.Config, g *GroupStatus, cps map[string]int64, topics []string) error {
	// group.id is the group's, to read its committed offsets; a consumer
	// that never subscribes does not join it.
	// A next offset that retention has deleted reads from the earliest
	// message left, the oldest not loaded that still exists.
	cm := kafkaConfig(cfg, map[string]string{"group.id": g.Group, "enable.auto.commit": "false", "auto.offset.reset": "earliest"})
	// librdkafka's own log lines would go to stderr, between the lines
	// of the status; the last warning goes into the error instead, since
	// it says why (connection refused, authentication failed).
	cm["go.logs.channel.enable"] = true
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	var mu sync.Mutex
	var lastWarning string
	go func() {
		for ev := range c.Logs() { // closed by c.Close
			if ev.Level <= 4 {
				mu.Lock()
				lastWarning = ev.Message
				mu.Unlock()
			}
		}
	}()
	defer c.Close()
	err = kafkaPartitions(ctx, c, g, cps, topics)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		if lastWarning != "" {
			err = fmt.Errorf("%w (librdkafka: %s)", err, lastWarning)
		}
	}
	return err
}

func kafkaPartitions(ctx context.Context, c *kafka.Consumer, g *GroupStatus, cps map[string]int64, topics []string) error {
	out := []PartitionStatus{}
	for _, topic := range topics {
		md, err := c.GetMetadata(&topic, false, timeoutMs(ctx, 10*time.Second))
		if err != nil {
			return fmt.Errorf("did not answer: metadata of topic %s: %w", topic, err)
		}
		tm := md.Topics[topic]
		if tm.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("topic %s: %w", topic, tm.Error)
		}
		if len(tm.Partitions) == 0 {
			return fmt.Errorf("topic %s: no partitions", topic)
		}
		tps := make([]kafka.TopicPartition, len(tm.Partitions))
		for i, p := range tm.Partitions {
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: p.ID}
		}
		committed, err := c.Committed(tps, timeoutMs(ctx, 10*time.Second))
		if err != nil {
			return fmt.Errorf("did not answer: committed offsets of group %s on topic %s: %w", g.Group, topic, err)
		}
		for i, tp := range tps {
			st := PartitionStatus{Topic: topic, Partition: tp.Partition, Checkpoint: -1, KafkaCommitted: -1}
			if off, ok := cps[Stream(topic, tp.Partition)]; ok {
				st.Checkpoint = off
			}
			if i < len(committed) && committed[i].Offset >= 0 {
				st.KafkaCommitted = int64(committed[i].Offset)
			}
			lo, hi, err := c.QueryWatermarkOffsets(topic, tp.Partition, timeoutMs(ctx, 10*time.Second))
			if err != nil {
				return fmt.Errorf("did not answer: watermarks of topic %s partition %d: %w", topic, tp.Partition, err)
			}
			st.End = hi
			from := st.Checkpoint
			if from < 0 {
				from = lo
			}
			st.Lag = max(hi-from, 0)
			out = append(out, st)
		}
	}
	sortPartitions(out)
	if g.DBError == "" {
		lagAges(ctx, c, out)
	}
	g.Partitions = out
	return nil
}

// lagAges sets LagSeconds: 0 without lag, else the age of the message at
// the partition's next offset (or its beginning), read by assigning the
// lagging partitions there. It gives up after a few seconds, leaving -1,
// since a status must answer even when a partition's leader does not.
func lagAges(ctx context.Context, c *kafka.Consumer, ps []PartitionStatus) {
	want := map[string]int{} // stream -> index in ps
	var tps []kafka.TopicPartition
	for i := range ps {
		p := &ps[i]
		if p.Lag <= 0 {
			continue
		}
		p.LagSeconds = -1
		off := kafka.OffsetBeginning
		if p.Checkpoint >= 0 {
			off = kafka.Offset(p.Checkpoint)
		}
		want[Stream(p.Topic, p.Partition)] = i
		tps = append(tps, kafka.TopicPartition{Topic: &p.Topic, Partition: p.Partition, Offset: off})
	}
	if len(tps) == 0 || c.Assign(tps) != nil {
		return
	}
	defer c.Unassign()
	now := time.Now()
	deadline := now.Add(3 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for len(want) > 0 && time.Now().Before(deadline) {
		m, ok := c.Poll(int(min(time.Until(deadline), 200*time.Millisecond)/time.Millisecond) + 1).(*kafka.Message)
		if !ok {
			continue
		}
		s := Stream(*m.TopicPartition.Topic, m.TopicPartition.Partition)
		if i, ok := want[s]; ok && m.TimestampType != kafka.TimestampNotAvailable {
			ps[i].LagSeconds = max(now.Sub(m.Timestamp).Round(time.Second).Seconds(), 0)
			delete(want, s)
		}
	}
}

// WriteStatus prints one group's partitions as a table, as `ingest
// consume --status` does.
func WriteStatus(w io.Writer, group string, sts []PartitionStatus) error {
	g := GroupStatus{Group: group, Partitions: sts}
	for _, s := range sts {
		g.Lag += max(s.Lag, 0)
	}
	return WriteGroup(w, g)
}

// WriteGroup prints a group as a table: a heading, what did not answer,
// a line per partition ("-" where a value is missing or unknown) and the
// total lag.
func WriteGroup(w io.Writer, g GroupStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "group %s (checkpoints: sink %s in PostgreSQL)\n", g.Group, SinkName(g.Group))
	// Drivers' errors span lines (pgx lists each address it tried); a
	// table's line is one line.
	oneLine := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if g.DBError != "" {
		fmt.Fprintf(tw, "PostgreSQL: %s (checkpoints unknown)\n", oneLine(g.DBError))
	}
	if g.KafkaError != "" {
		fmt.Fprintf(tw, "Kafka: %s (committed offsets, ends and lag unknown)\n", oneLine(g.KafkaError))
	}
	if len(g.Partitions) == 0 && (g.DBError != "" || g.KafkaError != "") {
		return tw.Flush() // nothing known to tabulate
	}
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCHECKPOINT\tKAFKA COMMITTED\tEND\tLAG\tOLDEST UNLOADED")
	num := func(v int64) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, s := range g.Partitions {
		age := "-"
		if s.LagSeconds >= 0 {
			age = (time.Duration(s.LagSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Topic, s.Partition, num(s.Checkpoint), num(s.KafkaCommitted), num(s.End), num(s.Lag), age)
	}
	fmt.Fprintf(tw, "total lag\t\t\t\t\t%s\n", num(g.Lag))
	return tw.Flush()
}
