package config

import (
	"errors"
	"strings"
	"testing"
)

// A table routed to a sink that is off is refused, naming the selector's
// key and both fixes; a selector of none, or the sink on, passes.
func TestCheckRoutesRefusesRoutesToASinkThatIsOff(t *testing.T) {
	t.Setenv("INGEST_DB_URL", "")
	t.Setenv("DATABASE_URL", "")
	const tables = `spool: {dir: /s}
tables:
  a:
    key: k
    columns: {k: bigint}
%s`
	tests := []struct {
		name, extra, sinks string
		want               []string // keys named, in order; none: passes
	}{
		{"db off, db defaulted to all", "", "kafka: {brokers: 'k:9092'}\n", []string{"tables.a.db"}},
		{"db off, db none", "    db: none\n    kafka: all\n", "kafka: {brokers: 'k:9092'}\n", nil},
		{"kafka off, kafka all", "    kafka: {percent: 10}\n", "db: {url: 'postgres://h/d'}\n", []string{"tables.a.kafka"}},
		{"kafka off, kafka defaulted to none", "", "db: {url: 'postgres://h/d'}\n", nil},
		{"both on", "    kafka: all\n", "db: {url: 'postgres://h/d'}\nkafka: {brokers: 'k:9092'}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(strings.Replace(tables, "%s", tt.extra, 1) + tt.sinks))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.CheckRoutes()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckRoutes = %v, want nil", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Path != tt.want[0] || !strings.Contains(err.Error(), ": none") {
				t.Fatalf("CheckRoutes = %v, want an *Error at %s naming the fix", err, tt.want[0])
			}
		})
	}
}
