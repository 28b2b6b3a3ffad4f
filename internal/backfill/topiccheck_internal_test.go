package backfill

import (
	"testing"
	"time"
)

// The limits' arithmetic, without a broker: which event times a topic
// takes now, with the margin capped at half the retention.
func TestTopicLimitsCheck(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	for _, tc := range []struct {
		name    string
		l       topicLimits
		t       time.Time
		setting string // "" when taken
	}{
		{"inside retention less the margin", topicLimits{retention: week}, now.Add(-week + 25*time.Hour), ""},
		{"inside the margin", topicLimits{retention: week}, now.Add(-week + 23*time.Hour), "retention.ms"},
		{"older than retention", topicLimits{retention: week}, now.Add(-30 * 24 * time.Hour), "retention.ms"},
		{"short retention: margin is half of it", topicLimits{retention: 2 * time.Hour}, now.Add(-59 * time.Minute), ""},
		{"short retention, past half", topicLimits{retention: 2 * time.Hour}, now.Add(-61 * time.Minute), "retention.ms"},
		{"infinite retention", topicLimits{}, now.Add(-10 * 365 * 24 * time.Hour), ""},
		{"append time: nothing to check", topicLimits{retention: time.Hour, appendTime: true}, now.Add(-48 * time.Hour), ""},
		{"no time: produce time", topicLimits{retention: time.Hour}, time.Time{}, ""},
		{"refused as too old", topicLimits{before: 48 * time.Hour}, now.Add(-30 * time.Hour), "message.timestamp.before.max.ms"},
		{"taken despite before bound", topicLimits{before: 48 * time.Hour}, now.Add(-23 * time.Hour), ""},
		{"refused as too new", topicLimits{after: time.Hour}, now.Add(90 * time.Minute), "message.timestamp.after.max.ms"},
		{"taken despite after bound", topicLimits{after: time.Hour}, now.Add(30 * time.Minute), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.l.check(tc.t, now, DefaultRetentionMargin, "api/f:0", "b:9092")
			switch {
			case tc.setting == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tc.setting != "" && (e == nil || e.Setting != tc.setting):
				t.Fatalf("got %v, want refused by %s", e, tc.setting)
			case e != nil && (e.Error() == "" || !e.Time.Equal(tc.t)):
				t.Fatalf("error %+v", e)
			}
		})
	}
}
