package policy_test

import (
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func mustCompile(t testing.TB, c config.Policy, o policy.Options) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(c, o)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestDomain(t *testing.T) {
	allowAll := config.Policy{Default: "allow"}
	denyAll := config.Policy{Default: "deny"}
	lists := config.Policy{
		Default: "deny",
		Allow:   []string{"example.org", "*.partner.example", "*.evil.example", "good.evil.example"},
		Deny:    []string{"bad.partner.example", "*.evil.example", "*.deep.partner.example"},
	}
	tests := []struct {
		name    string
		policy  config.Policy
		remote  string
		allowed bool
		reason  policy.Reason
		rule    string
	}{
		{"default allow", allowAll, "remote.org", true, policy.ReasonDefault, "default allow"},
		{"default deny", denyAll, "remote.org", false, policy.ReasonDefault, "default deny"},
		{"exact allow", lists, "example.org", true, policy.ReasonAllowList, "allow[0] example.org"},
		{"exact does not match subdomain", lists, "a.example.org", false, policy.ReasonDefault, "default deny"},
		{"wildcard matches subdomain", lists, "a.partner.example", true, policy.ReasonAllowList, "allow[1] *.partner.example"},
		{"wildcard matches any depth", lists, "a.b.partner.example", true, policy.ReasonAllowList, "allow[1] *.partner.example"},
		{"wildcard does not match itself", lists, "partner.example", false, policy.ReasonDefault, "default deny"},
		{"wildcard does not match a longer label", lists, "badpartner.example", false, policy.ReasonDefault, "default deny"},
		{"deny wins over wildcard allow", lists, "bad.partner.example", false, policy.ReasonDenyList, "deny[0] bad.partner.example"},
		{"deny wins over same pattern in allow", lists, "x.evil.example", false, policy.ReasonDenyList, "deny[1] *.evil.example"},
		{"deny wildcard wins over exact allow", lists, "good.evil.example", false, policy.ReasonDenyList, "deny[1] *.evil.example"},
		{"deny wildcard deeper", lists, "x.deep.partner.example", false, policy.ReasonDenyList, "deny[2] *.deep.partner.example"},
		{"allow of parent applies to deny-wildcard base", lists, "deep.partner.example", true, policy.ReasonAllowList, "allow[1] *.partner.example"},
		{"upper case folded", lists, "BAD.Partner.EXAMPLE", false, policy.ReasonDenyList, "deny[0] bad.partner.example"},
		{"trailing dot dropped", lists, "bad.partner.example.", false, policy.ReasonDenyList, "deny[0] bad.partner.example"},
		{"empty refused", allowAll, "", false, policy.ReasonDomain, ""},
		{"non-ASCII refused", allowAll, "bücher.example", false, policy.ReasonDomain, ""},
		{"too long refused", allowAll, strings.Repeat("a", 1024), false, policy.ReasonDomain, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.policy, policy.Options{})
			d := p.Domain(tt.remote)
			if d.Allowed != tt.allowed || d.Reason != tt.reason || (tt.rule != "" && d.Rule != tt.rule) {
				t.Errorf("Domain(%q) = %v %v %q, want %v %v %q", tt.remote, d.Allowed, d.Reason, d.Rule,
					tt.allowed, tt.reason, tt.rule)
			}
			if got, want := d.Condition.Error(), map[bool]string{true: "", false: "policy-violation"}[tt.allowed]; got != want {
				t.Errorf("Condition = %q, want %q", got, want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		policy config.Policy
		key    string
	}{
		{"default", config.Policy{Default: "maybe"}, "policy.default"},
		{"allow pattern", config.Policy{Default: "allow", Allow: []string{"a.*.example"}}, "policy.allow[0]"},
		{"deny pattern", config.Policy{Default: "allow", Deny: []string{"x", "user@x"}}, "policy.deny[1]"},
		{"rule without match", config.Policy{Default: "allow", Rules: []config.Rule{{}}}, "policy.rules[0].match"},
		{"kind", config.Policy{Default: "allow", Rules: []config.Rule{{Match: []string{"x"}, Kinds: []string{"iq", "jingle"}}}}, "policy.rules[0].kinds[1]"},
		{"subscriptions", config.Policy{Default: "allow", Rules: []config.Rule{{Match: []string{"x"}, SubscriptionsIn: "no"}}}, "policy.rules[0].subscriptions_in"},
		{"auth", config.Policy{Default: "allow", Rules: []config.Rule{{Match: []string{"x"}, RequireAuth: []string{"password"}}}}, "policy.rules[0].require_auth[0]"},
		{"size", config.Policy{Default: "allow", Rules: []config.Rule{{Match: []string{"x"}, MaxStanzaBytes: -1}}}, "policy.rules[0].max_stanza_bytes"},
		{"rate", config.Policy{Default: "allow", Rules: []config.Rule{{Match: []string{"x"}, Rate: -1}}}, "policy.rules[0].rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Compile(tt.policy, policy.Options{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Errorf("Compile error = %v, want one starting %q", err, tt.key+":")
			}
		})
	}
}

func TestCompileNormalises(t *testing.T) {
	// A hand-built config.Policy that skipped validation still matches.
	p := mustCompile(t, config.Policy{Default: "allow", Deny: []string{"*.EVIL.Example"}}, policy.Options{})
	if d := p.Domain("a.evil.example"); d.Allowed {
		t.Errorf("Domain(a.evil.example) allowed by %q, want denied", d.Rule)
	}
}

func TestRulePrecedence(t *testing.T) {
	p := mustCompile(t, config.Policy{
		Default: "allow",
		Rules: []config.Rule{
			{Match: []string{"*.example.org"}, Kinds: []string{"message"}},
			{Match: []string{"chat.example.org"}, Kinds: []string{"presence"}},
			{Match: []string{"other.example", "chat.example.org"}, Kinds: []string{"iq"}},
		},
	}, policy.Options{})
	tests := []struct {
		name   string
		remote string
		kind   policy.Kind
		ok     bool
		rule   string
	}{
		{"first rule wins over a more specific later one", "chat.example.org", policy.Message, true, "default allow"},
		{"later rule not merged in", "chat.example.org", policy.Presence, false, "rules[0].kinds"},
		{"second pattern of a rule", "other.example", policy.IQ, true, "default allow"},
		{"second pattern of a rule refuses", "other.example", policy.Message, false, "rules[2].kinds"},
		{"no rule", "example.org", policy.Presence, true, "default allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := ""
			if tt.kind == policy.IQ {
				typ = "get"
			}
			d := p.Stanza(tt.remote, policy.In, policy.Stanza{Kind: tt.kind, Type: typ, From: "a@" + tt.remote, Size: 100})
			if d.Allowed != tt.ok || d.Rule != tt.rule {
				t.Errorf("Stanza = %v %q, want %v %q", d.Allowed, d.Rule, tt.ok, tt.rule)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, tt := range []struct {
		name string
		want policy.Kind
	}{{"message", policy.Message}, {"presence", policy.Presence}, {"iq", policy.IQ}, {"Message", 0}, {"db:result", 0}, {"", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.ParseKind(tt.name); got != tt.want {
				t.Errorf("ParseKind(%q) = %v, want %v", tt.name, got, tt.want)
			}
			if got := policy.ParseKind([]byte(tt.name)); got != tt.want {
				t.Errorf("ParseKind([]byte(%q)) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestZeroPolicyRefuses(t *testing.T) {
	var p policy.Policy
	if d := p.Domain("remote.example"); d.Allowed {
		t.Errorf("zero Policy allowed a domain: %+v", d)
	}
	if d := p.Stanza("remote.example", policy.In, policy.Stanza{Kind: policy.Message, Size: 10}); d.Allowed {
		t.Errorf("zero Policy allowed a stanza: %+v", d)
	}
}
