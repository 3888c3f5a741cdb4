package dialback

import (
	"cmp"
	"errors"
	"slices"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// Default limits of a Stream, used when Config leaves them zero.
const (
	// DefaultMaxPending bounds the requests outstanding on one stream in
	// each direction: those sent (db:result and db:verify awaiting their
	// answer) and those received (db:result awaiting the Authoritative
	// server's verdict).
	DefaultMaxPending = 64

	// DefaultMaxPairs bounds the domain pairs authorized on one stream.
	DefaultMaxPairs = 1000
)

// Errors reported by Stream: returned by its Send methods and Authorize, or
// given as Decision.Reason when an element is ignored.
var (
	// ErrUnsolicited: a typed db:result or db:verify that answers no
	// request outstanding on this stream, exactly matched on from, to and
	// (for db:verify) id. Such elements must be dropped (XEP-0220 §3.1).
	ErrUnsolicited = errors.New("dialback: unsolicited answer")

	// ErrPending: a request for this domain pair (or, for db:verify, this
	// pair and id) is already outstanding on the stream.
	ErrPending = errors.New("dialback: request already outstanding")

	// ErrAuthorized: the pair is already authorized on the stream in that
	// direction; there is nothing to ask.
	ErrAuthorized = errors.New("dialback: pair already authorized")

	// ErrPendingLimit: the stream has Config.MaxPending requests
	// outstanding; use another stream (XEP-0220 resource-constraint).
	ErrPendingLimit = errors.New("dialback: too many outstanding requests")

	// ErrMisdirected: the request flows the wrong way for this stream.
	// Without bidi (XEP-0288) only the initiator of a stream sends requests
	// on it and only the responder answers them.
	ErrMisdirected = errors.New("dialback: request in the wrong direction for this stream")

	// ErrNoStreamID: the stream has no ID, so no key can be made or checked.
	ErrNoStreamID = errors.New("dialback: stream has no id")

	// ErrNotServed: the sender domain is not one this face of the relay
	// holds the secret for (Config.Serves).
	ErrNotServed = errors.New("dialback: domain not served here")

	// ErrSameStream: a db:verify must not travel on the stream whose key it
	// checks (its id is this stream's ID).
	ErrSameStream = errors.New("dialback: verify on the stream it verifies")

	// ErrRejected: the peer answered one of our db:result requests with
	// type='invalid'; XEP-0220 §2.1.1 says to stop using the stream, which
	// the peer is about to close.
	ErrRejected = errors.New("dialback: stream rejected by peer")

	// ErrClosed: Close was called.
	ErrClosed = errors.New("dialback: stream closed")

	// ErrMalformed: the Element given is not of the form the method needs
	// (a zero Element, a response where a request is needed, …).
	ErrMalformed = errors.New("dialback: not a suitable element")
)

// Pair is a domain pair in the direction stanzas flow: From is the sender
// (Originating) domain, To the target (Receiving) domain. Domains are in the
// normal form of Domain.
type Pair struct {
	From, To string
}

// Config describes one stream to NewStream. Secret and Serves are the same
// for every stream of one face of the relay; the rest is per stream.
type Config struct {
	// ID is the stream ID: the id attribute of the response stream header
	// after the last restart (for an inbound stream, the one we sent; for
	// an outbound one, the one the peer sent). Keys are made and checked
	// with it. Create a new Stream after every stream restart.
	ID string

	// Outbound is true if we opened the connection (we are the initiator
	// and send requests on it), false if the peer did.
	Outbound bool

	// Bidi is true if XEP-0288 bidirectional streams were negotiated:
	// requests may then flow both ways, and every authorized pair also
	// authorizes its reverse in the other direction.
	Bidi bool

	// Secret makes our keys and checks keys sent back to us. Required.
	Secret *Secret

	// Serves reports whether this face of the relay is the server for a
	// domain (given in the normal form of Domain): the domains it holds the
	// secret for, accepts stanzas to, and sends stanzas from. Required.
	Serves func(domain string) bool

	// CertValid, if not nil, reports whether the peer's certificate, as
	// verified in the TLS handshake and still valid now, covers a domain
	// (DNS-ID, SRV-ID or XmppAddr). A db:result from such a domain is
	// answered valid without a db:verify round trip (XEP-0344,
	// "dialback without dialing back"). Leave it nil when the peer
	// presented no certificate or it did not verify.
	CertValid func(domain string) bool

	// MaxPending bounds the outstanding requests in each direction; zero
	// means DefaultMaxPending.
	MaxPending int

	// MaxPairs bounds the authorized domain pairs; zero means
	// DefaultMaxPairs.
	MaxPairs int
}

// Action says what the connection owner must do with a Decision.
type Action uint8

// Actions.
const (
	// Ignore: drop the element; Reason says why (ErrUnsolicited for the
	// spoofing attempts XEP-0220 §3.1 describes, ErrPending, …). Worth a
	// counter or a debug log, not an answer.
	Ignore Action = iota

	// Reply: write Reply on this stream. If Close is not nil, then close
	// the stream with that stream error.
	Reply

	// Forward: the key must be checked by the Authoritative server of
	// Verify.To. Send Verify on another stream to that server (an existing
	// outbound stream or a verify-only connection), through that stream's
	// SendVerify. The answer comes back as a Deliver decision on that
	// stream; if the server cannot be reached, call Conclude on this
	// stream with Verify.ErrorResponse(stanza.RemoteServerNotFound) (it
	// did not resolve) or (RemoteConnectionFailed) (no connection).
	Forward

	// Settle: one of our db:result requests was answered (or can no longer
	// be). Apply Outcome to the stanzas queued for Pair.
	Settle

	// Deliver: the Authoritative server answered a db:verify we sent on
	// this stream. Hand Answer to the Stream whose ID is Answer.ID (drop it
	// if there is none any more) and act on what its Conclude returns.
	Deliver
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Ignore:
		return "ignore"
	case Reply:
		return "reply"
	case Forward:
		return "forward"
	case Settle:
		return "settle"
	case Deliver:
		return "deliver"
	}
	return "Action(?)"
}

// Outcome is what the answer to one of our db:result requests means for the
// stanzas queued for its pair (XEP-0220 §2.1.1), the Initiating server's
// side of dialback.
type Outcome uint8

// Outcomes.
const (
	// Authorized: type='valid'. Send the queued stanzas.
	Authorized Outcome = iota + 1

	// Rejected: type='invalid'. Bounce the queued stanzas with
	// internal-server-error; the peer will close the stream, so send
	// nothing more on it (MaySend now reports false for every pair).
	Rejected

	// Failed: type='error', or the stream ended before an answer. Bounce
	// the queued stanzas with remote-server-timeout; the stream itself is
	// still usable for other pairs if it is still open.
	Failed
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Authorized:
		return "authorized"
	case Rejected:
		return "rejected"
	case Failed:
		return "failed"
	}
	return "Outcome(?)"
}

// Bounce returns the stanza error to return queued stanzas with, and false
// if they are to be sent instead.
func (o Outcome) Bounce() (stanza.Error, bool) {
	switch o {
	case Authorized:
		return stanza.Error{}, false
	case Rejected:
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError}, true
	}
	return stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout}, true
}

// Decision is what a Stream asks the connection owner to do. Only the fields
// its Action names are set. Decisions are not meant to be compared with ==
// (Close may hold a stream.Error, which is not comparable).
type Decision struct {
	Action Action

	// Reply is the element to write on this stream (Action Reply).
	Reply Element
	// Close, if not nil, is the stream error (a stream.Error) to close this
	// stream with after writing Reply.
	Close error

	// Verify is the db:verify request to send to the Authoritative server
	// of Verify.To (Action Forward).
	Verify Element

	// Pair and Outcome say which queue to flush or bounce (Action Settle).
	Pair    Pair
	Outcome Outcome

	// Answer is the typed element that settled a request: the db:verify
	// answer to hand on (Action Deliver), or the db:result answer behind a
	// Settle, for logging. Answers made up by Close carry
	// remote-server-timeout.
	Answer Element

	// Reason says why an element was ignored (Action Ignore).
	Reason error
}

func ignore(reason error) Decision { return Decision{Action: Ignore, Reason: reason} }

func reply(e Element) Decision { return Decision{Action: Reply, Reply: e} }

// grant records in which directions a pair is authorized on a stream.
type grant uint8

const (
	// grantRecv: the peer may send stanzas for the pair to us.
	grantRecv grant = 1 << iota
	// grantSend: we may send stanzas for the pair to the peer.
	grantSend
)

// verifyKey identifies a db:verify request we sent: its from, to and id.
type verifyKey struct {
	from, to, id string
}

// Stream is the dialback state of one XML stream: the domain pairs
// authorized on it and in which direction, the requests we sent on it and
// await answers for, and the requests we received on it and are verifying.
// It plays all three XEP-0220 roles: Initiating (SendResult, then Handle of
// the answer), Receiving (Handle of a db:result, Forward, Conclude) and
// Authoritative (Handle of a db:verify).
//
// A Stream does no I/O: the connection owner hands it the elements it reads
// and carries out the Decisions it returns. It is not safe for concurrent
// use; it belongs to the goroutine that owns the connection.
type Stream struct {
	cfg Config

	// Each map is made when its first entry comes, and the three that
	// empty again go when they do: a map keeps the table it grew to, and
	// most streams carry one pair, so that an idle stream would hold three
	// empty tables (issue 11).
	pairs    map[Pair]grant         // authorized pairs
	results  map[Pair]struct{}      // db:result we sent, by (our, their) domain
	verifies map[verifyKey]struct{} // db:verify we sent
	checking map[Pair]struct{}      // db:result received, awaiting Conclude

	rejected bool // a db:result of ours was answered invalid
	closed   bool
}

// NewStream returns the dialback state for a stream described by c. It
// panics if c.Secret or c.Serves is nil, which is a programming error.
func NewStream(c Config) *Stream {
	if c.Secret == nil || c.Serves == nil {
		panic("dialback: NewStream needs a Secret and a Serves function")
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPairs <= 0 {
		c.MaxPairs = DefaultMaxPairs
	}
	return &Stream{cfg: c}
}

// allow adds g to what p may do on the stream.
func (s *Stream) allow(p Pair, g grant) {
	if s.pairs == nil {
		s.pairs = make(map[Pair]grant)
	}
	s.pairs[p] |= g
}

// with adds k to the set m, making it if need be.
func with[K comparable](m map[K]struct{}, k K) map[K]struct{} {
	if m == nil {
		m = make(map[K]struct{})
	}
	m[k] = struct{}{}
	return m
}

// without removes k from the set m, and drops m once it is empty.
func without[K comparable](m map[K]struct{}, k K) map[K]struct{} {
	delete(m, k)
	if len(m) == 0 {
		return nil
	}
	return m
}

// ID returns the stream ID the Stream was created with.
func (s *Stream) ID() string { return s.cfg.ID }

// mayRequest reports whether we may send requests on the stream (and the
// peer may answer them), per XEP-0220 §2.2 and XEP-0288.
func (s *Stream) mayRequest() bool { return s.cfg.Outbound || s.cfg.Bidi }

// mayAnswer reports whether the peer may send requests on the stream.
func (s *Stream) mayAnswer() bool { return !s.cfg.Outbound || s.cfg.Bidi }

// SendResult starts dialback for the pair (from, to) as Initiating server:
// it returns the db:result request to write on this stream, with the key for
// this stream's ID, and remembers it so that the answer can be matched. Queue
// the stanzas for the pair until Handle returns the Settle decision for it.
//
// from must be served by this face; both are normalized as by Domain.
// Errors: ErrClosed, ErrRejected, ErrMisdirected, ErrNoStreamID, an address
// error, ErrNotServed, ErrAuthorized (nothing to do: send), ErrPending (keep
// queueing), ErrPendingLimit (use another stream).
func (s *Stream) SendResult(from, to string) (Element, error) {
	if err := s.checkSend(); err != nil {
		return Element{}, err
	}
	if s.cfg.ID == "" {
		return Element{}, ErrNoStreamID
	}
	p, err := pairOf(from, to)
	if err != nil {
		return Element{}, err
	}
	if !s.cfg.Serves(p.From) {
		return Element{}, ErrNotServed
	}
	if s.MaySend(p.From, p.To) {
		return Element{}, ErrAuthorized
	}
	if _, ok := s.results[p]; ok {
		return Element{}, ErrPending
	}
	if s.sent() >= s.cfg.MaxPending {
		return Element{}, ErrPendingLimit
	}
	s.results = with(s.results, p)
	return Element{
		Kind: KindResult,
		From: p.From,
		To:   p.To,
		Key:  s.cfg.Secret.Key(p.To, p.From, s.cfg.ID),
	}, nil
}

// SendVerify records that the db:verify request v (the Verify of a Forward
// decision from another stream) is sent on this stream, as Receiving server
// to the Authoritative server, and returns it to be written. The answer comes
// back through Handle as a Deliver decision.
//
// Errors: ErrClosed, ErrRejected, ErrMisdirected, ErrMalformed (v is not a
// db:verify request with id and key), an address error, ErrSameStream,
// ErrPending, ErrPendingLimit. On error the caller concludes the originating
// stream's verification itself (see Forward).
func (s *Stream) SendVerify(v Element) (Element, error) {
	if err := s.checkSend(); err != nil {
		return Element{}, err
	}
	if v.Kind != KindVerify || v.Type != TypeRequest || v.ID == "" || v.Key == "" {
		return Element{}, ErrMalformed
	}
	p, err := pairOf(v.From, v.To)
	if err != nil {
		return Element{}, err
	}
	v.From, v.To = p.From, p.To
	if v.ID == s.cfg.ID {
		return Element{}, ErrSameStream
	}
	k := verifyKey{from: v.From, to: v.To, id: v.ID}
	if _, ok := s.verifies[k]; ok {
		return Element{}, ErrPending
	}
	if s.sent() >= s.cfg.MaxPending {
		return Element{}, ErrPendingLimit
	}
	s.verifies = with(s.verifies, k)
	v.Condition = ""
	return v, nil
}

func (s *Stream) checkSend() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.rejected:
		return ErrRejected
	case !s.mayRequest():
		return ErrMisdirected
	}
	return nil
}

// sent is the number of our requests awaiting an answer.
func (s *Stream) sent() int { return len(s.results) + len(s.verifies) }

// Authorize records that the initiator of this stream authenticated as from
// for sending to to by other means than dialback: SASL EXTERNAL (XEP-0178),
// which covers the stream header's from and to. On an outbound stream it
// lets us send for the pair, on an inbound one it lets the peer send.
func (s *Stream) Authorize(from, to string) error {
	if s.closed {
		return ErrClosed
	}
	p, err := pairOf(from, to)
	if err != nil {
		return err
	}
	if s.cfg.Outbound {
		s.allow(p, grantSend)
	} else {
		s.allow(p, grantRecv)
	}
	return nil
}

// MayReceive reports whether the peer may send us stanzas from the domain
// from to the domain to on this stream (RFC 6120 §8.1.1.2, §8.1.2.2): the
// pair was authorized for that direction, or its reverse for the other one
// under bidi. The domains are compared in the normal form of Domain; passing
// them already normalized (lowercase ASCII) skips the normalization.
func (s *Stream) MayReceive(from, to string) bool {
	p, ok := s.lookup(from, to)
	return ok && (s.pairs[p]&grantRecv != 0 ||
		s.cfg.Bidi && s.pairs[Pair{From: p.To, To: p.From}]&grantSend != 0)
}

// MaySend reports whether we may send stanzas from the domain from to the
// domain to on this stream; see MayReceive.
func (s *Stream) MaySend(from, to string) bool {
	if s.rejected {
		return false
	}
	p, ok := s.lookup(from, to)
	return ok && (s.pairs[p]&grantSend != 0 ||
		s.cfg.Bidi && s.pairs[Pair{From: p.To, To: p.From}]&grantRecv != 0)
}

func (s *Stream) lookup(from, to string) (Pair, bool) {
	if s.closed {
		return Pair{}, false
	}
	p, err := pairOf(from, to)
	return p, err == nil
}

func pairOf(from, to string) (Pair, error) {
	f, err := Domain(from)
	if err != nil {
		return Pair{}, err
	}
	t, err := Domain(to)
	if err != nil {
		return Pair{}, err
	}
	return Pair{From: f, To: t}, nil
}

// Pending returns how many requests are outstanding on the stream: sent and
// awaiting an answer, or received and awaiting the Authoritative server. The
// connection owner can use it to run a timeout while it is not zero; when
// the timeout fires it closes the stream and calls Close.
func (s *Stream) Pending() int { return s.sent() + len(s.checking) }

// Handle decides what to do with a dialback element read from this stream,
// as returned by Parse:
//
//   - db:result request (we are Receiving): Reply with an error
//     (item-not-found if we do not serve its to, resource-constraint past
//     the limits), Reply valid (pair already authorized, or the peer's
//     certificate covers its from: XEP-0344), or Forward its key to the
//     Authoritative server; Ignore a repeat while one is being checked.
//   - db:result answer (we are Initiating): Settle, or Ignore if it answers
//     nothing we sent on this stream.
//   - db:verify request (we are Authoritative): Reply valid or invalid
//     after checking the key with our Secret, or item-not-found if we do
//     not serve its to.
//   - db:verify answer (we are Receiving): Deliver, or Ignore if unsolicited.
//
// Requests in the wrong direction for the stream (see Config.Bidi) are
// ignored with ErrMisdirected.
func (s *Stream) Handle(e Element) Decision {
	if s.closed {
		return ignore(ErrClosed)
	}
	switch {
	case e.Kind == KindResult && e.Type == TypeRequest:
		return s.receiveResult(e)
	case e.Kind == KindResult && e.Type <= TypeError:
		return s.settleResult(e)
	case e.Kind == KindVerify && e.Type == TypeRequest:
		return s.answerVerify(e)
	case e.Kind == KindVerify && e.Type <= TypeError:
		return s.deliverVerify(e)
	}
	return ignore(ErrMalformed)
}

// receiveResult is the Receiving server's handling of a db:result request
// (XEP-0220 §2.2.1).
func (s *Stream) receiveResult(e Element) Decision {
	if !s.mayAnswer() {
		return ignore(ErrMisdirected)
	}
	p := e.Pair()
	switch {
	case !s.cfg.Serves(p.To):
		// Not a stream error: other pairs may be using the stream.
		return reply(e.ErrorResponse(stanza.ItemNotFound))
	case s.MayReceive(p.From, p.To):
		// Proven on this stream already; a new key adds nothing.
		return reply(e.Response(TypeValid))
	}
	if _, ok := s.checking[p]; ok {
		// The answer to the first request will answer this one too.
		return ignore(ErrPending)
	}
	if len(s.checking) >= s.cfg.MaxPending || s.newPairs() >= s.cfg.MaxPairs {
		return reply(e.ErrorResponse(stanza.ResourceConstraint))
	}
	if s.cfg.CertValid != nil && s.cfg.CertValid(p.From) {
		s.allow(p, grantRecv)
		return reply(e.Response(TypeValid))
	}
	if s.cfg.ID == "" {
		return reply(e.ErrorResponse(stanza.NotAcceptable))
	}
	s.checking = with(s.checking, p)
	return Decision{Action: Forward, Verify: Element{
		Kind: KindVerify,
		From: p.To,
		To:   p.From,
		ID:   s.cfg.ID,
		Key:  e.Key,
	}}
}

// newPairs counts the pairs authorized or being authorized on the stream.
func (s *Stream) newPairs() int { return len(s.pairs) + len(s.checking) }

// settleResult is the Initiating server's handling of the answer to its
// db:result (XEP-0220 §2.1.1).
func (s *Stream) settleResult(e Element) Decision {
	p := e.Pair()
	if _, ok := s.results[p]; !ok {
		return ignore(ErrUnsolicited)
	}
	s.results = without(s.results, p)
	e.Key = ""
	d := Decision{Action: Settle, Pair: p, Answer: e}
	switch e.Type {
	case TypeValid:
		s.allow(p, grantSend)
		d.Outcome = Authorized
	case TypeInvalid:
		s.rejected = true
		d.Outcome = Rejected
	default:
		d.Outcome = Failed
	}
	return d
}

// answerVerify is the Authoritative server's handling of a db:verify request
// (XEP-0220 §2.2.2). The key was made for (Receiving = e.From, Originating =
// e.To, e.ID).
func (s *Stream) answerVerify(e Element) Decision {
	if !s.mayAnswer() {
		return ignore(ErrMisdirected)
	}
	if !s.cfg.Serves(e.To) {
		return reply(e.ErrorResponse(stanza.ItemNotFound))
	}
	if s.cfg.Secret.Verify(e.From, e.To, e.ID, e.Key) {
		return reply(e.Response(TypeValid))
	}
	return reply(e.Response(TypeInvalid))
}

// deliverVerify is the Receiving server's handling of the Authoritative
// server's answer to a db:verify (XEP-0220 §2.1.2).
func (s *Stream) deliverVerify(e Element) Decision {
	k := verifyKey{from: e.To, to: e.From, id: e.ID}
	if _, ok := s.verifies[k]; !ok {
		return ignore(ErrUnsolicited)
	}
	s.verifies = without(s.verifies, k)
	e.Key = ""
	return Decision{Action: Deliver, Answer: e}
}

// Conclude finishes, as Receiving server, the check of a db:result that
// Handle forwarded from this stream. answer is the Authoritative server's
// db:verify answer from a Deliver decision of another stream, or the
// failure the connection owner made with Verify.ErrorResponse when the
// Authoritative server could not be reached. It returns a Reply with the
// db:result answer for the peer (XEP-0220 §2.2.1 and its table of dialback
// error conditions):
//
//   - valid: the pair is authorized; type='valid'.
//   - invalid: type='invalid' and Close with not-authorized, or, if other
//     pairs are authorized or being checked on the stream, a forbidden error
//     that spares them.
//   - error: remote-connection-failed, remote-server-not-found and
//     remote-server-timeout pass through; any other condition the
//     Authoritative server sent becomes remote-server-not-found.
//
// An answer that matches no check in progress on this stream (pair and
// stream ID) is ignored with ErrUnsolicited.
func (s *Stream) Conclude(answer Element) Decision {
	if s.closed {
		return ignore(ErrClosed)
	}
	if answer.Kind != KindVerify || answer.Type == TypeRequest || answer.Type > TypeError {
		return ignore(ErrMalformed)
	}
	p := answer.Pair()
	if _, ok := s.checking[p]; !ok || answer.ID != s.cfg.ID {
		return ignore(ErrUnsolicited)
	}
	s.checking = without(s.checking, p)
	// What the Initiating server sent, to answer it.
	req := Element{Kind: KindResult, From: p.From, To: p.To}
	switch answer.Type {
	case TypeValid:
		s.allow(p, grantRecv)
		return reply(req.Response(TypeValid))
	case TypeInvalid:
		if s.newPairs() > 0 {
			return reply(req.ErrorResponse(stanza.Forbidden))
		}
		d := reply(req.Response(TypeInvalid))
		d.Close = stream.NotAuthorized
		return d
	}
	switch answer.Condition {
	case RemoteConnectionFailed, stanza.RemoteServerNotFound, stanza.RemoteServerTimeout,
		// The Receiving server's own refusals (its caps, its policy) keep
		// their condition: the Initiating server should know it was not
		// the Authoritative server that failed.
		stanza.ResourceConstraint, stanza.PolicyViolation, stanza.NotAuthorized:
		return reply(req.ErrorResponse(answer.Condition))
	}
	return reply(req.ErrorResponse(stanza.RemoteServerNotFound))
}

// Close marks the stream as gone and fails every request we sent on it
// that is still unanswered (XEP-0220 §2.1: a closed stream counts as an
// error): a Settle decision with Outcome Failed for each db:result, and a
// Deliver decision with a remote-server-timeout answer for each db:verify,
// to be carried out like any other. Checks of requests received on the
// stream are abandoned: their answers find no stream and are dropped.
// After Close, Handle and Conclude ignore everything, the Send methods fail
// with ErrClosed and no pair is authorized. Close is idempotent.
func (s *Stream) Close() []Decision {
	if s.closed {
		return nil
	}
	s.closed = true

	results := make([]Pair, 0, len(s.results))
	for p := range s.results {
		results = append(results, p)
	}
	slices.SortFunc(results, func(a, b Pair) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	verifies := make([]verifyKey, 0, len(s.verifies))
	for k := range s.verifies {
		verifies = append(verifies, k)
	}
	slices.SortFunc(verifies, func(a, b verifyKey) int {
		return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to), cmp.Compare(a.id, b.id))
	})

	var ds []Decision
	for _, p := range results {
		req := Element{Kind: KindResult, From: p.From, To: p.To}
		ds = append(ds, Decision{
			Action:  Settle,
			Pair:    p,
			Outcome: Failed,
			Answer:  req.ErrorResponse(stanza.RemoteServerTimeout),
		})
	}
	for _, k := range verifies {
		req := Element{Kind: KindVerify, From: k.from, To: k.to, ID: k.id}
		ds = append(ds, Decision{
			Action: Deliver,
			Answer: req.ErrorResponse(stanza.RemoteServerTimeout),
		})
	}
	clear(s.pairs)
	clear(s.results)
	clear(s.verifies)
	clear(s.checking)
	return ds
}
