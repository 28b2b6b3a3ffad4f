package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A backfill path holding no file it can read fails with what it found
// instead; entries it does not read beside files it does are reported with
// their reason, never skipped in silence. No services.
func TestResolveBackfillReportsWhatItDoesNotRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "api")
	if err := os.MkdirAll(filepath.Join(dir, "older"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000002-20261206T000000.000Z.ndjson.open"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nowhere", filepath.Join(dir, "link.ndjson")); err != nil {
		t.Fatal(err)
	}
	_, notRead, err := ResolveBackfillFiles([]string{dir}, "")
	if err == nil || !strings.Contains(err.Error(), "no sealed file found") {
		t.Fatalf("err = %v, want no sealed file found", err)
	}
	for _, want := range []string{NotReadActive, NotReadDirectory, NotReadSymlink} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if len(notRead) != 3 {
		t.Errorf("notRead = %v, want 3 entries", notRead)
	}

	sealed := filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson")
	if err := os.WriteFile(sealed, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	streams, notRead, err := ResolveBackfillFiles([]string{dir}, "")
	if err != nil || len(streams) != 1 || len(streams[0].Files) != 1 {
		t.Fatalf("streams %v, err %v: want the one sealed file", streams, err)
	}
	reasons := map[string]string{}
	for _, f := range notRead {
		reasons[filepath.Base(f.Path)] = f.Reason
	}
	if reasons["older"] != NotReadDirectory || reasons["link.ndjson"] != NotReadSymlink || len(reasons) != 3 {
		t.Fatalf("not read: %v", reasons)
	}
}
