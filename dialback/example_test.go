package dialback_test

import (
	"fmt"

	"github.com/fedrelay/fedrelay/dialback"
)

// A full dialback exchange in memory: the relay, as capulet.example, sends
// stanzas to montague.example. montague is the Receiving server and checks
// the key with capulet's Authoritative server, which is the relay again
// (any instance sharing the secret) on a verify-only connection. Every
// element crosses the "wire" as bytes: Append on one side, Parse on the
// other.
func Example() {
	relaySecret, _ := dialback.NewSecret([]byte("s3cr3tf0rd14lb4ck"))
	montagueSecret, _ := dialback.NewSecret([]byte("d14lb4ck43v3r"))
	isRelay := func(d string) bool { return d == "capulet.example" }
	isMontague := func(d string) bool { return d == "montague.example" }

	send := func(who string, e dialback.Element) dialback.Element {
		raw := e.Append(nil)
		fmt.Printf("%-9s %s\n", who, raw)
		got, err := dialback.Parse(raw)
		if err != nil {
			panic(err)
		}
		return got
	}

	// 1. The relay (Initiating) connects to montague, which sends stream ID
	// D60000229F, and asks to send from capulet to montague.
	relayOut := dialback.NewStream(dialback.Config{
		ID: "D60000229F", Outbound: true, Secret: relaySecret, Serves: isRelay,
	})
	montagueIn := dialback.NewStream(dialback.Config{
		ID: "D60000229F", Secret: montagueSecret, Serves: isMontague,
	})
	req, _ := relayOut.SendResult("capulet.example", "montague.example")
	d := montagueIn.Handle(send("relay:", req))
	fmt.Println("montague:", d.Action)

	// 2. montague (Receiving) opens a verify-only stream to capulet's
	// Authoritative server, which sends stream ID 417GAF25.
	montagueLink := dialback.NewStream(dialback.Config{
		ID: "417GAF25", Outbound: true, Secret: montagueSecret, Serves: isMontague,
	})
	relayIn := dialback.NewStream(dialback.Config{
		ID: "417GAF25", Secret: relaySecret, Serves: isRelay,
	})
	verify, _ := montagueLink.SendVerify(d.Verify)
	d = relayIn.Handle(send("montague:", verify))

	// 3. The relay (Authoritative) recognises its own key.
	d = montagueLink.Handle(send("relay:", d.Reply))
	fmt.Println("montague:", d.Action, "to the stream with id", d.Answer.ID)

	// 4. montague concludes on the original stream and tells the relay.
	d = montagueIn.Conclude(d.Answer)
	d = relayOut.Handle(send("montague:", d.Reply))
	_, bounce := d.Outcome.Bounce()
	fmt.Println("relay:", d.Action, d.Pair.From, "->", d.Pair.To, d.Outcome, "bounce:", bounce)

	fmt.Println("relay may send:", relayOut.MaySend("capulet.example", "montague.example"))
	fmt.Println("montague may receive:", montagueIn.MayReceive("capulet.example", "montague.example"))
	// Output:
	// relay:    <db:result from='capulet.example' to='montague.example'>b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:result>
	// montague: forward
	// montague: <db:verify from='montague.example' to='capulet.example' id='D60000229F'>b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:verify>
	// relay:    <db:verify from='capulet.example' to='montague.example' id='D60000229F' type='valid'/>
	// montague: deliver to the stream with id D60000229F
	// montague: <db:result from='montague.example' to='capulet.example' type='valid'/>
	// relay: settle capulet.example -> montague.example authorized bounce: false
	// relay may send: true
	// montague may receive: true
}

// Keys are made from the secret and the stream; here the XEP-0185 example.
func ExampleSecret_Key() {
	s, err := dialback.NewSecret([]byte("s3cr3tf0rd14lb4ck"))
	if err != nil {
		panic(err)
	}
	key := s.Key("xmpp.example.com", "example.org", "D60000229F")
	fmt.Println(string(key))
	fmt.Println(key, s) // neither prints its value
	fmt.Println(s.Verify("xmpp.example.com", "example.org", "D60000229F", " "+key+"\n"))
	// Output:
	// 37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643
	// REDACTED REDACTED
	// true
}

// Parse errors carry the stream error to close the stream with.
func ExampleParse() {
	_, err := dialback.Parse([]byte(`<db:result from='juliet@capulet.example' to='montague.example'>k</db:result>`))
	fmt.Println(err)
	// Output:
	// dialback: result from: address has a localpart: improper-addressing
}
