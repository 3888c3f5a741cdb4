//go:build interop

package interop_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server process the tests started, in its own process group so
// that it and everything it forks can be stopped together, by that group's
// id and nothing else.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    string // file with its standard output and error
	exited chan struct{}
	once   sync.Once
	err    error
}

// startProc starts argv with extra environment env in a new process group,
// its output appended to out.
func startProc(name, out string, env []string, argv ...string) (*proc, error) {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// running reports whether the process the tests started is still there.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, waits up to grace for every
// member to go, then sends SIGKILL. It is idempotent.
func (p *proc) stop(grace time.Duration) error {
	var err error
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		killed := false
		for groupAlive(pgid) {
			if time.Now().After(deadline) {
				if killed {
					err = fmt.Errorf("%s: process group %d survives SIGKILL", p.name, pgid)
					return
				}
				syscall.Kill(-pgid, syscall.SIGKILL)
				killed, deadline = true, time.Now().Add(5*time.Second)
				err = fmt.Errorf("%s: did not stop within %v of SIGTERM; killed", p.name, grace)
			}
			time.Sleep(20 * time.Millisecond)
		}
		<-p.exited
	})
	return err
}

// groupAlive reports whether a process of group pgid is alive (zombies,
// which wait only for their parent to reap them, do not count).
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return true
		}
	}
	return false
}

// waitListening waits until addr accepts TCP connections, failing early if
// p exits.
func waitListening(p *proc, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited (%v) before listening on %s; its output:\n%s", p.name, p.err, addr, tail(p.out, 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after %v: %v", p.name, addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkFree makes sure nothing listens on the addresses the tests need
// ("tcp/127.0.77.2:5222", "udp/127.0.77.54:53"), naming every one in use.
func checkFree(addrs []string) error {
	var busy []string
	for _, a := range addrs {
		netw, addr, _ := strings.Cut(a, "/")
		var err error
		if netw == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				pc.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			busy = append(busy, fmt.Sprintf("%s (%v)", a, errors.Unwrap(err)))
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("addresses the interop tests need are in use: %s\n"+
			"\ta system Prosody/ejabberd or a leftover test server holds them (ss -ltnup shows which);\n"+
			"\tor set FEDRELAY_INTEROP_NET to another 127.x.y prefix", strings.Join(busy, ", "))
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
