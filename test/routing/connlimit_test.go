package routing_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestConnectionLimits: beyond limits.max_streams_per_ip, a new connection
// from the same address is closed before anything is read; once one closes,
// the address may connect again.
func TestConnectionLimits(t *testing.T) {
	s := harness.StartSite(t, "limits: {max_streams_per_ip: 2}", "remote.test")
	addr := s.Relay.FederationAddr
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	refused := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || !isTimeout(err)
	}
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().InboundOpen.Load() == 2 }, "two streams open")
	if !refused() {
		t.Fatal("a third connection from the same address was kept open")
	}
	if n := s.Relay.Server.Stats().InboundRefused.Load(); n != 1 {
		t.Errorf("InboundRefused = %d, want 1", n)
	}
	open[0].Close()
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().InboundOpen.Load() == 1 }, "one stream closed")
	if refused() {
		t.Error("a connection after one closed was refused")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
