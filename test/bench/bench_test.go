package bench

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestMain(m *testing.M) {
	MaybeRunChild()
	os.Exit(m.Run())
}

// TestQuickAll runs `fedrelay-bench --quick all` as a user would (the
// command built from this tree, without the race detector, the relay as
// its own process) and checks that every scenario produced its figures:
// the tool cannot rot unnoticed.
func TestQuickAll(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the quick benchmark run takes about two minutes")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "fedrelay-bench")
	build := exec.Command("go", "build", "-o", exe, "github.com/fedrelay/fedrelay/cmd/fedrelay-bench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, "--quick", "--json", filepath.Join(dir, "bench.json"),
		"--markdown", filepath.Join(dir, "BENCHMARKS.md"), "all")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("fedrelay-bench --quick all: %s\n%s", time.Since(start).Round(time.Second), stderr.String())
	if err != nil {
		t.Fatalf("fedrelay-bench: %v", err)
	}
	results, err := ReadJSON(&stdout)
	if err != nil {
		t.Fatalf("reading its JSON: %v", err)
	}
	want := map[string][]string{
		"throughput": {"in, 1 streams:relay_us_per_stanza", "out, 16 streams:relay_us_per_stanza", "floor, 1 streams:floor_us_per_stanza", "in, 16 streams:allocs_per_stanza"},
		"latency":    {"relay, 1 in flight:p99_ms", "direct, 50% of max:p99_ms", "relay, 50% of max:added_p99_ms", "floor, 10% of max:p50_ms"},
		"idle":       {"300 inbound + 300 outbound:rss_kib_per_inbound", "300 inbound + 300 outbound:rss_kib_per_outbound"},
		"setup":      {"paced, 200 domains at 100/s:setups_per_cpu_s", "burst of 200 domains:first_delivery_ms"},
		"dead":       {"150 dead domains:first_bounce_p99_ms", "150 dead domains:healthy_p99_ratio", "150 dead domains:goroutines_after"},
		"fanout":     {"warm, 1000 presences to 100 domains:completion_p50_ms", "cold, 1000 presences to 100 domains:completion_p50_ms"},
		"flood": {"20 addresses × 100 pre-auth connections, max_streams 2000:internal_success_ratio",
			"20 addresses × 100 pre-auth connections, max_streams 2000:federation_success_ratio",
			"20 addresses × 100 pre-auth connections, max_streams 2000:held_fraction", "baseline, no flood:federation_setup_p50_ms"},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for _, r := range results {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Scenario, r.Error)
		}
		if r.Mode != "quick" || r.Host.Cores == 0 || r.Host.GoVersion == "" || r.Relay.CPUSeconds <= 0 || r.Relay.PeakRSS <= 0 {
			t.Errorf("%s: incomplete result header: %+v", r.Scenario, r)
		}
		// The quick mode's promise is under 30 s a scenario; under `go test
		// ./...` other packages' tests share the two cores, so only twice
		// that fails the test.
		if r.Seconds > 30 {
			t.Logf("%s: %.0f s in quick mode (promised: under 30 s; load average %.2f)", r.Scenario, r.Seconds, r.Load.End)
		}
		if r.Seconds > 60 {
			t.Errorf("%s: %.0f s in quick mode, want under 30", r.Scenario, r.Seconds)
		}
		for _, cf := range want[r.Scenario] {
			name, fig, _ := strings.Cut(cf, ":")
			c := r.Find(name)
			if c == nil {
				t.Errorf("%s: no case %q", r.Scenario, name)
				continue
			}
			s, ok := c.Figures[fig]
			if !ok || s.N != 1 || math.IsNaN(s.Median) {
				t.Errorf("%s, %s: figure %s missing: %v", r.Scenario, name, fig, c.Figures)
			}
		}
		if len(r.Targets) == 0 && r.Scenario != "fanout" {
			t.Errorf("%s: no targets", r.Scenario)
		}
	}
	tp := results[0]
	if tp.Scenario == "throughput" {
		if len(tp.Profile) < 3 {
			t.Errorf("throughput: no CPU profile (%v)", tp.Notes)
		}
		if tp.Relay.AllocsPerStanza <= 0 {
			t.Errorf("throughput: allocations per stanza not measured")
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Targets", "## throughput", "## dead", "| in, 16 streams |"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("BENCHMARKS.md lacks %q", s)
		}
	}
}

func TestStampID(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	id := stampID(nil, now, "d17-3")
	got, ok := sentAt(id)
	if !ok || got != now.UnixNano() {
		t.Fatalf("sentAt(%q) = %d, %v", id, got, ok)
	}
	for _, bad := range []string{"", "t", "x123", "t-1"} {
		if _, ok := sentAt([]byte(bad)); ok {
			t.Errorf("sentAt(%q) accepted", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { sentAt(id) }); n != 0 {
		t.Errorf("sentAt allocates %v times", n)
	}
}

func TestSamplesAndSpread(t *testing.T) {
	var s Samples
	for i := 1; i <= 10; i++ {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	// Reserve keeps what was added, and what it reserved takes the rest
	// without the slice moving.
	s.Reserve(990)
	first := &s.d[0]
	for i := 11; i <= 1000; i++ {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	if &s.d[0] != first {
		t.Errorf("the samples moved after Reserve(990): it did not make room")
	}
	p := s.Summary()
	if p.P50 != 500 || p.P99 != 990 || p.P999 != 999 || p.Max != 1000 || p.N != 1000 {
		t.Errorf("summary %+v", p)
	}
	sp := SpreadOf([]float64{3, math.NaN(), 1, 2})
	if sp != (Spread{Min: 1, Median: 2, Max: 3, N: 3}) {
		t.Errorf("spread %+v", sp)
	}
	if sp := SpreadOf(nil); sp.N != 0 {
		t.Errorf("empty spread %+v", sp)
	}
	// JSON has no NaN: an empty spread must still encode.
	var r Result
	var cs caseSet
	cs.add("c", map[string]float64{"x": math.NaN(), "y": 1})
	r.Cases = cs.cases()
	r.target("t", "≤ 1", math.NaN(), "ms", 1, true)
	if err := WriteJSON(io.Discard, []*Result{&r}); err != nil {
		t.Errorf("WriteJSON: %v", err)
	}
}

// TestTicks: samples added with their send time are summarised by tick,
// in arrival order, whatever the percentiles did to the samples since.
func TestTicks(t *testing.T) {
	var s Samples
	s.Reserve(8)
	ms := int64(time.Millisecond)
	us := time.Microsecond
	// Tick 0 (3 stanzas) still arrives after tick 1 was sent; tick 1 (1)
	// is done before tick 2 (2 stanzas), which tick 3 (2) finds busy.
	for _, a := range []struct {
		sent int64
		d    time.Duration
	}{
		{0, 100 * us}, {0, 600 * us}, {0, 1500 * us},
		{ms, 700 * us},
		{2 * ms, 200 * us}, {2 * ms, 1200 * us},
		{3 * ms, 300 * us}, {3 * ms, 400 * us},
	} {
		s.AddSent(a.sent, a.d)
	}
	if p := s.Summary(); p.N != 8 || p.Max != 1.5 {
		t.Errorf("summary %+v", p)
	}
	f := s.Ticks() // after Summary sorted the samples
	want := TickFigures{Ticks: 4, SizeP50: 2, SizeP99: 3, FirstP50: 0.2, FirstP99: 0.7,
		LastP50: 0.7, LastP99: 1.5, BusyShare: 0.5}
	if f != want {
		t.Errorf("ticks %+v, want %+v", f, want)
	}
	var none Samples
	none.Add(time.Millisecond)
	if f := none.Ticks(); f.Ticks != 0 || !math.IsNaN(f.LastP99) {
		t.Errorf("ticks of samples without send times: %+v", f)
	}
}

func TestTargets(t *testing.T) {
	var r Result
	r.target("cpu", "≤ 1.0 µs", 1.6, "µs", 1, true)
	r.target("setups", "≥ 1,000", 400, "/s", 1000, false)
	r.target("ok", "≤ 1 ms", 0.5, "ms", 1, true)
	if r.Targets[0].Met || r.Targets[0].By != "missed: 1.60× the target" {
		t.Errorf("%+v", r.Targets[0])
	}
	if r.Targets[1].Met || r.Targets[1].By != "missed: 2.50× the target" {
		t.Errorf("%+v", r.Targets[1])
	}
	if !r.Targets[2].Met {
		t.Errorf("%+v", r.Targets[2])
	}
}

func TestParseMetrics(t *testing.T) {
	in := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\n" +
		"go_memstats_mallocs_total 1.5e+06\nfedrelay_x{face=\"internal\"} 3\n\n"
	m, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m["go_memstats_mallocs_total"] != 1.5e6 || m[`fedrelay_x{face="internal"}`] != 3 {
		t.Errorf("%v", m)
	}
}

func TestReadProc(t *testing.T) {
	ps, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps.RSS <= 0 || ps.PeakRSS < ps.RSS || ps.Threads <= 0 || ps.CPU < 0 {
		t.Errorf("%+v", ps)
	}
	// Burn some CPU: the figure must grow.
	deadline := time.Now().Add(150 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	ps2, _ := ReadProc(os.Getpid())
	if ps2.CPU <= ps.CPU {
		t.Errorf("CPU did not grow: %v → %v", ps.CPU, ps2.CPU)
	}
}

// TestRunQueueWait: run_delay is read from a schedstat line, and a process
// that keeps more threads busy than there are cores sees its threads' wait
// grow by a good part of the time they were kept busy.
func TestRunQueueWait(t *testing.T) {
	if d, err := parseRunDelay("220555341 17009611 368\n"); err != nil || d != 17009611*time.Nanosecond {
		t.Errorf("parseRunDelay: %v, %v", d, err)
	}
	if _, err := parseRunDelay("220555341"); err == nil {
		t.Error("parseRunDelay accepted one field")
	}
	before, err := RunQueueWait(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Twice as many spinning threads as cores, for 300 ms: each is
	// runnable all along and can run about half of it.
	spin := 2 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(spin))
	const busy = 300 * time.Millisecond
	var wg sync.WaitGroup
	for range spin {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for deadline := time.Now().Add(busy); time.Now().Before(deadline); {
			}
		}()
	}
	wg.Wait()
	after, err := RunQueueWait(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Half of spin threads × busy in theory; a quarter of it at least.
	if got, want := after-before, time.Duration(spin)*busy/4; got < want {
		t.Errorf("run-queue wait grew by %v with %d threads spinning %v on %d cores, want at least %v", got, spin, busy, runtime.NumCPU(), want)
	}
}

// FuzzParseRunDelay: any line either fails or gives its second field.
func FuzzParseRunDelay(f *testing.F) {
	for _, s := range []string{"220555341 17009611 368\n", "1 2", "", "1", "1 x 3", "1 -5 0", "1 99999999999999999999 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		d, err := parseRunDelay(line)
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			t.Fatalf("parseRunDelay(%q) = %v from fewer than two fields", line, d)
		}
		if n, err := strconv.ParseInt(fields[1], 10, 64); err != nil || time.Duration(n) != d {
			t.Errorf("parseRunDelay(%q) = %v, not its second field", line, d)
		}
	})
}

func TestNameserver(t *testing.T) {
	ns, err := StartNameserver("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// The UDP and TCP servers got different ports from :0; ask the UDP one.
	addr := ns.servers[0].PacketConn.LocalAddr().String()
	ns.Set("dead.test", NXDomain, "")
	ns.Set("quiet.test", Silent, "")
	ns.SetLookup(func(d string) (Answer, string, bool) {
		if strings.HasSuffix(d, ".remote.bench") {
			return Serve, "127.0.0.9:5269", true
		}
		return 0, "", false
	})
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	ask := func(name string, qt uint16) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		r, _, err := c.Exchange(m, addr)
		return r, err
	}
	r, err := ask("_xmpp-server._tcp.x1.remote.bench.", dns.TypeSRV)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("SRV: %v %v", r, err)
	}
	srv := r.Answer[0].(*dns.SRV)
	if srv.Port != 5269 || srv.Target != "s2s-target.x1.remote.bench." {
		t.Errorf("SRV %v", srv)
	}
	a, err := ask(srv.Target, dns.TypeA)
	if err != nil || len(a.Answer) != 1 || !a.Answer[0].(*dns.A).A.Equal(net.ParseIP("127.0.0.9")) {
		t.Errorf("A of target: %v %v", a, err)
	}
	if r, err := ask("_xmpps-server._tcp.x1.remote.bench.", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("xmpps: %v %v", r, err)
	}
	if r, err := ask("_xmpp-server._tcp.dead.test.", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("nxdomain: %v %v", r, err)
	}
	if r, err := ask("_xmpp-server._tcp.other.test.", dns.TypeSRV); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown: %v %v", r, err)
	}
	if _, err := ask("_xmpp-server._tcp.quiet.test.", dns.TypeSRV); err == nil {
		t.Errorf("silent domain answered")
	}
	if n := ns.Queries("x1.remote.bench"); n != 3 {
		t.Errorf("queries about x1.remote.bench: %d, want 3", n)
	}
}

// TestForwardElements: the floor passes the header and every element
// through unchanged, and stops at the stream's end.
func TestForwardElements(t *testing.T) {
	in := "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " +
		"xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>" +
		"<db:result from='a.test' to='b.test'>key</db:result>" +
		"<message from='x@a.test' to='y@b.test' id='1'><body>hi &amp; bye</body></message>" +
		"<presence from='x@a.test' to='y@b.test'/></stream:stream>"
	var out bytes.Buffer
	err := forwardElements(&out, strings.NewReader(in))
	if err != io.EOF {
		t.Fatalf("forwardElements: %v", err)
	}
	got := out.String()
	for _, s := range []string{"<stream:stream", "<db:result from='a.test' to='b.test'>key</db:result>",
		"<message from='x@a.test' to='y@b.test' id='1'><body>hi &amp; bye</body></message>", "<presence from='x@a.test' to='y@b.test'/>"} {
		if !strings.Contains(got, s) {
			t.Errorf("output lacks %q:\n%s", s, got)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	var cs caseSet
	cs.add("in, 1 streams", map[string]float64{"relay_us_per_stanza": 1.5, "stanzas_per_s": 100000})
	cs.add("in, 1 streams", map[string]float64{"relay_us_per_stanza": 1.7, "stanzas_per_s": 90000})
	cs.add("floor, 1 streams", map[string]float64{"floor_us_per_stanza": 0.6})
	r := &Result{Scenario: "throughput", Mode: "full", Host: ThisHost(), Repetitions: 2, Cases: cs.cases(),
		Profile: []string{"Duration: 2s", "flat flat% sum%"}}
	r.target("relay CPU per forwarded stanza", "≤ 1.0 µs", 1.6, "µs", 1, true)
	var b bytes.Buffer
	if err := WriteMarkdown(&b, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, s := range []string{"| in, 1 streams | 1.60 (1.50–1.70) | 95000 (90000–100000) |", "| floor, 1 streams | 0.60 |",
		"missed: 1.60× the target", "Duration: 2s"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	// The JSON round trip keeps what the report needs.
	var j bytes.Buffer
	WriteJSON(&j, []*Result{r})
	back, err := ReadJSON(&j)
	if err != nil || len(back) != 1 || back[0].Median("in, 1 streams", "relay_us_per_stanza") != 1.6 {
		t.Errorf("round trip: %v %v", back, err)
	}
}
