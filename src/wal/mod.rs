//! The write-ahead log, in nori-wal's on-disk format (docs/log-format.md):
//! segments of CRC-checked records, group commit, fsync policies, recovery, reading.

pub(crate) mod crc;
mod log;
pub mod mark;
pub mod process;
mod reader;
pub mod record;
mod recovery;
pub(crate) mod scan;
pub mod segment;
mod signal;
mod stats;
pub mod vfs;

pub use log::{Appended, Lsn, Wal};
pub use reader::WalReader;
pub(crate) use reader::{changed, is_changed, SegmentCursor};
pub use record::{Compression, Record, RecordRef};
pub use recovery::RecoveryInfo;
pub use stats::WalStatsSnapshot;

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vfs::Vfs;

/// 128 MiB, nori-wal's default segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;
/// Segments may be no smaller than this...
pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;
/// ...and no larger (offsets are kept in 40 bits by the event store's index).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// Where a record is: its segment and the byte offset of its first byte there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment_id: u64,
    pub offset: u64,
}

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// An append returns after fdatasync; concurrent appenders share one (group commit).
    Always,
    /// An append returns at once; every appended record is durable within the window.
    Batch(Duration),
    /// The OS decides; `sync` and `close` make everything durable.
    Os,
}

/// How to open a log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub max_segment_size: u64,
    pub fsync_policy: FsyncPolicy,
    /// Reserve each new segment's full size up front (fallocate).
    pub preallocate: bool,
    /// Kept for nori-wal's shape; evstore has one node.
    pub node_id: u32,
    /// Never modify a file; refuse appends; tolerate a tail still being written.
    pub read_only: bool,
    /// The file system underneath (the real one unless a test puts another there).
    pub vfs: Arc<dyn Vfs>,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            max_segment_size: DEFAULT_SEGMENT_SIZE,
            fsync_policy: FsyncPolicy::Batch(Duration::from_millis(5)),
            preallocate: true,
            node_id: 0,
            read_only: false,
            vfs: vfs::os(),
        }
    }

    fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.max_segment_size) {
            return Err(Error::invalid(format!(
                "max_segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.max_segment_size
            )));
        }
        if let FsyncPolicy::Batch(w) = self.fsync_policy {
            if w.is_zero() || w > Duration::from_secs(10) {
                return Err(Error::invalid(format!(
                    "the batch window {w:?} is outside 1 ms..=10 s"
                )));
            }
        }
        Ok(())
    }
}
