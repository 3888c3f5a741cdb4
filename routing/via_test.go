package routing

import (
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"mellium.im/xmpp/stanza"
)

var viaBreaker = config.Breaker{Failures: 3, OpenFor: time.Second, MaxOpenFor: time.Second}

// TestViaFollowsTable: Route keeps, in a pair's Via, which of its domains
// are internal, and works it out again when the table changes (a reload):
// a pair that became internal to internal is refused from its next stanza.
func TestViaFollowsTable(t *testing.T) {
	refusedAfterReload(t, func(r *Router) {
		// example.org is one of ours now: a.example → example.org would
		// loop through the federation.
		r.Reload(NewTable([]config.Domain{{Name: "a.example", Route: "10.0.0.5:5269"}, {Name: "example.org", Route: "10.0.0.6:5269"}}),
			r.Policy(), viaBreaker)
	})
}

// TestViaFollowsPolicy: Route keeps, in a pair's Via, its remote domain as
// the policy matched it, and matches it again when the policy changes: a
// domain denied by a reload is refused from its next stanza.
func TestViaFollowsPolicy(t *testing.T) {
	refusedAfterReload(t, func(r *Router) {
		deny, err := policy.Compile(config.Policy{Default: "allow", Deny: []string{"example.org"}}, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.Reload(r.table.Load(), deny, viaBreaker)
	})
}

// refusedAfterReload sends two stanzas of one pair through its Via, reloads
// the router with reload, and checks that the pair's next stanza is
// refused (not-allowed) rather than delivered on the link the Via kept.
func refusedAfterReload(t *testing.T, reload func(*Router)) {
	t.Helper()
	var bounced []stanza.Condition
	r, d := iqRouter(t, func(st *Stanza, e stanza.Error) { bounced = append(bounced, e.Condition) })
	out := Pair{From: "a.example", To: "example.org"}
	v := &Via{}
	send := func(id string) {
		st := iq("get", "alice@a.example/phone", "bob@example.org/res", id, out.From, out.To, policy.Internal)
		st.Via = v
		r.Route(st)
	}
	send("1")
	send("2")
	if n := len(d.to(out)); n != 2 || v.Link == nil {
		t.Fatalf("%d stanzas reached the link, Via.Link %v; want 2 and the link kept", n, v.Link)
	}
	reload(r)
	send("3")
	if n := len(d.to(out)); n != 2 {
		t.Errorf("%d stanzas reached the link after the reload, want still 2", n)
	}
	if len(bounced) != 1 || bounced[0] != stanza.NotAllowed {
		t.Errorf("bounces %v after the reload, want one not-allowed", bounced)
	}
}
