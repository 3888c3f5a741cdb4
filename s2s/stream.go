package s2s

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// newStreamID returns a fresh, unpredictable stream id (RFC 6120 §4.7.3):
// dialback keys are bound to it, so it must never repeat.
func newStreamID() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("s2s: crypto/rand failed: " + err.Error()) // the runtime aborts first
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// PeerStreamError is a stream error the peer sent us.
type PeerStreamError struct {
	Condition string
	Text      string
}

func (e *PeerStreamError) Error() string {
	if e.Text != "" {
		return "peer closed the stream with " + e.Condition + ": " + e.Text
	}
	return "peer closed the stream with " + e.Condition
}

// parseStreamError reads the condition and text of a <stream:error/>.
func parseStreamError(raw []byte) *PeerStreamError {
	e := &PeerStreamError{Condition: "undefined-condition"}
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return e
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Space == stream.NSError {
				if t.Name.Local == "text" {
					var s string
					if d.DecodeElement(&s, &t) == nil {
						e.Text = strings.TrimSpace(s)
					}
					depth--
				} else {
					e.Condition = t.Name.Local
				}
			}
		case xml.EndElement:
			depth--
		}
	}
}

// splitDomain returns the domainpart of a JID. When it is already in the
// relay's normal form (lower-case ASCII), which is the case for nearly every
// stanza, it is a substring of j: no allocation. Otherwise it is
// normalised through dialback.Domain. It runs twice per stanza: one pass
// finds the resource's '/', the last '@' before it and whether the domain
// needs normalising.
func splitDomain(j string) (string, error) {
	start, end, plain := 0, len(j), true
	for i := 0; i < len(j); i++ {
		switch c := j[i]; {
		case c == '/':
			end = i
			i = len(j)
		case c == '@':
			start, plain = i+1, true
		case c >= 0x80 || ('A' <= c && c <= 'Z') || c == ' ' || c == '<' || c == '>' || c == '"' || c == '\'':
			plain = false
		}
	}
	d := j[start:end]
	if len(d) == 0 {
		return "", stream.ImproperAddressing
	}
	if plain && d[len(d)-1] != '.' {
		return d, nil
	}
	d, err := dialback.Domain(d)
	if err != nil {
		return "", stream.ImproperAddressing
	}
	return d, nil
}

// stanzaType returns a stanza's type attribute as a string: a constant for
// the values of RFC 6120/6121, so that the common case allocates nothing.
func stanzaType(b []byte) string {
	switch string(b) { // the conversion in a switch does not allocate
	case "":
		return ""
	case "chat":
		return "chat"
	case "normal":
		return "normal"
	case "groupchat":
		return "groupchat"
	case "headline":
		return "headline"
	case "error":
		return "error"
	case "get":
		return "get"
	case "set":
		return "set"
	case "result":
		return "result"
	case "unavailable":
		return "unavailable"
	case "subscribe":
		return "subscribe"
	case "subscribed":
		return "subscribed"
	case "unsubscribe":
		return "unsubscribe"
	case "unsubscribed":
		return "unsubscribed"
	case "probe":
		return "probe"
	}
	return string(b)
}

// deadlineReader refreshes the read deadline of a connection before every
// read: a stream that sends nothing, not even whitespace, for idle is
// closed. Setting a deadline costs a timer update once per read call (one
// read takes up to a buffer of stanzas), not once per stanza. Until idle is
// set, the deadline of the connection applies (the negotiation deadline).
//
// stop, from any goroutine, makes the current and every later Read fail:
// it is how others wake a connection's owner to close it.
type deadlineReader struct {
	raw      net.Conn        // the TCP connection, for stop
	conn     net.Conn        // what is read: raw or TLS over it (owner-only)
	ahead    *readAhead      // under TLS on inbound streams: what TLS has not read yet (owner-only)
	at       time.Time       // when the last read that returned bytes ended (owner-only)
	before   func()          // called before each read of the socket, on the owner's goroutine (by ahead under TLS; may be nil)
	rc       syscall.RawConn // the socket under raw, for WaitIdle (owner-only, once rcKnown)
	rcKnown  bool
	readable rawCall // WaitIdle's wait (owner-only)
	// WaitIdle runs only when waitable (owner-only): on inbound streams,
	// with until their negotiation deadline, and on outbound links once up
	// (until zero: no deadline). waiting says it is running, so that
	// authenticated leaves its deadlines alone.
	waitable bool
	until    time.Time
	waiting  atomic.Bool
	// WaitIdle's state (owner-only): when the wait began, and whether its
	// deadline was settled (authenticated, or none) at the last look.
	waitStart   time.Time
	waitSettled bool
	// Parking (park.go): with parkable set (owner-only), a wait past
	// idleGrace ends with errPark instead, and the owner hands the stream
	// to the parker and ends its goroutine; resume, on a new goroutine,
	// carries on. parked is set while nobody owns the stream; resuming
	// tells the next WaitIdle to go on with the wait that parked.
	parkable  bool
	resuming  bool
	parkUntil time.Time
	parked    atomic.Bool
	parkMu    sync.Mutex // guards the parking below while parked
	parkFD    int32
	parkTimer *time.Timer
	resumeFn  func()
	idle      atomic.Int64
	stopped   atomic.Bool
	// bytes and last count what was read and when the last read ended
	// (Unix ns), for the admin API.
	bytes atomic.Int64
	last  atomic.Int64
}

var errStopped = errors.New("stream stopped")

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.before != nil && d.ahead == nil {
		// Under TLS the readAhead runs it, before the reads from the
		// socket: a record TLS already holds needs no wait.
		d.before()
	}
	// The idle timeout is not re-armed before every read: that cost two
	// clock reads and a timer update per read (a fifth of the relay's CPU
	// under load). A read times out at whatever deadline is set (the one
	// authentication set, a wait's); if bytes came within the idle timeout
	// since, the deadline moves to the last bytes plus the idle timeout
	// and the read goes on (crypto/tls keeps no error from a timeout).
	if d.stopped.Load() {
		return 0, errStopped // a stop after this leaves its deadline in the past
	}
	for {
		n, err := d.conn.Read(p)
		if n > 0 {
			// The time the stanzas in these bytes were read: one clock read
			// per socket read, not one per stanza (the clock is a system
			// call on some virtual machines).
			d.at = time.Now()
			d.bytes.Add(int64(n))
			d.last.Store(d.at.UnixNano())
		}
		if err != nil && d.stopped.Load() {
			return n, errStopped
		}
		if n == 0 && err != nil && isTimeout(err) {
			if d.rearm() {
				continue
			}
			if d.stopped.Load() {
				return n, errStopped
			}
		}
		return n, err
	}
}

// rearm moves the read deadline of an authenticated stream that timed out
// to its last input plus the idle timeout, if that is still to come, and
// reports whether it did: the stream was not idle that long.
func (d *deadlineReader) rearm() bool {
	idle := time.Duration(d.idle.Load())
	if idle <= 0 || d.at.IsZero() {
		return false
	}
	next := d.at.Add(idle)
	if !time.Now().Before(next) {
		return false
	}
	if d.conn.SetReadDeadline(next) != nil {
		return false
	}
	// Checked after the deadline is set, so that a stop racing with it
	// either is seen here or leaves its deadline in the past.
	return !d.stopped.Load()
}

// setIdle switches to the idle timeout; it reports true the first time.
func (d *deadlineReader) setIdle(idle time.Duration) bool {
	return d.idle.Swap(int64(idle)) == 0
}

// resume undoes stop for a last read of the stream until deadline. Owner
// only, once nobody else can call stop any more.
func (d *deadlineReader) resume(deadline time.Time) {
	d.idle.Store(0)
	d.stopped.Store(false)
	// WaitIdle waits until d.until when there is no idle timeout: without
	// this, a lingering stream whose peer sends nothing more waited
	// without end (until Shutdown's deadline killed it).
	d.until = deadline
	d.conn.SetReadDeadline(deadline)
}

func (d *deadlineReader) stop() {
	d.stopped.Store(true)
	d.raw.SetReadDeadline(time.Unix(1, 0))
	d.unpark() // a parked stream has no goroutine to see the deadline
}

// closeReason turns what ended a stream into the stream error to send, or
// nil when none should be sent (the peer closed, or the connection is gone).
func closeReason(err error) *stream.Error {
	var se stream.Error
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &se):
		return &se
	case isTimeout(err):
		return &stream.ConnectionTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isConnReset(err):
		return nil
	}
	var pe *PeerStreamError
	if errors.As(err, &pe) {
		return nil
	}
	return &stream.InternalServerError
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// withText returns a copy of a stream error carrying an explanatory text.
func withText(se stream.Error, format string, args ...any) stream.Error {
	se.Text = append(se.Text[:0:0], struct {
		Lang  string
		Value string
	}{Lang: "", Value: fmt.Sprintf(format, args...)})
	return se
}

// elementName is a short description of a top-level element for logs.
func elementName(el *wire.Element) string {
	if len(el.NS) > 0 {
		return "{" + string(el.NS) + "}" + string(el.Local)
	}
	return string(el.Local)
}
