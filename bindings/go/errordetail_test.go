package evstore

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// The values wantDetail takes for "absent" (-1 is an actual version: no stream).
const (
	noVersion  = math.MinInt64
	noPart     = -1
	noPosition = math.MaxUint64
)

// wantDetail checks all three of e's numbers: each one given has that value, each one
// given as absent (noVersion, noPart, noPosition) reports ok false.
func wantDetail(t *testing.T, e Error, version int64, part int, position uint64) {
	t.Helper()
	v, vok := e.ActualVersion()
	if vok != (version != noVersion) || vok && v != version {
		t.Errorf("ActualVersion() = %d, %v; want %d (%v: %q)", v, vok, version, e.Code, e.Message)
	}
	i, iok := e.PartIndex()
	if iok != (part != noPart) || iok && i != part {
		t.Errorf("PartIndex() = %d, %v; want %d (%v: %q)", i, iok, part, e.Code, e.Message)
	}
	p, pok := e.Position()
	if pok != (position != noPosition) || pok && p != position {
		t.Errorf("Position() = %d, %v; want %d (%v: %q)", p, pok, position, e.Code, e.Message)
	}
}

func TestWrongExpectedVersionCarriesTheActualVersion(t *testing.T) {
	s, _ := newStore(t)
	ev := []EventInput{{Type: "T"}, {Type: "T"}, {Type: "T"}}
	must2(s.Append(bg, "order-1", ExpectNoStream, ev)) // versions 0, 1, 2

	_, _, err := s.Append(bg, "order-1", 0, ev[:1])
	e := wantCode(t, err, ErrWrongExpectedVersion)
	wantDetail(t, *e, 2, noPart, noPosition) // Append names no part

	// A stream that does not exist: -1, as StreamVersion says it.
	_, _, err = s.Append(bg, "order-2", ExpectExists, ev[:1])
	wantDetail(t, *wantCode(t, err, ErrWrongExpectedVersion), -1, noPart, noPosition)
	_, _, err = s.Append(bg, "order-1", ExpectNoStream, ev[:1])
	wantDetail(t, *wantCode(t, err, ErrWrongExpectedVersion), 2, noPart, noPosition)
}

func TestAppendMultiErrorNamesItsPart(t *testing.T) {
	s, _ := newStore(t)
	must2(s.Append(bg, "a", ExpectNoStream, []EventInput{{Type: "T"}, {Type: "T"}}))
	must2(s.Append(bg, "b", ExpectNoStream, []EventInput{{Type: "T", ID: [16]byte{0xB, 1}, Payload: []byte("b0")}}))

	// The third part's expected version fails.
	_, _, err := s.AppendMulti(bg, []StreamAppend{
		{Stream: "c", ExpectedVersion: ExpectNoStream, Events: []EventInput{{Type: "T"}}},
		{Stream: "a", ExpectedVersion: 1, Events: []EventInput{{Type: "T"}}},
		{Stream: "b", ExpectedVersion: 5, Events: []EventInput{{Type: "T"}}},
	})
	e := wantCode(t, err, ErrWrongExpectedVersion)
	wantDetail(t, *e, 0, 2, noPosition)

	// The second part carries an id stored before with other content: that part, and
	// the stored event's position (2: after a's two events).
	_, _, err = s.AppendMulti(bg, []StreamAppend{
		{Stream: "c", ExpectedVersion: ExpectAny, Events: []EventInput{{Type: "T"}}},
		{Stream: "c", ExpectedVersion: ExpectAny, Events: []EventInput{{Type: "T"}, {Type: "T", ID: [16]byte{0xB, 1}, Payload: []byte("other")}}},
	})
	wantDetail(t, *wantCode(t, err, ErrAlreadyExists), noVersion, 1, 2)
}

// An event id used again for other content is refused with the stored event's position.
func TestReusedEventIDGivesTheStoredEventsPosition(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 4; i++ {
		must(s.AppendEvent(bg, "Filler", nil))
	}
	id := [16]byte{0x1D, 7}
	first, _ := must2(s.Append(bg, "order-1", ExpectAny, []EventInput{{Type: "Placed", Payload: []byte("a"), ID: id}}))
	if first != 4 {
		t.Fatalf("the event with the id is at %d", first)
	}
	_, _, err := s.Append(bg, "order-2", ExpectAny, []EventInput{{Type: "Placed", Payload: []byte("b"), ID: id}})
	wantDetail(t, *wantCode(t, err, ErrAlreadyExists), noVersion, noPart, 4)
}

// A damaged event's position comes with ErrCorrupt, from a read and from a subscription
// that reading ended.
func TestCorruptErrorsGiveTheDamagedPosition(t *testing.T) {
	s, path := newStore(t)
	for i := 0; i < 20; i++ {
		must(s.AppendEvent(bg, "E", []byte(fmt.Sprintf("payload-MARK-%d", i))))
	}
	if err := s.Sync(bg); err != nil {
		t.Fatal(err)
	}
	damage(t, path, "MARK-10")

	_, err := s.ReadEvent(bg, 10)
	wantDetail(t, *wantCode(t, err, ErrCorrupt), noVersion, noPart, 10)

	sub := must(s.Subscribe(bg, 0, func(Event) error { return nil }))
	waitDone(t, sub)
	var e *Error
	if !errors.As(sub.Err(), &e) || e.Code != CodeCorrupt {
		t.Fatalf("the subscription ended with %v", sub.Err())
	}
	wantDetail(t, *e, noVersion, noPart, 10)
}

// Each error keeps its own detail: a later success or failure on the same goroutine
// (and OS thread) neither leaves its numbers in the next error nor changes an earlier
// one; the binding's own errors and the ErrX values carry none.
func TestErrorDetailIsNeverStale(t *testing.T) {
	s, _ := newStore(t)
	runtime.LockOSThread() // every call below on one thread: the library's detail is per thread
	defer runtime.UnlockOSThread()
	must2(s.Append(bg, "s", ExpectNoStream, []EventInput{{Type: "T"}, {Type: "T"}}))
	id := [16]byte{0x5A}
	must2(s.Append(bg, "t", ExpectNoStream, []EventInput{{Type: "T", ID: id}}))

	_, _, err := s.AppendMulti(bg, []StreamAppend{
		{Stream: "u", ExpectedVersion: ExpectAny, Events: []EventInput{{Type: "T"}}},
		{Stream: "s", ExpectedVersion: 0, Events: []EventInput{{Type: "T"}}},
	})
	first := wantCode(t, err, ErrWrongExpectedVersion)
	must2(s.Append(bg, "s", 1, []EventInput{{Type: "T"}})) // a success in between

	// The same code from Append: its own actual version, and no part.
	_, _, err = s.Append(bg, "s", 0, []EventInput{{Type: "T"}})
	wantDetail(t, *wantCode(t, err, ErrWrongExpectedVersion), 2, noPart, noPosition)
	_, err = s.ReadEvent(bg, 1000)
	wantDetail(t, *wantCode(t, err, ErrNotFound), noVersion, noPart, noPosition)
	_, _, err = s.Append(bg, "s", ExpectAny, []EventInput{{Type: "T", ID: id, Payload: []byte("x")}})
	wantDetail(t, *wantCode(t, err, ErrAlreadyExists), noVersion, noPart, 2)
	_, err = s.Deposit(bg, "nobody", 5)
	wantDetail(t, *wantCode(t, err, ErrNotFound), noVersion, noPart, noPosition)

	// The first error still says what it said.
	wantDetail(t, *first, 1, 1, noPosition)

	_, _, err = s.Append(bg, "s\x00", ExpectAny, []EventInput{{Type: "T"}})
	wantDetail(t, *wantCode(t, err, ErrInvalidArgument), noVersion, noPart, noPosition)
	wantDetail(t, ErrWrongExpectedVersion, noVersion, noPart, noPosition)
	wantDetail(t, Error{Code: CodeCorrupt, Message: "m"}, noVersion, noPart, noPosition)
}

// The detail is per OS thread in the library, and goroutines move between threads: each
// of many goroutines failing at once gets its own stream's version, never another's.
func TestErrorDetailFollowsItsGoroutine(t *testing.T) {
	s, _ := newStore(t)
	const goroutines, rounds = 16, 200
	for g := 0; g < goroutines; g++ {
		events := make([]EventInput, g+1) // stream g is at version g
		for i := range events {
			events[i].Type = "T"
		}
		must2(s.Append(bg, "g-"+strconv.Itoa(g), ExpectNoStream, events))
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				_, _, err := s.Append(bg, "g-"+strconv.Itoa(g), int64(g+1), []EventInput{{Type: "T"}})
				var e *Error
				if !errors.As(err, &e) {
					errs <- fmt.Errorf("goroutine %d: %v", g, err)
					return
				}
				if v, ok := e.ActualVersion(); !ok || v != int64(g) {
					errs <- fmt.Errorf("goroutine %d, round %d: ActualVersion() = %d, %v (%q)", g, r, v, ok, e.Message)
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Every status code of the header (the binding's copy, evstore.h) has its Code constant
// and, for the errors, its ErrX value: a code added to the library and not to the
// binding fails here.
func TestEveryStatusCodeOfTheHeaderHasItsConstant(t *testing.T) {
	known := []struct {
		code Code
		err  *Error // nil for CodeOK and CodeEnd
	}{
		{CodeOK, nil}, {CodeEnd, nil},
		{CodeInvalidArgument, &ErrInvalidArgument}, {CodeNotFound, &ErrNotFound},
		{CodeAlreadyExists, &ErrAlreadyExists}, {CodeWrongExpectedVersion, &ErrWrongExpectedVersion},
		{CodeInsufficientFunds, &ErrInsufficientFunds}, {CodeAccountClosed, &ErrAccountClosed},
		{CodeOverflow, &ErrOverflow}, {CodeLocked, &ErrLocked}, {CodeCorrupt, &ErrCorrupt},
		{CodeIO, &ErrIO}, {CodeTooLarge, &ErrTooLarge}, {CodeReadOnly, &ErrReadOnly},
		{CodeCurrencyMismatch, &ErrCurrencyMismatch}, {CodeBusy, &ErrBusy},
		{CodeStreamDeleted, &ErrStreamDeleted}, {CodeBalanceNotZero, &ErrBalanceNotZero},
		{CodeStale, &ErrStale}, {CodeUnavailable, &ErrUnavailable},
		{CodeIncomplete, &ErrIncomplete}, {CodeNotEmpty, &ErrNotEmpty},
		{CodeInternal, &ErrInternal},
	}
	header, err := os.ReadFile("evstore.h")
	if err != nil {
		t.Fatal(err)
	}
	defines := regexp.MustCompile(`(?m)^#define (EVS_OK|EVS_END|EVS_ERR_[A-Z_]+) (-?[0-9]+)$`).FindAllSubmatch(header, -1)
	if len(defines) < 3 {
		t.Fatalf("found %d status codes in evstore.h", len(defines))
	}
	byValue := map[Code]*Error{}
	for _, k := range known {
		byValue[k.code] = k.err
	}
	for _, d := range defines {
		name := string(d[1])
		v, err := strconv.Atoi(string(d[2]))
		if err != nil {
			t.Fatal(err)
		}
		e, ok := byValue[Code(v)]
		if !ok {
			t.Errorf("%s (%d) has no Code constant in the binding", name, v)
			continue
		}
		delete(byValue, Code(v))
		if got := Code(v).String(); got != name {
			t.Errorf("Code(%d) is named %q by the library, %s by the header", v, got, name)
		}
		if (e == nil) != (v >= 0) {
			t.Errorf("%s: ErrX value %v", name, e)
		} else if e != nil && (e.Code != Code(v) || e.Message != "") {
			t.Errorf("%s: its ErrX value is %v", name, *e)
		}
	}
	for c := range byValue {
		t.Errorf("the binding's Code %d is not a status of evstore.h", c)
	}
}
