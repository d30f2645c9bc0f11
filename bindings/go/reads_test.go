package evstore

import (
	"context"
	"errors"
	"io"
	"testing"
)

// Cursor is an io.Closer.
var _ io.Closer = (*Cursor)(nil)

func positions(events []Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Position
	}
	return out
}

func samePositions(t *testing.T, what string, got []Event, want ...uint64) {
	t.Helper()
	p := positions(got)
	if len(p) != len(want) {
		t.Fatalf("%s: positions %v, want %v", what, p, want)
	}
	for i := range p {
		if p[i] != want[i] {
			t.Fatalf("%s: positions %v, want %v", what, p, want)
		}
	}
}

func TestAppendMultiIsAtomicAcrossStreams(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "account-a", ExpectNoStream, []EventInput{{Type: "Opened"}}))
	first, versions, err := s.AppendMulti(bg, []StreamAppend{
		{Stream: "account-a", ExpectedVersion: 0, Events: []EventInput{{Type: "Debited", Payload: []byte("5")}}},
		{Stream: "account-b", ExpectedVersion: ExpectNoStream, Events: []EventInput{{Type: "Opened"}, {Type: "Credited", Metadata: []byte("m")}}},
	})
	if err != nil || first != 1 || len(versions) != 2 || versions[0] != 1 || versions[1] != 1 {
		t.Fatalf("AppendMulti = %d %v %v", first, versions, err)
	}
	// One part's expected version fails: nothing of the other is written.
	_, _, err = s.AppendMulti(bg, []StreamAppend{
		{Stream: "account-c", ExpectedVersion: ExpectNoStream, Events: []EventInput{{Type: "Opened"}}},
		{Stream: "account-a", ExpectedVersion: 0, Events: []EventInput{{Type: "Debited"}}},
	})
	e := wantCode(t, err, ErrWrongExpectedVersion)
	if v := must(s.StreamVersion(bg, "account-c")); v != -1 {
		t.Errorf("a refused AppendMulti created account-c (%q)", e.Message)
	}
	_, _, err = s.AppendMulti(bg, nil)
	wantCode(t, err, ErrInvalidArgument)
	_, _, err = s.AppendMulti(bg, []StreamAppend{{Stream: "x", ExpectedVersion: ExpectAny}})
	wantCode(t, err, ErrInvalidArgument)
	got := collect(t, s.ReadStream(bg, "account-b", 0))
	if len(got) != 2 || got[1].Type != "Credited" || string(got[1].Metadata) != "m" || got[1].Position != 3 {
		t.Errorf("account-b = %+v", got)
	}
}

func TestBackwardCategoryAndSingleEventReads(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "order-1", ExpectAny, []EventInput{{Type: "A"}, {Type: "B"}, {Type: "C"}})) // 0..2
	must2(s.Append(bg, "user-1", ExpectAny, []EventInput{{Type: "U"}}))                            // 3
	must2(s.Append(bg, "order-2", ExpectAny, []EventInput{{Type: "D"}}))                           // 4

	samePositions(t, "ReadStreamBackward(last)", collect(t, s.ReadStreamBackward(bg, "order-1", PositionEnd)), 2, 1, 0)
	samePositions(t, "ReadStreamBackward(1)", collect(t, s.ReadStreamBackward(bg, "order-1", 1)), 1, 0)
	samePositions(t, "ReadAllBackward(3)", collect(t, s.ReadAllBackward(bg, 3)), 3, 2, 1, 0)
	samePositions(t, "ReadCategory(order-, 0)", collect(t, s.ReadCategory(bg, "order-", 0)), 0, 1, 2, 4)
	samePositions(t, "ReadCategory(order-, 2)", collect(t, s.ReadCategory(bg, "order-", 2)), 2, 4)
	samePositions(t, "Poll(1, 2)", collect(t, s.Poll(bg, 1, 2)), 1, 2)

	// A category cursor tails the log, also into streams created after it opened.
	c := must(s.ReadCategoryCursor(bg, "order-", 5))
	defer c.Close()
	if _, ok, err := c.Next(); ok || err != nil {
		t.Fatalf("Next at the end = %v %v", ok, err)
	}
	must2(s.Append(bg, "order-3", ExpectNoStream, []EventInput{{Type: "E"}}))
	if e, ok, err := c.Next(); !ok || err != nil || e.Stream != "order-3" || e.Position != 5 {
		t.Fatalf("Next after an append = %+v %v %v", e, ok, err)
	}

	e := must(s.ReadEvent(bg, 3))
	if e.Stream != "user-1" || e.Type != "U" || e.Position != 3 {
		t.Errorf("ReadEvent(3) = %+v", e)
	}
	_, err := s.ReadEvent(bg, 99)
	wantCode(t, err, ErrNotFound)

	for _, seq := range []func() error{
		func() error { _, err := s.ReadStreamBackwardCursor(bg, "nope", 0); return err },
		func() error { _, err := s.ReadCategoryCursor(bg, "", 0); return err },
		func() error { _, err := s.ReadCategoryCursor(bg, "order-", 99); return err },
	} {
		if err := seq(); err == nil {
			t.Error("a bad read succeeded")
		}
	}

	streams := must(s.Streams(bg))
	if len(streams) != 4 || streams[0] != (StreamInfo{Name: "order-1", Version: 2, FirstPosition: 0}) ||
		streams[3] != (StreamInfo{Name: "order-3", Version: 0, FirstPosition: 5}) {
		t.Errorf("Streams = %+v", streams)
	}
}

func TestIteratorsYieldErrorsAndStopCleanly(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 200; i++ { // more than one batch
		must(s.AppendEvent(bg, "E", []byte{byte(i)}))
	}
	// An opening error is yielded once.
	n := 0
	for _, err := range s.ReadStream(bg, "missing", 0) {
		n++
		wantCode(t, err, ErrNotFound)
	}
	if n != 1 {
		t.Errorf("an opening error was yielded %d times", n)
	}
	// break stops early; the cursor is closed, so the next loop starts afresh.
	seen := 0
	for e, err := range s.ReadAll(bg, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; e.Position == 99 {
			break
		}
	}
	if seen != 100 {
		t.Errorf("saw %d before break", seen)
	}
	if got := collect(t, s.ReadAll(bg, 150)); len(got) != 50 || got[49].Payload[0] != 199 {
		t.Errorf("ReadAll(150) gave %d events", len(got))
	}
	// A done ctx ends the iteration with its error.
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	seen = 0
	var last error
	for _, err := range s.ReadAll(ctx, 0) {
		if err != nil {
			last = err
			break
		}
		if seen++; seen == 10 {
			cancel()
		}
	}
	if seen != 10 || !errors.Is(last, context.Canceled) {
		t.Errorf("after cancel: %d events, error %v", seen, last)
	}
	// A closed cursor says so.
	c := must(s.ReadAllCursor(bg, 0))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Next()
	wantCode(t, err, ErrInvalidArgument)
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStatsOptionsAndMetrics(t *testing.T) {
	o := NewOptions()
	defer o.Close()
	for _, err := range []error{o.SetFsync(FsyncOS, 0), o.SetMaxEventSize(1024), o.SetDedupeWindow(4096), o.SetSnapshotEvery(0)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, o.SetMaxEventSize(0), ErrInvalidArgument)
	wantCode(t, o.SetDedupeWindow(0), ErrInvalidArgument)
	s, _, err := Open(bg, t.TempDir()+"/store", o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opts := must(s.Options())
	if opts.Fsync != FsyncOS || opts.MaxEventSize != 1024 || opts.DedupeWindow != 4096 || opts.ReadOnly {
		t.Errorf("Options = %+v", opts)
	}
	_, err = s.AppendEvent(bg, "Big", make([]byte, 1025))
	wantCode(t, err, ErrTooLarge)
	must2(s.Append(bg, "s", ExpectAny, []EventInput{{Type: "T", ID: [16]byte{1}}, {Type: "T", ID: [16]byte{2}}}))
	sub := must(s.Subscribe(bg, 0, func(Event) error { return nil }))
	st := must(s.Stats(bg))
	if st.Events != 2 || st.Streams != 1 || st.EventIDs != 2 || st.Subscriptions != 1 || st.Appends < 1 {
		t.Errorf("Stats = %+v", st)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if m := must(s.MetricsText(bg)); len(m) == 0 {
		t.Error("empty metrics text")
	}
	if err := Shutdown(); !errors.Is(err, ErrBusy) {
		t.Errorf("Shutdown with a store open = %v, want ErrBusy", err)
	}
}
