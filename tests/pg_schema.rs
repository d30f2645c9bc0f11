//! The store's schema in PostgreSQL: versions and first opens, against a real server
//! started for the run (a server that cannot start fails these tests).

mod common;

use common::pg::PgServer;
use evstore::store::{Event, EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::ErrorKind;
use std::sync::{Arc, Barrier};

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

/// A store as libraries of schema version 1 or 2 made it: one `events` row per event, and
/// an `append` with those versions' arguments and result columns (this one refuses every
/// call, so a store still calling it after the migration fails). Its events: two of
/// stream 'order-1' with ids, metadata and a schema version; one without a stream and
/// without an id; one of stream 'order-2' with an id. Timestamps 1000, 1000, 2000, 3000.
fn make_old_store(url: &str, schema: &str, version: u32) {
    let columns = if version == 1 {
        "res bigint, entry int, actual bigint"
    } else {
        "res bigint, entry int, actual bigint, versions bigint[]"
    };
    sql(
        url,
        &format!(
            "create schema {schema}; set search_path to {schema};
             create table meta (key text primary key, value text not null);
             insert into meta values ('schema_version', '{version}');
             create table head (next bigint not null, last_ts bigint not null);
             insert into head values (4, 3000);
             create table streams (name text primary key, version bigint not null, first_pos bigint not null);
             insert into streams values ('order-1', 1, 0), ('order-2', 0, 3);
             create table events (pos bigint primary key, stream text not null, version bigint not null,
               ts bigint not null, type text not null, schema_version int not null, event_id bytea,
               metadata bytea not null, data bytea not null);
             create unique index events_stream_version on events (stream, version) where stream <> '';
             create unique index events_event_id on events (event_id) where event_id is not null;
             create index events_ts on events using brin (ts);
             insert into events values
               (0, 'order-1', 0, 1000, 'Created', 2, '\\x01010101010101010101010101010101', '\\x6d31', 'a'),
               (1, 'order-1', 1, 1000, 'Paid', 1, '\\x02020202020202020202020202020202', '', 'b'),
               (2, '', 0, 2000, 'Tick', 1, null, '', 't'),
               (3, 'order-2', 0, 3000, 'Created', 1, '\\x03030303030303030303030303030303', '', 'c');
             create function append(r_entries int[], s_stream text[], s_expected bigint[], s_count int[],
                                    e_id bytea[], e_type text[], e_sv int[], e_meta bytea[], e_data bytea[])
             returns table ({columns})
             language plpgsql as $$ begin raise exception 'the old append was called'; end $$;"
        ),
    );
}

/// Every event of a store, read forward from 0.
fn all_events(s: &Store) -> Vec<Event> {
    let mut c = s.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.to_owned());
    }
    out
}

#[test]
fn a_version_1_or_2_schema_is_migrated_by_a_writable_open_and_refused_by_a_read_only_one() {
    let pg = PgServer::start();
    for version in [1, 2] {
        let schema = format!("old{version}");
        let url = format!("{}?schema={schema}", pg.url());
        make_old_store(pg.url(), &schema, version);

        // Read-only: a clear error, nothing changed.
        let ro = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        let e = Store::open(&url, ro.clone(), Vec::new()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
        assert!(
            e.message.contains(&format!("version {version}, older")),
            "{}",
            e.message
        );
        assert_eq!(stored_version(pg.url(), &schema), version.to_string());

        // Two writable opens at once: one migrates, the other finds version 4.
        let stores = common::pg::open_at_once(&url, 2);
        assert_eq!(stored_version(pg.url(), &schema), "4");

        // Every event as it was.
        let got = all_events(&stores[0]);
        let want = [
            (
                0,
                "order-1",
                0,
                1000,
                "Created",
                2,
                Some([1u8; 16]),
                &b"m1"[..],
                &b"a"[..],
            ),
            (1, "order-1", 1, 1000, "Paid", 1, Some([2u8; 16]), b"", b"b"),
            (2, "", 0, 2000, "Tick", 1, None, b"", b"t"),
            (
                3,
                "order-2",
                0,
                3000,
                "Created",
                1,
                Some([3u8; 16]),
                b"",
                b"c",
            ),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let g = (
                g.position,
                g.stream.as_str(),
                g.stream_version,
                g.timestamp_us,
                g.event_type.as_str(),
                g.schema_version,
                g.id,
                &g.metadata[..],
                &g.payload[..],
            );
            assert_eq!(g, w);
        }
        assert_eq!(stores[1].read_event(2).unwrap().event_type, "Tick");
        assert_eq!(stores[1].position_after(1500).unwrap(), 2);
        assert_eq!(stores[1].stats().unwrap().event_ids, 3);

        // The migrated ids still make a retry a retry (the same events: schema version
        // and metadata included), and refuse them for other content.
        let mut retry = [
            EventInput::new("Created", b"a"),
            EventInput::new("Paid", b"b"),
        ];
        retry[0].id = Some([1; 16]);
        retry[0].schema_version = 2;
        retry[0].metadata = b"m1";
        retry[1].id = Some([2; 16]);
        let r = stores[1]
            .append("order-1", ExpectedVersion::NoStream, &retry)
            .unwrap();
        assert_eq!((r.first_position, r.stream_versions), (0, vec![1]));
        retry[0].schema_version = 1;
        let other = stores[1]
            .append("order-1", ExpectedVersion::NoStream, &retry)
            .unwrap_err();
        assert_eq!(other.kind, ErrorKind::AlreadyExists, "{other}");
        assert_eq!(stores[1].next_position().unwrap(), 4);

        // Appends go on where the old store stopped, in one stream and in several.
        let r = stores[0]
            .append(
                "order-1",
                ExpectedVersion::Exact(1),
                &[EventInput::new("Shipped", b"c")],
            )
            .unwrap();
        assert_eq!((r.first_position, r.stream_versions), (4, vec![2]));
        let e = [EventInput::new("X", b"x")];
        let r = stores[1]
            .append_multi(&[
                StreamAppend {
                    stream: "order-1",
                    expected: ExpectedVersion::Exact(2),
                    events: &e,
                },
                StreamAppend {
                    stream: "order-3",
                    expected: ExpectedVersion::NoStream,
                    events: &e,
                },
            ])
            .unwrap();
        assert_eq!((r.first_position, r.stream_versions), (5, vec![3, 0]));
        let mut c = stores[0].read_stream("order-1", 0).unwrap();
        let mut versions = Vec::new();
        while let Some(e) = c.next().unwrap() {
            versions.push((e.stream_version, e.position));
        }
        assert_eq!(versions, [(0, 0), (1, 1), (2, 4), (3, 5)]);

        // Now a read-only open reads it.
        let r = Store::open(&url, ro, Vec::new()).unwrap().0;
        assert_eq!(r.next_position().unwrap(), 7);
        r.close().unwrap();
    }
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
    assert_eq!(stored_version(pg.url(), "fresh"), "4");
}

#[test]
fn a_migration_waits_for_an_append_of_an_older_library_still_in_flight() {
    // An older library's append has written its event and moved the head but not
    // committed yet when a version-3 library opens the store for writing: the migration
    // waits for it (the tables are locked first), so the event is copied, not dropped
    // with the old table.
    let pg = PgServer::start();
    make_old_store(pg.url(), "inflight", 2);
    let s = common::pg::open_while_in_flight(
        pg.url(),
        &format!("{}?schema=inflight", pg.url()),
        "set local search_path to inflight;
         insert into events values (4, 'order-3', 0, 4000, 'Late', 1, null, '', 'late');
         insert into streams values ('order-3', 0, 4);
         update head set next = 5, last_ts = 4000;",
        "",
    );
    let events = all_events(&s);
    let got: Vec<(u64, &str)> = events
        .iter()
        .map(|e| (e.position, e.event_type.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, "Created"),
            (1, "Paid"),
            (2, "Tick"),
            (3, "Created"),
            (4, "Late")
        ]
    );
    assert_eq!(s.stream_version("order-3").unwrap(), Some(0));
}
