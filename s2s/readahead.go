package s2s

import (
	"net"
	"sync"
)

// crypto/tls reads its input a record at a time: it asks the socket for what
// the record lacks, into a buffer that grows only to one record (16 KiB) and
// a little more. A stream that carries stanzas as fast as it can, or a burst
// of them, so cost a read system call per record or more (1.7 under load:
// 19 calls per 1000 stanzas of 180 bytes), and on this project's
// 2-core virtual machines those calls took a fifth of the relay's CPU under
// inbound load (crypto/tls.(*atLeastReader).Read: 19.8 % in the profile of
// BENCHMARKS.md's throughput run on d396783). readAhead, under an inbound
// stream's TLS, reads what the socket holds, up to aheadBytes, in one call,
// and hands it to TLS as it asks: one call for several records when they
// have come, one copy in memory for each.
//
// It reads ahead only while the stream is behind its peer: when the last
// read filled all the room it was given, bytes are likely waiting, and the
// next read takes up to aheadBytes into a buffer from a pool; otherwise it
// reads straight into what TLS gave, as TLS alone would. So a stream that
// keeps up, a handshake (it starts reading ahead only after it) and an idle
// stream never take a buffer (10,000 stream setups took one each, and what
// the pool dropped stayed as RSS: 24 KiB per idle outbound stream instead
// of 19-21), and a buffer goes back as soon as TLS has taken all it holds
// (issue 11: buffers only while busy).

// readAhead is the socket under an inbound stream's TLS. Its Read is called
// by TLS only, on the stream's owner, as is empty.
type readAhead struct {
	net.Conn
	bufp *[]byte // from aheadBufs while it holds bytes; nil when empty
	r, w int     // what TLS has not taken: (*bufp)[r:w]
	err  error   // the error of the read that brought the bytes, once they are taken
	// behind: the last read from the socket filled its room, so more is
	// likely waiting; the next one reads ahead. Only once started: the
	// handshake's reads never read ahead.
	behind  bool
	started bool
	// before, set by start, runs before each read from the socket, the
	// reads that may wait: the stream wakes the links it deferred
	// (deadlineReader.before), not before each record TLS already holds.
	before func()
}

// aheadBytes is the most a readAhead reads in one call: four full records.
const aheadBytes = 64 << 10

var aheadBufs = sync.Pool{New: func() any { b := make([]byte, aheadBytes); return &b }}

// newReadAhead puts a readAhead on c.
func newReadAhead(c net.Conn) *readAhead { return &readAhead{Conn: c} }

// Read implements net.Conn: from what it holds, else from the socket.
func (a *readAhead) Read(p []byte) (int, error) {
	if a.bufp == nil {
		if err := a.err; err != nil {
			a.err = nil
			return 0, err
		}
		if !a.behind || len(p) >= aheadBytes/2 {
			// Straight into p, without a copy: the stream keeps up, or
			// p has room for several records.
			a.wait()
			n, err := a.Conn.Read(p)
			a.behind = a.started && n == len(p)
			return n, err
		}
		a.bufp = aheadBufs.Get().(*[]byte)
		a.wait()
		n, err := a.Conn.Read(*a.bufp)
		if n <= 0 {
			a.behind = false
			a.release()
			return 0, err
		}
		a.r, a.w, a.err = 0, n, err
		a.behind = n > len(p) // reading ahead paid: it brought more than p had room for
	}
	n := copy(p, (*a.bufp)[a.r:a.w])
	a.r += n
	if a.r == a.w {
		a.release()
	}
	return n, nil
}

// wait runs before, if set, before a read from the socket.
func (a *readAhead) wait() {
	if a.before != nil {
		a.before()
	}
}

// start lets it read ahead, with before (may be nil) run before each read
// from the socket: the TLS handshake is over (its messages are small, and
// thousands of streams setting up at once each took a buffer for them).
func (a *readAhead) start(before func()) { a.started, a.before = true, before }

// empty reports whether it holds no bytes TLS has not taken: only then may
// the stream wait on the socket (canWait). A nil readAhead is empty.
func (a *readAhead) empty() bool { return a == nil || a.bufp == nil }

func (a *readAhead) release() {
	aheadBufs.Put(a.bufp)
	a.bufp, a.r, a.w = nil, 0, 0
}
