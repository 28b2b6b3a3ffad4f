package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/urfave/cli/v2"
)

// devCommand is `ingest dev`: hidden helpers for benchmark and development
// scripts that need a Kafka cluster or a PostgreSQL server outside the
// ingest process (scripts/bench-e2e). Each prints one line with the address
// on stdout, then runs until SIGTERM/SIGINT and cleans up.
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
until SIGTERM/SIGINT, when it stops the server and removes the directory.`,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "port", Usage: "TCP port on 127.0.0.1 (0: a free one)"},
				},
				Action: func(c *cli.Context) error {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					srv, err := pgserver.Start(ctx, pgserver.Options{Port: c.Int("port")})
					cancel()
					if err != nil {
						return err
					}
					defer srv.Close()
					fmt.Fprintln(c.App.Writer, srv.URL())
					fmt.Fprintf(c.App.ErrWriter, "ingest dev postgres: pid %d, data %s\n", srv.PID(), srv.DataDir())
					waitSignal()
					return nil
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
