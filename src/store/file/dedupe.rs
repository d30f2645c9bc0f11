//! Idempotent appends: an append retried after a timeout or an I/O error finds the events
//! it stored the first time (by their ids) and returns their positions instead of storing
//! them again; an id stored with other content is refused (see `ids::judge_retry`). Runs
//! under the writer's lock, so two retries cannot both write.

use super::{FileStore, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::store::ids::{hex, id_twice, judge_retry, EventId};
use crate::store::{AppendResult, Event, StreamAppend};

impl FileStore {
    /// The event stored with `id`, confirmed by reading it from the log (the index only
    /// gives candidates). The whole event is read: a retry is compared with it.
    fn find_id(&self, w: &Writer, id: &EventId) -> Result<Option<Event>> {
        if w.pending
            .iter()
            .flat_map(|p| &p.events)
            .any(|(_, e)| e.id.as_ref() == Some(id))
        {
            // Under EVS_FSYNC_ALWAYS the first attempt is written but not yet durable: a
            // success now could acknowledge events that its fdatasync then loses.
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "an append with event id {} is still being made durable: retry once it has returned",
                    hex(id)
                ),
            ));
        }
        let (exact, maybe) = self.ids.candidates(id);
        for p in [exact, maybe].into_iter().flatten() {
            if let Some(stored) = self.stored_with_id(p)? {
                if stored.id.as_ref() == Some(id) {
                    return Ok(Some(stored));
                }
            }
        }
        Ok(None)
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
        let mut stored: Vec<Option<Event>> = Vec::new();
        for e in events() {
            stored.push(match &e.id {
                Some(id) => self.find_id(w, id)?,
                None => None,
            });
        }
        judge_retry(appends, &stored)
    }
}
