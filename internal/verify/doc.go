// Package verify is `ingest verify`: it proves, per account, that
// PostgreSQL and Kafka hold the same records of a table over a time window
// before the old database path is turned off (docs/config.md, "The cutover, step by step").
//
// # How it works
//
// [Run] reads the table's (account, id) pairs from PostgreSQL in one
// REPEATABLE READ snapshot, and the topic's messages from a real consumer:
// each partition from the first offset whose timestamp is at or after the
// window's start to the first offset whose timestamp is at or after its
// end (OffsetsForTimes; the Kafka sink stamps each message with the row's
// time field), or the high watermark seen at the start when that comes
// first, so a window reads the window and live traffic does not make the
// read endless. A partition is released as soon as its range is read, and
// the report gives each one's offsets and the messages fetched
// ([PartitionRead]). Each message's value (the row)
// is decoded with the table's schema, so account, id and time are found
// exactly as the loader found them in the line; the window is then applied
// to that time on both sides (half-open [since, until); rows without a time
// are outside any window).
//
// Per account and side it keeps a count and a digest: the sum modulo 2^64
// of a 64-bit hash of every record id ([Digest]), so it does not depend on
// order and memory grows with accounts, not rows. Only the accounts routed
// to both sinks by the config's selectors must agree; others are listed
// for information. For a checked account whose counts or digests differ, a
// second pass over the same snapshot and offsets collects its ids, to list
// each id missing on one side and to tell Kafka duplicates (at-least-once
// delivery: reported, never a mismatch) from real differences.
//
// Timestamps are not in order within a partition when history was
// backfilled after newer records: such messages sit past the window's end
// offset. So before an id PostgreSQL has is called missing in Kafka, the
// partitions are read on from the end offsets to their high watermarks for
// the accounts concerned ([Report.PastEnd]). Records only Kafka has there
// are found with [Options.ReadToEnd]. A window in which neither side holds
// a record returns [ErrNothingToCompare] unless [Options.AllowEmpty].
//
// The [Report] prints as a table ([Report.WriteText]) or as JSON; its OK
// is the exit status of the command. A table without an id field cannot be
// verified (its rows carry no record id): that, an unknown table, a window
// on a table without a time field and a missing sink are an *[ArgError].
//
// librdkafka's mock cluster answers every timestamp lookup with "end"; a
// probe (the offset for timestamp 0 of a non-empty partition) detects such
// a broker, and the partitions are then read whole — slower, still exact,
// and reported as such in [Report.StartOffsets]. So are topics with
// message.timestamp.type=LogAppendTime, whose timestamps are not the rows'.
//
// # What a read fetches
//
// Kafka's Fetch request is bounded in bytes, never in offsets: a consumer
// asks for the records from an offset up to a number of bytes per
// partition, and the broker answers with whole record batches (the first
// one whole even when it is larger than that, KIP-74; librdkafka drops a
// batch the limit cut). A record batch is what a producer sent to one
// partition as one unit (the loader's sink: up to 10,000 records or 1 MB,
// whatever linger.ms=10 gathered), and the broker stores and serves it as
// one. So no reader can stop at an offset: the least any reader receives
// past a range's last offset is the rest of the batch holding it. Left to
// itself, librdkafka also prefetches megabytes ahead of what it hands over
// (whole partitions of the window test: 1,000 messages read, 2,000
// fetched).
//
// verify receives, per partition, the range plus the rest of the batch
// holding the range's last offset (part of the window's fetch) plus at
// most one more fetch: the next batch whole, whatever its size, or as
// many small batches as fit in 64 KiB from its start. That is "one
// fetch" in [PartitionRead.Fetched]'s bound; batches of the sink at
// volume (up to 1 MB) come one per fetch, so there it is one batch.
// (Records of the first batch before the range's start are dropped by
// librdkafka uncounted.) Each partition is read by a consumer of its own
// that asks for 64 KiB per fetch, which the broker answers with whole
// batches up to that size (the first one whole even if larger), and that
// fetches again only when everything it received was handed over. When
// the range's last offset is handed over, either batches past it from
// the same fetch are still queued, and dropped, or the queue is empty
// and the one fetch that may have left then is the one more fetch; the
// partition is paused and released before the queue is read again (if
// that fetch arrives after the pause, librdkafka drops it unread and it
// is not in the count).
//
// The price is a round trip per fetch and partition, with up to four
// partitions read at once. Asking for one byte per fetch (one batch per
// round trip) read a topic of 1-record batches, what the sink writes for
// a partition getting less than a record per linger.ms, at ~1,000
// messages/s, ~14x slower than librdkafka's prefetch; 64 KiB brings
// dozens of such batches per round trip (docs/benchmarks.md has the
// figures for the sink's batches, 10-record and 1-record batches). Reading
// with the prefetch while far from the end and one fetch at a time near
// it would not keep the bound: the switch, a pause or a new consumer,
// discards what the prefetch queued, and the next read fetches it again,
// counted twice; how far a byte-bounded fetch reaches in offsets is only
// known once it is back.
package verify
