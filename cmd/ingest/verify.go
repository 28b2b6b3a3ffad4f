package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/verify"
	"github.com/urfave/cli/v2"
)

// errMismatch makes verify exit 1 after printing its report.
var errMismatch = errors.New("postgres and kafka disagree")

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "compare a table's rows in PostgreSQL with its messages in Kafka, per account",
		Description: `Reads the rows of --table in the window (its time field; no window:
everything) from PostgreSQL, and the messages of the same window from the
table's topic: per partition from the offset of --since to the offset of
--until (looked up by message timestamp, which the sink sets from the time
field), or the partition's end at the start when that comes first. The
report shows each partition's offsets and the messages fetched from the
broker: the window's, plus the rest of the record batch holding its last
offset, plus at most one fetch past it (the next batch, or up to 64 KiB
of smaller batches). Per account it reports the count and an
order-independent digest of record ids on each side, and lists every id
missing on one side. Repeats in Kafka (at-least-once delivery) are
reported as duplicates, not mismatches.

Records PostgreSQL has and the window's offsets lack are looked for up to
each partition's end before being called missing: messages produced out
of time order (history backfilled after newer records) sit past the
window's end offset. --to-end reads that far for everything, to also find
records that only Kafka has there.

Only accounts the config routes to both sinks must agree; the others are
listed for information. Exits 0 when they all agree, 1 when one does not
(or a side cannot be read), 1 with "nothing to compare" when no account
was compared: neither side holds a record in the window, or no account
that does is routed to both sinks (unless --allow-empty), 2 on bad arguments
or config.`,
		Flags: configFlags(
			&cli.StringFlag{Name: "table", Usage: "the table to compare (a key of tables:; required)"},
			&cli.StringFlag{Name: "since", Usage: "window start, inclusive (RFC 3339, YYYY-MM-DD, epoch seconds or ms, or -DURATION from now)"},
			&cli.StringFlag{Name: "until", Usage: "window end, exclusive (same forms)"},
			&cli.BoolFlag{Name: "allow-empty", Usage: "exit 0 when no account was compared: neither side holds a record in the window, or no account that does is routed to both sinks (default: exit 1, \"nothing to compare\": such a window is usually a mistake, e.g. load times given where rows carry event times)"},
			&cli.BoolFlag{Name: "to-end", Usage: "read each partition to its end instead of stopping at --until's offset (slower; also finds records only Kafka holds among messages produced out of time order)"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after this long (0: no limit)"},
			debugFlag(),
		),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			if c.String("table") == "" {
				return usagef("--table is required (a key of tables:)")
			}
			window, err := windowFlags(c)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			if d := c.Duration("timeout"); d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			rep, err := verify.Run(ctx, cfg, verify.Options{
				Table: c.String("table"), Window: window, AllowEmpty: c.Bool("allow-empty"), ReadToEnd: c.Bool("to-end"),
				Logger: commandLogger(c, slog.LevelWarn),
			})
			if err != nil && !errors.Is(err, verify.ErrNothingToCompare) {
				return usageIf[*verify.ArgError](err)
			}
			runErr := err
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, rep)
			} else {
				err = rep.WriteText(c.App.Writer)
			}
			if err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			if !rep.OK {
				return fmt.Errorf("%w for %d account(s): %v", errMismatch, len(rep.Mismatched), rep.Mismatched)
			}
			return nil
		}),
	}
}
