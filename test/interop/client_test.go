//go:build interop

package interop_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The client driver: a minimal XMPP client (RFC 6120, RFC 6121) for the
// c2s side of the tests. It connects over TCP, negotiates STARTTLS (any
// certificate), authenticates with SASL PLAIN, binds a resource, starts a
// session when the server asks for one, fetches the roster (Prosody pushes
// subscription changes only to resources that did) and sends initial
// presence. After that every stanza it reads is parsed with encoding/xml
// into an Element and delivered on a channel; pings and other IQ requests
// are answered so that the server sees a well-behaved client. It is not fast
// and need not be: c2s is not what the relay carries.

const (
	nsClient  = "jabber:client"
	nsStream  = "http://etherx.jabber.org/streams"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsRoster  = "jabber:iq:roster"
	nsPing    = "urn:xmpp:ping"
	nsDisco   = "http://jabber.org/protocol/disco#info"
)

// Element is one parsed XML element: a stanza or a part of one.
type Element struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []Element  `xml:",any"`
	Text     string     `xml:",chardata"`
	Inner    string     `xml:",innerxml"`
}

// Attr returns the value of the attribute with local name n.
func (e *Element) Attr(n string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == n && (a.Name.Space == "" || a.Name.Space == "xml") {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child with local name n (and namespace ns unless
// ns is empty), or nil.
func (e *Element) Child(ns, n string) *Element {
	for i := range e.Children {
		c := &e.Children[i]
		if c.XMLName.Local == n && (ns == "" || c.XMLName.Space == ns) {
			return c
		}
	}
	return nil
}

// Kind is the stanza's element name: message, presence or iq.
func (e *Element) Kind() string { return e.XMLName.Local }

// Type is the type attribute.
func (e *Element) Type() string { return e.Attr("type") }

// From is the from attribute.
func (e *Element) From() string { return e.Attr("from") }

// Body is the text of the body child, "" without one.
func (e *Element) Body() string {
	if b := e.Child("", "body"); b != nil {
		return b.Text
	}
	return ""
}

// Condition is the defined condition of a stanza error (RFC 6120 §8.3.3),
// "" when the stanza carries no error.
func (e *Element) Condition() string {
	er := e.Child("", "error")
	if er == nil {
		return ""
	}
	for _, c := range er.Children {
		if c.XMLName.Space == nsStanzas && c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return "(none)"
}

// ErrorText is the text child of a stanza error.
func (e *Element) ErrorText() string {
	if er := e.Child("", "error"); er != nil {
		if t := er.Child(nsStanzas, "text"); t != nil {
			return t.Text
		}
	}
	return ""
}

// String renders the element as XML, for failure messages.
func (e *Element) String() string {
	var b strings.Builder
	b.WriteString("<" + e.XMLName.Local)
	for _, a := range e.Attrs {
		if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
			continue
		}
		fmt.Fprintf(&b, " %s=%q", a.Name.Local, a.Value)
	}
	b.WriteString(">" + e.Inner + "</" + e.XMLName.Local + ">")
	return b.String()
}

// bare strips the resource from a JID.
func bare(jid string) string {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		return jid[:i]
	}
	return jid
}

// esc escapes s for an attribute value or character data.
func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Account says where and as whom a client logs in.
type Account struct {
	Addr     string // c2s host:port
	Domain   string
	User     string
	Password string
}

// JID is the account's bare JID.
func (a Account) JID() string { return a.User + "@" + a.Domain }

// Client is one logged-in c2s session.
type Client struct {
	Name string
	JID  string // full JID, as bound

	conn       net.Conn
	transcript io.Writer
	wmu        sync.Mutex

	in      chan *Element
	backlog []*Element // read but not yet taken by a wait
	pmu     sync.Mutex
	pending map[string]chan *Element
	seq     atomic.Int64

	done chan struct{}
	err  error // why the reader stopped; read after done is closed
}

// teeConn copies what is read from the connection to the transcript.
type teeConn struct {
	net.Conn
	name string
	w    io.Writer
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		fmt.Fprintf(c.w, "%s %s <- %s\n", time.Now().Format("15:04:05.000000"), c.name, p[:n])
	}
	return n, err
}

// clip shortens what the transcript shows of a large write (the large
// stanzas of 9-large-stanzas) to its start and its size. Reads need not be:
// the decoder reads at most 4 KiB at a time.
func clip(s string) string {
	const keep = 4096
	if len(s) <= keep {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:keep], len(s))
}

// Login connects and logs acct in with resource res, ready to exchange
// stanzas: roster fetched, initial presence sent. transcript receives the
// XML both ways (not the password: PLAIN's payload is logged redacted).
func Login(ctx context.Context, name string, acct Account, res string, transcript io.Writer) (*Client, error) {
	d := net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", acct.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s: %w", name, acct.Addr, err)
	}
	c := &Client{Name: name, transcript: transcript, in: make(chan *Element, 4096),
		pending: map[string]chan *Element{}, done: make(chan struct{})}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	if err := c.negotiate(raw, acct, res); err != nil {
		raw.Close()
		return nil, fmt.Errorf("%s: log in as %s at %s: %w", name, acct.JID(), acct.Addr, err)
	}
	c.conn.SetDeadline(time.Time{})
	if _, err := c.IQ(ctx, "", "get", "<query xmlns='"+nsRoster+"'/>"); err != nil {
		c.Kill()
		return nil, fmt.Errorf("%s: roster: %w", name, err)
	}
	if err := c.Send("<presence/>"); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// negotiate runs the stream negotiation up to a bound resource and starts
// the reader.
func (c *Client) negotiate(raw net.Conn, acct Account, res string) error {
	c.conn = teeConn{raw, c.Name, c.transcript}
	dec, feat, err := c.open(acct.Domain)
	if err != nil {
		return err
	}
	if feat.Child(nsTLS, "starttls") == nil {
		return errors.New("server offers no STARTTLS")
	}
	if err := c.Send("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return err
	}
	if el, err := next(dec); err != nil {
		return err
	} else if el.XMLName.Local != "proceed" {
		return fmt.Errorf("STARTTLS refused: %s", el)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: acct.Domain})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	c.conn = teeConn{tc, c.Name, c.transcript}
	if dec, feat, err = c.open(acct.Domain); err != nil {
		return err
	}
	if !hasMechanism(feat, "PLAIN") {
		return fmt.Errorf("server offers no SASL PLAIN: %s", feat)
	}
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + acct.User + "\x00" + acct.Password))
	fmt.Fprintf(c.transcript, "%s %s -> <auth mechanism='PLAIN'>(redacted)</auth>\n", time.Now().Format("15:04:05.000000"), c.Name)
	if err := c.write("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>" + cred + "</auth>"); err != nil {
		return err
	}
	if el, err := next(dec); err != nil {
		return err
	} else if el.XMLName.Local != "success" {
		return fmt.Errorf("SASL PLAIN failed: %s", el)
	}
	if dec, feat, err = c.open(acct.Domain); err != nil {
		return err
	}
	if feat.Child(nsBind, "bind") == nil {
		return fmt.Errorf("server offers no resource binding: %s", feat)
	}
	c.Send("<iq type='set' id='bind'><bind xmlns='" + nsBind + "'><resource>" + esc(res) + "</resource></bind></iq>")
	el, err := next(dec)
	if err != nil {
		return err
	}
	jid := el.Child(nsBind, "bind")
	if el.Type() != "result" || jid == nil || jid.Child("", "jid") == nil {
		return fmt.Errorf("bind failed: %s", el)
	}
	c.JID = jid.Child("", "jid").Text
	// RFC 3921 sessions: Prosody and ejabberd mark them optional; a server
	// that requires one gets it.
	if s := feat.Child(nsSession, "session"); s != nil && s.Child("", "optional") == nil {
		c.Send("<iq type='set' id='sess'><session xmlns='" + nsSession + "'/></iq>")
		if el, err := next(dec); err != nil {
			return err
		} else if el.Type() != "result" {
			return fmt.Errorf("session failed: %s", el)
		}
	}
	go c.read(dec)
	return nil
}

// open sends a stream header and reads the server's header and features.
func (c *Client) open(domain string) (*xml.Decoder, *Element, error) {
	err := c.Send("<?xml version='1.0'?><stream:stream to='" + esc(domain) + "' version='1.0' xml:lang='en' xmlns='" +
		nsClient + "' xmlns:stream='" + nsStream + "'>")
	if err != nil {
		return nil, nil, err
	}
	dec := xml.NewDecoder(c.conn)
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("reading stream header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" || se.Name.Space != nsStream {
				return nil, nil, fmt.Errorf("expected a stream header, got <%s>", se.Name.Local)
			}
			break
		}
	}
	feat, err := next(dec)
	if err != nil {
		return nil, nil, err
	}
	if feat.XMLName.Local != "features" {
		return nil, nil, fmt.Errorf("expected stream features, got %s", feat)
	}
	return dec, feat, nil
}

func hasMechanism(feat *Element, m string) bool {
	if ms := feat.Child(nsSASL, "mechanisms"); ms != nil {
		for _, c := range ms.Children {
			if c.XMLName.Local == "mechanism" && strings.TrimSpace(c.Text) == m {
				return true
			}
		}
	}
	return false
}

// next reads the next top-level element; a stream error or the end of the
// stream is an error.
func next(dec *xml.Decoder) (*Element, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el := new(Element)
			if err := dec.DecodeElement(el, &t); err != nil {
				return nil, err
			}
			if el.XMLName.Space == nsStream && el.XMLName.Local == "error" {
				return nil, fmt.Errorf("stream error: %s", el)
			}
			return el, nil
		case xml.EndElement:
			return nil, io.EOF // </stream:stream>
		}
	}
}

// read is the reader goroutine: it answers IQ requests, hands IQ responses
// to their waiting IQ call and everything else to In.
func (c *Client) read(dec *xml.Decoder) {
	defer close(c.done)
	defer close(c.in)
	for {
		el, err := next(dec)
		if err != nil {
			c.err = err
			return
		}
		if el.Kind() == "iq" {
			switch el.Type() {
			case "result", "error":
				c.pmu.Lock()
				ch := c.pending[el.Attr("id")]
				delete(c.pending, el.Attr("id"))
				c.pmu.Unlock()
				if ch != nil {
					ch <- el
					continue
				}
			case "get", "set":
				c.answer(el)
			}
		}
		select {
		case c.in <- el:
		default:
			fmt.Fprintf(c.transcript, "%s: input queue full, dropped %s\n", c.Name, el)
		}
	}
}

// answer replies to an IQ request as a simple client does: pings and roster
// pushes get a result, disco#info a minimal identity, anything else
// service-unavailable (RFC 6120 §8.2.3).
func (c *Client) answer(iq *Element) {
	// A request without from comes from our own account (roster pushes):
	// the answer then goes without to as well (RFC 6120 §8.1.1.1).
	head := fmt.Sprintf("<iq id='%s'", esc(iq.Attr("id")))
	if from := iq.From(); from != "" {
		head += fmt.Sprintf(" to='%s'", esc(from))
	}
	switch {
	case iq.Child(nsPing, "ping") != nil, iq.Child(nsRoster, "query") != nil && iq.Type() == "set":
		c.Send(head + " type='result'/>")
	case iq.Child(nsDisco, "query") != nil && iq.Type() == "get":
		c.Send(fmt.Sprintf("%s type='result'><query xmlns='%s'>"+
			"<identity category='client' type='bot' name='fedrelay interop'/><feature var='%s'/><feature var='%s'/>"+
			"</query></iq>", head, nsDisco, nsDisco, nsPing))
	default:
		c.Send(fmt.Sprintf("%s type='error'><error type='cancel'><service-unavailable xmlns='%s'/></error></iq>",
			head, nsStanzas))
	}
}

func (c *Client) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c.conn, s)
	if err != nil {
		return fmt.Errorf("%s: write: %w", c.Name, err)
	}
	return nil
}

// Send writes raw XML to the stream.
func (c *Client) Send(s string) error {
	fmt.Fprintf(c.transcript, "%s %s -> %s\n", time.Now().Format("15:04:05.000000"), c.Name, clip(s))
	return c.write(s)
}

// ID returns a fresh stanza id.
func (c *Client) ID() string { return fmt.Sprintf("%s-%d", c.Name, c.seq.Add(1)) }

// Message sends a chat message and returns its id.
func (c *Client) Message(to, body string) (string, error) {
	id := c.ID()
	return id, c.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>%s</body></message>", esc(to), id, esc(body)))
}

// Presence sends a directed presence of type typ ("" for available).
func (c *Client) Presence(to, typ string) error {
	t := ""
	if typ != "" {
		t = " type='" + esc(typ) + "'"
	}
	return c.Send(fmt.Sprintf("<presence to='%s'%s/>", esc(to), t))
}

// IQ sends an IQ of type typ with payload and waits for its response; an
// error response is returned with a nil error: callers check its type.
func (c *Client) IQ(ctx context.Context, to, typ, payload string) (*Element, error) {
	id := c.ID()
	ch := make(chan *Element, 1)
	c.pmu.Lock()
	c.pending[id] = ch
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, id)
		c.pmu.Unlock()
	}()
	attr := ""
	if to != "" {
		attr = " to='" + esc(to) + "'"
	}
	if err := c.Send(fmt.Sprintf("<iq type='%s' id='%s'%s>%s</iq>", typ, id, attr, payload)); err != nil {
		return nil, err
	}
	select {
	case el := <-ch:
		return el, nil
	case <-c.done:
		return nil, fmt.Errorf("%s: stream closed while waiting for IQ %s: %v", c.Name, id, c.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: no response to IQ %s to %s: %w", c.Name, id, to, ctx.Err())
	}
}

// take removes and returns the first stanza of the backlog that match
// accepts, nil if none does. Only the test goroutine uses the backlog.
func (c *Client) take(match func(*Element) bool) *Element {
	for i, el := range c.backlog {
		if match(el) {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			return el
		}
	}
	return nil
}

// Collect returns every stanza that match accepts within d (it waits all
// of d), from the backlog first; the others stay in the backlog.
func (c *Client) Collect(d time.Duration, match func(*Element) bool) []*Element {
	var out []*Element
	for el := c.take(match); el != nil; el = c.take(match) {
		out = append(out, el)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case el, ok := <-c.in:
			if !ok {
				return out
			}
			if match(el) {
				out = append(out, el)
			} else {
				c.backlog = append(c.backlog, el)
			}
		case <-timer.C:
			return out
		}
	}
}

// Drain forgets what arrived so far.
func (c *Client) Drain() {
	c.backlog = nil
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// Close goes unavailable, ends the stream and waits (briefly) for the
// server to end its side, so that the server has processed everything sent
// before.
func (c *Client) Close() {
	select {
	case <-c.done:
	default:
		c.Send("<presence type='unavailable'/></stream:stream>")
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
	c.conn.Close()
}

// Kill drops the connection without a goodbye.
func (c *Client) Kill() {
	c.conn.Close()
	<-c.done
}

// Matchers.

// isMessage matches a non-error message from the bare JID from with body.
func isMessage(from, body string) func(*Element) bool {
	return func(e *Element) bool {
		return e.Kind() == "message" && e.Type() != "error" && bare(e.From()) == from && e.Body() == body
	}
}

// isError matches an error stanza of kind from the bare JID from.
func isError(kind, from string) func(*Element) bool {
	return func(e *Element) bool {
		return e.Kind() == kind && e.Type() == "error" && bare(e.From()) == from
	}
}

// isPresence matches a presence of type typ ("" = available) from the bare
// JID from.
func isPresence(from, typ string) func(*Element) bool {
	return func(e *Element) bool {
		return e.Kind() == "presence" && e.Type() == typ && bare(e.From()) == from
	}
}

// withStatus narrows an available-presence matcher to a status text.
func withStatus(m func(*Element) bool, status string) func(*Element) bool {
	return func(e *Element) bool {
		s := e.Child("", "status")
		return m(e) && s != nil && s.Text == status
	}
}

// logWriter is a transcript file shared by the clients of a run.
type logWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Write(p)
}
