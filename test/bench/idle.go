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
// and the relay opens N outbound streams. RSS and Go heap are read 1 s after
// each step, and again once the streams have been quiet for 5 s and two
// garbage collections have run (as the runtime runs one at least every two
// minutes): the second figure is the cost of a stream that is idle for
// good, the one the target is about.
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
		e.opts.logf("idle: %.1f KiB RSS per inbound stream, %.1f KiB per outbound (2 s after the collections: %.1f and %.1f; 1 s after the setup: %.1f and %.1f)",
			figs["rss_kib_per_inbound"], figs["rss_kib_per_outbound"], figs["rss_kib_per_inbound_at_2s"], figs["rss_kib_per_outbound_at_2s"],
			figs["rss_kib_per_inbound_at_1s"], figs["rss_kib_per_outbound_at_1s"])
	}
	res.Cases = cs.cases()
	name := fmt.Sprintf("%d inbound + %d outbound", n, n)
	res.target("RSS per idle authenticated inbound TLS stream", "≤ 20 KiB", res.Median(name, "rss_kib_per_inbound"), "KiB", 20, true)
	res.target("RSS per idle authenticated outbound TLS stream", "≤ 20 KiB", res.Median(name, "rss_kib_per_outbound"), "KiB", 20, true)
	return nil
}

func idleOnce(ctx context.Context, e *env, res *Result, rep, n int) (map[string]float64, error) {
	// Inbound and outbound each get a relay of their own: 10,000 streams of
	// each kind in one process would need more than the 20,000 file
	// descriptors a process may have on the machines this runs on.
	figs := map[string]float64{}
	for _, dir := range []string{"inbound", "outbound"} {
		err := e.withWorld(ctx, res, fmt.Sprintf("relay-%d-%s", rep, dir), func(w *World) error {
			settle := func() (rss, heap float64) {
				time.Sleep(time.Second)
				// RSS first: rendering /metrics with 10,000 streams
				// allocates megabytes, which would be counted as the
				// streams' otherwise.
				rss = float64(w.Relay.Proc().RSS)
				m, _ := w.Relay.Metrics()
				return rss, m["go_memstats_heap_inuse_bytes"]
			}
			rss0, heap0 := settle()
			figs["baseline_rss_mib"] = rss0 / (1 << 20)
			t0 := time.Now()
			var (
				streams []*peer.Outbound
				err     error
			)
			defer func() { closeAll(streams) }()
			if dir == "inbound" {
				streams, err = idleInbound(ctx, w, n)
			} else {
				streams, err = idleOutbound(ctx, w, n)
			}
			if err != nil {
				return err
			}
			figs[dir+"_setup_s"] = time.Since(t0).Seconds()
			rss1, _ := settle()
			figs["rss_kib_per_"+dir+"_at_1s"] = (rss1 - rss0) / float64(n) / 1024
			// Idle for good: the streams have been quiet past the relay's
			// 2 s grace (after which they drop their buffers and park),
			// garbage collections have run, as the runtime runs one at
			// least every two minutes in a relay that allocates nothing,
			// and the runtime's scavenger, which gives freed memory back
			// gradually, has stopped giving any: RSS is read each second
			// until it falls by less than 0.5% (at most 20 s). The figure
			// 2 s after the collections, what this scenario reported
			// before, is kept as *_at_2s.
			time.Sleep(3 * time.Second)
			if err := w.Relay.CollectGarbage(ctx); err != nil {
				return err
			}
			_, heap2 := settle()
			time.Sleep(time.Second)
			rss2, _ := settle()
			figs["rss_kib_per_"+dir+"_at_2s"] = (rss2 - rss0) / float64(n) / 1024
			for range 20 {
				time.Sleep(time.Second)
				rss := float64(w.Relay.Proc().RSS)
				falling := rss < rss2*0.995
				rss2 = min(rss, rss2)
				if !falling {
					break
				}
			}
			figs["rss_kib_per_"+dir] = (rss2 - rss0) / float64(n) / 1024
			figs["heap_kib_per_"+dir] = (heap2 - heap0) / float64(n) / 1024

			figs["peak_rss_mib_"+dir] = float64(w.Relay.Proc().PeakRSS) / (1 << 20)
			m, _ := w.Relay.Metrics()
			figs["goroutines_"+dir] = m["go_goroutines"]
			return w.Relay.SaveProfiles(ctx)
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	return figs, nil
}

// idleInbound opens n authenticated streams from n remote domains to the
// federation face, and sends nothing on them.
func idleInbound(ctx context.Context, w *World, n int) ([]*peer.Outbound, error) {
	in := make([]*peer.Outbound, n)
	err := parallel(n, 32, func(i int) error {
		s, err := w.InboundStream(ctx, remote("idle-in-", i))
		in[i] = s
		return err
	})
	return in, err
}

// idleOutbound makes the relay open n outbound streams: the inside server
// authorises n pairs on streams of 500 pairs each to the internal face and
// sends one message to each remote domain, 500 domains at a time (all at
// once, the setups time out: see the setup scenario).
func idleOutbound(ctx context.Context, w *World, n int) ([]*peer.Outbound, error) {
	outs, err := authorisePairs(ctx, w, "idle-out-", n)
	if err != nil {
		return nil, err
	}
	for k, s := range outs {
		var b []byte
		last := min(n, (k+1)*pairsPerStream)
		for i := k * pairsPerStream; i < last; i++ {
			b = appendMessage(b, "alice@"+InternalDomain, "user@"+remote("idle-out-", i), []byte("hello"))
		}
		if _, err := s.Write(b); err != nil {
			return outs, err
		}
		if !waitFor(ctx, time.Minute, func() bool { return w.Out.Stanzas.Load() >= int64(last) }) {
			return outs, fmt.Errorf("%d of %d first stanzas arrived (%d bounced)", w.Out.Stanzas.Load(), last, w.In.Errors.Load())
		}
	}
	return outs, nil
}
