package evstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recorder is a handler that keeps the positions it saw.
type recorder struct {
	mu  sync.Mutex
	got []Event
}

func (r *recorder) handle(e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func TestSubscribeDeliversHistoryThenLiveInOrder(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 3; i++ {
		must(s.AppendEvent(bg, "Old", []byte{byte(i)}))
	}
	var r recorder
	sub, err := s.Subscribe(bg, 1, r.handle)
	if err != nil {
		t.Fatal(err)
	}
	must2(s.Append(bg, "live", ExpectAny, []EventInput{{Type: "New", ID: [16]byte{7}}}))
	waitFor(t, "3 events", func() bool { return r.count() == 3 })
	if !sub.Running() {
		t.Error("Running() is false while it delivers")
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if sub.Running() {
		t.Error("Running() is true after Close")
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for i, e := range r.got {
		if e.Position != uint64(i+1) {
			t.Errorf("delivery %d has position %d", i, e.Position)
		}
	}
	if r.got[2].Stream != "live" || r.got[2].ID != [16]byte{7} {
		t.Errorf("live event = %+v", r.got[2])
	}
	_, err = s.Subscribe(bg, 99, r.handle)
	wantCode(t, err, ErrNotFound)
	_, err = s.Subscribe(bg, 0, nil)
	wantCode(t, err, ErrInvalidArgument)
}

func TestSubscribeHandlerErrorEndsItAndCloseReturnsIt(t *testing.T) {
	s, _ := newStore(t)
	boom := errors.New("boom")
	var calls int
	sub := must(s.Subscribe(bg, 0, func(e Event) error {
		calls++
		if e.Type == "Bad" {
			return boom
		}
		return nil
	}))
	must(s.AppendEvent(bg, "Good", nil))
	must(s.AppendEvent(bg, "Bad", nil))
	must(s.AppendEvent(bg, "After", nil))
	waitFor(t, "the subscription to end", func() bool { return !sub.Running() })
	if err := sub.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v, want boom", err)
	}
	if calls != 2 {
		t.Errorf("handler called %d times after its error, want 2 in all", calls)
	}
}

func TestSubscribeErrStopEndsItQuietly(t *testing.T) {
	s, _ := newStore(t)
	sub := must(s.Subscribe(bg, 0, func(Event) error { return ErrStop }))
	must(s.AppendEvent(bg, "E", nil))
	waitFor(t, "the subscription to end", func() bool { return !sub.Running() })
	if err := sub.Close(); err != nil {
		t.Fatalf("Close after ErrStop = %v", err)
	}
}

// A Go panic must not unwind through the C library: it is recovered on the library's
// thread, ends the subscription, and comes back from Close with its stack; the store
// goes on working.
func TestSubscribeHandlerPanicIsRecoveredAndReported(t *testing.T) {
	s, _ := newStore(t)
	sub := must(s.Subscribe(bg, 0, func(e Event) error {
		if e.Position == 1 {
			panic("handler bug")
		}
		return nil
	}))
	must(s.AppendEvent(bg, "A", nil))
	must(s.AppendEvent(bg, "B", nil))
	waitFor(t, "the subscription to end", func() bool { return !sub.Running() })
	err := sub.Close()
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "handler bug" || !strings.Contains(string(pe.Stack), "subscribe_test.go") {
		t.Fatalf("Close = %v, want a *PanicError with the stack", err)
	}
	if p := must(s.AppendEvent(bg, "C", nil)); p != 2 {
		t.Errorf("append after the panic at %d", p)
	}
}

func TestSubscribeStopsWhenContextIsDone(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(bg)
	var r recorder
	sub := must(s.Subscribe(ctx, 0, r.handle))
	must(s.AppendEvent(bg, "E", nil))
	waitFor(t, "the first event", func() bool { return r.count() == 1 })
	cancel()
	waitFor(t, "the subscription to stop", func() bool { return !sub.Running() })
	must(s.AppendEvent(bg, "Unseen", nil))
	if err := sub.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	if r.count() != 1 {
		t.Errorf("%d events delivered after cancel", r.count()-1)
	}
	_, err := s.Subscribe(ctx, 0, r.handle)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a done ctx = %v", err)
	}
}

func TestSubscribeHandlerMayCloseItsSubscriptionAndCallTheStore(t *testing.T) {
	s, _ := newStore(t)
	var sub *Subscription
	var mu sync.Mutex
	ready := make(chan struct{})
	closed := make(chan error, 1)
	sub = must(s.Subscribe(bg, 0, func(e Event) error {
		<-ready
		if e.Type == "Ping" {
			_, err := s.AppendEvent(bg, "Pong", nil) // the handler calls the store
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		closed <- sub.Close()
		return nil
	}))
	close(ready)
	must(s.AppendEvent(bg, "Ping", nil))
	waitFor(t, "the handler's Close", func() bool { return len(closed) == 1 })
	if err := <-closed; err != nil {
		t.Fatalf("Close from the handler = %v", err)
	}
	if n := must(s.PositionAt(bg, PositionEnd)); n != 2 {
		t.Errorf("log has %d events, want Ping and Pong", n)
	}
}

func TestStoreCloseEndsSubscriptions(t *testing.T) {
	s, _ := newStore(t)
	var r recorder
	sub := must(s.Subscribe(bg, 0, func(e Event) error {
		// A handler whose store is being closed sees its calls refused, not a hang.
		if _, err := s.AppendEvent(bg, "FromHandler", nil); err != nil && !errors.Is(err, ErrInvalidArgument) {
			return err
		}
		return r.handle(e)
	}))
	must(s.AppendEvent(bg, "E", nil))
	waitFor(t, "a delivery", func() bool { return r.count() >= 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if sub.Running() {
		t.Error("subscription still running after its store closed")
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close after the store's Close = %v", err)
	}
}

func TestSubscribeFilteredByPrefixAndType(t *testing.T) {
	s, _ := newStore(t)
	var r recorder
	sub := must(s.SubscribeFiltered(bg, 0, SubscribeFilter{StreamPrefix: "order-", Types: []string{"Paid", "Shipped"}}, r.handle))
	defer sub.Close()
	must2(s.Append(bg, "order-1", ExpectAny, []EventInput{{Type: "Placed"}, {Type: "Paid"}}))
	must2(s.Append(bg, "user-1", ExpectAny, []EventInput{{Type: "Paid"}}))
	must2(s.Append(bg, "order-2", ExpectAny, []EventInput{{Type: "Shipped"}}))
	waitFor(t, "2 events", func() bool { return r.count() == 2 })
	must(s.AppendEvent(bg, "Marker", nil))
	time.Sleep(20 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	got := fmt.Sprint(r.got[0].Stream, r.got[0].Type, r.got[1].Stream, r.got[1].Type, len(r.got))
	if got != "order-1Paidorder-2Shipped2" {
		t.Errorf("filtered deliveries: %s", got)
	}
	_, err := s.SubscribeFiltered(bg, 0, SubscribeFilter{Types: []string{"bad\x00type"}}, r.handle)
	wantCode(t, err, ErrInvalidArgument)
}

// waitDone waits for the subscription to end (failing the test if it never does).
func waitDone(t *testing.T, sub *Subscription) {
	t.Helper()
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription did not end")
	}
}

// Done is closed and Err set however a subscription ends, without a Close; Close then
// returns the same error.
func TestSubscriptionDoneAndErrForEveryEnd(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name string
		// start subscribes on s and makes the subscription end; wantErr matches Err.
		start   func(t *testing.T, s *Store) *Subscription
		wantErr func(error) bool
	}{
		{"handler error", func(t *testing.T, s *Store) *Subscription {
			return must(s.Subscribe(bg, 0, func(Event) error { return boom }))
		}, func(err error) bool { return errors.Is(err, boom) }},
		{"ErrStop", func(t *testing.T, s *Store) *Subscription {
			return must(s.Subscribe(bg, 0, func(Event) error { return ErrStop }))
		}, func(err error) bool { return err == nil }},
		{"handler panic", func(t *testing.T, s *Store) *Subscription {
			return must(s.Subscribe(bg, 0, func(Event) error { panic("bug") }))
		}, func(err error) bool { var pe *PanicError; return errors.As(err, &pe) }},
		{"context done", func(t *testing.T, s *Store) *Subscription {
			ctx, cancel := context.WithCancel(bg)
			sub := must(s.Subscribe(ctx, 0, func(Event) error { return nil }))
			cancel()
			return sub
		}, func(err error) bool { return errors.Is(err, context.Canceled) }},
		{"store closed", func(t *testing.T, s *Store) *Subscription {
			sub := must(s.Subscribe(bg, 0, func(Event) error { return nil }))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return sub
		}, func(err error) bool { return err == nil }},
		{"damaged record", func(t *testing.T, s *Store) *Subscription {
			return must(s.Subscribe(bg, 0, func(Event) error { return nil }))
		}, func(err error) bool { return errors.Is(err, ErrCorrupt) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, path := newStore(t)
			must(s.AppendEvent(bg, "E", []byte("payload-MARK-0")))
			if c.name == "damaged record" {
				for i := 1; i < 20; i++ {
					must(s.AppendEvent(bg, "E", []byte(fmt.Sprintf("payload-MARK-%d", i))))
				}
				if err := s.Sync(bg); err != nil {
					t.Fatal(err)
				}
				damage(t, path, "MARK-10")
			}
			sub := c.start(t, s)
			waitDone(t, sub)
			if sub.Running() {
				t.Error("Running() after Done")
			}
			err := sub.Err()
			if !c.wantErr(err) {
				t.Fatalf("Err() = %v", err)
			}
			if again := sub.Close(); again != err {
				t.Errorf("Close() = %v, Err() = %v", again, err)
			}
		})
	}
}

// damage flips the first byte of marker in the store's log file.
func damage(t *testing.T, storePath, marker string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(storePath, "events", "*.wal"))
	if err != nil || len(files) != 1 {
		t.Fatalf("log files %v, %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte(marker))
	if at < 0 {
		t.Fatalf("%s not in %s", marker, files[0])
	}
	f, err := os.OpenFile(files[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{'#'}, int64(at)); err != nil {
		t.Fatal(err)
	}
}

func TestSubscriptionErrIsNilWhileRunning(t *testing.T) {
	s, _ := newStore(t)
	var r recorder
	sub := must(s.Subscribe(bg, 0, r.handle))
	must(s.AppendEvent(bg, "E", nil))
	waitFor(t, "a delivery", func() bool { return r.count() == 1 })
	select {
	case <-sub.Done():
		t.Fatal("Done closed while it runs")
	default:
	}
	if err := sub.Err(); err != nil || !sub.Running() {
		t.Fatalf("running: Err() = %v, Running() = %v", err, sub.Running())
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sub)
}

// A subscription that has ended (here its handler stopped it, under a context that
// stays live) keeps no goroutine of its own, before any Close.
func TestEndedSubscriptionKeepsNoGoroutine(t *testing.T) {
	s, _ := newStore(t)
	must(s.AppendEvent(bg, "E", nil))
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	before := runtime.NumGoroutine()
	subs := make([]*Subscription, 20)
	for i := range subs {
		subs[i] = must(s.Subscribe(ctx, 0, func(Event) error { return ErrStop }))
	}
	for _, sub := range subs {
		waitDone(t, sub)
	}
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	for _, sub := range subs {
		if err := sub.Close(); err != nil {
			t.Error(err)
		}
	}
}
