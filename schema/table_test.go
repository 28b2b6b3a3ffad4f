package schema

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func specTable() *Table {
	return &Table{
		Name: "raw_item", Key: "project_id", ID: "uuid", Time: "timestamp",
		Topic: "raw_item", DBTable: "raw_item",
		Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint", "body": "text",
			"version": "integer", "billable": "integer", "uuid": "uuid"},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Table)
		want   string // substring of the error; "" = valid
	}{
		{"spec example", func(*Table) {}, ""},
		{"no id, no time", func(t *Table) { t.ID, t.Time = "", "" }, ""},
		{"defaults for topic and db_table", func(t *Table) { t.Topic, t.DBTable = "", "" }, ""},
		{"schema-qualified db_table", func(t *Table) { t.DBTable = "ingest.raw_item" }, ""},
		{"aliases", func(t *Table) { t.Columns["version"] = "INT4"; t.Columns["body"] = "character  varying" }, ""},
		{"catch-all jsonb", func(t *Table) { t.Columns["rest"] = "jsonb"; t.UnknownFields = "jsonb:rest" }, ""},
		{"reject unknown", func(t *Table) { t.UnknownFields = "reject" }, ""},
		{"no name", func(t *Table) { t.Name = "" }, "name: must not be empty"},
		{"no key", func(t *Table) { t.Key = "" }, "key: is required"},
		{"key not a column", func(t *Table) { t.Key = "account" }, `key: "account" is not in columns`},
		{"key of wrong type", func(t *Table) { t.Columns["project_id"] = "boolean" }, `key: column "project_id" has type boolean`},
		{"id not a column", func(t *Table) { t.ID = "event_id" }, `id: "event_id" is not in columns`},
		{"id of wrong type", func(t *Table) { t.Columns["uuid"] = "jsonb" }, `id: column "uuid" has type jsonb`},
		{"time not a column", func(t *Table) { t.Time = "ts" }, `time: "ts" is not in columns`},
		{"time of wrong type", func(t *Table) { t.Columns["timestamp"] = "uuid" }, `time: column "timestamp" has type uuid`},
		{"no columns", func(t *Table) { t.Columns = nil; t.Key = "" }, "columns: must list at least one column"},
		{"bad type", func(t *Table) { t.Columns["body"] = "blob" }, `columns.body: unsupported type "blob"`},
		{"json suggests jsonb", func(t *Table) { t.Columns["body"] = "json" }, "use jsonb"},
		{"varchar with length", func(t *Table) { t.Columns["body"] = "varchar(10)" }, `columns.body: unsupported type "varchar(10)"`},
		{"long column name", func(t *Table) { t.Columns[strings.Repeat("c", 64)] = "text" }, "PostgreSQL truncates beyond 63"},
		{"NUL in column name", func(t *Table) { t.Columns["a\x00b"] = "text" }, "NUL"},
		{"bad topic", func(t *Table) { t.Topic = "raw item" }, `topic: "raw item" has character ' '`},
		{"long topic", func(t *Table) { t.Topic = strings.Repeat("t", 250) }, "topic: "},
		{"three-part db_table", func(t *Table) { t.DBTable = "a.b.c" }, "db_table: "},
		{"empty db_table part", func(t *Table) { t.DBTable = "a." }, "db_table: "},
		{"bad unknown_fields", func(t *Table) { t.UnknownFields = "keep" }, `unknown_fields: must be ignore, reject or jsonb:<column>, got "keep"`},
		{"catch-all not a column", func(t *Table) { t.UnknownFields = "jsonb:rest" }, `unknown_fields: column "rest" is not in columns`},
		{"catch-all not jsonb", func(t *Table) { t.UnknownFields = "jsonb:body" }, `unknown_fields: column "body" has type text`},
		{"storage parameters", func(t *Table) {
			t.DBStorage = map[string]string{"toast_tuple_target": "8160", "fillfactor": "90", "toast.autovacuum_enabled": "false"}
		}, ""},
		{"storage name injected", func(t *Table) { t.DBStorage = map[string]string{"fillfactor = 90); DROP TABLE x; --": "1"} }, "db_storage: "},
		{"storage value injected", func(t *Table) { t.DBStorage = map[string]string{"fillfactor": "90); DROP TABLE x"} }, "db_storage.fillfactor: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := specTable()
			tt.mutate(tbl)
			err := tbl.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("no *FieldError in %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	tbl := specTable()
	tbl.Key = "nope"
	tbl.Columns["body"] = "blob"
	tbl.UnknownFields = "drop"
	err := tbl.Validate()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 3 {
		t.Fatalf("want 3 joined errors, got %v", err)
	}
}

func TestParseType(t *testing.T) {
	for in, want := range map[string]Type{
		"bigint": Bigint, "INT8": Bigint, "integer": Integer, "int": Integer, "int4": Integer,
		"smallint": Smallint, "int2": Smallint, "text": Text, "varchar": Text, "Character Varying": Text,
		"boolean": Boolean, "bool": Boolean, "double precision": Double, "float8": Double, "double": Double,
		"numeric": Numeric, "decimal": Numeric, "uuid": UUID, "jsonb": JSONB, "timestamptz": Timestamptz,
		"timestamp with time zone": Timestamptz, " bigint ": Bigint,
	} {
		got, err := ParseType(in)
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "json", "timestamp", "real", "float4", "bytea", "varchar(10)", "serial"} {
		if _, err := ParseType(in); err == nil {
			t.Errorf("ParseType(%q) succeeded", in)
		}
	}
}

func TestDDL(t *testing.T) {
	tests := []struct {
		name  string
		table *Table
		want  string
	}{
		{"spec example", specTable(), `CREATE TABLE IF NOT EXISTS "raw_item" (
	"billable" integer,
	"body" text,
	"project_id" bigint NOT NULL,
	"timestamp" bigint,
	"uuid" uuid,
	"version" integer,
	PRIMARY KEY ("uuid")
)`},
		{"quoting and no id", &Table{Name: "t", DBTable: `my schema.we"ird`, Key: "Select",
			Columns: map[string]string{"Select": "text", `a"b`: "double", "when": "timestamp with time zone"}},
			`CREATE TABLE IF NOT EXISTS "my schema"."we""ird" (
	"Select" text NOT NULL,
	"a""b" double precision,
	"when" timestamptz
)`},
		{"key is id", &Table{Name: "t", Key: "k", ID: "k", Columns: map[string]string{"k": "int8"}},
			`CREATE TABLE IF NOT EXISTS "t" (
	"k" bigint,
	PRIMARY KEY ("k")
)`},
		{"storage parameters, sorted", &Table{Name: "t", Key: "k", Columns: map[string]string{"k": "int8"},
			DBStorage: map[string]string{"toast_tuple_target": "8160", "fillfactor": "90"}},
			`CREATE TABLE IF NOT EXISTS "t" (
	"k" bigint NOT NULL
) WITH (fillfactor = 90, toast_tuple_target = 8160)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.table.DDL(); got != tt.want {
				t.Errorf("DDL:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestIdentifierQuoting pins our quoting to pgx's, which the Postgres sink
// uses for the same names.
func TestIdentifierQuoting(t *testing.T) {
	tbl := &Table{Name: "x", DBTable: `s"1.t"2`}
	if got, want := tbl.Identifier().Sanitize(), (pgx.Identifier{`s"1`, `t"2`}).Sanitize(); got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestNew(t *testing.T) {
	in := specTable()
	in.Name, in.Topic, in.DBTable = "ignored", "", ""
	s, err := New(map[string]*Table{"raw_item": in, "other": {Key: "k", Columns: map[string]string{"k": "text"}, Topic: "t2"}})
	if err != nil {
		t.Fatal(err)
	}
	tbl, ok := s.Lookup("raw_item")
	if !ok || tbl.Name != "raw_item" || tbl.Topic != "raw_item" || tbl.DBTable != "raw_item" {
		t.Fatalf("Lookup = %+v, %v", tbl, ok)
	}
	if in.Name != "ignored" || in.Topic != "" {
		t.Error("New modified its argument")
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Error("Lookup of unknown table succeeded")
	}
	var names []string
	for _, t := range s.Tables() {
		names = append(names, t.Name)
	}
	if strings.Join(names, ",") != "other,raw_item" {
		t.Errorf("Tables() order = %v", names)
	}

	_, err = New(map[string]*Table{"b": {Key: "x", Columns: map[string]string{"k": "text"}}, "a": nil})
	if err == nil || err.Error() != "table \"a\": no definition\ntable \"b\": key: \"x\" is not in columns" {
		t.Errorf("New error = %q", err)
	}
}
