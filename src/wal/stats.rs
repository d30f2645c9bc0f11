//! Counters of the log's work, kept with relaxed atomics (they are for humans and metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// fsync latency buckets: bucket i counts syncs of less than 2^i microseconds.
const BUCKETS: usize = 32;

#[derive(Default)]
pub struct WalStats {
    records: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    rotations: AtomicU64,
    fsync_us: [AtomicU64; BUCKETS],
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStatsSnapshot {
    /// Records appended since open.
    pub records: u64,
    /// Append calls (batches) since open.
    pub batches: u64,
    pub bytes_appended: u64,
    /// write(2) calls on segments.
    pub writes: u64,
    /// fdatasync calls.
    pub fsyncs: u64,
    pub rotations: u64,
    /// Upper bounds of the fsync latency's median and 99th percentile, in microseconds.
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    /// Logical bytes of all segments.
    pub bytes_on_disk: u64,
    pub segments: u64,
}

impl WalStats {
    pub fn record_append(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    pub fn record_write(&self) {
        self.writes.fetch_add(1, Relaxed);
    }

    pub fn record_rotation(&self) {
        self.rotations.fetch_add(1, Relaxed);
    }

    pub fn record_fsync(&self, took: Duration) {
        self.fsyncs.fetch_add(1, Relaxed);
        let us = took.as_micros().max(1) as u64;
        let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.fsync_us[bucket].fetch_add(1, Relaxed);
    }

    fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self.fsync_us.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }

    pub fn snapshot(&self, bytes_on_disk: u64, segments: u64) -> WalStatsSnapshot {
        WalStatsSnapshot {
            records: self.records.load(Relaxed),
            batches: self.batches.load(Relaxed),
            bytes_appended: self.bytes.load(Relaxed),
            writes: self.writes.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            rotations: self.rotations.load(Relaxed),
            fsync_p50_us: self.percentile(0.50),
            fsync_p99_us: self.percentile(0.99),
            bytes_on_disk,
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let s = WalStats::default();
        for _ in 0..98 {
            s.record_fsync(Duration::from_micros(150)); // bucket 8: < 256 us
        }
        for _ in 0..2 {
            s.record_fsync(Duration::from_millis(3)); // bucket 12: < 4096 us
        }
        let snap = s.snapshot(0, 0);
        assert_eq!(snap.fsyncs, 100);
        assert_eq!(snap.fsync_p50_us, 256);
        assert_eq!(snap.fsync_p99_us, 4096);
    }
}
