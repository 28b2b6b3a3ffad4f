// Package mockkafka runs an in-process Kafka cluster for tests, the
// `ingest demo` command and benchmarks, without a JVM or Docker. It wraps
// librdkafka's mock cluster ([kafka.NewMockCluster]): real brokers on real
// localhost TCP ports that real confluent-kafka-go producers and consumers
// talk to, so the sink code under test is the production code.
//
// [New] starts the brokers, [Cluster.Bootstrap] is what clients connect to,
// [Cluster.CreateTopic] creates topics (the mock has no admin CreateTopics
// with replication), and [Cluster.Consume] reads a topic back with a real
// consumer to check what a producer delivered. Fault tests use
// [Cluster.Leader] to find the broker that owns a partition and
// [Cluster.BrokerDown] / [Cluster.BrokerUp] to take it away and bring it
// back. [Cluster.Mock] exposes the raw mock for anything else (e.g.
// SetRoundtripDuration to add latency).
//
// # How the mock differs from Kafka
//
//   - Asking for one topic's metadata by name auto-creates that topic,
//     whatever auto.create.topics.enable would say on a real broker.
//     [Cluster.TopicExists] therefore lists all topics instead.
//   - A downed broker is not replaced: leadership never moves, and metadata
//     keeps listing it in every ISR (it only drops out of the broker list).
//     Producing to a partition whose leader is down leaves the messages
//     queued in the producer until the broker comes back (or
//     message.timeout.ms expires); downing a follower changes nothing,
//     because the mock does not replicate. Replication factor is still
//     min(brokers, 3) so metadata looks like production. Leaders are picked
//     at random per partition: use [Cluster.Leader].
//   - With every broker down, metadata calls (TopicExists, Leader,
//     Consume) fail once ctx's deadline passes, with "Broker transport
//     failure".
//   - Each partition keeps only its newest ~5 MB / 100,000 message sets,
//     so a test that produces more and reads from the beginning loses the
//     head. Keep test volumes below that or read as you go.
//   - librdkafka runs the brokers on C threads: they are not goroutines, so
//     goleak does not see them. Close destroys them.
package mockkafka
