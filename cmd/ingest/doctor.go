package main

import (
	"context"
	"errors"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/inspect"
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check config, spool, state dir, PostgreSQL and Kafka as ingest run would, with a fix for each failure",
		Description: `Runs the checks ingest run makes at start-up, and more, without loading
anything, and prints them as a checklist: the config parses; the spool dir
and each stream's files (recognised, not loaded and why, unread and how
old); the state dir is writable and has free space; PostgreSQL answers and
every table has the configured columns; Kafka answers and every routed
topic exists; dead letters waiting. Each failure comes with its fix.

Exit status: 0 when every check passes (warnings do not fail), 1 when one
fails, 2 when the config does not parse.

  ingest doctor --config /etc/ingest/ingest.yaml
  ingest doctor --config ingest.yaml --json | jq '.checks[] | select(.ok | not)'`,
		Flags: configFlags(&cli.BoolFlag{Name: "json", Usage: "machine-readable output"}),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			ctx, cancel := signalContext()
			defer cancel()
			ctx, tcancel := context.WithTimeout(ctx, 2*time.Minute)
			defer tcancel()
			rep := inspect.Doctor(ctx, c.String("config"), cfg)
			if c.Bool("json") {
				if err := writeJSON(c.App.Writer, rep); err != nil {
					return err
				}
			} else {
				rep.Print(c.App.Writer)
			}
			if !rep.OK() {
				return errDoctorFailed
			}
			return nil
		}),
	}
}

var errDoctorFailed = errors.New("doctor: some checks failed (see above)")
