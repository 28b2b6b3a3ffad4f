// Package loader moves lines from offline files to sinks: it discovers the
// streams under a spool directory, tails each stream's files in creation
// order, decodes and validates every line with [schema], routes records,
// batches them, hands batches to each [Sink] and keeps, per sink and stream,
// a checkpoint that only ever covers lines that sink has durably accepted.
//
// # How the pieces fit
//
// A [Loader] runs one pipeline per (stream, sink). A pipeline has a
// position (from the sink's checkpoint), a batch being built, and up to
// [SinkSpec.MaxInFlight] batches awaiting acknowledgement. The checkpoint
// advances over the contiguous prefix of acknowledged batches
// ([Batch.End]); after a failed batch the pipeline waits for the rest and
// replays from the checkpoint.
//
// The walk of one line: the stream's pipelines share a bounded cache of
// segments, each a contiguous span of the stream holding its lines' bytes
// and their decoded records. The pipeline furthest ahead reads the next
// span with its tail (the files of the stream in order, yielding only
// complete lines; at the end of the active ".open" file it waits for file
// events or polls, and it follows the writer's rename to the sealed name
// at the same offset), decodes and validates each line once with
// [schema], dead-letters what no sink can take, and publishes the span. A
// pipeline at the start of a cached span takes it instead of reading;
// each pipeline then routes the records (routes and a backfill's filter
// are per sink) and batches them. Batches point into the segments' memory,
// which is reused only once every batch holding it is acknowledged and
// the cache has let the segment go. So with every sink keeping pace a line
// is read from disk and decoded once, however many sinks there are
// ([Loader.Stats] counts it).
//
// A live [Loader]'s pipelines never wait for each other's sinks. A sink that
// is down or slow falls behind alone: once the cache has let its spans go,
// it reads and decodes them from disk itself, without publishing, until it
// is back at the front. The caches of all streams share [Config.CacheBytes]
// (32 MiB by default), each stream an equal share of at most four
// [BatchConfig.MaxBytes], so their memory does not grow with the number of
// streams; a stream whose share is less than a span shares nothing and every
// pipeline reads for itself. Memory stays bounded (the caches, a read
// buffer, a span being consumed and MaxInFlight batches per pipeline)
// whatever the backlog. A file is deleted, or archived under
// StateDir/archive when [Config.Retention] is set, only once every sink's
// checkpoint has passed it.
//
// Checkpoints live in a [CheckpointStore] — by default a [FileStore] under
// StateDir/checkpoints (write, fsync, rename, fsync) — or in the sink itself
// when it implements [CheckpointOwner], as the PostgreSQL sink does, writing
// [Batch.End] in the same transaction as the rows: then a crash at any point
// neither loses nor duplicates a row. A checkpoint that is corrupt or points
// beyond the spool stops start-up ([ErrCorruptCheckpoint],
// [ErrCheckpointBeyondFile]) instead of silently starting over.
//
// # Dead letters
//
// A line that cannot be decoded or validated, is longer than
// [Config.MaxLineBytes], or is the torn tail of a sealed file goes to
// StateDir/deadletter/<stream>/<UTC date>.ndjson as a [DeadLetter] with the
// reason, file, offset and the original bytes, and is counted in
// ingest_lines_dead_lettered_total; loading goes on. It is written when the
// line is read from disk, by whichever pipeline reads it first, so a sink
// that is down does not hold back the others' dead letters. Each line is
// written once: the loader remembers the positions it dead-lettered after
// the stream's oldest checkpoint (seeded from the files at start), so a
// pipeline that reads the line again, behind the cache or replaying, skips
// it. A sink that cannot store a record calls [Batch.Reject], which
// records the sink too. Every pipeline whose batch covers a dead-lettered
// line syncs the dead-letter files before handing the batch over, so dead
// letters are durable before any checkpoint can pass them.
//
// # Backfill
//
// A backfill is the same engine given another source and a policy. Each
// stream's files come from a source: the live loader's is the spool
// directory (list the files, tail the ".open" one, retire a file once every
// checkpoint passed it); a backfill's is a fixed list of sealed files
// ([ResolveBackfill] turns paths, directories and globs into
// [BackfillStream]s, refusing or skipping active ".open" files), never
// retired, exhausted at its last byte. The policy is what a run asks beyond
// reading and routing: a [BackfillConfig.Filter] (accounts, a time
// [Window]), a [BackfillConfig.Rate], and HoldFor below; the live loader's
// is the zero value. [Loader.Run] and [Backfill.Run] share one start,
// drain and shutdown; a pipeline whose source is exhausted returns once
// its checkpoint covers the last byte, so [Backfill.Run] returns when every
// sink's has, or with [ErrBackfillIncomplete] when stopped.
// [Backfill.Progress] and [Loader.Stats] count what happened from the
// engine's own counters ([SinkStats] per sink). A backfill ends when its slowest sink does, so there the
// pipeline furthest ahead, when publishing a span would evict one a slower
// pipeline has not taken, waits for that pipeline to take it — as long as it
// made progress within [BackfillConfig.HoldFor] (5 s by default): the slower
// sink gets every span from memory instead of reading and decoding it again
// while competing for the CPU, and a sink that is down or stuck holds the
// others back no longer than that ([StreamStats] RoomWaits, RoomWaited,
// EvictedUntaken). The sinks' names are the checkpoint keys, so a backfill
// under its own names never moves the live checkpoints and resumes where it
// stopped.
//
// # Shutdown
//
// [Loader.Run] returns when its context ends: pipelines stop reading, hand
// over the batch being built, wait up to [Config.ShutdownTimeout] for
// acknowledgements, and leave each checkpoint at its last contiguous ack.
// Every goroutine the loader starts ends before Run returns.
package loader
