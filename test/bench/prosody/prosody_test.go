package prosody_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/bench/prosody"
)

// Loopback addresses of these tests, away from the benchmark's 127.0.9.x.
const (
	deliverIP = "127.0.93.1"
	takenIP   = "127.0.93.2"
	dirIP     = "127.0.93.4"
)

// needProsody skips the test when Prosody cannot be run here, saying why.
func needProsody(t *testing.T) {
	t.Helper()
	if err := prosody.Available(); err != nil {
		t.Skipf("skipping: Prosody cannot be run here: %v", err)
	}
}

// testLog passes Prosody's output to the test log, a line at a time.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Logf("prosody: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// TestDeliver is the package's job end to end: Prosody for p.bench with
// alice and bob, both logged in, 1,000 messages alice → bob over c2s, all
// delivered in order; then Stop leaves no process and no folder behind.
func TestDeliver(t *testing.T) {
	needProsody(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t0 := time.Now()
	srv, err := prosody.Start(ctx, prosody.Options{
		Domain: "p.bench",
		IP:     deliverIP,
		Users:  map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"},
		Log:    testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Stop()
		}
	}()
	pid, dir := srv.PID(), srv.Dir()
	t.Logf("prosody pid %d, c2s %s, s2s %s, started in %v", pid, srv.C2SAddr(), srv.S2SAddr(),
		time.Since(t0).Round(time.Millisecond))
	if srv.C2SAddr() != deliverIP+":5222" || srv.S2SAddr() != deliverIP+":5269" {
		t.Errorf("addresses %s, %s; want the default ports on %s", srv.C2SAddr(), srv.S2SAddr(), deliverIP)
	}
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err != nil || !strings.HasPrefix(string(comm), "lua") {
		t.Errorf("PID %d is %q (%v), want Prosody's Lua interpreter", pid, comm, err)
	}

	alice, err := prosody.Login(ctx, srv.C2SAddr(), "alice@p.bench", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := prosody.Login(ctx, srv.C2SAddr(), "bob@p.bench/bench", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if bob.JID() != "bob@p.bench/bench" {
		t.Errorf("bob bound %q, want bob@p.bench/bench", bob.JID())
	}
	if !strings.HasPrefix(alice.JID(), "alice@p.bench/") {
		t.Errorf("alice bound %q", alice.JID())
	}

	var toAlice atomic.Int64 // errors bounced to alice, say
	var first atomic.Value
	alice.OnMessage(func(raw []byte) {
		if toAlice.Add(1) == 1 {
			first.Store(string(raw))
		}
	})
	// bob checks order and content: message i carries body "m i".
	var next, wrong int
	var want []byte
	bob.OnMessage(func(raw []byte) {
		want = fmt.Appendf(want[:0], "<body>m %d</body>", next)
		if bytes.Contains(raw, want) {
			next++
		} else {
			wrong++
		}
	})

	const n = 1000
	t1 := time.Now()
	for i := range n {
		if err := alice.Send(fmt.Sprintf("<message to='bob@p.bench' type='chat' id='b%d'><body>m %d</body></message>", i, i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for bob.Received() < n && time.Since(t1) < time.Minute {
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(t1)
	if got := bob.Received(); got != n {
		t.Fatalf("bob received %d of %d messages in %v (bob: %v, alice: %v); alice received %d, the first: %v",
			got, n, el, bob.Err(), alice.Err(), toAlice.Load(), first.Load())
	}
	t.Logf("%d messages alice → bob in %v: %.0f/s", n, el.Round(time.Millisecond), n/el.Seconds())
	if next != n || wrong != 0 { // read after Received: ordered by the counter
		t.Errorf("bob got %d messages in order and %d unexpected ones", next, wrong)
	}
	if k := toAlice.Load(); k != 0 {
		t.Errorf("alice received %d messages, the first: %s", k, first.Load())
	}

	// carol is not online and nothing stores messages for later: the
	// message bounces, which OnMessage sees and Received does not count.
	if err := alice.Send("<message to='carol@p.bench' type='chat' id='c1'><body>later?</body></message>"); err != nil {
		t.Fatal(err)
	}
	for toAlice.Load() == 0 && time.Since(t1) < time.Minute {
		time.Sleep(2 * time.Millisecond)
	}
	if b, _ := first.Load().(string); !strings.Contains(b, "type='error'") || !strings.Contains(b, "service-unavailable") {
		t.Errorf("message to offline carol: alice got %q, want a service-unavailable bounce", b)
	}
	if k := alice.Received(); k != 0 {
		t.Errorf("alice.Received() = %d, want 0: bounces are not counted", k)
	}

	if err := alice.Close(); err != nil {
		t.Errorf("alice: %v", err)
	}
	if err := bob.Close(); err != nil {
		t.Errorf("bob: %v", err)
	}
	if err := bob.Send("<presence/>"); err == nil {
		t.Error("Send after Close succeeded")
	}

	stopped = true
	t2 := time.Now()
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(t2).Round(time.Millisecond))
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after Stop, signal 0 to pid %d: %v; want ESRCH (no such process)", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop, the temporary folder %s: %v; want it removed", dir, err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartPortTaken: Start refuses, naming the address, when something
// else already listens on the c2s or the s2s port.
func TestStartPortTaken(t *testing.T) {
	needProsody(t)
	for _, tc := range []struct {
		name string
		port string
	}{{"c2s", "5222"}, {"s2s", "5269"}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", net.JoinHostPort(takenIP, tc.port))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv, err := prosody.Start(ctx, prosody.Options{Domain: "p.bench", IP: takenIP, Log: testLog{t}})
			if err == nil {
				srv.Stop()
				t.Fatalf("Start succeeded with %s taken", l.Addr())
			}
			t.Logf("Start: %v", err)
			if msg := err.Error(); !strings.Contains(msg, l.Addr().String()) || !strings.Contains(msg, "not free") {
				t.Errorf("error %q does not say that %s is taken", msg, l.Addr())
			}
		})
	}
}

// TestStartRefusesOptions: options that cannot work are refused before
// anything is written or started, wherever the tests run.
func TestStartRefusesOptions(t *testing.T) {
	ok := prosody.Options{Domain: "p.bench", IP: "127.0.93.3"}
	for _, tc := range []struct {
		name string
		edit func(*prosody.Options)
		want string
	}{
		{"no domain", func(o *prosody.Options) { o.Domain = "" }, "Options.Domain"},
		{"domain with a quote", func(o *prosody.Options) { o.Domain = `p".bench` }, "Options.Domain"},
		{"no IP", func(o *prosody.Options) { o.IP = "" }, "Options.IP"},
		{"IP not loopback", func(o *prosody.Options) { o.IP = "192.0.2.1" }, "not a loopback"},
		{"same ports", func(o *prosody.Options) { o.C2SPort, o.S2SPort = 5300, 5300 }, "both on port"},
		{"port out of range", func(o *prosody.Options) { o.S2SPort = 70000 }, "out of range"},
		{"bad host name", func(o *prosody.Options) { o.Hosts = map[string]string{"a b": "127.0.0.1"} }, "Options.Hosts"},
		{"bad host address", func(o *prosody.Options) { o.Hosts = map[string]string{"r.bench": "r.bench"} }, "Options.Hosts"},
		{"user without password", func(o *prosody.Options) { o.Users = map[string]string{"alice": ""} }, "no password"},
		{"bad user name", func(o *prosody.Options) { o.Users = map[string]string{"Al ice": "x"} }, "user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			srv, err := prosody.Start(context.Background(), o)
			if err == nil {
				srv.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestStartDir: a Dir given is kept, with the configuration and logs, and
// one the prosody user cannot reach is refused with a clear error.
func TestStartDir(t *testing.T) {
	needProsody(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	hidden := filepath.Join(t.TempDir(), "p") // t.TempDir() is 0700 root
	if os.Geteuid() == 0 {
		_, err := prosody.Start(ctx, prosody.Options{Dir: hidden, Domain: "p.bench", IP: dirIP})
		if err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Errorf("Start in %s: %v; want an error saying prosody cannot reach it", hidden, err)
		}
	}

	parent, err := os.MkdirTemp("", "fedrelay-prosody-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "p")
	srv, err := prosody.Start(ctx, prosody.Options{Dir: dir, Domain: "p.bench", IP: dirIP,
		Hosts: map[string]string{"relay.bench": "127.0.93.5"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "prosody.cfg.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`VirtualHost "p.bench"`, `interfaces = { "` + dirIP + `" }`, "s2s_secure_auth = false",
		"s2s_require_encryption = true", `"dialback"`, `modules_disabled = { "offline" }`, `data_path = "` + dir + `/data"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("configuration lacks %s:\n%s", want, cfg)
		}
	}
	if hosts, _ := os.ReadFile(filepath.Join(dir, "hosts")); string(hosts) != "127.0.93.5 relay.bench\n" {
		t.Errorf("hosts file %q", hosts)
	}
	for _, name := range []string{"prosody.log", "prosody.out", "certs/p.bench.crt", "certs/p.bench.key"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("after Stop: %v", err)
		}
	}
	// Whether prosody.log shows "Received SIGTERM" depends on whether the
	// signal came before mod_posix set its handler (Stop accepts both), so
	// it is not checked here.
}
