package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/demo"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/runner"
	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole pipeline on embedded defaults and check the result",
		Description: `Starts an in-process Kafka (librdkafka's mock cluster) and a throwaway
PostgreSQL from the locally installed server binaries in a temporary
directory, generates traffic through the writer library, runs the loader
dual-writing while the Kafka route moves from none to {percent: 30} to all,
and prints per-sink counts, dead letters, a per-account order check and
append-to-acknowledgement latency. Exits 0 only if every check passes.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: demo.DefaultDuration, Usage: "how long to generate traffic"},
			&cli.Float64Flag{Name: "rate", Value: 1500, Usage: "lines per second"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary directory (spool, config, dead letters)"},
			&cli.BoolFlag{Name: "verbose", Usage: "show the loader's logs"},
		},
		Action: func(c *cli.Context) error {
			var log *slog.Logger
			if c.Bool("verbose") {
				log = newLogger(slog.LevelInfo)
			}
			ctx, stop := signalContext()
			defer stop()
			err := demo.Run(ctx, demo.Options{Duration: c.Duration("duration"), Rate: c.Float64("rate"), Keep: c.Bool("keep"), Out: c.App.Writer, Logger: log,
				Load: func(ctx context.Context, cfg *config.Config, o demo.LoadOptions) error {
					return runner.Run(ctx, cfg, runner.Options{
						ConfigPath: o.ConfigPath, Logger: o.Logger, WrapSink: o.WrapSink, Started: o.Started, Loader: o.Loader,
					})
				}})
			if errors.Is(err, pgserver.ErrNotInstalled) {
				return errors.New("the demo starts a throwaway PostgreSQL from the installed server binaries, which are missing.\n" +
					"Install them with:  apt-get install -y postgresql   (or set PG_BIN to a directory holding initdb and postgres)")
			}
			return err
		},
	}
}
