package dialback

import "testing"

// FuzzDomain checks that the fast path of Domain accepts only strings that
// the full normalization leaves unchanged, and that normal forms are fixed
// points. (An internal test: the fast path is not visible from outside.)
func FuzzDomain(f *testing.F) {
	for _, s := range []string{
		"example.org", "Example.ORG.", "xn--mnchen-3ya.example", "münchen.example",
		"a--b.example", "ab--c.example", "1.2.3.4", "[::1]", "a..b", "-a", "a-", "_x.example",
		"ß.example", "xn--zca.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isPlainDomain(s) {
			if n, err := normalizeDomain(s); err != nil || n != s {
				t.Fatalf("fast path accepts %q, full normalization gives %q, %v", s, n, err)
			}
		}
		n, err := Domain(s)
		if err != nil {
			return
		}
		if n2, err := Domain(n); err != nil || n2 != n {
			t.Fatalf("Domain(%q) = %q, but Domain(%q) = %q, %v", s, n, n, n2, err)
		}
	})
}
