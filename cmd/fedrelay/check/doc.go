// Package check examines a relay's configuration against what the
// federation will see, for `fedrelay check`: one Finding per fact, each with
// a verdict (OK, INFO, WARN, FAIL).
//
//   - certs: each fronted domain's cert_file and key_file parse, the key is
//     the certificate's, the certificate names the domain (RFC 9525/6125,
//     XEP-0178, by s2s/certs' own matching), its chain leads to the system
//     roots or tls.ca_file (a self-signed one is a warning: peers will use
//     dialback), it allows serverAuth, and it is valid now and for at least
//     14 more days. A domain without files gets a generated self-signed
//     certificate at start: a warning. internal.ca_cert_file/ca_key_file,
//     when set, must be a CA that may sign, with its key, and unexpired.
//   - dns: the public _xmpp-server._tcp and _xmpps-server._tcp records of
//     each fronted domain (asked through dns.servers or /etc/resolv.conf
//     with s2s/resolve, dns.overrides ignored) and their targets' addresses
//     against federation.listen and listen_tls: STARTTLS records must reach
//     a STARTTLS listener and direct TLS records a direct TLS one. An
//     address of this host where the relay does not listen fails; an
//     address that is not this host's, on the right port, is a warning
//     (it may be forwarded here through NAT or a load balancer, which no
//     check run on this host can see); so is a private address published
//     for the federation. No SRV records at all is a warning when the
//     domain's A/AAAA records on port 5269 reach the relay (RFC 6120
//     §3.2.2), a failure otherwise.
//   - connectivity: a stream to every federation.listen address for every
//     fronted domain, as a remote server opens one (header to the domain,
//     no from), through STARTTLS and the restarted stream's features, which
//     must offer dialback or SASL EXTERNAL; the same over direct TLS with
//     ALPN xmpp-server on listen_tls; and a stream header to each domain's
//     route, whose internal server must answer with features. The
//     certificate presented is not required to verify, but whether it is
//     valid for the domain is reported. An unspecified listening address
//     (0.0.0.0, ::) is reached through loopback.
//
// The package uses s2s/certs, s2s/resolve and s2s/wire, never s2s/peer. It
// does not log; Run returns the findings.
package check
