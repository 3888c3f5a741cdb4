package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fedrelay.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, stop := watchFile(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer stop()
	expect := func(what string, want bool) {
		t.Helper()
		select {
		case <-changed:
			if !want {
				t.Errorf("%s: a change was reported", what)
			}
		case <-time.After(2 * time.Second):
			if want {
				t.Errorf("%s: no change reported", what)
			}
		}
	}
	// Another file in the same directory is not the configuration.
	os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("x"), 0o600)
	expect("another file", false)
	// Written in place, in several steps: one notification.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	f.WriteString("a: 2\n")
	f.WriteString("b: 3\n")
	f.Close()
	expect("write in place", true)
	expect("after the debounce", false)
	// Replaced by rename, as editors do.
	tmp := filepath.Join(dir, ".fedrelay.yaml.swp")
	os.WriteFile(tmp, []byte("a: 4\n"), 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expect("rename over", true)
}
