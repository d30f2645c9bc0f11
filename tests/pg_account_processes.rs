//! The account domain from separate *processes* on one PostgreSQL store (issue 14): 4
//! processes make random deposits, withdrawals and transfers on 20 shared accounts. No
//! balance is ever below zero (checked by each process after each operation, and in the
//! log itself: every balance after every event, replayed in position order), money is
//! conserved (the balances sum to what was opened with plus the acknowledged deposits
//! minus the acknowledged withdrawals), and once all are done each process's view is the
//! same balances. The processes are this test binary run again (`common::procs`).

mod common;

use common::pg::PgServer;
use common::procs::{self, Children};
use evstore::account::{Account, AccountEvent, Bank};
use evstore::store::StoreOptions;
use evstore::ErrorKind;
use std::collections::HashMap;
use std::time::Instant;

const PROCESSES: usize = 4;
const ACCOUNTS: u64 = 20;
const INITIAL: i64 = 1_000;
/// Acknowledged operations per process.
const OPERATIONS: u64 = 1_500;

fn bank(url: &str) -> Bank {
    Bank::open(url, StoreOptions::default())
        .expect("the PostgreSQL bank opens")
        .0
}

/// Every account's balance as this process sees it now.
fn view(b: &Bank) -> Vec<i64> {
    (0..ACCOUNTS)
        .map(|a| b.get(&format!("acc-{a}")).expect("an account").balance)
        .collect()
}

fn line(balances: &[i64]) -> String {
    let b: Vec<String> = balances.iter().map(i64::to_string).collect();
    b.join(" ")
}

/// One account process: OPERATIONS acknowledged operations, chosen at random; a wrong
/// expected version (another process got there first) or insufficient funds is tried
/// again with a new choice. Reports `done NET` (acknowledged deposits minus
/// withdrawals), waits for the parent's go, then reports `view BALANCES`.
fn accountant(url: &str, p: u64) {
    let b = bank(url);
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (p + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut net, mut done, mut refused) = (0i64, 0u64, 0u64);
    while done < OPERATIONS {
        let a = format!("acc-{}", next(ACCOUNTS));
        let amount = 1 + next(400) as i64;
        let (result, touched) = match next(3) {
            0 => (b.deposit(&a, amount).map(|_| net += amount), vec![a]),
            1 => (b.withdraw(&a, amount).map(|_| net -= amount), vec![a]),
            _ => {
                let to = format!("acc-{}", next(ACCOUNTS));
                if to == a {
                    continue;
                }
                (b.transfer(&a, &to, amount).map(|_| ()), vec![a, to])
            }
        };
        match result {
            Ok(()) => done += 1,
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::WrongExpectedVersion | ErrorKind::InsufficientFunds
                ) =>
            {
                refused += 1
            }
            Err(e) => panic!("process {p}: {e:?}"),
        }
        for id in &touched {
            let now = b.get(id).expect("an account");
            assert!(now.balance >= 0, "process {p}: {id} is at {}", now.balance);
        }
    }
    procs::report(&format!("done {net} {refused}"));
    procs::wait_for_parent();
    procs::report(&format!("view {}", line(&view(&b))));
}

#[test]
#[ignore = "a child process of the test below, which runs it"]
fn child() {
    let url = std::env::var("EVS_TEST_URL").expect("EVS_TEST_URL");
    match procs::role().as_str() {
        "accountant" => accountant(&url, procs::number("EVS_TEST_INDEX")),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn account_processes_never_go_below_zero_conserve_money_and_converge() {
    let pg = PgServer::start();
    let url = format!("{}?schema=bank_processes", pg.url());
    let b = bank(&url);
    for a in 0..ACCOUNTS {
        b.open_account(&format!("acc-{a}"), INITIAL, None).unwrap();
    }
    let started = Instant::now();
    let mut kids = Children::new();
    for p in 0..PROCESSES {
        kids.spawn(
            "child",
            "accountant",
            &[
                ("EVS_TEST_URL", url.clone()),
                ("EVS_TEST_INDEX", p.to_string()),
            ],
        );
    }
    let (mut net, mut refused, mut finished) = (0i64, 0u64, 0usize);
    let mut views = Vec::new();
    while let Some((i, l)) = kids.next_line() {
        let mut f = l.split(' ');
        match f.next() {
            Some("done") => {
                net += f.next().and_then(|n| n.parse::<i64>().ok()).expect("a net");
                refused += f
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("a count");
                finished += 1;
                // All done: now each process reads its view.
                if finished == PROCESSES {
                    (0..kids.len()).for_each(|k| kids.go(k));
                }
            }
            Some("view") => views.push((i, l["view ".len()..].to_owned())),
            _ => panic!("{}: unexpected report {l}", kids.name(i)),
        }
    }
    kids.wait_all();
    eprintln!(
        "{PROCESSES} processes x {OPERATIONS} account operations ({refused} refused and \
         retried): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The log, replayed in position order: no balance below zero after any event.
    let mut accounts: HashMap<String, Account> = HashMap::new();
    let mut c = b.store().read_all(0).unwrap();
    while let Some(e) = c.next().unwrap() {
        let Some(ev) = e
            .stream
            .starts_with("account-")
            .then(|| AccountEvent::from_json(e.payload))
            .flatten()
        else {
            continue;
        };
        let id = ev.account_id().to_owned();
        let after = Account::fold(accounts.remove(&id), &ev, e.position).unwrap_or_else(|| {
            panic!("position {}: an event of unopened account {id}", e.position)
        });
        assert!(
            after.balance >= 0,
            "position {}: {id} went to {}",
            e.position,
            after.balance
        );
        accounts.insert(id, after);
    }
    drop(c);
    let replayed: Vec<i64> = (0..ACCOUNTS)
        .map(|a| accounts[&format!("acc-{a}")].balance)
        .collect();
    // Money conserved; every view the same; a fresh open agrees.
    assert_eq!(
        replayed.iter().sum::<i64>(),
        INITIAL * ACCOUNTS as i64 + net,
        "the balances {replayed:?} do not sum to the opening balances plus the net deposits"
    );
    assert_eq!(views.len(), PROCESSES, "views reported");
    for (i, v) in &views {
        assert_eq!(
            v,
            &line(&replayed),
            "{}'s view did not converge",
            kids.name(*i)
        );
    }
    assert_eq!(view(&b), replayed, "the parent's view");
    assert_eq!(view(&bank(&url)), replayed, "a fresh open's view");
}
