package verify_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/verify"
	"github.com/dualwrite/ingest/loader"
)

// Compare yesterday's raw_item rows with the topic before turning the
// database path off.
func ExampleRun() {
	cfg, err := config.Load("/etc/ingest/ingest.yaml")
	if err != nil {
		log.Fatal(err)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	rep, err := verify.Run(context.Background(), cfg, verify.Options{
		Table:  "raw_item",
		Window: loader.Window{Since: today.Add(-24 * time.Hour), Until: today},
	})
	if err != nil {
		log.Fatal(err)
	}
	rep.WriteText(os.Stdout)
	if !rep.OK {
		os.Exit(1)
	}
}

func ExampleReport_WriteText() {
	rep := &verify.Report{
		Table: "raw_item", DBTable: "raw_item", Topic: "raw_item", Window: "[2026-04-01T00:00:00Z, 2026-04-02T00:00:00Z)",
		Partitions: 2, StartOffsets: verify.StartByTimestamp, EndOffsets: verify.EndByTimestamp, Messages: 5, Checked: 2, Mismatched: []string{"9"},
		Reads: []verify.PartitionRead{
			{Partition: 0, Start: 1200, End: 1203, HighWatermark: 4100, Read: 3, Fetched: 120},
			{Partition: 1, Start: 980, End: 982, HighWatermark: 3900, Read: 2, Fetched: -1},
		},
		Accounts: []verify.Account{
			{Account: "7", RoutedDB: true, RoutedKafka: true, Checked: true, Agree: true, Duplicates: 1,
				DB: verify.Side{Count: 2, Digest: "1b2c3d4e5f607182"}, Kafka: verify.Side{Count: 2, Digest: "1b2c3d4e5f607182"}},
			{Account: "9", RoutedDB: true, RoutedKafka: true, Checked: true,
				DB: verify.Side{Count: 2, Digest: "0a0b0c0d0e0f1011"}, Kafka: verify.Side{Count: 1, Digest: "99aa00bb11cc22dd"},
				MissingInKafka: []string{"bad3a155-585f-47cb-bc3e-51767d52c2a2"}},
			{Account: "12", RoutedDB: true, DB: verify.Side{Count: 4, Digest: "00000000000000ff"}, Kafka: verify.Side{Digest: "0000000000000000"}},
		},
	}
	rep.WriteText(os.Stdout)
	// Output:
	// verify raw_item: postgres raw_item vs kafka topic raw_item (2 partitions, start offsets by-timestamp, end offsets by-timestamp), window [2026-04-01T00:00:00Z, 2026-04-02T00:00:00Z)
	// kafka messages read: 5
	// PARTITION  START  END   HIGH WATERMARK  READ  FETCHED  READ PAST END
	// 0          1200   1203  4100            3     120      0
	// 1          980    982   3900            2     ?        0
	//
	// ACCOUNT  ROUTED TO  DB ROWS  DB DIGEST         KAFKA IDS  KAFKA DIGEST      KAFKA DUPLICATES  RESULT
	// 7        db+kafka   2        1b2c3d4e5f607182  2          1b2c3d4e5f607182  1                 ok
	// 9        db+kafka   2        0a0b0c0d0e0f1011  1          99aa00bb11cc22dd  0                 MISMATCH: 1 missing in kafka
	// 12       db         4        00000000000000ff  0          0000000000000000  0                 differs (not checked: not routed to both)
	//
	// mismatches:
	//   account 9: 1 missing in kafka: bad3a155-585f-47cb-bc3e-51767d52c2a2
	//
	// MISMATCH: 1 of 2 account(s) routed to both sinks disagree: 9
}
