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
	// Face and Dir locate the traffic.
	Face Face
	Dir  Direction
	// Local is our domain of the pair ("" when not known yet, as for a
	// header refused before its to is checked); Remote the remote domain.
	Local, Remote string
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
	if !d.Allowed {
		r.Error = d.Condition.Error()
	}
	return r
}

// AppendJSON appends the record to b as one line of JSON ending in "\n"
// and returns the extended buffer. Field order is fixed:
//
//	{"time":"2026-01-02T15:04:05.123Z","event":"stanza","face":"federation",
//	 "dir":"in","local":"a.example","remote":"evil.example","kind":"message",
//	 "decision":"refuse","reason":"deny-list","rule":"deny[0] evil.example",
//	 "error":"not-allowed","error_type":"cancel"}
//
// Stream records have "event":"stream" and "tls" and "auth" instead of
// "kind"; "error" and "error_type" are left out when empty. Strings are
// escaped as JSON requires, invalid UTF-8 becoming U+FFFD, so a hostile
// domain name cannot break the line.
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
	b = appendField(b, "dir", r.Dir.String())
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
