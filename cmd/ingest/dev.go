package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dualwrite/ingest/internal/acktrace"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/urfave/cli/v2"
)

// devCommand is `ingest dev`: hidden helpers for benchmark and development
// scripts that need a Kafka broker (real or mock) or a PostgreSQL server outside the
// ingest process (scripts/bench-e2e, scripts/bench-latency). kafka and
// postgres print one line with the address on stdout, then run until
// SIGTERM/SIGINT and clean up; latency-report summarizes a --trace-acks file.
func devCommand() *cli.Command {
	return &cli.Command{
		Name:   "dev",
		Usage:  "development helpers: a real (or mock) Kafka broker or a throwaway PostgreSQL",
		Hidden: true,
		Subcommands: []*cli.Command{
			{
				Name:  "kafka",
				Usage: "run a real Apache Kafka broker (or librdkafka's mock), print its bootstrap address, run until SIGTERM/SIGINT",
				Description: `Starts a real Apache Kafka broker (KRaft, internal/kafkaserver: needs Java 17+
and Maven, or INGEST_KAFKA_JARS) in a temporary directory, or with --mock
librdkafka's in-process mock cluster, creates each --topic, prints
"bootstrap.servers" on stdout (one line), then serves until SIGTERM/SIGINT
and removes everything. SIGUSR1 takes every broker down (kill -9 for the
real broker), SIGUSR2 brings them back (for outage and catch-up
benchmarks). --fetch only resolves the real broker's jars and exits. The
mock keeps only ~5 MB / 100,000 message sets per partition and answers
every OffsetsForTimes with "end": fine for throughput, not for reading back
large volumes or time windows.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "mock", Usage: "librdkafka's in-process mock cluster instead of the real broker"},
					&cli.BoolFlag{Name: "fetch", Usage: "resolve the real broker's jars (Maven) and exit"},
					&cli.IntFlag{Name: "brokers", Value: 1, Usage: "number of brokers (real: combined broker+controller nodes)"},
					&cli.StringSliceFlag{Name: "topic", Usage: "topic to create (repeatable)"},
					&cli.IntFlag{Name: "partitions", Value: 6, Usage: "partitions of each --topic"},
					&cli.StringSliceFlag{Name: "set", Usage: "real broker: server property `NAME=VALUE` (repeatable), e.g. log.retention.check.interval.ms=1000"},
				},
				Action: devKafka,
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

// devBrokers is what `ingest dev kafka` needs of either cluster.
type devBrokers interface {
	Bootstrap() string
	createTopic(name string, partitions int) error
	down() error
	up() error
	Close()
}

func devKafka(c *cli.Context) error {
	if c.Bool("fetch") {
		ctx, cancel := context.WithTimeout(c.Context, 10*time.Minute)
		defer cancel()
		cp, err := kafkaserver.Classpath(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, cp)
		return nil
	}
	if c.Int("brokers") < 1 || c.Int("partitions") < 1 {
		return usagef("--brokers and --partitions must be at least 1")
	}
	var kc devBrokers
	if c.Bool("mock") {
		mc, err := mockkafka.New(c.Int("brokers"))
		if err != nil {
			return err
		}
		kc = devMock{mc}
	} else {
		props := map[string]string{}
		for _, kv := range c.StringSlice("set") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usagef("--set %q: want NAME=VALUE", kv)
			}
			props[k] = v
		}
		ctx, cancel := context.WithTimeout(c.Context, 3*time.Minute)
		rc, err := kafkaserver.Start(ctx, kafkaserver.Options{Nodes: c.Int("brokers"), Props: props})
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "ingest dev kafka: real broker(s) in %s\n", rc.Dir())
		kc = devReal{rc}
	}
	defer kc.Close()
	for _, t := range c.StringSlice("topic") {
		if err := kc.createTopic(t, c.Int("partitions")); err != nil {
			return err
		}
	}
	fmt.Fprintln(c.App.Writer, kc.Bootstrap())
	usr := make(chan os.Signal, 2)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(usr)
	go func() { // lives as long as the command, which exits after waitSignal
		for sig := range usr {
			var err error
			state := "down"
			if sig == syscall.SIGUSR1 {
				err = kc.down()
			} else {
				err, state = kc.up(), "up"
			}
			fmt.Fprintf(c.App.ErrWriter, "ingest dev kafka: %v: all brokers %s (err %v)\n", sig, state, err)
		}
	}()
	waitSignal()
	return nil
}

type devMock struct{ *mockkafka.Cluster }

func (m devMock) createTopic(name string, partitions int) error {
	return m.CreateTopic(name, partitions)
}
func (m devMock) down() error { return m.BrokerDown(-1) }
func (m devMock) up() error   { return m.BrokerUp(-1) }

type devReal struct{ *kafkaserver.Cluster }

func (r devReal) createTopic(name string, partitions int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return r.CreateTopic(ctx, name, kafkaserver.TopicSpec{Partitions: partitions})
}

func (r devReal) down() error {
	var errs []error
	for _, id := range r.IDs() {
		if r.Running(id) {
			errs = append(errs, r.Kill(id))
		}
	}
	return errors.Join(errs...)
}

func (r devReal) up() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	for _, id := range r.IDs() {
		if !r.Running(id) {
			errs = append(errs, r.Restart(ctx, id))
		}
	}
	return errors.Join(errs...)
}
