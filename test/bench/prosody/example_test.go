package prosody_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/fedrelay/fedrelay/test/bench/prosody"
)

// Prosody for p.bench, which verifies dialback keys from relay.bench at
// 127.0.9.1:5269, with bob online to receive what arrives over S2S.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := prosody.Start(ctx, prosody.Options{
		Domain: "p.bench",
		IP:     "127.0.9.2",
		Hosts:  map[string]string{"relay.bench": "127.0.9.1"},
		Users:  map[string]string{"bob": "bob-pw"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	bob, err := prosody.Login(ctx, srv.C2SAddr(), "bob@p.bench", "bob-pw")
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	// … relay.bench opens an S2S stream to srv.S2SAddr() and sends messages
	// to bob@p.bench; CPU time of srv.PID() comes from /proc/<pid>/stat.
	for bob.Received() < 1000 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("delivered")
}
