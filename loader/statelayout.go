package loader

import "path/filepath"

// StateLayout is the one description of what lives under a state dir
// (spool.state_dir for `ingest run`, a job's generation dir for a
// backfill), so the loader that writes these paths and the commands that
// read them (status, doctor, the demo, backfill) cannot disagree:
//
//	checkpoints/<sink>/<stream>.json   FileStore, for sinks that keep none themselves
//	deadletter/<stream>/<date>.ndjson  lines no sink could take, with the reason
//	archive/<stream>/                  sealed files kept for Config.Retention
//	backfill/<job>/                    backfill jobs (spool.state_dir only)
type StateLayout struct {
	Dir string
}

// DefaultStateSubdir is the state dir's name under the spool dir when none
// is configured ([Config.StateDir], spool.state_dir). It starts with a dot
// so that stream discovery skips it.
const DefaultStateSubdir = ".ingest"

// Checkpoints is the root of the file checkpoints ([FileStore.Dir]).
func (s StateLayout) Checkpoints() string { return filepath.Join(s.Dir, "checkpoints") }

// DeadLetters is the root of the dead-letter files, one directory per stream.
func (s StateLayout) DeadLetters() string { return filepath.Join(s.Dir, "deadletter") }

// StreamDeadLetters is one stream's dead-letter directory.
func (s StateLayout) StreamDeadLetters(stream string) string {
	return filepath.Join(s.DeadLetters(), stream)
}

// Archive is one stream's archive of sealed files.
func (s StateLayout) Archive(stream string) string { return filepath.Join(s.Dir, "archive", stream) }

// Backfill is the root of the backfill jobs' state.
func (s StateLayout) Backfill() string { return filepath.Join(s.Dir, "backfill") }
