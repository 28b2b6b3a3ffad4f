package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/loader"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func backfillCommand() *cli.Command {
	return &cli.Command{
		Name:      "backfill",
		Usage:     "replay sealed or archived offline files to the sinks, resumably",
		ArgsUsage: "PATH...",
		Description: `Replays sealed offline files (files, directories or globs; e.g. the
archive under <state_dir>/archive/<stream>/) through the same decoding,
routing and sinks as "ingest run", in creation order, and stops when every
sink has acknowledged every file. Active ".open" files are skipped (refused
when named). Lines go to a sink only if the config's selector routes their
account there and they pass --accounts and --since/--until (a half-open
window on the table's time field: records without a time are skipped
while a window is set). Prefer the archive (spool.retention > 0) or
copies to the live spool, whose files the loader deletes once loaded.

The job keeps its own checkpoints (sink names backfill-<sink>-<job id>,
the id a hash of the paths, --stream, --accounts and the window), never
the live loader's: interrupt it and run the same command again to resume.
--restart replays from the start instead; PostgreSQL keeps one row per
id, Kafka gets the messages again.

Kafka messages carry the row's event time as their timestamp, and a
topic's retention counts from it. So before producing, backfill reads each
routed topic's retention.ms, message.timestamp.type and
message.timestamp.before.max.ms/after.max.ms, and never produces a record
the topic would delete within --retention-margin or would refuse: it stops
there with exit 2, naming the topic, its limit, the record's time and the
fixes (before producing anything when --since already reaches too far).
--no-topic-check skips this for brokers that refuse DescribeConfigs.

A progress bar on a terminal, progress log lines otherwise, a summary at
the end. Exits 1 when anything was not delivered (dead letters, or
interrupted), 2 on bad arguments and on records a topic would delete soon
or refuse.`,
		Flags: configFlags(
			&cli.StringFlag{Name: "sink", Usage: "db, kafka or both (default: every sink enabled in the config)"},
			&cli.StringFlag{Name: "accounts", Usage: "comma-separated account keys to replay (default: all)"},
			&cli.StringFlag{Name: "since", Usage: "only records whose time field is at or after this (RFC 3339, YYYY-MM-DD, epoch seconds or ms, or -DURATION from now)"},
			&cli.StringFlag{Name: "until", Usage: "only records whose time field is before this (same forms as --since)"},
			&cli.Float64Flag{Name: "rate", Usage: "at most this many lines per second per sink (0: no limit)"},
			&cli.DurationFlag{Name: "hold-for", Value: loader.DefaultHoldFor, Usage: "how long a slower sink may go without progress and still hold the faster ones back, so it takes the lines they read from memory (0: never hold; each sink reads at its own pace)"},
			&cli.StringFlag{Name: "stream", Usage: "stream name of every file (default: each file's directory name); record ids of tables without an id field depend on it"},
			&cli.BoolFlag{Name: "restart", Usage: "forget this job's checkpoints and replay from the start"},
			&cli.BoolFlag{Name: "no-topic-check", Usage: "do not read the topics' retention and timestamp limits (brokers that refuse DescribeConfigs): records a topic deletes soon or refuses are then not caught"},
			&cli.DurationFlag{Name: "retention-margin", Value: backfill.DefaultRetentionMargin, Usage: "refuse records a topic's retention would delete within this long (at most half the retention)"},
			&cli.StringFlag{Name: "progress", Value: "auto", Usage: "auto (a bar on a terminal, log lines otherwise), bar, log or off"},
			&cli.DurationFlag{Name: "log-every", Value: backfill.DefaultLogEvery, Usage: "interval of progress log lines"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
			debugFlag(),
		),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			if c.NArg() == 0 {
				return usagef("backfill needs at least one PATH (file, directory or glob)")
			}
			o := backfill.Options{Paths: c.Args().Slice(), Stream: c.String("stream"), Rate: c.Float64("rate"), Restart: c.Bool("restart"),
				RetentionMargin: max(c.Duration("retention-margin"), time.Nanosecond), // 0 asks for no margin; Options read 0 as the default
				SkipTopicCheck:  c.Bool("no-topic-check"), HoldFor: c.Duration("hold-for")}
			if o.HoldFor == 0 {
				o.HoldFor = -1 // the flag's 0 is "never"; Options' 0 is the default
			}
			switch s := c.String("sink"); s {
			case "":
			case "both":
				o.Sinks = []string{config.SinkDB, config.SinkKafka}
			case config.SinkDB, config.SinkKafka:
				o.Sinks = []string{s}
			default:
				return usagef("--sink: want db, kafka or both, got %q", s)
			}
			if c.IsSet("accounts") {
				for _, a := range strings.Split(c.String("accounts"), ",") {
					if a = strings.TrimSpace(a); a != "" {
						o.Accounts = append(o.Accounts, a)
					}
				}
				if len(o.Accounts) == 0 {
					return usagef("--accounts: no account listed")
				}
			}
			var err error
			if o.Window, err = windowFlags(c); err != nil {
				return err
			}
			o.Logger = commandLogger(c, slog.LevelInfo)
			o.Out, o.LogEvery = c.App.ErrWriter, c.Duration("log-every")
			switch p := c.String("progress"); p {
			case "auto":
				o.Progress = backfill.ProgressLog
				if f, ok := c.App.ErrWriter.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					o.Progress = backfill.ProgressBar
				}
			case "bar":
				o.Progress = backfill.ProgressBar
			case "log":
				o.Progress = backfill.ProgressLog
			case "off":
				o.Progress = backfill.ProgressOff
			default:
				return usagef("--progress: want auto, bar, log or off, got %q", p)
			}

			ctx, stop := signalContext()
			defer stop()
			sum, err := backfill.Run(ctx, cfg, o)
			var ae *backfill.ArgError
			if errors.As(err, &ae) {
				return usageError{err}
			}
			if sum != nil {
				if c.Bool("json") {
					if werr := writeJSON(c.App.Writer, sum); werr != nil && err == nil {
						err = werr
					}
				} else if werr := sum.WriteText(c.App.Writer); werr != nil && err == nil {
					err = werr
				}
			}
			return usageIf[*backfill.TopicError](err)
		}),
	}
}

// windowFlags reads --since and --until.
func windowFlags(c *cli.Context) (loader.Window, error) {
	var w loader.Window
	now := time.Now()
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &w.Since}, {"until", &w.Until}} {
		if !c.IsSet(f.name) {
			continue
		}
		t, err := parseTimeFlag(c.String(f.name), now)
		if err != nil {
			return w, usagef("--%s: %v", f.name, err)
		}
		*f.dst = t
	}
	if !w.Since.IsZero() && !w.Until.IsZero() && !w.Since.Before(w.Until) {
		return w, usagef("--since %s is not before --until %s", w.Since.Format(time.RFC3339Nano), w.Until.Format(time.RFC3339Nano))
	}
	return w, nil
}

// parseTimeFlag accepts RFC 3339 (2026-05-01T12:00:00Z, with offset or
// fraction), a UTC date or date-time without zone (2026-05-01,
// 2026-05-01T12:00:00), epoch seconds or milliseconds by the same rule as
// the time field (below 1e11: seconds), or -DURATION before now ("-24h").
func parseTimeFlag(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s[1:])
		if err == nil {
			return now.Add(-d).UTC(), nil
		}
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v > -1e11 && v < 1e11 {
			return time.Unix(v, 0).UTC(), nil
		}
		return time.UnixMilli(v).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339, YYYY-MM-DD[THH:MM[:SS]] (UTC), epoch seconds or ms, or -DURATION", s)
}
