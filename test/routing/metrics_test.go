package routing_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestMetricsScrape scrapes /metrics after a known traffic pattern and
// checks the labelled series against it: 3 messages in from remote.test,
// 2 out to it, 2 to other.test and 1 to third.test (admin.metrics_top_domains
// is 1: other.test gets per-domain series, third.test not), an IQ the
// policy refuses by kind, a stream from a denied domain. The audit trail
// of the same run has the accepted stream pairs, the refused stanza and
// the refused stream, with the main log's keys. The scrape must pass
// `promtool check metrics`.
func TestMetricsScrape(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.log")
	s := harness.StartSite(t, fmt.Sprintf(`
domains: [{name: a.test, route: $ROUTE}]
admin: {listen: "$IP:0", metrics_top_domains: 1}
policy:
  deny: [evil.test]
  rules: [{match: [remote.test], kinds: [message, presence]}]
  audit_log: %q
`, audit), "remote.test", "other.test", "third.test")

	in := s.FromOutside(t, "remote.test")
	for i := range 3 {
		in.Send(harness.Message("bob@remote.test/x", "alice@a.test", fmt.Sprint("in", i), "hi"))
	}
	for i := range 3 {
		s.Internal.WaitID(t, fmt.Sprint("in", i))
	}
	out := s.FromInside(t, "remote.test")
	for i := range 2 {
		out.Send(harness.Message("alice@a.test/x", "bob@remote.test", fmt.Sprint("out", i), "hi"))
	}
	other := s.FromInside(t, "other.test")
	for i := range 2 {
		other.Send(harness.Message("alice@a.test/x", "carol@other.test", fmt.Sprint("other", i), "hi"))
	}
	third := s.FromInside(t, "third.test")
	third.Send(harness.Message("alice@a.test/x", "dave@third.test", "third0", "hi"))
	for _, id := range []string{"out0", "out1", "other0", "other1", "third0"} {
		s.Remote.WaitID(t, id)
	}
	// Links that fail: no such domain (dns), nothing listening (connect).
	s.DNS.SetSRV(t, "down.test", harness.ClosedAddr(t))
	for _, d := range []string{"gone.test", "down.test"} {
		sc := s.FromInside(t, d)
		sc.Send(harness.Message("alice@a.test/x", "x@"+d, d, "hi"))
		s.Relay.WaitBounce(t, d)
	}
	// Refused by rules[0].kinds: bounced to remote.test.
	in.Send(harness.IQ("bob@remote.test/x", "alice@a.test", "iq1", "get"))
	s.Relay.WaitBounce(t, "iq1")
	// A denied domain's stream is refused at its header.
	bad := harness.Dial(t, s.Relay.FederationAddr)
	bad.Open("evil.test", "a.test")
	bad.StreamError()
	s.Relay.WaitBalanced(t)

	addr := s.Relay.AdminAddr()
	if addr == "" {
		t.Fatal("AdminAddr: empty with admin.listen set")
	}
	var body []byte
	var m metrics
	// The bounce of iq1 and the links' settling happen after the last
	// wait above: scrape until the counts are final.
	harness.Eventually(t, func() bool {
		body = scrape(t, "http://"+addr+"/metrics")
		m = parseMetrics(t, body)
		return m.get(`fedrelay_own_stanzas_written_total`) == 3 &&
			m.get(`fedrelay_refusals_total{event="stream",face="federation",reason="deny-list",rule="deny[0] evil.test"}`) == 1
	}, "the bounce written and the stream refusal counted")

	want := map[string]float64{
		// 3 messages in from remote.test, delivered to a.test's server...
		`fedrelay_stanzas_total{face="federation",direction="in",kind="message"}`: 3,
		`fedrelay_stanzas_total{face="internal",direction="out",kind="message"}`:  3,
		// ...and 7 out from a.test: 5 delivered to the remote server, 2
		// bounced (gone.test, down.test).
		`fedrelay_stanzas_total{face="internal",direction="in",kind="message"}`:    7,
		`fedrelay_stanzas_total{face="federation",direction="out",kind="message"}`: 5,
		// The refused IQ: read, never written; its bounce is the relay's own.
		`fedrelay_stanzas_total{face="federation",direction="in",kind="iq"}`:                            1,
		`fedrelay_stanzas_total{face="internal",direction="out",kind="iq"}`:                             0,
		`fedrelay_stanzas_total{face="federation",direction="out",kind="iq"}`:                           0,
		`fedrelay_stanzas_accepted_total`:                                                               11,
		`fedrelay_stanzas_delivered_total`:                                                              8,
		`fedrelay_stanzas_bounced_total`:                                                                3,
		`fedrelay_stanzas_refused_total`:                                                                1,
		`fedrelay_own_stanzas_written_total`:                                                            3,
		`fedrelay_bounces_total{condition="not-allowed"}`:                                               1,
		`fedrelay_bounces_total{condition="remote-server-not-found"}`:                                   1,
		`fedrelay_bounces_total{condition="remote-server-timeout"}`:                                     1,
		`fedrelay_bounces_total{condition="resource-constraint"}`:                                       0,
		`fedrelay_refusals_total{event="stanza",face="federation",reason="kind",rule="rules[0].kinds"}`: 1,
		// Links: a.test→remote.test, other.test, third.test on the
		// federation face, up; a.test→gone.test (no such domain) and
		// down.test (nothing listens), failed; remote.test, gone.test and
		// down.test→a.test on the internal face (the last two for the
		// bounces), up.
		`fedrelay_stream_setups_total{face="federation"}`:                                  5,
		`fedrelay_stream_setups_total{face="internal"}`:                                    3,
		`fedrelay_stream_setup_failures_total{face="federation",stage="dns"}`:              1,
		`fedrelay_stream_setup_failures_total{face="federation",stage="connect"}`:          1,
		`fedrelay_stream_setup_failures_total{face="federation",stage="tls"}`:              0,
		`fedrelay_stream_setup_failures_total{face="federation",stage="auth"}`:             0,
		`fedrelay_stream_setup_failures_total{face="internal",stage="connect"}`:            0,
		`fedrelay_stream_setup_duration_seconds_count{face="federation",outcome="up"}`:     3,
		`fedrelay_stream_setup_duration_seconds_count{face="federation",outcome="failed"}`: 2,
		`fedrelay_stream_setup_duration_seconds_count{face="internal",outcome="up"}`:       3,
		`fedrelay_streams_open{face="federation",direction="out",auth="dialback"}`:         3,
		`fedrelay_streams_open{face="internal",direction="out",auth="dialback"}`:           3,
		`fedrelay_streams_open{face="internal",direction="in",auth="dialback"}`:            5,
		`fedrelay_streams_open{face="federation",direction="in",auth="dialback"}`:          1,
		`fedrelay_streams_open{face="federation",direction="in",auth="external"}`:          0,
		// Every link that came up had its key accepted (initiating).
		`fedrelay_dialback_total{role="initiating",answer="valid"}`:   6,
		`fedrelay_dialback_total{role="initiating",answer="invalid"}`: 0,
		// Per-domain series: a.test, remote.test and evil.test are named
		// by the configuration, other.test is the top 1 of the others.
		`fedrelay_domain_stanzas_written_total{domain="remote.test"}`:                            3, // 2 messages and the bounce
		`fedrelay_domain_stanzas_written_total{domain="other.test"}`:                             2,
		`fedrelay_domain_stanzas_written_total{domain="a.test"}`:                                 5, // 3 messages and 2 bounces
		`fedrelay_domain_stanzas_written_total{domain="evil.test"}`:                              0,
		`fedrelay_domain_links{domain="remote.test"}`:                                            1,
		`fedrelay_domain_links{domain="a.test"}`:                                                 3,
		`fedrelay_domain_queued_stanzas{domain="remote.test"}`:                                   0,
		`fedrelay_domain_breaker_state{domain="remote.test"}`:                                    0,
		`fedrelay_domain_breaker_state{domain="evil.test"}`:                                      0,
		`fedrelay_queued_stanzas`:                                                                0,
		`fedrelay_breakers{state="open"}`:                                                        0,
		`fedrelay_config_last_reload_successful`:                                                 1,
		`fedrelay_config_reloads_total{outcome="success"}`:                                       0,
		`fedrelay_build_info{version="devel",revision="",goversion="` + runtime.Version() + `"}`: 1,
	}
	for series, v := range want {
		got, ok := m.lookup(series)
		if !ok {
			t.Errorf("%s: missing", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for _, series := range []string{
		`fedrelay_domain_stanzas_written_total{domain="third.test"}`, // not in the top 1
		`fedrelay_domain_breaker_state{domain="gone.test"}`,          // nothing written
	} {
		if _, ok := m.lookup(series); ok {
			t.Errorf("%s: present, want absent", series)
		}
	}
	atLeast := map[string]float64{
		`fedrelay_dialback_total{role="receiving",answer="valid"}`:       4, // remote.test, other.test, third.test, a.test's stream to remote.test
		`fedrelay_dialback_total{role="authoritative",answer="valid"}`:   4,
		`fedrelay_dns_queries_total`:                                     1,
		`fedrelay_dns_cache_misses_total`:                                1,
		`fedrelay_certificate_expiry_timestamp_seconds{domain="a.test"}`: float64(time.Now().Unix()),
		`fedrelay_config_last_reload_timestamp_seconds`:                  1,
	}
	for series, v := range atLeast {
		if got, ok := m.lookup(series); !ok || got < v {
			t.Errorf("%s = %v (present %v), want at least %v", series, got, ok, v)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", grepLines(body, "fedrelay_"))
	}

	checkAudit(t, audit)
	promtoolCheck(t, body)
}

// checkAudit finds in the audit trail the accepted pairs of the run, the
// refused stanza and the refused stream, keyed as the main log is.
func checkAudit(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for line := range bytes.Lines(b) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("audit line not JSON: %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	find := func(what string, want map[string]any) {
		t.Helper()
	next:
		for _, r := range recs {
			for k, v := range want {
				if r[k] != v {
					continue next
				}
			}
			if r["event"] == "stream" && !strings.HasPrefix(fmt.Sprint(r["peer"]), "127.") {
				t.Errorf("%s: peer %v, want a loopback address", what, r["peer"])
			}
			return
		}
		t.Errorf("audit: no %s record %v in:\n%s", what, want, b)
	}
	find("accepted inbound pair", map[string]any{"event": "stream", "face": "federation", "dir": "in",
		"from": "remote.test", "to": "a.test", "decision": "allow", "auth": "dialback"})
	find("accepted internal pair", map[string]any{"event": "stream", "face": "internal", "dir": "in",
		"from": "a.test", "to": "remote.test", "local": "a.test", "remote": "remote.test", "decision": "allow"})
	find("accepted outbound link", map[string]any{"event": "stream", "face": "federation", "dir": "out",
		"from": "a.test", "to": "other.test", "decision": "allow", "tls": true})
	find("refused stanza", map[string]any{"event": "stanza", "face": "federation", "dir": "in",
		"from": "remote.test", "to": "a.test", "kind": "iq", "decision": "refuse", "rule": "rules[0].kinds"})
	find("refused stream", map[string]any{"event": "stream", "face": "federation", "dir": "in",
		"from": "evil.test", "to": "a.test", "decision": "refuse", "reason": "deny-list"})
}

// promtoolCheck pipes a scrape to `promtool check metrics` (Debian package
// prometheus). Without promtool the test skips, unless it must run:
// FEDRELAY_INTEROP_REQUIRE=1, or as root (CI, where .ci/run installs it).
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found (apt-get install prometheus): the scrape was not linted"
		if os.Getenv("FEDRELAY_INTEROP_REQUIRE") == "1" || os.Geteuid() == 0 {
			t.Fatal(msg + " (FEDRELAY_INTEROP_REQUIRE=1 or root: not skipping)")
		}
		t.Skip(msg)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	outp, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, outp)
	} else {
		t.Logf("promtool check metrics: ok %s", outp)
	}
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// metrics maps a series, its labels sorted by name, to its value.
type metrics map[string]float64

// parseMetrics reads the text exposition format.
func parseMetrics(t *testing.T, body []byte) metrics {
	t.Helper()
	m := metrics{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[normalSeries(line[:i])] = v
	}
	return m
}

// normalSeries sorts a series' labels by name: name{b="2",a="1"} becomes
// name{a="1",b="2"}. Label values must not contain `",`.
func normalSeries(s string) string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return s
	}
	labels := strings.Split(strings.TrimSuffix(s[i+1:], "}"), `",`)
	for j := range labels {
		labels[j] = strings.TrimSuffix(labels[j], `"`) + `"`
	}
	slices.Sort(labels)
	return s[:i] + "{" + strings.Join(labels, ",") + "}"
}

func (m metrics) lookup(series string) (float64, bool) {
	v, ok := m[normalSeries(series)]
	return v, ok
}

func (m metrics) get(series string) float64 { v, _ := m.lookup(series); return v }

func grepLines(body []byte, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}
