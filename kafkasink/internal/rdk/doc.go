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
// [Producer.Close] runs after both have left.
//
// # Builds
//
// The binding compiles against rdk.h, our declarations of just the part
// of librdkafka's C API it calls, and links whatever librdkafka
// confluent-kafka-go links (importing its kafka package brings the
// library in). header_test.go compiles rdk.h against the rdkafka.h inside
// the confluent-kafka-go module go.mod selects and fails on any
// difference, so upgrading confluent-kafka-go is checked by the tests.
// confluent-kafka-go's build tags are honoured:
//
//   - default: its bundled static librdkafka (glibc Linux and macOS,
//     amd64 and arm64), with rdk.h.
//   - -tags musl: its bundled musl build of the same librdkafka version;
//     the declarations are the same, so nothing changes here.
//   - -tags dynamic: the system's librdkafka through pkg-config, as
//     confluent-kafka-go then does. The binding then includes the system's
//     own <librdkafka/rdkafka.h> instead of rdk.h (link_dynamic.go), so
//     header and library agree, and refuses to compile against a
//     librdkafka older than 2.11.1 with its own error.
//
// The default build on linux/amd64 is the one the tests run.
package rdk
