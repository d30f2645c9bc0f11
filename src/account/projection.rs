//! The in-memory projection of every account, kept up to date by the store as events are
//! appended (and rebuilt from a snapshot plus the log's tail on open).

use super::events::{account_of_stream, AccountEvent, DEFAULT_CURRENCY, STREAM_PREFIX};
use crate::error::{Error, ErrorKind, Result};
use crate::store::lifecycle::{LifecycleOp, LifecycleRequest};
use crate::store::{EventRef, Projection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;

/// One account as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
    pub is_closed: bool,
    pub currency: String,
    /// Events applied to this account.
    pub version: u64,
    pub last_position: u64,
    /// The version of the last event in the account's own stream (`None`: the stream does
    /// not exist, as for accounts of the reference program, whose events have no stream).
    pub stream_version: Option<u64>,
    /// Positions of the account's events that are not in its stream (legacy events).
    #[serde(default)]
    pub legacy_positions: Vec<u64>,
}

impl Account {
    /// Applies one event to the account (`None` before it was opened).
    pub fn fold(state: Option<Account>, event: &AccountEvent, position: u64) -> Option<Account> {
        let mut a = match (state, event) {
            (
                None,
                AccountEvent::AccountOpened {
                    initial_balance,
                    currency,
                    ..
                },
            ) => {
                return Some(Account {
                    balance: *initial_balance,
                    is_closed: false,
                    currency: currency.clone().unwrap_or_else(|| DEFAULT_CURRENCY.into()),
                    version: 1,
                    last_position: position,
                    stream_version: None,
                    legacy_positions: Vec::new(),
                })
            }
            (None, _) => return None,
            (Some(a), _) => a,
        };
        match event {
            AccountEvent::AccountOpened { .. } => {}
            AccountEvent::MoneyDeposited { amount, .. } => {
                a.balance = a.balance.saturating_add(*amount)
            }
            AccountEvent::MoneyWithdrawn { amount, .. } => {
                a.balance = a.balance.saturating_sub(*amount)
            }
            AccountEvent::AccountClosed { .. } => a.is_closed = true,
        }
        a.version += 1;
        a.last_position = position;
        Some(a)
    }
}

pub const PROJECTION_NAME: &str = "accounts";

#[derive(Default)]
pub struct AccountProjection {
    /// foldhash rather than SipHash: a lookup on every account call.
    accounts: RwLock<HashMap<String, Account, foldhash::fast::RandomState>>,
}

impl AccountProjection {
    pub fn get(&self, id: &str) -> Option<Account> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a retention rule on `target` (a stream, or a category prefix) would apply to
/// some account's stream.
fn rule_touches_accounts(target: &str, category: bool) -> bool {
    target.starts_with(STREAM_PREFIX) || (category && STREAM_PREFIX.starts_with(target))
}

/// Whether a stored event belongs to the account domain: in an `account-` stream, or a
/// stream-less event of the reference program.
pub fn account_event(event: &EventRef<'_>) -> Option<AccountEvent> {
    if !event.stream.is_empty() && !event.stream.starts_with(STREAM_PREFIX) {
        return None;
    }
    let e = AccountEvent::from_json(event.payload)?;
    if !event.stream.is_empty() && event.stream[STREAM_PREFIX.len()..] != *e.account_id() {
        return None;
    }
    Some(e)
}

impl Projection for AccountProjection {
    fn name(&self) -> &str {
        PROJECTION_NAME
    }

    fn apply(&self, event: &EventRef<'_>) {
        let Some(e) = account_event(event) else {
            return;
        };
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let id = e.account_id();
        let prev = accounts.remove(id);
        if let Some(mut a) = Account::fold(prev, &e, event.position) {
            if event.stream.is_empty() {
                a.legacy_positions.push(event.position);
            } else {
                a.stream_version = Some(event.stream_version);
            }
            accounts.insert(id.to_owned(), a);
        }
    }

    /// The domain's rules for data that leaves (docs/lifecycle.md): an account's stream
    /// is deleted only while its balance is zero (the delete then expects the version
    /// this check saw); truncation and retention rules never touch account streams,
    /// whose balance needs every event.
    fn check_lifecycle(&self, req: &LifecycleRequest<'_>) -> Result<Option<u64>> {
        match *req {
            LifecycleRequest::Delete { stream, .. } => {
                let Some(id) = account_of_stream(stream) else {
                    return Ok(None);
                };
                let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
                match accounts.get(id) {
                    Some(a) if a.balance != 0 => Err(Error::new(
                        ErrorKind::BalanceNotZero,
                        format!(
                            "account '{id}' has a balance of {}: its stream '{stream}' can be deleted once the balance is zero",
                            a.balance
                        ),
                    )),
                    Some(a) => Ok(a.stream_version),
                    None => Ok(None),
                }
            }
            LifecycleRequest::Truncate { stream, .. } if stream.starts_with(STREAM_PREFIX) => {
                Err(Error::invalid(format!(
                    "stream '{stream}' is an account's: its balance needs every event, so it cannot be truncated (delete it once the balance is zero)"
                )))
            }
            LifecycleRequest::Retention {
                target,
                category,
                rule,
            } if !rule.is_none() && rule_touches_accounts(target, category) => {
                Err(Error::invalid(format!(
                    "a retention rule on {} '{target}' would apply to account streams ('{STREAM_PREFIX}...'), whose balance needs every event",
                    if category { "category" } else { "stream" }
                )))
            }
            _ => Ok(None),
        }
    }

    /// A deleted account stream takes its account with it: not found from then on (a
    /// new account of the same id may be opened after a soft delete).
    fn apply_lifecycle(&self, op: &LifecycleOp, _position: u64) {
        let LifecycleOp::Delete {
            stream, version, ..
        } = op
        else {
            return;
        };
        let Some(id) = account_of_stream(stream) else {
            return;
        };
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if accounts
            .get(id)
            .is_some_and(|a| a.stream_version.is_some_and(|v| v <= *version))
        {
            accounts.remove(id);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        serde_json::to_vec(&*accounts).expect("accounts serialize")
    }

    fn restore(&self, bytes: &[u8]) -> Result<()> {
        let map: HashMap<String, Account, foldhash::fast::RandomState> =
            serde_json::from_slice(bytes)
                .map_err(|e| Error::corrupt(format!("the accounts in the snapshot: {e}")))?;
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    fn reset(&self) {
        self.accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
