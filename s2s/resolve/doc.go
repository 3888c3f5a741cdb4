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
//     query. The AD bit of answers is kept (Candidate.Secure).
//   - DANE (RFC 6698, RFC 7671, RFC 7673): Resolver.DANE returns the TLSA
//     records that may authenticate the server reached through a candidate,
//     once the answers on the way are DNSSEC-secure (the SRV RRset, the
//     target's address records, the TLSA RRset), and DANEForDomain gathers
//     them over a domain's candidates for inbound peers. With dns.dnssec
//     "validate" the relay validates answers itself (DO and CD set): RRSIGs
//     of RSA/SHA-256, RSA/SHA-512, ECDSA P-256/P-384 or Ed25519 within
//     their validity period, DNSKEY RRsets matching the parent's DS (SHA-256
//     or SHA-384) from the IANA root trust anchors down, at most 16 zones
//     deep; verdicts are cached for their TTL (never past the signature's
//     expiration) and shared among concurrent callers. Denial of existence
//     (NSEC/NSEC3) is not proven: anything not provably secure means no
//     DANE, never a refusal. With "trust-ad" the nameserver's AD bit is
//     believed. Matching certificates against the records is s2s/certs'.
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
// The resolvetest sub-package provides an in-process DNS server for tests,
// and DNSSEC-signed zones for it to serve.
package resolve
