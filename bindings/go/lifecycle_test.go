package evstore

import (
	"errors"
	"iter"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var noID [16]byte

// inputs of type T with these payloads.
func payloads(ps ...string) []EventInput {
	out := make([]EventInput, len(ps))
	for i, p := range ps {
		out[i] = EventInput{Type: "T", Payload: []byte(p)}
	}
	return out
}

// readErr is the error an iterator ends with (nil if none), failing on any event.
func readErr(t *testing.T, what string, events iter.Seq2[Event, error]) error {
	t.Helper()
	for e, err := range events {
		if err != nil {
			return err
		}
		t.Fatalf("%s gave event %+v", what, e)
	}
	return nil
}

func streamVersions(t *testing.T, s *Store, stream string) []uint64 {
	t.Helper()
	var out []uint64
	for _, e := range collect(t, s.ReadStream(bg, stream, 0)) {
		out = append(out, e.StreamVersion)
	}
	return out
}

func sameVersions(t *testing.T, what string, got []uint64, want ...uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: versions %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: versions %v, want %v", what, got, want)
		}
	}
}

func next(t *testing.T, s *Store) uint64 {
	t.Helper()
	return must(s.PositionAt(bg, PositionEnd))
}

// Soft and hard deletes: refusals write nothing; afterwards every read passes over the
// removed events, before and after a reopen; writers see no stream (soft) or a
// tombstone (hard); a soft-deleted stream continues its versions.
func TestDeleteStream(t *testing.T) {
	s, path := newStore(t)
	must2(s.Append(bg, "order-1", ExpectNoStream, payloads("a0", "a1", "a2"))) // 0..2
	must2(s.Append(bg, "order-2", ExpectNoStream, payloads("b0", "b1")))       // 3, 4
	must2(s.Append(bg, "user-1", ExpectNoStream, payloads("u0")))              // 5

	// Refusals, in the order of the checks; nothing is written.
	_, err := s.DeleteStream(bg, "order-1", 1, DeleteSoft, noID)
	e := wantCode(t, err, ErrWrongExpectedVersion)
	if v, ok := e.ActualVersion(); !ok || v != 2 {
		t.Errorf("ActualVersion() = %d, %v (%q)", v, ok, e.Message)
	}
	_, err = s.DeleteStream(bg, "order-1", ExpectNoStream, DeleteSoft, noID)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.DeleteStream(bg, "nope", ExpectAny, DeleteHard, noID)
	wantCode(t, err, ErrNotFound)
	_, err = s.DeleteStream(bg, "order-1", ExpectAny, DeleteMode(2), noID)
	if e := wantCode(t, err, ErrInvalidArgument); !strings.Contains(e.Message, "0x2") {
		t.Errorf("unknown mode: %q", e.Message)
	}
	_, err = s.DeleteStream(bg, "order-1\x00", ExpectAny, DeleteSoft, noID)
	wantCode(t, err, ErrInvalidArgument)
	if n := next(t, s); n != 6 {
		t.Fatalf("refused deletes wrote: next position %d", n)
	}

	if p := must(s.DeleteStream(bg, "order-1", 2, DeleteSoft, noID)); p != 6 {
		t.Errorf("the soft delete's entry is at %d, want 6", p)
	}
	if p := must(s.DeleteStream(bg, "order-2", ExpectExists, DeleteHard, noID)); p != 7 {
		t.Errorf("the hard delete's entry is at %d, want 7", p)
	}

	reads := func(s *Store, when string) {
		t.Helper()
		samePositions(t, when+": ReadAll", collect(t, s.ReadAll(bg, 0)), 5)
		samePositions(t, when+": ReadAllBackward", collect(t, s.ReadAllBackward(bg, PositionEnd)), 5)
		samePositions(t, when+": ReadCategory", collect(t, s.ReadCategory(bg, "order-", 0)))
		// The window of a poll counts the empty positions.
		samePositions(t, when+": Poll(0, 5)", collect(t, s.Poll(bg, 0, 5)))
		wantCode(t, readErr(t, "ReadStream(order-1)", s.ReadStream(bg, "order-1", 0)), ErrNotFound)
		wantCode(t, readErr(t, "ReadStreamBackward(order-1)", s.ReadStreamBackward(bg, "order-1", PositionEnd)), ErrNotFound)
		wantCode(t, readErr(t, "ReadStream(order-2)", s.ReadStream(bg, "order-2", 0)), ErrStreamDeleted)
		wantCode(t, readErr(t, "ReadStreamBackward(order-2)", s.ReadStreamBackward(bg, "order-2", PositionEnd)), ErrStreamDeleted)
		_, err := s.ReadEvent(bg, 0)
		if e := wantCode(t, err, ErrNotFound); !strings.Contains(e.Message, "removed") {
			t.Errorf("%s: ReadEvent of a removed event: %q", when, e.Message)
		}
		_, err = s.ReadEvent(bg, 6)
		if e := wantCode(t, err, ErrNotFound); !strings.Contains(e.Message, "lifecycle entry") {
			t.Errorf("%s: ReadEvent of the delete's entry: %q", when, e.Message)
		}
		if l := must(s.Streams(bg)); len(l) != 1 || l[0].Name != "user-1" {
			t.Errorf("%s: Streams = %+v", when, l)
		}
		if v := must(s.StreamVersion(bg, "order-1")); v != -1 {
			t.Errorf("%s: StreamVersion(order-1) = %d", when, v)
		}
		_, err = s.StreamVersion(bg, "order-2")
		wantCode(t, err, ErrStreamDeleted)
		st := must(s.Stats(bg))
		if st.RemovedEvents != 5 || st.LifecycleEntries != 2 || st.Events != 8 || st.Streams != 1 {
			t.Errorf("%s: Stats = %+v", when, st)
		}
	}
	reads(s, "after the deletes")

	// What writers see.
	_, _, err = s.Append(bg, "order-2", ExpectAny, payloads("b2"))
	wantCode(t, err, ErrStreamDeleted)
	_, err = s.DeleteStream(bg, "order-2", ExpectAny, DeleteSoft, noID)
	wantCode(t, err, ErrStreamDeleted)
	_, err = s.TruncateStream(bg, "order-2", 0, noID)
	wantCode(t, err, ErrStreamDeleted)
	_, _, err = s.Append(bg, "order-1", 2, payloads("a3"))
	e = wantCode(t, err, ErrWrongExpectedVersion)
	if v, ok := e.ActualVersion(); !ok || v != -1 {
		t.Errorf("an append expecting the deleted stream's version: ActualVersion() = %d, %v", v, ok)
	}
	_, err = s.DeleteStream(bg, "order-1", ExpectAny, DeleteSoft, noID)
	wantCode(t, err, ErrNotFound)
	if n := next(t, s); n != 8 {
		t.Fatalf("refused writes wrote: next position %d", n)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	reads(s, "after a reopen")

	// The soft-deleted stream continues its versions; its old events stay removed.
	if first, last := must2(s.Append(bg, "order-1", ExpectNoStream, payloads("a3"))); first != 8 || last != 3 {
		t.Errorf("append after the soft delete: position %d, version %d", first, last)
	}
	got := collect(t, s.ReadStream(bg, "order-1", 0))
	if len(got) != 1 || got[0].StreamVersion != 3 || string(got[0].Payload) != "a3" {
		t.Errorf("order-1 after its new event: %+v", got)
	}
	samePositions(t, "ReadAll after the new event", collect(t, s.ReadAll(bg, 0)), 5, 8)
}

// A subscription from 0 delivers the events left and none of the removed ones.
func TestSubscriptionPassesOverRemovedEvents(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "gone", ExpectNoStream, payloads("g0", "g1"))) // 0, 1
	must2(s.Append(bg, "kept", ExpectNoStream, payloads("k0")))       // 2
	must2(s.Append(bg, "cut", ExpectNoStream, payloads("c0", "c1")))  // 3, 4
	must(s.DeleteStream(bg, "gone", ExpectAny, DeleteHard, noID))     // 5
	must(s.TruncateStream(bg, "cut", 1, noID))                        // 6
	var mu sync.Mutex
	var seen []uint64
	sub := must(s.Subscribe(bg, 0, func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.Position)
		return nil
	}))
	must2(s.Append(bg, "kept", ExpectAny, payloads("k1"))) // 7
	waitFor(t, "the live event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == 7
	})
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != 2 || seen[1] != 4 || seen[2] != 7 {
		t.Errorf("the subscription delivered %v, want [2 4 7]", seen)
	}
}

// Truncation: the versions below the bound leave every read, the rest keep their
// versions; a bound past the version + 1 is refused; a lower bound brings nothing back;
// truncated to its end, a stream keeps its version for writers.
func TestTruncateStream(t *testing.T) {
	s, path := newStore(t)
	must2(s.Append(bg, "log", ExpectNoStream, payloads("0", "1", "2", "3", "4"))) // 0..4
	if p := must(s.TruncateStream(bg, "log", 2, noID)); p != 5 {
		t.Errorf("the truncation's entry is at %d, want 5", p)
	}
	sameVersions(t, "after truncating before 2", streamVersions(t, s, "log"), 2, 3, 4)
	samePositions(t, "ReadStreamBackward", collect(t, s.ReadStreamBackward(bg, "log", PositionEnd)), 4, 3, 2)
	samePositions(t, "ReadStream from version 1", collect(t, s.ReadStream(bg, "log", 1)), 2, 3, 4)
	samePositions(t, "ReadAll", collect(t, s.ReadAll(bg, 0)), 2, 3, 4)

	_, err := s.TruncateStream(bg, "log", 6, noID)
	if e := wantCode(t, err, ErrInvalidArgument); !strings.Contains(e.Message, "at most 5") {
		t.Errorf("a truncation past the end: %q", e.Message)
	}
	_, err = s.TruncateStream(bg, "nope", 0, noID)
	wantCode(t, err, ErrNotFound)
	must(s.TruncateStream(bg, "log", 1, noID)) // below the first: nothing comes back
	sameVersions(t, "after truncating before 1", streamVersions(t, s, "log"), 2, 3, 4)

	must(s.TruncateStream(bg, "log", 5, noID))
	wantCode(t, readErr(t, "ReadStream(log)", s.ReadStream(bg, "log", 0)), ErrNotFound)
	if v := must(s.StreamVersion(bg, "log")); v != 4 {
		t.Errorf("StreamVersion after truncating every event = %d, want 4", v)
	}
	_, _, err = s.Append(bg, "log", ExpectNoStream, payloads("5"))
	wantCode(t, err, ErrWrongExpectedVersion)
	must2(s.Append(bg, "log", 4, payloads("5")))

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	sameVersions(t, "after a reopen", streamVersions(t, s, "log"), 5)
	if st := must(s.Stats(bg)); st.RemovedEvents != 5 || st.LifecycleEntries != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

// Rules by count on a category and on a stream: set, read, replaced and cleared, each
// obeyed by reads at once; a rule's change never brings an event back.
func TestRetentionByCount(t *testing.T) {
	s, path := newStore(t)
	must2(s.Append(bg, "t-1", ExpectNoStream, payloads("0", "1", "2", "3", "4")))
	must2(s.Append(bg, "t-2", ExpectNoStream, payloads("0", "1")))
	must2(s.Append(bg, "u-1", ExpectNoStream, payloads("0", "1", "2")))

	must(s.SetCategoryRetention(bg, "t-", Retention{MaxCount: 2}, noID))
	sameVersions(t, "t-1 under its category's rule", streamVersions(t, s, "t-1"), 3, 4)
	sameVersions(t, "t-2 under its category's rule", streamVersions(t, s, "t-2"), 0, 1)
	sameVersions(t, "u-1, under no rule", streamVersions(t, s, "u-1"), 0, 1, 2)
	for _, c := range []struct {
		what string
		get  func() (Retention, error)
		want Retention
	}{
		{"Retention(t-1)", func() (Retention, error) { return s.Retention(bg, "t-1") }, Retention{MaxCount: 2}},
		{"Retention(u-1)", func() (Retention, error) { return s.Retention(bg, "u-1") }, Retention{}},
		{"CategoryRetention(t-)", func() (Retention, error) { return s.CategoryRetention(bg, "t-") }, Retention{MaxCount: 2}},
		{"CategoryRetention(t)", func() (Retention, error) { return s.CategoryRetention(bg, "t") }, Retention{}},
		// No rule is set on the prefix "t-1" itself.
		{"CategoryRetention(t-1)", func() (Retention, error) { return s.CategoryRetention(bg, "t-1") }, Retention{}},
	} {
		if got := must(c.get()); got != c.want {
			t.Errorf("%s = %+v, want %+v", c.what, got, c.want)
		}
	}

	// A stream's own looser rule wins, but what the category's removed stays removed.
	must(s.SetRetention(bg, "t-1", Retention{MaxCount: 4}, noID))
	if r := must(s.Retention(bg, "t-1")); r != (Retention{MaxCount: 4}) {
		t.Errorf("Retention(t-1) with its own rule = %+v", r)
	}
	sameVersions(t, "t-1 under its own looser rule", streamVersions(t, s, "t-1"), 3, 4)
	must2(s.Append(bg, "t-1", ExpectAny, payloads("5", "6", "7")))
	sameVersions(t, "t-1 keeps its last 4", streamVersions(t, s, "t-1"), 4, 5, 6, 7)
	// Its own rule cleared, its category's applies again.
	must(s.ClearRetention(bg, "t-1", noID))
	sameVersions(t, "t-1 under its category's rule again", streamVersions(t, s, "t-1"), 6, 7)
	// The category's cleared: nothing comes back, new events stay.
	must(s.ClearCategoryRetention(bg, "t-", noID))
	if r := must(s.CategoryRetention(bg, "t-")); r != (Retention{}) {
		t.Errorf("CategoryRetention(t-) once cleared = %+v", r)
	}
	must2(s.Append(bg, "t-1", ExpectAny, payloads("8", "9")))
	sameVersions(t, "t-1 with no rule", streamVersions(t, s, "t-1"), 6, 7, 8, 9)

	must(s.SetCategoryRetention(bg, "u-", Retention{MaxCount: 1}, noID))
	sameVersions(t, "u-1 under its category's rule", streamVersions(t, s, "u-1"), 2)

	_, err := s.SetRetention(bg, "", Retention{MaxCount: 1}, noID)
	wantCode(t, err, ErrInvalidArgument) // a stream's name is never empty
	_, err = s.Retention(bg, "")
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.CategoryRetention(bg, "t\x00")
	wantCode(t, err, ErrInvalidArgument)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	sameVersions(t, "t-1 after a reopen", streamVersions(t, s, "t-1"), 6, 7, 8, 9)
	sameVersions(t, "u-1 after a reopen", streamVersions(t, s, "u-1"), 2)
	if r := must(s.Retention(bg, "u-1")); r != (Retention{MaxCount: 1}) {
		t.Errorf("Retention(u-1) after a reopen = %+v", r)
	}
	// t-1: 6 of 10; t-2: none; u-1: 2 of 3.
	if st := must(s.Stats(bg)); st.RemovedEvents != 8 || st.LifecycleEntries != 5 || st.Streams != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

// Rules by age. The C API has no clock to set (the Rust tests replace the store's), so
// this uses the real one in the one direction that cannot race: the events are made
// older than the rule's age first (a sleep), then the rule is set.
func TestRetentionByAge(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "m-1", ExpectNoStream, payloads("0", "1", "2")))
	day := uint64(24 * time.Hour / time.Microsecond)
	must(s.SetRetention(bg, "m-1", Retention{MaxAgeUs: day}, noID))
	sameVersions(t, "under a day's rule", streamVersions(t, s, "m-1"), 0, 1, 2)
	if r := must(s.Retention(bg, "m-1")); r != (Retention{MaxAgeUs: day}) {
		t.Errorf("Retention(m-1) = %+v", r)
	}

	time.Sleep(20 * time.Millisecond)
	must(s.SetRetention(bg, "m-1", Retention{MaxAgeUs: 5000}, noID)) // 5 ms
	wantCode(t, readErr(t, "ReadStream(m-1)", s.ReadStream(bg, "m-1", 0)), ErrNotFound)
	samePositions(t, "ReadAll", collect(t, s.ReadAll(bg, 0)))
	if v := must(s.StreamVersion(bg, "m-1")); v != 2 {
		t.Errorf("StreamVersion(m-1) = %d: a rule changes what readers see only", v)
	}
	// A looser rule does not bring them back.
	must(s.SetRetention(bg, "m-1", Retention{MaxAgeUs: day}, noID))
	wantCode(t, readErr(t, "ReadStream(m-1) under a day's rule again", s.ReadStream(bg, "m-1", 0)), ErrNotFound)
	if st := must(s.Stats(bg)); st.RemovedEvents != 3 {
		t.Errorf("Stats.RemovedEvents = %d, want 3", st.RemovedEvents)
	}
}

// An operation with an id is idempotent; the id given to another operation or an event
// is refused; the zero id is none.
func TestLifecycleIDs(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "a", ExpectNoStream, []EventInput{{Type: "T", ID: [16]byte{0xE, 1}}, {Type: "T"}, {Type: "T"}}))
	id := [16]byte{0x5A, 0x5A}
	p := must(s.DeleteStream(bg, "a", ExpectAny, DeleteSoft, id))
	if q := must(s.DeleteStream(bg, "a", ExpectAny, DeleteSoft, id)); q != p {
		t.Errorf("the retry's position %d, the first's %d", q, p)
	}
	if n := next(t, s); n != p+1 {
		t.Errorf("the retry wrote: next position %d", n)
	}
	_, err := s.TruncateStream(bg, "a", 0, id)
	wantCode(t, err, ErrAlreadyExists)
	_, err = s.SetCategoryRetention(bg, "x-", Retention{MaxCount: 3}, id)
	wantCode(t, err, ErrAlreadyExists)
	// An event's id.
	_, err = s.SetCategoryRetention(bg, "x-", Retention{MaxCount: 3}, [16]byte{0xE, 1})
	wantCode(t, err, ErrAlreadyExists)
	must2(s.Append(bg, "b", ExpectNoStream, payloads("0", "1")))
	p = must(s.TruncateStream(bg, "b", 1, noID))
	if q := must(s.TruncateStream(bg, "b", 1, noID)); q != p+1 {
		t.Errorf("without an id, two truncations: positions %d, %d", p, q)
	}
}

// The account domain guards its streams: not deleted while the balance is not zero,
// never truncated or given a rule; afterwards the account is not found, through a
// reopen; a soft-deleted account's id opens a new one, a hard-deleted one's never.
func TestAccountStreamGuard(t *testing.T) {
	s, path := newStore(t)
	must(s.OpenAccount(bg, "acc1", 10, ""))
	_, err := s.DeleteStream(bg, "account-acc1", ExpectAny, DeleteSoft, noID)
	if e := wantCode(t, err, ErrBalanceNotZero); !strings.Contains(e.Message, "10") {
		t.Errorf("the guard's message names no balance: %q", e.Message)
	}
	_, err = s.DeleteStream(bg, "account-acc1", ExpectAny, DeleteHard, noID)
	wantCode(t, err, ErrBalanceNotZero)
	_, err = s.TruncateStream(bg, "account-acc1", 1, noID)
	wantCode(t, err, ErrInvalidArgument)
	for _, prefix := range []string{"account-", "acc", ""} {
		_, err = s.SetCategoryRetention(bg, prefix, Retention{MaxCount: 5}, noID)
		wantCode(t, err, ErrInvalidArgument)
	}
	_, err = s.SetRetention(bg, "account-acc1", Retention{MaxAgeUs: 1}, noID)
	wantCode(t, err, ErrInvalidArgument)
	if a := must(s.GetAccount(bg, "acc1")); a.Balance != 10 {
		t.Fatalf("refused operations changed the account: %+v", a)
	}

	must(s.Withdraw(bg, "acc1", 10))
	must(s.DeleteStream(bg, "account-acc1", ExpectAny, DeleteSoft, noID))
	_, err = s.GetAccount(bg, "acc1")
	wantCode(t, err, ErrNotFound)
	_, err = s.Deposit(bg, "acc1", 1)
	wantCode(t, err, ErrNotFound)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	_, err = s.GetAccount(bg, "acc1")
	wantCode(t, err, ErrNotFound)
	must(s.OpenAccount(bg, "acc1", 0, "EUR")) // a new account, continuing the stream
	if a := must(s.GetAccount(bg, "acc1")); a.Balance != 0 || a.Currency != "EUR" || a.Version != 1 {
		t.Errorf("the new account = %+v", a)
	}
	must(s.DeleteStream(bg, "account-acc1", ExpectAny, DeleteHard, noID))
	_, err = s.OpenAccount(bg, "acc1", 0, "")
	wantCode(t, err, ErrStreamDeleted)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	_, err = s.GetAccount(bg, "acc1")
	wantCode(t, err, ErrNotFound)
	_, err = s.OpenAccount(bg, "acc1", 0, "")
	wantCode(t, err, ErrStreamDeleted)
}

// A read-only handle sees the operations and refuses to make any.
func TestLifecycleOnAReadOnlyStore(t *testing.T) {
	s, path := newStore(t)
	must2(s.Append(bg, "n-1", ExpectNoStream, payloads("0", "1")))
	must(s.SetCategoryRetention(bg, "n-", Retention{MaxCount: 1}, noID))
	r := openReadOnly(t, path)
	sameVersions(t, "the read-only handle's n-1", streamVersions(t, r, "n-1"), 1)
	if got := must(r.Retention(bg, "n-1")); got != (Retention{MaxCount: 1}) {
		t.Errorf("Retention(n-1) on the read-only handle = %+v", got)
	}
	for name, call := range map[string]func() error{
		"DeleteStream":           func() error { _, err := r.DeleteStream(bg, "n-1", ExpectAny, DeleteSoft, noID); return err },
		"TruncateStream":         func() error { _, err := r.TruncateStream(bg, "n-1", 1, noID); return err },
		"SetRetention":           func() error { _, err := r.SetRetention(bg, "n-1", Retention{MaxCount: 1}, noID); return err },
		"ClearCategoryRetention": func() error { _, err := r.ClearCategoryRetention(bg, "n-", noID); return err },
	} {
		if err := call(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v", name, err)
		}
	}
	// The writer's next operation is seen by the reader.
	must(s.DeleteStream(bg, "n-1", ExpectAny, DeleteHard, noID))
	if err := s.Sync(bg); err != nil {
		t.Fatal(err)
	}
	wantCode(t, readErr(t, "the reader's ReadStream(n-1)", r.ReadStream(bg, "n-1", 0)), ErrStreamDeleted)
}

// SchemaSQL refuses what is not a PostgreSQL URL, and names a server that cannot be
// reached (here: a port nothing listens on) with ErrUnavailable.
func TestSchemaSQLErrors(t *testing.T) {
	_, err := SchemaSQL(bg, filepath.Join(t.TempDir(), "store"))
	if e := wantCode(t, err, ErrInvalidArgument); !strings.Contains(e.Message, "postgresql://") {
		t.Errorf("a file path: %q", e.Message)
	}
	_, err = SchemaSQL(bg, "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2")
	wantCode(t, err, ErrUnavailable)
	_, err = SchemaSQL(bg, "postgresql://127.0.0.1/x?no_such_parameter=1")
	wantCode(t, err, ErrInvalidArgument)
	_, err = SchemaSQL(bg, "postgresql://127.0.0.1/x\x00")
	wantCode(t, err, ErrInvalidArgument)
}
