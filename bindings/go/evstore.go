// Package evstore is the Go binding of evstore, an embedded durable event store
// (libevstore, include/evstore.h).
//
// A *Store is safe for use by many goroutines at once. A *Cursor is safe too (each
// call is serialized), but is meant to be used from one goroutine. Every handle has an
// explicit Close; a finalizer closes one that was forgotten, as a safety net only.
//
// Errors returned by the library are *Error values carrying the status code and the
// library's message. Compare codes with errors.Is(err, evstore.ErrInsufficientFunds)
// or errors.As and Error.Code.
package evstore

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../build/lib -levstore -Wl,-rpath,${SRCDIR}/../../build/lib
#include <stdlib.h>
// ./evstore.h is a symlink to ../../include/evstore.h, so that cgo hashes the header
// into the build and recompiles this package when the header changes.
#include "evstore.h"
*/
import "C"

import (
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Code is an evs_status value. The negative codes are errors and can be compared with
// errors.Is against an error returned by this package.
type Code int32

// The status codes of evstore.h.
const (
	OK                      Code = C.EVS_OK
	End                     Code = C.EVS_END
	ErrInvalidArgument      Code = C.EVS_ERR_INVALID_ARGUMENT
	ErrNotFound             Code = C.EVS_ERR_NOT_FOUND
	ErrAlreadyExists        Code = C.EVS_ERR_ALREADY_EXISTS
	ErrWrongExpectedVersion Code = C.EVS_ERR_WRONG_EXPECTED_VERSION
	ErrInsufficientFunds    Code = C.EVS_ERR_INSUFFICIENT_FUNDS
	ErrAccountClosed        Code = C.EVS_ERR_ACCOUNT_CLOSED
	ErrOverflow             Code = C.EVS_ERR_OVERFLOW
	ErrLocked               Code = C.EVS_ERR_LOCKED
	ErrCorrupt              Code = C.EVS_ERR_CORRUPT
	ErrIO                   Code = C.EVS_ERR_IO
	ErrTooLarge             Code = C.EVS_ERR_TOO_LARGE
	ErrReadOnly             Code = C.EVS_ERR_READ_ONLY
	ErrCurrencyMismatch     Code = C.EVS_ERR_CURRENCY_MISMATCH
	ErrBusy                 Code = C.EVS_ERR_BUSY
	ErrInternal             Code = C.EVS_ERR_INTERNAL
)

// String gives the code's name, e.g. "EVS_ERR_IO".
func (c Code) String() string { return C.GoString(C.evs_status_name(C.evs_status(c))) }

// Error makes a Code usable as an errors.Is target.
func (c Code) Error() string { return c.String() }

// Error is a failed evstore call: its status code and the library's message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "evstore: " + e.Code.String()
	}
	return "evstore: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is this error's Code (errors.Is(err, evstore.ErrNotFound)).
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// Expected versions for Append; a value >= 0 is the version of the stream's last event.
const (
	ExpectAny      int64 = C.EVS_EXPECT_ANY
	ExpectNoStream int64 = C.EVS_EXPECT_NO_STREAM
	ExpectExists   int64 = C.EVS_EXPECT_EXISTS
)

// PositionEnd starts ReadAllBackward at the last event.
const PositionEnd uint64 = math.MaxUint64

// FsyncPolicy is one of the EVS_FSYNC_* values.
type FsyncPolicy int32

const (
	FsyncAlways FsyncPolicy = C.EVS_FSYNC_ALWAYS // an append returns once on disk
	FsyncBatch  FsyncPolicy = C.EVS_FSYNC_BATCH  // on disk within the batch window
	FsyncOS     FsyncPolicy = C.EVS_FSYNC_OS     // the OS decides; Sync and Close flush
)

// Version is the library's version, e.g. "1.0.0".
func Version() string { return C.GoString(C.evs_version()) }

// call runs one C call and, if it failed, reads the thread-local error message on the
// same OS thread before the goroutine can move.
func call(f func() C.evs_status) (Code, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := Code(f())
	if st < 0 {
		return st, &Error{Code: st, Message: C.GoString(C.evs_last_error_message())}
	}
	return st, nil
}

// cString copies s to C memory (free it with C.free). A NUL byte inside s would
// silently cut the string short in C, so it is refused here.
func cString(s, argument string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Code: ErrInvalidArgument, Message: argument + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// goBytes copies a borrowed byte view; nil when empty.
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// ---------------------------------------------------------------------------
// Options

// Options for Open. The zero value is not usable: create them with NewOptions.
// Defaults: FsyncBatch with a 5 ms window, 128 MiB segments, preallocation on,
// read-write, no automatic snapshots. Not safe for concurrent use.
type Options struct {
	ptr *C.evs_options
}

// NewOptions creates options with the defaults.
func NewOptions() *Options {
	p := C.evs_options_new()
	if p == nil {
		panic("evstore: evs_options_new: out of memory")
	}
	o := &Options{ptr: p}
	runtime.SetFinalizer(o, (*Options).Close)
	return o
}

// Close frees the options. Calling it twice is harmless.
func (o *Options) Close() {
	if o.ptr != nil {
		C.evs_options_free(o.ptr)
		o.ptr = nil
		runtime.SetFinalizer(o, nil)
	}
}

func (o *Options) set(f func(p *C.evs_options) C.evs_status) error {
	if o == nil || o.ptr == nil {
		return &Error{Code: ErrInvalidArgument, Message: "options are nil or closed"}
	}
	_, err := call(func() C.evs_status { return f(o.ptr) })
	runtime.KeepAlive(o)
	return err
}

// SetFsync sets the fsync policy; windowMs (1..=10000) is used only with FsyncBatch.
func (o *Options) SetFsync(p FsyncPolicy, windowMs uint32) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_fsync(c, C.evs_fsync_policy(p), C.uint32_t(windowMs))
	})
}

// SetMaxSegmentSize sets the size at which the log starts a new file (64 KiB ..= 1 TiB).
func (o *Options) SetMaxSegmentSize(bytes uint64) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_max_segment_size(c, C.uint64_t(bytes))
	})
}

// SetPreallocate turns preallocation of new segments on or off.
func (o *Options) SetPreallocate(on bool) error {
	return o.set(func(c *C.evs_options) C.evs_status { return C.evs_options_set_preallocate(c, C.bool(on)) })
}

// SetReadOnly opens the store read-only: no lock, writes refused with ErrReadOnly.
func (o *Options) SetReadOnly(on bool) error {
	return o.set(func(c *C.evs_options) C.evs_status { return C.evs_options_set_read_only(c, C.bool(on)) })
}

// SetSnapshotEvery takes a snapshot automatically every n events (0 = never).
func (o *Options) SetSnapshotEvery(n uint64) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_snapshot_every(c, C.uint64_t(n))
	})
}

// ---------------------------------------------------------------------------
// Store

// RecoveryInfo is what Open found and did.
type RecoveryInfo struct {
	ValidRecords       uint64
	SegmentsScanned    uint64
	BytesTruncated     uint64
	CorruptionDetected bool   // a torn tail was truncated
	NextPosition       uint64 // the position the next event will get
	SnapshotPosition   uint64 // math.MaxUint64 when no snapshot was used
}

// Store is an open store. Safe for concurrent use; Close must not race with other calls
// (it waits for calls in flight, and calls after it return ErrInvalidArgument).
type Store struct {
	mu  sync.RWMutex
	ptr *C.evs_store
}

// Open opens (creating it if needed; the parent directory must exist) the store at
// path. opts may be nil for the defaults; it stays the caller's.
func Open(path string, opts *Options) (*Store, RecoveryInfo, error) {
	var info RecoveryInfo
	cpath, err := cString(path, "path")
	if err != nil {
		return nil, info, err
	}
	defer C.free(unsafe.Pointer(cpath))
	var copts *C.evs_options
	if opts != nil {
		if opts.ptr == nil {
			return nil, info, &Error{Code: ErrInvalidArgument, Message: "options are closed"}
		}
		copts = opts.ptr
	}
	var s *C.evs_store
	ci := C.evs_recovery_info{struct_size: C.size_t(unsafe.Sizeof(C.evs_recovery_info{}))}
	_, err = call(func() C.evs_status { return C.evs_open(cpath, copts, &s, &ci) })
	runtime.KeepAlive(opts)
	if err != nil {
		return nil, info, err
	}
	info = RecoveryInfo{
		ValidRecords:       uint64(ci.valid_records),
		SegmentsScanned:    uint64(ci.segments_scanned),
		BytesTruncated:     uint64(ci.bytes_truncated),
		CorruptionDetected: bool(ci.corruption_detected),
		NextPosition:       uint64(ci.next_position),
		SnapshotPosition:   uint64(ci.snapshot_position),
	}
	st := &Store{ptr: s}
	runtime.SetFinalizer(st, func(st *Store) { st.Close() })
	return st, info, nil
}

// Close syncs, releases the lock and frees the store. Calling it twice is harmless.
// Cursors still open keep working on what they can read but should be closed first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil
	}
	p := s.ptr
	s.ptr = nil
	runtime.SetFinalizer(s, nil)
	_, err := call(func() C.evs_status { return C.evs_close(p) })
	return err
}

var errClosed = &Error{Code: ErrInvalidArgument, Message: "the store is closed"}

// do runs one C call on the open store.
func (s *Store) do(f func(p *C.evs_store) C.evs_status) (Code, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return ErrInvalidArgument, errClosed
	}
	st, err := call(func() C.evs_status { return f(s.ptr) })
	runtime.KeepAlive(s)
	return st, err
}

// Sync makes every appended event durable, under any policy.
func (s *Store) Sync() error {
	_, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_sync(p) })
	return err
}

// AppendEvent appends one event with no stream and returns its position.
func (s *Store) AppendEvent(eventType string, payload []byte) (uint64, error) {
	ctype, err := cString(eventType, "event_type")
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(ctype))
	var pos C.uint64_t
	_, err = s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_append_event(p, ctype, bytesPtr(payload), C.size_t(len(payload)), &pos)
	})
	runtime.KeepAlive(payload)
	return uint64(pos), err
}

// EventInput is one event to append.
type EventInput struct {
	Type          string
	Payload       []byte
	Metadata      []byte // may be nil
	SchemaVersion uint32 // 0 is stored as 1
	// ID is the event's unique id (a UUID, say); the zero value means none. An Append
	// whose events all have ids that are stored already writes nothing and returns the
	// stored positions, so it can be retried safely after a timeout or an I/O error.
	ID [16]byte
}

// Append appends events to stream atomically if the stream is at expectedVersion
// (ExpectAny, ExpectNoStream, ExpectExists, or the version of its last event). It
// returns the first event's position and the last event's stream version.
func (s *Store) Append(stream string, expectedVersion int64, events []EventInput) (first, lastVersion uint64, err error) {
	cstream, err := cString(stream, "stream")
	if err != nil {
		return 0, 0, err
	}
	defer C.free(unsafe.Pointer(cstream))

	// The inputs are Go memory passed to C; the payloads they point to are pinned.
	var pinner runtime.Pinner
	defer pinner.Unpin()
	inputs := make([]C.evs_event_input, len(events))
	for i := range events {
		ev := &events[i]
		ctype, err := cString(ev.Type, "event_type")
		if err != nil {
			return 0, 0, err
		}
		defer C.free(unsafe.Pointer(ctype))
		inputs[i].struct_size = C.size_t(unsafe.Sizeof(inputs[i]))
		inputs[i].event_type = ctype
		if len(ev.Payload) > 0 {
			pinner.Pin(&ev.Payload[0])
			inputs[i].payload = bytesPtr(ev.Payload)
			inputs[i].payload_len = C.size_t(len(ev.Payload))
		}
		if len(ev.Metadata) > 0 {
			pinner.Pin(&ev.Metadata[0])
			inputs[i].metadata = bytesPtr(ev.Metadata)
			inputs[i].metadata_len = C.size_t(len(ev.Metadata))
		}
		inputs[i].schema_version = C.uint32_t(ev.SchemaVersion)
		*(*[16]byte)(unsafe.Pointer(&inputs[i].id)) = ev.ID
	}
	var inPtr *C.evs_event_input
	if len(inputs) > 0 {
		inPtr = &inputs[0]
	}
	var cfirst, cver C.uint64_t
	_, err = s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_append(p, cstream, C.int64_t(expectedVersion), inPtr, C.size_t(len(inputs)), &cfirst, &cver)
	})
	runtime.KeepAlive(inputs)
	runtime.KeepAlive(events)
	if err != nil {
		return 0, 0, err
	}
	return uint64(cfirst), uint64(cver), nil
}

// openCursor runs one cursor-opening C call.
func (s *Store) openCursor(f func(p *C.evs_store, out **C.evs_cursor) C.evs_status) (*Cursor, error) {
	var c *C.evs_cursor
	if _, err := s.do(func(p *C.evs_store) C.evs_status { return f(p, &c) }); err != nil {
		return nil, err
	}
	cur := &Cursor{ptr: c, store: s}
	runtime.SetFinalizer(cur, (*Cursor).Close)
	return cur, nil
}

// ReadAll opens a cursor over all events from fromPosition on. It sees events appended
// while it runs: Next reporting no event means "no more now".
func (s *Store) ReadAll(fromPosition uint64) (*Cursor, error) {
	return s.openCursor(func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_read_all(p, C.uint64_t(fromPosition), out)
	})
}

// ReadAllBackward opens a cursor from fromPosition (inclusive; PositionEnd or past the
// end: the last event) down to position 0. It does not see later appends.
func (s *Store) ReadAllBackward(fromPosition uint64) (*Cursor, error) {
	return s.openCursor(func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_read_all_backward(p, C.uint64_t(fromPosition), out)
	})
}

// ReadStream opens a cursor over one stream from fromVersion on.
func (s *Store) ReadStream(stream string, fromVersion uint64) (*Cursor, error) {
	cstream, err := cString(stream, "stream")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cstream))
	return s.openCursor(func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_read_stream(p, cstream, C.uint64_t(fromVersion), out)
	})
}

// Poll opens a cursor over at most maxEvents events from fromPosition.
func (s *Store) Poll(fromPosition uint64, maxEvents int) (*Cursor, error) {
	if maxEvents < 0 {
		return nil, &Error{Code: ErrInvalidArgument, Message: "maxEvents is negative"}
	}
	return s.openCursor(func(p *C.evs_store, out **C.evs_cursor) C.evs_status {
		return C.evs_poll(p, C.uint64_t(fromPosition), C.size_t(maxEvents), out)
	})
}

// PositionAt is the first position whose timestamp is after timestampUs (microseconds
// since the Unix epoch); the next position if none. PositionAt(PositionEnd) is the next
// position.
func (s *Store) PositionAt(timestampUs uint64) (uint64, error) {
	var pos C.uint64_t
	_, err := s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_position_at(p, C.uint64_t(timestampUs), &pos)
	})
	return uint64(pos), err
}

// StreamVersion is the version of the stream's last event, or -1 when it does not exist.
func (s *Store) StreamVersion(stream string) (int64, error) {
	cstream, err := cString(stream, "stream")
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(cstream))
	var v C.int64_t
	_, err = s.do(func(p *C.evs_store) C.evs_status { return C.evs_stream_version(p, cstream, &v) })
	if err != nil {
		return 0, err
	}
	return int64(v), nil
}

// Snapshot writes a snapshot now and returns the number of events it covers.
func (s *Store) Snapshot() (uint64, error) {
	var pos C.uint64_t
	_, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_snapshot(p, &pos) })
	return uint64(pos), err
}

// Stats are a store's counters since it was opened (events and bytes: the whole log).
type Stats struct {
	Events, Streams, BytesOnDisk, Segments uint64
	Appends, Fsyncs                        uint64
	FsyncP50Us, FsyncP99Us                 uint64
	OpenTimeUs, Snapshots, IndexBytes      uint64
	Accounts                               uint64
}

// Stats reads the store's counters.
func (s *Store) Stats() (Stats, error) {
	cs := C.evs_stats{struct_size: C.size_t(unsafe.Sizeof(C.evs_stats{}))}
	if _, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_stats_get(p, &cs) }); err != nil {
		return Stats{}, err
	}
	return Stats{
		Events: uint64(cs.events), Streams: uint64(cs.streams),
		BytesOnDisk: uint64(cs.bytes_on_disk), Segments: uint64(cs.segments),
		Appends: uint64(cs.appends), Fsyncs: uint64(cs.fsyncs),
		FsyncP50Us: uint64(cs.fsync_p50_us), FsyncP99Us: uint64(cs.fsync_p99_us),
		OpenTimeUs: uint64(cs.open_time_us), Snapshots: uint64(cs.snapshots),
		IndexBytes: uint64(cs.index_bytes), Accounts: uint64(cs.accounts),
	}, nil
}

// MetricsText gives the store's counters in the Prometheus text format.
func (s *Store) MetricsText() (string, error) {
	var text *C.char
	if _, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_metrics_text(p, &text) }); err != nil {
		return "", err
	}
	defer C.evs_string_free(text)
	return C.GoString(text), nil
}

// ---------------------------------------------------------------------------
// Cursor

// Event is a stored event, copied into Go memory.
type Event struct {
	Position      uint64 // global, gapless, from 0
	TimestampUs   uint64 // microseconds since the Unix epoch
	Stream        string // "" for events appended with AppendEvent
	StreamVersion uint64
	Type          string
	SchemaVersion uint32
	Payload       []byte   // nil when empty
	Metadata      []byte   // nil when empty
	ID            [16]byte // the id it was appended with; zero for none
}

// Time is the event's timestamp.
func (e Event) Time() time.Time { return time.UnixMicro(int64(e.TimestampUs)) }

// Cursor iterates over events. Close it when done.
type Cursor struct {
	mu    sync.Mutex
	ptr   *C.evs_cursor
	store *Store // keeps the store from being finalized while the cursor lives
}

// Next returns the next event and true, or false when there is none (now: forward
// cursors see later appends on a later call), or an error.
func (c *Cursor) Next() (Event, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return Event{}, false, &Error{Code: ErrInvalidArgument, Message: "the cursor is closed"}
	}
	e := C.evs_event{struct_size: C.size_t(unsafe.Sizeof(C.evs_event{}))}
	var ev Event
	st, err := call(func() C.evs_status {
		st := C.evs_cursor_next(c.ptr, &e)
		if st == C.EVS_OK {
			// Copy the borrowed view before anything else touches the cursor.
			ev = Event{
				Position:      uint64(e.position),
				TimestampUs:   uint64(e.timestamp_us),
				Stream:        C.GoStringN(e.stream, C.int(e.stream_len)),
				StreamVersion: uint64(e.stream_version),
				Type:          C.GoStringN(e.event_type, C.int(e.event_type_len)),
				SchemaVersion: uint32(e.schema_version),
				Payload:       goBytes(e.payload, e.payload_len),
				Metadata:      goBytes(e.metadata, e.metadata_len),
				ID:            *(*[16]byte)(unsafe.Pointer(&e.id)),
			}
		}
		return st
	})
	runtime.KeepAlive(c)
	if err != nil {
		return Event{}, false, err
	}
	if st == End {
		return Event{}, false, nil
	}
	return ev, true, nil
}

// Close frees the cursor. Calling it twice is harmless.
func (c *Cursor) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.evs_cursor_free(c.ptr)
		c.ptr = nil
		runtime.SetFinalizer(c, nil)
	}
}

// ---------------------------------------------------------------------------
// Accounts

// Account is an account as its events leave it.
type Account struct {
	Balance      int64
	IsClosed     bool
	Currency     string // "USD"
	Version      uint64 // events applied to this account
	LastPosition uint64 // position of its last event
}

func (s *Store) accountOp(ids []string, f func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status) (uint64, error) {
	cids := make([]*C.char, len(ids))
	for i, id := range ids {
		c, err := cString(id, "account_id")
		if err != nil {
			return 0, err
		}
		defer C.free(unsafe.Pointer(c))
		cids[i] = c
	}
	var pos C.uint64_t
	_, err := s.do(func(p *C.evs_store) C.evs_status { return f(p, cids, &pos) })
	if err != nil {
		return 0, err
	}
	return uint64(pos), nil
}

// OpenAccount opens account id with initialBalance (>= 0) in currency (three
// upper-case letters; "" means "USD") and returns the position of its event.
func (s *Store) OpenAccount(id string, initialBalance int64, currency string) (uint64, error) {
	var ccur *C.char
	if currency != "" {
		c, err := cString(currency, "currency")
		if err != nil {
			return 0, err
		}
		defer C.free(unsafe.Pointer(c))
		ccur = c
	}
	return s.accountOp([]string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_open(p, ids[0], C.int64_t(initialBalance), ccur, pos)
	})
}

// Deposit deposits amount (> 0) and returns the position of its event.
func (s *Store) Deposit(id string, amount int64) (uint64, error) {
	return s.accountOp([]string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_deposit(p, ids[0], C.int64_t(amount), pos)
	})
}

// Withdraw withdraws amount (> 0) if the balance covers it.
func (s *Store) Withdraw(id string, amount int64) (uint64, error) {
	return s.accountOp([]string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_withdraw(p, ids[0], C.int64_t(amount), pos)
	})
}

// Transfer moves amount (> 0) between two accounts of one currency atomically and
// returns the position of the withdrawal's event.
func (s *Store) Transfer(fromID, toID string, amount int64) (uint64, error) {
	return s.accountOp([]string{fromID, toID}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_transfer(p, ids[0], ids[1], C.int64_t(amount), pos)
	})
}

// CloseAccount closes an account; it can still be read.
func (s *Store) CloseAccount(id string) (uint64, error) {
	return s.accountOp([]string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_close(p, ids[0], pos)
	})
}

func (s *Store) getAccount(id string, f func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status) (Account, error) {
	cid, err := cString(id, "account_id")
	if err != nil {
		return Account{}, err
	}
	defer C.free(unsafe.Pointer(cid))
	a := C.evs_account{struct_size: C.size_t(unsafe.Sizeof(C.evs_account{}))}
	if _, err := s.do(func(p *C.evs_store) C.evs_status { return f(p, cid, &a) }); err != nil {
		return Account{}, err
	}
	return Account{
		Balance:      int64(a.balance),
		IsClosed:     bool(a.is_closed),
		Currency:     C.GoString(&a.currency[0]),
		Version:      uint64(a.version),
		LastPosition: uint64(a.last_position),
	}, nil
}

// GetAccount reads an account now.
func (s *Store) GetAccount(id string) (Account, error) {
	return s.getAccount(id, func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status {
		return C.evs_account_get(p, cid, out)
	})
}

// GetAccountAt reads an account as it was after its last event at or before asOfUs
// (microseconds since the Unix epoch).
func (s *Store) GetAccountAt(id string, asOfUs uint64) (Account, error) {
	return s.getAccount(id, func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status {
		return C.evs_account_get_at(p, cid, C.uint64_t(asOfUs), out)
	})
}
