//! The file engine's side of durable consumers (docs/consumers.md): each consumer's lock
//! file, the writer's consumer records in the log (alone, or last in an atomic step's
//! batch), and the journals where read-only processes keep theirs.

use super::FileStore;
use crate::error::{Error, ErrorKind, Result};
use crate::store::consumer::{
    check_consumer_name, ConsumerChange, ConsumerClaim, ConsumerOp, ConsumerState, StoredConsumer,
};
use crate::store::lifecycle::LifecycleOp;
use crate::store::{AppendResult, StreamAppend};
use crate::wal::vfs::{self, OpenMode, Vfs};
use crate::wal::FsyncPolicy;
use std::path::{Path, PathBuf};

/// A journal longer than this is rewritten as its state's records.
const JOURNAL_REWRITE_BYTES: u64 = 64 << 10;
/// A journal record's frame: its length and its CRC-32C, 4 bytes each.
const FRAME: usize = 8;

/// The consumer record to store at `position` in the log: a checkpoint that says every
/// position before this one is handled also covers this one, which holds no event, so
/// that a caught-up consumer is not behind its own record.
pub(super) fn settle(op: &ConsumerOp, position: u64) -> LifecycleOp {
    let mut op = op.clone();
    if let ConsumerChange::Checkpoint { next } = &mut op.change {
        if *next == position {
            *next = position + 1;
        }
    }
    LifecycleOp::Consumer(op)
}

fn hex_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The name a consumer's file stands for (`None`: not a consumer's file).
fn name_of(file: &str, ext: &str) -> Option<String> {
    let hex = file.strip_suffix(ext)?;
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A journal's records as far as they are whole: their state and the length they fill.
struct Journal {
    state: ConsumerState,
    valid_len: u64,
    file_len: u64,
}

/// Reads the journal at `path` (`None`: there is none). A torn last record (cut short,
/// or its CRC wrong where it ends the file) ends it; damage before the end is `Corrupt`.
fn read_journal(vfs: &dyn Vfs, path: &Path) -> Result<Option<Journal>> {
    let bytes = match vfs::read_file(vfs, path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let mut state = ConsumerState::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let torn = Ok(Some(Journal {
            state: state.clone(),
            valid_len: at as u64,
            file_len: bytes.len() as u64,
        }));
        // A tail the file system extended but never wrote: zeros.
        if bytes[at..].iter().all(|&b| b == 0) {
            return torn;
        }
        let Some(head) = bytes.get(at..at + FRAME) else {
            return torn;
        };
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        let end = at + FRAME + len;
        let Some(body) = bytes.get(at + FRAME..end) else {
            return torn;
        };
        if crc32c::crc32c(body) != crc {
            if end == bytes.len() {
                return torn;
            }
            return Err(Error::corrupt(format!(
                "{} offset {at}: a consumer record fails its checksum",
                path.display()
            )));
        }
        let op = ConsumerOp::decode(body)
            .map_err(|e| e.prefixed(format!("{} offset {at}: ", path.display())))?;
        state.apply(&op);
        at = end;
    }
    Ok(Some(Journal {
        state,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
    }))
}

fn frame(op: &ConsumerOp, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    op.encode_into(&mut body);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

impl FileStore {
    fn consumers_dir(&self) -> PathBuf {
        self.dir.join("consumers")
    }

    fn consumer_path(&self, name: &str, ext: &str) -> PathBuf {
        self.consumers_dir()
            .join(format!("{}{ext}", hex_name(name)))
    }

    /// Opens consumer `name` for this caller alone: its lock, then its state from the
    /// log and its journal.
    pub fn consumer_claim(&self, name: &str) -> Result<ConsumerClaim> {
        self.check_owner()?;
        check_consumer_name(name)?;
        if self.is_closed() {
            return Err(Error::invalid("the store is closed"));
        }
        let vfs = &*self.options.vfs;
        let dir = self.consumers_dir();
        vfs::create_dir_durable(vfs, &dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = self.consumer_path(name, ".lock");
        let hold = match vfs.lock(&path) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                    "consumer '{name}' is open already (in this process or another: {} is held)",
                    path.display()
                ),
                ))
            }
            Err(e) => return Err(Error::io(format!("locking {}", path.display()), e)),
        };
        let state = self.consumer_state(name)?;
        Ok(ConsumerClaim {
            name: name.to_owned(),
            state,
            hold,
            partitions: 0,
        })
    }

    /// Consumer `name`'s state: its records in the log and in its journal.
    fn consumer_state(&self, name: &str) -> Result<ConsumerState> {
        if self.options.read_only {
            self.refresh()?;
        }
        let mut state = self.consumers.get(name);
        if let Some(j) = read_journal(&*self.options.vfs, &self.consumer_path(name, ".journal"))? {
            state.merge(&j.state);
        }
        Ok(state)
    }

    /// Stores a consumer's record: in the log (the writer), in its journal (a read-only
    /// process). Durable under the store's policy in the log, at once in a journal.
    pub fn consumer_write(&self, op: &ConsumerOp) -> Result<Option<u64>> {
        self.check_owner()?;
        if self.options.read_only {
            if self.is_closed() {
                return Err(Error::invalid("the store is closed"));
            }
            return self.journal_append(op).map(|_| None);
        }
        self.check_writable()?;
        let mut w = self.lock_writer();
        if self.options.fsync == FsyncPolicy::Always {
            self.catch_up_epoch(&mut w);
        }
        self.wal.health()?;
        let op = settle(op, w.next_position);
        self.append_entry(w, None, op).map(Some)
    }

    /// The atomic step: `appends` and the consumer's checkpoint `op` in one batch.
    pub fn consumer_append(
        &self,
        appends: &[StreamAppend<'_>],
        op: &ConsumerOp,
    ) -> Result<AppendResult> {
        self.append_multi_inner(appends, false, Some(op))
    }

    /// Appends `op` to its consumer's journal and makes it durable; rewrites a long one.
    fn journal_append(&self, op: &ConsumerOp) -> Result<()> {
        let vfs = &*self.options.vfs;
        let path = self.consumer_path(&op.name, ".journal");
        let shown = path.display();
        let found = read_journal(vfs, &path)?;
        if let Some(j) = found
            .as_ref()
            .filter(|j| j.valid_len >= JOURNAL_REWRITE_BYTES)
        {
            let mut state = j.state.clone();
            state.apply(op);
            return self.journal_rewrite(&path, &op.name, &state);
        }
        let file = match vfs.open(&path, OpenMode::CreateNew) {
            Ok(f) => {
                vfs.sync_dir(&self.consumers_dir()).map_err(|e| {
                    Error::io(format!("syncing {}", self.consumers_dir().display()), e)
                })?;
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => vfs
                .open(&path, OpenMode::ReadWrite)
                .map_err(|e| Error::io(format!("opening {shown}"), e))?,
            Err(e) => return Err(Error::io(format!("creating {shown}"), e)),
        };
        let (valid, len) = found.map_or((0, 0), |j| (j.valid_len, j.file_len));
        if len > valid {
            // A torn record from a crash: cut it before writing after it.
            file.set_len(valid)
                .map_err(|e| Error::io(format!("cutting the torn end of {shown}"), e))?;
        }
        let mut buf = Vec::new();
        frame(op, &mut buf);
        vfs::write_all_at(&*file, &buf, valid)
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(format!("writing {shown}"), e))
    }

    /// Replaces the journal at `path` by `state`'s records: a temporary file, fsynced,
    /// renamed over it, the directory fsynced.
    fn journal_rewrite(&self, path: &Path, name: &str, state: &ConsumerState) -> Result<()> {
        let vfs = &*self.options.vfs;
        let tmp = path.with_extension("journal.tmp");
        let _ = vfs.remove_file(&tmp);
        let mut buf = Vec::new();
        for op in state.records(name) {
            frame(&op, &mut buf);
        }
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let file = vfs
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| io("creating", e))?;
        vfs::write_all_at(&*file, &buf, 0)
            .and_then(|_| file.sync_data())
            .map_err(|e| io("writing", e))?;
        drop(file);
        vfs.rename(&tmp, path)
            .and_then(|_| vfs.sync_dir(&self.consumers_dir()))
            .map_err(|e| Error::io(format!("replacing {}", path.display()), e))
    }

    /// Every consumer the log or a journal names and that exists, with its state and
    /// whether it is open now.
    pub fn consumer_list(&self) -> Result<Vec<StoredConsumer>> {
        self.check_owner()?;
        if self.options.read_only {
            self.refresh()?;
        }
        let vfs = &*self.options.vfs;
        let mut names: Vec<String> = self.consumers.all().into_iter().map(|(n, _)| n).collect();
        match vfs.list_dir(&self.consumers_dir()) {
            Ok(files) => names.extend(files.iter().filter_map(|f| name_of(f, ".journal"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("listing {}", self.consumers_dir().display()),
                    e,
                ))
            }
        }
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let state = self.consumer_state(&name)?;
            if !state.exists() {
                continue;
            }
            let open = matches!(
                vfs.lock(&self.consumer_path(&name, ".lock")),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            );
            out.push(StoredConsumer { name, state, open });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_hold_any_name_and_nothing_else_reads_as_one() {
        for name in ["a", "orders-projection", "ü/..\\x", &"n".repeat(100)] {
            let f = format!("{}.journal", hex_name(name));
            assert!(f.len() < 255);
            assert_eq!(name_of(&f, ".journal").as_deref(), Some(name));
        }
        assert_eq!(name_of("abc.journal", ".journal"), None);
        assert_eq!(name_of("zz.journal", ".journal"), None);
        assert_eq!(name_of("61.lock", ".journal"), None);
        assert_eq!(name_of(".journal", ".journal"), None);
    }
}
