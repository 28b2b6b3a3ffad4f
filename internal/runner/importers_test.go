package runner

import (
	"os/exec"
	"strings"
	"testing"
)

// No Kafka, no PostgreSQL: `go list` over the module. Only cmd/ingest
// may import this package (its non-test files): every other command builds
// its sinks through internal/sinks and reads routes, the loader config and
// the reload diff from internal/config, so that none depends on the live
// loop's assembly (its background Kafka start, health endpoints, reload).
func TestOnlyCmdIngestImportsRunner(t *testing.T) {
	const self = "github.com/dualwrite/ingest/internal/runner"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/dualwrite/ingest/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] == "github.com/dualwrite/ingest/cmd/ingest" {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == self {
				t.Errorf("%s imports %s: take what it needs from internal/config or internal/sinks instead", fields[0], self)
			}
		}
	}
}
