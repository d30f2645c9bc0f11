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
#cgo pkg-config: evstore
#include <stdlib.h>
// ./evstore.h is a copy of the installed header (TestHeaderIsTheLibraryOne keeps the two
// identical): it travels with the module (go mod vendor, module zips), and cgo hashes
// it into the build.
#include "evstore.h"

// The subscription callback, exported by subscribe.go. The export's declaration has no
// const; the library calls it as an evs_event_fn.
extern int32_t evstoreGoDeliver(void *user_data, evs_event *event);
static evs_event_fn evstore_go_deliver_fn(void) { return (evs_event_fn)evstoreGoDeliver; }
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"strings"
	"sync"
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
	ErrUnavailable          Code = C.EVS_ERR_UNAVAILABLE
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

// deliverFn is subscribe.go's callback as an evs_event_fn (a file with //export may only
// declare C functions in its preamble, so the cast lives here).
func deliverFn() C.evs_event_fn { return C.evstore_go_deliver_fn() }

// Version is the library's version, e.g. "1.0.0".
func Version() string { return C.GoString(C.evs_version()) }

// VersionNumber is the library's 1000000*major + 1000*minor + patch. The binding needs
// a library of at least HeaderVersionNumber, the version of the header it was built with.
func VersionNumber() int32 { return int32(C.evs_version_number()) }

// HeaderVersionNumber is EVS_VERSION_NUMBER of the header this binding was built with.
const HeaderVersionNumber int32 = C.EVS_VERSION_NUMBER

// Shutdown stops the library's background threads once every store is closed (else
// ErrBusy). Optional: later calls start them again as needed.
func Shutdown() error {
	_, err := call(func() C.evs_status { return C.evs_shutdown() })
	return err
}

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

// SetMaxEventSize lowers the largest event (payload plus metadata) an append accepts:
// 1 ..= 16 MiB, the default.
func (o *Options) SetMaxEventSize(bytes uint64) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_max_event_size(c, C.uint64_t(bytes))
	})
}

// SetDedupeWindow sets how many of the last events' ids are remembered for idempotent
// appends (1 ..= 2^30; default 2^20).
func (o *Options) SetDedupeWindow(events uint64) error {
	return o.set(func(c *C.evs_options) C.evs_status {
		return C.evs_options_set_dedupe_window(c, C.uint64_t(events))
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

// Store is an open store, safe for concurrent use by many goroutines. Close may race
// other calls: calls already running finish, later ones fail with ErrInvalidArgument.
type Store struct {
	mu       sync.RWMutex // guards ptr; Close holds it to stop new calls from starting
	ptr      *C.evs_store
	inFlight sync.WaitGroup // calls between their check of ptr and their return
}

// Open opens (creating it if needed; the parent directory must exist) the store at
// path. opts may be nil for the defaults; it stays the caller's. ctx is checked before
// the call: recovery itself, once started, runs to its end.
func Open(ctx context.Context, path string, opts *Options) (*Store, RecoveryInfo, error) {
	var info RecoveryInfo
	if err := ctx.Err(); err != nil {
		return nil, info, err
	}
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

// Close stops the store's subscriptions (their handlers' calls on this store fail from
// then on), waits for the calls other goroutines are running, syncs, releases the lock
// and frees the store. Calling it twice is harmless. Cursors still open keep reading.
func (s *Store) Close() error {
	s.mu.Lock()
	p := s.ptr
	s.ptr = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	runtime.SetFinalizer(s, nil)
	// No call starts from here on; the ones that started run to their end inside the
	// library, whose evs_close waits for them too. A subscription handler blocked in
	// a call of its own is not waited for here, so that it cannot deadlock with us.
	s.inFlight.Wait()
	_, err := call(func() C.evs_status { return C.evs_close(p) })
	return err
}

var errClosed = &Error{Code: ErrInvalidArgument, Message: "the store is closed"}

// do runs one C call on the open store.
func (s *Store) do(f func(p *C.evs_store) C.evs_status) (Code, error) {
	s.mu.RLock()
	p := s.ptr
	if p == nil {
		s.mu.RUnlock()
		return ErrInvalidArgument, errClosed
	}
	s.inFlight.Add(1)
	s.mu.RUnlock()
	defer s.inFlight.Done()
	st, err := call(func() C.evs_status { return f(p) })
	runtime.KeepAlive(s)
	return st, err
}

// Sync makes every appended event durable, under any policy. ctx is checked before the
// call (a call into the library cannot be interrupted once it runs).
func (s *Store) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_sync(p) })
	return err
}

// AppendEvent appends one event with no stream and returns its position.
func (s *Store) AppendEvent(ctx context.Context, eventType string, payload []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
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

// inputs holds the C side of events to append until the call returns: C strings to
// free and Go bytes pinned while C reads them.
type inputs struct {
	pinner runtime.Pinner
	frees  []unsafe.Pointer
}

func (in *inputs) release() {
	in.pinner.Unpin()
	for _, p := range in.frees {
		C.free(p)
	}
}

func (in *inputs) cString(s, argument string) (*C.char, error) {
	c, err := cString(s, argument)
	if err == nil {
		in.frees = append(in.frees, unsafe.Pointer(c))
	}
	return c, err
}

// events converts events to C; the array is pinned, so that it may itself be pointed to
// from memory passed to C (evs_stream_append.events).
func (in *inputs) events(events []EventInput) (*C.evs_event_input, error) {
	if len(events) == 0 {
		return nil, nil
	}
	cs := make([]C.evs_event_input, len(events))
	for i := range events {
		ev := &events[i]
		ctype, err := in.cString(ev.Type, "event_type")
		if err != nil {
			return nil, err
		}
		cs[i].struct_size = C.size_t(unsafe.Sizeof(cs[i]))
		cs[i].event_type = ctype
		if len(ev.Payload) > 0 {
			in.pinner.Pin(&ev.Payload[0])
			cs[i].payload = bytesPtr(ev.Payload)
			cs[i].payload_len = C.size_t(len(ev.Payload))
		}
		if len(ev.Metadata) > 0 {
			in.pinner.Pin(&ev.Metadata[0])
			cs[i].metadata = bytesPtr(ev.Metadata)
			cs[i].metadata_len = C.size_t(len(ev.Metadata))
		}
		cs[i].schema_version = C.uint32_t(ev.SchemaVersion)
		*(*[16]byte)(unsafe.Pointer(&cs[i].id)) = ev.ID
	}
	in.pinner.Pin(&cs[0])
	return &cs[0], nil
}

// Append appends events to stream atomically if the stream is at expectedVersion
// (ExpectAny, ExpectNoStream, ExpectExists, or the version of its last event). It
// returns the first event's position and the last event's stream version. ctx is
// checked before the call (a cgo call cannot be interrupted).
func (s *Store) Append(ctx context.Context, stream string, expectedVersion int64, events []EventInput) (first, lastVersion uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	var in inputs
	defer in.release()
	cstream, err := in.cString(stream, "stream")
	if err != nil {
		return 0, 0, err
	}
	cevents, err := in.events(events)
	if err != nil {
		return 0, 0, err
	}
	var cfirst, cver C.uint64_t
	_, err = s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_append(p, cstream, C.int64_t(expectedVersion), cevents, C.size_t(len(events)), &cfirst, &cver)
	})
	runtime.KeepAlive(events)
	if err != nil {
		return 0, 0, err
	}
	return uint64(cfirst), uint64(cver), nil
}

// StreamAppend is one stream's part of AppendMulti.
type StreamAppend struct {
	Stream          string
	ExpectedVersion int64 // as for Append
	Events          []EventInput
}

// AppendMulti appends to several streams in one atomic step: all of it is stored, or
// nothing. Events get consecutive positions in the order of the parts. It returns the
// first event's position and, for each part, the version of its last event.
func (s *Store) AppendMulti(ctx context.Context, parts []StreamAppend) (first uint64, lastVersions []uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	var in inputs
	defer in.release()
	cparts := make([]C.evs_stream_append, len(parts))
	for i := range parts {
		cstream, err := in.cString(parts[i].Stream, "stream")
		if err != nil {
			return 0, nil, err
		}
		cevents, err := in.events(parts[i].Events)
		if err != nil {
			return 0, nil, err
		}
		cparts[i] = C.evs_stream_append{
			struct_size:      C.size_t(unsafe.Sizeof(cparts[i])),
			stream:           cstream,
			expected_version: C.int64_t(parts[i].ExpectedVersion),
			events:           cevents,
			count:            C.size_t(len(parts[i].Events)),
		}
	}
	var cpartsPtr *C.evs_stream_append
	versions := make([]C.uint64_t, len(parts))
	var versionsPtr *C.uint64_t
	if len(parts) > 0 {
		cpartsPtr, versionsPtr = &cparts[0], &versions[0]
	}
	var cfirst C.uint64_t
	_, err = s.do(func(p *C.evs_store) C.evs_status {
		return C.evs_append_multi(p, cpartsPtr, C.size_t(len(parts)), &cfirst, versionsPtr)
	})
	runtime.KeepAlive(parts)
	if err != nil {
		return 0, nil, err
	}
	lastVersions = make([]uint64, len(parts))
	for i, v := range versions {
		lastVersions[i] = uint64(v)
	}
	return uint64(cfirst), lastVersions, nil
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

// Snapshot writes a snapshot now and returns the number of events it covers. ctx is
// checked before the call.
func (s *Store) Snapshot(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var pos C.uint64_t
	_, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_snapshot(p, &pos) })
	return uint64(pos), err
}

// Stats are a store's counters since it was opened (events and bytes: the whole log).
type Stats struct {
	Events, Streams, BytesOnDisk, Segments uint64
	Appends, Fsyncs                        uint64
	FsyncP50Us, FsyncP99Us                 uint64 // upper bounds, microseconds
	OpenTimeUs, Snapshots, IndexBytes      uint64
	Accounts                               uint64
	Subscriptions                          uint64 // still delivering
	EventIDs                               uint64 // ids remembered for idempotent appends
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
		Subscriptions: uint64(cs.subscriptions), EventIDs: uint64(cs.event_ids),
	}, nil
}

// StoreOptions are the options an open store runs with, defaults filled in.
type StoreOptions struct {
	Fsync          FsyncPolicy
	BatchWindowMs  uint32 // under FsyncBatch; 0 otherwise
	MaxSegmentSize uint64
	Preallocate    bool
	ReadOnly       bool
	SnapshotEvery  uint64 // 0: no automatic snapshots
	MaxEventSize   uint64
	DedupeWindow   uint64
}

// Options reports the options the store was opened with.
func (s *Store) Options() (StoreOptions, error) {
	co := C.evs_store_options{struct_size: C.size_t(unsafe.Sizeof(C.evs_store_options{}))}
	if _, err := s.do(func(p *C.evs_store) C.evs_status { return C.evs_store_options_get(p, &co) }); err != nil {
		return StoreOptions{}, err
	}
	return StoreOptions{
		Fsync: FsyncPolicy(co.fsync_policy), BatchWindowMs: uint32(co.batch_window_ms),
		MaxSegmentSize: uint64(co.max_segment_size), Preallocate: bool(co.preallocate),
		ReadOnly: bool(co.read_only), SnapshotEvery: uint64(co.snapshot_every),
		MaxEventSize: uint64(co.max_event_size), DedupeWindow: uint64(co.dedupe_window),
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
// Accounts

// Account is an account as its events leave it.
type Account struct {
	Balance      int64
	IsClosed     bool
	Currency     string // "USD"
	Version      uint64 // events applied to this account
	LastPosition uint64 // position of its last event
}

// accountOp runs one account write (an append that may wait for an fdatasync, or for
// the server): ctx is checked before the call.
func (s *Store) accountOp(ctx context.Context, ids []string, f func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
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
func (s *Store) OpenAccount(ctx context.Context, id string, initialBalance int64, currency string) (uint64, error) {
	var ccur *C.char
	if currency != "" {
		c, err := cString(currency, "currency")
		if err != nil {
			return 0, err
		}
		defer C.free(unsafe.Pointer(c))
		ccur = c
	}
	return s.accountOp(ctx, []string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_open(p, ids[0], C.int64_t(initialBalance), ccur, pos)
	})
}

// Deposit deposits amount (> 0) and returns the position of its event.
func (s *Store) Deposit(ctx context.Context, id string, amount int64) (uint64, error) {
	return s.accountOp(ctx, []string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_deposit(p, ids[0], C.int64_t(amount), pos)
	})
}

// Withdraw withdraws amount (> 0) if the balance covers it.
func (s *Store) Withdraw(ctx context.Context, id string, amount int64) (uint64, error) {
	return s.accountOp(ctx, []string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_withdraw(p, ids[0], C.int64_t(amount), pos)
	})
}

// Transfer moves amount (> 0) between two accounts of one currency atomically and
// returns the position of the withdrawal's event.
func (s *Store) Transfer(ctx context.Context, fromID, toID string, amount int64) (uint64, error) {
	return s.accountOp(ctx, []string{fromID, toID}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
		return C.evs_account_transfer(p, ids[0], ids[1], C.int64_t(amount), pos)
	})
}

// CloseAccount closes an account; it can still be read.
func (s *Store) CloseAccount(ctx context.Context, id string) (uint64, error) {
	return s.accountOp(ctx, []string{id}, func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status {
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
