package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the EDNS0 UDP payload size advertised: the value of DNS Flag
// Day 2020, which avoids IP fragmentation on common paths.
const ednsSize = 1232

// aLongTimeAgo is a deadline that makes a blocked read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// client asks one question of the configured nameservers: UDP first, TCP
// when the UDP answer is truncated, the next server when one fails, and the
// whole list again up to retries more times while failures are timeouts or
// network errors.
type client struct {
	servers []string
	timeout time.Duration
	retries int
	dial    func(ctx context.Context, network, address string) (net.Conn, error)
}

// query returns the answer to name (fully qualified) and qtype, whose rcode
// is NOERROR or NXDOMAIN. Any other outcome is a *Error of kind Temporary.
// checkingDisabled sets CD instead of AD: the relay validates the answer
// itself and wants the data even when the nameserver thinks it bogus (RFC
// 4035 §3.2.2), rather than a SERVFAIL that hides what failed.
func (c *client) query(ctx context.Context, name string, qtype uint16, checkingDisabled bool) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// DO asks for DNSSEC records and makes a validating resolver report
	// the outcome in AD; AD in a query asks for AD even so (RFC 6840 §5.7).
	q.AuthenticatedData = !checkingDisabled
	q.CheckingDisabled = checkingDisabled
	q.SetEdns0(ednsSize, true)

	var fails []string
	answered := make([]bool, len(c.servers)) // gave a definite error rcode
	var cause error
	for round := 0; round <= c.retries; round++ {
		tried := false
		for i, server := range c.servers {
			if answered[i] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, queryError(name, qtype, append(fails, err.Error()), err)
			}
			tried = true
			q.Id = dns.Id()
			r, err := c.exchange(ctx, q, server)
			if err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				fails = append(fails, server+": "+describe(err))
				cause = err
				continue
			}
			if r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError {
				return r, nil
			}
			// SERVFAIL and the like come from a resolver that has
			// already tried; asking it again at once rarely helps.
			answered[i] = true
			fails = append(fails, server+": "+rcodeName(r.Rcode))
		}
		if !tried {
			break
		}
	}
	return nil, queryError(name, qtype, fails, cause)
}

// exchange sends q to one server and returns the answer whatever its rcode.
func (c *client) exchange(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	r, err := c.exchangeNet(ctx, q, server, "udp")
	if err == nil && r.Truncated {
		r, err = c.exchangeNet(ctx, q, server, "tcp")
	}
	return r, err
}

func (c *client) exchangeNet(ctx context.Context, q *dns.Msg, server, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.dial(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	// Cancellation becomes a deadline in the past, so a blocked read
	// returns at once.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()

	co := &dns.Conn{Conn: raw, UDPSize: ednsSize}
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		r, err := co.ReadMsg()
		if err != nil && (r == nil || !r.Truncated) {
			return nil, err
		}
		if r.Id != q.Id {
			if network == "udp" {
				continue // a late answer to an earlier query
			}
			return nil, errors.New("answer with the wrong ID")
		}
		if !r.Response || len(r.Question) != 1 || r.Question[0].Qtype != q.Question[0].Qtype ||
			!strings.EqualFold(r.Question[0].Name, q.Question[0].Name) {
			if network == "udp" {
				continue // not an answer to this question: keep waiting
			}
			return nil, errors.New("answer to another question")
		}
		return r, nil
	}
}

// queryError builds the Temporary error for a question no server answered.
func queryError(name string, qtype uint16, fails []string, cause error) *Error {
	n := strings.TrimSuffix(name, ".")
	verb := "failed"
	if cause != nil {
		var ne net.Error
		if errors.Is(cause, context.DeadlineExceeded) || (errors.As(cause, &ne) && ne.Timeout()) {
			verb = "timed out"
		}
	}
	return &Error{
		Kind: Temporary,
		Name: n,
		Msg:  fmt.Sprintf("DNS lookup %s: %s %s: %s", verb, n, dns.TypeToString[qtype], summarize(fails)),
		Err:  cause,
	}
}

// summarize joins failure descriptions, folding repeats into a count.
func summarize(fails []string) string {
	if len(fails) == 0 {
		return "no nameserver to ask"
	}
	var out []string
	count := map[string]int{}
	for _, f := range fails {
		if count[f] == 0 {
			out = append(out, f)
		}
		count[f]++
	}
	for i, f := range out {
		if n := count[f]; n > 1 {
			out[i] = fmt.Sprintf("%s (%d times)", f, n)
		}
	}
	return strings.Join(out, "; ")
}

// describe shortens a network error to what a reader needs.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "no answer"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oneLine(oe.Err.Error())
	}
	return oneLine(err.Error())
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}
