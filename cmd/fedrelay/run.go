package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
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
			"and the admin endpoint as configured. SIGHUP, or saving the configuration file, reloads\n" +
			"domains, policy and breaker settings without dropping streams that are still allowed (an\n" +
			"invalid file is refused and the running configuration stays); SIGHUP also reopens\n" +
			"policy.audit_log (log rotation). SIGINT or SIGTERM stop it gracefully.",
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
	changed, stopWatch := watchFile(cf.path, log)
	defer stopWatch()
	reload := func(why string) {
		if why == "SIGHUP" {
			// Log rotation: the audit trail goes on in a new file at its
			// configured path, whatever becomes of the reload.
			if err := relay.ReopenAudit(); err != nil {
				log.Error("audit log not reopened; writing on to the previous file", "err", err)
			}
		}
		cfg, err := cf.load()
		if err != nil {
			relay.ReloadFailed(err)
			log.Error("reload refused; the running configuration stays", "trigger", why, "err", err)
			return
		}
		if err := relay.Reload(cfg); err != nil {
			log.Error("reload refused; the running configuration stays", "trigger", why, "err", err)
		}
	}
	var failure error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping", "signal", sig.String())
				break loop
			}
			reload("SIGHUP")
		case <-changed:
			reload("file changed")
		case err := <-relay.Err():
			log.Error("listener failed; stopping", "err", err)
			failure = &exitError{code: exitFailure, err: err}
			break loop
		}
	}
	// limits.drain_timeout bounds the graceful part; Shutdown then closes
	// what is left, which no peer can hold.
	drain := relay.Config().Limits.DrainTimeout
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	start := time.Now()
	if err := relay.Shutdown(ctx); err != nil {
		log.Warn("graceful stop did not finish within limits.drain_timeout; closed what was left", "drain_timeout", drain,
			"took", time.Since(start).Round(time.Millisecond))
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

// watchFile reports changes of the configuration file on the returned
// channel, debounced (editors write a file in several steps, often by
// renaming a new one over it, so the directory is watched). Without a file,
// or if watching is impossible, the channel never fires: SIGHUP still works.
func watchFile(path string, log *slog.Logger) (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	if path == "" {
		return out, func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(path))
	}
	if err != nil {
		log.Warn("not watching the configuration file; reload with SIGHUP", "err", err)
		if w != nil {
			w.Close()
		}
		return out, func() {}
	}
	abs, _ := filepath.Abs(path)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var debounce <-chan time.Time
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if p, _ := filepath.Abs(ev.Name); p == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					debounce = time.After(300 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("configuration file watch", "err", err)
			case <-debounce:
				debounce = nil
				select {
				case out <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	return out, func() { close(done); w.Close(); wg.Wait() }
}
