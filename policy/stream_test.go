package policy_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func TestStream(t *testing.T) {
	c := config.Policy{
		Default: "allow",
		Deny:    []string{"evil.example"},
		Rules: []config.Rule{
			{Match: []string{"strict.example"}, RequireTLS: true, RequireAuth: []string{"external"}},
			{Match: []string{"db.example"}, RequireAuth: []string{"dialback"}},
			{Match: []string{"either.example"}, RequireAuth: []string{"external", "dialback"}},
		},
	}
	lax := mustCompile(t, c, policy.Options{})
	strict := mustCompile(t, c, policy.Options{RequireTLS: true})
	type want struct {
		allowed bool
		reason  policy.Reason
		rule    string
		cond    string
	}
	ok := func(rule string) want { return want{true, policy.ReasonDefault, rule, ""} }
	fed := func(remote string, tls bool, auth policy.Auth) policy.StreamState {
		return policy.StreamState{Face: policy.Federation, Dir: policy.In, Remote: remote, TLS: tls, Auth: auth}
	}
	tests := []struct {
		name string
		p    *policy.Policy
		st   policy.StreamState
		want want
	}{
		{"denied domain", lax, fed("evil.example", true, policy.AuthExternal), want{false, policy.ReasonDenyList, "deny[0] evil.example", "policy-violation"}},
		{"denied domain on internal face", lax, policy.StreamState{Face: policy.Internal, Dir: policy.Out, Remote: "evil.example", TLS: true}, want{false, policy.ReasonDenyList, "deny[0] evil.example", "policy-violation"}},
		{"plain allowed without requirement", lax, fed("remote.example", false, policy.AuthDialback), ok("default allow")},
		{"tls.required", strict, fed("remote.example", false, policy.AuthDialback), want{false, policy.ReasonTLS, "tls.required", "policy-violation"}},
		{"tls.required on internal face", strict, policy.StreamState{Face: policy.Internal, Remote: "remote.example"}, want{false, policy.ReasonTLS, "tls.required", "policy-violation"}},
		{"rule require_tls", lax, fed("strict.example", false, policy.AuthNone), want{false, policy.ReasonTLS, "rules[0].require_tls", "policy-violation"}},
		{"rule require_tls met", lax, fed("strict.example", true, policy.AuthNone), ok("default allow")},
		{"rule require_tls not for internal face", lax, policy.StreamState{Face: policy.Internal, Remote: "strict.example", Auth: policy.AuthDialback}, ok("default allow")},
		{"zero face is federation", lax, policy.StreamState{Remote: "strict.example"}, want{false, policy.ReasonTLS, "rules[0].require_tls", "policy-violation"}},
		{"external required, external", lax, fed("strict.example", true, policy.AuthExternal), ok("default allow")},
		{"external required, dialback", lax, fed("strict.example", true, policy.AuthDialback), want{false, policy.ReasonAuth, "rules[0].require_auth", "not-authorized"}},
		{"external required, not yet", lax, fed("strict.example", true, policy.AuthNone), ok("default allow")},
		{"dialback required, external", lax, fed("db.example", true, policy.AuthExternal), want{false, policy.ReasonAuth, "rules[1].require_auth", "not-authorized"}},
		{"dialback required, dialback", lax, fed("db.example", true, policy.AuthDialback), ok("default allow")},
		{"either accepted", lax, fed("either.example", true, policy.AuthDialback), ok("default allow")},
		{"unknown auth value refused", lax, fed("either.example", true, policy.Auth(7)), want{false, policy.ReasonAuth, "rules[2].require_auth", "not-authorized"}},
		{"auth rule not for internal face", lax, policy.StreamState{Face: policy.Internal, Remote: "strict.example", TLS: true, Auth: policy.AuthDialback}, ok("default allow")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.Stream(tt.st)
			cond := ""
			if !d.Allowed {
				cond = d.Condition.Error()
			}
			if got := (want{d.Allowed, d.Reason, d.Rule, cond}); got != tt.want {
				t.Errorf("Stream(%+v)\n got %+v\nwant %+v", tt.st, got, tt.want)
			}
		})
	}
}

// TestReload is the hot-reload question: which established streams does the
// new policy refuse?
func TestReload(t *testing.T) {
	old := mustCompile(t, config.Policy{Default: "allow"}, policy.Options{})
	next := mustCompile(t, config.Policy{
		Default: "allow",
		Deny:    []string{"*.gone.example"},
		Rules:   []config.Rule{{Match: []string{"weak.example"}, RequireAuth: []string{"external"}}},
	}, policy.Options{})
	tests := []struct {
		name  string
		st    policy.StreamState
		still bool
		cond  string
	}{
		{"untouched", policy.StreamState{Face: policy.Federation, Dir: policy.In, Remote: "fine.example", TLS: true, Auth: policy.AuthDialback}, true, ""},
		{"newly denied", policy.StreamState{Face: policy.Federation, Dir: policy.In, Remote: "x.gone.example", TLS: true, Auth: policy.AuthExternal}, false, "policy-violation"},
		{"newly denied on internal face", policy.StreamState{Face: policy.Internal, Dir: policy.Out, Remote: "x.gone.example", TLS: true}, false, "policy-violation"},
		{"auth now insufficient", policy.StreamState{Face: policy.Federation, Dir: policy.Out, Remote: "weak.example", TLS: true, Auth: policy.AuthDialback}, false, "not-authorized"},
		{"auth still sufficient", policy.StreamState{Face: policy.Federation, Dir: policy.Out, Remote: "weak.example", TLS: true, Auth: policy.AuthExternal}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := old.Stream(tt.st); !d.Allowed {
				t.Fatalf("old policy refuses %+v: %q", tt.st, d.Rule)
			}
			d := next.Stream(tt.st)
			if d.Allowed != tt.still || (!d.Allowed && d.Condition.Error() != tt.cond) {
				t.Errorf("after reload: allowed %v (%q, %v), want %v %q", d.Allowed, d.Rule, d.Condition, tt.still, tt.cond)
			}
		})
	}
}
