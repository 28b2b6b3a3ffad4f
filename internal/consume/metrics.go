package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics of the consumer, under ingest_consume_*.
type metrics struct {
	consumed    *prometheus.CounterVec // by table
	committed   *prometheus.CounterVec // by table
	deadLetters *prometheus.CounterVec // by reason
	batch       prometheus.Histogram
	lag         *prometheus.GaugeVec // by topic, partition
	lagSeconds  *prometheus.GaugeVec // by topic, partition
	rebalances  *prometheus.CounterVec
	assigned    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, tt topicTables) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consume_records_consumed_total", Help: "Messages decoded into rows, per table (a message consumed again after a rebalance or restart counts again).",
		}, []string{"table"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consume_records_committed_total", Help: "Rows committed to PostgreSQL together with their partition's offset, per table.",
		}, []string{"table"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consume_dead_letters_total", Help: "Messages written to the dead letters, per reason.",
		}, []string{"reason"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ingest_consume_batch_seconds", Help: "From handing a batch to PostgreSQL to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_consume_lag_messages", Help: "Per assigned partition: the high watermark minus the next offset to commit to PostgreSQL.",
		}, []string{"topic", "partition"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_consume_lag_seconds", Help: "Per assigned partition with lag: age (by message timestamp) of the oldest message not yet committed to PostgreSQL.",
		}, []string{"topic", "partition"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consume_rebalances_total", Help: "Rebalance events: assigned, revoked, lost.",
		}, []string{"event"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ingest_consume_assigned_partitions", Help: "Partitions this consumer owns.",
		}),
	}
	reg.MustRegister(m.consumed, m.committed, m.deadLetters, m.batch, m.lag, m.lagSeconds, m.rebalances, m.assigned)
	// Zeros rather than gaps on dashboards.
	for _, ts := range tt {
		for _, t := range ts {
			m.consumed.WithLabelValues(t.Name)
			m.committed.WithLabelValues(t.Name)
		}
	}
	for _, e := range []string{"assigned", "revoked", "lost"} {
		m.rebalances.WithLabelValues(e)
	}
	return m
}

func (m *metrics) forget(topic string, partition int32) {
	p := strconv.Itoa(int(partition))
	m.lag.DeleteLabelValues(topic, p)
	m.lagSeconds.DeleteLabelValues(topic, p)
}

// readiness is one dependency's answer to /readyz.
type readiness struct {
	name  string
	check func(context.Context) error
}

// serveMetrics serves /metrics, /healthz and /readyz as `ingest run` does
// (internal/runner): /healthz is 200 while the process serves, /readyz
// 200 only while every check passes. listen "" or "off" disables it.
func serveMetrics(listen string, reg *prometheus.Registry, ready []readiness, log *slog.Logger) (string, func(), error) {
	if listen == "" || listen == "off" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		errs := make([]error, len(ready))
		var wg sync.WaitGroup
		for i, rd := range ready {
			wg.Go(func() { errs[i] = rd.check(ctx) })
		}
		wg.Wait()
		var b strings.Builder
		code := http.StatusOK
		for i, rd := range ready {
			if errs[i] != nil {
				code = http.StatusServiceUnavailable
				fmt.Fprintf(&b, "%s: not ready: %v\n", rd.name, errs[i])
			} else {
				fmt.Fprintf(&b, "%s: ready\n", rd.name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		if code == http.StatusOK {
			fmt.Fprint(w, "ready\n", b.String())
		} else {
			fmt.Fprint(w, "not ready\n", b.String())
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
