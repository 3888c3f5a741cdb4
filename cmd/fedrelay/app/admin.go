package app

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startAdmin serves /metrics (Prometheus) and /healthz on admin.listen, and
// net/http/pprof under /debug/pprof/ when admin.pprof is set.
func (r *Relay) startAdmin() error {
	l, err := r.listen("tcp", r.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rs, ss := r.Router.Stats(), r.Server.Stats()
	counter := func(name, help string, f func() int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "fedrelay", Name: name, Help: help},
			func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() int64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fedrelay", Name: name, Help: help},
			func() float64 { return float64(f()) }))
	}
	reg.MustRegister(newMetricsCollector(r))
	counter("stanzas_accepted_total", "Stanzas read from authenticated streams.", rs.Accepted.Load)
	counter("stanzas_delivered_total", "Stanzas handed over to their next hop: acknowledged by the peer on streams with XEP-0198 stream management (see fedrelay_stanzas_acknowledged_total), written to the socket on the others (handed to TCP: a stanza written to a connection that dies unread is lost).", rs.Delivered.Load)
	counter("stanzas_acknowledged_total", "Delivered stanzas the peer acknowledged (XEP-0198); a stream that dies sends what it left unacknowledged again over a new stream.", rs.Acknowledged.Load)
	counter("stanzas_bounced_total", "Stanzas answered with an error stanza.", rs.Bounced.Load)
	counter("stanzas_dropped_total", "Stanzas dropped by rule (errors, IQ results).", rs.Dropped.Load)
	counter("stanzas_refused_total", "Stanzas refused by policy or routing rules.", rs.Refused.Load)
	counter("breaker_bounces_total", "Bounces made while a circuit breaker was open.", rs.BreakerBounces.Load)
	counter("streams_inbound_total", "Inbound connections accepted on either face (before any stream header; those refused at once are in fedrelay_streams_refused_total).", ss.InboundTotal.Load)
	counter("streams_outbound_total", "Outbound links started (one per domain pair; a link whose setup fails counts too, see fedrelay_stream_setups_total). Dialback verification connections are not counted.", ss.OutboundTotal.Load)
	counter("streams_refused_total", "Inbound connections closed at once by limits.max_streams(_per_ip) or max_internal_streams.", ss.InboundRefused.Load)
	counter("links_refused_total", "Outbound streams to remote domains not started because of limits.max_links or limits.link_rate (their stanzas bounced with resource-constraint).", ss.LinksRefused.Load)
	counter("links_multiplexed_total", "Outbound links whose pair was authenticated on, and carried by, the stream of another internal domain to the same remote domain (limits.multiplex, XEP-0220 §4.3).", ss.Multiplexed.Load)
	counter("links_multiplex_refused_total", "Outbound links whose peer refused their domain on a shared stream; they opened a stream of their own.", ss.MultiplexRefused.Load)
	counter("streams_evicted_total", "Federation-face connections not authenticated yet, closed to admit a new one at limits.max_streams.", ss.InboundEvicted.Load)
	counter("dialback_verifications_refused_total", "db:result requests answered at once with resource-constraint because limits.verifications or verifications_per_ip were reached.", ss.VerificationsRefused.Load)
	counter("dialback_ignored_total", "Dialback elements dropped as unsolicited or repeated.", ss.DialbackIgnored.Load)
	gauge("streams_inbound_open", "Inbound connections open (authenticated or not).", ss.InboundOpen.Load)
	gauge("streams_outbound_open", "Outbound links running (being set up, up, or closing).", ss.OutboundOpen.Load)
	gauge("bidi_inbound_open", "Inbound streams open whose peers asked for XEP-0288 bidi.", ss.BidiInbound.Load)
	gauge("bidi_links_open", "Links open that ride a peer's bidirectional inbound stream (no connection of their own; not in fedrelay_streams_outbound_open).", ss.BidiLinks.Load)
	gauge("bidi_outbound_open", "Outbound links on which the relay asked for XEP-0288 bidi (the peer's stanzas come back on them).", r.Server.BidiOutbound)
	counter("bidi_refused_total", "Outbound streams closed because the peer sent a stanza on them without bidi, or one bidi does not allow (another pair, bad addressing).", ss.ReverseRefused.Load)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if r.cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	r.apiRoutes(mux)
	h, err := r.authorize(mux)
	if err != nil {
		l.Close()
		return err
	}
	r.admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.admin.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.errc <- fmt.Errorf("admin: %w", err)
		}
	}()
	r.mu.Lock()
	r.adminAddr = l.Addr().String()
	r.mu.Unlock()
	r.log.Info("admin endpoint", "addr", l.Addr().String())
	return nil
}
