// Package kafkaserver runs a real Apache Kafka broker (KRaft mode, from
// Apache Kafka's own Maven artifacts) as child JVM processes, for the tests,
// benchmarks and development commands that claim something about Kafka.
//
// librdkafka's mock cluster (internal/mockkafka) is in-process and needs
// nothing installed, but it differs from Kafka where the sinks' guarantees
// live: it never moves leadership, has no min.insync.replicas, answers every
// OffsetsForTimes with "end", keeps only ~5 MB per partition and creates
// topics when a client names them. Anything that claims broker behaviour
// runs against this package instead.
//
// How the pieces fit:
//
//   - [Classpath] turns the embedded pom.xml into a directory of jars with
//     `mvn dependency:copy-dependencies`, once per pom: the directory is
//     cached under the user cache directory keyed by the pom's hash, and a
//     file lock keeps parallel test binaries from resolving it twice.
//     scripts/install-deps calls it (through `ingest dev kafka --fetch`) so
//     a test run finds the jars ready.
//   - [Start] formats a storage directory per node (`kafka.tools.StorageTool
//     format` with a cluster id of ours) and starts `kafka.Kafka` per node:
//     one combined broker+controller by default, or a cluster of N combined
//     nodes with static `controller.quorum.voters`. It returns when a
//     metadata request lists every broker.
//   - [Cluster] then creates topics (always explicitly: the brokers run with
//     auto.create.topics.enable=false), finds partition leaders, kills,
//     stops and restarts nodes, reads topics back with keys, headers and
//     timestamps, and tells what each partition holds without reading it
//     ([Cluster.Watermarks]). [Cluster.Close] stops every process and
//     removes its directories. [Read] is the read itself, for any Kafka at a
//     bootstrap address: mockkafka reads its mock cluster through it.
//
// Java 17+ and Maven must be installed; when either is missing the error
// wraps [ErrNotInstalled], which tests turn into a skip (developer) or a
// failure (CI), as internal/testenv does for PostgreSQL.
package kafkaserver
