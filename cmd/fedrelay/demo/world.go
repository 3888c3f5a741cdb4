package demo

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/peer"
)

// configs holds one configuration per relay, named after the domain it
// fronts.
//
//go:embed config/*.yaml
var configs embed.FS

// site is one organisation of the demo: a relay fronting domain, and the
// endpoint, a peer.Server that plays the domain's internal server behind it.
type site struct {
	name     string // "A"
	domain   string // "a.example"
	relay    *app.Relay
	stats    *routing.Stats // the relay's counters, still there once it stopped
	cfg      *config.Config
	endpoint *peer.Server
	listener net.Listener // the endpoint's, until Serve takes it
	log      *slog.Logger

	federation, internal string // the relay's listening addresses
}

// world is everything Run starts: the nameserver, two sites, and the
// goroutines serving the endpoints.
type world struct {
	dir  string // temporary directory of the configuration files
	ns   *nameserver
	a, b *site
	wg   sync.WaitGroup
}

// startAttempts bounds the attempts at starting the relays: their
// federation ports are picked before they listen (each relay's
// configuration names the other's), and another program may take one in
// between.
const startAttempts = 3

// start builds and starts the world. On error everything started is
// stopped again.
func start(opts Options) (w *world, err error) {
	w = &world{
		a: &site{name: "A", domain: "a.example"},
		b: &site{name: "B", domain: "b.example"},
	}
	defer func() {
		if err != nil {
			w.stop(context.Background())
			w = nil
		}
	}()
	if w.dir, err = os.MkdirTemp("", "fedrelay-demo-"); err != nil {
		return w, fmt.Errorf("demo: %w", err)
	}
	if w.ns, err = startNameserver(); err != nil {
		return w, err
	}
	for _, s := range w.sites() {
		if s.listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return w, fmt.Errorf("demo endpoint %s: %w", s.domain, err)
		}
	}
	for attempt := 1; ; attempt++ {
		err = w.startRelays(opts)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || attempt == startAttempts {
			break
		}
		w.stopRelays(context.Background())
	}
	if err != nil {
		return w, err
	}
	for _, s := range w.sites() {
		// The relay's internal face stands for every remote domain: it
		// is where the endpoint opens its streams, and the Authoritative
		// server it asks about every other domain's keys.
		internal := s.internal
		s.endpoint = &peer.Server{Domains: []string{s.domain}, Timeout: opts.StepTimeout,
			Authoritative: func(string) string { return internal },
			Log:           opts.logger(s.cfg.Log).With("endpoint", s.domain)}
		l := s.listener
		s.listener = nil
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := s.endpoint.Serve(l); err != nil && !errors.Is(err, peer.ErrServerClosed) {
				s.log.Error("demo endpoint stopped", "endpoint", s.domain, "err", err)
			}
		}()
	}
	return w, nil
}

func (w *world) sites() []*site { return []*site{w.a, w.b} }

// startRelays picks the federation addresses, writes and loads both
// configurations, and starts both relays.
func (w *world) startRelays(opts Options) error {
	for _, s := range w.sites() {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		s.federation = addr
	}
	var b [24]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	for _, pair := range [][2]*site{{w.a, w.b}, {w.b, w.a}} {
		s, peer := pair[0], pair[1]
		vars := map[string]string{
			"FEDERATION": s.federation,
			"ROUTE":      s.listener.Addr().String(),
			"PEER":       peer.federation,
			"NAMESERVER": w.ns.Addr,
			// Each relay has a secret of its own; the two relays need
			// not share one, as they are different organisations.
			"SECRET": secret + s.name,
		}
		cfg, err := w.loadConfig(s.domain, vars, opts.Flags)
		if err != nil {
			return err
		}
		s.cfg = cfg
		s.log = opts.logger(cfg.Log).With("relay", s.name)
		r, err := app.New(cfg, s.log, app.Options{})
		if err != nil {
			return fmt.Errorf("demo relay %s: %w", s.name, err)
		}
		s.relay, s.stats = r, r.Router.Stats()
		if err := r.Start(); err != nil {
			return fmt.Errorf("demo relay %s: %w", s.name, err)
		}
		s.federation = r.Addrs(policy.Federation, false)[0]
		s.internal = r.Addrs(policy.Internal, false)[0]
	}
	return nil
}

// loadConfig fills in the embedded configuration of domain, writes it to
// the world's directory and loads it as fedrelay run would, with the flags
// but without the process environment: the demo is the same everywhere.
func (w *world) loadConfig(domain string, vars map[string]string, flags map[string]*pflag.Flag) (*config.Config, error) {
	tmpl, err := configs.ReadFile("config/" + domain + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("demo: embedded configuration: %w", err)
	}
	var missing []string
	text := os.Expand(string(tmpl), func(name string) string {
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("demo: embedded configuration of %s: nothing to fill in for %v", domain, missing)
	}
	path := filepath.Join(w.dir, domain+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return config.Load(config.Options{Path: path, Flags: flags, Getenv: func(string) (string, bool) { return "", false }})
}

// freeAddr returns a 127.0.0.1 address with a port the system just handed
// out and took back.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// stop shuts everything down: the relays first (they close their streams
// with the endpoints and each other gracefully), then the endpoints, then
// the nameserver; and removes the temporary directory. It returns what
// did not stop cleanly within ctx.
func (w *world) stop(ctx context.Context) error {
	errs := []error{w.stopRelays(ctx)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range w.sites() {
		if s.listener != nil {
			s.listener.Close()
		}
		if s.endpoint == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.endpoint.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("endpoint %s: %w", s.domain, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.wg.Wait()
	if w.ns != nil {
		if err := w.ns.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("nameserver: %w", err))
		}
	}
	if w.dir != "" {
		if err := os.RemoveAll(w.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopRelays shuts both relays down at once and reports listeners that
// failed while they ran.
func (w *world) stopRelays(ctx context.Context) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range w.sites() {
		r := s.relay
		if r == nil {
			continue
		}
		s.relay = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Shutdown(ctx)
			for drained := false; !drained; {
				select {
				case e := <-r.Err():
					err = errors.Join(err, e)
				default:
					drained = true
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("relay %s: %w", s.name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stepTimeout is Options.StepTimeout's default.
const stepTimeout = 5 * time.Second
