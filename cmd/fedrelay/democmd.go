package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/demo"
	"github.com/fedrelay/fedrelay/config"
)

func newDemoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Federate two relays and their internal servers on loopback, and report each step",
		Long: "demo runs the relay's main job end to end, in this process, on 127.0.0.1 with ports the\n" +
			"system chooses: two relays from an embedded configuration (relay A fronts a.example, relay B\n" +
			"fronts b.example), each with a small internal S2S server behind it (STARTTLS, dialback).\n" +
			"alice@a.example messages bob@b.example and bob answers, presence subscriptions cross both\n" +
			"ways, a ping gets its result, and a message to nowhere.invalid comes back as\n" +
			"remote-server-not-found. Each step is printed as it ends, then a JSON summary with both\n" +
			"relays' counters. Nothing is written outside a temporary directory, and no query leaves the\n" +
			"machine. Exit status 0 if every step passed, 1 otherwise.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			opts := demo.Options{
				Flags:  map[string]*pflag.Flag{"log.level": fs.Lookup("log-level"), "log.format": fs.Lookup("log-format")},
				Logger: func(c config.Log) *slog.Logger { return newLogger(cmd.ErrOrStderr(), c) },
			}
			if !asJSON {
				opts.Progress = cmd.OutOrStdout()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := demo.Run(ctx, opts)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			if err := enc.Encode(rep); err != nil {
				return err
			}
			if !rep.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("demo: %d of %d steps failed", rep.Failed, len(rep.Steps))}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print only the JSON summary")
	fs.String("log-level", "", "minimum level of the relays' logs on stderr: debug, info, warn, error (default warn)")
	fs.String("log-format", "", "format of the relays' logs: text or json (default text)")
	return cmd
}
