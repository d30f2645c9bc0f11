//! Moving a log to PostgreSQL and back (docs/export-format.md): a copy file ->
//! PostgreSQL -> file whose every event (positions, versions, ids, bytes) and lifecycle
//! state equal the original's, also after a copy killed midway and run again; an export
//! of a PostgreSQL store; an import of an export into PostgreSQL. Personal data moves
//! sealed (file -> PostgreSQL -> file, an export into PostgreSQL, PostgreSQL ->
//! PostgreSQL): no byte of the server's data directory holds a subject's plaintext.

mod common;

use common::moves::{
    assert_same, assert_writers_go_on_alike, copying_child, fill, fill_subjects, forget_subjects,
    open_at, seen, seen_but_times_from, subject_events, with_made_ids,
};
use common::pg::PgServer;
use common::procs::{self, Children};
use common::{every_file, holder};
use evstore::store::import::{self, Item, LogEntry};
use evstore::store::lifecycle::LifecycleOp;
use evstore::store::{Event, EventInput, ExpectedVersion, Store};
use evstore::ErrorKind;
use std::path::{Path, PathBuf};

fn open(at: &str) -> Store {
    open_at(at)
}

fn dir_str(p: &Path) -> String {
    p.display().to_string()
}

fn none(_: u64, _: u64) {}

fn schema_url(pg: &PgServer, schema: &str) -> String {
    format!("{}?schema={schema}", pg.url())
}

#[test]
fn a_copy_file_to_postgresql_to_file_is_the_same_log() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&dir_str(&tmp.path().join("src")));
    fill(&src, 150);
    src.compact().unwrap();
    let want = seen(&src);

    let url = schema_url(&pg, "moved");
    let mid = open(&url);
    let info = import::copy(&src, &mid, &mut none).unwrap();
    assert_eq!(info.next, want.next);
    assert_same(&want, &seen(&mid), "on PostgreSQL");
    // A second handle (its own reads from the server) sees the same.
    let other = open(&url);
    assert_same(&want, &seen(&other), "through another handle");
    drop(other);

    let back = open(&dir_str(&tmp.path().join("back")));
    import::copy(&mid, &back, &mut none).unwrap();
    assert_same(&want, &seen(&back), "back in a file store");
    // And writers go on alike on PostgreSQL and in the file store it went back to.
    assert_writers_go_on_alike(&mid, &back);
    assert_same(
        &seen_but_times_from(&mid, want.next),
        &seen_but_times_from(&back, want.next),
        "after appends to both",
    );
}

#[test]
fn an_export_of_postgresql_imports_into_postgresql_and_files_alike() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&dir_str(&tmp.path().join("src")));
    fill(&src, 60);
    let want = seen(&src);
    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();

    let a = open(&schema_url(&pg, "imported"));
    import::import_file(&a, &file, &mut none).unwrap();
    assert_same(&want, &seen(&a), "imported into PostgreSQL");
    // Its export says where it came from and holds the same items.
    let from_pg = tmp.path().join("pg.evx");
    import::export_file(&a, &from_pg, &mut none).unwrap();
    let text = std::fs::read_to_string(&from_pg).unwrap();
    assert!(text
        .lines()
        .next()
        .unwrap()
        .contains("\"engine\":\"postgresql\""));
    let items = |t: &str| {
        let l: Vec<String> = t.lines().map(String::from).collect();
        l[1..l.len() - 1].to_vec()
    };
    let original = std::fs::read_to_string(&file).unwrap();
    assert!(items(&text) == items(&original), "the items differ");
    let f = open(&dir_str(&tmp.path().join("f")));
    import::import_file(&f, &from_pg, &mut none).unwrap();
    assert_same(
        &want,
        &seen(&f),
        "from PostgreSQL's export into a file store",
    );
    // Into a PostgreSQL store that is not empty: refused, nothing written.
    let e = import::import_file(&a, &file, &mut none).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
    let b = open(&schema_url(&pg, "busy"));
    b.append("x", ExpectedVersion::Any, &[EventInput::new("T", b"x")])
        .unwrap();
    let e = import::copy(&src, &b, &mut none).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
    assert_eq!(b.next_position().unwrap(), 1);
}

#[test]
fn a_copy_to_postgresql_killed_midway_and_run_again_ends_with_the_same_log() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let src = open(&dir_str(&src_dir));
    fill(&src, 20);
    for i in 0..30_000u64 {
        let stream = format!("bulk-{}", i % 11);
        let payload = format!("bulk {i}");
        src.append(
            &stream,
            ExpectedVersion::Any,
            &[EventInput::new("Bulk", payload.as_bytes())],
        )
        .unwrap();
    }
    src.truncate_stream("bulk-4", 500, None).unwrap();
    src.close().unwrap();
    drop(src);
    let url = schema_url(&pg, "resumed");
    let env = [
        ("EVS_TEST_SRC", dir_str(&src_dir)),
        ("EVS_TEST_DST", url.clone()),
    ];
    let mut kids = Children::new();
    // Killed at its first progress report (batches committed, the copy not done), then
    // run again and killed wherever it is (a batch's transaction in flight, maybe).
    let k = kids.spawn("child", "copying", &env);
    assert_eq!(kids.next_line().unwrap().1, "copying");
    assert!(kids.next_line().unwrap().1.starts_with("at "));
    kids.kill(k);
    let k = kids.spawn("child", "copying-on", &env);
    assert_eq!(kids.next_line().unwrap().1, "copying");
    std::thread::sleep(std::time::Duration::from_millis(50));
    kids.kill(k);
    kids.wait_all();
    let src = open(&dir_str(&src_dir));
    let dst = open(&url);
    let part = dst.next_position().unwrap();
    assert!(part > 0, "nothing was copied before the kills");
    let info = import::copy(&src, &dst, &mut none).unwrap();
    assert_eq!(info.first, part);
    let want = seen(&src);
    assert_same(&want, &seen(&dst), "after the resumed copy");
    // And back to a file store, equal too.
    let back = open(&dir_str(&tmp.path().join("back")));
    import::copy(&dst, &back, &mut none).unwrap();
    assert_same(&want, &seen(&back), "back in a file store");
}

/// The child processes of this file's tests.
#[test]
#[ignore = "a child process of the tests in this file"]
fn child() {
    match procs::role().as_str() {
        role @ ("copying" | "copying-on") => copying_child(role, open),
        other => panic!("no role {other}"),
    }
}

/// Backup and point-in-time recovery with PostgreSQL's own tools (docs/postgres.md
/// "Backup and point-in-time recovery"): a base backup while the store is written, WAL
/// archived by the server, a recovery into a new data directory up to a named restore
/// point; the restored server opens (`evs_open`) with exactly the store as it was at the
/// restore point: the events and lifecycle entries before it, none after.
#[test]
fn a_server_recovered_to_a_point_in_time_opens_with_exactly_the_log_up_to_it() {
    // Archived WAL goes to the server's folder (archive_command runs in the data dir).
    let pg = PgServer::start_with_conf(
        "archive_mode = on\narchive_command = 'mkdir -p ../archive && test ! -f ../archive/%f && cp %p ../archive/%f'",
    )
    .unwrap_or_else(|e| panic!("the server did not start: {e}"));
    let url = schema_url(&pg, "pitr");
    let s = open(&url);
    fill(&s, 30);
    let dir = pg.dir().display().to_string();
    let port = pg.port();
    common::pg::as_pg(&format!(
        "pg_basebackup -h 127.0.0.1 -p {port} -U postgres -D {dir}/base -X stream --no-sync"
    ))
    .unwrap();
    // After the base backup: more events and a delete, then the restore point.
    for i in 0..50u64 {
        let p = format!("after the backup {i}");
        s.append(
            "late",
            ExpectedVersion::Any,
            &[EventInput::new("Late", p.as_bytes())],
        )
        .unwrap();
    }
    s.delete_stream("order-4", ExpectedVersion::Any, false, None)
        .unwrap();
    let want = seen(&s);
    assert!(want.events.iter().any(|e| e.stream == "late"));
    let point = |sql: &str| common::pg::sql(pg.url(), sql).unwrap_or_default();
    point("select pg_create_restore_point('evs-test-point')::text");
    // After the restore point: none of this may come back.
    for i in 0..20u64 {
        let p = format!("after the point {i}");
        s.append(
            "later",
            ExpectedVersion::Any,
            &[EventInput::new("Later", p.as_bytes())],
        )
        .unwrap();
    }
    s.truncate_stream("late", 10, None).unwrap();
    assert_ne!(seen(&s), want);
    // Every WAL segment up to here archived (the current one switched out first).
    let last = point("select pg_walfile_name(pg_switch_wal())");
    assert!(!last.is_empty());
    let archived = Path::new(&dir).join("archive").join(&last);
    for _ in 0..600 {
        if archived.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(archived.exists(), "{} was not archived", archived.display());
    drop(s);

    // Recovery into a new data directory: the base backup, the archive, the target.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    common::pg::as_pg(&format!(
        "cp -a {dir}/base {dir}/restored && touch {dir}/restored/recovery.signal"
    ))
    .unwrap();
    let conf = format!(
        "port = {free}\narchive_mode = off\nrestore_command = 'cp {dir}/archive/%f %p'\n\
         recovery_target_name = 'evs-test-point'\nrecovery_target_action = 'promote'\n"
    );
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(format!("{dir}/restored/postgresql.conf"))
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .unwrap();
    common::pg::as_pg(&format!(
        "pg_ctl -D {dir}/restored -l {dir}/restored.log -w -t 120 start"
    ))
    .unwrap();
    let restored = format!("postgresql://postgres@127.0.0.1:{free}/postgres");
    let stop = Stop(format!("{dir}/restored"));
    // Wait for the end of recovery (the promotion at the target).
    for _ in 0..600 {
        if common::pg::sql(&restored, "select pg_is_in_recovery()::text").as_deref()
            == Some("false")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        common::pg::sql(&restored, "select pg_is_in_recovery()::text").as_deref(),
        Some("false"),
        "the restored server did not finish its recovery: {}",
        std::fs::read_to_string(format!("{dir}/restored.log")).unwrap_or_default()
    );
    // Through the C API, then compared field by field.
    let restored_url = format!("{restored}?schema=pitr");
    let c = common::pg::c_open(&restored_url);
    // SAFETY: all-zero is a valid evs_stats (integers), then its size is set.
    let mut stats: evstore::ffi::evs_stats = unsafe { std::mem::zeroed() };
    stats.struct_size = std::mem::size_of::<evstore::ffi::evs_stats>();
    // SAFETY: a live store and its struct.
    assert_eq!(
        unsafe { evstore::ffi::evs_stats_get(c, &mut stats) },
        evstore::ffi::EVS_OK
    );
    assert_eq!(stats.events, want.next, "the restored store's positions");
    // SAFETY: the store from c_open.
    assert_eq!(unsafe { evstore::ffi::evs_close(c) }, evstore::ffi::EVS_OK);
    let r = open(&restored_url);
    assert_same(&want, &seen(&r), "the restored store");
    drop(r);
    drop(stop);
}

/// Stops the restored server (immediately) when the test ends, passing or not.
struct Stop(String);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = common::pg::as_pg(&format!("pg_ctl -D {} -m immediate -w stop", self.0));
    }
}

/// Every file of the server's data directory (`skip`: a folder left out), read after a
/// CHECKPOINT so that what the tables hold is in their files. A file that goes away
/// while it is listed (the server's temporary files) is passed over.
fn server_files(pg: &PgServer, skip: &str) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, skip: &str, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(list) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in list.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == skip) {
                continue;
            }
            if path.is_dir() {
                walk(&path, skip, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    common::pg::sql(pg.url(), "checkpoint");
    let mut out = Vec::new();
    walk(&pg.dir().join("data"), skip, &mut out);
    out
}

/// Checks that `dst`, on `pg`, holds `fill_subjects`' log as `src` reads it now: every
/// event equal (an id made where none was), `erased` of them erased (empty, their
/// subject named), the other subjects' events whole, the same subjects with the same
/// counts; and that no byte of the server's data directory (WAL included) holds any
/// subject's plaintext: every subject's event reached the server sealed.
fn check_sealed_move(pg: &PgServer, src: &Store, dst: &Store, erased: usize, what: &str) {
    no_plaintext(pg, what);
    let got = seen(dst);
    assert_same(&with_made_ids(seen(src), &got), &got, what);
    let personal: Vec<&Event> = got.events.iter().filter(|e| e.subject.is_some()).collect();
    assert_eq!(personal.len(), 17, "{what}: events naming a subject");
    assert!(personal.iter().all(|e| e.id.is_some()), "{what}: an id");
    let (gone, live): (Vec<&Event>, Vec<&Event>) = personal.iter().partition(|e| e.erased);
    assert_eq!(gone.len(), erased, "{what}: erased events");
    assert!(gone
        .iter()
        .all(|e| e.payload.is_empty() && e.metadata.is_empty()));
    assert!(
        live.iter().all(|e| e.payload.starts_with(b"PII-")),
        "{what}: {live:?}"
    );
    assert_eq!(dst.subjects().unwrap(), src.subjects().unwrap(), "{what}");
}

/// No byte of `pg`'s data directory (WAL included) holds a subject's plaintext.
fn no_plaintext(pg: &PgServer, what: &str) {
    let files = server_files(pg, "");
    assert_eq!(
        holder(&files, b"PII-"),
        None,
        "{what}: a subject's plaintext on the server"
    );
    assert!(
        holder(&files, b"PUBLIC-").is_some(),
        "the search finds plaintext"
    );
}

/// A subject's key as the server keeps it in `schema` (its bytes).
fn stored_key(pg: &PgServer, schema: &str, subject: &str) -> Option<Vec<u8>> {
    let q =
        format!("select encode(key, 'hex') from {schema}.subject_keys where subject = '{subject}'");
    let hex = common::pg::sql(pg.url(), &q)?;
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    Some((0..hex.len()).step_by(2).map(byte).collect())
}

/// A file store with personal data moves to PostgreSQL and back (README "Moving to
/// PostgreSQL"): every event sealed with PostgreSQL's own keys on the way in, the
/// forgotten subjects' events erased on every side, the others whole; a copy run again
/// after a subject was forgotten in the source goes on from the event whose id
/// PostgreSQL made, and the forget it takes deletes the key it had made.
#[test]
fn a_file_store_with_subjects_moves_to_postgresql_sealed_and_back() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&dir_str(&tmp.path().join("src")));
    fill_subjects(&src);
    let url = schema_url(&pg, "personal");
    let mid = open(&url);
    import::copy(&src, &mid, &mut none).unwrap();
    check_sealed_move(&pg, &src, &mid, 6, "copied to PostgreSQL");
    let other = open(&url);
    check_sealed_move(&pg, &src, &other, 6, "through another handle");
    drop(other);

    // The source forgets user-7, whose last event (no id in the source) was copied.
    let key7 = stored_key(&pg, "personal", "user-7").expect("user-7's key");
    let end = src.next_position().unwrap();
    src.forget_subject("user-7").unwrap();
    src.append_event("Public", b"PUBLIC-late").unwrap();
    let info = import::copy(&src, &mid, &mut none).unwrap();
    assert_eq!(info.first, end, "the copy went on from where it stopped");
    check_sealed_move(&pg, &src, &mid, 9, "copied again after a forget");
    assert_eq!(stored_key(&pg, "personal", "user-7"), None);
    // Deleted with a VACUUM FULL: in no table's file (the WAL keeps it until recycled).
    let tables = server_files(&pg, "pg_wal");
    assert_eq!(holder(&tables, &key7), None, "user-7's key is in a table");
    let key3 = stored_key(&pg, "personal", "user-3").unwrap();
    assert!(holder(&tables, &key3).is_some(), "the search finds a key");
    // Appends go on: a forgotten subject takes no event, a live one does.
    let mut e = EventInput::new("ProfileSet", b"PII-after");
    e.subject = Some("user-7");
    let err = mid
        .append("profile-7", ExpectedVersion::Any, &[e])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{}", err.message);

    let back_dir = tmp.path().join("back");
    let back = open(&dir_str(&back_dir));
    import::copy(&mid, &back, &mut none).unwrap();
    assert_same(&seen(&mid), &seen(&back), "back in a file store");
    assert_eq!(back.subjects().unwrap(), src.subjects().unwrap());
    let mut files = Vec::new();
    every_file(&back_dir, &mut files);
    assert_eq!(holder(&files, b"PII-"), None, "plaintext in the file store");
    assert!(holder(&files, b"PUBLIC-").is_some());
}

/// An export of a log with personal data imported into PostgreSQL: the same as a copy
/// (sealed on the way in, the forgotten subjects erased); and `Backend::import` on
/// PostgreSQL refuses an event not erased of a subject it forgot, and takes erased ones.
#[test]
fn an_export_with_subjects_imports_into_postgresql_sealed() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&dir_str(&tmp.path().join("src")));
    fill_subjects(&src);
    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();
    let dst = open(&schema_url(&pg, "imported"));
    import::import_file(&dst, &file, &mut none).unwrap();
    check_sealed_move(&pg, &src, &dst, 6, "imported into PostgreSQL");
    drop(dst);
    let dst = open(&schema_url(&pg, "imported"));
    check_sealed_move(&pg, &src, &dst, 6, "imported, reopened");

    let raw = open(&schema_url(&pg, "raw"));
    let ev = |position: u64, erased: bool| {
        let text = format!("PII-raw-{position}");
        Item::Event(Event {
            position,
            timestamp_us: 1 + position,
            stream: "p".into(),
            stream_version: position,
            event_type: "T".into(),
            schema_version: 1,
            metadata: Vec::new(),
            payload: if erased {
                Vec::new()
            } else {
                text.into_bytes()
            },
            id: None,
            subject: Some("user-x".into()),
            erased,
        })
    };
    let forget = Item::Entry(LogEntry {
        position: 1,
        timestamp_us: 2,
        id: Some([9; 16]),
        op: LifecycleOp::Forget {
            subject: "user-x".into(),
        },
    });
    raw.import(&[ev(0, false), forget.clone()], 2).unwrap();
    let e = raw.import(&[ev(2, false)], 3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("forgot"), "{}", e.message);
    assert_eq!(raw.next_position().unwrap(), 2);
    // Nor after its forget in the same batch.
    let Item::Event(mut late) = ev(3, false) else {
        unreachable!()
    };
    late.subject = Some("user-y".into());
    let forget_y = Item::Entry(LogEntry {
        position: 2,
        timestamp_us: 3,
        id: None,
        op: LifecycleOp::Forget {
            subject: "user-y".into(),
        },
    });
    let e = raw.import(&[forget_y, Item::Event(late)], 4).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("forgot"), "{}", e.message);
    assert_eq!(raw.next_position().unwrap(), 2);
    raw.import(&[ev(2, true)], 3).unwrap();
    let got = seen(&raw);
    assert_eq!(got.events.len(), 2);
    assert!(got.events.iter().all(|e| e.erased), "{:?}", got.events);
    let Item::Entry(forget) = forget else {
        unreachable!()
    };
    assert_eq!(got.entries, [forget]);
    let info = &raw.subjects().unwrap()[0];
    assert_eq!((info.events, info.forgotten_at), (2, Some(1)), "{info:?}");
    // An erased event whose forget has not come yet (a copy stopped between them): with
    // no key of its subject here, it reads erased; with one, it is refused as damage.
    let Item::Event(mut early) = ev(3, true) else {
        unreachable!()
    };
    early.subject = Some("user-z".into());
    raw.import(&[Item::Event(early)], 4).unwrap();
    assert!(raw.read_event(3).unwrap().erased);
    let mut live = EventInput::new("T", b"PII-z");
    live.subject = Some("user-z");
    raw.append("p", ExpectedVersion::Any, &[live]).unwrap();
    let e = raw.read_event(3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{}", e.message);
}

/// A copy PostgreSQL -> PostgreSQL of a store with personal data: sealed again with the
/// destination's keys (the source's subjects were not asked of a PostgreSQL source, and
/// the events went to the destination's tables in the clear), in two rounds: events,
/// then forgets and more.
#[test]
fn a_copy_between_postgresql_stores_keeps_subjects_sealed() {
    let pg = PgServer::start();
    let src = open(&schema_url(&pg, "first"));
    subject_events(&src);
    let dst = open(&schema_url(&pg, "second"));
    import::copy(&src, &dst, &mut none).unwrap();
    no_plaintext(&pg, "copied between PostgreSQL stores");
    forget_subjects(&src);
    import::copy(&src, &dst, &mut none).unwrap();
    check_sealed_move(&pg, &src, &dst, 6, "copied again after forgets");
    // Its own keys: the destination's key of a subject is not the source's.
    let (a, b) = (
        stored_key(&pg, "first", "user-3").unwrap(),
        stored_key(&pg, "second", "user-3").unwrap(),
    );
    assert_ne!(a, b, "the destination's key is the source's");
}
