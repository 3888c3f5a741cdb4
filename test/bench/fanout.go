package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// fanout: the inside server broadcasts — bursts of directed presences, ten
// per remote domain, as a server does when a user with contacts on many
// domains changes status. Warm: the domains' outbound streams are already
// up. Cold: every burst goes to fresh domains, so each burst also sets up
// its streams. Measured: the time from the burst's first write to its last
// presence's arrival, p50/p99 over bursts.
func fanout(ctx context.Context, e *env, res *Result) error {
	domains, perDomain, bursts := 500, 10, 10
	if e.opts.Quick {
		domains, bursts = 100, 3
	}
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		err := e.withWorld(ctx, res, fmt.Sprintf("relay-%d", rep), func(w *World) error {
			// Warm: links up first.
			warm, err := authorisePairs(ctx, w, "fw-", domains)
			if err != nil {
				return err
			}
			defer closeAll(warm)
			before := w.Out.Stanzas.Load()
			for i := 0; i < domains; i++ {
				if err := sendTo(warm, i, "fw-"); err != nil {
					return err
				}
			}
			if !waitFor(ctx, time.Minute, func() bool { return w.Out.Stanzas.Load() >= before+int64(domains) }) {
				return fmt.Errorf("warm-up: %d of %d arrived", w.Out.Stanzas.Load()-before, domains)
			}
			var warmT Samples
			for b := 0; b < bursts; b++ {
				d, err := burst(ctx, w, warm, "fw-", domains, perDomain)
				if err != nil {
					return fmt.Errorf("warm burst %d: %w", b, err)
				}
				warmT.Add(d)
			}
			// Cold: fresh domains for every burst.
			var coldT Samples
			for b := 0; b < bursts; b++ {
				prefix := fmt.Sprintf("fc%d-", b)
				cold, err := authorisePairs(ctx, w, prefix, domains)
				if err != nil {
					return err
				}
				d, err := burst(ctx, w, cold, prefix, domains, perDomain)
				closeAll(cold)
				if err != nil {
					return fmt.Errorf("cold burst %d: %w", b, err)
				}
				coldT.Add(d)
			}
			name := fmt.Sprintf("%d presences to %d domains", domains*perDomain, domains)
			for _, c := range []struct {
				kind string
				s    *Samples
			}{{"warm", &warmT}, {"cold", &coldT}} {
				cs.add(c.kind+", "+name, map[string]float64{
					"completion_p50_ms": c.s.Quantile(0.5),
					"completion_p99_ms": c.s.Quantile(0.99),
					"bursts":            float64(c.s.Len()),
				})
			}
			e.opts.logf("fanout: warm p50 %.1f ms, cold p50 %.1f ms", warmT.Quantile(0.5), coldT.Quantile(0.5))
			return nil
		})
		if err != nil {
			return err
		}
	}
	res.Cases = cs.cases()
	return nil
}

// burst writes perDomain presences to each of the domains, all streams at
// once, and returns when the last one arrived.
func burst(ctx context.Context, w *World, streams []*peer.Outbound, prefix string, domains, perDomain int) (time.Duration, error) {
	before := w.Out.Stanzas.Load()
	want := before + int64(domains*perDomain)
	t0 := time.Now()
	err := parallel(len(streams), len(streams), func(k int) error {
		var b []byte
		for r := 0; r < perDomain; r++ {
			for i := k * pairsPerStream; i < min(domains, (k+1)*pairsPerStream); i++ {
				b = appendPresence(b, fmt.Sprintf("user%d@%s/bench", r, InternalDomain), "contact@"+remote(prefix, i), []byte("p"))
			}
		}
		_, err := streams[k].Write(b)
		return err
	})
	if err != nil {
		return 0, err
	}
	if !waitFor(ctx, 2*time.Minute, func() bool { return w.Out.Stanzas.Load() >= want }) {
		return 0, fmt.Errorf("%d of %d presences arrived", w.Out.Stanzas.Load()-before, domains*perDomain)
	}
	return time.Since(t0), nil
}
