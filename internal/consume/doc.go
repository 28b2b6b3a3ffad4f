// Package consume is `ingest consume`: it feeds PostgreSQL from the
// tables' Kafka topics, exactly once, in a consumer group, so that the
// database can be loaded from Kafka instead of from the offline files
// (the last step of the cutover, docs/consume.md).
//
// # How the pieces fit
//
// [Run] is the entry point. It builds, from the same config file as
// `ingest run`:
//
//   - a [dbsink.Sink] named [SinkName] ("consume:<group>"): the file
//     loader's PostgreSQL sink, unchanged — COPY per batch, ON CONFLICT
//     (id) for tables with an id column, rows PostgreSQL refuses isolated
//     by splitting and dead-lettered, transient errors retried without
//     limit;
//   - a confluent-kafka-go consumer in the group (cooperative-sticky),
//     subscribed to the topics of the selected tables;
//   - the dead letters: a topic per source topic (<topic>.dlq by default)
//     or a file;
//   - metrics and /healthz, /readyz on metrics.listen.
//
// One goroutine, Run's, polls the consumer. Each partition fills a batch
// (batch.max_records, batch.max_bytes, batch.linger) of messages whose
// value is decoded as the row with [schema.Table.DecodeRow], by the file
// path's rules (one JSON object, nothing after it); the table is the
// message's ingest.table header (kafkasink.HeaderTable), or the topic's
// only table. A batch older than the linger leaves once its partition has
// no batch committing, unless it still grows and the partition is behind
// by enough messages to fill it (a catching-up consumer commits full
// batches).
// The batch goes to the sink as a loader.Batch of stream [Stream]
// ("<topic>/<partition>") whose positions are Kafka offsets: [Start, End)
// covers every offset of the batch, dead-lettered ones included, and End
// is the offset after its last message.
//
// # Exactly once
//
// The sink commits a batch's rows and moves its stream's checkpoint to
// End in one transaction, after locking the checkpoint row and skipping
// every record before the position it holds. So:
//
//   - on assignment a partition starts at the offset its checkpoint
//     names, never at Kafka's committed offset (which is stored after the
//     transaction and committed in the background, for lag tools only);
//     a partition without a checkpoint starts at Options.Since or at its
//     beginning;
//   - a crash anywhere loses nothing (the offset is not committed before
//     the rows) and doubles nothing (the rows are not committed without
//     the offset), with or without an id column;
//   - two owners of one partition at once (a member thrown out of the
//     group that still loads, a revocation whose transaction is still in
//     flight) are serialised by the checkpoint row lock, and each skips
//     what the other committed.
//
// On revocation the partition's unsubmitted batch is dropped, its batches
// in flight get Options.RevokeTimeout to commit and are then abandoned
// (their context cancelled), and the callback returns only once the sink
// holds nothing of them ([dbsink.Sink.Drain]). A lost assignment abandons
// at once. At most Options.MaxInFlight batches per partition are in
// flight; the partition is paused beyond, which is how a slow or absent
// database holds the consumer back.
//
// # Bad messages
//
// A message that does not decode (empty, not one JSON object, unknown
// table, a value of the wrong type: schema.Reason) is dead-lettered
// before the batch covering its offset is submitted; a row PostgreSQL
// refuses is dead-lettered by the sink (loader.Batch.Reject) before the
// transaction that moves the offset past it commits. A dead letter is
// durable (acks=all, or fsync) before that, so it may repeat after a
// crash but is never lost. A failure retrying cannot fix (an undefined
// table, a permission) ends Run with an error naming the topic, partition
// and offsets; a restart resumes at the checkpoints.
package consume
