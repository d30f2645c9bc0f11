//! Subscriptions that survive their server (issue 21 item 3): C API subscriptions on
//! PostgreSQL keep delivering while their backends are killed (`pg_terminate_backend`),
//! across a `pg_ctl restart`, and while the server is down (their status says
//! EVS_ERR_UNAVAILABLE: reconnecting), and deliver every event once, in order.
//! Writers are other handles appending with event ids, retrying each append until it is
//! acknowledged (a retry returns the stored positions). Nothing here measures time.

mod common;

use common::pg::PgServer;
use evstore::ffi::*;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::ffi::c_void;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events each writer appends.
const PER_WRITER: u64 = 400;
const WRITERS: u64 = 2;
/// The longest the test waits for anything (a writer's append, the subscribers).
const PATIENCE: Duration = Duration::from_secs(90);

/// The positions a subscription was called with, in call order.
type Seen = Mutex<Vec<u64>>;

unsafe extern "C" fn collect(ud: *mut c_void, e: *const evs_event) -> i32 {
    // SAFETY: `ud` is the test's `Seen`, alive until the subscription is closed; `e` is
    // the event of this call.
    let (seen, e) = unsafe { (&*(ud as *const Seen), &*e) };
    seen.lock().unwrap().push(e.position);
    0
}

/// A store opened through the C API with a subscription from position 0.
struct Subscriber {
    store: *mut evs_store,
    sub: *mut evs_subscription,
    seen: Box<Seen>,
}

impl Subscriber {
    fn start(url: &str) -> Subscriber {
        let store = common::pg::c_open(url);
        let seen: Box<Seen> = Box::default();
        let mut sub = std::ptr::null_mut();
        // SAFETY: a live store; `seen` outlives the subscription (closed in `finish`).
        let st = unsafe {
            evs_subscribe(
                store,
                0,
                Some(collect),
                &*seen as *const Seen as *mut c_void,
                &mut sub,
            )
        };
        assert_eq!(st, EVS_OK, "evs_subscribe");
        Subscriber { store, sub, seen }
    }

    /// (returned, *out_status) of `evs_subscription_status`.
    fn status(&self) -> (evs_status, evs_status) {
        let mut how = 12345;
        // SAFETY: a live subscription.
        let r = unsafe { evs_subscription_status(self.sub, &mut how) };
        (r, how)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Closes the subscription and the store; the positions delivered.
    fn finish(self) -> Vec<u64> {
        // SAFETY: live handles, each closed once.
        unsafe {
            assert_eq!(evs_subscription_close(self.sub), EVS_OK);
            assert_eq!(evs_close(self.store), EVS_OK);
        }
        self.seen.into_inner().unwrap()
    }
}

/// Appends `PER_WRITER` events with ids, each retried until acknowledged; returns the
/// positions acknowledged.
fn writer(url: String, w: u64) -> Vec<u64> {
    let deadline = Instant::now() + PATIENCE;
    let store = loop {
        match Store::open(&url, StoreOptions::default(), Vec::new()) {
            Ok((s, _)) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "writer {w} cannot open: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let mut got = Vec::new();
    for i in 0..PER_WRITER {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&w.to_le_bytes());
        id[8..].copy_from_slice(&(i + 1).to_le_bytes());
        let payload = i.to_le_bytes();
        let mut input = EventInput::new("E", &payload);
        input.id = Some(id);
        loop {
            match store.append(&format!("w{w}"), ExpectedVersion::Any, &[input]) {
                Ok(r) => {
                    got.push(r.first_position);
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "writer {w}: append {i} never succeeded: {e:?}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    got
}

/// Terminates every evstore backend but the listed ones' (the writers', the
/// subscribers', their listeners); how many.
fn kill_backends(pg_url: &str) -> i64 {
    common::pg::sql(
        pg_url,
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where application_name like 'evstore/%' and pid <> pg_backend_pid()",
    )
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

#[test]
fn subscriptions_deliver_every_event_once_across_killed_backends_and_a_restart() {
    let pg = PgServer::start();
    let url = format!("{}?schema=resub&timeout=3000&connect_timeout=2", pg.url());
    // The schema first, so that writers and subscribers open at once.
    drop(Store::open(&url, StoreOptions::default(), Vec::new()).unwrap());
    let subs = [Subscriber::start(&url), Subscriber::start(&url)];
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || writer(url, w))
        })
        .collect();
    let progress = |n: usize| {
        let deadline = Instant::now() + PATIENCE;
        while subs.iter().any(|s| s.count() < n) {
            assert!(
                Instant::now() < deadline,
                "the subscribers stopped short of {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Backends killed while the subscribers consume.
    let mut killed = 0;
    for round in 1..=8 {
        progress(round * 30);
        killed += kill_backends(pg.url());
        for s in &subs {
            assert_eq!(s.status().0, EVS_OK, "a subscription ended after a kill");
        }
    }
    assert!(killed > 0, "no backend was killed");
    // A restart while they consume.
    progress(300);
    pg.ctl("restart").unwrap();
    progress(400);
    // Down for a while: the subscriptions say they reconnect, and go on afterwards.
    pg.ctl("stop").unwrap();
    let deadline = Instant::now() + PATIENCE;
    for s in &subs {
        while s.status() != (EVS_OK, EVS_ERR_UNAVAILABLE) {
            assert_eq!(
                s.status().0,
                EVS_OK,
                "a subscription ended while the server was down"
            );
            assert!(
                Instant::now() < deadline,
                "no subscription said it was reconnecting"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    pg.ctl("start").unwrap();
    let mut acknowledged: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    acknowledged.sort_unstable();
    let total = (WRITERS * PER_WRITER) as usize;
    assert_eq!(
        acknowledged,
        (0..total as u64).collect::<Vec<_>>(),
        "each acknowledged event at its own position, dense"
    );
    progress(total);
    for s in &subs {
        assert_eq!(s.status(), (EVS_OK, EVS_OK), "delivering again");
    }
    for s in subs {
        let seen = s.finish();
        assert_eq!(
            seen,
            (0..total as u64).collect::<Vec<_>>(),
            "every event delivered once, in order"
        );
    }
    pg.stop().unwrap();
}
