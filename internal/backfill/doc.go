// Package backfill is `ingest backfill`: it replays sealed or archived
// offline files into the sinks of a config, for the accounts and the time
// window asked, without touching the live loader's checkpoints, and can be
// interrupted and resumed (docs/operations.md, "ingest backfill").
//
// # How the pieces fit
//
// [Run] checks the [Options] against the config (an *[ArgError] names the
// flag or key at fault), resolves the paths with loader.ResolveBackfill
// (files, directories, globs; active ".open" files skipped, or refused when
// named), builds the chosen sinks with internal/sinks, as `ingest run`
// does (the same dbsink and kafkasink configs, the config's selectors as
// routes; backfill's own batches in flight) and hands everything
// to loader.NewBackfill, which runs the loader's own pipelines over the
// fixed file list: the same decoding, routing, batching, dead letters and
// checkpoints as live loading. A record reaches a sink when its account is
// routed there by the config's selector and it passes the job's filter
// (--accounts, and --since/--until on the table's time field; a record
// without a time is outside any window).
//
// # Jobs and their checkpoints
//
// A job is identified by a hash of its arguments (the absolute paths as
// given, --stream, --accounts and the window; not the rate, which may change
// between runs). Its state lives in <state_dir>/backfill/<id>/: job.json,
// a lock that keeps two runs of the same job apart, and per generation a
// directory g<N>/ with the file checkpoints (Kafka) and the dead letters.
// Sinks are named backfill-<db|kafka>-<id> (with -g<N> after a restart),
// which is the key of their checkpoints: the PostgreSQL sink keeps its
// checkpoint in the database, in the same transaction as the rows, under
// that name, so the live loader's "db" and "kafka" checkpoints are never
// read or moved. Running the same job again resumes from its checkpoints;
// Options.Restart starts a new generation from the first byte (PostgreSQL
// keeps each id once thanks to ON CONFLICT DO NOTHING; Kafka receives the
// messages again, with the same record ids).
//
// # Topics that would delete or refuse old records
//
// The Kafka sink stamps each message with the row's event time, and a
// topic's retention counts from that timestamp: history older than the
// retention is deleted by the broker's next retention check, minutes after
// a backfill reported success. So before anything is produced, [Run] reads
// each routed topic's retention.ms, message.timestamp.type and
// message.timestamp.before.max.ms/after.max.ms (DescribeConfigs, with
// [kafkasink.ReadTopicConfigs], the Kafka sink's own reader), refuses
// a --since that already reaches too far back, and wraps the Kafka sink so
// that a batch holding a record the topic would delete within
// [Options.RetentionMargin] (or refuse) is not produced and the job stops.
// Both end in a *[TopicError] naming the topic, the limit, the record's
// time and the fixes; the CLI exits 2. Topics with LogAppendTime are not
// checked (their timestamps are the broker's clock). A broker that does not
// describe topic configs fails the job unless [Options.SkipTopicCheck].
// The rule is [kafkasink.TopicConfig.CheckTime], which `ingest run`'s Kafka
// sink applies too, dead-lettering such records instead of stopping, with
// a margin of its own ([kafkasink.DefaultRetentionMargin]); a backfill
// passes its margin to its sink, so the check here always comes first.
//
// # Progress and the end
//
// On a terminal a progress bar (github.com/schollz/progressbar) shows the
// bytes every sink has acknowledged, the lines read per second and the
// ETA; otherwise a log line every Options.LogEvery. [Run] returns a
// [Summary] — lines read, delivered, skipped by the filter, not routed and
// rejected per sink, dead letters — and an error wrapping [ErrIncomplete]
// when interrupted or [ErrNotDelivered] when lines were dead-lettered.
package backfill
