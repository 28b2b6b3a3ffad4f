package schema_test

import (
	"errors"
	"fmt"

	"github.com/dualwrite/ingest/schema"
)

func ExampleSchema_Decode() {
	s, err := schema.New(map[string]*schema.Table{
		"raw_item": {
			Key: "project_id", ID: "uuid", Time: "timestamp",
			Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint", "body": "text",
				"version": "integer", "billable": "integer", "uuid": "uuid"},
		},
	})
	if err != nil {
		panic(err)
	}
	line := []byte(`{"table":"raw_item","row":{"project_id":1,"timestamp":1574948156,"body":"eJyN","version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"},"counter":356}`)
	rec, err := s.Decode(line, "")
	if err != nil {
		panic(err)
	}
	fmt.Println(rec.Table.Topic, rec.Key, rec.ID, rec.Time)
	fmt.Println(string(rec.Row))

	_, err = s.Decode([]byte(`{"table":"raw_item","row":{"project_id":1.5}}`), "")
	var de *schema.Error
	if errors.As(err, &de) {
		fmt.Println(de.Reason, de.Field)
	}
	// Output:
	// raw_item 1 bad3a155-585f-47cb-bc3e-51767d52c2a2 2019-11-28 13:35:56 +0000 UTC
	// {"project_id":1,"timestamp":1574948156,"body":"eJyN","version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}
	// bad_key row.project_id
}

func ExampleTable_DDL() {
	t := &schema.Table{
		Name: "raw_item", Key: "project_id", ID: "uuid",
		Columns: map[string]string{"project_id": "int8", "body": "text", "uuid": "uuid"},
	}
	if err := t.Validate(); err != nil {
		panic(err)
	}
	fmt.Println(t.DDL())
	// Output:
	// CREATE TABLE IF NOT EXISTS "raw_item" (
	// 	"body" text,
	// 	"project_id" bigint NOT NULL,
	// 	"uuid" uuid,
	// 	PRIMARY KEY ("uuid")
	// )
}

func ExampleTable_Validate() {
	t := &schema.Table{Name: "raw_item", Key: "project_id", Columns: map[string]string{"account": "bigint"}}
	fmt.Println(t.Validate())
	// Output:
	// key: "project_id" is not in columns
}

func ExampleRecord_Value() {
	s, err := schema.New(map[string]*schema.Table{
		"events": {Key: "acct", UnknownFields: "jsonb:extra",
			Columns: map[string]string{"acct": "text", "n": "integer", "extra": "jsonb"}},
	})
	if err != nil {
		panic(err)
	}
	rec, err := s.Decode([]byte(`{"table":"events","row":{"acct":"a\u00e91","n":7,"color":"red"}}`), "")
	if err != nil {
		panic(err)
	}
	for i, c := range rec.Table.ColumnList() {
		v := rec.Value(i)
		switch c.Type {
		case schema.Text:
			fmt.Printf("%s %s = %s\n", c.Name, c.Type, v.Text())
		case schema.Integer:
			fmt.Printf("%s %s = %d\n", c.Name, c.Type, v.Int())
		case schema.JSONB:
			fmt.Printf("%s %s = %s\n", c.Name, c.Type, v.JSON())
		}
	}
	// Output:
	// acct text = aé1
	// extra jsonb = {"color":"red"}
	// n integer = 7
}

func ExampleParseTime() {
	for _, v := range []string{`1574948156`, `1574948156123`, `"2019-11-28T14:35:56+01:00"`} {
		t, err := schema.ParseTime([]byte(v))
		fmt.Println(t, err)
	}
	// Output:
	// 2019-11-28 13:35:56 +0000 UTC <nil>
	// 2019-11-28 13:35:56.123 +0000 UTC <nil>
	// 2019-11-28 13:35:56 +0000 UTC <nil>
}
