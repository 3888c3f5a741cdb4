package s2s

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestTLSInputLayout: releaseTLSInput finds crypto/tls's input buffers on
// this Go version. If a Go release renames or retypes them, idle TLS
// streams silently keep their buffers again: this fails instead.
func TestTLSInputLayout(t *testing.T) {
	if !tlsInput.ok {
		t.Fatal("tls.Conn has no rawInput/input/hand of the expected types: releaseTLSInput does nothing")
	}
	if !tlsPeer.ok {
		t.Fatal("tls.Conn has no peerCertificates/verifiedChains of the expected types: dropPeerCertificates does nothing")
	}
}

// TestDropPeerCertificates: a connection that dropped the peer's
// certificates reports none and still carries data both ways.
func TestDropPeerCertificates(t *testing.T) {
	_, server, client := tlsPair(t)
	if len(client.ConnectionState().PeerCertificates) == 0 {
		t.Fatal("no server certificate to begin with")
	}
	dropPeerCertificates(client)
	if n := len(client.ConnectionState().PeerCertificates); n != 0 {
		t.Fatalf("%d certificates left", n)
	}
	go server.Write([]byte("ping"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q, %v", b, err)
	}
	go client.Write([]byte("pong"))
	if _, err := io.ReadFull(server, b); err != nil || string(b) != "pong" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// tlsPair returns the two ends of a TLS 1.3 connection over loopback TCP:
// the server's deadlineReader (over its tls.Conn) and the client.
func tlsPair(t *testing.T) (*deadlineReader, *tls.Conn, *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"a.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	cc, raw := loopbackPair(t)
	ahead := newReadAhead(raw) // as inbound streams have (startTLS)
	server := tls.Server(ahead, &tls.Config{Certificates: []tls.Certificate{cert}})
	client := tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ahead.start(nil)
	t.Cleanup(func() { server.Close(); client.Close() })
	dr := &deadlineReader{raw: raw, conn: server, ahead: ahead, waitable: true}
	dr.setIdle(time.Minute) // an authenticated stream
	return dr, server, client
}

// TestWaitIdle: the wait on the socket loses no byte, returns at once when
// TLS already holds input, honours the idle deadline, and is ended by stop
// and by closing the connection.
func TestWaitIdle(t *testing.T) {
	defer func(g time.Duration) { idleGrace = g }(idleGrace)
	idleGrace = 10 * time.Millisecond
	t.Run("bytes after the wait", func(t *testing.T) {
		dr, _, client := tlsPair(t)
		go func() {
			time.Sleep(50 * time.Millisecond)
			client.Write([]byte("<a/>"))
		}()
		if err := dr.WaitIdle(); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 16)
		n, err := dr.Read(b)
		if err != nil || string(b[:n]) != "<a/>" {
			t.Fatalf("read %q, %v", b[:n], err)
		}
	})
	t.Run("TLS holds input", func(t *testing.T) {
		dr, server, client := tlsPair(t)
		client.Write([]byte("first"))
		client.Write([]byte("second"))
		b := make([]byte, 3)
		if n, err := io.ReadFull(dr, b); err != nil || string(b[:n]) != "fir" {
			t.Fatalf("read %q, %v", b[:n], err)
		}
		time.Sleep(20 * time.Millisecond) // both records in the socket
		if tlsInputEmpty(server) {
			t.Fatal("a TLS connection holding input seen as empty")
		}
		done := make(chan error, 1)
		go func() { done <- dr.WaitIdle() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("WaitIdle waited on the socket while TLS held input")
		}
		var got []byte
		b = make([]byte, 64)
		for len(got) < len("stsecond") {
			n, err := dr.Read(b)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b[:n]...)
		}
		if string(got) != "stsecond" {
			t.Fatalf("read %q", got)
		}
	})
	t.Run("buffers released, connection intact", func(t *testing.T) {
		dr, server, client := tlsPair(t)
		big := strings.Repeat("x", 15000)
		go client.Write([]byte(big))
		got := make([]byte, len(big))
		if _, err := io.ReadFull(dr, got); err != nil || string(got) != big {
			t.Fatal("large record", err)
		}
		if !tlsInputEmpty(server) {
			t.Fatal("an empty TLS connection seen as holding input")
		}
		if rawInputOf(server).Cap() == 0 {
			t.Fatal("rawInput has no buffer after a large record?")
		}
		time.AfterFunc(50*time.Millisecond, func() { client.Write([]byte("<b/>")) })
		if err := dr.WaitIdle(); err != nil {
			t.Fatal(err)
		}
		// WaitIdle waited (the write comes 50 ms later), and reads nothing.
		if c := rawInputOf(server).Cap(); c != 0 {
			t.Errorf("rawInput still has %d bytes after a wait", c)
		}
		b := make([]byte, 16)
		if n, err := dr.Read(b); err != nil || string(b[:n]) != "<b/>" {
			t.Fatalf("read %q, %v", b[:n], err)
		}
	})
	t.Run("a short pause keeps the buffers", func(t *testing.T) {
		defer func(g time.Duration) { idleGrace = g }(idleGrace)
		idleGrace = 5 * time.Second
		dr, server, client := tlsPair(t)
		big := strings.Repeat("x", 15000)
		go client.Write([]byte(big))
		if _, err := io.ReadFull(dr, make([]byte, len(big))); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, func() { client.Write([]byte("<b/>")) })
		if err := dr.WaitIdle(); err != nil {
			t.Fatal(err)
		}
		if rawInputOf(server).Cap() == 0 {
			t.Error("a stream quiet for 50 ms (grace 5 s) lost its TLS buffers: a busy stream would allocate them again and again")
		}
	})
	t.Run("before authentication", func(t *testing.T) {
		// The negotiation deadline holds while the stream is not
		// authenticated...
		dr, _, _ := tlsPair(t)
		dr.idle.Store(0)
		dr.until = time.Now().Add(100 * time.Millisecond)
		start := time.Now()
		if err := dr.WaitIdle(); !isTimeout(err) {
			t.Fatalf("got %v, want the negotiation deadline's timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("timed out after %v, want about 100ms", d)
		}
		// ...and no longer once it authenticates during the wait (as
		// inConn.authenticated does, leaving the deadline to WaitIdle).
		dr, _, client := tlsPair(t)
		dr.idle.Store(0)
		dr.until = time.Now().Add(100 * time.Millisecond)
		time.AfterFunc(30*time.Millisecond, func() { dr.setIdle(time.Minute) })
		time.AfterFunc(300*time.Millisecond, func() { client.Write([]byte("<c/>")) })
		if err := dr.WaitIdle(); err != nil {
			t.Fatalf("a stream authenticated during the wait: %v, want its input", err)
		}
	})
	t.Run("idle deadline", func(t *testing.T) {
		dr, _, _ := tlsPair(t)
		dr.setIdle(100 * time.Millisecond)
		start := time.Now()
		err := dr.WaitIdle()
		if !isTimeout(err) {
			t.Fatalf("got %v, want a timeout", err)
		}
		if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
			t.Errorf("timed out after %v", d)
		}
	})
	t.Run("stop", func(t *testing.T) {
		dr, _, _ := tlsPair(t)
		dr.setIdle(time.Minute)
		time.AfterFunc(50*time.Millisecond, dr.stop)
		if err := dr.WaitIdle(); !errors.Is(err, errStopped) {
			t.Fatalf("got %v, want errStopped", err)
		}
		if err := dr.WaitIdle(); !errors.Is(err, errStopped) {
			t.Fatalf("after stop: got %v, want errStopped", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		dr, _, _ := tlsPair(t)
		dr.setIdle(time.Minute)
		time.AfterFunc(50*time.Millisecond, func() { dr.raw.Close() })
		if err := dr.WaitIdle(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("got %v, want net.ErrClosed", err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		dr, _, client := tlsPair(t)
		time.AfterFunc(50*time.Millisecond, func() { client.Close() })
		if err := dr.WaitIdle(); err != nil {
			t.Fatal(err)
		}
		if _, err := dr.Read(make([]byte, 16)); err != io.EOF {
			t.Fatalf("got %v, want io.EOF", err)
		}
	})
}

// TestReaderOverIdleWait: a wire.Reader over a deadlineReader frames a
// stream whose elements come in pauses (the wait on the socket each time)
// and in one burst, over TLS, exactly.
func TestReaderOverIdleWait(t *testing.T) {
	dr, _, client := tlsPair(t)
	header := `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='a.test' from='b.test' version='1.0'>`
	big := "<message to='a@a.test' from='b@b.test'><body>" + strings.Repeat("y", 40000) + "</body></message>"
	parts := []string{header, "<iq type='get' id='1' to='a.test' from='b.test'/>", " ", big + "<presence to='a.test' from='b.test'/>", "<iq type='get' id='2' to='a.test' from='b.test'/>"}
	go func() {
		for _, p := range parts {
			time.Sleep(20 * time.Millisecond)
			client.Write([]byte(p))
		}
	}()
	r := wire.NewReader(dr, wire.Limits{})
	r.ReportSpace(true)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	for _, want := range []string{parts[1], " ", big, "<presence to='a.test' from='b.test'/>", parts[4]} {
		el, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if string(el.Raw) != want {
			t.Fatalf("got %.40q, want %.40q", el.Raw, want)
		}
	}
}

// TestAsidePanics: a panic on the aside goroutine reaches the caller, whose
// recover (the connection owner's) handles it.
func TestAsidePanics(t *testing.T) {
	defer func() {
		if p := recover(); p != "boom" {
			t.Fatalf("recovered %v", p)
		}
	}()
	aside(func() { panic("boom") })
	t.Fatal("aside returned")
}

func rawInputOf(tc *tls.Conn) *bytes.Buffer {
	return (*bytes.Buffer)(unsafe.Add(unsafe.Pointer(tc), tlsInput.rawInput))
}
