package peer_test

import (
	"context"
	"fmt"
	"net"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Two servers, each the other's Authoritative server: a.example opens an
// authenticated stream to b.example and writes a stanza, which b.example's
// Handler sees.
func Example() {
	la, _ := net.Listen("tcp", "127.0.0.1:0")
	lb, _ := net.Listen("tcp", "127.0.0.1:0")
	got := make(chan string, 1)
	a := &peer.Server{Domains: []string{"a.example"},
		Authoritative: func(string) string { return lb.Addr().String() }}
	b := &peer.Server{Domains: []string{"b.example"},
		Authoritative: func(string) string { return la.Addr().String() },
		Handler: func(in *peer.Inbound, el *wire.Element) {
			got <- string(el.From) + " → " + string(el.To) + ": " + string(el.ID) // el is valid during the call only
		}}
	served := make(chan error, 2)
	go func() { served <- a.Serve(la) }()
	go func() { served <- b.Serve(lb) }()

	o, err := a.Dial(context.Background(), lb.Addr().String(), "a.example", "b.example")
	if err != nil {
		fmt.Println(err)
		return
	}
	o.Write([]byte(peer.Message("alice@a.example", "bob@b.example", "m1", "Hello!").Raw))
	fmt.Println(<-got)

	o.Close()
	a.Close()
	b.Close()
	fmt.Println(<-served, <-served)
	// Output:
	// alice@a.example → bob@b.example: m1
	// peer: server closed peer: server closed
}
