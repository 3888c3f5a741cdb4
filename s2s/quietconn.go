package s2s

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The Go runtime's monitor thread (sysmon) sleeps for as long as every P is
// idle, and the first system call made after that wakes it, through the
// scheduler's hook on system calls (entersyscall). Woken that way, it polls
// every 20 µs (nanosleep(20 µs) with the kernel's 50 µs timer slack, about
// every 70 µs) until it has found nothing to do 50 times in a row, then
// backs off. A relay carrying bursts goes idle between them, and its first
// read of each burst woke the monitor for the whole burst: paced at 50 % of
// the maximum rate (bursts every millisecond), it woke 3,400 times a
// second, half of the relay's 8,800 context switches a second, each on a
// CPU that the relay's own threads, the peer's and the internal server's
// were waiting for (fedrelay-bench latency, 2-core machine; see the
// commit). A read or write on a socket that never blocks (the net package
// makes every socket non-blocking and waits in its poller instead) has no
// need of that hook, so the relay's sockets read and write with raw system
// calls (syscall.RawSyscall on Linux): the monitor wakes on its own
// schedule, not on the relay's traffic.
//
// The monitor also preempts goroutines that run for more than 10 ms, and
// asleep it does not: a relay that turned busy through its poller alone
// could go on for as long as the monitor's sleep (up to a minute) without
// it. So one read or write in every loudEvery goes through the hook
// (through net), which wakes a sleeping monitor: busy for longer than
// that, the relay has its monitor awake, as any Go program has.

// quietConn is a TCP socket whose reads and writes do not go through the
// scheduler's system-call hook. It waits in the poller as net does, and
// honours the same deadlines, closes and errors.
type quietConn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w rawCall // a read and a write under way, each under its mutex
}

// rawCall is one raw system call on a socket through its RawConn, with
// the call's state beside a callback bound once. RawConn takes a func,
// which escapes: a closure per call cost two or three allocations for
// every read, write and wait of a socket (most of the relay's allocations
// in the latency scenario). The calls of one rawCall are serialised by mu.
type rawCall struct {
	mu    sync.Mutex
	op    rawOp
	p     []byte
	quiet *tls.Conn // rawWait: TLS whose input buffers go before waiting
	n     int
	errno error
	step  func(fd uintptr) bool // bound to c.run: RawConn.Read and Write
	once  func(fd uintptr)      // bound to c.runOnce: RawConn.Control
}

// rawOp is what a rawCall does.
type rawOp uint8

const (
	rawRead     rawOp = iota // read once into p, waiting for input (RawConn.Read)
	rawWrite                 // write all of p, waiting for room (RawConn.Write)
	rawWriteNow              // write what the socket takes of p at once (RawConn.Control)
	rawWait                  // wait for input, reading nothing (RawConn.Read)
)

// do runs op on rc with p (and quiet, for rawWait): the system call's
// result, and the poller's error (deadline, closed).
func (c *rawCall) do(rc syscall.RawConn, op rawOp, p []byte, quiet *tls.Conn) (n int, errno, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step == nil {
		c.step, c.once = c.run, c.runOnce
	}
	c.op, c.p, c.quiet = op, p, quiet
	switch op {
	case rawRead, rawWait:
		err = rc.Read(c.step)
	case rawWrite:
		err = rc.Write(c.step)
	case rawWriteNow:
		err = rc.Control(c.once)
	}
	n, errno = c.n, c.errno
	c.p, c.quiet, c.n, c.errno = nil, nil, 0, nil
	return n, errno, err
}

// run makes the call once on fd and reports whether it is done (false:
// wait in the poller, then run again).
func (c *rawCall) run(fd uintptr) bool {
	var again bool
	switch c.op {
	case rawRead:
		c.n, again, c.errno = sysRead(fd, c.p)
	case rawWrite, rawWriteNow:
		var m int
		m, again, c.errno = writeSome(fd, c.p[c.n:])
		c.n += m
	case rawWait:
		if again = !sysPeek(fd); again && c.quiet != nil {
			dropTLSInput(c.quiet)
			c.quiet = nil
		}
	}
	return !again
}

func (c *rawCall) runOnce(fd uintptr) { c.run(fd) }

// quietSocket returns c as a quietConn where this platform has raw system calls
// for it (quietIO), else c itself.
func quietSocket(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !quietIO {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quietConn{TCPConn: tc, rc: rc}
}

// loudEvery is how often a socket read or write goes through net, which
// wakes the runtime's monitor if it sleeps; loudAt is when one last did
// (time since clockBase).
const loudEvery = 10 * time.Millisecond

var (
	clockBase = time.Now()
	loudAt    atomic.Int64
)

// loud reports whether this read or write is the one in loudEvery that goes
// through net.
func loud() bool {
	now := int64(time.Since(clockBase))
	last := loudAt.Load()
	return now-last >= int64(loudEvery) && loudAt.CompareAndSwap(last, now)
}

// Read implements net.Conn.
func (c *quietConn) Read(p []byte) (int, error) {
	if len(p) == 0 || loud() {
		return c.TCPConn.Read(p)
	}
	n, errno, err := c.r.do(c.rc, rawRead, p, nil)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != nil:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn: all of p, waiting for room within the write
// deadline as net does.
func (c *quietConn) Write(p []byte) (int, error) {
	if loud() {
		return c.TCPConn.Write(p)
	}
	n, errno, err := c.w.do(c.rc, rawWrite, p, nil)
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != nil:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// writeSome writes p to the non-blocking socket fd until all of it went,
// the socket is full (again) or an error, and returns how much it took.
func writeSome(fd uintptr, p []byte) (n int, again bool, err error) {
	for n < len(p) {
		m, again, err := sysWrite(fd, p[n:])
		n += m
		if again || err != nil {
			return n, again, err
		}
	}
	return n, false, nil
}

// opError wraps err as net does its own: the poller's errors (deadline,
// closed) come from RawConn wrapped already, under another operation name.
func (c *quietConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
