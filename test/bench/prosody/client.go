package prosody

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Namespaces of the client protocol (RFC 6120, RFC 6121, XEP-0199).
const (
	nsClient  = "jabber:client"
	nsStream  = "http://etherx.jabber.org/streams"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsRoster  = "jabber:iq:roster"
	nsPing    = "urn:xmpp:ping"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

const (
	// writeTimeout bounds one write: a server that stops reading fails
	// Send instead of blocking it for ever.
	writeTimeout = 30 * time.Second
	// closeWait is how long Close waits for the server to end its stream.
	closeWait = 5 * time.Second
	// maxStreamStart bounds what is read looking for the server's stream
	// header.
	maxStreamStart = 8 << 10
)

// aLongTimeAgo is a deadline in the past: it makes a blocked read or write
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Client is one c2s session, logged in by Login. A reader goroutine reads
// what the server sends for as long as the session lasts: it hands each
// <message/> to the OnMessage function, counts them, and answers the IQ
// requests a client must (pings, roster pushes). Send, Received, OnMessage
// and Close may be called from any goroutine.
type Client struct {
	jid  string
	raw  net.Conn // TCP
	conn net.Conn // TLS over raw, once negotiated
	r    *wire.Reader

	wmu  sync.Mutex
	wbuf []byte

	onMessage atomic.Pointer[func([]byte)]
	received  atomic.Int64
	closing   atomic.Bool

	online chan struct{} // closed by the reader when the server echoes initial presence
	done   chan struct{} // closed when the reader has stopped and closed the connection
	err    error         // why the reader stopped; read after done is closed

	closeOnce sync.Once
	closeErr  error
}

// Login connects to the c2s address addr and logs jid in with password:
// stream, STARTTLS (the certificate is not verified), SASL PLAIN, resource
// binding (the resource of jid, or a random one), a session if the server
// offers one, a roster request (so that the server counts it as an
// interested resource) and initial presence. The reader goroutine starts
// then, and Login returns once the server has echoed that presence back:
// the session is available, and messages sent to the user from then on
// reach it. ctx bounds the login only; the session lasts until Close.
func Login(ctx context.Context, addr, jid, password string) (*Client, error) {
	user, domain, resource, err := splitJID(jid)
	if err != nil {
		return nil, fmt.Errorf("prosody: log in: %w", err)
	}
	if resource == "" {
		var b [4]byte
		rand.Read(b[:])
		resource = "bench-" + hex.EncodeToString(b[:])
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("prosody: log in %s: %w", jid, err)
	}
	// Cancelling ctx becomes a deadline, so that a blocked read returns.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	c := &Client{raw: raw, conn: raw, done: make(chan struct{}), online: make(chan struct{}),
		r: wire.NewReader(nil, wire.Limits{MaxStanzaPreAuth: wire.DefaultMaxStanza})}
	err = c.negotiate(ctx, user, domain, resource, password)
	reading := false
	if err == nil {
		go c.read()
		reading = true
		select {
		case <-c.online:
		case <-c.done:
			err = fmt.Errorf("before initial presence came back: %w", c.err)
		}
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if reading {
			raw.SetDeadline(aLongTimeAgo) // the reader returns and closes
			<-c.done
		} else {
			raw.Close()
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("prosody: log in %s at %s: %w", jid, addr, err)
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// splitJID splits user@domain[/resource].
func splitJID(jid string) (user, domain, resource string, err error) {
	bare, resource, _ := strings.Cut(jid, "/")
	user, domain, ok := strings.Cut(bare, "@")
	if !ok || user == "" || domain == "" {
		return "", "", "", fmt.Errorf("%q is not user@domain[/resource]", jid)
	}
	return user, domain, resource, nil
}

// negotiate runs the stream negotiation up to initial presence.
func (c *Client) negotiate(ctx context.Context, user, domain, resource, password string) error {
	feat, err := c.open(domain)
	if err != nil {
		return err
	}
	if !bytes.Contains(feat.Raw, []byte(nsTLS)) {
		return fmt.Errorf("no STARTTLS offered: %s", feat.Raw)
	}
	if err := c.write("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return err
	}
	el, err := c.next()
	if err != nil {
		return err
	}
	if string(el.Local) != "proceed" {
		return fmt.Errorf("STARTTLS refused: %s", el.Raw)
	}
	if c.r.Buffered() != 0 {
		return errors.New("data after <proceed/>, before TLS")
	}
	tc := tls.Client(c.raw, &tls.Config{InsecureSkipVerify: true, ServerName: domain, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	c.conn = tc

	if feat, err = c.open(domain); err != nil {
		return err
	}
	// PLAIN, not SCRAM: Prosody 0.12 can refuse simple SCRAM clients over
	// channel binding, and this is over TLS anyway.
	if !bytes.Contains(feat.Raw, []byte("<mechanism>PLAIN</mechanism>")) {
		return fmt.Errorf("no SASL PLAIN offered: %s", feat.Raw)
	}
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	if err := c.write("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + cred + "</auth>"); err != nil {
		return err
	}
	if el, err = c.next(); err != nil {
		return err
	}
	if string(el.Local) != "success" {
		return fmt.Errorf("SASL PLAIN failed: %s", el.Raw)
	}

	if feat, err = c.open(domain); err != nil {
		return err
	}
	c.r.SetAuthenticated(true)
	session := bytes.Contains(feat.Raw, []byte(nsSession))
	if !bytes.Contains(feat.Raw, []byte(nsBind)) {
		return fmt.Errorf("no resource binding offered: %s", feat.Raw)
	}
	err = c.write("<iq type='set' id='bind'><bind xmlns='" + nsBind + "'><resource>" + escape(resource) +
		"</resource></bind></iq>")
	if err != nil {
		return err
	}
	if el, err = c.result("bind"); err != nil {
		return err
	}
	if _, rest, ok := bytes.Cut(el.Raw, []byte("<jid>")); ok {
		if jid, _, ok := bytes.Cut(rest, []byte("</jid>")); ok {
			c.jid = string(jid)
		}
	}
	if c.jid == "" || strings.ContainsAny(c.jid, "<&") {
		return fmt.Errorf("no usable JID in the bind result: %s", el.Raw)
	}
	if session { // RFC 3921 sessions: Prosody offers one as optional; doing it costs nothing
		if err := c.write("<iq type='set' id='session'><session xmlns='" + nsSession + "'/></iq>"); err != nil {
			return err
		}
		if _, err := c.result("session"); err != nil {
			return err
		}
	}
	if err := c.write("<iq type='get' id='roster'><query xmlns='" + nsRoster + "'/></iq>"); err != nil {
		return err
	}
	if _, err := c.result("roster"); err != nil {
		return err
	}
	return c.write("<presence/>")
}

// open sends a stream header and reads the server's header and features.
//
// The framer reads server-to-server streams, whose content namespace is
// jabber:server; a client stream differs in that alone. So the server's
// header is read here first and its xmlns='jabber:client' turned into
// jabber:server (the same length) before the framer reads it; the framer
// then checks everything else as it does for the relay's streams.
func (c *Client) open(domain string) (*wire.Element, error) {
	err := c.write("<?xml version='1.0'?><stream:stream xmlns='" + nsClient + "' xmlns:stream='" + nsStream +
		"' to='" + escape(domain) + "' version='1.0' xml:lang='en'>")
	if err != nil {
		return nil, err
	}
	start, err := readStreamStart(c.conn)
	if err != nil {
		return nil, fmt.Errorf("reading stream header: %w", err)
	}
	c.r.Reset(io.MultiReader(bytes.NewReader(start), c.conn))
	if _, err := c.r.ReadHeader(); err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	el, err := c.next()
	if err != nil {
		return nil, err
	}
	if el.Kind != wire.Features {
		return nil, fmt.Errorf("expected stream features, got %s", el.Raw)
	}
	return el, nil
}

// readStreamStart reads from src until it holds the server's whole stream
// start tag (after an optional XML declaration) and returns all it read,
// with the tag's xmlns='jabber:client' changed to xmlns='jabber:server'.
func readStreamStart(src io.Reader) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxStreamStart {
				return nil, fmt.Errorf("no stream header in the first %d bytes", len(buf))
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if start, end, ok := streamTag(buf); ok {
			serverNS(buf[start:end])
			return buf, nil
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
}

// streamTag returns where the first start tag after an optional XML
// declaration lies in b, once b holds all of it.
func streamTag(b []byte) (start, end int, ok bool) {
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 || i+j+1 >= len(b) {
			return 0, 0, false
		}
		i += j
		if b[i+1] != '?' {
			break
		}
		k := bytes.Index(b[i:], []byte("?>"))
		if k < 0 {
			return 0, 0, false
		}
		i += k + 2
	}
	var quote byte
	for k := i + 1; k < len(b); k++ {
		switch c := b[k]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return i, k + 1, true
		}
	}
	return 0, 0, false
}

// serverNS changes, in place, a default namespace declaration of
// jabber:client in tag into jabber:server.
func serverNS(tag []byte) {
	const decl = "xmlns="
	for i := 0; ; {
		j := bytes.Index(tag[i:], []byte(decl))
		if j < 0 {
			return
		}
		i += j + len(decl)
		if i >= len(tag) || (tag[i] != '\'' && tag[i] != '"') {
			continue
		}
		v := tag[i+1:]
		if len(v) > len(nsClient) && string(v[:len(nsClient)]) == nsClient && v[len(nsClient)] == tag[i] {
			copy(v, wire.NSServer)
		}
	}
}

// next returns the next element before the reader goroutine runs; a stream
// error or the end of the stream is an error.
func (c *Client) next() (*wire.Element, error) {
	el, err := c.r.Next()
	if err != nil {
		return nil, err
	}
	if el.Kind == wire.StreamError {
		return nil, fmt.Errorf("stream error: %s", el.Raw)
	}
	return el, nil
}

// result waits, before the reader goroutine runs, for the response to the
// IQ id and returns it if it is a result.
func (c *Client) result(id string) (*wire.Element, error) {
	for {
		el, err := c.next()
		if err != nil {
			return nil, err
		}
		if string(el.Local) != "iq" || string(el.ID) != id {
			continue
		}
		if string(el.Type) != "result" {
			return nil, fmt.Errorf("iq %s failed: %s", id, el.Raw)
		}
		return el, nil
	}
}

// read is the reader goroutine, the connection's owner: it reads until the
// stream ends, then closes the connection.
func (c *Client) read() {
	defer close(c.done)
	defer c.conn.Close()
	isOnline := false
	for {
		el, err := c.r.Next()
		switch {
		case err == io.EOF && c.closing.Load():
			return
		case err == io.EOF:
			c.err = errors.New("prosody: the server ended the stream")
			return
		case err != nil && c.closing.Load() && errors.Is(err, os.ErrDeadlineExceeded):
			c.err = fmt.Errorf("prosody: the server did not end the stream within %v of Close", closeWait)
			return
		case err != nil:
			c.err = fmt.Errorf("prosody: read: %w", err)
			return
		}
		if el.Kind == wire.StreamError {
			c.err = fmt.Errorf("prosody: stream error: %s", el.Raw)
			return
		}
		if el.Prefix != nil {
			continue
		}
		switch {
		case string(el.Local) == "message":
			if fn := c.onMessage.Load(); fn != nil {
				(*fn)(el.Raw)
			}
			if string(el.Type) != "error" {
				c.received.Add(1)
			}
		case string(el.Local) == "iq" && (string(el.Type) == "get" || string(el.Type) == "set"):
			c.answer(el)
		case !isOnline && string(el.Local) == "presence" && el.Type == nil && string(el.From) == c.jid:
			// The server broadcasts initial presence to the user's
			// available resources, the sender included (RFC 6121
			// §4.2.2): it has taken effect.
			isOnline = true
			close(c.online)
		}
	}
}

// answer replies to an IQ request as a simple client must (RFC 6120
// §8.2.3): pings and roster pushes get a result, anything else
// service-unavailable.
func (c *Client) answer(iq *wire.Element) {
	head := "<iq id='" + escape(string(iq.ID)) + "'"
	if iq.From != nil {
		head += " to='" + escape(string(iq.From)) + "'"
	}
	if bytes.Contains(iq.Raw, []byte(nsPing)) || string(iq.Type) == "set" && bytes.Contains(iq.Raw, []byte(nsRoster)) {
		c.write(head + " type='result'/>")
		return
	}
	c.write(head + " type='error'><error type='cancel'><service-unavailable xmlns='" + nsStanzas + "'/></error></iq>")
}

// write writes s to the stream; writes are whole and in order.
func (c *Client) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.wbuf = append(c.wbuf[:0], s...) // tls.Conn has no WriteString: avoid its copy per call
	if _, err := c.conn.Write(c.wbuf); err != nil {
		return fmt.Errorf("prosody: write: %w", err)
	}
	return nil
}

// JID returns the full JID the server bound for this session.
func (c *Client) JID() string { return c.jid }

// OnMessage sets the function called, on the reader goroutine, with each
// <message/> received, errors included. raw is the message as sent, valid
// only during the call; fn must be quick, as it holds up reading. Messages
// that arrive before it is set are only counted. nil removes it.
func (c *Client) OnMessage(fn func(raw []byte)) {
	if fn == nil {
		c.onMessage.Store(nil)
		return
	}
	c.onMessage.Store(&fn)
}

// Received returns how many messages other than errors (type='error') have
// been received so far. A message is counted once OnMessage's function has
// returned for it.
func (c *Client) Received() int64 { return c.received.Load() }

// Send writes raw, one or more complete stanzas, to the stream.
func (c *Client) Send(raw string) error { return c.write(raw) }

// Err returns why the session ended, nil while it runs and after a clean
// Close.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close goes unavailable, ends the stream and waits for the server to end
// its side (so that it has processed everything sent before), at most a few
// seconds. It returns why the session ended if not by Close; later calls
// return the same.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.write("<presence type='unavailable'/></stream:stream>")
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			c.conn.SetReadDeadline(aLongTimeAgo) // the reader returns and closes
			<-c.done
		}
		c.closeErr = c.err
	})
	return c.closeErr
}

// escape escapes s for an attribute value or character data.
func escape(s string) string {
	if !strings.ContainsAny(s, `<>&'"`) {
		return s
	}
	return escaper.Replace(s)
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
