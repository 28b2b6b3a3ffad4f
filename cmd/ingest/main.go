// Command ingest tails offline files and dual-writes them to Kafka and
// PostgreSQL. This file only wires flags to the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// Exit codes (contract): 0 success, 1 runtime failure, 2 usage or config.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError makes main exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

var version = "dev"

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := newApp()
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "ingest:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitRuntime
}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "ingest",
		Usage: "tail offline files and dual-write them to Kafka and PostgreSQL",
		Description: `ingest moves an API's offline files to Kafka, account by account.

The API appends every payload as a JSON line through the rotatefile writer;
"ingest run" tails those files and writes each record to PostgreSQL and/or
Kafka according to the routes in the config file. Start with "ingest demo",
which runs the whole pipeline on embedded defaults.`,
		HideHelpCommand: true,
		Commands: []*cli.Command{
			runCommand(),
			genCommand(),
			statusCommand(),
			doctorCommand(),
			migrateCommand(),
			schemaCommand(),
			demoCommand(),
			backfillCommand(),
			verifyCommand(),
			consumeCommand(),
			devCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, "ingest", buildVersion())
					return nil
				},
			},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "ingest: unknown command %q; see ingest --help\n", name)
			os.Exit(exitUsage)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
	}
	// urfave/cli hands a command's flag errors (unknown flag, bad value)
	// to that command's OnUsageError only, not the App's: without this
	// they exited 1 instead of 2.
	var onUsage func(cmds []*cli.Command)
	onUsage = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if c.OnUsageError == nil {
				c.OnUsageError = app.OnUsageError
			}
			onUsage(c.Subcommands)
		}
	}
	onUsage(app.Commands)
	return app
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return version
}

// debugFlag turns on debug logging in a command that logs.
func debugFlag() cli.Flag { return &cli.BoolFlag{Name: "debug", Usage: "debug logging"} }

// commandLogger logs at level, or at debug with --debug.
func commandLogger(c *cli.Context, level slog.Level) *slog.Logger {
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	return newLogger(level)
}

// newLogger logs text on a terminal and JSON otherwise (for collectors).
// Durations are written as Go duration strings ("1.5s") in both: slog's
// JSON handler would print nanoseconds, which no reader takes for seconds.
func newLogger(level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// signalContext ends on SIGTERM or SIGINT; a second signal at least a second
// later exits at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		// A signal sent to the process and to its group (as timeout(1)
		// does) arrives twice at once: only a deliberate second one, a
		// moment later, skips the graceful shutdown.
		first := time.Now()
		for range ch {
			if time.Since(first) >= time.Second {
				fmt.Fprintln(os.Stderr, "ingest: second signal, exiting without waiting")
				os.Exit(exitRuntime)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
