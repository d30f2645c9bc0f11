// evstore.hpp: a header-only C++17 wrapper over the evstore C API (evstore.h).
//
// RAII handles (Options, Store, Cursor, Subscription, Consumer; move-only), errors as
// evstore::Error exceptions carrying the status code, the library's message and the
// numbers it names (actual version, failing part, position), and views for the borrowed
// bytes of events: std::string_view for text, and evstore::ByteView (a pointer and a
// size, with begin/end) for bytes, since C++17 has no std::span.
//
// Threads: a Store may be used by any number of threads at once; a Cursor, a Consumer
// and Options by one thread at a time. A Store must not be closed or destroyed while
// another thread uses it.
//
// Lifetimes: an Event is a view, valid until the next step of its cursor (or the end of
// the subscription callback it was given to); Event::to_owned() copies it into an
// OwnedEvent to keep. EventInput owns its bytes. A moved-from handle is empty: see each
// class. bindings/cpp/README.md (in the repository) lists the traps that remain.
//
// Installed with the library (`make install`): `find_package(evstore CONFIG REQUIRED)`
// and `target_link_libraries(app PRIVATE evstore::evstore)`, then
// `#include <evstore.hpp>`.
#ifndef EVSTORE_HPP
#define EVSTORE_HPP

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <climits>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "evstore.h"

// The wrapper reads evs_last_error_detail (1.1): an older evstore.h found first on the
// include path is refused here rather than by an undeclared function.
static_assert(EVS_VERSION_NUMBER >= 1001000, "evstore.hpp needs evstore.h 1.1 or later");

namespace evstore {

// The evs_status codes.
enum class Code : int32_t {
    Ok = EVS_OK,
    End = EVS_END,
    InvalidArgument = EVS_ERR_INVALID_ARGUMENT,
    NotFound = EVS_ERR_NOT_FOUND,
    AlreadyExists = EVS_ERR_ALREADY_EXISTS,
    WrongExpectedVersion = EVS_ERR_WRONG_EXPECTED_VERSION,
    InsufficientFunds = EVS_ERR_INSUFFICIENT_FUNDS,
    AccountClosed = EVS_ERR_ACCOUNT_CLOSED,
    Overflow = EVS_ERR_OVERFLOW,
    Locked = EVS_ERR_LOCKED,
    Corrupt = EVS_ERR_CORRUPT,
    Io = EVS_ERR_IO,
    TooLarge = EVS_ERR_TOO_LARGE,
    ReadOnly = EVS_ERR_READ_ONLY,
    CurrencyMismatch = EVS_ERR_CURRENCY_MISMATCH,
    Busy = EVS_ERR_BUSY,
    StreamDeleted = EVS_ERR_STREAM_DELETED,     // added in 1.1
    BalanceNotZero = EVS_ERR_BALANCE_NOT_ZERO,  // added in 1.1
    Stale = EVS_ERR_STALE,  // added in 1.1
    Incomplete = EVS_ERR_INCOMPLETE,  // added in 1.1 (backups)
    NotEmpty = EVS_ERR_NOT_EMPTY,  // added in 1.1
    Unavailable = EVS_ERR_UNAVAILABLE,  // defined in 1.1 (reserved in 1.0)
    Internal = EVS_ERR_INTERNAL,
};

// The code's name, e.g. "EVS_ERR_IO".
inline const char *code_name(Code c) { return evs_status_name(static_cast<evs_status>(c)); }

// A failed call: code() is the status, what() the library's message, and the numbers
// the message names where they apply (evs_last_error_detail), each empty otherwise.
class Error : public std::runtime_error {
public:
    // An error without detail (the wrapper's own errors use it).
    Error(Code code, const std::string &message) : std::runtime_error(message), code_(code) {}
    // An error of the library with its detail, read on the failing call's thread.
    Error(Code code, const std::string &message, const evs_error_detail &detail)
        : std::runtime_error(message), code_(code) {
        if (detail.code != static_cast<evs_status>(code))
            return;  // another call's detail: none
        if (code == Code::WrongExpectedVersion)
            actual_version_ = detail.actual_version;
        if (detail.part_index >= 0)
            part_index_ = static_cast<size_t>(detail.part_index);
        if (detail.position != UINT64_MAX)
            position_ = detail.position;
    }
    Code code() const noexcept { return code_; }
    const char *name() const noexcept { return code_name(code_); }
    // Code::WrongExpectedVersion: the version of the stream's last event when the append
    // (or account operation) was refused, -1 when the stream did not exist (as
    // Store::stream_version says it). Empty for other errors.
    std::optional<int64_t> actual_version() const noexcept { return actual_version_; }
    // Store::append_multi: the index in its parts of the part the error is about (the
    // stream whose expected version failed, the part with an event id stored before).
    // Empty for other calls (append, the account operations) and other errors.
    std::optional<size_t> part_index() const noexcept { return part_index_; }
    // Code::Corrupt: the damaged event's position, where the call knows it (reads,
    // cursors, subscriptions, an open decoding a damaged record). Code::AlreadyExists from
    // an append: the position of the stored event whose id the append carries. Empty
    // otherwise.
    std::optional<uint64_t> position() const noexcept { return position_; }

private:
    Code code_;
    std::optional<int64_t> actual_version_;
    std::optional<size_t> part_index_;
    std::optional<uint64_t> position_;
};

// Expected versions for Store::append; a value >= 0 is the version of the last event.
inline constexpr int64_t kExpectAny = EVS_EXPECT_ANY;
inline constexpr int64_t kExpectNoStream = EVS_EXPECT_NO_STREAM;
inline constexpr int64_t kExpectExists = EVS_EXPECT_EXISTS;
// Starts Store::read_all_backward at the last event; as a timestamp, "the end of time".
inline constexpr uint64_t kPositionEnd = UINT64_MAX;

enum class FsyncPolicy : int32_t {
    Always = EVS_FSYNC_ALWAYS,  // an append returns once on disk
    Batch = EVS_FSYNC_BATCH,    // on disk within the batch window
    Os = EVS_FSYNC_OS,          // the OS decides; sync() and close() flush
};

inline std::string version() { return evs_version(); }

// The library's 1000000 * major + 1000 * minor + patch; at least EVS_VERSION_NUMBER of
// the header this program was compiled with, and of the same major version.
inline int32_t version_number() { return evs_version_number(); }

// A view of bytes (C++17 has no std::span): valid as long as what it views.
struct ByteView {
    const uint8_t *ptr = nullptr;
    size_t len = 0;

    const uint8_t *data() const noexcept { return ptr; }
    size_t size() const noexcept { return len; }
    bool empty() const noexcept { return len == 0; }
    const uint8_t *begin() const noexcept { return ptr; }
    const uint8_t *end() const noexcept { return ptr + len; }
    uint8_t operator[](size_t i) const noexcept { return ptr[i]; }
    std::string_view as_string() const noexcept {
        return len == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char *>(ptr), len);
    }
    std::vector<uint8_t> to_vector() const { return std::vector<uint8_t>(begin(), end()); }
};

// An event id (all zero: none).
using EventId = std::array<uint8_t, 16>;

namespace detail {

// The Error of the call that just failed with st on this thread: its message, then its
// detail (evs_last_error_detail replaces the message if it fails itself). Both are
// thread-local: read them at once, on the failing call's thread. Run with a library older
// than 1.1 (no evs_last_error_detail), errors have no detail rather than a missing symbol
// at the first failure (functions resolve when first called).
inline Error last_error(evs_status st) {
    static const bool library_has_detail = evs_version_number() >= 1001000;
    std::string message = evs_last_error_message();
    evs_error_detail d{};
    d.struct_size = sizeof d;
    if (!library_has_detail || evs_last_error_detail(&d) != EVS_OK)
        d.code = EVS_OK;  // no detail
    return Error(static_cast<Code>(st), message, d);
}

// Throws on an error status, with the thread-local message and detail.
inline evs_status check(evs_status st) {
    if (st < 0)
        throw last_error(st);
    return st;
}

// A NUL inside a std::string would silently cut it short at the C boundary.
inline const char *c_str(const std::string &s, const char *argument) {
    if (s.find('\0') != std::string::npos)
        throw Error(Code::InvalidArgument, std::string(argument) + " contains a NUL byte");
    return s.c_str();
}

inline const uint8_t *bytes(std::string_view v) {
    return v.empty() ? nullptr : reinterpret_cast<const uint8_t *>(v.data());
}

inline std::string_view view(const char *p, size_t n) {
    return n == 0 ? std::string_view() : std::string_view(p, n);
}

inline std::string_view view(const uint8_t *p, size_t n) {
    return view(reinterpret_cast<const char *>(p), n);
}

}  // namespace detail

// Options for opening a store. Defaults: Batch with a 5 ms window, 128 MiB segments,
// preallocation on, read-write, no automatic snapshots. Setters throw on a bad value.
// Move-only; a moved-from Options is empty: its setters and Store's constructor throw
// Error (Code::InvalidArgument).
class Options {
public:
    Options() : ptr_(evs_options_new()) {
        if (ptr_ == nullptr)
            throw std::bad_alloc();
    }
    ~Options() { evs_options_free(ptr_); }
    Options(Options &&o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
    Options &operator=(Options &&o) noexcept {
        if (this != &o) {
            evs_options_free(ptr_);
            ptr_ = std::exchange(o.ptr_, nullptr);
        }
        return *this;
    }
    Options(const Options &) = delete;
    Options &operator=(const Options &) = delete;

    // window_ms (1..=10000) is used only with FsyncPolicy::Batch.
    Options &set_fsync(FsyncPolicy p, uint32_t window_ms = 5) {
        detail::check(evs_options_set_fsync(checked(), static_cast<evs_fsync_policy>(p), window_ms));
        return *this;
    }
    // 64 KiB ..= 1 TiB.
    Options &set_max_segment_size(uint64_t bytes) {
        detail::check(evs_options_set_max_segment_size(checked(), bytes));
        return *this;
    }
    Options &set_preallocate(bool on) {
        detail::check(evs_options_set_preallocate(checked(), on));
        return *this;
    }
    Options &set_read_only(bool on) {
        detail::check(evs_options_set_read_only(checked(), on));
        return *this;
    }
    // 0 = never.
    Options &set_snapshot_every(uint64_t events) {
        detail::check(evs_options_set_snapshot_every(checked(), events));
        return *this;
    }
    // 1 ..= 16 MiB (the default).
    Options &set_max_event_size(uint64_t bytes) {
        detail::check(evs_options_set_max_event_size(checked(), bytes));
        return *this;
    }
    // How many of the last events' ids are remembered (1 ..= 2^30; default 2^20).
    Options &set_dedupe_window(uint64_t events) {
        detail::check(evs_options_set_dedupe_window(checked(), events));
        return *this;
    }
    // The file engine's compaction: `bytes_per_second` is its throttle, bytes read and
    // written per second (default 64 MiB/s; 0: unthrottled); `trigger_percent` starts an
    // automatic compaction of a sealed segment with more than that percent of its bytes
    // removed (default 25; 0: none; above 100 throws Code::InvalidArgument).
    Options &set_compaction(uint64_t bytes_per_second, uint32_t trigger_percent) {
        detail::check(evs_options_set_compaction(checked(), bytes_per_second, trigger_percent));
        return *this;
    }

    // The C options; null once moved from.
    const evs_options *get() const noexcept { return ptr_; }

private:
    friend class Store;
    // The C options, or Error (Code::InvalidArgument) once moved from: a moved-from
    // Options is refused, never taken for the defaults.
    evs_options *checked() const {
        if (ptr_ == nullptr)
            throw Error(Code::InvalidArgument, "the options were moved from");
        return ptr_;
    }

    evs_options *ptr_;
};

struct OwnedEvent;

// A borrowed view of a stored event: its views (stream, type, payload, metadata) are
// valid until the next step of its cursor (next(), ++ on its iterator), the cursor's
// destruction or move, or the return of the subscription callback it was given to.
// Copying an Event copies the views, not the bytes: keep an event with to_owned().
struct Event {
    uint64_t position = 0;      // global, from 0, never reused (a removed event's is empty)
    uint64_t timestamp_us = 0;  // microseconds since the Unix epoch
    std::string_view stream;    // empty for events appended with append_event
    uint64_t stream_version = 0;
    std::string_view type;
    uint32_t schema_version = 0;
    std::string_view payload;   // the bytes as text; payload_bytes() as bytes
    std::string_view metadata;
    EventId id{};               // the id it was appended with; all zero for none
    std::string_view subject;   // the data subject it names; empty for none
    bool erased = false;        // its subject was forgotten: payload and metadata empty

    ByteView payload_bytes() const noexcept {
        return ByteView{reinterpret_cast<const uint8_t *>(payload.data()), payload.size()};
    }
    ByteView metadata_bytes() const noexcept {
        return ByteView{reinterpret_cast<const uint8_t *>(metadata.data()), metadata.size()};
    }
    bool has_id() const noexcept { return id != EventId{}; }

    // A copy that owns its bytes: valid as long as it lives.
    OwnedEvent to_owned() const;
};

// A stored event that owns its bytes (std::string members): copyable, valid as long as
// it lives. Event::to_owned() and Cursor::next(OwnedEvent &) make one; Store::read_event
// returns one.
struct OwnedEvent {
    uint64_t position = 0;
    uint64_t timestamp_us = 0;
    std::string stream;
    uint64_t stream_version = 0;
    std::string type;
    uint32_t schema_version = 0;
    std::string payload;  // the bytes; payload_bytes() views them as bytes
    std::string metadata;
    EventId id{};
    std::string subject;
    bool erased = false;

    ByteView payload_bytes() const noexcept {
        return ByteView{reinterpret_cast<const uint8_t *>(payload.data()), payload.size()};
    }
    ByteView metadata_bytes() const noexcept {
        return ByteView{reinterpret_cast<const uint8_t *>(metadata.data()), metadata.size()};
    }
    bool has_id() const noexcept { return id != EventId{}; }

    // An Event viewing this one's bytes: valid while this lives and is not changed.
    Event view() const noexcept {
        Event e;
        e.position = position;
        e.timestamp_us = timestamp_us;
        e.stream = stream;
        e.stream_version = stream_version;
        e.type = type;
        e.schema_version = schema_version;
        e.payload = payload;
        e.metadata = metadata;
        e.id = id;
        e.subject = subject;
        e.erased = erased;
        return e;
    }

    // For code written when Store::read_event returned a handle (one->type): the members
    // themselves (one.type) are the way now.
    const OwnedEvent *operator->() const noexcept { return this; }
};

inline OwnedEvent Event::to_owned() const {
    OwnedEvent o;
    o.position = position;
    o.timestamp_us = timestamp_us;
    o.stream = std::string(stream);
    o.stream_version = stream_version;
    o.type = std::string(type);
    o.schema_version = schema_version;
    o.payload = std::string(payload);
    o.metadata = std::string(metadata);
    o.id = id;
    o.subject = std::string(subject);
    o.erased = erased;
    return o;
}

namespace detail {
// A caller-allocated struct of the C API, ready to pass in.
template <class T>
inline T init() {
    T v{};
    v.struct_size = sizeof(T);
    return v;
}

inline Event to_event(const evs_event &e) {
    Event out;
    out.position = e.position;
    out.timestamp_us = e.timestamp_us;
    out.stream = view(e.stream, e.stream_len);
    out.stream_version = e.stream_version;
    out.type = view(e.event_type, e.event_type_len);
    out.schema_version = e.schema_version;
    out.payload = view(e.payload, e.payload_len);
    out.metadata = view(e.metadata, e.metadata_len);
    // A view the library fills for a callback has the library's struct_size: a field
    // past it does not exist (an older library).
    if (e.struct_size >= offsetof(evs_event, id) + sizeof e.id)
        std::memcpy(out.id.data(), e.id, sizeof e.id);
    if (e.struct_size >= offsetof(evs_event, flags) + sizeof e.flags) {
        out.subject = view(e.subject, e.subject_len);
        out.erased = (e.flags & EVS_EVENT_ERASED) != 0;
    }
    return out;
}
}  // namespace detail

// A running subscription (Store::subscribe): calls its function with every event from a
// position on, history first and then live, on a library thread. The function returns
// true to go on, false to stop. An exception it throws never reaches the C library (a
// C callback must not unwind): the trampoline catches every exception and ends the
// subscription; close() rethrows it. Destruction stops it too, without throwing.
// Move-only. A moved-from Subscription is like a closed one: running() is false, status()
// throws Error (Code::InvalidArgument), error_message() is "", exception() is null and
// close() does nothing.
class Subscription {
public:
    using Fn = std::function<bool(const Event &)>;

    Subscription(Subscription &&o) noexcept
        : state_(std::move(o.state_)), ptr_(std::exchange(o.ptr_, nullptr)) {}
    Subscription &operator=(Subscription &&o) noexcept {
        if (this != &o) {
            evs_subscription_close(ptr_);
            state_ = std::move(o.state_);
            ptr_ = std::exchange(o.ptr_, nullptr);
        }
        return *this;
    }
    Subscription(const Subscription &) = delete;
    Subscription &operator=(const Subscription &) = delete;
    ~Subscription() { evs_subscription_close(ptr_); }

    // True while it delivers (also while a PostgreSQL subscription reconnects); false
    // once it has ended (its function returned false or threw, its store closed, reading
    // failed) or was closed.
    bool running() const { return ptr_ != nullptr && !exception() && !ended(); }

    // How it stands: Code::Ok while it runs or when it was stopped; Code::Unavailable
    // while a PostgreSQL subscription that lost its server reconnects (it goes on after
    // the last event it read); the error that ended it (e.g. Code::Corrupt, Code::Io)
    // otherwise. Code::Internal when its function threw (see exception()). Throws Error
    // once closed.
    Code status() const {
        if (ptr_ == nullptr)
            throw Error(Code::InvalidArgument, "the subscription is closed");
        if (exception())
            return Code::Internal;
        evs_status how = EVS_OK;
        detail::check(evs_subscription_status(ptr_, &how));
        return static_cast<Code>(how);
    }

    // Why it ended with an error ("" while it runs, when it was stopped, once closed
    // and once moved from).
    std::string error_message() const {
        if (exception())
            return "the subscription's function threw";
        return ptr_ == nullptr ? "" : evs_subscription_error_message(ptr_);
    }

    // The exception its function threw, or null (also once moved from).
    std::exception_ptr exception() const {
        if (state_ == nullptr)
            return nullptr;
        std::lock_guard<std::mutex> g(state_->mu);
        return state_->thrown;
    }

    // Stops it and waits for its thread. Rethrows the exception the function threw, or
    // throws Error when the subscription ended with an error (e.g. Code::Corrupt).
    // Once closed, a no-op.
    void close() {
        if (ptr_ == nullptr)
            return;
        evs_status st = evs_subscription_close(std::exchange(ptr_, nullptr));
        if (std::exception_ptr thrown = exception())
            std::rethrow_exception(thrown);
        detail::check(st);
    }

private:
    friend class Store;
    struct State {
        Fn fn;
        mutable std::mutex mu;
        std::exception_ptr thrown;
    };
    explicit Subscription(std::unique_ptr<State> state) : state_(std::move(state)) {}

    bool ended() const {
        evs_status how = EVS_OK;
        return evs_subscription_status(ptr_, &how) == EVS_END;
    }

    // The C callback: nothing may unwind out of it. Catching `...` also catches what is
    // not a std::exception; the exception is kept for close() to rethrow.
    static int32_t trampoline(void *user_data, const evs_event *e) noexcept {
        State *st = static_cast<State *>(user_data);
        try {
            return st->fn(detail::to_event(*e)) ? 0 : 1;
        } catch (...) {
            std::lock_guard<std::mutex> g(st->mu);
            st->thrown = std::current_exception();
            return 1;
        }
    }

    std::unique_ptr<State> state_;
    evs_subscription *ptr_ = nullptr;
};

namespace detail {
// An input iterator over the events of a Source whose next(Event &) steps (false: the
// end): Cursor, Consumer and Consumer::Range.
template <class Source>
class EventIterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Event;
    using difference_type = std::ptrdiff_t;
    using pointer = const Event *;
    using reference = const Event &;

    EventIterator() = default;
    // The first step is taken here.
    explicit EventIterator(Source *s) : source_(s) { ++*this; }
    reference operator*() const noexcept { return event_; }
    pointer operator->() const noexcept { return &event_; }
    EventIterator &operator++() {
        if (!source_->next(event_))
            source_ = nullptr;
        return *this;
    }
    bool operator==(const EventIterator &o) const noexcept { return source_ == o.source_; }
    bool operator!=(const EventIterator &o) const noexcept { return source_ != o.source_; }

private:
    Source *source_ = nullptr;
    Event event_;
};
}  // namespace detail

// Iterates over events; single-thread. Forward cursors see later appends: next()
// returning false means "no more now". Also a range:
//     for (const evstore::Event &e : store.read_all()) ...
// runs to the end as it is now; a failed read throws Error out of the loop. Each Event
// is a view valid until the next step: keep e.to_owned(). Moving the cursor ends its
// iterators; a moved-from cursor throws Error (Code::InvalidArgument) from next().
class Cursor {
public:
    explicit Cursor(evs_cursor *c) noexcept : ptr_(c) {}
    ~Cursor() { evs_cursor_free(ptr_); }
    Cursor(Cursor &&o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
    Cursor &operator=(Cursor &&o) noexcept {
        if (this != &o) {
            evs_cursor_free(ptr_);
            ptr_ = std::exchange(o.ptr_, nullptr);
        }
        return *this;
    }
    Cursor(const Cursor &) = delete;
    Cursor &operator=(const Cursor &) = delete;

    // Fills `out` and returns true, or returns false at the end; throws on an error.
    // `out`'s views are valid until the next call on this cursor.
    bool next(Event &out) {
        if (ptr_ == nullptr)
            throw Error(Code::InvalidArgument, "the cursor was moved from");
        evs_event e = detail::init<evs_event>();
        if (detail::check(evs_cursor_next(ptr_, &e)) == EVS_END)
            return false;
        out = detail::to_event(e);
        return true;
    }

    // As next(Event &), copying the event into `out`, which owns its bytes.
    bool next(OwnedEvent &out) {
        Event e;
        if (!next(e))
            return false;
        out = e.to_owned();
        return true;
    }

    // An input iterator: each step is a next(); the end is "no more now".
    using iterator = detail::EventIterator<Cursor>;

    iterator begin() { return iterator(this); }
    iterator end() noexcept { return iterator(); }

    evs_cursor *get() const noexcept { return ptr_; }

private:
    evs_cursor *ptr_;
};

// A stream as Store::list_streams reports it.
struct StreamInfo {
    std::string name;
    uint64_t version;         // of its last event
    uint64_t first_position;  // the global position of its first event a reader sees
};

// Store::delete_stream's modes.
enum class DeleteMode : uint32_t {
    // The stream does not exist, for readers and writers, until it is appended to again
    // (stream_version() gives -1; an append expecting kExpectNoStream or kExpectAny
    // continues its versions after the kept one).
    Soft = EVS_DELETE_SOFT,
    // A tombstone: every later read or write of the name throws Code::StreamDeleted.
    Hard = EVS_DELETE_HARD,
};

// A retention rule; 0 is "no limit of that kind", both 0 is no rule.
struct Retention {
    // Keep the stream's last max_count versions: with version v, the events with a
    // version <= v - max_count are removed.
    uint64_t max_count = 0;
    // Remove the events older than now - max_age_us microseconds, now being the store's
    // clock when a read runs (events leave by age without any call).
    uint64_t max_age_us = 0;

    bool operator==(const Retention &o) const noexcept {
        return max_count == o.max_count && max_age_us == o.max_age_us;
    }
    bool operator!=(const Retention &o) const noexcept { return !(*this == o); }
};

// One event to append. It owns its bytes: the constructor copies the payload and the
// metadata, so that {"T", std::to_string(i)} (a temporary) is safe to keep in a vector
// and append later. To hand over a large payload without a copy, move a std::string into
// the member: in.payload = std::move(bytes).
struct EventInput {
    EventInput() = default;
    EventInput(std::string type_, std::string_view payload_ = {}, std::string_view metadata_ = {},
               uint32_t schema_version_ = 0, EventId id_ = {})
        : type(std::move(type_)), payload(payload_), metadata(metadata_), schema_version(schema_version_), id(id_) {}

    std::string type;
    std::string payload;   // the bytes, of any value (a std::string holds NULs too)
    std::string metadata;
    uint32_t schema_version = 0;  // 0 is stored as 1
    // Its unique id, all zero for none: an append whose events all carry ids already
    // stored writes nothing and returns the stored positions (safe to retry).
    EventId id{};
    // The data subject (a pseudonymous user id) whose personal data payload and metadata
    // are: stored encrypted with its key, erased once Store::forget_subject forgot it.
    // Empty: none.
    std::string subject;
};

// One stream's part of Store::append_multi.
struct StreamAppend {
    std::string stream;
    int64_t expected_version;  // as for Store::append
    std::vector<EventInput> events;
};

struct MultiAppendResult {
    uint64_t first_position;               // of the first event appended
    std::vector<uint64_t> stream_versions;  // of each part's last event
};

struct AppendResult {
    uint64_t first_position;  // of the first event appended
    uint64_t stream_version;  // of the last event appended
};

struct Account {
    int64_t balance;
    bool is_closed;
    std::string currency;    // "USD"
    uint64_t version;        // events applied to this account
    uint64_t last_position;  // position of its last event
};

namespace detail {
inline std::vector<evs_event_input> inputs(const std::vector<EventInput> &events) {
    std::vector<evs_event_input> in(events.size(), init<evs_event_input>());
    for (size_t i = 0; i < events.size(); i++) {
        in[i].event_type = c_str(events[i].type, "event_type");
        in[i].payload = bytes(events[i].payload);
        in[i].payload_len = events[i].payload.size();
        in[i].metadata = bytes(events[i].metadata);
        in[i].metadata_len = events[i].metadata.size();
        in[i].schema_version = events[i].schema_version;
        std::memcpy(in[i].id, events[i].id.data(), sizeof in[i].id);
        in[i].subject = events[i].subject.empty() ? nullptr : c_str(events[i].subject, "subject");
    }
    return in;
}

// The parts of an append_multi (or Consumer::append) as C structs, viewing `parts`.
class Appends {
public:
    explicit Appends(const std::vector<StreamAppend> &parts) : c_(parts.size(), init<evs_stream_append>()) {
        in_.reserve(parts.size());
        for (size_t i = 0; i < parts.size(); i++) {
            in_.push_back(inputs(parts[i].events));
            c_[i].stream = c_str(parts[i].stream, "stream");
            c_[i].expected_version = parts[i].expected_version;
            c_[i].events = in_[i].empty() ? nullptr : in_[i].data();
            c_[i].count = in_[i].size();
        }
    }
    const evs_stream_append *data() const noexcept { return c_.empty() ? nullptr : c_.data(); }
    size_t size() const noexcept { return c_.size(); }

private:
    std::vector<std::vector<evs_event_input>> in_;
    std::vector<evs_stream_append> c_;
};
}  // namespace detail

// ConsumerOptions::start_position: a new consumer starts at the log's end.
inline constexpr uint64_t kConsumerStartEnd = EVS_CONSUMER_START_END;
// ConsumerOptions::max_retries: retry an event without limit.
inline constexpr uint32_t kRetriesUnlimited = EVS_CONSUMER_RETRIES_UNLIMITED;

// How a durable consumer runs (docs/consumers.md); a zero field means the library's
// default: start at 0, every event, a checkpoint every 100 acknowledgements or 1000 ms,
// 5 retries from 100 ms doubling up to 10000 ms.
struct ConsumerOptions {
    uint64_t start_position = 0;  // only for a consumer without a checkpoint
    std::string stream_prefix;    // "": any stream
    std::vector<std::string> types;  // none: any type
    uint64_t checkpoint_every = 0;
    uint32_t checkpoint_interval_ms = 0;
    uint32_t max_retries = 0;
    uint32_t retry_backoff_ms = 0;
    uint32_t retry_backoff_max_ms = 0;
    // PostgreSQL: the holder's lease (0: 10000 ms): a holder that died lets go after it.
    uint32_t lease_ms = 0;
    // PostgreSQL: a consumer group of this many partitions (0: one holder at a time);
    // every member opens the name with the same count (docs/consumers.md "Consumer
    // groups"). A file store refuses it (evstore::Error with EVS_ERR_INVALID_ARGUMENT).
    uint32_t partitions = 0;
};

// A durable consumer as Store::consumers lists it.
struct ConsumerInfo {
    std::string name;
    uint64_t next_position;  // its checkpoint: the next position it will be given
    uint64_t lag_events;     // the log's next position minus the checkpoint
    uint64_t lag_us;         // the age of the first event after the checkpoint (0: none)
    uint64_t parked;         // events parked now
    bool open;               // open now, in this process or another
};

// An event a consumer parked (Store::parked).
struct ParkedEvent {
    uint64_t position;
    uint64_t parked_at_us;  // microseconds since the Unix epoch
    std::string reason;
};

// An open durable consumer (Store::open_consumer): it is given the events after its
// stored checkpoint, in position order, and the store keeps its progress; after a crash
// the events after the last durable checkpoint come again, never one before it, never a
// gap. Acknowledge each event with ack() once handled, or store a handler's effects and
// its checkpoint in one atomic step with append() (exactly-once effects). A name is open
// in one place at a time (Code::Locked elsewhere). The destructor writes the last
// checkpoint and closes it (errors ignored: call close() to see them). Move-only,
// single-thread; a moved-from or closed Consumer's calls throw Error
// (Code::InvalidArgument).
//
// A range over its events, waiting for each:
//     for (const evstore::Event &e : consumer) { handle(e); consumer.ack(e.position); }
// never ends by itself (break out of it; a closed store throws Error out of the loop);
//     for (const evstore::Event &e : consumer.events(std::chrono::seconds(1))) ...
// ends once no event came for a second. Each Event is a view valid until the next step.
class Consumer {
public:
    ~Consumer() { evs_consumer_close(ptr_); }
    Consumer(Consumer &&o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
    Consumer &operator=(Consumer &&o) noexcept {
        if (this != &o) {
            evs_consumer_close(ptr_);
            ptr_ = std::exchange(o.ptr_, nullptr);
        }
        return *this;
    }
    Consumer(const Consumer &) = delete;
    Consumer &operator=(const Consumer &) = delete;

    // Waits up to `timeout` (negative: until one comes) for the next event (a replayed
    // parked event first, then the log's next one that passes the filter): fills `out`
    // and returns true, or returns false when none came. `out` is valid until the next
    // call on this consumer.
    bool next(Event &out, std::chrono::milliseconds timeout) {
        evs_event e = detail::init<evs_event>();
        int64_t ms = timeout.count() < 0 ? -1 : std::min<int64_t>(timeout.count(), INT32_MAX);
        if (detail::check(evs_consumer_next(checked(), &e, static_cast<int32_t>(ms))) == EVS_END)
            return false;
        out = detail::to_event(e);
        return true;
    }

    // Every event up to and including `position` is handled (a replayed parked event:
    // that one, parked no more). The checkpoint follows at the consumer's interval.
    void ack(uint64_t position) { detail::check(evs_consumer_ack(checked(), position)); }

    // The event at `position` (delivered, not acknowledged) and those after it come again
    // after the backoff; true when it had its retries and was parked instead.
    bool retry(uint64_t position) {
        bool parked = false;
        detail::check(evs_consumer_retry(checked(), position, &parked));
        return parked;
    }

    // Parks the event at `position` (delivered) with `reason`, durably, and acknowledges it.
    void park(uint64_t position, const std::string &reason) {
        detail::check(evs_consumer_park(checked(), position, detail::c_str(reason, "reason")));
    }

    // Queues the parked event at `position` (Code::NotFound: none) before new events.
    void replay_parked(uint64_t position) {
        detail::check(evs_consumer_replay_parked(checked(), position, nullptr));
    }
    // Queues every parked event, in position order; returns how many.
    uint64_t replay_all_parked() {
        uint64_t n = 0;
        detail::check(evs_consumer_replay_parked(checked(), UINT64_MAX, &n));
        return n;
    }

    // Writes the checkpoint now (if it moved).
    void checkpoint() { detail::check(evs_consumer_checkpoint(checked())); }

    // Every position before next_position() is handled.
    uint64_t next_position() {
        uint64_t next = 0;
        detail::check(evs_consumer_position(checked(), &next, nullptr));
        return next;
    }
    // The checkpoint stored last.
    uint64_t stored_position() {
        uint64_t next = 0, stored = 0;
        detail::check(evs_consumer_position(checked(), &next, &stored));
        return stored;
    }

    // The atomic step: appends `parts` as Store::append_multi and, in the same step,
    // stores the checkpoint after `ack_position` (the event whose effects they are).
    // After any crash both are stored or neither is. Throws as append_multi (nothing is
    // stored then, the checkpoint neither), Code::InvalidArgument (`ack_position` not
    // delivered), Code::ReadOnly.
    MultiAppendResult append(const std::vector<StreamAppend> &parts, uint64_t ack_position) {
        detail::Appends c(parts);
        MultiAppendResult r{0, std::vector<uint64_t>(parts.size())};
        detail::check(evs_consumer_append(checked(), c.data(), c.size(), ack_position, &r.first_position,
                                          r.stream_versions.empty() ? nullptr : r.stream_versions.data()));
        return r;
    }

    // Writes the last checkpoint and closes it (the name may be opened again); throws
    // Error if that fails (Code::InvalidArgument: its store was closed first, and the
    // acknowledgements since the last checkpoint were not stored). Once closed, a no-op.
    void close() {
        if (ptr_ != nullptr)
            detail::check(evs_consumer_close(std::exchange(ptr_, nullptr)));
    }

    // next(out, timeout) waiting without end: true once an event came.
    bool next(Event &out) { return next(out, std::chrono::milliseconds(-1)); }

    // The events until none came within `idle` (see Consumer).
    class Range {
    public:
        using iterator = detail::EventIterator<Range>;
        iterator begin() { return iterator(this); }
        iterator end() noexcept { return iterator(); }
        // A step of the range: next() with its timeout.
        bool next(Event &out) { return consumer_->next(out, idle_); }

    private:
        friend class Consumer;
        Range(Consumer *c, std::chrono::milliseconds idle) : consumer_(c), idle_(idle) {}
        Consumer *consumer_;
        std::chrono::milliseconds idle_;
    };
    Range events(std::chrono::milliseconds idle) { return Range(this, idle); }

    // The events, waiting for each without end (see Consumer).
    using iterator = detail::EventIterator<Consumer>;
    iterator begin() { return iterator(this); }
    iterator end() noexcept { return iterator(); }

    evs_consumer *get() const noexcept { return ptr_; }

private:
    friend class Store;
    explicit Consumer(evs_consumer *c) noexcept : ptr_(c) {}
    evs_consumer *checked() const {
        if (ptr_ == nullptr)
            throw Error(Code::InvalidArgument, "the consumer is closed or was moved from");
        return ptr_;
    }
    evs_consumer *ptr_ = nullptr;
};

using RecoveryInfo = evs_recovery_info;
using Stats = evs_stats;
using StoreOptions = evs_store_options;
// What Store::compact did: segments_rewritten (PostgreSQL: tables cleaned), bytes_before,
// bytes_after, events_erased, duration_us.
using CompactInfo = evs_compact_info;

// Stops the library's background threads once no store is open (else Error with
// Code::Busy). Optional.
inline void shutdown() { detail::check(evs_shutdown()); }

// The SQL script that creates the PostgreSQL schema of the store at `url` (a
// postgresql:// URL as Store takes it, schema= included) or migrates it to this
// library's version, for a DBA to review and run (psql -v ON_ERROR_STOP=1 -f) before the
// application opens the store with migrate=false: the statements a writable open would
// run, as one transaction, with the grants the URL's user needs; comments only when the
// schema is current. Nothing is executed: it connects only to read the schema's
// version. Throws Code::InvalidArgument (not a postgresql:// URL, a bad parameter),
// Code::Unavailable (no server answered within its bounds), Code::Io (the server
// refused), Code::Corrupt (a schema newer than this library).
inline std::string schema_sql(const std::string &url) {
    char *sql = nullptr;
    detail::check(evs_schema_sql(detail::c_str(url, "url"), &sql));
    std::unique_ptr<char, void (*)(char *)> owned(sql, evs_string_free);
    return std::string(owned.get());
}

// An open store; closed by the destructor (errors of that final sync are ignored: call
// close() to see them). Move-only; a moved-from or closed Store's calls throw Error
// (Code::InvalidArgument), and its close() does nothing.
class Store {
public:
    // Opens (creating if needed; the parent directory must exist) the store at `path`.
    explicit Store(const std::string &path) { open(path, nullptr); }
    // Throws Error (Code::InvalidArgument) for a moved-from `opts`.
    Store(const std::string &path, const Options &opts) { open(path, opts.checked()); }
    ~Store() { evs_close(ptr_); }
    Store(Store &&o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), info_(o.info_) {}
    Store &operator=(Store &&o) noexcept {
        if (this != &o) {
            evs_close(ptr_);
            ptr_ = std::exchange(o.ptr_, nullptr);
            info_ = o.info_;
        }
        return *this;
    }
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    // What recovery found and did when the store was opened.
    const RecoveryInfo &recovery_info() const noexcept { return info_; }

    // Syncs, unlocks and frees the store; afterwards only destruction is valid.
    void close() {
        if (ptr_ != nullptr)
            detail::check(evs_close(std::exchange(ptr_, nullptr)));
    }

    void sync() { detail::check(evs_sync(ptr_)); }

    // Appends one event with no stream; returns its position.
    uint64_t append_event(const std::string &type, std::string_view payload) {
        uint64_t pos = 0;
        detail::check(evs_append_event(ptr_, detail::c_str(type, "event_type"), detail::bytes(payload),
                                       payload.size(), &pos));
        return pos;
    }

    // Appends events to `stream` atomically if it is at `expected_version`.
    AppendResult append(const std::string &stream, int64_t expected_version,
                        const std::vector<EventInput> &events) {
        std::vector<evs_event_input> in = detail::inputs(events);
        AppendResult r{0, 0};
        detail::check(evs_append(ptr_, detail::c_str(stream, "stream"), expected_version,
                                 in.empty() ? nullptr : in.data(), in.size(), &r.first_position,
                                 &r.stream_version));
        return r;
    }

    // Appends to several streams in one atomic step: all of it, or nothing.
    MultiAppendResult append_multi(const std::vector<StreamAppend> &parts) {
        detail::Appends c(parts);
        MultiAppendResult r{0, std::vector<uint64_t>(parts.size())};
        detail::check(evs_append_multi(ptr_, c.data(), c.size(), &r.first_position,
                                       r.stream_versions.empty() ? nullptr : r.stream_versions.data()));
        return r;
    }

    Cursor read_all(uint64_t from_position = 0) {
        evs_cursor *c = nullptr;
        detail::check(evs_read_all(ptr_, from_position, &c));
        return Cursor(c);
    }
    Cursor read_all_backward(uint64_t from_position = kPositionEnd) {
        evs_cursor *c = nullptr;
        detail::check(evs_read_all_backward(ptr_, from_position, &c));
        return Cursor(c);
    }
    Cursor read_stream(const std::string &stream, uint64_t from_version = 0) {
        evs_cursor *c = nullptr;
        detail::check(evs_read_stream(ptr_, detail::c_str(stream, "stream"), from_version, &c));
        return Cursor(c);
    }
    // One stream from `from_version` (kPositionEnd: its last event) down to version 0.
    Cursor read_stream_backward(const std::string &stream, uint64_t from_version = kPositionEnd) {
        evs_cursor *c = nullptr;
        detail::check(evs_read_stream_backward(ptr_, detail::c_str(stream, "stream"), from_version, &c));
        return Cursor(c);
    }
    // Every stream whose name starts with `prefix` (e.g. "account-"), in global order.
    Cursor read_category(const std::string &prefix, uint64_t from_position = 0) {
        evs_cursor *c = nullptr;
        detail::check(evs_read_category(ptr_, detail::c_str(prefix, "stream_prefix"), from_position, &c));
        return Cursor(c);
    }
    // The event at `position`, copied.
    OwnedEvent read_event(uint64_t position) {
        evs_event e = detail::init<evs_event>();
        evs_event_data *data = nullptr;
        detail::check(evs_read_event(ptr_, position, &e, &data));
        std::unique_ptr<evs_event_data, void (*)(evs_event_data *)> owned(data, evs_event_data_free);
        return detail::to_event(e).to_owned();
    }
    // Every stream as it is now, in creation order.
    std::vector<StreamInfo> list_streams() {
        evs_stream_list *list = nullptr;
        detail::check(evs_list_streams(ptr_, &list));
        std::unique_ptr<evs_stream_list, void (*)(evs_stream_list *)> owned(list, evs_stream_list_free);
        std::vector<StreamInfo> out;
        evs_stream_info info = detail::init<evs_stream_info>();
        while (detail::check(evs_stream_list_next(list, &info)) == EVS_OK)
            out.push_back(StreamInfo{std::string(info.name, info.name_len), info.version, info.first_position});
        return out;
    }
    // Starts a subscription from `from_position` (see Subscription). The function runs on
    // a library thread; it may call this Store.
    Subscription subscribe(uint64_t from_position, Subscription::Fn fn) {
        return subscribe_filtered(from_position, "", {}, std::move(fn));
    }
    // Only events of streams starting with `stream_prefix` ("": any) whose type is one of
    // `types` (none: any).
    Subscription subscribe_filtered(uint64_t from_position, const std::string &stream_prefix,
                                    const std::vector<std::string> &types, Subscription::Fn fn) {
        if (!fn)
            throw Error(Code::InvalidArgument, "the subscription's function is empty");
        std::vector<const char *> ctypes;
        for (const std::string &t : types)
            ctypes.push_back(detail::c_str(t, "types"));
        auto state = std::make_unique<Subscription::State>();
        state->fn = std::move(fn);
        Subscription sub(std::move(state));
        detail::check(evs_subscribe_filtered(
            ptr_, from_position, stream_prefix.empty() ? nullptr : detail::c_str(stream_prefix, "stream_prefix"),
            ctypes.empty() ? nullptr : ctypes.data(), ctypes.size(), &Subscription::trampoline, sub.state_.get(),
            &sub.ptr_));
        return sub;
    }
    Cursor poll(uint64_t from_position, size_t max_events) {
        evs_cursor *c = nullptr;
        detail::check(evs_poll(ptr_, from_position, max_events, &c));
        return Cursor(c);
    }

    // The first position whose timestamp is after `timestamp_us`; the next position if
    // none (position_at(kPositionEnd) is the next position).
    uint64_t position_at(uint64_t timestamp_us) {
        uint64_t pos = 0;
        detail::check(evs_position_at(ptr_, timestamp_us, &pos));
        return pos;
    }
    // The version of the stream's last event; -1 when it does not exist.
    int64_t stream_version(const std::string &stream) {
        int64_t v = 0;
        detail::check(evs_stream_version(ptr_, detail::c_str(stream, "stream"), &v));
        return v;
    }
    // Writes a snapshot; returns the number of events it covers.
    uint64_t snapshot() {
        uint64_t pos = 0;
        detail::check(evs_snapshot(ptr_, &pos));
        return pos;
    }
    // Data that leaves (docs/lifecycle.md in the repository). Each operation is an entry
    // of the log and returns its position (it holds no event); it is durable under the
    // store's fsync policy, and every read obeys it once the call returns. `id` (all
    // zero: none) makes it idempotent: a retry with the same id and operation writes
    // nothing and returns the first one's position; the id given to anything else throws
    // Code::AlreadyExists. Each also throws Code::ReadOnly, Code::Busy (a write with the
    // id is still being made durable: retry), Code::Io (nothing counts: retry with the id).

    // Forgets data subject `subject` (crypto-shredding): its key is destroyed, so every
    // read, in every process, gives its events erased (Event::erased, payload and
    // metadata empty; stream, type, position and version stay), and no new event may
    // name it. Returns the position of the forget's entry (forgetting again: the first
    // one's). Throws Code::InvalidArgument (an empty subject), Code::ReadOnly, Code::Io,
    // Code::Unavailable (PostgreSQL: no server).
    uint64_t forget_subject(const std::string &subject) {
        uint64_t pos = 0;
        detail::check(evs_forget_subject(ptr_, detail::c_str(subject, "subject"), &pos));
        return pos;
    }

    // Removes every event `stream` has so far from every read, if it is at
    // `expected_version` (kExpectAny, kExpectExists or its version; kExpectNoStream is
    // Code::InvalidArgument). Throws, in this order of the checks: Code::StreamDeleted
    // (hard-deleted already), Code::NotFound (never had an event; for a soft delete also:
    // soft-deleted and not appended to since), Code::WrongExpectedVersion (actual_version()
    // gives the version, -1 for none). An account's stream ("account-<id>") throws
    // Code::BalanceNotZero while its balance is not zero; afterwards the account is not
    // found.
    uint64_t delete_stream(const std::string &stream, int64_t expected_version, DeleteMode mode = DeleteMode::Soft,
                           const EventId &id = {}) {
        uint64_t pos = 0;
        detail::check(evs_delete_stream(ptr_, detail::c_str(stream, "stream"), expected_version,
                                        static_cast<uint32_t>(mode), id.data(), &pos));
        return pos;
    }
    // Removes the events of `stream` with a version below `before_version` (at most its
    // version + 1, which removes every event) from every read; the rest keep their
    // versions, and the stream its version for writers. A lower bound than an earlier
    // truncation's removes nothing more. Throws Code::StreamDeleted, Code::NotFound,
    // Code::InvalidArgument (past the version + 1; an account's stream).
    uint64_t truncate_stream(const std::string &stream, uint64_t before_version, const EventId &id = {}) {
        uint64_t pos = 0;
        detail::check(evs_truncate_stream(ptr_, detail::c_str(stream, "stream"), before_version, id.data(), &pos));
        return pos;
    }
    // Sets `stream`'s own rule (it wins over its categories'); a zero rule clears it. It
    // applies to the past and future events at once; changing or clearing a rule never
    // brings an event back. A rule on an account's stream is Code::InvalidArgument.
    uint64_t set_retention(const std::string &stream, const Retention &rule, const EventId &id = {}) {
        return put_retention(stream, "stream", 0, &rule, id);
    }
    // Sets the rule of every stream whose name starts with `prefix` (e.g. "telemetry-")
    // and has no rule of its own; the longest matching prefix wins. A prefix that would
    // cover account streams ("account-..." or a prefix of "account-", "" included) is
    // Code::InvalidArgument.
    uint64_t set_category_retention(const std::string &prefix, const Retention &rule, const EventId &id = {}) {
        return put_retention(prefix, "prefix", EVS_RETENTION_CATEGORY, &rule, id);
    }
    // Removes `stream`'s own rule (its categories' applies then); what it removed stays
    // removed.
    uint64_t clear_retention(const std::string &stream, const EventId &id = {}) {
        return put_retention(stream, "stream", 0, nullptr, id);
    }
    // Removes the rule set on exactly `prefix`; what it removed stays removed.
    uint64_t clear_category_retention(const std::string &prefix, const EventId &id = {}) {
        return put_retention(prefix, "prefix", EVS_RETENTION_CATEGORY, nullptr, id);
    }
    // The rule in force for `stream`: its own, else its longest matching category's; a
    // zero Retention when there is none.
    Retention retention(const std::string &stream) { return get_retention(stream, "stream", 0); }
    // The rule set on exactly `prefix` (not one inherited from a shorter prefix); a zero
    // Retention when there is none.
    Retention category_retention(const std::string &prefix) {
        return get_retention(prefix, "prefix", EVS_RETENTION_CATEGORY);
    }

    // Erases the bytes of removed events now; blocks until done. The file engine rewrites
    // every segment holding a removed event (sealing the active one first when it holds
    // one, so that afterwards no file of the store holds a removed event's type, payload
    // or metadata), online and throttled (Options::set_compaction); PostgreSQL deletes the
    // rows that rules by age removed. Copies made before (backups, replicas) keep them.
    CompactInfo compact() {
        CompactInfo info = detail::init<CompactInfo>();
        detail::check(evs_compact(ptr_, &info));
        return info;
    }

    // The counters; removed_events, lifecycle_entries and reclaimable_bytes say what the
    // operations above removed and what a compaction would free (file engine).
    Stats stats() {
        Stats s = detail::init<Stats>();
        detail::check(evs_stats_get(ptr_, &s));
        return s;
    }
    // The options the store runs with, defaults filled in.
    StoreOptions options() {
        StoreOptions o = detail::init<StoreOptions>();
        detail::check(evs_store_options_get(ptr_, &o));
        return o;
    }
    // The counters in the Prometheus text format.
    std::string metrics_text() {
        char *text = nullptr;
        detail::check(evs_metrics_text(ptr_, &text));
        std::unique_ptr<char, void (*)(char *)> owned(text, evs_string_free);
        return std::string(owned.get());
    }

    // Accounts. Each write returns the position of its event (a transfer: the
    // withdrawal's). An empty currency means "USD".
    uint64_t open_account(const std::string &id, int64_t initial_balance, const std::string &currency = "") {
        uint64_t pos = 0;
        const char *cur = currency.empty() ? nullptr : detail::c_str(currency, "currency");
        detail::check(evs_account_open(ptr_, detail::c_str(id, "account_id"), initial_balance, cur, &pos));
        return pos;
    }
    uint64_t deposit(const std::string &id, int64_t amount) {
        uint64_t pos = 0;
        detail::check(evs_account_deposit(ptr_, detail::c_str(id, "account_id"), amount, &pos));
        return pos;
    }
    uint64_t withdraw(const std::string &id, int64_t amount) {
        uint64_t pos = 0;
        detail::check(evs_account_withdraw(ptr_, detail::c_str(id, "account_id"), amount, &pos));
        return pos;
    }
    uint64_t transfer(const std::string &from_id, const std::string &to_id, int64_t amount) {
        uint64_t pos = 0;
        detail::check(evs_account_transfer(ptr_, detail::c_str(from_id, "from_id"),
                                           detail::c_str(to_id, "to_id"), amount, &pos));
        return pos;
    }
    uint64_t close_account(const std::string &id) {
        uint64_t pos = 0;
        detail::check(evs_account_close(ptr_, detail::c_str(id, "account_id"), &pos));
        return pos;
    }
    Account get_account(const std::string &id) {
        evs_account a = detail::init<evs_account>();
        detail::check(evs_account_get(ptr_, detail::c_str(id, "account_id"), &a));
        return to_account(a);
    }
    // The account after its last event at or before `as_of_timestamp_us`.
    Account get_account_at(const std::string &id, uint64_t as_of_timestamp_us) {
        evs_account a = detail::init<evs_account>();
        detail::check(evs_account_get_at(ptr_, detail::c_str(id, "account_id"), as_of_timestamp_us, &a));
        return to_account(a);
    }

    // Opens durable consumer `name` (1 to 100 bytes of UTF-8), made on its first open.
    // Throws Error: Code::InvalidArgument (a bad name or options; `partitions` on a file
    // store, or not the group's count), Code::Locked (open already, here or in another
    // process; on PostgreSQL until a dead holder's lease ends), Code::Unavailable
    // (PostgreSQL cannot be reached now), Code::Io, Code::Corrupt (a damaged journal).
    Consumer open_consumer(const std::string &name, const ConsumerOptions &opts = {}) {
        evs_consumer_options o = detail::init<evs_consumer_options>();
        std::vector<const char *> ctypes;
        for (const std::string &t : opts.types)
            ctypes.push_back(detail::c_str(t, "types"));
        o.start_position = opts.start_position;
        o.stream_prefix = opts.stream_prefix.empty() ? nullptr : detail::c_str(opts.stream_prefix, "stream_prefix");
        o.types = ctypes.empty() ? nullptr : ctypes.data();
        o.types_count = ctypes.size();
        o.checkpoint_every = opts.checkpoint_every;
        o.checkpoint_interval_ms = opts.checkpoint_interval_ms;
        o.max_retries = opts.max_retries;
        o.retry_backoff_ms = opts.retry_backoff_ms;
        o.retry_backoff_max_ms = opts.retry_backoff_max_ms;
        o.lease_ms = opts.lease_ms;
        o.partitions = opts.partitions;
        evs_consumer *c = nullptr;
        detail::check(evs_consumer_open(ptr_, detail::c_str(name, "name"), &o, &c));
        return Consumer(c);
    }

    // Every durable consumer with its checkpoint, lag and parked count, by name (none on
    // PostgreSQL).
    std::vector<ConsumerInfo> consumers() {
        evs_consumer_list *l = nullptr;
        detail::check(evs_list_consumers(ptr_, &l));
        std::unique_ptr<evs_consumer_list, void (*)(evs_consumer_list *)> owned(l, evs_consumer_list_free);
        std::vector<ConsumerInfo> out;
        for (size_t i = 0, n = evs_consumer_list_count(l); i < n; i++) {
            evs_consumer_info c = detail::init<evs_consumer_info>();
            detail::check(evs_consumer_list_get(l, i, &c));
            out.push_back(ConsumerInfo{c.name, c.next_position, c.lag_events, c.lag_us, c.parked, c.open});
        }
        return out;
    }

    // The parked events of consumer `name` (open or not), by position; Code::NotFound
    // when there is no such consumer.
    std::vector<ParkedEvent> parked(const std::string &name) {
        evs_parked_list *l = nullptr;
        detail::check(evs_list_parked(ptr_, detail::c_str(name, "name"), &l));
        std::unique_ptr<evs_parked_list, void (*)(evs_parked_list *)> owned(l, evs_parked_list_free);
        std::vector<ParkedEvent> out;
        for (size_t i = 0, n = evs_parked_list_count(l); i < n; i++) {
            evs_parked_event p = detail::init<evs_parked_event>();
            detail::check(evs_parked_list_get(l, i, &p));
            out.push_back(ParkedEvent{p.position, p.parked_at_us, p.reason});
        }
        return out;
    }

    // Consumer `name` (made if new; not open anywhere, else Code::Locked) is next given
    // the events from `position` on (Code::NotFound: past the log's end).
    void reset_consumer(const std::string &name, uint64_t position) {
        detail::check(evs_consumer_reset(ptr_, detail::c_str(name, "name"), position));
    }
    // ... from the first event after `timestamp_us` (microseconds since the Unix epoch).
    void reset_consumer_to_time(const std::string &name, uint64_t timestamp_us) {
        reset_consumer(name, position_at(timestamp_us));
    }
    // Forgets consumer `name`: its checkpoint and parked events (Code::NotFound: none;
    // Code::Locked: it is open).
    void delete_consumer(const std::string &name) {
        detail::check(evs_consumer_delete(ptr_, detail::c_str(name, "name")));
    }

    evs_store *get() const noexcept { return ptr_; }

private:
    void open(const std::string &path, const evs_options *opts) {
        info_ = detail::init<RecoveryInfo>();
        detail::check(evs_open(detail::c_str(path, "path"), opts, &ptr_, &info_));
    }
    uint64_t put_retention(const std::string &target, const char *argument, uint32_t flags, const Retention *rule,
                           const EventId &id) {
        evs_retention r = detail::init<evs_retention>();
        if (rule != nullptr) {
            r.max_count = rule->max_count;
            r.max_age_us = rule->max_age_us;
        }
        uint64_t pos = 0;
        detail::check(evs_set_retention(ptr_, detail::c_str(target, argument), flags, rule ? &r : nullptr, id.data(),
                                        &pos));
        return pos;
    }
    Retention get_retention(const std::string &name, const char *argument, uint32_t flags) {
        evs_retention r = detail::init<evs_retention>();
        detail::check(evs_get_retention(ptr_, detail::c_str(name, argument), flags, &r));
        return Retention{r.max_count, r.max_age_us};
    }
    static Account to_account(const evs_account &a) {
        const void *nul = std::memchr(a.currency, '\0', sizeof a.currency);
        size_t n = nul ? static_cast<size_t>(static_cast<const char *>(nul) - a.currency) : sizeof a.currency;
        return Account{a.balance, a.is_closed, std::string(a.currency, n), a.version, a.last_position};
    }

    evs_store *ptr_ = nullptr;
    RecoveryInfo info_{};
};

}  // namespace evstore

#endif  // EVSTORE_HPP
