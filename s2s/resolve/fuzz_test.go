package resolve_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// FuzzParseOverride checks that any dns.overrides target either fails or
// parses to a candidate that formats back to a target parsing to the same
// candidate, with a host usable in DNS or as an address.
func FuzzParseOverride(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5269",
		"tls://127.0.0.1:5270",
		"[::1]:5269",
		"tls://[2001:db8::1]:5223",
		"xmpp.example.org:5269",
		"tls://xmpp.example.org:5270",
		"ünïcode.test:5269",
		"XMPP.Example.ORG.:5269",
		"[::ffff:192.0.2.1]:5269",
		"host:0",
		"host:65536",
		"host:+5",
		"http://host:1",
		"tls://",
		"[fe80::1%eth0]:5269",
		"a..b:1",
		"xn--zz:1",
		":5269",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := resolve.ParseOverride(s)
		if err != nil {
			return
		}
		if c.Port == 0 || c.Host == "" || c.Source != resolve.FromOverride {
			t.Fatalf("ParseOverride(%q) = %+v", s, c)
		}
		if len(c.Addrs) == 0 {
			if a, err := resolve.ToASCII(c.Host); err != nil || a != c.Host {
				t.Fatalf("ParseOverride(%q): host %q is not in ASCII form (%q, %v)", s, c.Host, a, err)
			}
		}
		back := resolve.OverrideString(c)
		c2, err := resolve.ParseOverride(back)
		if err != nil {
			t.Fatalf("ParseOverride(%q) = %+v formats as %q, which fails: %v", s, c, back, err)
		}
		if c2.String() != c.String() || c2.Host != c.Host || c2.Mode != c.Mode || len(c2.Addrs) != len(c.Addrs) {
			t.Fatalf("round trip %q → %q: %+v != %+v", s, back, c2, c)
		}
	})
}
