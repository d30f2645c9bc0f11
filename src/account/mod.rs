//! The bank-account domain: open, deposit, withdraw, transfer, close, balance, and balance
//! as of a time. A client of the store's public API, as a user's own domain would be.
//!
//! Concurrency: operations on one account are serialized by a lock stripe chosen by the
//! account id (a transfer takes both stripes in order); each append also names the
//! account streams' expected versions, so nothing can slip in between check and write.

pub mod events;
mod projection;
pub use projection::PROJECTION_NAME;

pub use events::{stream_name, AccountEvent};
pub use projection::{Account, AccountProjection};

use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    EventInput, ExpectedVersion, OpenReport, Projection, Store, StoreOptions, StreamAppend,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

const STRIPES: usize = 256;
pub const MAX_ID_LEN: usize = 256;

/// A store with the account domain attached.
pub struct Bank {
    store: Arc<Store>,
    accounts: Arc<AccountProjection>,
    stripes: Vec<Mutex<()>>,
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(format!("the {what} is empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(format!(
            "the {what} is {} bytes long; the limit is {MAX_ID_LEN}",
            id.len()
        )));
    }
    Ok(())
}

fn check_amount(amount: i64) -> Result<()> {
    if amount <= 0 {
        return Err(Error::invalid(format!(
            "the amount must be > 0, got {amount}"
        )));
    }
    Ok(())
}

fn expected(a: &Account) -> ExpectedVersion {
    match a.stream_version {
        Some(v) => ExpectedVersion::Exact(v),
        None => ExpectedVersion::NoStream,
    }
}

fn not_found(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no account '{id}'"))
}

impl Bank {
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<(Bank, OpenReport)> {
        let accounts = Arc::new(AccountProjection::default());
        let projection: Arc<dyn Projection> = accounts.clone();
        let (store, report) = Store::open(dir, options, vec![projection])?;
        Ok((
            Bank {
                store: Arc::new(store),
                accounts,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            },
            report,
        ))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn stripe(&self, id: &str) -> usize {
        // FNV-1a: cheap and good enough to spread ids over the stripes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        (h % STRIPES as u64) as usize
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append_one(&self, id: &str, expected: ExpectedVersion, e: &AccountEvent) -> Result<u64> {
        let payload = e.to_json();
        let input = [EventInput {
            event_type: e.type_name(),
            payload: &payload,
            metadata: &[],
            schema_version: e.schema_version(),
            id: None,
            subject: None,
        }];
        Ok(self
            .store
            .append(&stream_name(id), expected, &input)?
            .first_position)
    }

    /// The account, after taking in what other writers appended (a read-only store, or
    /// a PostgreSQL store that other processes write too; a no-op otherwise).
    fn live(&self, id: &str) -> Result<Account> {
        self.store.refresh()?;
        let a = self.accounts.get(id).ok_or_else(|| not_found(id))?;
        if a.is_closed {
            return Err(Error::new(
                ErrorKind::AccountClosed,
                format!("account '{id}' is closed"),
            ));
        }
        Ok(a)
    }

    pub fn open_account(
        &self,
        id: &str,
        initial_balance: i64,
        currency: Option<&str>,
    ) -> Result<u64> {
        check_id("account id", id)?;
        if initial_balance < 0 {
            return Err(Error::invalid(format!(
                "the initial balance must be >= 0, got {initial_balance}"
            )));
        }
        let currency = currency.unwrap_or(events::DEFAULT_CURRENCY);
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(format!(
                "the currency '{currency}' is not three upper-case ASCII letters"
            )));
        }
        let _g = self.lock(self.stripe(id));
        self.store.refresh()?;
        if self.accounts.get(id).is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("account '{id}' already exists"),
            ));
        }
        let e = AccountEvent::AccountOpened {
            account_id: id.to_owned(),
            initial_balance,
            currency: Some(currency.to_owned()),
        };
        // After a soft delete the stream is no stream until appended to again: the new
        // account continues its versions (docs/lifecycle.md).
        self.append_one(id, ExpectedVersion::NoStream, &e)
    }

    pub fn deposit(&self, id: &str, amount: i64) -> Result<u64> {
        check_id("account id", id)?;
        check_amount(amount)?;
        let _g = self.lock(self.stripe(id));
        let a = self.live(id)?;
        if a.balance.checked_add(amount).is_none() {
            return Err(Error::new(
                ErrorKind::Overflow,
                format!(
                    "depositing {amount} into '{id}' (balance {}) overflows int64",
                    a.balance
                ),
            ));
        }
        let e = AccountEvent::MoneyDeposited {
            account_id: id.to_owned(),
            amount,
        };
        self.append_one(id, expected(&a), &e)
    }

    pub fn withdraw(&self, id: &str, amount: i64) -> Result<u64> {
        check_id("account id", id)?;
        check_amount(amount)?;
        let _g = self.lock(self.stripe(id));
        let a = self.live(id)?;
        if a.balance < amount {
            return Err(Error::new(
                ErrorKind::InsufficientFunds,
                format!("account '{id}' has {} and cannot pay {amount}", a.balance),
            ));
        }
        let e = AccountEvent::MoneyWithdrawn {
            account_id: id.to_owned(),
            amount,
        };
        self.append_one(id, expected(&a), &e)
    }

    /// Moves `amount` from one account to another in one atomic append to both streams.
    pub fn transfer(&self, from: &str, to: &str, amount: i64) -> Result<u64> {
        check_id("source account id", from)?;
        check_id("target account id", to)?;
        check_amount(amount)?;
        if from == to {
            return Err(Error::invalid(format!(
                "a transfer from '{from}' to itself"
            )));
        }
        let (a, b) = (self.stripe(from), self.stripe(to));
        let _g1 = self.lock(a.min(b));
        let _g2 = (a != b).then(|| self.lock(a.max(b)));
        let src = self.live(from)?;
        let dst = self.live(to)?;
        if src.currency != dst.currency {
            return Err(Error::new(
                ErrorKind::CurrencyMismatch,
                format!(
                    "'{from}' holds {} but '{to}' holds {}",
                    src.currency, dst.currency
                ),
            ));
        }
        if src.balance < amount {
            return Err(Error::new(
                ErrorKind::InsufficientFunds,
                format!(
                    "account '{from}' has {} and cannot pay {amount}",
                    src.balance
                ),
            ));
        }
        if dst.balance.checked_add(amount).is_none() {
            return Err(Error::new(
                ErrorKind::Overflow,
                format!(
                    "paying {amount} into '{to}' (balance {}) overflows int64",
                    dst.balance
                ),
            ));
        }
        let w = AccountEvent::MoneyWithdrawn {
            account_id: from.to_owned(),
            amount,
        }
        .to_json();
        let d = AccountEvent::MoneyDeposited {
            account_id: to.to_owned(),
            amount,
        }
        .to_json();
        let wi = [EventInput {
            event_type: "MoneyWithdrawn",
            payload: &w,
            metadata: b"transfer",
            schema_version: 1,
            id: None,
            subject: None,
        }];
        let di = [EventInput {
            event_type: "MoneyDeposited",
            payload: &d,
            metadata: b"transfer",
            schema_version: 1,
            id: None,
            subject: None,
        }];
        let (sf, st) = (stream_name(from), stream_name(to));
        let r = self
            .store
            .append_multi(&[
                StreamAppend {
                    stream: &sf,
                    expected: expected(&src),
                    events: &wi,
                },
                StreamAppend {
                    stream: &st,
                    expected: expected(&dst),
                    events: &di,
                },
            ])
            // Its caller named accounts, not parts of an append.
            .map_err(Error::without_part)?;
        Ok(r.first_position)
    }

    pub fn close_account(&self, id: &str) -> Result<u64> {
        check_id("account id", id)?;
        let _g = self.lock(self.stripe(id));
        let a = self.live(id)?;
        let e = AccountEvent::AccountClosed {
            account_id: id.to_owned(),
        };
        self.append_one(id, expected(&a), &e)
    }

    /// Deletes a stream (docs/lifecycle.md); an account's stream (`account-<id>`) only
    /// while the account's balance is zero. No lock is needed against the account's
    /// operations, in this process or another: the delete expects the version the balance
    /// was checked at (`Projection::check_lifecycle`), and an operation checked before the
    /// delete expects the version it saw, which a soft-deleted stream no longer has (it is
    /// no stream until appended to again), so whichever comes second fails its expected
    /// version and nothing lands in an account that is gone.
    pub fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
        id: Option<[u8; 16]>,
    ) -> Result<u64> {
        self.store.refresh()?;
        self.store.delete_stream(stream, expected, hard, id)
    }

    /// The account now, from the projection (no log access).
    pub fn get(&self, id: &str) -> Result<Account> {
        check_id("account id", id)?;
        self.store.refresh()?;
        self.accounts.get(id).ok_or_else(|| not_found(id))
    }

    /// The account as it was after its last event at or before `timestamp_us`, folded
    /// from the account's own events (its stream, plus any legacy events it has).
    pub fn get_at(&self, id: &str, timestamp_us: u64) -> Result<Account> {
        let now = self.get(id)?;
        let mut positions = now.legacy_positions.clone();
        if now.stream_version.is_some() {
            let mut c = self.store.read_stream(&stream_name(id), 0)?;
            while let Some(e) = c.next()? {
                if e.timestamp_us > timestamp_us {
                    break;
                }
                positions.push(e.position);
            }
        }
        positions.sort_unstable();
        let mut state: Option<Account> = None;
        for p in positions {
            let e = self.store.read_event(p)?;
            if e.timestamp_us > timestamp_us {
                break;
            }
            if let Some(ae) = projection::account_event(&e.as_ref()) {
                state = Account::fold(state, &ae, p);
            }
        }
        state.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("account '{id}' did not exist at {timestamp_us} us"),
            )
        })
    }

    pub fn accounts(&self) -> &AccountProjection {
        &self.accounts
    }
}
