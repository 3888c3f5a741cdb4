package app

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s"
)

// The admin API: JSON over HTTP on admin.listen, for `fedrelay status`,
// `streams`, `breakers`, `close`, `policy check`, `reload` and `queue`, and
// for the status page. Every endpoint but /healthz needs the bearer token of
// admin.token_file when one is set.

// Status is the answer of GET /api/status.
type Status struct {
	Version string        `json:"version"`
	Uptime  time.Duration `json:"uptime_ns"`
	Ready   bool          `json:"ready"`
	// Streams counts the streams by face and direction
	// ("federation/in", "internal/out", ...).
	Streams map[string]int `json:"streams"`
	// BreakersOpen lists the domains whose breaker is open.
	BreakersOpen []string `json:"breakers_open"`
	// Queued is what waits in links, in stanzas and bytes.
	Queued      int `json:"queued"`
	QueuedBytes int `json:"queued_bytes"`
	// Counters are the router's totals since start.
	Counters map[string]int64 `json:"counters"`
	// LastReload is when the configuration was last reloaded (zero: never)
	// and LastReloadError why the last attempt was refused ("" if it was
	// applied).
	LastReload      time.Time `json:"last_reload,omitzero"`
	LastReloadError string    `json:"last_reload_error,omitempty"`
}

// QueueEntry is one link with stanzas waiting (GET /api/queue).
type QueueEntry struct {
	Face         string        `json:"face"`
	From         string        `json:"from"`
	To           string        `json:"to"`
	Up           bool          `json:"up"`
	Stanzas      int           `json:"stanzas"`
	Bytes        int           `json:"bytes"`
	OldestQueued time.Duration `json:"oldest_queued_ns"`
}

// PolicyCheck is the answer of GET /api/policy/check: what the policy in
// force decides for a stanza of a kind between our domains and a remote
// one, and why.
type PolicyCheck struct {
	Domain    string `json:"domain"`
	Direction string `json:"direction"`
	Kind      string `json:"kind"`
	Size      int    `json:"size"`
	Auth      string `json:"auth"`
	TLS       bool   `json:"tls"`
	Allowed   bool   `json:"allowed"`
	// Stage is where it was decided: "domain", "stream" or "stanza".
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	Rule   string `json:"rule"`
	// StreamError is the stream error (or dialback error) a refused stream
	// gets; StanzaError and StanzaErrorType the error a sender gets for a
	// refused stanza ("" when the stanza is dropped without an answer).
	StreamError     string `json:"stream_error,omitempty"`
	StanzaError     string `json:"stanza_error,omitempty"`
	StanzaErrorType string `json:"stanza_error_type,omitempty"`
	// Trust is how the domain must authenticate (secure_auth, insecure,
	// pins).
	SecureAuth bool    `json:"secure_auth"`
	Pins       int     `json:"pins"`
	TrustRule  string  `json:"trust_rule,omitempty"`
	RatePerSec float64 `json:"rate_per_second,omitempty"`
	RateBurst  int     `json:"rate_burst,omitempty"`
}

// ReloadResult is the answer of POST /api/reload.
type ReloadResult struct {
	// Outcome is "applied" or "refused".
	Outcome string `json:"outcome"`
	// Reasons are why it was refused, one per problem.
	Reasons []string `json:"reasons,omitempty"`
	// ClosedStreams counts the streams the new policy closed.
	ClosedStreams int `json:"closed_streams"`
	// Restart lists the sections that changed but apply only after a
	// restart.
	Restart []string `json:"restart_needed,omitempty"`
}

// apiRoutes adds the API and the status page to mux.
func (r *Relay) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.ready.Load() || r.draining.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.status()) })
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.Server.Streams())
	})
	mux.HandleFunc("POST /api/streams/close", func(w http.ResponseWriter, req *http.Request) {
		domain, err := config.NormalizeDomain(req.URL.Query().Get("domain"))
		if err != nil {
			apiError(w, http.StatusBadRequest, "domain: "+err.Error())
			return
		}
		cond := stream.SystemShutdown
		if c := req.URL.Query().Get("condition"); c != "" {
			var ok bool
			if cond, ok = streamErrors[c]; !ok {
				apiError(w, http.StatusBadRequest, "condition: "+c+" is not one of "+strings.Join(slices.Sorted(maps.Keys(streamErrors)), ", "))
				return
			}
		}
		n := r.Server.CloseDomain(domain, cond)
		r.log.Info("streams closed by the operator", "domain", domain, "condition", cond.Err, "streams", n)
		writeJSON(w, http.StatusOK, map[string]any{"domain": domain, "closed": n})
	})
	mux.HandleFunc("GET /api/breakers", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.Router.Breakers())
	})
	mux.HandleFunc("POST /api/breakers/{domain}/reset", func(w http.ResponseWriter, req *http.Request) {
		domain, err := config.NormalizeDomain(req.PathValue("domain"))
		if err != nil {
			apiError(w, http.StatusBadRequest, "domain: "+err.Error())
			return
		}
		if !r.Router.ResetBreaker(domain) {
			apiError(w, http.StatusNotFound, "no breaker for "+domain)
			return
		}
		r.log.Info("breaker reset by the operator", "domain", domain)
		writeJSON(w, http.StatusOK, map[string]any{"domain": domain, "state": "closed"})
	})
	mux.HandleFunc("POST /api/reload", func(w http.ResponseWriter, _ *http.Request) {
		res := r.reloadFromSource("admin API")
		code := http.StatusOK
		if res.Outcome != "applied" {
			code = http.StatusUnprocessableEntity
		}
		writeJSON(w, code, res)
	})
	mux.HandleFunc("GET /api/policy/check", func(w http.ResponseWriter, req *http.Request) {
		pc, err := r.policyCheck(req)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, pc)
	})
	mux.HandleFunc("GET /api/queue", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.queue()) })
	mux.HandleFunc("GET /{$}", r.statusPage)
}

// authorize wraps the admin handler: with admin.token_file set, every path
// but /healthz needs "Authorization: Bearer <token>".
func (r *Relay) authorize(next http.Handler) (http.Handler, error) {
	file := r.cfg.Admin.TokenFile
	if file == "" {
		return next, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) == 0 {
		return nil, errors.New("admin.token_file: empty token")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" {
			next.ServeHTTP(w, req)
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fedrelay"`)
			apiError(w, http.StatusUnauthorized, "a valid bearer token is required (admin.token_file)")
			return
		}
		next.ServeHTTP(w, req)
	}), nil
}

func (r *Relay) status() Status {
	st := Status{Version: r.opts.Version, Uptime: time.Since(r.started), Ready: r.ready.Load() && !r.draining.Load(),
		Streams: map[string]int{}, BreakersOpen: []string{}}
	for _, s := range r.Server.Streams() {
		st.Streams[s.Face+"/"+s.Direction]++
		st.Queued += s.Queue
		st.QueuedBytes += s.QueueBytes
	}
	for _, b := range r.Router.Breakers() {
		if b.State == "open" {
			st.BreakersOpen = append(st.BreakersOpen, b.Domain)
		}
	}
	rs := r.Router.Stats()
	st.Counters = map[string]int64{
		"accepted": rs.Accepted.Load(), "delivered": rs.Delivered.Load(), "bounced": rs.Bounced.Load(),
		"dropped": rs.Dropped.Load(), "refused": rs.Refused.Load(), "breaker_bounces": rs.BreakerBounces.Load(),
		"acknowledged": rs.Acknowledged.Load(),
	}
	r.mu.Lock()
	st.LastReload, st.LastReloadError = r.lastReload, r.lastReloadErr
	r.mu.Unlock()
	return st
}

func (r *Relay) queue() []QueueEntry {
	out := []QueueEntry{}
	for _, s := range r.Server.Streams() {
		if s.Direction != "out" || s.Queue == 0 {
			continue
		}
		e := QueueEntry{Face: s.Face, Up: s.Up, Stanzas: s.Queue, Bytes: s.QueueBytes, OldestQueued: s.OldestQueued}
		e.From, e.To = s.Local[0], s.Remote[0]
		if s.Face == policy.Internal.String() {
			e.From, e.To = s.Remote[0], s.Local[0]
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b QueueEntry) int { return int(b.OldestQueued - a.OldestQueued) })
	return out
}

// policyCheck answers the dry run: the domain, stream and stanza decisions
// of the policy in force, in the order a real stanza meets them.
func (r *Relay) policyCheck(req *http.Request) (PolicyCheck, error) {
	q := req.URL.Query()
	domain, err := config.NormalizeDomain(q.Get("domain"))
	if err != nil {
		return PolicyCheck{}, fmt.Errorf("domain: %w", err)
	}
	pc := PolicyCheck{Domain: domain, Direction: "in", Kind: "message", Auth: "dialback", TLS: true}
	if v := q.Get("dir"); v != "" {
		pc.Direction = v
	}
	dir := policy.In
	switch pc.Direction {
	case "in":
	case "out":
		dir = policy.Out
	default:
		return pc, errors.New("dir: must be in or out")
	}
	if v := q.Get("kind"); v != "" {
		pc.Kind = v
	}
	st := policy.Stanza{}
	switch pc.Kind {
	case "message":
		st.Kind, st.Type = policy.Message, "chat"
	case "presence":
		st.Kind = policy.Presence
	case "iq":
		st.Kind, st.Type = policy.IQ, "get"
	case "subscribe":
		st.Kind, st.Type = policy.Presence, "subscribe"
	default:
		return pc, errors.New("kind: must be message, presence, iq or subscribe")
	}
	st.From = "user@" + domain
	if dir == policy.Out {
		st.From = "user@" + r.Config().Domains[0].Name
	}
	if v := q.Get("size"); v != "" {
		if pc.Size, err = strconv.Atoi(v); err != nil || pc.Size < 0 {
			return pc, errors.New("size: must be a number of bytes")
		}
	}
	st.Size = max(pc.Size, 200)
	if pc.Size == 0 {
		pc.Size = st.Size
	}
	auth := policy.AuthDialback
	if v := q.Get("auth"); v != "" {
		pc.Auth = v
	}
	switch pc.Auth {
	case "dialback":
	case "external":
		auth = policy.AuthExternal
	default:
		return pc, errors.New("auth: must be dialback or external")
	}
	if v := q.Get("tls"); v != "" {
		pc.TLS = v == "1" || v == "true"
	}

	p := r.Router.Policy()
	t := p.Trust(domain)
	pc.SecureAuth, pc.Pins, pc.TrustRule = t.Secure, len(t.Pins), t.Rule
	if d := p.Domain(domain); !d.Allowed {
		pc.Stage, pc.Reason, pc.Rule, pc.StreamError = "domain", d.Reason.String(), d.Rule, d.Condition.Err
		return pc, nil
	}
	sd := p.Stream(policy.StreamState{Face: policy.Federation, Dir: dir, Remote: domain, TLS: pc.TLS, Auth: auth})
	if !sd.Allowed {
		pc.Stage, pc.Reason, pc.Rule, pc.StreamError = "stream", sd.Reason.String(), sd.Rule, sd.Condition.Err
		return pc, nil
	}
	d := p.Stanza(domain, dir, st)
	pc.RatePerSec, pc.RateBurst = d.Rate()
	pc.Stage, pc.Allowed, pc.Reason, pc.Rule = "stanza", d.Allowed, d.Reason.String(), d.Rule
	if !d.Allowed && d.Send {
		pc.StanzaError, pc.StanzaErrorType = string(d.Condition()), string(d.ErrorType())
	}
	return pc, nil
}

// streamErrors are the conditions an operator may close streams with.
var streamErrors = map[string]stream.Error{
	"system-shutdown":     stream.SystemShutdown,
	"policy-violation":    stream.PolicyViolation,
	"not-authorized":      stream.NotAuthorized,
	"reset":               stream.Reset,
	"undefined-condition": stream.UndefinedCondition,
	"connection-timeout":  stream.ConnectionTimeout,
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// reloadFromSource reads the configuration again (Options.Load) and applies
// it, for the admin API; the outcome is logged and remembered for
// /api/status.
func (r *Relay) reloadFromSource(trigger string) ReloadResult {
	if r.opts.Load == nil {
		return ReloadResult{Outcome: "refused", Reasons: []string{"this relay has no configuration source to reload from"}}
	}
	cfg, err := r.opts.Load()
	if err == nil {
		var res ReloadResult
		if res, err = r.reload(cfg); err == nil {
			return res
		}
	}
	r.log.Error("reload refused; the running configuration stays", "trigger", trigger, "err", err)
	r.mu.Lock()
	r.lastReload, r.lastReloadErr = time.Now(), err.Error()
	r.mu.Unlock()
	var reasons []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			reasons = append(reasons, line)
		}
	}
	return ReloadResult{Outcome: "refused", Reasons: reasons}
}

// restartSections lists the sections of cfg that differ from old and apply
// only after a restart.
func restartSections(old, cfg *config.Config) []string {
	var out []string
	for _, s := range []struct {
		name     string
		old, new any
	}{
		{"federation", old.Federation, cfg.Federation}, {"internal", old.Internal, cfg.Internal}, {"tls", old.TLS, cfg.TLS},
		{"dns", old.DNS, cfg.DNS}, {"limits", old.Limits, cfg.Limits}, {"admin", old.Admin, cfg.Admin},
		{"dialback", old.Dialback.Secret.Reveal(), cfg.Dialback.Secret.Reveal()}, {"log", old.Log, cfg.Log},
	} {
		if fmt.Sprint(s.old) != fmt.Sprint(s.new) {
			out = append(out, s.name)
		}
	}
	return out
}

// The types the API shares with the CLI.
type (
	// StreamInfo is s2s.StreamInfo.
	StreamInfo = s2s.StreamInfo
	// BreakerInfo is routing.BreakerInfo.
	BreakerInfo = routing.BreakerInfo
)
