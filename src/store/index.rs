//! The in-memory indexes: position -> where the event is in the log, its timestamp, and
//! stream -> its events' positions. Cost: 16 bytes an event, plus 8 for an event that has
//! a stream, plus each distinct stream name once.

use crate::wal::Position;
use std::collections::HashMap;

/// The maps on hot paths (a lookup per append and per stream read): foldhash, seeded per
/// process, instead of SipHash, which cost about 400 instructions an append.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Offsets are kept in the low 40 bits, the segment id in the high 24.
const OFFSET_BITS: u32 = 40;

pub fn pack(p: Position) -> u64 {
    (p.segment_id << OFFSET_BITS) | p.offset
}

pub fn unpack(v: u64) -> Position {
    Position {
        segment_id: v >> OFFSET_BITS,
        offset: v & ((1 << OFFSET_BITS) - 1),
    }
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// By position: the packed WAL position of the event's record.
    pub(crate) wal: Vec<u64>,
    /// By position: the timestamp, never decreasing (a legacy event older than the one
    /// before it is indexed at that one's time).
    pub(crate) timestamps: Vec<u64>,
    pub(crate) stream_ids: FastMap<Box<str>, u32>,
    /// By stream id: the stream's events' positions, in version order.
    pub(crate) streams: Vec<Vec<u64>>,
    pub(crate) type_counts: FastMap<Box<str>, u64>,
}

impl Index {
    pub fn len(&self) -> u64 {
        self.wal.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.wal.is_empty()
    }

    /// Adds the next event (its position is `len()`).
    pub fn push(&mut self, wal: Position, timestamp_us: u64, stream: &str, event_type: &str) {
        let position = self.wal.len() as u64;
        self.wal.push(pack(wal));
        let ts = timestamp_us.max(self.timestamps.last().copied().unwrap_or(0));
        self.timestamps.push(ts);
        if !stream.is_empty() {
            let id = match self.stream_ids.get(stream) {
                Some(&id) => id,
                None => {
                    let id = self.streams.len() as u32;
                    self.stream_ids.insert(stream.into(), id);
                    self.streams.push(Vec::new());
                    id
                }
            };
            self.streams[id as usize].push(position);
        }
        match self.type_counts.get_mut(event_type) {
            Some(c) => *c += 1,
            None => {
                self.type_counts.insert(event_type.into(), 1);
            }
        }
    }

    pub fn wal_position(&self, position: u64) -> Option<Position> {
        self.wal.get(position as usize).map(|&v| unpack(v))
    }

    pub fn last_timestamp(&self) -> u64 {
        self.timestamps.last().copied().unwrap_or(0)
    }

    /// The stream's events' positions (empty for a stream that does not exist).
    pub fn stream(&self, name: &str) -> &[u64] {
        match self.stream_ids.get(name) {
            Some(&id) => &self.streams[id as usize],
            None => &[],
        }
    }

    /// The first position whose timestamp is after `timestamp_us` (len() if none).
    pub fn position_after(&self, timestamp_us: u64) -> u64 {
        self.timestamps.partition_point(|&t| t <= timestamp_us) as u64
    }

    /// Bytes the index holds for its events, not counting spare capacity.
    pub fn approx_bytes(&self) -> u64 {
        let names: usize = self.stream_ids.keys().map(|k| k.len() + 16).sum();
        (self.wal.len() * 16 + self.streams.iter().map(|s| s.len() * 8).sum::<usize>() + names)
            as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for p in [(0, 0), (1, 5), (12345, (1 << 40) - 1)] {
            let pos = Position {
                segment_id: p.0,
                offset: p.1,
            };
            assert_eq!(unpack(pack(pos)), pos);
        }
    }

    #[test]
    fn streams_and_times_are_indexed() {
        let mut ix = Index::default();
        ix.push(Position::default(), 10, "a", "T");
        ix.push(
            Position {
                segment_id: 0,
                offset: 9,
            },
            20,
            "",
            "T",
        );
        ix.push(
            Position {
                segment_id: 0,
                offset: 19,
            },
            15,
            "a",
            "U",
        );
        assert_eq!(ix.stream("a"), &[0, 2]);
        assert_eq!(ix.stream("b"), &[] as &[u64]);
        assert_eq!(ix.timestamps, vec![10, 20, 20]);
        assert_eq!(ix.position_after(9), 0);
        assert_eq!(ix.position_after(10), 1);
        assert_eq!(ix.position_after(20), 3);
        assert_eq!(ix.type_counts["T"], 2);
    }
}
