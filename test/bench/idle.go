package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// idle: the relay's memory per idle authenticated TLS stream. N remote
// domains each open a stream to the federation face and authenticate by
// dialback (the relay verifies each key with the outside server through
// DNS) and falls silent; then N remote domains are reached
// from inside: the inside server authorises the pairs on a few multiplexed
// streams to the internal face (XEP-0220 §4.3), sends one stanza to each,
// and the relay opens N outbound streams. RSS and Go heap are read after
// each step, once the relay has settled (after a GC, from its metrics).
func idle(ctx context.Context, e *env, res *Result) error {
	n := 10_000
	if e.opts.Quick {
		n = 300
	}
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		figs, err := idleOnce(ctx, e, res, rep, n)
		if err != nil {
			return err
		}
		cs.add(fmt.Sprintf("%d inbound + %d outbound", n, n), figs)
		e.opts.logf("idle: %.1f KiB RSS per inbound stream, %.1f KiB per outbound", figs["rss_kib_per_inbound"], figs["rss_kib_per_outbound"])
	}
	res.Cases = cs.cases()
	name := fmt.Sprintf("%d inbound + %d outbound", n, n)
	res.target("RSS per idle authenticated inbound TLS stream", "≤ 20 KiB", res.Median(name, "rss_kib_per_inbound"), "KiB", 20, true)
	res.target("RSS per idle authenticated outbound TLS stream", "≤ 20 KiB", res.Median(name, "rss_kib_per_outbound"), "KiB", 20, true)
	return nil
}

func idleOnce(ctx context.Context, e *env, res *Result, rep, n int) (map[string]float64, error) {
	w, err := e.world(ctx, fmt.Sprintf("relay-%d", rep), nil)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	base, _ := w.Relay.Metrics()
	defer finish(res, w, base)
	settle := func() (rss, heap float64) {
		time.Sleep(time.Second)
		m, _ := w.Relay.Metrics()
		return float64(w.Relay.Proc().RSS), m["go_memstats_heap_inuse_bytes"]
	}
	rss0, heap0 := settle()
	figs := map[string]float64{"baseline_rss_mib": rss0 / (1 << 20)}

	// Inbound.
	t0 := time.Now()
	in := make([]*peer.Outbound, n)
	defer func() {
		for _, s := range in {
			if s != nil {
				s.Close()
			}
		}
	}()
	err = parallel(n, 32, func(i int) error {
		from := remote("idle-in-", i)
		s, err := w.InboundStream(ctx, from)
		if err != nil {
			return err
		}
		in[i] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening inbound streams: %w", err)
	}
	figs["inbound_setup_s"] = time.Since(t0).Seconds()
	rss1, heap1 := settle()
	figs["rss_kib_per_inbound"] = (rss1 - rss0) / float64(n) / 1024
	figs["heap_kib_per_inbound"] = (heap1 - heap0) / float64(n) / 1024

	// Outbound: the inside server authorises n pairs over streams of at
	// most 500 pairs each.
	t0 = time.Now()
	const perStream = pairsPerStream
	outs := make([]*peer.Outbound, (n+perStream-1)/perStream)
	defer func() {
		for _, s := range outs {
			if s != nil {
				s.Close()
			}
		}
	}()
	err = parallel(len(outs), 8, func(k int) error {
		first := k * perStream
		s, err := w.OutboundStream(ctx, remote("idle-out-", first))
		if err != nil {
			return err
		}
		outs[k] = s
		for i := first + 1; i < min(n, first+perStream); i++ {
			if err := s.Authorize(ctx, InternalDomain, remote("idle-out-", i)); err != nil {
				return err
			}
		}
		var b []byte
		for i := first; i < min(n, first+perStream); i++ {
			b = appendMessage(b, "alice@"+InternalDomain, "user@"+remote("idle-out-", i), []byte("hello"))
		}
		_, err = s.Write(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening outbound streams: %w", err)
	}
	if !waitFor(ctx, 2*time.Minute, func() bool { return w.Out.Stanzas.Load() >= int64(n) }) {
		return nil, fmt.Errorf("outbound: %d of %d first stanzas arrived", w.Out.Stanzas.Load(), n)
	}
	figs["outbound_setup_s"] = time.Since(t0).Seconds()
	rss2, heap2 := settle()
	figs["rss_kib_per_outbound"] = (rss2 - rss1) / float64(n) / 1024
	figs["heap_kib_per_outbound"] = (heap2 - heap1) / float64(n) / 1024
	figs["peak_rss_mib"] = float64(w.Relay.Proc().PeakRSS) / (1 << 20)
	m, _ := w.Relay.Metrics()
	figs["goroutines"] = m["go_goroutines"]
	return figs, nil
}
