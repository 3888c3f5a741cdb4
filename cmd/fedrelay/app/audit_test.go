package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/policy"
)

// TestAuditReopen: after the audit file is renamed, reopen makes the next
// records go to a new file at the configured path; the renamed file keeps
// the earlier ones.
func TestAuditReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	rec := func(remote string) policy.Record {
		return policy.Record{Time: time.Now(), Stream: true, Face: policy.Federation, Dir: policy.In,
			Local: "a.example", Remote: remote, Reason: policy.ReasonDenyList, Rule: "deny[0] " + remote}
	}
	a.write(rec("before.example"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.write(rec("renamed.example")) // still to the open file: the renamed one
	if err := a.reopen(); err != nil {
		t.Fatal(err)
	}
	a.write(rec("after.example"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if bytes.Count(old, []byte("\n")) != 2 || !bytes.Contains(old, []byte("before.example")) || !bytes.Contains(old, []byte("renamed.example")) {
		t.Errorf("rotated file:\n%s", old)
	}
	if bytes.Count(cur, []byte("\n")) != 1 || !bytes.Contains(cur, []byte(`"from":"after.example","to":"a.example"`)) {
		t.Errorf("new file:\n%s", cur)
	}
	// A path that cannot be opened keeps the current file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := a.reopen(); err == nil {
		t.Error("reopen of a directory: no error")
	}
	a.write(rec("kept.example")) // to the unlinked file still open; must not panic
	if got := a.refusals.snapshot()[refusalKey{"stream", "federation", "deny-list", "deny[0] kept.example"}]; got != 1 {
		t.Errorf("refusal count %d, want 1", got)
	}
}

// TestRefusalSeriesBounded: however many distinct rules refuse, the
// refusal counts keep at most maxRefusalSeries label sets plus the
// "other" ones, and lose no refusal.
func TestRefusalSeriesBounded(t *testing.T) {
	var c refusalCounts
	const n = 3 * maxRefusalSeries
	for i := range n {
		c.add(policy.Record{Face: policy.Federation, Reason: policy.ReasonKind, Rule: fmt.Sprint("rules[", i, "].kinds")})
	}
	c.add(policy.Record{Face: policy.Internal, Rule: "routing: remote domain to remote domain (open relay)"})
	snap := c.snapshot()
	if len(snap) > maxRefusalSeries+2 {
		t.Errorf("%d series, want at most %d", len(snap), maxRefusalSeries+2)
	}
	var total int64
	for _, v := range snap {
		total += v
	}
	if total != n+1 {
		t.Errorf("counted %d refusals, want %d", total, n+1)
	}
	if other := snap[refusalKey{"stanza", "federation", "kind", "other"}]; other != n-maxRefusalSeries {
		t.Errorf("other = %d, want %d", other, n-maxRefusalSeries)
	}
	if got := snap[refusalKey{"stanza", "internal", "routing", "other"}]; got != 1 {
		t.Errorf("routing refusal: %v", snap)
	}
}
