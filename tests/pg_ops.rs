//! Operating the PostgreSQL backend (issue 21 item 10): its metrics through the C API
//! (`evs_metrics_text`: the committer's queue and batches, retries, reconnects, the
//! connections, each subscription's lag and reconnections) and the connections a handle
//! makes (`read_connections=`). Nothing here measures time.

mod common;

use common::pg::PgServer;
use evstore::ffi::*;
use std::ffi::{c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Appends one event to `stream`, with an id if given; its status.
fn append(s: *mut evs_store, stream: &str, id: Option<[u8; 16]>) -> evs_status {
    let stream = CString::new(stream).unwrap();
    let ty = CString::new("E").unwrap();
    let input = evs_event_input {
        struct_size: std::mem::size_of::<evs_event_input>(),
        event_type: ty.as_ptr(),
        payload: b"x".as_ptr(),
        payload_len: 1,
        metadata: std::ptr::null(),
        metadata_len: 0,
        schema_version: 1,
        id: id.unwrap_or([0; 16]),
        subject: std::ptr::null(),
    };
    let (mut first, mut version) = (0, 0);
    // SAFETY: a live store, one valid event, out pointers.
    unsafe { evs_append(s, stream.as_ptr(), -1, &input, 1, &mut first, &mut version) }
}

/// The store's metrics: each sample line's name (with labels) and value.
fn metrics(s: *mut evs_store) -> Vec<(String, u64)> {
    let mut text = std::ptr::null_mut();
    // SAFETY: a live store, an out pointer; the text is freed below.
    assert_eq!(unsafe { evs_metrics_text(s, &mut text) }, EVS_OK);
    // SAFETY: the library's NUL-terminated string.
    let owned = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: returned by evs_metrics_text, freed once.
    unsafe { evs_string_free(text) };
    owned
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

fn metric(s: *mut evs_store, name: &str) -> u64 {
    metrics(s)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .1
}

/// Connections of the schema's handles in pg_stat_activity.
fn backends(pg_url: &str, schema: &str) -> u64 {
    common::pg::sql(
        pg_url,
        &format!(
            "select count(*) from pg_stat_activity where application_name = 'evstore/{schema}'"
        ),
    )
    .and_then(|n| n.parse().ok())
    .unwrap()
}

/// A subscription callback that holds each call while `held` is set, counting events.
struct Slow {
    held: AtomicBool,
    seen: AtomicU64,
}

unsafe extern "C" fn slow(ud: *mut c_void, _e: *const evs_event) -> i32 {
    // SAFETY: `ud` is the test's `Slow`, alive until the subscription is closed.
    let slow = unsafe { &*(ud as *const Slow) };
    while slow.held.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(5));
    }
    slow.seen.fetch_add(1, Ordering::AcqRel);
    0
}

#[test]
fn metrics_count_batches_retries_reconnects_connections_and_subscription_lag() {
    let pg = PgServer::start();
    let url = format!("{}?schema=ops&read_connections=3", pg.url());
    let s = common::pg::c_open(&url);
    // Three read connections, made as reads need them, in turn; the committer's at the
    // first append.
    for _ in 0..6 {
        let mut next = 0;
        // SAFETY: a live store, an out pointer.
        assert_eq!(unsafe { evs_snapshot(s, &mut next) }, EVS_OK);
    }
    assert_eq!(metric(s, "evstore_pg_read_connections"), 3);
    for i in 0..5u8 {
        assert_eq!(append(s, "a", Some([i + 1; 16])), EVS_OK);
    }
    // 3 read connections and the committer (the open's own, closed, may linger a moment).
    let deadline = Instant::now() + Duration::from_secs(30);
    while backends(pg.url(), "ops") != 4 {
        assert!(
            Instant::now() < deadline,
            "{} connections",
            backends(pg.url(), "ops")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(s, "evstore_pg_batches_total"), 5);
    assert_eq!(metric(s, "evstore_pg_batch_appends_total"), 5);
    assert_eq!(metric(s, "evstore_pg_batch_events_total"), 5);
    assert_eq!(metric(s, "evstore_pg_batch_appends_max"), 1);
    assert_eq!(metric(s, "evstore_pg_append_queue"), 0);
    assert_eq!(metric(s, "evstore_pg_retries_total"), 0);
    assert_eq!(metric(s, "evstore_pg_reconnects_total"), 0);
    // A retry of an acknowledged append: its batch's call fails on the stored id and the
    // append is sent again with its ids looked up.
    assert_eq!(append(s, "a", Some([1; 16])), EVS_OK);
    assert!(metric(s, "evstore_pg_retries_total") >= 1);
    // Every connection killed: the next calls connect again, counted.
    common::pg::sql(
        pg.url(),
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where application_name = 'evstore/ops'",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while append(s, "a", None) != EVS_OK {
        assert!(Instant::now() < deadline, "no append after the kill");
    }
    let after = metrics(s);
    let reconnects = after
        .iter()
        .find(|(k, _)| k == "evstore_pg_reconnects_total")
        .unwrap()
        .1;
    assert!(
        reconnects >= 2,
        "committer and a read connection: {reconnects}"
    );

    // A subscription held in its callback lags; released, it catches up to lag 0.
    let held = Box::new(Slow {
        held: AtomicBool::new(true),
        seen: AtomicU64::new(0),
    });
    let mut sub = std::ptr::null_mut();
    // SAFETY: a live store; `held` outlives the subscription (closed below).
    let st = unsafe {
        evs_subscribe(
            s,
            0,
            Some(slow),
            &*held as *const Slow as *mut c_void,
            &mut sub,
        )
    };
    assert_eq!(st, EVS_OK);
    let head = {
        let mut n = 0;
        // SAFETY: a live store, an out pointer.
        assert_eq!(unsafe { evs_snapshot(s, &mut n) }, EVS_OK);
        n
    };
    let lag = |s| metric(s, "evstore_subscription_lag_events{subscription=\"0\"}");
    // Held in its first call: positions 0.. are not read past.
    assert!(lag(s) >= head - 1, "lag {} of {head}", lag(s));
    assert_eq!(
        metric(s, "evstore_subscription_reconnecting{subscription=\"0\"}"),
        0
    );
    held.held.store(false, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lag(s) != 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription does not catch up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(held.seen.load(Ordering::Acquire), head);
    // SAFETY: live handles, each closed once.
    unsafe {
        assert_eq!(evs_subscription_close(sub), EVS_OK);
        assert_eq!(evs_close(s), EVS_OK);
    }
    pg.stop().unwrap();
}
