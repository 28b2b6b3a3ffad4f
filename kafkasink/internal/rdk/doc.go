// Package rdk is the Kafka sink's producer: a thin cgo binding to the
// librdkafka that confluent-kafka-go bundles (and links: this package
// imports it for that and for its error type), shaped for batches.
//
// confluent-kafka-go's Producer costs one cgo call, six C allocations for
// three headers, a map insert for the opaque, a Go Message and a channel
// send per message; on the Kafka sink's hot path that was most of the CPU
// and held it to about half of kcat's rate. Here a batch of messages
// crosses into C once ([Producer.Produce] copies them into librdkafka in a
// loop written in C), and delivery reports come back in arrays of plain
// values ([Producer.Poll]), one cgo call per many reports. Everything else
// (configuration, metadata, fatal errors, logs, purge, close) is the same
// librdkafka API confluent-kafka-go wraps, and errors are
// confluent-kafka-go's kafka.Error, so callers branch on the same codes.
//
// How the pieces fit: [New] creates the librdkafka handle with event
// sourcing (delivery reports, errors and logs all arrive on its main
// queue); the owner runs one goroutine that calls [Producer.Poll] until it
// stops, producers call [Producer.Produce] concurrently, and
// [Producer.Close] runs after both have left. rdkafka.h is librdkafka's
// public header, copied from the confluent-kafka-go release in go.mod
// (v2.11.1, librdkafka 2.11.1); update both together.
package rdk
