//! The account events, in the reference program's JSON (an externally tagged enum), with
//! `currency` added to `AccountOpened` at schema version 2.

use serde::{Deserialize, Serialize};

/// The schema version evstore writes `AccountOpened` with (it carries `currency`).
pub const OPENED_SCHEMA_VERSION: u32 = 2;
pub const DEFAULT_CURRENCY: &str = "USD";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountOpened {
        account_id: String,
        initial_balance: i64,
        /// Absent in version 1 and in legacy events: upcast to "USD".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<String>,
    },
    MoneyDeposited {
        account_id: String,
        amount: i64,
    },
    MoneyWithdrawn {
        account_id: String,
        amount: i64,
    },
    AccountClosed {
        account_id: String,
    },
}

impl AccountEvent {
    pub fn account_id(&self) -> &str {
        match self {
            AccountEvent::AccountOpened { account_id, .. }
            | AccountEvent::MoneyDeposited { account_id, .. }
            | AccountEvent::MoneyWithdrawn { account_id, .. }
            | AccountEvent::AccountClosed { account_id } => account_id,
        }
    }

    /// The event type name stored beside the payload.
    pub fn type_name(&self) -> &'static str {
        match self {
            AccountEvent::AccountOpened { .. } => "AccountOpened",
            AccountEvent::MoneyDeposited { .. } => "MoneyDeposited",
            AccountEvent::MoneyWithdrawn { .. } => "MoneyWithdrawn",
            AccountEvent::AccountClosed { .. } => "AccountClosed",
        }
    }

    pub fn schema_version(&self) -> u32 {
        match self {
            AccountEvent::AccountOpened { .. } => OPENED_SCHEMA_VERSION,
            _ => 1,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("account events always serialize")
    }

    /// Parses a payload; `None` for anything that is not an account event.
    pub fn from_json(payload: &[u8]) -> Option<AccountEvent> {
        serde_json::from_slice(payload).ok()
    }
}

/// The prefix of every account's stream.
pub const STREAM_PREFIX: &str = "account-";

/// The stream an account's events live in.
pub fn stream_name(account_id: &str) -> String {
    format!("{STREAM_PREFIX}{account_id}")
}

/// The account whose stream `stream` is, if it is one.
pub fn account_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix(STREAM_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_the_reference_programs_json() {
        let e = AccountEvent::MoneyDeposited {
            account_id: "alice".into(),
            amount: 500,
        };
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"MoneyDeposited":{"account_id":"alice","amount":500}}"#
        );
        let legacy = br#"{"AccountOpened":{"account_id":"alice","initial_balance":1000}}"#;
        assert_eq!(
            AccountEvent::from_json(legacy),
            Some(AccountEvent::AccountOpened {
                account_id: "alice".into(),
                initial_balance: 1000,
                currency: None
            })
        );
        assert_eq!(AccountEvent::from_json(b"{\"Other\":{}}"), None);
    }
}
