package config_test

import (
	"errors"
	"fmt"

	"github.com/dualwrite/ingest/internal/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
spool: {dir: /var/spool/ingest}
db: {url: "postgres://localhost/ingest"}
tables:
  raw_item:
    key: project_id
    id: uuid
    columns: {project_id: bigint, body: text, uuid: uuid}
    kafka: {percent: 25, accounts: [42]}
`))
	if err != nil {
		panic(err)
	}
	t := cfg.Tables["raw_item"]
	fmt.Println(cfg.Spool.StateDir, cfg.Batch.MaxBytes, cfg.Batch.Linger)
	fmt.Println(t.Topic, t.DB, t.Kafka, t.Kafka.Match("42"))

	s, err := cfg.Schema()
	if err != nil {
		panic(err)
	}
	rec, err := s.Decode([]byte(`{"table":"raw_item","row":{"project_id":42,"body":"x","uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`), "")
	fmt.Println(rec.Key, err)
	// Output:
	// /var/spool/ingest/.ingest 4MiB 20ms
	// raw_item all {percent: 25, accounts: [42]} true
	// 42 <nil>
}

func ExampleParse_errors() {
	_, err := config.Parse([]byte(`spool: {dir: /x}
tables:
  raw_item:
    key: project_id
    columns: {project_id: bigint}
    kafka: {percent: 140}
`))
	fmt.Println(err)
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.Line, ce.Path)
	}
	// Output:
	// line 6: tables.raw_item.kafka.percent: must be between 0 and 100, got 140
	// 6 tables.raw_item.kafka.percent
}

func ExampleSelector_Match() {
	sel, err := config.ParseSelector("{percent: 10, accounts: [7], exclude: [13]}")
	if err != nil {
		panic(err)
	}
	// 7 is listed, 15 hashes into the first 10% (bucket < 1000), 13 would
	// too but is excluded, 1 is outside.
	for _, acct := range []string{"7", "15", "13", "1"} {
		fmt.Println(acct, sel.Match(acct), config.Bucket(acct))
	}
	// Output:
	// 7 true 1446
	// 15 true 763
	// 13 false 29
	// 1 false 7868
}
