package evstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

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
