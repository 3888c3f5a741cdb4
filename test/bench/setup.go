package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// setup: new outbound streams. The inside server first authorises pairs
// towards fresh remote domains on a few multiplexed streams (not measured);
// then one message to each fresh domain makes the relay resolve it (SRV
// from the bench's nameserver), connect, STARTTLS and authenticate by
// dialback, the outside server checking the key with a real db:verify to
// the relay's federation face. Paced: fresh domains at a steady rate, the
// relay's CPU per setup. Burst: as many at once; when the first and the
// last arrive.
func setup(ctx context.Context, e *env, res *Result) error {
	n, rate := 1000, 200.0
	if e.opts.Quick {
		n, rate = 200, 100.0
	}
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		err := e.withWorld(ctx, res, fmt.Sprintf("relay-%d", rep), func(w *World) error {
			paced, err := authorisePairs(ctx, w, "paced-", n)
			if err != nil {
				return err
			}
			defer closeAll(paced)
			burst, err := authorisePairs(ctx, w, "burst-", n)
			if err != nil {
				return err
			}
			defer closeAll(burst)

			// Paced.
			w.Out.Record(true, n)
			win := w.begin()
			t0 := time.Now()
			for i := 0; i < n; i++ {
				if d := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
					time.Sleep(d)
				}
				if err := sendTo(paced, i, "paced-"); err != nil {
					return err
				}
			}
			if !waitFor(ctx, time.Minute, func() bool { return w.Out.Stanzas.Load() >= int64(n) }) {
				return fmt.Errorf("paced: %d of %d arrived", w.Out.Stanzas.Load(), n)
			}
			sp := win.end()
			lat := w.Out.Record(false, 0)
			pc := lat.Summary()
			cs.add(fmt.Sprintf("paced, %d domains at %.0f/s", n, rate), map[string]float64{
				"setups_per_cpu_s":      float64(n) / sp.CPU,
				"relay_ms_per_setup":    sp.CPU / float64(n) * 1e3,
				"first_delivery_p50_ms": pc.P50,
				"first_delivery_p99_ms": pc.P99,
			})
			e.opts.logf("setup paced: %.0f setups per relay CPU-second, p99 %.1f ms", float64(n)/sp.CPU, pc.P99)

			// Burst: every fresh domain's first message in one write per
			// stream, all streams at once.
			before := w.Out.Stanzas.Load()
			w.Out.Record(true, n)
			win = w.begin()
			t0 = time.Now()
			err = parallel(len(burst), len(burst), func(k int) error {
				var b []byte
				now := time.Now()
				for i := k * pairsPerStream; i < min(n, (k+1)*pairsPerStream); i++ {
					b = appendMessage(b, "alice@"+InternalDomain, "user@"+remote("burst-", i), stampID(nil, now, "s"))
				}
				_, err := burst[k].Write(b)
				return err
			})
			if err != nil {
				return err
			}
			var first time.Duration
			waitFor(ctx, 10*time.Second, func() bool { return w.Out.Stanzas.Load() > before })
			first = time.Since(t0)
			if !waitFor(ctx, 2*time.Minute, func() bool { return w.Out.Stanzas.Load() >= before+int64(n) }) {
				return fmt.Errorf("burst: %d of %d arrived", w.Out.Stanzas.Load()-before, n)
			}
			all := time.Since(t0)
			sp = win.end()
			lat = w.Out.Record(false, 0)
			pc = lat.Summary()
			cs.add(fmt.Sprintf("burst of %d domains", n), map[string]float64{
				"setups_per_cpu_s":  float64(n) / sp.CPU,
				"first_delivery_ms": ms(first),
				"all_delivered_ms":  ms(all),
				"delivery_p50_ms":   pc.P50,
				"delivery_p99_ms":   pc.P99,
			})
			e.opts.logf("setup burst: first after %.1f ms, all after %.1f ms", ms(first), ms(all))
			return nil
		})
		if err != nil {
			return err
		}
	}
	res.Cases = cs.cases()
	res.target("new outbound streams per relay CPU-second, paced", "≥ 1,000", res.Median(fmt.Sprintf("paced, %d domains at %.0f/s", n, rate), "setups_per_cpu_s"), "setups/CPU-s", 1000, false)
	res.target("first delivery of a burst of fresh domains", "≤ 50 ms", res.Median(fmt.Sprintf("burst of %d domains", n), "first_delivery_ms"), "ms", 50, true)
	return nil
}

// pairsPerStream is how many pairs the inside server authorises on one
// stream to the internal face.
const pairsPerStream = 500

// authorisePairs opens streams from the inside server to the internal face
// and authorises (a.bench → prefix<i>.remote.bench) for i in [0,n), 500
// pairs per stream. Nothing is sent yet.
func authorisePairs(ctx context.Context, w *World, prefix string, n int) ([]*peer.Outbound, error) {
	streams := make([]*peer.Outbound, (n+pairsPerStream-1)/pairsPerStream)
	err := parallel(len(streams), 8, func(k int) error {
		first := k * pairsPerStream
		s, err := w.OutboundStream(ctx, remote(prefix, first))
		if err != nil {
			return err
		}
		streams[k] = s
		for i := first + 1; i < min(n, first+pairsPerStream); i++ {
			if err := s.Authorize(ctx, InternalDomain, remote(prefix, i)); err != nil {
				return fmt.Errorf("authorising %s: %w", remote(prefix, i), err)
			}
		}
		return nil
	})
	if err != nil {
		closeAll(streams)
		return nil, err
	}
	return streams, nil
}

// sendTo writes one stamped message to prefix<i>.remote.bench on the
// stream that authorised it.
func sendTo(streams []*peer.Outbound, i int, prefix string) error {
	b := appendMessage(nil, "alice@"+InternalDomain, "user@"+remote(prefix, i), stampID(nil, time.Now(), "s"))
	_, err := streams[i/pairsPerStream].Write(b)
	return err
}

func closeAll(streams []*peer.Outbound) {
	for _, s := range streams {
		if s != nil {
			s.Close()
		}
	}
}
