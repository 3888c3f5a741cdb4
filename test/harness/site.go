package harness

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
)

// Site is the usual scene of a single-relay test: one relay fronting the
// internal domain a.test, whose internal server is a FakeServer behind it,
// and a FakeServer of the public federation hosting the remote domains,
// published in the test's DNS.
type Site struct {
	DNS   *DNS
	Relay *Relay
	// Internal hosts a.test behind the relay (domains[].route); it checks
	// remote domains' keys with the relay's internal face.
	Internal *FakeServer
	// Remote hosts the remote domains; DNS sends them to it, and it checks
	// a.test's keys with the relay's federation face.
	Remote *FakeServer
}

// StartSite starts a Site. configYAML is laid over the relay's test
// defaults; "$ROUTE" in it stands for the internal server's address, and
// without a domains list the relay fronts a.test at $ROUTE.
func StartSite(t testing.TB, configYAML string, remoteDomains ...string) *Site {
	t.Helper()
	return StartSiteCert(t, configYAML, nil, remoteDomains...)
}

// StartSiteCert is StartSite with the certificate the remote server
// presents (nil: self-signed).
func StartSiteCert(t testing.TB, configYAML string, remoteCert *tls.Certificate, remoteDomains ...string) *Site {
	t.Helper()
	s := &Site{DNS: StartDNS(t)}
	s.Internal = NewFakeServer(t, "internal a.test", "a.test")
	s.Remote = NewFakeServerCert(t, "remote "+strings.Join(remoteDomains, ","), remoteCert, remoteDomains...)
	configYAML = strings.ReplaceAll(configYAML, "$ROUTE", fmt.Sprintf("%q", s.Internal.Addr))
	if !strings.Contains(configYAML, "domains:") {
		configYAML = fmt.Sprintf("domains: [{name: a.test, route: %q}]\n%s", s.Internal.Addr, configYAML)
	}
	s.Relay = StartRelay(t, configYAML, WithDNS(s.DNS), WithName("relay"))
	s.Internal.SetAuthoritative(s.Relay.InternalAddr)
	s.Remote.SetAuthoritative(s.Relay.FederationAddr)
	for _, d := range remoteDomains {
		s.DNS.SetSRV(t, d, s.Remote.Addr)
	}
	s.DNS.SetSRV(t, "a.test", s.Relay.FederationAddr)
	return s
}

// FromInside opens an authenticated stream from the internal server
// (a.test) to the relay's internal face, addressed to remote.
func (s *Site) FromInside(t testing.TB, remote string) *Script {
	t.Helper()
	return s.Internal.Dial(t, s.Relay.InternalAddr, "a.test", remote)
}

// FromOutside opens an authenticated stream from the remote server
// (domain remote) to the relay's federation face, addressed to a.test.
func (s *Site) FromOutside(t testing.TB, remote string) *Script {
	t.Helper()
	return s.Remote.Dial(t, s.Relay.FederationAddr, remote, "a.test")
}
