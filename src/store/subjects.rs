//! Personal data (README "Personal data"): crypto-shredding with a key per data subject.
//!
//! An event that names a subject has its payload and metadata stored sealed with the
//! subject's data key (AES-256-GCM, a fresh random 96-bit nonce per event, the event's
//! position and every clear field of its envelope bound as associated data). Forgetting
//! the subject destroys the key: every copy of its events becomes unreadable at once, and
//! reads return them with payload and metadata empty and `erased` set.
//!
//! Shared by both engines: the cipher, the wrapping of keys by a master key, and the
//! `KeyRing` (which keys exist, which subjects are forgotten, events per subject) that
//! follows the log as a projection. Where keys are kept is the engine's (`KeyVault`) or
//! the application's (`KeySource` given at open). Keys never appear in messages, logs or
//! metrics.

use super::lifecycle::LifecycleOp;
use super::{EventRef, FastMap, Projection};
use crate::error::{Error, ErrorKind, Result};
use crate::wal::record::{get_varint, put_varint};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A data key's length (AES-256).
pub const KEY_LEN: usize = 32;
/// The nonce stored before each sealed event.
pub const NONCE_LEN: usize = 12;
/// The authentication tag after each sealed event.
pub const TAG_LEN: usize = 16;
/// A key wrapped by the master key: nonce, sealed key, tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Key bytes that are overwritten when dropped (what memory held of a forgotten key does
/// not linger in freed heap blocks).
pub struct KeyBytes(Box<[u8; KEY_LEN]>);

impl KeyBytes {
    pub fn new(bytes: [u8; KEY_LEN]) -> KeyBytes {
        KeyBytes(Box::new(bytes))
    }

    /// A fresh key from the system's random source.
    pub fn random() -> Result<KeyBytes> {
        let mut k = KeyBytes::new([0; KEY_LEN]);
        fill_random(&mut k.0[..])?;
        Ok(k)
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned byte of our own buffer; a volatile write is
            // not optimised away as a dead store before the free.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

/// Nonces drawn at once from the random source: a call of it costs about 400 ns, more
/// than sealing a 200-byte event (about 150 ns), so each thread draws 256 nonces' bytes
/// per call and hands them out one by one (each still 96 fresh random bits).
const NONCES_PER_DRAW: usize = 256;

struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_DRAW],
    next: usize,
    /// The process that drew them: a forked child must not reuse its parent's.
    pid: u32,
}

thread_local! {
    static NONCES: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool {
            bytes: [0; NONCE_LEN * NONCES_PER_DRAW],
            next: NONCES_PER_DRAW,
            pid: 0,
        })
    };
}

/// A fresh random 96-bit nonce (never one handed out before in this process or another).
fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    NONCES.with(|pool| {
        let mut pool = pool.borrow_mut();
        let pid = crate::wal::process::id();
        if pool.next == NONCES_PER_DRAW || pool.pid != pid {
            fill_random(&mut pool.bytes)?;
            pool.next = 0;
            pool.pid = pid;
        }
        let at = pool.next * NONCE_LEN;
        pool.next += 1;
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&pool.bytes[at..at + NONCE_LEN]);
        Ok(n)
    })
}

/// A random event id (for an event whose ciphertext is bound to its id).
pub fn random_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    fill_random(&mut id)?;
    Ok(id)
}

fn fill_random(out: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::new(ErrorKind::Io, "the system's random source failed"))
}

/// A subject's data key, ready to seal and open events.
pub struct DataKey(LessSafeKey);

impl DataKey {
    pub fn new(key: &KeyBytes) -> DataKey {
        let unbound = UnboundKey::new(&AES_256_GCM, key.bytes()).expect("a 32-byte AES-256 key");
        DataKey(LessSafeKey::new(unbound))
    }

    /// Seals `buf[at + NONCE_LEN..]` in place: writes a fresh nonce at `buf[at..]` and
    /// appends the tag. `aad` is bound in (the event's position and clear fields).
    pub fn seal(&self, aad: &[u8], buf: &mut Vec<u8>, at: usize) -> Result<()> {
        let nonce = fresh_nonce()?;
        buf[at..at + NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[at + NONCE_LEN..],
            )
            .map_err(|_| Error::new(ErrorKind::Internal, "sealing an event failed"))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `sealed` (nonce, ciphertext, tag) into `out` (replaced). A wrong key, moved
    /// ciphertext (other associated data) or any flipped byte is `Corrupt`.
    pub fn open(&self, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::corrupt(
                "a sealed event is shorter than its nonce and tag",
            ));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN])
            .map_err(|_| Error::corrupt("a sealed event's nonce"))?;
        out.clear();
        out.extend_from_slice(&sealed[NONCE_LEN..]);
        let n = self
            .0
            .open_in_place(nonce, Aad::from(aad), out)
            .map_err(|_| {
                Error::corrupt(
                    "a sealed event fails its authentication (damaged, tampered with, or moved from another event)",
                )
            })?
            .len();
        out.truncate(n);
        Ok(())
    }
}

/// The application's master key: wraps the data keys the store keeps.
pub struct MasterKey(DataKey);

/// Bound into each wrapped key with the subject's name: a wrapped key cannot be moved to
/// another subject.
const WRAP_CONTEXT: &[u8] = b"evstore subject key\0";

impl MasterKey {
    /// A master key of exactly 32 bytes.
    pub fn new(bytes: &[u8]) -> Result<MasterKey> {
        let k: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::invalid(format!(
                "the master key is {} bytes long; it must be {KEY_LEN} (AES-256)",
                bytes.len()
            ))
        })?;
        Ok(MasterKey(DataKey::new(&KeyBytes::new(k))))
    }

    fn context(subject: &str) -> Vec<u8> {
        let mut aad = WRAP_CONTEXT.to_vec();
        aad.extend_from_slice(subject.as_bytes());
        aad
    }

    /// `key` wrapped for `subject`: `WRAPPED_LEN` bytes.
    pub fn wrap(&self, subject: &str, key: &KeyBytes) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(key.bytes());
        self.0.seal(&Self::context(subject), &mut buf, 0)?;
        Ok(buf)
    }

    /// The key `wrap` wrapped for `subject`; a wrong master key is `InvalidArgument`.
    pub fn unwrap(&self, subject: &str, blob: &[u8]) -> Result<KeyBytes> {
        let mut out = Vec::with_capacity(KEY_LEN + TAG_LEN);
        let opened = self.0.open(&Self::context(subject), blob, &mut out);
        let key = opened
            .ok()
            .and_then(|_| <[u8; KEY_LEN]>::try_from(&out[..]).ok());
        out.iter_mut().for_each(|b| *b = 0);
        key.map(KeyBytes::new).ok_or_else(|| {
            Error::invalid(format!(
                "the key of subject '{subject}' does not open with the master key given (a wrong master key, or a damaged key store)"
            ))
        })
    }
}

/// Where subjects' keys come from: the store's own (`Kept`, over an engine's vault) or
/// the application's (a key-provider callback, for a KMS or HSM).
pub trait KeySource: Send + Sync {
    /// The key of `subject`, if it exists.
    fn get(&self, subject: &str) -> Result<Option<KeyBytes>>;
    /// Makes (durably) and returns a new key for `subject`, which has none.
    fn create(&self, subject: &str) -> Result<KeyBytes>;
    /// Destroys `subject`'s key durably (nothing if it has none).
    fn destroy(&self, subject: &str) -> Result<()>;
    /// The store's own keys (`get` gives `None` only for a key never made or destroyed):
    /// a missing key of a subject not forgotten is damage. A provider's may be missing.
    fn is_kept(&self) -> bool {
        false
    }
}

/// What an engine stores a subject's key as: a wrapped or a plain key's bytes.
pub trait KeyVault: Send + Sync {
    /// The stored bytes of `subject`'s key; `fresh`: look again at what another process
    /// may have stored since.
    fn get(&self, subject: &str, fresh: bool) -> Result<Option<Vec<u8>>>;
    /// Stores `blob` for `subject` durably before returning.
    fn put(&self, subject: &str, blob: &[u8]) -> Result<()>;
    /// `put`, where other processes may make keys too: stores `blob` unless a key is
    /// stored for `subject` already, and returns the one stored; `None` when the subject
    /// was forgotten meanwhile.
    fn put_first(&self, subject: &str, blob: &[u8]) -> Result<Option<Vec<u8>>> {
        self.put(subject, blob)?;
        Ok(Some(blob.to_vec()))
    }
    /// Destroys `subject`'s stored key durably: no file or row of the store holds it after.
    fn destroy(&self, subject: &str) -> Result<()>;
    /// Every subject with a stored key.
    fn subjects(&self) -> Result<Vec<String>>;
}

/// The store's own keys: kept in an engine's vault, wrapped by the master key if the
/// application gave one (else kept plain: that protects erasure, not theft of the files).
pub struct Kept {
    vault: Box<dyn KeyVault>,
    master: Option<MasterKey>,
}

impl Kept {
    pub fn new(vault: Box<dyn KeyVault>, master: Option<MasterKey>) -> Kept {
        Kept { vault, master }
    }

    /// Refuses a master key that does not open the stored keys (or one given for keys
    /// stored plain, or none for wrapped keys) at open, rather than at the first read.
    fn verify(&self) -> Result<()> {
        if let Some(s) = self.vault.subjects()?.first() {
            self.get(s)?;
        }
        Ok(())
    }

    fn unwrap(&self, subject: &str, blob: &[u8]) -> Result<KeyBytes> {
        match (&self.master, blob.len()) {
            (Some(m), WRAPPED_LEN) => m.unwrap(subject, blob),
            (None, KEY_LEN) => Ok(KeyBytes::new(blob.try_into().expect("32 bytes"))),
            (None, WRAPPED_LEN) => Err(Error::invalid(format!(
                "the key of subject '{subject}' is wrapped by a master key, and none was given at open"
            ))),
            (Some(_), KEY_LEN) => Err(Error::invalid(format!(
                "the key of subject '{subject}' is stored unwrapped, but a master key was given at open: open without it"
            ))),
            (_, n) => Err(Error::corrupt(format!(
                "the stored key of subject '{subject}' is {n} bytes long"
            ))),
        }
    }
}

impl KeySource for Kept {
    fn get(&self, subject: &str) -> Result<Option<KeyBytes>> {
        let blob = match self.vault.get(subject, false)? {
            Some(b) => Some(b),
            None => self.vault.get(subject, true)?,
        };
        blob.map(|b| self.unwrap(subject, &b)).transpose()
    }

    fn create(&self, subject: &str) -> Result<KeyBytes> {
        let key = KeyBytes::random()?;
        let mut blob = match &self.master {
            Some(m) => m.wrap(subject, &key)?,
            None => key.bytes().to_vec(),
        };
        let stored = self.vault.put_first(subject, &blob);
        let ours = stored.as_ref().is_ok_and(|s| s.as_ref() == Some(&blob));
        blob.iter_mut().for_each(|b| *b = 0);
        match stored? {
            _ if ours => Ok(key),
            // Another process made its key first: that one is the subject's.
            Some(mut other) => {
                let k = self.unwrap(subject, &other);
                other.iter_mut().for_each(|b| *b = 0);
                k
            }
            None => Err(Error::invalid(format!(
                "subject '{subject}' was forgotten: events naming it cannot be appended again (use a new subject id)"
            ))),
        }
    }

    fn destroy(&self, subject: &str) -> Result<()> {
        self.vault.destroy(subject)
    }

    fn is_kept(&self) -> bool {
        true
    }
}

/// Where a store's subject keys come from (`StoreOptions::keys`): kept by the store,
/// wrapped by `master` if given, or the application's `provider`.
#[derive(Clone, Default)]
pub struct KeyOptions {
    /// 32 bytes that wrap every key the store keeps.
    pub master: Option<Arc<KeyBytes>>,
    /// The application keeps the keys (a KMS): the store keeps none.
    pub provider: Option<Arc<dyn KeySource>>,
}

impl std::fmt::Debug for KeyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyOptions")
            .field("master", &self.master.is_some())
            .field("provider", &self.provider.is_some())
            .finish()
    }
}

impl KeyOptions {
    /// The keys' source for a store whose own keys are in `vault` (made only if needed).
    pub fn source(
        &self,
        vault: impl FnOnce() -> Result<Box<dyn KeyVault>>,
    ) -> Result<Arc<dyn KeySource>> {
        match (&self.provider, &self.master) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "both a master key and a key provider were given: the provider keeps the keys, so give one or the other",
            )),
            (Some(p), None) => Ok(p.clone()),
            (None, master) => {
                let master = master.as_ref().map(|m| MasterKey::new(m.bytes())).transpose()?;
                let kept = Kept::new(vault()?, master);
                kept.verify()?;
                Ok(Arc::new(kept))
            }
        }
    }
}

/// A subject as `KeyRing::subjects` reports it (counts, never keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectInfo {
    pub name: String,
    /// Events that name it.
    pub events: u64,
    /// The position of the entry that forgot it.
    pub forgotten_at: Option<u64>,
}

#[derive(Default)]
struct RingState {
    /// Keys opened so far (never a forgotten subject's).
    live: FastMap<Box<str>, Arc<DataKey>>,
    /// Events per subject and where each forgotten one was forgotten, from the log.
    subjects: FastMap<String, (u64, Option<u64>)>,
    /// How many of `subjects` are forgotten (none: appends check nothing more).
    forgotten: usize,
    /// Subjects whose forget is being appended: appends naming them are refused.
    forgetting: Vec<String>,
}

/// The subjects' keys as one handle sees them, following the log (a projection): keys
/// are looked up once and cached; a forget entry drops its key everywhere it is applied,
/// in the writer and in every follower.
pub struct KeyRing {
    source: Arc<dyn KeySource>,
    state: RwLock<RingState>,
    /// One key made at a time (two appends naming a new subject make one key).
    creating: Mutex<()>,
    /// A missing key reads as erased (see `settle`).
    lenient: AtomicBool,
}

/// What a read gets for a sealed event.
pub enum Opened {
    Key(Arc<DataKey>),
    /// Its subject is forgotten (or, for keys the application keeps, its key is gone).
    Erased,
}

impl KeyRing {
    /// A ring over `source`; `lenient` until `settle`: a key missing while the log is
    /// replayed may be one whose forget comes later in the log.
    pub fn new(source: Arc<dyn KeySource>) -> KeyRing {
        KeyRing {
            source,
            state: RwLock::new(RingState::default()),
            creating: Mutex::new(()),
            lenient: AtomicBool::new(true),
        }
    }

    /// The log is taken in: a writable handle finishes destroying the keys of forgotten
    /// subjects (a forget interrupted after its entry was durable), then judges a missing
    /// key of a subject not forgotten as damage. A read-only handle stays lenient: its
    /// writer may have forgotten a subject whose entry it has not read yet.
    pub fn settle(&self, read_only: bool) -> Result<()> {
        if !read_only {
            for s in self.forgotten() {
                self.source.destroy(&s)?;
            }
        }
        self.lenient.store(read_only, Ordering::Relaxed);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RingState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RingState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The position of the entry that forgot `subject`, if it is forgotten.
    pub fn forgotten_at(&self, subject: &str) -> Option<u64> {
        self.read().subjects.get(subject).and_then(|s| s.1)
    }

    /// Refuses an append naming `subject` if it is forgotten or being forgotten. Checked
    /// under the writer's lock, as a forget is appended.
    pub fn check_appendable(&self, subject: &str) -> Result<()> {
        let st = self.read();
        if st.forgotten == 0 && st.forgetting.is_empty() {
            return Ok(());
        }
        let at = st.subjects.get(subject).and_then(|s| s.1);
        if at.is_some() || st.forgetting.iter().any(|s| s == subject) {
            let when = at.map_or("now".to_string(), |p| format!("at position {p}"));
            return Err(Error::invalid(format!(
                "subject '{subject}' was forgotten ({when}): events naming it cannot be appended again (use a new subject id)"
            )));
        }
        Ok(())
    }

    /// The key to seal an event of `subject` with, made (durably) if it has none yet;
    /// `None` for a subject forgotten (or being forgotten): the append is refused under
    /// the writer's lock (`check_appendable`) unless it is a retry of one stored before.
    pub fn key_for_append(&self, subject: &str) -> Result<Option<Arc<DataKey>>> {
        if self.check_appendable(subject).is_err() {
            return Ok(None);
        }
        if let Some(k) = self.read().live.get(subject) {
            return Ok(Some(k.clone()));
        }
        let _one = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = self.read().live.get(subject) {
            return Ok(Some(k.clone()));
        }
        let bytes = match self.source.get(subject)? {
            Some(k) => k,
            None => self.source.create(subject)?,
        };
        let key = Arc::new(DataKey::new(&bytes));
        let mut st = self.write();
        // (A forget may have been applied while the key was made: it wins.)
        if st.subjects.get(subject).is_some_and(|s| s.1.is_some()) {
            return Ok(None);
        }
        st.live.insert(subject.into(), key.clone());
        Ok(Some(key))
    }

    /// The key to open an event of `subject` with, or `Erased`.
    pub fn key_for_read(&self, subject: &str, position: u64) -> Result<Opened> {
        {
            let st = self.read();
            if let Some(k) = st.live.get(subject) {
                return Ok(Opened::Key(k.clone()));
            }
            if st.subjects.get(subject).is_some_and(|s| s.1.is_some()) {
                return Ok(Opened::Erased);
            }
        }
        match self.source.get(subject)? {
            Some(bytes) => {
                let key = Arc::new(DataKey::new(&bytes));
                let mut st = self.write();
                if st.subjects.get(subject).is_some_and(|s| s.1.is_some()) {
                    return Ok(Opened::Erased);
                }
                st.live.insert(subject.into(), key.clone());
                Ok(Opened::Key(key))
            }
            None if self.source.is_kept() && !self.missing_keys_erased() => {
                Err(Error::corrupt(format!(
                    "the key of subject '{subject}' (event at position {position}) is missing, and the subject was not forgotten"
                ))
                .at_position(position))
            }
            None => Ok(Opened::Erased),
        }
    }

    fn missing_keys_erased(&self) -> bool {
        self.lenient.load(Ordering::Relaxed)
    }

    /// Marks `subject` as being forgotten (its forget entry is being appended).
    pub fn begin_forget(&self, subject: &str) {
        self.write().forgetting.push(subject.to_owned());
    }

    /// The forget of `subject` was appended (or failed): appends are judged by the log.
    pub fn end_forget(&self, subject: &str) {
        let mut st = self.write();
        if let Some(i) = st.forgetting.iter().position(|s| s == subject) {
            st.forgetting.swap_remove(i);
        }
    }

    /// Destroys `subject`'s key where it is kept (after its forget entry is durable).
    pub fn destroy(&self, subject: &str) -> Result<()> {
        let _one = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        self.write().live.remove(subject);
        self.source.destroy(subject)
    }

    /// Whether any subject is forgotten (its entry is in the log).
    pub fn any_forgotten(&self) -> bool {
        self.read().forgotten > 0
    }

    /// Every forgotten subject (to finish destroying their keys at open).
    pub fn forgotten(&self) -> Vec<String> {
        let st = self.read();
        let forgotten = st.subjects.iter().filter(|s| s.1 .1.is_some());
        forgotten.map(|s| s.0.clone()).collect()
    }

    /// Subjects with their counts, in name order.
    pub fn subjects(&self) -> Vec<SubjectInfo> {
        let st = self.read();
        let mut all: Vec<SubjectInfo> = st
            .subjects
            .iter()
            .map(|(name, &(events, forgotten_at))| SubjectInfo {
                name: name.clone(),
                events,
                forgotten_at,
            })
            .collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Opens the sealed part of a subject's event into `out` (metadata and payload), or
    /// says it is erased. `aad` is what was bound in when it was sealed.
    pub fn open_event(
        &self,
        subject: &str,
        position: u64,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        match self.key_for_read(subject, position)? {
            Opened::Erased => Ok(false),
            Opened::Key(k) => k
                .open(aad, sealed, out)
                .map(|_| true)
                .map_err(|e| e.at_position(position)),
        }
    }
}

impl Projection for KeyRing {
    fn name(&self) -> &str {
        "evstore.subjects"
    }

    fn apply(&self, event: &EventRef<'_>) {
        if let Some(s) = event.subject {
            let mut st = self.write();
            match st.subjects.get_mut(s) {
                Some(e) => e.0 += 1,
                None => {
                    st.subjects.insert(s.to_owned(), (1, None));
                }
            }
        }
    }

    fn apply_lifecycle(&self, op: &LifecycleOp, position: u64) {
        if let LifecycleOp::Forget { subject } = op {
            let mut st = self.write();
            st.live.remove(subject.as_str());
            let e = st.subjects.entry(subject.clone()).or_default();
            if e.1.is_none() {
                e.1 = Some(position);
                st.forgotten += 1;
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let st = self.read();
        let mut out = Vec::new();
        put_varint(&mut out, st.subjects.len() as u64);
        for (name, &(events, forgotten)) in &st.subjects {
            put_varint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            put_varint(&mut out, events);
            put_varint(&mut out, forgotten.map_or(0, |p| p + 1));
        }
        out
    }

    fn restore(&self, bytes: &[u8]) -> Result<()> {
        let bad = || Error::corrupt("the snapshot's subjects do not decode");
        let mut at = 0;
        let next = |at: &mut usize| -> Result<u64> {
            let (v, n) = get_varint(bytes, *at).map_err(|_| bad())?;
            *at = n;
            Ok(v)
        };
        let count = next(&mut at)?;
        let mut subjects = FastMap::default();
        for _ in 0..count {
            let len = next(&mut at)? as usize;
            let name = bytes
                .get(at..at.checked_add(len).ok_or_else(bad)?)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(bad)?
                .to_owned();
            at += len;
            let events = next(&mut at)?;
            let forgotten = next(&mut at)?.checked_sub(1);
            subjects.insert(name, (events, forgotten));
        }
        if at != bytes.len() {
            return Err(bad());
        }
        let mut st = self.write();
        let mut forgotten = 0;
        for (name, s) in &subjects {
            if s.1.is_some() {
                st.live.remove(name.as_str());
                forgotten += 1;
            }
        }
        st.subjects = subjects;
        st.forgotten = forgotten;
        Ok(())
    }

    fn reset(&self) {
        let mut st = self.write();
        st.subjects.clear();
        st.forgotten = 0;
    }
}

/// The associated data of a sealed event: its position, then every byte of its envelope
/// before the nonce (format, id, timestamp, stream, version, type, schema, subject). Into
/// `out` (replaced).
pub fn bind(position: u64, header: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(header);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_associated_data() {
        let key = DataKey::new(&KeyBytes::random().unwrap());
        let mut buf = vec![0u8; 3 + NONCE_LEN];
        buf.extend_from_slice(b"personal data");
        key.seal(b"position 7", &mut buf, 3).unwrap();
        let sealed = buf[3..].to_vec();
        assert!(!sealed.windows(8).any(|w| w == b"personal"));
        let mut out = Vec::new();
        key.open(b"position 7", &sealed, &mut out).unwrap();
        assert_eq!(out, b"personal data");
        // Moved to another event, or any byte flipped: refused as damage.
        let moved = key.open(b"position 8", &sealed, &mut out).unwrap_err();
        assert_eq!(moved.kind, ErrorKind::Corrupt);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(
                key.open(b"position 7", &t, &mut out).unwrap_err().kind,
                ErrorKind::Corrupt
            );
        }
        let other = DataKey::new(&KeyBytes::random().unwrap());
        assert!(other.open(b"position 7", &sealed, &mut out).is_err());
    }

    #[test]
    fn nonces_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * NONCES_PER_DRAW {
            assert!(seen.insert(fresh_nonce().unwrap()));
        }
    }

    #[test]
    fn a_wrapped_key_opens_with_its_master_key_for_its_subject_only() {
        let master = MasterKey::new(&[9u8; 32]).unwrap();
        let key = KeyBytes::random().unwrap();
        let blob = master.wrap("user-1", &key).unwrap();
        assert_eq!(blob.len(), WRAPPED_LEN);
        assert_eq!(master.unwrap("user-1", &blob).unwrap().bytes(), key.bytes());
        assert!(master.unwrap("user-2", &blob).is_err());
        let wrong = MasterKey::new(&[8u8; 32]).unwrap();
        assert_eq!(
            wrong.unwrap("user-1", &blob).unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        assert!(MasterKey::new(&[1u8; 16]).is_err());
    }
}
