package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

// writeSealed writes a stream directory of sealed rotatefile-named files,
// perFile lines each, seq 0..files*perFile-1, accounts seq%accounts; and
// one active ".open" file that a backfill must leave alone. It returns the
// stream directory.
func writeSealed(tb testing.TB, root, stream string, files, perFile, accounts int) string {
	tb.Helper()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for f := range files {
		name := rotatefile.FileName(uint64(f+1), created.Add(time.Duration(f)*time.Minute), ".ndjson")
		writeStreamFile(tb, root, stream, name, evLines(f*perFile, (f+1)*perFile, accounts, "p"))
	}
	active := rotatefile.FileName(uint64(files+1), created.Add(time.Hour), ".ndjson") + rotatefile.ActiveSuffix
	return writeStreamFile(tb, root, stream, active, evLine(0, -1, "active")+"\n")
}

func mustResolve(tb testing.TB, paths ...string) []BackfillStream {
	tb.Helper()
	streams, _, err := ResolveBackfill(paths, "")
	if err != nil {
		tb.Fatal(err)
	}
	return streams
}

func runBackfill(tb testing.TB, ctx context.Context, cfg BackfillConfig, sinks ...SinkSpec) (*Backfill, error) {
	tb.Helper()
	b, err := NewBackfill(cfg, sinks...)
	if err != nil {
		tb.Fatal(err)
	}
	return b, b.Run(ctx)
}

func TestBackfillReplaysSealedFilesExactlyOnceInOrder(t *testing.T) {
	root := t.TempDir()
	dir := writeSealed(t, root, "api", 7, 300, 13)
	before := spoolFiles(t, dir)
	own := newMemSink(t, "backfill-own", true)
	files := newMemSink(t, "backfill-files", false)
	files.async = true
	state := t.TempDir()
	cfg := BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: state, Batch: BatchConfig{MaxRecords: 128}}
	b, err := runBackfill(t, context.Background(), cfg, own.spec(), files.spec())
	if err != nil {
		t.Fatal(err)
	}
	const n = 7 * 300
	checkExactlyOnceInOrder(t, own.name, own.records(), n)
	checkExactlyOnceInOrder(t, files.name, files.records(), n)
	pr := b.Progress()
	if !pr.Complete || pr.DoneBytes != pr.TotalBytes || pr.Files != 7 || pr.LinesRead != n || pr.DeadLettered != 0 {
		t.Fatalf("progress %+v", pr)
	}
	for _, sp := range pr.Sinks {
		if sp.Delivered != n || sp.LinesRead != n || !sp.Complete || sp.DoneBytes != pr.TotalBytes {
			t.Errorf("sink progress %+v", sp)
		}
	}
	if seq := own.records()[n-1].Seq; seq != n-1 {
		t.Fatalf("last record seq %d: the active file was read", seq)
	}
	// The job fits in the stream's cache, so however the two pipelines
	// are scheduled each line is read and decoded once for both.
	if st := b.Stats().Streams["api"]; st.LinesRead != n || st.LinesDecoded != n || st.SegmentsShared == 0 {
		t.Fatalf("backfill stats %+v: want %d lines read and decoded once each, segments shared", st, n)
	}
	// The files are the backfill's input, never retired.
	if after := spoolFiles(t, dir); !slices.Equal(before, after) {
		t.Fatalf("files changed: %v -> %v", before, after)
	}
	// The loader's file store kept the other sink's checkpoint in the
	// backfill's state dir, at the end of the last file.
	pos, ok, err := FileStore{Dir: filepath.Join(state, "checkpoints")}.Load(context.Background(), files.name, "api")
	if err != nil || !ok || pos.File != filepath.Base(cfg.Streams[0].Files[6]) {
		t.Fatalf("file checkpoint %v %v %v", pos, ok, err)
	}

	// A second run with the same sinks finds everything done.
	b, err = runBackfill(t, context.Background(), cfg, own.spec(), files.spec())
	if err != nil {
		t.Fatal(err)
	}
	if own.count() != n || files.count() != n || !b.Progress().Complete || b.Progress().LinesRead != 0 {
		t.Fatalf("rerun added records: %d %d, progress %+v", own.count(), files.count(), b.Progress())
	}
}

func TestBackfillFilterRoutesAndDeadLetters(t *testing.T) {
	root := t.TempDir()
	dir := writeSealed(t, root, "api", 2, 100, 10)
	// A bad line in the middle and a torn tail in an extra file.
	bad := rotatefile.FileName(99, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ".ndjson")
	os.WriteFile(filepath.Join(dir, bad), []byte(evLine(3, 1000, "x")+"\nnot json\n"+evLine(4, 1001, "x")+"\n{\"table\":\"ev\""), 0o640)
	state := t.TempDir()
	sink := newMemSink(t, "bf", true)
	spec := sink.spec()
	spec.Route = func(_ *schema.Table, key string) bool { return key != "4" } // the config does not route 4 here
	cfg := BackfillConfig{
		Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: state,
		Filter: func(r *schema.Record) bool { return r.Key == "3" || r.Key == "4" },
	}
	b, err := runBackfill(t, context.Background(), cfg, spec)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int
	for _, r := range sink.records() {
		if r.Account != "3" {
			t.Fatalf("record of account %s delivered", r.Account)
		}
		seqs = append(seqs, r.Seq)
	}
	want := []int{3, 13, 23, 33, 43, 53, 63, 73, 83, 93, 103, 113, 123, 133, 143, 153, 163, 173, 183, 193, 1000}
	if !slices.Equal(seqs, want) {
		t.Fatalf("delivered %v, want %v", seqs, want)
	}
	pr := b.Progress()
	sp := pr.Sinks[0]
	// 203 complete lines (the torn tail is not one): 1 invalid, 21 of
	// account 3 delivered, 21 of account 4 not routed, 160 filtered.
	if sp.LinesRead != 203 || sp.Delivered != 21 || sp.NotRouted != 21 || sp.Filtered != 160 || pr.DeadLettered != 2 || !pr.Complete {
		t.Fatalf("progress %+v %+v", pr, sp)
	}
	dls := readDeadLetters(t, state, "api")
	if len(dls) != 2 || dls[0].Reason != "malformed_json" || dls[1].Reason != ReasonTruncatedLine {
		t.Fatalf("dead letters %+v", dls)
	}
}

func TestBackfillInterruptedResumes(t *testing.T) {
	root := t.TempDir()
	dir := writeSealed(t, root, "api", 4, 250, 7)
	state := t.TempDir()
	own := newMemSink(t, "bf-own", true)
	files := newMemSink(t, "bf-files", false)
	cfg := BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: state, Rate: 2000, Batch: BatchConfig{MaxRecords: 50}}
	ctx, cancel := context.WithCancel(context.Background())
	b, err := NewBackfill(cfg, own.spec(), files.spec())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return own.count() > 300 && files.count() > 300 }, "backfill under way")
	cancel()
	if err := <-done; !errors.Is(err, ErrBackfillIncomplete) {
		t.Fatalf("interrupted Run: %v, want ErrBackfillIncomplete", err)
	}
	pr := b.Progress()
	if pr.Complete || pr.DoneBytes == 0 || pr.DoneBytes >= pr.TotalBytes {
		t.Fatalf("interrupted progress %+v", pr)
	}
	firstOwn, firstFiles := own.count(), files.count()
	if pr.ResumedBytes != 0 {
		t.Fatalf("first run resumed %d bytes", pr.ResumedBytes)
	}

	cfg.Rate = 0
	b, err = runBackfill(t, context.Background(), cfg, own.spec(), files.spec())
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	checkExactlyOnceInOrder(t, own.name, own.records(), n)
	// The file-store sink resumes from its checkpoint too: what it had
	// acknowledged is not sent again (its checkpoint was saved on ack).
	checkExactlyOnceInOrder(t, files.name, files.records(), n)
	pr = b.Progress()
	byName := map[string]BackfillSinkProgress{}
	for _, sp := range pr.Sinks {
		byName[sp.Sink] = sp
	}
	if !pr.Complete || pr.ResumedBytes == 0 || byName[own.name].Delivered != int64(n-firstOwn) || byName[files.name].Delivered != int64(n-firstFiles) {
		t.Fatalf("resumed progress %+v (first run delivered %d, %d)", pr, firstOwn, firstFiles)
	}
}

func TestBackfillRateLimit(t *testing.T) {
	dir := writeSealed(t, t.TempDir(), "api", 2, 400, 3)
	sink := newMemSink(t, "bf", true)
	start := time.Now()
	b, err := runBackfill(t, context.Background(), BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: t.TempDir(), Rate: 1000}, sink.spec())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	checkExactlyOnceInOrder(t, sink.name, sink.records(), 800)
	// 800 lines at 1000 lines/s: about 0.8 s.
	if took < 600*time.Millisecond || took > 5*time.Second {
		t.Fatalf("800 lines at --rate 1000 took %v", took)
	}
	if sink.batches.Load() < 5 {
		t.Fatalf("%d batches: a paced backfill should hand batches over as it goes", sink.batches.Load())
	}
	t.Logf("800 lines at 1000/s: %v, %d batches, %+v", took, sink.batches.Load(), b.Progress())
}

func TestBackfillEmptyFilesAndChangedJob(t *testing.T) {
	root := t.TempDir()
	var dir string
	for i := range 3 {
		dir = writeStreamFile(t, root, "api", rotatefile.FileName(uint64(i+1), time.Now(), ".ndjson"), "")
	}
	sink := newMemSink(t, "bf", false)
	state := t.TempDir()
	b, err := runBackfill(t, context.Background(), BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: state}, sink.spec())
	if err != nil || !b.Progress().Complete {
		t.Fatalf("empty files: %v %+v", err, b.Progress())
	}

	// A checkpoint naming a file the job no longer has stops the run.
	full := writeSealed(t, root, "other", 2, 10, 2)
	sink2 := newMemSink(t, "bf2", false)
	cfg := BackfillConfig{Streams: mustResolve(t, full), Schema: testSchema(t), StateDir: state}
	if _, err := runBackfill(t, context.Background(), cfg, sink2.spec()); err != nil {
		t.Fatal(err)
	}
	cfg.Streams[0].Files = cfg.Streams[0].Files[:1]
	if _, err := runBackfill(t, context.Background(), cfg, sink2.spec()); !errors.Is(err, ErrCheckpointBeyondFile) {
		t.Fatalf("changed file list: %v, want ErrCheckpointBeyondFile", err)
	}
}

func TestResolveBackfill(t *testing.T) {
	root := t.TempDir()
	api := writeSealed(t, root, "api", 3, 1, 1)
	web := writeSealed(t, root, "web", 2, 1, 1)
	archive := writeSealed(t, filepath.Join(root, "archive"), "api", 0, 0, 1) // only an active file
	apiFiles, _ := filepath.Glob(filepath.Join(api, "*.ndjson"))
	os.WriteFile(filepath.Join(api, ".lock"), nil, 0o640)

	streams, skipped, err := ResolveBackfill([]string{web, filepath.Join(api, "*"), apiFiles[0]}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 || streams[0].Name != "api" || len(streams[0].Files) != 3 || streams[1].Name != "web" || len(streams[1].Files) != 2 {
		t.Fatalf("streams %+v", streams)
	}
	if !slices.IsSortedFunc(streams[0].Files, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) }) {
		t.Fatalf("files not in creation order: %v", streams[0].Files)
	}
	if len(skipped) != 2 || !strings.HasSuffix(skipped[0], rotatefile.ActiveSuffix) {
		t.Fatalf("skipped %v", skipped)
	}
	// Every file under one name with --stream.
	streams, _, err = ResolveBackfill([]string{web, api}, "api")
	if err == nil {
		t.Fatalf("same names from two directories into one stream: %+v", streams)
	}
	if streams, _, err = ResolveBackfill([]string{web}, "renamed"); err != nil || streams[0].Name != "renamed" {
		t.Fatalf("--stream: %+v %v", streams, err)
	}
	actives, _ := filepath.Glob(filepath.Join(archive, "*.open"))
	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"active file named", []string{actives[0]}, "active file"},
		{"only active files", []string{archive}, "no sealed file"},
		{"no match", []string{filepath.Join(root, "nope*")}, "matches no file"},
		{"missing", []string{filepath.Join(root, "nope")}, "no such file"},
		{"nothing", nil, "no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ResolveBackfill(tc.paths, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, _, err := ResolveBackfill([]string{actives[0]}, ""); !errors.Is(err, ErrActiveFile) {
		t.Fatalf("active file: %v", err)
	}
}

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := Window{Since: t0, Until: t0.Add(time.Hour)}
	for _, tc := range []struct {
		w    Window
		t    time.Time
		want bool
	}{
		{w, t0, true},
		{w, t0.Add(-time.Nanosecond), false},
		{w, t0.Add(time.Hour - time.Nanosecond), true},
		{w, t0.Add(time.Hour), false},
		{w, time.Time{}, false},
		{Window{}, time.Time{}, true},
		{Window{Since: t0}, t0.Add(1000 * time.Hour), true},
		{Window{Until: t0}, time.Unix(0, 0), true},
		{Window{Until: t0}, time.Time{}, false},
	} {
		if got := tc.w.Contains(tc.t); got != tc.want {
			t.Errorf("%v.Contains(%v) = %v", tc.w, tc.t, got)
		}
	}
	if s := w.String(); s != "[2026-01-01T00:00:00Z, 2026-01-01T01:00:00Z)" {
		t.Errorf("String %q", s)
	}
}
