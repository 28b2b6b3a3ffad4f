package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

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
table's topic: from the offset of --since (by message timestamp, which the
sink sets from the time field) to each partition's end at the start. Per
account it reports the count and an order-independent digest of record
ids on each side, and lists every id missing on one side. Repeats in Kafka
(at-least-once delivery) are reported as duplicates, not mismatches.

Only accounts the config routes to both sinks must agree; the others are
listed for information. Exits 0 when they all agree, 1 when one does not
(or a side cannot be read), 2 on bad arguments or config.`,
		Flags: append([]cli.Flag{configFlag(),
			&cli.StringFlag{Name: "table", Usage: "the table to compare (a key of tables:)", Required: true},
			&cli.StringFlag{Name: "since", Usage: "window start, inclusive (RFC 3339, YYYY-MM-DD, epoch seconds or ms, or -DURATION from now)"},
			&cli.StringFlag{Name: "until", Usage: "window end, exclusive (same forms)"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after this long (0: no limit)"},
			debugFlag(),
		}, overrideFlags()...),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
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
			rep, err := verify.Run(ctx, cfg, verify.Options{Table: c.String("table"), Window: window, Logger: commandLogger(c, slog.LevelWarn)})
			var ae *verify.ArgError
			if errors.As(err, &ae) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.WriteText(c.App.Writer)
			}
			if err != nil {
				return err
			}
			if !rep.OK {
				return fmt.Errorf("%w for %d account(s): %v", errMismatch, len(rep.Mismatched), rep.Mismatched)
			}
			return nil
		},
	}
}
