package harness

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ipCounter hands out loopback addresses: every relay, fake server and
// proxy of a test process listens on an address of its own, so that logs
// and connection counts tell them apart.
var ipCounter atomic.Uint32

// NextIP returns a loopback address not yet handed out by this process,
// from 127.0.1.1 upwards (127.0.0.1 is left to everything else).
func NextIP() string {
	n := ipCounter.Add(1) - 1
	return fmt.Sprintf("127.%d.%d.%d", 1+n/(250*250)%250, 1+n/250%250, 1+n%250)
}

// Listen opens a TCP listener on a fresh loopback address and closes it
// when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", NextIP()+":0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ClosedAddr returns a loopback host:port where nothing listens: connecting
// is refused at once.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", NextIP()+":0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ProxyMode is what a Proxy does with the connections it accepts.
type ProxyMode int32

const (
	// Forward relays bytes both ways to the target.
	Forward ProxyMode = iota
	// Refuse closes each connection right after accepting it (after
	// Proxy.RefuseDelay): the peer is reachable but its server is not.
	Refuse
	// Stall accepts and never answers; it reads and discards until the
	// other side gives up.
	Stall
)

// Proxy is a TCP endpoint in front of a target address that forwards,
// refuses or stalls on command, and counts the connections it accepted:
// a remote server that goes down and comes back.
type Proxy struct {
	// Addr is where the proxy listens.
	Addr   string
	target string

	mode     atomic.Int32
	delay    atomic.Int64
	frozen   atomic.Bool
	thaw     chan struct{} // closed and replaced when the proxy thaws
	accepted atomic.Int64
	ln       net.Listener
	mu       sync.Mutex
	times    []time.Time
	conns    map[net.Conn]struct{}
	peak     int // most conns at once
	closed   bool
	wg       sync.WaitGroup
}

// StartProxy starts a proxy to target in mode Forward. It stops when the
// test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", NextIP()+":0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, ln: l, conns: map[net.Conn]struct{}{}, thaw: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// SetMode changes what happens to the connections accepted from now on.
func (p *Proxy) SetMode(m ProxyMode) { p.mode.Store(int32(m)) }

// Freeze makes the forwarded connections stop reading from the side that
// connected to the proxy (on true) and resume (on false): a peer that
// stops reading, whose socket buffers fill until its sender's writes block.
func (p *Proxy) Freeze(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen.Swap(on) && !on {
		close(p.thaw)
		p.thaw = make(chan struct{})
	}
}

// DropAll closes every connection the proxy holds now, as a server that
// crashes does; the mode decides what happens to the next ones.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// SetRefuseDelay makes Refuse hold each connection for d before closing it,
// so that a failed attempt takes a known, noticeable time.
func (p *Proxy) SetRefuseDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Peak returns the most connections the proxy held at once (in Forward
// mode, its connections to the target count too).
func (p *Proxy) Peak() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// AcceptTimes returns when each connection was accepted.
func (p *Proxy) AcceptTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.times...)
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.times = append(p.times, time.Now())
		p.mu.Unlock()
		p.accepted.Add(1)
		if !p.track(c, true) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			p.handle(c, ProxyMode(p.mode.Load()))
		}()
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
		p.peak = max(p.peak, len(p.conns))
		return true
	}
	delete(p.conns, c)
	return true
}

func (p *Proxy) handle(c net.Conn, mode ProxyMode) {
	switch mode {
	case Refuse:
		if d := time.Duration(p.delay.Load()); d > 0 {
			c.SetReadDeadline(time.Now().Add(d))
			io.Copy(io.Discard, c)
		}
	case Stall:
		io.Copy(io.Discard, c)
	default:
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			return
		}
		if !p.track(up, true) {
			up.Close()
			return
		}
		defer p.track(up, false)
		// Either direction ending ends both: the proxy stands for one
		// server, which has no half-open streams.
		done := make(chan struct{})
		go func() {
			p.copyFreezable(up, c)
			up.Close()
			c.Close()
			close(done)
		}()
		io.Copy(c, up)
		c.Close()
		up.Close()
		<-done
	}
}

// copyFreezable copies src to dst like io.Copy, but reads nothing while the
// proxy is frozen.
func (p *Proxy) copyFreezable(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		frozen, thaw, closed := p.frozen.Load(), p.thaw, p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if frozen {
			select {
			case <-thaw:
			case <-time.After(50 * time.Millisecond): // to notice Close
			}
			continue
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the proxy and closes every connection it holds.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
