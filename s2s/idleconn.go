package s2s

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"reflect"
	"syscall"
	"time"
	"unsafe"

	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// What an idle stream keeps. A stream that carries nothing for minutes
// should cost little more than its socket (issue 11: at most 20 KiB of RSS
// per idle authenticated TLS stream). Three things stayed with it before:
//
//   - The stack of its owner goroutine, grown to tens of KiB by the TLS
//     handshake and certificate verification. The runtime halves a stack at
//     most once per GC cycle, and a relay with idle streams rarely collects,
//     so those run on a goroutine of their own that ends with them (aside).
//   - crypto/tls's input buffers, kept at the size of the largest record and
//     handshake message the connection ever received (rawInput, hand, and
//     input, which points into rawInput): dropped when a wait begins
//     (dropTLSInput).
//   - The owner blocked inside tls.Conn.Read, deep in crypto/tls: the idle
//     wait happens on the socket itself (WaitIdle), with a shallow stack;
//     TLS reads only once bytes have come.
//
// The wire.Reader gives its own buffer back at the same moments (see
// wire.IdleWaiter).

// aside runs fn on a goroutine of its own and waits for it, so that the
// stack fn grows goes away with that goroutine instead of staying with the
// caller (a connection's long-lived owner). A panic in fn is raised again in
// the caller, where the owner's recover handles it.
func aside(fn func()) {
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		fn()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}

// WaitIdle implements wire.IdleWaiter: the Reader has nothing buffered and
// has given its buffer back; this waits until the peer sends something, the
// read deadline (the idle timeout, as for Read) passes, the stream is
// stopped or the connection closed. What has come is left for Read. Owner
// only, like Read. Where the wait cannot be done on the socket (TLS or the
// readAhead under it holds input already, another kind of connection), it
// returns at once and Read waits as before.
//
// An idle stream's goroutine stays parked here for minutes: the runtime
// halves its stack at a garbage collection only while the stack uses less
// than a quarter of it (runtime.shrinkstack counts 800 bytes more), so the
// frames from the owner down to the poller must stay under about 1.2 KiB
// for an idle stream to keep a 4 KiB stack rather than 8. Hence this loop
// keeps few locals, and the reckoning of deadlines is in nextWait.
func (d *deadlineReader) WaitIdle() error {
	if d.before != nil {
		d.before() // what the stream deferred must not wait with it
	}
	if !d.canWait() {
		return nil
	}
	// A stream between two bursts finds input soon: for idleGrace it
	// waits with its buffers, and drops them only if it is still quiet
	// then (and authenticated, or an outbound link that is up), so that a
	// busy stream does not allocate them again and again.
	d.waiting.Store(true)
	defer d.waiting.Store(false)
	resumed := d.resuming
	if resumed {
		d.resuming = false // the wait that parked goes on, from its start
	} else {
		d.waitStart = time.Now()
	}
	for {
		deadline, step := d.nextWait()
		if step == waitQuiet && d.parkable && !resumed {
			if tc, _ := d.conn.(*tls.Conn); tc != nil {
				dropTLSInput(tc)
			}
			d.parkUntil = deadline
			return errPark
		}
		err := d.waitUntil(deadline, step == waitQuiet)
		if step == waitQuiet || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if step == waitLast && (d.waitSettled || d.idle.Load() == 0) {
			return err // the stream's own deadline
		}
	}
}

// canWait reports whether WaitIdle can wait on the socket.
func (d *deadlineReader) canWait() bool {
	if !d.waitable {
		return false
	}
	if !d.ahead.empty() {
		return false // bytes came with the last read: Read takes them
	}
	if tc, _ := d.conn.(*tls.Conn); tc != nil && !tlsInputEmpty(tc) {
		return false
	}
	if !d.rcKnown {
		// The socket under the stream, the same before and after STARTTLS.
		d.rc, d.rcKnown = rawConnOf(d.raw), true
	}
	return d.rc != nil
}

// The steps of WaitIdle.
const (
	waitSlice = iota // a slice of at most idleGrace, then look again
	waitLast         // a slice that ends at the stream's deadline
	waitQuiet        // past idleGrace: drop the buffers and wait until the deadline
)

// nextWait returns how long WaitIdle waits next. The deadline is the idle
// timeout from the wait's start once authenticated, else d.until (the
// negotiation deadline; none for a link that is up).
func (d *deadlineReader) nextWait() (time.Time, uint8) {
	end, settled := d.until, d.until.IsZero()
	if idle := time.Duration(d.idle.Load()); idle > 0 {
		end, settled = d.waitStart.Add(idle), true
	}
	d.waitSettled = settled
	grace := d.waitStart.Add(idleGrace)
	now := time.Now()
	if settled && !now.Before(grace) {
		return end, waitQuiet
	}
	// Wait in slices of at most idleGrace: the stream may authenticate
	// meanwhile (authenticated leaves the deadline of a waiting stream
	// alone), and then its deadline changes.
	slice := grace
	if !now.Before(grace) {
		slice = now.Add(idleGrace)
	}
	if !end.IsZero() && !end.After(slice) {
		return end, waitLast
	}
	return slice, waitSlice
}

// idleGrace is how long a quiet stream keeps its buffers before WaitIdle
// drops them (a variable for tests).
var idleGrace = 2 * time.Second

// waitUntil waits for input on the socket until deadline (the stream's read
// deadline meanwhile; zero: none), dropping TLS's input buffers if quiet
// and it has to wait.
func (d *deadlineReader) waitUntil(deadline time.Time, quiet bool) error {
	if err := d.conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	// Checked after the deadline is set, as in Read.
	if d.stopped.Load() {
		return errStopped
	}
	var tc *tls.Conn
	if quiet {
		tc, _ = d.conn.(*tls.Conn)
	}
	err := waitReadable(d.rc, &d.readable, tc)
	if err != nil && d.stopped.Load() {
		err = errStopped
	}
	return err
}

// rawConnOf returns the socket under c, or nil.
func rawConnOf(c net.Conn) syscall.RawConn {
	for range 4 {
		switch v := c.(type) {
		case syscall.Conn:
			rc, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case *resolve.Conn:
			c = v.Conn
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// tlsInput locates the input buffers of a tls.Conn, which crypto/tls does
// not export: their offsets, found by name and checked by type once, or ok
// false if this Go version lays tls.Conn out differently (then nothing is
// dropped; TestTLSInputLayout fails so that it is noticed).
var tlsInput = func() (l struct {
	rawInput, input, hand uintptr
	ok                    bool
}) {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == typ && len(f.Index) == 1
	}
	var ok1, ok2, ok3 bool
	l.rawInput, ok1 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	l.input, ok2 = field("input", reflect.TypeFor[bytes.Reader]())
	l.hand, ok3 = field("hand", reflect.TypeFor[bytes.Buffer]())
	l.ok = ok1 && ok2 && ok3
	return l
}()

// tlsInputEmpty reports whether tc holds no input (false as well if its
// layout is unknown).
func tlsInputEmpty(tc *tls.Conn) bool {
	if !tlsInput.ok {
		return false
	}
	rawInput, input, hand := tlsInputOf(tc)
	return rawInput.Len() == 0 && input.Len() == 0 && hand.Len() == 0
}

// dropTLSInput drops the input buffers of tc, which must hold nothing
// (tlsInputEmpty). crypto/tls touches them only inside Read and Handshake,
// so the goroutine that reads tc (the owner) may do this between its
// reads; the next read allocates what it needs.
func dropTLSInput(tc *tls.Conn) {
	rawInput, input, hand := tlsInputOf(tc)
	*rawInput, *input, *hand = bytes.Buffer{}, bytes.Reader{}, bytes.Buffer{}
}

func tlsInputOf(tc *tls.Conn) (rawInput *bytes.Buffer, input *bytes.Reader, hand *bytes.Buffer) {
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsInput.rawInput)),
		(*bytes.Reader)(unsafe.Add(p, tlsInput.input)),
		(*bytes.Buffer)(unsafe.Add(p, tlsInput.hand))
}

// tlsPeer locates where a tls.Conn keeps the peer's parsed certificates
// (peerCertificates and verifiedChains), which crypto/tls does not let go of
// while the connection lives: a few KiB per stream, for the stream's whole
// life. ok is false if this Go version lays tls.Conn out differently (then
// nothing is dropped; TestTLSInputLayout fails so that it is noticed).
var tlsPeer = func() (l struct {
	certs, chains uintptr
	ok            bool
}) {
	t := reflect.TypeFor[tls.Conn]()
	f1, ok1 := t.FieldByName("peerCertificates")
	f2, ok2 := t.FieldByName("verifiedChains")
	l.certs, l.chains = f1.Offset, f2.Offset
	l.ok = ok1 && ok2 && len(f1.Index) == 1 && len(f2.Index) == 1 &&
		f1.Type == reflect.TypeFor[[]*x509.Certificate]() &&
		f2.Type == reflect.TypeFor[[][]*x509.Certificate]()
	return l
}()

// dropPeerCertificates makes tc forget the peer's certificates once the
// stream has taken what it needs of them (its verified names, the key for
// pins, the raw chain for DANE): ConnectionState then reports none. tc must
// be a completed handshake that no other goroutine can see yet, and, on a
// client, its configuration must keep no session cache (a session ticket
// received later would be stored without the certificates, and resuming
// it needs them).
func dropPeerCertificates(tc *tls.Conn) {
	if !tlsPeer.ok {
		return
	}
	p := unsafe.Pointer(tc)
	*(*[]*x509.Certificate)(unsafe.Add(p, tlsPeer.certs)) = nil
	*(*[][]*x509.Certificate)(unsafe.Add(p, tlsPeer.chains)) = nil
}
