// Package schema defines the destination tables of offline lines and turns
// each line into a validated [Record]: which table, which account, which
// record id and event time, and the row bytes to ship.
//
// It is a leaf package (standard library, plus pgx for identifier quoting;
// sonic in tests only) so that the loader, both sinks, backfill, verify and
// the CLI can share it.
//
// # Pieces
//
//   - [Table] is one table's definition as written under "tables:" in the
//     config: key, id and time fields, Kafka topic, Postgres table, columns
//     with [Type]s, and the unknown_fields policy. [Table.Validate] reports
//     definition problems as [FieldError]s naming the key.
//   - [New] validates a set of tables and builds a [Schema], which is
//     immutable and safe for concurrent use; [Schema.Lookup] finds a table.
//   - [Schema.Decode] parses and validates one line. A rejected line yields
//     an *[Error] whose [Reason] is the dead-letter reason and metric label
//     ([Reasons] lists them all).
//   - [Table.DDL] renders CREATE TABLE for `ingest migrate` and
//     `ingest schema sql`; [Table.Identifier] gives the quoted table name.
//   - [Record.Value] gives each column's value as Decode checked and
//     converted it ([Value]), so that the one parse of a line feeds both
//     sinks: Kafka takes Row, Key, ID and Time, PostgreSQL the values, and
//     neither parses JSON again. [Table.DecodeRow] does the same for a row
//     that did not come through Decode; [ParseTime] converts epoch or
//     RFC 3339 values.
//
// # Decoding
//
// Every line is decoded on the hot path (~10k lines/s per API host, ~2.5 KB
// each, and backfill replays archives as fast as the sinks allow), so
// [Schema.Decode] does not build a map per line. It is a small hand-written
// validating tokenizer that walks the line once: member names are compared
// as raw bytes (unescaped only when they contain a backslash), configured
// columns are checked against their type and converted as they are met,
// and unknown fields are skipped after syntax checking. Long strings are
// scanned with the vectorised bytes.IndexByte plus an 8-bytes-at-a-time
// character check. The result aliases the line; Key, ID and the column
// values share one allocation.
//
// The project's choice for JSON is sonic; this tokenizer stays because it
// is much faster for this job, measured on the same lines
// (BenchmarkDecode against BenchmarkDecodeSonic, figures in
// docs/benchmarks.md under "JSON decoding"): a decoder on sonic's fastest
// fitting APIs (the JIT decoder with raw-message fields for the line, the
// lazy ast pair iterator for the row, our type checks) costs about three
// times the CPU per line, far over the 1.3 times the project accepts for a
// hand-made replacement of a chosen package. Even sonic filling raw fields
// of a fixed struct, with no type check at all, costs 1.2-1.6 times, and
// that cannot do what Decode must: sonic keeps the last of duplicate
// members silently and does not check UTF-8 in the values it skips. sonic
// serves instead as one of the independent oracles of FuzzDecode, next to
// encoding/json.
//
// Decode accepts a subset of what encoding/json accepts (checked by
// fuzzing), and rejects valid JSON that would fail later in PostgreSQL
// (\u0000 in text, integers with exponents, out-of-range numbers) or that
// consumers could read differently (duplicate column names), so a line
// either is rejected up front or reaches both sinks the same way.
//
// # Column order
//
// Columns are ordered by name wherever an order matters (DDL,
// [Table.ColumnList], [Record.Value]): the config holds them in a map,
// and name order is the same on every host, run and config reload.
package schema
