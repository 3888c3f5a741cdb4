package s2s

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestSASLSuccessThenCut: a receiving server that ends the connection
// right after <success/>, where its new stream header belongs, has cut the
// connection under an open stream (cutOff), so setup tries it once more;
// one that closes its stream properly has refused. ejabberd 24.12 closes
// it (or resets it) when it routes a stanza over a bidirectional stream
// before the restart: the interop flake of 8-secure-federation/bidi, which
// bounced two presences when this read as a refusal.
func TestSASLSuccessThenCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(theirs net.Conn) // what the peer does after <success/>
		cut   bool
	}{
		{"close", func(c net.Conn) { c.Close() }, true},
		{"reset", func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }, true},
		{"stream closed", func(c net.Conn) { io.WriteString(c, "</stream:stream>"); c.Close() }, false},
		{"stream error", func(c net.Conn) {
			io.WriteString(c, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
			c.Close()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testServer(t, config.Limits{NegotiationTimeout: 5 * time.Second}, []config.Domain{{Name: "a.test"}})
			s.ExternalDomains = map[string]bool{"a.test": true}
			ours, theirs := loopbackPair(t)
			t.Cleanup(func() { ours.Close(); theirs.Close() })
			o := &outStream{s: s, local: "a.test", remote: "b.test", raw: ours, conn: ours, tls: true,
				w: wire.NewWriter(ours), dr: &deadlineReader{raw: ours, conn: ours}}
			o.r = wire.NewReader(o.dr, s.limits())
			// The stream is open, with EXTERNAL on offer.
			io.WriteString(theirs, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>")
			if _, err := o.r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			o.feats = &features{Mechanisms: []string{"EXTERNAL"}}

			peerDone := make(chan error, 1)
			go func() {
				theirs.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(theirs)
				line, err := br.ReadString('>')
				if err == nil && !strings.Contains(line, "mechanism='EXTERNAL'") {
					err = errors.New("no EXTERNAL auth: " + line)
				}
				if err == nil {
					_, err = io.WriteString(theirs, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
				}
				// The relay's new header, read: a close with unread
				// bytes would be a reset.
				for err == nil && !strings.Contains(line, "<stream:stream") {
					line, err = br.ReadString('>')
				}
				tc.after(theirs)
				peerDone <- err
			}()
			err := o.authenticate()
			if perr := <-peerDone; perr != nil {
				t.Fatal(perr)
			}
			if err == nil {
				t.Fatal("authenticate succeeded on a connection that ended after <success/>")
			}
			if got := cutOff(err); got != tc.cut {
				t.Errorf("cutOff(%v) = %v, want %v", err, got, tc.cut)
			}
			if tc.cut && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("error %v: neither an unexpected end nor a reset", err)
			}
		})
	}
}
