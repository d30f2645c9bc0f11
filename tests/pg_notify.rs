//! Wake-ups on PostgreSQL: a waiting subscriber of one handle is woken by the notification
//! another handle's (or another writer's) commit sends, not by polling. The waiting
//! handles are opened with `poll_ms=30000` (their safety-net poll) and wait at most 10 s:
//! a delivery within that wait came from a notification. Nothing here measures time.

mod common;

use common::pg::PgServer;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::time::{Duration, Instant};

/// The longest a test waits for one delivery (far below the 30 s safety-net poll).
const WAIT: Duration = Duration::from_secs(10);

fn open(url: &str) -> Store {
    Store::open(url, StoreOptions::default(), Vec::new())
        .expect("the PostgreSQL store opens")
        .0
}

/// Runs SQL; the first column of the first row, as a number.
fn sql(url: &str, statement: &str) -> Option<i64> {
    common::pg::sql(url, statement).and_then(|v| v.parse().ok())
}

/// Appends one event from another thread a moment after the call, while the caller waits.
fn append_soon(store: &std::sync::Arc<Store>, payload: u32) -> std::thread::JoinHandle<u64> {
    let s = store.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        s.append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("E", &payload.to_le_bytes())],
        )
        .unwrap()
        .first_position
    })
}

/// Makes `sub` listen (a handle listens from its first wait on, connecting on the
/// runtime) and waits until its listener is there: later deliveries within `WAIT` then
/// come from notifications, not from the polling that covers the connection's setup.
fn listening(pg_url: &str, schema: &str, sub: &Store) {
    let seen = sub.next_position().unwrap();
    sub.wait_for_events(seen, Duration::from_millis(1));
    let listeners = format!(
        "select count(*) from pg_stat_activity where application_name like 'evstore/%' \
         and query like '/* evstore listener */ select %\"{schema}\".head hd'"
    );
    let deadline = Instant::now() + WAIT;
    while sql(pg_url, &listeners) != Some(1) {
        assert!(Instant::now() < deadline, "the subscriber does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `WAIT`, in one call) for events past `seen`, then reads them with a
/// tailing cursor; returns the payloads read.
fn wait_and_read(sub: &Store, seen: u64) -> Vec<Vec<u8>> {
    let head = sub.wait_for_events(seen, WAIT);
    assert!(
        head > seen,
        "no wake-up within {WAIT:?} for events past {seen}: the notification did not arrive"
    );
    let mut tail = sub.read_all(seen).unwrap();
    let mut out = Vec::new();
    while let Some(e) = tail.next().unwrap() {
        out.push(e.payload.to_vec());
    }
    out
}

#[test]
fn a_waiting_subscriber_is_woken_by_another_handles_commits() {
    let pg = PgServer::start();
    let url = format!("{}?schema=notified", pg.url());
    let writer = std::sync::Arc::new(open(&url));
    let sub = open(&format!("{url}&poll_ms=30000"));
    listening(pg.url(), "notified", &sub);
    let mut seen = sub.next_position().unwrap();
    assert_eq!(seen, 0);
    for i in 0..5u32 {
        let appender = append_soon(&writer, i);
        let got = wait_and_read(&sub, seen);
        assert_eq!(appender.join().unwrap(), seen);
        assert_eq!(got, vec![i.to_le_bytes().to_vec()]);
        seen += 1;
    }
    // A burst of appends from several threads: the subscriber follows it to the end.
    let burst: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    w.append(
                        "b",
                        ExpectedVersion::Any,
                        &[EventInput::new("E", &i.to_le_bytes())],
                    )
                    .unwrap();
                }
                t
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT * 3;
    while seen < 105 {
        assert!(
            Instant::now() < deadline,
            "the subscriber stopped at {seen} of 105"
        );
        seen += wait_and_read(&sub, seen).len() as u64;
    }
    for b in burst {
        b.join().unwrap();
    }
    assert_eq!(seen, 105);
}

#[test]
fn a_plain_notify_from_another_writer_makes_waiters_read_the_head() {
    let pg = PgServer::start();
    let url = format!("{}?schema=outside", pg.url());
    let sub = open(&format!("{url}&poll_ms=30000"));
    listening(pg.url(), "outside", &sub);
    let waiter = std::thread::spawn(move || {
        let got = wait_and_read(&sub, 0);
        assert_eq!(got, vec![b"raw".to_vec()]);
    });
    std::thread::sleep(Duration::from_millis(200));
    // Another writer: the append function on a connection of its own (telling it to
    // notify a channel nobody listens on), then a notify without a payload.
    let first = sql(
        pg.url(),
        "set search_path to outside; select res from append(array[1], array['x'], array[-1]::bigint[], array[1], \
         array[null]::uuid[], array['E'], array[1], array['']::bytea[], array['raw']::bytea[], \
         '{}'::uuid[], '{}'::int[], '{}'::int[], false, 'nobody')",
    );
    assert_eq!(first, Some(0));
    sql(pg.url(), "notify \"evs_outside\"");
    waiter.join().unwrap();
}

#[test]
fn the_listener_reconnects_after_its_connection_is_killed() {
    let pg = PgServer::start();
    let url = format!("{}?schema=relisten", pg.url());
    let writer = std::sync::Arc::new(open(&url));
    let sub = open(&format!("{url}&poll_ms=30000"));
    let listeners =
        "select count(*) from pg_stat_activity where application_name like 'evstore/%' \
                     and query like '/* evstore listener */ select %\"relisten\".head hd'";
    // A handle listens from its first wait on: the writer, which never waits, does not
    // (its backend is not signalled by every commit); the subscriber once, whatever the
    // number of waits.
    writer
        .append("s", ExpectedVersion::Any, &[EventInput::new("E", b"")])
        .unwrap();
    assert_eq!(sql(pg.url(), listeners), Some(0));
    for _ in 0..3 {
        assert_eq!(sub.wait_for_events(1, Duration::from_millis(10)), 1);
    }
    // It connects on the runtime, not inside the wait.
    let deadline = Instant::now() + WAIT;
    while sql(pg.url(), listeners) != Some(1) {
        assert!(Instant::now() < deadline, "the subscriber does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sql(pg.url(), listeners),
        Some(1),
        "one listener, whatever the waits"
    );
    sql(
        pg.url(),
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where application_name like 'evstore/%' and pid <> pg_backend_pid()",
    );
    // The listener connects again by itself (its last statement reads the head).
    let deadline = Instant::now() + WAIT;
    while sql(pg.url(), listeners) != Some(1) {
        assert!(Instant::now() < deadline, "the listener did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let appender = append_soon(&writer, 7);
    let got = wait_and_read(&sub, 1);
    assert_eq!(appender.join().unwrap(), 1);
    assert_eq!(got, vec![7u32.to_le_bytes().to_vec()]);
}
