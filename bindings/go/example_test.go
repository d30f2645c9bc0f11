package evstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	evstore "github.com/evstore/evstore/bindings/go"
)

// The bank scenario of the reference program: open alice with 1000, deposit 500,
// withdraw 200, see a withdrawal past the balance refused, reopen, and find the
// balance recovered from the log.
func Example_bank() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "evstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bank")

	store, _, err := evstore.Open(ctx, path, nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.OpenAccount(ctx, "alice", 1000, "USD"); err != nil {
		log.Fatal(err)
	}
	if _, err := store.Deposit(ctx, "alice", 500); err != nil {
		log.Fatal(err)
	}
	if _, err := store.Withdraw(ctx, "alice", 200); err != nil {
		log.Fatal(err)
	}
	_, err = store.Withdraw(ctx, "alice", 1_000_000)
	fmt.Println("withdrawing 1000000 refused:", errors.Is(err, evstore.ErrInsufficientFunds))
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}

	store, info, err := evstore.Open(ctx, path, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	alice, err := store.GetAccount(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("reopened: %d events recovered, alice's balance is %d %s\n", info.NextPosition, alice.Balance, alice.Currency)
	for ev, err := range store.ReadStream(ctx, "account-alice", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.StreamVersion, string(ev.Payload))
	}
	// Output:
	// withdrawing 1000000 refused: true
	// reopened: 3 events recovered, alice's balance is 1300 USD
	// 0 {"AccountOpened":{"account_id":"alice","initial_balance":1000,"currency":"USD"}}
	// 1 {"MoneyDeposited":{"account_id":"alice","amount":500}}
	// 2 {"MoneyWithdrawn":{"account_id":"alice","amount":200}}
}

// Deleting streams and retention, as README.md shows it: a soft delete, a hard delete the
// account domain refuses while the balance is not zero, and a rule on a category.
func Example_lifecycle() {
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
	if _, _, err := store.Append(ctx, "order-17", evstore.ExpectNoStream, []evstore.EventInput{{Type: "Placed"}}); err != nil {
		log.Fatal(err)
	}
	samples := make([]evstore.EventInput, 1005)
	for i := range samples {
		samples[i] = evstore.EventInput{Type: "Sample", Payload: []byte(fmt.Sprint(i))}
	}
	if _, _, err := store.Append(ctx, "telemetry-7", evstore.ExpectNoStream, samples); err != nil {
		log.Fatal(err)
	}
	if _, err := store.OpenAccount(ctx, "alice", 100, ""); err != nil {
		log.Fatal(err)
	}

	// Soft: the stream is gone until appended to again, which continues its versions.
	if _, err := store.DeleteStream(ctx, "order-17", evstore.ExpectAny, evstore.DeleteSoft, [16]byte{}); err != nil {
		log.Fatal(err)
	}
	// Hard: the name is refused from then on (ErrStreamDeleted); an account's stream only
	// once its balance is zero.
	_, err = store.DeleteStream(ctx, "account-alice", evstore.ExpectAny, evstore.DeleteHard, [16]byte{})
	fmt.Println(errors.Is(err, evstore.ErrBalanceNotZero)) // true while alice has money
	// Every telemetry- stream keeps its last 1000 events, none older than a week.
	week := uint64(7 * 24 * time.Hour / time.Microsecond)
	rule := evstore.Retention{MaxCount: 1000, MaxAgeUs: week}
	if _, err := store.SetCategoryRetention(ctx, "telemetry-", rule, [16]byte{}); err != nil {
		log.Fatal(err)
	}

	version, _ := store.StreamVersion(ctx, "order-17")
	fmt.Println("order-17's version:", version)
	var first, n uint64
	for ev, err := range store.ReadStream(ctx, "telemetry-7", 0) {
		if err != nil {
			log.Fatal(err)
		}
		if n == 0 {
			first = ev.StreamVersion
		}
		n++
	}
	fmt.Printf("telemetry-7: %d events from version %d\n", n, first)
	// Output:
	// true
	// order-17's version: -1
	// telemetry-7: 1000 events from version 5
}
