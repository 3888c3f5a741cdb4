package demo

import (
	"context"
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// nameserver is the DNS of the demo's world, which has no domains: every
// query is answered NXDOMAIN. The relays reach each other through
// dns.overrides and ask it only about other domains, so that a domain that
// does not exist fails at once with remote-server-not-found, without a query
// leaving the machine.
type nameserver struct {
	// Addr is the UDP host:port, for dns.servers.
	Addr string
	srv  *dns.Server
	done chan struct{}
}

// startNameserver listens on a UDP port of 127.0.0.1 chosen by the system.
func startNameserver() (*nameserver, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo nameserver: %w", err)
	}
	started := make(chan struct{})
	ns := &nameserver{Addr: pc.LocalAddr().String(), done: make(chan struct{})}
	ns.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(nxdomain), NotifyStartedFunc: func() { close(started) }}
	errc := make(chan error, 1)
	go func() {
		defer close(ns.done)
		errc <- ns.srv.ActivateAndServe()
	}()
	select {
	case <-started:
		return ns, nil
	case err := <-errc:
		pc.Close()
		return nil, fmt.Errorf("demo nameserver: %w", err)
	}
}

// nxdomain answers every question with NXDOMAIN and the SOA record of a
// root zone that holds nothing, whose minimum makes the negative answer
// cacheable for a minute (RFC 2308).
func nxdomain(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeNameError)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Ns = []dns.RR{&dns.SOA{
		Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns.demo.invalid.",
		Mbox:    "hostmaster.demo.invalid.",
		Serial:  1,
		Refresh: 60, Retry: 60, Expire: 60, Minttl: 60,
	}}
	w.WriteMsg(m)
}

// shutdown stops the nameserver and waits for it.
func (ns *nameserver) shutdown(ctx context.Context) error {
	err := ns.srv.ShutdownContext(ctx)
	<-ns.done
	return err
}
