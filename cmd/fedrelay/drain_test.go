package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMKeepsDrainTimeout: `fedrelay run`, with peers that stopped
// reading (one on each face, one before and one after sending a stream
// header), ends within limits.drain_timeout of SIGTERM: the graceful stop
// gives up at that deadline and closes what is left, so no peer can hold
// the process.
func TestSIGTERMKeepsDrainTimeout(t *testing.T) {
	bin := relayBinary(t)
	dir := t.TempDir()
	free := func() string { return freeAddr(t) }
	fed, internal := free(), free()
	path := writeRelayConfig(t, dir, fed, internal, "")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	}()
	var conns []net.Conn
	for _, addr := range []string{fed, internal} {
		var c net.Conn
		for deadline := time.Now().Add(10 * time.Second); ; {
			var err error
			if c, err = net.Dial("tcp", addr); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the relay does not listen on %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		conns = append(conns, c)
		// A header, then nothing: and this peer never reads.
		fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='a.test' from='r.test' version='1.0'>")
		silent, err := net.Dial("tcp", addr) // connects, sends nothing, reads nothing
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, silent)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond) // the relay has answered the headers
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("exited %v after %s", err, took)
		if took > 2500*time.Millisecond {
			t.Errorf("the relay took %s to stop with limits.drain_timeout 1s", took)
		}
		if err != nil {
			t.Errorf("exit: %v", err)
		}
		done <- err // for the deferred Wait
	case <-time.After(15 * time.Second):
		t.Fatalf("the relay still runs 15 s after SIGTERM")
	}
}
