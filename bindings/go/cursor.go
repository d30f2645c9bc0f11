package evstore

/*
#include <stdlib.h>
#include "evstore.h"
*/
import "C"

import (
	"context"
	"iter"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Event is a stored event, copied into Go memory.
type Event struct {
	Position      uint64 // global, from 0, never reused (a removed event leaves it empty)
	TimestampUs   uint64 // microseconds since the Unix epoch
	Stream        string // "" for events appended with AppendEvent
	StreamVersion uint64
	Type          string
	SchemaVersion uint32
	Payload       []byte   // nil when empty
	Metadata      []byte   // nil when empty
	ID            [16]byte // the id it was appended with; zero for none
	Subject       string   // the data subject it names; "" for none
	// Erased: its subject was forgotten (Store.ForgetSubject); Payload and Metadata are
	// nil, the other fields as stored.
	Erased bool
}

// Time is the event's timestamp.
func (e Event) Time() time.Time { return time.UnixMicro(int64(e.TimestampUs)) }

// eventFromC copies a borrowed view. A view the library filled for a callback carries
// the library's struct_size: a field past it does not exist (an older library).
func eventFromC(e *C.evs_event) Event {
	ev := Event{
		Position:      uint64(e.position),
		TimestampUs:   uint64(e.timestamp_us),
		Stream:        C.GoStringN(e.stream, C.int(e.stream_len)),
		StreamVersion: uint64(e.stream_version),
		Type:          C.GoStringN(e.event_type, C.int(e.event_type_len)),
		SchemaVersion: uint32(e.schema_version),
		Payload:       goBytes(e.payload, e.payload_len),
		Metadata:      goBytes(e.metadata, e.metadata_len),
	}
	if uintptr(e.struct_size) >= unsafe.Offsetof(e.id)+unsafe.Sizeof(e.id) {
		ev.ID = *(*[16]byte)(unsafe.Pointer(&e.id))
	}
	if uintptr(e.struct_size) >= unsafe.Offsetof(e.flags)+unsafe.Sizeof(e.flags) {
		if e.subject != nil {
			ev.Subject = C.GoStringN(e.subject, C.int(e.subject_len))
		}
		ev.Erased = e.flags&C.EVS_EVENT_ERASED != 0
	}
	return ev
}

// batchSize is how many events a Cursor fetches per cgo call (evs_cursor_next_batch):
// a cgo call costs about as much as copying a small event, so batches pay here.
const batchSize = 64

// Cursor iterates over events; it is an io.Closer. Forward cursors (ReadAllCursor,
// ReadStreamCursor, ReadCategoryCursor) see events appended while they run: Next
// reporting no event means "no more now". Safe for concurrent use (calls are
// serialized), but meant for one goroutine.
//
// A cursor keeps the context it was opened with (as database/sql's Rows does): once
// that context is done, Next returns its error.
type Cursor struct {
	mu      sync.Mutex
	ctx     context.Context
	ptr     *C.evs_cursor
	views   []C.evs_event // evs_cursor_next_batch's output array
	pending []Event       // fetched, not yet returned
	store   *Store        // keeps the store from being finalized while the cursor lives
}

// Next returns the next event and true, false when there is none (now: forward cursors
// see later appends on a later call), or an error: the context's once the context the
// cursor was opened with is done.
func (c *Cursor) Next() (Event, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		if err := c.ctx.Err(); err != nil {
			return Event{}, false, err
		}
	}
	if len(c.pending) == 0 {
		if err := c.fetch(); err != nil {
			return Event{}, false, err
		}
		if len(c.pending) == 0 {
			return Event{}, false, nil
		}
	}
	ev := c.pending[0]
	c.pending[0] = Event{}
	c.pending = c.pending[1:]
	return ev, true, nil
}

// fetch copies the next batch into c.pending; none at the end.
func (c *Cursor) fetch() error {
	if c.ptr == nil {
		return invalid("the cursor is closed")
	}
	if c.views == nil {
		// out[0].struct_size tells the library the stride; every entry carries it too,
		// since eventFromC reads each entry's own struct_size (the library writes the
		// fields after it, never the size).
		c.views = make([]C.evs_event, batchSize)
		for i := range c.views {
			c.views[i].struct_size = C.size_t(unsafe.Sizeof(c.views[i]))
		}
	}
	var n C.size_t
	st, err := call(func() C.evs_status {
		st := C.evs_cursor_next_batch(c.ptr, &c.views[0], C.size_t(len(c.views)), &n)
		if st == C.EVS_OK {
			// Copy the borrowed views before anything else touches the cursor.
			c.pending = c.pending[:0]
			for i := 0; i < int(n); i++ {
				c.pending = append(c.pending, eventFromC(&c.views[i]))
			}
		}
		return st
	})
	runtime.KeepAlive(c)
	if err != nil {
		return err
	}
	if st == CodeEnd {
		c.pending = c.pending[:0]
	}
	return nil
}

// All yields the cursor's events until there is none now, or the first error (then
// stops), or until ctx or the cursor's own context is done (yielding that context's
// error). It does not close the cursor.
func (c *Cursor) All(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			if err := ctx.Err(); err != nil {
				yield(Event{}, err)
				return
			}
			ev, ok, err := c.Next()
			if err != nil {
				yield(Event{}, err)
				return
			}
			if !ok || !yield(ev, nil) {
				return
			}
		}
	}
}

// Close frees the cursor. Calling it twice is harmless; it never fails (the error is
// for io.Closer).
func (c *Cursor) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.evs_cursor_free(c.ptr)
		c.ptr = nil
		c.pending = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// openCursor runs one cursor-opening C call; the cursor keeps ctx.
func (s *Store) openCursor(ctx context.Context, f func(p *C.evs_store, out **C.evs_cursor) C.evs_status) (*Cursor, error) {
	var c *C.evs_cursor
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return f(p, &c) }); err != nil {
		return nil, err
	}
	cur := &Cursor{ctx: ctx, ptr: c, store: s}
	runtime.SetFinalizer(cur, (*Cursor).Close)
	return cur, nil
}

// withName runs a cursor-opening call that takes a stream name or prefix.
func (s *Store) withName(ctx context.Context, name, argument string, f func(p *C.evs_store, cname *C.char, out **C.evs_cursor) C.evs_status) (*Cursor, error) {
	cname, err := cString(name, argument)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cname))
	return s.openCursor(ctx, func(p *C.evs_store, out **C.evs_cursor) C.evs_status { return f(p, cname, out) })
}

// ReadAllCursor opens a cursor over all events from fromPosition on; it sees events
// appended while it runs. ErrNotFound when fromPosition is past the next position.
func (s *Store) ReadAllCursor(ctx context.Context, fromPosition uint64) (*Cursor, error) {
	return s.openCursor(ctx, func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_read_all(p, C.uint64_t(fromPosition), out)
	})
}

// ReadAllBackwardCursor opens a cursor from fromPosition (inclusive; PositionEnd or past
// the end: the last event) down to position 0. It does not see later appends.
func (s *Store) ReadAllBackwardCursor(ctx context.Context, fromPosition uint64) (*Cursor, error) {
	return s.openCursor(ctx, func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_read_all_backward(p, C.uint64_t(fromPosition), out)
	})
}

// ReadStreamCursor opens a cursor over one stream from fromVersion on; it sees events
// appended to the stream while it runs. ErrNotFound for a stream that does not exist.
func (s *Store) ReadStreamCursor(ctx context.Context, stream string, fromVersion uint64) (*Cursor, error) {
	return s.withName(ctx, stream, "stream", func(p *C.evs_store, cname *C.char, out **C.evs_cursor) C.evs_status {
		return C.evs_read_stream(p, cname, C.uint64_t(fromVersion), out)
	})
}

// ReadStreamBackwardCursor opens a cursor over one stream from fromVersion (inclusive;
// PositionEnd: its last event) down to version 0. It does not see later appends.
func (s *Store) ReadStreamBackwardCursor(ctx context.Context, stream string, fromVersion uint64) (*Cursor, error) {
	return s.withName(ctx, stream, "stream", func(p *C.evs_store, cname *C.char, out **C.evs_cursor) C.evs_status {
		return C.evs_read_stream_backward(p, cname, C.uint64_t(fromVersion), out)
	})
}

// ReadCategoryCursor opens a cursor over the events of every stream whose name starts
// with prefix (e.g. "account-"), from global position fromPosition on, in position
// order; it sees events appended while it runs, also to streams created later.
func (s *Store) ReadCategoryCursor(ctx context.Context, prefix string, fromPosition uint64) (*Cursor, error) {
	return s.withName(ctx, prefix, "stream_prefix", func(p *C.evs_store, cname *C.char, out **C.evs_cursor) C.evs_status {
		return C.evs_read_category(p, cname, C.uint64_t(fromPosition), out)
	})
}

// PollCursor opens a cursor over at most maxEvents events from fromPosition.
func (s *Store) PollCursor(ctx context.Context, fromPosition uint64, maxEvents int) (*Cursor, error) {
	if maxEvents < 0 {
		return nil, invalid("maxEvents is negative")
	}
	return s.openCursor(ctx, func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_poll(p, C.uint64_t(fromPosition), C.size_t(maxEvents), out)
	})
}

// events opens a cursor when iteration starts and yields its events up to the end (now),
// closing it when the loop ends. An error opening or reading is yielded once, and ends
// the iteration.
func events(ctx context.Context, open func() (*Cursor, error)) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		c, err := open()
		if err != nil {
			yield(Event{}, err)
			return
		}
		defer c.Close()
		c.All(ctx)(yield)
	}
}

// ReadAll yields every event from fromPosition to the end of the log as it is when the
// iteration reaches it:
//
//	for ev, err := range store.ReadAll(ctx, 0) {
//		if err != nil {
//			return err
//		}
//		...
//	}
func (s *Store) ReadAll(ctx context.Context, fromPosition uint64) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.ReadAllCursor(ctx, fromPosition) })
}

// ReadAllBackward yields events from fromPosition (PositionEnd: the last) down to 0.
func (s *Store) ReadAllBackward(ctx context.Context, fromPosition uint64) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.ReadAllBackwardCursor(ctx, fromPosition) })
}

// ReadStream yields one stream's events from fromVersion on.
func (s *Store) ReadStream(ctx context.Context, stream string, fromVersion uint64) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.ReadStreamCursor(ctx, stream, fromVersion) })
}

// ReadStreamBackward yields one stream's events from fromVersion (PositionEnd: its last)
// down to version 0.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, fromVersion uint64) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.ReadStreamBackwardCursor(ctx, stream, fromVersion) })
}

// ReadCategory yields the events of the streams whose names start with prefix, from
// global position fromPosition on.
func (s *Store) ReadCategory(ctx context.Context, prefix string, fromPosition uint64) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.ReadCategoryCursor(ctx, prefix, fromPosition) })
}

// Poll yields at most maxEvents events from fromPosition.
func (s *Store) Poll(ctx context.Context, fromPosition uint64, maxEvents int) iter.Seq2[Event, error] {
	return events(ctx, func() (*Cursor, error) { return s.PollCursor(ctx, fromPosition, maxEvents) })
}

// ReadEvent reads the event at position (ErrNotFound when there is none).
func (s *Store) ReadEvent(ctx context.Context, position uint64) (Event, error) {
	e := C.evs_event{struct_size: C.size_t(unsafe.Sizeof(C.evs_event{}))}
	var data *C.evs_event_data
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status {
		return C.evs_read_event(p, C.uint64_t(position), &e, &data)
	}); err != nil {
		return Event{}, err
	}
	defer C.evs_event_data_free(data)
	return eventFromC(&e), nil
}

// StreamInfo is a stream as ListStreams reports it.
type StreamInfo struct {
	Name          string
	Version       uint64 // of its last event (its event count minus one)
	FirstPosition uint64 // the global position of its first event
}

// Streams lists every stream of the store as it is now, in creation order.
func (s *Store) Streams(ctx context.Context) ([]StreamInfo, error) {
	var list *C.evs_stream_list
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_list_streams(p, &list) }); err != nil {
		return nil, err
	}
	defer C.evs_stream_list_free(list)
	var out []StreamInfo
	for {
		info := C.evs_stream_info{struct_size: C.size_t(unsafe.Sizeof(C.evs_stream_info{}))}
		st, err := call(func() C.evs_status { return C.evs_stream_list_next(list, &info) })
		if err != nil {
			return nil, err
		}
		if st == CodeEnd {
			return out, nil
		}
		out = append(out, StreamInfo{
			Name:          C.GoStringN(info.name, C.int(info.name_len)),
			Version:       uint64(info.version),
			FirstPosition: uint64(info.first_position),
		})
	}
}
