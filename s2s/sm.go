package s2s

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/routing"
)

// Stream management (XEP-0198) on server-to-server streams, without
// resumption: neither Prosody nor ejabberd resume an S2S stream, and a new
// stream per pair is cheap. What it gives the relay is the peer's word:
//
//   - On an outbound link whose peer offers it (Prosody's mod_smacks does
//     once the stream is authenticated by SASL EXTERNAL), the relay enables
//     it, asks for an acknowledgement (<r/>) after each write, and counts a
//     stanza delivered only once the peer acknowledges it (<a h='…'/>). The
//     batches written stay with the link until then (smOut); when the stream
//     dies, what was not acknowledged is routed again over a new stream, or
//     bounced, like what was never written. A peer that leaves a request
//     unanswered for limits.ack_timeout is taken for dead.
//   - On an inbound stream authenticated by SASL EXTERNAL the relay offers
//     it, and answers requests with the number of stanzas it has taken
//     charge of (routed or bounced); it acknowledges them once more before
//     it closes the stream, and leaves what arrives after that to the peer,
//     which still holds it as unacknowledged.
//
// h counts stanzas modulo 2^32 (XEP-0198 §4: xs:unsignedInt).

var (
	smEnable  = []byte("<enable xmlns='" + NSSM + "'/>")
	smEnabled = []byte("<enabled xmlns='" + NSSM + "'/>")
	smRequest = []byte("<r xmlns='" + NSSM + "'/>")
)

// smFailed is <failed/> with a stanza error condition (XEP-0198 §3).
func smFailed(condition string) []byte {
	return []byte("<failed xmlns='" + NSSM + "'><" + condition + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
}

// appendAck appends <a h='h'/>.
func appendAck(dst []byte, h uint32) []byte {
	dst = append(dst, "<a xmlns='"+NSSM+"' h='"...)
	dst = strconv.AppendUint(dst, uint64(h), 10)
	return append(dst, "'/>"...)
}

var errBadAck = errors.New("malformed XEP-0198 <a/>: no valid 'h'")

// parseAck reads the count of <a xmlns='urn:xmpp:sm:3' h='…'/>.
func parseAck(raw []byte) (uint32, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return 0, errBadAck
		}
		if err != nil {
			return 0, errBadAck
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if start.Name.Space != NSSM || start.Name.Local != "a" {
			return 0, errBadAck
		}
		for _, a := range start.Attr {
			if a.Name.Space == "" && a.Name.Local == "h" {
				h, err := strconv.ParseUint(strings.TrimSpace(a.Value), 10, 32)
				if err != nil {
					return 0, errBadAck
				}
				return uint32(h), nil
			}
		}
		return 0, errBadAck
	}
}

// smOut is what an outbound link with stream management enabled has written
// and the peer has not acknowledged yet: whole batches, in order, the first
// possibly acknowledged in part. The link's writer adds to it, its reader
// takes acknowledgements off it, and its owner takes what is left when the
// stream ends (after the reader has stopped).
type smOut struct {
	mu      sync.Mutex
	unacked []*batch  // written, in order
	done    int       // records of unacked[0] already acknowledged
	n       int       // stanzas written and not acknowledged
	bytes   int       // bytes of the unacked batches
	sent    uint32    // stanzas written since <enabled/>, modulo 2^32
	h       uint32    // the peer's last count
	asked   time.Time // when the last <r/> went out while stanzas wait for their acknowledgement; zero when none wait
	acked   int64     // stanzas acknowledged, for the admin API
	// shared is the stream's, when the link shares it with other pairs
	// (multiplex.go): the peer's count spans them all. owner is the link.
	shared *muxStream
	owner  *link
}

// wrote takes over the batches of q, written to the peer with an <r/>
// after them at now.
func (m *smOut) wrote(q []*batch, now time.Time) {
	m.mu.Lock()
	n := 0
	for _, b := range q {
		m.unacked = append(m.unacked, b)
		m.n += len(b.recs)
		m.bytes += len(b.buf)
		m.sent += uint32(len(b.recs))
		n += len(b.recs)
	}
	if m.n > 0 {
		m.asked = now
	}
	m.mu.Unlock()
	if m.shared != nil {
		m.shared.wrote(m.owner, n) // after: it may settle acknowledgements at once
	}
}

// ackRun is a run of acknowledged records of one batch, released once
// settled when all of it is acknowledged.
type ackRun struct {
	b        *batch
	from, to int
	release  bool
}

// ack takes off what the peer's count h acknowledges and returns it, in
// order. A count beyond what was sent is a stream error (XEP-0198 §4:
// undefined-condition with handled-count-too-high).
func (m *smOut) ack(h uint32, runs []ackRun) ([]ackRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	newly := int(h - m.h) // modulo 2^32
	if h-m.h > uint32(m.n) {
		return runs, withText(stream.UndefinedCondition, "handled-count-too-high: h='%d' acknowledges more than the %d stanzas sent", h, m.sent)
	}
	m.h = h
	m.acked += int64(newly)
	for newly > 0 {
		b := m.unacked[0]
		left := len(b.recs) - m.done
		if newly < left {
			runs = append(runs, ackRun{b: b, from: m.done, to: m.done + newly})
			m.done += newly
			m.n -= newly
			break
		}
		runs = append(runs, ackRun{b: b, from: m.done, to: len(b.recs), release: true})
		newly -= left
		m.n -= left
		m.bytes -= len(b.buf)
		m.unacked[0] = nil
		m.unacked = m.unacked[1:]
		m.done = 0
	}
	if m.n == 0 {
		m.asked = time.Time{}
		m.unacked = m.unacked[:0:0] // drops the consumed backing array
	}
	return runs, nil
}

// full reports whether as much as a link may hold waits for its
// acknowledgement: the writer then waits for the peer.
func (m *smOut) full(maxBytes, maxStanzas int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n > 0 && (m.bytes >= maxBytes || m.n >= maxStanzas)
}

// waiting returns the stanzas that wait for their acknowledgement and when
// the last request for it went out.
func (m *smOut) waiting() (int, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n, m.asked
}

// takeAll returns what was never acknowledged, for the link to route again
// or bounce, and forgets it; the first batch's first skip records were
// acknowledged.
func (m *smOut) takeAll() (q []*batch, skip int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q, skip = m.unacked, m.done
	m.unacked, m.done, m.n, m.bytes, m.asked = nil, 0, 0, 0, time.Time{}
	return q, skip
}

// handleAck settles what an <a/> from the peer acknowledges.
func (l *link) handleAck(raw []byte) error {
	h, err := parseAck(raw)
	if err != nil {
		return withText(stream.InvalidXML, "%v", err)
	}
	if l.mux != nil {
		return l.mux.handleAck(h) // the count spans the stream's pairs
	}
	runs, err := l.sm.ack(h, nil)
	l.settleAcked(runs)
	if err != nil {
		return err
	}
	l.signal() // the writer may be waiting for room, or to close
	return nil
}

// settleAcked reports what an acknowledgement took off l.sm to the router,
// and releases the batches it emptied.
func (l *link) settleAcked(runs []ackRun) {
	for _, r := range runs {
		l.s.Router.Settle(routing.Acked, l.pair, r.b.recs[r.from:r.to], nil)
		if r.release {
			r.b.release()
		}
	}
}

// enableSM asks the peer for stream management when it offers it and
// limits.stream_management is on, after authentication (XEP-0198 §3), and
// waits for the answer: o.sm says whether it is on.
func (o *outStream) enableSM() error {
	if !o.s.Limits.StreamManagement || o.feats == nil || !o.feats.SM {
		return nil
	}
	o.w.WriteRaw(smEnable)
	if err := o.w.Flush(); err != nil {
		return err
	}
	for {
		el, err := o.next()
		if err != nil {
			return err
		}
		if string(el.NS) != NSSM {
			// Without bidi (XEP-0288) the peer has nothing else to say on
			// our stream before it answers.
			return fmt.Errorf("expected the answer to <enable/>, got %s", elementName(el))
		}
		switch string(el.Local) {
		case "enabled":
			o.sm = true
			return nil
		case "failed":
			return nil // the stream goes on without it
		}
	}
}
