package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dualwrite/ingest/internal/config"
)

// No Kafka, no PostgreSQL: Diff compares two parsed configs.
func TestDiffNamesRouteChangesAndRestartKeys(t *testing.T) {
	parse := func(kafka, linger, dir string) *config.Config {
		c, err := config.Parse(fmt.Appendf(nil, `spool: {dir: %s}
batch: {linger: %s}
tables:
  ev: {key: a, columns: {a: bigint}, db: all, kafka: %s}
`, dir, linger, kafka))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse("none", "20ms", "/s")
	changes, restart := config.Diff(a, parse("{percent: 30}", "50ms", "/other"))
	got := strings.Join(changes, "; ")
	if !strings.Contains(got, "tables.ev.kafka: none -> {percent: 30}") || !strings.Contains(got, "batch:") {
		t.Errorf("changes %q", got)
	}
	if strings.Join(restart, ",") != "spool" {
		t.Errorf("restart keys %v, want spool", restart)
	}
	if c, r := config.Diff(a, parse("none", "20ms", "/s")); len(c)+len(r) != 0 {
		t.Errorf("identical configs differ: %v %v", c, r)
	}
}
