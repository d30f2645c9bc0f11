//! A read-only store on a streaming replica: `pg_basebackup -R` of the harness's server
//! into its folder, started on a second port; the store opened there reads the log and
//! follows what the primary appends (a standby has no LISTEN: the store polls).

mod common;

use common::pg::{check_error, PgServer, Standby};
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::ErrorKind;
use std::time::{Duration, Instant};

#[test]
fn a_read_only_store_on_a_streaming_replica_reads_and_follows_the_log() {
    let pg = PgServer::start();
    let url = format!("{}?schema=replicated", pg.url());
    let primary = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    for i in 0..10u32 {
        primary
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("E", &i.to_le_bytes())],
            )
            .unwrap();
    }
    let (standby, standby_url) = Standby::start(&pg);
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let replica = Store::open(format!("{standby_url}?schema=replicated"), ro, Vec::new())
        .unwrap()
        .0;
    assert_eq!(
        replica.append_event("E", b"").unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    let mut tail = replica.read_all(0).unwrap();
    let mut seen = 0u64;
    // What the primary appends from now on reaches the replica's tailing cursor, in order.
    for i in 10..40u32 {
        primary
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("E", &i.to_le_bytes())],
            )
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 40 {
        assert!(
            Instant::now() < deadline,
            "the replica stopped at {seen} of 40"
        );
        match tail.next().unwrap() {
            Some(e) => {
                assert_eq!(e.position, seen);
                assert_eq!(e.payload, (seen as u32).to_le_bytes());
                seen += 1;
            }
            None => {
                replica.wait_for_events(seen, Duration::from_millis(100));
            }
        }
    }
    assert_eq!(replica.stream_version("s").unwrap(), Some(39));
    drop(standby);
}

#[test]
fn a_writable_open_of_a_standby_and_an_append_after_a_failover_are_read_only() {
    let pg = PgServer::start();
    let url = format!("{}?schema=failover", pg.url());
    let store = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    let append = |s: &Store, payload: &str| {
        s.append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("E", payload.as_bytes())],
        )
        .map(|r| r.first_position)
    };
    for i in 0..3 {
        assert_eq!(append(&store, &format!("{i}")).unwrap(), i);
    }
    let (standby, standby_url) = Standby::start(&pg);
    let on_standby = format!("{standby_url}?schema=failover");
    // A writable open of a standby is refused: it could never append.
    let e = Store::open(&on_standby, StoreOptions::default(), Vec::new())
        .err()
        .expect("a writable open of a standby");
    check_error(
        &e,
        ErrorKind::ReadOnly,
        &["is a standby (pg_is_in_recovery())"],
    );
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    Store::open(&on_standby, ro.clone(), Vec::new()).expect("a read-only open of the standby");

    // A switchover: the primary stops (its last WAL, the shutdown checkpoint, reaches the
    // standby first), the standby is promoted, and the old primary comes back as a standby
    // of it, at the URL the store was opened with.
    pg.ctl("stop").unwrap();
    standby.promote().unwrap();
    let data = pg.dir().join("data");
    std::fs::write(data.join("standby.signal"), "").unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.auto.conf"))
        .unwrap();
    use std::io::Write;
    writeln!(
        conf,
        "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'",
        standby.port
    )
    .unwrap();
    drop(conf);
    pg.ctl("start").unwrap();

    // The store's server is a standby now: an append is refused as read-only (not an I/O
    // error a caller would retry forever), each time.
    for _ in 0..2 {
        let e = append(&store, "after the failover").unwrap_err();
        check_error(
            &e,
            ErrorKind::ReadOnly,
            &["SQLSTATE 25006", "takes no writes"],
        );
    }
    // Reads go on, and a writable open there is refused too.
    assert_eq!(store.read_event(2).unwrap().payload, b"2");
    let e = Store::open(&url, StoreOptions::default(), Vec::new())
        .err()
        .expect("a writable open of the old primary");
    assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    // The new primary takes the appends, after the same log.
    let promoted = Store::open(&on_standby, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    assert_eq!(append(&promoted, "on the new primary").unwrap(), 3);
    drop(promoted);
    drop(store);
    drop(standby);
}
