//! The one error type of the library: a kind (which becomes a C status code) and a
//! sentence for the human who reads `evs_last_error_message()`.

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
    Internal,
}

/// An error with its kind and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
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
