package wire_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"net"
	"strings"
	"testing"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

func TestWriteHeader(t *testing.T) {
	for _, tc := range []struct {
		h    wire.Header
		want string
	}{{
		wire.Header{To: "b.test", From: "a.test", ID: "D60000229F", Version: "1.0", Lang: "en"},
		`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b.test' from='a.test' id='D60000229F' version='1.0' xml:lang='en'>`,
	}, {
		// Answering a 0.9 peer: no version.
		wire.Header{To: "b.test", From: "a.test", ID: "x"},
		`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b.test' from='a.test' id='x'>`,
	}, {
		wire.Header{To: "a'b\"<&>", From: "tab\there\nnl\rcr", ID: "\x00\xff"},
		`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='a&apos;b&quot;&lt;&amp;&gt;' from='tab&#x9;here&#xA;nl&#xD;cr' id='` + "\uFFFD\uFFFD" + `'>`,
	}} {
		var buf bytes.Buffer
		w := wire.NewWriter(&buf)
		if err := w.WriteHeader(&tc.h); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 0 {
			t.Errorf("header written before Flush")
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("got\n%s\nwant\n%s", buf.String(), tc.want)
		}
		// And it reads back.
		r := wire.NewReader(&buf, wire.Limits{})
		h, err := r.ReadHeader()
		if err != nil || h.To != sanitize(tc.h.To) || h.From != sanitize(tc.h.From) || h.ID != sanitize(tc.h.ID) || h.Version != tc.h.Version {
			t.Errorf("read back %+v, %v", h, err)
		}
	}
}

func TestWriteStreamError(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv6loopback, Port: 5269}
	withText := stream.PolicyViolation
	withText.Text = []struct{ Lang, Value string }{{"en", "stanza larger than 512 KiB & more"}, {"", "<bye>"}}
	for _, tc := range []struct {
		name string
		se   stream.Error
		want string
	}{
		{"plain", stream.HostUnknown, `<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`},
		{"text", withText, `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
			`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>stanza larger than 512 KiB &amp; more</text>` +
			`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>&lt;bye&gt;</text></stream:error></stream:stream>`},
		{"see-other-host", stream.SeeOtherHostError(addr), `<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[::1]:5269</see-other-host></stream:error></stream:stream>`},
		{"unusable condition", stream.Error{Err: "Bad Cond"}, `<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := wire.NewWriter(&buf)
			if err := w.WriteStreamError(tc.se); err != nil || w.Flush() != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", buf.String(), tc.want)
			}
			// mellium reads it back as the same condition.
			d := xml.NewDecoder(strings.NewReader(`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>` + buf.String()))
			d.Token()
			var got stream.Error
			if err := d.Decode(&got); err != nil {
				t.Fatal(err)
			}
			want := tc.se.Err
			if want == "Bad Cond" {
				want = "undefined-condition"
			}
			if got.Err != want || len(got.Text) != len(tc.se.Text) {
				t.Errorf("mellium reads %+v", got)
			}
		})
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
	fail   error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	if c.fail != nil {
		return 0, c.fail
	}
	return c.Buffer.Write(p)
}

func TestWriterBatches(t *testing.T) {
	var out countingWriter
	w := wire.NewWriterSize(&out, 1024)
	for range 5 {
		if err := w.WriteRaw([]byte(messageChat)); err != nil {
			t.Fatal(err)
		}
	}
	if out.writes != 0 || w.Buffered() != 5*len(messageChat) {
		t.Fatalf("%d writes, %d buffered before Flush", out.writes, w.Buffered())
	}
	if err := w.Flush(); err != nil || out.writes != 1 || out.Len() != 5*len(messageChat) {
		t.Fatalf("Flush: %v, %d writes", err, out.writes)
	}
	if w.Flush(); out.writes != 1 {
		t.Errorf("empty Flush wrote")
	}
	// A full batch goes out by itself.
	for range 10 {
		w.WriteRaw([]byte(messageChat))
	}
	if out.writes < 2 || w.Buffered() >= 1024 {
		t.Errorf("%d writes, %d buffered: the batch is unbounded", out.writes, w.Buffered())
	}
	// Something bigger than a batch is written through.
	w.Flush()
	writes := out.writes
	big := bytes.Repeat([]byte("<x/>"), 1000)
	w.WriteRaw([]byte("<a/>"))
	w.WriteRaw(big)
	if out.writes != writes+2 || w.Buffered() != 0 || !bytes.HasSuffix(out.Bytes(), big) {
		t.Errorf("big write: %d writes", out.writes-writes)
	}
	if err := w.WriteClose(); err != nil || w.Flush() != nil || !strings.HasSuffix(out.String(), "</stream:stream>") {
		t.Errorf("WriteClose: %v", err)
	}
}

func TestWriterStickyError(t *testing.T) {
	boom := errors.New("connection reset")
	out := &countingWriter{fail: boom}
	w := wire.NewWriter(out)
	w.WriteRaw([]byte(messageChat))
	if err := w.Flush(); err != boom {
		t.Fatalf("Flush: %v", err)
	}
	if err := w.WriteRaw([]byte(iqPing)); err != boom {
		t.Errorf("write after failure: %v", err)
	}
	if err := w.WriteStreamError(stream.Conflict); err != boom {
		t.Errorf("stream error after failure: %v", err)
	}
	var ok bytes.Buffer
	w.Reset(&ok)
	if err := w.WriteRaw([]byte(iqPing)); err != nil || w.Flush() != nil || ok.String() != iqPing {
		t.Errorf("after Reset: %v, %q", err, ok.String())
	}
}

func BenchmarkWriteElement(b *testing.B) {
	r := wire.NewReader(strings.NewReader(prosodyHeader+strings.Repeat(messageChat, 1)), wire.Limits{})
	r.ReadHeader()
	e, _ := r.Next()
	var sink countingWriter
	w := wire.NewWriter(&sink)
	w.WriteHeader(&wire.Header{Lang: "en"})
	b.ReportAllocs()
	for b.Loop() {
		w.WriteElement(e)
		if w.Buffered() > 16<<10 {
			w.Flush()
			sink.Reset()
		}
	}
}

// TestWriterPooledBuffer: a Writer with nothing buffered holds
// no batch buffer (an idle stream costs none), takes one from the pool to
// write and gives it back at Flush, without allocating in steady state.
func TestWriterPooledBuffer(t *testing.T) {
	var out bytes.Buffer
	w := wire.NewWriter(&out)
	if w.Buffered() != 0 {
		t.Fatal("a new Writer has something buffered")
	}
	msg := []byte("<message from='a@a.test' to='b@b.test'><body>hi</body></message>")
	write := func() {
		out.Reset()
		if err := w.WriteRaw(msg); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if out.String() != string(msg) {
		t.Fatalf("wrote %q", out.String())
	}
	if n := testing.AllocsPerRun(200, write); n > 0.05 {
		t.Errorf("write and flush: %v allocations, want none in steady state", n)
	}
}

// callWriter records each Write call.
type callWriter struct {
	calls [][]byte
	err   error
}

func (c *callWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.calls = append(c.calls, append([]byte(nil), p...))
	return len(p), nil
}

// TestWriteDirect: a batch written with WriteDirect goes to the underlying
// writer in one call of its own, after what was buffered, and a failure is
// sticky like any other.
func TestWriteDirect(t *testing.T) {
	cw := &callWriter{}
	w := wire.NewWriter(cw)
	if err := w.WriteRaw([]byte("<a/>")); err != nil {
		t.Fatal(err)
	}
	batch := []byte("<b/><c/>")
	if err := w.WriteDirect(batch); err != nil {
		t.Fatal(err)
	}
	if len(cw.calls) != 2 || string(cw.calls[0]) != "<a/>" || string(cw.calls[1]) != "<b/><c/>" {
		t.Errorf("writes = %q, want the buffered <a/>, then the batch in one call", cw.calls)
	}
	if w.Buffered() != 0 {
		t.Errorf("Buffered = %d after WriteDirect, want 0", w.Buffered())
	}
	boom := errors.New("boom")
	cw.err = boom
	if err := w.WriteDirect(batch); !errors.Is(err, boom) {
		t.Errorf("WriteDirect = %v, want %v", err, boom)
	}
	cw.err = nil
	if err := w.WriteDirect(batch); !errors.Is(err, boom) {
		t.Errorf("WriteDirect after a failure = %v, want the first error again", err)
	}
}
