package kafkasink_test

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/kafkasink"
)

// The arithmetic of CheckTime, without a broker: which event times a topic
// takes now, with the margin capped at half the retention, and the bounds
// exact (a record exactly at the oldest time taken is produced: one the
// broker would keep is never dead-lettered).
func TestCheckTime(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	day := 24 * time.Hour
	for _, tc := range []struct {
		name    string
		c       kafkasink.TopicConfig
		margin  time.Duration
		t       time.Time
		setting string // "" when taken
	}{
		{"inside retention less the margin", kafkasink.TopicConfig{Retention: week}, day, now.Add(-week + 25*time.Hour), ""},
		{"inside the margin", kafkasink.TopicConfig{Retention: week}, day, now.Add(-week + 23*time.Hour), kafkasink.SettingRetention},
		{"exactly at the bound", kafkasink.TopicConfig{Retention: week}, kafkasink.DefaultRetentionMargin, now.Add(-week + time.Hour), ""},
		{"a millisecond past the bound", kafkasink.TopicConfig{Retention: week}, kafkasink.DefaultRetentionMargin, now.Add(-week + time.Hour - time.Millisecond), kafkasink.SettingRetention},
		{"older than retention", kafkasink.TopicConfig{Retention: week}, day, now.Add(-30 * day), kafkasink.SettingRetention},
		{"short retention: margin is half of it", kafkasink.TopicConfig{Retention: 2 * time.Hour}, day, now.Add(-59 * time.Minute), ""},
		{"short retention, past half", kafkasink.TopicConfig{Retention: 2 * time.Hour}, day, now.Add(-61 * time.Minute), kafkasink.SettingRetention},
		{"default margin on an hour's retention: 30 min", kafkasink.TopicConfig{Retention: time.Hour}, kafkasink.DefaultRetentionMargin, now.Add(-29 * time.Minute), ""},
		{"default margin on an hour's retention, past 30 min", kafkasink.TopicConfig{Retention: time.Hour}, kafkasink.DefaultRetentionMargin, now.Add(-31 * time.Minute), kafkasink.SettingRetention},
		{"infinite retention", kafkasink.TopicConfig{}, day, now.Add(-10 * 365 * day), ""},
		{"append time: nothing to check", kafkasink.TopicConfig{Retention: time.Hour, AppendTime: true}, day, now.Add(-48 * time.Hour), ""},
		{"no time: produce time", kafkasink.TopicConfig{Retention: time.Hour}, day, time.Time{}, ""},
		{"refused as too old", kafkasink.TopicConfig{TimestampBefore: 48 * time.Hour}, day, now.Add(-30 * time.Hour), kafkasink.SettingTimestampBefore},
		{"taken despite before bound", kafkasink.TopicConfig{TimestampBefore: 48 * time.Hour}, day, now.Add(-23 * time.Hour), ""},
		{"refused as too new", kafkasink.TopicConfig{TimestampAfter: time.Hour}, day, now.Add(90 * time.Minute), kafkasink.SettingTimestampAfter},
		{"taken despite after bound", kafkasink.TopicConfig{TimestampAfter: time.Hour}, day, now.Add(30 * time.Minute), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := tc.c.CheckTime(tc.t, now, tc.margin)
			switch {
			case tc.setting == "" && lim != nil:
				t.Fatalf("refused: %+v", lim)
			case tc.setting != "" && (lim == nil || lim.Setting != tc.setting):
				t.Fatalf("got %+v, want refused by %s", lim, tc.setting)
			case lim != nil && lim.Oldest.IsZero() == lim.Newest.IsZero():
				t.Fatalf("limit %+v: exactly one of Oldest and Newest must be set", lim)
			}
		})
	}
	var nilConfig *kafkasink.TopicConfig
	if lim := nilConfig.CheckTime(now.Add(-10*365*day), now, day); lim != nil {
		t.Fatalf("a topic whose config was not read refused a record: %+v", lim)
	}
}

// BenchmarkCheckTime is the cost the retention check adds to every record
// the sink produces to a topic whose config it read.
func BenchmarkCheckTime(b *testing.B) {
	c := kafkasink.TopicConfig{Retention: 7 * 24 * time.Hour, TimestampAfter: time.Hour}
	now := time.Now()
	t := now.Add(-time.Minute)
	for b.Loop() {
		if c.CheckTime(t, now, kafkasink.DefaultRetentionMargin) != nil {
			b.Fatal("refused")
		}
	}
}
