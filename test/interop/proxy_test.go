//go:build interop

package interop_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// cutProxy is a TCP proxy on the path of the relay's links to one server,
// to kill the connection under a stream the way a network does: until
// lose it forwards both ways; after lose, what the relay sends on the
// connections it carries so far is read and dropped (packets that no
// longer get through), while the server's side still flows; cut then
// resets both ends of those connections. Connections opened later are
// forwarded normally.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []*proxied
	wg    sync.WaitGroup
}

type proxied struct {
	relay, server *net.TCPConn
	lost          atomic.Bool
}

func startCutProxy(addr, target string) (*cutProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxied{relay: c.(*net.TCPConn), server: s.(*net.TCPConn)}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			// relay → server, unless lost
			buf := make([]byte, 32<<10)
			for {
				n, err := pc.relay.Read(buf)
				if n > 0 && !pc.lost.Load() {
					if _, werr := pc.server.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			pc.server.CloseWrite()
		}()
		go func() {
			defer p.wg.Done()
			io.Copy(pc.relay, pc.server)
			pc.relay.CloseWrite()
		}()
	}
}

// lose makes the connections carried so far lose what the relay sends.
func (p *cutProxy) lose() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.lost.Store(true)
	}
	return len(p.conns)
}

// cut resets both ends of the connections lose marked.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.lost.Load() {
			c.relay.SetLinger(0)
			c.server.SetLinger(0)
			c.relay.Close()
			c.server.Close()
		}
	}
}

// accepted is how many connections the proxy took.
func (p *cutProxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.relay.Close()
		c.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
