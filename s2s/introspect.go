package s2s

import (
	"crypto/tls"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/policy"
)

// StreamInfo describes one stream for operators (the admin API): an inbound
// stream a peer opened, or an outbound link the relay opened.
type StreamInfo struct {
	// Face is "federation" or "internal"; Direction "in" (the peer opened
	// it) or "out" (the relay did).
	Face      string `json:"face"`
	Direction string `json:"direction"`
	// Local are the organisation's domains on the stream, Remote the
	// others: for an inbound stream, the domains of the pairs authorized on
	// it (or its header's, before any is).
	Local  []string `json:"local"`
	Remote []string `json:"remote"`
	// Auth is how the remote domains were authenticated: "external" (a
	// certificate, DANE or a pin), "dialback", "both", or "none" yet; for a
	// link towards an internal route, "route".
	Auth string `json:"auth"`
	// CertVerified reports whether the peer's certificate was verified
	// (chain, and for a link its name, DANE or pin).
	CertVerified bool `json:"cert_verified"`
	// TLSVersion and Cipher are "" without TLS.
	TLSVersion string `json:"tls_version,omitempty"`
	Cipher     string `json:"cipher,omitempty"`
	// Peer is the address of the other end.
	Peer string `json:"peer,omitempty"`
	// Up is false for a link still connecting or authenticating.
	Up bool `json:"up"`
	// Bidi reports an XEP-0288 bidirectional stream: an inbound stream
	// whose peer asked for it, a link that rides such a stream (Peer is
	// then the inbound stream's), or an outbound link on which the relay
	// asked for it (its StanzasIn and BytesIn are the peer's stanzas).
	Bidi bool `json:"bidi"`
	// Age is how long the stream has existed, Idle since it last read.
	Age  time.Duration `json:"age_ns"`
	Idle time.Duration `json:"idle_ns"`
	// Stanzas and bytes: read on an inbound stream, written by a link.
	StanzasIn  int64 `json:"stanzas_in"`
	BytesIn    int64 `json:"bytes_in"`
	StanzasOut int64 `json:"stanzas_out"`
	BytesOut   int64 `json:"bytes_out"`
	// Queue and QueueBytes are what waits in a link; OldestQueued the age
	// of its oldest stanza.
	Queue        int           `json:"queue"`
	QueueBytes   int           `json:"queue_bytes"`
	OldestQueued time.Duration `json:"oldest_queued_ns"`
	// StreamManagement reports that a link's peer acknowledges what it
	// receives (XEP-0198); then Acknowledged counts the stanzas it has
	// acknowledged, and Unacknowledged those written that it has not yet.
	StreamManagement bool  `json:"stream_management"`
	Acknowledged     int64 `json:"acknowledged,omitempty"`
	Unacknowledged   int   `json:"unacknowledged,omitempty"`
}

// Streams returns every stream the server holds, inbound streams first,
// each group in a stable order (by remote domain, then peer).
func (s *Server) Streams() []StreamInfo {
	now := time.Now()
	s.mu.Lock()
	conns := make([]*inConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.lmu.RLock()
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		if !l.isRider() { // listed with the stream it rides
			links = append(links, l)
		}
	}
	s.lmu.RUnlock()

	out := make([]StreamInfo, 0, len(conns)+len(links))
	for _, c := range conns {
		out = append(out, c.info(now))
	}
	for _, l := range links {
		out = append(out, l.info(now))
	}
	slices.SortStableFunc(out, func(a, b StreamInfo) int {
		if a.Direction != b.Direction {
			return strings.Compare(a.Direction, b.Direction)
		}
		if c := slices.Compare(a.Remote, b.Remote); c != 0 {
			return c
		}
		if c := slices.Compare(a.Local, b.Local); c != 0 {
			return c
		}
		return strings.Compare(a.Peer, b.Peer)
	})
	return out
}

func (c *inConn) info(now time.Time) StreamInfo {
	si := StreamInfo{Face: c.face.String(), Direction: "in", Peer: c.raw.RemoteAddr().String(),
		Age: now.Sub(c.started), StanzasIn: c.nIn.Load(), BytesIn: c.dr.bytes.Load(), Up: true}
	c.s.lmu.RLock()
	si.Bidi = c.s.bidiIn[c] != nil
	c.s.lmu.RUnlock()
	if last := c.dr.last.Load(); last > 0 {
		si.Idle = now.Sub(time.Unix(0, last))
	} else {
		si.Idle = si.Age
	}
	locals, remotes := map[string]bool{}, map[string]bool{}
	var auths policy.Auth
	var both bool
	c.mu.Lock()
	if len(c.pairs) == 0 && c.hdr.To != "" {
		if l := c.localOf(c.hdr); l != "" {
			locals[l] = true
		}
		if r := c.remoteOf(c.hdr); r != "" {
			remotes[r] = true
		}
	}
	for p, ps := range c.pairs {
		locals[c.localOf(p)] = true
		remotes[c.remoteOf(p)] = true
		if auths != policy.AuthNone && auths != ps.auth {
			both = true
		}
		auths = ps.auth
	}
	c.mu.Unlock()
	si.Local, si.Remote = slices.Sorted(maps.Keys(locals)), slices.Sorted(maps.Keys(remotes))
	switch {
	case both:
		si.Auth = "both"
	default:
		si.Auth = auths.String()
	}
	if tc, ok := c.connTLS(); ok {
		st := tc.ConnectionState()
		si.TLSVersion, si.Cipher = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
		si.CertVerified = c.certOK.Load()
	}
	return si
}

func (l *link) info(now time.Time) StreamInfo {
	face := l.s.faceOf(l.pair)
	si := StreamInfo{Face: face.String(), Direction: "out", Local: []string{l.pair.From}, Remote: []string{l.pair.To},
		Age: now.Sub(l.started), StanzasOut: l.written.Load(), BytesOut: l.bytesOut.Load()}
	if face == policy.Internal {
		si.Local, si.Remote = []string{l.pair.To}, []string{l.pair.From}
	}
	l.mu.Lock()
	o, up, sm := l.out, l.up, l.sm
	si.Queue, si.QueueBytes = l.qn, l.qbytes
	if len(l.pending) > 0 && len(l.pending[0].recs) > 0 {
		if at := l.pending[0].recs[0].Received; !at.IsZero() {
			si.OldestQueued = now.Sub(at)
		}
	}
	l.mu.Unlock()
	if sm != nil {
		sm.mu.Lock()
		si.StreamManagement, si.Acknowledged, si.Unacknowledged = true, sm.acked, sm.n
		sm.mu.Unlock()
	}
	l.addRiders(&si)
	si.Up = up
	si.Idle = si.Age
	if o == nil {
		si.Auth = "none"
		return si
	}
	si.Peer = o.raw.RemoteAddr().String()
	if last := o.dr.last.Load(); last > 0 {
		si.Idle = now.Sub(time.Unix(0, last))
	}
	switch {
	case o.ridesInbound():
		si.Bidi = true
	case o.rev != nil:
		si.Bidi = true
		si.StanzasIn, si.BytesIn = o.rev.n.Load(), o.dr.bytes.Load()
	}
	switch {
	case face == policy.Internal:
		si.Auth = "route"
	default:
		si.Auth = o.trust.auth.String()
		si.CertVerified = o.trust.auth == policy.AuthExternal
	}
	if tc, ok := o.conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		si.TLSVersion, si.Cipher = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
	}
	return si
}

// operatorClose is the reason of a stream the operator closed: the stream
// error sent, and, for a link, what its queued stanzas bounce with.
type operatorClose struct{ se stream.Error }

func (e *operatorClose) Error() string { return "closed by the operator: " + e.se.Error() }
func (e *operatorClose) Unwrap() error { return e.se }

// CloseDomain closes every stream with domain as a remote domain, inbound
// and outbound, with the stream error cond (RFC 6120 §4.9: the error, then
// the closing tag); what links held bounces with remote-server-timeout. It
// returns how many streams it closed. Traffic for domain that comes later
// opens new streams, as it would after a network failure.
func (s *Server) CloseDomain(domain string, cond stream.Error) int {
	cond = withText(cond, "closed by the operator of this server")
	n := 0
	s.mu.Lock()
	var conns []*inConn
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		match := c.hdr.To != "" && c.remoteOf(c.hdr) == domain
		for p := range c.pairs {
			match = match || c.remoteOf(p) == domain
		}
		c.mu.Unlock()
		if match {
			c.shutdown(cond)
			n++
		}
	}
	s.lmu.RLock()
	var links []*link
	for _, l := range s.links {
		remote := l.pair.To
		if s.faceOf(l.pair) == policy.Internal {
			remote = l.pair.From
		}
		if remote == domain {
			links = append(links, l)
		}
	}
	s.lmu.RUnlock()
	for _, l := range links {
		l.stop(&operatorClose{se: cond})
		n++
	}
	return n
}

// isOperatorClose reports whether err is a close the operator asked for.
func isOperatorClose(err error) bool {
	var oc *operatorClose
	return errors.As(err, &oc)
}
