//! Idempotent appends: an append retried after a timeout or an I/O error finds the events
//! it stored the first time (by their ids) and returns their positions instead of storing
//! them again. Runs under the writer's lock, so two retries cannot both write.

use super::lifecycle::{id_of_entry, StoredId};
use super::{FileStore, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::store::ids::{hex, id_twice, partly_stored, EventId};
use crate::store::{AppendResult, StreamAppend};

/// Where an id's event is: its position, stream and stream version.
type Stored = (u64, String, u64);

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

    /// The record stored with `id` and its position, confirmed by reading its id from the
    /// log (the index only gives candidates).
    pub(super) fn find_stored(&self, id: &EventId) -> Result<Option<(u64, StoredId)>> {
        let (exact, maybe) = self.ids.candidates(id);
        for p in [exact, maybe].into_iter().flatten() {
            match self.stored_id(p)? {
                Some(s @ StoredId::Event(stored, ..)) | Some(s @ StoredId::Entry(stored, _))
                    if &stored == id =>
                {
                    return Ok(Some((p, s)))
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The event stored with `id`; an id a lifecycle entry holds is refused.
    fn find_id(&self, w: &Writer, id: &EventId) -> Result<Option<Stored>> {
        self.refuse_pending_id(w, id)?;
        match self.find_stored(id)? {
            None => Ok(None),
            Some((p, StoredId::Event(_, stream, version))) => Ok(Some((p, stream, version))),
            Some((p, StoredId::Entry(_, op))) => Err(id_of_entry(id, p, &op)),
        }
    }

    /// `Some` when every event of the append has an id that is stored already: the
    /// result of the first attempt. `None` when none of its ids is stored (a new append).
    /// An append where only some are is refused (EVS_ERR_ALREADY_EXISTS): a retry must
    /// repeat the whole append, and guessing which part is new could store half of it.
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
        let mut found: Vec<Option<Stored>> = Vec::new();
        for e in events() {
            found.push(match &e.id {
                Some(id) => self.find_id(w, id)?,
                None => None,
            });
        }
        let Some(old) = found.iter().position(Option::is_some) else {
            return Ok(None);
        };
        if let Some(new) = found.iter().position(Option::is_none) {
            let at = found[old].as_ref().map_or(0, |f| f.0);
            let no_id = events().nth(new).is_some_and(|e| e.id.is_none());
            return Err(partly_stored(old, at, new, no_id));
        }
        let mut found = found.into_iter().flatten();
        let mut first = None;
        let mut stream_versions = Vec::with_capacity(appends.len());
        for (i, a) in appends.iter().enumerate() {
            let mut last = 0;
            for _ in a.events {
                let (position, stream, version) = found.next().expect("one per event");
                if stream != a.stream {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "the event id at position {position} belongs to an event of \
                             stream '{stream}', not '{}' (append {i}); nothing was written",
                            a.stream
                        ),
                    ));
                }
                first.get_or_insert(position);
                last = version;
            }
            stream_versions.push(last);
        }
        Ok(Some(AppendResult {
            first_position: first.unwrap_or(0),
            stream_versions,
        }))
    }
}
