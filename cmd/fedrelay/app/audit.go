package app

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/fedrelay/fedrelay/policy"
)

// auditLog writes policy records as JSON lines to policy.audit_log, and
// counts the refusals among them for /metrics (whether or not a file is
// configured). Every record of the router and the server comes through
// write: refused stanzas, and stream-level decisions, accepted or refused.
type auditLog struct {
	path     string // "" none, "-" standard output, else a file reopened by reopen
	refusals refusalCounts

	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	buf []byte
}

func openAudit(path string) (*auditLog, error) {
	switch path {
	case "":
		return &auditLog{}, nil
	case "-":
		return &auditLog{path: path, w: os.Stdout}, nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	return &auditLog{path: path, w: f, c: f}, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("policy.audit_log: %w", err)
	}
	return f, nil
}

// write appends one record; it is the Audit hook of the router and server.
func (a *auditLog) write(r policy.Record) {
	if !r.Allowed {
		a.refusals.add(r)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w == nil {
		return
	}
	a.buf = r.AppendJSON(a.buf[:0])
	a.w.Write(a.buf) // an unwritable audit log must not stop the relay
}

// reopen opens the audit file again by its name, for log rotation (SIGHUP):
// records written before go to the file that was renamed, records written
// after to a new one at the configured path. If the file cannot be opened
// the current one stays and the error is returned. Standard output and no
// audit log have nothing to reopen.
func (a *auditLog) reopen() error {
	if a.path == "" || a.path == "-" {
		return nil
	}
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.c
	a.w, a.c = f, f
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (a *auditLog) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.c != nil {
		a.c.Close()
		a.w, a.c = nil, nil
	}
}

// maxRefusalSeries bounds the label sets of fedrelay_refusals_total. Rules
// come from the configuration (and the fixed RFC and limits labels), never
// from a peer, so only a configuration with hundreds of rules, reloaded
// many times, comes near it; beyond it refusals count under rule "other".
const maxRefusalSeries = 512

// refusalKey is one series of fedrelay_refusals_total.
type refusalKey struct {
	event        string // "stanza" or "stream"
	face, reason string
	rule         string
}

// refusalCounts counts refusals by event, face, reason and rule.
type refusalCounts struct {
	mu sync.Mutex
	n  map[refusalKey]int64
}

func (c *refusalCounts) add(r policy.Record) {
	k := refusalKey{event: "stanza", face: r.Face.String(), reason: r.Reason.String(), rule: r.Rule}
	if r.Stream {
		k.event = "stream"
	}
	if r.Reason == 0 {
		k.reason = "routing" // the router's own rules (open relay, wrong face)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[refusalKey]int64)
	}
	if _, ok := c.n[k]; !ok && len(c.n) >= maxRefusalSeries {
		k.rule = "other"
	}
	c.n[k]++
}

func (c *refusalCounts) snapshot() map[refusalKey]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[refusalKey]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}
