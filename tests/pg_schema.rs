//! The store's schema in PostgreSQL: versions and first opens, against a real server
//! started for the run (a server that cannot start fails these tests).

mod common;

use common::pg::{check_error, PgServer};
use evstore::store::{Event, EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::ErrorKind;
use std::sync::{Arc, Barrier};

/// Runs SQL on a connection of its own.
fn sql(url: &str, text: &str) {
    common::pg::run_script(url, text).unwrap_or_else(|e| panic!("{e}"));
}

/// The schema version stored in `schema`'s meta table.
fn stored_version(url: &str, schema: &str) -> String {
    common::pg::sql(
        url,
        &format!("select value from {schema}.meta where key = 'schema_version'"),
    )
    .expect("a schema version")
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

        // Two writable opens at once: one migrates, the other finds version 8.
        let stores = common::pg::open_at_once(&url, 2);
        assert_eq!(stored_version(pg.url(), &schema), "8");

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
    assert_eq!(stored_version(pg.url(), "fresh"), "8");
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

#[test]
fn the_printed_sql_makes_a_schema_that_a_role_without_create_rights_opens_with_migrate_false() {
    let pg = PgServer::start();
    // A role that may not create schemas (PostgreSQL 15: nor in `public`).
    sql(pg.url(), "create role app login");
    let app = format!("{}?schema=dba&migrate=false", pg.url_as("app"));
    let open = |url: &str| Store::open(url, StoreOptions::default(), Vec::new()).map(|(s, _)| s);
    // migrate=false: an open that needs DDL is refused, naming the command that prints it.
    let e = open(&app).err().expect("an open that needs DDL");
    check_error(
        &e,
        ErrorKind::ReadOnly,
        &[
            "creating the evstore schema 'dba'",
            "migrate=false",
            "evsctl schema --sql URL",
        ],
    );
    // Without it, the app's role cannot run the DDL anyway.
    let e = open(
        &pg.url_as("app")
            .replace("/postgres", "/postgres?schema=dba"),
    )
    .err()
    .expect("DDL without the right");
    assert_eq!(e.kind, ErrorKind::Io, "{e:?}");
    assert!(e.message.contains("permission denied"), "{}", e.message);

    // The SQL, printed for the app's URL (nothing run), run by the superuser.
    let script = evstore::store::schema_sql(&app).unwrap();
    assert!(
        script.contains("does not exist: this creates it"),
        "{script}"
    );
    assert!(script.contains("to \"app\";"), "{script}");
    assert!(
        common::pg::sql(
            pg.url(),
            "select count(*) from pg_namespace where nspname = 'dba'"
        ) == Some("0".into()),
        "printing the SQL ran some of it"
    );
    common::pg::run_script(pg.url(), &script).unwrap();

    // The app's role opens it with migrate=false and uses all of it.
    let s = open(&app).expect("the app's open of the schema the DBA made");
    let p = s
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            &[EventInput::new("Created", b"x")],
        )
        .unwrap()
        .first_position;
    assert_eq!(p, 0);
    let mut e = EventInput::new("Paid", b"y");
    e.id = Some([9; 16]);
    s.append("order-1", ExpectedVersion::Exact(0), &[e])
        .unwrap();
    s.append("order-1", ExpectedVersion::Exact(0), &[e])
        .expect("a retry by its id");
    s.append_event("Tick", b"t").unwrap();
    assert_eq!(all_events(&s).len(), 3);
    let rule = evstore::store::lifecycle::Rule {
        max_count: 1,
        max_age_us: 0,
    };
    s.set_retention("order-", true, rule, Some([3; 16]))
        .unwrap();
    s.delete_stream("order-1", ExpectedVersion::Any, false, None)
        .unwrap();
    s.compact().unwrap();
    s.stats().unwrap();
    // Its connections carry the schema in their application_name.
    let names = common::pg::sql(
        pg.url(),
        "select string_agg(distinct application_name, ',') from pg_stat_activity \
         where usename = 'app'",
    );
    assert_eq!(names.as_deref(), Some("evstore/dba"));
    drop(s);
    // A schema at this version: comments only.
    let again = evstore::store::schema_sql(&app).unwrap();
    assert!(again.contains("nothing to do"), "{again}");
    assert!(again.lines().all(|l| l.starts_with("--")), "{again}");
}

#[test]
fn the_printed_sql_migrates_an_old_schema_for_an_open_with_migrate_false() {
    let pg = PgServer::start();
    make_old_store(pg.url(), "old_dba", 2);
    let url = format!("{}?schema=old_dba&migrate=false", pg.url());
    let e = Store::open(&url, StoreOptions::default(), Vec::new())
        .err()
        .expect("an open that needs a migration");
    check_error(
        &e,
        ErrorKind::ReadOnly,
        &[
            "migrating the evstore schema 'old_dba' from version 2 to 8",
            "evsctl schema --sql URL",
        ],
    );
    assert_eq!(stored_version(pg.url(), "old_dba"), "2");
    let script = evstore::store::schema_sql(&url).unwrap();
    assert!(
        script.contains("It is at version 2: this migrates it"),
        "{script}"
    );
    common::pg::run_script(pg.url(), &script).unwrap();
    assert_eq!(stored_version(pg.url(), "old_dba"), "8");
    let s = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    let events = all_events(&s);
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].payload, b"c");
    assert_eq!(
        s.append(
            "order-2",
            ExpectedVersion::Exact(0),
            &[EventInput::new("Paid", b"d")]
        )
        .unwrap()
        .first_position,
        4
    );
}
