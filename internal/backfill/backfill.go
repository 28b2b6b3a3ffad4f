package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Errors [Run] returns (wrapped) when the job ran but did not deliver
// everything; the CLI exits 1 on both, after printing the summary.
var (
	// ErrIncomplete: the job was interrupted (its context ended) before
	// every sink acknowledged every file. Run it again with the same
	// arguments to resume. It is the loader's error, which Run wraps with
	// that advice.
	ErrIncomplete = loader.ErrBackfillIncomplete
	// ErrNotDelivered: the job read every file but some lines went to the
	// dead-letter files instead of a sink.
	ErrNotDelivered = errors.New("lines not delivered")
)

// ArgError is a problem with the arguments or with the config for this
// job (an unknown sink, a window on tables without a time field, a path
// that names nothing). The CLI exits 2 on it. Arg names the flag or
// config key.
type ArgError struct {
	Arg string
	Msg string
}

func (e *ArgError) Error() string { return e.Arg + ": " + e.Msg }

// ProgressMode says how [Run] reports progress on [Options.Out].
type ProgressMode int

const (
	ProgressOff ProgressMode = iota
	// ProgressBar draws a progress bar (bytes, lines/s, ETA): for a terminal.
	ProgressBar
	// ProgressLog logs a progress line every [Options.LogEvery]: for
	// pipes and log collectors.
	ProgressLog
)

// Options are a backfill job's arguments.
type Options struct {
	// Paths are files, directories or globs of sealed offline files (see
	// loader.ResolveBackfill).
	Paths []string
	// Stream names the stream of every file; default: each file's
	// directory name.
	Stream string
	// Sinks are the sinks to write: config.SinkDB and/or config.SinkKafka.
	// Each must be enabled in the config. Empty: every enabled sink.
	Sinks []string
	// Accounts, when set, limits the job to these account keys, in the
	// form the data has (integers in decimal).
	Accounts []string
	// Window limits the job to records whose time field is in it; records
	// without a time are then skipped (see loader.Window).
	Window loader.Window
	// Rate limits the lines each sink reads per second (0: no limit).
	Rate float64
	// HoldFor is loader.BackfillConfig.HoldFor: how long a slower sink may
	// go without progress and still hold the faster ones back (0: 5s;
	// negative: never).
	HoldFor time.Duration
	// Restart discards the job's checkpoints and replays from the start
	// (Postgres keeps each id once; Kafka gets the messages again).
	Restart bool
	// RetentionMargin: a record is not produced to a topic that would
	// delete it within this long (its event time is the message's
	// timestamp, from which retention counts). Default
	// [DefaultRetentionMargin]; at most half the topic's retention.
	RetentionMargin time.Duration
	// SkipTopicCheck produces without reading the topics' retention and
	// timestamp limits: for brokers that do not describe topic configs
	// (no DescribeConfigs permission; librdkafka's mock cluster). Records
	// the topic deletes soon or refuses are then not caught.
	SkipTopicCheck bool

	Logger   *slog.Logger // nil: discard
	Progress ProgressMode
	Out      io.Writer     // progress output (stderr); nil: discard
	LogEvery time.Duration // ProgressLog interval; default 10s
}

// DiskSummary is how a run read its files, from the engine's Stats.
type DiskSummary struct {
	LinesRead    int64 `json:"lines_read"`    // read from disk
	LinesDecoded int64 `json:"lines_decoded"` // decoded and validated
	LinesShared  int64 `json:"lines_shared"`  // taken by a sink from another's read
	PrivateReads int64 `json:"private_reads"` // spans a sink behind the others read again
}

// Summary is what a job did, for the closing report.
type Summary struct {
	Job        string   `json:"job"`
	Generation int      `json:"generation"`
	StateDir   string   `json:"state_dir"`
	Resumed    bool     `json:"resumed"` // an earlier run of the job had made progress
	Streams    int      `json:"streams"`
	Files      int      `json:"files"`
	Bytes      int64    `json:"bytes"`
	Skipped    []string `json:"skipped_active_files,omitempty"`
	// NotRead is every entry of the given directories and globs that the
	// job does not read (active files included), with the reason.
	NotRead  []loader.NotRead `json:"not_read,omitempty"`
	Window   string           `json:"window,omitempty"`
	Accounts []string         `json:"accounts,omitempty"`
	// DoneBytes is what every sink has acknowledged, this run and earlier.
	DoneBytes int64         `json:"done_bytes"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Complete  bool          `json:"complete"`
	// LinesRead are this run's lines; DeadLettered this run's invalid
	// lines; DeadLettersTotal every entry in the job's dead-letter files
	// (all runs, sink rejections included).
	LinesRead        int64  `json:"lines_read"`
	DeadLettered     int64  `json:"dead_lettered"`
	DeadLettersTotal int64  `json:"dead_letters_total"`
	DeadLetterDir    string `json:"dead_letter_dir"`
	// Disk is how this run read its lines: each line is read and decoded
	// once for every sink, unless a sink fell far behind the others.
	Disk  DiskSummary   `json:"disk"`
	Sinks []SinkSummary `json:"sinks"`
}

// SinkSummary is one sink's counts in a [Summary] (this run).
type SinkSummary struct {
	Sink       string `json:"sink"`       // db or kafka
	Checkpoint string `json:"checkpoint"` // the sink name its checkpoints are kept under
	LinesRead  int64  `json:"lines_read"`
	Delivered  int64  `json:"delivered"`
	Filtered   int64  `json:"filtered"`   // outside --accounts or the window
	NotRouted  int64  `json:"not_routed"` // the config's selector does not send the account to this sink
	Rejected   int64  `json:"rejected"`   // refused by the sink, dead-lettered
	Complete   bool   `json:"complete"`
}

// OK reports whether every line of the job reached the sinks it is
// routed to: the job is complete and nothing was dead-lettered.
func (s *Summary) OK() bool { return s.Complete && s.DeadLettersTotal == 0 }

// Run resolves the paths, builds the chosen sinks under the job's own
// checkpoint names, and replays the files through [loader.Backfill]
// until they are done or ctx ends, reporting progress as asked. It
// returns the summary whenever the job started (also with an error), and
// errors wrapping [ErrIncomplete] or [ErrNotDelivered] when it did not
// deliver everything, an *[ArgError] for bad arguments, a *[TopicError]
// (wrapped, with the summary when the job had started) when a record would
// go to a topic that deletes it soon or refuses it, and other errors for
// sinks that cannot start or state that cannot be written.
func Run(ctx context.Context, cfg *config.Config, o Options) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plan, err := newPlan(cfg, o)
	if err != nil {
		return nil, err
	}
	for _, f := range plan.notRead {
		log.Warn("backfill does not read this entry", "file", f.Path, "reason", f.Reason)
	}
	for _, w := range plan.warnings {
		log.Warn(w)
	}
	// Read the routed topics' retention and timestamp limits before
	// anything is produced: a window that already reaches further back
	// stops here.
	var guard *topicGuard
	switch {
	case !slices.Contains(plan.sinkKinds, config.SinkKafka):
	case o.SkipTopicCheck:
		log.Warn("not reading the topics' retention and timestamp limits (--no-topic-check): records a topic deletes soon or refuses are not caught")
	default:
		limits, err := readTopicLimits(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		guard = &topicGuard{limits: limits, margin: o.RetentionMargin, brokers: cfg.Kafka.Brokers, now: time.Now}
		if guard.margin == 0 {
			guard.margin = DefaultRetentionMargin
		}
		if err := guard.checkWindow(o.Window); err != nil {
			return nil, err
		}
	}
	job, err := openJob(plan.stateRoot, plan.key, o.Restart)
	if err != nil {
		return nil, err
	}
	defer job.close()
	sum := &Summary{
		Job: job.id, Generation: job.Generation, StateDir: job.dir(), Skipped: plan.skipped, NotRead: plan.notRead,
		Accounts: plan.key.Accounts, DeadLetterDir: loader.StateLayout{Dir: job.dir()}.DeadLetters(),
	}
	if !o.Window.IsZero() {
		sum.Window = o.Window.String()
	}

	specs, closeSinks, err := plan.sinks(ctx, job, guard, log)
	if err != nil {
		return nil, err
	}
	defer closeSinks()
	bf, err := loader.NewBackfill(loader.BackfillConfig{
		Streams: plan.streams, Schema: plan.schema, StateDir: job.dir(),
		Batch: config.BatchConfig(cfg), CacheBytes: int(cfg.Spool.CacheBytes),
		Filter: plan.filter, Rate: o.Rate, HoldFor: o.HoldFor, Logger: log,
	}, specs...)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	log.Info("backfill starting", "job", job.id, "generation", job.Generation, "streams", len(plan.streams),
		"sinks", strings.Join(plan.sinkKinds, ","), "window", sum.Window, "accounts", len(plan.key.Accounts), "rate", o.Rate, "state_dir", job.dir())

	jobCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if guard != nil {
		guard.stop = stop
	}
	rep := newReporter(o, bf.Progress(), log)
	done := make(chan error, 1)
	go func() { done <- bf.Run(jobCtx) }()
	runErr := rep.follow(done, bf.Progress)

	pr := bf.Progress()
	sum.Streams, sum.Files, sum.Bytes, sum.DoneBytes = pr.Streams, pr.Files, pr.TotalBytes, pr.DoneBytes
	sum.Elapsed, sum.Complete = time.Since(start), pr.Complete && runErr == nil
	sum.LinesRead, sum.DeadLettered = pr.LinesRead, pr.DeadLettered
	for _, st := range bf.Stats().Streams {
		sum.Disk.LinesRead += st.LinesRead
		sum.Disk.LinesDecoded += st.LinesDecoded
		sum.Disk.LinesShared += st.LinesShared
		sum.Disk.PrivateReads += st.PrivateReads
	}
	dlTotal, dlErr := loader.CountDeadLetters(job.dir(), "")
	sum.DeadLettersTotal = dlTotal
	for _, sp := range pr.Sinks {
		sum.Resumed = sum.Resumed || sp.ResumedBytes > 0
		sum.Sinks = append(sum.Sinks, SinkSummary{
			Sink: plan.kindOf[sp.Sink], Checkpoint: sp.Sink, LinesRead: sp.LinesRead, Delivered: sp.Delivered,
			Filtered: sp.Filtered, NotRouted: sp.NotRouted, Rejected: sp.Rejected, Complete: sp.Complete,
		})
	}
	var refused *TopicError
	if guard != nil {
		refused = guard.refused()
	}
	switch {
	case refused != nil:
		sum.Complete = false
		return sum, fmt.Errorf("backfill stopped with %s of %s done: %w", humanBytes(pr.DoneBytes), humanBytes(pr.TotalBytes), refused)
	case errors.Is(runErr, ErrIncomplete):
		return sum, fmt.Errorf("%w: interrupted with %s of %s done; run the same command again to resume", ErrIncomplete, humanBytes(pr.DoneBytes), humanBytes(pr.TotalBytes))
	case runErr != nil:
		return sum, fmt.Errorf("backfill: %w", runErr)
	case dlErr != nil:
		// An unread dead-letter file may hold lines not delivered: the
		// job is not known to be complete.
		return sum, fmt.Errorf("%w: %w", ErrNotDelivered, dlErr)
	case sum.DeadLettersTotal > 0:
		return sum, fmt.Errorf("%w: %d dead letter(s) in %s", ErrNotDelivered, sum.DeadLettersTotal, sum.DeadLetterDir)
	}
	if err := job.markComplete(); err != nil {
		log.Warn("record job completion", "err", err)
	}
	return sum, nil
}

// plan is a job's arguments checked against the config.
type plan struct {
	cfg       *config.Config
	schema    *schema.Schema
	streams   []loader.BackfillStream
	skipped   []string
	notRead   []loader.NotRead
	warnings  []string
	sinkKinds []string          // db, kafka
	kindOf    map[string]string // checkpoint name -> kind
	filter    func(*schema.Record) bool
	key       jobKey
	stateRoot string // <state_dir>/backfill
}

func newPlan(cfg *config.Config, o Options) (*plan, error) {
	p := &plan{cfg: cfg, kindOf: map[string]string{}}
	sch, err := cfg.Schema()
	if err != nil {
		return nil, &ArgError{"--config", err.Error()}
	}
	p.schema = sch
	if o.Rate < 0 {
		return nil, &ArgError{"--rate", "must not be negative"}
	}
	if o.RetentionMargin < 0 {
		return nil, &ArgError{"--retention-margin", "must not be negative"}
	}
	kinds := o.Sinks
	if len(kinds) == 0 {
		if cfg.DBEnabled() {
			kinds = append(kinds, config.SinkDB)
		}
		if cfg.KafkaEnabled() {
			kinds = append(kinds, config.SinkKafka)
		}
		if len(kinds) == 0 {
			return nil, &ArgError{"--sink", "no sink is enabled in the config (db.url, kafka.brokers)"}
		}
	}
	for _, k := range kinds {
		switch {
		case slices.Contains(p.sinkKinds, k):
			continue
		case k == config.SinkDB && !cfg.DBEnabled():
			return nil, &ArgError{"--sink", "db: db.url is empty (set it in the config, --db-url or INGEST_DB_URL)"}
		case k == config.SinkKafka && !cfg.KafkaEnabled():
			return nil, &ArgError{"--sink", "kafka: kafka.brokers is empty"}
		case k == config.SinkKafka && cfg.Kafka.Brokers == "embedded":
			return nil, &ArgError{"kafka.brokers", `"embedded" is an in-process cluster that vanishes on exit: backfill needs a real one`}
		case k != config.SinkDB && k != config.SinkKafka:
			return nil, &ArgError{"--sink", fmt.Sprintf("unknown sink %q (want db, kafka or both)", k)}
		}
		p.sinkKinds = append(p.sinkKinds, k)
	}

	streams, notRead, err := loader.ResolveBackfillFiles(o.Paths, o.Stream)
	if err != nil {
		return nil, &ArgError{"PATH", err.Error()}
	}
	var skipped []string
	for _, f := range notRead {
		if f.Reason == loader.NotReadActive {
			skipped = append(skipped, f.Path)
		}
	}
	p.notRead = notRead
	for i := range streams {
		streams[i].DefaultTable = cfg.StreamFor(streams[i].Name).DefaultTable
	}
	p.streams, p.skipped = streams, skipped

	accounts := map[string]bool{}
	for _, a := range o.Accounts {
		if a = strings.TrimSpace(a); a != "" {
			accounts[a] = true
		}
	}
	if len(o.Accounts) > 0 && len(accounts) == 0 {
		return nil, &ArgError{"--accounts", "lists no account"}
	}
	if !o.Window.Since.IsZero() && !o.Window.Until.IsZero() && !o.Window.Since.Before(o.Window.Until) {
		return nil, &ArgError{"--since/--until", fmt.Sprintf("empty window %s", o.Window)}
	}
	if !o.Window.IsZero() {
		var timed, untimed []string
		for _, t := range sch.Tables() {
			if t.Time != "" {
				timed = append(timed, t.Name)
			} else {
				untimed = append(untimed, t.Name)
			}
		}
		if len(timed) == 0 {
			return nil, &ArgError{"--since/--until", "no table has a time field (tables.<t>.time) to filter on"}
		}
		for _, t := range untimed {
			p.warnings = append(p.warnings, fmt.Sprintf("table %s has no time field: its lines are skipped while --since/--until is set", t))
		}
	}
	for a := range accounts {
		for _, kind := range p.sinkKinds {
			if !routedAnywhere(cfg, kind, a) {
				p.warnings = append(p.warnings, fmt.Sprintf("account %s is not routed to %s by any table's selector: its lines are not sent there", a, kind))
			}
		}
	}
	window := o.Window
	if len(accounts) > 0 || !window.IsZero() {
		p.filter = func(r *schema.Record) bool {
			return (len(accounts) == 0 || accounts[r.Key]) && window.Contains(r.Time)
		}
	}

	p.key = jobKey{Version: 1, Stream: o.Stream}
	for _, path := range o.Paths {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, &ArgError{"PATH", err.Error()}
		}
		p.key.Paths = append(p.key.Paths, abs)
	}
	slices.Sort(p.key.Paths)
	p.key.Paths = slices.Compact(p.key.Paths)
	for a := range accounts {
		p.key.Accounts = append(p.key.Accounts, a)
	}
	slices.Sort(p.key.Accounts)
	if !window.Since.IsZero() {
		p.key.Since = window.Since.UTC().Format(time.RFC3339Nano)
	}
	if !window.Until.IsZero() {
		p.key.Until = window.Until.UTC().Format(time.RFC3339Nano)
	}
	stateDir := cfg.Spool.StateDir
	if stateDir == "" {
		if cfg.Spool.Dir == "" {
			return nil, &ArgError{"spool.state_dir", "is empty and so is spool.dir: backfill keeps its checkpoints there"}
		}
		stateDir = filepath.Join(cfg.Spool.Dir, config.DefaultStateSubdir)
	}
	p.stateRoot = loader.StateLayout{Dir: stateDir}.Backfill()
	return p, nil
}

func routedAnywhere(cfg *config.Config, kind, account string) bool {
	for _, t := range cfg.Tables {
		sel := t.DB
		if kind == config.SinkKafka {
			sel = t.Kafka
		}
		if sel.Match(account) {
			return true
		}
	}
	return false
}

// sinks builds the chosen sinks under the job's checkpoint names, with the
// config's routes and backfill's batches in flight (see internal/sinks).
func (p *plan) sinks(ctx context.Context, job *job, guard *topicGuard, log *slog.Logger) ([]loader.SinkSpec, func(), error) {
	o := sinks.Options{Mode: sinks.Backfill, Kinds: p.sinkKinds, Name: job.sinkName, Logger: log}
	if guard != nil {
		// The sink dead-letters what its topic would delete within its
		// margin; with the guard's, the guard stops the job (exit 2)
		// first, whatever --retention-margin says.
		o.TuneKafka = func(c *kafkasink.Config) { c.RetentionMargin = guard.margin }
		o.Wrap = func(kind string, s loader.Sink) loader.Sink {
			if kind == config.SinkKafka {
				return guardedSink{Sink: s, g: guard}
			}
			return s
		}
	}
	set, err := sinks.Build(ctx, p.cfg, p.schema, o)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(p.kindOf, set.Kinds)
	return set.Specs, set.Close, nil
}

// jobKey is what identifies a job: the same key, the same checkpoints.
// The rate is not part of it (change it and resume); the config's routes
// are not either.
type jobKey struct {
	Version  int      `json:"v"`
	Paths    []string `json:"paths"` // absolute, sorted
	Stream   string   `json:"stream,omitempty"`
	Accounts []string `json:"accounts,omitempty"`
	Since    string   `json:"since,omitempty"`
	Until    string   `json:"until,omitempty"`
}

func (k jobKey) id() string {
	data, _ := json.Marshal(k)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// job is a backfill job's state under <state_dir>/backfill/<id>/: job.json
// (the key and the generation), a lock, and per generation a state dir
// g<N>/ with the loader's file checkpoints and dead letters.
type job struct {
	root string
	id   string
	lock *os.File
	jobFile
}

type jobFile struct {
	Key        jobKey    `json:"key"`
	Generation int       `json:"generation"`
	Created    time.Time `json:"created"`
	Completed  time.Time `json:"completed,omitzero"`
}

func openJob(stateRoot string, key jobKey, restart bool) (*job, error) {
	j := &job{id: key.id()}
	j.root = filepath.Join(stateRoot, j.id)
	if err := os.MkdirAll(j.root, 0o750); err != nil {
		return nil, fmt.Errorf("backfill state: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(j.root, "lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("backfill state: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("backfill job %s is already running (another ingest backfill with the same arguments holds %s)", j.id, lock.Name())
	}
	j.lock = lock
	data, err := os.ReadFile(filepath.Join(j.root, "job.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &j.jobFile); err != nil {
			j.close()
			return nil, fmt.Errorf("backfill job %s: %s: %w (remove the directory to start the job afresh)", j.id, filepath.Join(j.root, "job.json"), err)
		}
		if restart {
			j.Generation++
			j.Created, j.Completed = time.Now().UTC(), time.Time{}
		}
	case errors.Is(err, os.ErrNotExist):
		j.Key, j.Created = key, time.Now().UTC()
	default:
		j.close()
		return nil, fmt.Errorf("backfill state: %w", err)
	}
	if err := j.save(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// dir is the current generation's state dir.
func (j *job) dir() string { return filepath.Join(j.root, fmt.Sprintf("g%d", j.Generation)) }

// sinkName is the checkpoint name of a sink in this job and generation,
// e.g. "backfill-kafka-3f2a9c1b7d04" (then "...-g1" after a restart).
func (j *job) sinkName(kind string) string {
	name := "backfill-" + kind + "-" + j.id
	if j.Generation > 0 {
		name += fmt.Sprintf("-g%d", j.Generation)
	}
	return name
}

func (j *job) save() error {
	data, err := json.MarshalIndent(j.jobFile, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(j.root, "job.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("backfill state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("backfill state: %w", err)
	}
	return nil
}

func (j *job) markComplete() error {
	j.Completed = time.Now().UTC()
	return j.save()
}

func (j *job) close() {
	if j.lock != nil {
		j.lock.Close() // releases the flock
		j.lock = nil
	}
}
