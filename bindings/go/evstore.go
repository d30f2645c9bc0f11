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

// Code is an evs_status value: CodeOK, CodeEnd, or one of the negative error codes. It
// is not an error itself: match errors with the ErrX values (errors.Is), or read
// Error.Code after errors.As.
type Code int32

// The status codes of evstore.h.
const (
	CodeOK                   Code = C.EVS_OK
	CodeEnd                  Code = C.EVS_END
	CodeInvalidArgument      Code = C.EVS_ERR_INVALID_ARGUMENT
	CodeNotFound             Code = C.EVS_ERR_NOT_FOUND
	CodeAlreadyExists        Code = C.EVS_ERR_ALREADY_EXISTS
	CodeWrongExpectedVersion Code = C.EVS_ERR_WRONG_EXPECTED_VERSION
	CodeInsufficientFunds    Code = C.EVS_ERR_INSUFFICIENT_FUNDS
	CodeAccountClosed        Code = C.EVS_ERR_ACCOUNT_CLOSED
	CodeOverflow             Code = C.EVS_ERR_OVERFLOW
	CodeLocked               Code = C.EVS_ERR_LOCKED
	CodeCorrupt              Code = C.EVS_ERR_CORRUPT
	CodeIO                   Code = C.EVS_ERR_IO
	CodeTooLarge             Code = C.EVS_ERR_TOO_LARGE
	CodeReadOnly             Code = C.EVS_ERR_READ_ONLY
	CodeCurrencyMismatch     Code = C.EVS_ERR_CURRENCY_MISMATCH
	CodeBusy                 Code = C.EVS_ERR_BUSY
	CodeStreamDeleted        Code = C.EVS_ERR_STREAM_DELETED   // added in 1.1
	CodeBalanceNotZero       Code = C.EVS_ERR_BALANCE_NOT_ZERO // added in 1.1
	CodeStale                Code = C.EVS_ERR_STALE            // added in 1.1
	CodeUnavailable          Code = C.EVS_ERR_UNAVAILABLE      // defined in 1.1
	CodeInternal             Code = C.EVS_ERR_INTERNAL
)

// The names of CodeOK and CodeEnd before the error values took the ErrX names.
const (
	// Deprecated: use CodeOK.
	OK = CodeOK
	// Deprecated: use CodeEnd.
	End = CodeEnd
)

// String gives the code's name, e.g. "EVS_ERR_IO".
func (c Code) String() string { return C.GoString(C.evs_status_name(C.evs_status(c))) }

// Error is a failed evstore call: its status code and the library's message naming the
// problem. Calls return it as a *Error; errors.As(err, &e) with e a *Error reads it.
//
// The ErrX values are Errors without a message, one a code, to match with errors.Is:
// errors.Is(err, evstore.ErrNotFound) holds for every error of that code. An Error
// cannot be compared with == (a compile error): an error a call returns carries its own
// message, so `err == evstore.ErrNotFound` could only ever be false.
//
// Beside the message, an error of the library carries the numbers it names, read with
// ActualVersion, PartIndex and Position (each with ok false where it does not apply).
type Error struct {
	_       [0]func() // not comparable: `err == evstore.ErrX` does not compile
	Code    Code
	Message string // the library's message ("" for the ErrX values)
	detail  errorDetail
}

// errorDetail is evs_last_error_detail's answer for the failed call (see lastError).
// The zero value, that of the ErrX values and of the errors the binding finds itself,
// has nothing to say.
type errorDetail struct {
	read          bool // the library's detail for this very call was read
	actualVersion int64
	partIndex     int64
	position      uint64
}

// ActualVersion is, for an ErrWrongExpectedVersion, the version of the stream's last
// event when the append (or account operation) was refused, or -1 when the stream did
// not exist (as StreamVersion says it). ok is false for every other error.
func (e Error) ActualVersion() (version int64, ok bool) {
	if !e.detail.read || e.Code != CodeWrongExpectedVersion {
		return 0, false
	}
	return e.detail.actualVersion, true
}

// PartIndex is, for an error of AppendMulti, the index in its parts of the part the
// error is about: the stream whose expected version failed, or the part with an event
// id stored before. ok is false for other calls (Append, the account operations) and
// errors that concern no one part.
func (e Error) PartIndex() (index int, ok bool) {
	if !e.detail.read || e.detail.partIndex < 0 {
		return 0, false
	}
	return int(e.detail.partIndex), true
}

// Position is the position of the event the error is about: for ErrCorrupt, the
// damaged event's, where the call knows it (reads, cursors, subscriptions, an Open that
// decodes a damaged record); for ErrAlreadyExists from an append, that of the stored
// event whose id the append carries. ok is false otherwise.
func (e Error) Position() (position uint64, ok bool) {
	if !e.detail.read || e.detail.position == math.MaxUint64 {
		return 0, false
	}
	return e.detail.position, true
}

func (e Error) Error() string {
	if e.Message == "" {
		return "evstore: " + e.Code.String()
	}
	return "evstore: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is an Error without a message (one of the ErrX values) of
// this error's code, for errors.Is. An error with a message matches only itself.
func (e Error) Is(target error) bool {
	var t Error
	switch v := target.(type) {
	case Error:
		t = v
	case *Error:
		if v == nil {
			return false
		}
		t = *v
	default:
		return false
	}
	return t.Message == "" && t.Code == e.Code
}

// The errors of each code, for errors.Is (see Error).
var (
	ErrInvalidArgument      = Error{Code: CodeInvalidArgument}
	ErrNotFound             = Error{Code: CodeNotFound}
	ErrAlreadyExists        = Error{Code: CodeAlreadyExists}
	ErrWrongExpectedVersion = Error{Code: CodeWrongExpectedVersion}
	ErrInsufficientFunds    = Error{Code: CodeInsufficientFunds}
	ErrAccountClosed        = Error{Code: CodeAccountClosed}
	ErrOverflow             = Error{Code: CodeOverflow}
	ErrLocked               = Error{Code: CodeLocked}
	ErrCorrupt              = Error{Code: CodeCorrupt}
	ErrIO                   = Error{Code: CodeIO}
	ErrTooLarge             = Error{Code: CodeTooLarge}
	ErrReadOnly             = Error{Code: CodeReadOnly}
	ErrCurrencyMismatch     = Error{Code: CodeCurrencyMismatch}
	ErrBusy                 = Error{Code: CodeBusy}
	ErrStreamDeleted        = Error{Code: CodeStreamDeleted}
	ErrBalanceNotZero       = Error{Code: CodeBalanceNotZero}
	ErrStale                = Error{Code: CodeStale}
	ErrUnavailable          = Error{Code: CodeUnavailable}
	ErrInternal             = Error{Code: CodeInternal}
)

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

// Version is the library's version, e.g. "1.1.0".
func Version() string { return C.GoString(C.evs_version()) }

// VersionNumber is the library's 1000000*major + 1000*minor + patch. The binding needs
// a library of at least HeaderVersionNumber, the version of the header it was built with
// (1.1: a 1.0 library's errors would carry no ActualVersion, PartIndex or Position).
func VersionNumber() int32 { return int32(C.evs_version_number()) }

// HeaderVersionNumber is EVS_VERSION_NUMBER of the header this binding was built with.
const HeaderVersionNumber int32 = C.EVS_VERSION_NUMBER

// Shutdown stops the library's background threads once every store is closed (else
// ErrBusy). Optional: later calls start them again as needed.
func Shutdown() error {
	_, err := call(func() C.evs_status { return C.evs_shutdown() })
	return err
}

// SchemaSQL gives the SQL script that creates the PostgreSQL schema of the store at url
// (a postgresql:// URL as Open takes it, schema= included) or migrates it to this
// library's schema version, for a DBA to review and run (psql -v ON_ERROR_STOP=1 -f)
// before the application opens the store with migrate=false in its URL: the statements
// a writable Open would run, as one transaction, with the grants the URL's user needs. A
// schema already at this version gives a script of comments only. Nothing is executed:
// it connects only to read the schema's version. ctx is checked before the call.
//
// Errors: ErrInvalidArgument (not a postgresql:// URL, a bad URL parameter),
// ErrUnavailable (the server cannot be reached or did not answer within
// connect_timeout/timeout), ErrIO (the server refused: authentication, TLS, rights),
// ErrCorrupt (the schema's version is newer than this library's).
func SchemaSQL(ctx context.Context, url string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	curl, err := cString(url, "url")
	if err != nil {
		return "", err
	}
	defer C.free(unsafe.Pointer(curl))
	var sql *C.char
	if _, err := call(func() C.evs_status { return C.evs_schema_sql(curl, &sql) }); err != nil {
		return "", err
	}
	defer C.evs_string_free(sql)
	return C.GoString(sql), nil
}

// call runs one C call and, if it failed, reads the thread-local error message and
// detail on the same OS thread before the goroutine can move.
func call(f func() C.evs_status) (Code, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := Code(f())
	if st < 0 {
		return st, lastError(st)
	}
	return st, nil
}

// libraryHasDetail: the library has evs_last_error_detail (added in 1.1). Run with an
// older one, the binding's errors have no detail rather than a missing symbol at the
// first failure (the loader resolves functions when first called).
var libraryHasDetail = C.evs_version_number() >= 1001000

// lastError is the error of the call that just failed with st on this OS thread: its
// message, then (evs_last_error_detail replaces the message if it fails itself) its
// detail. The caller holds the thread (runtime.LockOSThread): both are per thread.
func lastError(st Code) *Error {
	e := &Error{Code: st, Message: C.GoString(C.evs_last_error_message())}
	if !libraryHasDetail {
		return e
	}
	d := C.evs_error_detail{struct_size: C.size_t(unsafe.Sizeof(C.evs_error_detail{}))}
	// The detail's own code pairs it with the failure; a mismatch would be another call's.
	if C.evs_last_error_detail(&d) == C.EVS_OK && Code(d.code) == st {
		e.detail = errorDetail{
			read:          true,
			actualVersion: int64(d.actual_version),
			partIndex:     int64(d.part_index),
			position:      uint64(d.position),
		}
	}
	return e
}

// invalid is an ErrInvalidArgument the binding itself finds, with its message.
func invalid(message string) *Error { return &Error{Code: CodeInvalidArgument, Message: message} }

// cString copies s to C memory (free it with C.free). A NUL byte inside s would
// silently cut the string short in C, so it is refused here.
func cString(s, argument string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalid(argument + " contains a NUL byte")
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
		return invalid("options are nil or closed")
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

	subsMu sync.Mutex
	subs   map[*subState]struct{} // subscriptions not yet ended, told when Close stops them
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
			return nil, info, invalid("options are closed")
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
	// evs_close has stopped the subscriptions: their watchers free them now.
	s.subsMu.Lock()
	for st := range s.subs {
		st.stop()
	}
	s.subsMu.Unlock()
	return err
}

var errClosed = invalid("the store is closed")

// do runs one C call on the open store, once ctx is checked (a cgo call cannot be
// interrupted once it runs).
func (s *Store) do(ctx context.Context, f func(p *C.evs_store) C.evs_status) (Code, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	p := s.ptr
	if p == nil {
		s.mu.RUnlock()
		return CodeInvalidArgument, errClosed
	}
	s.inFlight.Add(1)
	s.mu.RUnlock()
	defer s.inFlight.Done()
	st, err := call(func() C.evs_status { return f(p) })
	runtime.KeepAlive(s)
	return st, err
}

// Sync makes every appended event durable, under any policy.
func (s *Store) Sync(ctx context.Context) error {
	_, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_sync(p) })
	return err
}

// AppendEvent appends one event with no stream and returns its position.
func (s *Store) AppendEvent(ctx context.Context, eventType string, payload []byte) (uint64, error) {
	ctype, err := cString(eventType, "event_type")
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(ctype))
	var pos C.uint64_t
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status {
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
	// Subject names the data subject (a pseudonymous user id, say) whose personal data
	// Payload and Metadata are: they are stored encrypted with the subject's key and
	// read back erased once Store.ForgetSubject forgot it. "" means none.
	Subject string
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
		if ev.Subject != "" {
			csubject, err := in.cString(ev.Subject, "subject")
			if err != nil {
				return nil, err
			}
			cs[i].subject = csubject
		}
	}
	in.pinner.Pin(&cs[0])
	return &cs[0], nil
}

// Append appends events to stream atomically if the stream is at expectedVersion
// (ExpectAny, ExpectNoStream, ExpectExists, or the version of its last event). It
// returns the first event's position and the last event's stream version.
func (s *Store) Append(ctx context.Context, stream string, expectedVersion int64, events []EventInput) (first, lastVersion uint64, err error) {
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
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status {
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
	var in inputs
	defer in.release()
	ca, err := in.streamAppends(parts)
	if err != nil {
		return 0, nil, err
	}
	var cfirst C.uint64_t
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status {
		return C.evs_append_multi(p, ca.parts, ca.count, &cfirst, ca.versionsPtr)
	})
	runtime.KeepAlive(parts)
	if err != nil {
		return 0, nil, err
	}
	return uint64(cfirst), ca.lastVersions(), nil
}

// cAppends is AppendMulti's parts in C, with the array the call writes the versions to.
type cAppends struct {
	parts       *C.evs_stream_append // nil for none
	count       C.size_t
	versions    []C.uint64_t
	versionsPtr *C.uint64_t
}

func (ca *cAppends) lastVersions() []uint64 {
	out := make([]uint64, len(ca.versions))
	for i, v := range ca.versions {
		out[i] = uint64(v)
	}
	return out
}

// streamAppends converts the parts of an AppendMulti (or Consumer.Append) to C; the
// array is pinned until release.
func (in *inputs) streamAppends(parts []StreamAppend) (cAppends, error) {
	ca := cAppends{count: C.size_t(len(parts)), versions: make([]C.uint64_t, len(parts))}
	if len(parts) == 0 {
		return ca, nil
	}
	cparts := make([]C.evs_stream_append, len(parts))
	for i := range parts {
		cstream, err := in.cString(parts[i].Stream, "stream")
		if err != nil {
			return ca, err
		}
		cevents, err := in.events(parts[i].Events)
		if err != nil {
			return ca, err
		}
		cparts[i] = C.evs_stream_append{
			struct_size:      C.size_t(unsafe.Sizeof(cparts[i])),
			stream:           cstream,
			expected_version: C.int64_t(parts[i].ExpectedVersion),
			events:           cevents,
			count:            C.size_t(len(parts[i].Events)),
		}
	}
	in.pinner.Pin(&cparts[0])
	ca.parts, ca.versionsPtr = &cparts[0], &ca.versions[0]
	return ca, nil
}

// PositionAt is the first position whose timestamp is after timestampUs (microseconds
// since the Unix epoch); the next position if none. PositionAt(PositionEnd) is the next
// position.
func (s *Store) PositionAt(ctx context.Context, timestampUs uint64) (uint64, error) {
	var pos C.uint64_t
	_, err := s.do(ctx, func(p *C.evs_store) C.evs_status {
		return C.evs_position_at(p, C.uint64_t(timestampUs), &pos)
	})
	return uint64(pos), err
}

// StreamVersion is the version of the stream's last event, or -1 when it does not exist.
func (s *Store) StreamVersion(ctx context.Context, stream string) (int64, error) {
	cstream, err := cString(stream, "stream")
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(cstream))
	var v C.int64_t
	_, err = s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_stream_version(p, cstream, &v) })
	if err != nil {
		return 0, err
	}
	return int64(v), nil
}

// Snapshot writes a snapshot now and returns the number of events it covers.
func (s *Store) Snapshot(ctx context.Context) (uint64, error) {
	var pos C.uint64_t
	_, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_snapshot(p, &pos) })
	return uint64(pos), err
}

// Stats are a store's counters since it was opened (events and bytes: the whole log).
// Events counts every position used (events, removed or not, and lifecycle entries);
// Streams the streams a reader sees (those Streams lists: not hard-deleted, with an
// event left).
type Stats struct {
	Events, Streams, BytesOnDisk, Segments uint64
	Appends, Fsyncs                        uint64
	FsyncP50Us, FsyncP99Us                 uint64 // upper bounds, microseconds
	OpenTimeUs, Snapshots, IndexBytes      uint64
	Accounts                               uint64
	Subscriptions                          uint64 // still delivering
	EventIDs                               uint64 // ids remembered for idempotent appends
	// Events removed by deletes, truncations and retention rules (their positions read
	// as empty); lifecycle entries in the log (Events counts them too, as it counts
	// every position used); bytes of the file engine's segments a compaction would free
	// now (0 on PostgreSQL).
	RemovedEvents, LifecycleEntries, ReclaimableBytes uint64
}

// Stats reads the store's counters (on PostgreSQL, with queries to the server).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	cs := C.evs_stats{struct_size: C.size_t(unsafe.Sizeof(C.evs_stats{}))}
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_stats_get(p, &cs) }); err != nil {
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
		RemovedEvents: uint64(cs.removed_events), LifecycleEntries: uint64(cs.lifecycle_entries),
		ReclaimableBytes: uint64(cs.reclaimable_bytes),
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
	// The compaction's throttle (0: unthrottled) and automatic trigger (0: none), as
	// Options.SetCompaction sets them.
	CompactionBytesPerSecond uint64
	CompactionTriggerPercent uint32
}

// Options reports the options the store was opened with. It takes no context: it reads
// what Open was given, and never waits.
func (s *Store) Options() (StoreOptions, error) {
	co := C.evs_store_options{struct_size: C.size_t(unsafe.Sizeof(C.evs_store_options{}))}
	if _, err := s.do(context.Background(), func(p *C.evs_store) C.evs_status { return C.evs_store_options_get(p, &co) }); err != nil {
		return StoreOptions{}, err
	}
	return StoreOptions{
		Fsync: FsyncPolicy(co.fsync_policy), BatchWindowMs: uint32(co.batch_window_ms),
		MaxSegmentSize: uint64(co.max_segment_size), Preallocate: bool(co.preallocate),
		ReadOnly: bool(co.read_only), SnapshotEvery: uint64(co.snapshot_every),
		MaxEventSize: uint64(co.max_event_size), DedupeWindow: uint64(co.dedupe_window),
		CompactionBytesPerSecond: uint64(co.compaction_bytes_per_second),
		CompactionTriggerPercent: uint32(co.compaction_trigger_percent),
	}, nil
}

// MetricsText gives the store's counters in the Prometheus text format.
func (s *Store) MetricsText(ctx context.Context) (string, error) {
	var text *C.char
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return C.evs_metrics_text(p, &text) }); err != nil {
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
// the server).
func (s *Store) accountOp(ctx context.Context, ids []string, f func(p *C.evs_store, ids []*C.char, pos *C.uint64_t) C.evs_status) (uint64, error) {
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
	_, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return f(p, cids, &pos) })
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

func (s *Store) getAccount(ctx context.Context, id string, f func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status) (Account, error) {
	cid, err := cString(id, "account_id")
	if err != nil {
		return Account{}, err
	}
	defer C.free(unsafe.Pointer(cid))
	a := C.evs_account{struct_size: C.size_t(unsafe.Sizeof(C.evs_account{}))}
	if _, err := s.do(ctx, func(p *C.evs_store) C.evs_status { return f(p, cid, &a) }); err != nil {
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
func (s *Store) GetAccount(ctx context.Context, id string) (Account, error) {
	return s.getAccount(ctx, id, func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status {
		return C.evs_account_get(p, cid, out)
	})
}

// GetAccountAt reads an account as it was after its last event at or before asOfUs
// (microseconds since the Unix epoch).
func (s *Store) GetAccountAt(ctx context.Context, id string, asOfUs uint64) (Account, error) {
	return s.getAccount(ctx, id, func(p *C.evs_store, cid *C.char, out *C.evs_account) C.evs_status {
		return C.evs_account_get_at(p, cid, C.uint64_t(asOfUs), out)
	})
}
