package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// breakerOpen is in the text of the relay's bounces made while the
// domain's circuit breaker is open (routing.OpenError).
var breakerOpen = []byte("circuit breaker open")

// Kinds of dead domain.
var deadKinds = []string{"nxdomain", "refused", "silent"}

// dead: one healthy pair carries messages at a fifth of the relay's maximum rate
// while the inside server also sends, once a second (spread evenly over the
// second), a message to each of many dead domains: a third do not exist (NXDOMAIN), a third have an SRV
// target that resets every connection at once (counted), a third get no
// DNS answer at all (the relay's query times out). Measured: the healthy
// pair's rate and p99 against a baseline without the dead traffic; how fast
// the first bounce of a dead domain comes back and how fast the later ones
// do (the breaker is open by then); connection attempts and DNS questions
// per dead domain per minute; goroutines and memory afterwards, and how
// long the relay takes to come back to its baseline.
func dead(ctx context.Context, e *env, res *Result) error {
	n, phase, settle := 1000, 20*time.Second, 60*time.Second
	if e.opts.Quick {
		n, phase, settle = 150, 3*time.Second, 5*time.Second
	}
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		figs, err := deadOnce(ctx, e, res, rep, n, phase, settle)
		if err != nil {
			return err
		}
		cs.add(fmt.Sprintf("%d dead domains", n), figs)
		e.opts.logf("dead: healthy p99 ×%.2f, first bounce p99 %.1f ms, open-breaker bounce p99 %.2f ms, goroutines %.0f → %.0f → %.0f after %.0f s",
			figs["healthy_p99_ratio"], figs["first_bounce_p99_ms"], figs["open_bounce_p99_ms"], figs["goroutines_baseline"],
			figs["goroutines_after"], figs["goroutines_at_end"], figs["seconds_to_baseline"])
	}
	res.Cases = cs.cases()
	name := fmt.Sprintf("%d dead domains", n)
	res.target("bounce latency with the breaker open, p99", "≤ 1 ms", res.Median(name, "open_bounce_p99_ms"), "ms", 1, true)
	res.target("healthy pair's p99 beside the dead domains / baseline p99", "≤ 1.10×", res.Median(name, "healthy_p99_ratio"), "×", 1.10, true)
	res.target(fmt.Sprintf("goroutines back to baseline within %.0f s of the dead traffic's end (1 = yes)", settle.Seconds()), "1", res.Median(name, "back_to_baseline"), "", 1, false)
	return nil
}

func deadOnce(ctx context.Context, e *env, res *Result, rep, n int, phase, settle time.Duration) (map[string]float64, error) {
	// The refusing SRV target: accepts and resets at once, counting.
	rl, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		return nil, err
	}
	defer rl.Close()
	var connects atomic.Int64
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			connects.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, as near to a refusal as an accepting socket gets
			}
			c.Close()
		}
	}()
	w, err := e.world(ctx, fmt.Sprintf("relay-%d", rep), nil)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	m00, _ := w.Relay.Metrics()
	defer finish(res, w, m00)
	refusing := rl.Addr().String()
	for i := 0; i < n; i++ {
		d := remote("dead-", i)
		switch deadKinds[i%3] {
		case "nxdomain":
			w.DNS.Set(d, NXDomain, "")
		case "refused":
			w.DNS.Set(d, Serve, refusing)
		case "silent":
			w.DNS.Set(d, Silent, "")
		}
	}
	healthy, err := w.OutboundStream(ctx, remote("healthy", 0))
	if err != nil {
		return nil, err
	}
	defer healthy.Close()
	deadStreams, err := authorisePairs(ctx, w, "dead-", n)
	if err != nil {
		return nil, err
	}
	defer closeAll(deadStreams)

	from, to := "alice@"+InternalDomain, "user@"+remote("healthy", 0)
	figs, err := drive(ctx, w, []*peer.Outbound{healthy}, func(int) (string, string) { return from, to }, &w.Out.Stanzas, time.Second)
	if err != nil {
		return nil, err
	}
	// A fifth of the one-stream maximum: at half of it the bench's own
	// paced sender and receiver saturate a 2-core machine, and the
	// baseline p99 is hundreds of milliseconds before any dead domain.
	rate := figs["stanzas_per_s"] / 5
	m0, _ := w.Relay.Metrics()
	out := map[string]float64{"healthy_rate_per_s": rate}

	// Baseline.
	base, sentBase, err := paced(ctx, healthy, w.Out, from, to, rate, phase)
	if err != nil {
		return nil, err
	}
	out["baseline_p99_ms"] = base.Quantile(0.99)
	out["baseline_lost"] = float64(sentBase - base.Len())

	// With the dead domains.
	var (
		mu                  sync.Mutex
		first, open, queued Samples
		seen                = make([]bool, n)
	)
	first.Reserve(n)
	open.Reserve(n * int(phase.Seconds()+1)) // one message per dead domain per second
	w.In.OnError(func(id, raw []byte, lat time.Duration) {
		// id: t<nanos>-d<i>-<seq>
		k := bytes.Index(id, []byte("-d"))
		if k < 0 {
			return
		}
		rest := id[k+2:]
		j := bytes.IndexByte(rest, '-')
		if j < 0 {
			return
		}
		i, err := strconv.Atoi(string(rest[:j]))
		if err != nil || i < 0 || i >= n {
			return
		}
		mu.Lock()
		switch {
		case bytes.Contains(raw, breakerOpen):
			open.Add(lat)
		case !seen[i]:
			seen[i] = true
			first.Add(lat)
		default:
			// Sent while the domain's failing link was being set up,
			// bounced with it.
			queued.Add(lat)
		}
		mu.Unlock()
	})
	q0 := make([]int64, n)
	for i := range q0 {
		q0[i] = w.DNS.Queries(remote("dead-", i))
	}
	c0 := connects.Load()
	errs0 := w.In.Errors.Load()
	stopDead := make(chan struct{})
	deadDone := make(chan error, 1)
	go func() {
		// One message to each dead domain per second, spread evenly over
		// the second (not one burst of n, whose last bounces would measure
		// how long the relay takes to work through the burst, not how long
		// one bounce takes).
		tick := time.NewTicker(time.Second / time.Duration(n))
		defer tick.Stop()
		var b []byte
		for seq := 0; ; seq++ {
			for i := 0; i < n; i++ {
				b = appendMessage(b[:0], from, "user@"+remote("dead-", i), stampID(nil, time.Now(), "d"+strconv.Itoa(i)+"-"+strconv.Itoa(seq)))
				if _, err := deadStreams[i/pairsPerStream].Write(b); err != nil {
					deadDone <- err
					return
				}
				select {
				case <-stopDead:
					deadDone <- nil
					return
				case <-tick.C:
				}
			}
		}
	}()
	t0 := time.Now()
	during, sent, err := paced(ctx, healthy, w.Out, from, to, rate, phase)
	close(stopDead)
	if derr := <-deadDone; err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	minutes := time.Since(t0).Minutes()
	// Let the last round of bounces come back.
	waitFor(ctx, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first.Len() >= n
	})
	w.In.OnError(nil)
	out["during_p99_ms"] = during.Quantile(0.99)
	out["healthy_p99_ratio"] = out["during_p99_ms"] / out["baseline_p99_ms"]
	out["healthy_lost"] = float64(sent - during.Len())
	out["healthy_achieved_per_s"] = float64(sent) / phase.Seconds()
	mu.Lock()
	out["first_bounce_p50_ms"], out["first_bounce_p99_ms"] = first.Quantile(0.5), first.Quantile(0.99)
	out["open_bounce_p50_ms"], out["open_bounce_p99_ms"] = open.Quantile(0.5), open.Quantile(0.99)
	out["domains_bounced"] = float64(first.Len())
	out["open_bounces"], out["other_bounces"] = float64(open.Len()), float64(queued.Len())
	mu.Unlock()
	out["bounces"] = float64(w.In.Errors.Load() - errs0)
	var qn, qs int64
	for i := range q0 {
		d := w.DNS.Queries(remote("dead-", i)) - q0[i]
		if deadKinds[i%3] == "nxdomain" {
			qn += d
		} else if deadKinds[i%3] == "silent" {
			qs += d
		}
	}
	third := float64(n) / 3
	out["nxdomain_dns_per_domain_min"] = float64(qn) / third / minutes
	out["silent_dns_per_domain_min"] = float64(qs) / third / minutes
	out["refused_connects_per_domain_min"] = float64(connects.Load()-c0) / third / minutes

	// Afterwards.
	m1, _ := w.Relay.Metrics()
	out["goroutines_baseline"] = m0["go_goroutines"]
	out["goroutines_after"] = m1["go_goroutines"]
	out["heap_mib_baseline"] = m0["go_memstats_heap_inuse_bytes"] / (1 << 20)
	out["heap_mib_after"] = m1["go_memstats_heap_inuse_bytes"] / (1 << 20)
	out["open_fds_after"] = m1["process_open_fds"]
	// Back to baseline: goroutines within 10% (+10) of what they were
	// before the dead domains.
	out["back_to_baseline"], out["seconds_to_baseline"] = 0, settle.Seconds()
	t1 := time.Now()
	for time.Since(t1) < settle && ctx.Err() == nil {
		m, _ := w.Relay.Metrics()
		if m["go_goroutines"] <= m0["go_goroutines"]*1.1+10 {
			out["back_to_baseline"], out["seconds_to_baseline"] = 1, time.Since(t1).Seconds()
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	m2, _ := w.Relay.Metrics()
	out["goroutines_at_end"] = m2["go_goroutines"]
	out["rss_mib_after"] = float64(w.Relay.Proc().RSS) / (1 << 20)
	return out, nil
}

// paced sends stamped messages on s at rate per second for d and returns
// the latencies sink saw and how many it sent.
func paced(ctx context.Context, s *peer.Outbound, sink *Sink, from, to string, rate float64, d time.Duration) (Samples, int, error) {
	sink.Record(true, int(rate*d.Seconds())+1000)
	start := sink.Stanzas.Load()
	t0 := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	var buf, id []byte
	for time.Since(t0) < d {
		<-tick.C
		due := int(time.Since(t0).Seconds() * rate)
		buf = buf[:0]
		id = stampID(id[:0], time.Now(), "h")
		for ; sent < due; sent++ {
			buf = appendMessage(buf, from, to, id)
		}
		if len(buf) > 0 {
			if _, err := s.Write(buf); err != nil {
				tick.Stop()
				sink.Record(false, 0)
				return Samples{}, sent, err
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	tick.Stop()
	waitArrival(ctx, &sink.Stanzas, start+int64(sent), 10*time.Second)
	return sink.Record(false, 0), sent, ctx.Err()
}
