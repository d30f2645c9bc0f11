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
        if !may_be_account_event(payload) {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// The variants' names, as the JSON's single key.
const TAGS: [&[u8]; 4] = [
    b"AccountOpened",
    b"MoneyDeposited",
    b"MoneyWithdrawn",
    b"AccountClosed",
];

/// False only for payloads that serde_json would refuse as an `AccountEvent`: not an
/// object, or an object whose first key is plainly none of the variants. Every event
/// stored without a stream passes through the account projection, at append and at
/// replay; this spares most of them the parser (about half of `evs_append_event`'s
/// instructions went to it). A key with an escape is left to serde_json.
fn may_be_account_event(payload: &[u8]) -> bool {
    // serde_json's whitespace.
    let skip = |mut i: usize| {
        while matches!(payload.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            i += 1;
        }
        i
    };
    let open = skip(0);
    if payload.get(open) != Some(&b'{') {
        return false;
    }
    let quote = skip(open + 1);
    if payload.get(quote) != Some(&b'"') {
        return false;
    }
    let key = &payload[quote + 1..];
    let Some(end) = key.iter().position(|&b| b == b'"' || b == b'\\') else {
        return false;
    };
    key[end] == b'\\' || TAGS.contains(&&key[..end])
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

    /// The shortcut before the parser never turns away what the parser accepts:
    /// payloads around the account events' JSON (whitespace, escapes in the key, other
    /// keys, cut short, other bytes) are judged as serde_json alone judges them.
    #[test]
    fn the_shortcut_agrees_with_the_parser() {
        use proptest::prelude::*;
        let judged_alone = |p: &[u8]| serde_json::from_slice::<AccountEvent>(p).ok();
        let samples: &[&[u8]] = &[
            br#"{"MoneyDeposited":{"account_id":"a","amount":5}}"#,
            b" \n\t\r{ \"AccountClosed\" :{\"account_id\":\"a\"}}",
            br#"{"\u0041ccountClosed":{"account_id":"a"}}"#,
            br#"{"Account\u004fpened":{"account_id":"a","initial_balance":1}}"#,
            br#"{"AccountClosed":{"account_id":"a"}"#,
            br#"{"AccountClosedX":{"account_id":"a"}}"#,
            br#"{"AccountClosed"#,
            br#"{"#,
            b"",
            br#"["AccountClosed"]"#,
            b"\xef\xbb\xbf{\"AccountClosed\":{\"account_id\":\"a\"}}",
            br#"{"account_id":"a","AccountClosed":{}}"#,
            br#"{"AccountClosed":{"account_id":"a"},"MoneyDeposited":{}}"#,
            br#"{"AccountOpened":{"account_id":"a","initial_balance":1,"currency":"EUR"}}"#,
        ];
        for p in samples {
            assert_eq!(
                AccountEvent::from_json(p),
                judged_alone(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        // The variants' JSON with bytes changed, cut or inserted at random.
        let events = [
            AccountEvent::AccountOpened {
                account_id: "x".into(),
                initial_balance: 3,
                currency: Some("EUR".into()),
            },
            AccountEvent::MoneyDeposited {
                account_id: "x".into(),
                amount: 4,
            },
            AccountEvent::MoneyWithdrawn {
                account_id: "x".into(),
                amount: 4,
            },
            AccountEvent::AccountClosed {
                account_id: "x".into(),
            },
        ];
        let bytes = prop::sample::select(b" \n{}\"\\:uA0aOM,".to_vec());
        proptest!(ProptestConfig::with_cases(4000), |(
            which in 0..4usize,
            at in 0..80usize,
            cut in any::<bool>(),
            insert in prop::collection::vec(bytes, 0..3),
        )| {
            let mut p = events[which].to_json();
            let at = at.min(p.len());
            if cut {
                p.truncate(at);
            } else {
                p.splice(at..at, insert);
            }
            prop_assert_eq!(AccountEvent::from_json(&p), judged_alone(&p));
        });
    }
}
