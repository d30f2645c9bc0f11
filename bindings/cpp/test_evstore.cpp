// GoogleTest tests of the C++ wrapper (evstore.hpp) over libevstore.
#include "evstore.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using evstore::Code;

namespace {

// A fresh directory per test, removed afterwards.
class EvstoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "evstore-cpp-XXXXXX").string();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        root_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    std::string path(const std::string &name) const { return (root_ / name).string(); }

    fs::path root_;
};

// Runs f, which must throw evstore::Error with `code`; returns the error.
template <typename F>
evstore::Error caught(F &&f, Code code) {
    try {
        f();
    } catch (const evstore::Error &e) {
        EXPECT_EQ(e.code(), code) << e.name() << ": " << e.what();
        return e;
    }
    ADD_FAILURE() << "no evstore::Error thrown, expected " << evstore::code_name(code);
    return evstore::Error(Code::Ok, "");
}

// Runs f, which must throw evstore::Error with `code` and a message; returns the message.
template <typename F>
std::string expect_error(F &&f, Code code) {
    evstore::Error e = caught(std::forward<F>(f), code);
    EXPECT_STRNE(e.what(), "") << e.name();
    return e.what();
}

std::vector<evstore::OwnedEvent> drain(evstore::Cursor c) {
    std::vector<evstore::OwnedEvent> out;
    evstore::OwnedEvent e;
    while (c.next(e))
        out.push_back(e);
    return out;
}

}  // namespace

TEST(Evstore, VersionAndCodeNames) {
    EXPECT_EQ(evstore::version(), std::to_string(EVS_VERSION_MAJOR) + "." +
                                      std::to_string(EVS_VERSION_MINOR) + "." +
                                      std::to_string(EVS_VERSION_PATCH));
    EXPECT_STREQ(evstore::code_name(Code::WrongExpectedVersion), "EVS_ERR_WRONG_EXPECTED_VERSION");
    EXPECT_STREQ(evstore::code_name(Code::Io), "EVS_ERR_IO");
}

TEST_F(EvstoreTest, AppendAndReadRoundTrip) {
    evstore::Store s(path("s"));
    EXPECT_EQ(s.append_event("Started", R"({"n":1})"), 0u);
    const std::string binary("\x00\x01\xff", 3);
    auto r = s.append("order-1", evstore::kExpectNoStream,
                      {{"OrderPlaced", "p0", "m0", 3}, {"OrderPaid", binary, {}, 0}, {"OrderShipped", {}, {}, 0}});
    EXPECT_EQ(r.first_position, 1u);
    EXPECT_EQ(r.stream_version, 2u);

    auto all = drain(s.read_all(0));
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[0].stream, "");
    EXPECT_EQ(all[0].type, "Started");
    EXPECT_EQ(all[0].payload, R"({"n":1})");
    for (size_t i = 0; i < all.size(); i++) {
        EXPECT_EQ(all[i].position, i);
        if (i > 0) {
            EXPECT_GE(all[i].timestamp_us, all[i - 1].timestamp_us);
        }
    }
    EXPECT_EQ(all[1].stream, "order-1");
    EXPECT_EQ(all[1].type, "OrderPlaced");
    EXPECT_EQ(all[1].payload, "p0");
    EXPECT_EQ(all[1].metadata, "m0");
    EXPECT_EQ(all[1].schema_version, 3u);
    EXPECT_EQ(all[2].payload, binary);
    EXPECT_EQ(all[2].schema_version, 1u);  // 0 is stored as 1
    EXPECT_EQ(all[3].stream_version, 2u);
    EXPECT_EQ(all[3].payload, "");

    auto stream = drain(s.read_stream("order-1", 1));
    ASSERT_EQ(stream.size(), 2u);
    EXPECT_EQ(stream[0].type, "OrderPaid");
    auto back = drain(s.read_all_backward());
    ASSERT_EQ(back.size(), 4u);
    EXPECT_EQ(back.front().position, 3u);
    EXPECT_EQ(back.back().position, 0u);
    auto polled = drain(s.poll(1, 2));
    ASSERT_EQ(polled.size(), 2u);
    EXPECT_EQ(polled[1].position, 2u);
    EXPECT_EQ(s.stream_version("order-1"), 2);
    EXPECT_EQ(s.stream_version("missing"), -1);
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), 4u);

    // a forward cursor tails the log
    evstore::Cursor c = s.read_all(4);
    evstore::Event e;
    EXPECT_FALSE(c.next(e));
    s.append_event("Later", "x");
    ASSERT_TRUE(c.next(e));
    EXPECT_EQ(e.position, 4u);
    EXPECT_EQ(e.type, "Later");

    expect_error([&] { s.read_stream("missing"); }, Code::NotFound);
    expect_error([&] { s.read_all(99); }, Code::NotFound);
    expect_error([&] { s.append_event("", "x"); }, Code::InvalidArgument);
    expect_error([&] { s.append("order-1", evstore::kExpectAny, {}); }, Code::InvalidArgument);
    expect_error([&] { s.append(std::string("a\0b", 3), evstore::kExpectAny, {{"T", "x", {}, 0}}); },
                 Code::InvalidArgument);
}

TEST_F(EvstoreTest, WrongExpectedVersionGivesCodeAndMessage) {
    evstore::Store s(path("s"));
    std::vector<evstore::EventInput> ev{{"T", "x", {}, 0}};
    expect_error([&] { s.append("s", 0, ev); }, Code::WrongExpectedVersion);
    expect_error([&] { s.append("s", evstore::kExpectExists, ev); }, Code::WrongExpectedVersion);
    EXPECT_EQ(s.append("s", evstore::kExpectNoStream, ev).stream_version, 0u);
    for (int64_t v = 0; v < 12; v++) {
        EXPECT_EQ(s.append("s", v, ev).stream_version, static_cast<uint64_t>(v + 1));
    }
    uint64_t before = s.position_at(evstore::kPositionEnd);
    std::string msg = expect_error([&] { s.append("s", 3, ev); }, Code::WrongExpectedVersion);
    EXPECT_NE(msg.find("12"), std::string::npos) << "message does not name the actual version: " << msg;
    expect_error([&] { s.append("s", evstore::kExpectNoStream, ev); }, Code::WrongExpectedVersion);
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), before);
    EXPECT_EQ(s.append("s", 12, ev).stream_version, 13u);
}

TEST_F(EvstoreTest, SeedOpenAndDeposit) {
    evstore::Store s(path("s"));
    EXPECT_EQ(s.open_account("alice", 1000), 0u);
    uint64_t dep = s.deposit("alice", 500);
    auto a = s.get_account("alice");
    EXPECT_EQ(a.balance, 1500);
    EXPECT_FALSE(a.is_closed);
    EXPECT_EQ(a.currency, "USD");
    EXPECT_EQ(a.version, 2u);
    EXPECT_EQ(a.last_position, dep);
    auto evs = drain(s.read_stream("account-alice"));
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_EQ(evs[1].payload, R"({"MoneyDeposited":{"account_id":"alice","amount":500}})");
}

TEST_F(EvstoreTest, SeedDepositAndWithdrawSurviveCloseAndReopen) {
    {
        evstore::Store s(path("s"));
        s.open_account("bob", 2000, "USD");
        s.deposit("bob", 1000);
        s.withdraw("bob", 500);
        EXPECT_EQ(s.get_account("bob").balance, 2500);
        s.close();
        s.close();  // harmless
    }
    evstore::Store s(path("s"));
    auto a = s.get_account("bob");
    EXPECT_EQ(a.balance, 2500);
    EXPECT_EQ(a.version, 3u);
}

TEST_F(EvstoreTest, SeedWithdrawalPastBalanceRefused) {
    evstore::Store s(path("s"));
    s.open_account("carol", 100);
    uint64_t before = s.position_at(evstore::kPositionEnd);
    std::string msg = expect_error([&] { s.withdraw("carol", 150); }, Code::InsufficientFunds);
    EXPECT_NE(msg.find("carol"), std::string::npos) << msg;
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), before);
    EXPECT_EQ(s.get_account("carol").balance, 100);
    s.withdraw("carol", 100);
    expect_error([&] { s.withdraw("carol", 1); }, Code::InsufficientFunds);
}

TEST_F(EvstoreTest, AccountRules) {
    evstore::Store s(path("s"));
    s.open_account("a", 10);
    expect_error([&] { s.open_account("a", 10); }, Code::AlreadyExists);
    expect_error([&] { s.deposit("nobody", 1); }, Code::NotFound);
    expect_error([&] { s.get_account("nobody"); }, Code::NotFound);
    expect_error([&] { s.deposit("a", 0); }, Code::InvalidArgument);
    expect_error([&] { s.deposit("a", -5); }, Code::InvalidArgument);
    expect_error([&] { s.open_account("b", 1, "usd"); }, Code::InvalidArgument);
    expect_error([&] { s.open_account("", 1); }, Code::InvalidArgument);
    expect_error([&] { s.deposit("a", INT64_MAX); }, Code::Overflow);
    s.close_account("a");
    expect_error([&] { s.deposit("a", 1); }, Code::AccountClosed);
    auto a = s.get_account("a");
    EXPECT_TRUE(a.is_closed);
    EXPECT_EQ(a.balance, 10);

    s.open_account("tt", 5, "EUR");
    uint64_t opened_at = drain(s.read_stream("account-tt"))[0].timestamp_us;
    s.deposit("tt", 7);
    auto then = s.get_account_at("tt", opened_at);
    EXPECT_EQ(then.balance, 5);
    EXPECT_EQ(then.currency, "EUR");
    EXPECT_EQ(s.get_account_at("tt", evstore::kPositionEnd).balance, 12);
    expect_error([&] { s.get_account_at("tt", opened_at - 1); }, Code::NotFound);
}

TEST_F(EvstoreTest, Transfers) {
    evstore::Store s(path("s"));
    s.open_account("from", 1000);
    s.open_account("to", 0);
    s.open_account("euro", 0, "EUR");
    uint64_t next = s.position_at(evstore::kPositionEnd);
    uint64_t pos = s.transfer("from", "to", 300);
    EXPECT_EQ(pos, next);  // the withdrawal side
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), next + 2);
    EXPECT_EQ(s.get_account("from").balance, 700);
    EXPECT_EQ(s.get_account("to").balance, 300);
    auto w = drain(s.read_stream("account-from", 1));
    auto d = drain(s.read_stream("account-to", 1));
    ASSERT_EQ(w.size(), 1u);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(w[0].position, pos);
    EXPECT_EQ(d[0].position, pos + 1);

    expect_error([&] { s.transfer("from", "to", 701); }, Code::InsufficientFunds);
    expect_error([&] { s.transfer("from", "from", 1); }, Code::InvalidArgument);
    expect_error([&] { s.transfer("from", "nobody", 1); }, Code::NotFound);
    expect_error([&] { s.transfer("from", "euro", 1); }, Code::CurrencyMismatch);
    s.close_account("to");
    expect_error([&] { s.transfer("from", "to", 1); }, Code::AccountClosed);
    EXPECT_EQ(s.get_account("from").balance, 700);
}

TEST_F(EvstoreTest, ConcurrentThreads) {
    evstore::Store s(path("s"));
    constexpr int kThreads = 8, kOps = 200;
    s.open_account("hub", 0);
    for (int t = 0; t < kThreads; t++) {
        s.open_account("t" + std::to_string(t), 1000);
    }
    uint64_t start = s.position_at(evstore::kPositionEnd);

    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([&, t] {
            const std::string id = "t" + std::to_string(t), stream = "stream-" + std::to_string(t);
            try {
                for (int i = 0; i < kOps; i++) {
                    std::string payload = std::to_string(t) + "/" + std::to_string(i);
                    auto r = s.append(stream, i == 0 ? evstore::kExpectNoStream : i - 1, {{"T", payload, {}, 0}});
                    if (r.stream_version != static_cast<uint64_t>(i)) {
                        ADD_FAILURE() << id << ": append " << i << " gave version " << r.stream_version;
                        failures++;
                    }
                    s.append("shared", evstore::kExpectAny, {{"S", payload, {}, 0}});
                    s.transfer(id, "hub", 3);
                    if (i % 4 == 0) {
                        try {
                            s.transfer("hub", id, 1);
                        } catch (const evstore::Error &e) {
                            if (e.code() != Code::InsufficientFunds) {
                                throw;
                            }
                        }
                    }
                    // the message of a failing call is this thread's
                    try {
                        s.withdraw(id, 1000000);
                        ADD_FAILURE() << id << ": an overdraft succeeded";
                        failures++;
                    } catch (const evstore::Error &e) {
                        if (e.code() != Code::InsufficientFunds ||
                            std::string(e.what()).find("'" + id + "'") == std::string::npos) {
                            ADD_FAILURE() << id << ": " << e.name() << ": " << e.what();
                            failures++;
                        }
                    }
                }
            } catch (const evstore::Error &e) {
                ADD_FAILURE() << id << ": " << e.name() << ": " << e.what();
                failures++;
            }
        });
    }
    for (auto &th : threads)
        th.join();
    ASSERT_EQ(failures.load(), 0);

    int64_t total = s.get_account("hub").balance;
    for (int t = 0; t < kThreads; t++) {
        total += s.get_account("t" + std::to_string(t)).balance;
        EXPECT_EQ(s.stream_version("stream-" + std::to_string(t)), kOps - 1);
    }
    EXPECT_EQ(total, kThreads * 1000);
    EXPECT_EQ(s.stream_version("shared"), kThreads * kOps - 1);
    auto all = drain(s.read_all(start));
    for (size_t i = 0; i < all.size(); i++) {
        ASSERT_EQ(all[i].position, start + i);
    }
    EXPECT_EQ(all.size(), s.position_at(evstore::kPositionEnd) - start);
}

TEST_F(EvstoreTest, ReadAfterReopen) {
    evstore::Options opts;
    opts.set_fsync(evstore::FsyncPolicy::Os).set_max_segment_size(64 * 1024);
    std::vector<std::string> payloads;
    {
        evstore::Store s(path("s"), opts);
        EXPECT_EQ(s.recovery_info().next_position, 0u);
        EXPECT_EQ(s.recovery_info().snapshot_position, UINT64_MAX);
        for (int i = 0; i < 200; i++) {
            payloads.push_back(std::to_string(i) + std::string(1024, 'x'));
            EXPECT_EQ(s.append_event("E", payloads.back()), static_cast<uint64_t>(i));
        }
        s.open_account("keep", 42);
        s.sync();
        auto st = s.stats();
        EXPECT_EQ(st.events, 201u);
        EXPECT_GE(st.segments, 2u);
        EXPECT_EQ(st.accounts, 1u);
        EXPECT_NE(s.metrics_text().find("evstore_events_total 201"), std::string::npos);
    }
    evstore::Store s(path("s"), opts);
    EXPECT_EQ(s.recovery_info().next_position, 201u);
    EXPECT_FALSE(s.recovery_info().corruption_detected);
    auto all = drain(s.read_all());
    ASSERT_EQ(all.size(), 201u);
    for (size_t i = 0; i < payloads.size(); i++) {
        EXPECT_EQ(all[i].position, i);
        EXPECT_EQ(all[i].type, "E");
        EXPECT_EQ(all[i].payload, payloads[i]);
    }
    EXPECT_EQ(s.get_account("keep").balance, 42);

    expect_error([&] { evstore::Store second(path("s")); }, Code::Locked);
    evstore::Options ro;
    ro.set_read_only(true);
    evstore::Store r(path("s"), ro);
    EXPECT_EQ(drain(r.read_all()).size(), 201u);
    expect_error([&] { r.append_event("E", "x"); }, Code::ReadOnly);
    expect_error([&] { r.snapshot(); }, Code::ReadOnly);
}

TEST_F(EvstoreTest, SnapshotOptionsAndMoves) {
    {
        evstore::Store s(path("s"));
        s.open_account("snap", 10);
        s.deposit("snap", 5);
        EXPECT_EQ(s.snapshot(), 2u);
    }
    evstore::Store s(path("s"));
    EXPECT_EQ(s.recovery_info().snapshot_position, 2u);
    EXPECT_EQ(s.get_account("snap").balance, 15);

    // a moved-from store is empty; the moved-to one works and closes once
    evstore::Store moved(std::move(s));
    EXPECT_EQ(s.get(), nullptr);
    EXPECT_EQ(moved.get_account("snap").balance, 15);

    evstore::Options o;
    expect_error([&] { o.set_fsync(evstore::FsyncPolicy::Batch, 0); }, Code::InvalidArgument);
    expect_error([&] { o.set_fsync(static_cast<evstore::FsyncPolicy>(7)); }, Code::InvalidArgument);
    expect_error([&] { o.set_max_segment_size(1); }, Code::InvalidArgument);
    o.set_fsync(evstore::FsyncPolicy::Always).set_preallocate(false).set_snapshot_every(100);
    expect_error([&] { evstore::Store bad(path("missing/s"), o); }, Code::Io);
}

TEST_F(EvstoreTest, SubscriptionExceptionsStopItAndCloseRethrows) {
    evstore::Store s(path("s"));
    for (int i = 0; i < 5; i++)
        s.append_event("E", "x");
    std::atomic<int> seen{0};
    auto sub = s.subscribe(0, [&](const evstore::Event &e) {
        if (e.position == 2)
            throw std::runtime_error("callback failed at 2");
        seen++;
        return true;
    });
    for (int i = 0; i < 5000 && sub.running(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_FALSE(sub.running());
    EXPECT_EQ(seen.load(), 2);
    try {
        sub.close();
        FAIL() << "close() did not rethrow";
    } catch (const std::runtime_error &e) {
        EXPECT_STREQ(e.what(), "callback failed at 2");
    }
    sub.close();  // once closed, a no-op

    std::atomic<int> got{0};
    auto live = s.subscribe(0, [&](const evstore::Event &) { return ++got < 3; });
    for (int i = 0; i < 5000 && live.running(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(got.load(), 3);
    live.close();  // stopped by its function: no error
}

TEST_F(EvstoreTest, RangeForOverCursorsAndNewReads) {
    evstore::Store s(path("s"));
    s.append("order-1", evstore::kExpectAny, {{"A", "a", "", 0, {}}, {"B", std::string_view("\0\x01\xff", 3), "m", 2, {}}});
    s.append("user-1", evstore::kExpectAny, {{"U", "u", "", 0, {}}});
    s.append("order-2", evstore::kExpectAny, {{"D", "d", "", 0, {}}});

    std::vector<uint64_t> all;
    for (const evstore::Event &e : s.read_all())
        all.push_back(e.position);
    EXPECT_EQ(all, (std::vector<uint64_t>{0, 1, 2, 3}));

    std::vector<uint64_t> back;
    for (const evstore::Event &e : s.read_stream_backward("order-1"))
        back.push_back(e.stream_version);
    EXPECT_EQ(back, (std::vector<uint64_t>{1, 0}));

    std::vector<std::string> category;
    for (const evstore::Event &e : s.read_category("order-"))
        category.emplace_back(e.stream);
    EXPECT_EQ(category, (std::vector<std::string>{"order-1", "order-1", "order-2"}));

    evstore::OwnedEvent one = s.read_event(1);
    EXPECT_EQ(one.type, "B");
    EXPECT_EQ(one->type, "B");  // as when read_event returned a handle
    evstore::ByteView bytes = one.payload_bytes();
    ASSERT_EQ(bytes.size(), 3u);
    EXPECT_EQ(bytes[0], 0u);
    EXPECT_EQ(bytes[2], 0xffu);
    EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), (std::vector<uint8_t>{0, 1, 0xff}));
    EXPECT_EQ(one.metadata_bytes().as_string(), "m");
    EXPECT_EQ(one.schema_version, 2u);
    expect_error([&] { s.read_event(99); }, Code::NotFound);
    expect_error([&] { s.read_category(""); }, Code::InvalidArgument);
    expect_error([&] { s.read_stream_backward("nope"); }, Code::NotFound);

    auto streams = s.list_streams();
    ASSERT_EQ(streams.size(), 3u);
    EXPECT_EQ(streams[0].name, "order-1");
    EXPECT_EQ(streams[0].version, 1u);
    EXPECT_EQ(streams[2].name, "order-2");
    EXPECT_EQ(streams[2].first_position, 3u);

    // A forward cursor used as a range ends at "no more now"; a later loop sees more.
    evstore::Cursor tail = s.read_all(4);
    EXPECT_EQ(tail.begin(), tail.end());
    s.append_event("Later", "");
    int later = 0;
    for (const evstore::Event &e : tail) {
        EXPECT_EQ(e.type, "Later");
        later++;
    }
    EXPECT_EQ(later, 1);
}

TEST_F(EvstoreTest, AppendMultiAndEventIds) {
    evstore::Store s(path("s"));
    evstore::EventId id1{1}, id2{2};
    auto r = s.append_multi({{"a", evstore::kExpectNoStream, {{"Opened", "", "", 0, id1}}},
                             {"b", evstore::kExpectNoStream, {{"Opened", "", "", 0, id2}, {"Credited", "5", "", 0, {}}}}});
    EXPECT_EQ(r.first_position, 0u);
    EXPECT_EQ(r.stream_versions, (std::vector<uint64_t>{0, 1}));
    // All or nothing: a wrong expected version in one part writes nothing.
    expect_error([&] {
        s.append_multi({{"c", evstore::kExpectNoStream, {{"Opened", "", "", 0, {}}}},
                        {"a", evstore::kExpectNoStream, {{"Again", "", "", 0, {}}}}});
    }, Code::WrongExpectedVersion);
    EXPECT_EQ(s.stream_version("c"), -1);
    expect_error([&] { s.append_multi({}); }, Code::InvalidArgument);

    // A retry of an append whose events carry ids stores nothing.
    evstore::EventId id3{3};
    auto first = s.append("a", 0, {{"Paid", "x", "", 0, id3}});
    auto retry = s.append("a", 0, {{"Paid", "x", "", 0, id3}});
    EXPECT_EQ(retry.first_position, first.first_position);
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), 4u);
    evstore::Event e;
    evstore::Cursor c = s.read_stream("a", 1);
    ASSERT_TRUE(c.next(e));
    EXPECT_TRUE(e.has_id());
    EXPECT_EQ(e.id, id3);
    EXPECT_EQ(s.stats().event_ids, 3u);
}

TEST_F(EvstoreTest, SubscriptionStatusAndAnyThrownValue) {
    evstore::Store s(path("s"));
    s.append_event("E", "x");
    // Not a std::exception: the trampoline catches it too.
    auto sub = s.subscribe(0, [](const evstore::Event &) -> bool { throw 42; });
    for (int i = 0; i < 5000 && sub.running(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_FALSE(sub.running());
    EXPECT_EQ(sub.status(), Code::Internal);
    EXPECT_TRUE(sub.exception());
    EXPECT_EQ(sub.error_message(), "the subscription's function threw");
    try {
        sub.close();
        FAIL() << "close() did not rethrow";
    } catch (int v) {
        EXPECT_EQ(v, 42);
    }
    expect_error([&] { sub.status(); }, Code::InvalidArgument);

    // Filtered, and a running one reports Ok; the store's close ends it without error.
    std::atomic<int> got{0};
    auto filtered = s.subscribe_filtered(0, "order-", {"Paid"}, [&](const evstore::Event &e) {
        EXPECT_EQ(e.type, "Paid");
        got++;
        return true;
    });
    s.append("order-1", evstore::kExpectAny, {{"Placed", "", "", 0, {}}, {"Paid", "", "", 0, {}}});
    s.append("user-1", evstore::kExpectAny, {{"Paid", "", "", 0, {}}});
    for (int i = 0; i < 5000 && got.load() < 1; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(got.load(), 1);
    EXPECT_TRUE(filtered.running());
    EXPECT_EQ(filtered.status(), Code::Ok);
    EXPECT_EQ(s.stats().subscriptions, 1u);
    s.close();
    EXPECT_FALSE(filtered.running());
    filtered.close();  // stopped by the store's close: no error
    expect_error([&] { s.subscribe(0, nullptr); }, Code::InvalidArgument);
}

TEST_F(EvstoreTest, StoreOptionsAndShutdown) {
    evstore::Options o;
    o.set_fsync(evstore::FsyncPolicy::Os).set_max_event_size(100).set_dedupe_window(1000);
    expect_error([&] { o.set_max_event_size(0); }, Code::InvalidArgument);
    {
        evstore::Store s(path("s"), o);
        evstore::StoreOptions opts = s.options();
        EXPECT_EQ(opts.fsync_policy, EVS_FSYNC_OS);
        EXPECT_EQ(opts.max_event_size, 100u);
        EXPECT_EQ(opts.dedupe_window, 1000u);
        expect_error([&] { s.append_event("Big", std::string(101, 'x')); }, Code::TooLarge);
        expect_error([] { evstore::shutdown(); }, Code::Busy);
    }
    evstore::shutdown();
    EXPECT_EQ(evstore::version_number() / 1000000, EVS_VERSION_MAJOR);
    EXPECT_GE(evstore::version_number(), EVS_VERSION_NUMBER);
}

// A moved-from subscription behaves as a closed one: defined results, no crash.
TEST_F(EvstoreTest, MovedFromSubscriptionIsLikeAClosedOne) {
    evstore::Store s(path("s"));
    s.append_event("E", "x");
    auto sub = s.subscribe(0, [](const evstore::Event &) -> bool { throw std::runtime_error("ends it"); });
    evstore::Subscription moved(std::move(sub));
    EXPECT_FALSE(sub.running());
    EXPECT_EQ(sub.error_message(), "");
    EXPECT_FALSE(sub.exception());
    expect_error([&] { sub.status(); }, Code::InvalidArgument);
    sub.close();  // a no-op

    // The moved-to one has what the function threw.
    for (int i = 0; i < 5000 && moved.running(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(moved.exception());
    EXPECT_EQ(moved.error_message(), "the subscription's function threw");

    // Move-assigned from: the same.
    evstore::Subscription other = s.subscribe(0, [](const evstore::Event &) { return true; });
    other = std::move(moved);
    EXPECT_FALSE(moved.running());
    EXPECT_EQ(moved.error_message(), "");
    EXPECT_FALSE(moved.exception());
    EXPECT_THROW(other.close(), std::runtime_error);
}

// A moved-from Options is refused (as Go refuses closed options), never taken for the
// defaults: the store is not opened, and the setters say why.
TEST_F(EvstoreTest, MovedFromOptionsAreRefused) {
    evstore::Options o;
    o.set_read_only(true);
    evstore::Options taken(std::move(o));
    std::string msg = expect_error([&] { evstore::Store s(path("s"), o); }, Code::InvalidArgument);
    EXPECT_NE(msg.find("moved from"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(path("s")));
    expect_error([&] { o.set_fsync(evstore::FsyncPolicy::Os); }, Code::InvalidArgument);
    expect_error([&] { evstore::Store s(path("s"), taken); }, Code::NotFound);  // read-only, missing
}

// Events kept from a cursor with to_owned() (or next(OwnedEvent &)) outlive its steps
// and the cursor itself.
TEST_F(EvstoreTest, CursorEventsHaveAnOwningForm) {
    evstore::Store s(path("s"));
    const std::string big(300, 'p');  // past any small-string buffer
    for (int i = 0; i < 200; i++)
        s.append("order-" + std::to_string(i % 3), evstore::kExpectAny,
                 {{"T" + std::to_string(i), big + std::to_string(i), "m" + std::to_string(i), 0, evstore::EventId{1, static_cast<uint8_t>(i)}}});
    std::vector<evstore::OwnedEvent> kept;
    {
        evstore::Cursor c = s.read_all();
        for (const evstore::Event &e : c)
            kept.push_back(e.to_owned());
    }
    std::vector<evstore::OwnedEvent> viaNext;
    {
        evstore::Cursor c = s.read_all_backward();
        evstore::OwnedEvent e;
        while (c.next(e))
            viaNext.push_back(e);
    }
    ASSERT_EQ(kept.size(), 200u);
    ASSERT_EQ(viaNext.size(), 200u);
    for (size_t i = 0; i < kept.size(); i++) {
        const evstore::OwnedEvent &k = kept[i], &b = viaNext[199 - i];
        EXPECT_EQ(k.position, i);
        EXPECT_EQ(k.stream, "order-" + std::to_string(i % 3));
        EXPECT_EQ(k.type, "T" + std::to_string(i));
        EXPECT_EQ(k.payload, big + std::to_string(i));
        EXPECT_EQ(k.metadata, "m" + std::to_string(i));
        EXPECT_EQ(k.id, (evstore::EventId{1, static_cast<uint8_t>(i)}));
        EXPECT_EQ(b.position, k.position);
        EXPECT_EQ(b.payload, k.payload);
        EXPECT_EQ(k.view().payload, k.payload);
    }
}

// EventInput owns its bytes: inputs built from temporaries (std::to_string) and kept in
// a vector are appended as they were built.
TEST_F(EvstoreTest, EventInputsBuiltFromTemporariesStayValid) {
    evstore::Store s(path("s"));
    std::vector<evstore::EventInput> inputs;
    for (int i = 0; i < 50; i++)
        inputs.push_back({"T", std::to_string(i) + std::string(100, 'x'), std::to_string(i * 7) + std::string(40, 'm')});
    evstore::EventInput one{"One", std::to_string(12345678) + std::string(100, 'y')};
    inputs.push_back(one);
    s.append("s", evstore::kExpectNoStream, inputs);
    s.append_multi({{"t", evstore::kExpectNoStream, {{"T", std::string(64, 'z') + "multi"}}}});
    auto got = drain(s.read_stream("s"));
    ASSERT_EQ(got.size(), 51u);
    for (int i = 0; i < 50; i++) {
        EXPECT_EQ(got[i].payload, std::to_string(i) + std::string(100, 'x'));
        EXPECT_EQ(got[i].metadata, std::to_string(i * 7) + std::string(40, 'm'));
    }
    EXPECT_EQ(got[50].payload, "12345678" + std::string(100, 'y'));
    EXPECT_EQ(drain(s.read_stream("t"))[0].payload, std::string(64, 'z') + "multi");
}

namespace {

constexpr std::nullopt_t none = std::nullopt;

// Checks all three of e's numbers: each given one has that value, each `none` is empty.
void expect_detail(const evstore::Error &e, std::optional<int64_t> version, std::optional<size_t> part,
                   std::optional<uint64_t> position) {
    EXPECT_EQ(e.actual_version(), version) << e.name() << ": " << e.what();
    EXPECT_EQ(e.part_index(), part) << e.name() << ": " << e.what();
    EXPECT_EQ(e.position(), position) << e.name() << ": " << e.what();
}

}  // namespace

TEST_F(EvstoreTest, WrongExpectedVersionCarriesTheActualVersion) {
    evstore::Store s(path("s"));
    s.append("order-1", evstore::kExpectNoStream, {{"T"}, {"T"}, {"T"}});  // versions 0, 1, 2
    evstore::Error e = caught([&] { s.append("order-1", 0, {{"T"}}); }, Code::WrongExpectedVersion);
    expect_detail(e, 2, none, none);  // append names no part
    // A stream that does not exist: -1, as stream_version() says it.
    e = caught([&] { s.append("order-2", evstore::kExpectExists, {{"T"}}); }, Code::WrongExpectedVersion);
    expect_detail(e, -1, none, none);
}

TEST_F(EvstoreTest, AppendMultiErrorNamesItsPart) {
    evstore::Store s(path("s"));
    s.append("a", evstore::kExpectNoStream, {{"T"}, {"T"}});
    s.append("b", evstore::kExpectNoStream, {{"T", "b0", "", 0, evstore::EventId{0xB, 1}}});
    evstore::Error e = caught([&] {
        s.append_multi({{"c", evstore::kExpectNoStream, {{"T"}}},
                        {"a", 1, {{"T"}}},
                        {"b", 5, {{"T"}}}});
    }, Code::WrongExpectedVersion);
    expect_detail(e, 0, 2, none);
    // The second part carries an id stored before with other content: that part, and the
    // stored event's position (2: after a's two events).
    e = caught([&] {
        s.append_multi({{"c", evstore::kExpectAny, {{"T"}}},
                        {"c", evstore::kExpectAny, {{"T"}, {"T", "other", "", 0, evstore::EventId{0xB, 1}}}}});
    }, Code::AlreadyExists);
    expect_detail(e, none, 1, 2);
}

// An event id used again for other content is refused with the stored event's position.
TEST_F(EvstoreTest, ReusedEventIdGivesTheStoredEventsPosition) {
    evstore::Store s(path("s"));
    for (int i = 0; i < 4; i++)
        s.append_event("Filler", "");
    evstore::EventId id{0x1D, 7};
    ASSERT_EQ(s.append("order-1", evstore::kExpectAny, {{"Placed", "a", "", 0, id}}).first_position, 4u);
    evstore::Error e = caught([&] { s.append("order-2", evstore::kExpectAny, {{"Placed", "b", "", 0, id}}); },
                              Code::AlreadyExists);
    expect_detail(e, none, none, 4);
}

// A damaged event's position comes with Code::Corrupt, from a read and from the close of
// a subscription that reading ended.
TEST_F(EvstoreTest, CorruptErrorsGiveTheDamagedPosition) {
    evstore::Store s(path("s"));
    for (int i = 0; i < 20; i++)
        s.append_event("E", "payload-MARK-" + std::to_string(i));
    s.sync();
    std::vector<fs::path> logs;
    for (const auto &f : fs::directory_iterator(fs::path(path("s")) / "events"))
        if (f.path().extension() == ".wal")
            logs.push_back(f.path());
    ASSERT_EQ(logs.size(), 1u);
    {
        std::FILE *f = std::fopen(logs[0].c_str(), "r+b");
        ASSERT_NE(f, nullptr);
        std::string bytes;
        char buf[65536];
        for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
            bytes.append(buf, n);
        size_t at = bytes.find("MARK-10");
        ASSERT_NE(at, std::string::npos);
        ASSERT_EQ(std::fseek(f, static_cast<long>(at), SEEK_SET), 0);
        ASSERT_EQ(std::fputc('#', f), '#');
        ASSERT_EQ(std::fclose(f), 0);
    }
    evstore::Error e = caught([&] { s.read_event(10); }, Code::Corrupt);
    expect_detail(e, none, none, 10);

    auto sub = s.subscribe(0, [](const evstore::Event &) { return true; });
    for (int i = 0; i < 5000 && sub.running(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    e = caught([&] { sub.close(); }, Code::Corrupt);
    expect_detail(e, none, none, 10);
}

// Each error keeps its own detail: a later success or failure on the same thread neither
// leaves its numbers in the next error nor changes an earlier one; the wrapper's own
// errors carry none.
TEST_F(EvstoreTest, ErrorDetailIsNeverStale) {
    evstore::Store s(path("s"));
    s.append("s", evstore::kExpectNoStream, {{"T"}, {"T"}});
    evstore::EventId id{0x5A};
    s.append("t", evstore::kExpectNoStream, {{"T", "", "", 0, id}});
    evstore::Error first = caught([&] {
        s.append_multi({{"u", evstore::kExpectAny, {{"T"}}}, {"s", 0, {{"T"}}}});
    }, Code::WrongExpectedVersion);
    s.append("s", 1, {{"T"}});  // a success in between

    // The same code from append: its own actual version, and no part.
    evstore::Error again = caught([&] { s.append("s", 0, {{"T"}}); }, Code::WrongExpectedVersion);
    expect_detail(again, 2, none, none);
    expect_detail(caught([&] { s.read_event(1000); }, Code::NotFound), none, none, none);
    evstore::Error e = caught([&] { s.append("s", evstore::kExpectAny, {{"T", "x", "", 0, id}}); }, Code::AlreadyExists);
    expect_detail(e, none, none, 2);
    expect_detail(caught([&] { s.deposit("nobody", 5); }, Code::NotFound), none, none, none);

    expect_detail(first, 1, 1, none);

    // The wrapper's own error.
    expect_detail(caught([&] { s.append(std::string("s\0", 2), evstore::kExpectAny, {{"T"}}); }, Code::InvalidArgument),
                  none, none, none);
}

// ---------------------------------------------------------------------------------------
// Data that leaves: delete_stream, truncate_stream, the retention calls.

namespace {

std::vector<uint64_t> positions(const std::vector<evstore::OwnedEvent> &events) {
    std::vector<uint64_t> out;
    for (const auto &e : events)
        out.push_back(e.position);
    return out;
}

std::vector<uint64_t> versions(evstore::Store &s, const std::string &stream) {
    std::vector<uint64_t> out;
    for (const auto &e : drain(s.read_stream(stream)))
        out.push_back(e.stream_version);
    return out;
}

std::vector<evstore::EventInput> events(std::initializer_list<const char *> payloads) {
    std::vector<evstore::EventInput> out;
    for (const char *p : payloads)
        out.push_back({"T", p});
    return out;
}

using V = std::vector<uint64_t>;
const evstore::EventId kNoId{};

}  // namespace

// Personal data: events naming a subject are read back intact until forget_subject, then
// erased (payload and metadata empty, the rest kept), also after a reopen; other events
// stay; a forgotten subject takes no new event.
TEST_F(EvstoreTest, ForgetSubjectErasesItsEvents) {
    auto s = std::make_unique<evstore::Store>(path("s"));
    evstore::EventInput alice{"AddressSet", "ALICE-ADDRESS", "m"};
    alice.subject = "alice";
    evstore::EventInput bob{"AddressSet", "BOB-ADDRESS"};
    bob.subject = "bob";
    s->append("people", evstore::kExpectNoStream, {alice, bob, {"Tick", "public"}});
    auto check = [](evstore::Store &st, bool forgotten, const char *when) {
        auto all = drain(st.read_all());
        ASSERT_EQ(all.size(), 3u) << when;
        EXPECT_EQ(all[0].subject, "alice") << when;
        EXPECT_EQ(all[0].erased, forgotten) << when;
        EXPECT_EQ(all[0].payload, forgotten ? "" : "ALICE-ADDRESS") << when;
        EXPECT_EQ(all[0].metadata, forgotten ? "" : "m") << when;
        EXPECT_EQ(all[0].type, "AddressSet") << when;
        EXPECT_EQ(all[1].subject, "bob") << when;
        EXPECT_FALSE(all[1].erased) << when;
        EXPECT_EQ(all[1].payload, "BOB-ADDRESS") << when;
        EXPECT_EQ(all[2].subject, "") << when;
        EXPECT_EQ(all[2].payload, "public") << when;
    };
    check(*s, false, "before");
    EXPECT_EQ(s->forget_subject("alice"), 3u);
    EXPECT_EQ(s->forget_subject("alice"), 3u);
    expect_error([&] { s->forget_subject(""); }, Code::InvalidArgument);
    expect_error([&] { s->append("people", evstore::kExpectAny, {alice}); }, Code::InvalidArgument);
    check(*s, true, "after the forget");
    s.reset();
    s = std::make_unique<evstore::Store>(path("s"));
    check(*s, true, "reopened");
}

// Soft and hard deletes: refusals write nothing; afterwards every read passes over the
// removed events, before and after a reopen; writers see no stream (soft) or a tombstone
// (hard); a soft-deleted stream continues its versions.
TEST_F(EvstoreTest, DeleteStreamSoftAndHard) {
    auto s = std::make_unique<evstore::Store>(path("s"));
    s->append("order-1", evstore::kExpectNoStream, events({"a0", "a1", "a2"}));  // 0..2
    s->append("order-2", evstore::kExpectNoStream, events({"b0", "b1"}));        // 3, 4
    s->append("user-1", evstore::kExpectNoStream, events({"u0"}));               // 5

    // Refusals, in the order of the checks; nothing is written.
    evstore::Error e = caught([&] { s->delete_stream("order-1", 1); }, Code::WrongExpectedVersion);
    EXPECT_EQ(e.actual_version(), 2);
    expect_error([&] { s->delete_stream("order-1", evstore::kExpectNoStream); }, Code::InvalidArgument);
    expect_error([&] { s->delete_stream("nope", evstore::kExpectAny, evstore::DeleteMode::Hard); }, Code::NotFound);
    std::string msg = expect_error(
        [&] { s->delete_stream("order-1", evstore::kExpectAny, static_cast<evstore::DeleteMode>(2)); },
        Code::InvalidArgument);
    EXPECT_NE(msg.find("0x2"), std::string::npos) << msg;
    expect_error([&] { s->delete_stream(std::string("order-1\0", 8), evstore::kExpectAny); }, Code::InvalidArgument);
    ASSERT_EQ(s->position_at(evstore::kPositionEnd), 6u);

    EXPECT_EQ(s->delete_stream("order-1", 2, evstore::DeleteMode::Soft), 6u);
    EXPECT_EQ(s->delete_stream("order-2", evstore::kExpectExists, evstore::DeleteMode::Hard), 7u);

    auto reads = [&](evstore::Store &st, const char *when) {
        SCOPED_TRACE(when);
        EXPECT_EQ(positions(drain(st.read_all())), V{5});
        EXPECT_EQ(positions(drain(st.read_all_backward())), V{5});
        EXPECT_EQ(positions(drain(st.read_category("order-"))), V{});
        EXPECT_EQ(positions(drain(st.poll(0, 5))), V{});  // the window counts empty positions
        expect_error([&] { st.read_stream("order-1"); }, Code::NotFound);
        expect_error([&] { st.read_stream_backward("order-1"); }, Code::NotFound);
        expect_error([&] { st.read_stream("order-2"); }, Code::StreamDeleted);
        expect_error([&] { st.read_stream_backward("order-2"); }, Code::StreamDeleted);
        std::string m = expect_error([&] { st.read_event(0); }, Code::NotFound);
        EXPECT_NE(m.find("removed"), std::string::npos) << m;
        m = expect_error([&] { st.read_event(6); }, Code::NotFound);
        EXPECT_NE(m.find("lifecycle entry"), std::string::npos) << m;
        auto listed = st.list_streams();
        ASSERT_EQ(listed.size(), 1u);
        EXPECT_EQ(listed[0].name, "user-1");
        EXPECT_EQ(st.stream_version("order-1"), -1);
        expect_error([&] { st.stream_version("order-2"); }, Code::StreamDeleted);
        evstore::Stats stats = st.stats();
        EXPECT_EQ(stats.removed_events, 5u);
        EXPECT_EQ(stats.lifecycle_entries, 2u);
        EXPECT_EQ(stats.events, 8u);
        EXPECT_EQ(stats.streams, 1u);
    };
    reads(*s, "after the deletes");

    // What writers see.
    expect_error([&] { s->append("order-2", evstore::kExpectAny, events({"b2"})); }, Code::StreamDeleted);
    expect_error([&] { s->delete_stream("order-2", evstore::kExpectAny); }, Code::StreamDeleted);
    expect_error([&] { s->truncate_stream("order-2", 0); }, Code::StreamDeleted);
    e = caught([&] { s->append("order-1", 2, events({"a3"})); }, Code::WrongExpectedVersion);
    EXPECT_EQ(e.actual_version(), -1);
    expect_error([&] { s->delete_stream("order-1", evstore::kExpectAny); }, Code::NotFound);
    ASSERT_EQ(s->position_at(evstore::kPositionEnd), 8u);

    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    reads(*s, "after a reopen");

    // The soft-deleted stream continues its versions; its old events stay removed.
    evstore::AppendResult r = s->append("order-1", evstore::kExpectNoStream, events({"a3"}));
    EXPECT_EQ(r.first_position, 8u);
    EXPECT_EQ(r.stream_version, 3u);
    auto got = drain(s->read_stream("order-1"));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].payload, "a3");
    EXPECT_EQ(positions(drain(s->read_all())), (V{5, 8}));
    for (const auto &info : s->list_streams()) {
        if (info.name == "order-1") {
            EXPECT_EQ(info.first_position, 8u);
        }
    }
}

// A subscription from 0 delivers the events left and none of the removed ones.
TEST_F(EvstoreTest, SubscriptionPassesOverRemovedEvents) {
    evstore::Store s(path("s"));
    s.append("gone", evstore::kExpectNoStream, events({"g0", "g1"}));  // 0, 1
    s.append("kept", evstore::kExpectNoStream, events({"k0"}));        // 2
    s.append("cut", evstore::kExpectNoStream, events({"c0", "c1"}));   // 3, 4
    s.delete_stream("gone", evstore::kExpectAny, evstore::DeleteMode::Hard);  // 5
    s.truncate_stream("cut", 1);                                              // 6
    std::mutex mu;
    std::vector<uint64_t> seen;
    auto sub = s.subscribe(0, [&](const evstore::Event &ev) {
        std::lock_guard<std::mutex> g(mu);
        seen.push_back(ev.position);
        return true;
    });
    s.append("kept", evstore::kExpectAny, events({"k1"}));  // 7
    for (int i = 0; i < 5000; i++) {
        {
            std::lock_guard<std::mutex> g(mu);
            if (!seen.empty() && seen.back() == 7)
                break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    sub.close();
    EXPECT_EQ(seen, (V{2, 4, 7}));
}

// Truncation: the versions below the bound leave every read, the rest keep theirs; a
// bound past the version + 1 is refused; a lower one brings nothing back; truncated to
// its end, a stream keeps its version for writers.
TEST_F(EvstoreTest, TruncateStream) {
    auto s = std::make_unique<evstore::Store>(path("s"));
    s->append("log", evstore::kExpectNoStream, events({"0", "1", "2", "3", "4"}));  // 0..4
    EXPECT_EQ(s->truncate_stream("log", 2), 5u);
    EXPECT_EQ(versions(*s, "log"), (V{2, 3, 4}));
    EXPECT_EQ(positions(drain(s->read_stream_backward("log"))), (V{4, 3, 2}));
    EXPECT_EQ(positions(drain(s->read_stream("log", 1))), (V{2, 3, 4}));
    EXPECT_EQ(positions(drain(s->read_all())), (V{2, 3, 4}));
    auto listed = s->list_streams();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].version, 4u);
    EXPECT_EQ(listed[0].first_position, 2u);  // the first event a reader sees
    std::string msg = expect_error([&] { s->truncate_stream("log", 6); }, Code::InvalidArgument);
    EXPECT_NE(msg.find("at most 5"), std::string::npos) << msg;
    expect_error([&] { s->truncate_stream("nope", 0); }, Code::NotFound);
    s->truncate_stream("log", 1);  // below the first kept: nothing comes back
    EXPECT_EQ(versions(*s, "log"), (V{2, 3, 4}));

    s->truncate_stream("log", 5);
    expect_error([&] { s->read_stream("log"); }, Code::NotFound);
    EXPECT_EQ(s->stream_version("log"), 4);
    expect_error([&] { s->append("log", evstore::kExpectNoStream, events({"5"})); }, Code::WrongExpectedVersion);
    s->append("log", 4, events({"5"}));

    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    EXPECT_EQ(versions(*s, "log"), V{5});
    EXPECT_EQ(s->stats().removed_events, 5u);
    EXPECT_EQ(s->stats().lifecycle_entries, 3u);
}

// Rules by count on a category and a stream: set, read, replaced and cleared, each obeyed
// by reads at once; a rule's change never brings an event back.
TEST_F(EvstoreTest, RetentionByCount) {
    using evstore::Retention;
    auto s = std::make_unique<evstore::Store>(path("s"));
    s->append("t-1", evstore::kExpectNoStream, events({"0", "1", "2", "3", "4"}));
    s->append("t-2", evstore::kExpectNoStream, events({"0", "1"}));
    s->append("u-1", evstore::kExpectNoStream, events({"0", "1", "2"}));

    s->set_category_retention("t-", Retention{2, 0});
    EXPECT_EQ(versions(*s, "t-1"), (V{3, 4}));
    EXPECT_EQ(versions(*s, "t-2"), (V{0, 1}));
    EXPECT_EQ(versions(*s, "u-1"), (V{0, 1, 2}));
    EXPECT_EQ(s->retention("t-1"), (Retention{2, 0}));
    EXPECT_EQ(s->retention("u-1"), Retention{});
    EXPECT_EQ(s->category_retention("t-"), (Retention{2, 0}));
    EXPECT_EQ(s->category_retention("t"), Retention{});
    EXPECT_EQ(s->category_retention("t-1"), Retention{});  // no rule on that prefix itself

    // A stream's own looser rule wins, but what the category's removed stays removed.
    s->set_retention("t-1", Retention{4, 0});
    EXPECT_EQ(s->retention("t-1"), (Retention{4, 0}));
    EXPECT_EQ(versions(*s, "t-1"), (V{3, 4}));
    s->append("t-1", evstore::kExpectAny, events({"5", "6", "7"}));
    EXPECT_EQ(versions(*s, "t-1"), (V{4, 5, 6, 7}));
    s->clear_retention("t-1");  // its category's applies again
    EXPECT_EQ(versions(*s, "t-1"), (V{6, 7}));
    s->clear_category_retention("t-");  // nothing comes back
    EXPECT_EQ(s->category_retention("t-"), Retention{});
    s->append("t-1", evstore::kExpectAny, events({"8", "9"}));
    EXPECT_EQ(versions(*s, "t-1"), (V{6, 7, 8, 9}));
    s->set_category_retention("u-", Retention{1, 0});
    EXPECT_EQ(versions(*s, "u-1"), V{2});

    expect_error([&] { s->set_retention("", Retention{1, 0}); }, Code::InvalidArgument);
    expect_error([&] { s->retention(""); }, Code::InvalidArgument);
    expect_error([&] { s->category_retention(std::string("t\0", 2)); }, Code::InvalidArgument);

    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    EXPECT_EQ(versions(*s, "t-1"), (V{6, 7, 8, 9}));
    EXPECT_EQ(versions(*s, "u-1"), V{2});
    EXPECT_EQ(s->retention("u-1"), (Retention{1, 0}));
    evstore::Stats st = s->stats();
    EXPECT_EQ(st.removed_events, 8u);  // t-1: 6 of 10; u-1: 2 of 3
    EXPECT_EQ(st.lifecycle_entries, 5u);
    EXPECT_EQ(st.streams, 3u);
}

// Rules by age. The C API has no clock to set (the Rust tests replace the store's), so
// this uses the real one in the one direction that cannot race: the events are made older
// than the rule's age first (a sleep), then the rule is set.
TEST_F(EvstoreTest, RetentionByAge) {
    using evstore::Retention;
    evstore::Store s(path("s"));
    s.append("m-1", evstore::kExpectNoStream, events({"0", "1", "2"}));
    const uint64_t day = 86400ull * 1000000ull;
    s.set_retention("m-1", Retention{0, day});
    EXPECT_EQ(versions(s, "m-1"), (V{0, 1, 2}));
    EXPECT_EQ(s.retention("m-1"), (Retention{0, day}));

    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s.set_retention("m-1", Retention{0, 5000});  // 5 ms
    expect_error([&] { s.read_stream("m-1"); }, Code::NotFound);
    EXPECT_EQ(positions(drain(s.read_all())), V{});
    EXPECT_EQ(s.stream_version("m-1"), 2);
    s.set_retention("m-1", Retention{0, day});  // a looser rule brings nothing back
    expect_error([&] { s.read_stream("m-1"); }, Code::NotFound);
    EXPECT_EQ(s.stats().removed_events, 3u);
}

// An operation with an id is idempotent; an id given to another operation or to an event
// is refused; the zero id is none.
TEST_F(EvstoreTest, LifecycleIds) {
    evstore::Store s(path("s"));
    s.append("a", evstore::kExpectNoStream, {{"T", "", "", 0, evstore::EventId{0xE, 1}}, {"T"}, {"T"}});
    const evstore::EventId id{0x5A, 0x5A};
    uint64_t p = s.delete_stream("a", evstore::kExpectAny, evstore::DeleteMode::Soft, id);
    EXPECT_EQ(s.delete_stream("a", evstore::kExpectAny, evstore::DeleteMode::Soft, id), p);
    EXPECT_EQ(s.position_at(evstore::kPositionEnd), p + 1);
    expect_error([&] { s.truncate_stream("a", 0, id); }, Code::AlreadyExists);
    expect_error([&] { s.set_category_retention("x-", evstore::Retention{3, 0}, id); }, Code::AlreadyExists);
    expect_error([&] { s.set_category_retention("x-", evstore::Retention{3, 0}, evstore::EventId{0xE, 1}); },
                 Code::AlreadyExists);
    s.append("b", evstore::kExpectNoStream, events({"0", "1"}));
    p = s.truncate_stream("b", 1, kNoId);
    EXPECT_EQ(s.truncate_stream("b", 1, kNoId), p + 1);
}

// The account domain guards its streams: not deleted while the balance is not zero, never
// truncated or given a rule; afterwards the account is not found, through a reopen; a
// soft-deleted account's id opens a new one, a hard-deleted one's never.
TEST_F(EvstoreTest, AccountStreamGuard) {
    auto s = std::make_unique<evstore::Store>(path("s"));
    s->open_account("acc1", 10);
    std::string msg = expect_error([&] { s->delete_stream("account-acc1", evstore::kExpectAny); },
                                   Code::BalanceNotZero);
    EXPECT_NE(msg.find("10"), std::string::npos) << msg;
    expect_error([&] { s->delete_stream("account-acc1", evstore::kExpectAny, evstore::DeleteMode::Hard); },
                 Code::BalanceNotZero);
    expect_error([&] { s->truncate_stream("account-acc1", 1); }, Code::InvalidArgument);
    for (const char *prefix : {"account-", "acc", ""})
        expect_error([&] { s->set_category_retention(prefix, evstore::Retention{5, 0}); }, Code::InvalidArgument);
    expect_error([&] { s->set_retention("account-acc1", evstore::Retention{0, 1}); }, Code::InvalidArgument);
    EXPECT_EQ(s->get_account("acc1").balance, 10);

    s->withdraw("acc1", 10);
    s->delete_stream("account-acc1", evstore::kExpectAny);
    expect_error([&] { s->get_account("acc1"); }, Code::NotFound);
    expect_error([&] { s->deposit("acc1", 1); }, Code::NotFound);
    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    expect_error([&] { s->get_account("acc1"); }, Code::NotFound);
    s->open_account("acc1", 0, "EUR");  // a new account, continuing the stream
    evstore::Account a = s->get_account("acc1");
    EXPECT_EQ(a.balance, 0);
    EXPECT_EQ(a.currency, "EUR");
    EXPECT_EQ(a.version, 1u);
    s->delete_stream("account-acc1", evstore::kExpectAny, evstore::DeleteMode::Hard);
    expect_error([&] { s->open_account("acc1", 0); }, Code::StreamDeleted);
    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    expect_error([&] { s->get_account("acc1"); }, Code::NotFound);
    expect_error([&] { s->open_account("acc1", 0); }, Code::StreamDeleted);
}

// A read-only handle sees the operations and refuses to make any.
TEST_F(EvstoreTest, LifecycleOnAReadOnlyStore) {
    evstore::Store s(path("s"));
    s.append("n-1", evstore::kExpectNoStream, events({"0", "1"}));
    s.set_category_retention("n-", evstore::Retention{1, 0});
    evstore::Options ro;
    ro.set_read_only(true);
    evstore::Store r(path("s"), ro);
    EXPECT_EQ(versions(r, "n-1"), V{1});
    EXPECT_EQ(r.retention("n-1"), (evstore::Retention{1, 0}));
    expect_error([&] { r.delete_stream("n-1", evstore::kExpectAny); }, Code::ReadOnly);
    expect_error([&] { r.truncate_stream("n-1", 1); }, Code::ReadOnly);
    expect_error([&] { r.set_retention("n-1", evstore::Retention{1, 0}); }, Code::ReadOnly);
    expect_error([&] { r.clear_category_retention("n-"); }, Code::ReadOnly);
    // The writer's next operation is seen by the reader.
    s.delete_stream("n-1", evstore::kExpectAny, evstore::DeleteMode::Hard);
    s.sync();
    expect_error([&] { r.read_stream("n-1"); }, Code::StreamDeleted);
}

// README.md's C++ lines on deleting and retention, as they are there.
TEST_F(EvstoreTest, ReadmeLifecycleExample) {
    evstore::Store store(path("s"));
    store.append("order-17", evstore::kExpectNoStream, events({"placed"}));
    std::vector<evstore::EventInput> samples(1005, evstore::EventInput{"Sample", "x"});
    store.append("telemetry-7", evstore::kExpectNoStream, samples);
    std::vector<evstore::EventInput> audit(150, evstore::EventInput{"Audited", "y"});
    store.append("audit-9", evstore::kExpectNoStream, audit);
    store.open_account("alice", 100);

    store.delete_stream("order-17", evstore::kExpectAny);  // soft: appending again continues it
    try {  // hard: the name is refused from then on; an account's only at a zero balance
        store.delete_stream("account-alice", evstore::kExpectAny, evstore::DeleteMode::Hard);
    } catch (const evstore::Error &e) {
        if (e.code() != evstore::Code::BalanceNotZero)
            throw;
    }
    const uint64_t week_us = 7ull * 24 * 3600 * 1000000;
    store.set_category_retention("telemetry-", {1000, week_us});  // the last 1000, a week at most
    store.truncate_stream("audit-9", 100);                        // versions 0..99 leave

    EXPECT_EQ(store.stream_version("order-17"), -1);
    EXPECT_EQ(store.get_account("alice").balance, 100);
    auto telemetry = versions(store, "telemetry-7");
    ASSERT_EQ(telemetry.size(), 1000u);
    EXPECT_EQ(telemetry.front(), 5u);
    auto kept = versions(store, "audit-9");
    ASSERT_EQ(kept.size(), 50u);
    EXPECT_EQ(kept.front(), 100u);
}

// schema_sql refuses what is not a PostgreSQL URL, and names a server that cannot be
// reached (a port nothing listens on) with Code::Unavailable.
TEST_F(EvstoreTest, SchemaSqlErrors) {
    std::string msg = expect_error([&] { evstore::schema_sql(path("s")); }, Code::InvalidArgument);
    EXPECT_NE(msg.find("postgresql://"), std::string::npos) << msg;
    expect_error([] { evstore::schema_sql("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"); },
                 Code::Unavailable);
    expect_error([] { evstore::schema_sql("postgresql://127.0.0.1/x?no_such_parameter=1"); }, Code::InvalidArgument);
    expect_error([] { evstore::schema_sql(std::string("postgresql://127.0.0.1/x\0", 25)); }, Code::InvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Compaction.

// set_compaction's bounds, and the options an open store reports: the defaults, then the
// ones set.
TEST_F(EvstoreTest, CompactionOptions) {
    {
        evstore::Store s(path("defaults"));
        evstore::StoreOptions o = s.options();
        EXPECT_EQ(o.compaction_bytes_per_second, 64u << 20);
        EXPECT_EQ(o.compaction_trigger_percent, 25u);
    }
    evstore::Options opts;
    expect_error([&] { opts.set_compaction(0, 101); }, Code::InvalidArgument);
    opts.set_compaction(0, 100).set_compaction(1u << 20, 0);
    evstore::Store s(path("s"), opts);
    evstore::StoreOptions o = s.options();
    EXPECT_EQ(o.compaction_bytes_per_second, 1u << 20);
    EXPECT_EQ(o.compaction_trigger_percent, 0u);
}

namespace {

// Whether any file under `dir` holds `marker`.
bool store_holds(const fs::path &dir, const std::string &marker) {
    for (const auto &f : fs::recursive_directory_iterator(dir)) {
        if (!f.is_regular_file())
            continue;
        std::FILE *in = std::fopen(f.path().c_str(), "rb");
        if (in == nullptr)
            throw std::runtime_error("cannot read " + f.path().string());
        std::string bytes;
        char buf[65536];
        for (size_t n; (n = std::fread(buf, 1, sizeof buf, in)) > 0;)
            bytes.append(buf, n);
        std::fclose(in);
        if (bytes.find(marker) != std::string::npos)
            return true;
    }
    return false;
}

}  // namespace

// compact() erases: afterwards no file of the store holds a removed event's payload
// (deleted hard or soft, truncated), while the kept events' are there (the control);
// every read gives what it gave before, after a reopen too; a second compact() has
// nothing left to erase.
TEST_F(EvstoreTest, CompactErasesRemovedEvents) {
    evstore::Options opts;
    // Small segments, so that the log has sealed ones; no automatic compaction, so that
    // compact() is the one that erases.
    opts.set_max_segment_size(64 * 1024).set_compaction(0, 0);
    auto s = std::make_unique<evstore::Store>(path("s"), opts);
    const std::string pad(300, '.');
    V kept;
    for (int i = 0; i < 300; i++) {
        s->append("gone-" + std::to_string(i % 3), evstore::kExpectAny, {{"T", "GONE-MARK-" + std::to_string(i) + "-" + pad}});
        kept.push_back(s->append("kept", evstore::kExpectAny, {{"T", "KEPT-MARK-" + std::to_string(i)}}).first_position);
    }
    s->delete_stream("gone-0", evstore::kExpectAny, evstore::DeleteMode::Hard);
    s->delete_stream("gone-1", evstore::kExpectAny, evstore::DeleteMode::Soft);
    s->truncate_stream("gone-2", 100);  // its every event
    evstore::Stats before = s->stats();
    EXPECT_EQ(before.removed_events, 300u);
    EXPECT_GT(before.reclaimable_bytes, 0u);
    EXPECT_GE(before.segments, 2u);
    ASSERT_TRUE(store_holds(path("s"), "GONE-MARK-")) << "the search finds nothing before the compaction";

    evstore::CompactInfo info = s->compact();
    EXPECT_EQ(info.events_erased, 300u);
    EXPECT_GT(info.segments_rewritten, 0u);
    EXPECT_LT(info.bytes_after, info.bytes_before);
    EXPECT_EQ(s->stats().reclaimable_bytes, 0u);
    EXPECT_FALSE(store_holds(path("s"), "GONE-MARK-")) << "a file still holds a removed event's payload";
    EXPECT_TRUE(store_holds(path("s"), "KEPT-MARK-299")) << "the kept events' payloads are gone too";

    auto reads = [&](evstore::Store &st, const char *when) {
        SCOPED_TRACE(when);
        auto all = drain(st.read_all());
        EXPECT_EQ(positions(all), kept);
        for (size_t i = 0; i < all.size(); i++)
            EXPECT_EQ(all[i].payload, "KEPT-MARK-" + std::to_string(i));
        expect_error([&] { st.read_stream("gone-0"); }, Code::StreamDeleted);
        expect_error([&] { st.read_stream("gone-1"); }, Code::NotFound);
        expect_error([&] { st.read_stream("gone-2"); }, Code::NotFound);
        EXPECT_EQ(st.stream_version("gone-2"), 99);
    };
    reads(*s, "after the compaction");
    EXPECT_EQ(s->compact().events_erased, 0u);
    s->close();
    s = std::make_unique<evstore::Store>(path("s"));
    reads(*s, "after a reopen");
    EXPECT_EQ(s->append("gone-1", evstore::kExpectNoStream, {{"T", "x"}}).stream_version, 100u);
}

// Every status code of the header has its evstore::Code: the list below names each
// enumerator (so each must exist), and must hold exactly the header's codes, with the
// library's names.
TEST(Evstore, EveryStatusCodeOfTheHeaderHasItsCode) {
    const std::vector<std::pair<Code, std::string>> known = {
        {Code::Ok, "EVS_OK"},
        {Code::End, "EVS_END"},
        {Code::InvalidArgument, "EVS_ERR_INVALID_ARGUMENT"},
        {Code::NotFound, "EVS_ERR_NOT_FOUND"},
        {Code::AlreadyExists, "EVS_ERR_ALREADY_EXISTS"},
        {Code::WrongExpectedVersion, "EVS_ERR_WRONG_EXPECTED_VERSION"},
        {Code::InsufficientFunds, "EVS_ERR_INSUFFICIENT_FUNDS"},
        {Code::AccountClosed, "EVS_ERR_ACCOUNT_CLOSED"},
        {Code::Overflow, "EVS_ERR_OVERFLOW"},
        {Code::Locked, "EVS_ERR_LOCKED"},
        {Code::Corrupt, "EVS_ERR_CORRUPT"},
        {Code::Io, "EVS_ERR_IO"},
        {Code::TooLarge, "EVS_ERR_TOO_LARGE"},
        {Code::ReadOnly, "EVS_ERR_READ_ONLY"},
        {Code::CurrencyMismatch, "EVS_ERR_CURRENCY_MISMATCH"},
        {Code::Busy, "EVS_ERR_BUSY"},
        {Code::StreamDeleted, "EVS_ERR_STREAM_DELETED"},
        {Code::BalanceNotZero, "EVS_ERR_BALANCE_NOT_ZERO"},
        {Code::Stale, "EVS_ERR_STALE"},
        {Code::Unavailable, "EVS_ERR_UNAVAILABLE"},
        {Code::Internal, "EVS_ERR_INTERNAL"},
    };
    // The header beside this test's repository root (run.sh runs from there; CMake
    // builds give an absolute __FILE__).
    const fs::path header = fs::path(__FILE__).parent_path() / ".." / ".." / "include" / "evstore.h";
    std::FILE *f = std::fopen(header.c_str(), "r");
    ASSERT_NE(f, nullptr) << header;
    std::map<std::string, int32_t> defined;
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
        char name[128];
        int value = 0;
        if (std::sscanf(line, "#define %127[A-Z_] %d", name, &value) == 2 &&
            (std::strncmp(name, "EVS_ERR_", 8) == 0 || std::strcmp(name, "EVS_OK") == 0 ||
             std::strcmp(name, "EVS_END") == 0))
            defined[name] = value;
    }
    std::fclose(f);
    ASSERT_GE(defined.size(), 3u);
    for (const auto &[code, name] : known) {
        auto it = defined.find(name);
        if (it == defined.end()) {
            ADD_FAILURE() << name << " is in the list but not in " << header;
            continue;
        }
        EXPECT_EQ(static_cast<int32_t>(code), it->second) << name;
        EXPECT_STREQ(evstore::code_name(code), name.c_str());
        defined.erase(it);
    }
    for (const auto &[name, value] : defined)
        ADD_FAILURE() << name << " (" << value << ") of evstore.h has no evstore::Code (or is missing from this list)";
}

// ---- durable consumers (docs/consumers.md) ----

namespace {
std::vector<uint64_t> append_n(evstore::Store &s, const std::string &stream, int n) {
    std::vector<uint64_t> out;
    for (int i = 0; i < n; i++)
        out.push_back(s.append(stream, evstore::kExpectAny, {{"T", std::to_string(i)}}).first_position);
    return out;
}

std::optional<evstore::ConsumerInfo> listed(evstore::Store &s, const std::string &name) {
    for (const evstore::ConsumerInfo &c : s.consumers())
        if (c.name == name)
            return c;
    return std::nullopt;
}
}  // namespace

TEST_F(EvstoreTest, ConsumerRangeForResumesAfterItsCheckpoint) {
    std::vector<uint64_t> p;
    evstore::ConsumerOptions opts;
    opts.stream_prefix = "acct-";
    opts.checkpoint_every = 2;
    {
        evstore::Store s(path("s"));
        p = append_n(s, "acct-1", 5);
        append_n(s, "other", 1);
        evstore::Consumer c = s.open_consumer("pull", opts);
        expect_error([&] { s.open_consumer("pull", opts); }, Code::Locked);
        std::vector<std::string> payloads;
        for (const evstore::Event &e : c.events(std::chrono::milliseconds(0))) {
            payloads.emplace_back(e.payload);
            if (payloads.size() <= 3)
                c.ack(e.position);
        }
        EXPECT_EQ(payloads, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
        EXPECT_EQ(c.next_position(), p[2] + 1);
        EXPECT_EQ(c.stored_position(), p[1] + 1);
        expect_error([&] { c.ack(p[4] + 100); }, Code::InvalidArgument);
        // the destructor closes it: the checkpoint after p2 is written (p3, p4 come again)
    }
    evstore::Store s(path("s"));
    evstore::Consumer c = s.open_consumer("pull", opts);
    // the range that waits: the first event is p3
    for (const evstore::Event &e : c) {
        EXPECT_EQ(e.position, p[3]);
        break;
    }
    // moved: the old handle is empty, the new one works; closed: calls throw
    evstore::Consumer moved = std::move(c);
    expect_error([&] { c.ack(p[3]); }, Code::InvalidArgument);
    moved.ack(p[3]);
    moved.close();
    moved.close();
    expect_error([&] { moved.checkpoint(); }, Code::InvalidArgument);
}

// A consumer group (ConsumerOptions::partitions): refused by a file store; on PostgreSQL
// (EVS_PG_URL set: tests/pg/pg_server.sh run bash bindings/cpp/run.sh) two members share
// the log, each event handled once, each stream's events in order in each member.
TEST_F(EvstoreTest, ConsumerGroupOption) {
    evstore::ConsumerOptions opts;
    opts.partitions = 4;
    opts.lease_ms = 600;
    {
        evstore::Store s(path("s"));
        const evstore::Error e = caught([&] { s.open_consumer("g", opts); }, Code::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("PostgreSQL"), std::string::npos) << e.what();
    }
    const char *base = std::getenv("EVS_PG_URL");
    if (base == nullptr)
        GTEST_SKIP() << "EVS_PG_URL is not set: the PostgreSQL half is not run";
    const std::string url = std::string(base) + (std::strchr(base, '?') ? "&" : "?") +
                            "schema=cpp_group_" + std::to_string(::getpid());
    evstore::Store a(url), b(url);
    std::map<uint64_t, std::string> want;
    for (int i = 0; i < 90; i++) {
        const std::string stream = "s-" + std::to_string(i % 7);
        want[a.append(stream, evstore::kExpectAny, {{"T", "x"}}).first_position] = stream;
    }
    evstore::Consumer ca = a.open_consumer("grp", opts), cb = b.open_consumer("grp", opts);
    std::map<uint64_t, int> count;
    std::map<std::string, uint64_t> last[2];
    evstore::Consumer *members[2] = {&ca, &cb};
    // Turn by turn until neither gets anything for a while (the second member's share
    // comes when the first balances, within a third of the lease).
    for (int idle = 0; idle < 20;) {
        bool any = false;
        for (int m = 0; m < 2; m++) {
            for (const evstore::Event &e : members[m]->events(std::chrono::milliseconds(100))) {
                const std::string stream(e.stream);
                EXPECT_EQ(want[e.position], stream);
                auto it = last[m].find(stream);
                if (it != last[m].end()) {
                    EXPECT_GT(e.position, it->second) << "stream " << stream << " out of order";
                }
                last[m][stream] = e.position;
                count[e.position]++;
                members[m]->ack(e.position);
                any = true;
                break;
            }
        }
        idle = any ? 0 : idle + 1;
    }
    EXPECT_EQ(count.size(), want.size());
    for (const auto &[p, n] : count)
        EXPECT_EQ(n, 1) << "event " << p;
    EXPECT_FALSE(last[0].empty());
    EXPECT_FALSE(last[1].empty());
    const evstore::Error e = caught([&] { a.open_consumer("grp", evstore::ConsumerOptions()); }, Code::Locked);
    EXPECT_NE(std::string(e.what()).find("group of 4 partitions"), std::string::npos) << e.what();
}

TEST_F(EvstoreTest, ConsumerAppendIsAtomicWithTheCheckpoint) {
    evstore::Store s(path("s"));
    std::vector<uint64_t> src = append_n(s, "dep-1", 2);
    evstore::ConsumerOptions opts;
    opts.stream_prefix = "dep-";
    opts.checkpoint_every = 1000;
    opts.checkpoint_interval_ms = 3600000;
    evstore::Consumer c = s.open_consumer("proj", opts);
    evstore::Event e;
    ASSERT_TRUE(c.next(e, std::chrono::milliseconds(0)));
    ASSERT_EQ(e.position, src[0]);
    std::vector<evstore::StreamAppend> effect{{"totals-1", 4, {{"Total", "1"}}}};
    evstore::Error err = caught([&] { c.append(effect, e.position); }, Code::WrongExpectedVersion);
    EXPECT_EQ(err.part_index(), std::optional<size_t>(0));
    EXPECT_EQ(s.stream_version("totals-1"), -1);
    EXPECT_LE(c.stored_position(), src[0]);
    expect_error([&] { c.append(effect, src[1]); }, Code::InvalidArgument);
    effect[0].expected_version = evstore::kExpectNoStream;
    evstore::MultiAppendResult r = c.append(effect, e.position);
    EXPECT_EQ(r.stream_versions, std::vector<uint64_t>{0});
    EXPECT_EQ(c.stored_position(), src[0] + 1);
    EXPECT_EQ(s.stream_version("totals-1"), 0);
    // retry, park, replay
    ASSERT_TRUE(c.next(e, std::chrono::milliseconds(0)));
    EXPECT_FALSE(c.retry(e.position));
    ASSERT_TRUE(c.next(e, std::chrono::milliseconds(1000)));
    EXPECT_EQ(e.position, src[1]);
    c.park(e.position, "bad amount");
    std::vector<evstore::ParkedEvent> parked = s.parked("proj");
    ASSERT_EQ(parked.size(), 1u);
    EXPECT_EQ(parked[0].position, src[1]);
    EXPECT_EQ(parked[0].reason, "bad amount");
    EXPECT_GT(parked[0].parked_at_us, 0u);
    expect_error([&] { c.replay_parked(src[0]); }, Code::NotFound);
    EXPECT_EQ(c.replay_all_parked(), 1u);
    ASSERT_TRUE(c.next(e, std::chrono::milliseconds(0)));
    EXPECT_EQ(e.position, src[1]);
    c.ack(e.position);
    c.checkpoint();
    EXPECT_TRUE(s.parked("proj").empty());
}

TEST_F(EvstoreTest, ConsumerOperations) {
    evstore::Store s(path("s"));
    std::vector<uint64_t> p = append_n(s, "ops", 4);
    {
        evstore::Consumer c = s.open_consumer("ops");
        ASSERT_TRUE(listed(s, "ops").has_value());
        EXPECT_TRUE(listed(s, "ops")->open);
        expect_error([&] { s.reset_consumer("ops", 0); }, Code::Locked);
        expect_error([&] { s.delete_consumer("ops"); }, Code::Locked);
    }
    std::optional<evstore::ConsumerInfo> info = listed(s, "ops");
    ASSERT_TRUE(info.has_value());
    EXPECT_FALSE(info->open);
    EXPECT_EQ(info->next_position, p[0]);
    EXPECT_GT(info->lag_events, 0u);
    s.reset_consumer("ops", p[2]);
    EXPECT_EQ(listed(s, "ops")->next_position, p[2]);
    expect_error([&] { s.reset_consumer("ops", 1ull << 40); }, Code::NotFound);
    s.reset_consumer_to_time("ops", 0);
    EXPECT_EQ(listed(s, "ops")->next_position, 0u);
    s.delete_consumer("ops");
    EXPECT_FALSE(listed(s, "ops").has_value());
    expect_error([&] { s.parked("ops"); }, Code::NotFound);
    expect_error([&] { s.delete_consumer("ops"); }, Code::NotFound);
    expect_error([&] { s.open_consumer(""); }, Code::InvalidArgument);
    expect_error([&] { s.open_consumer(std::string("a\0b", 3)); }, Code::InvalidArgument);
    evstore::ConsumerOptions bad;
    bad.retry_backoff_ms = 500;
    bad.retry_backoff_max_ms = 100;
    expect_error([&] { s.open_consumer("x", bad); }, Code::InvalidArgument);
    EXPECT_FALSE(listed(s, "x").has_value());
}

// The worked example of docs/consumers.md: a projection kept in the store with exactly
// once effects (each account's running total in totals-<account>).
TEST_F(EvstoreTest, ConsumerProjectionExample) {
    evstore::Store s(path("s"));
    uint64_t last_deposit = 0;
    for (auto [account, amount] : std::vector<std::pair<std::string, std::string>>{{"a", "10"}, {"b", "5"}, {"a", "7"}})
        last_deposit = s.append("account-" + account, evstore::kExpectAny, {{"Deposited", amount}}).first_position;
    evstore::ConsumerOptions opts;
    opts.stream_prefix = "account-";
    opts.types = {"Deposited"};
    evstore::Consumer c = s.open_consumer("deposit-totals", opts);
    std::vector<std::string> seen;
    for (const evstore::Event &e : c.events(std::chrono::milliseconds(200))) {
        std::string totals = "totals-" + std::string(e.stream.substr(std::strlen("account-")));
        int64_t version = s.stream_version(totals);
        long total = std::stol(std::string(e.payload));
        if (version >= 0)
            for (const evstore::Event &last : s.read_stream(totals, static_cast<uint64_t>(version)))
                total += std::stol(std::string(last.payload));
        // the effect and "handled through e.position": both stored, or neither
        c.append({{totals, version, {{"TotalChanged", std::to_string(total)}}}}, e.position);
        seen.push_back(totals + "=" + std::to_string(total));
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"totals-a=10", "totals-b=5", "totals-a=17"}));
    // every deposit's total is stored with its checkpoint: the last one's too
    EXPECT_EQ(c.stored_position(), last_deposit + 1);
}
