package prosody

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/fedrelay/fedrelay/s2s/peer"
)

// configTemplate is Prosody's configuration. Each %[n]s is a Lua string
// literal made by luaString, except 5 and 6 (ports), 7 (an optional log
// sink) and 8 (the VirtualHost's name).
const configTemplate = `-- Written by fedrelay's test/bench/prosody for one benchmark run: Prosody
-- receiving S2S and delivering to online local users. Everything it reads
-- or writes is in this folder.
pidfile = %[1]s
data_path = %[2]s
certificates = %[3]s -- a self-signed certificate for the VirtualHost
log = {
	{ levels = { min = "warn" }, to = "file", filename = %[4]s };%[7]s
}

interfaces = { %[9]s }
local_interfaces = { %[9]s }
c2s_ports = { %[5]d }
s2s_ports = { %[6]d }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }

-- The minimum for the job. presence, message, iq, c2s, s2s and posix are
-- loaded anyway; offline is too unless disabled: a message for a user who
-- is not online bounces rather than being stored.
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "presence", "posix" }
modules_disabled = { "offline" }

authentication = "internal_plain" -- PLAIN over TLS; no per-login hashing
storage = "internal"
allow_registration = false
c2s_require_encryption = true

-- Peers present self-signed certificates: they are authenticated by
-- dialback, over TLS.
s2s_secure_auth = false
s2s_require_encryption = true

-- lua-unbound with a private hosts file (Options.Hosts). The static root
-- zone answers every other query at once (NXDOMAIN: no SRV records, so
-- peers are dialled on 5269), and the only name server is port 53 of
-- Prosody's own address, where nothing listens: no query leaves, and none
-- waits for a time-out.
unbound = { hoststxt = %[10]s; resolvconf = %[11]s; options = { ["local-zone:"] = ". static" } }

VirtualHost %[8]s
`

// stdoutSink is the log sink that copies warnings to Options.Log.
const stdoutSink = `
	{ levels = { min = "warn" }, to = "stdout", timestamps = "%Y-%m-%d %H:%M:%S " };`

// config renders the configuration for a server in dir.
func config(dir string, s *settings) []byte {
	p := func(name string) string { return luaString(filepath.Join(dir, name)) }
	sink := ""
	if s.Log != nil {
		sink = stdoutSink
	}
	return fmt.Appendf(nil, configTemplate, p("prosody.pid"), p("data"), p("certs"), p("prosody.log"),
		s.C2SPort, s.S2SPort, sink, luaString(s.Domain), luaString(s.ip.String()), p("hosts"), p("resolv.conf"))
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// makeDir returns dir as an absolute path, created, or a new temporary
// folder when dir is "".
func makeDir(dir string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "fedrelay-prosody-")
		if err != nil {
			return "", fmt.Errorf("prosody: %w", err)
		}
		return d, nil
	}
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("prosody: %w", err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("prosody: %w", err)
	}
	return d, nil
}

// checkReachable checks that the user uid (group gid) may search every
// folder above dir, since Prosody runs as that user.
func checkReachable(dir string, uid, gid int) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("prosody: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			perm := fi.Mode().Perm()
			var x bool
			switch {
			case int(st.Uid) == uid:
				x = perm&0o100 != 0
			case int(st.Gid) == gid:
				x = perm&0o010 != 0
			default:
				x = perm&0o001 != 0
			}
			if !x {
				return fmt.Errorf("prosody: the prosody user cannot reach %s: %s is mode %04o (owner %d); "+
					"choose a Dir under a folder it may search (\"\" makes one)", dir, p, perm, st.Uid)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// writeFiles writes the configuration and what it refers to into dir,
// replacing the data of an earlier run, and returns the configuration's
// path.
func writeFiles(dir string, s *settings) (string, error) {
	if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
		return "", fmt.Errorf("prosody: %w", err)
	}
	for _, d := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return "", fmt.Errorf("prosody: %w", err)
		}
	}
	crt, key, err := peer.SelfSignedPEM(s.Domain)
	if err != nil {
		return "", fmt.Errorf("prosody: certificate for %s: %w", s.Domain, err)
	}
	var hosts bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(s.Hosts)) {
		fmt.Fprintf(&hosts, "%s %s\n", s.Hosts[name], name)
	}
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"certs/" + s.Domain + ".crt", crt, 0o644},
		{"certs/" + s.Domain + ".key", key, 0o600},
		{"hosts", hosts.Bytes(), 0o644},
		{"resolv.conf", []byte("nameserver " + s.ip.String() + "\n"), 0o644},
		{"prosody.cfg.lua", config(dir, s), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return "", fmt.Errorf("prosody: %w", err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // WriteFile keeps an existing file's mode
			return "", fmt.Errorf("prosody: %w", err)
		}
	}
	return cfg, nil
}

// chownTree gives dir and everything in it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// register creates an account with prosodyctl, as the prosody user, while
// Prosody is stopped. The password is on prosodyctl's command line: these
// are benchmark accounts on loopback.
func register(ctx context.Context, rn *runner, cfg, user, domain, password string) error {
	cmd := rn.command(ctx, rn.ctl, "--config", cfg, "register", user, domain, password)
	cmd.Dir = filepath.Dir(cfg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("prosody: prosodyctl register %s %s: %w: %s", user, domain, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tail returns the last n lines of a file, "" if it is empty or missing.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// firstLine returns the first line of b, for short error messages.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}
