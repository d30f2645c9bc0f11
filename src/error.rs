//! The one error type of the library: a kind (which becomes a C status code), a
//! sentence for the human who reads `evs_last_error_message()`, and where known the
//! numbers a program needs to act on it (`evs_last_error_detail()`).

use std::fmt;

/// What went wrong, in the categories the C API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    WrongExpectedVersion,
    InsufficientFunds,
    AccountClosed,
    Overflow,
    Locked,
    Corrupt,
    Io,
    TooLarge,
    ReadOnly,
    CurrencyMismatch,
    /// Something is still in use (`evs_shutdown` with a store open).
    Busy,
    /// A server (the PostgreSQL backend's) cannot be reached now or did not answer in
    /// time; retrying may succeed.
    Unavailable,
    /// A hard-deleted (tombstoned) stream: its name can never be used again.
    StreamDeleted,
    /// An account's stream cannot be deleted while the account's balance is not zero.
    BalanceNotZero,
    /// A read-only store's log changed below what it had read (a writer's recovery
    /// dropped records it counted): nothing it reads can follow on; reopen it.
    Stale,
    /// A backup (or a restore's destination) whose writing did not finish: its marker
    /// file says so (or is damaged); nothing opens, restores or verifies it as a store.
    Incomplete,
    /// An import (or a copy) into a store that holds positions at or after where it
    /// would write: imports go into empty stores, in position order.
    NotEmpty,
    Internal,
}

/// What an error points at, beside its message; each `None` where it does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `WrongExpectedVersion`: whether the stream existed, and its version then
    /// (`Some(None)`: it did not exist).
    pub actual_version: Option<Option<u64>>,
    /// An append to several streams: the part (its index among them) the error is about.
    pub part_index: Option<usize>,
    /// `Corrupt`: the position of the damaged event; `AlreadyExists`: the position of the
    /// stored event whose id the append carries.
    pub position: Option<u64>,
}

/// An error with its kind and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Boxed: most errors have none, and every `Result` of the library carries the room.
    detail: Option<Box<ErrorDetail>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// The numbers it carries (all `None` when it has none).
    pub fn detail(&self) -> ErrorDetail {
        self.detail.as_deref().copied().unwrap_or_default()
    }

    fn detail_mut(&mut self) -> &mut ErrorDetail {
        self.detail.get_or_insert_with(Box::default)
    }

    /// The stream's version when an expected version did not hold (`None`: no stream).
    pub fn with_actual_version(mut self, version: Option<u64>) -> Self {
        self.detail_mut().actual_version = Some(version);
        self
    }

    /// The part of a multi-stream append the error is about.
    pub fn in_part(mut self, part: usize) -> Self {
        self.detail_mut().part_index = Some(part);
        self
    }

    /// Without a part: for calls whose caller named no parts (one stream's append).
    pub fn without_part(mut self) -> Self {
        if let Some(d) = self.detail.as_deref_mut() {
            d.part_index = None;
        }
        self
    }

    /// The position of the event the error is about (a stored id's event, or a damaged
    /// one); a position set closer to the cause is kept.
    pub fn at_position(mut self, position: u64) -> Self {
        self.detail_mut().position.get_or_insert(position);
        self
    }

    /// The same error with `prefix` before its message (where it happened), its detail
    /// kept.
    pub fn prefixed(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }

    /// The position of a damaged event, if this is damage (`Corrupt`): the read paths
    /// know where they were when decoding failed; other errors pass unchanged.
    pub fn damage_at(self, position: u64) -> Self {
        if self.kind == ErrorKind::Corrupt {
            self.at_position(position)
        } else {
            self
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// An OS error, with what we were doing when it happened.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
