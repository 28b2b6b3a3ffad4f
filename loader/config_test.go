package loader

import (
	"testing"
	"time"
)

// Zero and negative sizes and durations take the documented defaults; a
// positive one is kept. No Kafka or PostgreSQL: only the config.
func TestConfigDefaults(t *testing.T) {
	for _, c := range []struct {
		name string
		in   int // every size and duration field set to this
		keep bool
	}{{"zero", 0, false}, {"negative", -1, false}, {"positive", 7, true}} {
		t.Run(c.name, func(t *testing.T) {
			d := time.Duration(c.in)
			cfg, err := Config{Dir: t.TempDir(), Schema: testSchema(t),
				Streams:      []StreamConfig{{Name: "api", SealAfter: d}},
				Batch:        BatchConfig{MaxRecords: c.in, MaxBytes: c.in, Linger: d},
				PollInterval: d, MaxLineBytes: c.in, ShutdownTimeout: d, CacheBytes: c.in,
			}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				field    string
				got, def int64
			}{
				{"Batch.MaxRecords", int64(cfg.Batch.MaxRecords), DefaultMaxRecords},
				{"Batch.MaxBytes", int64(cfg.Batch.MaxBytes), DefaultMaxBytes},
				{"Batch.Linger", int64(cfg.Batch.Linger), int64(DefaultLinger)},
				{"Streams[0].SealAfter", int64(cfg.Streams[0].SealAfter), int64(DefaultSealAfter)},
				{"PollInterval", int64(cfg.PollInterval), int64(DefaultPollInterval)},
				{"MaxLineBytes", int64(cfg.MaxLineBytes), DefaultMaxLineBytes},
				{"ShutdownTimeout", int64(cfg.ShutdownTimeout), int64(DefaultShutdownTimeout)},
				{"CacheBytes", int64(cfg.CacheBytes), DefaultCacheBytes},
			} {
				want := f.def
				if c.keep {
					want = int64(c.in)
				}
				if f.got != want {
					t.Errorf("%s set to %d: got %d, want %d", f.field, c.in, f.got, want)
				}
			}
		})
	}
}
