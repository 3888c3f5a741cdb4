package routing

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestJIDKeyFastPath: addresses already in normal form, nearly all of
// them, are their own key and cost no allocation.
func TestJIDKeyFastPath(t *testing.T) {
	for _, s := range []string{"bob@example.org/res", "bob@example.org/Res", "example.org", "a.example",
		"bob@example.org", "alice+tag@a.example/phone-1", "192.0.2.1", "bob@192.0.2.1/r"} {
		if !plainJID(s) {
			t.Errorf("plainJID(%q) = false, want the fast path", s)
		}
		if k := jidKey(s); k != s {
			t.Errorf("jidKey(%q) = %q", s, k)
		}
		if n := testing.AllocsPerRun(100, func() { _ = jidKey(s) }); n != 0 {
			t.Errorf("jidKey(%q): %v allocations, want none", s, n)
		}
	}
	for _, s := range []string{"Bob@example.org/res", "bob@Example.org", "bob@" + "xn--bcher-kva.example",
		"bob@example.org.", "bob@bücher.example", "bob@example.org/a b", "bob@[::1]"} {
		if plainJID(s) {
			t.Errorf("plainJID(%q) = true, want the full normalisation", s)
		}
	}
}

// FuzzJIDKey checks the fast path's promise: a string it takes as it is
// is one that jid.Parse refuses (then the key is the string as written) or
// gives back unchanged, so that both paths agree on every address.
func FuzzJIDKey(f *testing.F) {
	for _, s := range []string{"bob@example.org/res", "Bob@Example.ORG/res", "example.org.", "bob@xn--bcher-kva.example/r",
		"bob@bücher.example", "a@b@c", "@example.org", "bob@example.org/", "bob@[::1]/r", "192.0.2.1", "a--b.example",
		"ab--c.example", "-a.example", "a..example", "bob@example.org/a/b@c", "bob@exa_mple.org", "b\"ob@example.org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := jidKey(s)
		if !plainJID(s) {
			return
		}
		if k != s {
			t.Fatalf("jidKey(%q) = %q on the fast path", s, k)
		}
		if j, err := jid.Parse(s); err == nil && j.String() != s {
			t.Fatalf("fast path for %q, which normalises to %q", s, j.String())
		}
	})
}
