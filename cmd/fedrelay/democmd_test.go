package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/demo"
)

// TestDemoJSON runs `fedrelay demo --json` as a user would and checks that
// stdout is nothing but the summary, that every step passed, and that each
// relay's counters balance; and that nothing is left running afterwards.
func TestDemoJSON(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	code, stdout, stderr := run(t, "demo", "--json", "--log-level", "error")
	if code != 0 {
		t.Errorf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	var rep demo.Report
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Errorf("stdout has more than the JSON summary:\n%s", stdout)
	}
	if rep.Status != "ok" || rep.Failed != 0 || rep.Passed != len(rep.Steps) {
		t.Errorf("status %q, %d passed, %d failed of %d steps", rep.Status, rep.Passed, rep.Failed, len(rep.Steps))
	}
	want := []string{"connect a.example", "message", "connect b.example", "reply", "subscription a→b",
		"subscription b→a", "ping", "bounce", "counters", "shutdown"}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
		if s.Status != "ok" {
			t.Errorf("step %s: %s: %s", s.Name, s.Status, s.Error)
		}
		if s.Latency <= 0 && s.Name != "counters" {
			t.Errorf("step %s: latency %vms", s.Name, s.Latency)
		}
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("steps %q, want %q", names, want)
	}
	if len(rep.Relays) != 2 {
		t.Fatalf("%d relays in the summary, want 2", len(rep.Relays))
	}
	for _, r := range rep.Relays {
		if r.Accepted == 0 || r.Accepted != r.Delivered+r.Bounced+r.Dropped || !r.Balanced {
			t.Errorf("%s: accepted %d, delivered %d, bounced %d, dropped %d: does not balance",
				r.Name, r.Accepted, r.Delivered, r.Bounced, r.Dropped)
		}
	}
	// The message to nowhere.invalid is relay A's only bounce.
	if a := rep.Relays[0]; a.Domain != "a.example" || a.Bounced != 1 {
		t.Errorf("%s (%s) bounced %d, want 1", a.Name, a.Domain, a.Bounced)
	}
}

// TestDemoText: without --json each step is printed as it ends, then the
// outcome and the JSON summary.
func TestDemoText(t *testing.T) {
	code, stdout, stderr := run(t, "demo", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	for _, want := range []string{
		`relay A fronts a\.example`,
		`(?m)^ok +2\. message .*alice@a\.example → bob@b\.example$`,
		`(?m)^ok +8\. bounce .*\n.*remote-server-not-found`,
		`(?m)^all 10 steps passed in \d+ms$`,
		`(?m)^\{\n  "status": "ok",`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr at --log-level error: %q", stderr)
	}
}

// TestDemoBadFlag: a bad log level is a configuration error (exit 2),
// reported before anything starts.
func TestDemoBadFlag(t *testing.T) {
	code, stdout, stderr := run(t, "demo", "--log-level", "loud")
	if code != 2 || stdout != "" || !strings.Contains(stderr, `config: log.level: "loud": not a log level`) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and the configuration error", code, stdout, stderr)
	}
}
