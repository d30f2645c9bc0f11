//! Moving a log to PostgreSQL and back (docs/export-format.md): a copy file ->
//! PostgreSQL -> file whose every event (positions, versions, ids, bytes) and lifecycle
//! state equal the original's, also after a copy killed midway and run again; an export
//! of a PostgreSQL store; an import of an export into PostgreSQL.

mod common;

use common::moves::{
    assert_same, assert_writers_go_on_alike, copying_child, fill, open_at, seen,
    seen_but_times_from,
};
use common::pg::PgServer;
use common::procs::{self, Children};
use evstore::store::import;
use evstore::store::{EventInput, ExpectedVersion, Store};
use evstore::ErrorKind;
use std::path::Path;

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

/// PostgreSQL keeps no data subjects in this version: a copy or an import of a log that
/// names one is refused before anything is written (not half way, and never stored in
/// the clear).
#[test]
fn a_log_with_subjects_is_refused_by_postgresql_before_anything_is_written() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&dir_str(&tmp.path().join("src")));
    for i in 0..3000u32 {
        src.append_event("Public", &i.to_le_bytes()).unwrap();
    }
    let mut e = EventInput::new("ProfileSet", b"PII-late");
    e.subject = Some("user-1");
    src.append("profile-1", ExpectedVersion::Any, &[e]).unwrap();
    src.forget_subject("user-1").unwrap();

    let dst = open(&schema_url(&pg, "subjects"));
    let err = import::copy(&src, &dst, &mut none).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{}", err.message);
    assert!(err.message.contains("personal data"), "{}", err.message);
    assert!(
        err.message.contains("nothing was written"),
        "{}",
        err.message
    );
    assert_eq!(dst.next_position().unwrap(), 0, "the copy wrote something");

    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();
    let err = import::import_file(&dst, &file, &mut none).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{}", err.message);
    assert!(
        err.message.contains("from position 3000"),
        "{}",
        err.message
    );
    assert_eq!(
        dst.next_position().unwrap(),
        0,
        "the import wrote something"
    );
}
