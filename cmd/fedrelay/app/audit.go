package app

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/fedrelay/fedrelay/policy"
)

// auditLog writes policy records as JSON lines to policy.audit_log.
type auditLog struct {
	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	buf []byte
}

func openAudit(path string) (*auditLog, error) {
	switch path {
	case "":
		return &auditLog{}, nil
	case "-":
		return &auditLog{w: os.Stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("policy.audit_log: %w", err)
	}
	return &auditLog{w: f, c: f}, nil
}

// write appends one record; it is the Audit hook of the router and server.
func (a *auditLog) write(r policy.Record) {
	if a.w == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = r.AppendJSON(a.buf[:0])
	a.w.Write(a.buf) // an unwritable audit log must not stop the relay
}

func (a *auditLog) close() {
	if a.c != nil {
		a.c.Close()
	}
}
