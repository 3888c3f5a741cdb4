package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
)

// adminFlags are the flags of the commands that talk to a running relay's
// admin API.
type adminFlags struct {
	addr, tokenFile, config string
	json                    bool
	timeout                 time.Duration
}

func (af *adminFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&af.addr, "admin", "", "the relay's admin address (host:port); default: admin.listen of --config, else 127.0.0.1:9290")
	fs.StringVar(&af.tokenFile, "token-file", "", "file holding the admin bearer token; default: admin.token_file of --config")
	fs.StringVarP(&af.config, "config", "c", "", "the relay's configuration file, for the defaults of --admin and --token-file")
	fs.BoolVar(&af.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&af.timeout, "timeout", 10*time.Second, "how long to wait for the relay")
}

// client is an admin API client made from the flags.
type client struct {
	base  string
	token string
	http  *http.Client
}

func (af *adminFlags) client() (*client, error) {
	addr, tokenFile := af.addr, af.tokenFile
	if af.config != "" && (addr == "" || tokenFile == "") {
		cfg, err := config.Load(config.Options{Path: af.config})
		if err != nil {
			return nil, err
		}
		if addr == "" {
			addr = cfg.Admin.Listen
		}
		if tokenFile == "" {
			tokenFile = cfg.Admin.TokenFile
		}
	}
	if addr == "" {
		addr = "127.0.0.1:9290"
	}
	c := &client{base: "http://" + addr, http: &http.Client{Timeout: af.timeout}}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("token file: %w", err)}
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}

// do calls the API and decodes its JSON answer into out (when not nil); raw
// is the answer as it came, for --json.
func (c *client) do(method, path string, out any) (raw []byte, err error) {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("cannot reach the relay's admin API at %s: %w", c.base, err)}
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err}
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusUnprocessableEntity {
		var e struct{ Error string }
		json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return raw, &exitError{code: exitFailure, err: fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, &exitError{code: exitFailure, err: fmt.Errorf("%s: bad answer: %w", path, err)}
		}
	}
	return raw, nil
}

// adminCmd makes a command that calls the API and prints a table (or the
// JSON with --json).
func adminCmd(use, short string, args cobra.PositionalArgs, run func(c *client, af *adminFlags, w io.Writer, args []string) error) *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			return run(c, &af, cmd.OutOrStdout(), args)
		},
	}
	af.register(cmd)
	return cmd
}

// printJSON writes the API's answer as it came.
func printJSON(w io.Writer, raw []byte) error {
	_, err := w.Write(bytes.TrimSpace(append(raw, '\n')))
	fmt.Fprintln(w)
	return err
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func dur(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return app.Round(d)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newStatusCmd() *cobra.Command {
	return adminCmd("status", "Show a running relay's state: readiness, streams, open breakers, queues, counters", cobra.NoArgs,
		func(c *client, af *adminFlags, w io.Writer, _ []string) error {
			var st app.Status
			raw, err := c.do("GET", "/api/status", &st)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			tw := table(w)
			ready := "ready"
			if !st.Ready {
				ready = "NOT READY"
			}
			fmt.Fprintf(tw, "relay\t%s, %s, up %s\n", st.Version, ready, dur(st.Uptime))
			for _, k := range []string{"federation/in", "federation/out", "internal/in", "internal/out"} {
				fmt.Fprintf(tw, "streams %s\t%d\n", k, st.Streams[k])
			}
			fmt.Fprintf(tw, "queued\t%d stanzas, %d bytes\n", st.Queued, st.QueuedBytes)
			fmt.Fprintf(tw, "breakers open\t%d %s\n", len(st.BreakersOpen), strings.Join(st.BreakersOpen, " "))
			for _, k := range []string{"accepted", "delivered", "bounced", "refused", "dropped", "breaker_bounces"} {
				fmt.Fprintf(tw, "stanzas %s\t%d\n", k, st.Counters[k])
			}
			if !st.LastReload.IsZero() {
				outcome := "applied"
				if st.LastReloadError != "" {
					outcome = "refused: " + st.LastReloadError
				}
				fmt.Fprintf(tw, "last reload\t%s, %s\n", st.LastReload.Format(time.RFC3339), outcome)
			}
			return tw.Flush()
		})
}

func newStreamsCmd() *cobra.Command {
	return adminCmd("streams", "List a running relay's streams", cobra.NoArgs,
		func(c *client, af *adminFlags, w io.Writer, _ []string) error {
			var ss []app.StreamInfo
			raw, err := c.do("GET", "/api/streams", &ss)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			tw := table(w)
			fmt.Fprintln(tw, "FACE\tDIR\tLOCAL\tREMOTE\tAUTH\tCERT\tTLS\tPEER\tAGE\tIDLE\tIN\tOUT\tQUEUE")
			for _, s := range ss {
				cert := "-"
				if s.CertVerified {
					cert = "verified"
				}
				up := ""
				if !s.Up {
					up = " (setting up)"
				}
				dir := s.Direction
				if s.Bidi {
					dir += "/bidi" // XEP-0288: the stream carries both directions
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.Face, dir,
					orDash(strings.Join(s.Local, ",")), orDash(strings.Join(s.Remote, ",")), s.Auth, up, cert,
					orDash(s.TLSVersion), orDash(s.Peer), dur(s.Age), dur(s.Idle), s.StanzasIn, s.StanzasOut, s.Queue)
			}
			return tw.Flush()
		})
}

func newBreakersCmd() *cobra.Command {
	cmd := adminCmd("breakers", "List a running relay's circuit breakers", cobra.NoArgs,
		func(c *client, af *adminFlags, w io.Writer, _ []string) error {
			var bs []app.BreakerInfo
			raw, err := c.do("GET", "/api/breakers", &bs)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			tw := table(w)
			fmt.Fprintln(tw, "DOMAIN\tSTATE\tFAILURES\tNEXT PROBE\tLAST ERROR")
			for _, b := range bs {
				next := "-"
				if !b.NextProbe.IsZero() {
					next = "in " + dur(time.Until(b.NextProbe))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.Domain, b.State, b.Failures, next, orDash(b.LastError))
			}
			return tw.Flush()
		})
	cmd.AddCommand(adminCmd("reset DOMAIN", "Close a domain's breaker: its next stanza tries a connection at once", cobra.ExactArgs(1),
		func(c *client, af *adminFlags, w io.Writer, args []string) error {
			raw, err := c.do("POST", "/api/breakers/"+url.PathEscape(args[0])+"/reset", nil)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			_, err = fmt.Fprintf(w, "breaker of %s closed\n", args[0])
			return err
		}))
	return cmd
}

func newCloseCmd() *cobra.Command {
	var condition string
	cmd := adminCmd("close DOMAIN", "Close every stream with a remote domain (what they held bounces)", cobra.ExactArgs(1),
		func(c *client, af *adminFlags, w io.Writer, args []string) error {
			q := url.Values{"domain": {args[0]}}
			if condition != "" {
				q.Set("condition", condition)
			}
			var res struct{ Closed int }
			raw, err := c.do("POST", "/api/streams/close?"+q.Encode(), &res)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			_, err = fmt.Fprintf(w, "%d streams with %s closed\n", res.Closed, args[0])
			return err
		})
	cmd.Flags().StringVar(&condition, "condition", "", "the stream error to close with (default system-shutdown; policy-violation, not-authorized, reset, ...)")
	return cmd
}

func newReloadCmd() *cobra.Command {
	return adminCmd("reload", "Reload a running relay's configuration (as SIGHUP does) and show the outcome", cobra.NoArgs,
		func(c *client, af *adminFlags, w io.Writer, _ []string) error {
			var res app.ReloadResult
			raw, err := c.do("POST", "/api/reload", &res)
			if err != nil {
				return err
			}
			if af.json {
				printJSON(w, raw)
			} else {
				fmt.Fprintf(w, "reload %s\n", res.Outcome)
				for _, r := range res.Reasons {
					fmt.Fprintf(w, "  %s\n", r)
				}
				if res.Outcome == "applied" {
					fmt.Fprintf(w, "streams closed by the new policy: %d\n", res.ClosedStreams)
				}
				if len(res.Restart) > 0 {
					fmt.Fprintf(w, "changed but applied only after a restart: %s\n", strings.Join(res.Restart, ", "))
				}
			}
			if res.Outcome != "applied" {
				return &exitError{code: exitFailure, err: fmt.Errorf("reload refused")}
			}
			return nil
		})
}

func newQueueCmd() *cobra.Command {
	return adminCmd("queue", "List the stanzas waiting in a running relay's outbound links", cobra.NoArgs,
		func(c *client, af *adminFlags, w io.Writer, _ []string) error {
			var q []app.QueueEntry
			raw, err := c.do("GET", "/api/queue", &q)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			if len(q) == 0 {
				_, err := fmt.Fprintln(w, "nothing queued")
				return err
			}
			tw := table(w)
			fmt.Fprintln(tw, "FROM\tTO\tFACE\tUP\tSTANZAS\tBYTES\tOLDEST")
			for _, e := range q {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%d\t%s\n", e.From, e.To, e.Face, e.Up, e.Stanzas, e.Bytes, dur(e.OldestQueued))
			}
			return tw.Flush()
		})
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Ask a running relay's policy"}
	var dir, kind, auth string
	var size int
	var noTLS bool
	check := adminCmd("check DOMAIN", "Would a stanza between our domains and DOMAIN pass, and by which rule? (a dry run)", cobra.ExactArgs(1),
		func(c *client, af *adminFlags, w io.Writer, args []string) error {
			q := url.Values{"domain": {args[0]}, "dir": {dir}, "kind": {kind}, "auth": {auth}, "tls": {"1"}}
			if size > 0 {
				q.Set("size", fmt.Sprint(size))
			}
			if noTLS {
				q.Set("tls", "0")
			}
			var pc app.PolicyCheck
			raw, err := c.do("GET", "/api/policy/check?"+q.Encode(), &pc)
			if err != nil {
				return err
			}
			if af.json {
				return printJSON(w, raw)
			}
			verdict := "ALLOWED"
			if !pc.Allowed {
				verdict = "REFUSED"
			}
			tw := table(w)
			fmt.Fprintf(tw, "verdict\t%s (%s %s %s, %d bytes, %s, tls=%v)\n", verdict, pc.Kind, pc.Direction, pc.Domain, pc.Size, pc.Auth, pc.TLS)
			fmt.Fprintf(tw, "decided at\t%s: %s by %s\n", pc.Stage, pc.Reason, orDash(pc.Rule))
			if pc.StreamError != "" {
				fmt.Fprintf(tw, "stream error\t%s\n", pc.StreamError)
			}
			if pc.StanzaError != "" {
				fmt.Fprintf(tw, "stanza error\t%s (%s)\n", pc.StanzaError, pc.StanzaErrorType)
			} else if !pc.Allowed && pc.Stage == "stanza" {
				fmt.Fprintf(tw, "stanza error\tnone: dropped without an answer\n")
			}
			trust := "dialback accepted"
			if pc.SecureAuth {
				trust = "certificate, DANE or pin required"
			}
			if pc.Pins > 0 {
				trust = fmt.Sprintf("one of %d pinned keys required", pc.Pins)
			}
			fmt.Fprintf(tw, "authentication\t%s (%s)\n", trust, orDash(pc.TrustRule))
			if pc.RatePerSec > 0 {
				fmt.Fprintf(tw, "rate\t%g/s, burst %d\n", pc.RatePerSec, pc.RateBurst)
			}
			return tw.Flush()
		})
	check.Flags().StringVar(&dir, "dir", "in", "in (from DOMAIN to us) or out")
	check.Flags().StringVar(&kind, "kind", "message", "message, presence, iq or subscribe")
	check.Flags().StringVar(&auth, "auth", "dialback", "how DOMAIN authenticated: dialback or external")
	check.Flags().IntVar(&size, "size", 0, "the stanza's size in bytes")
	check.Flags().BoolVar(&noTLS, "no-tls", false, "as if the stream were not encrypted")
	cmd.AddCommand(check)
	return cmd
}
