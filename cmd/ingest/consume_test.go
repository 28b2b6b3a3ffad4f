package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// ingest consume's usage errors exit 2 naming the problem, before
// connecting to anything (the config points at ports nothing listens on).
func TestConsumeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	const db = "db: {url: \"postgres://ingest@127.0.0.1:1/app\"}\n"
	cfg := filepath.Join(dir, "ingest.yaml")
	writeFile(t, cfg, offlineConfig(dir, db+"kafka: {brokers: \"127.0.0.1:1\"}\n"))
	oauth := filepath.Join(dir, "oauth.yaml")
	writeFile(t, oauth, offlineConfig(dir, db+
		"kafka: {brokers: \"127.0.0.1:1\", properties: {security.protocol: SASL_SSL, sasl.mechanism: OAUTHBEARER}}\n"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"consume"}, "--config"},
		{[]string{"consume", "--config", cfg, "--consumer-property", "nokey"}, "--consumer-property"},
		{[]string{"consume", "--config", cfg, "--tables", "nosuch"}, `no table "nosuch"`},
		{[]string{"consume", "--config", cfg, "--since", "yesterday-ish"}, "--since"},
		{[]string{"consume", "--config", cfg, "--dead-letter-topic", "x", "--dead-letter-file", "y"}, "exclusive"},
		{[]string{"consume", "--config", cfg, "--kafka-brokers", ""}, "kafka.brokers"},
		{[]string{"consume", "--config", oauth}, "sasl.oauthbearer.method: oidc"},
	} {
		out, code := ingest(t, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("ingest %s: exit %d, output %q; want 2 naming %s", strings.Join(c.args, " "), code, out, c.want)
		}
	}
	if out, code := ingest(t, "consume", "--help"); code != 0 || !strings.Contains(out, "--since") || !strings.Contains(out, "Examples:") {
		t.Errorf("consume --help: exit %d, output %q", code, out)
	}
}
