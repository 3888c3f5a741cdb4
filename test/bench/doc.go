// Package bench measures fedrelay as operators run it: the relay as its own
// process, built from this module (cmd/fedrelay) and started from a
// generated configuration, driven over real S2S streams on loopback, with
// CPU time read from /proc/<pid>/stat, memory from /proc/<pid>/status and
// allocations from the relay's own /metrics. cmd/fedrelay-bench is its
// command line; BENCHMARKS.md is generated from its JSON.
//
// The world of every scenario (World) is all on 127.61.0.0/16: a
// nameserver of the bench's own answering the SRV queries of the generated
// remote domains; an outside server (s2s/peer) hosting every
// *.remote.bench domain, which opens streams to the relay's federation face
// and receives the relay's outbound streams; an inside server hosting
// a.bench at the relay's route, which receives what crosses inbound and
// opens streams to the internal face. Dialback is real everywhere: each
// side checks the other's key with a db:verify to the right Authoritative
// server (the relay, the outside server through DNS, the inside server).
//
// Two references run in the same process tree and the same run, so that
// figures are ratios that survive a noisy machine: the floor, a minimal
// forwarder started as a child process of the tool (direct TLS in, stanza
// boundaries found with s2s/wire, direct TLS out, nothing else), and
// Prosody (test/bench/prosody) receiving the same S2S load for an online
// c2s user.
//
// Scenarios: throughput, latency, idle, setup, dead, fanout and flood
// (Scenarios describes each). Options.Quick runs each small and once;
// TestQuickAll runs them all through the command, so that the tool cannot
// rot.
package bench
