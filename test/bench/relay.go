package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BuildRelay builds cmd/fedrelay into dir and returns the binary's path. The
// build runs in the module that holds this package (the working directory
// must be inside it, as it is for `go run ./cmd/fedrelay-bench` and for the
// package's tests).
func BuildRelay(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "fedrelay")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/fedrelay/fedrelay/cmd/fedrelay")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the relay: %w\n%s", err, b)
	}
	return out, nil
}

// RelayConfig is what a scenario chooses of the generated configuration.
type RelayConfig struct {
	FederationAddr string            // STARTTLS federation face
	InternalAddr   string            // internal face
	AdminAddr      string            // /metrics and pprof
	DNS            string            // the bench's nameserver
	Domains        map[string]string // internal domain → route
	Secret         string
	IdleTimeout    time.Duration // 0: 20 minutes, longer than any scenario (and Prosody's keepalive)
	Breaker        string        // YAML of the breaker section, "" for the defaults
	// Limits is the YAML of the limits section, replacing the bench's
	// (most limits lifted, IdleTimeout): keys it leaves out take the
	// relay's defaults. "" for the bench's.
	Limits string
	Extra  string // more YAML, appended as is
}

// YAML renders the configuration file.
func (c RelayConfig) YAML() string {
	var b strings.Builder
	idle := c.IdleTimeout
	if idle == 0 {
		idle = 20 * time.Minute
	}
	fmt.Fprintf(&b, "log: {level: warn, format: text}\n")
	fmt.Fprintf(&b, "federation: {listen: [%q], listen_tls: [], secure_auth: false}\n", c.FederationAddr)
	fmt.Fprintf(&b, "internal: {listen: [%q], dns_listen: \"\"}\n", c.InternalAddr)
	b.WriteString("domains:\n")
	for name, route := range c.Domains {
		fmt.Fprintf(&b, "  - {name: %q, route: %q}\n", name, route)
	}
	fmt.Fprintf(&b, "dialback: {secret: %q}\n", c.Secret)
	b.WriteString("tls: {required: true, verify_peers: true}\n")
	fmt.Fprintf(&b, "dns: {servers: [%q], timeout: 2s, retries: 1, min_ttl: 1s, max_ttl: 1m, allow_private: [127.0.0.0/8]}\n", c.DNS)
	if c.Limits != "" {
		fmt.Fprintf(&b, "limits: %s\n", c.Limits)
	} else {
		fmt.Fprintf(&b, "limits: {idle_timeout: %s, connect_timeout: 3s, negotiation_timeout: 10s, max_streams: 100000, max_streams_per_ip: 100000, connect_rate_per_ip: 1000000, connect_burst_per_ip: 1000000, verifications_per_ip: 100000, verifications: 100000, max_links: 100000, link_rate: 1000000, link_burst: 1000000, link_rate_per_domain: 1000000, link_burst_per_domain: 1000000}\n", idle)
	}
	if c.Breaker != "" {
		fmt.Fprintf(&b, "breaker: %s\n", c.Breaker)
	}
	fmt.Fprintf(&b, "admin: {listen: %q, pprof: true}\n", c.AdminAddr)
	b.WriteString("policy: {default: allow, audit_log: \"\"}\n")
	b.WriteString(c.Extra)
	return b.String()
}

// Relay is a fedrelay process started by the bench.
type Relay struct {
	Cfg  RelayConfig
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// StartRelay writes cfg into dir and starts bin with `run --config`,
// waiting until the admin endpoint answers and both faces accept.
func StartRelay(ctx context.Context, bin, dir string, cfg RelayConfig) (*Relay, error) {
	path := filepath.Join(dir, "fedrelay.yaml")
	if err := os.WriteFile(path, []byte(cfg.YAML()), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "fedrelay.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	r := &Relay{Cfg: cfg, Dir: dir, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := ctx.Err(); err != nil {
			r.Stop()
			return nil, err
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("relay exited at start: %v\n%s", r.err, r.LogTail(20))
		default:
		}
		if r.ready() {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("relay not ready after 30 s\n%s", r.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Relay) ready() bool {
	for _, a := range []string{r.Cfg.FederationAddr, r.Cfg.InternalAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	_, err := r.Metrics()
	return err == nil
}

// PID is the relay's process id.
func (r *Relay) PID() int { return r.cmd.Process.Pid }

// Proc reads the relay's /proc figures.
func (r *Relay) Proc() ProcStat {
	ps, _ := ReadProc(r.PID())
	return ps
}

// Stop sends SIGTERM and waits up to 15 s, then kills the process.
func (r *Relay) Stop() error {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.log.Close()
	var ee *exec.ExitError
	if errors.As(r.err, &ee) && ee.ExitCode() == -1 {
		return fmt.Errorf("relay killed: %v", r.err)
	}
	return nil
}

// LogTail returns the last n lines of the relay's log.
func (r *Relay) LogTail(n int) string {
	b, _ := os.ReadFile(r.log.Name())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Metrics scrapes the relay's /metrics: every sample without labels, and
// labelled ones under their full text ("name{labels}").
func (r *Relay) Metrics() (Metrics, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + r.Cfg.AdminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// Profile takes a CPU profile of the relay for d and writes it to path.
func (r *Relay) Profile(ctx context.Context, d time.Duration, path string) error {
	c := http.Client{Timeout: d + 30*time.Second}
	req, _ := http.NewRequestWithContext(ctx, "GET",
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.Cfg.AdminAddr, int(d.Seconds())), nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// CollectGarbage makes the relay run a garbage collection now, as its
// runtime does by itself at least every two minutes (through pprof's
// heap?gc=1, which the bench's relays serve). It runs two, as a relay idle
// for four minutes has had: what the relay's sync.Pools held at the first
// (buffers given back by streams that went quiet) is freed at the second.
func (r *Relay) CollectGarbage(ctx context.Context) error {
	for range 2 {
		if _, err := r.get(ctx, "/debug/pprof/heap?gc=1"); err != nil {
			return err
		}
	}
	return nil
}

// SaveProfiles writes the relay's heap profile (heap.pprof, for `go tool
// pprof -sample_index=inuse_space`) and its goroutines' stacks
// (goroutines.txt) into its folder, kept with --dir. The heap profile shows
// the heap as of a collection or two before (runtime.MemProfile): it is
// taken after two more.
func (r *Relay) SaveProfiles(ctx context.Context) error {
	if err := r.CollectGarbage(ctx); err != nil {
		return err
	}
	heap, err := r.get(ctx, "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	stacks, err := r.get(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(filepath.Join(r.Dir, "heap.pprof"), heap, 0o644),
		os.WriteFile(filepath.Join(r.Dir, "goroutines.txt"), stacks, 0o644))
}

// get returns the body of an admin URL path.
func (r *Relay) get(ctx context.Context, path string) ([]byte, error) {
	c := http.Client{Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.Cfg.AdminAddr+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// Metrics are samples of the Prometheus text format by name.
type Metrics map[string]float64

func parseMetrics(rd io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Delta is b − a for one metric.
func Delta(a, b Metrics, name string) float64 { return b[name] - a[name] }
