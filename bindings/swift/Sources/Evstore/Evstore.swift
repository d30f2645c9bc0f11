// A thin Swift layer over the evstore C API (include/evstore.h, module CEvstore).
//
// Errors are thrown as EvstoreError (the status code and the library's message). The
// message is thread-local in C; every call here reads it synchronously right after the
// failing call, on the same thread (there is no `await` in between).
//
// A Store may be used from many threads at once, but close() must not race with other
// calls. The store is closed by close() or, failing that, when it is deinitialized.
//
// Not compiled by this project's CI (no Swift toolchain there): it is kept in step with
// evstore.h by hand; `make test` checks the module map and that every evs_ function
// named here is declared by the header (tests/bindings/swift_modulemap.sh).

import CEvstore

public struct EvstoreError: Error, Equatable, CustomStringConvertible {
    /// An evs_status value (negative for errors).
    /// The constants are the header's EVS_ERR_ macros (Int32 in Swift), so a code the
    /// header drops fails to compile, and tests/bindings/swift_modulemap.sh checks that
    /// each of the header's codes is named here.
    public struct Code: RawRepresentable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let invalidArgument = Code(rawValue: EVS_ERR_INVALID_ARGUMENT)
        public static let notFound = Code(rawValue: EVS_ERR_NOT_FOUND)
        public static let alreadyExists = Code(rawValue: EVS_ERR_ALREADY_EXISTS)
        public static let wrongExpectedVersion = Code(rawValue: EVS_ERR_WRONG_EXPECTED_VERSION)
        public static let insufficientFunds = Code(rawValue: EVS_ERR_INSUFFICIENT_FUNDS)
        public static let accountClosed = Code(rawValue: EVS_ERR_ACCOUNT_CLOSED)
        public static let overflow = Code(rawValue: EVS_ERR_OVERFLOW)
        public static let locked = Code(rawValue: EVS_ERR_LOCKED)
        public static let corrupt = Code(rawValue: EVS_ERR_CORRUPT)
        public static let io = Code(rawValue: EVS_ERR_IO)
        public static let tooLarge = Code(rawValue: EVS_ERR_TOO_LARGE)
        public static let readOnly = Code(rawValue: EVS_ERR_READ_ONLY)
        public static let currencyMismatch = Code(rawValue: EVS_ERR_CURRENCY_MISMATCH)
        public static let busy = Code(rawValue: EVS_ERR_BUSY)
        public static let streamDeleted = Code(rawValue: EVS_ERR_STREAM_DELETED)  // added in 1.1
        public static let balanceNotZero = Code(rawValue: EVS_ERR_BALANCE_NOT_ZERO)  // added in 1.1
        public static let stale = Code(rawValue: EVS_ERR_STALE)  // added in 1.1
        public static let incomplete = Code(rawValue: EVS_ERR_INCOMPLETE)  // added in 1.1 (backups)
        public static let unavailable = Code(rawValue: EVS_ERR_UNAVAILABLE)  // defined in 1.1
        public static let internalError = Code(rawValue: EVS_ERR_INTERNAL)

        /// The code's name, e.g. "EVS_ERR_IO".
        public var name: String { String(cString: evs_status_name(rawValue)) }
    }

    public let code: Code
    public let message: String

    public var description: String { "\(code.name): \(message)" }
}

/// Throws on an error status, with the calling thread's last error message.
@discardableResult
private func check(_ status: Int32) throws -> Int32 {
    if status < 0 {
        throw EvstoreError(code: EvstoreError.Code(rawValue: status),
                           message: String(cString: evs_last_error_message()))
    }
    return status
}

/// Expected versions for `append`; a value >= 0 is the version of the stream's last event.
public enum ExpectedVersion {
    public static let any: Int64 = -1
    public static let noStream: Int64 = -2
    public static let exists: Int64 = -3
}

/// A stored event, copied out of the library's borrowed view.
public struct Event {
    public let position: UInt64
    public let timestampMicros: UInt64
    public let stream: String           // "" for events appended with appendEvent
    public let streamVersion: UInt64
    public let type: String
    public let schemaVersion: UInt32
    public let payload: [UInt8]
    public let metadata: [UInt8]
    /// The id it was appended with; all zero for none.
    public let id: [UInt8]

    /// Copies a borrowed view. One the library passes to a callback has the library's
    /// struct_size: `id` exists only if it lies within it (an older library).
    init(_ e: evs_event) {
        position = e.position
        timestampMicros = e.timestamp_us
        stream = Event.string(e.stream, e.stream_len)
        streamVersion = e.stream_version
        type = Event.string(e.event_type, e.event_type_len)
        schemaVersion = e.schema_version
        payload = e.payload_len == 0 ? [] : Array(UnsafeBufferPointer(start: e.payload, count: e.payload_len))
        metadata = e.metadata_len == 0 ? [] : Array(UnsafeBufferPointer(start: e.metadata, count: e.metadata_len))
        let idEnd = MemoryLayout<evs_event>.offset(of: \evs_event.id)! + MemoryLayout.size(ofValue: e.id)
        id = e.struct_size >= idEnd ? withUnsafeBytes(of: e.id) { Array($0) } : Array(repeating: 0, count: 16)
    }

    static func string(_ p: UnsafePointer<CChar>?, _ count: Int) -> String {
        guard let p = p, count > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: count), as: UTF8.self)
    }
}

/// A cursor over events (not thread-safe). Forward cursors see events appended while
/// they run: `next()` returning nil means "no more now". Freed by `close()` or deinit.
public final class Cursor {
    private var handle: OpaquePointer?

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { evs_cursor_free(handle) }

    /// The next event, or nil when there is none (now).
    public func next() throws -> Event? {
        guard let h = handle else {
            throw EvstoreError(code: .invalidArgument, message: "the cursor is closed")
        }
        var e = evs_event()
        e.struct_size = MemoryLayout<evs_event>.size
        if try check(evs_cursor_next(h, &e)) == EVS_END {
            return nil
        }
        return Event(e)
    }

    public func close() {
        evs_cursor_free(handle)
        handle = nil
    }
}

/// Events read one at a time from a cursor, never the whole log in memory:
///
///     for try await event in store.events(from: 0) { ... }
///
/// The cursor opens when iteration starts and is freed when it ends; the sequence ends at
/// the end of the log as it is then, or with the error a read met. Cancelling the task
/// ends it with CancellationError.
public struct EventSequence: AsyncSequence {
    public typealias Element = Event
    let open: () throws -> Cursor

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(open: open) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let open: () throws -> Cursor
        var cursor: Cursor?
        var finished = false

        public mutating func next() async throws -> Event? {
            if finished { return nil }
            do {
                try Task.checkCancellation()
                if cursor == nil { cursor = try open() }
                // Synchronous: the library's thread-local error message is read on the
                // thread of the failing call, with no suspension in between.
                if let event = try cursor!.next() { return event }
            } catch {
                finished = true
                cursor = nil
                throw error
            }
            finished = true
            cursor = nil
            return nil
        }
    }
}

/// What a subscription's trampoline reaches through its user data.
final class SubscriptionBox {
    let handler: (Event) throws -> Bool
    /// Written on the subscription's thread before its callback returns non-zero; read
    /// only after evs_subscription_close has joined that thread.
    var error: Error?
    init(_ handler: @escaping (Event) throws -> Bool) { self.handler = handler }
}

/// The C callback. A Swift error thrown by the handler is caught here (nothing may
/// unwind into C) and ends the subscription; `close()` rethrows it.
private let subscriptionTrampoline: evs_event_fn = { userData, event in
    guard let userData = userData, let event = event else { return 1 }
    let box = Unmanaged<SubscriptionBox>.fromOpaque(userData).takeUnretainedValue()
    do {
        return try box.handler(Event(event.pointee)) ? 0 : 1
    } catch {
        box.error = error
        return 1
    }
}

/// A running subscription (`Store.subscribe`): calls its handler with every event from a
/// position on, history first and then live, on a library thread. The handler returns
/// true to go on, false to stop; an error it throws ends the subscription.
public final class Subscription {
    private var handle: OpaquePointer?
    private let box: SubscriptionBox

    init(handle: OpaquePointer, box: SubscriptionBox) {
        self.handle = handle
        self.box = box
    }

    deinit { evs_subscription_close(handle) }

    /// True while it delivers; false once it ended (its handler stopped it or threw, its
    /// store closed, reading failed) or was closed.
    public var isRunning: Bool {
        guard let h = handle else { return false }
        var how: Int32 = 0
        return evs_subscription_status(h, &how) == EVS_OK
    }

    /// Stops it, waits for its thread, frees it. Rethrows the handler's error, or throws
    /// the EvstoreError that ended it (e.g. `.corrupt`). Calling it twice is harmless.
    public func close() throws {
        guard let h = handle else { return }
        handle = nil
        let status = evs_subscription_close(h)
        if let error = box.error { throw error }
        try check(status)
    }
}

/// What `Store.deleteStream` leaves behind.
public enum DeleteMode {
    /// The stream does not exist, for readers and writers, until it is appended to again
    /// (an append expecting `.noStream` or `.any` continues its versions).
    case soft
    /// A tombstone: every later read or write of the name throws `.streamDeleted`.
    case hard

    var flags: UInt32 {
        switch self {
        case .soft: return UInt32(EVS_DELETE_SOFT)
        case .hard: return UInt32(EVS_DELETE_HARD)
        }
    }
}

/// A retention rule; 0 is "no limit of that kind", both 0 is no rule.
public struct Retention: Equatable {
    /// Keep the stream's last `maxCount` versions.
    public var maxCount: UInt64
    /// Remove the events older than now - `maxAgeMicros` (the store's clock when a read
    /// runs: events leave by age without any call).
    public var maxAgeMicros: UInt64

    public init(maxCount: UInt64 = 0, maxAgeMicros: UInt64 = 0) {
        self.maxCount = maxCount
        self.maxAgeMicros = maxAgeMicros
    }
}

public struct Account {
    public let balance: Int64
    public let isClosed: Bool
    public let currency: String         // "USD"
    public let version: UInt64          // events applied to this account
    public let lastPosition: UInt64     // position of its last event
}

public final class Store {
    private var handle: OpaquePointer?
    /// What recovery found and did when the store was opened.
    public let recoveryInfo: evs_recovery_info

    /// Opens (creating if needed; the parent directory must exist) the store at `path`.
    public init(path: String, readOnly: Bool = false) throws {
        var options: OpaquePointer? = nil
        if readOnly {
            options = evs_options_new()
            guard options != nil else {
                throw EvstoreError(code: .internalError, message: "evs_options_new: out of memory")
            }
        }
        defer { evs_options_free(options) }  // NULL is a no-op
        if readOnly {
            try check(evs_options_set_read_only(options, true))
        }
        var h: OpaquePointer? = nil
        var info = evs_recovery_info()
        info.struct_size = MemoryLayout<evs_recovery_info>.size
        try check(evs_open(path, options, &h, &info))
        handle = h
        recoveryInfo = info
    }

    deinit {
        evs_close(handle)
    }

    /// Syncs, releases the lock and frees the store. Calling it twice is harmless.
    public func close() throws {
        guard let h = handle else { return }
        handle = nil
        try check(evs_close(h))
    }

    private func open() throws -> OpaquePointer {
        guard let h = handle else {
            throw EvstoreError(code: .invalidArgument, message: "the store is closed")
        }
        return h
    }

    /// Makes every appended event durable.
    public func sync() throws {
        let h = try open()
        try check(evs_sync(h))
    }

    /// Appends one event with no stream; returns its position.
    @discardableResult
    public func appendEvent(type: String, payload: [UInt8]) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try check(evs_append_event(h, type, payload, payload.count, &position))
        return position
    }

    /// Appends one event to `stream` if it is at `expectedVersion`; returns the event's
    /// position and stream version.
    @discardableResult
    public func append(stream: String, expectedVersion: Int64, type: String, payload: [UInt8],
                       metadata: [UInt8] = [], schemaVersion: UInt32 = 1) throws -> (position: UInt64, version: UInt64) {
        let h = try open()
        var first: UInt64 = 0
        var version: UInt64 = 0
        let status: Int32 = type.withCString { ctype -> Int32 in
            payload.withUnsafeBufferPointer { p -> Int32 in
                metadata.withUnsafeBufferPointer { m -> Int32 in
                    // Every caller-allocated struct starts with its size (EVS_STRUCT_INIT).
                    var input = evs_event_input()
                    input.struct_size = MemoryLayout<evs_event_input>.size
                    input.event_type = ctype
                    input.payload = p.baseAddress
                    input.payload_len = p.count
                    input.metadata = m.baseAddress
                    input.metadata_len = m.count
                    input.schema_version = schemaVersion
                    return evs_append(h, stream, expectedVersion, &input, 1, &first, &version)
                }
            }
        }
        try check(status)
        return (first, version)
    }

    private func cursor(_ open: (OpaquePointer, UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws -> Cursor {
        let h = try self.open()
        var c: OpaquePointer? = nil
        try check(open(h, &c))
        return Cursor(c!)
    }

    /// A cursor over every event from `position` on (it sees later appends).
    public func cursor(from position: UInt64 = 0) throws -> Cursor {
        try cursor { evs_read_all($0, position, $1) }
    }

    /// A cursor from `position` (UInt64.max: the last event) down to position 0.
    public func cursorBackward(from position: UInt64 = .max) throws -> Cursor {
        try cursor { evs_read_all_backward($0, position, $1) }
    }

    /// A cursor over one stream from `version` on.
    public func cursor(stream: String, from version: UInt64 = 0) throws -> Cursor {
        try cursor { evs_read_stream($0, stream, version, $1) }
    }

    /// A cursor over one stream from `version` (UInt64.max: its last event) down to 0.
    public func cursorBackward(stream: String, from version: UInt64 = .max) throws -> Cursor {
        try cursor { evs_read_stream_backward($0, stream, version, $1) }
    }

    /// A cursor over the streams whose names start with `prefix`, in global order.
    public func cursor(category prefix: String, from position: UInt64 = 0) throws -> Cursor {
        try cursor { evs_read_category($0, prefix, position, $1) }
    }

    /// Every event from `position` to the end, one at a time (see EventSequence).
    public func events(from position: UInt64 = 0) -> EventSequence {
        EventSequence { try self.cursor(from: position) }
    }

    /// One stream's events from `version` on.
    public func events(stream: String, from version: UInt64 = 0) -> EventSequence {
        EventSequence { try self.cursor(stream: stream, from: version) }
    }

    /// The events of the streams whose names start with `prefix`.
    public func events(category prefix: String, from position: UInt64 = 0) -> EventSequence {
        EventSequence { try self.cursor(category: prefix, from: position) }
    }

    /// Events from `position` (UInt64.max: the last) down to position 0.
    public func eventsBackward(from position: UInt64 = .max) -> EventSequence {
        EventSequence { try self.cursorBackward(from: position) }
    }

    /// Every event from `position` to the current end, copied into one array (for small
    /// stores; `events(from:)` reads one at a time).
    public func readAll(from position: UInt64 = 0) throws -> [Event] {
        let c = try cursor(from: position)
        var events: [Event] = []
        while let e = try c.next() {
            events.append(e)
        }
        return events
    }

    /// Starts a subscription from `position` (see Subscription). The handler runs on a
    /// library thread; it may call this store.
    public func subscribe(from position: UInt64 = 0,
                          handler: @escaping (Event) throws -> Bool) throws -> Subscription {
        let h = try open()
        let box = SubscriptionBox(handler)
        var sub: OpaquePointer? = nil
        try check(evs_subscribe(h, position, subscriptionTrampoline,
                                Unmanaged.passUnretained(box).toOpaque(), &sub))
        return Subscription(handle: sub!, box: box)
    }

    // Data that leaves (docs/lifecycle.md in the repository). Each operation is an entry
    // of the log and returns its position (it holds no event); every read obeys it once
    // the call returns. `id` (16 bytes; nil or all zero: none) makes it idempotent: a
    // retry with the same id and operation writes nothing and returns the first one's
    // position; the id given to anything else throws `.alreadyExists`.

    /// Calls `body` with the id as C wants it: NULL for none, else its 16 bytes.
    @discardableResult
    private func withID<R>(_ id: [UInt8]?, _ body: (UnsafePointer<UInt8>?) throws -> R) throws -> R {
        guard let id = id else { return try body(nil) }
        guard id.count == 16 else {
            throw EvstoreError(code: .invalidArgument, message: "an id has 16 bytes, not \(id.count)")
        }
        return try id.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// Removes every event `stream` has so far from every read, if it is at
    /// `expectedVersion` (`.any`, `.exists` or its version; `.noStream` is
    /// `.invalidArgument`). Throws, in the order of the checks, `.streamDeleted` (hard-
    /// deleted already), `.notFound`, `.wrongExpectedVersion`; `.balanceNotZero` for an
    /// account's stream whose balance is not zero.
    @discardableResult
    public func deleteStream(_ stream: String, expectedVersion: Int64, mode: DeleteMode = .soft,
                             id: [UInt8]? = nil) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try withID(id) { try check(evs_delete_stream(h, stream, expectedVersion, mode.flags, $0, &position)) }
        return position
    }

    /// Removes the events of `stream` with a version below `beforeVersion` (at most its
    /// version + 1) from every read; the rest keep their versions.
    @discardableResult
    public func truncateStream(_ stream: String, beforeVersion: UInt64, id: [UInt8]? = nil) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try withID(id) { try check(evs_truncate_stream(h, stream, beforeVersion, $0, &position)) }
        return position
    }

    private func putRetention(_ target: String, flags: UInt32, rule: Retention?, id: [UInt8]?) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try withID(id) { cid in
            if let rule = rule {
                var r = evs_retention()
                r.struct_size = MemoryLayout<evs_retention>.size
                r.max_count = rule.maxCount
                r.max_age_us = rule.maxAgeMicros
                try check(evs_set_retention(h, target, flags, &r, cid, &position))
            } else {
                try check(evs_set_retention(h, target, flags, nil, cid, &position))
            }
        }
        return position
    }

    /// Sets `stream`'s own rule (it wins over its categories'); changing or clearing a
    /// rule never brings an event back.
    @discardableResult
    public func setRetention(stream: String, _ rule: Retention, id: [UInt8]? = nil) throws -> UInt64 {
        try putRetention(stream, flags: 0, rule: rule, id: id)
    }

    /// Sets the rule of every stream whose name starts with `prefix` and has no rule of
    /// its own (the longest matching prefix wins). A prefix that would cover account
    /// streams is `.invalidArgument`.
    @discardableResult
    public func setRetention(category prefix: String, _ rule: Retention, id: [UInt8]? = nil) throws -> UInt64 {
        try putRetention(prefix, flags: UInt32(EVS_RETENTION_CATEGORY), rule: rule, id: id)
    }

    /// Removes `stream`'s own rule; what it removed stays removed.
    @discardableResult
    public func clearRetention(stream: String, id: [UInt8]? = nil) throws -> UInt64 {
        try putRetention(stream, flags: 0, rule: nil, id: id)
    }

    /// Removes the rule set on exactly `prefix`; what it removed stays removed.
    @discardableResult
    public func clearRetention(category prefix: String, id: [UInt8]? = nil) throws -> UInt64 {
        try putRetention(prefix, flags: UInt32(EVS_RETENTION_CATEGORY), rule: nil, id: id)
    }

    private func getRetention(_ name: String, flags: UInt32) throws -> Retention {
        let h = try open()
        var r = evs_retention()
        r.struct_size = MemoryLayout<evs_retention>.size
        try check(evs_get_retention(h, name, flags, &r))
        return Retention(maxCount: r.max_count, maxAgeMicros: r.max_age_us)
    }

    /// The rule in force for `stream` (its own, else its longest matching category's);
    /// zeros when there is none.
    public func retention(stream: String) throws -> Retention {
        try getRetention(stream, flags: 0)
    }

    /// The rule set on exactly `prefix`; zeros when there is none.
    public func retention(category prefix: String) throws -> Retention {
        try getRetention(prefix, flags: UInt32(EVS_RETENTION_CATEGORY))
    }

    /// Erases the bytes of removed events now (file engine: rewrites every segment that
    /// holds one; PostgreSQL: deletes the rows rules by age removed); blocks until done.
    /// Returns what it did (`segments_rewritten`, `bytes_before`, `bytes_after`,
    /// `events_erased`, `duration_us`).
    @discardableResult
    public func compact() throws -> evs_compact_info {
        let h = try open()
        var info = evs_compact_info()
        info.struct_size = MemoryLayout<evs_compact_info>.size
        try check(evs_compact(h, &info))
        return info
    }

    /// The store's counters (evs_stats: `removed_events`, `lifecycle_entries` and
    /// `reclaimable_bytes` among them).
    public func stats() throws -> evs_stats {
        let h = try open()
        var st = evs_stats()
        st.struct_size = MemoryLayout<evs_stats>.size
        try check(evs_stats_get(h, &st))
        return st
    }

    // Accounts. Each write returns the position of its event (a transfer: the
    // withdrawal's). A nil currency means "USD".

    @discardableResult
    public func openAccount(id: String, initialBalance: Int64, currency: String? = nil) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        if let currency = currency {
            try check(evs_account_open(h, id, initialBalance, currency, &position))
        } else {
            try check(evs_account_open(h, id, initialBalance, nil, &position))
        }
        return position
    }

    @discardableResult
    public func deposit(id: String, amount: Int64) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try check(evs_account_deposit(h, id, amount, &position))
        return position
    }

    @discardableResult
    public func withdraw(id: String, amount: Int64) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try check(evs_account_withdraw(h, id, amount, &position))
        return position
    }

    @discardableResult
    public func transfer(from: String, to: String, amount: Int64) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try check(evs_account_transfer(h, from, to, amount, &position))
        return position
    }

    @discardableResult
    public func closeAccount(id: String) throws -> UInt64 {
        let h = try open()
        var position: UInt64 = 0
        try check(evs_account_close(h, id, &position))
        return position
    }

    public func account(id: String) throws -> Account {
        let h = try open()
        var a = evs_account()
        a.struct_size = MemoryLayout<evs_account>.size
        try check(evs_account_get(h, id, &a))
        return Store.makeAccount(a)
    }

    /// The account after its last event at or before `asOfMicros` (since the Unix epoch).
    public func account(id: String, asOfMicros: UInt64) throws -> Account {
        let h = try open()
        var a = evs_account()
        a.struct_size = MemoryLayout<evs_account>.size
        try check(evs_account_get_at(h, id, asOfMicros, &a))
        return Store.makeAccount(a)
    }

    private static func makeAccount(_ a: evs_account) -> Account {
        // char currency[4] is imported as a tuple: three letters and a NUL.
        let c = a.currency
        let currency = String(decoding: [c.0, c.1, c.2].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Account(balance: a.balance, isClosed: a.is_closed, currency: currency,
                       version: a.version, lastPosition: a.last_position)
    }
}

// MARK: - Durable consumers (docs/consumers.md)

/// A durable consumer as `Store.consumers()` lists it.
public struct ConsumerInfo {
    public let name: String
    /// Its checkpoint: the next position it will be given.
    public let nextPosition: UInt64
    /// The log's next position minus the checkpoint.
    public let lagEvents: UInt64
    /// The age of the first event after the checkpoint (0: none), microseconds.
    public let lagMicros: UInt64
    public let parked: UInt64
    /// Open now, in this process or another.
    public let isOpen: Bool
}

/// An event a consumer parked (`Store.parked(consumer:)`).
public struct ParkedEvent {
    public let position: UInt64
    public let parkedAtMicros: UInt64
    public let reason: String
}

/// An open durable consumer (`Store.openConsumer`): it is given the events after its
/// stored checkpoint, in position order, and the store keeps its progress; after a crash
/// the events after the last durable checkpoint come again, never one before it. Not
/// thread-safe. `close()` (or deinit, which ignores the error) writes the last checkpoint.
public final class Consumer {
    private var handle: OpaquePointer?

    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { evs_consumer_close(handle) }  // NULL is a no-op

    private func open() throws -> OpaquePointer {
        guard let h = handle else {
            throw EvstoreError(code: .invalidArgument, message: "the consumer is closed")
        }
        return h
    }

    /// The next event (a replayed parked one first), waiting up to `timeoutMillis`
    /// (negative: until one comes); nil when none came.
    public func next(timeoutMillis: Int32 = 0) throws -> Event? {
        let h = try open()
        var e = evs_event()
        e.struct_size = MemoryLayout<evs_event>.size
        if try check(evs_consumer_next(h, &e, timeoutMillis)) == EVS_END {
            return nil
        }
        return Event(e)
    }

    /// Every event up to and including `position` is handled.
    public func ack(_ position: UInt64) throws {
        let h = try open()
        try check(evs_consumer_ack(h, position))
    }

    /// The event at `position` comes again after the backoff; true when it had its
    /// retries and was parked instead.
    @discardableResult
    public func retry(_ position: UInt64) throws -> Bool {
        let h = try open()
        var parked = false
        try check(evs_consumer_retry(h, position, &parked))
        return parked
    }

    /// Parks the event at `position` with `reason`, durably, and acknowledges it.
    public func park(_ position: UInt64, reason: String) throws {
        let h = try open()
        try check(evs_consumer_park(h, position, reason))
    }

    /// Queues every parked event before new ones; returns how many.
    @discardableResult
    public func replayAllParked() throws -> UInt64 {
        let h = try open()
        var n: UInt64 = 0
        try check(evs_consumer_replay_parked(h, UInt64.max, &n))
        return n
    }

    /// Writes the checkpoint now (if it moved).
    public func checkpoint() throws {
        let h = try open()
        try check(evs_consumer_checkpoint(h))
    }

    /// The atomic step (exactly-once effects): appends one event to `stream` as
    /// `Store.append` does and, in the same step, stores the checkpoint after
    /// `ackPosition`. Both are stored or neither is. Returns the event's position.
    @discardableResult
    public func append(stream: String, expectedVersion: Int64, type: String, payload: [UInt8],
                       ackPosition: UInt64) throws -> UInt64 {
        let h = try open()
        var first: UInt64 = 0
        var version: UInt64 = 0
        let status: Int32 = stream.withCString { cstream -> Int32 in
            type.withCString { ctype -> Int32 in
                payload.withUnsafeBufferPointer { p -> Int32 in
                    var input = evs_event_input()
                    input.struct_size = MemoryLayout<evs_event_input>.size
                    input.event_type = ctype
                    input.payload = p.baseAddress
                    input.payload_len = p.count
                    return withUnsafePointer(to: &input) { inputPtr -> Int32 in
                        var part = evs_stream_append()
                        part.struct_size = MemoryLayout<evs_stream_append>.size
                        part.stream = cstream
                        part.expected_version = expectedVersion
                        part.events = inputPtr
                        part.count = 1
                        return evs_consumer_append(h, &part, 1, ackPosition, &first, &version)
                    }
                }
            }
        }
        try check(status)
        return first
    }

    /// Writes the last checkpoint and closes it. Calling it twice is harmless.
    public func close() throws {
        guard let h = handle else { return }
        handle = nil
        try check(evs_consumer_close(h))
    }
}

extension Store {
    /// Opens durable consumer `name`, made on its first open (from `startPosition`),
    /// reading the streams whose name starts with `streamPrefix` ("": every stream).
    /// Throws `.locked` while it is open elsewhere, `.invalidArgument` on PostgreSQL.
    public func openConsumer(name: String, streamPrefix: String = "",
                             startPosition: UInt64 = 0) throws -> Consumer {
        let h = try open()
        var c: OpaquePointer? = nil
        let status: Int32 = streamPrefix.withCString { cprefix -> Int32 in
            var o = evs_consumer_options()
            o.struct_size = MemoryLayout<evs_consumer_options>.size
            o.start_position = startPosition
            o.stream_prefix = streamPrefix.isEmpty ? nil : cprefix
            return evs_consumer_open(h, name, &o, &c)
        }
        try check(status)
        return Consumer(c!)
    }

    /// Every durable consumer with its checkpoint, lag and parked count, by name.
    public func consumers() throws -> [ConsumerInfo] {
        let h = try open()
        var list: OpaquePointer? = nil
        try check(evs_list_consumers(h, &list))
        defer { evs_consumer_list_free(list) }
        var out: [ConsumerInfo] = []
        for i in 0..<evs_consumer_list_count(list) {
            var c = evs_consumer_info()
            c.struct_size = MemoryLayout<evs_consumer_info>.size
            try check(evs_consumer_list_get(list, i, &c))
            out.append(ConsumerInfo(name: String(cString: c.name), nextPosition: c.next_position,
                                    lagEvents: c.lag_events, lagMicros: c.lag_us, parked: c.parked,
                                    isOpen: c.open))
        }
        return out
    }

    /// The parked events of consumer `name`, by position (`.notFound`: no such consumer).
    public func parked(consumer name: String) throws -> [ParkedEvent] {
        let h = try open()
        var list: OpaquePointer? = nil
        try check(evs_list_parked(h, name, &list))
        defer { evs_parked_list_free(list) }
        var out: [ParkedEvent] = []
        for i in 0..<evs_parked_list_count(list) {
            var p = evs_parked_event()
            p.struct_size = MemoryLayout<evs_parked_event>.size
            try check(evs_parked_list_get(list, i, &p))
            out.append(ParkedEvent(position: p.position, parkedAtMicros: p.parked_at_us,
                                   reason: String(cString: p.reason)))
        }
        return out
    }

    /// Consumer `name` (not open anywhere) is next given the events from `position` on.
    public func resetConsumer(name: String, to position: UInt64) throws {
        let h = try open()
        try check(evs_consumer_reset(h, name, position))
    }

    /// Forgets consumer `name`: its checkpoint and parked events.
    public func deleteConsumer(name: String) throws {
        let h = try open()
        try check(evs_consumer_delete(h, name))
    }
}
