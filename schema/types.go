package schema

import (
	"fmt"
	"strings"
)

// Type is a PostgreSQL column type in its canonical spelling, the one
// [Table.DDL] emits. Only types whose JSON form is unambiguous are supported:
// each has a precise rule for which JSON values convert to it (see
// [Schema.Decode]), so a line that passes decoding does not fail later in COPY.
type Type string

// The supported column types.
const (
	Bigint      Type = "bigint"
	Integer     Type = "integer"
	Smallint    Type = "smallint"
	Text        Type = "text"
	Boolean     Type = "boolean"
	Double      Type = "double precision"
	Numeric     Type = "numeric"
	UUID        Type = "uuid"
	JSONB       Type = "jsonb"
	Timestamptz Type = "timestamptz"
)

// typeAliases maps every accepted spelling (lower case, single spaces) to its
// canonical Type. The aliases are the ones PostgreSQL itself accepts, so a
// column type copied from \d output works. Length-limited forms such as
// varchar(255) are refused: the limit would be silently dropped.
var typeAliases = map[string]Type{
	"bigint": Bigint, "int8": Bigint,
	"integer": Integer, "int": Integer, "int4": Integer,
	"smallint": Smallint, "int2": Smallint,
	"text": Text, "varchar": Text, "character varying": Text,
	"boolean": Boolean, "bool": Boolean,
	"double precision": Double, "float8": Double, "double": Double,
	"numeric": Numeric, "decimal": Numeric,
	"uuid":        UUID,
	"jsonb":       JSONB,
	"timestamptz": Timestamptz, "timestamp with time zone": Timestamptz,
}

// ParseType returns the canonical [Type] for a column type as written in
// config. It is case-insensitive and accepts the usual PostgreSQL aliases
// (int8, int4, int2, int, bool, float8, decimal, varchar, ...).
func ParseType(s string) (Type, error) {
	norm := strings.ToLower(strings.Join(strings.Fields(s), " "))
	if t, ok := typeAliases[norm]; ok {
		return t, nil
	}
	if norm == "json" {
		// json keeps duplicate keys and key order, jsonb does not; mapping one
		// to the other silently would change what is stored.
		return "", fmt.Errorf("unsupported type %q (use jsonb)", s)
	}
	return "", fmt.Errorf("unsupported type %q (supported: bigint, integer, smallint, text, boolean, double precision, numeric, uuid, jsonb, timestamptz)", s)
}

// keyable reports whether a column of this type can hold an account key or a
// record id: both travel as strings (Kafka message key, header), so only types
// with one obvious string form qualify.
func (t Type) keyable() bool {
	switch t {
	case Bigint, Integer, Smallint, Text, UUID:
		return true
	}
	return false
}

// timeable reports whether a column of this type can be the table's time
// field, given the epoch/RFC 3339 rules of [ParseTime].
func (t Type) timeable() bool {
	switch t {
	case Bigint, Integer, Double, Numeric, Text, Timestamptz:
		return true
	}
	return false
}

// kind is Type as a small integer, so that the per-value switch in Decode
// is a jump table rather than string comparisons.
type kind uint8

const (
	kBigint kind = iota
	kInteger
	kSmallint
	kText
	kBoolean
	kDouble
	kNumeric
	kUUID
	kJSONB
	kTimestamptz
)

var kindOf = map[Type]kind{
	Bigint: kBigint, Integer: kInteger, Smallint: kSmallint, Text: kText, Boolean: kBoolean,
	Double: kDouble, Numeric: kNumeric, UUID: kUUID, JSONB: kJSONB, Timestamptz: kTimestamptz,
}
