package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
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
			"policy.audit_log (log rotation). SIGINT or SIGTERM stop it gracefully. SIGUSR2 starts\n" +
			"a new process of the executable (a new binary once the file is replaced) that inherits\n" +
			"the listening sockets; once it is ready this one drains and exits, and no port is ever\n" +
			"closed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			upg := newUpgrader(log)
			if upg != nil {
				defer upg.Stop()
			}
			listen, listenPacket := listenFuncs(upg)
			relay, err := app.New(cfg, log, app.Options{Load: cf.load, Version: versionString(),
				Listen: listen, ListenPacket: listenPacket})
			if err != nil {
				var ce config.Errors
				if errors.As(err, &ce) { // a bad internal CA
					return err
				}
				return &exitError{code: exitFailure, err: err}
			}
			if err := relay.Start(); err != nil {
				relay.Shutdown(context.Background())
				return &exitError{code: exitFailure, err: err}
			}
			if upg != nil {
				// The previous process (after SIGUSR2) drains and exits now.
				if err := upg.Ready(); err != nil {
					log.Warn("could not tell the previous process this one is ready", "err", err)
				} else if upg.HasParent() {
					log.Info("took over the listening sockets of the previous process")
				}
			}
			log.Info("fedrelay running", "version", versionString(), "config", cfg.Source, "domains", len(cfg.Domains))
			return serveSignals(relay, &cf, log, upg)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

// serveSignals runs until a stop signal or a listener failure; SIGHUP
// reloads the configuration file.
func serveSignals(relay *app.Relay, cf *configFlags, log *slog.Logger, upg *tableflip.Upgrader) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR2)
	var exit <-chan struct{} // closed once a new process has taken over
	if upg != nil {
		exit = upg.Exit()
	}
	defer signal.Stop(sigs)
	changed, stopWatch := watchFile(cf.path, log)
	defer stopWatch()
	// Ready once the signals are caught: systemd may send SIGHUP at once.
	if _, err := sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())); err != nil {
		log.Warn("could not tell the service manager the relay is ready", "err", err)
	}
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
			switch sig {
			case syscall.SIGHUP:
				reload("SIGHUP")
				continue
			case syscall.SIGUSR2:
				if upg == nil {
					log.Warn("SIGUSR2: binary upgrades are not available in this process")
					continue
				}
				log.Info("SIGUSR2: starting a new process to hand the sockets to")
				if err := upg.Upgrade(); err != nil {
					log.Error("upgrade failed; this process goes on", "err", err)
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			break loop
		case <-exit:
			log.Info("a new process has taken over the sockets; draining and exiting")
			break loop
		case <-changed:
			reload("file changed")
		case err := <-relay.Err():
			log.Error("listener failed; stopping", "err", err)
			failure = &exitError{code: exitFailure, err: err}
			break loop
		}
	}
	sdNotify("STOPPING=1")
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
