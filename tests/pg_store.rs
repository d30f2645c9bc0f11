//! The store on PostgreSQL, against a real server started for the run (a server that
//! cannot start fails these tests). Several `Store` handles on one database stand for
//! several processes: each has its own connections and committer.

mod common;

use common::pg::PgServer;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::ErrorKind;
use std::sync::Arc;

fn open(url: &str) -> Store {
    Store::open(url, StoreOptions::default(), Vec::new())
        .expect("the PostgreSQL store opens")
        .0
}

fn ev<'a>(ty: &'a str, payload: &'a [u8]) -> EventInput<'a> {
    EventInput::new(ty, payload)
}

fn with_id<'a>(ty: &'a str, payload: &'a [u8], id: u8) -> EventInput<'a> {
    let mut e = EventInput::new(ty, payload);
    e.id = Some([id; 16]);
    e
}

/// Every position from 0 to the end, read forward: dense and in order.
fn positions(s: &Store) -> Vec<u64> {
    let mut c = s.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.position);
    }
    out
}

#[test]
fn appends_reads_versions_and_ids_work_as_on_the_file_store() {
    let pg = PgServer::start();
    let url = format!("{}?schema=basics", pg.url());
    let s = open(&url);
    assert_eq!(s.next_position().unwrap(), 0);
    assert_eq!(s.append_event("Legacy", b"x").unwrap(), 0);
    let r = s
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            &[ev("Created", b"a"), ev("Paid", b"b")],
        )
        .unwrap();
    assert_eq!((r.first_position, r.stream_versions.clone()), (1, vec![1]));
    let wrong = s
        .append("order-1", ExpectedVersion::Exact(0), &[ev("Shipped", b"c")])
        .unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::WrongExpectedVersion);
    assert!(
        wrong.message.contains("is at version 1"),
        "{}",
        wrong.message
    );
    let none = s
        .append("order-2", ExpectedVersion::Exists, &[ev("X", b"")])
        .unwrap_err();
    assert_eq!(none.kind, ErrorKind::WrongExpectedVersion);
    // An atomic append over two streams, one of them refused: nothing of it is written.
    let refused = s.append_multi(&[
        StreamAppend {
            stream: "order-3",
            expected: ExpectedVersion::NoStream,
            events: &[ev("Created", b"")],
        },
        StreamAppend {
            stream: "order-1",
            expected: ExpectedVersion::NoStream,
            events: &[ev("Created", b"")],
        },
    ]);
    assert_eq!(refused.unwrap_err().kind, ErrorKind::WrongExpectedVersion);
    assert_eq!(s.stream_version("order-3").unwrap(), None);
    let multi = s
        .append_multi(&[
            StreamAppend {
                stream: "order-3",
                expected: ExpectedVersion::NoStream,
                events: &[ev("Created", b"")],
            },
            StreamAppend {
                stream: "order-1",
                expected: ExpectedVersion::Exact(1),
                events: &[ev("Shipped", b"s")],
            },
        ])
        .unwrap();
    assert_eq!(
        (multi.first_position, multi.stream_versions),
        (3, vec![0, 2])
    );
    // Ids: a retry returns the stored positions and writes nothing.
    let batch = [with_id("Paid", b"1", 7), with_id("Paid", b"2", 8)];
    let first = s.append("pay-1", ExpectedVersion::Any, &batch).unwrap();
    let again = s
        .append("pay-1", ExpectedVersion::NoStream, &batch)
        .unwrap();
    assert_eq!(first.first_position, again.first_position);
    assert_eq!(again.stream_versions, vec![1]);
    let half = s
        .append(
            "pay-1",
            ExpectedVersion::Any,
            &[with_id("Paid", b"1", 7), with_id("Paid", b"3", 9)],
        )
        .unwrap_err();
    assert_eq!(half.kind, ErrorKind::AlreadyExists);
    let other_stream = s.append("pay-2", ExpectedVersion::Any, &batch).unwrap_err();
    assert_eq!(other_stream.kind, ErrorKind::AlreadyExists);
    let twice = s
        .append(
            "pay-1",
            ExpectedVersion::Any,
            &[with_id("A", b"", 1), with_id("A", b"", 1)],
        )
        .unwrap_err();
    assert_eq!(twice.kind, ErrorKind::InvalidArgument);
    assert_eq!(positions(&s), (0..7).collect::<Vec<_>>());

    // Reads: stream forward and backward, category, backward, by position, by time.
    let mut c = s.read_stream("order-1", 1).unwrap();
    let mut got = Vec::new();
    while let Some(e) = c.next().unwrap() {
        got.push((e.stream_version, e.event_type.to_owned()));
    }
    assert_eq!(got, vec![(1, "Paid".into()), (2, "Shipped".into())]);
    let mut c = s.read_stream_backward("order-1", u64::MAX).unwrap();
    let mut back = Vec::new();
    while let Some(e) = c.next().unwrap() {
        back.push(e.stream_version);
    }
    assert_eq!(back, vec![2, 1, 0]);
    let mut c = s.read_category("order-", 0).unwrap();
    let mut cat = Vec::new();
    while let Some(e) = c.next().unwrap() {
        cat.push(e.position);
    }
    assert_eq!(cat, vec![1, 2, 3, 4]);
    let mut c = s.read_all_backward(u64::MAX).unwrap();
    let mut all_back = Vec::new();
    while let Some(e) = c.next().unwrap() {
        all_back.push(e.position);
    }
    assert_eq!(all_back, (0..7).rev().collect::<Vec<_>>());
    let e = s.read_event(2).unwrap();
    assert_eq!(
        (e.stream.as_str(), e.payload.as_slice()),
        ("order-1", &b"b"[..])
    );
    assert_eq!(s.read_event(99).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        s.read_all(8).err().map(|e| e.kind),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        s.read_stream("nope", 0).err().map(|e| e.kind),
        Some(ErrorKind::NotFound)
    );
    let ts = s.read_event(3).unwrap().timestamp_us;
    let after = s.position_after(ts).unwrap();
    assert!(after > 3 && after <= 7, "{after}");
    assert_eq!(s.position_after(u64::MAX / 2).unwrap(), 7);
    let streams = s.list_streams().unwrap();
    let names: Vec<&str> = streams.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["order-1", "order-3", "pay-1"]);
    let st = s.stats().unwrap();
    assert_eq!((st.events, st.streams, st.event_ids), (7, 3, 2));

    // A tailing cursor sees what another handle (another process) appends later.
    let mut tail = s.read_all(7).unwrap();
    assert!(tail.next().unwrap().is_none());
    let other = open(&url);
    other
        .append("order-1", ExpectedVersion::Exact(2), &[ev("Closed", b"")])
        .unwrap();
    assert_eq!(tail.next().unwrap().map(|e| e.position), Some(7));
    assert_eq!(s.stream_version("order-1").unwrap(), Some(3));
    s.close().unwrap();
    assert_eq!(
        s.append_event("X", b"").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_schema_newer_than_the_library_and_a_missing_one_read_only_are_clear_errors() {
    let pg = PgServer::start();
    let url = format!("{}?schema=versions", pg.url());
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let missing = Store::open(&url, ro.clone(), Vec::new()).err().unwrap();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{}", missing.message);
    let s = open(&url);
    s.append_event("E", b"").unwrap();
    let read_only = Store::open(&url, ro, Vec::new()).unwrap().0;
    assert_eq!(read_only.next_position().unwrap(), 1);
    assert_eq!(
        read_only.append_event("E", b"").unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .execute(
                "update versions.meta set value = '99' where key = 'schema_version'",
                &[],
            )
            .await
            .unwrap();
    });
    let newer = Store::open(&url, StoreOptions::default(), Vec::new())
        .err()
        .unwrap();
    assert!(
        newer.message.contains("version 99, newer"),
        "{}",
        newer.message
    );
    let bad = Store::open(
        format!("{}?schema=Bad-Name", pg.url()),
        StoreOptions::default(),
        Vec::new(),
    );
    assert_eq!(bad.err().map(|e| e.kind), Some(ErrorKind::InvalidArgument));
    // The longest schema name: its notification channel ('evs_' and the name) is 63
    // bytes, PostgreSQL's limit; one byte more is refused at open, naming the limit.
    let longest = "s".repeat(59);
    let s = open(&format!("{}?schema={longest}", pg.url()));
    assert_eq!(s.append_event("E", b"").unwrap(), 0);
    let too_long = Store::open(
        format!("{}?schema={longest}x", pg.url()),
        StoreOptions::default(),
        Vec::new(),
    )
    .err()
    .unwrap();
    assert_eq!(too_long.kind, ErrorKind::InvalidArgument);
    assert!(
        too_long.message.contains("at most 59 bytes"),
        "{}",
        too_long.message
    );
}

#[test]
fn parallel_writers_on_shared_streams_leave_dense_positions_and_every_acknowledged_event() {
    let pg = PgServer::start();
    let url = format!("{}?schema=parallel", pg.url());
    const HANDLES: usize = 4;
    const THREADS: usize = 4;
    const APPENDS: usize = 150;
    let stores: Vec<Arc<Store>> = (0..HANDLES).map(|_| Arc::new(open(&url))).collect();
    let reader = open(&url);
    let mut workers = Vec::new();
    for (h, s) in stores.iter().enumerate() {
        for t in 0..THREADS {
            let s = s.clone();
            workers.push(std::thread::spawn(move || {
                let stream = format!("shared-{}", t % 3);
                let mut acked = Vec::new();
                let mut i = 0;
                while acked.len() < APPENDS {
                    let expected = match s.stream_version(&stream).unwrap() {
                        Some(v) => ExpectedVersion::Exact(v),
                        None => ExpectedVersion::NoStream,
                    };
                    let payload = format!("{h}-{t}-{i}");
                    i += 1;
                    match s.append(&stream, expected, &[ev("E", payload.as_bytes())]) {
                        Ok(r) => acked.push((r.first_position, payload)),
                        Err(e) if e.kind == ErrorKind::WrongExpectedVersion => {}
                        Err(e) => panic!("append failed: {e:?}"),
                    }
                }
                acked
            }));
        }
    }
    // A tailing reader while they write: what it sees is dense and in order.
    let mut tail = reader.read_all(0).unwrap();
    let mut seen = 0u64;
    let total = (HANDLES * THREADS * APPENDS) as u64;
    while seen < total {
        match tail.next().unwrap() {
            Some(e) => {
                assert_eq!(e.position, seen, "the tailing reader skipped or repeated");
                seen += 1;
            }
            None => {
                reader.wait_for_events(seen, std::time::Duration::from_millis(50));
            }
        }
    }
    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.join().unwrap());
    }
    assert_eq!(acked.len() as u64, total);
    assert_eq!(positions(&reader), (0..total).collect::<Vec<_>>());
    for (p, payload) in &acked {
        assert_eq!(reader.read_event(*p).unwrap().payload, payload.as_bytes());
    }
    for k in 0..3 {
        let v = reader
            .stream_version(&format!("shared-{k}"))
            .unwrap()
            .unwrap();
        let mut c = reader.read_stream(&format!("shared-{k}"), 0).unwrap();
        let mut n = 0;
        while let Some(e) = c.next().unwrap() {
            assert_eq!(e.stream_version, n);
            n += 1;
        }
        assert_eq!(n, v + 1);
    }
}

#[test]
fn an_append_with_only_some_ids_stored_names_its_events_as_the_file_store_does() {
    let pg = PgServer::start();
    let url = format!("{}?schema=partly", pg.url());
    let s = open(&url);
    s.append(
        "order-1",
        ExpectedVersion::NoStream,
        &[with_id("A", b"a", 0xA1), with_id("B", b"b", 0xB2)],
    )
    .unwrap();
    let next = s.next_position().unwrap();
    // The append is refused with this kind, its message saying all of `says`.
    let refused = |events: &[EventInput<'_>], kind: ErrorKind, says: &[&str]| {
        let e = s
            .append("order-1", ExpectedVersion::Any, events)
            .unwrap_err();
        assert_eq!(e.kind, kind, "{}", e.message);
        assert!(says.iter().all(|w| e.message.contains(w)), "{}", e.message);
    };
    // events[0]'s id is stored (at position 0), events[1]'s is not.
    refused(
        &[with_id("A", b"a", 0xA1), with_id("D", b"d", 0xD4)],
        ErrorKind::AlreadyExists,
        &[
            "events[0]'s id was appended before (at position 0)",
            "events[1]'s was not",
        ],
    );
    // events[1] has an id stored at position 1; events[0] has none.
    refused(
        &[ev("N", b"n"), with_id("B", b"b", 0xB2)],
        ErrorKind::AlreadyExists,
        &[
            "events[1]'s id was appended before (at position 1)",
            "events[0]'s has no id",
        ],
    );
    refused(
        &[with_id("T", b"1", 0x77), with_id("T", b"2", 0x77)],
        ErrorKind::InvalidArgument,
        &["event id 77777777777777777777777777777777 appears twice"],
    );
    assert_eq!(s.next_position().unwrap(), next);
}

/// The store and where to report, for a call made while a thread's thread-locals are
/// being destroyed (as a C program's `pthread_key_create` destructor does).
struct CallAtExit(Option<(Arc<Store>, ExitReport)>);

/// Where the call at thread exit sends what it got.
type ExitReport = std::sync::mpsc::Sender<Result<Option<u64>, String>>;

impl Drop for CallAtExit {
    fn drop(&mut self) {
        if let Some((s, tx)) = self.0.take() {
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s.stream_version("exit-stream")
            }));
            let _ = tx.send(match got {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(format!("{:?}: {}", e.kind, e.message)),
                Err(_) => Err("the call panicked".to_owned()),
            });
        }
    }
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<CallAtExit> = const { std::cell::RefCell::new(CallAtExit(None)) };
}

#[test]
fn a_call_while_its_thread_exits_works() {
    let pg = PgServer::start();
    let url = format!("{}?schema=thread_exit", pg.url());
    let s = Arc::new(open(&url));
    let (tx, rx) = std::sync::mpsc::channel();
    let t = {
        let s = s.clone();
        std::thread::spawn(move || {
            // Registered before the thread first enters the runtime (below), so destroyed
            // after the runtime's thread-locals: the call sees them gone.
            AT_EXIT.with(|c| c.borrow_mut().0 = Some((s.clone(), tx)));
            s.append("exit-stream", ExpectedVersion::Any, &[ev("Exit", b"e")])
                .unwrap();
        })
    };
    t.join().unwrap();
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the call at thread exit reported");
    assert_eq!(got, Ok(Some(0)));
}

/// A 16-byte id made of a number.
fn id_of(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8] = 0xa5;
    id
}

#[test]
fn retries_and_new_appends_in_one_batch_are_each_answered_as_if_alone() {
    // Eight threads of one handle append at once, so that the committer puts their
    // requests into one call: in every round one thread repeats an append acknowledged
    // before (its ids stored: the call's id insert is refused, and each request is then
    // sent alone with its ids looked up), one appends with a stale expected version
    // (refused: its ids, written before the head lock, are taken back), the others append
    // anew.
    let pg = PgServer::start();
    let url = format!("{}?schema=mixed", pg.url());
    let s = Arc::new(open(&url));
    let payload = [7u8; 32];
    let mut first = [ev("E", &payload), ev("E", &payload)];
    first[0].id = Some(id_of(1));
    first[1].id = Some(id_of(2));
    let original = s
        .append("again", ExpectedVersion::NoStream, &first)
        .unwrap();
    const ROUNDS: u64 = 40;
    const THREADS: u64 = 8;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, barrier, original) = (s.clone(), barrier.clone(), original.clone());
            std::thread::spawn(move || {
                let payload = [t as u8; 32];
                for round in 0..ROUNDS {
                    barrier.wait();
                    match t {
                        0 => {
                            // The same events (a retry repeats the content too).
                            let same = [7u8; 32];
                            let mut again = [ev("E", &same), ev("E", &same)];
                            again[0].id = Some(id_of(1));
                            again[1].id = Some(id_of(2));
                            let r = s.append("again", ExpectedVersion::NoStream, &again);
                            assert_eq!(r.unwrap(), original, "round {round}");
                        }
                        1 => {
                            let mut stale = [ev("E", &payload)];
                            stale[0].id = Some(id_of(1_000 + round));
                            let e = s
                                .append("stale", ExpectedVersion::Exact(5), &stale)
                                .unwrap_err();
                            assert_eq!(e.kind, ErrorKind::WrongExpectedVersion);
                        }
                        _ => {
                            let mut new = [ev("E", &payload), ev("E", &payload)];
                            new[0].id = Some(id_of(10_000 * t + 2 * round));
                            new[1].id = Some(id_of(10_000 * t + 2 * round + 1));
                            let r = s
                                .append(&format!("new-{t}"), ExpectedVersion::Any, &new)
                                .unwrap();
                            assert_eq!(r.stream_versions, vec![2 * round + 1]);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each new append once, nothing of the retries or the refused appends.
    let n = 2 + (THREADS - 2) * ROUNDS * 2;
    assert_eq!(positions(&s), (0..n).collect::<Vec<_>>());
    assert_eq!(s.stream_version("stale").unwrap(), None);
    let stats = s.stats().unwrap();
    assert_eq!((stats.events, stats.event_ids), (n, n));
    // The refused appends' ids were taken back: the same ids append now.
    for round in 0..ROUNDS {
        let mut e = [ev("E", b"")];
        e[0].id = Some(id_of(1_000 + round));
        let r = s.append("stale", ExpectedVersion::Any, &e).unwrap();
        assert_eq!(r.first_position, n + round);
    }
}

#[test]
fn a_large_append_reads_back_by_position_by_version_and_backward() {
    // 25,000 events in one append are one row of the chunks table; reads go through it
    // in windows (10,000 positions forward, 1,000 backward and in a stream).
    let pg = PgServer::start();
    let url = format!("{}?schema=large", pg.url());
    let s = open(&url);
    s.append_event("Before", b"b").unwrap();
    const N: u64 = 25_000;
    let payloads: Vec<[u8; 8]> = (0..N).map(|i| i.to_le_bytes()).collect();
    let events: Vec<EventInput> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = ev("Big", p);
            e.id = Some(id_of(i as u64));
            e.metadata = if i % 2 == 0 { b"even" } else { b"" };
            e
        })
        .collect();
    let r = s.append("big", ExpectedVersion::NoStream, &events).unwrap();
    assert_eq!((r.first_position, r.stream_versions), (1, vec![N - 1]));
    s.append_event("After", b"a").unwrap();

    let mut c = s.read_all(0).unwrap();
    let mut n = 0;
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.position, n);
        if (1..=N).contains(&n) {
            let i = n - 1;
            assert_eq!((e.stream, e.stream_version), ("big", i));
            assert_eq!(e.payload, &i.to_le_bytes()[..]);
            assert_eq!(e.id, Some(id_of(i)));
            assert_eq!(e.metadata, if i % 2 == 0 { &b"even"[..] } else { b"" });
        }
        n += 1;
    }
    assert_eq!(n, N + 2);
    let e = s.read_event(12_345).unwrap();
    assert_eq!(
        (e.stream_version, e.payload),
        (12_344, 12_344u64.to_le_bytes().to_vec())
    );
    assert_eq!(s.read_event(N + 1).unwrap().event_type, "After");

    let mut c = s.read_stream("big", 17_000).unwrap();
    let mut v = 17_000;
    while let Some(e) = c.next().unwrap() {
        assert_eq!((e.stream_version, e.position), (v, v + 1));
        v += 1;
    }
    assert_eq!(v, N);
    let mut c = s.read_stream_backward("big", 2_500).unwrap();
    let mut want = 2_501;
    while let Some(e) = c.next().unwrap() {
        want -= 1;
        assert_eq!(e.stream_version, want);
    }
    assert_eq!(want, 0);
    let mut c = s.read_all_backward(u64::MAX).unwrap();
    let mut want = N + 2;
    while let Some(e) = c.next().unwrap() {
        want -= 1;
        assert_eq!(e.position, want);
    }
    assert_eq!(want, 0);
    let mut c = s.read_category("bi", 20_000).unwrap();
    let mut count = 0;
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.position, 20_000 + count);
        count += 1;
    }
    assert_eq!(count, N + 1 - 20_000);
    // A retry of the whole append is found by its ids.
    let again = s.append("big", ExpectedVersion::NoStream, &events).unwrap();
    assert_eq!(again.first_position, 1);
    assert_eq!(s.next_position().unwrap(), N + 2);
}

#[test]
fn the_same_appends_sent_by_two_processes_at_once_are_stored_once_without_deadlocks() {
    // Two handles (two processes) send the same two appends, with the same ids, at the
    // same moment, in opposite orders (a client's retries reaching two app servers): each
    // append is stored once and both handles are told its position. The ids are written
    // in id order, so the two batches wait for each other, never in a cycle: the server
    // counts no deadlock.
    let pg = PgServer::start();
    let url = format!("{}?schema=twice", pg.url());
    let handles = [Arc::new(open(&url)), Arc::new(open(&url))];
    const ROUNDS: u64 = 150;
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4u64)
        .map(|k| {
            let (s, barrier) = (handles[(k / 2) as usize].clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..ROUNDS {
                    // Handle 0 sends append a then b, handle 1 b then a.
                    let which = (k % 2) ^ (k / 2);
                    let mut e = [ev("E", b"same")];
                    e[0].id = Some(id_of(2 * round + which));
                    let stream = format!("s-{round}-{which}");
                    barrier.wait();
                    let r = s.append(&stream, ExpectedVersion::NoStream, &e).unwrap();
                    got.push((round, which, r.first_position));
                }
                got
            })
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for t in threads {
        for (round, which, pos) in t.join().unwrap() {
            let first = *seen.entry((round, which)).or_insert(pos);
            assert_eq!(first, pos, "append {which} of round {round}: two positions");
        }
    }
    assert_eq!(seen.len() as u64, 2 * ROUNDS);
    assert_eq!(positions(&handles[0]), (0..2 * ROUNDS).collect::<Vec<_>>());
    for h in &handles {
        h.close().unwrap();
    }
    // The backends have ended, so their statistics are in.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let deadlocks = common::pg::sql(
        pg.url(),
        "select deadlocks from pg_stat_database where datname = current_database()",
    );
    assert_eq!(deadlocks.as_deref(), Some("0"));
}

#[test]
fn an_event_id_reused_for_other_content_is_refused_as_on_the_file_store() {
    let pg = PgServer::start();
    let url = format!("{}?schema=reused_ids", pg.url());
    let next;
    {
        let s = open(&url);
        common::promises::an_event_id_names_one_event(&s);
        next = s.next_position().unwrap();
        s.close().unwrap();
    }
    // Another handle (another process) is told the same.
    let s = open(&url);
    common::promises::refused_for_other_content(&s, 0, next);
}

#[test]
fn errors_carry_the_actual_version_the_failing_part_and_the_stored_position_as_on_files() {
    let pg = PgServer::start();
    let s = open(&format!("{}?schema=error_detail", pg.url()));
    common::promises::errors_carry_their_numbers(&s);
}
