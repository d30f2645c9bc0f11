package evstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	evstore "github.com/evstore/evstore/bindings/go"
)

// A projection kept in the store, with exactly-once effects (docs/consumers.md): the
// consumer "deposit-totals" reads the deposits of the account-* streams and keeps each
// account's running total in a stream totals-<account>. Each total is appended with
// Consumer.Append, which stores it and the consumer's checkpoint in one atomic step:
// killed anywhere, the program run again goes on after the last deposit whose total is
// stored, so no deposit is counted twice or missed.
func Example_projection() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "evstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, _, err := evstore.Open(ctx, filepath.Join(dir, "store"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	for _, d := range []struct{ account, amount string }{{"a", "10"}, {"b", "5"}, {"a", "7"}} {
		ev := []evstore.EventInput{{Type: "Deposited", Payload: []byte(d.amount)}}
		if _, _, err := store.Append(ctx, "account-"+d.account, evstore.ExpectAny, ev); err != nil {
			log.Fatal(err)
		}
	}

	c, err := store.OpenConsumer(ctx, "deposit-totals", &evstore.ConsumerOptions{
		Filter: evstore.SubscribeFilter{StreamPrefix: "account-", Types: []string{"Deposited"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Here the loop ends once nothing new came for 200 ms; a service runs until shutdown.
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	for ev, err := range c.All(ctx) {
		if err != nil {
			break // ctx's end here; a service would log anything else and stop
		}
		account := strings.TrimPrefix(ev.Stream, "account-")
		amount, _ := strconv.Atoi(string(ev.Payload))
		// the total so far is the projection's own stream's last event
		version, total := lastTotal(ctx, store, "totals-"+account)
		total += amount
		effect := []evstore.StreamAppend{{
			Stream: "totals-" + account, ExpectedVersion: version,
			Events: []evstore.EventInput{{Type: "TotalChanged", Payload: []byte(strconv.Itoa(total))}},
		}}
		// the effect and "handled through ev.Position": both stored, or neither
		if _, _, err := c.Append(ctx, ev.Position, effect); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d\n", account, total)
	}
	// Output:
	// a: 10
	// b: 5
	// a: 17
}

// lastTotal is the version of stream's last event (evstore.ExpectNoStream when it has
// none) and the total it holds.
func lastTotal(ctx context.Context, store *evstore.Store, stream string) (int64, int) {
	version, err := store.StreamVersion(ctx, stream)
	if err != nil {
		log.Fatal(err)
	}
	if version < 0 {
		return evstore.ExpectNoStream, 0
	}
	for ev, err := range store.ReadStream(ctx, stream, uint64(version)) {
		if err != nil {
			log.Fatal(err)
		}
		total, _ := strconv.Atoi(string(ev.Payload))
		return version, total
	}
	log.Fatalf("%s has no event at version %d", stream, version)
	return 0, 0
}
