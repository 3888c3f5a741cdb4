package certs

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/fedrelay/fedrelay/config"
)

// ALPN is the application protocol of S2S streams over direct TLS
// (XEP-0368).
const ALPN = "xmpp-server"

// ServerConfig returns the TLS configuration of an inbound stream: the
// certificate chosen by SNI, or without SNI by the stream's 'to' (see
// StreamTo and GetCertificate), a client certificate requested
// but neither required nor verified, and with directTLS the ALPN protocol
// xmpp-server (a client offering only other protocols is refused).
//
// crypto/tls never rejects a peer for its certificate here: many peers send
// none and use dialback, and an untrusted or misnamed one must only mean
// "no SASL EXTERNAL". After the handshake the stream calls
// Verifier.VerifyPeer with the header 'from'.
func (s *Store) ServerConfig(directTLS bool) *tls.Config {
	cfg := &tls.Config{
		GetCertificate: s.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
		MinVersion:     s.c.opts.MinVersion,
	}
	if directTLS {
		cfg.NextProtos = []string{ALPN}
	}
	return cfg
}

// ClientConfig returns the TLS configuration of an outbound stream from
// localDomain to remoteDomain. ServerName (SNI) is the remote XMPP domain in
// ASCII form, never the SRV target (RFC 6120 §13.7.2.1, RFC 7590); the client
// certificate is localDomain's (Store.ClientCertificate); with directTLS the
// ALPN protocol is xmpp-server.
//
// crypto/tls verification is skipped on purpose: a peer whose certificate
// cannot be verified must fall back to dialback rather than lose the
// connection. The stream calls Verifier.VerifyPeer(state, remoteDomain)
// after the handshake, and must not treat the peer as authenticated by
// certificate unless it returns nil.
//
// There is no session cache: a resumed session would carry the client
// certificate of whichever local domain made it, whatever domain the new
// stream speaks for.
func (s *Store) ClientConfig(localDomain, remoteDomain string, directTLS bool) (*tls.Config, error) {
	if _, err := config.NormalizeDomain(localDomain); err != nil {
		return nil, fmt.Errorf("certs: local domain %q: %w", localDomain, err)
	}
	server, err := config.NormalizeDomain(remoteDomain)
	if err != nil {
		return nil, fmt.Errorf("certs: remote domain %q: %w", remoteDomain, err)
	}
	cfg := &tls.Config{
		ServerName:           server,
		InsecureSkipVerify:   true, // verified by Verifier.VerifyPeer afterwards, see above
		GetClientCertificate: s.ClientCertificate(localDomain),
		MinVersion:           s.c.opts.MinVersion,
	}
	if directTLS {
		cfg.NextProtos = []string{ALPN}
	}
	return cfg, nil
}

// StreamTo marks c, the connection a STARTTLS handshake is about to run on,
// with to, the 'to' of the stream header the peer sent before STARTTLS, and
// returns the connection to give tls.Server. When the peer's ClientHello
// carries no SNI (Prosody sends none on S2S STARTTLS), GetCertificate then
// answers with the certificate for to rather than the default domain's:
// the header names the domain the peer means to reach (RFC 6120 §4.7.2).
// SNI, when present, still decides. An empty to returns c itself; direct
// TLS has no header before the handshake, so it has nothing to mark.
//
// The mark costs one small allocation per connection, and lets every
// stream share the same tls.Config. The returned connection unwraps with
// NetConn.
func StreamTo(c net.Conn, to string) net.Conn {
	if to == "" {
		return c
	}
	return &streamConn{Conn: c, to: to}
}

// streamConn is a connection marked with its stream header's 'to'.
type streamConn struct {
	net.Conn
	to string
}

// NetConn returns the connection under the mark.
func (c *streamConn) NetConn() net.Conn { return c.Conn }
