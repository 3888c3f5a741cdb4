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
// Its buffer comes from a pool when a read brings bytes and goes back as
// soon as TLS has taken them all, so an idle stream holds none (issue 11:
// buffers only while busy), and a stream holds one only while TLS has not
// yet asked for bytes that came with what it read: the next records, which
// the stream's owner reads next.

// readAhead is the socket under an inbound stream's TLS. Its Read is called
// by TLS only, on the stream's owner, as is empty.
type readAhead struct {
	net.Conn
	bufp *[]byte // from aheadBufs while it holds bytes; nil when empty
	r, w int     // what TLS has not taken: (*bufp)[r:w]
	err  error   // the error of the read that brought the bytes, once they are taken
}

// aheadBytes is the most a readAhead reads in one call: four full records.
const aheadBytes = 64 << 10

var aheadBufs = sync.Pool{New: func() any { b := make([]byte, aheadBytes); return &b }}

// newReadAhead puts a readAhead on c.
func newReadAhead(c net.Conn) *readAhead { return &readAhead{Conn: c} }

// NetConn returns the socket (rawConnOf finds it for WaitIdle and parking).
func (a *readAhead) NetConn() net.Conn { return a.Conn }

// Read implements net.Conn: from what it holds, else from the socket.
func (a *readAhead) Read(p []byte) (int, error) {
	if a.bufp == nil {
		if err := a.err; err != nil {
			a.err = nil
			return 0, err
		}
		if len(p) >= aheadBytes/2 {
			return a.Conn.Read(p) // room enough for several records: no copy
		}
		a.bufp = aheadBufs.Get().(*[]byte)
		n, err := a.Conn.Read(*a.bufp)
		if n <= 0 {
			a.release()
			return 0, err
		}
		a.r, a.w, a.err = 0, n, err
	}
	n := copy(p, (*a.bufp)[a.r:a.w])
	a.r += n
	if a.r == a.w {
		a.release()
	}
	return n, nil
}

// empty reports whether it holds no bytes TLS has not taken: only then may
// the stream wait on the socket (canWait). A nil readAhead is empty.
func (a *readAhead) empty() bool { return a == nil || a.bufp == nil }

func (a *readAhead) release() {
	aheadBufs.Put(a.bufp)
	a.bufp, a.r, a.w = nil, 0, 0
}
