package kafkasink

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// RecordHeaders returns the table and record id the sink put in a
// message's headers ([HeaderTable], [HeaderRecordID]), for the readers of
// the topic (ingest consume, ingest verify); "" for one that is missing,
// as in a message from another producer.
func RecordHeaders(hs []kafka.Header) (table, recordID string) {
	for _, h := range hs {
		switch h.Key {
		case HeaderTable:
			table = string(h.Value)
		case HeaderRecordID:
			recordID = string(h.Value)
		}
	}
	return table, recordID
}
