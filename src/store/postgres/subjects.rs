//! Personal data on PostgreSQL (`store::subjects`): not built in this version. An append
//! that names a subject is refused rather than stored in the clear, and so is a forget.

use crate::error::{Error, ErrorKind, Result};
use crate::store::StreamAppend;

/// The error for the personal-data calls on PostgreSQL.
pub(super) fn not_built() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "data subjects (encrypted personal data, evs_forget_subject) are not supported on the PostgreSQL backend in this version; use the file engine",
    )
}

/// Refuses an append whose events name a subject: their personal data would otherwise
/// be stored unencrypted.
pub(super) fn refuse_subjects(appends: &[StreamAppend<'_>]) -> Result<()> {
    match appends
        .iter()
        .flat_map(|a| a.events)
        .any(|e| e.subject.is_some())
    {
        true => Err(not_built()),
        false => Ok(()),
    }
}
