//! evstore: an embedded, durable event store with a C ABI.
//!
//! Layers, each using only the one below: `ffi` (the C surface), `account` (the bank
//! account domain), `store` (the event store), `wal` (the write-ahead log).

pub mod error;
mod runtime;
pub mod wal;

pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub mod account;
pub mod ffi;
pub mod store;
