//go:build dynamic

package rdk

// With -tags dynamic, confluent-kafka-go links the system's librdkafka
// (pkg-config rdkafka) instead of its bundled static build. The binding
// then compiles against that librdkafka's own header rather than rdk.h,
// whose declarations are checked only against the bundled version, and
// rdk.go refuses a librdkafka older than confluent-kafka-go requires.

// #cgo pkg-config: rdkafka
// #cgo CFLAGS: -DRDK_DYNAMIC
import "C"
