package certs_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// TestCertificateByStreamTo: without SNI, a connection marked with the
// stream header's 'to' gets that domain's certificate (a configured one,
// or on demand); SNI, when sent, still decides; an unmarked connection or
// an unknown 'to' gets the default.
func TestCertificateByStreamTo(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}, {Name: "b.example"}},
		certs.Options{OnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tests := []struct {
		name  string
		store *certs.Store
		sni   string
		conn  net.Conn
		want  string
	}{
		{"to, configured", s.ConfiguredOnly(), "", certs.StreamTo(c1, "b.example"), "b.example"},
		{"to, on demand", s, "", certs.StreamTo(c1, "remote.example"), "remote.example"},
		{"to, not on demand in the configured-only view", s.ConfiguredOnly(), "", certs.StreamTo(c1, "remote.example"), "a.example"},
		{"SNI beats to", s, "b.example", certs.StreamTo(c1, "remote.example"), "b.example"},
		{"unmarked", s, "", c1, "a.example"},
		{"empty to leaves the connection unmarked", s, "", certs.StreamTo(c1, ""), "a.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := tt.store.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, Conn: tt.conn})
			if err != nil {
				t.Fatal(err)
			}
			if got := leafOf(t, cert).DNSNames; len(got) != 1 || got[0] != tt.want {
				t.Errorf("answered with %q, want %s", got, tt.want)
			}
		})
	}
	if nc, ok := certs.StreamTo(c1, "b.example").(interface{ NetConn() net.Conn }); !ok || nc.NetConn() != c1 {
		t.Error("a marked connection does not unwrap to the connection under it")
	}
	if certs.StreamTo(c1, "") != c1 {
		t.Error("StreamTo with an empty to wrapped the connection")
	}
}

// TestHandshakeWithoutSNI runs real handshakes with a client that sends no
// SNI, as Prosody does on S2S STARTTLS: the certificate is the stream's
// 'to', and the server config is shared by every stream.
func TestHandshakeWithoutSNI(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}, {Name: "b.example"}}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := s.ServerConfig(false)
	for _, to := range []string{"b.example", "a.example"} {
		cli, srv := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			tc := tls.Server(certs.StreamTo(srv, to), srvCfg)
			errc <- tc.Handshake()
			srv.Close() // no close_notify: nobody would read it on the pipe
		}()
		tc := tls.Client(cli, &tls.Config{InsecureSkipVerify: true}) // no ServerName: no SNI
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if got := tc.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != to {
			t.Errorf("stream to %s: the server presented %q", to, got)
		}
		cli.Close()
	}
}

// TestStreamToAllocations: marking a connection costs one allocation.
func TestStreamToAllocations(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	var sink net.Conn
	if n := testing.AllocsPerRun(100, func() { sink = certs.StreamTo(c1, "b.example") }); n > 1 {
		t.Errorf("StreamTo: %v allocations, want at most 1", n)
	}
	_ = sink
}
