package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// A scenario measures one aspect of the relay; it fills res.Cases and
// res.Targets.
type scenario struct {
	name  string
	about string
	run   func(ctx context.Context, e *env, res *Result) error
}

// env is what a scenario gets: the options, the relay binary and a folder.
type env struct {
	opts *Options
	bin  string
	dir  string
}

var scenarios = []scenario{
	{"throughput", "relay CPU per forwarded ~320-byte stanza (36-byte ids), both directions, 1/4/16/64 streams; the floor and Prosody side by side", throughput},
	{"latency", "latency added by one relay hop versus a direct connection, at 1 in flight, 10% and 50% of the maximum rate (paced in 1 ms ticks, measured after 300 ms at that pace)", latency},
	{"idle", "RSS per idle authenticated TLS stream, inbound and outbound", idle},
	{"setup", "new outbound streams to fresh domains (SRV, TCP, STARTTLS, dialback with a real db:verify), paced and in a burst", setup},
	{"dead", "dead domains (NXDOMAIN, refused, no DNS answer) beside a healthy pair at a fifth of the one-stream maximum", dead},
	{"fanout", "bursts of directed presences to many domains, warm and cold", fanout},
	{"flood", "100 addresses hold 10,000 pre-auth connections on the federation face (default limits): new streams on both faces, RSS", flood},
}

// Scenarios lists the scenario names and what each measures.
func Scenarios() [][2]string {
	var out [][2]string
	for _, s := range scenarios {
		out = append(out, [2]string{s.name, s.about})
	}
	return out
}

// Run runs the named scenarios ("all" for every one) and returns one Result
// each, in order. A scenario that fails has its Error set; the others still
// run.
func Run(ctx context.Context, opts Options, names ...string) ([]*Result, error) {
	var todo []scenario
	for _, n := range names {
		if n == "all" {
			todo = append(todo[:0], scenarios...)
			break
		}
		found := false
		for _, s := range scenarios {
			if s.name == n {
				todo, found = append(todo, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(names2(), ", "))
		}
	}
	raiseFileLimit()
	dir := opts.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "fedrelay-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin := opts.RelayBin
	if bin == "" {
		opts.logf("building the relay")
		b, err := BuildRelay(ctx, dir)
		if err != nil {
			return nil, err
		}
		bin = b
	}
	var out []*Result
	for _, s := range todo {
		sdir, err := mkdir(dir, s.name)
		if err != nil {
			return out, err
		}
		res := &Result{Scenario: s.name, Mode: "full", Started: time.Now().UTC().Truncate(time.Second),
			Host: ThisHost(), Repetitions: opts.reps()}
		if opts.Quick {
			res.Mode = "quick"
		}
		res.Load.Start = LoadAvg()
		m0 := MachineCPU()
		t0 := time.Now()
		opts.logf("scenario %s: %s", s.name, s.about)
		if err := s.run(ctx, &env{opts: &opts, bin: bin, dir: sdir}, res); err != nil {
			res.Error = err.Error()
			opts.logf("scenario %s: %v", s.name, err)
		}
		res.Seconds = round3(time.Since(t0).Seconds())
		res.Load.End = LoadAvg()
		if m1 := MachineCPU(); m0 >= 0 && m1 >= 0 && res.Seconds > 0 {
			res.Load.BusyFrac = round3((m1 - m0) / res.Seconds / float64(res.Host.Cores))
		}
		out = append(out, res)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

func names2() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

// world starts a world for a scenario in a folder of its own.
func (e *env) world(ctx context.Context, name string, adjust func(*RelayConfig)) (*World, error) {
	d, err := mkdir(e.dir, name)
	if err != nil {
		return nil, err
	}
	return NewWorld(ctx, e.opts, d, e.bin, adjust)
}

// withWorld starts a world for a scenario in a folder of its own, runs fn
// with it, records the relay's totals into res (finish) and stops it.
func (e *env) withWorld(ctx context.Context, res *Result, name string, fn func(w *World) error) error {
	w, err := e.world(ctx, name, nil)
	if err != nil {
		return err
	}
	defer w.Close()
	base, _ := w.Relay.Metrics()
	defer finish(res, w, base)
	return fn(w)
}

// window is a measurement interval on the relay.
type window struct {
	t0   time.Time
	p0   ProcStat
	m0   Metrics
	in0  int64
	out0 int64
	w    *World
}

func (w *World) begin() *window {
	m, _ := w.Relay.Metrics()
	return &window{t0: time.Now(), p0: w.Relay.Proc(), m0: m, in0: w.In.Stanzas.Load(), out0: w.Out.Stanzas.Load(), w: w}
}

// span is what a window measured.
type span struct {
	Seconds  float64
	CPU      float64 // relay CPU seconds
	Received int64   // stanzas received by the inside and outside servers
	Mallocs  float64
	Bytes    float64
	GC       float64
	Bounced  float64 // bounces the relay made (fedrelay_stanzas_bounced_total)
	Proc     ProcStat
	Metrics  Metrics
}

func (win *window) end() span {
	p1 := win.w.Relay.Proc()
	m1, _ := win.w.Relay.Metrics()
	s := span{
		Seconds:  time.Since(win.t0).Seconds(),
		CPU:      p1.CPU - win.p0.CPU,
		Received: win.w.In.Stanzas.Load() - win.in0 + win.w.Out.Stanzas.Load() - win.out0,
		Mallocs:  Delta(win.m0, m1, "go_memstats_mallocs_total"),
		Bytes:    Delta(win.m0, m1, "go_memstats_alloc_bytes_total"),
		GC:       Delta(win.m0, m1, "go_gc_duration_seconds_count"),
		Bounced:  Delta(win.m0, m1, "fedrelay_stanzas_bounced_total"),
		Proc:     p1,
		Metrics:  m1,
	}
	return s
}

// perStanza returns the figures every forwarding case reports.
func (s span) perStanza() map[string]float64 {
	n := float64(s.Received)
	if n == 0 {
		return map[string]float64{"stanzas": 0}
	}
	return map[string]float64{
		"stanzas":             n,
		"stanzas_per_s":       n / s.Seconds,
		"relay_us_per_stanza": s.CPU / n * 1e6,
		"per_core_per_s":      n / max(s.CPU, 1e-9),
		"allocs_per_stanza":   s.Mallocs / n,
		"bytes_per_stanza":    s.Bytes / n,
		"gc_per_s":            s.GC / s.Seconds,
		"bounced":             s.Bounced,
	}
}

// finish records the relay's totals into res: its CPU and peak RSS, and
// its allocations over the stanzas it delivered since base (both from its
// own metrics).
func finish(res *Result, w *World, base Metrics) {
	p := w.Relay.Proc()
	res.Relay.CPUSeconds = round3(max(res.Relay.CPUSeconds, p.CPU))
	res.Relay.PeakRSS = max(res.Relay.PeakRSS, p.PeakRSS)
	m, err := w.Relay.Metrics()
	if err != nil {
		return
	}
	if n := Delta(base, m, "fedrelay_stanzas_delivered_total"); n > 0 {
		res.Relay.AllocsPerStanza = round3(Delta(base, m, "go_memstats_mallocs_total") / n)
		res.Relay.BytesPerStanza = round3(Delta(base, m, "go_memstats_alloc_bytes_total") / n)
	}
}
