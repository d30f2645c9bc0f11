//! Idempotent appends: an append retried after a timeout or an I/O error finds the events
//! it stored the first time (by their ids) and returns their positions instead of storing
//! them again; an id stored with other content is refused (see `ids::judge_retry`). Runs
//! under the writer's lock, so two retries cannot both write.

use super::lifecycle::StoredId;
use super::{FileStore, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::store::ids::{hex, id_twice, judge_retry, EventId, Stored};
use crate::store::lifecycle::id_of_entry;
use crate::store::{AppendResult, StreamAppend};

impl FileStore {
    /// Under EVS_FSYNC_ALWAYS, refuses an id whose first attempt is written but not yet
    /// durable: a success now could acknowledge what its fdatasync then loses.
    pub(super) fn refuse_pending_id(&self, w: &Writer, id: &EventId) -> Result<()> {
        let pending = w.pending.iter().any(|p| {
            p.events.iter().any(|(_, e)| e.id.as_ref() == Some(id))
                || p.entry
                    .as_ref()
                    .is_some_and(|(_, e)| e.id.as_ref() == Some(id))
        });
        if pending {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "a write with id {} is still being made durable: retry once it has returned",
                    hex(id)
                ),
            ));
        }
        Ok(())
    }

    /// The record stored with `id` and its position, confirmed by reading it from the
    /// log (the index only gives candidates).
    pub(super) fn find_stored(&self, id: &EventId) -> Result<Option<(u64, StoredId)>> {
        let (exact, maybe) = self.ids.candidates(id);
        for p in [exact, maybe].into_iter().flatten() {
            let found = self.stored_id(p)?;
            let stored = match &found {
                Some(StoredId::Event(e)) => e.id.as_ref(),
                Some(StoredId::Entry(i, _)) => Some(i),
                None => None,
            };
            if stored == Some(id) {
                return Ok(found.map(|f| (p, f)));
            }
        }
        Ok(None)
    }

    /// The event stored with `id` (the whole event: a retry is compared with it; of an
    /// event a compaction erased, where it was); an id a lifecycle entry holds is refused.
    fn find_id(&self, w: &Writer, id: &EventId) -> Result<Option<Stored>> {
        self.refuse_pending_id(w, id)?;
        if let Some((position, stream, stream_version)) = self.ids.erased(id) {
            return Ok(Some(Stored::Erased {
                position,
                stream,
                stream_version,
            }));
        }
        match self.find_stored(id)? {
            None => Ok(None),
            Some((_, StoredId::Event(e))) => Ok(Some(Stored::Event(e))),
            Some((p, StoredId::Entry(_, op))) => Err(id_of_entry(id, p, &op)),
        }
    }

    /// `Some` when every event of the append has an id that is stored already, each with
    /// the same content: the result of the first attempt. `None` when none of its ids is
    /// stored (a new append). Refused (EVS_ERR_ALREADY_EXISTS) when only some are, or one
    /// is stored with other content: a retry must repeat the whole append, and guessing
    /// which part is new could store half of it.
    pub(super) fn find_retry(
        &self,
        w: &Writer,
        appends: &[StreamAppend<'_>],
    ) -> Result<Option<AppendResult>> {
        let events = || appends.iter().flat_map(|a| a.events.iter());
        let mut ids: Vec<&EventId> = events().filter_map(|e| e.id.as_ref()).collect();
        if ids.is_empty() {
            return Ok(None);
        }
        ids.sort_unstable();
        if let Some(twice) = ids.windows(2).find(|p| p[0] == p[1]) {
            return Err(id_twice(twice[0]));
        }
        let mut stored: Vec<Option<Stored>> = Vec::new();
        for e in events() {
            stored.push(match &e.id {
                Some(id) => self.find_id(w, id)?,
                None => None,
            });
        }
        judge_retry(appends, &stored)
    }
}
