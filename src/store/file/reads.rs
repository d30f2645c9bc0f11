//! Reads beyond the plain cursors: one stream backward, a category (every stream whose
//! name starts with a prefix) forward in position order, the list of streams, and the
//! lookups behind idempotent appends.

use super::index::Loc;
use super::lifecycle::{passes_over, StoredId, Views};
use super::{check_plain, decode_record, Decoded, FileStore, Owned};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{EventRef, StreamInfo};
use crate::wal::record;
use std::collections::VecDeque;
use std::sync::Arc;

/// Events located at once, to read one by one.
const BATCH: usize = 64;

/// Reads the events at the located positions, one per call, through the store's caches,
/// passing over removed ones.
struct Located {
    ahead: VecDeque<Loc>,
    files: Option<(u64, crate::wal::vfs::FileRef)>,
    buf: Vec<u8>,
    owned: Owned,
    views: Views,
}

impl Located {
    fn new() -> Self {
        Located {
            ahead: VecDeque::new(),
            files: None,
            buf: Vec::new(),
            owned: Owned::default(),
            views: Views::new(),
        }
    }

    /// Reads the next located event that is not removed into `buf`: its position and
    /// record, or `None` when none of those located is left. `stop_at_removed`: a removed
    /// one means every one located after it is removed too (a stream read backward: its
    /// older versions and older timestamps), so none is read after it.
    fn advance(
        &mut self,
        store: &FileStore,
        stop_at_removed: bool,
    ) -> Result<Option<(u64, crate::wal::Position)>> {
        self.views.begin();
        loop {
            let Some((position, at, end)) = self.ahead.pop_front() else {
                return Ok(None);
            };
            // (A position a compaction emptied meanwhile held a removed event.)
            let Some(at) =
                store.fetch_checked(position, at, end, &mut self.files, &mut self.buf)?
            else {
                continue;
            };
            if !store.removing() {
                return Ok(Some((position, at)));
            }
            let d = record::decode(&self.buf).map_err(|e| damaged(position, at, e.describe()))?;
            check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
            if !passes_over(store, &mut self.views, d.record.value)
                .map_err(|e| e.damage_at(position))?
            {
                return Ok(Some((position, at)));
            }
            if stop_at_removed {
                self.ahead.clear();
                return Ok(None);
            }
        }
    }

    /// The event `advance` read.
    fn event(
        &mut self,
        store: &FileStore,
        (position, at): (u64, crate::wal::Position),
    ) -> Result<EventRef<'_>> {
        let d = record::decode(&self.buf).map_err(|e| damaged(position, at, e.describe()))?;
        check_plain(&d.record, at).map_err(|e| e.damage_at(position))?;
        store.event_of(position, d.record.key, d.record.value, &mut self.owned)
    }
}

/// The error for a record that does not decode.
fn damaged(position: u64, at: crate::wal::Position, what: &str) -> Error {
    Error::corrupt(format!(
        "the record of position {position} (segment {} offset {}): {what}",
        at.segment_id, at.offset
    ))
    .at_position(position)
}

/// One stream's events from a version down to 0, as far as they are not removed. Sees
/// no events appended after it was opened.
pub struct StreamBackwardCursor {
    store: Arc<FileStore>,
    stream: String,
    /// The version of the next event to return, while `more`.
    next_version: u64,
    more: bool,
    located: Located,
}

impl StreamBackwardCursor {
    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        if self.located.ahead.is_empty() && self.more {
            let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
            let Some(&id) = index.stream_ids.get(self.stream.as_str()) else {
                return Ok(None);
            };
            // Versions are dense: the batch is the versions from `top` down.
            let top = self.next_version.min(index.streams[id as usize].count - 1);
            let batch = index.stream_backward(id, top, BATCH)?;
            drop(index);
            match top.checked_sub(batch.len() as u64) {
                Some(next) if !batch.is_empty() => self.next_version = next,
                _ => self.more = false,
            }
            self.located.ahead.extend(batch);
        }
        match self.located.advance(&self.store, true)? {
            Some(found) => self.located.event(&self.store, found).map(Some),
            None => {
                // The stream's start, or a removed event: nothing older is left.
                self.more = false;
                Ok(None)
            }
        }
    }
}

/// Events of every stream whose name starts with a prefix, in position order, from a
/// position on; sees events appended (also to streams created) while it runs.
pub struct CategoryCursor {
    store: Arc<FileStore>,
    prefix: String,
    /// The next position to look from.
    next: u64,
    /// Stream ids of the category, and how many streams existed when they were found.
    streams: Vec<u32>,
    streams_seen: usize,
    located: Located,
}

impl CategoryCursor {
    pub fn position(&self) -> u64 {
        self.next
    }

    // Not an Iterator: each event borrows the cursor's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        loop {
            if let Some(found) = self.located.advance(&self.store, false)? {
                return self.located.event(&self.store, found).map(Some);
            }
            // Every event located so far is read or removed: locate the next ones.
            if self.store.options.read_only {
                self.store.refresh()?;
            }
            let index = self.store.index.read().unwrap_or_else(|e| e.into_inner());
            if index.streams.len() != self.streams_seen {
                // New streams since we looked: add those of the category (ids only grow).
                let prefix = self.prefix.as_str();
                let new = index.streams[self.streams_seen..].iter().enumerate();
                self.streams.extend(
                    new.filter(|(_, s)| s.name.starts_with(prefix))
                        .map(|(i, _)| (self.streams_seen + i) as u32),
                );
                self.streams_seen = index.streams.len();
            }
            let committed = self.store.committed();
            let mut found = index.category_batch(&self.streams, self.next, BATCH)?;
            found.retain(|l| l.0 < committed);
            let Some(last) = found.last() else {
                return Ok(None);
            };
            self.next = last.0 + 1;
            self.located.ahead.extend(found);
        }
    }
}

impl FileStore {
    /// One stream's events from `from_version` (inclusive; past its end: the last event)
    /// down to version 0.
    pub fn read_stream_backward(
        self: &Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<StreamBackwardCursor> {
        self.check_owner()?;
        crate::store::check_name("stream name", stream, false)?;
        if self.options.read_only {
            self.refresh()?;
        }
        let version = self.readable_version(stream)?;
        Ok(StreamBackwardCursor {
            store: self.clone(),
            stream: stream.to_owned(),
            next_version: from_version.min(version),
            more: true,
            located: Located::new(),
        })
    }

    /// Events of every stream whose name starts with `prefix` (non-empty), from position
    /// `from` on.
    pub fn read_category(self: &Arc<Self>, prefix: &str, from: u64) -> Result<CategoryCursor> {
        crate::store::check_name("stream prefix", prefix, false)?;
        let next = self.next_position()?;
        if from > next {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("position {from} is past the end of the log (the next position is {next})"),
            ));
        }
        Ok(CategoryCursor {
            store: self.clone(),
            prefix: prefix.to_owned(),
            next: from,
            streams: Vec::new(),
            streams_seen: 0,
            located: Located::new(),
        })
    }

    /// Every stream that has an event left, with its version and the position of its
    /// first event left, in creation order (a copy of the names, taken now).
    pub fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        if self.options.read_only {
            self.refresh()?;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if !index.life.is_empty() {
            return self.live_streams(&index);
        }
        Ok(index
            .streams
            .iter()
            .filter_map(|s| {
                Some(StreamInfo {
                    name: s.name.to_string(),
                    version: s.count.checked_sub(1)?,
                    first_position: s.first,
                })
            })
            .collect())
    }

    /// The record at `position` if it has an id (the lookups of idempotent writes): the
    /// whole event (a retry is compared with it), or a lifecycle entry's id and operation.
    pub(crate) fn stored_id(&self, position: u64) -> Result<Option<StoredId>> {
        let mut buf = Vec::new();
        // (A position a compaction emptied holds no id the log can show.)
        let Some(at) = self.fetch_if_any(position, &mut buf)? else {
            return Ok(None);
        };
        let d = record::decode(&buf).map_err(|e| damaged(position, at, e.describe()))?;
        check_plain(&d.record, at)?;
        let mut owned = Owned::default();
        let keys = Some(&*self.keys);
        Ok(
            match decode_record(position, d.record.key, d.record.value, &mut owned, keys)? {
                Decoded::Event(e) => e.id.is_some().then(|| StoredId::Event(e.to_owned())),
                Decoded::Entry(e) => e.id.map(|id| StoredId::Entry(id, e.op)),
            },
        )
    }
}
