package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/runner"
	"github.com/dualwrite/ingest/loader"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "per stream and sink: checkpoint, lag in bytes and files, age of the oldest pending line, dead letters",
		Flags: append([]cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}}, overrideFlags()...),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sch, err := cfg.Schema()
			if err != nil {
				return usageError{err}
			}
			lc := runner.LoaderConfig(cfg, sch, nil, nil)
			sinks := map[string]loader.CheckpointFunc{}
			if cfg.KafkaEnabled() {
				store := loader.FileStore{Dir: lc.StateDir + "/checkpoints"}
				sinks[runner.SinkKafka] = func(ctx context.Context, stream string) (loader.Position, bool, error) {
					return store.Load(ctx, runner.SinkKafka, stream)
				}
			}
			if cfg.DBEnabled() {
				db, err := dbsink.New(ctx, dbsink.Config{URL: cfg.DB.URL, Schema: sch, Name: runner.SinkDB})
				if err != nil {
					return fmt.Errorf("db sink: %w", err)
				}
				defer db.Close()
				sinks[runner.SinkDB] = db.Checkpoint
			}
			st, err := loader.Status(ctx, lc, sinks)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
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
			return tw.Flush()
		},
	}
}
