package bench

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// latency: the time from writing a stanza to its arrival at the far server,
// through the relay (federation → internal, TLS both sides) and over a
// direct connection to the same kind of server, at 1 stanza in flight and
// paced at 10% and 50% of the relay's maximum rate on one stream (at least
// 100,000 samples, and at least 5 s of paced load). The
// floor forwarder is measured the same way. The added latency of the hop is
// the relay's percentile minus the direct one. Paced phases are also
// reported by tick (ticks.go): the latency of each tick's first and last
// stanza, the ticks' sizes, and the share of ticks sent while the one
// before was still arriving; and with how long the threads of the bench
// (sender and receivers) and of the forwarding process (relay, floor)
// waited, runnable, for a CPU meanwhile (startWait), in ms per second of
// the phase: on a machine with two cores shared by all of them, a wake-up
// there waited 9-26 µs at the median, 95-160 µs at the 90th percentile
// and 0.6-0.8 ms at the 99th, for the relay's threads and the bench's
// alike (perf sched, 2 s of the relay's 50 % phase on this project's
// 2-core virtual machines), and a path that wakes more threads per tick
// meets that tail more often.
func latency(ctx context.Context, e *env, res *Result) error {
	samples, minDur := 100_000, 5*time.Second
	if e.opts.Quick {
		samples, minDur = 3_000, time.Second
	}
	w, err := e.world(ctx, "relay", nil)
	if err != nil {
		return err
	}
	defer w.Close()
	base, _ := w.Relay.Metrics()
	fl, err := newFloorWorld(ctx, w)
	if err != nil {
		return err
	}
	defer fl.Close()

	type path struct {
		name string
		s    *peer.Outbound
		sink *Sink
		from string
		pid  int // the process that forwards (relay, floor); 0 for none
	}
	var paths []path
	for _, p := range []struct {
		name string
		dial func(context.Context, string) (*peer.Outbound, error)
		sink *Sink
		pid  int
	}{
		{"relay", w.InboundStream, w.In, w.Relay.PID()},
		{"direct", fl.direct, fl.count, 0},
		{"floor", fl.stream, fl.count, fl.floor.PID()},
	} {
		from := remote("lat-"+p.name, 0)
		s, err := p.dial(ctx, from)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		defer s.Close()
		paths = append(paths, path{p.name, s, p.sink, "user@" + from + "/bench", p.pid})
	}

	// The relay's maximum rate on this one stream.
	dur := 3 * time.Second
	if e.opts.Quick {
		dur = time.Second
	}
	figs, err := drive(ctx, w, []*peer.Outbound{paths[0].s}, func(int) (string, string) { return paths[0].from, "alice@" + InternalDomain }, &w.In.Stanzas, dur)
	if err != nil {
		return err
	}
	maxRate := figs["stanzas_per_s"]
	res.Notes = append(res.Notes, fmt.Sprintf("maximum rate through the relay on one stream: %.0f stanzas/s", maxRate))

	// The bench's own garbage collections (every 100 ms or so at these
	// rates, with a few MB of live heap) take its sender and receivers
	// off a CPU for milliseconds on this 2-core machine: at 50% of the
	// maximum rate they made the direct path's p99 15–30 ms, which hid
	// the hop. While it measures, the bench collects 20 times less often.
	// The relay and the floor keep their defaults: they are what is
	// measured.
	defer debug.SetGCPercent(debug.SetGCPercent(2000))
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		for _, load := range []struct {
			name string
			rate float64 // 0: one in flight
		}{{"1 in flight", 0}, {"10% of max", maxRate / 10}, {"50% of max", maxRate / 2}} {
			row := map[string]map[string]float64{}
			for _, p := range paths {
				n := samples
				if load.rate > 0 {
					n = max(n, int(load.rate*minDur.Seconds()))
				}
				benchWait, fwdWait := startWait(os.Getpid()), startWait(p.pid) // pid 0: no forwarder, unused
				sm, lost, err := measureLatency(ctx, p.s, p.sink, p.from, "alice@"+InternalDomain, load.rate, n)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", p.name, load.name, err)
				}
				waited := map[string]float64{"bench_wait_ms_per_s": benchWait.msPerSecond()}
				if p.pid != 0 {
					waited["fwd_wait_ms_per_s"] = fwdWait.msPerSecond()
				}
				pc := sm.Summary()
				row[p.name] = map[string]float64{"p50_ms": pc.P50, "p99_ms": pc.P99, "p999_ms": pc.P999, "samples": float64(pc.N), "lost": float64(lost)}
				if load.rate > 0 {
					tf := sm.Ticks()
					figs := map[string]float64{
						"ticks": float64(tf.Ticks), "size_p50": tf.SizeP50, "size_p99": tf.SizeP99,
						"first_p50_ms": tf.FirstP50, "first_p99_ms": tf.FirstP99,
						"last_p50_ms": tf.LastP50, "last_p99_ms": tf.LastP99,
						"busy_pct": 100 * tf.BusyShare,
					}
					maps.Copy(figs, waited)
					cs.add(fmt.Sprintf("%s, %s, by tick", p.name, load.name), figs)
				}
			}
			for _, name := range []string{"relay", "floor"} {
				f := row[name]
				f["added_p50_ms"] = f["p50_ms"] - row["direct"]["p50_ms"]
				f["added_p99_ms"] = f["p99_ms"] - row["direct"]["p99_ms"]
				f["added_p999_ms"] = f["p999_ms"] - row["direct"]["p999_ms"]
			}
			for _, p := range paths {
				cs.add(fmt.Sprintf("%s, %s", p.name, load.name), row[p.name])
			}
			e.opts.logf("latency %s: relay p99 %.3f ms, direct %.3f ms, floor %.3f ms", load.name,
				row["relay"]["p99_ms"], row["direct"]["p99_ms"], row["floor"]["p99_ms"])
		}
	}
	res.Cases = cs.cases()
	finish(res, w, base)
	added := res.Median("relay, 50% of max", "added_p99_ms")
	if direct := res.Median("direct, 50% of max", "p99_ms"); direct > 1 {
		// The bench's own sender and receiver cannot keep that pace on this
		// machine: the difference of two saturated distributions says
		// nothing about the hop.
		res.Notes = append(res.Notes, fmt.Sprintf("at 50%% of max the direct path's own p99 is %.1f ms: the bench saturates "+
			"this machine at that rate, so the added p99 there (%.2f ms) is not a measurement of the hop", direct, added))
		added = math.NaN()
	}
	res.target("latency added by the relay hop at 50% of max rate, p99", "≤ 1 ms", added, "ms", 1, true)
	return nil
}

// measureLatency sends n stanzas on s, one at a time (rate 0) or paced at
// rate per second, and returns the latencies the sink saw and how many did
// not arrive within 10 s of the last send.
func measureLatency(ctx context.Context, s *peer.Outbound, sink *Sink, from, to string, rate float64, n int) (Samples, int, error) {
	sink.Record(true, n)
	defer sink.Record(false, 0)
	start := sink.Stanzas.Load()
	var buf, id []byte
	if rate <= 0 {
		for i := 0; i < n; i++ {
			want := start + int64(i) + 1
			id = stampID(id[:0], time.Now(), "l")
			buf = appendMessage(buf[:0], from, to, id)
			if _, err := s.Write(buf); err != nil {
				return Samples{}, 0, err
			}
			if !waitArrival(ctx, &sink.Stanzas, want, 10*time.Second) {
				return Samples{}, 0, fmt.Errorf("stanza %d did not arrive within 10 s", i)
			}
		}
	} else {
		// Pace in ticks of 1 ms: each tick sends what the rate allows so
		// far, each stanza stamped when written. The first warmup of it
		// goes unstamped, so the sink does not record it: after the pause
		// before each phase, the first tens of ms at the new pace found
		// the path cold (pooled buffers given back while idle, the
		// sockets' windows), and the sender's writes blocked for 1–4 ms
		// and went out in catch-up bursts of up to 2 MB, 14 ms of traffic
		// under one stamp. That is the start of a phase, not its steady
		// state, and in a 1 s quick run it alone set the p99.
		warm := int(rate * latencyWarmup.Seconds())
		total := warm + n
		t0 := time.Now()
		sent := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for sent < total {
			<-tick.C
			due := min(total, int(time.Since(t0).Seconds()*rate))
			buf = buf[:0]
			id = stampID(id[:0], time.Now(), "l")
			for ; sent < due; sent++ {
				if sent < warm {
					buf = appendMessage(buf, from, to, warmID)
				} else {
					buf = appendMessage(buf, from, to, id)
				}
			}
			if len(buf) > 0 {
				if _, err := s.Write(buf); err != nil {
					return Samples{}, 0, err
				}
			}
			if ctx.Err() != nil {
				return Samples{}, 0, ctx.Err()
			}
		}
		waitArrival(ctx, &sink.Stanzas, start+int64(total), 10*time.Second)
	}
	got := sink.Record(false, 0)
	return got, n - got.Len(), nil
}

// latencyWarmup is how long each paced phase runs before its stanzas are
// measured; warmID is the id they carry, which sentAt does not read.
const latencyWarmup = 300 * time.Millisecond

var warmID = []byte("warmup")

// waitArrival waits until counter reaches want, spinning briefly before
// sleeping so that one-in-flight measurements are not paced by the timer.
func waitArrival(ctx context.Context, counter *atomic.Int64, want int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for spins := 0; counter.Load() < want; spins++ {
		if spins < 2000 {
			continue
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Microsecond)
	}
	return true
}

// waitWindow is the run-queue wait (RunQueueWait) of one process over a
// phase.
type waitWindow struct {
	pid  int
	t0   time.Time
	base time.Duration
	err  error
}

// startWait starts a window for process pid.
func startWait(pid int) waitWindow {
	w := waitWindow{pid: pid, t0: time.Now()}
	w.base, w.err = RunQueueWait(pid)
	return w
}

// msPerSecond returns how long the process's threads waited for a CPU
// since the window started, in ms per second, or NaN if it could not be
// read.
func (w waitWindow) msPerSecond() float64 {
	if w.err != nil {
		return math.NaN()
	}
	d, err := RunQueueWait(w.pid)
	if err != nil {
		return math.NaN()
	}
	return ms(d-w.base) / time.Since(w.t0).Seconds()
}
