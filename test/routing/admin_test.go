package routing_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestAdminPprof: admin.pprof puts net/http/pprof under /debug/pprof/ on
// admin.listen; without it the path is not served, while /metrics is in
// both cases.
func TestAdminPprof(t *testing.T) {
	get := func(t *testing.T, url string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "off"}[on]
		t.Run(name, func(t *testing.T) {
			conf := `admin: {listen: "$IP:0", pprof: false}`
			if on {
				conf = `admin: {listen: "$IP:0", pprof: true}`
			}
			s := harness.StartSite(t, conf, "remote.test")
			addr := s.Relay.Logs.Wait(t, "admin endpoint").Attrs["addr"]
			if code, body := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "fedrelay_stanzas_accepted_total") {
				t.Fatalf("/metrics: %d", code)
			}
			code, body := get(t, "http://"+addr+"/debug/pprof/")
			if on && (code != 200 || !strings.Contains(body, "goroutine")) {
				t.Errorf("pprof on: /debug/pprof/ answered %d", code)
			}
			if !on && code != 404 {
				t.Errorf("pprof off: /debug/pprof/ answered %d, want 404", code)
			}
			if on {
				if code, _ := get(t, "http://"+addr+"/debug/pprof/heap?debug=1"); code != 200 {
					t.Errorf("pprof on: heap profile answered %d", code)
				}
			}
		})
	}
}
