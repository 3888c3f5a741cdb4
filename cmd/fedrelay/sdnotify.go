package main

import (
	"net"
	"os"
)

// sdNotify sends state to the service manager as sd_notify(3) does: one
// datagram to the unix socket named by $NOTIFY_SOCKET (a leading '@' names
// an abstract socket). Without $NOTIFY_SOCKET (not started by systemd with
// Type=notify) it does nothing and reports false.
//
// run sends READY=1 once every listener is up and STOPPING=1 when it begins
// a graceful stop, so that dist/systemd/fedrelay.service can be
// Type=notify: `systemctl start` returns when the relay serves, and fails
// if it exits first. (A reload is synchronous and quick: no RELOADING=1.)
func sdNotify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}
