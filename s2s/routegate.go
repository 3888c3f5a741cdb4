package s2s

import (
	"errors"
	"sync"
	"time"

	"github.com/fedrelay/fedrelay/routing"
)

// routeGate bounds what the links towards one internal route (the
// organisation's own server, found at a configured route, whatever the
// domain pairs) may cost together:
//   - limits.route_connections: the connections they hold at once;
//   - limits.route_setups: how many of them are being connected and
//     authenticated at once, so that a route that accepts connections but
//     never answers (stalled) holds a few of them, not one per pair;
//   - limits.route_queue_bytes: the bytes waiting in those of its links
//     that are not up yet, all pairs together.
//
// Without it, one inbound stream authorising 200 pairs towards a stalled
// internal server made 200 connections and grew the relay by 1 GB.
type routeGate struct {
	s    *Server
	addr string

	mu      sync.Mutex
	users   int           // links that refer to the gate (it is dropped at 0)
	conns   int           // links holding a connection slot
	setups  int           // of them, being set up
	pending int           // bytes queued in links that are not up
	freed   chan struct{} // closed (and replaced) when a slot frees
}

// gate returns the gate of route addr, counting one more user. s.lmu must
// be held.
func (s *Server) gate(addr string) *routeGate {
	g := s.gates[addr]
	if g == nil {
		g = &routeGate{s: s, addr: addr, freed: make(chan struct{})}
		s.gates[addr] = g
	}
	g.mu.Lock()
	g.users++
	g.mu.Unlock()
	return g
}

// drop counts one user less, and forgets the gate when it has none.
func (g *routeGate) drop() {
	g.s.lmu.Lock()
	defer g.s.lmu.Unlock()
	g.mu.Lock()
	g.users--
	last := g.users == 0
	g.mu.Unlock()
	if last && g.s.gates[g.addr] == g {
		delete(g.s.gates, g.addr)
	}
}

// errRouteBusy is the failure of a link that waited in vain for a
// connection slot towards its internal route. Its text reaches senders in
// bounces: it names no address.
var errRouteBusy = errors.New("too many streams to the internal server are being set up or open")

// enter waits until a connection slot and a setup slot are free (at most
// until deadline, or the server's end) and takes both.
func (g *routeGate) enter(deadline time.Time) error {
	l := g.s.Limits
	var timer *time.Timer
	for {
		g.mu.Lock()
		if g.conns < l.RouteConnections && g.setups < l.RouteSetups {
			g.conns++
			g.setups++
			g.mu.Unlock()
			return nil
		}
		freed := g.freed
		g.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return routing.Timeout(errRouteBusy)
		case <-g.s.ctx.Done():
			return routing.Timeout(ErrServerClosed)
		}
	}
}

// setupDone gives back the setup slot taken by enter.
func (g *routeGate) setupDone() {
	g.mu.Lock()
	g.setups--
	g.wakeLocked()
	g.mu.Unlock()
}

// leave gives back the connection slot taken by enter.
func (g *routeGate) leave() {
	g.mu.Lock()
	g.conns--
	g.wakeLocked()
	g.mu.Unlock()
}

func (g *routeGate) wakeLocked() {
	close(g.freed)
	g.freed = make(chan struct{})
}

// reserve counts n more bytes waiting in a link that is not up, unless
// that would pass limits.route_queue_bytes.
func (g *routeGate) reserve(n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending+n > g.s.Limits.RouteQueueBytes {
		return false
	}
	g.pending += n
	return true
}

// release counts n bytes less waiting.
func (g *routeGate) release(n int) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.pending -= n
	g.mu.Unlock()
}
