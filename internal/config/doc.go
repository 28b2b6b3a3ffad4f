// Package config loads and validates the YAML configuration of ingest and
// holds the routing selectors that decide, per table and sink, which
// accounts are written (the cutover toggles). docs/config.md documents every
// key for users; examples/ holds a complete config per cutover step, each
// loaded by a test.
//
// [Load] reads a file and [Parse] a document; both start from [Default],
// decode strictly, fill in derived defaults and validate. Every problem is
// reported as an *[Error] naming the key path and line, for example
//
//	ingest.yaml:31: tables.raw_item.kafka.percent: must be between 0 and 100, got 140
//	ingest.yaml:3: spool.dri: unknown key (did you mean "dir"?)
//
// so the CLI can print it and exit 2, and a config reload can log it and
// keep the old config.
//
// # Defaults
//
// All defaults are here and in [Default]:
//
//	spool.state_dir        <spool.dir>/.ingest
//	spool.retention        0 (delete files once every enabled sink passed them)
//	spool.cache_bytes      32MiB (decoded lines the sinks share, all streams)
//	streams                every subdirectory of spool.dir (see Config.StreamFor)
//	streams[].seal_after   10s
//	batch                  {max_records: 2000, max_bytes: 4MiB, linger: 20ms}
//	kafka.brokers          "" (Kafka sink off)
//	db.url                 $INGEST_DB_URL, else $DATABASE_URL, else "" (Postgres sink off)
//	metrics.listen         127.0.0.1:9464
//	consume.group          "" (ingest consume's group: ingest-<database of db.url>)
//	tables.<t>.topic       <t>
//	tables.<t>.db_table    <t>
//	tables.<t>.db          all
//	tables.<t>.kafka       none
//
// The routing defaults are the first step of a migration: the database is
// fed as before and Kafka gets nothing until a table says otherwise.
//
// # Tables and routing
//
// Each entry under tables is a [Table]: a [schema.Table] (the key, id, time,
// topic, db_table, columns, unknown_fields and db_storage keys) plus a [Selector] per
// sink. [Config.Schema] builds the [schema.Schema] used to decode lines; the
// loader sends a decoded record to each sink whose selector's
// [Selector.Match] accepts the record's account key. Selection by percent
// uses [Bucket], a stable hash, so the selected set only grows as the
// percent grows and every host agrees.
package config
