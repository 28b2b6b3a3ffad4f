// Package rotatefile is the offline-file writer an API process embeds: every
// accepted payload becomes one line appended to a local file, which a loader
// on the same host tails and ships (see the ingest loader). It uses only the
// standard library, so embedding it costs no cgo and no dependencies.
//
// # Layout
//
// A [Writer] owns one stream: the directory Dir/Stream. It appends to one
// active file whose name ends in [ActiveSuffix] (".open"). When the file
// would pass [Options.MaxBytes], or [Options.MaxAge] after its first line,
// the writer syncs it, renames it to its final name and syncs the directory.
// Names start with a zero-padded sequence number, so lexical order is
// creation order; the UTC creation time follows for humans ([FileName],
// [ParseName]):
//
//	spool/api/0000000000000041-20261122T033620.123Z.ndjson
//	spool/api/0000000000000042-20261122T033720.125Z.ndjson.open
//
// A line is never split across files and an empty file is never created or
// sealed. Only one Writer may own a stream at a time: [Open] takes an OS lock
// on Dir/Stream/.lock and fails with [ErrLocked] otherwise. After a crash,
// Open seals the leftover active file (a torn last line stays; the loader
// dead-letters it) and continues with the next sequence number.
//
// # Durability
//
// Appends are buffered and written by one goroutine in large writes, never
// one system call per line. [Options.Sync] chooses when data reaches the
// disk: [SyncInterval] (default) syncs every SyncInterval, [SyncAlways]
// returns from Append only after an fsync covering the line — concurrent
// appends share one fsync (group commit) — and [SyncNone] leaves it to the OS.
// Lines reach the file within [Options.FlushInterval] under every policy, so
// a tailing loader sees them in milliseconds.
//
// # Errors
//
// Append returns an error when the line could not be stored, so the API can
// answer 503 instead of losing the payload: [ErrClosed], or an [*Error]
// naming the file and the system error ([IsDiskFull], [IsPermission]). With
// SyncAlways the failing appends get the error themselves. With the other
// policies appends return before the write, so a failed write keeps its lines
// in memory, retries them with back-off, and fails new appends until it
// succeeds; the writer recovers by itself once space returns.
//
// # Adopting it in an API
//
// Open one Writer per stream at start-up, call [Writer.Append] (or
// [Writer.AppendJSON]) in the request handler and map an error to 503, and
// call [Writer.Close] on shutdown after the HTTP server stopped accepting
// requests. [Writer.Stats] and [Hooks] feed metrics. See the example of
// [Writer.Append].
package rotatefile
