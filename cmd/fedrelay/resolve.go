package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/resolve"
)

func newResolveCmd() *cobra.Command {
	var (
		cf          configFlags
		nameservers []string
		connect     bool
	)
	cmd := &cobra.Command{
		Use:   "resolve [--config FILE] [--nameserver HOST:PORT] [--connect] DOMAIN",
		Short: "Show where the relay would connect for a remote XMPP domain",
		Long: "resolve looks DOMAIN up as the relay does for an outbound S2S stream (dns.overrides, then\n" +
			"_xmpps-server._tcp and _xmpp-server._tcp SRV records, then the A/AAAA fallback on port 5269)\n" +
			"and prints the candidates in the order they would be tried, one per line:\n" +
			"\n" +
			"  <priority> <weight> <host>:<port> <starttls|directtls> ttl=<seconds> dnssec=<yes|no>\n" +
			"\n" +
			"The order of records with equal priority is drawn at random by weight (RFC 2782), so it may\n" +
			"differ between runs. dnssec=yes means the nameserver set the AD bit (it validated the answer).\n" +
			"\n" +
			"With --connect each candidate is also tried, and the outcome and time printed below it.\n" +
			"This is a reachability probe only: the TLS handshake of direct TLS candidates does NOT verify\n" +
			"the certificate, and STARTTLS is not attempted.\n" +
			"\n" +
			"The dns and limits sections come from --config, or else from the embedded defaults and the\n" +
			"FEDRELAY_* environment. Exits 0 when there is at least one candidate (with --connect: when at\n" +
			"least one connected), 1 otherwise with a one-line reason, 2 for a bad configuration.",
		Args:                  cobra.ExactArgs(1),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadForResolve(&cf)
			if err != nil {
				return err
			}
			dnsCfg := cfg.DNS
			if len(nameservers) > 0 {
				dnsCfg.Servers = nameservers
			}
			r, err := resolve.New(dnsCfg, resolve.Options{})
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			defer r.Close()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runResolve(ctx, cmd.OutOrStdout(), r, cfg, args[0], connect)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&cf.path, "config", "c", "", "configuration file (.yaml, .toml or .json); default: embedded defaults and environment")
	cf.set = fs // no overrides of other keys: resolve only reads dns and limits
	fs.StringSliceVar(&nameservers, "nameserver", nil,
		"nameserver to ask (host:port, port 53 if omitted; repeatable) instead of dns.servers or /etc/resolv.conf")
	fs.BoolVar(&connect, "connect", false,
		"also try to connect to each candidate (TCP, and a TLS handshake WITHOUT certificate verification for directtls)")
	return cmd
}

// loadForResolve reads the configuration file when one is given, and the
// embedded defaults with the environment otherwise (no domains needed).
func loadForResolve(cf *configFlags) (*config.Config, error) {
	if cf.path == "" {
		return config.Defaults()
	}
	return cf.load()
}

func runResolve(ctx context.Context, out io.Writer, r *resolve.Resolver, cfg *config.Config, domain string, connect bool) error {
	lookupCtx, cancel := context.WithTimeout(ctx, cfg.Limits.ConnectTimeout)
	defer cancel()
	cs, err := r.Lookup(lookupCtx, domain)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if !connect {
		for _, c := range cs {
			fmt.Fprintln(out, c)
		}
		return nil
	}

	d := &resolve.Dialer{
		Resolver: r,
		// A probe of reachability only: nothing is sent over the
		// connection, so an unverified certificate cannot mislead it.
		TLSConfig: func(string) *tls.Config {
			return &tls.Config{InsecureSkipVerify: true, MinVersion: cfg.TLS.MinVersion}
		},
		Timeout: cfg.Limits.ConnectTimeout,
	}
	connected := 0
	for _, c := range cs {
		fmt.Fprintln(out, c)
		start := time.Now()
		conn, err := d.DialCandidate(ctx, domain, c)
		took := roundDuration(time.Since(start))
		if err != nil {
			fmt.Fprintf(out, "  failed after %s: %s\n", took, attemptErrors(err))
			continue
		}
		connected++
		fmt.Fprintf(out, "  connected to %s in %s (%s)\n", conn.Addr, took, connDetail(conn))
		conn.Close()
	}
	if connected == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("connect %s: none of the %d candidates accepted a connection", domain, len(cs))}
	}
	return nil
}

// attemptErrors lists the errors of a failed candidate on one line.
func attemptErrors(err error) string {
	var de *resolve.DialError
	if !errors.As(err, &de) || len(de.Attempts) == 0 {
		return err.Error()
	}
	msgs := make([]string, 0, len(de.Attempts)+1)
	for _, a := range de.Attempts {
		msgs = append(msgs, a.Err.Error())
	}
	if de.Err != nil {
		msgs = append(msgs, de.Err.Error())
	}
	return strings.Join(msgs, "; ")
}

// connDetail says what was established: TCP only, or TLS with its version
// and ALPN protocol.
func connDetail(c *resolve.Conn) string {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return "TCP; STARTTLS not attempted"
	}
	st := tc.ConnectionState()
	alpn := st.NegotiatedProtocol
	if alpn == "" {
		alpn = "none"
	}
	return fmt.Sprintf("%s, ALPN %s, certificate not verified", tls.VersionName(st.Version), alpn)
}

// roundDuration keeps probe timings readable.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
