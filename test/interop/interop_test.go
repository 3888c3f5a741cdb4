//go:build interop

package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestInterop runs the scenarios against each generation of the servers
// (doc.go): every Prosody generation with every ejabberd generation, each
// server both behind the relay and in the federation. For each pair it
// starts the topology once and runs the scenarios in order; each asserts
// what the users see. Later scenarios change the topology (policy, a
// server stopped, the relay restarted, secure authentication) and leave it
// working.
func TestInterop(t *testing.T) {
	requireOrSkip(t)
	for _, pg := range prosodyGens() {
		for _, eg := range ejabberdGens() {
			t.Run(pg.testName()+"+"+eg.testName(), func(t *testing.T) {
				t0 := time.Now()
				l := newLab(t, pg, eg)
				t.Logf("topology (%s, %s) up in %v", pg.Name, eg.Name, time.Since(t0).Round(time.Millisecond))
				t.Run("1-messages", l.messages)
				t.Run("2-presence", l.presence)
				t.Run("3-iq", l.iq)
				t.Run("4-policy", l.policy)
				t.Run("5-remote-down", l.remoteDown)
				t.Run("6-relay-restart", l.restart)
				t.Run("7-secure-auth", l.secureAuth)
				t.Run("8-secure-federation", l.secureFederation)
				t.Run("9-large-stanzas", l.largeStanzas)
				t.Run("10-counters", l.counters)
			})
		}
	}
}

// deliver sends a message from one client to another and waits until it
// arrives, failing at once if the sender gets an error for it instead.
func (l *lab) deliver(t *testing.T, from, to *Client, body string) time.Duration {
	t.Helper()
	t0 := time.Now()
	id, err := from.Message(bare(to.JID), body)
	if err != nil {
		t.Fatal(err)
	}
	i, el := await(t, wait,
		want{to, "message " + body, isMessage(bare(from.JID), body)},
		want{from, "error for " + id, isErrorFor(id)})
	if i == 1 {
		t.Fatalf("%s → %s: %q bounced: %s", from.JID, to.JID, body, el)
	}
	return time.Since(t0)
}

// subscribe makes x and y subscribe to each other (RFC 6121 §3) and waits
// until each sees the other's available presence.
func subscribe(t *testing.T, x, y *Client) {
	t.Helper()
	a, b := bare(x.JID), bare(y.JID)
	x.Presence(b, "subscribe")
	expect(t, y, "subscribe from "+a, isPresence(a, "subscribe"))
	y.Presence(a, "subscribed")
	y.Presence(a, "subscribe")
	expect(t, x, "subscribed from "+b, isPresence(b, "subscribed"))
	expect(t, x, b+"'s available presence", isPresence(b, ""))
	expect(t, x, "subscribe from "+b, isPresence(b, "subscribe"))
	x.Presence(b, "subscribed")
	expect(t, y, "subscribed from "+a, isPresence(a, "subscribed"))
	expect(t, y, a+"'s available presence", isPresence(a, ""))
}

// ping sends an XEP-0199 ping to a full JID and wants its result.
func ping(t *testing.T, from *Client, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	res, err := from.IQ(ctx, to, "get", "<ping xmlns='"+nsPing+"'/>")
	if err != nil {
		t.Fatal(err)
	}
	if res.Type() != "result" || res.From() != to {
		t.Errorf("%s: ping to %s: want a result from it, got %s", from.Name, to, res)
	}
}

// disco asks a server for its disco#info and wants a server identity.
func disco(t *testing.T, from *Client, domain string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	res, err := from.IQ(ctx, domain, "get", "<query xmlns='"+nsDisco+"'/>")
	if err != nil {
		t.Fatal(err)
	}
	q := res.Child(nsDisco, "query")
	if res.Type() != "result" || q == nil {
		t.Errorf("%s: disco#info to %s: want a result, got %s", from.Name, domain, res)
		return
	}
	if id := q.Child("", "identity"); id == nil || id.Attr("category") != "server" {
		t.Errorf("%s: disco#info to %s: want a server identity, got %s", from.Name, domain, res)
	}
}

// isErrorFor matches the error answering the stanza with id.
func isErrorFor(id string) func(*Element) bool {
	return func(e *Element) bool { return e.Type() == "error" && e.Attr("id") == id }
}

// noErrors fails if a client holds error stanzas.
func noErrors(t *testing.T, cs ...*Client) {
	t.Helper()
	for _, c := range cs {
		for _, el := range c.Collect(100*time.Millisecond, func(e *Element) bool { return e.Type() == "error" }) {
			t.Errorf("%s got an error: %s", c.Name, el)
		}
	}
}

// 1. Messages both ways between the internal servers a.test (Prosody) and
// e.corp.test (ejabberd) behind the relay and the public b.test (Prosody)
// and c.test (ejabberd).
func (l *lab) messages(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s1")
	frank := l.login(t, l.frank, "s1")
	bob := l.login(t, l.bob, "s1")
	carol := l.login(t, l.carol, "s1")
	delivered := l.relay.cur.Router.Stats().Delivered.Load()
	marks := l.logMarks()
	pairs := []struct{ from, to *Client }{{alice, bob}, {bob, alice}, {alice, carol}, {carol, alice},
		{frank, bob}, {bob, frank}, {frank, carol}, {carol, frank}}
	for _, p := range pairs {
		body := l.token("hello from " + p.from.Name)
		took := l.deliver(t, p.from, p.to, body)
		t.Logf("%s → %s delivered in %v", bare(p.from.JID), bare(p.to.JID), took.Round(time.Millisecond))
	}
	noErrors(t, alice, frank, bob, carol)
	// Two internal domains to one remote domain: one stream (limits.multiplex).
	l.checkMultiplexed(t, marks)
	// Generations with XEP-0288 offer bidi on the streams the relay opens
	// to them and ask for it on theirs.
	for _, p := range []struct {
		gen  serverGen
		name string
		log  string
	}{{l.pgen, "b.test", filepath.Join(l.b.dir, "prosody.log")}, {l.egen, "c.test", filepath.Join(l.c.dir, "logs", "ejabberd.log")}} {
		// the feature: Prosody's urn:xmpp:features:bidi, ejabberd's urn:xmpp:bidi
		if p.gen.Bidi && len(grepFrom(p.log, 0, "bidi xmlns='urn:xmpp:")) == 0 {
			t.Errorf("%s (%s, mod_s2s_bidi on) never offered XEP-0288 bidi: the scenario does not test what it says", p.name, p.gen.Name)
		}
	}
	l.checkBidi(t, false, "a.test", "e.corp.test", "b.test", "c.test")
	// A link counts a stanza delivered after writing it: the count may
	// trail the recipient by a moment.
	want := int64(len(pairs))
	deadline := time.Now().Add(2 * time.Second)
	n := l.relay.cur.Router.Stats().Delivered.Load() - delivered
	for ; n < want && time.Now().Before(deadline); n = l.relay.cur.Router.Stats().Delivered.Load() - delivered {
		time.Sleep(10 * time.Millisecond)
	}
	if n < want {
		t.Errorf("the relay delivered %d stanzas, fewer than the %d messages: did they bypass it?", n, want)
	}
}

// checkBidi checks the relay's streams with each server (its stream list,
// as the admin API shows it). With a generation that does XEP-0288, every
// stream the server opened to the relay is bidirectional, so is every link
// of the relay's to an internal server (its route identifies it) and, with
// secure (certificates verified both ways), to a federation server, and for
// each server of exchanged (whose users exchanged stanzas both ways in the
// scenario) at least one connection carried stanzas both ways. Without
// secure the relay knows federation servers by DNS alone and asks them for no
// bidi (it may still ride the streams they open). With a generation without
// XEP-0288 nothing is bidirectional. (Two connections for one pair remain
// possible: both servers may open one at the same moment, before either
// knows of the other's, as at a login's presence probes.)
func (l *lab) checkBidi(t *testing.T, secure bool, exchanged ...string) {
	t.Helper()
	genOf := map[string]serverGen{"a.test": l.pgen, "d.test": l.pgen, "b.test": l.pgen, "c.test": l.egen, "e.corp.test": l.egen}
	type conn struct{ in, out int64 } // stanzas the peer sent, stanzas the relay sent
	type end struct{ face, server string }
	conns := map[end]map[string]*conn{} // by peer address: one per TCP connection
	inPeers := map[string]bool{}
	streams := l.relay.cur.Server.Streams()
	for _, si := range streams {
		if si.Direction == "in" {
			inPeers[si.Peer] = true
		}
	}
	for _, si := range streams {
		if si.Peer == "" || len(si.Local) == 0 || len(si.Remote) == 0 {
			continue // a link not up yet
		}
		server := si.Remote[0]
		if si.Face == "internal" {
			server = si.Local[0]
		}
		gen, ok := genOf[server]
		if !ok {
			continue
		}
		riding := si.Direction == "out" && inPeers[si.Peer]
		t.Logf("relay stream: %s %s local=%v remote=%v peer=%s bidi=%v riding=%v in=%d out=%d (%s)", si.Face, si.Direction,
			si.Local, si.Remote, si.Peer, si.Bidi, riding, si.StanzasIn, si.StanzasOut, gen.Name)
		e := end{si.Face, server}
		if conns[e] == nil {
			conns[e] = map[string]*conn{}
		}
		c := conns[e][si.Peer]
		if c == nil {
			c = &conn{}
			conns[e][si.Peer] = c
		}
		c.in += si.StanzasIn
		c.out += si.StanzasOut
		switch {
		case !gen.Bidi && si.Bidi:
			t.Errorf("%s stream %s with %s (%s, no XEP-0288) is bidi", si.Face, si.Direction, server, gen.Name)
		case !gen.Bidi:
		case si.Direction == "in" && !si.Bidi:
			t.Errorf("%s (%s) opened a %s stream to the relay without bidi", server, gen.Name, si.Face)
		case si.Direction == "out" && (si.Face == "internal" || secure) && !si.Bidi:
			t.Errorf("the relay's %s link to %s (%s) is not bidi", si.Face, server, gen.Name)
		case si.Direction == "out" && si.Face == "federation" && !secure && si.Bidi && !riding:
			t.Errorf("the relay asked %s (%s), known by DNS only, for bidi", server, gen.Name)
		}
	}
	for e, cs := range conns {
		gen := genOf[e.server]
		both := 0
		for _, c := range cs {
			if c.in > 0 && c.out > 0 {
				both++
			}
		}
		t.Logf("%s: %s (%s): %d connections, %d of them carried stanzas both ways", e.face, e.server, gen.Name, len(cs), both)
		if gen.Bidi && (e.face == "internal" || secure) && slices.Contains(exchanged, e.server) && both == 0 {
			t.Errorf("%s: no connection with %s (%s) carried stanzas both ways", e.face, e.server, gen.Name)
		}
	}
}

// 2. Presence subscription round trip alice ↔ bob; presence broadcast from
// alice to two contacts on b.test; unavailable presence when a user leaves.
func (l *lab) presence(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s2")
	bob := l.login(t, l.bob, "s2")
	dave := l.login(t, l.dave, "s2")
	a, b, d := l.alice.JID(), l.bob.JID(), l.dave.JID()

	subscribe(t, alice, bob)
	t.Log("alice and bob subscribed to each other and see each other online")

	dave.Presence(a, "subscribe")
	expect(t, alice, "subscribe from dave", isPresence(d, "subscribe"))
	alice.Presence(d, "subscribed")
	expect(t, dave, "subscribed from alice", isPresence(a, "subscribed"))
	expect(t, dave, "alice's available presence", isPresence(a, ""))

	status := l.token("alice is away")
	alice.Send("<presence><show>away</show><status>" + esc(status) + "</status></presence>")
	for _, c := range []*Client{bob, dave} {
		expect(t, c, "alice's broadcast presence", withStatus(isPresence(a, ""), status))
	}
	t.Log("alice's presence change reached bob and dave on b.test")

	bob.Close()
	expect(t, alice, "bob's unavailable presence", isPresence(b, "unavailable"))
	alice.Close()
	expect(t, dave, "alice's unavailable presence", isPresence(a, "unavailable"))
	t.Log("bob's and alice's departures were seen")
	noErrors(t, dave)
}

// 3. IQs across the relay: a ping to a full JID, answered by bob's client;
// service discovery of the remote servers themselves.
func (l *lab) iq(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s3")
	bob := l.login(t, l.bob, "s3")
	ping(t, alice, bob.JID)
	for _, domain := range []string{"b.test", "c.test"} {
		disco(t, alice, domain)
	}
	noErrors(t, alice, bob)
}

// 4. Policy: with c.test denied (a reload), alice's message to carol comes
// back as an error and never reaches carol, carol's message to alice too,
// c.test's new stream to a.test is refused, and the audit log has a JSON
// line for each refusal; allowing c.test again is a reload too.
//
// The relay refuses a denied domain at the stream level on both faces: the
// reload closes the existing streams with policy-violation, and a.test's
// new stream to c.test (internal face) is refused at its header, so the
// error alice gets is made by her own server (Prosody: remote-server-timeout
// with the relay's stream error text). A stanza that reached the router
// would come back as not-allowed; either is accepted.
func (l *lab) policy(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s4")
	carol := l.login(t, l.carol, "s4")
	a, c := l.alice.JID(), l.carol.JID()
	relayLog := filepath.Join(l.relay.dir, "relay.log")

	if err := l.relay.reload([]string{"c.test"}); err != nil {
		t.Fatal(err)
	}
	// The reload closes the streams with c.test. A stanza that a.test
	// writes on such a stream as it closes is lost (see 6-relay-restart/
	// in-flight): let the closes settle, this scenario is about policy.
	time.Sleep(500 * time.Millisecond)
	refusedBy := func(el *Element) bool {
		return el.Condition() == "not-allowed" ||
			strings.Contains(el.ErrorText(), "not allowed") && strings.Contains(el.ErrorText(), "deny[0] c.test")
	}
	auditFrom, logFrom := fileSize(l.relay.auditLog()), fileSize(relayLog)
	body := l.token("to a denied domain")
	id, _ := alice.Message(c, body)
	i, el := await(t, wait, want{alice, "error for " + id, isErrorFor(id)}, want{carol, "the message", isMessage(a, body)})
	if i == 1 {
		t.Fatalf("carol on the denied domain got alice's message %s", el)
	}
	t.Logf("alice got %s", el)
	if !refusedBy(el) {
		t.Errorf("alice's message to carol: want not-allowed or the relay's policy refusal, got %s", el)
	}
	if r := findAudit(t, l.relay.auditLog(), auditFrom, "internal", "c.test"); r == nil {
		t.Errorf("audit log: no refusal for c.test on the internal face after alice's message")
	} else {
		t.Logf("audit: %v", r)
	}

	auditFrom = fileSize(l.relay.auditLog())
	body = l.token("from a denied domain")
	id, _ = carol.Message(a, body)
	i, el = await(t, wait, want{carol, "error for " + id, isErrorFor(id)}, want{alice, "the message", isMessage(c, body)})
	if i == 1 {
		t.Fatalf("alice got a message from the denied domain: %s", el)
	}
	t.Logf("carol got %s", el)
	if r := findAudit(t, l.relay.auditLog(), auditFrom, "federation", "c.test"); r == nil || r["event"] != "stream" {
		t.Errorf("audit log: want c.test's new stream refused on the federation face, got %v", r)
	} else {
		t.Logf("audit: %v", r)
	}
	var refusals []string
	for _, line := range grepFrom(relayLog, logFrom, "from=c.test") {
		if strings.Contains(line, "face=federation") && strings.Contains(line, "policy-violation") {
			refusals = append(refusals, line)
		}
	}
	if len(refusals) == 0 {
		t.Errorf("relay log: no stream from c.test closed with policy-violation")
	} else {
		t.Logf("relay log: %s", refusals[0])
	}

	if err := l.relay.reload(nil); err != nil {
		t.Fatal(err)
	}
}

// sentBeforeShutdown counts the ids a Prosody log shows sent on an s2s
// stream (Sending[s2sout]) before that stream was closed with
// system-shutdown, from offset from on; it also returns the closing line.
func sentBeforeShutdown(path string, from int64, ids []string) (int, string) {
	b, _ := os.ReadFile(path)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	for _, line := range strings.Split(string(b[min(from, int64(len(b))):]), "\n") {
		if strings.Contains(line, "Session closed by remote with error: system-shutdown") {
			return n, strings.TrimSpace(line)
		}
		if _, tag, ok := strings.Cut(line, "Sending[s2sout]: <message "); ok {
			if _, rest, ok := strings.Cut(tag, "id='"); ok {
				if id, _, ok := strings.Cut(rest, "'"); ok && want[id] {
					n++
				}
			}
		}
	}
	return n, "no system-shutdown seen"
}

// findAudit returns the first refusal record for remote on face written to
// the audit log after offset from, nil if there is none. Every line must be
// JSON.
func findAudit(t *testing.T, path string, from int64, face, remote string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, r := range auditRecords(t, path, from) {
		if found == nil && r["face"] == face && r["remote"] == remote && r["decision"] == "refuse" {
			found = r
		}
	}
	return found
}

// fileSize is a file's size, 0 if it does not exist.
func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// auditRecords parses the JSON lines of the audit log from offset on.
func auditRecords(t *testing.T, path string, from int64) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(b[min(from, int64(len(b))):], []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Errorf("audit log line is not JSON: %q: %v", line, err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// grepFrom returns the lines containing s written to a file after offset.
func grepFrom(path string, from int64, s string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(b[min(from, int64(len(b))):]), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// 5. Remote down: with b.test stopped alice's messages bounce with
// remote-server-timeout; after breaker.failures failures the breaker opens
// and bounces leave within a millisecond of the relay reading the stanza;
// with b.test back, messages flow again once breaker.open_for has passed.
func (l *lab) remoteDown(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s5")
	bob := l.login(t, l.bob, "s5")
	b := l.bob.JID()
	l.deliver(t, alice, bob, l.token("before b.test stops"))

	if err := l.b.stop(); err != nil {
		t.Fatal(err)
	}
	t.Log("b.test stopped")
	rs := l.relay.cur.Router.Stats()
	breaker0 := rs.BreakerBounces.Load()

	// send one message and wait for its bounce: one connection attempt each
	bounceOne := func(what string) *Element {
		t.Helper()
		id, err := alice.Message(b, l.token(what))
		if err != nil {
			t.Fatal(err)
		}
		el := expect(t, alice, "error for "+id, isErrorFor(id))
		if el.Condition() != "remote-server-timeout" {
			t.Errorf("%s: want remote-server-timeout, got %s", what, el)
		}
		return el
	}
	var openedAt time.Time
	for i := 1; openedAt.IsZero(); i++ {
		if i > 5 {
			t.Fatalf("breaker (failures: 2) still not open after %d bounces; %s", i-1, stats(l.relay.cur))
		}
		el := bounceOne("while b.test is down")
		t.Logf("bounce %d: %s: %s", i, el.Condition(), el.ErrorText())
		if rs.BreakerBounces.Load() > breaker0 {
			openedAt = time.Now()
			// Two failed attempts open it. Prosody may have had a stanza of
			// its own on the stream b.test's shutdown closed; rerouted, it
			// makes an attempt too, so the breaker may open one message
			// early (seen in CI), never late.
			if i > 3 {
				t.Errorf("breaker.failures is 2: want the third message bounced by the open breaker at the latest, it was message %d", i)
			}
		}
	}

	from := l.relay.bounceCount()
	const n = 5
	for range n {
		bounceOne("while the breaker is open")
	}
	var open []bounce
	for _, bn := range l.relay.bouncesFrom(from) {
		if strings.Contains(bn.text, "circuit breaker open") {
			open = append(open, bn)
		}
	}
	if len(open) != n {
		t.Errorf("want %d breaker bounces while open, the relay made %d: %+v", n, len(open), l.relay.bouncesFrom(from))
	}
	var slowest time.Duration
	for _, bn := range open {
		slowest = max(slowest, bn.elapsed)
		if bn.elapsed >= time.Millisecond {
			t.Errorf("bounce while the breaker is open left %v after the relay read the stanza (want < 1ms)", bn.elapsed)
		}
	}
	t.Logf("%d bounces while open, the slowest %v after reading the stanza; breaker_bounces %d → %d",
		len(open), slowest, breaker0, rs.BreakerBounces.Load())
	if got := rs.BreakerBounces.Load() - breaker0; got < n+1 {
		t.Errorf("Router.Stats().BreakerBounces grew by %d, want at least %d", got, n+1)
	}

	if err := l.b.start(); err != nil {
		t.Fatal(err)
	}
	t.Log("b.test started again")
	time.Sleep(time.Until(openedAt.Add(breakerOpenFor + 100*time.Millisecond)))
	bob = l.login(t, l.bob, "s5-again")
	for i := 1; ; i++ {
		body := l.token("after b.test is back")
		id, _ := alice.Message(b, body)
		k, el := await(t, wait, want{bob, "message " + body, isMessage(l.alice.JID(), body)},
			want{alice, "error for " + id, isErrorFor(id)})
		if k == 0 {
			t.Logf("delivered again (attempt %d)", i)
			break
		}
		t.Logf("attempt %d after open_for bounced: %s", i, el)
		if i == 5 {
			t.Fatalf("messages to b.test still bounce after it is back and open_for passed")
		}
		time.Sleep(time.Second)
	}
	// and the other way
	l.deliver(t, bob, alice, l.token("bob is back"))
}

// 6. Relay restart mid-conversation: streams come back, messages after the
// restart are delivered exactly once, nothing arrives twice.
//
// The restart is a handoff, as `fedrelay run` does on SIGUSR2: a new
// instance takes over the listening sockets and the old one drains, so the
// ports never close.
//
// Sub-test in-flight: a burst of 400 from alice is on its way through the
// relay when it hands over. Every one of them must arrive: RFC 6120 §4.4
// has the side that closes a stream keep reading and processing what the
// other side sent until that side's closing tag, the old instance's links
// write what they hold, and a.test reconnects to the new instance without
// ever finding the port closed (before the handoff, a.test bounced what it
// sent while the port was closed: 109 of 400 once). Prosody 0.12 has no
// stream management on s2s, so a stanza the relay never processes would be
// lost without a trace.
func (l *lab) restart(t *testing.T) {
	l.watchLogs(t)
	alice := l.login(t, l.alice, "s6")
	bob := l.login(t, l.bob, "s6")
	b := l.bob.JID()
	prosodyLog := filepath.Join(l.a.dir, "prosody.log")
	logFrom := fileSize(prosodyLog)
	for range 2 {
		l.deliver(t, alice, bob, l.token("before the restart"))
		l.deliver(t, bob, alice, l.token("before the restart"))
	}

	// alice writes a burst in one go; the relay stops as soon as bob has the
	// first of it, while a.test is still forwarding the rest.
	const burst = 400
	during := map[string]string{} // id → body
	var raw strings.Builder
	var first string
	for range burst {
		id, body := alice.ID(), l.token("during the restart")
		during[id] = body
		if first == "" {
			first = body
		}
		fmt.Fprintf(&raw, "<message to='%s' type='chat' id='%s'><body>%s</body></message>", b, id, esc(body))
	}
	old := l.relay.cur
	accepted0 := old.Router.Stats().Accepted.Load()
	if err := alice.Send(raw.String()); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, "the first message of the burst", isMessage(l.alice.JID(), first))
	// The restart hands the listening sockets to the new instance, as
	// `fedrelay run` does on SIGUSR2: the ports never close, so a.test
	// never finds the relay refused (with a plain stop and start, a.test
	// bounced what it sent meanwhile: 109 of 400 once).
	t0 := time.Now()
	if _, err := l.relay.handoff(); err != nil {
		t.Errorf("handoff: %v", err)
	}
	if s := old.Router.Stats(); !s.Balanced() {
		t.Errorf("counters of the stopped relay do not balance: %s", stats(old))
	}
	t.Logf("relay handed over to instance %d in %v", l.relay.gen, time.Since(t0).Round(time.Microsecond))

	var after []string
	for range 3 {
		for _, p := range []struct{ from, to *Client }{{alice, bob}, {bob, alice}} {
			body := l.token("after the restart, from " + p.from.Name)
			l.deliver(t, p.from, p.to, body)
			after = append(after, body)
		}
	}
	t.Logf("messages after the restart delivered both ways")
	// what else arrives in the next seconds: late ones and duplicates
	bodies, bounced := map[string]int{first: 1}, map[string]string{}
	for _, c := range []*Client{alice, bob} {
		for _, el := range c.Collect(3*time.Second, func(e *Element) bool { return e.Kind() == "message" }) {
			if el.Type() == "error" {
				if _, ok := during[el.Attr("id")]; ok && c == alice {
					bounced[el.Attr("id")] = el.Condition()
					continue
				}
				t.Errorf("%s: unexpected error %s", c.Name, el)
				continue
			}
			bodies[el.Body()]++
		}
	}
	for _, body := range after {
		if bodies[body] > 0 {
			t.Errorf("%q arrived twice", body)
		}
	}

	t.Run("in-flight", func(t *testing.T) {
		delivered, conds := 0, map[string]int{}
		var lost []string
		for id, body := range during {
			n := bodies[body]
			if n > 1 {
				t.Errorf("%s %q arrived %d times", id, body, n)
			}
			switch cond, ok := bounced[id]; {
			case ok && n > 0:
				t.Errorf("%s %q arrived and bounced (%s)", id, body, cond)
			case ok:
				conds[cond]++
			case n > 0:
				delivered++
			default:
				lost = append(lost, id)
			}
		}
		t.Logf("%d messages sent while the relay restarted: %d delivered, bounced %v, %d neither",
			len(during), delivered, conds, len(lost))
		if len(conds) > 0 {
			t.Errorf("%d messages sent while the relay handed over its sockets bounced (%v): want every one delivered",
				len(during)-delivered-len(lost), conds)
		}
		if len(lost) == 0 {
			return
		}
		sort.Strings(lost)
		t.Errorf("%d messages sent as the relay stopped neither arrived nor bounced (lost without a trace): %s",
			len(lost), strings.Join(lost, " "))
		// Where they went: written by a.test on its stream to the relay
		// before it read the relay's system-shutdown, and not accepted
		// by the relay (its counters balance without them)?
		before, closed := sentBeforeShutdown(prosodyLog, logFrom, lost)
		t.Logf("a.test's prosody.log: %d of the %d lost were written (Sending[s2sout]) on its stream to the relay "+
			"before this line:\n\t%s", before, len(lost), closed)
		t.Logf("relay instance %d accepted %d stanzas after the burst was sent (%d messages); its counters: %s",
			l.relay.gen-1, old.Router.Stats().Accepted.Load()-accepted0, burst, stats(old))
		if before == len(lost) {
			t.Errorf("relay defect (shutdown, RFC 6120 §4.4): a.test wrote all %d lost messages on its stream to the "+
				"relay before it read the relay's system-shutdown, and the stopping relay neither routed nor bounced "+
				"them (its log has no \"stanzas read after closing the stream\" for that stream)", len(lost))
		}
	})
}

// 10. Counters: every stanza the relay accepted was delivered, bounced or
// dropped, for every relay instance of the run.
func (l *lab) counters(t *testing.T) {
	l.watchLogs(t)
	cur := l.relay.cur
	deadline := time.Now().Add(10 * time.Second)
	for !cur.Router.Stats().Balanced() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := l.relay.shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	for i, a := range l.relay.all {
		s := a.Router.Stats()
		t.Logf("relay instance %d: %s", i+1, stats(a))
		if !s.Balanced() {
			t.Errorf("relay instance %d: accepted %d != delivered %d + bounced %d + dropped %d", i+1,
				s.Accepted.Load(), s.Delivered.Load(), s.Bounced.Load(), s.Dropped.Load())
		}
	}
}
