package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// The floor is the least any relay must do per stanza: decrypt, find the
// stanza's boundaries, re-encrypt. It accepts direct TLS streams
// (XEP-0368) and forwards each, element by element, over a direct TLS
// connection of its own to one target, with no policy, no routing and no
// authentication of its own: the two ends negotiate dialback with each
// other through it. The bench runs it as a separate process (this same
// executable, see MaybeRunChild) so that its CPU is measured like the
// relay's.

// Environment of the floor child process.
const (
	envRole        = "FEDRELAY_BENCH_ROLE"
	envFloorListen = "FEDRELAY_BENCH_FLOOR_LISTEN"
	envFloorTarget = "FEDRELAY_BENCH_FLOOR_TARGET"
)

// MaybeRunChild runs a bench child process when this process was started as
// one (the floor forwarder) and never returns then; otherwise it returns at
// once. Call it first thing in main and in TestMain.
func MaybeRunChild() {
	if os.Getenv(envRole) != "floor" {
		return
	}
	err := runFloor(os.Getenv(envFloorListen), os.Getenv(envFloorTarget))
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}

// Floor is a running floor forwarder process.
type Floor struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartFloor starts the floor forwarder on listen, forwarding to target.
func StartFloor(listen, target string) (*Floor, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"=floor", envFloorListen+"="+listen, envFloorTarget+"="+target)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &Floor{Addr: listen, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(f.done) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
			c.Close()
			return f, nil
		}
		select {
		case <-f.done:
			return nil, errors.New("floor exited at start")
		default:
		}
		if time.Now().After(deadline) {
			f.Stop()
			return nil, errors.New("floor not listening after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// PID is the floor's process id.
func (f *Floor) PID() int { return f.cmd.Process.Pid }

// Stop kills the floor.
func (f *Floor) Stop() {
	f.cmd.Process.Kill()
	<-f.done
}

func runFloor(listen, target string) error {
	cert, err := peer.SelfSigned("floor.bench")
	if err != nil {
		return err
	}
	l, err := tls.Listen("tcp", listen, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"xmpp-server"}})
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go floorConn(c, target)
	}
}

// floorConn forwards one connection: the initiator's stream element by
// element, the answers as bytes.
func floorConn(in net.Conn, target string) {
	defer in.Close()
	raw, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	out := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-server"}})
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = out.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(in, out)
		in.Close()
	}()
	forwardElements(out, in)
	out.Close()
	wg.Wait()
}

// forwardElements copies the stream read from src to dst: the header, then
// each top-level element, batched while more input is already buffered.
func forwardElements(dst io.Writer, src io.Reader) error {
	r := wire.NewReader(src, wire.Limits{MaxStanza: 1 << 20})
	r.SetAuthenticated(true)
	h, err := r.ReadHeader()
	if err != nil {
		return err
	}
	buf := wire.AppendHeader(make([]byte, 0, 64<<10), h)
	if _, err := dst.Write(buf); err != nil {
		return err
	}
	buf = buf[:0]
	for {
		el, err := r.Next()
		if err != nil {
			if len(buf) > 0 {
				dst.Write(buf)
			}
			return err
		}
		buf = append(buf, el.Raw...)
		if r.Buffered() == 0 || len(buf) >= 32<<10 {
			if _, err := dst.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
}
