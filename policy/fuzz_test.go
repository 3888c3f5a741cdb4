package policy_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

// refPattern is one normalised pattern with its label, for the reference.
type refPattern struct {
	pattern string // "example.org" or "*.example.org"
	label   string
}

// refMatches is the plain reading of the pattern rules.
func refMatches(pattern, d string) bool {
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(d, "."+base)
	}
	return d == pattern
}

// specificity orders matching patterns: exact first, then longer bases.
func specificity(pattern string) int {
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(base)
	}
	return 1 << 20
}

// refBest returns the label of the most specific matching pattern (the
// first listed among equals), or "".
func refBest(list []refPattern, d string) string {
	best, label := -1, ""
	for _, p := range list {
		if refMatches(p.pattern, d) && specificity(p.pattern) > best {
			best, label = specificity(p.pattern), p.label
		}
	}
	return label
}

// refNormalise folds and checks a remote domain the way Domain documents.
func refNormalise(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 1023 {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			return "", false
		}
	}
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, d), true
}

// splitPatterns keeps the comma-separated patterns config accepts, in
// normalised form.
func splitPatterns(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if n, err := config.NormalizePattern(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func FuzzMatch(f *testing.F) {
	seeds := [][4]string{
		{"example.org,*.partner.example", "bad.partner.example,*.evil.example", "*.org,partner.example", "a.b.partner.example"},
		{"*.example.org", "", "example.org", "example.org"},
		{"*.example.org", "", "", "badexample.org"},
		{"", "*.example.org", "*.example.org", "a.b.c.example.org"},
		{"*.org", "*.example.org,example.org", "*.b.example.org,*.example.org", "A.B.Example.ORG."},
		{"*.xn--bcher-kva.example", "", "", "x.bücher.example"},
		{"[::1]", "*.a", "", "[::1]"},
		{"a", "*.a", "a", ".a"},
		{"*.a.a", "a.a.a", "*.a", "a.a.a.a"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, allowS, denyS, rulesS, domain string) {
		allow, deny, rules := splitPatterns(allowS), splitPatterns(denyS), splitPatterns(rulesS)
		c := config.Policy{Default: "deny", Allow: allow, Deny: deny}
		// A second policy with each pattern as its own rule, each rule with
		// its own size limit, so a refusal names the rule that applied.
		rc := config.Policy{Default: "allow"}
		for i, r := range rules {
			rc.Rules = append(rc.Rules, config.Rule{Match: []string{r}, MaxStanzaBytes: 10000 + i})
		}
		p, err := policy.Compile(c, policy.Options{})
		if err != nil {
			t.Fatalf("Compile(%+v): %v", c, err)
		}
		rp, err := policy.Compile(rc, policy.Options{})
		if err != nil {
			t.Fatalf("Compile(%+v): %v", rc, err)
		}

		got := p.Domain(domain)
		d, ok := refNormalise(domain)
		if !ok {
			if got.Allowed || got.Reason != policy.ReasonDomain {
				t.Fatalf("Domain(%q) = %v %v, want refusal for the name itself", domain, got.Allowed, got.Reason)
			}
			return
		}
		var allowList, denyList []refPattern
		for i, a := range allow {
			allowList = append(allowList, refPattern{a, fmt.Sprintf("allow[%d] %s", i, a)})
		}
		for i, a := range deny {
			denyList = append(denyList, refPattern{a, fmt.Sprintf("deny[%d] %s", i, a)})
		}
		wantAllowed, wantRule := false, "default deny"
		if l := refBest(denyList, d); l != "" {
			wantRule = l
		} else if l := refBest(allowList, d); l != "" {
			wantAllowed, wantRule = true, l
		}
		if got.Allowed != wantAllowed || got.Rule != wantRule {
			t.Fatalf("Domain(%q) = %v %q, want %v %q\nallow %q\ndeny %q", domain, got.Allowed, got.Rule,
				wantAllowed, wantRule, allow, deny)
		}

		wantRule = "default allow"
		for i, r := range rules {
			if refMatches(r, d) {
				wantRule = fmt.Sprintf("rules[%d].max_stanza_bytes", i)
				break
			}
		}
		sd := rp.Stanza(domain, policy.In, policy.Stanza{Kind: policy.Message, Size: 1 << 20})
		if sd.Rule != wantRule {
			t.Fatalf("rule for %q = %q, want %q\nrules %q", domain, sd.Rule, wantRule, rules)
		}
	})
}

func FuzzSubscriptionFrom(f *testing.F) {
	for _, s := range [][2]string{
		{"subscribe", "juliet@example.com"},
		{"subscribe", "juliet@example.com/balcony"},
		{"unsubscribed", "example.com/"},
		{"subscribed", "a/b@c/d"},
		{"probe", "juliet@example.com/balcony"},
		{"", "@/"},
		{"error", "x@y/z"},
	} {
		f.Add(s[0], s[1])
	}
	p := mustCompile(f, config.Policy{Default: "allow"}, policy.Options{})
	f.Fuzz(func(t *testing.T, typ, from string) {
		s := policy.Stanza{Kind: policy.Presence, Type: typ, From: from, Size: 100}
		d := p.Stanza("remote.example", policy.In, s)
		raw := p.RawStanza("remote.example", policy.In, policy.RawStanza{Kind: s.Kind, Type: []byte(typ), From: []byte(from), Size: s.Size})
		if raw != d {
			t.Fatalf("RawStanza = %+v, Stanza = %+v", raw, d)
		}
		subscription := typ == "subscribe" || typ == "subscribed" || typ == "unsubscribe" || typ == "unsubscribed"
		full := strings.Contains(from, "/")
		if got, want := d.Reason == policy.ReasonFullJID, subscription && full; got != want {
			t.Fatalf("presence type %q from %q: full-JID refusal %v, want %v", typ, from, got, want)
		}
		// Where mellium splits the JID, it agrees on what is full.
		if _, _, res, err := jid.SplitString(from); err == nil && utf8.ValidString(from) && (res != "") != full {
			t.Fatalf("jid.SplitString(%q) resource %q, but full = %v", from, res, full)
		}
		if d.Allowed && d.Send {
			t.Fatalf("allowed decision with Send: %+v", d)
		}
		if typ == "error" && d.Send {
			t.Fatalf("error stanza answered: %+v", d)
		}
	})
}
