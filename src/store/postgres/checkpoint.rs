//! Checkpoints of the projections (schema version 5, `checkpoints`): so that an open
//! does not read the history, a writable handle whose projections have taken in
//! `CHECKPOINT_EVERY` positions (or more, for a large state: `interval`) past the newest
//! checkpoint it knows writes each projection's state (`Projection::snapshot`) with the
//! position it covers, all in one statement; a newer checkpoint is never replaced by an
//! older one. A handle that is an interval or more behind the newest checkpoint (every
//! open, and a handle that appended without reading meanwhile) starts from it and reads
//! only the log after it (`PgStore::catch_up`). A checkpoint whose state a projection
//! refuses is passed over: the projections are rebuilt from the log.

use super::PgStore;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// The fewest positions between two checkpoints: what an open reads at most after the
/// newest one, beside the positions appended since (docs/postgres.md "Opening from a
/// checkpoint").
const CHECKPOINT_EVERY: u64 = 4096;

/// Positions between checkpoints for a state of `bytes`: a large state is written less
/// often, so that writing it costs about what reading that many events does.
pub fn interval(bytes: u64) -> u64 {
    CHECKPOINT_EVERY.max(bytes / 32)
}

/// What starting from a checkpoint did.
pub enum Restored {
    /// None new enough, or none of every projection at one position.
    No,
    /// The projections hold the state after the positions below this.
    At(u64),
    /// A projection refused its state: the projections are empty (rebuilt from 0).
    Refused(String),
}

impl PgStore {
    /// Restores the projections from the newest checkpoint if it covers at least `min`
    /// positions and holds every projection's state at one position.
    pub(super) fn restore_checkpoint(&self, min: u64) -> Result<Restored> {
        let rows = self.query(
            "select name, pos, state from @.checkpoints where pos >= $1",
            &[&(min.min(i64::MAX as u64) as i64)],
            "reading the projections' checkpoint",
        )?;
        let mut pos = None;
        let mut states = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            let Some(row) = rows.iter().find(|r| r.get::<_, &str>(0) == p.name()) else {
                return Ok(Restored::No);
            };
            let at = row.get::<_, i64>(1) as u64;
            if pos.is_some_and(|x| x != at) {
                return Ok(Restored::No);
            }
            pos = Some(at);
            states.push(row.get::<_, &[u8]>(2));
        }
        let Some(pos) = pos else {
            return Ok(Restored::No);
        };
        let bytes: usize = states.iter().map(|s| s.len()).sum();
        for (p, state) in self.projections.iter().zip(states) {
            if let Err(e) = p.restore(state) {
                self.projections.iter().for_each(|p| p.reset());
                return Ok(Restored::Refused(format!(
                    "the checkpoint at position {pos} of projection '{}': {}",
                    p.name(),
                    e.message
                )));
            }
        }
        self.checkpointed.fetch_max(pos, Ordering::AcqRel);
        self.checkpoint_bytes.store(bytes as u64, Ordering::Relaxed);
        Ok(Restored::At(pos))
    }

    /// The position the newest checkpoint covers (0: none).
    pub(super) fn newest_checkpoint(&self) -> Result<u64> {
        let rows = self.query(
            "select coalesce(max(pos), 0)::int8 from @.checkpoints",
            &[],
            "reading the newest checkpoint's position",
        )?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    /// Writes the projections' states as the checkpoint at `pos` (the positions they
    /// have taken in), unless a later one is there (one at `pos` is replaced: it may be one a projection refused).
    pub(super) fn write_checkpoint(&self, pos: u64) -> Result<()> {
        let names: Vec<&str> = self.projections.iter().map(|p| p.name()).collect();
        let states: Vec<Vec<u8>> = self.projections.iter().map(|p| p.snapshot()).collect();
        let now = self.now().min(i64::MAX as u64) as i64;
        self.query(
            "insert into @.checkpoints as c (name, pos, ts, state) \
             select x.n, $2, $3, x.s from unnest($1::text[], $4::bytea[]) as x(n, s) \
             on conflict (name) do update set pos = excluded.pos, ts = excluded.ts, \
               state = excluded.state where c.pos <= excluded.pos",
            &[&names, &(pos as i64), &now, &states],
            "writing the projections' checkpoint",
        )?;
        self.checkpointed.fetch_max(pos, Ordering::AcqRel);
        let bytes = states.iter().map(|s| s.len() as u64).sum();
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Brings the projections up to the head and writes their checkpoint now, whatever
    /// the interval: after a stream's deletion, so that the checkpoint no longer holds
    /// what the projections derived from its events (an account's state). A failure is
    /// counted, not returned: the entry it follows is committed.
    pub(super) fn checkpoint_now(&self) {
        if self.projections.is_empty() || self.options.read_only {
            return;
        }
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let written = self
            .replay(&mut applied)
            .and_then(|()| self.write_checkpoint(*applied));
        if written.is_err() {
            self.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Positions between this handle's checkpoints now.
    pub(super) fn checkpoint_interval(&self) -> u64 {
        interval(self.checkpoint_bytes.load(Ordering::Relaxed))
    }
}

/// The message of a checkpoint that could not be written (it is not the caller's
/// error: the next open reads more of the log).
pub fn unwritten(e: &Error) -> String {
    format!("the projections' checkpoint was not written: {}", e.message)
}
