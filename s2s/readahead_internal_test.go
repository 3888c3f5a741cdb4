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
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
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

// TestReadAhead: what comes out is what the socket gave, in order; one
// socket read serves many small reads; the buffer goes back once taken; an
// error that came with bytes follows them; a large read needs no buffer.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 150<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	t.Run("small reads", func(t *testing.T) {
		c := &chunkConn{chunks: [][]byte{bytes.Clone(data[:100<<10]), bytes.Clone(data[100<<10:])}, err: io.EOF}
		a := newReadAhead(c)
		var got []byte
		p := make([]byte, 17<<10) // what crypto/tls asks for: about a record
		for i := 0; ; i++ {
			n, err := a.Read(p[:1+i*997%len(p)])
			got = append(got, p[:n]...)
			if !a.empty() && a.r >= a.w {
				t.Fatal("holds a buffer with nothing in it")
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, not the %d sent in order", len(got), len(data))
		}
		// 64 KiB, 36 KiB (the rest of the first chunk), 50 KiB, and the
		// EOF that came with them.
		if c.reads != 3 {
			t.Errorf("%d socket reads for 150 KiB, want 3", c.reads)
		}
		if !a.empty() {
			t.Error("keeps its buffer after the end")
		}
	})
	t.Run("bytes, then their error", func(t *testing.T) {
		bad := errors.New("reset")
		a := newReadAhead(&chunkConn{chunks: [][]byte{[]byte("tail")}, err: bad})
		p := make([]byte, 3)
		if n, err := a.Read(p); n != 3 || err != nil {
			t.Fatalf("first read: %d, %v", n, err)
		}
		if n, err := a.Read(p); n != 1 || err != nil || p[0] != 'l' {
			t.Fatalf("second read: %q, %v", p[:n], err)
		}
		if n, err := a.Read(p); n != 0 || err != bad {
			t.Fatalf("third read: %d, %v; want the error that came with the bytes", n, err)
		}
	})
	t.Run("large read", func(t *testing.T) {
		a := newReadAhead(&chunkConn{chunks: [][]byte{bytes.Clone(data)}})
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
	counted := &countingConn{Conn: dr.ahead.Conn}
	dr.ahead.Conn = counted
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
	// 96 KiB and the records' overhead: two reads of at most 64 KiB,
	// and one more if the last bytes came late. Without the readAhead,
	// crypto/tls reads once per record at least.
	if counted.reads > records/2 {
		t.Errorf("%d socket reads for %d records", counted.reads, records)
	}
	t.Logf("%d socket reads for %d records", counted.reads, records)
	if !dr.ahead.empty() {
		t.Error("the readAhead keeps its buffer once all is read")
	}
}

// TestCanWaitSeesReadAhead: bytes held by the readAhead keep the stream
// from waiting on its socket, where they would never show.
func TestCanWaitSeesReadAhead(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newReadAhead(&chunkConn{chunks: [][]byte{[]byte("<message/><message/>")}})
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

type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}
