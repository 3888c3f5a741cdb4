package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Options adjust Run. The zero value runs the demo silently.
type Options struct {
	// Flags override configuration keys of both relays, as in
	// config.Options (log.level, log.format).
	Flags map[string]*pflag.Flag
	// Logger makes the logger of the relays and endpoints from the
	// effective log configuration (warn level unless a flag says
	// otherwise); nil discards their logs.
	Logger func(config.Log) *slog.Logger
	// Progress, if not nil, receives a human-readable line per step as it
	// ends, and the outcome.
	Progress io.Writer
	// StepTimeout bounds each step; zero means 5s.
	StepTimeout time.Duration
}

func (o *Options) logger(c config.Log) *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger(c)
}

// Run starts two relays and their internal servers on 127.0.0.1, sends
// stanzas across them, shuts everything down and reports each step. It
// returns an error only when the demo could not be set up (config.Errors
// for a bad flag value); a step that fails is in the Report. Cancelling ctx
// cuts the remaining steps short; shutdown still happens.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = stepTimeout
	}
	began := time.Now()
	w, err := start(opts)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, s := range w.sites() {
		rep.Relays = append(rep.Relays, RelayCounts{Name: "relay " + s.name, Domain: s.domain,
			Federation: s.federation, Internal: s.internal, Endpoint: s.cfg.Domains[0].Route})
	}
	p := &printer{w: opts.Progress}
	p.header(rep, time.Since(began))
	sc := &scenario{w: w, rep: rep, p: p, timeout: opts.StepTimeout}
	sc.run(ctx)

	// Shutdown has its own time: it must happen even if ctx is done.
	stopCtx, cancel := context.WithTimeout(context.Background(), 2*opts.StepTimeout)
	defer cancel()
	sc.step("shutdown", "relays, endpoints and nameserver stop cleanly", func(context.Context) (string, error) {
		if err := w.stop(stopCtx); err != nil {
			return "", err
		}
		return "both relays (system-shutdown to their peers), both endpoints and the nameserver stopped in time", nil
	})
	for i, s := range w.sites() {
		rep.Relays[i].count(s.stats)
	}
	rep.Elapsed = ms(time.Since(began))
	rep.finish()
	p.footer(rep)
	return rep, nil
}

// scenario is the sequence of steps Run reports.
type scenario struct {
	w       *world
	rep     *Report
	p       *printer
	timeout time.Duration
}

// step runs fn with the step timeout and records its outcome.
func (sc *scenario) step(name, what string, fn func(ctx context.Context) (detail string, err error)) {
	ctx, cancel := context.WithTimeout(context.Background(), sc.timeout)
	defer cancel()
	start := time.Now()
	detail, err := fn(ctx)
	st := Step{Name: name, What: what, Status: StatusOK, Latency: ms(time.Since(start)), Detail: detail}
	if err != nil {
		st.Status, st.Error = StatusFailed, err.Error()
	}
	sc.rep.Steps = append(sc.rep.Steps, st)
	sc.p.step(st)
}

// run is the demo proper: the relay's main job, end to end.
func (sc *scenario) run(ctx context.Context) {
	a, b := sc.w.a.endpoint, sc.w.b.endpoint
	const (
		alice  = "alice@a.example"
		bob    = "bob@b.example"
		nobody = "someone@nowhere.invalid"
	)
	aliceRes, bobRes := alice+"/laptop", bob+"/phone"
	steps := []struct {
		name, what string
		fn         func(ctx context.Context) (string, error)
	}{
		{"connect a.example", "a.example's server opens a stream to relay A's internal face",
			func(ctx context.Context) (string, error) {
				if _, err := a.Connect(ctx, "a.example", "b.example"); err != nil {
					return "", err
				}
				return "a.example→b.example: STARTTLS, db:result; relay A checked the key with a.example's server: valid", nil
			}},
		{"message", alice + " → " + bob,
			func(ctx context.Context) (string, error) {
				return deliver(ctx, a, b, peer.Message(aliceRes, bob, "msg-1", "Hello Bob! This crossed two relays."))
			}},
		{"connect b.example", "b.example's server opens a stream to relay B's internal face",
			func(ctx context.Context) (string, error) {
				if _, err := b.Connect(ctx, "b.example", "a.example"); err != nil {
					return "", err
				}
				return "b.example→a.example: STARTTLS, db:result; relay B checked the key with b.example's server: valid", nil
			}},
		{"reply", bob + " → " + alice,
			func(ctx context.Context) (string, error) {
				return deliver(ctx, b, a, peer.Message(bobRes, aliceRes, "msg-2", "Hi Alice, loud and clear."))
			}},
		{"subscription a→b", alice + " subscribes to " + bob + "'s presence",
			func(ctx context.Context) (string, error) {
				return subscribe(ctx, a, b, alice, bob, "sub-ab")
			}},
		{"subscription b→a", bob + " subscribes to " + alice + "'s presence",
			func(ctx context.Context) (string, error) {
				return subscribe(ctx, b, a, bob, alice, "sub-ba")
			}},
		{"ping", alice + " pings " + bobRes + " (XEP-0199)",
			func(ctx context.Context) (string, error) {
				if err := a.Send(ctx, peer.Ping(aliceRes, bobRes, "ping-1")); err != nil {
					return "", err
				}
				got, err := a.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "ping-1" && st.Kind == wire.IQ })
				if err != nil {
					return "", fmt.Errorf("no answer: %w", err)
				}
				if got.Type != "result" {
					_, cond, _ := got.StanzaError()
					return "", fmt.Errorf("answered type=%q %s", got.Type, cond)
				}
				return "b.example's server answered with an iq result, back through both relays", nil
			}},
		{"bounce", alice + " → " + nobody + ": the relay answers remote-server-not-found",
			func(ctx context.Context) (string, error) {
				if err := a.Send(ctx, peer.Message(aliceRes, nobody, "msg-3", "Anyone there?")); err != nil {
					return "", err
				}
				got, err := a.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "msg-3" })
				if err != nil {
					return "", fmt.Errorf("no error stanza: %w", err)
				}
				typ, cond, text := got.StanzaError()
				if got.Type != "error" || cond != "remote-server-not-found" {
					return "", fmt.Errorf("got type=%q condition %q (%s), want an error remote-server-not-found", got.Type, cond, text)
				}
				detail := fmt.Sprintf("error type=%s %s from %s", typ, cond, got.From)
				if text != "" {
					detail += ": " + text
				}
				return detail, nil
			}},
		{"counters", "every stanza each relay accepted is delivered, bounced or dropped",
			func(ctx context.Context) (string, error) {
				return sc.balanced(ctx)
			}},
	}
	for _, s := range steps {
		fn := s.fn
		if ctx.Err() != nil {
			fn = func(context.Context) (string, error) { return "", fmt.Errorf("not run: %w", context.Cause(ctx)) }
		}
		sc.step(s.name, s.what, func(stepCtx context.Context) (string, error) {
			stepCtx, stop := mergeCancel(stepCtx, ctx)
			defer stop()
			return fn(stepCtx)
		})
	}
}

// deliver sends st from one endpoint and waits for it at the other.
func deliver(ctx context.Context, from, to *peer.Server, st peer.Stanza) (string, error) {
	if err := from.Send(ctx, st); err != nil {
		return "", err
	}
	got, err := to.Wait(ctx, func(r peer.Stanza) bool { return r.ID == st.ID && r.From == st.From })
	if err != nil {
		return "", fmt.Errorf("%s did not receive it: %w", peer.DomainOf(st.To), err)
	}
	if got.Body() != st.Body() {
		return "", fmt.Errorf("%s received body %q, want %q", peer.DomainOf(st.To), got.Body(), st.Body())
	}
	how := "with the same body"
	if got.Raw == st.Raw {
		how = "byte for byte"
	}
	return fmt.Sprintf("%s received %q %s", peer.DomainOf(st.To), st.Body(), how), nil
}

// subscribe sends a subscription request from user at one endpoint to
// contact at the other, and the contact's approval back (RFC 6121 §3.1).
func subscribe(ctx context.Context, from, to *peer.Server, user, contact, id string) (string, error) {
	if err := from.Send(ctx, peer.Presence(user, contact, id, "subscribe")); err != nil {
		return "", err
	}
	match := func(typ string) func(peer.Stanza) bool {
		return func(st peer.Stanza) bool { return st.Kind == wire.Presence && st.ID == id && st.Type == typ }
	}
	if _, err := to.Wait(ctx, match("subscribe")); err != nil {
		return "", fmt.Errorf("%s did not receive the subscribe: %w", contact, err)
	}
	if err := to.Send(ctx, peer.Presence(contact, user, id, "subscribed")); err != nil {
		return "", err
	}
	if _, err := from.Wait(ctx, match("subscribed")); err != nil {
		return "", fmt.Errorf("%s did not receive the approval: %w", user, err)
	}
	return "subscribe reached " + contact + ", subscribed came back to " + user, nil
}

// balanced waits until both relays' counters balance (routing.Stats:
// accepted = delivered + bounced + dropped, once their links settle).
func (sc *scenario) balanced(ctx context.Context) (string, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var lines []string
		ok := true
		for _, s := range sc.w.sites() {
			var c RelayCounts
			c.count(s.stats)
			ok = ok && c.Balanced
			lines = append(lines, fmt.Sprintf("relay %s: accepted %d = delivered %d + bounced %d + dropped %d",
				s.name, c.Accepted, c.Delivered, c.Bounced, c.Dropped))
		}
		detail := strings.Join(lines, "; ")
		if ok {
			return detail, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("counters do not balance: %s", detail)
		case <-tick.C:
		}
	}
}

// mergeCancel returns a context that ends with either parent.
func mergeCancel(ctx, other context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(other, func() { cancel(context.Cause(other)) })
	return ctx, func() {
		stop()
		cancel(errors.New("step ended"))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
