package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Namespaces of stream negotiation (RFC 6120 §5, §6; XEP-0288).
const (
	nsTLS             = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL            = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsDialbackFeature = "urn:xmpp:features:dialback"
)

// connectivity opens streams to the federation listeners, as a remote
// server would, and to each domain's route.
func (c *checker) connectivity(ctx context.Context) {
	trust := c.verifier(Connectivity)
	configured := map[string][]byte{} // domain → the leaf of its cert_file
	for _, d := range c.cfg.Domains {
		if d.CertFile != "" {
			if chain, err := readChain(d.CertFile); err == nil {
				configured[d.Name] = chain[0].Raw
			}
		}
	}
	for _, l := range c.federationListeners(ctx) {
		if l.err != nil {
			c.add(Fail, Connectivity, l.key(), "%s: %v", l.conf, l.err)
			continue
		}
		if l.port == 0 {
			c.add(Info, Connectivity, l.key(), "%s: port 0: the relay picks a free port at start, so there is nothing fixed to connect to", l.conf)
			continue
		}
		addr, via := dialAddr(l)
		for _, d := range c.cfg.Domains {
			c.probeFederation(ctx, l, addr, via, d, trust, configured[d.Name])
		}
	}
	for _, d := range c.cfg.Domains {
		c.probeRoute(ctx, d)
	}
}

// dialAddr is where to connect to reach a listener: its first address, or
// loopback for an unspecified one (then via says so).
func dialAddr(l listenAddr) (addr netip.AddrPort, via string) {
	a := l.addrs[0]
	if a.IsUnspecified() {
		lo := netip.IPv6Loopback()
		if a.Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.AddrPortFrom(lo, l.port), fmt.Sprintf(" (%s %s, reached through %s)", l.key(), l.conf, lo)
	}
	return netip.AddrPortFrom(a, l.port), ""
}

// probeFederation opens a stream to d through one federation listener as a
// remote server would: header to d without from, STARTTLS (or direct TLS
// with ALPN xmpp-server), the restarted stream's features.
func (c *checker) probeFederation(ctx context.Context, l listenAddr, addr netip.AddrPort, via string, d config.Domain,
	trust *certs.Verifier, configured []byte) {
	subject := d.Name + " at " + addr.String()
	fail := func(format string, args ...any) {
		c.add(Fail, Connectivity, subject, "%s%s", fmt.Sprintf(format, args...), via)
	}
	s, err := c.dial(ctx, addr.String())
	if err != nil {
		fail("cannot connect: %v", err)
		return
	}
	defer s.close()
	tcfg := &tls.Config{
		ServerName: d.Name,
		// Peers do verify; the check reports below what they will find
		// rather than stopping at the handshake.
		InsecureSkipVerify: true,
		MinVersion:         c.cfg.TLS.MinVersion,
	}
	var (
		f     *features
		notes []string
		tc    *tls.Conn
	)
	if l.direct {
		tcfg.NextProtos = []string{resolve.ALPN}
		tc = tls.Client(s.conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			fail("direct TLS handshake: %v", err)
			return
		}
		s.reset(tc)
		if p := tc.ConnectionState().NegotiatedProtocol; p != resolve.ALPN {
			notes = append(notes, fmt.Sprintf("ALPN %q was not negotiated (got %q)", resolve.ALPN, p))
		}
		if _, f, err = s.open(d.Name); err != nil {
			fail("%v", err)
			return
		}
	} else {
		if _, f, err = s.open(d.Name); err != nil {
			fail("%v", err)
			return
		}
		if !f.startTLS {
			fail("the stream features offer no STARTTLS: peers cannot encrypt the stream")
			return
		}
		if err := s.starttls(); err != nil {
			fail("STARTTLS: %v", err)
			return
		}
		tc = tls.Client(s.conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			fail("TLS handshake after STARTTLS: %v", err)
			return
		}
		s.reset(tc)
		if _, f, err = s.open(d.Name); err != nil {
			fail("after TLS: %v", err)
			return
		}
		if f.startTLS {
			fail("the stream features offer STARTTLS again after TLS")
			return
		}
	}
	s.write("</stream:stream>")
	state := tc.ConnectionState()
	if !f.dialback && !f.external() {
		fail("after TLS the stream features offer neither dialback nor SASL EXTERNAL: peers cannot authenticate")
		return
	}
	mode := "STARTTLS"
	if l.direct {
		mode = "direct TLS"
	}
	msg := fmt.Sprintf("%s, %s, features after TLS offer %s", mode, tls.VersionName(state.Version), f.offers())
	v := OK
	if err := trust.VerifyPeer(state, d.Name); err != nil {
		v = Warn
		if errors.Is(err, certs.ErrUntrusted) && selfSigned(state.PeerCertificates[0]) {
			notes = append(notes, fmt.Sprintf("the certificate presented is self-signed: peers will authenticate %s by dialback", d.Name))
		} else {
			notes = append(notes, fmt.Sprintf("the certificate presented is not valid for %s (%s): peers will authenticate it by dialback",
				d.Name, reason(err)))
		}
	} else {
		msg += "; certificate valid for " + d.Name
	}
	if configured != nil && len(state.PeerCertificates) > 0 && !bytes.Equal(state.PeerCertificates[0].Raw, configured) {
		v = Warn
		notes = append(notes, "the relay presents another certificate than the one in cert_file now: "+
			"reload it (SIGHUP) so that it reads the file again")
	}
	if len(notes) > 0 {
		v = Warn
		msg += "; but " + strings.Join(notes, "; ")
	}
	c.add(v, Connectivity, subject, "%s%s", msg, via)
}

// probeRoute opens a stream to d's internal server, as the relay does to
// deliver to it: the header must be answered with a header and features.
func (c *checker) probeRoute(ctx context.Context, d config.Domain) {
	subject := d.Name + " route " + d.Route
	s, err := c.dial(ctx, d.Route)
	if err != nil {
		c.add(Fail, Connectivity, subject, "cannot connect to the internal server: %v", err)
		return
	}
	defer s.close()
	hdr, f, err := s.open(d.Name)
	if err != nil {
		var se *streamError
		if errors.As(err, &se) && se.cond == "host-unknown" {
			c.add(Fail, Connectivity, subject, "the internal server does not serve %s: %v", d.Name, err)
			return
		}
		c.add(Fail, Connectivity, subject, "%v", err)
		return
	}
	s.write("</stream:stream>")
	if f == nil {
		c.add(Warn, Connectivity, subject, "the internal server answered a stream without version 1.0 (no stream features): it cannot do STARTTLS")
		return
	}
	if hdr.From != "" && !strings.EqualFold(hdr.From, d.Name) {
		c.add(Warn, Connectivity, subject, "the internal server answers as %s, not %s", hdr.From, d.Name)
		return
	}
	c.add(OK, Connectivity, subject, "the internal server answers for %s; its features offer %s", d.Name, f.offers())
}

// probe is one stream the check opens.
type probe struct {
	conn net.Conn // the socket, or the TLS connection over it
	r    *wire.Reader
	stop func() bool
}

// dial connects within limits.connect_timeout and bounds the whole stream
// by limits.negotiation_timeout.
func (c *checker) dial(ctx context.Context, addr string) (*probe, error) {
	d := net.Dialer{Timeout: c.cfg.Limits.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(c.cfg.Limits.NegotiationTimeout))
	s := &probe{conn: conn, r: wire.NewReader(conn, wire.Limits{})}
	s.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return s, nil
}

func (s *probe) close() {
	s.stop()
	s.conn.Close()
}

// reset continues over the TLS connection: a new stream.
func (s *probe) reset(tc *tls.Conn) {
	s.conn = tc
	s.r.Reset(tc)
}

func (s *probe) write(data string) error {
	_, err := io.WriteString(s.conn, data)
	return err
}

// open sends a stream header to domain (version 1.0, no from) and reads
// the answer's header and features. Features are nil for an answer without
// version (RFC 6120 §4.7.5). A stream error is returned as *streamError.
func (s *probe) open(domain string) (*wire.Header, *features, error) {
	if err := s.write(string(wire.AppendHeader(nil, &wire.Header{To: domain, Version: "1.0"}))); err != nil {
		return nil, nil, fmt.Errorf("send the stream header: %w", err)
	}
	hdr, err := s.r.ReadHeader()
	if err != nil {
		return nil, nil, fmt.Errorf("read the stream header: %w", readError(err))
	}
	if hdr.Version == "" || hdr.Version[0] == '0' {
		return hdr, nil, nil
	}
	el, err := s.r.Next()
	if err != nil {
		return hdr, nil, fmt.Errorf("read the stream features: %w", readError(err))
	}
	switch el.Kind {
	case wire.StreamError:
		return hdr, nil, parseStreamError(el.Raw)
	case wire.Features:
		f, err := parseFeatures(el.Raw)
		if err != nil {
			return hdr, nil, fmt.Errorf("the stream features do not parse: %w", err)
		}
		return hdr, f, nil
	}
	return hdr, nil, fmt.Errorf("expected the stream features, got <%s>", el.Local)
}

// starttls asks for TLS and expects <proceed/> with nothing after it.
func (s *probe) starttls() error {
	if err := s.write("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return err
	}
	el, err := s.r.Next()
	if err != nil {
		return readError(err)
	}
	switch {
	case el.Kind == wire.StreamError:
		return parseStreamError(el.Raw)
	case string(el.NS) == nsTLS && string(el.Local) == "proceed":
	case string(el.NS) == nsTLS && string(el.Local) == "failure":
		return errors.New("the relay answered <failure/>")
	default:
		return fmt.Errorf("expected <proceed/>, got <%s>", el.Local)
	}
	if n := s.r.Buffered(); n > 0 {
		return fmt.Errorf("%d bytes arrived in the clear after <proceed/>", n)
	}
	return nil
}

// readError makes end of input and timeouts readable.
func readError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the connection was closed")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("no answer in time (limits.negotiation_timeout)")
	}
	return err
}

// features is what a <stream:features/> offers.
type features struct {
	startTLS   bool
	dialback   bool
	mechanisms []string
}

func (f *features) external() bool {
	for _, m := range f.mechanisms {
		if m == "EXTERNAL" {
			return true
		}
	}
	return false
}

// offers lists the features for a finding: "STARTTLS, dialback".
func (f *features) offers() string {
	var o []string
	if f.startTLS {
		o = append(o, "STARTTLS")
	}
	if f.mechanisms != nil {
		o = append(o, "SASL "+strings.Join(f.mechanisms, " "))
	}
	if f.dialback {
		o = append(o, "dialback")
	}
	if len(o) == 0 {
		return "nothing"
	}
	return strings.Join(o, ", ")
}

// parseFeatures reads the children of <stream:features/> that matter here.
// The stream prefix is bound on the header, not in raw; encoding/xml leaves
// such a prefix as it is, and the children carry their own namespaces.
func parseFeatures(raw []byte) (*features, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	f := &features{}
	depth := 0
	var parent xml.Name
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 2:
				parent = t.Name
				switch {
				case t.Name.Space == nsTLS && t.Name.Local == "starttls":
					f.startTLS = true
				case t.Name.Space == nsSASL && t.Name.Local == "mechanisms":
					f.mechanisms = []string{}
				case t.Name.Space == nsDialbackFeature && t.Name.Local == "dialback":
					f.dialback = true
				}
			case depth == 3 && parent.Space == nsSASL && t.Name.Local == "mechanism":
				var m string
				if err := d.DecodeElement(&m, &t); err != nil {
					return nil, err
				}
				depth--
				f.mechanisms = append(f.mechanisms, strings.ToUpper(strings.TrimSpace(m)))
			}
		case xml.EndElement:
			depth--
		}
	}
}

// streamError is a <stream:error/> received.
type streamError struct {
	cond, text string
}

func (e *streamError) Error() string {
	s := "stream error <" + e.cond + "/>"
	if e.text != "" {
		s += ": " + strconv.Quote(e.text)
	}
	return s
}

func parseStreamError(raw []byte) error {
	d := xml.NewDecoder(bytes.NewReader(raw))
	se := &streamError{cond: "undefined-condition"}
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return se
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			if t.Name.Local == "text" {
				var txt string
				if d.DecodeElement(&txt, &t) == nil {
					se.text = txt
				}
				depth--
			} else {
				se.cond = t.Name.Local
			}
		case xml.EndElement:
			depth--
		}
	}
}
