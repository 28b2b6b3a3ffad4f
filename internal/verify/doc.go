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
package verify
