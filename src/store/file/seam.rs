//! The file engine behind the backend seam: `Backend` forwards to `FileStore`'s own
//! methods, and its cursors are the seam's cursors.

use super::cursor::{BackwardCursor, ForwardCursor, StreamCursor};
use super::reads::{CategoryCursor, StreamBackwardCursor};
use super::FileStore;
use crate::error::Result;
use crate::store::backend::{Backend, EventCursor, EventViews, TailCursor};
use crate::store::consumer::{ConsumerClaim, ConsumerOp, StoredConsumer};
use crate::store::import::{Item, LogEntry};
use crate::store::lifecycle::{LifecycleRequest, Rule};
use crate::store::{
    AppendResult, Event, EventRef, StoreOptions, StoreStats, StreamAppend, StreamInfo,
};
use std::sync::Arc;
use std::time::Duration;

/// Implements `EventCursor` for a cursor type with an inherent `next`.
macro_rules! event_cursor {
    ($($t:ty),*) => {$(
        impl EventCursor for $t {
            fn next(&mut self) -> Result<Option<EventRef<'_>>> {
                <$t>::next(self)
            }
        }
    )*};
}

event_cursor!(
    BackwardCursor,
    StreamCursor,
    StreamBackwardCursor,
    CategoryCursor
);

impl EventCursor for ForwardCursor {
    #[inline]
    fn next(&mut self) -> Result<Option<EventRef<'_>>> {
        ForwardCursor::next(self)
    }

    fn next_views(
        &mut self,
        max: usize,
        sink: &mut dyn FnMut(&EventRef<'_>),
    ) -> Option<EventViews> {
        ForwardCursor::next_views(self, max, sink)
    }
}

impl TailCursor for ForwardCursor {
    fn position(&self) -> u64 {
        ForwardCursor::position(self)
    }
}

impl TailCursor for CategoryCursor {
    fn position(&self) -> u64 {
        CategoryCursor::position(self)
    }
}

impl Backend for FileStore {
    fn forget_subject(&self, subject: &str) -> Result<u64> {
        FileStore::forget_subject(self, subject)
    }

    fn subjects(&self) -> Result<Vec<crate::store::subjects::SubjectInfo>> {
        self.check_owner()?;
        Ok(self.keys.subjects())
    }

    fn consumer_claim(&self, name: &str, _lease: std::time::Duration) -> Result<ConsumerClaim> {
        FileStore::consumer_claim(self, name)
    }

    fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>> {
        FileStore::consumer_write(self, op)
    }

    fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult> {
        FileStore::consumer_append(self, appends, op)
    }

    fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        FileStore::consumer_list(self)
    }

    fn apply_lifecycle(&self, req: &LifecycleRequest<'_>, id: Option<[u8; 16]>) -> Result<u64> {
        FileStore::apply_lifecycle(self, req, id)
    }

    fn retention(&self, name: &str, category: bool) -> Result<Option<Rule>> {
        FileStore::retention(self, name, category)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        FileStore::entries(self, from, to)
    }

    fn import(&self, items: &[Item], end: u64) -> Result<()> {
        FileStore::import(self, items, end)
    }

    fn compact(&self) -> Result<crate::store::lifecycle::CompactInfo> {
        FileStore::compact(self)
    }

    fn interrupt(&self) {
        FileStore::interrupt(self)
    }

    fn backup(
        &self,
        dest: &std::path::Path,
        options: &super::backup::BackupOptions,
        progress: &mut dyn FnMut(&super::backup::BackupProgress),
    ) -> Result<super::backup::BackupInfo> {
        FileStore::backup(self, dest, options, progress)
    }

    fn location(&self) -> String {
        self.dir().display().to_string()
    }

    fn options(&self) -> &StoreOptions {
        FileStore::options(self)
    }

    fn check_owner(&self) -> Result<()> {
        FileStore::check_owner(self)
    }

    fn append_event(&self, event_type: &str, payload: &[u8]) -> Result<u64> {
        FileStore::append_event(self, event_type, payload)
    }

    fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<AppendResult> {
        FileStore::append_multi(self, appends)
    }

    fn append_one(&self, part: &StreamAppend<'_>) -> Result<(u64, u64)> {
        FileStore::append_one(self, part)
    }

    fn next_position(&self) -> Result<u64> {
        FileStore::next_position(self)
    }

    fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        FileStore::stream_version(self, stream)
    }

    fn position_after(&self, timestamp_us: u64) -> Result<u64> {
        FileStore::position_after(self, timestamp_us)
    }

    fn read_event(&self, position: u64) -> Result<Event> {
        FileStore::read_event(self, position)
    }

    fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        FileStore::list_streams(self)
    }

    fn read_all(self: Arc<Self>, from: u64) -> Result<Box<dyn TailCursor>> {
        Ok(Box::new(FileStore::read_all(&self, from)?))
    }

    fn poll(self: Arc<Self>, from: u64, max: u64) -> Result<Box<dyn TailCursor>> {
        Ok(Box::new(FileStore::poll(&self, from, max)?))
    }

    fn read_all_backward(self: Arc<Self>, from: u64) -> Result<Box<dyn EventCursor>> {
        Ok(Box::new(FileStore::read_all_backward(&self, from)?))
    }

    fn read_stream(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>> {
        Ok(Box::new(FileStore::read_stream(
            &self,
            stream,
            from_version,
        )?))
    }

    fn read_stream_backward(
        self: Arc<Self>,
        stream: &str,
        from_version: u64,
    ) -> Result<Box<dyn EventCursor>> {
        Ok(Box::new(FileStore::read_stream_backward(
            &self,
            stream,
            from_version,
        )?))
    }

    fn read_category(self: Arc<Self>, prefix: &str, from: u64) -> Result<Box<dyn TailCursor>> {
        Ok(Box::new(FileStore::read_category(&self, prefix, from)?))
    }

    fn refresh(&self) -> Result<()> {
        FileStore::refresh(self)
    }

    fn wait_for_events(&self, seen: u64, timeout: Duration) -> u64 {
        FileStore::wait_for_events(self, seen, timeout)
    }

    fn wake_waiters(&self) {
        FileStore::wake_waiters(self)
    }

    fn sync(&self) -> Result<()> {
        FileStore::sync(self)
    }

    fn snapshot(&self) -> Result<u64> {
        FileStore::snapshot(self)
    }

    fn stats(&self) -> Result<StoreStats> {
        Ok(FileStore::stats(self))
    }

    fn close(&self) -> Result<()> {
        FileStore::close(self)
    }

    fn is_closed(&self) -> bool {
        FileStore::is_closed(self)
    }
}
