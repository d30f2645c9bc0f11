//! The store's schema in PostgreSQL: versions and first opens, against a real server
//! started for the run (a server that cannot start fails these tests).

mod common;

use common::pg::PgServer;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use std::sync::{Arc, Barrier};

fn open(url: &str) -> Store {
    Store::open(url, StoreOptions::default(), Vec::new())
        .expect("the PostgreSQL store opens")
        .0
}

/// Runs SQL on a connection of its own.
fn sql(url: &str, text: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(text).await.unwrap();
    })
}

/// The schema version stored in `schema`'s meta table.
fn stored_version(url: &str, schema: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .query_one(
                &format!("select value from {schema}.meta where key = 'schema_version'"),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    })
}

/// Turns a store's schema into version 1's shape: the same tables, and an `append` with
/// version 1's arguments and result columns (this one refuses every call, so a store
/// still calling it after the migration fails).
fn make_version_1(url: &str, schema: &str) {
    sql(
        url,
        &format!(
            "set search_path to {schema};
             drop function append(int[], text[], bigint[], int[], bytea[], text[], int[], bytea[], bytea[]);
             create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                                    e_id bytea[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[])
             returns table (res bigint, entry int, actual bigint)
             language plpgsql as $$ begin raise exception 'the version 1 append was called'; end $$;
             update meta set value = '1' where key = 'schema_version';"
        ),
    );
}

#[test]
fn a_version_1_schema_is_migrated_by_a_writable_open_and_read_as_it_is_by_a_read_only_one() {
    let pg = PgServer::start();
    let url = format!("{}?schema=old", pg.url());
    let s = open(&url);
    let e = [
        EventInput::new("Created", b"a"),
        EventInput::new("Paid", b"b"),
    ];
    s.append("order-1", ExpectedVersion::NoStream, &e).unwrap();
    s.close().unwrap();
    make_version_1(pg.url(), "old");
    assert_eq!(stored_version(pg.url(), "old"), "1");

    // Read-only: the tables are version 1's, readable as they are; nothing is changed.
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let r = Store::open(&url, ro, Vec::new()).unwrap().0;
    assert_eq!(r.next_position().unwrap(), 2);
    assert_eq!(r.read_event(1).unwrap().event_type, "Paid");
    r.close().unwrap();
    assert_eq!(stored_version(pg.url(), "old"), "1");

    // Two writable opens at once: one migrates, the other finds version 2.
    let barrier = Arc::new(Barrier::new(2));
    let opens: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&url, StoreOptions::default(), Vec::new()).map(|(s, _)| s)
            })
        })
        .collect();
    let stores: Vec<Store> = opens
        .into_iter()
        .map(|t| t.join().unwrap().expect("an open of a version 1 schema"))
        .collect();
    assert_eq!(stored_version(pg.url(), "old"), "2");
    let r = stores[0]
        .append(
            "order-1",
            ExpectedVersion::Exact(1),
            &[EventInput::new("Shipped", b"c")],
        )
        .unwrap();
    assert_eq!((r.first_position, r.stream_versions), (2, vec![2]));
    let e = [EventInput::new("X", b"x")];
    let r = stores[1]
        .append_multi(&[
            StreamAppend {
                stream: "order-1",
                expected: ExpectedVersion::Exact(2),
                events: &e,
            },
            StreamAppend {
                stream: "order-2",
                expected: ExpectedVersion::NoStream,
                events: &e,
            },
        ])
        .unwrap();
    assert_eq!((r.first_position, r.stream_versions), (3, vec![3, 0]));
    assert_eq!(stores[0].read_event(0).unwrap().event_type, "Created");
}

#[test]
fn many_first_opens_of_one_schema_at_once_all_succeed() {
    let pg = PgServer::start();
    let url = format!("{}?schema=fresh", pg.url());
    const OPENS: usize = 6;
    let barrier = Arc::new(Barrier::new(OPENS));
    let opens: Vec<_> = (0..OPENS)
        .map(|i| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let s = Store::open(&url, StoreOptions::default(), Vec::new())?.0;
                s.append(
                    &format!("s-{i}"),
                    ExpectedVersion::NoStream,
                    &[EventInput::new("E", b"")],
                )?;
                Ok::<_, evstore::Error>(s)
            })
        })
        .collect();
    let stores: Vec<Store> = opens
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap()
                .expect("a concurrent first open and append")
        })
        .collect();
    assert_eq!(stores[0].next_position().unwrap(), OPENS as u64);
    assert_eq!(stored_version(pg.url(), "fresh"), "2");
}
