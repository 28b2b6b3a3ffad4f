package schema

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Table describes one destination: where its rows go (Kafka topic, Postgres
// table), which row fields carry the account key, the record id and the event
// time, and the columns a row may have. The yaml tags are the config keys of
// a table under "tables:" (docs/config.md).
//
// Build tables into a [Schema] with [New] before decoding: New validates
// each table, fills in defaults on its own copy and precomputes what
// [Schema.Decode] needs. A Table that did not come from New can still be
// validated ([Table.Validate]) and rendered ([Table.DDL]).
type Table struct {
	// Name is the value of "table" in offline lines. It comes from the key
	// of the "tables:" map, not from a yaml field.
	Name string `yaml:"-"`
	// Key is the row field holding the account key (required). It must be a
	// column of type bigint, integer, smallint, text or uuid.
	Key string `yaml:"key"`
	// ID is the row field holding a unique record id (optional). When set,
	// every row must carry it, and it becomes the PRIMARY KEY so that the
	// Postgres sink can insert with ON CONFLICT DO NOTHING.
	ID string `yaml:"id,omitempty"`
	// Time is the row field holding the event time (optional): epoch seconds
	// or milliseconds, or an RFC 3339 string. See [ParseTime].
	Time string `yaml:"time,omitempty"`
	// Topic is the Kafka topic (default: Name).
	Topic string `yaml:"topic,omitempty"`
	// DBTable is the Postgres table, optionally schema-qualified as
	// "schema.table" (default: Name). Each dot-separated part is quoted
	// separately, so names cannot contain dots.
	DBTable string `yaml:"db_table,omitempty"`
	// Columns maps a row field (and Postgres column) name to its type.
	// Spellings are normalised by [ParseType]. Columns are ordered by name
	// wherever an order is needed (DDL, [Table.ColumnList]): a Go map has
	// none, and sorted order is the same on every host and every run.
	Columns map[string]string `yaml:"columns"`
	// UnknownFields says what happens to row fields that are not columns:
	//
	//	ignore          (default) accept the row; Kafka gets the row as is,
	//	                the Postgres sink stores only the columns.
	//	reject          dead-letter the row (reason unknown_column).
	//	jsonb:<column>  accept the row; the Postgres sink stores the unknown
	//	                fields as one JSON object in <column>, which must be a
	//	                jsonb column (see [Value.JSON]). A row may not
	//	                carry that column itself.
	UnknownFields string `yaml:"unknown_fields,omitempty"`
	// DBStorage are PostgreSQL storage parameters of the table, which
	// `ingest migrate` sets when it creates it (CREATE TABLE ... WITH
	// (name = value, ...)); a table that already exists keeps its own
	// (change them with ALTER TABLE ... SET). Names are lower-case
	// identifiers, optionally dotted (toast.autovacuum_enabled); values
	// are numbers or words. Example: {toast_tuple_target: 8160} keeps rows
	// up to a page inline and uncompressed. PostgreSQL's default (2032)
	// compresses and moves out of line every row over ~2 KB, which for
	// incompressible payloads (base64 bodies) costs CPU and a second
	// table's writes for nothing: it loaded ~2 KB raw_item rows 30-40 %
	// slower (docs/benchmark-log.md).
	DBStorage map[string]string `yaml:"db_storage,omitempty"`

	c *compiled // set by New
}

// Column is one column of a [Table], with its canonical type.
type Column struct {
	Name string
	Type Type
}

// unknownPolicy is the parsed form of Table.UnknownFields.
type unknownPolicy uint8

const (
	unknownIgnore unknownPolicy = iota
	unknownReject
	unknownJSONB
)

// compiled is what Decode needs, computed once by New so that the per-line
// path does no map lookups or string building.
type compiled struct {
	cols     []Column // sorted by name
	kinds    []kind   // kinds[i] is cols[i].Type as a small integer
	byLen    [][]int  // byLen[len(name)] = indexes into cols; see lookup
	key      int      // index into cols
	id       int      // -1 when not configured
	time     int      // -1 when not configured
	unknown  unknownPolicy
	extra    int // catch-all jsonb column for unknownJSONB, else -1
	keyIsInt bool
}

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer identifiers are silently
// truncated, which could make two configured columns collide.
const maxIdentLen = 63

// Validate checks the table definition. It returns nil, or one error per
// problem joined with [errors.Join], each a *[FieldError] naming the key,
// e.g. `key: "project_id" is not in columns`.
func (t *Table) Validate() error {
	_, err := t.compile()
	return err
}

func (t *Table) compile() (*compiled, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	c := &compiled{key: -1, id: -1, time: -1, extra: -1}

	if t.Name == "" {
		bad("name", "must not be empty")
	}
	if len(t.Columns) == 0 {
		bad("columns", "must list at least one column")
	}
	for name, typ := range t.Columns {
		if err := checkIdent(name); err != nil {
			bad("columns", "column %q: %v", name, err)
			continue
		}
		ct, err := ParseType(typ)
		if err != nil {
			bad("columns."+name, "%v", err)
			continue
		}
		c.cols = append(c.cols, Column{Name: name, Type: ct})
	}
	slices.SortFunc(c.cols, func(a, b Column) int { return strings.Compare(a.Name, b.Name) })
	index := func(name string) int {
		i, ok := slices.BinarySearchFunc(c.cols, name, func(c Column, n string) int { return strings.Compare(c.Name, n) })
		if !ok {
			return -1
		}
		return i
	}
	// role resolves Key/ID/Time to a column index, reporting which of the
	// three keys is wrong rather than a generic "bad column".
	role := func(field, name string, required bool, ok func(Type) bool, kinds string) int {
		if name == "" {
			if required {
				bad(field, "is required")
			}
			return -1
		}
		i := index(name)
		if i < 0 {
			if _, listed := t.Columns[name]; !listed { // listed but with a bad type: already reported
				bad(field, "%q is not in columns", name)
			}
			return -1
		}
		if !ok(c.cols[i].Type) {
			bad(field, "column %q has type %s; it must be %s", name, c.cols[i].Type, kinds)
			return -1
		}
		return i
	}
	c.key = role("key", t.Key, true, Type.keyable, "bigint, integer, smallint, text or uuid")
	c.id = role("id", t.ID, false, Type.keyable, "bigint, integer, smallint, text or uuid")
	c.time = role("time", t.Time, false, Type.timeable, "bigint, integer, double precision, numeric, text or timestamptz")
	if c.key >= 0 {
		switch c.cols[c.key].Type {
		case Bigint, Integer, Smallint:
			c.keyIsInt = true
		}
	}

	switch u := t.UnknownFields; {
	case u == "" || u == "ignore":
		c.unknown = unknownIgnore
	case u == "reject":
		c.unknown = unknownReject
	case strings.HasPrefix(u, "jsonb:"):
		c.unknown = unknownJSONB
		col := strings.TrimPrefix(u, "jsonb:")
		i := index(col)
		switch {
		case i < 0:
			bad("unknown_fields", "column %q is not in columns", col)
		case c.cols[i].Type != JSONB:
			bad("unknown_fields", "column %q has type %s; it must be jsonb", col, c.cols[i].Type)
		case i == c.key || i == c.id || i == c.time:
			bad("unknown_fields", "column %q is the key, id or time field", col)
		default:
			c.extra = i
		}
	default:
		bad("unknown_fields", "must be ignore, reject or jsonb:<column>, got %q", u)
	}

	if topic := t.topic(); topic != "" {
		if err := CheckTopic(topic); err != nil {
			bad("topic", "%v", err)
		}
	}
	if dbt := t.dbTable(); dbt != "" {
		parts := strings.Split(dbt, ".")
		if len(parts) > 2 {
			bad("db_table", "%q has more than one dot; use schema.table", dbt)
		}
		for _, p := range parts {
			if err := checkIdent(p); err != nil {
				bad("db_table", "%q: %v", dbt, err)
				break
			}
		}
	}

	for name, v := range t.DBStorage {
		if !storageName.MatchString(name) {
			bad("db_storage", "%q is not a storage parameter name (lower-case letters, digits, _ and .)", name)
		}
		if !storageValue.MatchString(v) {
			bad("db_storage."+name, "value %q must be a number or a word", v)
		}
	}

	c.kinds = make([]kind, len(c.cols))
	for i, col := range c.cols {
		c.kinds[i] = kindOf[col.Type]
	}
	maxLen := 0
	for _, col := range c.cols {
		maxLen = max(maxLen, len(col.Name))
	}
	c.byLen = make([][]int, maxLen+1)
	for i, col := range c.cols {
		c.byLen[len(col.Name)] = append(c.byLen[len(col.Name)], i)
	}
	if len(errs) > 0 {
		// Map iteration order made errs random; sort so the same config
		// always produces the same message.
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// The storage parameters of Table.DBStorage go into DDL unquoted (they
// are keywords to PostgreSQL, not identifiers), so only plain words pass.
var (
	storageName  = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)
	storageValue = regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?|[A-Za-z_][A-Za-z0-9_]*)$`)
)

func checkIdent(s string) error {
	switch {
	case s == "":
		return errors.New("identifier must not be empty")
	case len(s) > maxIdentLen:
		return fmt.Errorf("identifier is %d bytes; PostgreSQL truncates beyond %d", len(s), maxIdentLen)
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("identifier contains a NUL byte")
	case !utf8.ValidString(s):
		return errors.New("identifier is not valid UTF-8")
	}
	return nil
}

// CheckTopic applies Kafka's topic name rules, so a typo fails at config
// load rather than at the first produce. Exported so that kafkasink checks
// the topics it is configured with by the same rules.
func CheckTopic(s string) error {
	if s == "" {
		return errors.New("topic name must not be empty")
	}
	if len(s) > 249 {
		return fmt.Errorf("%q is longer than 249 characters", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a legal topic name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has character %q; Kafka allows only [a-zA-Z0-9._-]", s, c)
		}
	}
	return nil
}

func (t *Table) topic() string {
	if t.Topic != "" {
		return t.Topic
	}
	return t.Name
}

func (t *Table) dbTable() string {
	if t.DBTable != "" {
		return t.DBTable
	}
	return t.Name
}

// ColumnList returns the columns in name order with canonical types.
// Columns whose type does not parse are left out; [Table.Validate] reports them.
func (t *Table) ColumnList() []Column {
	if t.c != nil {
		return slices.Clone(t.c.cols)
	}
	var cols []Column
	for name, typ := range t.Columns {
		if ct, err := ParseType(typ); err == nil {
			cols = append(cols, Column{Name: name, Type: ct})
		}
	}
	slices.SortFunc(cols, func(a, b Column) int { return strings.Compare(a.Name, b.Name) })
	return cols
}

// Identifier returns the Postgres table as a pgx identifier: "schema.table"
// becomes two parts, so that Sanitize quotes each one.
func (t *Table) Identifier() pgx.Identifier {
	return pgx.Identifier(strings.Split(t.dbTable(), "."))
}

// DDL returns the CREATE TABLE IF NOT EXISTS statement for the table, without
// a trailing semicolon. Every identifier is quoted with [pgx.Identifier], so
// names that are SQL keywords or have upper-case letters work. The key column
// is NOT NULL (decoding guarantees it); the id column, when configured, is the
// PRIMARY KEY, which the Postgres sink relies on for ON CONFLICT (id) DO NOTHING.
//
// DDL does not validate; call [Table.Validate] (or build a [Schema]) first.
func (t *Table) DDL() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS ")
	b.WriteString(t.Identifier().Sanitize())
	b.WriteString(" (")
	for i, col := range t.ColumnList() {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n\t")
		b.WriteString(pgx.Identifier{col.Name}.Sanitize())
		b.WriteString(" ")
		b.WriteString(string(col.Type))
		if col.Name == t.Key && col.Name != t.ID {
			b.WriteString(" NOT NULL")
		}
	}
	if t.ID != "" {
		b.WriteString(",\n\tPRIMARY KEY (")
		b.WriteString(pgx.Identifier{t.ID}.Sanitize())
		b.WriteString(")")
	}
	b.WriteString("\n)")
	if len(t.DBStorage) > 0 {
		b.WriteString(" WITH (")
		for i, name := range slices.Sorted(maps.Keys(t.DBStorage)) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name + " = " + t.DBStorage[name])
		}
		b.WriteString(")")
	}
	return b.String()
}

// Schema is a validated set of tables, keyed by the "table" value of offline
// lines. It is immutable and safe for concurrent use; a config reload builds
// a new one.
type Schema struct {
	tables map[string]*Table
	sorted []*Table
}

// New validates tables and builds a [Schema]. The map key is the table name.
// Each Table is copied, so later changes to the argument do not affect the
// Schema; in the copy Name is set from the map key and Topic and DBTable
// default to it. The error joins every problem found, each prefixed with
// `table "<name>": `.
func New(tables map[string]*Table) (*Schema, error) {
	s := &Schema{tables: make(map[string]*Table, len(tables))}
	var errs []error
	for name, t := range tables {
		if t == nil {
			errs = append(errs, fmt.Errorf("table %q: no definition", name))
			continue
		}
		cp := *t
		cp.Columns = maps.Clone(t.Columns)
		cp.DBStorage = maps.Clone(t.DBStorage)
		cp.Name = name
		cp.Topic = cp.topic()
		cp.DBTable = cp.dbTable()
		c, err := cp.compile()
		if err != nil {
			errs = append(errs, fmt.Errorf("table %q: %w", name, err))
			continue
		}
		cp.c = c
		s.tables[name] = &cp
		s.sorted = append(s.sorted, &cp)
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(s.sorted, func(a, b *Table) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// Lookup returns the table with the given name.
func (s *Schema) Lookup(name string) (*Table, bool) {
	t, ok := s.tables[name]
	return t, ok
}

// Tables returns the tables in name order.
func (s *Schema) Tables() []*Table { return slices.Clone(s.sorted) }

// lookup finds a row field among the columns. Bucketing by length first makes
// the common miss (a field of another length) one slice index, and the
// string(b) conversion in the comparison does not allocate.
func (c *compiled) lookup(name []byte) int {
	if len(name) >= len(c.byLen) {
		return -1
	}
	for _, i := range c.byLen[len(name)] {
		if c.cols[i].Name == string(name) {
			return i
		}
	}
	return -1
}
