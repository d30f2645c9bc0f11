//! The PostgreSQL store under concurrent writers and failures, against a real server from
//! the harness: accounts written by several handles at once (each handle has its own
//! connections and committer, as a process would), connections killed during commits,
//! the server restarted mid-run.

mod common;

use common::pg::PgServer;
use evstore::account::Bank;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A small deterministic generator (xorshift), one per writer.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn accounts_written_by_four_handles_never_go_negative_and_conserve_money() {
    let pg = PgServer::start();
    let url = format!("{}?schema=bank", pg.url());
    const ACCOUNTS: usize = 20;
    const INITIAL: i64 = 1_000;
    let banks: Vec<Arc<Bank>> = (0..4)
        .map(|_| Arc::new(Bank::open(&url, StoreOptions::default()).unwrap().0))
        .collect();
    for a in 0..ACCOUNTS {
        banks[a % 4]
            .open_account(&format!("acc-{a}"), INITIAL, None)
            .unwrap();
    }
    let workers: Vec<_> = banks
        .iter()
        .enumerate()
        .map(|(w, bank)| {
            let bank = bank.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
                // Money this writer brought in (deposits) and took out (withdrawals).
                let mut net = 0i64;
                let mut done = 0;
                while done < 300 {
                    let a = format!("acc-{}", rng.below(ACCOUNTS as u64));
                    let amount = 1 + rng.below(300) as i64;
                    let r = match rng.below(3) {
                        0 => bank.deposit(&a, amount).map(|_| net += amount),
                        1 => bank.withdraw(&a, amount).map(|_| net -= amount),
                        _ => {
                            let b = format!("acc-{}", rng.below(ACCOUNTS as u64));
                            if a == b {
                                continue;
                            }
                            bank.transfer(&a, &b, amount).map(|_| ())
                        }
                    };
                    match r {
                        Ok(()) => done += 1,
                        Err(e)
                            if matches!(
                                e.kind,
                                ErrorKind::WrongExpectedVersion | ErrorKind::InsufficientFunds
                            ) => {}
                        Err(e) => panic!("writer {w}: {e:?}"),
                    }
                    let now = bank.get(&a).unwrap();
                    assert!(now.balance >= 0, "{a} went below zero: {}", now.balance);
                }
                net
            })
        })
        .collect();
    let net: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let expected_total = INITIAL * ACCOUNTS as i64 + net;
    let fresh = Bank::open(&url, StoreOptions::default()).unwrap().0;
    let view = |b: &Bank| -> Vec<i64> {
        (0..ACCOUNTS)
            .map(|a| b.get(&format!("acc-{a}")).unwrap().balance)
            .collect()
    };
    let truth = view(&fresh);
    assert!(truth.iter().all(|&b| b >= 0), "{truth:?}");
    assert_eq!(truth.iter().sum::<i64>(), expected_total);
    for b in &banks {
        assert_eq!(view(b), truth, "a writer's view did not converge");
    }
}

#[test]
fn killed_connections_during_commits_never_duplicate_or_lose_an_append_with_ids() {
    let pg = PgServer::start();
    let url = format!("{}?schema=kills", pg.url());
    let store = Arc::new(
        Store::open(&url, StoreOptions::default(), Vec::new())
            .unwrap()
            .0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (url, stop) = (pg.url().to_owned(), stop.clone());
        std::thread::spawn(move || {
            // Kills of a connection that was running an append call (or the statement that
            // makes its commit durable) at that moment.
            let mut commits_hit = 0;
            while !stop.load(Ordering::Acquire) {
                let hit = common::pg::sql(
                    &url,
                    "select count(*) filter (where state = 'active' and (query like '%append_async(%' \
                       or query like '%.flushed as f%')) \
                     from (select state, query, pg_terminate_backend(pid) from pg_stat_activity \
                           where application_name like 'evstore/%' and pid <> pg_backend_pid()) k",
                );
                commits_hit += hit.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(15));
            }
            commits_hit
        })
    };
    const THREADS: u32 = 4;
    const APPENDS: u32 = 150;
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut failures = 0;
                for i in 0..APPENDS {
                    let mut id = [0u8; 16];
                    id[..4].copy_from_slice(&t.to_le_bytes());
                    id[4..8].copy_from_slice(&i.to_le_bytes());
                    id[15] = 1;
                    let payload = format!("{t}-{i}");
                    let mut e = EventInput::new("E", payload.as_bytes());
                    e.id = Some(id);
                    // Retried with the same id until acknowledged.
                    loop {
                        match store.append(&format!("s-{t}"), ExpectedVersion::Any, &[e]) {
                            Ok(r) => {
                                acked.push((r.first_position, id, payload.clone()));
                                break;
                            }
                            Err(err) => {
                                // A killed connection is a server that cannot serve this
                                // call now: retrying (with the same ids) may succeed.
                                assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
                                failures += 1;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                }
                (acked, failures)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut failures = 0;
    for w in writers {
        let (a, f) = w.join().unwrap();
        acked.extend(a);
        failures += f;
    }
    stop.store(true, Ordering::Release);
    // The committer retries a request with ids by itself after a lost connection: callers
    // see an error only when the retry fails too, so `failures` may be 0.
    let commits_hit = killer.join().unwrap();
    assert!(
        commits_hit > 0,
        "no kill hit an append in progress ({failures} failed calls): the test tested nothing"
    );
    // Every acknowledged append exactly once, where it was said to be.
    let n = store.next_position().unwrap();
    assert_eq!(n, (THREADS * APPENDS) as u64, "duplicates or losses");
    for (p, id, payload) in &acked {
        let e = store.read_event(*p).unwrap();
        assert_eq!(
            (e.id, e.payload.as_slice()),
            (Some(*id), payload.as_bytes())
        );
    }
}

#[test]
fn a_server_restart_fails_calls_clearly_and_the_store_reconnects_losing_nothing() {
    let pg = PgServer::start();
    let url = format!("{}?schema=restart", pg.url());
    let store = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    let append = |payload: &str| {
        store.append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("E", payload.as_bytes())],
        )
    };
    let mut acked = Vec::new();
    for round in 0..3 {
        for i in 0..20 {
            let payload = format!("{round}-{i}");
            acked.push((append(&payload).unwrap().first_position, payload));
        }
        if round == 1 {
            // A restart between calls: the store notices the dead connection and
            // reconnects before its next call.
            pg.ctl("restart").unwrap();
            continue;
        }
        pg.ctl("stop").unwrap();
        // While the server is down, calls fail with EVS_ERR_UNAVAILABLE and say why, and
        // that the store connects again.
        for e in [
            append("down").unwrap_err(),
            store.next_position().unwrap_err(),
            store.read_all(0).err().unwrap(),
        ] {
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
            assert!(e.message.contains("PostgreSQL"), "{}", e.message);
            assert!(
                e.message
                    .contains("the store connects again on its next call"),
                "{}",
                e.message
            );
        }
        pg.ctl("start").unwrap();
    }
    // The store reconnected by itself, and nothing acknowledged is lost.
    let last = append("after").expect("the store reconnected by itself");
    for (p, payload) in &acked {
        assert_eq!(store.read_event(*p).unwrap().payload, payload.as_bytes());
    }
    assert_eq!(last.first_position, acked.len() as u64);
    assert_eq!(store.next_position().unwrap(), acked.len() as u64 + 1);
}

/// An append committed with `append_async` by a raw connection that then "dies" before the
/// statement that flushes it: what a writer process killed between the two leaves.
fn commit_without_flush(url: &str, schema: &str, payload: &str) {
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    let sql = format!(
        "select res from {schema}.append_async(array[1], array['s'], array[-1::int8], array[1], \
         array[null::uuid], array['E'], array[1], array['\\x'::bytea], array['\\x{hex}'::bytea], \
         '{{}}'::uuid[], '{{}}'::int[], '{{}}'::int[], false, 'evs_{schema}')"
    );
    assert!(common::pg::sql(url, &sql).is_some(), "{sql}");
}

/// The payloads `read_all` hands out, in position order, with their positions.
fn read_everything(store: &Store) -> Vec<(u64, String)> {
    let mut c = store.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push((e.position, String::from_utf8(e.payload.to_vec()).unwrap()));
    }
    out
}

#[test]
fn an_append_committed_but_not_yet_flushed_is_read_only_once_a_later_commit_flushed_it() {
    let pg = PgServer::start();
    let url = format!("{}?schema=flushgate", pg.url());
    let writer = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    for p in ["a", "b"] {
        writer
            .append(
                "s",
                ExpectedVersion::Any,
                &[EventInput::new("E", p.as_bytes())],
            )
            .unwrap();
    }
    commit_without_flush(pg.url(), "flushgate", "unflushed");
    let read_only = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let reader = Store::open(&url, read_only.clone(), Vec::new()).unwrap().0;
    let two = vec![(0, "a".to_string()), (1, "b".to_string())];
    // Committed (the head says 3) but not durable: no read shows it, on either handle.
    assert_eq!(
        common::pg::sql(pg.url(), "select next from flushgate.head").as_deref(),
        Some("3")
    );
    for s in [&writer, &reader] {
        assert_eq!(read_everything(s), two);
        assert_eq!(s.next_position().unwrap(), 2);
        assert_eq!(s.read_event(2).unwrap_err().kind, ErrorKind::NotFound);
        let mut stream = s.read_stream("s", 0).unwrap();
        let mut versions = 0;
        while stream.next().unwrap().is_some() {
            versions += 1;
        }
        assert_eq!(versions, 2);
        let mut back = s.read_all_backward(u64::MAX).unwrap();
        assert_eq!(back.next().unwrap().map(|e| e.position), Some(1));
    }
    // The writer's next append flushes the WAL past it: both are read.
    let r = writer
        .append("s", ExpectedVersion::Any, &[EventInput::new("E", b"c")])
        .unwrap();
    assert_eq!(r.first_position, 3);
    let four = vec![
        (0, "a".to_string()),
        (1, "b".to_string()),
        (2, "unflushed".to_string()),
        (3, "c".to_string()),
    ];
    assert_eq!(read_everything(&reader), four);
    // A writable open flushes too (a read-only one cannot).
    commit_without_flush(pg.url(), "flushgate", "left by a dead writer");
    let another_reader = Store::open(&url, read_only, Vec::new()).unwrap().0;
    assert_eq!(read_everything(&another_reader), four);
    let opened = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    assert_eq!(opened.next_position().unwrap(), 5);
    assert_eq!(
        read_everything(&reader).last(),
        Some(&(4, "left by a dead writer".to_string()))
    );
}

#[test]
fn a_server_crash_under_appends_loses_no_acknowledged_append_and_takes_back_nothing_read() {
    let pg = PgServer::start();
    let url = format!("{}?schema=crash&timeout=3000", pg.url());
    let store = Arc::new(
        Store::open(&url, StoreOptions::default(), Vec::new())
            .unwrap()
            .0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    const THREADS: u32 = 4;
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let mut id = [0u8; 16];
                    id[..4].copy_from_slice(&t.to_le_bytes());
                    id[4..8].copy_from_slice(&i.to_le_bytes());
                    id[15] = 2;
                    let payload = format!("{t}-{i}");
                    let mut e = EventInput::new("E", payload.as_bytes());
                    e.id = Some(id);
                    // Until acknowledged, with the same id (settles one in doubt: a retry
                    // answers with where the first try stored it).
                    let r = loop {
                        match store.append(&format!("s-{t}"), ExpectedVersion::Any, &[e]) {
                            Ok(r) => break r,
                            Err(err) => {
                                assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    };
                    i += 1;
                    acked.push((r.first_position, payload));
                }
                acked
            })
        })
        .collect();
    // A reader following the log meanwhile: what it saw must all be there after the crash.
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let Ok(mut c) = store.read_all(seen.len() as u64) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                while let Ok(Some(e)) = c.next() {
                    assert_eq!(e.position, seen.len() as u64, "a gap or a repeat");
                    seen.push(String::from_utf8(e.payload.to_vec()).unwrap());
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    // Every server process killed at once, nothing flushed on the way out.
    pg.ctl("stop -m immediate").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pg.ctl("start").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Release);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.join().unwrap());
    }
    let seen = reader.join().unwrap();
    assert!(
        acked.len() > 100,
        "only {} appends: the test tested little",
        acked.len()
    );
    let after = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    let all = read_everything(&after);
    for (i, (p, _)) in all.iter().enumerate() {
        assert_eq!(*p, i as u64, "positions are dense after the crash");
    }
    for (p, payload) in &acked {
        assert_eq!(
            all.get(*p as usize).map(|e| &e.1),
            Some(payload),
            "acknowledged at {p}"
        );
    }
    for (p, payload) in seen.iter().enumerate() {
        assert_eq!(
            all.get(p).map(|e| &e.1),
            Some(payload),
            "read at {p} before the crash"
        );
    }
}

#[test]
fn an_append_whose_flush_a_read_only_server_refuses_is_in_doubt_and_a_retry_with_its_ids_settles_it(
) {
    let pg = PgServer::start();
    let url = format!("{}?schema=flushro&timeout=3000", pg.url());
    let store = Store::open(&url, StoreOptions::default(), Vec::new())
        .unwrap()
        .0;
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[EventInput::new("E", b"before")],
        )
        .unwrap();
    // The flush statement refused as by a server turned read-only after the append's
    // commit (SQLSTATE 25006), every time until the trigger goes.
    let refuse = "create function flushro.refuse() returns trigger language plpgsql as $$ \
         begin raise exception 'cannot execute INSERT in a read-only transaction' \
         using errcode = '25006'; end $$; \
         create trigger refuse before insert or update on flushro.flushed \
         for each row execute function flushro.refuse()";
    common::pg::run_script(pg.url(), refuse).unwrap();
    let mut with_id = EventInput::new("E", b"with an id");
    with_id.id = Some([9; 16]);
    let e = store
        .append("s", ExpectedVersion::Any, &[with_id])
        .unwrap_err();
    // Committed but not known durable: in doubt, not "read-only, nothing stored".
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    assert!(e.message.contains("in doubt"), "{}", e.message);
    assert!(e.message.contains("read-only"), "{}", e.message);
    let e = store
        .append("s", ExpectedVersion::Any, &[EventInput::new("E", b"no id")])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io, "{e:?}");
    assert!(
        e.message.contains("may or may not be stored"),
        "{}",
        e.message
    );
    common::pg::run_script(pg.url(), "drop trigger refuse on flushro.flushed").unwrap();
    // The retry with the same id finds what the first try stored: once, where it is.
    let r = store.append("s", ExpectedVersion::Any, &[with_id]).unwrap();
    assert_eq!(r.first_position, 1);
    let all = read_everything(&store);
    assert_eq!(
        all.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["before", "with an id", "no id"]
    );
}
