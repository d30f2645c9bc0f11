//! Durable consumers on PostgreSQL (docs/consumers.md "Consumer groups"): not in this
//! version. Every call says so with `InvalidArgument`, naming what is missing, so that a
//! program finds out at `evs_consumer_open` and never mid-way.

use super::PgStore;
use crate::error::{Error, Result};
use crate::store::backend::Backend;
use crate::store::consumer::{ConsumerClaim, ConsumerOp, StoredConsumer};
use crate::store::{AppendResult, StreamAppend};

fn not_here() -> Error {
    Error::invalid(
        "durable consumers are not available on the PostgreSQL engine in this version of evstore (docs/consumers.md); use a file store, or evs_subscribe with a position the program keeps",
    )
}

impl PgStore {
    pub(super) fn consumer_claim(&self, _name: &str) -> Result<ConsumerClaim> {
        self.check_owner()?;
        Err(not_here())
    }

    pub(super) fn consumer_write(&self, _op: &ConsumerOp) -> Result<Option<u64>> {
        self.check_owner()?;
        Err(not_here())
    }

    pub(super) fn consumer_append(
        &self,
        _appends: &[StreamAppend<'_>],
        _op: &ConsumerOp,
    ) -> Result<AppendResult> {
        self.check_owner()?;
        Err(not_here())
    }

    /// No consumers are kept here: the list is empty (so that `evsctl consumers list`
    /// answers on every store).
    pub(super) fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        self.check_owner()?;
        Ok(Vec::new())
    }
}
