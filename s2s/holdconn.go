package s2s

import (
	"net"
	"sync"
	"syscall"

	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// A write to a socket costs a system call, and on loopback the kernel
// delivers the bytes to the reader, and wakes it, on the writer's time:
// writing 64 KiB in one call cost the writing thread half the CPU per byte
// of four calls of 16 KiB (measured on this project's 2-core machines).
// crypto/tls writes each record, 16 KiB at most, with a call of its own. A
// link's writer often finds several records' worth queued when it runs (it
// is woken once per record its feeding stream reads, and runs behind it),
// so the relay wrote 15 KiB per call on average at full load. holdConn,
// under TLS, gathers a writer's records and writes them in one call.

// holdConn is the socket under an outbound stream (under its TLS, direct or
// after STARTTLS). While its writer holds it, writes are gathered, and
// flush writes them in one call.
type holdConn struct {
	net.Conn
	mu      sync.Mutex // writes come from the link's writer, or from TLS answering the peer on the reader's goroutine
	holding bool
	direct  int             // writes not gathered that are under way (they may wait on the socket)
	rc      syscall.RawConn // the socket, for flushNow (found once)
	rcKnown bool
	now     rawCall // flushNow's write
	buf     []byte
	bufp    *[]byte // where buf came from in holdBufs, to put it back without allocating
}

// holdBufs recycles the buffers of holdConns, which hold one only while
// they write.
var holdBufs = sync.Pool{New: func() any { b := make([]byte, 0, holdCap); return &b }}

// holdBytes is how much a writer gathers before it writes; it writes the
// batch that crosses it too, so a buffer holds up to holdBytes plus a batch
// and its records' overhead (holdCap). A larger one (a stanza larger than
// a batch) is not kept.
const (
	holdBytes = 128 << 10
	holdCap   = holdBytes + batchBytes + 4<<10
)

func newHoldConn(c net.Conn) net.Conn { return &holdConn{Conn: c} }

// holdConnOf returns the holdConn under a dialled connection, or nil.
func holdConnOf(c *resolve.Conn) *holdConn {
	switch v := c.Conn.(type) {
	case *holdConn:
		return v
	case interface{ NetConn() net.Conn }:
		hc, _ := v.NetConn().(*holdConn)
		return hc
	}
	return nil
}

// NetConn returns the socket (rawConnOf finds it for WaitIdle and parking).
func (c *holdConn) NetConn() net.Conn { return c.Conn }

// Write implements net.Conn.
func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.holding {
		if c.buf == nil {
			c.bufp = holdBufs.Get().(*[]byte)
			c.buf = (*c.bufp)[:0]
		}
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.direct++
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.direct--
	c.mu.Unlock()
	return n, err
}

// hold starts gathering writes. A nil c does nothing, here and below.
func (c *holdConn) hold() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// tryHold starts gathering writes unless a write that is not gathered is
// under way (it may be waiting on the socket, holding TLS's lock for
// writing) or writes are gathered already, and reports whether it did.
// From then on no write through TLS waits on the socket, until release. A
// nil c never holds.
func (c *holdConn) tryHold() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding || c.direct > 0 {
		return false
	}
	c.holding = true
	return true
}

// held returns how many bytes are gathered.
func (c *holdConn) held() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// flush writes what was gathered, in one call, and keeps holding.
func (c *holdConn) flush() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// flushNow writes what was gathered as far as the socket takes it without
// waiting, and keeps holding. It reports whether all of it went; what did
// not stays gathered, first in line, for flush.
func (c *holdConn) flushNow() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return true, nil
	}
	if !c.rcKnown {
		c.rc, c.rcKnown = rawConnOf(c.Conn), true
	}
	if c.rc == nil {
		return false, nil // the writer writes it all
	}
	n, err := writeNow(c.rc, &c.now, c.buf)
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	return len(c.buf) == 0, err
}

// release stops holding, once what is gathered is written. After the
// holder's last flush, TLS may still have written into it from another
// goroutine (the stream's reader answering the peer: a KeyUpdate, an
// alert): those bytes go now, waiting within the socket's write deadline,
// not dropped, which would break the TLS stream under the peer. A failure
// to write them is left for the stream's next read or write to meet.
func (c *holdConn) release() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) > 0 {
		c.Conn.Write(c.buf)
	}
	c.stopHolding()
}

// releaseIfEmpty stops holding if nothing is gathered, and reports whether
// it did: a holder that must not wait (an inline write) leaves what came
// after its last flush to one that may.
func (c *holdConn) releaseIfEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) > 0 {
		return false
	}
	c.stopHolding()
	return true
}

// discard stops holding, dropping what was gathered and not flushed: the
// stream failed, and what TLS wrote into it cannot be taken back.
func (c *holdConn) discard() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.stopHolding()
	c.mu.Unlock()
}

// stopHolding ends the hold and gives the buffer back; c.mu is held.
func (c *holdConn) stopHolding() {
	c.holding = false
	if c.buf != nil && cap(c.buf) <= holdCap {
		*c.bufp = c.buf[:0]
		holdBufs.Put(c.bufp)
	}
	c.buf, c.bufp = nil, nil
}
