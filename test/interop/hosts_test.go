//go:build interop

package interop_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ejabberd resolves SRV records with Erlang's own resolver, which the test
// points at the test DNS server, but the targets' addresses with the
// system's getaddrinfo (xmpp_stream_out:a_lookup calls net:getaddrinfo), so
// those names must be in /etc/hosts. The lines added carry a tag with the
// test process's id and are removed again. The file is rewritten in place,
// never replaced, because it is often a bind mount (containers).

const hostsFile = "/etc/hosts"

// hostsTag marks the lines of one test process.
func hostsTag(pid int) string { return "# fedrelay-interop pid=" + strconv.Itoa(pid) }

// addHosts appends "ip name" lines tagged as ours, after removing lines
// left by test processes that no longer exist.
func addHosts(entries map[string]string) error {
	if err := editHosts(func(line string) bool {
		_, pidText, ok := strings.Cut(line, "# fedrelay-interop pid=")
		if !ok {
			return true
		}
		pid, err := strconv.Atoi(strings.TrimSpace(pidText))
		return err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil
	}); err != nil {
		return err
	}
	f, err := os.OpenFile(hostsFile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b strings.Builder
	for name, ip := range entries {
		fmt.Fprintf(&b, "%s %s %s\n", ip, name, hostsTag(os.Getpid()))
	}
	_, err = f.WriteString(b.String())
	return err
}

// removeHosts removes the lines this process added.
func removeHosts() error {
	tag := hostsTag(os.Getpid())
	return editHosts(func(line string) bool { return !strings.HasSuffix(line, tag) })
}

// editHosts keeps the lines keep accepts, rewriting the file in place only
// when something changes.
func editHosts(keep func(string) bool) error {
	b, err := os.ReadFile(hostsFile)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	changed := false
	for _, l := range lines {
		if l == "" {
			continue
		}
		if keep(strings.TrimRight(l, "\n")) {
			out.WriteString(l)
		} else {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	f, err := os.OpenFile(hostsFile, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(out.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
