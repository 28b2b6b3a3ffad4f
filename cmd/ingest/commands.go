package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/acktrace"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/runner"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/urfave/cli/v2"
)

func configFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config file (YAML, see docs/config.md)", EnvVars: []string{"INGEST_CONFIG"}}
}

// overrideFlags are config keys that may also come from a flag or the
// environment; a flag wins over the file.
func overrideFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "spool-dir", Usage: "spool.dir: the directory of stream subdirectories", EnvVars: []string{"INGEST_SPOOL_DIR"}},
		&cli.StringFlag{Name: "state-dir", Usage: "spool.state_dir (default <spool.dir>/.ingest)", EnvVars: []string{"INGEST_STATE_DIR"}},
		&cli.StringFlag{Name: "db-url", Usage: "db.url: PostgreSQL URL; empty turns the db sink off (also INGEST_DB_URL, DATABASE_URL)"},
		&cli.StringFlag{Name: "kafka-brokers", Usage: `kafka.brokers: bootstrap servers; "embedded" for an in-process mock (dev only)`, EnvVars: []string{"INGEST_KAFKA_BROKERS"}},
		&cli.StringFlag{Name: "metrics-listen", Usage: `metrics.listen: address of /metrics, /healthz, /readyz; "off" disables`, EnvVars: []string{"INGEST_METRICS_LISTEN"}},
	}
}

// configFlags are the flags of a command that reads the config: --config,
// the command's own flags, then the config keys a flag may override.
func configFlags(own ...cli.Flag) []cli.Flag {
	return append(append([]cli.Flag{configFlag()}, own...), overrideFlags()...)
}

// withConfig is the action of a command that reads the config: the
// config is loaded (a usage error when it is missing or invalid) before
// the command's own action runs.
func withConfig(action func(c *cli.Context, cfg *config.Config) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		return action(c, cfg)
	}
}

// writeJSON is every --json output: v indented, as scripts and people
// both read it.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// usageIf makes err a usage error (exit 2) when it is an E, the argument
// error of the package that returned it; other errors stay runtime ones.
func usageIf[E error](err error) error {
	var e E
	if errors.As(err, &e) {
		return usageError{err}
	}
	return err
}

// loadConfig reads --config and applies flag overrides. Its errors are
// usage errors: they name the file, line and key.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	if path == "" {
		return nil, usagef("--config is required (or INGEST_CONFIG)")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	if v := c.String("spool-dir"); v != "" {
		// A state dir the file left to its default follows the spool dir
		// the operator named, as it would had the file said that dir.
		if cfg.Spool.StateDir == filepath.Join(cfg.Spool.Dir, config.DefaultStateSubdir) {
			cfg.Spool.StateDir = filepath.Join(v, config.DefaultStateSubdir)
		}
		cfg.Spool.Dir = v
	}
	if v := c.String("state-dir"); v != "" {
		cfg.Spool.StateDir = v
	}
	if c.IsSet("db-url") {
		cfg.DB.URL = c.String("db-url")
	}
	if c.IsSet("kafka-brokers") {
		cfg.Kafka.Brokers = c.String("kafka-brokers")
	}
	if c.IsSet("metrics-listen") {
		cfg.Metrics.Listen = c.String("metrics-listen")
	}
	return cfg, nil
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "tail the spool and write to the enabled sinks until SIGTERM/SIGINT",
		Description: `Discovers streams under spool.dir, tails each in creation order and writes
every record to the sinks its table routes it to (db / kafka selectors).
Each sink keeps its own checkpoint, so one sink's outage never stops the
other. Edit the config file (or send SIGHUP) to change routes and batch
settings while running; an invalid file is rejected and the old one stays.
SIGTERM/SIGINT finish in-flight batches, write checkpoints and exit 0.`,
		Flags: configFlags(
			&cli.BoolFlag{Name: "create-topics", Usage: "create missing Kafka topics (development only)"},
			debugFlag(),
			// Benchmarks only (scripts/bench-latency): one line per acknowledged
			// record that carries gen's appended_ns, "<sink>\t<append_to_ack_ns>".
			&cli.StringFlag{Name: "trace-acks", Hidden: true, Usage: "write each record's append-to-acknowledgement time per sink to this file (benchmarks)"},
		),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			log := commandLogger(c, slog.LevelInfo)
			ctx, stop := signalContext()
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{}, 1)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			opts := runner.Options{
				ConfigPath: c.String("config"), Reload: reload, Logger: log, CreateTopics: c.Bool("create-topics"),
				// A reload applies this run's flags again, as at start.
				Load: func() (*config.Config, error) { return loadConfig(c) },
			}
			closeTrace := func() error { return nil }
			if path := c.String("trace-acks"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return usagef("--trace-acks: %v", err)
				}
				tr := acktrace.New(acktrace.Options{Out: f})
				opts.WrapSink = tr.Wrap
				closeTrace = func() error {
					err := tr.Close()
					if cerr := f.Close(); err == nil && cerr != nil {
						err = fmt.Errorf("--trace-acks: %w", cerr)
					}
					return err
				}
			}
			// A config that cannot run (no sink, a route to a sink that is
			// off, a Kafka property the sink refuses) is a config error:
			// exit 2.
			err := usageIf[*kafkasink.ConfigError](usageIf[*config.Error](runner.Run(ctx, cfg, opts)))
			if terr := closeTrace(); terr != nil {
				log.Error("ack trace incomplete", "err", terr)
				err = cmp.Or(err, terr)
			}
			if err != nil {
				return err
			}
			log.Info("stopped: checkpoints written")
			return nil
		}),
	}
}

func genCommand() *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "write realistic offline lines through rotatefile (load generator)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "spool directory (required)"},
			&cli.StringFlag{Name: "stream", Value: "api", Usage: "stream (subdirectory)"},
			&cli.StringFlag{Name: "table", Value: "raw_item", Usage: "table named in every line"},
			&cli.Float64Flag{Name: "rate", Usage: "lines per second (0: as fast as possible)"},
			&cli.Int64Flag{Name: "count", Usage: "stop after this many lines (0: until interrupted)"},
			&cli.IntFlag{Name: "accounts", Value: 1000, Usage: "distinct accounts (project_id), Zipf-skewed"},
			&cli.IntFlag{Name: "size", Value: 2500, Usage: "mean line size in bytes"},
			&cli.StringFlag{Name: "sync", Value: "interval", Usage: "writer durability: none, interval or always"},
			&cli.Int64Flag{Name: "max-bytes", Usage: "rotate files at this size (default 64 MiB)"},
			&cli.DurationFlag{Name: "max-age", Usage: "rotate files at this age (default 60s)"},
		},
		Action: func(c *cli.Context) error {
			// Checked here, not with the flag's Required: urfave/cli
			// reports a missing required flag past OnUsageError (exit 1).
			if c.String("dir") == "" {
				return usagef("--dir is required")
			}
			if c.Float64("rate") < 0 || c.Int64("count") < 0 {
				return usagef("--rate and --count must not be negative")
			}
			sp, err := rotatefile.ParseSyncPolicy(c.String("sync"))
			if err != nil {
				return usagef("--sync: %v", err)
			}
			ctx, stop := signalContext()
			defer stop()
			st, err := gen.Run(ctx, gen.Options{
				Dir: c.String("dir"), Stream: c.String("stream"), Table: c.String("table"),
				Rate: c.Float64("rate"), Count: c.Int64("count"), Accounts: c.Int("accounts"), Size: c.Int("size"),
				Writer: rotatefile.Options{Sync: sp, MaxBytes: c.Int64("max-bytes"), MaxAge: c.Duration("max-age")},
				Progress: func(s gen.Stats) {
					fmt.Fprintf(c.App.ErrWriter, "gen: %d lines, %.0f lines/s\n", s.Lines, float64(s.Lines)/s.Elapsed.Seconds())
				},
			})
			fmt.Fprintf(c.App.Writer, "wrote %d lines (%d bytes) in %v, %.0f lines/s\n", st.Lines, st.Bytes,
				st.Elapsed.Round(time.Millisecond), float64(st.Lines)/max(st.Elapsed.Seconds(), 1e-9))
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "create the configured tables and the checkpoint table in PostgreSQL (idempotent)",
		Flags: configFlags(),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			if !cfg.DBEnabled() {
				return usagef("db.url is empty: set it in the config, --db-url or INGEST_DB_URL")
			}
			sch, err := cfg.Schema()
			if err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			set, err := sinks.Build(ctx, cfg, sch, sinks.Options{Mode: sinks.ReadOnly, Kinds: []string{config.SinkDB}})
			if err != nil {
				return err
			}
			defer set.Close()
			if err := set.DB.Migrate(ctx); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "migrated %d table(s) and the checkpoint table\n", len(sch.Tables()))
			return nil
		}),
	}
}

func schemaCommand() *cli.Command {
	return &cli.Command{
		Name:  "schema",
		Usage: "schema tools",
		Subcommands: []*cli.Command{{
			Name:  "sql",
			Usage: "print the DDL that migrate runs",
			Flags: []cli.Flag{configFlag()},
			Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
				sch, err := cfg.Schema()
				if err != nil {
					return usageError{err}
				}
				fmt.Fprint(c.App.Writer, dbsink.DDL(sch))
				return nil
			}),
		}},
	}
}
