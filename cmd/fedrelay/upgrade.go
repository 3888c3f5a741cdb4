package main

import (
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/cloudflare/tableflip"
)

// The relay's sockets pass from process to process with
// github.com/cloudflare/tableflip: on SIGUSR2 `fedrelay run` starts a new
// copy of its own executable (a new binary, once the file was replaced)
// with the same arguments, hands it its listening sockets, and once the new
// process is ready (every listener up) drains and exits as on SIGTERM. The
// ports never close, so peers never find them refused and nothing bounces
// for a restart. Chosen over systemd socket activation because it also
// works outside systemd (containers, tests, a shell), needs no unit for the
// sockets, and hands over the internal DNS responder's UDP socket and the
// admin endpoint as well; under systemd, Type=notify with NotifyAccess=all
// lets the new process report its PID (MAINPID=) when it is ready.

// upgraderOnce makes the process's one upgrader: tableflip allows one per
// process. A second `run` in the same process (tests) opens its sockets
// directly.
var (
	upgraderMu   sync.Mutex
	upgraderUsed bool
)

// newUpgrader returns the process's upgrader, or nil when it is taken or
// the platform cannot hand sockets over (then sockets are opened directly
// and SIGUSR2 is refused).
func newUpgrader(log *slog.Logger) *tableflip.Upgrader {
	upgraderMu.Lock()
	defer upgraderMu.Unlock()
	if upgraderUsed {
		return nil
	}
	upgraderUsed = true
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		if !errors.Is(err, tableflip.ErrNotSupported) {
			log.Warn("binary upgrades (SIGUSR2) are not available", "err", err)
		}
		return nil
	}
	return upg
}

// listenFuncs returns the socket openers for app.Options: the upgrader's,
// which reuse a socket inherited from the previous process when there is
// one for the same address, or nil ones (net.Listen) without an upgrader.
func listenFuncs(upg *tableflip.Upgrader) (func(string, string) (net.Listener, error), func(string, string) (net.PacketConn, error)) {
	if upg == nil {
		return nil, nil
	}
	return upg.Listen, upg.ListenPacket
}
