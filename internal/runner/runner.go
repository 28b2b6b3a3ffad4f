// Package runner assembles `ingest run` from a config: the schema, the
// enabled sinks (PostgreSQL, Kafka), the loader with each table's cutover
// routes, the metrics and health endpoints, and config reload. Only
// cmd/ingest imports it (for `ingest run`, and as the demo's loader), so
// that no other command depends on the live loop's assembly; what they
// share with it (routes, the config diff, the loader config) lives in
// internal/config. The logic of each part lives in its own package.
package runner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/health"
	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Options are what the caller adds to the config.
type Options struct {
	// ConfigPath is watched for changes when set; Reload also triggers a
	// re-read (the CLI sends SIGHUP there).
	ConfigPath string
	Reload     <-chan struct{}
	// Load re-reads the config at a reload: the file with the caller's
	// overrides (flags) applied as at start, so that a key a flag sets is
	// not taken for a change of the file that needs a restart. Nil reads
	// ConfigPath alone.
	Load   func() (*config.Config, error)
	Logger *slog.Logger // nil: discard
	// Registry receives the metrics; nil makes a fresh one.
	Registry *prometheus.Registry
	// CreateTopics creates missing Kafka topics (development only).
	CreateTopics bool
	// WrapSink lets the demo observe acknowledgements.
	WrapSink func(loader.Sink) loader.Sink
	// Started, when set, is called once the loader runs, with the metrics
	// listener's address ("" when off). The Kafka sink may still be
	// starting then, in the background (see kafkasink.Start).
	Started func(metricsAddr string)
	// Loader, when set, is given the loader before it runs, for a caller
	// that reads its Stats (the demo waits for its lag to reach zero).
	Loader func(*loader.Loader)
}

// StartupError marks a failure to start (bad config values, a sink that
// cannot connect, a missing topic): the CLI reports it and exits 1. They
// come before loading started, without having touched any checkpoint,
// with one exception: when no Kafka broker accepted a connection at start,
// the Kafka sink's topic check runs beside loading (see kafkasink.Start), so a
// missing topic found once a broker is back ends Run after the other sinks
// may have loaded, each up to its own checkpoint, which is safe.
type StartupError struct{ Err error }

func (e *StartupError) Error() string { return e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

// Run loads until ctx ends; it returns nil after a graceful shutdown.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	sch, err := cfg.Schema()
	if err != nil {
		return &StartupError{err}
	}
	if !cfg.DBEnabled() && !cfg.KafkaEnabled() {
		return &StartupError{&config.Error{Path: "db.url, kafka.brokers", Msg: "no sink enabled: set db.url (or INGEST_DB_URL) and/or kafka.brokers"}}
	}
	if err := cfg.CheckRoutes(); err != nil {
		return &StartupError{err}
	}

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	so := sinks.Options{Mode: sinks.Live, Logger: log}
	if o.WrapSink != nil {
		so.Wrap = func(_ string, s loader.Sink) loader.Sink { return o.WrapSink(s) }
	}
	if cfg.KafkaEnabled() {
		createTopics := o.CreateTopics
		brokers := cfg.Kafka.Brokers
		if brokers == "embedded" {
			mc, err := mockkafka.New(1)
			if err != nil {
				return &StartupError{fmt.Errorf("kafka.brokers embedded: %w", err)}
			}
			closers = append(closers, mc.Close)
			brokers, createTopics = mc.Bootstrap(), true
			for _, t := range sch.Tables() {
				if err := mc.CreateTopic(t.Topic, 4); err != nil {
					return &StartupError{fmt.Errorf("embedded kafka: create topic %s: %w", t.Topic, err)}
				}
			}
			log.Warn("kafka.brokers is embedded: messages go to an in-process mock cluster and vanish on exit (development only)", "bootstrap", brokers)
		}
		so.TuneKafka = func(c *kafkasink.Config) { c.Brokers, c.CreateTopics = brokers, createTopics }
	}
	set, err := sinks.Build(ctx, cfg, sch, so)
	if err != nil {
		return &StartupError{err}
	}
	closers = append(closers, set.Close)
	specs := set.Specs
	// In Live mode the Kafka sink starts in the background (see
	// kafkasink.Start), so that an outage at start never holds up
	// PostgreSQL; Build already returned a missing topic a reachable
	// broker reported.
	ks := set.Lazy
	var ready []health.Check
	if set.DB != nil {
		ready = append(ready, health.Check{Name: config.SinkDB, Check: set.DB.Ping})
	}
	if ks != nil {
		ready = append(ready, health.Check{Name: config.SinkKafka, Check: ks.Ready})
	}

	l, err := loader.New(config.LoaderConfig(cfg, sch, log, reg), specs...)
	if err != nil {
		return &StartupError{err}
	}
	if o.Loader != nil {
		o.Loader(l)
	}
	rm := newRouteMetrics(reg)
	rm.set(cfg)

	addr, stopHTTP, err := health.Serve(cfg.Metrics.Listen, reg, ready, log)
	if err != nil {
		return &StartupError{fmt.Errorf("metrics.listen: %w", err)}
	}
	defer stopHTTP()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { reloadLoop(runCtx, o, cfg, l, rm, log) })
	// A config error or missing topic found by the Kafka sink's background
	// start stops the run: waiting would not fix it.
	var kafkaFatal atomic.Pointer[error]
	if ks != nil {
		wg.Go(func() {
			select {
			case err := <-ks.Fatal():
				kafkaFatal.Store(&err)
				cancel()
			case <-runCtx.Done():
			}
		})
	}

	if o.Started != nil {
		o.Started(addr)
	}
	log.Info("loading", "spool", cfg.Spool.Dir, "sinks", sinkNames(specs), "metrics", addr)
	err = l.Run(runCtx)
	cancel()
	if kerr := kafkaFatal.Load(); kerr != nil {
		return &StartupError{fmt.Errorf("kafka sink (kafka.brokers): %w", *kerr)}
	}
	return err
}

func sinkNames(specs []loader.SinkSpec) string {
	var names []string
	for _, s := range specs {
		names = append(names, s.Sink.Name())
	}
	return strings.Join(names, ",")
}

// routeMetrics publish the route configuration: per table and sink, the
// selected percent and the number of listed and excluded accounts.
type routeMetrics struct {
	percent  *prometheus.GaugeVec
	accounts *prometheus.GaugeVec
	reloads  *prometheus.CounterVec
}

func newRouteMetrics(reg prometheus.Registerer) *routeMetrics {
	m := &routeMetrics{
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_route_percent", Help: "Percent of accounts (by stable hash) routed to a sink, per table.",
		}, []string{"table", "sink"}),
		accounts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_route_accounts", Help: "Accounts listed in a table's selector for a sink (list=accounts or exclude).",
		}, []string{"table", "sink", "list"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_config_reloads_total", Help: "Config reloads, by result (applied, rejected, unchanged).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.percent, m.accounts, m.reloads)
	return m
}

func (m *routeMetrics) set(cfg *config.Config) {
	m.percent.Reset()
	m.accounts.Reset()
	for name, t := range cfg.Tables {
		for sink, sel := range map[string]config.Selector{config.SinkDB: t.DB, config.SinkKafka: t.Kafka} {
			m.percent.WithLabelValues(name, sink).Set(sel.Percent)
			m.accounts.WithLabelValues(name, sink, "accounts").Set(float64(len(sel.Accounts)))
			m.accounts.WithLabelValues(name, sink, "exclude").Set(float64(len(sel.Exclude)))
		}
	}
}

// reloadLoop re-reads the config file when it changes or on Reload, and
// applies new routes and batch settings; anything else needs a restart. An
// invalid file is rejected with its reason and the old config stays.
func reloadLoop(ctx context.Context, o Options, cur *config.Config, l *loader.Loader, rm *routeMetrics, log *slog.Logger) {
	var events <-chan fsnotify.Event
	// last is the file's content as last read: a file event reloads only
	// when it changed. It starts unknown: the file may have changed since
	// the caller read it (start-up takes seconds), so the first event in
	// the directory reloads, and the config diff says whether anything
	// changed.
	var last []byte
	load := o.Load
	if load == nil {
		load = func() (*config.Config, error) { return config.Load(o.ConfigPath) }
	}
	if o.ConfigPath != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			defer w.Close()
			// Watch the directory, not the file: editors and config
			// management replace the file by rename, and a Kubernetes
			// ConfigMap swaps a symlink (..data) beside it, which a watch
			// on the file itself loses. A config path that is a symlink
			// into another directory gets that directory watched too.
			if err := w.Add(dirOf(o.ConfigPath)); err == nil {
				events = w.Events
				if real, err := filepath.EvalSymlinks(o.ConfigPath); err == nil && dirOf(real) != dirOf(o.ConfigPath) {
					_ = w.Add(dirOf(real)) // best effort: the directory watch above sees a swapped link
				}
			}
		}
		if events == nil {
			log.Warn("config file changes are not watched; send SIGHUP to reload", "config", o.ConfigPath)
		}
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			// Any entry of the directory: the file itself, or a link it
			// goes through. Writers often truncate then write: wait for
			// the file to settle, then look whether it changed.
			debounce.Reset(100 * time.Millisecond)
			continue
		case <-debounce.C:
			data, err := os.ReadFile(o.ConfigPath)
			if err == nil && bytes.Equal(data, last) {
				continue // another file of the directory, or the same content
			}
			last = data
		case <-o.Reload:
			last, _ = os.ReadFile(o.ConfigPath)
		}
		if o.ConfigPath == "" {
			continue
		}
		next, err := load()
		if err == nil {
			// A route to a sink this run does not have would retire
			// files past records that sink never got.
			err = next.CheckRoutes()
		}
		if err != nil {
			rm.reloads.WithLabelValues("rejected").Inc()
			log.Error("config reload rejected; the previous config stays in force", "config", o.ConfigPath, "err", err)
			continue
		}
		changes, restart := config.Diff(cur, next)
		for _, r := range restart {
			log.Warn("config change needs a restart; ignored until then", "key", r)
		}
		if len(changes) == 0 {
			rm.reloads.WithLabelValues("unchanged").Inc()
			log.Info("config reloaded: no route or batch change", "config", o.ConfigPath)
			continue
		}
		// Only routes and batch settings are taken from the new file.
		applied := *cur
		applied.Tables = map[string]*config.Table{}
		for name, t := range cur.Tables {
			nt := *t
			if n, ok := next.Tables[name]; ok {
				nt.DB, nt.Kafka = n.DB, n.Kafka
			}
			applied.Tables[name] = &nt
		}
		applied.Batch = next.Batch
		l.SetBatch(config.BatchConfig(&applied))
		l.SetRoutes(config.Routes(&applied))
		rm.set(&applied)
		cur = &applied
		rm.reloads.WithLabelValues("applied").Inc()
		for _, c := range changes {
			log.Info("config reloaded", "change", c)
		}
	}
}

func dirOf(path string) string { return filepath.Dir(cleanPath(path)) }

func cleanPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}
