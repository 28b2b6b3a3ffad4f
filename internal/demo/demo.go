// Package demo is `ingest demo`: the whole pipeline on embedded defaults in
// a temporary directory. It starts librdkafka's mock cluster in-process and
// a throwaway PostgreSQL from the installed server binaries, generates
// traffic through the embeddable writer, runs the loader dual-writing with a
// route change partway (kafka: none, then {percent: 30}, then all, by
// rewriting the config file as an operator would), and closes with a report
// whose checks decide the exit status.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/acktrace"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/loader"
	"github.com/jackc/pgx/v5"
)

// Options tune the demo; zero values give the defaults.
type Options struct {
	Duration time.Duration // traffic time, default 15 s
	Rate     float64       // lines/s, default 1500
	Accounts int           // default 200
	Size     int           // mean line size, default 600 bytes
	Out      io.Writer     // the report; default os.Stdout
	Logger   *slog.Logger  // progress; nil discards
	Keep     bool          // keep the temporary directory
	// Load is `ingest run`'s loader (cmd/ingest passes the runner's),
	// given here so that the demo exercises the same assembly of sinks,
	// routes and reload as a deployment without depending on it.
	Load func(ctx context.Context, cfg *config.Config, o LoadOptions) error
}

// LoadOptions are what the demo asks of [Options.Load] beyond the config.
type LoadOptions struct {
	ConfigPath string // watched: the demo rewrites it to move the route
	Logger     *slog.Logger
	// WrapSink observes every acknowledgement, for the report's checks.
	WrapSink func(loader.Sink) loader.Sink
	Started  func(metricsAddr string) // called once loading began
	// Loader is called with the loader before it runs: the demo waits
	// until its Stats show every sink caught up.
	Loader func(*loader.Loader)
}

// DefaultDuration is how long the demo generates traffic.
const DefaultDuration = 15 * time.Second

// ErrChecksFailed is returned when the report's checks do not all pass.
var ErrChecksFailed = errors.New("demo: checks failed")

const topic = "raw_item"

const configTemplate = `# Written by ingest demo. Edit tables.raw_item.kafka while it runs to move accounts.
spool: {dir: %q}
batch: {max_records: 500, max_bytes: 4MiB, linger: 10ms}
kafka:
  brokers: %q
db:
  url: %q
metrics: {listen: "127.0.0.1:0"}
tables:
%s`

// Run runs the demo. It returns ErrChecksFailed (after printing the report)
// when a check fails, and other errors when the demo could not run.
func Run(ctx context.Context, o Options) error {
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Rate <= 0 {
		o.Rate = 1500
	}
	if o.Accounts <= 0 {
		o.Accounts = 200
	}
	if o.Size <= 0 {
		o.Size = 600
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Load == nil {
		return errors.New("demo: Options.Load is nil (cmd/ingest passes the loader)")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "ingest-demo-")
	if err != nil {
		return err
	}
	if o.Keep {
		fmt.Fprintf(o.Out, "working directory: %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	log.Info("starting PostgreSQL from the installed server binaries")
	pg, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		return fmt.Errorf("demo needs a local PostgreSQL server: %w", err)
	}
	defer pg.Close()

	log.Info("starting the in-process Kafka mock cluster")
	mc, err := mockkafka.New(3)
	if err != nil {
		return err
	}
	defer mc.Close()
	if err := mc.CreateTopic(topic, 6); err != nil {
		return err
	}

	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "ingest.yaml")
	writeConfig := func(kafkaRoute string) error {
		data := fmt.Sprintf(configTemplate, spool, mc.Bootstrap(), pg.URL(), gen.TableConfig(topic, kafkaRoute))
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o640); err != nil {
			return err
		}
		return os.Rename(tmp, cfgPath)
	}
	if err := writeConfig("none"); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	sch, err := cfg.Schema()
	if err != nil {
		return err
	}
	db, err := dbsink.New(ctx, dbsink.Config{URL: pg.URL(), Schema: sch})
	if err != nil {
		return err
	}
	err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		return err
	}

	obs := acktrace.New(acktrace.Options{Keep: true, IDs: true})
	var ld atomic.Pointer[loader.Loader]
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	started := make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		runErr <- o.Load(runCtx, cfg, LoadOptions{
			ConfigPath: cfgPath, Logger: log, WrapSink: obs.Wrap, Loader: ld.Store,
			Started: func(string) { close(started) },
		})
	}()
	select {
	case <-started:
	case err := <-runErr:
		return fmt.Errorf("loader did not start: %w", err)
	}

	fmt.Fprintf(o.Out, "ingest demo: %v of traffic at %.0f lines/s over %d accounts, PostgreSQL on port %d, Kafka mock at %s\n",
		o.Duration, o.Rate, o.Accounts, pg.Port(), mc.Bootstrap())
	genCtx, stopGen := context.WithTimeout(ctx, o.Duration)
	defer stopGen()
	genDone := make(chan error, 1)
	var genStats gen.Stats
	go func() {
		st, err := gen.Run(genCtx, gen.Options{Dir: spool, Rate: o.Rate, Accounts: o.Accounts, Size: o.Size,
			Seed: 42})
		genStats = st
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
		genDone <- err
	}()
	routes := []struct {
		at    time.Duration
		route string
	}{{o.Duration / 3, "{percent: 30}"}, {2 * o.Duration / 3, "all"}}
	start := time.Now()
	for _, r := range routes {
		select {
		case <-time.After(time.Until(start.Add(r.at))):
		case err := <-runErr:
			return fmt.Errorf("loader stopped: %w", err)
		}
		if err := writeConfig(r.route); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "  t=%v: config rewritten, tables.raw_item.kafka: %s\n", r.at.Round(time.Second), r.route)
	}
	if err := <-genDone; err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	fmt.Fprintf(o.Out, "  generator wrote %d lines (%d bytes)\n", genStats.Lines, genStats.Bytes)

	// Wait until both sinks have acknowledged everything.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if caughtUp(ld.Load()) && obs.Acked(config.SinkDB) >= genStats.Lines {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the loader did not catch up within 60 s")
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case err := <-runErr:
			return fmt.Errorf("loader stopped: %w", err)
		}
	}
	stopRun()
	if err := <-runErr; err != nil {
		return fmt.Errorf("loader shutdown: %w", err)
	}
	return report(ctx, o.Out, pg, mc, loader.StateLayout{Dir: cfg.Spool.StateDir}, genStats, obs)
}

// caughtUp reports whether every sink's checkpoint of every stream is at
// the stream's end, as the loader last measured.
func caughtUp(l *loader.Loader) bool {
	if l == nil {
		return false
	}
	found := false
	for _, st := range l.Stats().Streams {
		for _, k := range st.Sinks {
			if k.LagBytes != 0 {
				return false // behind, or not measured yet (-1)
			}
			found = true
		}
	}
	return found
}

// report prints counts, the per-account order check and latencies, and
// returns ErrChecksFailed unless every check passed.
func report(ctx context.Context, out io.Writer, pg *pgserver.Server, mc *mockkafka.Cluster, state loader.StateLayout, st gen.Stats, obs *acktrace.Tracer) error {
	ok := true
	check := func(pass bool, format string, args ...any) {
		mark := "ok  "
		if !pass {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(out, "  [%s] "+format+"\n", append([]any{mark}, args...)...)
	}
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var rows, distinct int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT uuid) FROM raw_item`).Scan(&rows, &distinct); err != nil {
		return err
	}

	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msgs, _ := mc.Consume(kctx, topic, int(obs.Acked(config.SinkKafka)))
	kafkaIDs := map[string]bool{}
	dups := 0
	type acct struct{ first, last, n int64 }
	perAccount := map[string]*acct{}
	orderOK := true
	for _, m := range msgs {
		id := header(m, "ingest.record_id")
		if kafkaIDs[id] {
			dups++
			continue
		}
		kafkaIDs[id] = true
		seq := jsonInt(m.Value, `"seq":`)
		a := perAccount[string(m.Key)]
		if a == nil {
			perAccount[string(m.Key)] = &acct{first: seq, last: seq, n: 1}
			continue
		}
		if seq != a.last+1 {
			orderOK = false
		}
		a.last, a.n = seq, a.n+1
	}
	dl, err := loader.CountDeadLetters(state.Dir, "")
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "\nreport")
	check(rows == st.Lines && distinct == rows, "PostgreSQL holds every line exactly once: %d rows, %d distinct ids, %d written", rows, distinct, st.Lines)
	ackedIDs := obs.IDs(config.SinkKafka)
	missing := 0
	for id := range ackedIDs {
		if !kafkaIDs[id] {
			missing++
		}
	}
	check(missing == 0 && len(kafkaIDs) == len(ackedIDs),
		"Kafka holds every record acknowledged to it: %d distinct (%d messages, %d repeats), %d missing", len(kafkaIDs), len(msgs), dups, missing)
	check(len(kafkaIDs) > 0 && int64(len(kafkaIDs)) < st.Lines, "the route change moved part of the traffic: %d of %d lines went to Kafka as well", len(kafkaIDs), st.Lines)
	check(orderOK, "per-account order in Kafka: %d accounts, every account's records contiguous and in append order", len(perAccount))
	check(dl == 0, "dead letters: %d", dl)
	for _, sink := range []string{config.SinkDB, config.SinkKafka} {
		s := acktrace.Summarize(sink, obs.Latencies(sink))
		fmt.Fprintf(out, "  latency append -> %s ack: p50 %v  p99 %v  max %v  (%d records)\n", sink,
			s.P50.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond), s.Max.Round(100*time.Microsecond), s.Count)
	}
	if !ok {
		return ErrChecksFailed
	}
	fmt.Fprintln(out, "all checks passed")
	return nil
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func jsonInt(b []byte, field string) int64 {
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return -1
	}
	rest := b[i+len(field):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return -1
	}
	v, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v
}
