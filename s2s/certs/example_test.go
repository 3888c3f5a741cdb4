package certs_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// Example wires the package the way the relay's two faces use it.
func Example() {
	cfg := config.Config{
		Domains: []config.Domain{{Name: "a.example"}}, // no cert_file: generated
		TLS:     config.TLS{VerifyPeers: true, MinVersion: tls.VersionTLS12},
	}
	store, err := certs.NewStore(cfg.Domains, certs.Options{OnDemand: true, MinVersion: cfg.TLS.MinVersion})
	if err != nil {
		fmt.Println(err)
		return
	}
	log := slog.New(slog.DiscardHandler) // the relay's logger
	for _, w := range store.Warnings() {
		log.Warn(w)
	}
	verifier, err := certs.NewVerifier(cfg.TLS)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Federation face: the internal domains' certificates only.
	federationSTARTTLS := store.ConfiguredOnly().ServerConfig(false)
	// Internal face: a certificate for whatever remote domain is asked for.
	internalSTARTTLS := store.ServerConfig(false)
	// Outbound to remote.org as a.example, over direct TLS.
	outbound, err := store.ConfiguredOnly().ClientConfig("a.example", "remote.org", true)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _, _ = federationSTARTTLS, internalSTARTTLS, outbound

	// After the handshake of an inbound stream whose header says
	// from='remote.org', and the peer sent no certificate:
	var state tls.ConnectionState // conn.ConnectionState()
	if err := verifier.VerifyPeer(state, "remote.org"); err != nil {
		if errors.Is(err, certs.ErrNoCertificate) {
			fmt.Println("no SASL EXTERNAL, dialback:", err)
		}
	}
	// Output:
	// no SASL EXTERNAL, dialback: certs: peer certificate for remote.org: no certificate
}
