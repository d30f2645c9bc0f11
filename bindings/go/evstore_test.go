package evstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var bg = context.Background()

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, _, err := Open(bg, path, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

// openReadOnly opens path read-only, closed when the test ends.
func openReadOnly(t *testing.T, path string) *Store {
	t.Helper()
	ro := NewOptions()
	defer ro.Close()
	if err := ro.SetReadOnly(true); err != nil {
		t.Fatal(err)
	}
	r, _, err := Open(bg, path, ro)
	if err != nil {
		t.Fatalf("Open(%s) read-only: %v", path, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store")
	s := openStore(t, path)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// wantCode checks that err is an *Error of want's code with a non-empty message, and
// that errors.Is matches it with want and with no other ErrX value.
func wantCode(t *testing.T, err error, want Error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want %v, got %v", want, err)
	}
	if e.Code != want.Code {
		t.Fatalf("want %v, got %v (%q)", want.Code, e.Code, e.Message)
	}
	if !errors.Is(err, want) {
		t.Fatalf("errors.Is(%v, %v) is false", err, want)
	}
	if e.Message == "" {
		t.Fatalf("%v: empty message", want.Code)
	}
	return e
}

// must returns v, or panics (failing the test with a stack trace) on an error.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// collect gathers what an iterator yields, failing the test on an error.
func collect(t *testing.T, events iter.Seq2[Event, error]) []Event {
	t.Helper()
	var out []Event
	for e, err := range events {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func balance(t *testing.T, s *Store, id string) int64 {
	t.Helper()
	return must(s.GetAccount(bg, id)).Balance
}

// evstore.h here is a copy that must stay identical to the header of the library the
// binding is built against (pkg-config's includedir: include/ in the repository, or
// <prefix>/include/evstore once installed).
func TestHeaderIsTheLibraryOne(t *testing.T) {
	out, err := exec.Command("pkg-config", "--variable=includedir", "evstore").Output()
	if err != nil {
		t.Fatalf("pkg-config --variable=includedir evstore: %v (is PKG_CONFIG_PATH set?)", err)
	}
	installed := filepath.Join(strings.TrimSpace(string(out)), "evstore.h")
	want, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("evstore.h")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("bindings/go/evstore.h differs from %s: copy it (cp include/evstore.h bindings/go/)", installed)
	}
	if VersionNumber()/1000000 != HeaderVersionNumber/1000000 || VersionNumber() < HeaderVersionNumber {
		t.Errorf("library %d, header %d", VersionNumber(), HeaderVersionNumber)
	}
}

func TestVersionAndStatusNames(t *testing.T) {
	want := fmt.Sprintf("%d.%d.%d", HeaderVersionNumber/1000000, HeaderVersionNumber/1000%1000, HeaderVersionNumber%1000)
	if Version() != want {
		t.Errorf("Version() = %q", Version())
	}
	if CodeWrongExpectedVersion.String() != "EVS_ERR_WRONG_EXPECTED_VERSION" || CodeIO.String() != "EVS_ERR_IO" {
		t.Errorf("status names: %v %v", CodeWrongExpectedVersion, CodeIO)
	}
}

func TestAppendAndReadRoundTrip(t *testing.T) {
	s, _ := newStore(t)

	pos := must(s.AppendEvent(bg, "Started", []byte(`{"n":1}`)))
	if pos != 0 {
		t.Fatalf("first position = %d", pos)
	}
	in := []EventInput{
		{Type: "OrderPlaced", Payload: []byte("p0"), Metadata: []byte("m0"), SchemaVersion: 3},
		{Type: "OrderPaid", Payload: []byte{0, 1, 2, 0xff}},
		{Type: "OrderShipped"}, // empty payload
	}
	first, last, err := s.Append(bg, "order-1", ExpectNoStream, in)
	if err != nil || first != 1 || last != 2 {
		t.Fatalf("Append = %d, %d, %v", first, last, err)
	}

	all := collect(t, s.ReadAll(bg, 0))
	if len(all) != 4 {
		t.Fatalf("ReadAll gave %d events", len(all))
	}
	if all[0].Stream != "" || all[0].Type != "Started" || string(all[0].Payload) != `{"n":1}` {
		t.Errorf("event 0 = %+v", all[0])
	}
	for i, e := range all {
		if e.Position != uint64(i) {
			t.Errorf("event %d has position %d", i, e.Position)
		}
		if i > 0 && e.TimestampUs < all[i-1].TimestampUs {
			t.Errorf("timestamps decrease at %d", i)
		}
	}
	for i, e := range all[1:] {
		if e.Stream != "order-1" || e.StreamVersion != uint64(i) || e.Type != in[i].Type ||
			!bytes.Equal(e.Payload, in[i].Payload) || !bytes.Equal(e.Metadata, in[i].Metadata) {
			t.Errorf("event %d = %+v, appended %+v", i+1, e, in[i])
		}
	}
	if all[1].SchemaVersion != 3 || all[2].SchemaVersion != 1 {
		t.Errorf("schema versions %d %d (0 should be stored as 1)", all[1].SchemaVersion, all[2].SchemaVersion)
	}

	stream := collect(t, s.ReadStream(bg, "order-1", 1))
	if len(stream) != 2 || stream[0].Type != "OrderPaid" || stream[1].Type != "OrderShipped" {
		t.Errorf("ReadStream from 1 = %+v", stream)
	}
	back := collect(t, s.ReadAllBackward(bg, PositionEnd))
	if len(back) != 4 || back[0].Position != 3 || back[3].Position != 0 {
		t.Errorf("ReadAllBackward = %+v", back)
	}
	polled := collect(t, s.Poll(bg, 1, 2))
	if len(polled) != 2 || polled[0].Position != 1 || polled[1].Position != 2 {
		t.Errorf("Poll(1, 2) = %+v", polled)
	}
	if v := must(s.StreamVersion(bg, "order-1")); v != 2 {
		t.Errorf("StreamVersion = %d", v)
	}
	if v := must(s.StreamVersion(bg, "no-such-stream")); v != -1 {
		t.Errorf("StreamVersion of a missing stream = %d", v)
	}
	if p := must(s.PositionAt(bg, PositionEnd)); p != 4 {
		t.Errorf("PositionAt(end) = %d", p)
	}
	if p := must(s.PositionAt(bg, 0)); p != 0 {
		t.Errorf("PositionAt(0) = %d", p)
	}

	// A forward cursor tails the log: "no more now", then the new event.
	c := must(s.ReadAllCursor(bg, 4))
	defer c.Close()
	if _, ok, err := c.Next(); ok || err != nil {
		t.Fatalf("Next at the end = %v, %v", ok, err)
	}
	must(s.AppendEvent(bg, "Later", nil))
	e, ok, err := c.Next()
	if err != nil || !ok || e.Position != 4 || e.Type != "Later" || e.Payload != nil {
		t.Fatalf("Next after an append = %+v, %v, %v", e, ok, err)
	}

	// errors of reads
	_, err = s.ReadStreamCursor(bg, "no-such-stream", 0)
	wantCode(t, err, ErrNotFound)
	_, err = s.ReadAllCursor(bg, 99)
	wantCode(t, err, ErrNotFound)
	_, err = s.AppendEvent(bg, "", nil)
	wantCode(t, err, ErrInvalidArgument)
	_, _, err = s.Append(bg, "order-1", ExpectAny, nil)
	wantCode(t, err, ErrInvalidArgument)
	_, _, err = s.Append(bg, "bad\x00stream", ExpectAny, in)
	wantCode(t, err, ErrInvalidArgument)
}

func TestWrongExpectedVersion(t *testing.T) {
	s, _ := newStore(t)
	ev := []EventInput{{Type: "T", Payload: []byte("x")}}

	_, _, err := s.Append(bg, "s", 0, ev)
	wantCode(t, err, ErrWrongExpectedVersion) // a version >= 0 on a missing stream
	_, _, err = s.Append(bg, "s", ExpectExists, ev)
	wantCode(t, err, ErrWrongExpectedVersion)

	if _, last, err := s.Append(bg, "s", ExpectNoStream, ev); err != nil || last != 0 {
		t.Fatalf("Append to a new stream: %d, %v", last, err)
	}
	for v := int64(0); v < 12; v++ {
		if _, last, err := s.Append(bg, "s", v, ev); err != nil || last != uint64(v+1) {
			t.Fatalf("Append at %d: %d, %v", v, last, err)
		}
	}
	before := must(s.PositionAt(bg, PositionEnd))
	_, _, err = s.Append(bg, "s", 3, ev)
	e := wantCode(t, err, ErrWrongExpectedVersion)
	if !strings.Contains(e.Message, "12") {
		t.Errorf("message %q does not name the actual version 12", e.Message)
	}
	_, _, err = s.Append(bg, "s", ExpectNoStream, ev)
	wantCode(t, err, ErrWrongExpectedVersion)
	if after := must(s.PositionAt(bg, PositionEnd)); after != before {
		t.Errorf("a refused append moved the log from %d to %d", before, after)
	}
	if _, last, err := s.Append(bg, "s", 12, ev); err != nil || last != 13 {
		t.Errorf("Append at the right version: %d, %v", last, err)
	}
}

func TestSeedOpenAndDeposit(t *testing.T) {
	s, _ := newStore(t)
	if p := must(s.OpenAccount(context.Background(), "alice", 1000, "")); p != 0 {
		t.Errorf("open position %d", p)
	}
	dep := must(s.Deposit(context.Background(), "alice", 500))
	a := must(s.GetAccount(bg, "alice"))
	if a.Balance != 1500 || a.IsClosed || a.Currency != "USD" || a.Version != 2 || a.LastPosition != dep {
		t.Errorf("alice = %+v", a)
	}
	evs := collect(t, s.ReadStream(bg, "account-alice", 0))
	if len(evs) != 2 || string(evs[1].Payload) != `{"MoneyDeposited":{"account_id":"alice","amount":500}}` {
		t.Errorf("account-alice events = %+v", evs)
	}
}

func TestSeedDepositAndWithdrawSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store")
	s := openStore(t, path)
	must(s.OpenAccount(context.Background(), "bob", 2000, "USD"))
	must(s.Deposit(context.Background(), "bob", 1000))
	must(s.Withdraw(context.Background(), "bob", 500))
	if b := balance(t, s, "bob"); b != 2500 {
		t.Errorf("balance %d", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = openStore(t, path)
	defer s.Close()
	a := must(s.GetAccount(bg, "bob"))
	if a.Balance != 2500 || a.Version != 3 || a.IsClosed {
		t.Errorf("bob after reopen = %+v", a)
	}
}

func TestSeedWithdrawalPastBalanceRefused(t *testing.T) {
	s, _ := newStore(t)
	must(s.OpenAccount(context.Background(), "carol", 100, ""))
	before := must(s.PositionAt(bg, PositionEnd))
	_, err := s.Withdraw(context.Background(), "carol", 150)
	e := wantCode(t, err, ErrInsufficientFunds)
	if !strings.Contains(e.Message, "carol") {
		t.Errorf("message %q does not name the account", e.Message)
	}
	if after := must(s.PositionAt(bg, PositionEnd)); after != before {
		t.Errorf("a refused withdrawal appended: %d -> %d", before, after)
	}
	if b := balance(t, s, "carol"); b != 100 {
		t.Errorf("balance %d", b)
	}
	must(s.Withdraw(context.Background(), "carol", 100))
	_, err = s.Withdraw(context.Background(), "carol", 1)
	wantCode(t, err, ErrInsufficientFunds)
}

func TestAccountRules(t *testing.T) {
	s, _ := newStore(t)
	must(s.OpenAccount(context.Background(), "a", 10, ""))
	_, err := s.OpenAccount(context.Background(), "a", 10, "")
	wantCode(t, err, ErrAlreadyExists)
	_, err = s.Deposit(context.Background(), "nobody", 1)
	wantCode(t, err, ErrNotFound)
	_, err = s.GetAccount(bg, "nobody")
	wantCode(t, err, ErrNotFound)
	_, err = s.Deposit(context.Background(), "a", 0)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.Deposit(context.Background(), "a", -5)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenAccount(context.Background(), "b", 1, "usd")
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenAccount(context.Background(), "", 1, "")
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenAccount(context.Background(), "nul\x00id", 1, "")
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.Deposit(context.Background(), "a", 1<<63-1)
	wantCode(t, err, ErrOverflow)

	must(s.CloseAccount(context.Background(), "a"))
	_, err = s.Deposit(context.Background(), "a", 1)
	wantCode(t, err, ErrAccountClosed)
	_, err = s.CloseAccount(context.Background(), "a")
	wantCode(t, err, ErrAccountClosed)
	if a := must(s.GetAccount(bg, "a")); !a.IsClosed || a.Balance != 10 {
		t.Errorf("closed account = %+v", a)
	}

	// time travel: the account as of the first event's timestamp
	must(s.OpenAccount(context.Background(), "tt", 5, "EUR"))
	open := collect(t, s.ReadStream(bg, "account-tt", 0))[0]
	must(s.Deposit(context.Background(), "tt", 7))
	if a := must(s.GetAccountAt(bg, "tt", open.TimestampUs)); a.Balance != 5 || a.Currency != "EUR" || a.Version != 1 {
		t.Errorf("tt at open = %+v", a)
	}
	if a := must(s.GetAccountAt(bg, "tt", PositionEnd)); a.Balance != 12 {
		t.Errorf("tt now = %+v", a)
	}
	_, err = s.GetAccountAt(bg, "tt", open.TimestampUs-1)
	wantCode(t, err, ErrNotFound)
}

func TestTransfers(t *testing.T) {
	s, _ := newStore(t)
	must(s.OpenAccount(context.Background(), "from", 1000, ""))
	must(s.OpenAccount(context.Background(), "to", 0, ""))
	must(s.OpenAccount(context.Background(), "euro", 0, "EUR"))

	next := must(s.PositionAt(bg, PositionEnd))
	pos := must(s.Transfer(context.Background(), "from", "to", 300))
	if pos != next {
		t.Errorf("transfer position %d, want %d (the withdrawal side)", pos, next)
	}
	if after := must(s.PositionAt(bg, PositionEnd)); after != next+2 {
		t.Errorf("a transfer appended %d events", after-next)
	}
	if b, c := balance(t, s, "from"), balance(t, s, "to"); b != 700 || c != 300 {
		t.Errorf("balances %d, %d", b, c)
	}
	w := collect(t, s.ReadStream(bg, "account-from", 1))
	d := collect(t, s.ReadStream(bg, "account-to", 1))
	if len(w) != 1 || len(d) != 1 || w[0].Position != pos || d[0].Position != pos+1 {
		t.Errorf("transfer events: %+v / %+v", w, d)
	}

	_, err := s.Transfer(context.Background(), "from", "to", 701)
	wantCode(t, err, ErrInsufficientFunds)
	_, err = s.Transfer(context.Background(), "from", "from", 1)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.Transfer(context.Background(), "from", "nobody", 1)
	wantCode(t, err, ErrNotFound)
	_, err = s.Transfer(context.Background(), "from", "euro", 1)
	wantCode(t, err, ErrCurrencyMismatch)
	must(s.CloseAccount(context.Background(), "to"))
	_, err = s.Transfer(context.Background(), "from", "to", 1)
	wantCode(t, err, ErrAccountClosed)
	if b := balance(t, s, "from"); b != 700 {
		t.Errorf("refused transfers changed the balance to %d", b)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	s, _ := newStore(t)
	const workers, ops = 8, 200
	must(s.OpenAccount(context.Background(), "hub", 0, ""))
	for w := 0; w < workers; w++ {
		must(s.OpenAccount(context.Background(), fmt.Sprintf("w%d", w), 1000, ""))
	}
	start := must(s.PositionAt(bg, PositionEnd))

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			id := fmt.Sprintf("w%d", w)
			stream := fmt.Sprintf("stream-%d", w)
			fail := func(format string, args ...any) { errs <- fmt.Errorf(id+": "+format, args...) }
			for i := 0; i < ops; i++ {
				// one event of its own, at the version it expects
				payload := []byte(fmt.Sprintf("%d/%d", w, i))
				if _, v, err := s.Append(bg, stream, int64(i)-1-boolInt(i == 0), []EventInput{{Type: "T", Payload: payload}}); err != nil || v != uint64(i) {
					fail("append %d: %d, %v", i, v, err)
					return
				}
				// a shared stream, no check
				if _, _, err := s.Append(bg, "shared", ExpectAny, []EventInput{{Type: "S", Payload: payload}}); err != nil {
					fail("shared append: %v", err)
					return
				}
				// money moves to the hub and some back
				if _, err := s.Transfer(context.Background(), id, "hub", 3); err != nil {
					fail("transfer: %v", err)
					return
				}
				if i%4 == 0 {
					if _, err := s.Transfer(context.Background(), "hub", id, 1); err != nil && !errors.Is(err, ErrInsufficientFunds) {
						fail("transfer back: %v", err)
						return
					}
				}
				// a failing call: its message is this goroutine's, not another's
				_, err := s.Withdraw(context.Background(), id, 1_000_000)
				var e *Error
				if !errors.As(err, &e) || e.Code != CodeInsufficientFunds || !strings.Contains(e.Message, "'"+id+"'") {
					fail("overdraft gave %v", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	var total int64
	for w := 0; w < workers; w++ {
		total += balance(t, s, fmt.Sprintf("w%d", w))
		if v := must(s.StreamVersion(bg, fmt.Sprintf("stream-%d", w))); v != ops-1 {
			t.Errorf("stream-%d at version %d", w, v)
		}
	}
	total += balance(t, s, "hub")
	if total != workers*1000 {
		t.Errorf("money is not conserved: %d", total)
	}
	if v := must(s.StreamVersion(bg, "shared")); v != workers*ops-1 {
		t.Errorf("shared at version %d", v)
	}
	all := collect(t, s.ReadAll(bg, start))
	for i, e := range all {
		if e.Position != start+uint64(i) {
			t.Fatalf("positions are not gapless: %d at index %d", e.Position, i)
		}
	}
	if end := must(s.PositionAt(bg, PositionEnd)); uint64(len(all)) != end-start {
		t.Errorf("read %d events, log has %d", len(all), end-start)
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestReadAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store")
	opts := NewOptions()
	defer opts.Close()
	if err := opts.SetFsync(FsyncOS, 0); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetMaxSegmentSize(64 * 1024); err != nil {
		t.Fatal(err)
	}
	s, info, err := Open(bg, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if info.NextPosition != 0 || info.SnapshotPosition != PositionEnd {
		t.Errorf("fresh store info %+v", info)
	}
	var want []Event
	payload := bytes.Repeat([]byte("abcdefgh"), 128)
	for i := 0; i < 200; i++ {
		p := append([]byte(fmt.Sprint(i)), payload...)
		must(s.AppendEvent(bg, "E", p))
		want = append(want, Event{Position: uint64(i), Type: "E", Payload: p})
	}
	must(s.OpenAccount(context.Background(), "keep", 42, ""))
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := must(s.Stats(bg))
	if st.Events != 201 || st.Segments < 2 || st.Accounts != 1 {
		t.Errorf("stats %+v", st)
	}
	if m := must(s.MetricsText(bg)); !strings.Contains(m, "evstore_events_total 201") {
		t.Errorf("metrics:\n%s", m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent(bg, "E", nil); err == nil {
		t.Error("append on a closed store succeeded")
	}

	s, info, err = Open(bg, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.NextPosition != 201 || info.CorruptionDetected || info.BytesTruncated != 0 {
		t.Errorf("reopen info %+v", info)
	}
	got := collect(t, s.ReadAll(bg, 0))
	if len(got) != 201 {
		t.Fatalf("read %d events after reopen", len(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Position != w.Position || g.Type != w.Type || !bytes.Equal(g.Payload, w.Payload) || g.Stream != "" {
			t.Fatalf("event %d after reopen = %+v", i, g)
		}
	}
	if a := must(s.GetAccount(bg, "keep")); a.Balance != 42 {
		t.Errorf("keep = %+v", a)
	}

	// a second writer on the same path, and a read-only one
	_, _, err = Open(bg, path, nil)
	wantCode(t, err, ErrLocked)
	r := openReadOnly(t, path)
	if n := len(collect(t, r.ReadAll(bg, 0))); n != 201 {
		t.Errorf("read-only store has %d events", n)
	}
	_, err = r.AppendEvent(bg, "E", nil)
	wantCode(t, err, ErrReadOnly)
	_, err = r.Snapshot(context.Background())
	wantCode(t, err, ErrReadOnly)
}

func TestSnapshotAndOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store")
	s := openStore(t, path)
	must(s.OpenAccount(context.Background(), "snap", 10, ""))
	must(s.Deposit(context.Background(), "snap", 5))
	if n := must(s.Snapshot(context.Background())); n != 2 {
		t.Errorf("snapshot covers %d events", n)
	}
	s.Close()
	s, info, err := Open(bg, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.SnapshotPosition != 2 {
		t.Errorf("reopen info %+v", info)
	}
	if b := balance(t, s, "snap"); b != 15 {
		t.Errorf("balance %d", b)
	}

	o := NewOptions()
	defer o.Close()
	wantCode(t, o.SetFsync(FsyncBatch, 0), ErrInvalidArgument)
	wantCode(t, o.SetFsync(FsyncPolicy(7), 5), ErrInvalidArgument)
	wantCode(t, o.SetMaxSegmentSize(1), ErrInvalidArgument)
	for _, err := range []error{o.SetFsync(FsyncAlways, 0), o.SetPreallocate(false), o.SetSnapshotEvery(100)} {
		if err != nil {
			t.Error(err)
		}
	}
	_, _, err = Open(bg, filepath.Join(t.TempDir(), "missing", "store"), o)
	wantCode(t, err, ErrIO)
}

// eventID is the id the tests give event k.
func eventID(k int) [16]byte {
	return [16]byte{0xA1, byte(k >> 8), byte(k), 0x5E}
}

func TestIdempotentAppendByEventIDs(t *testing.T) {
	s, path := newStore(t)
	ev := []EventInput{
		{Type: "Placed", Payload: []byte("a"), ID: [16]byte{0xA1, 1}},
		{Type: "Paid", Payload: []byte("b"), ID: [16]byte{0xA1, 2}},
	}
	first, last, err := s.Append(bg, "order-1", ExpectNoStream, ev)
	if err != nil || first != 0 || last != 1 {
		t.Fatalf("Append: %d %d %v", first, last, err)
	}
	// A retry (after a timeout, say) stores nothing and returns the same positions.
	for i := 0; i < 2; i++ {
		f, l, err := s.Append(bg, "order-1", ExpectNoStream, ev)
		if err != nil || f != 0 || l != 1 {
			t.Fatalf("retry %d: %d %d %v", i, f, l, err)
		}
	}
	if n := must(s.PositionAt(bg, PositionEnd)); n != 2 {
		t.Fatalf("the log has %d events, want 2", n)
	}
	// Half of a batch stored before: refused.
	_, _, err = s.Append(bg, "order-1", ExpectAny, []EventInput{ev[0], {Type: "New", Payload: []byte("n"), ID: [16]byte{0xA1, 3}}})
	wantCode(t, err, ErrAlreadyExists)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path)
	defer s2.Close()
	if f, _, err := s2.Append(bg, "order-1", ExpectNoStream, ev); err != nil || f != 0 {
		t.Fatalf("retry after reopen: %d %v", f, err)
	}
}

// Every event carries its id back through every way of reading, over more events than
// one of a cursor's batches holds, also after a restart.
func TestEveryReadGivesBackEveryEventsID(t *testing.T) {
	s, path := newStore(t)
	const perStream = 70 // two streams: 140 events, more than two batches of 64
	var want [][16]byte  // by position
	for _, stream := range []string{"order-a", "order-b"} {
		var in []EventInput
		for v := 0; v < perStream; v++ {
			id := eventID(len(want))
			want = append(want, id)
			in = append(in, EventInput{Type: "T", Payload: []byte(stream), ID: id})
		}
		must2(s.Append(bg, stream, ExpectNoStream, in))
		if f, _, err := s.Append(bg, stream, ExpectNoStream, in); err != nil || f != uint64(len(want)-perStream) {
			t.Fatalf("retry of %s: %d %v", stream, f, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()

	check := func(what string, got []Event, wantCount int) {
		t.Helper()
		if len(got) != wantCount {
			t.Fatalf("%s: %d events, want %d", what, len(got), wantCount)
		}
		for _, e := range got {
			if e.ID != want[e.Position] {
				t.Fatalf("%s: event %d has id %x, want %x", what, e.Position, e.ID, want[e.Position])
			}
		}
	}
	all := 2 * perStream
	check("ReadAll", collect(t, s.ReadAll(bg, 0)), all)
	check("ReadAllBackward", collect(t, s.ReadAllBackward(bg, PositionEnd)), all)
	check("ReadStream", collect(t, s.ReadStream(bg, "order-b", 0)), perStream)
	check("ReadStreamBackward", collect(t, s.ReadStreamBackward(bg, "order-a", PositionEnd)), perStream)
	check("ReadCategory", collect(t, s.ReadCategory(bg, "order-", 0)), all)
	check("Poll", collect(t, s.Poll(bg, 3, all)), all-3)
	c := must(s.ReadAllCursor(bg, 0))
	var viaNext []Event
	for {
		e, ok, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		viaNext = append(viaNext, e)
	}
	c.Close()
	check("Cursor.Next", viaNext, all)

	var viaEvent []Event
	for p := 0; p < all; p++ {
		viaEvent = append(viaEvent, must(s.ReadEvent(bg, uint64(p))))
	}
	check("ReadEvent", viaEvent, all)

	var r recorder
	sub := must(s.Subscribe(bg, 0, r.handle))
	waitFor(t, "every event delivered", func() bool { return r.count() == all })
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	check("Subscribe", r.got, all)
}

// must2 is must for a call with two results before its error.
func must2[T, U any](v T, w U, err error) (T, U) {
	if err != nil {
		panic(err)
	}
	return v, w
}
