package resolve_test

import (
	"fmt"

	"github.com/fedrelay/fedrelay/s2s/resolve"
)

func ExampleParseOverride() {
	for _, s := range []string{"tls://xmpp.partner.example:5270", "[2001:db8::1]:5269", "ftp://x:1"} {
		c, err := resolve.ParseOverride(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(c.Host, c.Port, c.Mode)
	}
	// Output:
	// xmpp.partner.example 5270 directtls
	// 2001:db8::1 5269 starttls
	// error: unknown scheme "ftp://": write host:port or tls://host:port
}

func ExampleCandidate_String() {
	c := resolve.Candidate{Host: "xmpp.example.org", Port: 5269, Priority: 10, Weight: 5, Mode: resolve.StartTLS}
	fmt.Println(c)
	// Output:
	// 10 5 xmpp.example.org:5269 starttls ttl=0 dnssec=no
}
