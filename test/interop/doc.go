// Package interop runs fedrelay between real, unmodified XMPP servers on
// loopback addresses and checks what their users see (issue 7).
//
// The tests are behind the interop build tag and need root (Prosody refuses
// to run as root, so it is started as the prosody user; the DNS servers
// listen on port 53), Prosody 0.12 with lua-unbound, ejabberd 23.01, and
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
// The topology, all on 127.0.77.0/24 (FEDRELAY_INTEROP_NET overrides the
// first three octets):
//
//	a.test  Prosody, the internal server; its resolver is the relay's
//	        internal DNS responder (.53:53)                           .2
//	d.test  Prosody, an internal server with s2s_secure_auth = true
//	        that trusts the relay's internal CA (s2s_ssl.cafile); its
//	        resolver is the relay's internal DNS responder            .5
//	relay   fedrelay in process: federation face .10:5269, internal
//	        face .11:5269, fronting a.test and d.test; its internal CA
//	        (internal.ca_cert_file) signs the certificates it makes
//	b.test  Prosody, a public peer; resolves through the test DNS
//	        server (.54:53, in process) where a.test's and d.test's SRV
//	        records point at relay.test = the federation face        .3
//	c.test  ejabberd, a public peer; SRV through the test DNS server,
//	        A records through the system (a tagged /etc/hosts line)   .4
//
// Every server gets its own directory under a temporary run directory with
// its configuration and logs; the directory is removed when the tests
// pass and kept (its path is printed) when they fail or when
// FEDRELAY_INTEROP_KEEP=1.
package interop
