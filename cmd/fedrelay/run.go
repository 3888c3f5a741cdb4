package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
)

func newRunCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the relay",
		Long: "run starts the relay: the federation face, the internal face, the internal DNS responder\n" +
			"and the admin endpoint as configured. SIGHUP reloads domains, policy and breaker settings\n" +
			"without dropping streams that are still allowed; SIGINT or SIGTERM stop it gracefully.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			relay, err := app.New(cfg, log, app.Options{})
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			if err := relay.Start(); err != nil {
				relay.Shutdown(context.Background())
				return &exitError{code: exitFailure, err: err}
			}
			log.Info("fedrelay running", "version", versionString(), "config", cfg.Source, "domains", len(cfg.Domains))
			return serveSignals(relay, &cf, log)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

// serveSignals runs until a stop signal or a listener failure; SIGHUP
// reloads the configuration file.
func serveSignals(relay *app.Relay, cf *configFlags, log *slog.Logger) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var failure error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping", "signal", sig.String())
				break loop
			}
			cfg, err := cf.load()
			if err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
				continue
			}
			if err := relay.Reload(cfg); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
			}
		case err := <-relay.Err():
			log.Error("listener failed; stopping", "err", err)
			failure = &exitError{code: exitFailure, err: err}
			break loop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := relay.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish in time", "err", err)
	}
	return failure
}

// newLogger builds the slog handler the configuration asks for.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
