package schema

import (
	"strconv"
	"strings"
)

// Reason classifies why [Schema.Decode] rejected a line. It is short, stable and
// lower_snake_case because the loader writes it verbatim into the dead-letter
// file and uses it as a metric label: renaming one breaks dashboards.
type Reason string

// The reasons [Schema.Decode] reports, roughly in the order they are checked.
const (
	ReasonEmptyLine      Reason = "empty_line"      // nothing but JSON whitespace
	ReasonInvalidUTF8    Reason = "invalid_utf8"    // the line is not valid UTF-8
	ReasonMalformedJSON  Reason = "malformed_json"  // not one well-formed JSON value (truncated lines land here)
	ReasonNotObject      Reason = "not_object"      // valid JSON, but not an object
	ReasonMissingTable   Reason = "missing_table"   // no "table" and no default table for the stream
	ReasonUnknownTable   Reason = "unknown_table"   // "table" names no configured table, or is not a string
	ReasonMissingRow     Reason = "missing_row"     // no "row" member
	ReasonRowNotObject   Reason = "row_not_object"  // "row" is not an object
	ReasonDuplicateField Reason = "duplicate_field" // "table", "row" or a configured column appears twice
	ReasonMissingKey     Reason = "missing_key"     // the account key field is absent from the row
	ReasonBadKey         Reason = "bad_key"         // the account key is null, empty, or not a string/integer of its column type
	ReasonMissingID      Reason = "missing_id"      // an id field is configured but absent or null
	ReasonBadID          Reason = "bad_id"          // the id is empty or does not fit its column type
	ReasonBadTime        Reason = "bad_time"        // the time field is not epoch seconds/ms or RFC 3339
	ReasonBadColumn      Reason = "bad_column"      // a configured column's value does not convert to its type
	ReasonUnknownColumn  Reason = "unknown_column"  // a row field is not a column and the table says unknown_fields: reject
)

// Reasons lists every [Reason], so that metrics can be pre-registered with
// all label values and dashboards show zeros rather than gaps.
func Reasons() []Reason {
	return []Reason{
		ReasonEmptyLine, ReasonInvalidUTF8, ReasonMalformedJSON, ReasonNotObject,
		ReasonMissingTable, ReasonUnknownTable, ReasonMissingRow, ReasonRowNotObject,
		ReasonDuplicateField, ReasonMissingKey, ReasonBadKey, ReasonMissingID, ReasonBadID,
		ReasonBadTime, ReasonBadColumn, ReasonUnknownColumn,
	}
}

// Error is the error [Schema.Decode] returns for a line it rejects. Callers
// branch on it with errors.As: the loader dead-letters the line under Reason
// and adds the file and offset, which Decode cannot know.
type Error struct {
	Reason Reason
	// Field is the JSON path of the offending member: "table", "row",
	// "row.<field>" (the field name unescaped), or "" when the problem is
	// the line as a whole.
	Field string
	// Offset is the byte offset in the line where the problem was found,
	// or -1 when it applies to the whole line.
	Offset int
	// Detail is a human-readable explanation, possibly quoting a short
	// prefix of the offending value.
	Detail string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Reason))
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Offset >= 0 {
		b.WriteString(" (at byte ")
		b.WriteString(strconv.Itoa(e.Offset))
		b.WriteString(")")
	}
	return b.String()
}

// FieldError reports a problem in a table definition. Field is the path of
// the offending key relative to the table ("key", "columns.uuid",
// "unknown_fields"), so that a config loader can prefix its own path
// ("tables.raw_item.") and point the user at the exact YAML key.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// quoteValue renders a short prefix of a raw JSON value for an error detail:
// enough to recognise it in a log line, never the whole 2 KB body.
func quoteValue(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return strconv.Quote(string(raw[:max])) + "..."
	}
	return strconv.Quote(string(raw))
}
