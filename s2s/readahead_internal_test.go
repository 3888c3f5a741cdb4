package s2s

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// chunkConn is a net.Conn whose reads return its chunks one per call (what
// a call has no room for stays for the next), then err.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	err    error
	reads  int
	room   []int // the room each read was given
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
	c.room = append(c.room, len(p))
	if len(c.chunks) == 0 {
		return 0, c.err
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 && c.err != nil {
		err := c.err
		c.err = nil
		return n, err // bytes and an error from one call
	}
	return n, nil
}

// TestReadAhead: what comes out is what the socket gave, in order; a
// stream that keeps up reads straight into what it is given; one that is
// behind takes what waits in few socket reads, and gives the buffer back
// once it is taken; an error that came with bytes follows them.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 150<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	readAll := func(a *readAhead, size int) []byte {
		var got []byte
		p := make([]byte, size)
		for {
			n, err := a.Read(p)
			got = append(got, p[:n]...)
			if !a.empty() && a.r >= a.w {
				t.Fatal("holds a buffer with nothing in it")
			}
			if err == io.EOF {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("behind", func(t *testing.T) {
		c := &chunkConn{chunks: [][]byte{bytes.Clone(data[:100<<10]), bytes.Clone(data[100<<10:])}, err: io.EOF}
		a := newReadAhead(c)
		a.start(nil)
		got := readAll(a, 17<<10) // what crypto/tls asks for: about a record
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, not the %d sent in order", len(got), len(data))
		}
		// 17 KiB straight (filled: behind), 64 KiB ahead, the first
		// chunk's last 19 KiB, and the second's 50 KiB with the EOF:
		// 4 reads where 17 KiB at a time took 10.
		if c.reads > 4 {
			t.Errorf("%d socket reads for 150 KiB, want at most 4", c.reads)
		}
		if !a.empty() {
			t.Error("keeps its buffer after the end")
		}
	})
	t.Run("keeping up", func(t *testing.T) {
		// Each socket read finds less than the room given: no buffer, no
		// copy, one socket read per read.
		c := &chunkConn{chunks: [][]byte{[]byte("<message/>"), []byte("<presence/>"), []byte("<iq/>")}}
		a := newReadAhead(c)
		a.start(nil)
		p := make([]byte, 17<<10)
		for i, want := range []string{"<message/>", "<presence/>"} {
			n, err := a.Read(p)
			if err != nil || string(p[:n]) != want {
				t.Fatalf("read %q, %v; want %q", p[:n], err, want)
			}
			if !a.empty() || a.behind {
				t.Fatalf("read %d: took a buffer (%v) or counts itself behind (%v)", i, !a.empty(), a.behind)
			}
		}
		if c.reads != 2 || c.room[0] != len(p) || c.room[1] != len(p) {
			t.Fatalf("%d socket reads for 2 reads, given %v bytes of room, want %d each (no read-ahead, no copy)", c.reads, c.room, len(p))
		}
	})
	t.Run("handshake", func(t *testing.T) {
		// Before start (during the TLS handshake) a read that fills its
		// room does not make the next one read ahead.
		c := &chunkConn{chunks: [][]byte{bytes.Clone(data[:4<<10])}}
		a := newReadAhead(c)
		p := make([]byte, 1<<10)
		for range 4 {
			if n, err := a.Read(p); n != len(p) || err != nil || !a.empty() {
				t.Fatalf("read %d, %v, buffer taken %v", n, err, !a.empty())
			}
		}
		for i, r := range c.room {
			if r != len(p) {
				t.Fatalf("socket read %d given %d bytes of room, want %d: read ahead before start", i, r, len(p))
			}
		}
	})
	t.Run("bytes, then their error", func(t *testing.T) {
		bad := errors.New("reset")
		a := newReadAhead(&chunkConn{chunks: [][]byte{[]byte("tai"), []byte("l and more")}, err: bad})
		a.start(nil)
		p := make([]byte, 3)
		if n, err := a.Read(p); n != 3 || err != nil || !a.behind {
			t.Fatalf("first read: %d, %v, behind %v", n, err, a.behind)
		}
		var got []byte
		for {
			n, err := a.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				if err != bad || string(got) != "l and more" {
					t.Fatalf("read %q then %v; want the bytes, then the error that came with them", got, err)
				}
				break
			}
		}
	})
	t.Run("large read", func(t *testing.T) {
		a := newReadAhead(&chunkConn{chunks: [][]byte{bytes.Clone(data)}})
		a.behind = true
		p := make([]byte, aheadBytes)
		if n, err := a.Read(p); n != aheadBytes || err != nil || !a.empty() {
			t.Fatalf("read %d, %v, empty %v", n, err, a.empty())
		}
	})
}

// TestReadAheadUnderTLS: TLS over a readAhead reads records that have come
// together with a few socket reads, not one per record; and a stream whose
// readAhead holds bytes does not wait on the socket for them.
func TestReadAheadUnderTLS(t *testing.T) {
	dr, server, client := tlsPair(t)
	if dr.ahead == nil {
		t.Fatal("tlsPair puts no readAhead under TLS")
	}
	counted := &countConn{Conn: dr.ahead.Conn}
	dr.ahead.Conn = counted
	// The stream's wake-ups of the links it fed, as inConn sets them up.
	wakes := 0
	dr.before = func() { wakes++ }
	dr.ahead.start(dr.before)
	record := bytes.Repeat([]byte("x"), 16<<10) // crypto/tls's largest record
	const records = 6
	go func() {
		for range records {
			client.Write(record)
		}
	}()
	time.Sleep(100 * time.Millisecond) // all of it in the socket
	got := make([]byte, len(record))
	if _, err := io.ReadFull(dr, got); err != nil {
		t.Fatal(err)
	}
	if dr.ahead.empty() && tlsInputEmpty(server) {
		t.Fatal("nothing held after reading one of six records that had come")
	}
	if dr.canWait() {
		t.Fatal("canWait with input held")
	}
	for i := 1; i < records; i++ {
		if _, err := io.ReadFull(dr, got); err != nil {
			t.Fatal(err)
		}
	}
	// 96 KiB and the records' overhead: one read straight into TLS's
	// buffer, then reads of up to 64 KiB ahead. Without the readAhead,
	// crypto/tls reads once per record at least (9 reads here).
	if counted.reads > 4 {
		t.Errorf("%d socket reads for %d records", counted.reads, records)
	}
	t.Logf("%d socket reads for %d records", counted.reads, records)
	// The links are woken before each read that may wait, from the
	// socket, not before each record TLS already held.
	if wakes != counted.reads {
		t.Errorf("%d wake-ups for %d socket reads (%d records)", wakes, counted.reads, records)
	}
	if !dr.ahead.empty() {
		t.Error("the readAhead keeps its buffer once all is read")
	}
}

// TestCanWaitSeesReadAhead: bytes held by the readAhead keep the stream
// from waiting on its socket, where they would never show.
func TestCanWaitSeesReadAhead(t *testing.T) {
	c, _ := tcpPair(t)
	a := newReadAhead(&chunkConn{chunks: [][]byte{[]byte("<message/><message/>")}})
	a.behind = true // the last read filled its room: this one reads ahead
	if _, err := a.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	dr := &deadlineReader{raw: c, conn: c, ahead: a, waitable: true}
	if dr.canWait() {
		t.Fatal("canWait while the readAhead holds bytes")
	}
	a.Read(make([]byte, 10))
	if !dr.canWait() {
		t.Fatal("cannot wait once the readAhead is empty")
	}
}

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (ours, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	ours, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ours.Close() })
	return ours, peer
}
