package policy_test

import (
	"testing"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func stanzaPolicy(t testing.TB) *policy.Policy {
	return mustCompile(t, config.Policy{
		Default: "allow",
		Deny:    []string{"*.evil.example"},
		Rules: []config.Rule{
			{Match: []string{"msgonly.example"}, Kinds: []string{"message"}},
			{Match: []string{"nosubs.example"}, Subscriptions: "deny", SubscriptionsIn: "deny", SubscriptionsOut: "deny"},
			{Match: []string{"subsout.example"}, SubscriptionsIn: "deny", SubscriptionsOut: "allow"},
			{Match: []string{"small.example"}, MaxStanzaBytes: 10000},
			{Match: []string{"big.example"}, MaxStanzaBytes: 1 << 30},
		},
	}, policy.Options{MaxStanzaBytes: 262144})
}

func TestStanza(t *testing.T) {
	p := stanzaPolicy(t)
	type want struct {
		allowed bool
		send    bool
		reason  policy.Reason
		cond    stanza.Condition
		typ     stanza.ErrorType
		rule    string
	}
	allowed := func(reason policy.Reason, rule string) want { return want{true, false, reason, "", "", rule} }
	msg := func(typ string) policy.Stanza {
		return policy.Stanza{Kind: policy.Message, Type: typ, From: "alice@remote.example/phone", Size: 300}
	}
	pres := func(typ, from string) policy.Stanza {
		return policy.Stanza{Kind: policy.Presence, Type: typ, From: from, Size: 200}
	}
	iq := func(typ string) policy.Stanza {
		return policy.Stanza{Kind: policy.IQ, Type: typ, From: "remote.example", Size: 200}
	}
	notAllowed := func(send bool, reason policy.Reason, rule string) want {
		return want{false, send, reason, stanza.NotAllowed, stanza.Cancel, rule}
	}
	tests := []struct {
		name   string
		remote string
		dir    policy.Direction
		s      policy.Stanza
		want   want
	}{
		{"message allowed", "remote.example", policy.In, msg("chat"), allowed(policy.ReasonDefault, "default allow")},

		// Deny list, and which refusals are answered.
		{"denied chat answered", "a.evil.example", policy.Out, msg("chat"), notAllowed(true, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"denied groupchat answered", "a.evil.example", policy.Out, msg("groupchat"), notAllowed(true, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"denied headline dropped", "a.evil.example", policy.Out, msg("headline"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"error message never answered", "a.evil.example", policy.Out, msg("error"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"iq get answered", "a.evil.example", policy.Out, iq("get"), notAllowed(true, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"iq set answered", "a.evil.example", policy.Out, iq("set"), notAllowed(true, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"iq result dropped", "a.evil.example", policy.Out, iq("result"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"iq error dropped", "a.evil.example", policy.Out, iq("error"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"presence error dropped", "a.evil.example", policy.In, pres("error", "a@a.evil.example"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"available presence dropped", "a.evil.example", policy.In, pres("", "a@a.evil.example/x"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"probe dropped", "a.evil.example", policy.In, pres("probe", "a@a.evil.example"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"subscribe answered", "a.evil.example", policy.In, pres("subscribe", "a@a.evil.example"), notAllowed(true, policy.ReasonDenyList, "deny[0] *.evil.example")},
		{"subscribed dropped", "a.evil.example", policy.In, pres("subscribed", "a@a.evil.example"), notAllowed(false, policy.ReasonDenyList, "deny[0] *.evil.example")},

		// Kinds.
		{"kind allowed", "msgonly.example", policy.In, msg(""), allowed(policy.ReasonDefault, "default allow")},
		{"kind refused presence", "msgonly.example", policy.In, pres("", "a@msgonly.example/r"), notAllowed(false, policy.ReasonKind, "rules[0].kinds")},
		{"kind refused iq get", "msgonly.example", policy.Out, iq("get"), notAllowed(true, policy.ReasonKind, "rules[0].kinds")},
		{"kind refused iq result", "msgonly.example", policy.Out, iq("result"), notAllowed(false, policy.ReasonKind, "rules[0].kinds")},
		{"unknown kind", "remote.example", policy.In, policy.Stanza{Kind: 0, Size: 10}, notAllowed(false, policy.ReasonKind, "unknown stanza kind")},

		// Type attribute.
		{"unknown message type is normal", "remote.example", policy.In, msg("shout"), allowed(policy.ReasonDefault, "default allow")},
		{"invalid iq type", "remote.example", policy.In, iq("fetch"), want{false, true, policy.ReasonType, stanza.BadRequest, stanza.Modify, "rfc6120 §8.2.3 iq type"}},
		{"missing iq type", "remote.example", policy.In, iq(""), want{false, true, policy.ReasonType, stanza.BadRequest, stanza.Modify, "rfc6120 §8.2.3 iq type"}},
		{"invalid presence type", "remote.example", policy.In, pres("available", "a@remote.example/r"), want{false, true, policy.ReasonType, stanza.BadRequest, stanza.Modify, "rfc6121 §4.7.1 presence type"}},

		// RFC 6121 at the boundary.
		{"subscribe from bare jid", "remote.example", policy.In, pres("subscribe", "a@remote.example"), allowed(policy.ReasonDefault, "default allow")},
		{"subscribe from domain jid", "remote.example", policy.In, pres("subscribe", "remote.example"), allowed(policy.ReasonDefault, "default allow")},
		{"subscribe from full jid", "remote.example", policy.In, pres("subscribe", "a@remote.example/phone"), want{false, true, policy.ReasonFullJID, stanza.BadRequest, stanza.Modify, "rfc6121 §3 subscription from a bare jid"}},
		{"unsubscribed from full jid dropped", "remote.example", policy.Out, pres("unsubscribed", "a@remote.example/phone"), want{false, false, policy.ReasonFullJID, stanza.BadRequest, stanza.Modify, "rfc6121 §3 subscription from a bare jid"}},
		{"empty resource counts as full", "remote.example", policy.In, pres("subscribed", "a@remote.example/"), want{false, false, policy.ReasonFullJID, stanza.BadRequest, stanza.Modify, "rfc6121 §3 subscription from a bare jid"}},
		{"probe from full jid passes", "remote.example", policy.In, pres("probe", "a@remote.example/legacy"), allowed(policy.ReasonDefault, "default allow")},
		{"directed presence passes", "remote.example", policy.Out, pres("", "a@remote.example/phone"), allowed(policy.ReasonDefault, "default allow")},
		{"directed unavailable passes", "remote.example", policy.Out, pres("unavailable", "a@remote.example/phone"), allowed(policy.ReasonDefault, "default allow")},

		// Subscriptions by direction.
		{"subscriptions denied in", "nosubs.example", policy.In, pres("subscribe", "a@nosubs.example"), notAllowed(true, policy.ReasonSubscription, "rules[1].subscriptions_in")},
		{"subscriptions denied out", "nosubs.example", policy.Out, pres("unsubscribe", "a@our.example"), notAllowed(false, policy.ReasonSubscription, "rules[1].subscriptions_out")},
		{"probe not a subscription", "nosubs.example", policy.In, pres("probe", "a@nosubs.example"), allowed(policy.ReasonDefault, "default allow")},
		{"presence not a subscription", "nosubs.example", policy.In, pres("", "a@nosubs.example/r"), allowed(policy.ReasonDefault, "default allow")},
		{"subscriptions in denied", "subsout.example", policy.In, pres("subscribe", "a@subsout.example"), notAllowed(true, policy.ReasonSubscription, "rules[2].subscriptions_in")},
		{"subscriptions out allowed", "subsout.example", policy.Out, pres("subscribe", "a@our.example"), allowed(policy.ReasonDefault, "default allow")},
		{"unknown direction needs both", "subsout.example", 0, pres("subscribed", "a@our.example"), notAllowed(false, policy.ReasonSubscription, "rules[2].subscriptions_in")},

		// Size.
		{"global limit", "remote.example", policy.In, policy.Stanza{Kind: policy.Message, Size: 262145}, want{false, true, policy.ReasonSize, stanza.PolicyViolation, stanza.Modify, "limits.max_stanza_bytes"}},
		{"at global limit", "remote.example", policy.In, policy.Stanza{Kind: policy.Message, Size: 262144}, allowed(policy.ReasonDefault, "default allow")},
		{"rule limit", "small.example", policy.In, policy.Stanza{Kind: policy.Message, Size: 10001}, want{false, true, policy.ReasonSize, stanza.PolicyViolation, stanza.Modify, "rules[3].max_stanza_bytes"}},
		{"rule limit iq result dropped", "small.example", policy.In, policy.Stanza{Kind: policy.IQ, Type: "result", Size: 10001}, want{false, false, policy.ReasonSize, stanza.PolicyViolation, stanza.Modify, "rules[3].max_stanza_bytes"}},
		{"rule cannot raise global", "big.example", policy.In, policy.Stanza{Kind: policy.Message, Size: 262145}, want{false, true, policy.ReasonSize, stanza.PolicyViolation, stanza.Modify, "limits.max_stanza_bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Stanza(tt.remote, tt.dir, tt.s)
			got := want{d.Allowed, d.Send, d.Reason, d.Condition(), d.ErrorType(), d.Rule}
			if got != tt.want {
				t.Errorf("Stanza(%q, %v, %+v)\n got %+v\nwant %+v", tt.remote, tt.dir, tt.s, got, tt.want)
			}
			raw := policy.RawStanza{Kind: tt.s.Kind, Type: []byte(tt.s.Type), From: []byte(tt.s.From), Size: tt.s.Size}
			if rd := p.RawStanza(tt.remote, tt.dir, raw); rd != d {
				t.Errorf("RawStanza = %+v, Stanza = %+v", rd, d)
			}
			if se := d.StanzaError(); d.Send && (se.Condition != tt.want.cond || se.Type != tt.want.typ) || !d.Send && se.Condition != "" {
				t.Errorf("StanzaError() = %+v for Send %v", se, d.Send)
			}
		})
	}
}

func TestStanzaAllocs(t *testing.T) {
	p := stanzaPolicy(t)
	s := policy.Stanza{Kind: policy.Message, Type: "chat", From: "alice@remote.example/phone", Size: 300}
	raw := policy.RawStanza{Kind: policy.Presence, Type: []byte("subscribe"), From: []byte("alice@remote.example"), Size: 300}
	for name, f := range map[string]func(){
		"Stanza":          func() { p.Stanza("a.b.remote.example", policy.In, s) },
		"Stanza folded":   func() { p.Stanza("A.B.Remote.Example.", policy.In, s) },
		"Stanza refused":  func() { p.Stanza("x.evil.example", policy.In, s) },
		"RawStanza":       func() { p.RawStanza("nosubs.example", policy.In, raw) },
		"ParseKind bytes": func() { policy.ParseKind(raw.Type) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}

// TestStanzaFor: deciding with a remote domain resolved once gives the
// decision Stanza gives, for each domain the policy names and each kind of
// stanza, in both directions.
func TestStanzaFor(t *testing.T) {
	p := stanzaPolicy(t)
	var cases []policy.Stanza
	for _, k := range []policy.Kind{policy.Message, policy.Presence, policy.IQ} {
		for _, typ := range []string{"", "chat", "subscribe", "get", "result", "bogus"} {
			for _, from := range []string{"alice@remote.example", "alice@remote.example/phone"} {
				for _, size := range []int{200, 20000} {
					cases = append(cases, policy.Stanza{Kind: k, Type: typ, From: from, Size: size})
				}
			}
		}
	}
	other := mustCompile(t, config.Policy{Default: "deny"}, policy.Options{})
	for _, remote := range []string{"remote.example", "a.evil.example", "A.EVIL.example.", "msgonly.example",
		"nosubs.example", "subsout.example", "small.example", "big.example", ""} {
		rm := p.Remote(remote)
		if !rm.Of(p) || rm.Of(other) || (&policy.Remote{}).Of(p) {
			t.Fatalf("Remote(%q): Of does not tell its policy", remote)
		}
		for _, dir := range []policy.Direction{policy.In, policy.Out} {
			for _, s := range cases {
				if got, want := p.StanzaFor(&rm, dir, s), p.Stanza(remote, dir, s); got != want {
					t.Errorf("%q %v %+v: StanzaFor %+v, Stanza %+v", remote, dir, s, got, want)
				}
			}
		}
	}
}
