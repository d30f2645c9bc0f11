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
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// ErrStop, returned by a subscription's handler, stops the subscription without an
// error: Close then returns nil.
var ErrStop = errors.New("evstore: subscription stopped by its handler")

// PanicError is a panic of a subscription's handler, recovered on the library's thread
// (a Go panic must not unwind through C). It ended the subscription; Close returns it.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the handler's stack when it panicked
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("evstore: subscription handler panicked: %v\n%s", e.Value, e.Stack)
}

// Subscription delivers events to a handler on a library thread (Store.Subscribe).
// Close it when done: it is what frees it.
type Subscription struct {
	store    *Store
	state    *subState
	userData unsafe.Pointer // C memory holding the cgo.Handle of state
	handle   cgo.Handle

	mu     sync.Mutex
	ptr    *C.evs_subscription // nil once a Close has claimed it
	closed chan struct{}       // closed when the claiming Close has finished
	result error
}

// subState is what the callback reaches through its handle.
type subState struct {
	fn        func(Event) error
	ctx       context.Context
	thread    atomic.Int64 // the OS thread the library calls the handler on
	mu        sync.Mutex
	err       error // the handler's error or panic that ended it
	cancelled bool  // ended because ctx was done
}

func (st *subState) end(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
	}
}

// deliver runs the handler for one event; non-zero stops the subscription.
func (st *subState) deliver(ev Event) (stop C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			st.end(&PanicError{Value: r, Stack: debug.Stack()})
			stop = 1
		}
	}()
	if st.ctx.Err() != nil {
		st.mu.Lock()
		st.cancelled = true
		st.mu.Unlock()
		return 1
	}
	if err := st.fn(ev); err != nil {
		st.end(err)
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
// when ctx is done, when the store closes, or at Close. Close returns why it ended.
func (s *Store) Subscribe(ctx context.Context, fromPosition uint64, fn func(Event) error) (*Subscription, error) {
	return s.SubscribeFiltered(ctx, fromPosition, SubscribeFilter{}, fn)
}

// SubscribeFiltered is Subscribe for the events that pass filter.
func (s *Store) SubscribeFiltered(ctx context.Context, fromPosition uint64, filter SubscribeFilter, fn func(Event) error) (*Subscription, error) {
	if fn == nil {
		return nil, &Error{Code: ErrInvalidArgument, Message: "the handler is nil"}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var in inputs
	defer in.release()
	var cprefix *C.char
	if filter.StreamPrefix != "" {
		p, err := in.cString(filter.StreamPrefix, "stream_prefix")
		if err != nil {
			return nil, err
		}
		cprefix = p
	}
	var ctypes **C.char
	if len(filter.Types) > 0 {
		// An array of pointers handed to C lives in C memory.
		arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(filter.Types))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(filter.Types))
		in.frees = append(in.frees, unsafe.Pointer(&arr[0]))
		for i, t := range filter.Types {
			ct, err := in.cString(t, "types")
			if err != nil {
				return nil, err
			}
			arr[i] = ct
		}
		ctypes = &arr[0]
	}

	state := &subState{fn: fn, ctx: ctx}
	sub := &Subscription{store: s, state: state, handle: cgo.NewHandle(state), closed: make(chan struct{})}
	// user_data is C memory holding the handle (a uintptr is not a pointer to C).
	sub.userData = C.malloc(C.size_t(unsafe.Sizeof(sub.handle)))
	*(*cgo.Handle)(sub.userData) = sub.handle
	var ptr *C.evs_subscription
	_, err := s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_subscribe_filtered(p, C.uint64_t(fromPosition), cprefix, ctypes, C.size_t(len(filter.Types)),
			deliverFn(), sub.userData, &ptr)
	})
	if err != nil {
		sub.handle.Delete()
		C.free(sub.userData)
		return nil, err
	}
	sub.ptr = ptr
	runtime.SetFinalizer(sub, func(sub *Subscription) { sub.Close() })
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				state.mu.Lock()
				state.cancelled = true
				state.mu.Unlock()
				sub.Close()
			case <-sub.closed:
			}
		}()
	}
	return sub, nil
}

// Running reports whether the subscription still delivers: false once it has ended
// (its handler stopped it, ctx was done, its store closed, reading failed, or Close).
func (sub *Subscription) Running() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ptr == nil {
		return false
	}
	st, err := call(func() C.evs_status { return C.evs_subscription_status(sub.ptr, nil) })
	return err == nil && st == OK
}

// Close stops the subscription, waits until its handler has returned for the last
// time, frees it, and returns why it ended: nil when stopped (by Close, by its store's
// Close, or by the handler returning ErrStop), the handler's error, a *PanicError, the
// context's error when ctx ended it, or the library's *Error (e.g. ErrCorrupt). It may be
// called from the handler itself (it then returns at once) and any number of times.
func (sub *Subscription) Close() error {
	sub.mu.Lock()
	p := sub.ptr
	sub.ptr = nil
	sub.mu.Unlock()
	if p == nil {
		// Another Close has claimed it: wait for it, unless this is the handler itself,
		// which that Close is waiting for.
		if sub.state.thread.Load() != int64(syscall.Gettid()) {
			<-sub.closed
		}
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return sub.result
	}
	runtime.SetFinalizer(sub, nil)
	_, libErr := call(func() C.evs_status { return C.evs_subscription_close(p) })
	// The library calls the handler no more: the handle and its memory can go.
	sub.handle.Delete()
	C.free(sub.userData)

	st := sub.state
	st.mu.Lock()
	var result error
	switch {
	case st.err != nil && !errors.Is(st.err, ErrStop):
		result = st.err
	case st.err != nil:
	case libErr != nil:
		result = libErr
	case st.cancelled:
		result = st.ctx.Err()
	}
	st.mu.Unlock()
	sub.mu.Lock()
	sub.result = result
	sub.mu.Unlock()
	close(sub.closed)
	return result
}
