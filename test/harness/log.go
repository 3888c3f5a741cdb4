package harness

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logs is a slog.Handler that keeps every record, so that tests can assert
// on what a relay logged ("peer authenticated by SASL EXTERNAL") and print
// it all when they fail. It is safe for concurrent use.
type Logs struct {
	core   *logCore
	attrs  []slog.Attr
	prefix string // group prefix for attribute keys
}

type logCore struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{} // closed and replaced at every new record
}

// Record is one kept log record, its attributes flattened to strings.
type Record struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// String formats the record as one text line.
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %s", r.Time.Format("15:04:05.000"), r.Level, r.Msg)
	for _, k := range slices.Sorted(maps.Keys(r.Attrs)) {
		fmt.Fprintf(&b, " %s=%q", k, r.Attrs[k])
	}
	return b.String()
}

// NewLogs returns an empty record keeper.
func NewLogs() *Logs {
	return &Logs{core: &logCore{changed: make(chan struct{})}}
}

// Enabled implements slog.Handler: everything is kept.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		addAttr(rec.Attrs, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(rec.Attrs, l.prefix, a)
		return true
	})
	c := l.core
	c.mu.Lock()
	c.records = append(c.records, rec)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

func addAttr(m map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			addAttr(m, p, g)
		}
		return
	}
	m[prefix+a.Key] = v.String()
}

// WithAttrs implements slog.Handler.
func (l *Logs) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *l
	n.attrs = append(l.attrs[:len(l.attrs):len(l.attrs)], prefixed(l.prefix, attrs)...)
	return &n
}

func prefixed(prefix string, attrs []slog.Attr) []slog.Attr {
	if prefix == "" {
		return attrs
	}
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = slog.Attr{Key: prefix + a.Key, Value: a.Value}
	}
	return out
}

// WithGroup implements slog.Handler.
func (l *Logs) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	n := *l
	n.prefix = l.prefix + name + "."
	return &n
}

// Records returns a copy of every record kept so far.
func (l *Logs) Records() []Record {
	c := l.core
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Record(nil), c.records...)
}

// Find returns the records with message msg whose attributes include every
// key/value pair of kv ("domain", "a.test", ...).
func (l *Logs) Find(msg string, kv ...string) []Record {
	var out []Record
	for _, r := range l.Records() {
		if r.matches(msg, kv) {
			out = append(out, r)
		}
	}
	return out
}

// Has reports whether a record like Find's was kept.
func (l *Logs) Has(msg string, kv ...string) bool { return len(l.Find(msg, kv...)) > 0 }

func (r Record) matches(msg string, kv []string) bool {
	if r.Msg != msg {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if r.Attrs[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// Wait waits until a record like Find's is kept and returns it; the test
// fails after WaitTimeout.
func (l *Logs) Wait(t testing.TB, msg string, kv ...string) Record {
	t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		c := l.core
		c.mu.Lock()
		for _, r := range c.records {
			if r.matches(msg, kv) {
				c.mu.Unlock()
				return r
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log record %q %v within %s", msg, kv, WaitTimeout)
			return Record{}
		}
	}
}

// Dump returns every record as text, one per line.
func (l *Logs) Dump() string {
	var b strings.Builder
	for _, r := range l.Records() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}
