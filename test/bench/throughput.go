package bench

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// throughput: relay CPU per forwarded stanza with TLS on both sides, for
// 1, 4, 16 and 64 streams (each from its own remote domain, so as many
// domain pairs), in both directions, each stream writing as fast as the
// relay reads. Side by side, the same load through the floor forwarder and
// (when it can run here) into Prosody, delivering to an online user.
func throughput(ctx context.Context, e *env, res *Result) error {
	counts, prosodyCounts := []int{1, 4, 16, 64}, []int{1, 4}
	dur := 4 * time.Second
	if e.opts.Quick {
		counts, prosodyCounts, dur = []int{1, 16}, []int{1}, time.Second
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
	pr, prErr := startProsodyRef(ctx, e, w)
	if pr != nil {
		defer pr.Close()
	}
	if prErr != nil {
		res.Notes = append(res.Notes, "Prosody reference not run: "+prErr.Error())
	}

	var cs caseSet
	streams := map[string][]*peer.Outbound{}
	open := func(key string, n int, dial func(i int) (*peer.Outbound, error)) ([]*peer.Outbound, error) {
		if s, ok := streams[key]; ok {
			return s, nil
		}
		s := make([]*peer.Outbound, n)
		err := parallel(n, 8, func(i int) error {
			o, err := dial(i)
			s[i] = o
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: opening %d streams: %w", key, n, err)
		}
		streams[key] = s
		return s, nil
	}
	defer func() {
		for _, ss := range streams {
			for _, s := range ss {
				if s != nil {
					s.Close()
				}
			}
		}
	}()
	for rep := 0; rep < e.opts.reps(); rep++ {
		for _, n := range counts {
			// Federation → internal.
			in, err := open(fmt.Sprint("in", n), n, func(i int) (*peer.Outbound, error) {
				return w.InboundStream(ctx, remote(fmt.Sprintf("t%dx", n), i))
			})
			if err != nil {
				return err
			}
			figs, err := drive(ctx, w, in, func(i int) (string, string) {
				return "user@" + remote(fmt.Sprintf("t%dx", n), i) + "/bench", "alice@" + InternalDomain
			}, &w.In.Stanzas, dur)
			if err != nil {
				return err
			}
			cs.add(fmt.Sprintf("in, %d streams", n), figs)
			e.opts.logf("throughput in %d streams: %.2f µs/stanza, %.0f stanzas/s", n, figs["relay_us_per_stanza"], figs["stanzas_per_s"])

			// Internal → federation.
			out, err := open(fmt.Sprint("out", n), n, func(i int) (*peer.Outbound, error) {
				return w.OutboundStream(ctx, remote(fmt.Sprintf("u%dx", n), i))
			})
			if err != nil {
				return err
			}
			figs, err = drive(ctx, w, out, func(i int) (string, string) {
				return "alice@" + InternalDomain + "/bench", "user@" + remote(fmt.Sprintf("u%dx", n), i)
			}, &w.Out.Stanzas, dur)
			if err != nil {
				return err
			}
			cs.add(fmt.Sprintf("out, %d streams", n), figs)
			e.opts.logf("throughput out %d streams: %.2f µs/stanza, %.0f stanzas/s", n, figs["relay_us_per_stanza"], figs["stanzas_per_s"])

			// The floor, same load.
			fs, err := open(fmt.Sprint("floor", n), n, func(i int) (*peer.Outbound, error) {
				return fl.stream(ctx, remote(fmt.Sprintf("f%dx", n), i))
			})
			if err != nil {
				return err
			}
			figs, err = fl.drive(ctx, fs, func(i int) (string, string) {
				return "user@" + remote(fmt.Sprintf("f%dx", n), i) + "/bench", "alice@" + InternalDomain
			}, dur)
			if err != nil {
				return err
			}
			cs.add(fmt.Sprintf("floor, %d streams", n), figs)
			e.opts.logf("throughput floor %d streams: %.2f µs/stanza", n, figs["floor_us_per_stanza"])
		}
		if pr != nil {
			for _, n := range prosodyCounts {
				figs, err := pr.drive(ctx, n, dur)
				if err != nil {
					res.Notes = append(res.Notes, "Prosody reference failed: "+err.Error())
					break
				}
				cs.add(fmt.Sprintf("prosody, %d streams", n), figs)
				e.opts.logf("throughput prosody %d streams: %.2f µs/stanza", n, figs["prosody_us_per_stanza"])
			}
		}
	}
	res.Cases = cs.cases()
	finish(res, w, base)
	n := counts[len(counts)-1]
	top, err := profileRelay(ctx, e, w, streams[fmt.Sprint("in", n)], func(i int) (string, string) {
		return "user@" + remote(fmt.Sprintf("t%dx", n), i) + "/bench", "alice@" + InternalDomain
	})
	if err != nil {
		res.Notes = append(res.Notes, "no CPU profile: "+err.Error())
	}
	res.Profile = top

	// Targets: relay CPU per stanza (worst median over cases), ratio to the
	// floor and to Prosody.
	worst, floorWorst := 0.0, 0.0
	for _, n := range counts {
		for _, d := range []string{"in", "out"} {
			worst = max(worst, res.Median(fmt.Sprintf("%s, %d streams", d, n), "relay_us_per_stanza"))
		}
		floorWorst = max(floorWorst, res.Median(fmt.Sprintf("floor, %d streams", n), "floor_us_per_stanza"))
	}
	res.target("relay CPU per forwarded stanza (worst median over directions and stream counts)", "≤ 1.0 µs", worst, "µs", 1.0, true)
	if floorWorst > 0 {
		res.target("relay CPU per stanza / floor CPU per stanza (worst medians)", "≤ 2×", worst/floorWorst, "×", 2, true)
	}
	if pr != nil {
		if p := res.Median("prosody, 1 streams", "prosody_us_per_stanza"); p > 0 {
			r1 := res.Median("in, 1 streams", "relay_us_per_stanza")
			res.target("Prosody CPU per stanza / relay CPU per stanza (1 stream, inbound)", "≥ 60×", p/r1, "×", 60, false)
		}
	}
	return nil
}

// profileRelay takes a CPU profile of the relay while streams carry load
// inbound, and returns the top of `go tool pprof -top`.
func profileRelay(ctx context.Context, e *env, w *World, streams []*peer.Outbound, addr func(i int) (from, to string)) ([]string, error) {
	if len(streams) == 0 {
		return nil, fmt.Errorf("no streams")
	}
	stop, _ := load(streams, addr)
	defer stop()
	d := 5 * time.Second
	if e.opts.Quick {
		d = 2 * time.Second
	}
	path := filepath.Join(w.dir, "cpu.pprof")
	if err := w.Relay.Profile(ctx, d, path); err != nil {
		return nil, err
	}
	stop()
	quiesce(ctx, w.In.Stanzas.Load)
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", e.bin, path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// Keep the summary lines and the table, not the file and build lines.
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "Duration:") {
			lines = lines[i:]
			break
		}
	}
	return lines, nil
}

// drive writes messages on every stream as fast as they are read for dur
// (after a warm-up) and measures the relay over that window. addr gives
// each stream's from and to; received counts what arrives at the far end.
func drive(ctx context.Context, w *World, streams []*peer.Outbound, addr func(i int) (from, to string), received *atomic.Int64, dur time.Duration) (map[string]float64, error) {
	var sp span
	err := measure(ctx, streams, addr, received.Load, dur, func() {
		win := w.begin()
		time.Sleep(dur)
		sp = win.end()
	})
	if err != nil {
		return nil, err
	}
	return sp.perStanza(), nil
}

// measure runs a load: one message through every stream first (warm),
// then writers on every stream as fast as they are read; after a settling
// pause it calls window, which measures for dur; then it stops the writers
// and waits until received stops moving.
func measure(ctx context.Context, streams []*peer.Outbound, addr func(i int) (from, to string), received func() int64, dur time.Duration, window func()) error {
	if err := warm(ctx, streams, addr, received); err != nil {
		return err
	}
	stop, errs := load(streams, addr)
	defer stop()
	time.Sleep(min(dur/4, 500*time.Millisecond))
	window()
	stop()
	quiesce(ctx, received)
	return firstErr(errs)
}

// procWindow measures, over dur, the CPU seconds of process pid and how
// much received grew; it returns the figures every reference reports, with
// the CPU per stanza under cpuKey.
func procWindow(pid int, received func() int64, dur time.Duration, cpuKey string) map[string]float64 {
	p0, _ := ReadProc(pid)
	n0, t0 := received(), time.Now()
	time.Sleep(dur)
	p1, _ := ReadProc(pid)
	n, secs := float64(received()-n0), time.Since(t0).Seconds()
	if n == 0 {
		return map[string]float64{"stanzas": 0}
	}
	return map[string]float64{
		"stanzas":       n,
		"stanzas_per_s": n / secs,
		cpuKey:          (p1.CPU - p0.CPU) / n * 1e6,
		"rss_mib":       float64(p1.RSS) / (1 << 20),
	}
}

// warm sends one message on each stream and waits until all have arrived:
// every pair's link is up before the load starts, so that the measurement
// is of forwarding, not of a burst arriving while links are being set up
// (which bounces what does not fit the queues).
func warm(ctx context.Context, streams []*peer.Outbound, addr func(i int) (from, to string), received func() int64) error {
	want := received() + int64(len(streams))
	for i, s := range streams {
		from, to := addr(i)
		if _, err := s.Write(appendMessage(nil, from, to, []byte("warm"))); err != nil {
			return err
		}
	}
	if !waitFor(ctx, 30*time.Second, func() bool { return received() >= want }) {
		return fmt.Errorf("warm-up: %d of %d arrived within 30 s", received()-want+int64(len(streams)), len(streams))
	}
	return nil
}

// load starts a writer per stream, each writing batches of messages until
// stop is called; stop waits for the writers.
func load(streams []*peer.Outbound, addr func(i int) (from, to string)) (stop func(), errs []error) {
	var (
		done atomic.Bool
		wg   sync.WaitGroup
	)
	errs = make([]error, len(streams))
	for i, s := range streams {
		from, to := addr(i)
		// Ids as long as the UUIDs many clients use (36 bytes): with ids
		// of 2 or 3 bytes, what the relay does per id (an allocation, say)
		// hardly showed.
		var batch []byte
		for k := 0; k < 64; k++ {
			batch = appendMessage(batch, from, to, []byte(fmt.Sprintf("%08x-4b7d-4e21-9a3f-%012x", uint32(k)*2654435761, i*64+k)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				if _, err := s.Write(batch); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { done.Store(true); wg.Wait() }) }, errs
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// quiesce waits until counter has not moved for 300 ms (at most 30 s): the
// pipeline is empty before the next case.
func quiesce(ctx context.Context, counter func() int64) {
	last, since := counter(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
		if v := counter(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			return
		}
	}
}

// floorWorld is the floor forwarder between the outside server and a sink
// of its own (the same kind of server as the relay's route).
type floorWorld struct {
	w     *World
	floor *Floor
	sink  *peer.Server
	count *Sink
	// DirectAddr is the sink's STARTTLS listener, for direct connections
	// (the latency baseline).
	DirectAddr string
	lns        []net.Listener
}

func newFloorWorld(ctx context.Context, w *World) (*floorWorld, error) {
	f := &floorWorld{w: w, count: newSink()}
	outside := w.OutsideAddr
	f.sink = &peer.Server{
		Domains:       []string{InternalDomain},
		Authoritative: func(string) string { return outside },
		Timeout:       20 * time.Second,
		Handler:       f.count.handle,
	}
	tlsL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		return nil, err
	}
	plainL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		tlsL.Close()
		return nil, err
	}
	f.lns = []net.Listener{tlsL, plainL}
	f.DirectAddr = plainL.Addr().String()
	go f.sink.ServeDirectTLS(tlsL)
	go f.sink.Serve(plainL)
	addr, err := freeAddr(nextIP())
	if err != nil {
		f.Close()
		return nil, err
	}
	if f.floor, err = StartFloor(addr, tlsL.Addr().String()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *floorWorld) Close() {
	if f.floor != nil {
		f.floor.Stop()
	}
	f.sink.Close()
}

// stream opens a stream from remote domain from through the floor.
func (f *floorWorld) stream(ctx context.Context, from string) (*peer.Outbound, error) {
	return f.w.Outside.DialDirectTLS(ctx, f.floor.Addr, from, InternalDomain)
}

// direct opens a stream from remote domain from straight to the sink.
func (f *floorWorld) direct(ctx context.Context, from string) (*peer.Outbound, error) {
	return f.w.Outside.Dial(ctx, f.DirectAddr, from, InternalDomain)
}

// drive is drive() with the floor's CPU in place of the relay's.
func (f *floorWorld) drive(ctx context.Context, streams []*peer.Outbound, addr func(i int) (from, to string), dur time.Duration) (map[string]float64, error) {
	var figs map[string]float64
	err := measure(ctx, streams, addr, f.count.Stanzas.Load, dur, func() {
		figs = procWindow(f.floor.PID(), f.count.Stanzas.Load, dur, "floor_us_per_stanza")
	})
	return figs, err
}
