//! Reads beyond the plain cursors: one stream backward, a category (every stream whose
//! name starts with a prefix) forward in position order, the list of streams, and the
//! lookups behind idempotent appends.

use super::index::Loc;
use super::FileStore;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{Event, EventRef, StreamInfo};
use std::collections::VecDeque;
use std::sync::Arc;

/// Events located at once, to read one by one.
const BATCH: usize = 64;

/// Reads the events at the located positions, one per call, through the store's caches.
struct Located {
    ahead: VecDeque<Loc>,
    files: Option<(u64, crate::wal::vfs::FileRef)>,
    buf: Vec<u8>,
    legacy: Option<Event>,
}

impl Located {
    fn new() -> Self {
        Located {
            ahead: VecDeque::new(),
            files: None,
            buf: Vec::new(),
            legacy: None,
        }
    }

    fn next<'a>(&'a mut self, store: &FileStore) -> Result<Option<EventRef<'a>>> {
        let Some(loc) = self.ahead.pop_front() else {
            return Ok(None);
        };
        store
            .read_loc(loc, &mut self.files, &mut self.buf, &mut self.legacy)
            .map(Some)
    }
}

/// One stream's events from a version down to 0. Sees no events appended after it was
/// opened.
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
        self.located.next(&self.store)
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
        if self.located.ahead.is_empty() {
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
            if let Some(last) = found.last() {
                self.next = last.0 + 1;
            }
            self.located.ahead.extend(found);
        }
        self.located.next(&self.store)
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
        let Some(version) = self.stream_version(stream)? else {
            return Err(crate::store::no_such_stream(stream));
        };
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

    /// Every stream with its version and first position, in creation order (a copy of the
    /// names, taken now).
    pub fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        if self.options.read_only {
            self.refresh()?;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
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

    /// The event at `position`, if it has an id (the lookups of idempotent appends).
    pub(crate) fn stored_with_id(&self, position: u64) -> Result<Option<Event>> {
        let mut buf = Vec::new();
        let mut legacy = None;
        let e = self.read_at(position, &mut buf, &mut legacy)?;
        Ok(e.id.is_some().then(|| e.to_owned()))
    }
}
