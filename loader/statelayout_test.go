package loader

import "testing"

// No Kafka, no PostgreSQL. The names under a state dir are what operators
// find and docs/operations.md names: a change here moves their files.
func TestStateLayoutNames(t *testing.T) {
	s := StateLayout{Dir: "/st"}
	for _, c := range []struct{ got, want string }{
		{s.Checkpoints(), "/st/checkpoints"},
		{s.DeadLetters(), "/st/deadletter"},
		{s.StreamDeadLetters("api"), "/st/deadletter/api"},
		{s.Archive("api"), "/st/archive/api"},
		{s.Backfill(), "/st/backfill"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
