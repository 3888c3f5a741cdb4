package certs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// handshake runs one TLS handshake over a 127.0.0.1 TCP connection and
// returns what each side saw.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (srv, cli tls.ConnectionState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, srvCfg)
		err = tc.HandshakeContext(ctx)
		if err == nil {
			// Wait for the client to finish reading our flight (and, in TLS
			// 1.3, for the session tickets) before closing.
			_, _ = tc.Read(make([]byte, 1))
		}
		done <- result{tc.ConnectionState(), err}
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cliCfg)
	cerr := tc.HandshakeContext(ctx)
	cli = tc.ConnectionState()
	if cerr == nil {
		_, cerr = tc.Write([]byte{'x'})
	}
	r := <-done
	c.Close()
	if cerr != nil || r.err != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, r.err)
	}
	return r.state, cli
}

func TestHandshakes(t *testing.T) {
	p := newPKI(t)
	issuer := p.inter.tlsCert()
	v := &certs.Verifier{Roots: p.roots, Now: func() time.Time { return testNow }}

	// The federation face: internal domains, certificates from the test CA.
	fed, err := certs.NewStore([]config.Domain{{Name: "a.example"}, {Name: "b.example"}},
		certs.Options{Issuer: issuer, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	// The internal face: any remote domain on demand, same CA.
	internal, err := certs.NewStore([]config.Domain{{Name: "a.example"}, {Name: "b.example"}},
		certs.Options{Issuer: issuer, OnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	// A relay with self-signed certificates only.
	selfSigned, err := certs.NewStore([]config.Domain{{Name: "self.example"}}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clientConfig := func(s *certs.Store, local, remote string, direct bool) *tls.Config {
		cfg, err := s.ClientConfig(local, remote, direct)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("SNI picks the configured domain", func(t *testing.T) {
		for _, remote := range []string{"a.example", "b.example"} {
			_, cli := handshake(t, fed.ServerConfig(false), clientConfig(internal, "remote.example", remote, false))
			if err := v.VerifyPeer(cli, remote); err != nil {
				t.Errorf("server certificate for %s: %v", remote, err)
			}
			other := map[string]string{"a.example": "b.example", "b.example": "a.example"}[remote]
			if err := v.VerifyPeer(cli, other); !errors.Is(err, certs.ErrNameMismatch) {
				t.Errorf("certificate for %s also valid for %s: %v", remote, other, err)
			}
		}
	})

	t.Run("on-demand certificate verifies for the requested domain", func(t *testing.T) {
		_, cli := handshake(t, internal.ServerConfig(false), clientConfig(fed, "a.example", "remote.org", false))
		if err := v.VerifyPeer(cli, "remote.org"); err != nil {
			t.Errorf("on-demand certificate: %v", err)
		}
		if dns, _, _ := certs.Identities(cli.PeerCertificates[0]); len(dns) != 1 || dns[0] != "remote.org" {
			t.Errorf("on-demand certificate names %q", dns)
		}
	})

	t.Run("client certificate of the local domain", func(t *testing.T) {
		srv, _ := handshake(t, fed.ServerConfig(false), clientConfig(internal, "remote.org", "a.example", false))
		if err := v.VerifyPeer(srv, "remote.org"); err != nil {
			t.Errorf("inbound peer remote.org: %v", err)
		}
		if err := v.VerifyPeer(srv, "other.org"); !errors.Is(err, certs.ErrNameMismatch) {
			t.Errorf("inbound peer claiming other.org: err = %v, want ErrNameMismatch", err)
		}
	})

	t.Run("client certificate over TLS 1.2", func(t *testing.T) {
		cfg := clientConfig(fed, "b.example", "a.example", false)
		cfg.MaxVersion = tls.VersionTLS12
		srv, cli := handshake(t, fed.ServerConfig(false), cfg)
		if cli.Version != tls.VersionTLS12 {
			t.Fatalf("negotiated %x", cli.Version)
		}
		if err := v.VerifyPeer(srv, "b.example"); err != nil {
			t.Errorf("inbound peer b.example: %v", err)
		}
	})

	t.Run("ALPN xmpp-server on direct TLS", func(t *testing.T) {
		srv, cli := handshake(t, fed.ServerConfig(true), clientConfig(internal, "remote.org", "a.example", true))
		if srv.NegotiatedProtocol != certs.ALPN || cli.NegotiatedProtocol != certs.ALPN {
			t.Errorf("ALPN server %q client %q, want %q", srv.NegotiatedProtocol, cli.NegotiatedProtocol, certs.ALPN)
		}
		srv, _ = handshake(t, fed.ServerConfig(false), clientConfig(internal, "remote.org", "a.example", false))
		if srv.NegotiatedProtocol != "" {
			t.Errorf("STARTTLS negotiated ALPN %q", srv.NegotiatedProtocol)
		}
	})

	t.Run("peer without a client certificate", func(t *testing.T) {
		plain := &tls.Config{ServerName: "a.example", InsecureSkipVerify: true}
		srv, _ := handshake(t, fed.ServerConfig(false), plain)
		if err := v.VerifyPeer(srv, "dialback.example"); !errors.Is(err, certs.ErrNoCertificate) {
			t.Errorf("err = %v, want ErrNoCertificate", err)
		}
	})

	t.Run("no client certificate for an unknown local domain", func(t *testing.T) {
		srv, _ := handshake(t, fed.ServerConfig(false), clientConfig(fed.ConfiguredOnly(), "unknown.example", "a.example", false))
		if err := v.VerifyPeer(srv, "unknown.example"); !errors.Is(err, certs.ErrNoCertificate) {
			t.Errorf("err = %v, want ErrNoCertificate", err)
		}
	})

	t.Run("untrusted peer still connects", func(t *testing.T) {
		srv, cli := handshake(t, selfSigned.ServerConfig(false), clientConfig(selfSigned, "self.example", "self.example", false))
		if err := v.VerifyPeer(cli, "self.example"); !errors.Is(err, certs.ErrUntrusted) {
			t.Errorf("outbound: err = %v, want ErrUntrusted", err)
		}
		if err := v.VerifyPeer(srv, "self.example"); !errors.Is(err, certs.ErrUntrusted) {
			t.Errorf("inbound: err = %v, want ErrUntrusted", err)
		}
	})
}

func TestClientConfig(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.ClientConfig("a.example", "Bücher.Example", true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "xn--bcher-kva.example" || !cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS13 ||
		len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "xmpp-server" || cfg.GetClientCertificate == nil {
		t.Errorf("ClientConfig = ServerName %q, InsecureSkipVerify %v, MinVersion %x, NextProtos %q",
			cfg.ServerName, cfg.InsecureSkipVerify, cfg.MinVersion, cfg.NextProtos)
	}
	if cfg.ClientSessionCache != nil {
		// s2s drops a link's peer certificates once judged; a session
		// stored afterwards would lack them.
		t.Error("ClientConfig keeps a session cache")
	}
	if _, err := s.ClientConfig("a.example", "user@remote.example", false); err == nil {
		t.Error("ClientConfig accepted a JID as remote domain")
	}
	srv := s.ServerConfig(false)
	if srv.ClientAuth != tls.RequestClientCert || srv.MinVersion != tls.VersionTLS13 || len(srv.NextProtos) != 0 {
		t.Errorf("ServerConfig = ClientAuth %v, MinVersion %x, NextProtos %q", srv.ClientAuth, srv.MinVersion, srv.NextProtos)
	}
}
