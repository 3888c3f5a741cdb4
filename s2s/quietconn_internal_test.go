package s2s

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// loopbackPair returns the two ends of a loopback TCP connection: the one
// dialled and the one accepted.
func loopbackPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc
	if peer == nil {
		t.Fatal("accept failed")
	}
	return c, peer
}

// quietPair returns the two ends of a loopback TCP connection, the first
// as quietSocket makes it.
func quietPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	c, peer := loopbackPair(t)
	q := quietSocket(c)
	t.Cleanup(func() { q.Close(); peer.Close() })
	if _, ok := q.(*quietConn); !ok && quietIO {
		t.Fatalf("quietSocket gave %T", q)
	}
	return q, peer
}

// hush makes the reads and writes of the next loudEvery raw ones, so that
// the tests below test those, not net's.
func hush() { loudAt.Store(int64(time.Since(clockBase))) }

// What a quietConn reads and writes arrives whole and in order, also when
// the writes have to wait for the reader (the socket full) and when the
// reads find nothing yet.
func TestQuietConnCarriesBytes(t *testing.T) {
	q, peer := quietPair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	done := make(chan error, 1)
	go func() {
		// Slow at first, so that the socket fills and Write waits.
		time.Sleep(50 * time.Millisecond)
		got := make([]byte, len(want))
		_, err := io.ReadFull(peer, got)
		if err == nil && !bytes.Equal(got, want) {
			err = errors.New("the bytes differ")
		}
		done <- err
	}()
	hush()
	if n, err := q.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The other way: the reads wait in the poller for each piece.
	go func() {
		for i := 0; i < 4; i++ {
			time.Sleep(5 * time.Millisecond)
			peer.Write(want[i*1000 : (i+1)*1000])
		}
		peer.(*net.TCPConn).CloseWrite()
	}()
	hush()
	got, err := io.ReadAll(q)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want[:4000]) {
		t.Fatalf("read %d bytes, not the 4000 written", len(got))
	}
	// At end of file, Read says io.EOF again, as net does.
	if n, err := q.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("after EOF: %d, %v", n, err)
	}
}

// Deadlines, closes and resets give the errors net gives: what the
// stream's code tests for (os.ErrDeadlineExceeded, a net.Error that times
// out, net.ErrClosed), named after the operation.
func TestQuietConnErrors(t *testing.T) {
	q, peer := quietPair(t)

	q.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	hush()
	_, err := q.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past its deadline: %#v, want a *net.OpError for read", err)
	}
	q.SetReadDeadline(time.Time{})

	// A peer that does not read: Write waits until its deadline.
	q.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	hush()
	n, err := q.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= 64<<20 {
		t.Fatalf("write past its deadline: %d, %v", n, err)
	}
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write past its deadline: %#v, want a *net.OpError for write", err)
	}

	// A reset from the peer is the system's error.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	buf := make([]byte, 1<<20)
	for {
		hush()
		_, err = q.Read(buf)
		if err != nil {
			break
		}
	}
	if !errors.As(err, &oe) || oe.Op != "read" || errors.Is(err, io.EOF) {
		t.Fatalf("read after a reset: %v", err)
	}

	// Closed under a waiting read.
	q2, _ := quietPair(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		q2.Close()
	}()
	hush()
	if _, err := q2.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v", err)
	}
}

// One read or write in loudEvery goes through net, the others not.
func TestQuietConnLoudOnceInAWhile(t *testing.T) {
	loudAt.Store(int64(time.Since(clockBase)) - int64(loudEvery))
	if !loud() {
		t.Fatal("no loud call after loudEvery")
	}
	if loud() {
		t.Fatal("a second loud call within loudEvery")
	}
}

// TestRawCallsAllocateNothing: the raw reads and writes of a quietConn, a
// holdConn's write that does not wait (flushNow) and the wait for input
// (waitReadable) allocate nothing. With a closure per call they cost two
// or three allocations each, on every read and write of every socket.
func TestRawCallsAllocateNothing(t *testing.T) {
	if !quietIO {
		t.Skip("no raw system calls for sockets on this platform")
	}
	q, peer := quietPair(t)
	hc := newHoldConn(q).(*holdConn)
	rc := rawConnOf(q)
	var wait rawCall
	p, buf := []byte("<message/>"), make([]byte, 64)
	cases := []struct {
		name string
		f    func() error
	}{
		{"quietConn write and read", func() error {
			if _, err := q.Write(p); err != nil {
				return err
			}
			_, err := io.ReadFull(peer, buf[:len(p)])
			if err == nil {
				_, err = peer.Write(p)
			}
			if err == nil {
				_, err = io.ReadFull(q, buf[:len(p)])
			}
			return err
		}},
		{"holdConn flushNow", func() error {
			hc.hold()
			hc.Write(p)
			if ok, err := hc.flushNow(); !ok || err != nil {
				return fmt.Errorf("flushNow: %v, %v", ok, err)
			}
			hc.release()
			_, err := io.ReadFull(peer, buf[:len(p)])
			return err
		}},
		{"waitReadable", func() error {
			if _, err := peer.Write(p); err != nil {
				return err
			}
			if err := waitReadable(rc, &wait, nil); err != nil {
				return err
			}
			_, err := io.ReadFull(q, buf[:len(p)])
			return err
		}},
	}
	for _, c := range cases {
		var err error
		n := testing.AllocsPerRun(200, func() {
			hush() // raw calls only: net's would be measured once in 10 ms
			if e := c.f(); e != nil && err == nil {
				err = e
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n != 0 {
			t.Errorf("%s: %v allocations a round, want none", c.name, n)
		}
	}
}
