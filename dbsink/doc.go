// Package dbsink is the PostgreSQL sink of the loader: it stores batches of
// decoded offline lines in the configured tables, exactly once across
// crashes, and keeps its own checkpoint in the same database.
//
// # Pieces
//
//   - [Config] says where the database is ([Config.URL]), which tables
//     exist ([Config.Schema]) and how to retry; [New] validates it,
//     reporting each bad field as a *[ConfigError], and creates a [Sink]
//     on a pgx connection pool without connecting yet.
//   - [Sink.Submit] implements [loader.Sink]; [Sink.Checkpoint] implements
//     [loader.CheckpointOwner], so the loader reads this sink's position
//     from the database instead of its own checkpoint store.
//   - [Sink.Migrate] and [DDL] create the tables (from
//     [schema.Table.DDL]) and [CheckpointTable], for `ingest migrate` and
//     `ingest schema sql`.
//   - [Retryable] is the rule the sink uses to tell transient errors from
//     the rest; [ErrClosed] is what a batch interrupted by [Sink.Close]
//     fails with.
//
// # One batch, one transaction
//
// Submit turns every record's row into COPY values first: the column
// values the loader's decode already checked and converted
// ([schema.Record.Value]; the sink parses no JSON), put in the form pgx
// encodes for each column type. A value PostgreSQL could not take (a
// numeric beyond its limits) dead-letters its row with reason
// "bad_column". Then one transaction:
//
//  1. locks this sink's checkpoint row for the stream (SELECT ... FOR
//     UPDATE) and skips every record before the position it holds;
//  2. per table, COPYs the rows (pgx CopyFrom, binary format) straight into
//     the table. When the table has an id column and PostgreSQL refuses
//     that copy (a duplicate id, or a bad row), it is rolled back to a
//     savepoint and the rows go into a temporary staging table followed
//     by INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING, which skips the
//     duplicates; the table's next 16 batches take that path directly, so
//     a backfill over loaded lines does not copy every batch twice;
//  3. sets the checkpoint to the batch's End, and commits.
//
// So the checkpoint never claims a line whose row is not committed, and a
// line is never stored twice: a replay after a crash starts at the
// checkpoint, and step 1 makes even a replay over committed lines (a retry
// after a COMMIT whose reply was lost) a no-op, with or without an id
// column. The id path additionally makes a backfill that overlaps live
// loading harmless.
//
// # Errors
//
// Each COPY runs in a savepoint. When PostgreSQL refuses the data (SQLSTATE
// class 22 or 23, e.g. a CHECK constraint or a NOT NULL), the sink rolls
// the savepoint back and loads each half separately, down to single rows;
// each row still refused is dead-lettered with reason "db_rejected" and
// PostgreSQL's message, and the rest commits. A transient failure
// (connection lost, server shutting down or restarting, deadlock,
// serialization failure, timeouts: see [Retryable]) rolls back and retries
// the whole transaction with exponential backoff and jitter, without
// limit, logging each retry: the loader's other sinks are not waiting for
// this one, and the batch is never dropped. Only the caller's context or
// Close ends the retries. Other errors (an undefined table, a permission
// error) fail the batch through ack, and the loader replays from the
// checkpoint. A stream's batches are stored one at a time, in Submit
// order; a batch that a failed earlier one voided (the loader fails the
// batch's [loader.Epoch] inside that ack: [loader.Batch.Err]) fails
// without being stored, so the checkpoint never passes the failed lines.
//
// # Identifiers
//
// Table and column names come only from the config and are always quoted
// with [pgx.Identifier]; row values travel only as COPY data or query
// parameters. A line naming a table the config does not know never reaches
// the sink: the loader dead-letters it.
package dbsink
