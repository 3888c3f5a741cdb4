package internaldns

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what is written.
type recorder struct {
	dns.ResponseWriter
	msg *dns.Msg
}

func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }
func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5353} }

// FuzzServeDNS: whatever query an internal host sends, the responder
// answers once, without panicking, with an answer that packs, that echoes
// the query's id, and that gives the relay's address only for its target
// name or, through SRV glue, for a remote domain's S2S service.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"_xmpp-server._tcp.remote.example.", dns.TypeSRV}, {"_xmpps-server._tcp.remote.example.", dns.TypeSRV},
		{"a.example.", dns.TypeA}, {DefaultTarget, dns.TypeAAAA}, {"google.com.", dns.TypeA}, {"_xmpp-server._tcp.", dns.TypeSRV},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
	}
	face := netip.MustParseAddrPort("192.0.2.1:5269")
	r := &Responder{Face: face, Route: func(d string) (string, bool) {
		if d == "a.example" {
			return "10.0.0.5:5269", true
		}
		return "", false
	}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		w := &recorder{}
		r.ServeDNS(w, req)
		if w.msg == nil {
			t.Fatal("no answer")
		}
		if w.msg.Id != req.Id {
			t.Fatalf("answer id %d, query id %d", w.msg.Id, req.Id)
		}
		if _, err := w.msg.Pack(); err != nil {
			t.Fatalf("the answer does not pack: %v", err)
		}
		for _, rr := range w.msg.Answer {
			if a, ok := rr.(*dns.A); ok && a.A.Equal(net.IP(face.Addr().AsSlice())) && strings.ToLower(a.Hdr.Name) != DefaultTarget {
				t.Fatalf("the relay's address given for %s", a.Hdr.Name)
			}
		}
	})
}

// TestAnswerKeepsCase: an answer's owner name is the name as asked, in its
// case: resolvers that randomise the case of their questions (DNS 0x20)
// drop answers that do not echo it.
func TestAnswerKeepsCase(t *testing.T) {
	r := &Responder{Face: netip.MustParseAddrPort("192.0.2.1:5269"), Route: func(string) (string, bool) { return "", false }}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"_xmpp-server._tcp.ReMoTe.ExAmPlE.", dns.TypeSRV}, {"FedRelay.Internal.", dns.TypeA}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		w := &recorder{}
		r.ServeDNS(w, m)
		if len(w.msg.Answer) != 1 || w.msg.Answer[0].Header().Name != q.name {
			t.Errorf("%s: %v, want one answer owned by the name as asked", q.name, w.msg.Answer)
		}
	}
}
