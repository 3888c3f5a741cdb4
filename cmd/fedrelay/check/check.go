package check

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// Verdict is how a finding is judged.
type Verdict uint8

const (
	// OK: as it should be.
	OK Verdict = iota
	// Info: worth knowing, nothing to fix.
	Info
	// Warn: works, but not as well as it could (peers fall back to
	// dialback, a certificate expires soon, an address cannot be checked
	// from here).
	Warn
	// Fail: peers will not reach or not accept the relay; the exit status
	// of fedrelay check is 1.
	Fail
)

var verdictNames = [...]string{"OK", "INFO", "WARN", "FAIL"}

// String returns OK, INFO, WARN or FAIL.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "?"
}

// MarshalText writes the verdict as String does, for --json.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Names of the checks, in the order Run runs them.
const (
	Certs        = "certs"
	DNS          = "dns"
	Connectivity = "connectivity"
	// ConfigCheck labels the configuration's own warnings, reported when
	// every check runs.
	ConfigCheck = "config"
)

// Names are the checks fedrelay check accepts as arguments.
var Names = []string{Certs, DNS, Connectivity}

// Finding is one line of the report.
type Finding struct {
	Verdict Verdict `json:"verdict"`
	// Check is certs, dns, connectivity or config.
	Check string `json:"check"`
	// Subject is what was checked: a domain, "a.example at 127.0.0.1:5269",
	// "internal CA", a configuration key.
	Subject string `json:"subject"`
	// Message says what was found and, when it is not OK, what it means.
	Message string `json:"message"`
}

// Options adjust Run for tests.
type Options struct {
	// Now is the time certificates are judged at; nil means time.Now.
	Now func() time.Time
	// ResolvConf replaces /etc/resolv.conf when dns.servers is empty.
	ResolvConf string
	// LocalAddrs returns the addresses of this host's interfaces; nil
	// means net.InterfaceAddrs. Loopback addresses are always local.
	LocalAddrs func() ([]netip.Addr, error)
}

// Run runs the named checks (all of them, and the configuration's warnings,
// when names is empty) against cfg and returns the findings in order. It
// needs no running relay, except that connectivity connects to the
// addresses the configuration says the relay listens on. Every network
// step is bounded by cfg.Limits timeouts and by ctx.
func Run(ctx context.Context, cfg *config.Config, names []string, opts Options) []Finding {
	c := &checker{cfg: cfg, opts: opts}
	if c.opts.Now == nil {
		c.opts.Now = time.Now
	}
	if c.opts.LocalAddrs == nil {
		c.opts.LocalAddrs = interfaceAddrs
	}
	all := len(names) == 0
	want := func(n string) bool { return all || slices.Contains(names, n) }
	if all {
		for _, w := range cfg.Warnings {
			c.add(Warn, ConfigCheck, "configuration", "%s", w)
		}
	}
	if want(Certs) {
		c.certs()
	}
	if want(DNS) {
		c.dns(ctx)
	}
	if want(Connectivity) {
		c.connectivity(ctx)
	}
	return c.findings
}

// Count returns how many findings have verdict v.
func Count(fs []Finding, v Verdict) int {
	n := 0
	for _, f := range fs {
		if f.Verdict == v {
			n++
		}
	}
	return n
}

type checker struct {
	cfg      *config.Config
	opts     Options
	findings []Finding
	trust    *certs.Verifier // see verifier
}

func (c *checker) add(v Verdict, check, subject, format string, args ...any) {
	c.findings = append(c.findings, Finding{Verdict: v, Check: check, Subject: subject, Message: fmt.Sprintf(format, args...)})
}

// interfaceAddrs lists the addresses of this host's network interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// days formats a duration as a number of days, rounded: a certificate
// issued for 90 days a minute ago expires in 90 days.
func days(d time.Duration) string {
	n := int(math.Round(d.Hours() / 24))
	if n == 0 {
		return "less than a day"
	}
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
