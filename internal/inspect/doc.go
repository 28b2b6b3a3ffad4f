// Package inspect looks at a deployment without loading anything: where
// each sink's checkpoint is read from (for `ingest status`), and the
// checklist of `ingest doctor`, which explains a loader that is quiet.
//
// The doctor reuses the checks the loader and the sinks run themselves —
// the config loader, [loader.Status] (files recognised, ignored, pending),
// the PostgreSQL sink's ping and table check, the Kafka sink's topic check
// at start-up — so it reports what `ingest run` would find, not a second
// opinion. Each check prints one line, and a fix when it fails.
package inspect
