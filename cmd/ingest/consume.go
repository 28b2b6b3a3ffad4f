package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/consume"
	"github.com/urfave/cli/v2"
)

func consumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "consume",
		Usage: "load PostgreSQL from the tables' Kafka topics, exactly once, in a consumer group",
		Description: `Joins a Kafka consumer group (--group or INGEST_CONSUME_GROUP, else the
config's consume.group, else ingest-<database of db.url>),
subscribes to the topics of the configured tables (--tables limits them),
decodes each message value with the same schema code as "ingest run" and
loads it into the same tables through the same PostgreSQL sink (COPY,
ON CONFLICT (id) for tables with an id, bad rows dead-lettered).

Exactly once, with or without an id column: each batch's rows and its
partition's next offset commit in one PostgreSQL transaction (checkpoint
rows "consume:<group>", "<topic>/<partition>" in ingest_checkpoints), and
a partition assigned to this process starts at that offset, never at
Kafka's committed offset, which follows it only for lag tools. Run as
many processes in one group as the topics have partitions; a rebalance
(cooperative-sticky) moves only the partitions that must move.

Messages that do not decode (not JSON, unknown table, wrong types) and
rows PostgreSQL refuses go to <topic>.dlq (--dead-letter-topic; headers
ingest.dlq.reason, .detail, .topic, .partition, .offset) or to
--dead-letter-file, and are durable before the offset moves past them.

--since replays from a point in time: a partition without a checkpoint
(a new group) starts at the first message at or after it (offsets for
times). With --reset every partition does, after the group's checkpoints
are rewritten; stop the group's other consumers first, and note that a
table without an id column gets the replayed rows again.

Examples:
  ingest consume --config ingest.yaml
  ingest consume --config ingest.yaml --group ingest-replica --tables raw_item
  ingest consume --config ingest.yaml --group replay-1 --since 2026-12-01T00:00:00Z
  ingest consume --config ingest.yaml --reset --since -24h

Metrics on metrics.listen: ingest_consume_* (records consumed and
committed per table, batch seconds, lag per partition in messages and
seconds, rebalances, dead letters), /healthz and /readyz.
SIGTERM/SIGINT let the batches in flight commit, then leave the group.`,
		Flags: configFlags(
			&cli.StringFlag{Name: "group", Usage: "consumer group id (default: consume.group of the config, else ingest-<database name of db.url>)", EnvVars: []string{"INGEST_CONSUME_GROUP"}},
			&cli.StringFlag{Name: "tables", Usage: "comma-separated tables to consume (default: every configured table)"},
			&cli.StringFlag{Name: "since", Usage: "start partitions without a checkpoint at this time (RFC 3339, YYYY-MM-DD, epoch seconds or ms, or -DURATION)"},
			&cli.BoolFlag{Name: "reset", Usage: "rewrite the group's checkpoints to --since (or the beginning) before starting"},
			&cli.StringFlag{Name: "dead-letter-topic", Usage: "topic for bad messages (default <topic>.dlq per source topic)"},
			&cli.StringFlag{Name: "dead-letter-file", Usage: "write bad messages to this file (JSON lines) instead of a topic"},
			&cli.IntFlag{Name: "max-in-flight", Value: consume.DefaultMaxInFlight, Usage: "batches per partition handed to PostgreSQL before the partition pauses"},
			&cli.StringSliceFlag{Name: "consumer-property", Usage: "librdkafka consumer property KEY=VALUE, repeatable (e.g. session.timeout.ms=10000)"},
			&cli.IntFlag{Name: "db-pool", Value: 4, Usage: "PostgreSQL connections (partitions loading at once)"},
			&cli.BoolFlag{Name: "status", Usage: "print the group's position per partition (checkpoint in PostgreSQL, Kafka's committed offset, end, lag) and exit"},
			&cli.BoolFlag{Name: "json", Usage: "with --status: print JSON"},
			debugFlag(),
		),
		Action: withConfig(func(c *cli.Context, cfg *config.Config) error {
			o := consume.Options{
				Group: c.String("group"), Reset: c.Bool("reset"),
				DeadLetterTopic: c.String("dead-letter-topic"), DeadLetterFile: c.String("dead-letter-file"),
				MaxInFlight: c.Int("max-in-flight"), PoolSize: int32(c.Int("db-pool")),
				Logger: commandLogger(c, slog.LevelInfo),
			}
			if c.Int("max-in-flight") < 1 || c.Int("db-pool") < 1 {
				return usagef("--max-in-flight and --db-pool must be at least 1")
			}
			for _, kv := range c.StringSlice("consumer-property") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--consumer-property: want KEY=VALUE, got %q", kv)
				}
				if o.Properties == nil {
					o.Properties = map[string]string{}
				}
				o.Properties[k] = v
			}
			for _, t := range strings.Split(c.String("tables"), ",") {
				if t = strings.TrimSpace(t); t != "" {
					o.Tables = append(o.Tables, t)
				}
			}
			w, err := windowFlags(c)
			if err != nil {
				return err
			}
			o.Since = w.Since
			ctx, stop := signalContext()
			defer stop()
			if c.Bool("status") {
				return consumeStatus(ctx, c, cfg, o)
			}
			if err := consume.Run(ctx, cfg, o); err != nil {
				return usageIf[*consume.ArgError](err)
			}
			o.Logger.Info("stopped: batches committed, left the group")
			return nil
		}),
	}
}

// consumeStatus is `ingest consume --status`.
func consumeStatus(ctx context.Context, c *cli.Context, cfg *config.Config, o consume.Options) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sts, err := consume.Status(ctx, cfg, o)
	if err != nil {
		return usageIf[*consume.ArgError](err)
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, sts)
	}
	group, _ := consume.GroupOf(cfg, o.Group) // Status resolved it already
	return consume.WriteStatus(c.App.Writer, group, sts)
}
