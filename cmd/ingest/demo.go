package main

import "github.com/urfave/cli/v2"

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:   "demo",
		Usage:  "run the whole pipeline on embedded defaults (not yet available)",
		Hidden: true,
		Action: func(*cli.Context) error { return usagef("demo is not built yet") },
	}
}
