package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/test/bench/prosody"
)

// prosodyDomain is the domain the reference Prosody hosts.
const prosodyDomain = "p.bench"

// prosodyRef is Debian's Prosody doing the relay's job per stanza in the
// same run: S2S streams from the outside server come in (dialback, Prosody
// verifying each key with the outside server), and every message goes to
// a user who is online over c2s.
type prosodyRef struct {
	w       *World
	srv     *prosody.Server
	bob     *prosody.Client
	streams map[int][]*peer.Outbound
	ln      net.Listener
}

// startProsodyRef starts the reference when the options ask for it and
// Prosody can run here; otherwise it returns nil and why not.
func startProsodyRef(ctx context.Context, e *env, w *World) (*prosodyRef, error) {
	if !e.opts.Prosody {
		return nil, fmt.Errorf("disabled (--prosody=false)")
	}
	if err := prosody.Available(); err != nil {
		return nil, err
	}
	// Prosody finds the outside server's domains through its hosts file, on
	// the S2S port: the outside server listens there too.
	oip := nextIP()
	ln, err := net.Listen("tcp", oip+":5269")
	if err != nil {
		return nil, err
	}
	go w.Outside.Serve(ln)
	hosts := map[string]string{}
	for i := 0; i < 4; i++ {
		hosts[remote("pr", i)] = oip
	}
	srv, err := prosody.Start(ctx, prosody.Options{
		Dir:    "", // its own temporary folder, which the prosody user can reach
		Domain: prosodyDomain,
		IP:     nextIP(),
		Hosts:  hosts,
		Users:  map[string]string{"bob": "bobpassword"},
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Prosody authenticates its own stream to the outside server (db:result
	// from p.bench) before it sends db:verify there: the outside server
	// checks that key with Prosody.
	w.SetAuthoritative(prosodyDomain, srv.S2SAddr())
	p := &prosodyRef{w: w, srv: srv, streams: map[int][]*peer.Outbound{}, ln: ln}
	p.bob, err = prosody.Login(ctx, srv.C2SAddr(), "bob@"+prosodyDomain, "bobpassword")
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("c2s login: %w", err)
	}
	return p, nil
}

func (p *prosodyRef) Close() {
	for _, ss := range p.streams {
		closeAll(ss)
	}
	if p.bob != nil {
		p.bob.Close()
	}
	p.srv.Stop()
	p.ln.Close()
}

// drive sends messages over n S2S streams into Prosody for dur and returns
// Prosody's CPU per message delivered to the online user.
func (p *prosodyRef) drive(ctx context.Context, n int, dur time.Duration) (map[string]float64, error) {
	ss, ok := p.streams[n]
	if !ok {
		ss = make([]*peer.Outbound, n)
		for i := range ss {
			s, err := p.w.Outside.Dial(ctx, p.srv.S2SAddr(), remote("pr", i), prosodyDomain)
			if err != nil {
				closeAll(ss)
				return nil, fmt.Errorf("S2S stream %d into Prosody: %w", i, err)
			}
			ss[i] = s
		}
		p.streams[n] = ss
	}
	var figs map[string]float64
	err := measure(ctx, ss, func(i int) (string, string) {
		return "user@" + remote("pr", i) + "/bench", "bob@" + prosodyDomain
	}, p.bob.Received, dur, func() {
		figs = procWindow(p.srv.PID(), p.bob.Received, dur, "prosody_us_per_stanza")
	})
	if err == nil && figs["stanzas"] == 0 {
		err = fmt.Errorf("no message reached the online user in %s", dur)
	}
	return figs, err
}
