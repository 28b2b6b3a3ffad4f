package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/consume"
	"github.com/dualwrite/ingest/internal/inspect"
	"github.com/dualwrite/ingest/loader"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "per stream and sink: checkpoint, lag in bytes and files, age of the oldest pending line, dead letters; spool entries not loaded; consumer groups",
		Description: `Shows each stream's files, each sink's checkpoint and lag, and every entry
of a stream's directory that the loader does not load (a name that is not
rotatefile's and matches no pattern, a symlink, a sub-directory, a file it
cannot open), with the reason and the fix.

With --check it exits 1 while any stream has such entries, for monitoring:
  ingest status --config ingest.yaml --check || alert

Then, under CONSUMER GROUPS, each "ingest consume" group that has
checkpoints in PostgreSQL (and the config's consume.group): per partition
the checkpoint, Kafka's committed offset, the end, the lag in messages and
the age of the oldest message not loaded. When PostgreSQL or Kafka does not
answer, the section says so and shows what the other told.

--json prints one array: an element per stream ("stream": ...), then an
element per consumer group ("consumer_group": ...).`,
		Flags: configFlags(
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
			&cli.BoolFlag{Name: "check", Usage: "exit 1 while a stream has entries it does not load (ignored or unreadable files)"},
		),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sch, err := cfg.Schema()
			if err != nil {
				return usageError{err}
			}
			lc := config.LoaderConfig(cfg, sch, nil, nil)
			sinks, closeSinks, err := inspect.Checkpoints(ctx, cfg, sch)
			defer closeSinks()
			if err != nil {
				return fmt.Errorf("db sink: %w", err)
			}
			st, err := loader.Status(ctx, lc, sinks)
			if err != nil {
				return err
			}
			gctx, gcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer gcancel()
			groups := consume.Groups(gctx, cfg)
			ignored := 0
			for _, s := range st {
				ignored += len(s.Ignored)
			}
			var checkErr error
			if c.Bool("check") && ignored > 0 {
				checkErr = fmt.Errorf("%d spool entries are not loaded (see NOT LOADED above, or --json)", ignored)
			}
			if c.Bool("json") {
				// One array, streams first, so that scripts reading the
				// streams' elements keep working (a group's element has no
				// "stream" or "sinks").
				all := make([]any, 0, len(st)+len(groups))
				for _, s := range st {
					all = append(all, s)
				}
				for _, g := range groups {
					all = append(all, g)
				}
				if err := writeJSON(c.App.Writer, all); err != nil {
					return err
				}
				return checkErr
			}
			tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STREAM\tFILES\tBYTES\tDEAD LETTERS\tSINK\tCHECKPOINT\tLAG BYTES\tLAG FILES\tOLDEST PENDING")
			for _, s := range st {
				for i, k := range s.Sinks {
					cp := "-"
					if k.Checkpoint != nil {
						cp = k.Checkpoint.String()
					}
					if k.Error != "" {
						cp = "error: " + k.Error
					}
					head := fmt.Sprintf("%s\t%d\t%d\t%d", s.Stream, s.Files, s.Bytes, s.DeadLetters)
					if i > 0 {
						head = "\t\t\t"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%v\n", head, k.Sink, cp, k.LagBytes, k.LagFiles, k.OldestPending.Round(time.Second))
				}
				if len(s.Sinks) == 0 {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t(no sink enabled)\n", s.Stream, s.Files, s.Bytes, s.DeadLetters)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if ignored > 0 {
				fmt.Fprintln(c.App.Writer, "\nNOT LOADED")
				tw = tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "STREAM\tFILE\tBYTES\tREASON\tFIX")
				for _, s := range st {
					for _, f := range s.Ignored {
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Stream, f.Name, f.Size, f.Reason, f.Fix)
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if len(groups) > 0 {
				fmt.Fprintln(c.App.Writer, "\nCONSUMER GROUPS")
				for i, g := range groups {
					if i > 0 {
						fmt.Fprintln(c.App.Writer)
					}
					if err := consume.WriteGroup(c.App.Writer, g); err != nil {
						return err
					}
				}
			}
			return checkErr
		}),
	}
}
