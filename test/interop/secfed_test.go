//go:build interop

package interop_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/s2s"
)

// 8. Secure federation: the relay, b.test (Prosody) and c.test (ejabberd)
// all hold certificates of the test's public CA and require them:
// federation.secure_auth with tls.ca_file that CA and the internal
// domains' cert_file (e.corp.test's is a wildcard certificate for
// *.corp.test); b.test with s2s_secure_auth = true, c.test with
// s2s_use_starttls: required, both trusting that CA and listening for
// direct TLS (XEP-0368) besides.
//
// Sub-test starttls: messages both ways between each internal domain and
// each public one over STARTTLS, every stream authenticated by SASL
// EXTERNAL: b.test and c.test authenticate to the relay with it (the
// relay's log), and the relay authenticates a.test and e.corp.test to them
// with it (their logs).
//
// Sub-test direct-tls: with _xmpps-server records for every domain
// (pointing at the relay's listen_tls and at b.test's and c.test's direct
// TLS ports, with a better priority than _xmpp-server's) and fresh
// streams, messages flow both ways again; the relay's links to b.test and
// c.test and their streams to the relay are all direct TLS (the kernel's
// table of the relay's sockets says which listener took each stream);
// with ejabberd 24.12, whose own outbound direct TLS is unreliable (see
// below), the relay's domains publish no _xmpps-server record and the
// servers' streams to the relay are all STARTTLS.
func (l *lab) secureFederation(t *testing.T) {
	l.watchLogs(t)
	for i, d := range l.relay.domains {
		name := d.name
		if name == "e.corp.test" {
			name = "*.corp.test" // a domain on a wildcard certificate
		}
		l.relay.domains[i].cert, l.relay.domains[i].key = l.pki.Issue(t, name)
	}
	if err := l.b.configure(l.bOpts(t, true)); err != nil {
		t.Fatal(err)
	}
	if err := l.c.configure(l.cOpts(t, true)); err != nil {
		t.Fatal(err)
	}
	restartAll := func() {
		t.Helper()
		if err := l.relay.shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		l.relay.secureCA, l.relay.fedTLS = l.pki.File(), l.ip(10)+":5270"
		if err := l.relay.start(nil); err != nil {
			t.Fatal(err)
		}
		if err := l.b.restart(); err != nil {
			t.Fatal(err)
		}
		if err := l.c.restart(); err != nil {
			t.Fatal(err)
		}
		// ejabberd bounces, for a while, what it routes to a domain whose
		// stream closed with an error (here the relay's system-shutdown):
		// e.corp.test starts afresh too.
		if err := l.e.restart(); err != nil {
			t.Fatal(err)
		}
	}
	restartAll()
	t.Logf("relay with federation.secure_auth and CA-issued certificates, b.test and c.test requiring certificates")

	relayLog := filepath.Join(l.relay.dir, "relay.log")
	blog := filepath.Join(l.b.dir, "prosody.log")
	clog := filepath.Join(l.c.dir, "logs", "ejabberd.log")
	exchange := func(t *testing.T, tag string) {
		t.Helper()
		alice := l.login(t, l.alice, tag)
		frank := l.login(t, l.frank, tag)
		bob := l.login(t, l.bob, tag)
		carol := l.login(t, l.carol, tag)
		for _, p := range []struct{ from, to *Client }{{alice, bob}, {bob, alice}, {alice, carol}, {carol, alice},
			{frank, bob}, {bob, frank}, {frank, carol}, {carol, frank}} {
			body := l.token(tag + " hello from " + p.from.Name)
			took := l.deliver(t, p.from, p.to, body)
			t.Logf("%s → %s delivered in %v", bare(p.from.JID), bare(p.to.JID), took.Round(time.Millisecond))
		}
		noErrors(t, alice, frank, bob, carol)
	}
	// streams lists the relay's federation streams with b.test and c.test.
	streams := func(t *testing.T) {
		t.Helper()
		for _, si := range l.relay.cur.Server.Streams() {
			if si.Face == "federation" {
				t.Logf("relay stream: %s local=%v remote=%v auth=%s cert_verified=%v tls=%s peer=%s", si.Direction,
					si.Local, si.Remote, si.Auth, si.CertVerified, si.TLSVersion, si.Peer)
			}
		}
	}

	t.Run("starttls", func(t *testing.T) {
		l.watchLogs(t)
		from, bfrom, cfrom := fileSize(relayLog), fileSize(blog), fileSize(clog)
		exchange(t, "s8")
		streams(t)
		for _, d := range []string{"b.test", "c.test"} {
			if len(grepAll(relayLog, from, `msg="peer authenticated by SASL EXTERNAL"`, "domain="+d)) == 0 {
				t.Errorf("relay log: %s did not authenticate by SASL EXTERNAL", d)
			}
		}
		for _, d := range []string{"a.test", "e.corp.test"} {
			if len(grepFrom(blog, bfrom, "Accepting SASL EXTERNAL identity from "+d)) == 0 {
				t.Errorf("b.test's log: the relay did not authenticate %s by SASL EXTERNAL", d)
			}
			if len(grepFrom(blog, bfrom, "SASL EXTERNAL with "+d+" succeeded")) == 0 {
				t.Errorf("b.test's log: b.test did not authenticate to %s by SASL EXTERNAL", d)
			}
		}
		for _, d := range []string{"a.test", "e.corp.test"} {
			if len(grepFrom(clog, cfrom, "Accepted inbound s2s EXTERNAL authentication "+d+" -> c.test")) == 0 {
				t.Errorf("c.test's log: the relay did not authenticate %s by SASL EXTERNAL", d)
			}
			if len(grepFrom(clog, cfrom, "Accepted outbound s2s EXTERNAL authentication c.test -> "+d)) == 0 {
				t.Errorf("c.test's log: c.test did not authenticate to %s by SASL EXTERNAL", d)
			}
		}
		if bad := grepFrom(relayLog, from, "TLS handshake failed"); len(bad) > 0 {
			t.Errorf("relay log: %s", strings.Join(bad, "\n\t"))
		}
	})

	t.Run("direct-tls", func(t *testing.T) {
		l.watchLogs(t)
		// XEP-0368 §3: both SRV sets are sorted together by priority; the
		// direct TLS targets come first.
		// ejabberd 24.12's own outbound direct TLS is broken now and then
		// (described below: an upstream defect, seen in 5 of 14 runs, which
		// would make CI fail at random). With that generation the relay's
		// domains publish no _xmpps-server record, so the servers' streams
		// to the relay use STARTTLS; the relay's direct TLS links to both
		// servers are checked with every generation, and the servers'
		// direct TLS streams to the relay with ejabberd 23.01 (beside both
		// Prosody generations).
		toRelayDirect := l.egen.Version != "24.12"
		for _, d := range []string{"a.test", "d.test", "e.corp.test"} {
			if toRelayDirect {
				l.dns.set(fmt.Sprintf("_xmpps-server._tcp.%s. 60 IN SRV 0 5 5270 relay.test.", d))
			}
			l.dns.set(fmt.Sprintf("_xmpp-server._tcp.%s. 60 IN SRV 10 5 5269 relay.test.", d))
		}
		for _, d := range []string{"b.test", "c.test"} {
			l.dns.set(fmt.Sprintf("_xmpps-server._tcp.%s. 60 IN SRV 0 5 5270 %s.", d, d))
			l.dns.set(fmt.Sprintf("_xmpp-server._tcp.%s. 60 IN SRV 10 5 5269 %s.", d, d))
		}
		restartAll()
		from, bfrom, cfrom := fileSize(relayLog), fileSize(blog), fileSize(clog)
		// Seen with ejabberd 24.12, now and then: its outbound direct TLS
		// connection to the relay stalls (the relay's log: the handshake
		// never completes, "TLS handshake failed" err=EOF when ejabberd
		// stops), and after its timeout it falls back to the STARTTLS port
		// in the same process, whose parser then gets the relay's TLS
		// ServerHello of the stalled connection as plain data (c.test's
		// log: "Received XML on stream = <<22,3,3,...") and sends its
		// stream header twice (the relay: restricted-xml); the messages
		// then bounce. Name it when it happens.
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			// ejabberd's logger writes a moment after the bounce went out
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if len(grepFrom(clog, cfrom, "Received XML on stream = <<22,3,")) > 0 {
					break
				}
			}
			if len(grepFrom(clog, cfrom, "Received XML on stream = <<22,3,")) > 0 {
				t.Errorf("%s defect, not the relay's: c.test's outbound direct TLS stream handed a TLS record "+
					"(\"Received XML on stream = <<22,3,...\" in c.test's ejabberd.log) to its XML parser as plain data; "+
					"see the comment in secfed_test.go", l.egen.Name)
			}
		})
		exchange(t, "s8-direct")
		streams(t)
		// The relay's links to b.test and c.test: on their direct TLS port.
		for _, d := range []string{"b.test", "c.test"} {
			up := grepAll(relayLog, from, `msg="outbound stream up"`, "face=federation", "to="+d+" ")
			direct := grepAll(relayLog, from, `msg="outbound stream up"`, "face=federation", "to="+d+" ", "addr="+d+":5270 ")
			if len(up) == 0 || len(direct) != len(up) {
				t.Errorf("relay log: want every link to %s on its direct TLS port 5270, got:\n\t%s", d, strings.Join(up, "\n\t"))
			}
		}
		if n := len(grepFrom(clog, cfrom, "-> "+l.ip(4)+":5270")); n == 0 {
			t.Errorf("c.test's log: the relay never connected to its direct TLS port")
		}
		// The streams b.test and c.test opened to the relay: which of its
		// listeners took them (the kernel's table of the relay's sockets).
		direct, err := establishedTo(l.ip(10) + ":5270")
		if err != nil {
			t.Fatal(err)
		}
		count := map[string][2]int{} // remote → {STARTTLS, direct TLS}
		for _, si := range l.relay.cur.Server.Streams() {
			if si.Face != "federation" || si.Direction != "in" || len(si.Remote) == 0 {
				continue
			}
			n := count[si.Remote[0]]
			if direct[si.Peer] {
				n[1]++
			} else {
				n[0]++
			}
			count[si.Remote[0]] = n
		}
		t.Logf("streams to the relay: from b.test (%s) %d by STARTTLS, %d by direct TLS; from c.test (%s) %d by STARTTLS, %d by direct TLS",
			l.pgen.Name, count["b.test"][0], count["b.test"][1], l.egen.Name, count["c.test"][0], count["c.test"][1])
		// Prosody and ejabberd (both generations) dial the better SRV
		// target, _xmpps-server.
		for _, p := range []struct{ domain, gen string }{{"b.test", l.pgen.Name}, {"c.test", l.egen.Name}} {
			n := count[p.domain]
			switch {
			case toRelayDirect && (n[1] == 0 || n[0] != 0):
				t.Errorf("%s (%s) opened %d streams to the relay by STARTTLS and %d by direct TLS: want all by direct TLS",
					p.domain, p.gen, n[0], n[1])
			case !toRelayDirect && (n[0] == 0 || n[1] != 0):
				t.Errorf("%s (%s) opened %d streams to the relay by STARTTLS and %d by direct TLS: want all by STARTTLS (no _xmpps-server record)",
					p.domain, p.gen, n[0], n[1])
			}
		}
		if toRelayDirect && len(grepFrom(blog, bfrom, "Next target to try is "+l.ip(10)+":5270")) == 0 {
			t.Errorf("b.test's log: no connection to the relay's direct TLS port %s:5270", l.ip(10))
		}
	})

	t.Run("stream-management", func(t *testing.T) {
		l.watchLogs(t)
		l.streamManagement(t, restartAll)
	})
}

// streamManagement (sub-test of 8): XEP-0198 with Prosody over streams
// authenticated by SASL EXTERNAL, and a connection killed under the
// relay's outbound stream to b.test with nothing lost or duplicated.
//
// The relay's links to b.test go through a TCP proxy (b.test's SRV target
// smproxy.test). Alice (a.test, behind the relay) sends 20 messages to Bob
// (b.test); the relay's link has stream management on and b.test
// acknowledges them. Then the proxy loses what the relay sends (a path
// that stopped getting packets through), Alice sends 20 more, the relay
// writes them, b.test never sees them, and the proxy resets the
// connection. Bob must get each of the 40 exactly once, Alice no error.
// Without stream management the relay would have counted the 20 delivered
// when it wrote them, and they would be lost. b.test's own streams to the
// relay have stream management too (the relay's log).
func (l *lab) streamManagement(t *testing.T, restartAll func()) {
	relayLog := filepath.Join(l.relay.dir, "relay.log")
	proxy, err := startCutProxy(l.ip(31)+":5269", l.ip(3)+":5269")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.close()
	l.dns.remove("_xmpps-server._tcp.b.test.")
	l.dns.set("_xmpp-server._tcp.b.test. 60 IN SRV 10 5 5269 smproxy.test.")
	l.dns.set("smproxy.test. 60 IN A " + l.ip(31))
	defer func() {
		// b.test's own SRV target again, and a relay that has not cached
		// smproxy.test (gone with the proxy) for the scenarios after this.
		l.dns.set("_xmpp-server._tcp.b.test. 60 IN SRV 10 5 5269 b.test.")
		proxy.close()
		restartAll()
	}()
	restartAll() // a relay with an empty DNS cache
	from := fileSize(relayLog)

	alice := l.login(t, l.alice, "s8-sm")
	bob := l.login(t, l.bob, "s8-sm")
	bodies := make([]string, 40)
	for i := range bodies {
		bodies[i] = l.token(fmt.Sprintf("s8-sm message %d", i))
	}
	send := func(from, to int) {
		for _, b := range bodies[from:to] {
			if _, err := alice.Message(bare(bob.JID), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func() (s2s.StreamInfo, bool) {
		for _, si := range l.relay.cur.Server.Streams() {
			if si.Face == "federation" && si.Direction == "out" && si.Up && len(si.Remote) == 1 && si.Remote[0] == "b.test" {
				return si, true
			}
		}
		return s2s.StreamInfo{}, false
	}
	waitLink := func(what string, cond func(s2s.StreamInfo) bool) s2s.StreamInfo {
		t.Helper()
		var si s2s.StreamInfo
		for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			var ok bool
			if si, ok = link(); ok && cond(si) {
				return si
			}
		}
		t.Fatalf("the relay's link to b.test: %s; it is %+v", what, si)
		return si
	}
	received := map[string]int{}
	collect := func(n int) {
		t.Helper()
		for end := time.Now().Add(wait); len(received) < n && time.Now().Before(end); {
			for _, el := range bob.Collect(200*time.Millisecond, func(e *Element) bool {
				return e.Kind() == "message" && e.Type() != "error" && bare(e.From()) == bare(alice.JID)
			}) {
				received[el.Body()]++
			}
		}
	}

	send(0, 20)
	collect(20)
	si := waitLink("stream management on and 20 acknowledged", func(si s2s.StreamInfo) bool {
		return si.StreamManagement && si.Acknowledged >= 20 && si.Unacknowledged == 0
	})
	t.Logf("link to b.test through the proxy: stream management %v, %d acknowledged, %d written", si.StreamManagement, si.Acknowledged, si.StanzasOut)
	if proxy.accepted() == 0 {
		t.Fatal("the relay's link to b.test did not go through the proxy")
	}

	lost := proxy.lose()
	written := si.StanzasOut
	send(20, 40)
	si = waitLink("the next 20 written", func(si s2s.StreamInfo) bool { return si.StanzasOut >= written+20 })
	t.Logf("20 more written to a connection that loses them: %d unacknowledged; resetting %d proxied connections", si.Unacknowledged, lost)
	if si.Unacknowledged < 20 {
		t.Errorf("the link says %d unacknowledged after 20 messages written to a connection that loses them", si.Unacknowledged)
	}
	proxy.cut()
	collect(40)
	// Anything sent twice would come within moments of the first.
	for _, el := range bob.Collect(2*time.Second, func(e *Element) bool {
		return e.Kind() == "message" && e.Type() != "error" && bare(e.From()) == bare(alice.JID)
	}) {
		received[el.Body()]++
	}
	for i, b := range bodies {
		if n := received[b]; n != 1 {
			t.Errorf("message %d reached Bob %d times, want once", i, n)
		}
	}
	t.Logf("after the reset: %d of 40 messages at Bob, proxied connections %d", len(received), proxy.accepted())
	// The other way: b.test's stream to the relay, where the relay
	// acknowledges.
	for i := range 5 {
		l.deliver(t, bob, alice, l.token(fmt.Sprintf("s8-sm reply %d", i)))
	}
	noErrors(t, alice, bob)
	if len(grepAll(relayLog, from, `msg="stream management enabled by the peer"`, "from=b.test")) == 0 {
		t.Errorf("relay log: b.test's stream to the relay did not enable stream management")
	}
}

// establishedTo returns the peers ("ip:port") of the established TCP
// connections whose local end is local ("ip:port", IPv4), from
// /proc/net/tcp: the relay runs in this process, so its sockets are there.
func establishedTo(local string) (map[string]bool, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	hexAddr := func(h string) string {
		ip, port, ok := strings.Cut(h, ":")
		if !ok || len(ip) != 8 {
			return ""
		}
		v, _ := strconv.ParseUint(ip, 16, 32)
		p, _ := strconv.ParseUint(port, 16, 16)
		// /proc/net/tcp prints the address as a host-order (little
		// endian here) 32-bit number.
		return fmt.Sprintf("%d.%d.%d.%d:%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24, p)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // ESTABLISHED
			continue
		}
		if hexAddr(f[1]) == local {
			out[hexAddr(f[2])] = true
		}
	}
	return out, nil
}

// grepAll returns the lines written to a file after offset that contain
// every one of subs.
func grepAll(path string, from int64, subs ...string) []string {
	var out []string
	for _, line := range grepFrom(path, from, subs[0]) {
		all := true
		for _, s := range subs[1:] {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}
