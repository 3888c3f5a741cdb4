package s2s

import (
	"net"
	"testing"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestAddressingCache: a stanza with the previous one's addresses reuses
// their domains and pair, but never past a change to the stream's pairs: an
// upgraded authentication is seen by the next stanza, and a stream restart
// (which forgets every pair) refuses it.
func TestAddressingCache(t *testing.T) {
	s := testServer(t, config.Limits{}, []config.Domain{{Name: "a.test"}})
	pol, err := policy.Compile(config.Policy{Default: "allow"}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Router.(*routing.Router).Reload(s.Router.(*routing.Router).Table(), pol, config.Breaker{})
	raw, other := net.Pipe()
	defer raw.Close()
	defer other.Close()
	c := &inConn{s: s, face: policy.Federation, base: s.Log, raw: raw,
		pairs: map[dialback.Pair]*pairState{}, fromAuth: map[string]policy.Auth{}}
	pair := dialback.Pair{From: "b.test", To: "a.test"}
	el := func(from, to, id string) *wire.Element {
		return &wire.Element{From: []byte(from), To: []byte(to), ID: []byte(id)}
	}
	check := func(what string, e *wire.Element, wantAuth policy.Auth, wantErr bool) {
		t.Helper()
		a, err := c.addressing(e)
		if wantErr {
			if err == nil {
				t.Errorf("%s: accepted (pair %p, auth %v); want refused", what, a.ps, a.auth)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if a.fromJID != string(e.From) || a.toJID != string(e.To) || a.from != "b.test" || a.to != "a.test" || a.ps == nil {
			t.Errorf("%s: got %q %q %q %q %p", what, a.fromJID, a.toJID, a.from, a.to, a.ps)
		}
		if a.auth != wantAuth {
			t.Errorf("%s: auth %v, want %v", what, a.auth, wantAuth)
		}
	}

	check("before authentication", el("u@b.test/r", "v@a.test", "1"), 0, true)
	c.mu.Lock()
	c.authorize(pair, policy.AuthDialback)
	c.mu.Unlock()
	check("first", el("u@b.test/r", "v@a.test", "1"), policy.AuthDialback, false)
	check("same addresses", el("u@b.test/r", "v@a.test", "2"), policy.AuthDialback, false)
	if c.last.ps == nil {
		t.Fatal("the pair was not kept for the next stanza")
	}
	check("other resource", el("u@b.test/s", "v@a.test", "3"), policy.AuthDialback, false)
	check("upper case domain", el("u@B.test/s", "v@a.test", "3a"), policy.AuthDialback, false)
	check("not the pair", el("u@c.test/s", "v@a.test", "4"), 0, true)
	check("back", el("u@b.test/s", "v@a.test", "5"), policy.AuthDialback, false)

	c.mu.Lock()
	c.authorize(pair, policy.AuthExternal)
	c.mu.Unlock()
	check("after the upgrade", el("u@b.test/s", "v@a.test", "6"), policy.AuthExternal, false)

	c.mu.Lock()
	c.forgetPairs() // a stream restart
	c.mu.Unlock()
	check("after a restart", el("u@b.test/s", "v@a.test", "7"), 0, true)
}
