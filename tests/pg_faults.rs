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
            // Kills of a connection that was running an append call at that moment.
            let mut commits_hit = 0;
            while !stop.load(Ordering::Acquire) {
                let hit = common::pg::sql(
                    &url,
                    "select count(*) filter (where state = 'active' and query like '%append(%') \
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
