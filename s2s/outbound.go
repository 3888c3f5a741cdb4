package s2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// outStream is a stream the relay opened, as initiating server, from local
// to remote: for an outbound link or for a dialback verification.
type outStream struct {
	s             *Server
	local, remote string
	raw           net.Conn
	conn          net.Conn
	dr            *deadlineReader
	r             *wire.Reader
	w             *wire.Writer
	cand          resolve.Candidate
	tls           bool
	id            string // the peer's stream id: dialback keys use it
	legacy        bool   // the peer answered without version: no features
	feats         *features
	serves        func(domain string) bool // the face's domains, for dialback
	db            *dialback.Stream         // during authenticate
	trust         peerTrust                // how the peer proved it is remote (checkPeer)
	auth          policy.Auth              // how the relay authenticated (after authenticate)
	sm            bool                     // XEP-0198 enabled (after authenticate)
	// rev, when the relay asked for XEP-0288 bidi, reads the peer's
	// stanzas on this stream (bidi.go); nil otherwise.
	rev *reverse
	// hold is the socket's holdConn (dialled streams; nil on an inbound
	// stream's bidi side, where writes go one by one).
	hold *holdConn
}

// dial connects to remote: an internal domain at its configured route, any
// other domain through DNS (SRV, XEP-0368) or dns.overrides. Failures are
// *routing.DeliveryError: not-found when the domain has no S2S service,
// timeout when it resolved but could not be reached.
func (s *Server) dial(ctx context.Context, local, remote string) (*resolve.Conn, error) {
	d := *s.Dialer
	d.TLSConfig = func(domain string) *tls.Config {
		cfg, err := s.Certs.ClientConfig(local, domain, true)
		if err != nil {
			return &tls.Config{ServerName: domain, NextProtos: []string{resolve.ALPN}, InsecureSkipVerify: true}
		}
		return cfg
	}
	// The socket goes under a holdConn (TLS, direct or STARTTLS, above
	// it): a link's writer writes its records in one call (holdconn.go).
	dial := d.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	d.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newHoldConn(quietSocket(c)), nil
	}
	var c *resolve.Conn
	var err error
	if isIPLiteral(remote) {
		return nil, routing.NotFound(atStage(stageDNS, fmt.Errorf("%s is an IP address: the relay does not federate with IP-literal domains", remote)))
	}
	if route, ok := s.Router.Table().Route(remote); ok {
		cand, perr := resolve.ParseOverride(route)
		if perr != nil {
			return nil, routing.NotFound(atStage(stageDNS, fmt.Errorf("route of %s: %w", remote, perr)))
		}
		c, err = d.DialCandidate(ctx, remote, cand)
	} else {
		c, err = d.Dial(ctx, remote)
	}
	if err != nil {
		switch resolve.KindOf(err) {
		case resolve.NotFound, resolve.NoService:
			return nil, routing.NotFound(err)
		}
		return nil, routing.Timeout(err)
	}
	return c, nil
}

// openStream connects to remote and negotiates the stream up to, not
// including, authentication: header exchange, STARTTLS (or direct TLS) and
// the restart after it. Errors are *routing.DeliveryError.
func (s *Server) openStream(ctx context.Context, local, remote string) (o *outStream, err error) {
	// Resolution, connection and TLS run on a goroutine of their own: the
	// stack they grow does not stay with the caller (a link's owner).
	aside(func() { o, err = s.openStreamAside(ctx, local, remote) })
	return o, err
}

func (s *Server) openStreamAside(ctx context.Context, local, remote string) (*outStream, error) {
	rc, err := s.dial(ctx, local, remote)
	if err != nil {
		return nil, err
	}
	face := s.faceOf(routing.Pair{From: local, To: remote})
	o := &outStream{s: s, local: local, remote: remote, raw: rc, conn: rc, cand: rc.Candidate,
		serves: func(d string) bool { return s.serves(face, d) }}
	if tc, ok := rc.Conn.(*tls.Conn); ok {
		o.conn, o.tls = tc, true
	}
	o.dr = &deadlineReader{raw: rc, conn: o.conn}
	o.hold = holdConnOf(rc)
	o.r = wire.NewReader(o.dr, s.limits())
	o.w = wire.NewWriter(o.conn)
	if dl, ok := ctx.Deadline(); ok {
		rc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, o.dr.stop)
	defer stop()
	if err := o.negotiate(ctx); err != nil {
		o.abort(err)
		return nil, routing.Timeout(atStage(stageTLS, fmt.Errorf("stream to %s (%s): %w", remote, rc.Addr, err)))
	}
	return o, nil
}

// negotiate exchanges headers and secures the stream.
func (o *outStream) negotiate(ctx context.Context) error {
	if err := o.restart(); err != nil {
		return err
	}
	if o.tls {
		return nil
	}
	if o.feats == nil || !o.feats.StartTLS {
		// RFC 7590: attempting TLS unadvertised would only fail here; a
		// peer that does not offer it cannot be spoken to securely.
		if o.s.TLS.Required {
			o.w.WriteStreamError(withText(stream.PolicyViolation, "TLS is required"))
			o.w.Flush()
			return errors.New("the peer does not offer STARTTLS and TLS is required")
		}
		return nil
	}
	o.w.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>"))
	if err := o.w.Flush(); err != nil {
		return err
	}
	el, err := o.next()
	if err != nil {
		return err
	}
	if string(el.NS) != NSTLS || string(el.Local) != "proceed" {
		return fmt.Errorf("STARTTLS refused: %s", elementName(el))
	}
	cfg, err := o.s.Certs.ClientConfig(o.local, o.remote, false)
	if err != nil {
		return err
	}
	tc := tls.Client(o.raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	o.conn, o.tls = tc, true
	o.dr.conn = tc
	o.r.Reset(o.dr)
	o.w.Reset(tc)
	return o.restart()
}

// restart sends our header and reads the peer's header and features.
func (o *outStream) restart() error {
	o.w.WriteHeader(&wire.Header{From: o.local, To: o.remote, Version: "1.0", Lang: langDefault})
	if err := o.w.Flush(); err != nil {
		return err
	}
	hdr, err := o.r.ReadHeader()
	if err != nil {
		return err
	}
	if hdr.ID == "" {
		return errors.New("the peer's stream header has no id")
	}
	o.id = hdr.ID
	o.legacy = hdr.Version == "" || hdr.Version[0] == '0'
	o.feats = nil
	if o.legacy {
		return nil
	}
	el, err := o.next()
	if err != nil {
		return err
	}
	if el.Kind != wire.Features {
		return fmt.Errorf("expected stream features, got %s", elementName(el))
	}
	o.feats, err = parseFeatures(el.Raw)
	if err != nil {
		return fmt.Errorf("stream features: %w", err)
	}
	if len(o.feats.Unknown) > 0 {
		return fmt.Errorf("the peer requires features we do not support: %v", o.feats.Unknown)
	}
	return nil
}

// next reads the next element that is not whitespace; a stream error from
// the peer becomes a *PeerStreamError and the end of the stream io.EOF.
func (o *outStream) next() (*wire.Element, error) {
	for {
		el, err := o.r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the peer closed the stream")
			}
			return nil, err
		}
		switch el.Kind {
		case wire.Space:
			continue
		case wire.StreamError:
			return nil, parseStreamError(el.Raw)
		}
		return el, nil
	}
}

// authenticate authenticates local to remote on the stream: SASL EXTERNAL
// when we hold a certificate remote can verify and it offers EXTERNAL (with
// a fallback to dialback when it fails), else Server Dialback with a key
// from the relay's secret (XEP-0220 §2.1); then it enables stream
// management when the peer offers it (enableSM). Errors are plain; the link
// makes them delivery errors.
func (o *outStream) authenticate() (err error) {
	aside(func() {
		if err = o.authenticateAside(); err == nil {
			err = o.enableSM()
		}
	})
	o.db = nil // only authentication needs it: a link that is up keeps none
	return err
}

func (o *outStream) authenticateAside() error {
	o.requestBidi() // XEP-0288 §2.2: after TLS, before SASL or dialback
	if o.tls && o.feats != nil && o.feats.External() && o.s.ExternalDomains[o.local] {
		authz := base64.StdEncoding.EncodeToString([]byte(o.local))
		o.w.WriteRaw([]byte("<auth xmlns='" + NSSASL + "' mechanism='EXTERNAL'>" + authz + "</auth>"))
		if err := o.w.Flush(); err != nil {
			return err
		}
		el, err := o.next()
		if err != nil {
			return err
		}
		o.s.metrics.externalOutcome(true, string(el.NS) == NSSASL && string(el.Local) == "success")
		if string(el.NS) == NSSASL && string(el.Local) == "success" {
			o.auth = policy.AuthExternal
			if err := o.restart(); err != nil {
				if errors.Is(err, io.EOF) {
					// Nothing where the new header belongs: the
					// connection ended under the stream that was open,
					// without its </stream>: a cut, which setup tries
					// once more (link.retryAfter). ejabberd 24.12 does
					// that when it routes a stanza over the stream
					// before the restart (interop lab,
					// 8-secure-federation/bidi).
					return fmt.Errorf("the connection ended after SASL success, before the peer's new stream header: %w", io.ErrUnexpectedEOF)
				}
				return err
			}
			o.db = o.newDialback()
			return o.db.Authorize(o.local, o.remote)
		}
		// XEP-0178 and the practice of Prosody and ejabberd: fall back to
		// dialback when EXTERNAL fails and dialback is on offer.
		if !o.feats.Dialback {
			return fmt.Errorf("SASL EXTERNAL as %s refused by %s and no dialback offered", o.local, o.remote)
		}
	}
	o.db = o.newDialback()
	db := o.db
	req, err := db.SendResult(o.local, o.remote)
	if err != nil {
		return err
	}
	o.w.WriteRaw(req.Append(nil))
	if err := o.w.Flush(); err != nil {
		return err
	}
	for {
		el, err := o.next()
		if err != nil {
			return err
		}
		if el.Kind != wire.DialbackResult && el.Kind != wire.DialbackVerify {
			continue // nothing else is expected before the answer
		}
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			return err
		}
		dec := db.Handle(e)
		if dec.Action != dialback.Settle {
			o.s.stats.DialbackIgnored.Add(1)
			continue
		}
		o.s.metrics.dialbackAnswered(dec.Outcome)
		switch dec.Outcome {
		case dialback.Authorized:
			o.auth = policy.AuthDialback
			return nil
		case dialback.Rejected:
			return fmt.Errorf("dialback with %s refused: invalid key", o.remote)
		default:
			return fmt.Errorf("dialback with %s failed: %s", o.remote, dec.Answer.Condition)
		}
	}
}

// peerIdentity says, for logs, how the receiving server proved it is the
// remote domain (checkPeer): its certificate, DANE, a pinned key, or only
// DNS when dialback alone authenticates the stream (RFC 7590 accepts that
// for insecure domains).
func (o *outStream) peerIdentity() string {
	switch {
	case o.trust.auth == policy.AuthExternal:
		return o.trust.how
	case o.trust.how != "":
		return "DNS only: " + o.trust.how
	}
	return "internal route"
}

// newDialback returns the dialback state for the stream's current id.
func (o *outStream) newDialback() *dialback.Stream {
	return dialback.NewStream(dialback.Config{ID: o.id, Outbound: true, Secret: o.s.Secret, Serves: o.serves})
}

// abort closes a stream that failed during negotiation.
func (o *outStream) abort(err error) {
	o.raw.SetWriteDeadline(time.Now().Add(time.Second))
	if se := closeReason(err); se != nil && o.id != "" {
		o.w.WriteStreamError(*se)
	}
	o.w.Flush()
	o.closeNotify()
	o.raw.Close()
}

// close ends the stream cleanly.
func (o *outStream) close() {
	o.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	o.w.WriteClose()
	o.w.Flush()
	o.closeNotify()
	o.raw.Close()
}

// closeNotify ends TLS with close_notify (RFC 8446 §6.1), so that the peer
// sees the end of the stream rather than a cut connection.
func (o *outStream) closeNotify() {
	if tc, ok := o.conn.(*tls.Conn); ok && tc.ConnectionState().HandshakeComplete {
		tc.CloseWrite()
	}
}

// askAuthoritative sends a db:verify to the Authoritative server of v.To
// over a verify-only connection and returns its answer (Receiving role,
// XEP-0220 §2.2). The connection is resolved like any outbound link: an
// internal domain at its route, others through DNS.
func (s *Server) askAuthoritative(ctx context.Context, v dialback.Element) (dialback.Element, error) {
	o, err := s.openStream(ctx, v.From, v.To)
	if err != nil {
		return dialback.Element{}, err
	}
	stop := context.AfterFunc(ctx, o.dr.stop)
	defer stop()
	db := o.newDialback()
	req, err := db.SendVerify(v)
	if err != nil {
		o.abort(err)
		return dialback.Element{}, routing.Timeout(err)
	}
	o.w.WriteRaw(req.Append(nil))
	if err := o.w.Flush(); err != nil {
		o.abort(err)
		return dialback.Element{}, routing.Timeout(err)
	}
	for {
		el, err := o.next()
		if err != nil {
			o.abort(err)
			return dialback.Element{}, routing.Timeout(fmt.Errorf("verify with %s: %w", v.To, err))
		}
		if el.Kind != wire.DialbackVerify {
			continue
		}
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			o.abort(err)
			return dialback.Element{}, routing.Timeout(err)
		}
		if dec := db.Handle(e); dec.Action == dialback.Deliver {
			o.close()
			if dec.Answer.Type == dialback.TypeError && dec.Answer.Condition == "" {
				dec.Answer.Condition = stanza.UndefinedCondition
			}
			return dec.Answer, nil
		}
		s.stats.DialbackIgnored.Add(1)
	}
}
