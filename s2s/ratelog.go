package s2s

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// repeatWindow is how often one stream may log the same event.
const repeatWindow = time.Minute

// eventLog logs the events of one stream that a peer can repeat at will
// (dialback requests, refusals, ignored elements): the first of a kind is
// logged, the next ones within repeatWindow are only counted, and the count
// is logged with the next one after the window, or when the stream ends. A
// peer that sends 50,000 db:result costs a few log lines, not 50,000.
type eventLog struct {
	mu    sync.Mutex
	kinds map[string]*eventCount // by message: a fixed set of constants
}

type eventCount struct {
	last       time.Time
	suppressed int
	level      slog.Level
}

// log logs msg unless it was logged less than repeatWindow ago; then it
// is counted.
func (e *eventLog) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	if !l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	e.mu.Lock()
	if e.kinds == nil {
		e.kinds = map[string]*eventCount{}
	}
	c := e.kinds[msg]
	if c == nil {
		c = &eventCount{level: level}
		e.kinds[msg] = c
	} else if now.Sub(c.last) < repeatWindow {
		c.suppressed++
		e.mu.Unlock()
		return
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	e.mu.Unlock()
	if n > 0 {
		args = append(args, "repeated", n)
	}
	l.Log(context.Background(), level, msg, args...)
}

// flush logs the counts not logged yet (the stream ends).
func (e *eventLog) flush(l *slog.Logger) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for msg, c := range e.kinds {
		if c.suppressed > 0 {
			l.Log(context.Background(), c.level, msg+" (repeats not logged before)", "repeated", c.suppressed)
			c.suppressed = 0
		}
	}
}
