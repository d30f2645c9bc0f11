//! Through a connection pooler in transaction mode (issue 21 item 8): pgbouncer with
//! `pool_mode = transaction` and two server connections in front of the test server,
//! stores of two schemas opened through it with `pooler=transaction`, appending, reading,
//! waiting and deleting from several threads at once. Each statement may run on a server
//! connection another store's statement used just before: every name is qualified with
//! its schema and no statement is prepared by name, so each store sees only its own
//! events, dense. Nothing here measures time.

mod common;

use common::pg::{PgServer, Pooler};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::sync::Arc;
use std::time::Duration;

const THREADS: u64 = 3;
const EACH: u64 = 40;

fn open(url: &str) -> Arc<Store> {
    Arc::new(
        Store::open(url, StoreOptions::default(), Vec::new())
            .expect("the store opens through the pooler")
            .0,
    )
}

/// Appends `EACH` events to stream `t<thread>` with exact expected versions, reading
/// each back by position and checking the stream's version after it.
fn work(store: &Store, schema: &str, thread: u64) {
    let stream = format!("t{thread}");
    for i in 0..EACH {
        let payload = format!("{schema}/{thread}/{i}");
        let expected = match i {
            0 => ExpectedVersion::NoStream,
            _ => ExpectedVersion::Exact(i - 1),
        };
        let r = store
            .append(
                &stream,
                expected,
                &[EventInput::new("E", payload.as_bytes())],
            )
            .unwrap_or_else(|e| panic!("{schema}: append {i} of {stream}: {e:?}"));
        assert_eq!(r.stream_versions, vec![i]);
        let back = store.read_event(r.first_position).unwrap();
        assert_eq!(back.payload, payload.as_bytes(), "{schema}: read back");
        assert_eq!(store.stream_version(&stream).unwrap(), Some(i));
    }
}

#[test]
fn stores_of_two_schemas_through_a_transaction_pooler_each_see_only_their_own_events() {
    let pg = PgServer::start();
    let (pooler, url) = Pooler::start(&pg, 2);
    let schemas = ["pool_a", "pool_b"];
    let urls: Vec<String> = schemas
        .iter()
        .map(|s| format!("{url}?schema={s}&pooler=transaction"))
        .collect();
    // Two handles per schema (opens at once create the schemas through the pooler too).
    let stores: Vec<(usize, Arc<Store>)> = (0..4)
        .map(|k| (k % 2, urls[k % 2].clone()))
        .map(|(s, u)| std::thread::spawn(move || (s, open(&u))))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    // A waiter of each schema: woken (by polling) by the other handle's appends.
    let waiters: Vec<_> = stores[..2]
        .iter()
        .map(|(s, store)| {
            let store = store.clone();
            let s = *s;
            std::thread::spawn(move || {
                let want = THREADS * EACH;
                let mut seen = 0;
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while seen < want {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "waiter stuck at {seen}"
                    );
                    seen = store.wait_for_events(seen, Duration::from_millis(200));
                }
                (s, seen)
            })
        })
        .collect();
    let writers: Vec<_> = (0..THREADS)
        .flat_map(|t| stores[2..].iter().map(move |(s, st)| (t, *s, st.clone())))
        .map(|(t, s, store)| {
            let schema = schemas[s];
            std::thread::spawn(move || work(&store, schema, t))
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for w in waiters {
        let (s, seen) = w.join().unwrap();
        assert_eq!(seen, THREADS * EACH, "{}", schemas[s]);
    }
    for (s, store) in &stores[..2] {
        let schema = schemas[*s];
        let mut c = store.read_all(0).unwrap();
        let mut n = 0;
        while let Some(e) = c.next().unwrap() {
            assert_eq!(e.position, n, "{schema}: dense");
            let text = std::str::from_utf8(e.payload).unwrap();
            assert!(
                text.starts_with(&format!("{schema}/")),
                "{schema} read {text}"
            );
            n += 1;
        }
        assert_eq!(n, THREADS * EACH, "{schema}");
        // A lifecycle entry, the listing and the stats through the pooler too.
        store
            .delete_stream("t0", ExpectedVersion::Exact(EACH - 1), false, None)
            .unwrap();
        let mut names: Vec<String> = store
            .list_streams()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        // Listed in the order of their first events, which the concurrent writers decide.
        names.sort();
        assert_eq!(names, ["t1", "t2"], "{schema}");
        let stats = store.stats().unwrap();
        assert_eq!(stats.removed_events, EACH, "{schema}");
        assert_eq!(stats.lifecycle_entries, 1, "{schema}");
    }
    for (_, s) in &stores {
        s.close().unwrap();
    }
    drop(pooler);
    pg.stop().unwrap();
}
