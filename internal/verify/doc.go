// Package verify is `ingest verify`: it proves, per account, that
// PostgreSQL and Kafka hold the same records of a table over a time window
// before the old database path is turned off (SPEC section 8).
//
// # How it works
//
// [Run] reads the table's (account, id) pairs from PostgreSQL in one
// REPEATABLE READ snapshot, and the topic's messages from a real consumer:
// each partition from the first offset whose timestamp is at or after the
// window's start (OffsetsForTimes; the Kafka sink stamps each message with
// the row's time field) to the high watermark seen at the start, so live
// traffic does not make the read endless. Each message's value (the row)
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
// The [Report] prints as a table ([Report.WriteText]) or as JSON; its OK
// is the exit status of the command. A table without an id field cannot be
// verified (its rows carry no record id): that, an unknown table, a window
// on a table without a time field and a missing sink are an *[ArgError].
//
// librdkafka's mock cluster answers every timestamp lookup with "end"; a
// probe (the offset for timestamp 0 of a non-empty partition) detects such
// a broker, and the partitions are then read from their earliest offset —
// slower, still exact, and reported as such in [Report.StartOffsets].
package verify
