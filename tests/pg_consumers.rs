//! Durable consumers on PostgreSQL (docs/consumers.md, schema version 6), each test with
//! a server of its own: resuming in this process and another, one holder at a time and a
//! killed holder letting go when its lease ends, at-least-once under SIGKILLed consumer
//! processes, the atomic append and checkpoint under kills (effects counted), retry and
//! park, reset, delete and the list with lag, and consumers going on across killed
//! backends (`pg_terminate_backend`) and a server restart. Nothing here measures time.

mod common;

use common::pg::PgServer;
use common::procs::{self, Children};
use evstore::ffi::*;
use evstore::store::consumer::Filter;
use evstore::store::consumer_run::{self, Consumer, ConsumerOptions, Retried};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::ErrorKind;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD: &str = "child";
/// The longest the test waits for anything.
const PATIENCE: Duration = Duration::from_secs(90);

fn open(url: &str) -> Arc<Store> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Store::open(url, StoreOptions::default(), Vec::new()) {
            Ok((s, _)) => return Arc::new(s),
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot open {url}: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `Consumer::open`, tried again while it is `Locked` (a killed holder's lease runs).
fn open_consumer(store: &Arc<Store>, name: &str, opts: &ConsumerOptions) -> Consumer {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Consumer::open(store.clone(), name, opts.clone()) {
            Ok(c) => return c,
            Err(e) if matches!(e.kind, ErrorKind::Locked | ErrorKind::Unavailable) => {
                assert!(Instant::now() < deadline, "never opened: {e:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening consumer {name}: {e:?}"),
        }
    }
}

fn append(store: &Store, stream: &str, payload: &str) -> u64 {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            &[EventInput::new("T", payload.as_bytes())],
        )
        .expect("append")
        .first_position
}

/// The next event's position and payload, or `None` within `ms`.
fn next(c: &mut Consumer, ms: u64) -> Option<(u64, String)> {
    c.next_with(Some(Duration::from_millis(ms)), |e| {
        (e.position, String::from_utf8_lossy(e.payload).into_owned())
    })
    .expect("next")
}

fn quick() -> ConsumerOptions {
    ConsumerOptions {
        retry_backoff: Duration::from_millis(1),
        retry_backoff_max: Duration::from_millis(4),
        lease: Duration::from_millis(400),
        ..ConsumerOptions::default()
    }
}

/// `quick()` with a lease that outlives a renewal delayed by a loaded machine (a third of
/// 400 ms was seen to pass unrenewed under a full `make test` beside other builds): for
/// the holders whose lease a test checks is kept while they live.
fn held() -> ConsumerOptions {
    ConsumerOptions {
        lease: Duration::from_millis(1500),
        ..quick()
    }
}

fn url_of(pg: &PgServer, schema: &str) -> String {
    format!(
        "{}?schema={schema}&timeout=3000&connect_timeout=2",
        pg.url()
    )
}

#[test]
#[ignore = "a child process of the tests in this file"]
fn child() {
    let url = std::env::var("EVS_TEST_URL").expect("EVS_TEST_URL");
    match procs::role().as_str() {
        "hold" => {
            let store = open(&url);
            let mut c = open_consumer(&store, "c", &held());
            let (p, _) = next(&mut c, 5000).expect("an event");
            c.ack(p).unwrap();
            c.checkpoint().unwrap();
            procs::report(&format!("held {p}"));
            // Held (its lease renewed) until the parent kills it.
            procs::wait_for_parent();
        }
        "consume" => consume_child(&url),
        "project" => project_child(&url),
        "member" => member_child(&url),
        other => panic!("no role {other}"),
    }
}

/// Consumes stream "s" with a checkpoint every 7 acknowledgements: reports each event
/// before acknowledging it ("h POS") and each stored checkpoint ("ck NEXT"); "end" once
/// nothing more comes.
fn consume_child(url: &str) {
    let store = open(url);
    let opts = ConsumerOptions {
        filter: Filter {
            stream_prefix: Some("s".into()),
            types: Vec::new(),
        },
        checkpoint_every: 7,
        ..quick()
    };
    let mut c = open_consumer(&store, "k", &opts);
    procs::report(&format!("ck {}", c.stored()));
    while let Some((p, _)) = next(&mut c, 300) {
        procs::report(&format!("h {p}"));
        let before = c.stored();
        c.ack(p).expect("ack");
        if c.stored() != before {
            procs::report(&format!("ck {}", c.stored()));
        }
    }
    c.close().expect("close");
    procs::report("end");
}

/// The atomic step with the effect of event `p` (its position, on stream "effects"),
/// tried again while the server cannot be reached (the same call settles an in-doubt one).
fn project_one(c: &mut Consumer, p: u64) {
    let payload = p.to_string();
    let ev = [EventInput::new("Effect", payload.as_bytes())];
    let part = [StreamAppend {
        stream: "effects",
        expected: ExpectedVersion::Any,
        events: &ev,
    }];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match c.append_ack(&part, p) {
            Ok(_) => return,
            Err(e) if e.kind == ErrorKind::Unavailable && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the atomic step for {p}: {e:?}"),
        }
    }
}

fn project_opts() -> ConsumerOptions {
    ConsumerOptions {
        filter: Filter {
            stream_prefix: Some("src-".into()),
            types: Vec::new(),
        },
        // Only the atomic steps store progress.
        checkpoint_every: u64::MAX,
        checkpoint_interval: Duration::from_secs(3600),
        ..quick()
    }
}

/// For each event of "src-" streams, appends its effect and acknowledges it in one step;
/// reports "e POS" after each step, "end" at the end.
fn project_child(url: &str) {
    let store = open(url);
    let mut c = open_consumer(&store, "proj", &project_opts());
    while let Some((p, _)) = next(&mut c, 300) {
        project_one(&mut c, p);
        procs::report(&format!("e {p}"));
    }
    procs::report("end");
}

/// The group's options: 8 partitions, a lease of 3 s, a checkpoint every 50 events.
fn group_opts() -> ConsumerOptions {
    ConsumerOptions {
        partitions: 8,
        lease: Duration::from_secs(3),
        checkpoint_every: 50,
        ..quick()
    }
}

/// A member of group "grp": reports each event before acknowledging it ("h POS STREAM")
/// and each checkpoint it stored ("ck NEXT"); leaves once nothing came for 8 s.
fn member_child(url: &str) {
    let store = open(url);
    let mut c = open_consumer(&store, "grp", &group_opts());
    let mut reported = u64::MAX;
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(8) {
        let got = c
            .next_with(Some(Duration::from_millis(200)), |e| {
                (e.position, e.stream.to_owned())
            })
            .expect("next");
        if c.stored() != reported {
            reported = c.stored();
            procs::report(&format!("ck {reported}"));
        }
        let Some((p, stream)) = got else { continue };
        idle = Instant::now();
        procs::report(&format!("h {p} {stream}"));
        // Paced, so that the kill lands while every member has work.
        std::thread::sleep(Duration::from_millis(5));
        c.ack(p).expect("ack");
        if c.stored() != reported {
            reported = c.stored();
            procs::report(&format!("ck {reported}"));
        }
    }
    c.close().expect("close");
    procs::report("end");
}

/// The effects on stream "effects": how often each source position has one.
fn effects(store: &Store) -> BTreeMap<u64, u32> {
    let mut effects: BTreeMap<u64, u32> = BTreeMap::new();
    let mut cursor = store.read_stream("effects", 0).expect("effects");
    while let Some(e) = cursor.next().unwrap() {
        let source: u64 = std::str::from_utf8(e.payload).unwrap().parse().unwrap();
        *effects.entry(source).or_default() += 1;
    }
    effects
}

#[test]
fn a_consumer_resumes_after_its_checkpoint_and_a_killed_holder_lets_go_when_its_lease_ends() {
    let pg = PgServer::start();
    let url = url_of(&pg, "resume");
    let store = open(&url);
    for i in 0..10 {
        append(&store, "s", &format!("e{i}"));
    }
    let mut c = open_consumer(&store, "c", &held());
    for want in 0..5 {
        let (p, _) = next(&mut c, 1000).expect("an event");
        assert_eq!(p, want);
        c.ack(p).unwrap();
    }
    // Open meanwhile: refused, in this process too, however long it waits.
    std::thread::sleep(held().lease * 2);
    let again = Consumer::open(store.clone(), "c", quick())
        .err()
        .expect("refused");
    assert_eq!(again.kind, ErrorKind::Locked, "{}", again.message);
    assert!(again.message.contains("lease"), "{}", again.message);
    c.close().unwrap();
    // Closed: let go at once.
    let mut c = Consumer::open(store.clone(), "c", quick()).expect("reopen");
    assert_eq!(next(&mut c, 1000).unwrap().0, 5);
    c.ack(5).unwrap();
    c.close().unwrap();
    // Another process resumes at 6 and holds it until it is killed.
    let mut kids = Children::new();
    let k = kids.spawn(CHILD, "hold", &[("EVS_TEST_URL", url.clone())]);
    let (_, line) = kids.next_line().expect("the child's report");
    assert_eq!(line, "held 6");
    std::thread::sleep(held().lease * 2);
    let e = Consumer::open(store.clone(), "c", quick())
        .err()
        .expect("held by the child");
    assert_eq!(e.kind, ErrorKind::Locked, "{}", e.message);
    let listed = consumer_run::list(&store).unwrap();
    assert!(listed[0].open, "{listed:?}");
    kids.kill(k);
    kids.wait_all();
    // Dead: its lease ends, and the consumer resumes after its checkpoint.
    let mut c = open_consumer(&store, "c", &quick());
    assert_eq!(next(&mut c, 1000).unwrap().0, 7);
    c.close().unwrap();
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn sigkilled_consumer_processes_deliver_everything_at_least_once_and_nothing_before_a_checkpoint_twice(
) {
    // As many rounds as fit in about a minute (at most EVS_CONSUMER_ROUNDS).
    let rounds: u64 = std::env::var("EVS_CONSUMER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let budget = Duration::from_secs(60);
    let pg = PgServer::start();
    let url = url_of(&pg, "kills");
    let mut wanted = BTreeSet::new();
    {
        let store = open(&url);
        for i in 0..1500 {
            // One event in five is of a stream the filter passes over.
            let stream = if i % 5 == 4 { "other" } else { "s" };
            let p = append(&store, stream, &format!("e{i}"));
            if stream == "s" {
                wanted.insert(p);
            }
        }
    }
    let env = [("EVS_TEST_URL", url.clone())];
    let mut handled: BTreeMap<u64, u32> = BTreeMap::new();
    // The last checkpoint a child reported stored (it is, once reported).
    let mut checkpoint = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut finished = false;
    let started = Instant::now();
    let mut round = 0;
    let mut kills = 0;
    while !finished {
        round += 1;
        assert!(round < rounds + 100, "never finished");
        let mut kids = Children::new();
        let k = kids.spawn(CHILD, "consume", &env);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let last = round > rounds || started.elapsed() > budget;
        let kill_after = if last { u64::MAX } else { 1 + seed % 60 };
        let mut lines = 0u64;
        while let Some((_, line)) = kids.next_line() {
            let (what, n) = line.split_once(' ').unwrap_or((line.as_str(), "0"));
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "h" => {
                    assert!(
                        n >= checkpoint,
                        "round {round}: position {n} delivered again after checkpoint {checkpoint}"
                    );
                    assert!(wanted.contains(&n), "position {n} is not one of stream s");
                    *handled.entry(n).or_default() += 1;
                }
                "ck" => {
                    assert!(
                        n >= checkpoint,
                        "a checkpoint went back: {n} < {checkpoint}"
                    );
                    checkpoint = n;
                }
                "end" => finished = true,
                _ => {}
            }
            lines += 1;
            if lines == kill_after {
                kids.kill(k);
                kills += 1;
            }
        }
        kids.wait_all();
    }
    let missing: Vec<_> = wanted.iter().filter(|p| !handled.contains_key(p)).collect();
    assert!(missing.is_empty(), "events never handled: {missing:?}");
    let again = handled.values().filter(|&&n| n > 1).count();
    eprintln!("{kills} consumer processes killed; {again} events handled more than once");
    assert!(kills > 0, "no process was killed");
    pg.stop().unwrap();
}

#[test]
fn atomic_append_and_checkpoint_under_kills_has_every_effect_exactly_once() {
    let pg = PgServer::start();
    let url = url_of(&pg, "atomic");
    let mut sources = BTreeSet::new();
    {
        let store = open(&url);
        for i in 0..300 {
            sources.insert(append(&store, &format!("src-{}", i % 7), &format!("e{i}")));
            if i % 3 == 0 {
                append(&store, "noise", "n");
            }
        }
    }
    let env = [("EVS_TEST_URL", url.clone())];
    let mut seed = 12345u64;
    let mut finished = false;
    let mut round = 0;
    while !finished {
        round += 1;
        assert!(round < 200, "never finished");
        let mut kids = Children::new();
        let k = kids.spawn(CHILD, "project", &env);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = if round > 30 {
            u64::MAX
        } else {
            1 + (seed >> 33) % 25
        };
        let mut lines = 0;
        while let Some((_, line)) = kids.next_line() {
            finished |= line == "end";
            lines += 1;
            if lines == kill_after {
                kids.kill(k);
            }
        }
        kids.wait_all();
    }
    let store = open(&url);
    let effects = effects(&store);
    let twice: Vec<_> = effects.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "effects not exactly once: {twice:?}");
    assert_eq!(effects.keys().copied().collect::<BTreeSet<_>>(), sources);
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn retries_back_off_then_park_and_parked_events_replay_durably() {
    let pg = PgServer::start();
    let url = url_of(&pg, "park");
    let store = open(&url);
    for i in 0..4 {
        append(&store, "s", &format!("e{i}"));
    }
    let opts = ConsumerOptions {
        max_retries: 2,
        ..quick()
    };
    let mut c = open_consumer(&store, "r", &opts);
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert!(matches!(c.retry(0).unwrap(), Retried::After(_)));
    // The same event again, then the ones after it.
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert!(matches!(c.retry(0).unwrap(), Retried::After(_)));
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    assert_eq!(c.retry(0).unwrap(), Retried::Parked);
    assert_eq!(next(&mut c, 1000).unwrap().0, 1);
    c.park(1, "bad payload").unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 2);
    let e = c.ack(3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    c.ack(2).unwrap();
    c.close().unwrap();

    let parked = consumer_run::parked_of(&store, "r").unwrap();
    let reasons: Vec<_> = parked
        .iter()
        .map(|p| (p.position, p.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![(0, "gave up after 2 retries"), (1, "bad payload")]
    );
    let mut c = open_consumer(&store, "r", &opts);
    assert_eq!(c.replay_parked(None).unwrap(), 2);
    assert_eq!(next(&mut c, 1000).unwrap(), (0, "e0".into()));
    c.ack(0).unwrap();
    assert_eq!(next(&mut c, 1000).unwrap(), (1, "e1".into()));
    c.park(1, "still bad").unwrap();
    assert_eq!(next(&mut c, 1000).unwrap().0, 3);
    c.ack(3).unwrap();
    assert_eq!(
        c.replay_parked(Some(7)).unwrap_err().kind,
        ErrorKind::NotFound
    );
    c.close().unwrap();
    drop(store);
    // Another handle (another connection) finds them as they were left.
    let store = open(&url);
    let parked = consumer_run::parked_of(&store, "r").unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].position, parked[0].reason.as_str()),
        (1, "still bad")
    );
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].parked, 1);
    assert_eq!(listed[0].next, Some(4));
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn reset_and_delete_move_a_closed_consumer_and_list_shows_its_lag() {
    let pg = PgServer::start();
    let url = url_of(&pg, "reset");
    let store = open(&url);
    for i in 0..10 {
        append(&store, "s", &format!("e{i}"));
    }
    let mut c = open_consumer(&store, "x", &quick());
    for _ in 0..4 {
        let (p, _) = next(&mut c, 1000).unwrap();
        c.ack(p).unwrap();
    }
    assert_eq!(
        consumer_run::reset(&store, "x", 0).unwrap_err().kind,
        ErrorKind::Locked
    );
    assert_eq!(
        consumer_run::delete(&store, "x").unwrap_err().kind,
        ErrorKind::Locked
    );
    let listed = consumer_run::list(&store).unwrap();
    assert!(listed[0].open);
    c.close().unwrap();
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed[0].next, Some(4));
    assert!(!listed[0].open);
    assert_eq!(listed[0].lag_events, 6);
    assert!(listed[0].lag_us > 0, "{listed:?}");
    assert_eq!(
        consumer_run::reset(&store, "x", 11).unwrap_err().kind,
        ErrorKind::NotFound
    );
    consumer_run::reset(&store, "x", 2).unwrap();
    let mut c = open_consumer(&store, "x", &quick());
    assert_eq!(next(&mut c, 1000).unwrap().0, 2);
    c.close().unwrap();
    // To a time: the first position after it.
    let t = store.read_event(7).unwrap().timestamp_us;
    let at = store.position_after(t - 1).unwrap();
    consumer_run::reset(&store, "x", at).unwrap();
    let mut c = open_consumer(&store, "x", &quick());
    assert_eq!(next(&mut c, 1000).unwrap().0, at);
    // Caught up: no lag.
    while let Some((p, _)) = next(&mut c, 50) {
        c.ack(p).unwrap();
    }
    c.close().unwrap();
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!((listed[0].lag_events, listed[0].lag_us), (0, 0));
    consumer_run::delete(&store, "x").unwrap();
    assert!(consumer_run::list(&store).unwrap().is_empty());
    assert_eq!(
        consumer_run::delete(&store, "x").unwrap_err().kind,
        ErrorKind::NotFound
    );
    // A deleted name starts afresh, at its start position.
    let mut c = open_consumer(&store, "x", &quick());
    assert_eq!(next(&mut c, 1000).unwrap().0, 0);
    c.close().unwrap();
    drop(store);
    pg.stop().unwrap();
}

/// Appends source event `i` with an id, tried again while the server cannot be reached
/// (a retry with the id returns the stored position).
fn append_retried(store: &Store, i: u64) {
    let mut ev = EventInput::new("T", b"late");
    let mut id = [7u8; 16];
    id[..8].copy_from_slice(&i.to_le_bytes());
    ev.id = Some(id);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match store.append(&format!("src-{}", i % 5), ExpectedVersion::Any, &[ev]) {
            Ok(_) => return,
            Err(e) if e.kind == ErrorKind::Unavailable && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("append {i}: {e:?}"),
        }
    }
}

/// Terminates every evstore backend but this statement's; how many.
fn kill_backends(pg_url: &str) -> i64 {
    common::pg::sql(
        pg_url,
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where application_name like 'evstore/%' and pid <> pg_backend_pid()",
    )
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

/// The positions a durable subscription's callback was called with, in call order.
type Seen = Mutex<Vec<u64>>;

unsafe extern "C" fn collect(ud: *mut c_void, _c: *mut evs_consumer, e: *const evs_event) -> i32 {
    // SAFETY: `ud` is the test's `Seen`, alive until the subscription is closed; `e` is
    // the event of this call.
    let (seen, e) = unsafe { (&*(ud as *const Seen), &*e) };
    seen.lock().unwrap().push(e.position);
    EVS_CONSUMER_ACK
}

#[test]
fn consumers_go_on_across_killed_backends_and_a_server_restart() {
    let pg = PgServer::start();
    let url = url_of(&pg, "outage");
    let store = open(&url);
    let total = 600u64;
    for i in 0..total / 2 {
        append_retried(&store, i);
    }
    // A projection with the atomic step (pull form, this process) ...
    let projector = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut c = open_consumer(&store, "proj", &project_opts());
            let mut done = 0;
            let deadline = Instant::now() + PATIENCE;
            while done < total {
                assert!(
                    Instant::now() < deadline,
                    "the projection stopped at {done}"
                );
                match c.next_with(Some(Duration::from_millis(200)), |e| e.position) {
                    Ok(Some(p)) => {
                        project_one(&mut c, p);
                        done += 1;
                    }
                    Ok(None) => {}
                    Err(e) if e.kind == ErrorKind::Unavailable => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("the projection: {e:?}"),
                }
            }
            c.close().unwrap();
        })
    };
    // ... and a durable subscription (C API, a library thread).
    let cs = common::pg::c_open(&url);
    let seen: Box<Seen> = Box::default();
    let name = CString::new("sub").unwrap();
    let prefix = CString::new("src-").unwrap();
    // SAFETY: a C struct of integers and pointers, for which all zeros (NULL) is valid.
    let mut opts: evs_consumer_options = unsafe { std::mem::zeroed() };
    opts.struct_size = std::mem::size_of::<evs_consumer_options>();
    opts.stream_prefix = prefix.as_ptr();
    opts.checkpoint_every = 10;
    opts.lease_ms = 500;
    let mut sub = std::ptr::null_mut();
    // SAFETY: a live store; `seen` outlives the subscription (closed below).
    let st = unsafe {
        evs_subscribe_durable(
            cs,
            name.as_ptr(),
            &opts,
            Some(collect),
            &*seen as *const Seen as *mut c_void,
            &mut sub,
        )
    };
    assert_eq!(st, EVS_OK);
    let status = || {
        let mut how = 12345;
        // SAFETY: a live subscription.
        let r = unsafe { evs_subscription_status(sub, &mut how) };
        (r, how)
    };
    let why = || {
        // SAFETY: a live subscription; the string is copied before anything else.
        unsafe { std::ffi::CStr::from_ptr(evs_subscription_error_message(sub)) }
            .to_string_lossy()
            .into_owned()
    };
    let progress = |n: usize| {
        let deadline = Instant::now() + PATIENCE;
        while seen.lock().unwrap().len() < n {
            assert_eq!(
                status().0,
                EVS_OK,
                "the durable subscription ended: {}",
                why()
            );
            assert!(
                Instant::now() < deadline,
                "the subscription stopped short of {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Backends killed while they consume and events keep coming.
    let mut killed = 0;
    let mut i = total / 2;
    for round in 1..=6 {
        progress(round * 40);
        killed += kill_backends(pg.url());
        for _ in 0..20 {
            append_retried(&store, i);
            i += 1;
        }
    }
    assert!(killed > 0, "no backend was killed");
    pg.ctl("restart").unwrap();
    // Down for a while: the durable subscription says it reconnects.
    pg.ctl("stop").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while status() != (EVS_OK, EVS_ERR_UNAVAILABLE) {
        assert_eq!(
            status().0,
            EVS_OK,
            "the subscription ended while the server was down"
        );
        assert!(
            Instant::now() < deadline,
            "the subscription never said it was reconnecting"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    pg.ctl("start").unwrap();
    while i < total {
        append_retried(&store, i);
        i += 1;
    }
    progress(total as usize);
    projector.join().unwrap();
    assert_eq!(status(), (EVS_OK, EVS_OK), "delivering again");
    // SAFETY: live handles, each closed once.
    unsafe {
        assert_eq!(evs_subscription_close(sub), EVS_OK);
        assert_eq!(evs_close(cs), EVS_OK);
    }
    // In this one process, nothing was delivered twice: every source once, in order.
    let mut sources = Vec::new();
    let mut cursor = store.read_all(0).unwrap();
    while let Some(e) = cursor.next().unwrap() {
        if e.stream.starts_with("src-") {
            sources.push(e.position);
        }
    }
    assert_eq!(sources.len() as u64, total);
    assert_eq!(
        *seen.lock().unwrap(),
        sources,
        "the durable subscription's deliveries"
    );
    let effects = effects(&store);
    let twice: Vec<_> = effects.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "effects not exactly once: {twice:?}");
    assert_eq!(effects.len() as u64, total);
    // Both consumers' checkpoints are stored: the subscription's at its close.
    let listed = consumer_run::list(&store).unwrap();
    let sub_next = listed.iter().find(|c| c.name == "sub").unwrap().next;
    assert!(sub_next > sources.last().copied(), "{listed:?}");
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn a_step_sent_again_is_answered_by_the_first_and_a_holder_taken_over_writes_nothing() {
    let pg = PgServer::start();
    let url = url_of(&pg, "fence");
    let store = open(&url);
    for i in 0..4 {
        append(&store, "src-a", &format!("e{i}"));
    }
    let mut c = open_consumer(&store, "x", &project_opts());
    let (p, _) = next(&mut c, 1000).unwrap();
    let ev = [EventInput::new("Effect", b"0")];
    let part = [StreamAppend {
        stream: "effects",
        expected: ExpectedVersion::Any,
        events: &ev,
    }];
    let first = c.append_ack(&part, p).unwrap();
    // The same step again (as after a lost answer: the same record number and
    // checkpoint): answered with what the first stored, nothing appended twice.
    let seq = store
        .consumer_list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == "x")
        .unwrap()
        .state
        .max_seq;
    let op = evstore::store::consumer::ConsumerOp {
        name: "x".into(),
        seq,
        change: evstore::store::consumer::ConsumerChange::Checkpoint { next: p + 1 },
    };
    let again = store.consumer_append(&part, &op).unwrap();
    assert_eq!(again, first);
    assert_eq!(effects(&store).len(), 1, "the step was applied twice");
    // The same number with other content: refused, nothing written.
    let other = evstore::store::consumer::ConsumerOp {
        change: evstore::store::consumer::ConsumerChange::Checkpoint { next: p + 2 },
        ..op
    };
    let e = store.consumer_append(&part, &other).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Stale, "{}", e.message);
    assert_eq!(effects(&store).len(), 1);
    // Another holder took the consumer (this one's lease ran out meanwhile): this one's
    // step and checkpoint are refused and write nothing.
    common::pg::sql(
        pg.url(),
        "update fence.consumers set owner = gen_random_uuid() where name = 'x'",
    );
    let (p, _) = next(&mut c, 1000).unwrap();
    let e = c.append_ack(&part, p).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Locked, "{}", e.message);
    assert!(e.message.contains("taken by another"), "{}", e.message);
    assert_eq!(effects(&store).len(), 1);
    c.ack(p).unwrap();
    let e = c.checkpoint().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Locked, "{}", e.message);
    let listed = consumer_run::list(&store).unwrap();
    assert_eq!(listed[0].next, Some(p), "a fenced checkpoint was stored");
    drop(c);
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn a_version_5_schema_is_migrated_to_6_unless_the_url_forbids_it() {
    let pg = PgServer::start();
    let url = url_of(&pg, "five");
    let store = open(&url);
    append(&store, "s", "e0");
    drop(store);
    // As a version-5 library left it: no consumers' tables or functions.
    common::pg::run_script(
        pg.url(),
        &format!(
            "{}drop table five.consumers, five.consumer_parked, five.consumer_parts, \
         five.consumer_members; \
         drop function five.consumer_now, five.consumer_claim, five.consumer_apply, \
         five.consumer_write, five.consumer_step, five.group_join, \
         five.group_balance, five.group_renew, five.group_checkpoint, five.group_record, \
         five.group_step, five.group_leave; \
         drop table five.subject_keys, five.forgotten_subjects; \
         drop function five.subject_key_put, five.forget_subject; update five.meta set value = '5'",
            common::pg::undo_version_8("five")
        ),
    )
    .unwrap();
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let e = Store::open(&url, ro, Vec::new()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    assert!(e.message.contains("version 5, older"), "{e:?}");
    let e = Store::open(
        format!("{url}&migrate=false"),
        StoreOptions::default(),
        Vec::new(),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    assert!(e.message.contains("from version 5 to 8"), "{e:?}");
    // The script a DBA would run says the same step.
    let script = evstore::store::schema_sql(&url).unwrap();
    assert!(script.contains("It is at version 5"), "{script}");
    assert!(script.contains("create table consumers"), "{script}");
    let store = open(&url);
    assert_eq!(
        common::pg::sql(pg.url(), "select value from five.meta").as_deref(),
        Some("8")
    );
    let mut c = open_consumer(&store, "after", &quick());
    assert_eq!(next(&mut c, 1000).unwrap(), (0, "e0".into()));
    c.ack(0).unwrap();
    c.close().unwrap();
    assert_eq!(consumer_run::list(&store).unwrap()[0].next, Some(1));
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn a_group_of_four_processes_shares_the_log_and_takes_over_a_killed_members_partitions() {
    let pg = PgServer::start();
    let url = url_of(&pg, "grp");
    let store = open(&url);
    let mut stream_of = BTreeMap::new();
    let add = |n: u64, store: &Store, stream_of: &mut BTreeMap<u64, String>| {
        for i in 0..n {
            let stream = format!("g-{}", (i * 7 + n) % 23);
            stream_of.insert(append(store, &stream, "x"), stream);
        }
    };
    add(1200, &store, &mut stream_of);
    let env = [("EVS_TEST_URL", url.clone())];
    let mut kids = Children::new();
    for _ in 0..4 {
        kids.spawn(CHILD, "member", &env);
    }
    // Per member: the events it handled in order, and its last checkpoint reported.
    let mut handled: Vec<Vec<(u64, String)>> = vec![Vec::new(); 4];
    let mut checkpoint = [0u64; 4];
    let mut killed = None;
    let mut ended = 0;
    let mut total = 0;
    while let Some((i, line)) = kids.next_line() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("h") => {
                let p: u64 = parts.next().unwrap().parse().unwrap();
                let stream = parts.next().unwrap().to_owned();
                assert_eq!(stream_of.get(&p), Some(&stream), "event {p}");
                handled[i].push((p, stream));
                total += 1;
            }
            Some("ck") => checkpoint[i] = parts.next().unwrap().parse().unwrap(),
            Some("end") => ended += 1,
            _ => {}
        }
        // Once 600 events are handled, three members or more among them: the member that
        // handled most is killed, and more events come.
        if total >= 600 && killed.is_none() && handled.iter().filter(|h| !h.is_empty()).count() >= 3
        {
            let k = (0..4).max_by_key(|&k| handled[k].len()).unwrap();
            kids.kill(k);
            killed = Some(k);
            add(400, &store, &mut stream_of);
        }
    }
    kids.wait_all();
    let k = killed.expect("a member was killed");
    assert_eq!(ended, 3, "the three others left");
    // Every event handled.
    let mut count: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (m, evs) in handled.iter().enumerate() {
        for (p, _) in evs {
            count.entry(*p).or_default().push(m);
        }
    }
    let missing: Vec<_> = stream_of
        .keys()
        .filter(|p| !count.contains_key(p))
        .collect();
    assert!(missing.is_empty(), "events never handled: {missing:?}");
    // Per stream, each member handled its events in order.
    for (m, evs) in handled.iter().enumerate() {
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (p, s) in evs {
            if let Some(&before) = last.get(s.as_str()) {
                assert!(
                    *p > before,
                    "member {m}: stream {s} out of order ({before} then {p})"
                );
            }
            last.insert(s, *p);
        }
    }
    // Duplicates only of events the killed member handled after its last checkpoint.
    let mut twice = 0;
    for (p, by) in &count {
        if by.len() > 1 {
            twice += 1;
            assert!(
                by.contains(&k) && *p >= checkpoint[k] && by.len() == 2,
                "event {p} handled by members {by:?}; member {k} was killed after its \
                 checkpoint {}",
                checkpoint[k]
            );
        }
    }
    eprintln!(
        "group: {} events, member {k} killed after {} (checkpoint {}), {twice} handled twice; \
         shares {:?}",
        stream_of.len(),
        handled[k].len(),
        checkpoint[k],
        handled.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        handled.iter().filter(|h| !h.is_empty()).count() >= 2,
        "one member handled everything"
    );
    // The group is listed with its lowest partition's checkpoint, and not open.
    let listed = consumer_run::list(&store).unwrap();
    let g = listed.iter().find(|c| c.name == "grp").unwrap();
    assert_eq!(g.next, Some(store.next_position().unwrap()), "{listed:?}");
    assert!(!g.open, "{listed:?}");
    drop(store);
    pg.stop().unwrap();
}

#[test]
fn groups_are_refused_where_they_cannot_be_and_a_member_step_is_fenced_by_its_partition() {
    // The file engine: a single process's store has no groups.
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = Store::open(dir.path(), StoreOptions::default(), Vec::new()).unwrap();
    let fs = Arc::new(fs);
    let e = Consumer::open(fs, "g", group_opts()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("PostgreSQL"), "{}", e.message);

    let pg = PgServer::start();
    let url = url_of(&pg, "gfence");
    let store = open(&url);
    for i in 0..6 {
        append(&store, "src-a", &format!("e{i}"));
    }
    // A consumer of one holder is not a group, nor a group one holder's.
    let c = open_consumer(&store, "single", &quick());
    c.close().unwrap();
    let e = Consumer::open(store.clone(), "single", group_opts())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    let mut m = open_consumer(&store, "grp", &project_opts_group());
    // Its members open: taken; a reset or delete waits for them to leave.
    let e = Consumer::open(store.clone(), "grp", quick()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Locked, "{}", e.message);
    assert!(e.message.contains("group of 8 partitions"), "{}", e.message);
    assert_eq!(
        consumer_run::reset(&store, "grp", 0).unwrap_err().kind,
        ErrorKind::Locked
    );
    // The atomic step of a member, once, then refused when its partition was taken.
    let (p, _) = next(&mut m, 1000).unwrap();
    project_one(&mut m, p);
    assert_eq!(effects(&store).len(), 1);
    common::pg::sql(
        pg.url(),
        "update gfence.consumer_parts set owner = gen_random_uuid() where name = 'grp'",
    );
    let (p, _) = next(&mut m, 1000).unwrap();
    let ev = [EventInput::new("Effect", b"x")];
    let part = [StreamAppend {
        stream: "effects",
        expected: ExpectedVersion::Any,
        events: &ev,
    }];
    let e = m.append_ack(&part, p).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Locked, "{}", e.message);
    assert_eq!(effects(&store).len(), 1, "a fenced step was stored");
    drop(m);
    // No member left: opened as one holder's, it is refused as a group.
    let e = Consumer::open(store.clone(), "grp", quick()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("group of 8 partitions"), "{}", e.message);
    // Deleted, the name starts afresh (as one holder's now).
    consumer_run::delete(&store, "grp").unwrap();
    let c = open_consumer(&store, "grp", &quick());
    c.close().unwrap();
    drop(store);
    pg.stop().unwrap();
}

fn project_opts_group() -> ConsumerOptions {
    ConsumerOptions {
        partitions: 8,
        ..project_opts()
    }
}
