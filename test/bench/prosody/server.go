package prosody

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults and bounds.
const (
	// DefaultC2SPort and DefaultS2SPort are used for zero Options ports.
	DefaultC2SPort = 5222
	DefaultS2SPort = 5269

	// startTimeout bounds Start when its context has no deadline; Prosody
	// needs well under a second on an idle machine.
	startTimeout = 30 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
)

// Options says which Prosody to run and where.
type Options struct {
	// Dir is the working folder: configuration, certificate, accounts, logs
	// (prosody.log, and prosody.out when Log is nil). It is created if
	// missing and given to the prosody user, so every folder above it must be
	// searchable by that user (t.TempDir()'s folders are not: they are
	// 0700). Start replaces what an earlier run left in it. "" makes a
	// temporary folder, which Stop removes; a folder given here is kept.
	Dir string
	// Domain is the domain Prosody hosts (its VirtualHost), e.g. "p.bench".
	// Required.
	Domain string
	// IP is the loopback address Prosody listens on for c2s and s2s, e.g.
	// "127.0.9.2". Required. Port 53 on it is named as the resolver's name
	// server, a dead end that is never asked (see Hosts).
	IP string
	// C2SPort and S2SPort are the ports on IP; 0 means DefaultC2SPort and
	// DefaultS2SPort.
	C2SPort, S2SPort int
	// Hosts maps names to IP addresses for Prosody's resolver (lua-unbound's
	// hoststxt): the peers Prosody must reach, such as the domains it
	// verifies by dialback. Having no SRV records, they are dialled on port
	// 5269 of that address. Every other name, and every other record type,
	// is answered NXDOMAIN or empty at once by the resolver itself: no query
	// leaves the machine or waits for a time-out.
	Hosts map[string]string
	// Users maps user names (local parts) to passwords, registered on Domain
	// before Prosody starts.
	Users map[string]string
	// Log receives Prosody's standard output and error, including its log
	// messages of level warn and above (which always go to Dir/prosody.log
	// too). nil sends the output to Dir/prosody.out.
	Log io.Writer
}

// Server is a running Prosody started by Start.
type Server struct {
	dir     string
	madeDir bool
	c2s     string
	s2s     string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd.Wait has returned
	waitErr error         // cmd.Wait's result; read after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// runner is how this process runs Prosody's commands: as root it switches
// to the prosody user with setpriv, as the prosody user it runs them
// directly.
type runner struct {
	uid, gid int
	setpriv  string // path of setpriv; "" to run directly
	prosody  string // paths of the two commands
	ctl      string
}

// newRunner finds the commands and checks that this process may run them
// as the prosody user.
func newRunner() (*runner, error) {
	var rn runner
	var err error
	if rn.prosody, err = exec.LookPath("prosody"); err != nil {
		return nil, fmt.Errorf("prosody: not installed (apt-get install prosody lua-unbound): %w", err)
	}
	if rn.ctl, err = exec.LookPath("prosodyctl"); err != nil {
		return nil, fmt.Errorf("prosody: prosodyctl not found: %w", err)
	}
	u, err := user.Lookup("prosody")
	if err != nil {
		return nil, fmt.Errorf("prosody: no prosody system user to run it as: %w", err)
	}
	rn.uid, _ = strconv.Atoi(u.Uid)
	rn.gid, _ = strconv.Atoi(u.Gid)
	switch euid := os.Geteuid(); euid {
	case 0:
		if rn.setpriv, err = exec.LookPath("setpriv"); err != nil {
			return nil, fmt.Errorf("prosody: running as root needs setpriv (util-linux) to switch to the prosody user: %w", err)
		}
	case rn.uid:
	default:
		return nil, fmt.Errorf("prosody: this process runs as uid %d, but Prosody must run as the prosody user "+
			"(uid %d) and refuses root: run as root, which switches to prosody, or as prosody", euid, rn.uid)
	}
	return &rn, nil
}

// command returns the command that runs argv as the prosody user. It gets
// SIGKILL if this process dies first: through setpriv when switching users,
// since a change of user clears a parent-death signal set before it.
func (rn *runner) command(ctx context.Context, argv ...string) *exec.Cmd {
	if rn.setpriv != "" {
		argv = append([]string{rn.setpriv, "--reuid=prosody", "--regid=prosody", "--init-groups",
			"--pdeathsig", "KILL", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// checkUnbound checks that the Lua interpreter named on the prosody
// script's #! line has lua-unbound. Without it Prosody falls back to its own
// resolver, which ignores the private hosts file and reads the system's
// resolv.conf. When the interpreter cannot be told, it says nothing.
func (rn *runner) checkUnbound() error {
	f, err := os.Open(rn.prosody)
	if err != nil {
		return fmt.Errorf("prosody: %w", err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	line, _, _ := strings.Cut(string(head[:n]), "\n")
	interp, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return nil
	}
	fields := strings.Fields(interp)
	if len(fields) == 0 {
		return nil
	}
	lua := fields[0]
	if filepath.Base(lua) == "env" && len(fields) > 1 {
		lua = fields[1]
	}
	if !strings.HasPrefix(filepath.Base(lua), "lua") {
		return nil
	}
	if out, err := exec.Command(lua, "-e", `require "lunbound"`).CombinedOutput(); err != nil {
		return fmt.Errorf("prosody: %s has no lua-unbound (apt-get install lua-unbound); without it Prosody "+
			"ignores Options.Hosts and uses the system resolver: %v: %s", lua, err, firstLine(out))
	}
	return nil
}

// Available returns nil when Prosody can be run here: prosody and
// prosodyctl are installed, lua-unbound is there for the interpreter
// Prosody uses, and this process is either root (with a prosody user and
// setpriv to switch to it) or the prosody user itself. Otherwise its error
// says what is missing. It starts nothing.
func Available() error {
	rn, err := newRunner()
	if err != nil {
		return err
	}
	return rn.checkUnbound()
}

// settings is Options checked and completed.
type settings struct {
	Options
	ip       netip.Addr
	c2s, s2s netip.AddrPort
}

func (o Options) check() (*settings, error) {
	s := &settings{Options: o}
	if !isDomain(o.Domain) {
		return nil, fmt.Errorf("prosody: Options.Domain %q is not a domain name (letters, digits, '-', '.')", o.Domain)
	}
	ip, err := netip.ParseAddr(o.IP)
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return nil, fmt.Errorf("prosody: Options.IP %q is not a loopback address", o.IP)
	}
	s.ip = ip.Unmap()
	if s.C2SPort == 0 {
		s.C2SPort = DefaultC2SPort
	}
	if s.S2SPort == 0 {
		s.S2SPort = DefaultS2SPort
	}
	for _, p := range []int{s.C2SPort, s.S2SPort} {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("prosody: port %d out of range", p)
		}
	}
	if s.C2SPort == s.S2SPort {
		return nil, fmt.Errorf("prosody: c2s and s2s both on port %d", s.C2SPort)
	}
	s.c2s = netip.AddrPortFrom(s.ip, uint16(s.C2SPort))
	s.s2s = netip.AddrPortFrom(s.ip, uint16(s.S2SPort))
	for name, addr := range o.Hosts {
		if !isDomain(name) {
			return nil, fmt.Errorf("prosody: Options.Hosts: %q is not a domain name", name)
		}
		if _, err := netip.ParseAddr(addr); err != nil {
			return nil, fmt.Errorf("prosody: Options.Hosts[%q]: %w", name, err)
		}
	}
	for u, pw := range o.Users {
		if !isLocalpart(u) {
			return nil, fmt.Errorf("prosody: Options.Users: user name %q: use lower-case letters, digits, '.', '_', '-'", u)
		}
		if pw == "" {
			return nil, fmt.Errorf("prosody: Options.Users: user %q has no password", u)
		}
	}
	return s, nil
}

func isDomain(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' || strings.HasSuffix(s, ".") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isLocalpart(s string) bool {
	if s == "" || len(s) > 1023 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// Start writes a configuration for o into o.Dir, registers o.Users, starts
// Prosody as the prosody user and returns once Prosody's own process
// listens on the c2s and s2s addresses. It fails, with Prosody's last log
// lines where there are any, if either address is taken, if Prosody exits
// or if ctx ends first (30 s when ctx has no deadline). Prosody is stopped
// with the test binary (parent-death signal) if Stop is never called.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	set, err := o.check()
	if err != nil {
		return nil, err
	}
	rn, err := newRunner()
	if err != nil {
		return nil, err
	}
	if err := rn.checkUnbound(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	// Prosody does not stop when it cannot bind a port: it logs it and runs
	// on. Refuse here, with a clear error, rather than find out later.
	for _, a := range []netip.AddrPort{set.c2s, set.s2s} {
		l, err := net.Listen("tcp", a.String())
		if err != nil {
			return nil, fmt.Errorf("prosody: %s is not free (another server listens there?): %w", a, err)
		}
		l.Close()
	}

	s := &Server{c2s: set.c2s.String(), s2s: set.s2s.String(), exited: make(chan struct{})}
	if s.dir, err = makeDir(o.Dir); err != nil {
		return nil, err
	}
	s.madeDir = o.Dir == ""
	defer func() {
		if err != nil && s.madeDir {
			os.RemoveAll(s.dir)
		}
	}()
	if err := checkReachable(s.dir, rn.uid, rn.gid); err != nil {
		return nil, err
	}
	cfg, err := writeFiles(s.dir, set)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := chownTree(s.dir, rn.uid, rn.gid); err != nil {
			return nil, fmt.Errorf("prosody: give %s to the prosody user: %w", s.dir, err)
		}
	}
	for _, u := range slices.Sorted(maps.Keys(set.Users)) {
		if err := register(ctx, rn, cfg, u, set.Domain, set.Users[u]); err != nil {
			return nil, err
		}
	}

	// Not ctx: Prosody outlives Start. Its own process group keeps a
	// terminal's Ctrl-C for the benchmark, which stops Prosody properly.
	cmd := rn.command(context.Background(), rn.prosody, "-F", "--config", cfg)
	cmd.SysProcAttr.Setpgid = true
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	} else {
		f, err := os.OpenFile(filepath.Join(s.dir, "prosody.out"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("prosody: %w", err)
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("prosody: start %s: %w", rn.prosody, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, set.c2s, set.s2s); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady waits until Prosody's process holds listening sockets on every
// address. A successful connection would not do: a port it could not bind
// (logged, not fatal) may be answered by someone else.
func (s *Server) waitReady(ctx context.Context, addrs ...netip.AddrPort) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	logFile := filepath.Join(s.dir, "prosody.log")
	for {
		ready := true
		for _, a := range addrs {
			if ok, _ := listening(s.cmd.Process.Pid, a); !ok {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		if b, _ := os.ReadFile(logFile); len(b) > 0 {
			if i := strings.Index(string(b), "Failed to open server port"); i >= 0 {
				line, _, _ := strings.Cut(string(b[i:]), "\n")
				return fmt.Errorf("prosody: %s", line)
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("prosody exited while starting (%v)%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("prosody: not listening on %v: %w%s", addrs, ctx.Err(), s.logTail())
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of Prosody's log and output, for errors.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"prosody.log", "prosody.out"} {
		if t := tail(filepath.Join(s.dir, name), 15); t != "" {
			fmt.Fprintf(&b, "\n%s:\n%s", name, t)
		}
	}
	return b.String()
}

// PID returns the process id of Prosody itself (setpriv and env exec it in
// place), for CPU accounting from /proc/<pid>/stat.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// C2SAddr returns the address of Prosody's client port, IP:port.
func (s *Server) C2SAddr() string { return s.c2s }

// S2SAddr returns the address of Prosody's server-to-server port, IP:port.
func (s *Server) S2SAddr() string { return s.s2s }

// Dir returns the working folder: configuration, data and logs.
func (s *Server) Dir() string { return s.dir }

// Stop sends Prosody SIGTERM (it closes its streams with system-shutdown),
// waits for it to exit, and sends SIGKILL if it has not within a few
// seconds. It removes the working folder if Start made it. It returns an
// error if Prosody had exited before, exited with a failure status or had
// to be killed; later calls return the same.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	var errs []error
	select {
	case <-s.exited:
		errs = append(errs, fmt.Errorf("prosody (pid %d) had exited before Stop: %v", s.PID(), s.waitErr))
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		select {
		case <-s.exited:
			t.Stop()
			// Killed by the signal itself is fine too: it came before
			// Prosody's handler was set up, just after start.
			var ee *exec.ExitError
			if errors.As(s.waitErr, &ee) && ee.Exited() {
				errs = append(errs, fmt.Errorf("prosody (pid %d) stopped: %v", s.PID(), s.waitErr))
			}
		case <-t.C:
			s.cmd.Process.Kill()
			<-s.exited
			errs = append(errs, fmt.Errorf("prosody (pid %d) still ran %v after SIGTERM; killed", s.PID(), stopGrace))
		}
	}
	if s.madeDir {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
