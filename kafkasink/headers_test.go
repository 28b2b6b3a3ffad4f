package kafkasink

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// No broker: the headers of a message as the sink builds them, and of one
// from another producer.
func TestRecordHeaders(t *testing.T) {
	hs := []kafka.Header{{Key: HeaderSource, Value: []byte("api/f/0")}, {Key: HeaderRecordID, Value: []byte("id-1")}, {Key: HeaderTable, Value: []byte("raw_item")}}
	if table, id := RecordHeaders(hs); table != "raw_item" || id != "id-1" {
		t.Errorf("RecordHeaders = %q, %q; want raw_item, id-1", table, id)
	}
	if table, id := RecordHeaders([]kafka.Header{{Key: "other", Value: []byte("x")}}); table != "" || id != "" {
		t.Errorf("RecordHeaders of a foreign message = %q, %q; want empty", table, id)
	}
}
