package s2s

import (
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
)

// audit writes a stream-level record of this stream, with its peer's
// address as the main log names it.
func (c *inConn) audit(r policy.Record) {
	r.Peer = c.raw.RemoteAddr().String()
	c.s.Audit(r)
}

// auditAuthorized records that pair p is now authorized on this stream
// (dialback, SASL EXTERNAL), with the policy's decision for it: the audit
// trail has the streams accepted, not only those refused. It may run on a
// verification goroutine, with c.mu held.
func (c *inConn) auditAuthorized(p dialback.Pair, auth policy.Auth) {
	st := policy.StreamState{Face: c.face, Dir: c.dirIn(), Remote: c.remoteOf(p), TLS: c.tlsOn.Load(), Auth: auth}
	c.audit(c.s.Router.Policy().Stream(st).Record(time.Now(), st, c.localOf(p)))
}

// auditOut writes the record of the policy's decision on an outbound
// stream (checkPeer), with the receiving server's address.
func (s *Server) auditOut(r policy.Record, o *outStream) {
	r.Peer = o.raw.RemoteAddr().String()
	s.Audit(r)
}
