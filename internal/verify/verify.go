package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// ArgError is a problem with the arguments or with the config for this
// check (unknown table, no id field, a sink not configured). The CLI exits
// 2 on it; Arg names the flag or config key.
type ArgError struct {
	Arg string
	Msg string
}

func (e *ArgError) Error() string { return e.Arg + ": " + e.Msg }

// Options say what to compare.
type Options struct {
	// Table is the config's table name (the "table" value of lines).
	Table string
	// Window bounds the table's time field; zero compares everything.
	// Rows and messages without a time are outside any bounded window.
	Window loader.Window
	// AllowEmpty makes a comparison with nothing compared a success:
	// nothing on either side (no row in PostgreSQL, no message of the
	// table in Kafka), or records only of accounts not routed to both
	// sinks. Without it Run returns [ErrNothingToCompare]: a window that
	// holds nothing is more often a mistake (a load time given where rows
	// carry event times) than a finding, and a check that compared no
	// account must not pass as one that found them equal.
	AllowEmpty bool
	// ReadToEnd reads each partition from the window's start to its high
	// watermark instead of stopping at the window's end, to find records
	// PostgreSQL lacks among messages produced out of time order (history
	// backfilled after newer records). Records Kafka lacks are looked for
	// there anyway.
	ReadToEnd bool
	Logger    *slog.Logger // nil: discard
}

// ErrNothingToCompare is returned (wrapped, with the report) when no
// account was compared, because neither side holds a record in the window
// or none of the accounts that do is routed to both sinks, and
// [Options.AllowEmpty] is not set.
var ErrNothingToCompare = errors.New("nothing to compare")

// Report is the outcome of [Run]. Accounts are sorted by key (numerically
// for integer keys).
type Report struct {
	Table   string `json:"table"`
	DBTable string `json:"db_table"`
	Topic   string `json:"topic"`
	Window  string `json:"window"`
	// Partitions is the topic's partition count; StartOffsets says how
	// the first offset of each partition was found: "by-timestamp",
	// "earliest" (no --since) or "earliest (...)" with the reason the
	// timestamps could not be used; EndOffsets how the first offset past
	// the window was: "by-timestamp" or "high watermark" (no --until,
	// --to-end, or timestamps not usable).
	Partitions   int    `json:"partitions"`
	StartOffsets string `json:"start_offsets"`
	EndOffsets   string `json:"end_offsets"`
	// Reads is what was read of each partition.
	Reads []PartitionRead `json:"partition_reads"`
	// Messages is every message of the topic read between the start and
	// end offsets (the first pass); OtherTables those of other tables
	// sharing the topic; Undecodable those whose value the table's schema
	// did not accept (then the headers and message key were used).
	Messages    int64 `json:"messages"`
	OtherTables int64 `json:"other_tables"`
	Undecodable int64 `json:"undecodable"`
	// PastEnd is set when records of checked accounts were missing from
	// the window's offsets and the partitions were read on to their high
	// watermarks for them (see [PartitionRead.PastEndRead]).
	PastEnd bool `json:"read_past_end"`
	// Empty: neither side holds a record in the window.
	Empty bool `json:"nothing_to_compare"`
	// Checked counts the accounts routed to both sinks; Mismatched those of
	// them that disagree.
	Checked    int       `json:"checked_accounts"`
	Mismatched []string  `json:"mismatched_accounts"`
	Accounts   []Account `json:"accounts"`
	// OK is true when every account routed to both sinks agrees.
	OK      bool          `json:"ok"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// PartitionRead is what verify read of one partition.
type PartitionRead struct {
	Partition int32 `json:"partition"`
	// Start and End bound the offsets of the window, [Start, End);
	// HighWatermark is the partition's end when verify started.
	Start         int64 `json:"start_offset"`
	End           int64 `json:"end_offset"`
	HighWatermark int64 `json:"high_watermark"`
	// Read counts the messages of [Start, End) read in the first pass
	// (fewer when offsets were skipped: compaction, transaction markers).
	Read int64 `json:"read"`
	// Fetched counts the messages the consumer received from the broker
	// for the partition in the first pass (librdkafka's rxmsgs): Read plus
	// the rest of the record batch holding End-1 plus at most one more
	// fetch: the next batch, or up to 64 KiB of small batches (see the
	// package doc, "What a read fetches"). -1 when its
	// statistics did not come.
	Fetched int64 `json:"fetched"`
	// PastEndRead counts messages read in [End, HighWatermark) because
	// records of checked accounts were missing in the window's offsets:
	// records whose timestamps are out of order (history backfilled after
	// newer records) sit there.
	PastEndRead int64 `json:"past_end_read,omitempty"`
}

// Account is one account's comparison.
type Account struct {
	Account string `json:"account"`
	// RoutedDB and RoutedKafka are the config's selectors for the account;
	// only an account routed to both is Checked, the others are
	// informational.
	RoutedDB    bool `json:"routed_db"`
	RoutedKafka bool `json:"routed_kafka"`
	Checked     bool `json:"checked"`
	DB          Side `json:"db"`
	Kafka       Side `json:"kafka"`
	// Duplicates counts Kafka messages that repeat a record id already
	// seen (at-least-once delivery): reported, not a mismatch.
	Duplicates int64 `json:"kafka_duplicates"`
	// MissingInKafka and MissingInDB list the record ids on one side only
	// (checked accounts only).
	MissingInKafka []string `json:"missing_in_kafka,omitempty"`
	MissingInDB    []string `json:"missing_in_db,omitempty"`
	// Agree: same set of record ids on both sides (duplicates aside).
	Agree bool `json:"agree"`
}

// Side is what one sink holds for an account: the number of distinct
// record ids and their digest, the sum modulo 2^64 of a 64-bit hash of
// each id ([Digest]), so equal sets give equal digests whatever the order.
type Side struct {
	Count  int64  `json:"count"`
	Digest string `json:"digest"`
}

// Run compares the table's rows in PostgreSQL with its messages in Kafka
// over the window, per account. It returns an *[ArgError] when the table
// or config cannot be verified, other errors when a side cannot be read,
// and otherwise a report whose OK says whether the sides agree.
//
// It reads in two passes. The first streams both sides and keeps, per
// account, a count and a digest of record ids: memory grows with the
// number of accounts, not rows. Only the checked accounts whose count or
// digest differ are read again, keeping their ids, to list what is
// missing where and to tell Kafka duplicates from mismatches. Both passes
// see the same data: one PostgreSQL snapshot (a REPEATABLE READ
// transaction) and the same offset ranges of each partition.
func Run(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	start := time.Now()
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tc, table, err := checkArgs(cfg, o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Table: table.Name, DBTable: table.DBTable, Topic: table.Topic, Window: o.Window.String()}

	db, err := openDB(ctx, cfg.DB.URL, table, o.Window)
	if err != nil {
		return nil, err
	}
	defer db.close()
	kc, err := openKafka(ctx, cfg, table, o, log)
	if err != nil {
		return nil, err
	}
	defer kc.close()
	rep.Partitions, rep.StartOffsets, rep.EndOffsets = len(kc.ranges), kc.startMode, kc.endMode
	for _, rg := range kc.ranges {
		rep.Reads = append(rep.Reads, PartitionRead{Partition: rg.partition, Start: int64(rg.start), End: int64(rg.end), HighWatermark: int64(rg.hwm)})
	}

	// Pass 1: counts and digests.
	acc := map[string]*tally{}
	get := func(a string) *tally {
		t := acc[a]
		if t == nil {
			t = &tally{}
			acc[a] = t
		}
		return t
	}
	if err := db.scan(ctx, nil, func(account, id string) {
		t := get(account)
		t.db.add(id)
	}); err != nil {
		return nil, err
	}
	stats, err := kc.scan(ctx, kc.ranges, func(account, id string) {
		t := get(account)
		t.kafka.add(id)
	})
	if err != nil {
		return nil, err
	}
	rep.Messages, rep.OtherTables, rep.Undecodable = stats.messages, stats.otherTables, stats.undecodable
	for i := range rep.Reads {
		p := &rep.Reads[i]
		p.Read = stats.delivered[p.Partition]
		p.Fetched = -1
		if stats.received != nil {
			p.Fetched = stats.received[p.Partition]
		}
	}
	if stats.undecodable > 0 {
		log.Warn("messages whose value the table's schema does not accept; used their headers and key", "count", stats.undecodable)
	}
	if len(acc) == 0 {
		rep.Empty, rep.OK, rep.Mismatched = true, o.AllowEmpty, []string{}
		rep.Elapsed = time.Since(start)
		if o.AllowEmpty {
			return rep, nil
		}
		return rep, fmt.Errorf("%w: postgres has no row and kafka no message of table %s in the window %s (offsets by %s to %s); "+
			"the window is on the table's time field (tables.%s.time), not on load times; --allow-empty accepts it",
			ErrNothingToCompare, table.Name, rep.Window, rep.StartOffsets, rep.EndOffsets, table.Name)
	}

	// Pass 2: the ids of checked accounts that differ.
	var suspects []string
	for a, t := range acc {
		if tc.DB.Match(a) && tc.Kafka.Match(a) && t.db != t.kafka {
			suspects = append(suspects, a)
		}
	}
	detail := map[string]*idSets{}
	if len(suspects) > 0 {
		sort.Strings(suspects)
		log.Info("reading the ids of accounts whose digests differ", "accounts", len(suspects))
		for _, a := range suspects {
			detail[a] = &idSets{db: map[string]bool{}, kafka: map[string]int{}}
		}
		if err := db.scan(ctx, suspects, func(account, id string) {
			if d := detail[account]; d != nil {
				d.db[id] = true
			}
		}); err != nil {
			return nil, err
		}
		collect := func(account, id string) {
			if d := detail[account]; d != nil {
				d.kafka[id]++
			}
		}
		if _, err := kc.scan(ctx, kc.ranges, collect); err != nil {
			return nil, err
		}
		// Ids missing in Kafka may sit past the window's end offsets, in
		// messages produced out of time order: look there before calling
		// them missing, for those accounts only.
		late := map[string]*idSets{}
		for a, d := range detail {
			if _, _, _, missing, _ := d.compare(); len(missing) > 0 && tc.DB.Match(a) && tc.Kafka.Match(a) {
				late[a] = d
			}
		}
		if past := kc.readsPastEnd(); len(late) > 0 && len(past) > 0 {
			log.Info("records missing in the window's offsets: reading on to the high watermarks", "accounts", len(late), "partitions", len(past))
			st, err := kc.scan(ctx, past, func(account, id string) {
				if d := late[account]; d != nil {
					d.kafka[id]++
				}
			})
			if err != nil {
				return nil, err
			}
			rep.PastEnd = true
			for i := range rep.Reads {
				p := &rep.Reads[i]
				p.PastEndRead = st.delivered[p.Partition]
			}
		}
	}

	rep.OK = true
	for a, t := range acc {
		ar := Account{Account: a, RoutedDB: tc.DB.Match(a), RoutedKafka: tc.Kafka.Match(a)}
		ar.Checked = ar.RoutedDB && ar.RoutedKafka
		ar.DB, ar.Kafka = t.db.side(), t.kafka.side()
		ar.Agree = t.db == t.kafka
		if d := detail[a]; d != nil {
			ar.Agree, ar.Kafka, ar.Duplicates, ar.MissingInKafka, ar.MissingInDB = d.compare()
		}
		if ar.Checked {
			rep.Checked++
			if !ar.Agree {
				rep.OK = false
				rep.Mismatched = append(rep.Mismatched, a)
			}
		}
		rep.Accounts = append(rep.Accounts, ar)
	}
	less := accountLess(table)
	sort.Slice(rep.Accounts, func(i, j int) bool { return less(rep.Accounts[i].Account, rep.Accounts[j].Account) })
	sort.Slice(rep.Mismatched, func(i, j int) bool { return less(rep.Mismatched[i], rep.Mismatched[j]) })
	if rep.Mismatched == nil {
		rep.Mismatched = []string{}
	}
	rep.Elapsed = time.Since(start)
	if rep.Checked == 0 && !o.AllowEmpty {
		// Records on either side, but none of an account routed to both:
		// nothing was compared, and a gate on verify's exit status (before
		// db: none) must not pass on that.
		rep.OK = false
		return rep, fmt.Errorf("%w: no account with records of table %s in the window %s is routed to both sinks (tables.%s.db: %s, tables.%s.kafka: %s); "+
			"--allow-empty accepts it", ErrNothingToCompare, table.Name, rep.Window, table.Name, tc.DB, table.Name, tc.Kafka)
	}
	return rep, nil
}

// checkArgs finds the table and checks that it can be verified.
func checkArgs(cfg *config.Config, o Options) (*config.Table, *schema.Table, error) {
	if o.Table == "" {
		return nil, nil, &ArgError{"--table", "is required"}
	}
	if err := kafkasink.CheckOAuthBearer(cfg.Kafka.Properties); err != nil {
		return nil, nil, &ArgError{"kafka.properties", err.Error()}
	}
	tc := cfg.Tables[o.Table]
	if tc == nil {
		var names []string
		for n := range cfg.Tables {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, nil, &ArgError{"--table", fmt.Sprintf("%q is not in the config (tables: %s)", o.Table, strings.Join(names, ", "))}
	}
	sch, err := cfg.Schema()
	if err != nil {
		return nil, nil, &ArgError{"--config", err.Error()}
	}
	table, _ := sch.Lookup(o.Table)
	if table.ID == "" {
		return nil, nil, &ArgError{"tables." + o.Table + ".id", "is not set: verify compares record ids, and rows without an id field carry none in PostgreSQL"}
	}
	if !o.Window.IsZero() && table.Time == "" {
		return nil, nil, &ArgError{"--since/--until", fmt.Sprintf("table %s has no time field (tables.%s.time) to window on", o.Table, o.Table)}
	}
	if !o.Window.Since.IsZero() && !o.Window.Until.IsZero() && !o.Window.Since.Before(o.Window.Until) {
		return nil, nil, &ArgError{"--since/--until", "empty window " + o.Window.String()}
	}
	if !cfg.DBEnabled() {
		return nil, nil, &ArgError{"db.url", "is empty: verify reads the rows from PostgreSQL"}
	}
	switch cfg.Kafka.Brokers {
	case "":
		return nil, nil, &ArgError{"kafka.brokers", "is empty: verify reads the messages from Kafka"}
	case "embedded":
		return nil, nil, &ArgError{"kafka.brokers", `"embedded" is an in-process cluster of another process: verify needs a real one`}
	}
	return tc, table, nil
}

// tally is one account's pass-1 state.
type tally struct {
	db, kafka sideTally
}

type sideTally struct {
	n      int64
	digest uint64
}

func (s *sideTally) add(id string) {
	s.n++
	s.digest += Digest(id)
}

func (s sideTally) side() Side { return Side{Count: s.n, Digest: hexDigest(s.digest)} }

// idSets are a suspect account's ids on both sides (Kafka with counts).
type idSets struct {
	db    map[string]bool
	kafka map[string]int
}

func (d *idSets) compare() (agree bool, kafka Side, dups int64, missingInKafka, missingInDB []string) {
	var digest uint64
	for id, n := range d.kafka {
		digest += Digest(id)
		dups += int64(n - 1)
		if !d.db[id] {
			missingInDB = append(missingInDB, id)
		}
	}
	for id := range d.db {
		if d.kafka[id] == 0 {
			missingInKafka = append(missingInKafka, id)
		}
	}
	slices.Sort(missingInKafka)
	slices.Sort(missingInDB)
	kafka = Side{Count: int64(len(d.kafka)), Digest: hexDigest(digest)}
	return len(missingInKafka) == 0 && len(missingInDB) == 0, kafka, dups, missingInKafka, missingInDB
}

// Digest is the 64-bit hash of a record id that a [Side]'s digest sums:
// FNV-1a 64 of the id's bytes (in its canonical form: decimal integers,
// lower-case hyphenated UUIDs), finished with the SplitMix64 mixer so that
// ids differing in one character differ in many bits.
func Digest(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func hexDigest(d uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(d >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// canonical puts a key or id in the form both sides agree on: PostgreSQL
// prints uuids lower-case and hyphenated, while a line may have written
// them upper-case, in braces or without hyphens.
func canonical(t schema.Type, s string) string {
	if t != schema.UUID {
		return s
	}
	hexs := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
			return r
		case r >= 'A' && r <= 'F':
			return r + 'a' - 'A'
		}
		return -1
	}, s)
	if len(hexs) != 32 {
		return s
	}
	return hexs[:8] + "-" + hexs[8:12] + "-" + hexs[12:16] + "-" + hexs[16:20] + "-" + hexs[20:]
}

func columnType(t *schema.Table, name string) schema.Type {
	for _, c := range t.ColumnList() {
		if c.Name == name {
			return c.Type
		}
	}
	return ""
}

// accountLess orders account keys numerically when the key is an integer
// column, else as strings.
func accountLess(t *schema.Table) func(a, b string) bool {
	switch columnType(t, t.Key) {
	case schema.Bigint, schema.Integer, schema.Smallint:
		return func(a, b string) bool {
			na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
			if na != nb {
				return na
			}
			if len(a) != len(b) {
				return (len(a) < len(b)) != na
			}
			return (a < b) != na
		}
	}
	return func(a, b string) bool { return a < b }
}

var errNoTopic = errors.New("topic does not exist")
