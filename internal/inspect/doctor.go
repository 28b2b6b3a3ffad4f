package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"golang.org/x/sys/unix"
)

// Check is one line of the doctor's checklist.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Warn   bool   `json:"warn,omitempty"` // passed, but worth a look (e.g. dead letters waiting)
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the doctor's checklist.
type Report struct {
	Config string  `json:"config"`
	Checks []Check `json:"checks"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func (r *Report) pass(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: detail})
}
func (r *Report) warn(name, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Warn: true, Detail: detail, Fix: fix})
}
func (r *Report) fail(name, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, Detail: detail, Fix: fix})
}

// Print writes the checklist: one line per check, its fix under a failure.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "ingest doctor: %s\n", r.Config)
	for _, c := range r.Checks {
		mark := "ok  "
		switch {
		case !c.OK:
			mark = "FAIL"
		case c.Warn:
			mark = "warn"
		}
		fmt.Fprintf(w, "  %s  %s: %s\n", mark, c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "        fix: %s\n", c.Fix)
		}
	}
	failed := 0
	for _, c := range r.Checks {
		if !c.OK {
			failed++
		}
	}
	if failed == 0 {
		fmt.Fprintln(w, "all checks passed")
	} else {
		fmt.Fprintf(w, "%d of %d checks failed\n", failed, len(r.Checks))
	}
}

// minFree is the free space below which the state dir fails the check:
// checkpoints and dead letters must be writable for the loader to move.
const minFree = 256 << 20

// Doctor checks a parsed config against the machine: the spool and state
// directories, each stream's files, PostgreSQL and its tables, Kafka and
// its topics. path names the config in the report.
func Doctor(ctx context.Context, path string, cfg *config.Config) *Report {
	r := &Report{Config: path}
	sch, err := cfg.Schema()
	if err != nil {
		r.fail("config", err.Error(), "fix the tables section of "+path+" (see docs/config.md)")
		return r
	}
	r.pass("config", fmt.Sprintf("parses: %d table(s), db %s, kafka %s", len(sch.Tables()), onOff(cfg.DBEnabled()), onOff(cfg.KafkaEnabled())))
	if !cfg.DBEnabled() && !cfg.KafkaEnabled() {
		r.fail("sinks", "no sink enabled", "set db.url (or INGEST_DB_URL) and/or kafka.brokers")
	} else if err := cfg.CheckRoutes(); err != nil {
		r.fail("routes", strings.ReplaceAll(err.Error(), "\n", "; "), "set the sink's address, or the table's selector for it to none (ingest run refuses to start otherwise)")
	}

	spoolOK := checkSpool(r, cfg)
	checkStateDir(r, cfg.Spool.StateDir)
	if cfg.DBEnabled() {
		checkDB(ctx, r, cfg)
	}
	if cfg.KafkaEnabled() {
		checkKafka(ctx, r, cfg)
	}
	if spoolOK {
		checkStreams(ctx, r, cfg)
	}
	return r
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func checkSpool(r *Report, cfg *config.Config) bool {
	fi, err := os.Stat(cfg.Spool.Dir)
	switch {
	case err != nil:
		r.fail("spool dir", err.Error(), "create it, or point spool.dir (--spool-dir, INGEST_SPOOL_DIR) at the directory the writer uses")
		return false
	case !fi.IsDir():
		r.fail("spool dir", cfg.Spool.Dir+" is not a directory", "point spool.dir at the directory holding one sub-directory per stream")
		return false
	}
	r.pass("spool dir", cfg.Spool.Dir)
	for _, s := range cfg.Streams {
		dir := filepath.Join(cfg.Spool.Dir, s.Name)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			r.warn("stream "+s.Name, dir+" does not exist yet: nothing to load until the writer creates it",
				"check the writer's spool directory and stream name")
		}
	}
	return true
}

func checkStateDir(r *Report, dir string) {
	name := "state dir"
	if err := os.MkdirAll(dir, 0o750); err != nil {
		r.fail(name, err.Error(), "make "+dir+" writable by the loader's user, or set spool.state_dir (--state-dir)")
		return
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		r.fail(name, dir+" is not writable: "+err.Error(), "make "+dir+" writable by the loader's user (checkpoints and dead letters live there), or set spool.state_dir (--state-dir)")
		return
	}
	f.Close()
	os.Remove(f.Name())
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		free := int64(st.Bavail) * int64(st.Bsize)
		if free < minFree {
			r.fail(name, fmt.Sprintf("%s: only %d MiB free", dir, free>>20), "free space on its file system: checkpoints and dead letters must be writable")
			return
		}
		r.pass(name, fmt.Sprintf("%s: writable, %d MiB free", dir, free>>20))
		return
	}
	r.pass(name, dir+": writable")
}

func checkDB(ctx context.Context, r *Report, cfg *config.Config) {
	sch, _ := cfg.Schema()
	set, err := sinks.Build(ctx, cfg, sch, sinks.Options{Mode: sinks.ReadOnly, Kinds: []string{SinkDB}})
	if err != nil {
		r.fail("postgresql", err.Error(), "fix db.url (--db-url, INGEST_DB_URL, DATABASE_URL)")
		return
	}
	defer set.Close()
	db := set.DB
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.Ping(pctx); err != nil {
		r.fail("postgresql", "unreachable: "+err.Error(), "start PostgreSQL or fix db.url (--db-url, INGEST_DB_URL); ingest run keeps loading Kafka meanwhile and catches up")
		return
	}
	r.pass("postgresql", "reachable")
	if err := db.CheckTables(pctx); err != nil {
		r.fail("postgresql tables", strings.ReplaceAll(err.Error(), "\n", "; "),
			"run `ingest migrate --config "+r.Config+"` to create missing tables; a table with a missing column or no unique id index must be altered by hand (`ingest schema sql` prints the expected DDL)")
		return
	}
	r.pass("postgresql tables", fmt.Sprintf("%d table(s) match the config", len(sch.Tables())))
}

func checkKafka(ctx context.Context, r *Report, cfg *config.Config) {
	if cfg.Kafka.Brokers == "embedded" {
		r.warn("kafka", "embedded: an in-process mock cluster whose messages vanish on exit", "set kafka.brokers to your cluster's bootstrap servers for anything but a trial")
		return
	}
	topics := cfg.KafkaTopics()
	if len(topics) == 0 {
		r.pass("kafka", "no table routes to Kafka (every kafka selector is none)")
		return
	}
	kctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sch, _ := cfg.Schema()
	set, err := sinks.Build(kctx, cfg, sch, sinks.Options{Mode: sinks.ReadOnly, Kinds: []string{SinkKafka}})
	var missing *kafkasink.MissingTopicError
	switch {
	case errors.As(err, &missing):
		r.fail("kafka topics", fmt.Sprintf("missing: %s", strings.Join(missing.Topics, ", ")), err.Error())
		return
	case err != nil:
		r.fail("kafka", "unreachable or refused: "+err.Error(), "check kafka.brokers (--kafka-brokers, INGEST_KAFKA_BROKERS) and that the brokers run; ingest run keeps loading PostgreSQL meanwhile")
		return
	}
	defer set.Close() // nothing was produced
	r.pass("kafka", fmt.Sprintf("reachable at %s; topics exist: %s", cfg.Kafka.Brokers, strings.Join(topics, ", ")))
	ks, ok := set.Kafka.(interface {
		Partitions(context.Context) ([]kafkasink.TopicPartitions, error)
	})
	if !ok {
		return
	}
	parts, err := ks.Partitions(kctx)
	if err != nil {
		r.fail("kafka partitions", err.Error(), "check that the brokers run; ingest run keeps loading PostgreSQL meanwhile")
		return
	}
	var counts, leaderless []string
	for _, p := range parts {
		counts = append(counts, fmt.Sprintf("%s %d", p.Topic, p.Partitions))
		if len(p.Leaderless) > 0 {
			leaderless = append(leaderless, fmt.Sprintf("%s %v", p.Topic, p.Leaderless))
		}
	}
	if len(leaderless) > 0 {
		r.fail("kafka partitions", "without a leader: "+strings.Join(leaderless, ", "),
			"bring back the brokers that led them (kafka-topics.sh --describe shows the replicas); until then ingest run holds those partitions' records and /readyz says not ready")
		return
	}
	r.pass("kafka partitions", strings.Join(counts, ", ")+", each with a leader")
}

func checkStreams(ctx context.Context, r *Report, cfg *config.Config) {
	sch, _ := cfg.Schema()
	sinks, closeFn, err := Checkpoints(ctx, cfg, sch)
	defer closeFn()
	if err != nil {
		r.fail("streams", err.Error(), "fix db.url")
		return
	}
	// A sink whose checkpoint cannot be read (PostgreSQL down) was
	// reported above; the streams are still worth listing without it.
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := loader.Status(sctx, config.LoaderConfig(cfg, sch, nil, nil), sinks)
	if err != nil {
		r.fail("streams", err.Error(), "make the spool and the state dir readable by the loader's user")
		return
	}
	if len(st) == 0 {
		r.warn("streams", "the spool dir has no stream directory yet", "the writer creates <spool>/<stream>/ on its first append; check that it writes to "+cfg.Spool.Dir)
	}
	for _, s := range st {
		name := "stream " + s.Stream
		detail := fmt.Sprintf("%d file(s) to load, %d bytes", s.Files, s.Bytes)
		for _, k := range s.Sinks {
			switch {
			case k.Error != "":
				detail += fmt.Sprintf("; %s: checkpoint unreadable", k.Sink)
			case k.LagFiles > 0:
				detail += fmt.Sprintf("; %s: %d bytes in %d file(s) unread, oldest pending %v", k.Sink, k.LagBytes, k.LagFiles, k.OldestPending.Round(time.Second))
			default:
				detail += fmt.Sprintf("; %s: caught up", k.Sink)
			}
		}
		if len(s.Ignored) == 0 {
			r.pass(name, detail)
		} else {
			var parts, fixes []string
			for _, f := range s.Ignored {
				parts = append(parts, fmt.Sprintf("%s (%s)", f.Name, f.Reason))
				fixes = append(fixes, f.Fix)
			}
			fix := strings.Join(dedupe(fixes), "; ")
			if s.Files == 0 {
				for _, f := range s.Ignored {
					if f.Reason == loader.IgnoredName {
						fix = loader.NothingRecognisedFix(s.Stream, cfg.StreamFor(s.Stream).Pattern, f.Name)
						break
					}
				}
			}
			r.fail(name, fmt.Sprintf("%s; %d entr(ies) not loaded: %s", detail, len(s.Ignored), strings.Join(parts, ", ")), fix)
		}
		if s.DeadLetters > 0 {
			r.warn(name+" dead letters", fmt.Sprintf("%d waiting in %s", s.DeadLetters, loader.StateLayout{Dir: cfg.Spool.StateDir}.StreamDeadLetters(s.Stream)),
				"read them (reason, file, offset, line), fix the writer or the config, replay what should load with `ingest backfill`, then move the files away")
		}
	}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
