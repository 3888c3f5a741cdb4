package demo

import (
	"context"
	"testing"

	"github.com/miekg/dns"
)

func TestNameserverKnowsNothing(t *testing.T) {
	ns, err := startNameserver()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.shutdown(context.Background())
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"_xmpp-server._tcp.nowhere.invalid.", dns.TypeSRV},
		{"_xmpps-server._tcp.nowhere.invalid.", dns.TypeSRV},
		{"nowhere.invalid.", dns.TypeA},
		{"example.org.", dns.TypeAAAA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		r, err := dns.Exchange(m, ns.Addr)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s %s: %s", q.name, dns.TypeToString[q.qtype], r)
		}
	}
}
