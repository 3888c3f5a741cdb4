//go:build interop

package interop_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// serverGen is one generation of a server: where its programs are and
// what version it must say it is. The first generation of each server is
// Debian bookworm's package, installed; the second is bookworm-backports',
// unpacked under gen2Root by .ci/run (see doc.go).
type serverGen struct {
	Name    string // "prosody 13", for test names and logs
	Version string // the start of the version the server logs at start
	// Prosody: the prosody and prosodyctl scripts; ejabberd: ejabberdctl
	// (Ctl), Bin unused.
	Bin, Ctl string
	// Bidi: the generation ships XEP-0288 (Prosody's mod_s2s_bidi, off in
	// the shipped configuration; ejabberd 24.12's mod_s2s_bidi, on in it):
	// the tests enable it, so that these servers ask the relay for bidi.
	Bidi bool
	// StreamLimits: the generation advertises XEP-0478 stream limits and
	// reads its peers' (Prosody 13's mod_s2s; see largeStanzas for when).
	StreamLimits bool
}

// gen2Root is where .ci/run unpacks the second generation;
// FEDRELAY_INTEROP_GEN2_ROOT overrides it.
func gen2Root() string {
	if r := os.Getenv("FEDRELAY_INTEROP_GEN2_ROOT"); r != "" {
		return r
	}
	return "/opt/fedrelay-interop"
}

func prosodyGens() []serverGen {
	p13 := filepath.Join(gen2Root(), "prosody13", "usr", "bin")
	return []serverGen{
		{Name: "prosody 0.12", Version: "0.12.", Bin: "/usr/bin/prosody", Ctl: "/usr/bin/prosodyctl"},
		{Name: "prosody 13", Version: "13.", Bin: filepath.Join(p13, "prosody"), Ctl: filepath.Join(p13, "prosodyctl"),
			Bidi: true, StreamLimits: true},
	}
}

func ejabberdGens() []serverGen {
	return []serverGen{
		{Name: "ejabberd 23.01", Version: "23.01", Ctl: "/usr/sbin/ejabberdctl"},
		{Name: "ejabberd 24.12", Version: "24.12", Ctl: filepath.Join(gen2Root(), "ejabberd2412", "usr", "sbin", "ejabberdctl"),
			Bidi: true},
	}
}

// testName is the generation's name as a test name: "prosody-13".
func (g serverGen) testName() string { return strings.ReplaceAll(g.Name, " ", "-") }

// missing lists the programs of the generation that are not there.
func (g serverGen) missing() []string {
	var out []string
	for _, p := range []string{g.Bin, g.Ctl} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			out = append(out, fmt.Sprintf("%s of %s (.ci/run installs it)", p, g.Name))
		}
	}
	return out
}

// checkVersion fails unless the log says the server is of generation g:
// Prosody logs "Hello and welcome to Prosody version 13.0.1", ejabberd
// "ejabberd 24.12-3~bpo12+1 is started".
func (g serverGen) checkVersion(log string) (string, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var v string
		if _, rest, ok := strings.Cut(line, "Prosody version "); ok {
			v = strings.Fields(rest + " ")[0]
		} else if _, rest, ok := strings.Cut(line, "ejabberd "); ok && strings.Contains(rest, " is started") {
			v = strings.Fields(rest)[0]
		} else {
			continue
		}
		if !strings.HasPrefix(v, g.Version) {
			return v, fmt.Errorf("%s: the server started says it is version %s, want %s*", g.Name, v, g.Version)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s: no version line in %s", g.Name, log)
}
