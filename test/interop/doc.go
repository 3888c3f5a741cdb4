// Package interop runs fedrelay between real, unmodified XMPP servers on
// loopback addresses and checks what their users see (issue 7).
//
// The tests are behind the interop build tag and need root (Prosody refuses
// to run as root, so it is started as the prosody user; the DNS servers
// listen on port 53), two generations of each server, lua-unbound, and
// check_xmppng (Debian's nagios-check-xmppng; TestCheckXMPPNG runs it
// against a relay of its own, .20 and .21, and needs nothing else):
//
//	go test -tags interop ./test/interop/ -count=1 -v
//
// .ci/run installs the servers and the check and runs them after the unit
// tests. Without root or without the servers (or the check) the tests skip,
// unless FEDRELAY_INTEROP_REQUIRE=1 (set by CI), which turns that into a
// failure.
//
// # Server generations
//
// TestInterop runs every scenario once for each pair of a Prosody and an
// ejabberd generation, {Prosody 0.12, Prosody 13} × {ejabberd 23.01,
// ejabberd 24.12} (sub-tests named like prosody-13+ejabberd-23.01), so that
// each generation of each server is both an internal server behind the
// relay and a peer in the federation, and talks to both generations of the
// other server through it:
//
//   - Prosody 0.12.3 and ejabberd 23.01 are Debian bookworm's packages,
//     installed (apt-get install prosody lua-unbound ejabberd).
//   - Prosody 13.0.1 and ejabberd 24.12 are bookworm-backports'. A machine
//     holds one version of a package, so they are not installed: .ci/run
//     (install_interop_gen2) adds "deb http://deb.debian.org/debian
//     bookworm-backports main" to apt's sources, fetches the packages with
//     apt-get download and unpacks them with dpkg -x under
//     /opt/fedrelay-interop/prosody13 and /opt/fedrelay-interop/ejabberd2412
//     (FEDRELAY_INTEROP_GEN2_ROOT overrides /opt/fedrelay-interop). Each of
//     their dependencies that bookworm satisfies is apt-get installed
//     (Prosody 13 runs on bookworm's lua5.4, lua-sec, lua-socket, lua-expat,
//     lua-filesystem, lua-bitop, lua-unbound; ejabberd 24.12 on bookworm's
//     Erlang/OTP 25); those it does not (ejabberd 24.12 needs newer
//     erlang-p1-xmpp, -tls, -xml, -utils, … and erlang-jose) are unpacked
//     from backports beside it too, never installed, so that ejabberd 23.01
//     keeps bookworm's. The start scripts then get their paths: prosody's
//     and prosodyctl's CFG_SOURCEDIR and CFG_PLUGINDIR point at the
//     unpacked usr/lib/prosody, and ejabberdctl's ERL_LIBS at the unpacked
//     usr/lib/x86_64-linux-gnu (ejabberd-24.12) and usr/lib/erlang/lib (the
//     newer libraries, which come before OTP's own library directory, where
//     bookworm's versions are). The tests start them as the packages' own
//     scripts (/opt/fedrelay-interop/prosody13/usr/bin/prosody -F --config
//     …, …/ejabberd2412/usr/sbin/ejabberdctl … foreground) and check the
//     version each server logs at start.
//
// Prosody 13 (with mod_s2s_bidi, which it ships, enabled) and ejabberd
// 24.12 (with mod_s2s_bidi, on in its shipped configuration) offer and ask
// for XEP-0288 bidirectional streams, and so does the relay
// (federation.bidi). checkBidi asserts, from the relay's stream list, that
// with these generations every stream they open to the relay is
// bidirectional, so is every link of the relay's to them as internal
// servers, and (in 8-secure-federation, where certificates are verified
// both ways) as federation peers, each such domain pair using one
// connection; with Prosody 0.12 and ejabberd 23.01 nothing is. Scenario 8
// runs its first two parts with the relay's bidi off, so that each side
// still authenticates the other on a stream of its own.
//
// The topology, all on 127.0.77.0/24 (FEDRELAY_INTEROP_NET overrides the
// first three octets):
//
//	a.test  Prosody, an internal server; its resolver is the relay's
//	        internal DNS responder (.53:53)                           .2
//	d.test  Prosody, an internal server with s2s_secure_auth = true
//	        (its shipped setting) that trusts the relay's internal CA
//	        (s2s_ssl.cafile); its resolver is the relay's internal DNS
//	        responder                                                 .5
//	e.corp.test  ejabberd, an internal server with s2s_use_starttls:
//	        required (its shipped setting) and ca_file the relay's
//	        internal CA; SRV through the relay's internal DNS
//	        responder, whose target fedrelay.internal is a tagged
//	        /etc/hosts line                                           .6
//	relay   fedrelay in process: federation face .10:5269 (and direct
//	        TLS .10:5270 in 8-secure-federation), internal face
//	        .11:5269, fronting a.test, d.test and e.corp.test; its
//	        internal CA (internal.ca_cert_file) signs the certificates
//	        it makes
//	b.test  Prosody, a public peer; resolves through the test DNS
//	        server (.54:53, in process) where the internal domains' SRV
//	        records point at relay.test = the federation face        .3
//	c.test  ejabberd, a public peer; SRV through the test DNS server,
//	        A records through the system (a tagged /etc/hosts line)   .4
//
// 1-messages also checks outbound multiplexing (XEP-0220 §4.3,
// limits.multiplex): the relay's links from a.test and e.corp.test to
// b.test, and to c.test, share one stream each, and the peer's log says it
// authenticated the second domain on it (Prosody: "connection a.test->b.test
// is now authenticated for e.corp.test"; ejabberd: "Accepted inbound s2s
// dialback authentication e.corp.test -> c.test"); a peer that refused
// would leave one stream per pair, which the check accepts. In
// 8-secure-federation every internal domain has a certificate of its own,
// so none rides another's stream: each keeps SASL EXTERNAL.
//
// 8-secure-federation then gives b.test, c.test and the relay's internal
// domains certificates of a test "public" CA (e.corp.test's is a wildcard
// certificate for *.corp.test), turns secure authentication on everywhere
// (federation.secure_auth with tls.ca_file; s2s_secure_auth; ejabberd's
// s2s_use_starttls: required with ca_file) and checks SASL EXTERNAL both
// ways, then publishes _xmpps-server records and checks direct TLS
// (XEP-0368) both ways: every generation of both servers dials it. Its
// stream-management part sends the relay's links to b.test through a TCP
// proxy (b.test's SRV target smproxy.test, .31): with Prosody's smacks
// module on (Debian's shipped configuration; both generations use XEP-0198
// on S2S streams authenticated by SASL EXTERNAL) the relay's link has
// stream management; 20 messages are acknowledged, 20 more are written to
// the proxied connection after it stopped passing anything to b.test, and
// the connection is reset: each of the 40 must reach Bob exactly once.
//
// 9-large-stanzas raises a.test's and b.test's c2s_stanza_size_limit
// (1 MiB: Prosody's default, 256 KiB, is below its 400 KB message) and
// s2s_stanza_size_limit (a.test 1 MiB; b.test 480,000, which Prosody 13
// advertises as XEP-0478 max-bytes) from the start, and sends messages of
// 400 KB (crossing both ways), 600 KB (over the relay's default
// limits.max_stanza_bytes, 524288) and, with Prosody 13, 490,000 bytes
// (over b.test's advertised limit).
//
// Every server gets its own directory under a temporary run directory with
// its configuration and logs; the directory is removed when the tests
// pass and kept (its path is printed) when they fail or when
// FEDRELAY_INTEROP_KEEP=1.
package interop
