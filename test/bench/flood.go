package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// flood: the edge-security claim "100 addresses holding 10,000 pre-auth
// connections on the federation face leave the internal face fully usable
// and new federation streams still get through", measured with the relay's
// default limits for what is under test (limits.max_streams,
// max_streams_per_ip, connect_rate_per_ip, connect_burst_per_ip,
// max_internal_streams, preauth_timeout, negotiation_timeout, read from
// config.Defaults and written into the relay's configuration as they are).
//
// max_streams / max_streams_per_ip flooder addresses (127.62.x.y, bound with
// net.Dialer.LocalAddr) each try to hold max_streams_per_ip connections to
// the federation face: each connection sends the stream header of a stranger
// that never authenticates and then nothing; when the relay closes it (the
// pre-auth deadline, an eviction, a refusal), it reconnects at once, as fast
// as the relay's per-address bucket allows (the flooders pace themselves
// with the same bucket, connect_rate_per_ip and connect_burst_per_ip, so no
// attempt is wasted on a certain refusal). Once the flooders hold the
// budget (or after 15 s), every second for the phase:
//
//   - internal face: the inside server of probe.bench (a second internal
//     domain of the relay, whose route is a server of the scenario's own)
//     opens a NEW stream to the internal face, authenticated by dialback
//     (the relay checks the key with the route), and sends one message to
//     probe.remote.bench, which must arrive there;
//   - federation face: the server of probe.remote.bench (found by the relay
//     through the bench's nameserver) opens a NEW stream to the federation
//     face, authenticated by dialback (the relay checks the key with that
//     server, through DNS), and sends one message to probe.bench, which must
//     arrive at its inside server.
//
// A probe succeeds when its message arrives within probeTimeout of the
// start of its stream's setup; probes slower than slowProbe are listed in
// the notes with their time since the flood started. (The flood comes in
// waves: each address's first connect_burst_per_ip connections are accepted
// together, expire together preauth_timeout later and are replaced
// together, so every preauth_timeout about half the budget is closed and
// reopened within a moment.) The relay's links towards the two probe
// servers are set up before the flood by baseline probes (whose figures are
// the baseline case). Also sampled each second: the connections the
// flooders hold, the relay's RSS and metrics; counted: the flooders'
// connections by how they ended.
func flood(ctx context.Context, e *env, res *Result) error {
	def, err := config.Defaults()
	if err != nil {
		return fmt.Errorf("the relay's default configuration: %w", err)
	}
	l := def.Limits
	fl := floodLimits{
		maxStreams: l.MaxStreams, perIP: l.MaxStreamsPerIP, rate: l.ConnectRatePerIP, burst: l.ConnectBurstPerIP,
		maxInternal: l.MaxInternalStreams, preauth: l.PreauthTimeout, negotiation: l.NegotiationTimeout,
	}
	addrs, phase, baseline := fl.maxStreams/fl.perIP, 40*time.Second, 5
	if e.opts.Quick {
		// A fifth of the flood, and a budget scaled to it so that it is
		// full all the same; every other limit under test as by default.
		addrs, phase, baseline = addrs/5, 10*time.Second, 3
		fl.maxStreams = addrs * fl.perIP
	}
	name := fmt.Sprintf("%d addresses × %d pre-auth connections, max_streams %d", addrs, fl.perIP, fl.maxStreams)
	var cs caseSet
	for rep := 0; rep < e.opts.reps(); rep++ {
		base, figs, notes, err := floodOnce(ctx, e, res, rep, fl, addrs, phase, baseline)
		res.Notes = append(res.Notes, notes...)
		if err != nil {
			return err
		}
		cs.add("baseline, no flood", base)
		cs.add(name, figs)
		e.opts.logf("flood: flooders held %.0f of %d (median); internal face %.0f/%.0f, federation face %.0f/%.0f new streams delivered; setup p99 %.1f / %.1f ms; RSS peak %.0f MiB",
			figs["held_median"], fl.maxStreams, figs["internal_delivered"], figs["internal_attempts"],
			figs["federation_delivered"], figs["federation_attempts"], figs["internal_setup_p99_ms"],
			figs["federation_setup_p99_ms"], figs["rss_peak_mib"])
	}
	res.Cases = cs.cases()
	res.target("internal face during the flood: new streams whose message arrived", "= 1 (all)", res.Median(name, "internal_success_ratio"), "", 1, false)
	res.target("federation face during the flood: new legitimate streams whose message arrived", "≥ 0.95", res.Median(name, "federation_success_ratio"), "", 0.95, false)
	res.target("relay RSS peak during the flood", "≤ 512 MiB", res.Median(name, "rss_peak_mib"), "MiB", 512, true)
	if f := res.Median(name, "held_fraction"); f < 0.9 {
		res.Notes = append(res.Notes, fmt.Sprintf("the flooders held only %.0f%% of limits.max_streams (median): the flood did not fill the budget, and the figures do not test the claim", f*100))
	}
	return nil
}

// floodLimits are the relay's limits under test.
type floodLimits struct {
	maxStreams, perIP, burst, maxInternal int
	rate                                  float64
	preauth, negotiation                  time.Duration
}

// yaml renders the limits section: the limits under test, and an idle
// timeout longer than the scenario.
func (fl floodLimits) yaml() string {
	return fmt.Sprintf("{idle_timeout: 20m, max_streams: %d, max_streams_per_ip: %d, connect_rate_per_ip: %s, connect_burst_per_ip: %d, max_internal_streams: %d, preauth_timeout: %s, negotiation_timeout: %s}",
		fl.maxStreams, fl.perIP, strconv.FormatFloat(fl.rate, 'f', -1, 64), fl.burst, fl.maxInternal, fl.preauth, fl.negotiation)
}

// Domains of the probes: an internal domain of the relay whose route is
// the scenario's own inside server, and a remote domain whose SRV target is
// the scenario's own outside server.
const (
	probeInternal = "probe.bench"
	probeRemote   = "probe" + remoteSuffix
)

// probeTimeout bounds one probe: its stream's setup and its message's
// arrival.
const probeTimeout = 10 * time.Second

func floodOnce(ctx context.Context, e *env, res *Result, rep int, fl floodLimits, addrs int, phase time.Duration, baseline int) (base, figs map[string]float64, notes []string, err error) {
	n := addrs * fl.perIP
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(n)+2000 {
		return nil, nil, nil, fmt.Errorf("%d flooder connections need about %d file descriptors in the bench process; its limit is %d", n, n+2000, lim.Cur)
	}
	pr, err := newProbes()
	if err != nil {
		return nil, nil, nil, err
	}
	defer pr.close()
	w, err := e.world(ctx, fmt.Sprintf("relay-%d", rep), func(c *RelayConfig) {
		c.Limits = fl.yaml()
		c.Domains[probeInternal] = pr.insideAddr
	})
	if err != nil {
		return nil, nil, nil, err
	}
	defer w.Close()
	m00, _ := w.Relay.Metrics()
	defer finish(res, w, m00)
	pr.federation.Store(&w.Relay.Cfg.FederationAddr)
	pr.internal.Store(&w.Relay.Cfg.InternalAddr)
	w.DNS.Set(probeRemote, Serve, pr.outsideAddr)

	// Baseline, which also sets up the relay's links to the two probe
	// servers.
	var bi, bf probeSet
	for i := 0; i < baseline; i++ {
		bi.add(pr.internalProbe(ctx))
		bf.add(pr.federationProbe(ctx))
	}
	base = map[string]float64{}
	bi.figures(base, "internal")
	bf.figures(base, "federation")
	if bi.ok == 0 || bf.ok == 0 {
		return base, nil, nil, fmt.Errorf("baseline probes failed before any flood: internal %d/%d (%s), federation %d/%d (%s)",
			bi.ok, bi.n, bi.errorText(), bf.ok, bf.n, bf.errorText())
	}

	// The flood.
	logFrom := logSize(w.Relay)
	defer func() {
		if b := warnings(w.Relay, logFrom, 8); b != "" {
			notes = append(notes, fmt.Sprintf("repetition %d: the relay logged at warn or above during the flood: %s", rep, b))
		}
	}()
	ResetPeak(w.Relay.PID())
	fctx, stop := context.WithCancel(ctx)
	f := &flooder{fed: w.Relay.Cfg.FederationAddr,
		header: []byte("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='" +
			InternalDomain + "' version='1.0'>")}
	t0 := time.Now()
	f.start(fctx, addrs, fl.perIP, fl.rate, fl.burst)
	defer func() {
		stop()
		f.wg.Wait()
	}()
	full := float64(n) * 0.99
	ramped := waitFor(ctx, 15*time.Second, func() bool { return float64(f.held.Load()) >= full })
	figs = map[string]float64{"ramp_s": time.Since(t0).Seconds()}
	if !ramped {
		notes = append(notes, fmt.Sprintf("repetition %d: the flooders held %d of %d connections after 15 s; measuring anyway", rep, f.held.Load(), n))
	}

	// Measurement.
	var (
		mu       sync.Mutex
		pi, pf   probeSet
		probes   sync.WaitGroup
		held     []float64
		open     []float64
		rssMax   float64
		heapMax  float64
		goMax    float64
		fdMax    float64
		cpuMax   float64 // the relay's, over one second
		benchMax float64 // this process's, over one second
	)
	m0, _ := w.Relay.Metrics()
	p0 := w.Relay.Proc()
	b0, _ := ReadProc(os.Getpid())
	c0 := f.counts()
	t1 := time.Now()
	prev, prevB, prevT := p0, b0, t1
	tick := time.NewTicker(time.Second)
	for time.Since(t1) < phase && ctx.Err() == nil {
		probes.Add(2)
		go func() {
			defer probes.Done()
			r := pr.internalProbe(ctx)
			mu.Lock()
			pi.add(r)
			mu.Unlock()
		}()
		go func() {
			defer probes.Done()
			r := pr.federationProbe(ctx)
			mu.Lock()
			pf.add(r)
			mu.Unlock()
		}()
		held = append(held, float64(f.held.Load()))
		if m, err := w.Relay.Metrics(); err == nil {
			open = append(open, m["fedrelay_streams_inbound_open"])
			heapMax = max(heapMax, m["go_memstats_heap_inuse_bytes"])
			goMax = max(goMax, m["go_goroutines"])
			fdMax = max(fdMax, m["process_open_fds"])
		}
		p, now := w.Relay.Proc(), time.Now()
		b, _ := ReadProc(os.Getpid())
		if d := now.Sub(prevT).Seconds(); d > 0.5 {
			cpuMax = max(cpuMax, (p.CPU-prev.CPU)/d)
			benchMax = max(benchMax, (b.CPU-prevB.CPU)/d)
		}
		prev, prevB, prevT = p, b, now
		rssMax = max(rssMax, float64(p.RSS))
		<-tick.C
	}
	tick.Stop()
	secs := time.Since(t1).Seconds()
	c1 := f.counts()
	m1, _ := w.Relay.Metrics()
	p1 := w.Relay.Proc()
	b1, _ := ReadProc(os.Getpid())
	probes.Wait() // the flood goes on while the last probes finish
	p2 := w.Relay.Proc()

	pi.figures(figs, "internal")
	pf.figures(figs, "federation")
	for _, ps := range []struct {
		name string
		set  *probeSet
	}{{"internal", &pi}, {"federation", &pf}} {
		if ps.set.ok < ps.set.n {
			notes = append(notes, fmt.Sprintf("repetition %d: %s probes that failed: %s", rep, ps.name, ps.set.errorText()))
		}
		if len(ps.set.slow) > 0 {
			notes = append(notes, fmt.Sprintf("repetition %d: %s probes slower than %s or failed (time since the flood started): %s",
				rep, ps.name, slowProbe, ps.set.slowText(t0)))
		}
	}
	slices.Sort(held)
	slices.Sort(open)
	figs["held_min"], figs["held_median"], figs["held_max"] = quantile(held, 0), quantile(held, 0.5), quantile(held, 1)
	figs["held_fraction"] = figs["held_median"] / float64(fl.maxStreams)
	figs["relay_open_streams_median"], figs["relay_open_streams_max"] = quantile(open, 0.5), quantile(open, 1)
	figs["flood_connects_per_s"] = float64(c1.connects-c0.connects) / secs
	figs["flood_refused_per_s"] = float64(c1.refused-c0.refused) / secs
	figs["flood_evicted_per_s"] = float64(c1.evicted-c0.evicted) / secs
	figs["flood_timed_out_per_s"] = float64(c1.timedOut-c0.timedOut) / secs
	figs["flood_other_closes_per_s"] = float64(c1.other-c0.other) / secs
	figs["flood_dial_errors_per_s"] = float64(c1.dialErrors-c0.dialErrors) / secs
	figs["relay_refused_per_s"] = Delta(m0, m1, "fedrelay_streams_refused_total") / secs
	figs["relay_evicted_per_s"] = Delta(m0, m1, "fedrelay_streams_evicted_total") / secs
	figs["relay_accepted_per_s"] = Delta(m0, m1, "fedrelay_streams_inbound_total") / secs
	figs["relay_refused_total"] = m1["fedrelay_streams_refused_total"]
	figs["relay_evicted_total"] = m1["fedrelay_streams_evicted_total"]
	figs["relay_cpu_cores"] = (p1.CPU - p0.CPU) / secs
	figs["relay_cpu_cores_max_1s"] = cpuMax
	figs["bench_cpu_cores"] = (b1.CPU - b0.CPU) / secs
	figs["bench_cpu_cores_max_1s"] = benchMax
	figs["rss_peak_mib"] = float64(max(p1.PeakRSS, p2.PeakRSS)) / (1 << 20)
	figs["rss_max_sampled_mib"] = rssMax / (1 << 20)
	figs["heap_inuse_max_mib"] = heapMax / (1 << 20)
	figs["goroutines_max"] = goMax
	figs["open_fds_max"] = fdMax
	figs["phase_s"] = secs
	return base, figs, notes, nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// logSize is the length of the relay's log now.
func logSize(r *Relay) int {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "fedrelay.log"))
	return len(b)
}

// warnings returns the number of lines at level WARN or ERROR the relay
// logged past offset from, and the last n of them; "" if none.
func warnings(r *Relay, from, n int) string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "fedrelay.log"))
	if from > len(b) {
		return ""
	}
	var out []string
	for _, line := range strings.Split(string(b[from:]), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return ""
	}
	count := len(out)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return fmt.Sprintf("%d lines; the last:\n%s", count, strings.Join(out, "\n"))
}

// flooder holds pre-auth connections to the federation face.
type flooder struct {
	fed    string
	header []byte
	wg     sync.WaitGroup

	held       atomic.Int64 // connections the relay answered and has not closed
	connects   atomic.Int64 // TCP connections made
	refused    atomic.Int64 // closed by the relay before a byte came back
	evicted    atomic.Int64 // closed to make room (limits.max_streams)
	timedOut   atomic.Int64 // closed with connection-timeout (limits.preauth_timeout)
	other      atomic.Int64 // closed otherwise
	dialErrors atomic.Int64 // connection attempts that failed
}

type floodCounts struct{ connects, refused, evicted, timedOut, other, dialErrors int64 }

func (f *flooder) counts() floodCounts {
	return floodCounts{f.connects.Load(), f.refused.Load(), f.evicted.Load(), f.timedOut.Load(), f.other.Load(), f.dialErrors.Load()}
}

// floodIP is the address of flooder i: 127.62.0.1 on.
func floodIP(i int) net.IP { return net.IPv4(127, 62, byte(i/250), byte(1+i%250)) }

// start starts perAddr connection loops for each of addrs addresses; they
// run until ctx ends.
func (f *flooder) start(ctx context.Context, addrs, perAddr int, r float64, burst int) {
	for i := 0; i < addrs; i++ {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: floodIP(i)}, Timeout: 5 * time.Second}
		lim := rate.NewLimiter(rate.Limit(r), burst)
		for j := 0; j < perAddr; j++ {
			f.wg.Add(1)
			go f.loop(ctx, d, lim)
		}
	}
}

var (
	evictedText = []byte("connection limit")
	timeoutCond = []byte("connection-timeout")
	streamEnd   = []byte("</stream:stream>")
)

// loop connects, sends the header, reads until the relay ends the stream,
// and starts again.
func (f *flooder) loop(ctx context.Context, d *net.Dialer, lim *rate.Limiter) {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	for {
		if lim.Wait(ctx) != nil {
			return
		}
		c, err := d.DialContext(ctx, "tcp", f.fed)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.dialErrors.Add(1)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		f.connects.Add(1)
		unhook := context.AfterFunc(ctx, func() { c.Close() })
		c.Write(f.header)
		got, n := 0, 0
		for {
			if n > len(buf)-256 {
				n = copy(buf, buf[n-256:n])
			}
			k, err := c.Read(buf[n:])
			if k > 0 && got == 0 {
				f.held.Add(1)
			}
			got += k
			n += k
			if err != nil || bytes.Contains(buf[:n], streamEnd) {
				break
			}
		}
		if got > 0 {
			f.held.Add(-1)
		}
		c.Close()
		unhook()
		if ctx.Err() != nil {
			return
		}
		switch tail := buf[:n]; {
		case got == 0:
			f.refused.Add(1)
		case bytes.Contains(tail, evictedText):
			f.evicted.Add(1)
		case bytes.Contains(tail, timeoutCond):
			f.timedOut.Add(1)
		default:
			f.other.Add(1)
		}
	}
}

// probes are the two servers of the probe domains, with the messages whose
// arrival they wait for.
type probes struct {
	inside, outside         *peer.Server
	insideAddr, outsideAddr string
	// The relay's faces, known once it runs.
	federation, internal atomic.Pointer[string]

	seq     atomic.Int64
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func newProbes() (*probes, error) {
	p := &probes{waiting: map[string]chan struct{}{}}
	inL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		return nil, err
	}
	outL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		inL.Close()
		return nil, err
	}
	p.insideAddr, p.outsideAddr = inL.Addr().String(), outL.Addr().String()
	face := func(a *atomic.Pointer[string]) string {
		if s := a.Load(); s != nil {
			return *s
		}
		return ""
	}
	p.inside = &peer.Server{
		Domains:       []string{probeInternal},
		Authoritative: func(string) string { return face(&p.internal) },
		Timeout:       probeTimeout,
		Handler:       p.handle,
	}
	p.outside = &peer.Server{
		Domains:       []string{probeRemote},
		Authoritative: func(string) string { return face(&p.federation) },
		Timeout:       probeTimeout,
		Handler:       p.handle,
	}
	go p.inside.Serve(inL)
	go p.outside.Serve(outL)
	return p, nil
}

func (p *probes) close() {
	p.inside.Close()
	p.outside.Close()
}

// handle is both servers' Handler: it marks the message with that id as
// arrived.
func (p *probes) handle(_ *peer.Inbound, el *wire.Element) {
	if !el.IsStanza() {
		return
	}
	p.mu.Lock()
	ch := p.waiting[string(el.ID)]
	delete(p.waiting, string(el.ID))
	p.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// probeResult is one probe: a new stream and one message on it.
type probeResult struct {
	ok              bool
	start           time.Time
	setup, delivery time.Duration
	err             string
}

func (p *probes) internalProbe(ctx context.Context) probeResult {
	return p.probe(ctx, p.inside, *p.internal.Load(), probeInternal, probeRemote)
}

func (p *probes) federationProbe(ctx context.Context) probeResult {
	return p.probe(ctx, p.outside, *p.federation.Load(), probeRemote, probeInternal)
}

// probe opens a new stream from → to at addr with s, sends one message on
// it and waits for its arrival.
func (p *probes) probe(ctx context.Context, s *peer.Server, addr, from, to string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	t0 := time.Now()
	st, err := s.Dial(ctx, addr, from, to)
	if err != nil {
		return probeResult{start: t0, err: "stream setup: " + err.Error()}
	}
	defer func() { go st.Close() }()
	r := probeResult{start: t0, setup: time.Since(t0)}
	id := string(stampID(nil, time.Now(), "probe-"+strconv.FormatInt(p.seq.Add(1), 10)))
	arrived := make(chan struct{})
	p.mu.Lock()
	p.waiting[id] = arrived
	p.mu.Unlock()
	t1 := time.Now()
	if _, err := st.Write(appendMessage(nil, "probe@"+from, "user@"+to, []byte(id))); err != nil {
		r.err = "sending: " + err.Error()
	} else {
		select {
		case <-arrived:
			r.ok, r.delivery = true, time.Since(t1)
			return r
		case <-ctx.Done():
			r.err = "message not delivered within " + probeTimeout.String()
		case <-st.Done():
			r.err = "stream ended before the message arrived"
			if e := st.Err(); e != nil {
				r.err += ": " + e.Error()
			}
		}
	}
	p.mu.Lock()
	delete(p.waiting, id)
	p.mu.Unlock()
	return r
}

// probeSet gathers probes of one face.
type probeSet struct {
	n, ok           int
	setup, delivery Samples
	errs            map[string]int
	slow            []probeResult // slower than slowProbe in all
}

// slowProbe is the time (setup and delivery) past which a probe is
// listed in the notes.
const slowProbe = 500 * time.Millisecond

func (ps *probeSet) add(r probeResult) {
	ps.n++
	if !r.ok || r.setup+r.delivery > slowProbe {
		ps.slow = append(ps.slow, r)
	}
	if r.setup > 0 {
		ps.setup.Add(r.setup)
	}
	if r.ok {
		ps.ok++
		ps.delivery.Add(r.delivery)
		return
	}
	if ps.errs == nil {
		ps.errs = map[string]int{}
	}
	ps.errs[r.err]++
}

func (ps *probeSet) figures(figs map[string]float64, face string) {
	figs[face+"_attempts"] = float64(ps.n)
	figs[face+"_delivered"] = float64(ps.ok)
	if ps.n > 0 {
		figs[face+"_success_ratio"] = float64(ps.ok) / float64(ps.n)
	}
	figs[face+"_setup_p50_ms"] = ps.setup.Quantile(0.5)
	figs[face+"_setup_p99_ms"] = ps.setup.Quantile(0.99)
	figs[face+"_setup_max_ms"] = ps.setup.Quantile(1)
	figs[face+"_delivery_p50_ms"] = ps.delivery.Quantile(0.5)
	figs[face+"_delivery_p99_ms"] = ps.delivery.Quantile(0.99)
	figs[face+"_slow"] = float64(len(ps.slow))
}

// slowText lists the probes slower than slowProbe or failed, with their
// start since t0.
func (ps *probeSet) slowText(t0 time.Time) string {
	var b strings.Builder
	for i, r := range ps.slow {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "at %.1f s: setup %.0f ms", r.start.Sub(t0).Seconds(), ms(r.setup))
		if r.ok {
			fmt.Fprintf(&b, ", delivery %.0f ms", ms(r.delivery))
		} else {
			fmt.Fprintf(&b, ", failed (%s)", r.err)
		}
	}
	return b.String()
}

// errorText lists the failures, most frequent first.
func (ps *probeSet) errorText() string {
	if len(ps.errs) == 0 {
		return "none"
	}
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range ps.errs {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d× %s", e.v, e.k)
	}
	return b.String()
}
