package consume

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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
