// Package resolve finds and connects to a remote XMPP domain's server for
// outbound S2S streams.
//
// It owns three things:
//
//   - Resolution (Resolver): the SRV records _xmpps-server._tcp (direct TLS,
//     XEP-0368) and _xmpp-server._tcp (STARTTLS, RFC 6120 §3.2) asked in
//     parallel, merged into one candidate list ordered by RFC 2782 (priority,
//     then weighted random selection), the meaning of a "." target, and the
//     fallback to the domain's own A/AAAA records on port 5269 when neither
//     SRV name has records. Internationalised domains are converted to
//     A-labels first (IDNA2008 lookup rules).
//   - The DNS transport and cache: nameservers from the configuration or
//     /etc/resolv.conf, UDP with EDNS0 (1232 bytes) and the DO bit, TCP when
//     an answer is truncated, retries and the next server on failure; a
//     bounded LRU cache that honours record TTLs and caches negative answers
//     per RFC 2308, with concurrent identical questions collapsed into one
//     query. The AD bit of answers is kept (Candidate.Secure) for DANE.
//   - Dialling (Dialer): candidates in order, each candidate's addresses
//     raced with IPv6 and IPv4 interleaved and a 250 ms stagger (RFC 8305),
//     and the TLS handshake of direct TLS candidates with SNI set to the
//     XMPP domain and ALPN xmpp-server. Certificates and their verification
//     are the caller's, through Dialer.TLSConfig.
//
// Failures are classified for bounces (RFC 6120 §10.4): ErrNotFound (the
// domain does not exist or offers no S2S service: remote-server-not-found)
// versus ErrTemporary (a lookup timed out or failed, or no candidate could
// be connected to: remote-server-timeout). See Kind and KindOf.
//
// The package does not log; it returns errors whose messages are one line
// and name the DNS name or address concerned.
//
// The resolvetest sub-package provides an in-process DNS server for tests.
package resolve
