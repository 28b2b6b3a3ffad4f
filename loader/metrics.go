package loader

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the loader's Prometheus series; docs/operations.md says which
// to alert on and how. Names start with ingest_; labels are stream, sink and
// reason.
type metrics struct {
	linesRead    *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	recordsAcked *prometheus.CounterVec
	batchesAcked *prometheus.CounterVec
	batchFailed  *prometheus.CounterVec
	batchLatency *prometheus.HistogramVec
	lagBytes     *prometheus.GaugeVec
	lagSeconds   *prometheus.GaugeVec
	filesRemoved *prometheus.CounterVec
	ignoredFiles *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		linesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_lines_read_total", Help: "Complete lines a sink's pipeline took from a stream; while sinks keep pace each line is read from disk and decoded once per stream and shared.",
		}, []string{"stream", "sink"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_lines_dead_lettered_total", Help: "Lines written to the dead-letter file, by reason; sink is empty for lines no sink could take.",
		}, []string{"stream", "sink", "reason"}),
		recordsAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_records_acked_total", Help: "Records a sink acknowledged as durable.",
		}, []string{"stream", "sink"}),
		batchesAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_batches_acked_total", Help: "Batches a sink acknowledged as durable.",
		}, []string{"stream", "sink"}),
		batchFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_batches_failed_total", Help: "Batches a sink failed; the pipeline replays from its checkpoint.",
		}, []string{"stream", "sink"}),
		batchLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_batch_latency_seconds", Help: "Time from handing a batch to a sink to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"sink"}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_lag_bytes", Help: "Bytes of the stream after the sink's checkpoint.",
		}, []string{"stream", "sink"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_lag_seconds", Help: "Age of the oldest line read but not yet acknowledged by the sink (0 when none).",
		}, []string{"stream", "sink"}),
		filesRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_files_retired_total", Help: "Offline files deleted or archived after every sink passed them.",
		}, []string{"stream", "action"}),
		ignoredFiles: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ingest_spool_ignored_files", Help: "Entries of a stream's directory the loader does not load, by reason (see ingest status).",
		}, []string{"stream", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.linesRead, m.deadLetters, m.recordsAcked, m.batchesAcked, m.batchFailed,
			m.batchLatency, m.lagBytes, m.lagSeconds, m.filesRemoved, m.ignoredFiles)
	}
	return m
}

func (m *metrics) deadLettered(stream, sink, reason string) {
	m.deadLetters.WithLabelValues(stream, sink, reason).Inc()
}
