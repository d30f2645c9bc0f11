package evstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func appendN(t *testing.T, s *Store, stream string, n int) []uint64 {
	t.Helper()
	var out []uint64
	for i := 0; i < n; i++ {
		p, _ := must2(s.Append(bg, stream, ExpectAny, []EventInput{{Type: "T", Payload: []byte(fmt.Sprint(i))}}))
		out = append(out, p)
	}
	return out
}

func consumerInfo(t *testing.T, s *Store, name string) (ConsumerInfo, bool) {
	t.Helper()
	for _, c := range must(s.Consumers(bg)) {
		if c.Name == name {
			return c, true
		}
	}
	return ConsumerInfo{}, false
}

func TestConsumerPullFormResumesAfterItsCheckpoint(t *testing.T) {
	s, path := newStore(t)
	p := appendN(t, s, "acct-1", 5)
	appendN(t, s, "other", 1)
	opts := &ConsumerOptions{Filter: SubscribeFilter{StreamPrefix: "acct-"}, CheckpointEvery: 2}
	c := must(s.OpenConsumer(bg, "pull", opts))
	if c.Name() != "pull" {
		t.Fatalf("Name() = %q", c.Name())
	}
	// open twice: ErrLocked
	_, err := s.OpenConsumer(bg, "pull", opts)
	wantCode(t, err, ErrLocked)
	for i := 0; i < 3; i++ {
		ev := must(c.Next(bg))
		if ev.Position != p[i] || ev.Stream != "acct-1" || string(ev.Payload) != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if err := c.Ack(ev.Position); err != nil {
			t.Fatal(err)
		}
	}
	next, stored, err := c.Position()
	if err != nil || next != p[2]+1 || stored != p[1]+1 {
		t.Fatalf("Position() = %d, %d, %v; want %d, %d", next, stored, err, p[2]+1, p[1]+1)
	}
	wantCode(t, c.Ack(p[4]+100), ErrInvalidArgument)
	// nothing more than p3, p4: a short context ends the wait with its error
	must(c.Next(bg))
	must(c.Next(bg))
	ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the end: %v", err)
	}
	// p3 and p4 were given but never acknowledged: they come again after a reopen
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	wantCode(t, c.Ack(p[0]), ErrInvalidArgument)
	s.Close()
	s = openStore(t, path)
	defer s.Close()
	c = must(s.OpenConsumer(bg, "pull", opts))
	defer c.Close()
	if ev := must(c.Next(bg)); ev.Position != p[3] {
		t.Fatalf("after a reopen: position %d, want %d", ev.Position, p[3])
	}
}

func TestConsumerIteratorWaitsForNewEvents(t *testing.T) {
	s, _ := newStore(t)
	c := must(s.OpenConsumer(bg, "live", &ConsumerOptions{StartPosition: ConsumerStartEnd}))
	defer c.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		for i := 0; i < 3; i++ {
			s.Append(bg, "live", ExpectAny, []EventInput{{Type: "T", Payload: []byte{byte('a' + i)}}})
		}
	}()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	var got []string
	for ev, err := range c.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Payload))
		if err := c.Ack(ev.Position); err != nil {
			t.Fatal(err)
		}
		if len(got) == 3 {
			break
		}
	}
	if strings.Join(got, "") != "abc" {
		t.Fatalf("got %v", got)
	}
	// a cancelled context ends the loop with its error as the last pair
	cancel()
	n := 0
	for _, err := range c.All(ctx) {
		n++
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("%d pairs after cancel, want 1", n)
	}
}

func TestConsumerAppendIsAtomicWithTheCheckpoint(t *testing.T) {
	s, path := newStore(t)
	src := appendN(t, s, "dep-1", 2)
	opts := &ConsumerOptions{Filter: SubscribeFilter{StreamPrefix: "dep-"}, CheckpointEvery: 1000, CheckpointInterval: time.Hour}
	c := must(s.OpenConsumer(bg, "proj", opts))
	ev := must(c.Next(bg))
	effect := []StreamAppend{{Stream: "totals-1", ExpectedVersion: 3, Events: []EventInput{{Type: "Total", Payload: []byte("1")}}}}
	// a refused append stores neither the effect nor the checkpoint
	_, _, err := c.Append(bg, ev.Position, effect)
	wantCode(t, err, ErrWrongExpectedVersion)
	if v := must(s.StreamVersion(bg, "totals-1")); v != -1 {
		t.Fatalf("totals-1 at version %d after a refused step", v)
	}
	_, _, err = c.Append(bg, src[1], effect) // not delivered yet
	wantCode(t, err, ErrInvalidArgument)
	effect[0].ExpectedVersion = ExpectNoStream
	first, versions, err := c.Append(bg, ev.Position, effect)
	if err != nil || len(versions) != 1 || versions[0] != 0 {
		t.Fatalf("Append: %d %v %v", first, versions, err)
	}
	if _, stored, _ := c.Position(); stored != ev.Position+1 {
		t.Fatalf("the step stored checkpoint %d, want %d", stored, ev.Position+1)
	}
	// src[1] acknowledged, not yet checkpointed; the store closed first: the consumer's
	// Close says its last checkpoint is lost (src[1] comes again, src[0] does not)
	if ev := must(c.Next(bg)); ev.Position != src[1] {
		t.Fatalf("next: %d, want %d", ev.Position, src[1])
	}
	if err := c.Ack(src[1]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	wantCode(t, c.Close(), ErrInvalidArgument)
	s = openStore(t, path)
	defer s.Close()
	c = must(s.OpenConsumer(bg, "proj", opts))
	defer c.Close()
	if ev := must(c.Next(bg)); ev.Position != src[1] {
		t.Fatalf("after the step: position %d, want %d", ev.Position, src[1])
	}
	if v := must(s.StreamVersion(bg, "totals-1")); v != 0 {
		t.Fatalf("totals-1 at version %d, want 0 (one effect)", v)
	}
}

func TestConsumerRunRetriesParksAndStops(t *testing.T) {
	s, _ := newStore(t)
	p := appendN(t, s, "r", 5)
	opts := &ConsumerOptions{MaxRetries: 1, RetryBackoff: time.Millisecond, RetryBackoffMax: time.Millisecond}
	c := must(s.OpenConsumer(bg, "run", opts))
	defer c.Close()
	var seen []uint64
	stop := errors.New("stop here")
	err := c.Run(bg, func(ev Event) error {
		seen = append(seen, ev.Position)
		switch ev.Position {
		case p[0]:
			return ErrRetry // retried once, then parked ("gave up after 1 retries")
		case p[2]:
			return ParkEvent("no handler")
		case p[4]:
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Run: %v", err)
	}
	want := []uint64{p[0], p[0], p[1], p[2], p[3], p[4]}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("seen %v, want %v", seen, want)
	}
	parked := must(s.Parked(bg, "run"))
	if len(parked) != 2 || parked[0].Position != p[0] || parked[0].Reason != "gave up after 1 retries" ||
		parked[1].Position != p[2] || parked[1].Reason != "no handler" || parked[1].ParkedAt.IsZero() {
		t.Fatalf("parked: %+v", parked)
	}
	// replays: the parked ones first; acknowledged, parked no more
	wantCode(t, c.ReplayParked(p[1]), ErrNotFound)
	if n := must(c.ReplayAllParked()); n != 2 {
		t.Fatalf("ReplayAllParked: %d", n)
	}
	// (p4, where Run stopped, was delivered in this opening: it comes again after a
	// reopen, not now; it is acknowledged below)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	for _, want := range []uint64{p[0], p[2]} {
		ev := must(c.Next(ctx))
		if ev.Position != want {
			t.Fatalf("after the replay: %d, want %d", ev.Position, want)
		}
		if err := c.Ack(ev.Position); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Ack(p[4]); err != nil {
		t.Fatal(err)
	}
	if err := c.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if parked := must(s.Parked(bg, "run")); len(parked) != 0 {
		t.Fatalf("still parked: %+v", parked)
	}
	_, err = c.Retry(p[0])
	wantCode(t, err, ErrInvalidArgument)
	wantCode(t, c.Park(p[0]+1000, "not delivered"), ErrInvalidArgument)
}

func TestConsumerOperations(t *testing.T) {
	s, _ := newStore(t)
	p := appendN(t, s, "ops", 4)
	c := must(s.OpenConsumer(bg, "ops", nil))
	if info, ok := consumerInfo(t, s, "ops"); !ok || !info.Open {
		t.Fatalf("listed while open: %+v %v", info, ok)
	}
	wantCode(t, s.ResetConsumer(bg, "ops", 0), ErrLocked)
	wantCode(t, s.DeleteConsumer(bg, "ops"), ErrLocked)
	must(c.Next(bg))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	info, ok := consumerInfo(t, s, "ops")
	if !ok || info.Open || info.NextPosition != p[0] || info.LagEvents == 0 || info.Lag < time.Millisecond {
		t.Fatalf("listed: %+v %v", info, ok)
	}
	if err := s.ResetConsumer(bg, "ops", p[2]); err != nil {
		t.Fatal(err)
	}
	if info, _ := consumerInfo(t, s, "ops"); info.NextPosition != p[2] {
		t.Fatalf("after a reset: %+v", info)
	}
	wantCode(t, s.ResetConsumer(bg, "ops", 1<<40), ErrNotFound)
	if err := s.ResetConsumerToTime(bg, "ops", time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if info, _ := consumerInfo(t, s, "ops"); info.NextPosition != 0 {
		t.Fatalf("after a reset to 1970: %+v", info)
	}
	if err := s.DeleteConsumer(bg, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, ok := consumerInfo(t, s, "ops"); ok {
		t.Fatal("listed after its delete")
	}
	_, err := s.Parked(bg, "ops")
	wantCode(t, err, ErrNotFound)
	wantCode(t, s.DeleteConsumer(bg, "ops"), ErrNotFound)
	// bad arguments
	_, err = s.OpenConsumer(bg, "", nil)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenConsumer(bg, strings.Repeat("n", 101), nil)
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenConsumer(bg, "x", &ConsumerOptions{RetryBackoff: time.Second, RetryBackoffMax: time.Millisecond})
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenConsumer(bg, "x", &ConsumerOptions{CheckpointInterval: -time.Second})
	wantCode(t, err, ErrInvalidArgument)
	_, err = s.OpenConsumer(bg, "a\x00b", nil)
	wantCode(t, err, ErrInvalidArgument)
	if _, ok := consumerInfo(t, s, "x"); ok {
		t.Fatal("a refused open made a consumer")
	}
}

func TestConsumerReadOnlyHandle(t *testing.T) {
	s, path := newStore(t)
	p := appendN(t, s, "ro", 2)
	o := NewOptions()
	defer o.Close()
	if err := o.SetReadOnly(true); err != nil {
		t.Fatal(err)
	}
	ro, _, err := Open(bg, path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	c := must(ro.OpenConsumer(bg, "reader", nil))
	ev := must(c.Next(bg))
	_, _, err = c.Append(bg, ev.Position, []StreamAppend{{Stream: "x", ExpectedVersion: ExpectAny, Events: []EventInput{{Type: "T"}}}})
	wantCode(t, err, ErrReadOnly)
	if err := c.Ack(ev.Position); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// the writer sees it and resumes it
	if info, _ := consumerInfo(t, s, "reader"); info.NextPosition != p[1] {
		t.Fatalf("the writer lists %+v", info)
	}
}
