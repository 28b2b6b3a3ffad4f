// Package kafkasink is the loader's Kafka destination: a [loader.Sink] that
// produces every routed record to its table's topic, keyed by account, with
// confluent-kafka-go's Producer (kafka.Producer, on the librdkafka it
// bundles), and acknowledges a batch only once
// Kafka has it (acks=all, idempotent; docs/operations.md, "The guarantees, in short").
//
// Builds: whatever confluent-kafka-go builds: the default (its bundled
// static librdkafka), -tags musl (its bundled musl build) and -tags dynamic
// (the system's librdkafka, through pkg-config). The sink has no C code of
// its own.
//
// # How it fits
//
// The CLI builds a [Config] from the config file's kafka section (brokers,
// properties) and the topics of the tables routed to Kafka, and calls [New],
// which creates the one producer of the process and checks that every topic
// exists ([Sink.CheckTopics]; [MissingTopicError] says how to create one).
// The loader then calls [Sink.Submit] from one goroutine per stream; the
// sink acks each batch when every message in it has a successful delivery
// report, and the loader advances the stream's Kafka checkpoint (its file
// store) over it. [Sink.Close] shuts down within a bounded time.
//
// # Starting without a broker
//
// [New] checks the topics before it returns, so with no broker reachable
// it waits for a metadata timeout and fails. A caller that loads other
// sinks too calls [Start] instead, as `ingest run` does: it returns at
// once a [Lazy], a [loader.Sink] that builds the [Sink] in the background.
// Batches submitted meanwhile wait in its queue (Submit returns at once,
// so the loader's lag stays visible, and the loader's MaxInFlight bounds
// the queue) and reach the sink in Submit order once it is built. Failed
// attempts repeat: after the first, the next waits until a bootstrap
// broker accepts a TCP connection, then for a gap that doubles (from 2 s
// up to a minute) while attempts still fail; "kafka still unreachable"
// is logged once a minute. A config error or a missing topic ends the
// attempts: [Lazy.StartErr] returns it before loading when a broker
// accepted a connection at start, [Lazy.Fatal] when it is found later.
// [Lazy.Ready] says whether the sink answers (started, a broker answers a
// metadata request, and batches in flight got a delivery report within
// 10 s), for a readiness endpoint: the producer itself retries through
// any outage without failing a batch.
//
// Each record becomes one message: topic [schema.Table].Topic, key the
// account key (Record.Key), value the row JSON exactly as written
// (Record.Row), timestamp the row's event time (Record.Time) when the table
// has one, and headers [HeaderTable], [HeaderRecordID] and [HeaderSource].
// The producer's defaults ([DefaultProperties]) are chosen for no loss and
// per-key order: acks=all, idempotence, no message timeout, and the
// murmur2_random partitioner, which puts a key on the partition Java's
// default partitioner picks (toPositive(murmur2(key)) % partitions).
//
// # Delivery tracking
//
// Submit queues the batch for the sink's producer goroutine and returns; that
// goroutine hands the messages to the Producer (Produce), each with an
// Opaque that points at its batch and its index, in Submit order, while
// the loader decodes the next batch on another core. Every message of a
// producer names the same delivery channel; one goroutine per producer
// reads it, the Events channel (errors) and the Logs channel, and only
// counts: when a batch's last message is reported delivered, the
// batch goes to the completer goroutine, which calls the loader's ack, in
// Submit order per stream. Polling never waits for the loader, so delivery
// reports cannot back up.
//
// Nothing expires: with message.timeout.ms=0 a message waits in librdkafka
// through a broker outage of any length, librdkafka retries with backoff,
// and the ack (and so the checkpoint) waits with it, while other sinks of
// the loader go on. When librdkafka's queue is full (256 MiB or 100,000
// messages), the producer goroutine waits for delivery reports to make
// room, and the loader, which keeps at most MaxInFlight batches at a sink,
// waits for acks: that is the backpressure that bounds memory.
//
// # Records too large for a topic
//
// A record larger than the producer's message.max.bytes cannot be sent at
// all; it is dead-lettered through [loader.Batch.Reject] with reason
// "too_large" and the rest of the batch is delivered and acked.
//
// A broker applies a topic's max.message.bytes to whole record batches,
// which librdkafka fills up to batch.size (1,000,000 bytes by default).
// So the topic check reads every topic's max.message.bytes
// (DescribeConfigs; the value a broker reports is the one it enforces,
// the topic's own or the broker's message.max.bytes) and keeps the
// producer's batch.size under the smallest, with room for framing and
// compression. A record then reaches the broker in a batch with others
// only if the batch fits, and a record larger than batch.size goes alone:
// when the broker refuses it, the record alone is too large, and only it
// is dead-lettered, with the broker's error (MESSAGE_TOO_LARGE), the
// record's size and the topic's limit; the records around it are
// delivered. Dead-lettered records count as rejected in [Stats], never as
// delivered, and each batch that had some logs one WARN with their count
// and the reason.
//
// If a broker refuses a batch of records that fit on their own (a topic's
// limit lowered while the sink runs, or limits that could not be read: no
// DescribeConfigs permission, or librdkafka's mock cluster), the sink
// fails the batches in flight, as after a fatal error, and builds a
// producer with at most half the batch.size and the topic's limit read
// again; the loader replays from its checkpoint. A topic first met in
// Submit whose limit needs smaller batches than the live producer makes
// replaces the producer the same way.
//
// # Records the topic would delete or refuse
//
// A message's timestamp is the row's event time, and a broker deletes a
// message once its timestamp is older than the topic's retention.ms, or
// refuses it outright when it lies outside
// message.timestamp.before.max.ms / after.max.ms (refused, a batch would
// fail for good and its stream stall). So the topic check also reads
// those settings ([ReadTopicConfigs], the one reader of topic configs,
// which `ingest backfill` uses too), again every 5 minutes, and the
// producer goroutine dead-letters a record whose event time
// [TopicConfig.CheckTime] rejects at the moment it is produced: older
// than the retention less [Config.RetentionMargin] (reason "retention"),
// or outside the timestamp bounds (reason "timestamp_refused"). The
// detail names the topic, the limit, the record's time, the bound and
// the fixes. Like records too large, they count as rejected, each batch
// that had some logs one WARN per reason with the count, and the rest of
// the batch is delivered. Nothing is checked where the configs could not
// be read.
//
// A failed batch (a permanent delivery error, a fatal error, or Close
// giving up) is acked with an error, and the loader's ack marks the
// batch's epoch failed ([loader.Epoch]): every later batch of that epoch,
// until the loader rewinds the stream, is void ([loader.Batch.Err]). The
// sink keeps no failure state of its own: it refuses a void batch in
// Submit, produces nothing more of one (it looks before producing a batch
// and every 256 messages), and acks one with [ErrEarlierBatchFailed] even
// when its messages were delivered. Since the sink acks a stream's batches
// in Submit order, each later batch is judged after the failed ack has
// returned, so a stream's nil acks always form a prefix of its batches.
// Batches of the stream produced between the failure and its ack (the
// ack waits for the earlier batches) may reach the broker; the replay
// writes them again, as in the at-least-once window below.
//
// A fatal producer error (kafka.Error.IsFatal, e.g. the idempotent
// producer's sequence or epoch errors) fails every batch in flight with
// [ErrFatal], and the sink builds a new producer; Submits meanwhile wait for
// it. The loader replays the failed batches from its checkpoint on the new
// producer. The old producer is purged and closed in the background.
//
// # The at-least-once window
//
// Within one producer nothing repeats: idempotence makes librdkafka's own
// retries (reconnects, timed-out requests, leader changes) neither
// duplicate nor reorder messages, however long an outage lasts. Messages
// repeat only when the loader re-sends from its checkpoint, that is after
//
//   - a crash or kill -9 of the process,
//   - a fatal producer error (rebuild),
//   - a permanent delivery error (e.g. authorization), or
//   - Close giving up at shutdown with batches undelivered.
//
// What can repeat is what was handed to the producer but not yet covered
// by a saved checkpoint: per stream, the batches in flight (at most the
// loader's max-in-flight batches of batch.max_records records each — one
// more during a graceful shutdown, which hands over the batch being built)
// plus those acked whose checkpoint was not yet saved: the loader saves
// checkpoints on its own goroutine, one save (a file and a directory
// fsync) at a time, so these are the batches acked during the save in
// progress, normally a few; a failed save is logged and widens this until
// the next one succeeds. The broker may already
// have some of those messages; the replay writes them again. Nothing before
// the checkpoint repeats and nothing is lost.
//
// A repeat carries the same [HeaderRecordID] (the table's id field, or
// <stream>/<file>/<offset>, stable because sealed offline files never
// change), so consumers drop repeats by it. Per partition, what one
// producer wrote is a prefix, in order, of what it was given, and a replay
// starts at or before the end of that prefix: a consumer that keeps the
// first occurrence of each record id sees each account's records once and
// in file order. The exception is a permanent error on one message in the
// middle of a partition (not a broker outage: those are retried), after
// which later messages of that partition may land before the replay
// re-sends the failed one.
package kafkasink
