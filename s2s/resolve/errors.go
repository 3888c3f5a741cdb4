package resolve

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Kind classifies a failure by what the sender of a stanza should be told
// (RFC 6120 §10.4.3 and §10.4.4).
type Kind uint8

const (
	// Temporary: a query timed out or failed (SERVFAIL, REFUSED, no
	// nameserver answered), or every connection attempt failed after the
	// domain resolved. Bounce with remote-server-timeout; trying again later
	// may work.
	Temporary Kind = iota
	// NotFound: the domain does not exist, or has neither SRV nor A/AAAA
	// records. Bounce with remote-server-not-found.
	NotFound
	// NoService: the domain exists but says it offers no S2S service (an
	// SRV target of "."). Bounce with remote-server-not-found.
	NoService
)

func (k Kind) String() string {
	switch k {
	case NotFound:
		return "not-found"
	case NoService:
		return "no-service"
	default:
		return "temporary"
	}
}

// Sentinels for errors.Is. An error of kind NoService matches both
// ErrNoService and ErrNotFound, since both bounce as
// remote-server-not-found.
var (
	// ErrNotFound matches errors of kind NotFound and NoService.
	ErrNotFound = errors.New("remote domain not found")
	// ErrNoService matches errors of kind NoService.
	ErrNoService = errors.New("no S2S service")
	// ErrTemporary matches errors of kind Temporary, including *DialError.
	ErrTemporary = errors.New("temporary resolution or connection failure")
	// ErrClosed is returned by a Resolver after Close for answers it would
	// have to ask for.
	ErrClosed = errors.New("resolver closed")
)

// Error is a failed lookup. Its message is one line naming the DNS name
// concerned, e.g.
// `no S2S service: _xmpp-server._tcp.example.org has target "."`.
type Error struct {
	Kind Kind
	// Name is the DNS name the failure concerns, without the trailing dot.
	Name string
	// Msg is the complete message returned by Error.
	Msg string
	// Err is the underlying cause when there is one (a network error,
	// context.DeadlineExceeded), nil otherwise.
	Err error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether e belongs to the class of target (ErrNotFound,
// ErrNoService, ErrTemporary).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Kind == NotFound || e.Kind == NoService
	case ErrNoService:
		return e.Kind == NoService
	case ErrTemporary:
		return e.Kind == Temporary
	}
	return false
}

// KindOf returns the class of err: the Kind of a *Error in its chain, and
// Temporary for anything else (a *DialError, a cancelled context, an
// unexpected failure), which is the safe answer for a bounce.
func KindOf(err error) Kind {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Kind
	}
	return Temporary
}

// DialError reports a domain that resolved but could not be connected to. It
// keeps every attempt, one per candidate address tried (or per candidate
// whose addresses could not be resolved), in the order they were made. It is
// of kind Temporary.
type DialError struct {
	// Domain is the XMPP domain in ASCII form.
	Domain string
	// Attempts are the failed attempts, in order.
	Attempts []Attempt
	// Untried is the number of candidates never tried because the deadline
	// passed first.
	Untried int
	// Err is the context error when the deadline or a cancellation ended
	// the dial, nil when every candidate was tried.
	Err error
}

// Attempt is one failed connection attempt.
type Attempt struct {
	Candidate Candidate
	// Addr is the address dialled; invalid when the candidate's host could
	// not be resolved to any address.
	Addr netip.AddrPort
	Err  error
}

func (a Attempt) String() string {
	return a.Candidate.Address() + " (" + a.Candidate.Mode.String() + "): " + oneLine(a.Err.Error())
}

func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("connect ")
	b.WriteString(e.Domain)
	b.WriteString(": ")
	switch {
	case len(e.Attempts) == 0 && e.Err != nil:
		b.WriteString(e.Err.Error())
	case len(e.Attempts) == 0:
		b.WriteString("no candidates")
	default:
		for i, a := range e.Attempts {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(a.String())
		}
		if e.Err != nil {
			b.WriteString("; ")
			b.WriteString(e.Err.Error())
		}
	}
	if e.Untried > 0 {
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(e.Untried))
		b.WriteString(" candidates not tried)")
	}
	return b.String()
}

// Is makes a DialError match ErrTemporary, and context.DeadlineExceeded or
// context.Canceled when that ended the dial.
func (e *DialError) Is(target error) bool {
	switch target {
	case ErrTemporary:
		return true
	case context.DeadlineExceeded, context.Canceled:
		return errors.Is(e.Err, target)
	}
	return false
}

// oneLine keeps messages from peers and libraries to one line.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.Join(strings.Fields(s), " ")
	}
	return s
}
