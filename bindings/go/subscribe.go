package evstore

/*
#include <stdint.h>
#include <stdlib.h>
#include "evstore.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// ErrStop, returned by a subscription's handler, stops the subscription without an
// error: Err and Close then return nil.
var ErrStop = errors.New("evstore: subscription stopped by its handler")

// PanicError is a panic of a subscription's handler, recovered on the library's thread
// (a Go panic must not unwind through C). It ended the subscription; Err and Close
// return it.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the handler's stack when it panicked
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("evstore: subscription handler panicked: %v\n%s", e.Value, e.Stack)
}

// Subscription delivers events to a handler on a library thread (Store.Subscribe).
//
// It runs until it ends: its handler returns an error (ErrStop to end it quietly) or
// panics, its context is done, its store closes, reading fails (e.g. ErrCorrupt), or
// Close. Done is closed once it has ended, and Err then says why. Whichever way it ends,
// the binding frees it at once: a Subscription that has ended holds no goroutine, no
// library thread and no C memory, and Close after that only returns its Err. Dropping
// a running Subscription does not stop it (as with a goroutine).
type Subscription struct {
	store    *Store
	state    *subState
	userData unsafe.Pointer // C memory holding the cgo.Handle of state
	handle   cgo.Handle

	mu   sync.Mutex
	ptr  *C.evs_subscription // nil once the watcher has freed it
	done chan struct{}       // closed once it has ended and been freed, err set
	err  error
}

// statusPollInterval is how often a subscription's watcher asks the library whether it
// ended by itself. The library's thread ends on a read failure without telling anyone:
// the other ends (the handler, ctx, Close, the store's Close) wake the watcher at once.
const statusPollInterval = 250 * time.Millisecond

// subState is what the callback reaches through its handle.
type subState struct {
	fn       func(Event) error
	ctx      context.Context
	thread   atomic.Int64  // the OS thread the library calls the handler on
	stopping atomic.Bool   // the handler is not called again once set
	ending   chan struct{} // closed (stopOnce) to wake the watcher
	stopOnce sync.Once

	mu        sync.Mutex
	err       error // the handler's error or panic that ended it
	cancelled bool  // ended because ctx was done
}

// stop asks for the end: the handler is called no more, and the watcher frees the
// subscription. Never blocks; any number of calls.
func (st *subState) stop() {
	st.stopping.Store(true)
	st.stopOnce.Do(func() { close(st.ending) })
}

// fail records why the handler ended it (the first cause counts) and stops it.
func (st *subState) fail(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.mu.Unlock()
	st.stop()
}

// cancel records that ctx ended it and stops it.
func (st *subState) cancel() {
	st.mu.Lock()
	st.cancelled = true
	st.mu.Unlock()
	st.stop()
}

// result is why it ended, once the library has returned libErr from closing it.
func (st *subState) result(libErr error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.err != nil && !errors.Is(st.err, ErrStop):
		return st.err
	case st.err != nil:
		return nil
	case libErr != nil:
		return libErr
	case st.cancelled:
		return st.ctx.Err()
	}
	return nil
}

// onHandlerThread reports whether the caller is the handler (its library thread).
func (st *subState) onHandlerThread() bool {
	return st.thread.Load() == int64(syscall.Gettid())
}

// deliver runs the handler for one event; non-zero stops the subscription.
func (st *subState) deliver(ev Event) (stop C.int32_t) {
	if st.stopping.Load() {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			st.fail(&PanicError{Value: r, Stack: debug.Stack()})
			stop = 1
		}
	}()
	if st.ctx.Err() != nil {
		st.cancel()
		return 1
	}
	if err := st.fn(ev); err != nil {
		st.fail(err)
		return 1
	}
	if st.stopping.Load() { // Close, perhaps from the handler itself
		return 1
	}
	return 0
}

//export evstoreGoDeliver
func evstoreGoDeliver(userData unsafe.Pointer, e *C.evs_event) C.int32_t {
	st := (*(*cgo.Handle)(userData)).Value().(*subState)
	st.thread.Store(int64(syscall.Gettid()))
	return st.deliver(eventFromC(e))
}

// SubscribeFilter narrows a subscription: streams whose name starts with StreamPrefix
// ("" for any) and events whose type is one of Types (none for any).
type SubscribeFilter struct {
	StreamPrefix string
	Types        []string
}

// Subscribe calls fn with every event from fromPosition on (history first, then live
// events as they are appended), in position order, each once, on a library thread (one
// goroutine at a time). fn may call the store. It stops when fn returns an error (ErrStop
// to stop quietly), when fn panics (the panic is recovered: it never crosses into C),
// when ctx is done, when the store closes, when reading fails, or at Close: see
// Subscription, Done and Err.
func (s *Store) Subscribe(ctx context.Context, fromPosition uint64, fn func(Event) error) (*Subscription, error) {
	return s.SubscribeFiltered(ctx, fromPosition, SubscribeFilter{}, fn)
}

// SubscribeFiltered is Subscribe for the events that pass filter.
func (s *Store) SubscribeFiltered(ctx context.Context, fromPosition uint64, filter SubscribeFilter, fn func(Event) error) (*Subscription, error) {
	if fn == nil {
		return nil, invalid("the handler is nil")
	}
	var in inputs
	defer in.release()
	cprefix, ctypes, err := in.filter(filter)
	if err != nil {
		return nil, err
	}

	state := &subState{fn: fn, ctx: ctx, ending: make(chan struct{})}
	sub := &Subscription{store: s, state: state, handle: cgo.NewHandle(state), done: make(chan struct{})}
	// user_data is C memory holding the handle (a uintptr is not a pointer to C).
	sub.userData = C.malloc(C.size_t(unsafe.Sizeof(sub.handle)))
	*(*cgo.Handle)(sub.userData) = sub.handle
	// Known to the store before it starts, so that a Close racing this call stops it.
	s.track(state)
	var ptr *C.evs_subscription
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status {
		return C.evs_subscribe_filtered(p, C.uint64_t(fromPosition), cprefix, ctypes, C.size_t(len(filter.Types)),
			deliverFn(), sub.userData, &ptr)
	})
	if err != nil {
		s.forget(state)
		sub.handle.Delete()
		C.free(sub.userData)
		return nil, err
	}
	sub.ptr = ptr
	go sub.watch()
	return sub, nil
}

// filter converts a filter to C: the prefix (NULL for any) and the array of types.
func (in *inputs) filter(filter SubscribeFilter) (*C.char, **C.char, error) {
	var cprefix *C.char
	if filter.StreamPrefix != "" {
		p, err := in.cString(filter.StreamPrefix, "stream_prefix")
		if err != nil {
			return nil, nil, err
		}
		cprefix = p
	}
	if len(filter.Types) == 0 {
		return cprefix, nil, nil
	}
	// An array of pointers handed to C lives in C memory.
	arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(filter.Types))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(filter.Types))
	in.frees = append(in.frees, unsafe.Pointer(&arr[0]))
	for i, t := range filter.Types {
		ct, err := in.cString(t, "types")
		if err != nil {
			return nil, nil, err
		}
		arr[i] = ct
	}
	return cprefix, &arr[0], nil
}

func (s *Store) track(st *subState) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if s.subs == nil {
		s.subs = make(map[*subState]struct{})
	}
	s.subs[st] = struct{}{}
}

func (s *Store) forget(st *subState) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	delete(s.subs, st)
}

// watch waits for the subscription's end, whatever its cause, then frees it: the one
// goroutine a running subscription has, gone once it has ended.
func (sub *Subscription) watch() {
	st := sub.state
	tick := time.NewTicker(statusPollInterval)
	defer tick.Stop()
	for ended := false; !ended; {
		select {
		case <-st.ctx.Done():
			st.cancel()
			ended = true
		case <-st.ending:
			ended = true
		case <-tick.C:
			ended = !sub.Running()
		}
	}
	sub.free()
}

// free stops the library's subscription and waits for its thread (so the handler has
// returned for the last time), releases what it held, and closes done.
func (sub *Subscription) free() {
	sub.state.stop()
	sub.mu.Lock()
	p := sub.ptr
	sub.ptr = nil
	sub.mu.Unlock()
	_, libErr := call(func() C.evs_status { return C.evs_subscription_close(p) })
	// The library calls the handler no more: the handle and its memory can go.
	sub.handle.Delete()
	C.free(sub.userData)
	sub.store.forget(sub.state)
	result := sub.state.result(libErr)
	sub.mu.Lock()
	sub.err = result
	sub.mu.Unlock()
	close(sub.done)
}

// Running reports whether the subscription still delivers: false once it has ended or
// been asked to end (see Subscription).
func (sub *Subscription) Running() bool {
	if sub.state.stopping.Load() {
		return false
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ptr == nil {
		return false
	}
	st, err := call(func() C.evs_status { return C.evs_subscription_status(sub.ptr, nil) })
	return err == nil && st == CodeOK
}

// Done is closed once the subscription has ended (by any cause; see Subscription) and
// its handler has returned for the last time.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Err is nil until Done is closed; then why the subscription ended: nil when it was
// stopped (by Close, by its store's Close, or by the handler returning ErrStop), the
// handler's error, a *PanicError, the context's error when its context ended it, or the
// library's *Error when reading failed (e.g. ErrCorrupt, ErrIO).
func (sub *Subscription) Err() error {
	select {
	case <-sub.done:
	default:
		return nil
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.err
}

// Close stops the subscription, waits until it has ended (Done), and returns Err. It may
// be called any number of times, and from the handler itself: it then returns nil at
// once, and the handler is not called again once it returns.
func (sub *Subscription) Close() error {
	sub.state.stop()
	if sub.state.onHandlerThread() {
		return nil
	}
	<-sub.done
	return sub.Err()
}
