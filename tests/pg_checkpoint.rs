//! Opening a PostgreSQL store without reading its history (issue 21 item 4): the
//! projections' checkpoints (schema version 5). An open starts from the newest
//! checkpoint and reads only the log after it; the accounts it then has are those a
//! replay of the whole log gives, with deleted account streams, closed accounts and
//! legacy events; a checkpoint that cannot be used is passed over (the log is replayed);
//! a version-4 schema is migrated. Nothing here measures time.

mod common;

use common::pg::{check_error, PgServer};
use evstore::account::{Bank, PROJECTION_NAME};
use evstore::store::{EventInput, ExpectedVersion, Projection, StoreOptions, StreamAppend};
use evstore::ErrorKind;

/// The accounts a bank has now, as JSON (key order does not matter).
fn accounts(bank: &Bank) -> serde_json::Value {
    bank.store().refresh().unwrap();
    serde_json::from_slice(&bank.accounts().snapshot()).unwrap()
}

/// Appends `n` events of other streams, 100 per append.
fn filler(bank: &Bank, n: usize) {
    let payload = [7u8; 64];
    let events: Vec<EventInput> = (0..100)
        .map(|_| EventInput::new("Noise", &payload))
        .collect();
    for i in 0..n / 100 {
        let stream = format!("noise-{}", i % 7);
        bank.store()
            .append_multi(&[StreamAppend {
                stream: &stream,
                expected: ExpectedVersion::Any,
                events: &events,
            }])
            .unwrap();
    }
}

/// A bank's history: accounts opened, moved, closed, one deleted (its stream, at a zero
/// balance), a legacy (stream-less) account event, with thousands of other events
/// between them.
fn history(bank: &Bank) {
    for i in 0..40 {
        bank.open_account(&format!("a{i}"), 100 + i, None).unwrap();
    }
    filler(bank, 6000);
    for i in 0..40 {
        bank.deposit(&format!("a{i}"), 5).unwrap();
        bank.transfer(&format!("a{i}"), &format!("a{}", (i + 1) % 40), 3)
            .unwrap();
    }
    bank.store()
        .append_event(
            "AccountOpened",
            br#"{"AccountOpened":{"account_id":"legacy","initial_balance":9}}"#,
        )
        .unwrap();
    filler(bank, 5000);
    bank.close_account("a3").unwrap();
    bank.open_account("gone", 0, None).unwrap();
    bank.delete_stream("account-gone", ExpectedVersion::Any, false, None)
        .unwrap();
    filler(bank, 9000);
    bank.withdraw("a7", 50).unwrap();
}

fn open(url: &str) -> (Bank, evstore::store::OpenReport) {
    Bank::open(url, StoreOptions::default()).expect("the bank opens")
}

#[test]
fn an_open_starts_from_the_newest_checkpoint_with_the_accounts_a_replay_gives() {
    let pg = PgServer::start();
    let url = format!("{}?schema=cp", pg.url());
    let (bank, _) = open(&url);
    history(&bank);
    // A deleted account's state leaves the checkpoint with the delete.
    let holding = |id: &str| {
        common::pg::sql(
            pg.url(),
            &format!(
                "select count(*) from cp.checkpoints \
                 where position('\"{id}\"' in convert_from(state, 'UTF8')) > 0"
            ),
        )
        .unwrap()
    };
    bank.open_account("gone2", 0, None).unwrap();
    filler(&bank, 9000);
    assert_eq!(holding("gone2"), "1", "a checkpoint holds the account");
    bank.delete_stream("account-gone2", ExpectedVersion::Any, true, None)
        .unwrap();
    assert_eq!(
        holding("gone2"),
        "0",
        "the checkpoint still holds a deleted account"
    );
    let want = accounts(&bank);
    let next = bank.store().next_position().unwrap();
    assert!(next > 20_000, "{next}");
    bank.store().close().unwrap();

    // From the checkpoint: most of the log is not read.
    let (again, report) = open(&url);
    let at = report
        .snapshot_position
        .expect("the open started from a checkpoint");
    assert!(at > 0 && at <= next, "{at} of {next}");
    assert_eq!(report.events_replayed, next - at);
    assert!(
        report.events_replayed < next / 2,
        "{} of {next} positions read",
        report.events_replayed
    );
    assert_eq!(accounts(&again), want);
    check_error(
        &again.get("gone").unwrap_err(),
        ErrorKind::NotFound,
        &["gone"],
    );
    assert_eq!(again.get("legacy").unwrap().balance, 9);
    assert!(again.get("a3").unwrap().is_closed);
    // Its accounts take appends at the versions the checkpoint holds.
    let before = again.get("a5").unwrap().balance;
    again.deposit("a5", 1).unwrap();
    assert_eq!(again.get("a5").unwrap().balance, before + 1);
    let want = accounts(&again);
    again.store().close().unwrap();

    // The same state as a replay of the whole log.
    let stored = pg.url();
    common::pg::run_script(stored, "delete from cp.checkpoints").unwrap();
    let (replayed, report) = open(&url);
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.events_replayed, next + 1);
    assert_eq!(accounts(&replayed), want);
    replayed.store().close().unwrap();

    // A checkpoint the projection cannot read is passed over: the log is replayed.
    let (bank, _) = open(&url);
    filler(&bank, 9000);
    let want = accounts(&bank);
    bank.store().close().unwrap();
    let rows = common::pg::sql(stored, "select count(*) from cp.checkpoints");
    assert_eq!(rows.as_deref(), Some("1"), "a checkpoint was written");
    common::pg::run_script(
        stored,
        &format!("update cp.checkpoints set state = 'not json' where name = '{PROJECTION_NAME}'"),
    )
    .unwrap();
    let (damaged, report) = open(&url);
    assert_eq!(report.snapshot_position, None);
    assert!(
        report
            .snapshot_ignored
            .iter()
            .any(|w| w.contains("checkpoint") && w.contains(PROJECTION_NAME)),
        "{:?}",
        report.snapshot_ignored
    );
    assert_eq!(accounts(&damaged), want);
    damaged.store().close().unwrap();
    pg.stop().unwrap();
}

#[test]
fn a_version_4_schema_is_migrated_and_then_checkpointed() {
    let pg = PgServer::start();
    let url = format!("{}?schema=four", pg.url());
    let (bank, _) = open(&url);
    history(&bank);
    let want = accounts(&bank);
    bank.store().close().unwrap();
    // As a version-4 library left it: no checkpoints (and no consumers, version 6).
    common::pg::run_script(
        pg.url(),
        &format!(
            "{}drop table four.checkpoints, four.consumers, four.consumer_parked, four.consumer_parts, \
         four.consumer_members; \
         drop function four.consumer_now, four.consumer_claim, four.consumer_apply, \
         four.consumer_write, four.consumer_step, four.group_join, \
         four.group_balance, four.group_renew, four.group_checkpoint, four.group_record, \
         four.group_step, four.group_leave; \
         drop table four.subject_keys, four.forgotten_subjects; \
         drop function four.subject_key_put, four.forget_subject; update four.meta set value = '4'",
            common::pg::undo_version_8("four")
        ),
    )
    .unwrap();
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let e = Bank::open(&url, ro.clone()).err().unwrap();
    check_error(&e, ErrorKind::ReadOnly, &["version 4, older"]);

    let (bank, report) = open(&url);
    assert_eq!(report.snapshot_position, None);
    assert_eq!(
        common::pg::sql(pg.url(), "select value from four.meta").as_deref(),
        Some("8")
    );
    assert_eq!(accounts(&bank), want);
    bank.store().close().unwrap();

    // The open above wrote a checkpoint: the next one, read-only too, starts from it.
    let (ro_bank, report) = Bank::open(&url, ro).unwrap();
    assert!(report.snapshot_position.is_some());
    assert_eq!(accounts(&ro_bank), want);
    pg.stop().unwrap();
}
