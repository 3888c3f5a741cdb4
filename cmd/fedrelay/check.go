package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/check"
)

func newCheckCmd() *cobra.Command {
	var (
		cf     configFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "check [certs|dns|connectivity]...",
		Short: "Check certificates, public DNS and connectivity of the configured relay",
		Long: "check examines what the federation will see of the relay the configuration describes, and\n" +
			"prints one line per finding: OK, INFO, WARN or FAIL, the check, the subject, and what was found.\n" +
			"\n" +
			"  certs         each domain's cert_file and key_file: they parse, the key is the certificate's,\n" +
			"                the certificate names the domain (RFC 6125, XEP-0178), chains to a trusted root\n" +
			"                (system roots and tls.ca_file; self-signed: WARN), allows serverAuth, is valid\n" +
			"                now (FAIL) and for 14 more days (WARN); internal.ca_cert_file/ca_key_file if set.\n" +
			"  dns           the public _xmpp-server._tcp and _xmpps-server._tcp records of each domain and\n" +
			"                their addresses against federation.listen and listen_tls (through dns.servers\n" +
			"                or /etc/resolv.conf; dns.overrides ignored). An address that is not this host's\n" +
			"                is a WARN: it may be forwarded here (NAT), which cannot be seen from here.\n" +
			"  connectivity  a stream to each federation listener for each domain, as a remote server opens\n" +
			"                one: STARTTLS (or direct TLS, ALPN xmpp-server) and the features after it, and\n" +
			"                whether the certificate presented is valid for the domain; and a stream header\n" +
			"                to each domain's route. It needs the relay (and the internal servers) running.\n" +
			"\n" +
			"Without an argument every check runs, after the configuration's own warnings. The\n" +
			"configuration is loaded as run loads it. Exits 1 if any finding is FAIL, 0 otherwise (WARN\n" +
			"included), 2 for a bad configuration.",
		ValidArgs:             check.Names,
		Args:                  cobra.OnlyValidArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			fs := check.Run(ctx, cfg, args, check.Options{})
			out := cmd.OutOrStdout()
			if asJSON {
				err = writeFindingsJSON(out, fs)
			} else {
				writeFindings(out, fs)
			}
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			if n := check.Count(fs, check.Fail); n > 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("check: %d failed, %d warnings", n, check.Count(fs, check.Warn))}
			}
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"findings": [{"verdict", "check", "subject", "message"}...], "ok", "info", "warn", "fail"} instead of lines`)
	return cmd
}

// writeFindings prints one aligned line per finding:
// "OK    certs  a.example: certificate valid for a.example, ...".
func writeFindings(w io.Writer, fs []check.Finding) {
	width := 0
	for _, f := range fs {
		width = max(width, len(f.Check))
	}
	for _, f := range fs {
		fmt.Fprintf(w, "%-5s %-*s %s: %s\n", f.Verdict, width+1, f.Check, f.Subject, f.Message)
	}
}

func writeFindingsJSON(w io.Writer, fs []check.Finding) error {
	if fs == nil {
		fs = []check.Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Findings []check.Finding `json:"findings"`
		OK       int             `json:"ok"`
		Info     int             `json:"info"`
		Warn     int             `json:"warn"`
		Fail     int             `json:"fail"`
	}{fs, check.Count(fs, check.OK), check.Count(fs, check.Info), check.Count(fs, check.Warn), check.Count(fs, check.Fail)})
}
