//go:build interop

package interop_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lab is the running topology (see doc.go) shared by the scenarios.
type lab struct {
	dir     string
	net     string // first three octets of the loopback addresses
	dns     *publicDNS
	relay   *relay
	a, b, d *prosody
	c       *ejabberd
	clients *logWriter // c2s transcripts of every client

	alice, bob, dave, carol, erin Account

	seq atomic.Int64
}

// ip returns the loopback address ending in last.
func (l *lab) ip(last int) string { return fmt.Sprintf("%s.%d", l.net, last) }

// wait bounds every wait for something a user should see; the first
// stanza between two servers also sets up their streams and dialback.
const wait = 20 * time.Second

// requireOrSkip skips the tests when they cannot run here, or fails them
// when FEDRELAY_INTEROP_REQUIRE=1 (CI) says they must.
func requireOrSkip(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (Prosody runs as the prosody user, the DNS servers on port 53)")
	}
	for _, bin := range []string{"prosody", "prosodyctl", "ejabberdctl", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (apt-get install prosody lua-unbound ejabberd)")
		}
	}
	// Without lua-unbound Prosody falls back to a resolver that ignores
	// the per-server resolv.conf the tests give it.
	if m, _ := filepath.Glob("/usr/lib/*/lua/5.*/lunbound.so"); len(m) == 0 {
		missing = append(missing, "lua-unbound (Prosody's resolver)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "interop tests need: " + strings.Join(missing, "; ")
	if os.Getenv("FEDRELAY_INTEROP_REQUIRE") == "1" {
		t.Fatal(msg + " (FEDRELAY_INTEROP_REQUIRE=1: not skipping)")
	}
	t.Skip(msg)
}

// newLab starts the whole topology; t.Cleanup stops every part of it, also
// when a scenario fails or panics.
func newLab(t *testing.T) *lab {
	requireOrSkip(t)
	l := &lab{net: "127.0.77"}
	if n := os.Getenv("FEDRELAY_INTEROP_NET"); n != "" {
		l.net = n
	}
	if err := checkFree([]string{
		"tcp/" + l.ip(2) + ":5222", "tcp/" + l.ip(2) + ":5269",
		"tcp/" + l.ip(3) + ":5222", "tcp/" + l.ip(3) + ":5269",
		"tcp/" + l.ip(4) + ":5222", "tcp/" + l.ip(4) + ":5269", "tcp/" + l.ip(4) + ":5290",
		"tcp/" + l.ip(5) + ":5222", "tcp/" + l.ip(5) + ":5269",
		"tcp/" + l.ip(10) + ":5269", "tcp/" + l.ip(11) + ":5269",
		"tcp/" + l.ip(53) + ":53", "udp/" + l.ip(53) + ":53",
		"tcp/" + l.ip(54) + ":53", "udp/" + l.ip(54) + ":53",
	}); err != nil {
		t.Fatal(err)
	}

	var err error
	if l.dir, err = os.MkdirTemp("", "fedrelay-interop-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(l.dir, 0o755) // the servers run as their own users
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("FEDRELAY_INTEROP_KEEP") == "1" {
			t.Logf("configurations and logs kept in %s", l.dir)
			return
		}
		os.RemoveAll(l.dir)
	})
	t.Logf("run directory %s", l.dir)
	step := func(what string, f func() error) {
		t.Helper()
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s (%v)", what, time.Since(t0).Round(time.Millisecond))
	}

	f, err := os.Create(filepath.Join(l.dir, "c2s.log"))
	if err != nil {
		t.Fatal(err)
	}
	l.clients = &logWriter{f: f}
	t.Cleanup(func() { f.Close() })

	dnsLog, err := os.Create(filepath.Join(l.dir, "dns.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsLog.Close() })
	step("public DNS on "+l.ip(54)+":53", func() error {
		l.dns, err = newPublicDNS(fmt.Sprintf(`
relay.test. 60 IN A %[1]s
_xmpp-server._tcp.a.test. 60 IN SRV 0 5 5269 relay.test.
_xmpp-server._tcp.d.test. 60 IN SRV 0 5 5269 relay.test.
b.test. 60 IN A %[2]s
_xmpp-server._tcp.b.test. 60 IN SRV 0 5 5269 b.test.
c.test. 60 IN A %[3]s
_xmpp-server._tcp.c.test. 60 IN SRV 0 5 5269 c.test.
`, l.ip(10), l.ip(3), l.ip(4)), &logWriter{f: dnsLog})
		if err != nil {
			return err
		}
		return l.dns.start(l.ip(54) + ":53")
	})
	t.Cleanup(l.dns.stop)

	step("/etc/hosts: relay.test for ejabberd", func() error {
		return addHosts(map[string]string{"relay.test": l.ip(10)})
	})
	t.Cleanup(func() {
		if err := removeHosts(); err != nil {
			t.Errorf("removing our /etc/hosts lines: %v", err)
		}
	})

	rdir := filepath.Join(l.dir, "relay")
	os.MkdirAll(rdir, 0o755)
	l.relay = &relay{dir: rdir, fed: l.ip(10) + ":5269", intl: l.ip(11) + ":5269", dnsAddr: l.ip(53) + ":53",
		route: l.ip(2) + ":5269", routeD: l.ip(5) + ":5269", pubDNS: l.ip(54) + ":53"}
	var caPEM []byte
	step("the relay's internal CA", func() error {
		caPEM, l.relay.caCert, l.relay.caKey, err = newInternalCA(rdir)
		return err
	})
	step("fedrelay (in process)", func() error { return l.relay.start(nil) })
	t.Cleanup(func() {
		if err := l.relay.shutdown(); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
		if l.relay.logf != nil {
			l.relay.logf.Close()
		}
	})

	l.alice = Account{Addr: l.ip(2) + ":5222", Domain: "a.test", User: "alice", Password: "alice-pw"}
	l.bob = Account{Addr: l.ip(3) + ":5222", Domain: "b.test", User: "bob", Password: "bob-pw"}
	l.dave = Account{Addr: l.ip(3) + ":5222", Domain: "b.test", User: "dave", Password: "dave-pw"}
	l.carol = Account{Addr: l.ip(4) + ":5222", Domain: "c.test", User: "carol", Password: "carol-pw"}
	l.erin = Account{Addr: l.ip(5) + ":5222", Domain: "d.test", User: "erin", Password: "erin-pw"}

	step("ejabberd c.test configured", func() error {
		l.c, err = newEjabberd(filepath.Join(l.dir, "c.test"), "c.test", l.ip(4), 5290, l.ip(54))
		return err
	})
	// ejabberd takes a second or two to start: let it while Prosody is set
	// up. Its cleanup waits for the start to finish, so that a failure
	// meanwhile cannot leave it running.
	ejStarted, ejDone := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ejDone)
		ejStarted <- l.c.start()
	}()
	t.Cleanup(func() {
		<-ejDone
		if err := l.c.stop(); err != nil {
			t.Errorf("ejabberd: %v", err)
		}
	})
	step("prosody a.test configured, alice registered", func() error {
		l.a, err = newProsody(filepath.Join(l.dir, "a.test"), "a.test", l.ip(2), l.ip(53),
			map[string]string{"alice": l.alice.Password}, nil)
		return err
	})
	step("prosody b.test configured, bob and dave registered", func() error {
		l.b, err = newProsody(filepath.Join(l.dir, "b.test"), "b.test", l.ip(3), l.ip(54),
			map[string]string{"bob": l.bob.Password, "dave": l.dave.Password}, nil)
		return err
	})
	step("prosody d.test configured (s2s_secure_auth, trusting the relay's internal CA), erin registered", func() error {
		l.d, err = newProsody(filepath.Join(l.dir, "d.test"), "d.test", l.ip(5), l.ip(53),
			map[string]string{"erin": l.erin.Password}, caPEM)
		return err
	})
	t.Cleanup(func() {
		for _, p := range []*prosody{l.a, l.b, l.d} {
			if p == nil {
				continue
			}
			if err := p.stop(); err != nil {
				t.Errorf("prosody: %v", err)
			}
		}
	})
	step("prosody a.test started", l.a.start)
	step("prosody b.test started", l.b.start)
	step("prosody d.test started", l.d.start)
	step("ejabberd c.test started", func() error { return <-ejStarted })
	step("carol registered on c.test", func() error { return l.c.register(l.carol.User, l.carol.Password) })
	return l
}

// logs lists every log file of the run.
func (l *lab) logs() []string {
	out := []string{filepath.Join(l.relay.dir, "relay.log"), l.relay.auditLog(),
		filepath.Join(l.dir, "dns.log"), filepath.Join(l.dir, "c2s.log")}
	out = append(out, l.a.logs()...)
	out = append(out, l.b.logs()...)
	out = append(out, l.d.logs()...)
	return append(out, l.c.logs()...)
}

// watchLogs prints, if t fails, the end of what every log got during t.
func (l *lab) watchLogs(t *testing.T) {
	start := map[string]int64{}
	for _, p := range l.logs() {
		if fi, err := os.Stat(p); err == nil {
			start[p] = fi.Size()
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range l.logs() {
			b, err := os.ReadFile(p)
			if err != nil || int64(len(b)) <= start[p] {
				continue
			}
			t.Logf("---- %s (last lines written during %s) ----\n%s", strings.TrimPrefix(p, l.dir+"/"), t.Name(),
				lastLines(b[start[p]:], 40))
		}
	})
}

// token returns a unique message body.
func (l *lab) token(what string) string {
	return fmt.Sprintf("%s #%d (pid %d)", what, l.seq.Add(1), os.Getpid())
}

// login logs acct in with resource res, logged out when t ends.
func (l *lab) login(t *testing.T, acct Account, res string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := Login(ctx, acct.User+"/"+res, acct, res, l.clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// want is one stanza a scenario waits for, on one client.
type want struct {
	c     *Client
	what  string
	match func(*Element) bool
}

// await waits for the first of several stanzas, on one or more clients,
// and reports which came (its index) and what it was. Stanzas that match
// none stay in their client's backlog for later waits.
func await(t testing.TB, d time.Duration, wants ...want) (int, *Element) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for i, w := range wants {
			if el := w.c.take(w.match); el != nil {
				return i, el
			}
		}
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(time.Until(deadline)))}}
		var from []*Client
		for _, w := range wants {
			if !contains(from, w.c) {
				from = append(from, w.c)
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w.c.in)})
			}
		}
		i, v, ok := reflect.Select(cases)
		if i == 0 {
			var whats, seen []string
			for _, w := range wants {
				whats = append(whats, w.c.Name+": "+w.what)
			}
			for _, c := range from {
				for _, el := range c.backlog {
					seen = append(seen, c.Name+" got "+el.String())
				}
			}
			t.Fatalf("none of [%s] within %v; stanzas seen meanwhile:\n\t%s", strings.Join(whats, "; "), d,
				strings.Join(seen, "\n\t"))
		}
		c := from[i-1]
		if !ok {
			t.Fatalf("%s: stream ended: %v", c.Name, c.err)
		}
		c.backlog = append(c.backlog, v.Interface().(*Element))
	}
}

func contains(cs []*Client, c *Client) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// expect waits for one stanza on one client.
func expect(t testing.TB, c *Client, what string, match func(*Element) bool) *Element {
	t.Helper()
	_, el := await(t, wait, want{c, what, match})
	return el
}
