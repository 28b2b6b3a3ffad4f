package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dualwrite/ingest/internal/acktrace"
	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/urfave/cli/v2"
)

// devCommand is `ingest dev`: hidden helpers for benchmark and development
// scripts that need a Kafka cluster or a PostgreSQL server outside the
// ingest process (scripts/bench-e2e, scripts/bench-latency). kafka and
// postgres print one line with the address on stdout, then run until
// SIGTERM/SIGINT and clean up; latency-report summarizes a --trace-acks file.
func devCommand() *cli.Command {
	return &cli.Command{
		Name:   "dev",
		Usage:  "development helpers: standalone mock Kafka or throwaway PostgreSQL",
		Hidden: true,
		Subcommands: []*cli.Command{
			{
				Name:  "kafka",
				Usage: "run librdkafka's mock cluster, print its bootstrap address, run until SIGTERM/SIGINT",
				Description: `Prints "bootstrap.servers" on stdout (one line), then serves until
SIGTERM/SIGINT. SIGUSR1 takes every broker down, SIGUSR2 brings them back
(for outage and catch-up benchmarks). The mock keeps only ~5 MB / 100,000
message sets per partition: fine for throughput, not for reading back
large volumes.`,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "brokers", Value: 3, Usage: "number of brokers"},
					&cli.StringSliceFlag{Name: "topic", Usage: "topic to create (repeatable)"},
					&cli.IntFlag{Name: "partitions", Value: 6, Usage: "partitions of each --topic"},
				},
				Action: func(c *cli.Context) error {
					if c.Int("brokers") < 1 || c.Int("partitions") < 1 {
						return usagef("--brokers and --partitions must be at least 1")
					}
					mc, err := mockkafka.New(c.Int("brokers"))
					if err != nil {
						return err
					}
					defer mc.Close()
					for _, t := range c.StringSlice("topic") {
						if err := mc.CreateTopic(t, c.Int("partitions")); err != nil {
							return err
						}
					}
					fmt.Fprintln(c.App.Writer, mc.Bootstrap())
					usr := make(chan os.Signal, 2)
					signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
					defer signal.Stop(usr)
					go func() {
						for sig := range usr {
							var err error
							if sig == syscall.SIGUSR1 {
								err = mc.BrokerDown(-1)
							} else {
								err = mc.BrokerUp(-1)
							}
							fmt.Fprintf(c.App.ErrWriter, "ingest dev kafka: %v: all brokers %s (err %v)\n", sig,
								map[bool]string{true: "down", false: "up"}[sig == syscall.SIGUSR1], err)
						}
					}()
					waitSignal()
					return nil
				},
			},
			{
				Name:  "postgres",
				Usage: "run a throwaway PostgreSQL server, print its URL, run until SIGTERM/SIGINT",
				Description: `Starts PostgreSQL from the installed server binaries (internal/pgserver)
in a temporary directory, prints its URL on stdout (one line), then serves
until SIGTERM/SIGINT, when it stops the server and removes the directory.
SIGUSR1 stops the server (fast shutdown, data kept), SIGUSR2 starts it again
on the same port (for outage and catch-up benchmarks).`,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "port", Usage: "TCP port on 127.0.0.1 (0: a free one)"},
					&cli.StringSliceFlag{Name: "set", Usage: "server setting `NAME=VALUE` over the test defaults (repeatable), e.g. shared_buffers=128MB"},
				},
				Action: func(c *cli.Context) error {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					srv, err := pgserver.Start(ctx, pgserver.Options{Port: c.Int("port"), Settings: c.StringSlice("set")})
					cancel()
					if err != nil {
						return err
					}
					defer srv.Close()
					fmt.Fprintln(c.App.Writer, srv.URL())
					fmt.Fprintf(c.App.ErrWriter, "ingest dev postgres: pid %d, data %s\n", srv.PID(), srv.DataDir())
					usr := make(chan os.Signal, 2)
					signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
					defer signal.Stop(usr)
					go func() {
						for sig := range usr {
							ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
							var err error
							state := "stopped"
							if sig == syscall.SIGUSR1 {
								err = srv.Stop(ctx)
							} else {
								err, state = srv.Start(ctx), "started"
							}
							cancel()
							fmt.Fprintf(c.App.ErrWriter, "ingest dev postgres: %v: server %s (pid %d, err %v)\n", sig, state, srv.PID(), err)
						}
					}()
					waitSignal()
					return nil
				},
			},
			{
				Name:      "latency-report",
				Usage:     "exact append-to-ack percentiles per sink from an ingest run --trace-acks file",
				ArgsUsage: "TRACE",
				Description: `Reads the trace of ingest run --trace-acks ("<sink>\t<nanoseconds>" per
record) and prints, per sink, the number of records and the exact
(nearest-rank) p50, p99, p99.9 and maximum in milliseconds, one line per
sink after a header (scripts/bench-latency parses it).`,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("latency-report takes one trace file")
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return err
					}
					defer f.Close()
					sums, err := acktrace.ReadSummaries(f)
					if err != nil {
						return fmt.Errorf("%s: %w", c.Args().First(), err)
					}
					ms := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1e3, 'f', 3, 64) }
					tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SINK\tRECORDS\tP50_MS\tP99_MS\tP99.9_MS\tMAX_MS")
					for _, s := range sums {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Sink, s.Count, ms(s.P50), ms(s.P99), ms(s.P999), ms(s.Max))
					}
					return tw.Flush()
				},
			},
		},
	}
}

// waitSignal blocks until SIGTERM or SIGINT.
func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	signal.Stop(ch)
}
