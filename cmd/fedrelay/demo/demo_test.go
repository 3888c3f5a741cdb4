package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/demo"
)

// TestRunCancelled: a run cut short reports the steps it could not run as
// failed, and still shuts down (the leak check in TestMain).
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	rep, err := demo.Run(ctx, demo.Options{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Status != demo.StatusFailed {
		t.Errorf("status %s after cancellation", rep.Status)
	}
	last := rep.Steps[len(rep.Steps)-1]
	if last.Name != "shutdown" || last.Status != demo.StatusOK {
		t.Errorf("last step %s %s (%s), want a clean shutdown", last.Name, last.Status, last.Error)
	}
	for _, s := range rep.Steps[:len(rep.Steps)-1] {
		if s.Status != demo.StatusFailed || !strings.Contains(s.Error, "not run") {
			t.Errorf("step %s: %s %q, want failed: not run", s.Name, s.Status, s.Error)
		}
	}
	if !strings.Contains(out.String(), "FAILED") {
		t.Errorf("progress does not say the run failed:\n%s", out.String())
	}
}
