//! Moving a log (docs/export-format.md): export and import through the portable format,
//! copies between stores, on the file engine; the same through the C API. PostgreSQL's
//! side is tests/pg_copy.rs.

mod common;

use common::moves::{
    assert_same, assert_writers_go_on_alike, copying_child, fill, open_at, seen,
    seen_but_times_from,
};
use common::procs::{self, Children};
use common::{every_file, holder, keys_in};
use evstore::store::import::{self, Item, LogEntry};
use evstore::store::lifecycle::LifecycleOp;
use evstore::store::{Event, EventInput, ExpectedVersion, Store};
use evstore::ErrorKind;
use std::path::Path;

/// Taken by every test of this file: one spawns child processes (see tests/compaction.rs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(dir: &Path) -> Store {
    open_at(dir)
}

/// A file store with `fill`'s log, compacted (so the removed events' records are gone
/// and their positions are skipped keys in the segments).
fn source(dir: &Path, rounds: u64) -> Store {
    let s = open(dir);
    fill(&s, rounds);
    let info = s.compact().unwrap();
    assert!(info.events_erased > 0, "{info:?}");
    s
}

fn none(_: u64, _: u64) {}

#[test]
fn an_export_imported_into_an_empty_store_has_every_field_and_the_lifecycle_state() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tmp.path().join("src"), 200);
    let want = seen(&src);
    // Every kind of item is there, and empty positions, one at the very end.
    assert!(want.entries.len() >= 5, "{:?}", want.entries);
    assert!(want.events.iter().any(|e| e.stream.is_empty()));
    assert!(want
        .events
        .iter()
        .any(|e| e.id.is_some() && !e.metadata.is_empty()));
    let held = want.events.len() + want.entries.len();
    assert!((held as u64) < want.next - 1, "no empty positions");
    assert!(want.events.last().unwrap().position < want.next - 1);

    let file = tmp.path().join("log.evx");
    let info = import::export_file(&src, &file, &mut none).unwrap();
    assert_eq!(info.events, want.events.len() as u64);
    assert_eq!(info.entries, want.entries.len() as u64);
    assert_eq!(info.next, want.next);

    let dst = open(&tmp.path().join("dst"));
    let back = import::import_file(&dst, &file, &mut none).unwrap();
    assert_eq!(back.events, info.events);
    assert_same(&want, &seen(&dst), "after the import");
    // Its own export is the same file but for the header's time (and so the end line's
    // checksum).
    let again = tmp.path().join("again.evx");
    import::export_file(&dst, &again, &mut none).unwrap();
    let body = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        let lines: Vec<String> = t.lines().map(String::from).collect();
        lines[1..lines.len() - 1].to_vec()
    };
    assert!(
        body(&file) == body(&again),
        "the export of the import differs"
    );
    // The one thing that does not move: a stream all of whose events a rule removed and
    // that no entry names exists (at its version) for the source's writers only.
    assert_eq!(src.stream_version("gone-1").unwrap(), Some(0));
    assert_eq!(dst.stream_version("gone-1").unwrap(), None);
    // Through a reopen (the log replayed from its skipped keys and its marker) and a
    // rebuild without snapshots.
    dst.close().unwrap();
    drop(dst);
    let dst = open(&tmp.path().join("dst"));
    assert_same(&want, &seen(&dst), "after a reopen");
    dst.close().unwrap();
    drop(dst);
    // (No snapshot may have been written: then the reopen above was a rebuild already.)
    let _ = std::fs::remove_dir_all(tmp.path().join("dst/snapshots"));
    let dst = open(&tmp.path().join("dst"));
    assert_same(&want, &seen(&dst), "rebuilt from the log alone");
    assert_writers_go_on_alike(&src, &dst);
    assert_same(
        &seen_but_times_from(&src, want.next),
        &seen_but_times_from(&dst, want.next),
        "after appends to both",
    );
}

#[test]
fn a_cut_or_changed_export_is_refused_and_writes_nothing() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tmp.path().join("src"), 200);
    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let lines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    // Cut after every whole line, and inside the last lines.
    let mut cuts: Vec<usize> = lines[..lines.len() - 1].to_vec();
    cuts.extend([bytes.len() - 1, bytes.len() - 10, lines[0] - 3]);
    for (n, cut) in cuts.into_iter().enumerate() {
        let p = tmp.path().join(format!("cut-{n}.evx"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let dst = open(&tmp.path().join(format!("dst-{n}")));
        let e = import::import_file(&dst, &p, &mut none).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "cut at {cut}: {}", e.message);
        assert_eq!(
            dst.next_position().unwrap(),
            0,
            "cut at {cut}: something was written"
        );
    }
    // One changed digit in a payload's line: the checksum refuses it.
    let text = String::from_utf8(bytes).unwrap();
    let at = text.find("\"ts\":").unwrap() + 5;
    let mut changed = text.clone().into_bytes();
    changed[at] = if changed[at] == b'1' { b'2' } else { b'1' };
    let p = tmp.path().join("changed.evx");
    std::fs::write(&p, &changed).unwrap();
    let dst = open(&tmp.path().join("dst-changed"));
    let e = import::import_file(&dst, &p, &mut none).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{}", e.message);
    assert!(e.message.contains("CRC-32C"), "{}", e.message);
    assert_eq!(dst.next_position().unwrap(), 0);
}

fn event(position: u64, stream: &str, version: u64, ts: u64) -> Item {
    Item::Event(Event {
        position,
        timestamp_us: ts,
        stream: stream.into(),
        stream_version: version,
        event_type: "T".into(),
        schema_version: 1,
        metadata: Vec::new(),
        payload: b"p".to_vec(),
        id: None,
        subject: None,
        erased: false,
    })
}

#[test]
fn imports_go_only_into_empty_stores_and_in_order() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tmp.path().join("src"), 200);
    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();
    // Into a store with one event: refused, nothing written.
    let dst = open(&tmp.path().join("dst"));
    dst.append_event("T", b"x").unwrap();
    let e = import::import_file(&dst, &file, &mut none).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
    assert_eq!(dst.next_position().unwrap(), 1);
    // The engine's own entry point: below the next position, out of order, times going
    // back, versions going back: each refused, writing nothing.
    let e = dst.import(&[event(0, "s", 0, 5)], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
    let t = u64::MAX / 2;
    let e = dst
        .import(&[event(5, "s", 0, t), event(4, "s", 1, t)], 6)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
    let e = dst
        .import(&[event(5, "s", 0, t + 9), event(6, "s", 1, t + 8)], 7)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    let e = dst
        .import(
            &[
                event(5, "s", 3, u64::MAX / 2),
                event(6, "s", 3, u64::MAX / 2),
            ],
            7,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    let consumer = Item::Entry(LogEntry {
        position: 5,
        timestamp_us: u64::MAX / 2,
        id: None,
        op: LifecycleOp::Truncate {
            stream: String::new(),
            before_version: 0,
            version: 0,
        },
    });
    let e = dst.import(&[consumer], 6).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert_eq!(dst.next_position().unwrap(), 1);
    // A good one after the event: positions kept, the gap between stays empty.
    dst.import(&[event(5, "s", 0, u64::MAX / 2)], 9).unwrap();
    assert_eq!(dst.next_position().unwrap(), 9);
    assert_eq!(dst.read_event(5).unwrap().stream, "s");
    assert_eq!(dst.read_event(3).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(dst.stream_version("s").unwrap(), Some(0));
    // The event counts once the import returned, and after a reopen.
    dst.close().unwrap();
    drop(dst);
    let dst = open(&tmp.path().join("dst"));
    assert_eq!(dst.next_position().unwrap(), 9);
    assert_eq!(dst.read_event(5).unwrap().position, 5);
}

#[test]
fn a_copy_between_file_stores_is_the_same_log() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tmp.path().join("src"), 200);
    let dst = open(&tmp.path().join("dst"));
    let info = import::copy(&src, &dst, &mut none).unwrap();
    let want = seen(&src);
    assert_eq!(info.next, want.next);
    assert_same(&want, &seen(&dst), "after the copy");
    // Run again: nothing more to do, still the same.
    let again = import::copy(&src, &dst, &mut none).unwrap();
    assert_eq!((again.events, again.entries), (0, 0));
    assert_same(&want, &seen(&dst), "after a second copy");
    // Into a store that holds something else: refused.
    let other = open(&tmp.path().join("other"));
    other.append_event("Other", b"o").unwrap();
    let e = import::copy(&src, &other, &mut none).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotEmpty, "{}", e.message);
}

#[test]
fn a_follower_of_the_destination_sees_the_imported_log() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tmp.path().join("src"), 200);
    let dst = open(&tmp.path().join("dst"));
    // A read-only handle opened before the copy follows the writer's imports: skipped
    // keys, entries alone in their batches, the end marker and the new segment after it.
    let ro = Store::open(
        tmp.path().join("dst"),
        evstore::store::StoreOptions {
            read_only: true,
            ..Default::default()
        },
        Vec::new(),
    )
    .unwrap()
    .0;
    import::copy(&src, &dst, &mut none).unwrap();
    ro.refresh().unwrap();
    assert_same(&seen(&src), &seen(&ro), "a follower of the destination");
    // And on after it: an append of the writer is followed too.
    dst.append_event("After", b"a").unwrap();
    ro.refresh().unwrap();
    assert_eq!(ro.next_position().unwrap(), seen(&src).next + 1);
}

/// Events for the copy a child is killed in: many, so that the kill lands mid-copy.
fn big_source(dir: &Path) -> Store {
    let s = open(dir);
    fill(&s, 10);
    for i in 0..40_000u64 {
        let stream = format!("bulk-{}", i % 13);
        s.append(
            &stream,
            evstore::store::ExpectedVersion::Any,
            &[evstore::store::EventInput::new(
                "Bulk",
                format!("bulk {i}").as_bytes(),
            )],
        )
        .unwrap();
        if i == 20_000 {
            s.truncate_stream("bulk-3", 100, None).unwrap();
        }
    }
    s
}

#[test]
fn a_copy_killed_midway_and_run_again_ends_with_the_same_log() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let dst_dir = tmp.path().join("dst");
    let src = big_source(&src_dir);
    src.close().unwrap();
    drop(src);
    let mut kids = Children::new();
    let env = [
        ("EVS_TEST_SRC", src_dir.display().to_string()),
        ("EVS_TEST_DST", dst_dir.display().to_string()),
    ];
    // Killed while it waits at its first report of progress: some batches are in.
    let k = kids.spawn("child", "copying", &env);
    let (_, first) = kids.next_line().expect("the child's start");
    assert_eq!(first, "copying");
    let (_, line) = kids.next_line().expect("the child's progress");
    assert!(line.starts_with("at "), "{line}");
    kids.kill(k);
    let part = open(&dst_dir).next_position().unwrap();
    // Run again and killed wherever it is (inside a batch's write, maybe), then again
    // to the end.
    let k = kids.spawn("child", "copying-on", &env);
    let (_, line) = kids.next_line().expect("the child's start");
    assert_eq!(line, "copying");
    std::thread::sleep(std::time::Duration::from_millis(30));
    kids.kill(k);
    kids.wait_all();
    let src = open(&src_dir);
    let dst = open(&dst_dir);
    let end = src.next_position().unwrap();
    assert!(part > 0 && part < end, "the kill landed at {part} of {end}");
    let now = dst.next_position().unwrap();
    assert!(
        now >= part,
        "the second copy went back from {part} to {now}"
    );
    let info = import::copy(&src, &dst, &mut none).unwrap();
    assert_eq!(info.first, now);
    assert_same(&seen(&src), &seen(&dst), "after the resumed copy");
}

/// The child processes of this file's tests.
#[test]
#[ignore = "a child process of the tests in this file"]
fn child() {
    match procs::role().as_str() {
        role @ ("copying" | "copying-on") => copying_child(role, |p| open(Path::new(p))),
        other => panic!("no role {other}"),
    }
}

mod c_api {
    use super::*;
    use evstore::ffi::*;
    use std::ffi::{c_void, CString};

    unsafe extern "C" fn count(user: *mut c_void, position: u64, end: u64) {
        // SAFETY: the test passes a live (u64, u64, u64) as user data.
        let seen = unsafe { &mut *(user as *mut (u64, u64, u64)) };
        assert!(
            position <= end && position >= seen.1,
            "{position} {end} {seen:?}"
        );
        *seen = (seen.0 + 1, position, end);
    }

    unsafe extern "C" fn collect(user: *mut c_void, bytes: *const u8, len: usize) -> i32 {
        // SAFETY: the test passes a live Vec<u8>; `bytes` holds `len` bytes for the call.
        unsafe {
            (*(user as *mut Vec<u8>)).extend_from_slice(std::slice::from_raw_parts(bytes, len))
        };
        0
    }

    unsafe extern "C" fn refuse(_: *mut c_void, _: *const u8, _: usize) -> i32 {
        -5
    }

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn c_open(dir: &Path) -> *mut evs_store {
        let mut s = std::ptr::null_mut();
        let p = c(dir.to_str().unwrap());
        // SAFETY: a path and an out-pointer.
        assert_eq!(
            unsafe { evs_open(p.as_ptr(), std::ptr::null(), &mut s, std::ptr::null_mut()) },
            EVS_OK
        );
        s
    }

    fn message() -> String {
        // SAFETY: never NULL, NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(evs_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn export_import_and_copy_through_the_c_api() {
        let _s = serial();
        let tmp = tempfile::tempdir().unwrap();
        let src_dir = tmp.path().join("src");
        let src = source(&src_dir, 200);
        let want = seen(&src);
        src.close().unwrap();
        drop(src);

        // evs_copy between two paths, with progress.
        let mut progress = (0u64, 0u64, 0u64);
        let opts = evs_copy_options {
            struct_size: std::mem::size_of::<evs_copy_options>(),
            progress: Some(count),
            progress_user_data: &mut progress as *mut _ as *mut c_void,
        };
        let mut info = evs_copy_info {
            struct_size: std::mem::size_of::<evs_copy_info>(),
            events: 0,
            entries: 0,
            first_position: 0,
            next_position: 0,
            bytes: 0,
        };
        let (from, to) = (
            c(src_dir.to_str().unwrap()),
            c(tmp.path().join("copy").to_str().unwrap()),
        );
        // SAFETY: live strings, options and info.
        let st = unsafe { evs_copy(from.as_ptr(), to.as_ptr(), &opts, &mut info) };
        assert_eq!(st, EVS_OK, "{}", message());
        assert_eq!(
            (info.events, info.next_position),
            (want.events.len() as u64, want.next)
        );
        assert_eq!((progress.1, progress.2), (want.next, want.next));
        assert_same(&want, &seen(&open(&tmp.path().join("copy"))), "evs_copy");
        // Again into it: nothing more; into another log: EVS_ERR_NOT_EMPTY.
        // SAFETY: as above.
        assert_eq!(
            unsafe {
                evs_copy(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                )
            },
            EVS_OK
        );
        let other = open(&tmp.path().join("other"));
        other.append_event("T", b"x").unwrap();
        other.close().unwrap();
        drop(other);
        let busy = c(tmp.path().join("other").to_str().unwrap());
        // SAFETY: as above.
        let st = unsafe {
            evs_copy(
                from.as_ptr(),
                busy.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_ERR_NOT_EMPTY, "{}", message());
        // SAFETY: NULL arguments are refused.
        let st = unsafe {
            evs_copy(
                std::ptr::null(),
                to.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_ERR_INVALID_ARGUMENT);
        assert!(message().contains("from"), "{}", message());

        // evs_export to a path and through a writer: the same items.
        let s = c_open(&src_dir);
        let file = tmp.path().join("c.evx");
        let path = c(file.to_str().unwrap());
        // SAFETY: a live store and strings.
        assert_eq!(
            unsafe { evs_export(s, path.as_ptr(), std::ptr::null(), &mut info) },
            EVS_OK,
            "{}",
            message()
        );
        let mut bytes: Vec<u8> = Vec::new();
        // SAFETY: a live store, the writer and its Vec.
        let st = unsafe {
            evs_export_to(
                s,
                Some(collect),
                &mut bytes as *mut _ as *mut c_void,
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_OK, "{}", message());
        let items = |t: &str| {
            let l: Vec<String> = t.lines().map(String::from).collect();
            l[1..l.len() - 1].to_vec()
        };
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(items(&text) == items(std::str::from_utf8(&bytes).unwrap()));
        // A writer that fails stops the export with EVS_ERR_IO; a NULL one is refused.
        // SAFETY: as above.
        let st = unsafe {
            evs_export_to(
                s,
                Some(refuse),
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_ERR_IO);
        assert!(message().contains("returned -5"), "{}", message());
        // SAFETY: as above.
        let st = unsafe {
            evs_export_to(
                s,
                None,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_ERR_INVALID_ARGUMENT);
        // Exporting over an existing file: EVS_ERR_IO, the file untouched.
        // SAFETY: as above.
        assert_eq!(
            unsafe { evs_export(s, path.as_ptr(), std::ptr::null(), std::ptr::null_mut()) },
            EVS_ERR_IO
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        // SAFETY: the store from c_open.
        assert_eq!(unsafe { evs_close(s) }, EVS_OK);

        // evs_import into an empty store, then into the same one again.
        let d = c_open(&tmp.path().join("imported"));
        // SAFETY: a live store and strings.
        assert_eq!(
            unsafe { evs_import(d, path.as_ptr(), std::ptr::null(), &mut info) },
            EVS_OK,
            "{}",
            message()
        );
        // SAFETY: as above.
        let st = unsafe { evs_import(d, path.as_ptr(), std::ptr::null(), std::ptr::null_mut()) };
        assert_eq!(st, EVS_ERR_NOT_EMPTY);
        // SAFETY: the store from c_open.
        assert_eq!(unsafe { evs_close(d) }, EVS_OK);
        assert_same(
            &want,
            &seen(&open(&tmp.path().join("imported"))),
            "evs_import",
        );
        // SAFETY: a status code.
        let name = unsafe { std::ffi::CStr::from_ptr(evs_status_name(EVS_ERR_NOT_EMPTY)) };
        assert_eq!(name.to_str().unwrap(), "EVS_ERR_NOT_EMPTY");
    }
    /// Options with a master key for the subjects' keys.
    fn keyed(key: [u8; 32]) -> evstore::store::StoreOptions {
        evstore::store::StoreOptions {
            keys: evstore::store::subjects::KeyOptions {
                master: Some(std::sync::Arc::new(
                    evstore::store::subjects::KeyBytes::new(key),
                )),
                provider: None,
            },
            ..Default::default()
        }
    }

    /// A store opened through the C API with a master key (its subjects' keys wrapped by it).
    fn c_open_keyed(dir: &Path, key: &[u8; 32], read_only: bool) -> *mut evs_store {
        let o = evs_options_new();
        let p = c(dir.to_str().unwrap());
        let mut s = std::ptr::null_mut();
        // SAFETY: live options, a 32-byte key, a path and an out-pointer.
        unsafe {
            assert_eq!(evs_options_set_master_key(o, key.as_ptr(), 32), EVS_OK);
            assert_eq!(evs_options_set_read_only(o, read_only), EVS_OK);
            assert_eq!(
                evs_open(p.as_ptr(), o, &mut s, std::ptr::null_mut()),
                EVS_OK,
                "{}",
                message()
            );
            evs_options_free(o);
        }
        s
    }

    #[test]
    fn copy_stores_copies_between_handles_opened_with_their_own_master_keys() {
        let _s = serial();
        let tmp = tempfile::tempdir().unwrap();
        let (src_dir, dst_dir) = (tmp.path().join("src"), tmp.path().join("dst"));
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        // A source whose subjects' keys are wrapped by k1: sealed events of two subjects.
        let src = c_open_keyed(&src_dir, &k1, false);
        for (i, subject) in ["ann", "bob", "ann"].iter().enumerate() {
            let (stream, ty, subj) = (c("people"), c("Said"), c(subject));
            let payload = format!("PII-{subject}-{i}");
            let mut e = evs_event_input {
                struct_size: std::mem::size_of::<evs_event_input>(),
                event_type: ty.as_ptr(),
                payload: payload.as_ptr(),
                payload_len: payload.len(),
                subject: subj.as_ptr(),
                ..unsafe { std::mem::zeroed() }
            };
            e.schema_version = 1;
            let (mut first, mut version) = (0, 0);
            // SAFETY: a live store, strings and one input.
            let st =
                unsafe { evs_append(src, stream.as_ptr(), -1, &e, 1, &mut first, &mut version) };
            assert_eq!(st, EVS_OK, "{}", message());
        }
        // evs_copy opens stores with default options: this one it cannot open.
        let (from, to) = (c(src_dir.to_str().unwrap()), c(dst_dir.to_str().unwrap()));
        // SAFETY: live strings.
        let st = unsafe {
            evs_copy(
                from.as_ptr(),
                to.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, EVS_ERR_INVALID_ARGUMENT, "{}", message());
        assert!(message().contains("master key"), "{}", message());
        let _ = std::fs::remove_dir_all(&dst_dir);

        // Between handles: the destination wraps its keys with its own master key.
        let dst = c_open_keyed(&dst_dir, &k2, false);
        let mut info: evs_copy_info = unsafe { std::mem::zeroed() };
        info.struct_size = std::mem::size_of::<evs_copy_info>();
        // SAFETY: two live stores, an info struct.
        let st = unsafe { evs_copy_stores(src, dst, std::ptr::null(), &mut info) };
        assert_eq!(st, EVS_OK, "{}", message());
        assert_eq!((info.events, info.next_position), (3, 3));
        // Both stay open and usable; the copy reads as the source does, sealed payloads
        // opened with the destination's own key.
        // SAFETY: live stores.
        unsafe {
            assert_eq!(evs_close(dst), EVS_OK);
            assert_eq!(evs_close(src), EVS_OK);
        }
        let read = |dir: &Path, key: [u8; 32]| {
            let opts = keyed(key);
            let s = Store::open(dir, opts, Vec::new()).unwrap().0;
            let mut c = s.read_all(0).unwrap();
            let mut out = Vec::new();
            while let Some(e) = c.next().unwrap() {
                out.push((e.position, e.stream.to_string(), e.payload.to_vec()));
            }
            s.close().unwrap();
            out
        };
        let want = read(&src_dir, k1);
        assert_eq!(want.len(), 3);
        assert_eq!(want[1].2, b"PII-bob-1");
        assert_eq!(read(&dst_dir, k2), want);
        // The destination's key file holds its keys wrapped by k2: k1 does not open it.
        let e = Store::open(&dst_dir, keyed(k1), Vec::new()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");

        // Refusals: the same store twice, NULL, a read-only destination, another log.
        let src = c_open_keyed(&src_dir, &k1, false);
        // SAFETY: a live store, NULLs.
        unsafe {
            assert_eq!(
                evs_copy_stores(src, src, std::ptr::null(), std::ptr::null_mut()),
                EVS_ERR_INVALID_ARGUMENT
            );
            assert!(message().contains("same store"), "{}", message());
            assert_eq!(
                evs_copy_stores(
                    src,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null_mut()
                ),
                EVS_ERR_INVALID_ARGUMENT
            );
            assert!(message().starts_with("to: "), "{}", message());
        }
        let empty = tmp.path().join("empty");
        drop(open(&empty));
        let ro = c_open_keyed(&empty, &k2, true);
        // SAFETY: live stores.
        let st = unsafe { evs_copy_stores(src, ro, std::ptr::null(), std::ptr::null_mut()) };
        assert_eq!(st, EVS_ERR_READ_ONLY, "{}", message());
        let other = tmp.path().join("other");
        let o = open(&other);
        o.append_event("T", b"x").unwrap();
        o.close().unwrap();
        drop(o);
        let other = c_open_keyed(&other, &k2, false);
        // SAFETY: live stores.
        let st = unsafe { evs_copy_stores(src, other, std::ptr::null(), std::ptr::null_mut()) };
        assert_eq!(st, EVS_ERR_NOT_EMPTY, "{}", message());
        // SAFETY: live stores, closed once.
        unsafe {
            assert_eq!(evs_close(other), EVS_OK);
            assert_eq!(evs_close(ro), EVS_OK);
            assert_eq!(evs_close(src), EVS_OK);
        }
    }
}

/// A file store whose log names 8 subjects (two events each, with `PII-<subject>-<k>`
/// in payload and metadata, among public events), subjects 0 to 2 forgotten.
fn with_subjects(dir: &Path) -> Store {
    let s = open(dir);
    for k in 0..2 {
        for i in 0..8 {
            let subject = format!("user-{i}");
            let pii = format!("PII-{subject}-{k}");
            let mut e = EventInput::new("ProfileSet", pii.as_bytes());
            e.metadata = pii.as_bytes();
            e.subject = Some(&subject);
            s.append(&format!("profile-{i}"), ExpectedVersion::Any, &[e])
                .unwrap();
            s.append_event("Public", format!("PUBLIC-{i}-{k}").as_bytes())
                .unwrap();
        }
    }
    for i in 0..3 {
        s.forget_subject(&format!("user-{i}")).unwrap();
    }
    s
}

/// Checks a store holds `with_subjects`' log as its source reads it: the forgotten
/// subjects' events erased, the others' whole and sealed (no plaintext of any subject
/// in its files), and no key of a forgotten subject in its key file.
fn check_subjects_moved(src: &Store, dst: &Store, dir: &Path, what: &str) {
    let (want, got) = (seen(src), seen(dst));
    assert_same(&want, &got, what);
    let erased: Vec<&Event> = got.events.iter().filter(|e| e.erased).collect();
    assert_eq!(erased.len(), 6, "{what}: erased events");
    assert!(erased
        .iter()
        .all(|e| e.payload.is_empty() && e.metadata.is_empty()));
    let live = got
        .events
        .iter()
        .filter(|e| e.subject.is_some() && !e.erased);
    assert_eq!(live.clone().count(), 10, "{what}: sealed events read back");
    assert!(live.clone().all(|e| e.payload.starts_with(b"PII-")));
    let forgets = got
        .entries
        .iter()
        .filter(|e| matches!(e.op, LifecycleOp::Forget { .. }))
        .count();
    assert_eq!(forgets, 3, "{what}: forget entries");
    let subjects = dst.subjects().unwrap();
    assert_eq!(subjects.len(), 8, "{what}: {subjects:?}");
    let gone = subjects.iter().filter(|s| s.forgotten_at.is_some()).count();
    assert_eq!(gone, 3, "{what}: {subjects:?}");
    let mut files = Vec::new();
    every_file(dir, &mut files);
    assert_eq!(holder(&files, b"PII-"), None, "{what}: plaintext on disk");
    assert!(
        holder(&files, b"PUBLIC-").is_some(),
        "the search finds plaintext"
    );
    let kept = keys_in(&std::fs::read(dir.join("keys")).unwrap());
    let mut names: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["user-3", "user-4", "user-5", "user-6", "user-7"],
        "{what}"
    );
}

#[test]
fn subjects_move_sealed_with_the_destinations_keys_and_forgotten_ones_stay_erased() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = with_subjects(&tmp.path().join("src"));
    let file = tmp.path().join("log.evx");
    import::export_file(&src, &file, &mut none).unwrap();
    // The export holds the live subjects' data in the clear (base64), never the
    // forgotten ones': an erased event has no bytes to export.
    let text = std::fs::read_to_string(&file).unwrap();
    let b64 = |s: &str| import_b64(s.as_bytes());
    assert!(text.contains(&b64("PII-user-3-0")));
    for i in 0..3 {
        for k in 0..2 {
            let pii = format!("PII-user-{i}-{k}");
            assert!(!text.contains(&b64(&pii)), "{pii} exported");
        }
    }
    assert_eq!(text.matches("\"erased\":true").count(), 6);
    assert_eq!(text.matches("\"kind\":\"forget\"").count(), 3);

    let dst_dir = tmp.path().join("dst");
    let dst = open(&dst_dir);
    import::import_file(&dst, &file, &mut none).unwrap();
    check_subjects_moved(&src, &dst, &dst_dir, "imported");
    drop(dst);
    let dst = open(&dst_dir);
    check_subjects_moved(&src, &dst, &dst_dir, "imported, reopened");
    // Appends go on: a live subject takes events, a forgotten one does not.
    let mut e = EventInput::new("ProfileSet", b"PII-after");
    e.subject = Some("user-0");
    let err = dst
        .append("profile-0", ExpectedVersion::Any, &[e])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{}", err.message);
    e.subject = Some("user-3");
    dst.append("profile-3", ExpectedVersion::Any, &[e]).unwrap();

    // A copy in two rounds, a subject forgotten in the source between them: its
    // events arrive sealed under the destination's key, which the forget then destroys.
    let cdir = tmp.path().join("copy");
    let copy = open(&cdir);
    import::copy(&src, &copy, &mut none).unwrap();
    let doomed = keys_in(&std::fs::read(cdir.join("keys")).unwrap())
        .into_iter()
        .find(|k| k.0 == "user-7")
        .unwrap()
        .1;
    src.forget_subject("user-7").unwrap();
    import::copy(&src, &copy, &mut none).unwrap();
    assert_same(&seen(&src), &seen(&copy), "copied in two rounds");
    let erased = seen(&copy).events.iter().filter(|e| e.erased).count();
    assert_eq!(erased, 8, "user-7's events read erased in the copy");
    copy.close().unwrap();
    drop(copy);
    let mut files = Vec::new();
    every_file(&cdir, &mut files);
    assert_eq!(
        holder(&files, &doomed),
        None,
        "the copy's key of user-7 is in a file"
    );
    assert_eq!(holder(&files, b"PII-"), None, "plaintext in the copy");
}

#[test]
fn an_erased_event_whose_subject_the_destination_forgot_is_refused_unless_erased() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dst = open(&tmp.path().join("dst"));
    let ev = |position: u64, erased: bool| {
        let Item::Event(mut e) = event(position, "p", position, 1) else {
            unreachable!()
        };
        e.subject = Some("user-x".into());
        e.erased = erased;
        if erased {
            e.payload.clear();
        }
        Item::Event(e)
    };
    let forget = Item::Entry(LogEntry {
        position: 1,
        timestamp_us: 1,
        id: None,
        op: LifecycleOp::Forget {
            subject: "user-x".into(),
        },
    });
    // Its forget and, after it in the same batch, an event of the subject that is not
    // erased: refused, nothing written.
    let e = dst
        .import(&[ev(0, false), forget.clone(), ev(2, false)], 3)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(
        e.message.contains("position 2") && e.message.contains("forgot (at position 1)"),
        "{}",
        e.message
    );
    assert_eq!(dst.next_position().unwrap(), 0);
    dst.import(&[ev(0, false), forget], 2).unwrap();
    // After its forget, an event of the subject that is not erased: refused.
    let e = dst.import(&[ev(2, false)], 3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("forgot"), "{}", e.message);
    assert_eq!(dst.next_position().unwrap(), 2);
    // An erased event that holds bytes: refused.
    let Item::Event(mut bad) = ev(2, true) else {
        unreachable!()
    };
    bad.payload = b"x".to_vec();
    let e = dst.import(&[Item::Event(bad)], 3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
    // Erased: taken, and read erased.
    dst.import(&[ev(2, true)], 3).unwrap();
    let got = seen(&dst);
    assert!(got.events.iter().all(|e| e.erased), "{:?}", got.events);
}

/// Base64 of `bytes` as an export writes it.
fn import_b64(bytes: &[u8]) -> String {
    evstore::store::export::base64_encode(bytes)
}
