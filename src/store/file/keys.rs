//! The file engine's key file (`<store>/keys`): the subjects' data keys the store keeps
//! (wrapped by the master key, or plain), never in the log.
//!
//! Layout: `EVSKEYS1`, then one entry per key: `[crc32c u32][body length u32][body]`,
//! body = `[subject length u16][subject][key length u8][key]`, the CRC over the body.
//!
//! Crash safety:
//! - A new key is appended and the file fdatasynced before the event it seals is
//!   appended to the log. A torn last entry (a crash while appending) is cut off at open:
//!   no event was sealed with its key.
//! - A key is destroyed after its forget entry is durable in the log: first its bytes are
//!   overwritten with zeros in place and the file fdatasynced (a zeroed key is a
//!   destroyed one, whatever its CRC says), then the file is written anew without the
//!   entry (temporary file, fsync, rename, directory fsync). A crash at any step leaves
//!   the key either whole (the forget's entry is in the log: the next writable open
//!   destroys it) or gone; no old version of the file holds it, since the same inode was
//!   overwritten before the rename let it go.

use crate::error::{Error, Result};
use crate::store::subjects::KeyVault;
use crate::wal::vfs::{self, OpenMode, Vfs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"EVSKEYS1";
/// An entry's CRC and body length.
const FRAME: usize = 8;
/// A key file is at most this large (about 8 million keys).
const MAX_FILE: u64 = 1 << 30;

/// A stored key: its bytes and where they are in the file.
#[derive(Clone)]
struct Stored {
    blob: Vec<u8>,
    offset: u64,
}

struct State {
    keys: BTreeMap<String, Stored>,
    /// The file's length (where the next entry goes); 0: no file yet.
    len: u64,
}

/// The key file of one store directory.
pub(super) struct KeyFile {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    writable: bool,
    state: Mutex<State>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join("keys")
}

fn tmp_path(dir: &Path) -> PathBuf {
    dir.join("keys.tmp")
}

/// Encodes one entry.
fn entry(subject: &str, blob: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(3 + subject.len() + blob.len());
    body.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    body.extend_from_slice(subject.as_bytes());
    body.push(blob.len() as u8);
    body.extend_from_slice(blob);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

/// What a key file holds: its keys, and the length of its whole entries (a torn tail
/// after it is to be cut off).
fn parse(bytes: &[u8]) -> Result<(BTreeMap<String, Stored>, u64)> {
    let bad = |at: usize, what: &str| Error::corrupt(format!("the key file at byte {at}: {what}"));
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(0, "not an evstore key file"));
    }
    let mut keys = BTreeMap::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let whole = |n: usize| at.checked_add(n).filter(|&e| e <= bytes.len());
        let Some(body_at) = whole(FRAME) else { break };
        let crc = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let Some(end) = body_at.checked_add(len).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let body = &bytes[body_at..end];
        let parsed = (|| {
            let n = u16::from_le_bytes(body.get(..2)?.try_into().ok()?) as usize;
            let subject = std::str::from_utf8(body.get(2..2 + n)?).ok()?;
            let k = *body.get(2 + n)? as usize;
            let blob = body.get(3 + n..)?;
            (blob.len() == k).then_some((subject, 3 + n, blob))
        })();
        let crc_ok = crc32c::crc32c(body) == crc;
        match parsed {
            // A key overwritten by a forget: destroyed, whatever its CRC.
            Some((_, _, blob)) if blob.iter().all(|&b| b == 0) => {}
            Some((subject, blob_at, blob)) if crc_ok => {
                let offset = (body_at + blob_at) as u64;
                keys.insert(
                    subject.to_owned(),
                    Stored {
                        blob: blob.to_vec(),
                        offset,
                    },
                );
            }
            // The last entry, torn by a crash while it was appended.
            _ if end == bytes.len() => break,
            _ => return Err(bad(at, "an entry fails its checksum")),
        }
        at = end;
    }
    Ok((keys, at as u64))
}

impl KeyFile {
    /// Opens the key file of `dir` (none yet is no keys). A writable open cuts a torn
    /// last entry off.
    pub(super) fn open(vfs: Arc<dyn Vfs>, dir: &Path, writable: bool) -> Result<KeyFile> {
        let kf = KeyFile {
            vfs,
            dir: dir.to_path_buf(),
            writable,
            state: Mutex::new(State {
                keys: BTreeMap::new(),
                len: 0,
            }),
        };
        if writable {
            // A rewrite that a crash interrupted before its rename: the old file holds.
            let _ = kf.vfs.remove_file(&tmp_path(dir));
        }
        let (keys, len, file_len) = kf.load()?;
        if writable && len < file_len {
            let f = kf.open_file(OpenMode::ReadWrite)?;
            f.set_len(len)
                .and_then(|_| f.sync_all())
                .map_err(|e| kf.io("cutting the torn end of", e))?;
        }
        *kf.lock() = State { keys, len };
        Ok(kf)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("{what} {}", path(&self.dir).display()), e)
    }

    fn open_file(&self, mode: OpenMode) -> Result<vfs::FileRef> {
        self.vfs
            .open(&path(&self.dir), mode)
            .map_err(|e| self.io("opening", e))
    }

    /// Reads the file: its keys, the length of its whole entries, its length.
    fn load(&self) -> Result<(BTreeMap<String, Stored>, u64, u64)> {
        let bytes = match vfs::read_file(&*self.vfs, &path(&self.dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((BTreeMap::new(), 0, 0))
            }
            Err(e) => return Err(self.io("reading", e)),
        };
        if bytes.len() as u64 > MAX_FILE {
            return Err(Error::corrupt(
                "the key file is larger than any the store writes",
            ));
        }
        let (keys, len) = parse(&bytes)?;
        Ok((keys, len, bytes.len() as u64))
    }

    /// Writes `keys` as the whole file: a temporary file, synced, renamed over the key
    /// file (`st` then describes the new file), the directory synced; then the old
    /// file's bytes are overwritten with zeros through the handle still open on it, so
    /// that no old version of the key file keeps a key (not even under another name, as
    /// a hard link; on a file system that writes in place, not in its freed blocks).
    fn rewrite(&self, st: &mut State, keys: BTreeMap<String, Stored>) -> Result<()> {
        let mut bytes = MAGIC.to_vec();
        let mut placed = BTreeMap::new();
        for (subject, s) in keys {
            let start = bytes.len();
            entry(&subject, &s.blob, &mut bytes);
            let offset = (start + FRAME + 3 + subject.len()) as u64;
            placed.insert(subject, Stored { offset, ..s });
        }
        let tmp = tmp_path(&self.dir);
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let _ = self.vfs.remove_file(&tmp);
        let f = self
            .vfs
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| io("creating", e))?;
        vfs::write_all_at(&*f, &bytes, 0).map_err(|e| io("writing", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        drop(f);
        let old = match st.len {
            0 => None,
            _ => Some(self.open_file(OpenMode::ReadWrite)?),
        };
        self.vfs
            .rename(&tmp, &path(&self.dir))
            .map_err(|e| io("renaming", e))?;
        *st = State {
            keys: placed,
            len: bytes.len() as u64,
        };
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))?;
        if let Some(old) = old {
            let len = old.len().map_err(|e| self.io("scrubbing the old", e))?;
            vfs::write_all_at(&*old, &vec![0u8; len as usize], 0)
                .and_then(|_| old.sync_data())
                .map_err(|e| self.io("scrubbing the old", e))?;
        }
        Ok(())
    }
}

impl KeyVault for KeyFile {
    fn get(&self, subject: &str, fresh: bool) -> Result<Option<Vec<u8>>> {
        if fresh && !self.writable {
            let (keys, len, _) = self.load()?;
            *self.lock() = State { keys, len };
        }
        Ok(self.lock().keys.get(subject).map(|s| s.blob.clone()))
    }

    fn put(&self, subject: &str, blob: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(
                crate::error::ErrorKind::ReadOnly,
                "the store is open read-only: no key can be made",
            ));
        }
        let mut st = self.lock();
        if st.len == 0 {
            let mut keys = BTreeMap::new();
            let blob = blob.to_vec();
            keys.insert(subject.to_owned(), Stored { blob, offset: 0 });
            return self.rewrite(&mut st, keys);
        }
        let mut bytes = Vec::new();
        entry(subject, blob, &mut bytes);
        let f = self.open_file(OpenMode::ReadWrite)?;
        let at = st.len;
        let written = vfs::write_all_at(&*f, &bytes, at).and_then(|_| f.sync_data());
        if let Err(e) = written {
            // What was written may be torn: cut it off (the next open would too), so that
            // the next entry starts at a known end.
            let _ = f.set_len(at).and_then(|_| f.sync_data());
            return Err(self.io("appending a key to", e));
        }
        st.len = at + bytes.len() as u64;
        let offset = at + (FRAME + 3 + subject.len()) as u64;
        st.keys.insert(
            subject.to_owned(),
            Stored {
                blob: blob.to_vec(),
                offset,
            },
        );
        Ok(())
    }

    fn destroy(&self, subject: &str) -> Result<()> {
        let mut st = self.lock();
        let Some(s) = st.keys.get(subject) else {
            return Ok(());
        };
        let f = self.open_file(OpenMode::ReadWrite)?;
        vfs::write_all_at(&*f, &vec![0u8; s.blob.len()], s.offset)
            .and_then(|_| f.sync_data())
            .map_err(|e| self.io("overwriting a key in", e))?;
        drop(f);
        // Whatever happens to the rewrite, the key is destroyed in the file.
        st.keys.remove(subject);
        let rest = st.keys.clone();
        self.rewrite(&mut st, rest)
    }

    fn subjects(&self) -> Result<Vec<String>> {
        Ok(self.lock().keys.keys().cloned().collect())
    }
}

impl super::FileStore {
    /// The keys to seal an append's events with: one per event that names a subject, in
    /// order; made (durably, in the key file) for subjects that have none yet; `None` for
    /// a forgotten subject (refused under the writer's lock, after a retry is looked for).
    /// Empty, without a lookup, when no event names one.
    pub(super) fn subject_keys(
        &self,
        appends: &[crate::store::StreamAppend<'_>],
    ) -> Result<Vec<Option<Arc<crate::store::subjects::DataKey>>>> {
        let named = appends
            .iter()
            .flat_map(|a| a.events)
            .filter_map(|e| e.subject);
        named.map(|s| self.keys.key_for_append(s)).collect()
    }

    /// Refuses an append that names a subject forgotten meanwhile (under the writer's
    /// lock, as forgets are appended).
    pub(super) fn check_subjects(&self, appends: &[crate::store::StreamAppend<'_>]) -> Result<()> {
        let mut named = appends
            .iter()
            .flat_map(|a| a.events)
            .filter_map(|e| e.subject);
        named.try_for_each(|s| self.keys.check_appendable(s))
    }

    /// Forgets `subject` (README "Personal data"): appends a forget entry (so every
    /// reader and follower obeys it), makes it durable, then destroys the subject's key.
    /// Returns the entry's position; forgetting a forgotten subject returns the first
    /// entry's position (and destroys the key again if a failure had stopped that).
    pub fn forget_subject(&self, subject: &str) -> Result<u64> {
        self.check_writable()?;
        crate::store::check_name("subject", subject, false)?;
        if let Some(p) = self.keys.forgotten_at(subject) {
            self.keys.destroy(subject)?;
            return Ok(p);
        }
        let mut w = self.lock_writer();
        if self.options.fsync == crate::wal::FsyncPolicy::Always {
            self.catch_up_epoch(&mut w);
        }
        self.wal.health()?;
        if let Some(p) = self.keys.forgotten_at(subject) {
            drop(w);
            self.keys.destroy(subject)?;
            return Ok(p);
        }
        // From here appends naming it are refused (checked under the writer's lock).
        self.keys.begin_forget(subject);
        let op = crate::store::lifecycle::LifecycleOp::Forget {
            subject: subject.to_owned(),
        };
        let appended = self.append_entry(w, None, op);
        self.keys.end_forget(subject);
        let position = appended?;
        // Durable before the key goes: a crash after this finds the entry, and the next
        // writable open finishes destroying the key (`KeyRing::settle`).
        self.sync()?;
        self.keys.destroy(subject)?;
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_entry_is_cut_and_a_zeroed_key_is_destroyed() {
        let mut bytes = MAGIC.to_vec();
        entry("a", &[1; 32], &mut bytes);
        let b_at = bytes.len();
        entry("b", &[2; 32], &mut bytes);
        let whole = bytes.len();
        entry("c", &[3; 32], &mut bytes);
        for cut in whole..bytes.len() {
            let (keys, len) = parse(&bytes[..cut]).unwrap();
            assert_eq!(keys.len(), 2, "cut at {cut}");
            assert_eq!(len, whole as u64);
        }
        // b's key zeroed in place: destroyed, the file still reads.
        let mut z = bytes.clone();
        let off = b_at + FRAME + 3 + 1;
        z[off..off + 32].fill(0);
        let (keys, _) = parse(&z).unwrap();
        assert!(keys.contains_key("a") && !keys.contains_key("b") && keys.contains_key("c"));
        // A flipped byte of an entry that is not the last: damage, not a cut.
        let mut d = bytes.clone();
        d[off] ^= 1;
        assert!(parse(&d).is_err());
    }
}
