package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/fedrelay/fedrelay/routing"
)

// Step statuses.
const (
	StatusOK     = "ok"
	StatusFailed = "failed"
)

// Report is the outcome of Run, as `fedrelay demo --json` prints it.
type Report struct {
	// Status is StatusOK when every step passed.
	Status string `json:"status"`
	Passed int    `json:"passed"`
	Failed int    `json:"failed"`
	// Elapsed is the whole run, setup and shutdown included, in
	// milliseconds.
	Elapsed float64       `json:"elapsed_ms"`
	Steps   []Step        `json:"steps"`
	Relays  []RelayCounts `json:"relays"`
}

// Step is one step of the demo.
type Step struct {
	Name string `json:"name"`
	// What the step does, in words.
	What   string `json:"what"`
	Status string `json:"status"`
	// Latency is the time the step took, in milliseconds: for a stanza,
	// from sending it to receiving what answers it, stream setup included
	// the first time a pair of domains is used.
	Latency float64 `json:"latency_ms"`
	// Detail says what was observed; Error what went wrong.
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// RelayCounts are a relay's addresses and its router's counters
// (routing.Stats) after the run.
type RelayCounts struct {
	Name       string `json:"name"`
	Domain     string `json:"domain"`
	Federation string `json:"federation_addr"`
	Internal   string `json:"internal_addr"`
	// Endpoint is the domain's internal server (domains[].route).
	Endpoint  string `json:"endpoint_addr"`
	Accepted  int64  `json:"accepted"`
	Delivered int64  `json:"delivered"`
	Bounced   int64  `json:"bounced"`
	Dropped   int64  `json:"dropped"`
	Refused   int64  `json:"refused"`
	// Balanced: Accepted = Delivered + Bounced + Dropped.
	Balanced bool `json:"balanced"`
}

// OK reports whether every step passed.
func (r *Report) OK() bool { return r.Status == StatusOK }

func (r *Report) finish() {
	r.Passed, r.Failed = 0, 0
	for _, s := range r.Steps {
		if s.Status == StatusOK {
			r.Passed++
		} else {
			r.Failed++
		}
	}
	r.Status = StatusOK
	if r.Failed > 0 || len(r.Steps) == 0 {
		r.Status = StatusFailed
	}
}

func (c *RelayCounts) count(s *routing.Stats) {
	c.Accepted, c.Delivered, c.Bounced = s.Accepted.Load(), s.Delivered.Load(), s.Bounced.Load()
	c.Dropped, c.Refused = s.Dropped.Load(), s.Refused.Load()
	c.Balanced = c.Accepted == c.Delivered+c.Bounced+c.Dropped
}

// printer writes the human-readable progress; a nil writer prints
// nothing.
type printer struct {
	w io.Writer
	n int
}

func (p *printer) printf(format string, args ...any) {
	if p.w != nil {
		fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) header(r *Report, setup time.Duration) {
	p.printf("fedrelay demo: two organisations federating through two relays, all on 127.0.0.1\n")
	for _, c := range r.Relays {
		p.printf("  %s fronts %s: federation face %s, internal face %s, internal server %s\n",
			c.Name, c.Domain, c.Federation, c.Internal, c.Endpoint)
	}
	p.printf("  started in %s\n\n", setup.Round(time.Millisecond))
}

func (p *printer) step(s Step) {
	p.n++
	mark := "ok  "
	if s.Status != StatusOK {
		mark = "FAIL"
	}
	p.printf("%s %2d. %-18s %8.1fms  %s\n", mark, p.n, s.Name, s.Latency, s.What)
	if s.Detail != "" {
		p.printf("                                      %s\n", s.Detail)
	}
	if s.Error != "" {
		p.printf("                                      error: %s\n", s.Error)
	}
}

func (p *printer) footer(r *Report) {
	p.printf("\n")
	for _, c := range r.Relays {
		p.printf("  %s: accepted %d, delivered %d, bounced %d, dropped %d (refused %d)\n",
			c.Name, c.Accepted, c.Delivered, c.Bounced, c.Dropped, c.Refused)
	}
	if r.OK() {
		p.printf("\nall %d steps passed in %.0fms\n\n", r.Passed, r.Elapsed)
	} else {
		p.printf("\n%d of %d steps FAILED (%.0fms)\n\n", r.Failed, len(r.Steps), r.Elapsed)
	}
}
