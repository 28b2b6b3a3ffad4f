package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Loader tails the spool's streams and feeds every sink from its own
// checkpoint. Create it with [New] and call [Loader.Run] once.
type Loader struct {
	cfg     Config
	sinks   []SinkSpec
	policy  policy // the live loader's is the zero value
	metrics *metrics
	dl      *deadLetters

	settings atomic.Pointer[settings]

	mu        sync.Mutex
	streams   map[string]*stream
	positions map[string]map[string]Position // stream -> sink -> checkpoint
	pstats    map[[2]string]*pipeStats       // (stream, sink)
	kick      chan struct{}                  // wakes the janitor

	rootReported map[string]string // spool dir entries logged as not loaded, by name: reason
	rootScans    int               // reportRootEntries calls, for tests that watch rescans repeat nothing

	// boundHolds counts the times a pipeline stopped filling because the
	// batches acked past the durable checkpoint reached the repeat bound:
	// while saves stall that state cannot end, so a test that sees it
	// knows no further batch can come without watching for one.
	boundHolds atomic.Int64

	// cacheStreams is the number of streams Config.CacheBytes is shared
	// by: those of the spool found so far, or a backfill's.
	cacheStreams atomic.Int32
}

// cacheLimit is one stream's share of Config.CacheBytes for batches of
// batchBytes: a stream that appears shrinks the others' caches at their
// next publish, so the sum exceeds the budget only until then.
func (l *Loader) cacheLimit(batchBytes int) int {
	return min(cacheBatches*batchBytes, l.cfg.CacheBytes/max(int(l.cacheStreams.Load()), 1))
}

// settings are what may change while running, at a batch boundary.
type settings struct {
	batch  BatchConfig
	routes map[string]RouteFunc
}

// New checks the configuration and sinks; nothing runs until Run.
func New(cfg Config, sinks ...SinkSpec) (*Loader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, errors.New("loader: no sink")
	}
	l := &Loader{
		cfg:       cfg,
		sinks:     sinks,
		metrics:   newMetrics(cfg.Registry),
		streams:   map[string]*stream{},
		positions: map[string]map[string]Position{},
		kick:      make(chan struct{}, 1),
	}
	routes := map[string]RouteFunc{}
	for i, s := range sinks {
		if s.Sink == nil {
			return nil, fmt.Errorf("loader: sink %d is nil", i)
		}
		name := s.Sink.Name()
		if name == "" || name != filepath.Base(name) || name[0] == '.' {
			return nil, fmt.Errorf("loader: sink name %q must be a plain word", name)
		}
		if _, dup := routes[name]; dup {
			return nil, fmt.Errorf("loader: two sinks named %q", name)
		}
		routes[name] = s.Route
	}
	l.settings.Store(&settings{batch: cfg.Batch, routes: routes})
	l.dl = newDeadLetters(StateLayout{cfg.StateDir}.DeadLetters(), cfg.now, l.metrics)
	l.dl.log = l.cfg.Logger
	return l, nil
}

// SetRoutes replaces the routes of the named sinks (others keep theirs).
// Pipelines pick the change up at their next batch.
func (l *Loader) SetRoutes(routes map[string]RouteFunc) {
	old := l.settings.Load()
	next := &settings{batch: old.batch, routes: map[string]RouteFunc{}}
	for k, v := range old.routes {
		next.routes[k] = v
	}
	for k, v := range routes {
		next.routes[k] = v
	}
	l.settings.Store(next)
}

// SetBatch replaces the batch bounds, from the next batch on.
func (l *Loader) SetBatch(b BatchConfig) {
	old := l.settings.Load()
	l.settings.Store(&settings{batch: b.withDefaults(), routes: old.routes})
}

// Run loads until ctx ends, then stops reading, waits up to
// ShutdownTimeout for in-flight batches, and returns nil. It returns an
// error when it cannot start (unreadable spool, a checkpoint the spool does
// not match) or when a pipeline hits such a problem later.
func (l *Loader) Run(ctx context.Context) error {
	if err := os.MkdirAll(l.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("loader: state dir: %w", err)
	}
	if _, err := os.Stat(l.cfg.Dir); err != nil {
		return fmt.Errorf("loader: spool dir: %w", err)
	}
	return l.run(ctx, l.watchSpool)
}

// run is the engine [Loader.Run] and [Backfill.Run] share. streams calls
// start with each stream to load, and returns once no more can come: the
// spool's watch when ctx ends, a backfill's list at once. run then waits
// for the pipelines: they return when ctx ends (draining, see drain) or by
// themselves once their source is exhausted and acknowledged. Every
// goroutine it starts has ended when it returns.
func (l *Loader) run(ctx context.Context, streams func(ctx context.Context, start func(*stream))) error {
	// Pipelines stop reading when runCtx ends; sinks keep sinkCtx until
	// in-flight batches are acknowledged or ShutdownTimeout passes.
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()

	var wg sync.WaitGroup
	var fatalOnce sync.Once
	var fatal error
	start := func(st *stream) {
		for _, spec := range l.sinks {
			p := l.newPipeline(st, spec, sinkCtx)
			wg.Go(func() {
				if err := p.run(runCtx); err != nil {
					fatalOnce.Do(func() { fatal = err })
					stop(err)
				}
			})
		}
	}
	var bg sync.WaitGroup
	bg.Go(func() { l.janitor(runCtx) })
	streams(runCtx, start)
	l.drain(runCtx, &wg, cancelSinks)
	stop(nil) // the janitor of a run whose pipelines all finished
	bg.Wait()
	l.retire() // a last pass, so files every sink passed do not wait for the next start
	if err := l.dl.close(); err != nil && fatal == nil {
		fatal = fmt.Errorf("loader: dead letters: %w", err)
	}
	return fatal
}

// watchSpool starts the spool's streams, and those that appear later
// (file events, and a rescan in case events are lost or unavailable),
// until ctx ends; it wakes a stream's pipelines when its files change.
func (l *Loader) watchSpool(ctx context.Context, start func(*stream)) {
	watcher, err := fsnotify.NewWatcher()
	if err == nil && l.cfg.noEvents {
		watcher.Close()
		err = errors.New("disabled by test")
	}
	if err != nil {
		l.cfg.Logger.Warn("file events unavailable; polling only", "err", err)
		watcher = nil
	} else {
		defer watcher.Close()
		if err := watcher.Add(l.cfg.Dir); err != nil {
			l.cfg.Logger.Warn("cannot watch spool dir; polling only", "dir", l.cfg.Dir, "err", err)
		}
	}
	discover := func() {
		for _, st := range l.discover() {
			if watcher != nil {
				if err := watcher.Add(st.dir); err != nil {
					l.cfg.Logger.Warn("cannot watch stream; polling only", "stream", st.name, "err", err)
				}
			}
			l.cfg.Logger.Info("stream found", "stream", st.name, "dir", st.dir)
			l.warnNothingRecognised(st)
			start(st)
		}
	}
	discover()

	var events <-chan fsnotify.Event
	var werrs <-chan error
	if watcher != nil {
		events, werrs = watcher.Events, watcher.Errors
	}
	rescan := time.NewTicker(max(l.cfg.PollInterval*10, time.Second))
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			dir := filepath.Dir(ev.Name)
			if dir == filepath.Clean(l.cfg.Dir) {
				if ev.Has(fsnotify.Create) {
					discover()
				}
				continue
			}
			if st := l.stream(filepath.Base(dir)); st != nil {
				st.notify()
			}
		case err := <-werrs:
			l.cfg.Logger.Warn("file events", "err", err)
		case <-rescan.C:
			discover()
		}
	}
}

// drain returns once every pipeline has returned. After ctx ends, it lets
// in-flight batches finish within ShutdownTimeout, then cancels the sinks'
// context so that no pipeline waits for an ack forever.
func (l *Loader) drain(ctx context.Context, wg *sync.WaitGroup, cancelSinks context.CancelFunc) {
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
		return
	case <-ctx.Done():
	}
	timer := time.NewTimer(l.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		cancelSinks()
		<-drained
	}
}

func (l *Loader) newPipeline(st *stream, spec SinkSpec, sinkCtx context.Context) *pipeline {
	name := spec.Sink.Name()
	st.cache.mu.Lock()
	st.cache.sinks = len(l.sinks)
	st.cache.mu.Unlock()
	p := &pipeline{
		l: l, st: st, spec: spec, name: name,
		tail:    newTail(st, l.cfg.MaxLineBytes),
		log:     l.cfg.Logger.With("stream", st.name, "sink", name),
		sinkCtx: sinkCtx,
		maxLine: l.cfg.MaxLineBytes,
		acks:    make(chan ack, max(spec.MaxInFlight, 1)+1),
		stats:   l.pipeStats(st.name, name),
	}
	for i, s := range l.sinks {
		if s.Sink.Name() == name {
			p.idx = i
			if i < 64 {
				p.bit = 1 << i
			}
		}
	}
	switch {
	case spec.Store != nil:
		p.store = spec.Store
	default:
		if o, ok := spec.Sink.(CheckpointOwner); ok {
			p.owner = o
		} else {
			p.store = FileStore{Dir: StateLayout{l.cfg.StateDir}.Checkpoints()}
		}
	}
	return p
}

// discover returns streams not seen before.
func (l *Loader) discover() []*stream {
	var names []string
	if len(l.cfg.Streams) > 0 {
		for _, s := range l.cfg.Streams {
			names = append(names, s.Name)
		}
		l.reportRoot()
	} else {
		entries, err := os.ReadDir(l.cfg.Dir)
		if err != nil {
			l.cfg.Logger.Error("list spool", "err", err)
			return nil
		}
		stateDir, _ := filepath.Abs(l.cfg.StateDir)
		l.reportRootEntries(entries)
		for _, e := range entries {
			if !e.IsDir() || e.Name()[0] == '.' {
				continue
			}
			if abs, _ := filepath.Abs(filepath.Join(l.cfg.Dir, e.Name())); abs == stateDir {
				continue
			}
			names = append(names, e.Name())
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []*stream
	for _, name := range names {
		if l.streams[name] != nil {
			continue
		}
		dir := filepath.Join(l.cfg.Dir, name)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue // a configured stream whose directory does not exist yet
		}
		sc, _ := l.cfg.streamConfig(name)
		st := newStream(name, dir, sc, l.cfg.now)
		st.ign.log = l.cfg.Logger
		if l.metrics != nil {
			st.ign.gauge = l.metrics.ignoredFiles
		}
		if l.cfg.openFile != nil {
			st.openFile = l.cfg.openFile
		}
		l.addStreamLocked(st)
		found = append(found, st)
	}
	return found
}

// addStreamLocked registers a stream found, or given by a backfill.
func (l *Loader) addStreamLocked(st *stream) {
	l.streams[st.name] = st
	l.cacheStreams.Add(1)
	l.positions[st.name] = map[string]Position{}
}

func (l *Loader) stream(name string) *stream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.streams[name]
}

func (l *Loader) setPosition(stream, sink string, pos Position) {
	l.mu.Lock()
	prev, had := l.positions[stream][sink]
	l.positions[stream][sink] = pos
	l.mu.Unlock()
	// Files can only be retired when a checkpoint enters a new file; a
	// kick per batch would list the spool directory per batch.
	if had && prev.File == pos.File {
		return
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Positions returns every pipeline's checkpoint, by stream and sink.
func (l *Loader) Positions() map[string]map[string]Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]map[string]Position{}
	for s, m := range l.positions {
		out[s] = map[string]Position{}
		for k, v := range m {
			out[s][k] = v
		}
	}
	return out
}

// janitor retires files every sink has passed and refreshes lag metrics.
func (l *Loader) janitor(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
			l.measureLag()
		}
		l.retire()
	}
}

// retire deletes (or archives) the files before the oldest checkpoint of
// each stream, and purges archives older than Retention.
func (l *Loader) retire() {
	l.mu.Lock()
	type job struct {
		st     *stream
		oldest string
	}
	var jobs []job
	for name, st := range l.streams {
		pos := l.positions[name]
		if len(pos) < len(l.sinks) {
			continue // a pipeline has not loaded its checkpoint yet
		}
		oldest := ""
		first := true
		for _, p := range pos {
			if first || p.File < oldest {
				oldest, first = p.File, false
			}
		}
		jobs = append(jobs, job{st, oldest})
	}
	l.mu.Unlock()
	for _, j := range jobs {
		if j.oldest != "" {
			j.st.src.retire(l, j.oldest)
		}
	}
}

func (l *Loader) retireFile(st *stream, f spoolFile) {
	path := filepath.Join(st.dir, f.name)
	if l.cfg.Retention <= 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.cfg.Logger.Warn("retire: remove", "file", path, "err", err)
			return
		}
		l.metrics.filesRemoved.WithLabelValues(st.name, "deleted").Inc()
		return
	}
	dir := StateLayout{l.cfg.StateDir}.Archive(st.name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		l.cfg.Logger.Warn("retire: archive", "err", err)
		return
	}
	if err := os.Rename(path, filepath.Join(dir, f.key)); err != nil {
		l.cfg.Logger.Warn("retire: archive", "file", path, "err", err)
		return
	}
	l.metrics.filesRemoved.WithLabelValues(st.name, "archived").Inc()
}

func (l *Loader) purgeArchive(stream string) {
	dir := StateLayout{l.cfg.StateDir}.Archive(stream)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cutoff := l.cfg.now().Add(-l.cfg.Retention)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			l.metrics.filesRemoved.WithLabelValues(stream, "purged").Inc()
		}
	}
}

// measureLag sets ingest_lag_bytes: the bytes of each stream after each
// sink's checkpoint.
func (l *Loader) measureLag() {
	for stream, bySink := range l.Positions() {
		st := l.stream(stream)
		files, err := st.src.list()
		if err != nil {
			continue
		}
		sizes := fileSizes(st.src, files)
		for sink, pos := range bySink {
			// Positions holds only checkpoints that exist, hence ok.
			lag, _, _ := pending(files, sizes, pos, true)
			l.pipeStats(stream, sink).lag.Store(lag)
			l.metrics.lagBytes.WithLabelValues(stream, sink).Set(float64(lag))
		}
	}
}

// warnNothingRecognised logs an ERROR when a stream's directory holds files
// but none the loader will read: the classic misconfiguration (a writer
// other than rotatefile and no pattern) that would otherwise look like a
// healthy, idle loader. The stream still starts: the writer may simply not
// have written a file of its own yet.
func (l *Loader) warnNothingRecognised(st *stream) {
	files, err := st.src.list()
	if err != nil || len(files) > 0 {
		return
	}
	var names []string
	for _, f := range st.Ignored() {
		if f.Reason == IgnoredName {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	l.cfg.Logger.Error("stream directory holds files but none the loader recognises: nothing will be loaded",
		"stream", st.name, "dir", st.dir, "unrecognised", len(names), "example", names[0],
		"fix", NothingRecognisedFix(st.name, st.cfg.Pattern, names[0]))
}

// NothingRecognisedFix says what to change when a stream's files all have
// names the loader does not take.
func NothingRecognisedFix(stream, pattern, example string) string {
	if pattern == "" {
		return fmt.Sprintf("set pattern: %q on stream %s (config streams[].pattern) to load files named like %s",
			SuggestPattern(example), stream, example)
	}
	return fmt.Sprintf("the pattern %q of stream %s matches none of them; e.g. %q matches %s", pattern, stream, SuggestPattern(example), example)
}

// reportRoot lists the spool dir for reportRootEntries when the config
// names the streams (otherwise discover lists it anyway).
func (l *Loader) reportRoot() {
	entries, err := os.ReadDir(l.cfg.Dir)
	if err != nil {
		return // Run and discover report an unreadable spool dir
	}
	l.reportRootEntries(entries)
}

// reportRootEntries logs, once per entry and reason, what sits directly in
// the spool dir and is never loaded: files (streams are sub-directories),
// and, when the config lists the streams, directories it does not list.
func (l *Loader) reportRootEntries(entries []os.DirEntry) {
	configured := map[string]bool{}
	for _, s := range l.cfg.Streams {
		configured[s.Name] = true
	}
	stateDir, _ := filepath.Abs(l.cfg.StateDir)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rootScans++
	if l.rootReported == nil {
		l.rootReported = map[string]string{}
	}
	for _, e := range entries {
		name := e.Name()
		if name[0] == '.' {
			continue
		}
		var reason, fix string
		switch {
		case !e.IsDir():
			reason = "file in the spool dir"
			fix = "the spool dir holds one sub-directory per stream: move the file into " + filepath.Join(l.cfg.Dir, "<stream>") + " (or point spool.dir at its directory's parent)"
		case len(configured) > 0 && !configured[name]:
			if abs, _ := filepath.Abs(filepath.Join(l.cfg.Dir, name)); abs == stateDir {
				continue
			}
			reason = "directory not a configured stream"
			fix = "add it to streams in the config to load it, or move it out of the spool dir"
		default:
			continue
		}
		if l.rootReported[name] == reason {
			continue
		}
		l.rootReported[name] = reason
		l.cfg.Logger.Warn("spool entry not loaded", "file", filepath.Join(l.cfg.Dir, name), "reason", reason, "fix", fix)
	}
}
