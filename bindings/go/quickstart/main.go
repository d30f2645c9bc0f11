// The Go quick start of README.md (tests/bindings/readme_quickstarts.sh keeps the two
// identical; tests/bindings/go_consumer.sh builds it out of the tree and runs it).
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	evstore "github.com/evstore/evstore/bindings/go"
)

func main() {
	ctx := context.Background()
	store, _, err := evstore.Open(ctx, os.Args[1], nil) // created if missing
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	hello := []evstore.EventInput{{Type: "Greeted", Payload: []byte("hello")}}
	if _, _, err := store.Append(ctx, "greetings", evstore.ExpectAny, hello); err != nil {
		log.Fatal(err)
	}
	for ev, err := range store.ReadStream(ctx, "greetings", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s %s\n", ev.StreamVersion, ev.Type, ev.Payload)
	}
}
