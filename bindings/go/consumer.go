package evstore

/*
#include <stdlib.h>
#include "evstore.h"
*/
import "C"

import (
	"context"
	"errors"
	"iter"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// ConsumerStartEnd, as ConsumerOptions.StartPosition: a new consumer starts at the log's
// end (the events appended after it was first opened).
const ConsumerStartEnd uint64 = math.MaxUint64

// RetriesUnlimited, as ConsumerOptions.MaxRetries: an event is retried without limit.
const RetriesUnlimited uint32 = math.MaxUint32

// ConsumerOptions say how a durable consumer runs (docs/consumers.md). The zero value
// has the library's defaults: a new consumer starts at position 0, every event, a
// checkpoint every 100 acknowledgements or 1 s, 5 retries from 100 ms doubling up to 10 s.
type ConsumerOptions struct {
	// StartPosition applies only to a consumer without a checkpoint.
	StartPosition uint64
	// Filter as for SubscribeFiltered; the checkpoint still moves over the events it
	// passes by.
	Filter SubscribeFilter
	// CheckpointEvery: a checkpoint after this many acknowledgements (0: 100).
	CheckpointEvery uint64
	// CheckpointInterval: a checkpoint once this long passed with acknowledgements
	// unwritten (0: 1 s; whole milliseconds).
	CheckpointInterval time.Duration
	// MaxRetries: retries of one event before it is parked (0: 5; RetriesUnlimited).
	MaxRetries uint32
	// RetryBackoff, doubled per retry up to RetryBackoffMax (0: 100 ms and 10 s).
	RetryBackoff, RetryBackoffMax time.Duration
	// Lease (PostgreSQL): how long the consumer stays taken after its holder stopped
	// renewing it, a process that died (0: 10 s; whole milliseconds).
	Lease time.Duration
	// Partitions (PostgreSQL): a consumer group of this many partitions (0: one holder
	// at a time). Every member, in any process, opens the name with the same count; each
	// stream's events go to one member, in order; a dead member's partitions are taken
	// up by the others after its Lease (docs/consumers.md "Consumer groups"). A file
	// store refuses it (ErrInvalidArgument).
	Partitions uint32
}

// Consumer is an open durable consumer (Store.OpenConsumer): it is given the events after
// its stored checkpoint, in position order, and the store keeps its progress. At least
// once: after a crash, the events after its last durable checkpoint come again (never one
// before it, never a gap). Acknowledge an event with Ack once it is handled, or use
// Append to store a handler's effects and its checkpoint in one atomic step (exactly-once
// effects). A name is open in one place at a time: opening it again, here or in another
// process, fails with ErrLocked until Close.
//
// Safe for concurrent use (calls are serialized), but meant for one goroutine. Close it:
// it writes the last checkpoint and lets the name go.
type Consumer struct {
	mu    sync.Mutex
	store *Store
	ptr   *C.evs_consumer // nil once closed
	view  C.evs_event     // evs_consumer_next's output, copied at once
	name  string
}

// ConsumerInfo is a durable consumer as Store.Consumers lists it.
type ConsumerInfo struct {
	Name         string
	NextPosition uint64        // its checkpoint: the next position it will be given
	LagEvents    uint64        // the log's next position minus the checkpoint
	Lag          time.Duration // the age of the first event after the checkpoint (0: none)
	Parked       uint64        // events parked now
	Open         bool          // open now, in this process or another
}

// ParkedEvent is an event a consumer parked (Store.Parked).
type ParkedEvent struct {
	Position uint64
	ParkedAt time.Time
	Reason   string
}

// consumerOptions converts opts to C (the filter's strings live in in).
func (in *inputs) consumerOptions(opts *ConsumerOptions) (*C.evs_consumer_options, error) {
	if opts == nil {
		return nil, nil
	}
	ms := func(d time.Duration, what string) (C.uint32_t, error) {
		if d < 0 || d.Milliseconds() > math.MaxUint32 {
			return 0, invalid(what + " is out of range")
		}
		if d > 0 && d < time.Millisecond {
			return 1, nil
		}
		return C.uint32_t(d.Milliseconds()), nil
	}
	prefix, types, err := in.filter(opts.Filter)
	if err != nil {
		return nil, err
	}
	o := (*C.evs_consumer_options)(C.calloc(1, C.size_t(unsafe.Sizeof(C.evs_consumer_options{}))))
	in.frees = append(in.frees, unsafe.Pointer(o))
	o.struct_size = C.size_t(unsafe.Sizeof(*o))
	o.start_position = C.uint64_t(opts.StartPosition)
	o.stream_prefix = prefix
	o.types = types
	o.types_count = C.size_t(len(opts.Filter.Types))
	o.checkpoint_every = C.uint64_t(opts.CheckpointEvery)
	o.max_retries = C.uint32_t(opts.MaxRetries)
	if o.checkpoint_interval_ms, err = ms(opts.CheckpointInterval, "CheckpointInterval"); err != nil {
		return nil, err
	}
	if o.retry_backoff_ms, err = ms(opts.RetryBackoff, "RetryBackoff"); err != nil {
		return nil, err
	}
	if o.retry_backoff_max_ms, err = ms(opts.RetryBackoffMax, "RetryBackoffMax"); err != nil {
		return nil, err
	}
	if o.lease_ms, err = ms(opts.Lease, "Lease"); err != nil {
		return nil, err
	}
	o.partitions = C.uint32_t(opts.Partitions)
	return o, nil
}

// OpenConsumer opens durable consumer name (1 to 100 bytes of UTF-8), made on its first
// open; opts may be nil for the defaults. Errors: ErrInvalidArgument (a bad name or
// options; Partitions on a file store, or not the group's count), ErrLocked (it is open
// already, here or in another process; on PostgreSQL until a dead holder's lease ends),
// ErrUnavailable (PostgreSQL cannot be reached now), ErrIO, ErrCorrupt (a damaged
// consumer journal).
func (s *Store) OpenConsumer(ctx context.Context, name string, opts *ConsumerOptions) (*Consumer, error) {
	var in inputs
	defer in.release()
	cname, err := in.cString(name, "name")
	if err != nil {
		return nil, err
	}
	copts, err := in.consumerOptions(opts)
	if err != nil {
		return nil, err
	}
	var ptr *C.evs_consumer
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status {
		return C.evs_consumer_open(p, cname, copts, &ptr)
	}); err != nil {
		return nil, err
	}
	c := &Consumer{store: s, ptr: ptr, name: name}
	c.view.struct_size = C.size_t(unsafe.Sizeof(c.view))
	runtime.SetFinalizer(c, func(c *Consumer) { c.Close() })
	return c, nil
}

// Name is the consumer's name.
func (c *Consumer) Name() string { return c.name }

var errConsumerClosed = invalid("the consumer is closed")

// do runs one call on the open consumer, as a call of its store (Store.Close waits for
// it; after Store.Close it fails with ErrInvalidArgument). The caller holds c.mu.
func (c *Consumer) do(ctx context.Context, f func(p *C.evs_consumer) C.evs_status) (Code, error) {
	if c.ptr == nil {
		return CodeInvalidArgument, errConsumerClosed
	}
	p := c.ptr
	st, err := c.store.do(ctx, func(*C.evs_store) C.evs_status { return f(p) })
	runtime.KeepAlive(c)
	return st, err
}

// nextWait is the longest a single wait of Next lasts in the library, so that a done
// context or a closing store is seen within it.
const nextWait = 100 * time.Millisecond

// Next waits for the consumer's next event (a replayed parked event first, then the log's
// next one that passes the filter) and returns it, or ctx's error once ctx is done.
// Acknowledge it (Ack, Append) once handled, or Retry or Park it. Errors: the context's;
// ErrInvalidArgument (closed, or its store closed); ErrCorrupt or ErrIO (reading failed).
func (c *Consumer) Next(ctx context.Context) (Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		wait := nextWait
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			wait = max(time.Until(d), 0)
		}
		var ev Event
		st, err := c.do(ctx, func(p *C.evs_consumer) C.evs_status {
			st := C.evs_consumer_next(p, &c.view, C.int32_t(wait.Milliseconds()))
			if st == C.EVS_OK {
				ev = eventFromC(&c.view) // the view lasts until the next call
			}
			return st
		})
		if err != nil {
			return Event{}, err
		}
		if st == CodeOK {
			return ev, nil
		}
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
	}
}

// All ranges over the consumer's events as Next gives them, waiting for new ones, until
// ctx is done (its error is the last pair) or an error ends it (the last pair too).
// The loop body acknowledges each event (Ack, Append) or retries or parks it:
//
//	for ev, err := range c.All(ctx) {
//		if err != nil {
//			return err
//		}
//		handle(ev)
//		if err := c.Ack(ev.Position); err != nil {
//			return err
//		}
//	}
func (c *Consumer) All(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := c.Next(ctx)
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// Ack acknowledges every event up to and including position (a replayed parked event:
// that one, which is parked no more). The checkpoint follows at the consumer's interval.
// Errors: ErrInvalidArgument (position not delivered yet), ErrIO (a due checkpoint could
// not be written; the acknowledgement stays for the next one).
func (c *Consumer) Ack(position uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_ack(p, C.uint64_t(position))
	})
	return err
}

// Retry asks for the event at position (delivered, not acknowledged) and the ones after
// it again, after the backoff; once it had MaxRetries retries it is parked instead
// ("gave up after N retries") and delivery goes on: parked says which.
func (c *Consumer) Retry(position uint64) (parked bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cp C.bool
	_, err = c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_retry(p, C.uint64_t(position), &cp)
	})
	return bool(cp), err
}

// Park records the event at position (delivered) as parked with reason (cut to 1024
// bytes), durably, and acknowledges it: delivery goes on. Store.Parked lists it.
func (c *Consumer) Park(position uint64, reason string) error {
	creason, err := cString(reason, "reason")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(creason))
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_park(p, C.uint64_t(position), creason)
	})
	return err
}

// ReplayParked queues the parked event at position for delivery before new events
// (ErrNotFound when none is parked there).
func (c *Consumer) ReplayParked(position uint64) error {
	_, err := c.replay(position)
	return err
}

// ReplayAllParked queues every parked event, in position order, before new events, and
// returns how many.
func (c *Consumer) ReplayAllParked() (uint64, error) { return c.replay(math.MaxUint64) }

func (c *Consumer) replay(position uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n C.uint64_t
	_, err := c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_replay_parked(p, C.uint64_t(position), &n)
	})
	return uint64(n), err
}

// Checkpoint writes the consumer's checkpoint now (if it moved since the last one).
func (c *Consumer) Checkpoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_checkpoint(p)
	})
	return err
}

// Position is where the consumer stands: every position before next is handled; stored
// is the checkpoint stored last.
func (c *Consumer) Position() (next, stored uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cn, cs C.uint64_t
	_, err = c.do(context.Background(), func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_position(p, &cn, &cs)
	})
	return uint64(cn), uint64(cs), err
}

// Append is the atomic step of exactly-once effects: it appends parts as AppendMulti does
// and, in the same step, stores the consumer's checkpoint after ack (the event whose
// effects these are). After any crash both are stored or neither is: the event comes
// again only if its effects were not stored. Errors: as AppendMulti (nothing stored, the
// checkpoint neither), ErrInvalidArgument (ack not delivered), ErrReadOnly.
func (c *Consumer) Append(ctx context.Context, ack uint64, parts []StreamAppend) (first uint64, lastVersions []uint64, err error) {
	var in inputs
	defer in.release()
	ca, err := in.streamAppends(parts)
	if err != nil {
		return 0, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var cfirst C.uint64_t
	_, err = c.do(ctx, func(p *C.evs_consumer) C.evs_status {
		return C.evs_consumer_append(p, ca.parts, ca.count, C.uint64_t(ack), &cfirst, ca.versionsPtr)
	})
	runtime.KeepAlive(parts)
	if err != nil {
		return 0, nil, err
	}
	return uint64(cfirst), ca.lastVersions(), nil
}

// Close writes the last checkpoint and closes the consumer (the name may be opened again).
// Calling it twice is harmless. Closed after its store, it returns ErrInvalidArgument:
// the acknowledgements since the last checkpoint were not stored (those events come
// again).
func (c *Consumer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.ptr
	if p == nil {
		return nil
	}
	c.ptr = nil
	runtime.SetFinalizer(c, nil)
	// Not through c.store.do: the library frees the consumer whether or not its store is
	// still open (and says so). Store.Close and this call may race: the library waits.
	_, err := call(func() C.evs_status { return C.evs_consumer_close(p) })
	return err
}

// ErrRetry, returned by a Run handler, asks for the event again after the backoff.
var ErrRetry = errors.New("evstore: retry the event")

// parkError is what Park returns for a Run handler.
type parkError struct{ reason string }

func (e *parkError) Error() string { return "evstore: park the event: " + e.reason }

// ParkEvent, returned by a Run handler, parks the event with reason; delivery goes on.
func ParkEvent(reason string) error { return &parkError{reason: reason} }

// Run is the callback form: it calls handle with each event as Next gives them, on this
// goroutine, and acknowledges the event when handle returns nil. handle may return
// ErrRetry (the event comes again after the backoff, up to MaxRetries, then it is
// parked), ParkEvent(reason) (parked, delivery goes on), or any other error, which stops
// Run and is returned. handle may call c.Append with the event's position (the atomic
// step; the acknowledgement after it changes nothing). Run returns ctx's error once ctx
// is done, or the error that ended it.
//
// Go needs no library thread for this: a goroutine running Run is the subscription.
func (c *Consumer) Run(ctx context.Context, handle func(Event) error) error {
	for ev, err := range c.All(ctx) {
		if err != nil {
			return err
		}
		var pe *parkError
		switch herr := handle(ev); {
		case herr == nil:
			err = c.Ack(ev.Position)
		case errors.Is(herr, ErrRetry):
			_, err = c.Retry(ev.Position)
		case errors.As(herr, &pe):
			err = c.Park(ev.Position, pe.reason)
		default:
			return herr
		}
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Consumers lists every durable consumer of the store with its checkpoint, lag and
// parked count, by name (none on PostgreSQL).
func (s *Store) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	var l *C.evs_consumer_list
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_list_consumers(p, &l) }); err != nil {
		return nil, err
	}
	defer C.evs_consumer_list_free(l)
	n := int(C.evs_consumer_list_count(l))
	out := make([]ConsumerInfo, 0, n)
	for i := 0; i < n; i++ {
		ci := C.evs_consumer_info{struct_size: C.size_t(unsafe.Sizeof(C.evs_consumer_info{}))}
		if _, err := call(func() C.evs_status { return C.evs_consumer_list_get(l, C.size_t(i), &ci) }); err != nil {
			return nil, err
		}
		out = append(out, ConsumerInfo{
			Name: C.GoString(ci.name), NextPosition: uint64(ci.next_position),
			LagEvents: uint64(ci.lag_events), Lag: time.Duration(ci.lag_us) * time.Microsecond,
			Parked: uint64(ci.parked), Open: bool(ci.open),
		})
	}
	return out, nil
}

// Parked lists the parked events of consumer name (open or not), by position.
// ErrNotFound when there is no such consumer.
func (s *Store) Parked(ctx context.Context, name string) ([]ParkedEvent, error) {
	cname, err := cString(name, "name")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	var l *C.evs_parked_list
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_list_parked(p, cname, &l) }); err != nil {
		return nil, err
	}
	defer C.evs_parked_list_free(l)
	n := int(C.evs_parked_list_count(l))
	out := make([]ParkedEvent, 0, n)
	for i := 0; i < n; i++ {
		pe := C.evs_parked_event{struct_size: C.size_t(unsafe.Sizeof(C.evs_parked_event{}))}
		if _, err := call(func() C.evs_status { return C.evs_parked_list_get(l, C.size_t(i), &pe) }); err != nil {
			return nil, err
		}
		out = append(out, ParkedEvent{
			Position: uint64(pe.position), ParkedAt: time.UnixMicro(int64(pe.parked_at_us)),
			Reason: C.GoString(pe.reason),
		})
	}
	return out, nil
}

// ResetConsumer sets consumer name (made if new; not open anywhere, else ErrLocked) to
// be given the events from position on. ErrNotFound: position is past the log's end.
func (s *Store) ResetConsumer(ctx context.Context, name string, position uint64) error {
	return s.consumerOp(ctx, name, func(p *C.evs_store, cname *C.char) C.evs_status {
		return C.evs_consumer_reset(p, cname, C.uint64_t(position))
	})
}

// ResetConsumerToTime resets consumer name to the first event after t.
func (s *Store) ResetConsumerToTime(ctx context.Context, name string, t time.Time) error {
	us := t.UnixMicro()
	if us < 0 {
		us = 0
	}
	pos, err := s.PositionAt(ctx, uint64(us))
	if err != nil {
		return err
	}
	return s.ResetConsumer(ctx, name, pos)
}

// DeleteConsumer forgets consumer name: its checkpoint and parked events (the name starts
// afresh). ErrNotFound: no such consumer; ErrLocked: it is open.
func (s *Store) DeleteConsumer(ctx context.Context, name string) error {
	return s.consumerOp(ctx, name, func(p *C.evs_store, cname *C.char) C.evs_status {
		return C.evs_consumer_delete(p, cname)
	})
}

func (s *Store) consumerOp(ctx context.Context, name string, f func(p *C.evs_store, cname *C.char) C.evs_status) error {
	cname, err := cString(name, "name")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status { return f(p, cname) })
	return err
}
