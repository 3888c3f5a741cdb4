package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// The world of a scenario, all on loopback (127.61.0.0/16):
//
//	outside (peer.Server, every *.remote.bench domain) ──▶ relay federation face ──▶ inside (a.bench, the route)
//	inside ──▶ relay internal face ──▶ outside (found by SRV in the bench's nameserver)
//
// The relay is a separate process built from this module. The inside and
// outside servers verify each other's dialback keys for real: inside asks
// the relay's internal face (the Authoritative server of every remote domain
// there), outside the relay's federation face, and the relay asks outside
// (through DNS) and inside (its route).

// Domain names of the world.
const (
	InternalDomain = "a.bench"
	remoteSuffix   = ".remote.bench"
)

// remote returns the name of a generated remote domain.
func remote(prefix string, i int) string { return prefix + strconv.Itoa(i) + remoteSuffix }

// Options are the run's settings, common to every scenario.
type Options struct {
	// Quick runs each scenario small (under 30 s), once.
	Quick bool
	// Reps is the number of repetitions in full mode (default 3).
	Reps int
	// RelayBin is the relay binary; "" builds cmd/fedrelay into WorkDir.
	RelayBin string
	// WorkDir holds configurations, logs and profiles; "" makes a temporary
	// one.
	WorkDir string
	// Prosody runs the Prosody reference where a scenario has one (when
	// Prosody can run here).
	Prosody bool
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

func (o *Options) reps() int {
	if o.Quick {
		return 1
	}
	if o.Reps <= 0 {
		return 3
	}
	return o.Reps
}

// ipSeq hands out loopback addresses of the bench, one per listener role.
var ipSeq atomic.Int32

func nextIP() string {
	n := ipSeq.Add(1)
	return fmt.Sprintf("127.61.%d.%d", 1+n/250, 1+n%250)
}

// freeAddr returns ip:port with a port free right now.
func freeAddr(ip string) (string, error) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// raiseFileLimit lifts this process's open-file limit so that the idle
// scenario's 10,000 + 10,000 streams fit (each costs the relay and this
// process a descriptor or two): to 262,144 when privileged, else to the
// hard limit. The relay, started from this process, inherits it.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	const want = 1 << 18
	if l.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// World is one relay with its inside and outside servers and nameserver.
type World struct {
	opts  *Options
	dir   string
	DNS   *Nameserver
	Relay *Relay

	Inside, Outside *peer.Server
	// InsideAddr is the inside server's listener (the relay's route),
	// OutsideAddr the outside server's (every remote domain's SRV target).
	InsideAddr, OutsideAddr string
	// In counts what the inside server receives (stanzas from the
	// federation, bounces for its users), Out what the outside server
	// receives.
	In, Out *Sink

	authority sync.Map // domain → host:port of its Authoritative server, beyond the relay
}

// SetAuthoritative makes the inside and outside servers check keys of
// domain with the server at addr instead of the relay.
func (w *World) SetAuthoritative(domain, addr string) { w.authority.Store(domain, addr) }

// NewWorld starts a nameserver, the two servers and a relay.
func NewWorld(ctx context.Context, opts *Options, dir, bin string, adjust func(*RelayConfig)) (*World, error) {
	w := &World{opts: opts, dir: dir, In: newSink(), Out: newSink()}
	ok := false
	defer func() {
		if !ok {
			w.Close()
		}
	}()
	var err error
	if w.DNS, err = StartNameserver(nextIP() + ":53"); err != nil {
		// Port 53 needs privileges; any port will do for the relay.
		if w.DNS, err = StartNameserver(nextIP() + ":5353"); err != nil {
			return nil, fmt.Errorf("nameserver: %w", err)
		}
	}
	cfg := RelayConfig{Domains: map[string]string{}}
	if cfg.FederationAddr, err = freeAddr(nextIP()); err != nil {
		return nil, err
	}
	if cfg.InternalAddr, err = freeAddr(nextIP()); err != nil {
		return nil, err
	}
	if cfg.AdminAddr, err = freeAddr(nextIP()); err != nil {
		return nil, err
	}
	cfg.DNS = w.DNS.Addr
	var b [24]byte
	rand.Read(b[:])
	cfg.Secret = hex.EncodeToString(b[:])

	inL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		return nil, err
	}
	outL, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		inL.Close()
		return nil, err
	}
	w.InsideAddr, w.OutsideAddr = inL.Addr().String(), outL.Addr().String()
	cfg.Domains[InternalDomain] = w.InsideAddr
	fed, internal := cfg.FederationAddr, cfg.InternalAddr
	authority := func(d, dflt string) string {
		if a, ok := w.authority.Load(d); ok {
			return a.(string)
		}
		return dflt
	}
	w.Inside = &peer.Server{
		Domains:       []string{InternalDomain},
		Authoritative: func(d string) string { return authority(d, internal) },
		Timeout:       20 * time.Second,
		Handler:       w.In.handle,
	}
	w.Outside = &peer.Server{
		Hosts:         func(d string) bool { return strings.HasSuffix(d, remoteSuffix) },
		Authoritative: func(d string) string { return authority(d, fed) },
		Timeout:       20 * time.Second,
		Handler:       w.Out.handle,
	}
	go w.Inside.Serve(inL)
	go w.Outside.Serve(outL)
	outside := w.OutsideAddr
	w.DNS.SetLookup(func(d string) (Answer, string, bool) {
		if strings.HasSuffix(d, remoteSuffix) {
			return Serve, outside, true
		}
		return NXDomain, "", false
	})
	if adjust != nil {
		adjust(&cfg)
	}
	if w.Relay, err = StartRelay(ctx, bin, dir, cfg); err != nil {
		return nil, err
	}
	ok = true
	return w, nil
}

// Close stops everything the world started.
func (w *World) Close() {
	if w.Relay != nil {
		w.Relay.Stop()
	}
	if w.Inside != nil {
		w.Inside.Close()
	}
	if w.Outside != nil {
		w.Outside.Close()
	}
	if w.DNS != nil {
		w.DNS.Close()
	}
}

// InboundStream opens an authenticated stream from remote domain from to the
// relay's federation face (addressing the internal domain).
func (w *World) InboundStream(ctx context.Context, from string) (*peer.Outbound, error) {
	return w.Outside.Dial(ctx, w.Relay.Cfg.FederationAddr, from, InternalDomain)
}

// OutboundStream opens an authenticated stream from the internal domain to
// the relay's internal face, addressing remote domain to; Authorize adds
// more remote domains to it.
func (w *World) OutboundStream(ctx context.Context, to string) (*peer.Outbound, error) {
	return w.Inside.Dial(ctx, w.Relay.Cfg.InternalAddr, InternalDomain, to)
}

// Sink counts the stanzas a server receives and, when asked, the latency
// of each from the send time carried in its id.
type Sink struct {
	Stanzas atomic.Int64
	Errors  atomic.Int64 // type='error' stanzas (bounces)

	mu      sync.Mutex
	record  bool
	lat     Samples
	onError func(id, raw []byte, lat time.Duration)
}

func newSink() *Sink { return &Sink{} }

// handle is the peer.Server Handler: it runs on the connection's reader
// goroutine and must not keep el.
func (s *Sink) handle(_ *peer.Inbound, el *wire.Element) {
	if !el.IsStanza() {
		return
	}
	isErr := string(el.Type) == "error"
	if isErr {
		s.Errors.Add(1)
	} else {
		s.Stanzas.Add(1)
	}
	if t, ok := sentAt(el.ID); ok {
		d := time.Duration(time.Now().UnixNano() - t)
		s.mu.Lock()
		if isErr {
			if s.onError != nil {
				s.onError(el.ID, el.Raw, d)
			}
		} else if s.record {
			s.lat.AddSent(t, d)
		}
		s.mu.Unlock()
	}
}

// Record starts (or stops) keeping latencies, and returns what was kept.
// When it starts, it makes room for n latencies beforehand (see
// Samples.Reserve).
func (s *Sink) Record(on bool, n int) Samples {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lat
	s.lat = Samples{}
	if on {
		s.lat.Reserve(n)
	}
	s.record = on
	return out
}

// OnError sets a function called, under the sink's lock, for each error
// stanza whose id carries a send time, with its raw bytes (valid only
// during the call).
func (s *Sink) OnError(fn func(id, raw []byte, lat time.Duration)) {
	s.mu.Lock()
	s.onError = fn
	s.mu.Unlock()
}

// Stanza ids made by the bench carry their send time: "t" + Unix
// nanoseconds in decimal + "-" + anything.
func stampID(dst []byte, t time.Time, tag string) []byte {
	dst = append(dst, 't')
	dst = strconv.AppendInt(dst, t.UnixNano(), 10)
	dst = append(dst, '-')
	return append(dst, tag...)
}

// sentAt reads the send time from an id made by stampID, without
// allocating.
func sentAt(id []byte) (int64, bool) {
	if len(id) < 2 || id[0] != 't' {
		return 0, false
	}
	var n int64
	i := 1
	for ; i < len(id) && id[i] >= '0' && id[i] <= '9'; i++ {
		n = n*10 + int64(id[i]-'0')
	}
	return n, i > 1
}

// body is the filler that makes a message about 300 bytes.
var body = strings.Repeat("benchmark text ", 12)

// appendMessage appends a ~300-byte message stanza.
func appendMessage(dst []byte, from, to string, id []byte) []byte {
	dst = append(dst, "<message type='chat' from='"...)
	dst = append(dst, from...)
	dst = append(dst, "' to='"...)
	dst = append(dst, to...)
	dst = append(dst, "' id='"...)
	dst = append(dst, id...)
	dst = append(dst, "'><body>"...)
	dst = append(dst, body...)
	return append(dst, "</body></message>"...)
}

// appendPresence appends a directed presence.
func appendPresence(dst []byte, from, to string, id []byte) []byte {
	dst = append(dst, "<presence from='"...)
	dst = append(dst, from...)
	dst = append(dst, "' to='"...)
	dst = append(dst, to...)
	dst = append(dst, "' id='"...)
	dst = append(dst, id...)
	return append(dst, "'><show>away</show><status>in a meeting</status></presence>"...)
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// parallel runs fn(i) for i in [0,n) with at most width at once and returns
// the first error.
func parallel(n, width int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, width)
	)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return first
}

func mkdir(dir, name string) (string, error) {
	p := dir + "/" + name
	return p, os.MkdirAll(p, 0o755)
}
