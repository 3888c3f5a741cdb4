package peer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// maxEvents bounds the events a Server keeps: the oldest half goes when it
// is reached, so that a long run with many streams stays small.
const maxEvents = 10000

// records is what a Server keeps of what happened: stanzas (without
// Handler), events, violations, the stream errors its peers sent. Waiters
// wake on every change.
type records struct {
	recMu        sync.Mutex
	received     []Stanza
	events       []string
	violations   []string
	streamErrors []string
	changed      chan struct{} // closed and replaced on every change
}

// record changes the records under their lock and wakes waiters.
func (r *records) record(change func()) {
	r.recMu.Lock()
	change()
	close(r.changed)
	r.changed = make(chan struct{})
	r.recMu.Unlock()
}

// Keep keeps a copy of a stanza, as a Server without Handler does, without
// answering it: a Handler calls it for the stanzas it wants to see in
// Received and Wait. in may be nil.
func (s *Server) Keep(in *Inbound, el *wire.Element) { s.keep(el) }

func (s *Server) keep(el *wire.Element) Stanza {
	st := Stanza{Element: ElementOf(el), Pair: normalOrRaw(domainBytes(el.From)) + "→" + normalOrRaw(domainBytes(el.To)), At: time.Now()}
	s.init()
	s.record(func() { s.received = append(s.received, st) })
	return st
}

// normalOrRaw returns a domain in dialback's normal form, or as written if
// it has none.
func normalOrRaw(b []byte) string {
	if d, err := dialback.Domain(string(b)); err == nil {
		return d
	}
	return string(b)
}

// Received returns a copy of every stanza kept so far, in order of arrival.
func (s *Server) Received() []Stanza {
	s.init()
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]Stanza(nil), s.received...)
}

// Count returns how many kept stanzas satisfy match.
func (s *Server) Count(match func(Stanza) bool) int {
	n := 0
	for _, st := range s.Received() {
		if match(st) {
			n++
		}
	}
	return n
}

// Wait returns the first kept stanza (received before or after the call)
// that satisfies match, or ctx's error.
func (s *Server) Wait(ctx context.Context, match func(Stanza) bool) (Stanza, error) {
	s.init()
	seen := 0
	for {
		s.recMu.Lock()
		for _, st := range s.received[seen:] {
			if match(st) {
				s.recMu.Unlock()
				return st, nil
			}
		}
		seen = len(s.received)
		changed := s.changed
		s.recMu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Stanza{}, ctx.Err()
		}
	}
}

// StreamErrors returns the conditions of the stream errors the Server's
// peers closed its streams with, inbound and outbound, in order.
func (s *Server) StreamErrors() []string {
	s.init()
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]string(nil), s.streamErrors...)
}

// WaitStreamError waits until a peer has closed one of the Server's streams
// with a stream error of condition cond (earlier ones count), or ctx ends.
func (s *Server) WaitStreamError(ctx context.Context, cond string) error {
	s.init()
	for {
		s.recMu.Lock()
		for _, c := range s.streamErrors {
			if c == cond {
				s.recMu.Unlock()
				return nil
			}
		}
		changed := s.changed
		s.recMu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Violations returns the protocol violations the Server's peers committed,
// recorded when Strict is set.
func (s *Server) Violations() []string {
	s.init()
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]string(nil), s.violations...)
}

// Events returns what happened on the Server's streams, one line per
// event with its time, for failure output.
func (s *Server) Events() []string {
	s.init()
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]string(nil), s.events...)
}

// Eventf records a line in Events: for a user that drives streams of its
// own next to the Server's (a test's scripted stream).
func (s *Server) Eventf(format string, args ...any) {
	s.init()
	s.event(fmt.Sprintf(format, args...))
}

func (s *Server) event(line string) {
	line = time.Now().Format("15:04:05.000 ") + line
	s.record(func() {
		if len(s.events) >= maxEvents {
			s.events = append(s.events[:0], s.events[len(s.events)/2:]...)
		}
		s.events = append(s.events, line)
	})
}

// note logs msg with args (slog key-value pairs) and records it as an event
// of the stream tagged tag.
func (s *Server) note(log *slog.Logger, level slog.Level, tag, msg string, args ...any) {
	log.Log(context.Background(), level, msg, args...)
	var b strings.Builder
	b.WriteString(tag)
	b.WriteString(": ")
	b.WriteString(msg)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", args[i], args[i+1])
	}
	s.event(b.String())
}

// violation records a protocol violation by the peer of the stream tagged
// tag if the Server is Strict, and logs it either way.
func (s *Server) violation(log *slog.Logger, tag, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Warn("protocol violation by the peer", "violation", msg)
	if !s.Strict {
		return
	}
	s.record(func() { s.violations = append(s.violations, tag+": "+msg) })
	s.event(tag + ": violation: " + msg)
}

// peerStreamError records a stream error a peer closed a stream with.
func (s *Server) peerStreamError(log *slog.Logger, tag string, se *StreamError) {
	s.note(log, slog.LevelInfo, tag, "stream closed by the peer with a stream error", "condition", se.Condition)
	s.record(func() { s.streamErrors = append(s.streamErrors, se.Condition) })
}
