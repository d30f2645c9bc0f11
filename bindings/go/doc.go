// Package evstore is the Go binding of evstore, an embedded durable event store
// (libevstore, include/evstore.h).
//
// # Handles and goroutines
//
// A *Store is safe for use by many goroutines at once. A *Cursor is safe too (each call
// is serialized), but is meant to be used from one goroutine. *Options are not safe for
// concurrent use. Stores, cursors and options have an explicit Close; a finalizer closes
// one that was forgotten, as a safety net only. A Subscription frees itself when it ends
// (see below).
//
// # Errors
//
// A failed call returns a *Error: its Code and the library's Message, which names the
// problem (the stream and its actual version, the account, the damaged record, ...).
// Match an error with errors.Is and the ErrX value of its code, wrapped or not:
//
//	if errors.Is(err, evstore.ErrWrongExpectedVersion) { ... reload and retry ... }
//
// and read its fields with errors.As:
//
//	var e *evstore.Error
//	if errors.As(err, &e) { log.Print(e.Code, e.Message) }
//
// Beside its message, an error carries the numbers the message names, each with ok false
// where it does not apply: ActualVersion (ErrWrongExpectedVersion: the stream's version,
// -1 when it did not exist), PartIndex (AppendMulti: the part the error is about) and
// Position (ErrAlreadyExists: the stored event whose id an append reused; ErrCorrupt:
// the damaged event, where known):
//
//	if v, ok := e.ActualVersion(); ok { ... reload the stream up to v and retry ... }
//
// The library keeps them per OS thread; the binding reads them with the message, on the
// failing call's thread, so an error's numbers are its own call's whichever goroutine
// made it. The ErrX values and the errors the binding finds itself (a NUL in a name, a
// closed store) carry none.
//
// `err == evstore.ErrNotFound` does not compile: the error a call returns carries its own
// message, so it is never the ErrNotFound value itself (database/sql's ErrNoRows can be
// returned as it is because it says nothing more). The ErrX values are Errors without a
// message; an error of one's own may wrap one (fmt.Errorf("...: %w", evstore.ErrNotFound)).
// Two `error` variables that both hold an ErrX value cannot be compared with == either:
// that panics at run time, as comparing any two values of a type that is not comparable
// does.
//
// # Contexts
//
// Every call that reaches the store's data takes a context.Context as its first
// argument: appends, reads, cursor openers, accounts, Sync, Snapshot, Stats, MetricsText,
// Streams, StreamVersion, PositionAt, Subscribe, the lifecycle calls (DeleteStream,
// TruncateStream, the Retention ones, Compact), and SchemaSQL. Any of them may wait, on the
// disk, on the PostgreSQL server or behind a snapshot. The context is checked before the call
// starts, and a call refused for it has done nothing; a call that has started runs to its
// end (a call into C cannot be interrupted), so a deadline bounds when calls start, not
// how long one runs. The exceptions take no context because they never wait on the
// store's data: Close methods (io.Closer; they wait for calls already running), Options
// (what Open was given), and the Options setters.
//
// A Cursor keeps the context it was opened with, as database/sql's Rows do: once that
// context is done, Next returns its error. The iterators (ReadAll, ReadStream, ...) open
// their cursor with the context they were given. A Subscription runs under the context
// given to Subscribe: it ends when that context is done.
//
// # Reads
//
// An Event is a copy in Go memory: keep it as long as you like. Forward cursors and
// iterators (ReadAll, ReadStream, ReadCategory) see events appended while they run; "no
// event" from Next, or the end of a range loop, means "no more now", not "never".
// Backward reads and Poll do not see later appends.
//
// Events removed by DeleteStream, TruncateStream or a retention rule leave every read
// when the call returns (by age: when their age passes), cursors already open and
// subscriptions included. Positions are never reused: a removed event's position reads
// as empty (ReadAll passes over it, ReadEvent gives ErrNotFound, a Poll window counts
// it). A stream with no event left reads as ErrNotFound; a hard-deleted one is
// ErrStreamDeleted for every read and write.
//
// # Subscriptions
//
// A Subscription calls its handler on a library thread, one event at a time, in
// position order. It ends when the handler returns an error (ErrStop: quietly) or
// panics (recovered on that thread: a Go panic must not unwind through C), when its
// context is done, when its store closes, when reading fails, or at Close. Done is then
// closed and Err says why; the binding frees it at once, so an ended subscription holds
// no goroutine and no thread. A read failure (ErrCorrupt, ErrIO) is noticed by polling
// the library's status, within a fraction of a second; the other ends are seen at once.
//
// Traps: dropping a running *Subscription does not stop it (as with a goroutine): Close
// it, cancel its context, or close its store. The handler may call the store and may
// Close its own subscription (Close then returns nil at once, and the handler is not
// called again); it must not wait for anything that waits for its subscription's Close
// or Done, since those wait for the handler to return. Store.Close stops the store's
// subscriptions; a handler's own calls on the closing store fail with
// ErrInvalidArgument.
//
// # Processes
//
// A store belongs to the process that opened it: after fork (cgo programs rarely fork
// without exec) every call on an inherited handle fails with ErrInvalidArgument.
package evstore
