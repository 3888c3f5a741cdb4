package policy

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one audit entry: who crossed (or tried to) which face, and what
// the policy answered. It holds domains and decision facts only, never a
// JID, an id or a stanza body. Writing records is the caller's job (the
// policy.audit_log file); AppendJSON formats one.
type Record struct {
	// Time is when the decision was made.
	Time time.Time
	// Stream is true for a stream-level decision (Domain, Stream), false
	// for a stanza.
	Stream bool
	// Face and Dir locate the traffic: Dir is the policy's direction (In:
	// from the remote domain to ours). The JSON line says it as the main
	// log does (see AppendJSON).
	Face Face
	Dir  Direction
	// From and To are the pair's domains as the stream (or stanza) has
	// them, as the main log's from and to; Local is our domain of the pair
	// ("" when not known yet, as for a header refused before its to is
	// checked), Remote the remote domain.
	From, To      string
	Local, Remote string
	// Peer is the address of the stream's peer (host:port), when known:
	// as the main log's peer.
	Peer string
	// Kind is the stanza kind, 0 for stream records.
	Kind Kind
	// TLS and Auth are the stream's security, for stream records.
	TLS  bool
	Auth Auth
	// Allowed, Reason and Rule are the decision.
	Allowed bool
	Reason  Reason
	Rule    string
	// Error is the condition sent: the stanza error condition when an
	// error stanza went back, the stream error condition when a stream was
	// refused; "" when nothing was sent. ErrorType is the stanza error
	// type, "" for streams.
	Error     string
	ErrorType string
}

// Record turns a stanza decision into an audit record.
func (d Decision) Record(t time.Time, face Face, dir Direction, local, remote string, kind Kind) Record {
	r := Record{
		Time: t, Face: face, Dir: dir, Local: local, Remote: remote, Kind: kind,
		Allowed: d.Allowed, Reason: d.Reason, Rule: d.Rule,
	}
	r.From, r.To = pairOf(dir, local, remote)
	if !d.Allowed && d.Send {
		r.Error, r.ErrorType = string(d.Condition()), string(d.ErrorType())
	}
	return r
}

// Record turns a stream decision into an audit record.
func (d StreamDecision) Record(t time.Time, st StreamState, local string) Record {
	r := Record{
		Time: t, Stream: true, Face: st.Face, Dir: st.Dir, Local: local, Remote: st.Remote,
		TLS: st.TLS, Auth: st.Auth, Allowed: d.Allowed, Reason: d.Reason, Rule: d.Rule,
	}
	r.From, r.To = pairOf(st.Dir, local, st.Remote)
	if !d.Allowed {
		r.Error = d.Condition.Error()
	}
	return r
}

// pairOf returns the from and to of a pair given the policy's direction.
func pairOf(dir Direction, local, remote string) (from, to string) {
	switch dir {
	case In:
		return remote, local
	case Out:
		return local, remote
	}
	return "", ""
}

// StreamDir is the direction of the record's stream as the main log says
// it: "in" for a stream a peer opened to the relay (and for a stanza, read
// from such a stream), "out" for one the relay opened; "unknown" for a
// stream record without face or direction. The federation face carries the
// policy's In on the streams peers open, the internal face its Out.
func (r Record) StreamDir() string {
	switch {
	case !r.Stream:
		return "in"
	case r.Face == 0 || r.Dir == 0:
		return "unknown"
	case (r.Face == Federation) == (r.Dir == In):
		return "in"
	}
	return "out"
}

// AppendJSON appends the record to b as one line of JSON ending in "\n"
// and returns the extended buffer. Field order is fixed:
//
//	{"time":"2026-01-02T15:04:05.123Z","event":"stanza","face":"federation",
//	 "dir":"in","from":"evil.example","to":"a.example","local":"a.example",
//	 "remote":"evil.example","kind":"message","decision":"refuse",
//	 "reason":"deny-list","rule":"deny[0] evil.example",
//	 "error":"not-allowed","error_type":"cancel"}
//
// face, dir, from, to and peer mean what they mean in the main log: dir is
// the stream's direction (StreamDir), from and to the pair's domains (from
// Local, Remote and Dir when the record does not set them), peer
// the stream's remote address (left out when not known, as for stanzas).
// local and remote say which of from and to is the organisation's. Stream
// records have "event":"stream" and "tls" and "auth" instead of "kind";
// "error" and "error_type" are left out when empty. Strings are escaped as
// JSON requires, invalid UTF-8 becoming U+FFFD, so a hostile domain name
// cannot break the line.
func (r Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	if r.Stream {
		b = append(b, `"stream"`...)
	} else {
		b = append(b, `"stanza"`...)
	}
	b = appendField(b, "face", r.Face.String())
	b = appendField(b, "dir", r.StreamDir())
	from, to := r.From, r.To
	if from == "" && to == "" {
		from, to = pairOf(r.Dir, r.Local, r.Remote)
	}
	b = appendField(b, "from", from)
	b = appendField(b, "to", to)
	if r.Peer != "" {
		b = appendField(b, "peer", r.Peer)
	}
	b = appendField(b, "local", r.Local)
	b = appendField(b, "remote", r.Remote)
	if r.Stream {
		b = append(b, `,"tls":`...)
		b = strconv.AppendBool(b, r.TLS)
		b = appendField(b, "auth", r.Auth.String())
	} else {
		b = appendField(b, "kind", r.Kind.String())
	}
	if r.Allowed {
		b = appendField(b, "decision", "allow")
	} else {
		b = appendField(b, "decision", "refuse")
	}
	b = appendField(b, "reason", r.Reason.String())
	b = appendField(b, "rule", r.Rule)
	if r.Error != "" {
		b = appendField(b, "error", r.Error)
	}
	if r.ErrorType != "" {
		b = appendField(b, "error_type", r.ErrorType)
	}
	return append(b, "}\n"...)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line separators to some readers.
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
