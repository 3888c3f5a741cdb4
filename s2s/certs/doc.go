// Package certs owns the certificates of fedrelay's S2S TLS and the
// identity checks of its peers.
//
// What it owns:
//
//   - Certificates by SNI, or by the stream's 'to' (Store). Each configured
//     domain has a certificate loaded from cert_file/key_file (PEM chain
//     and RSA, ECDSA or Ed25519 key) or, without them, one generated at
//     start. On the federation face
//     the relay presents the internal domains' certificates; on the internal
//     face it is asked, by SNI, for a certificate of any remote domain, and
//     with Options.OnDemand it generates one, cached in a bounded LRU and
//     generated once per name however many handshakes ask for it at the same
//     time. Generated certificates are self-signed, or signed by an internal
//     CA (Options.Issuer) that the organisation's servers trust. They carry
//     DNS-ID, SRV-ID and XmppAddr for exactly the name asked for (no
//     wildcard), EKU serverAuth and clientAuth, and an ECDSA P-256 key. An
//     unknown SNI without on-demand generation gets the default domain's
//     certificate. A ClientHello without SNI (Prosody sends none on S2S
//     STARTTLS) is answered with the certificate for the 'to' of the stream
//     header read before STARTTLS (StreamTo), on both faces. Generated
//     certificates are replaced once two thirds of their validity have
//     passed; the internal CA is loaded and checked by LoadIssuer. As a TLS
//     client the relay presents the certificate of the local domain it
//     speaks for, so that the peer can offer SASL EXTERNAL.
//
//   - TLS configurations (Store.ServerConfig, Store.ClientConfig) that never
//     let crypto/tls refuse a peer for its certificate: inbound the client
//     certificate is requested, not required; outbound crypto/tls
//     verification is skipped. The stream verifies afterwards and falls back
//     to dialback when verification fails (RFC 6120 §13.7.2, XEP-0178,
//     XEP-0220). SNI is the XMPP domain, never the SRV target; direct TLS
//     (XEP-0368) uses ALPN xmpp-server.
//
//   - Verification of peer certificates (Verifier) per RFC 9525 (which
//     obsoletes RFC 6125), RFC 6120 §13.7 and XEP-0178: a chain to the system
//     roots or the configured CA file, then identity matching of the domain
//     against DNS-IDs (a wildcard only as the whole left-most label, for one
//     label), the SRV-ID _xmpp-server.<domain> (otherName
//     1.3.6.1.5.5.7.8.7, RFC 4985) and the XmppAddr (otherName
//     1.3.6.1.5.5.7.8.5), in IDNA ASCII form, case-insensitively. The
//     subject common name is never used. Failures are *PeerError values
//     telling why (no certificate, untrusted chain, expired, usage, name
//     mismatch) so that the caller can log why a stream fell back to
//     dialback. Verifier.VerifyChain and Peer.VerifyDomain serve XEP-0344:
//     a piggybacked db:result whose domain the peer's certificate covers
//     needs no db:verify round trip.
//
// Extended key usage. An inbound S2S peer presents its server certificate as
// a TLS client certificate. Public CAs have stopped putting clientAuth in
// server certificates (Let's Encrypt's default profile since February 2026,
// ahead of the Chrome root program's separation of server and client PKIs),
// so a peer certificate with serverAuth only MUST be accepted; ejabberd and Metronome once required
// clientAuth and pushed such peers to dialback. The Verifier accepts a chain
// that allows serverAuth or clientAuth, or that carries no EKU or
// anyExtendedKeyUsage, and refuses one made only for other purposes (code
// signing, e-mail). It asks crypto/x509 for KeyUsages {ServerAuth,
// ClientAuth} (accepted when the chain allows either) rather than
// ExtKeyUsageAny, which would switch off the EKU check altogether.
//
// Name constraints: crypto/x509 applies a CA's DNS name constraints to
// dNSNames only. An identity matched through SRV-ID or XmppAddr is checked
// here against the DNS constraints of the chain's CAs, so a CA constrained to
// its own domains cannot vouch for others through an otherName.
//
//   - DANE (Verifier.VerifyDANE, RFC 6698, RFC 7671, RFC 7673): the peer's
//     chain against TLSA records the caller looked up with DNSSEC
//     (s2s/resolve Resolver.DANE). DANE-EE(3) matches the leaf certificate
//     or its public key, exactly or by SHA-256/SHA-512, and checks nothing
//     else (no names, no dates). DANE-TA(2) matches a certificate the peer
//     sent after its leaf; the leaf must chain to it (dates and key usage
//     checked) and identify the XMPP domain (or the SRV target) as above.
//     PKIX-TA(0) and PKIX-EE(1) records are not used: they only narrow PKIX
//     validation, and DANE is asked when PKIX validation has failed.
//
// The package does not log: NewStore and Reload report warnings as values,
// verification returns errors, and callers log them. It opens no sockets.
// POSH (RFC 7711) is not implemented.
package certs
