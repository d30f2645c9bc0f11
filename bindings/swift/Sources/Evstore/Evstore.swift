// A thin Swift layer over the evstore C API (include/evstore.h, module CEvstore).
//
// Errors are thrown as EvstoreError (the status code and the library's message). The
// message is thread-local in C; every call here reads it synchronously right after the
// failing call, on the same thread (there is no `await` in between).
//
// A Store may be used from many threads at once, but close() must not race with other
// calls. The store is closed by close() or, failing that, when it is deinitialized.

import CEvstore

public struct EvstoreError: Error, Equatable, CustomStringConvertible {
    /// An evs_status value (negative for errors).
    public struct Code: RawRepresentable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let invalidArgument = Code(rawValue: -1)
        public static let notFound = Code(rawValue: -2)
        public static let alreadyExists = Code(rawValue: -3)
        public static let wrongExpectedVersion = Code(rawValue: -4)
        public static let insufficientFunds = Code(rawValue: -5)
        public static let accountClosed = Code(rawValue: -6)
        public static let overflow = Code(rawValue: -7)
        public static let locked = Code(rawValue: -8)
        public static let corrupt = Code(rawValue: -9)
        public static let io = Code(rawValue: -10)
        public static let tooLarge = Code(rawValue: -11)
        public static let readOnly = Code(rawValue: -12)
        public static let currencyMismatch = Code(rawValue: -13)
        public static let internalError = Code(rawValue: -99)

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

    /// Every event from `position` to the current end, copied.
    public func readAll(from position: UInt64 = 0) throws -> [Event] {
        let h = try open()
        var cursor: OpaquePointer? = nil
        try check(evs_read_all(h, position, &cursor))
        defer { evs_cursor_free(cursor) }
        var events: [Event] = []
        var e = evs_event()
        e.struct_size = MemoryLayout<evs_event>.size
        while try check(evs_cursor_next(cursor, &e)) == 0 {  // EVS_OK; EVS_END (1) stops
            events.append(Event(
                position: e.position,
                timestampMicros: e.timestamp_us,
                stream: Store.string(e.stream, e.stream_len),
                streamVersion: e.stream_version,
                type: Store.string(e.event_type, e.event_type_len),
                schemaVersion: e.schema_version,
                payload: Array(UnsafeBufferPointer(start: e.payload, count: e.payload_len)),
                metadata: Array(UnsafeBufferPointer(start: e.metadata, count: e.metadata_len))))
        }
        return events
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

    private static func string(_ p: UnsafePointer<CChar>?, _ count: Int) -> String {
        guard let p = p, count > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: count), as: UTF8.self)
    }

    private static func makeAccount(_ a: evs_account) -> Account {
        // char currency[4] is imported as a tuple: three letters and a NUL.
        let c = a.currency
        let currency = String(decoding: [c.0, c.1, c.2].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Account(balance: a.balance, isClosed: a.is_closed, currency: currency,
                       version: a.version, lastPosition: a.last_position)
    }
}
