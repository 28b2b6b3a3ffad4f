package rotatefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SyncPolicy says when appended bytes are forced to stable storage.
type SyncPolicy int

const (
	// SyncInterval groups fsyncs: every SyncInterval the bytes written so far
	// are synced. An append returns once its line is buffered; a crash loses
	// at most the last interval. This is the default.
	SyncInterval SyncPolicy = iota
	// SyncNone never calls fsync except when sealing a file; the OS decides
	// when data reaches the disk.
	SyncNone
	// SyncAlways makes Append return only after its line is on disk. Appends
	// that arrive while an fsync runs share the next one (group commit), so
	// the cost per line falls as concurrency rises.
	SyncAlways
)

// String returns the policy's config name: "interval", "none" or "always".
func (p SyncPolicy) String() string {
	switch p {
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	case SyncAlways:
		return "always"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses "interval", "none" or "always" ("" means interval).
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	case "always":
		return SyncAlways, nil
	}
	return 0, fmt.Errorf("rotatefile: unknown sync policy %q (want none, interval or always)", s)
}

// Defaults applied by [Open] to zero fields of [Options].
const (
	DefaultMaxBytes      = 64 << 20
	DefaultMaxAge        = 60 * time.Second
	DefaultSyncInterval  = 100 * time.Millisecond
	DefaultFlushInterval = 5 * time.Millisecond
	DefaultFileMode      = os.FileMode(0o640)
	DefaultExt           = ".ndjson"
	DefaultMaxBuffered   = 8 << 20
)

// Options configures a [Writer]. The zero value of every field except Dir and
// Stream is a documented default.
type Options struct {
	// Dir is the spool directory; files live in Dir/Stream/. Required.
	Dir string
	// Stream names this writer's sub-directory. Required; one path element.
	Stream string

	// MaxBytes rotates the active file before a line would make it larger
	// than this. A single line longer than MaxBytes gets a file of its own.
	// Default 64 MiB.
	MaxBytes int64
	// MaxAge rotates a non-empty active file this long after its first line.
	// Default 60 s.
	MaxAge time.Duration

	// Sync is the durability policy. Default SyncInterval.
	Sync SyncPolicy
	// SyncInterval is the group-commit period of SyncInterval. Default 100 ms.
	SyncInterval time.Duration
	// FlushInterval bounds how long an appended line may sit in memory before
	// it is written to the file, so a tailing reader sees it within
	// milliseconds. Default 5 ms.
	FlushInterval time.Duration
	// MaxBuffered bounds the bytes held in memory before they are written;
	// appends wait when it is reached. Default 8 MiB.
	MaxBuffered int

	// FileMode is the permission of new files. Default 0640.
	FileMode os.FileMode
	// Ext is the file name extension of sealed files. Default ".ndjson".
	Ext string

	// Hooks receive events for metrics; nil fields are skipped.
	Hooks Hooks

	// now and fs are replaced by tests.
	now func() time.Time
	fs  fileSystem
}

// Hooks are optional callbacks for metrics and logging. They run on the
// writer's own goroutines (the flush goroutine and the one that syncs and
// seals files), so two hooks may run at the same time; they must be safe
// for that, must not block, and must not call back into the Writer.
type Hooks struct {
	// OnSync is called after every fsync of the active file.
	OnSync func(d time.Duration, err error)
	// OnRotate is called after a file was sealed under its final name.
	OnRotate func(path string)
	// OnError is called when a write, sync or rotation fails.
	OnError func(err error)
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("rotatefile: Options.Dir is required")
	}
	if o.Stream == "" || o.Stream != filepath.Base(o.Stream) || o.Stream == "." || o.Stream == ".." || strings.HasPrefix(o.Stream, ".") {
		return o, fmt.Errorf("rotatefile: Options.Stream %q must be one non-hidden path element", o.Stream)
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Sync < SyncInterval || o.Sync > SyncAlways {
		return o, fmt.Errorf("rotatefile: Options.Sync: %v", o.Sync)
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.Ext == "" {
		o.Ext = DefaultExt
	}
	if !strings.HasPrefix(o.Ext, ".") || strings.ContainsRune(o.Ext, '/') || o.Ext == ActiveSuffix {
		return o, fmt.Errorf("rotatefile: Options.Ext %q must start with a dot and differ from %q", o.Ext, ActiveSuffix)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.fs == nil {
		o.fs = osFS{}
	}
	return o, nil
}
