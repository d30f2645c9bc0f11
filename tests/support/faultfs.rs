//! A file system in memory for fault tests, under evstore's `Vfs`: it counts every
//! operation, can fail the k-th one of chosen kinds (EIO, ENOSPC, a torn write), and can
//! lose power: what survives is what was made durable (fdatasync/fsync for a file's
//! bytes, a directory fsync for its names), plus a chosen prefix of the rest, the last
//! write of which may be torn. A failed fdatasync drops the file's unsynced writes from
//! what a later power cut keeps, as Linux does (the pages are marked clean and a retried
//! fsync reports success without writing them).

#![allow(dead_code)]

#[path = "hookfs.rs"]
mod hookfs;

use evstore::wal::vfs::{FileRef, Kind, OpenMode, Stat, Vfs, VfsFile};
use hookfs::{Hook, HookFs, Opened};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What an operation is, for counting and for choosing which ones fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Open,
    Create,
    Read,
    Write,
    SyncData,
    SyncAll,
    SetLen,
    Allocate,
    Len,
    MkDir,
    ListDir,
    Rename,
    Remove,
    SyncDir,
    Stat,
    Lock,
}

impl Op {
    /// Operations that change something or make it durable: the ones the fault loops fail.
    pub const MUTATING: &'static [Op] = &[
        Op::Create,
        Op::Write,
        Op::SyncData,
        Op::SyncAll,
        Op::SetLen,
        Op::Allocate,
        Op::MkDir,
        Op::Rename,
        Op::Remove,
        Op::SyncDir,
    ];
    /// Operations that only look.
    pub const READING: &'static [Op] = &[Op::Open, Op::Read, Op::Len, Op::ListDir, Op::Stat];
}

/// How an injected failure looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Eio,
    Enospc,
    /// A write that stores the first half of its bytes, then fails with ENOSPC.
    TornWrite,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Eio => io::Error::from_raw_os_error(libc::EIO),
            Fault::Enospc | Fault::TornWrite => io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }
}

/// A durable-state question: what a power cut at this moment would leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Only what was made durable.
    Synced,
    /// Also every unsynced operation (as if the cache was written back just in time).
    All,
    /// The first half of the unsynced operations, the next write torn in half.
    HalfTorn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
enum Pending {
    Write { ino: u64, off: u64, bytes: Vec<u8> },
    SetLen { ino: u64, len: u64 },
    Link { path: PathBuf, node: Option<Node> },
    Rename { from: PathBuf, to: PathBuf },
}

impl Pending {
    fn ino(&self) -> Option<u64> {
        match self {
            Pending::Write { ino, .. } | Pending::SetLen { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    /// The directories whose entries this operation changes.
    fn dirs(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
        match self {
            Pending::Link { path, .. } => vec![parent(path)],
            Pending::Rename { from, to } => vec![parent(from), parent(to)],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What is on the platter.
    disk: Vec<u8>,
}

/// The durable state a power cut leaves: names and file contents.
#[derive(Debug, Clone, Default)]
pub struct Image {
    names: BTreeMap<PathBuf, Node>,
    files: HashMap<u64, Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, Node>,
    durable_names: BTreeMap<PathBuf, Node>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    pending: Vec<Pending>,
    /// Operations counted so far, and of those the kinds the plan counts.
    ops: u64,
    counted: u64,
    plan: Plan,
    /// Power was cut: every later operation fails with EIO.
    dead: bool,
    image: Option<Image>,
    locks: HashSet<PathBuf>,
    /// Injected failures that happened (operation and number).
    injected: Vec<(Op, u64)>,
}

/// Which operation fails or cuts the power.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The kinds that are counted for `fail_at` and `cut_at` (empty: none).
    pub kinds: Vec<Op>,
    /// Fail the counted operation with this number (1-based).
    pub fail_at: Option<u64>,
    /// Fail every counted operation whose number is a multiple of this.
    pub fail_every: Option<u64>,
    pub fault: Option<Fault>,
    /// Cut the power right after the counted operation with this number completes.
    pub cut_at: Option<(u64, Keep)>,
}

/// The file system; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    st: Arc<Mutex<State>>,
}

impl FaultFs {
    /// An empty file system with a root directory `/`.
    pub fn new() -> FaultFs {
        let fs = FaultFs::default();
        {
            let mut st = fs.lock();
            st.names.insert(PathBuf::from("/"), Node::Dir);
            st.durable_names.insert(PathBuf::from("/"), Node::Dir);
        }
        fs
    }

    /// A file system holding what a power cut left: everything in it is durable.
    pub fn from_image(image: &Image) -> FaultFs {
        let fs = FaultFs::default();
        {
            let mut st = fs.lock();
            st.names = image.names.clone();
            st.durable_names = image.names.clone();
            for (&ino, bytes) in &image.files {
                st.inodes.insert(
                    ino,
                    Inode {
                        data: bytes.clone(),
                        disk: bytes.clone(),
                    },
                );
                st.next_ino = st.next_ino.max(ino + 1);
            }
        }
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn arc(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    pub fn set_plan(&self, plan: Plan) {
        let mut st = self.lock();
        st.plan = plan;
        st.counted = 0;
    }

    /// No more failures from now on (the power stays as it is).
    pub fn heal(&self) {
        self.lock().plan = Plan::default();
    }

    /// Operations of the counted kinds so far.
    pub fn counted(&self) -> u64 {
        self.lock().counted
    }

    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    pub fn injected(&self) -> Vec<(Op, u64)> {
        self.lock().injected.clone()
    }

    /// The image the planned power cut took, if it happened.
    pub fn cut_image(&self) -> Option<Image> {
        self.lock().image.clone()
    }

    /// What a power cut right now would leave.
    pub fn image_now(&self, keep: Keep) -> Image {
        image_of(&self.lock(), keep)
    }

    /// The names of files (not directories) under `dir`, for checks.
    pub fn files_in(&self, dir: &Path) -> Vec<String> {
        let st = self.lock();
        st.names
            .iter()
            .filter(|(p, n)| p.parent() == Some(dir) && matches!(n, Node::File(_)))
            .filter_map(|(p, _)| Some(p.file_name()?.to_str()?.to_owned()))
            .collect()
    }

    /// Overwrites bytes of a file directly (durably), to plant damage.
    pub fn poke(&self, path: &Path, off: u64, bytes: &[u8]) {
        let mut st = self.lock();
        let Some(Node::File(ino)) = st.names.get(path).copied() else {
            panic!("no file {}", path.display());
        };
        let inode = st.inodes.get_mut(&ino).unwrap();
        for buf in [&mut inode.data, &mut inode.disk] {
            let end = off as usize + bytes.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[off as usize..end].copy_from_slice(bytes);
        }
    }

    /// Counts an operation and decides whether it fails.
    fn enter(&self, op: Op) -> io::Result<Option<Fault>> {
        let mut st = self.lock();
        st.ops += 1;
        if st.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if !st.plan.kinds.contains(&op) {
            return Ok(None);
        }
        st.counted += 1;
        let n = st.counted;
        let hit =
            st.plan.fail_at == Some(n) || st.plan.fail_every.is_some_and(|e| n.is_multiple_of(e));
        if hit {
            let fault = st.plan.fault.unwrap_or(Fault::Eio);
            st.injected.push((op, n));
            return Ok(Some(fault));
        }
        Ok(None)
    }

    /// After a counted operation completed: cuts the power if this is the one.
    fn leave(&self, op: Op) {
        let mut st = self.lock();
        if st.dead || !st.plan.kinds.contains(&op) {
            return;
        }
        if let Some((k, keep)) = st.plan.cut_at {
            if st.counted == k {
                let image = image_of(&st, keep);
                st.image = Some(image);
                st.dead = true;
            }
        }
    }

    /// Runs `body` as operation `op`: failing it when planned, cutting power after it.
    fn run<T>(&self, op: Op, body: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        if let Some(f) = self.enter(op)? {
            return Err(f.error());
        }
        let r = body(&mut self.lock());
        self.leave(op);
        r
    }
}

fn image_of(st: &State, keep: Keep) -> Image {
    let mut names = st.durable_names.clone();
    let mut files: HashMap<u64, Vec<u8>> = st
        .inodes
        .iter()
        .map(|(&i, n)| (i, n.disk.clone()))
        .collect();
    let take = match keep {
        Keep::Synced => 0,
        Keep::All => st.pending.len(),
        Keep::HalfTorn => st.pending.len() / 2,
    };
    for p in &st.pending[..take] {
        apply(&mut names, &mut files, p, usize::MAX);
    }
    if keep == Keep::HalfTorn {
        if let Some(p @ Pending::Write { bytes, .. }) = st.pending.get(take) {
            apply(&mut names, &mut files, p, bytes.len() / 2);
        }
    }
    // Only files that a name reaches survive.
    let live: HashSet<u64> = names
        .values()
        .filter_map(|n| match n {
            Node::File(i) => Some(*i),
            Node::Dir => None,
        })
        .collect();
    files.retain(|i, _| live.contains(i));
    Image { names, files }
}

/// Applies one pending operation to a durable image (`limit`: bytes of a write kept).
fn apply(
    names: &mut BTreeMap<PathBuf, Node>,
    files: &mut HashMap<u64, Vec<u8>>,
    p: &Pending,
    limit: usize,
) {
    match p {
        Pending::Write { ino, off, bytes } => {
            let f = files.entry(*ino).or_default();
            let bytes = &bytes[..bytes.len().min(limit)];
            let end = *off as usize + bytes.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*off as usize..end].copy_from_slice(bytes);
        }
        Pending::SetLen { ino, len } => files.entry(*ino).or_default().resize(*len as usize, 0),
        Pending::Link { path, node } => match node {
            Some(n) => {
                names.insert(path.clone(), *n);
            }
            None => {
                names.remove(path);
            }
        },
        Pending::Rename { from, to } => {
            if let Some(n) = names.remove(from) {
                names.insert(to.clone(), n);
            }
        }
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", p.display()),
    )
}

fn parent_is_dir(st: &State, p: &Path) -> io::Result<()> {
    let parent = p.parent().ok_or_else(|| not_found(p))?;
    match st.names.get(parent) {
        Some(Node::Dir) => Ok(()),
        _ => Err(not_found(parent)),
    }
}

impl State {
    /// Makes a file's pending writes durable (`ok`) or drops them (a failed sync).
    fn sync_file(&mut self, ino: u64, ok: bool) {
        let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.ino() == Some(ino));
        self.pending = rest;
        if ok {
            let mut names = BTreeMap::new();
            let mut files = HashMap::new();
            files.insert(
                ino,
                std::mem::take(&mut self.inodes.get_mut(&ino).unwrap().disk),
            );
            for p in &mine {
                apply(&mut names, &mut files, p, usize::MAX);
            }
            self.inodes.get_mut(&ino).unwrap().disk = files.remove(&ino).unwrap();
        }
    }
}

#[derive(Debug)]
struct MemFile {
    fs: FaultFs,
    ino: u64,
    writable: bool,
}

impl VfsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.fs.run(Op::Read, |st| {
            let data = &st.inodes[&self.ino].data;
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let fault = self.fs.enter(Op::Write)?;
        let n = match fault {
            Some(Fault::TornWrite) => buf.len() / 2,
            Some(_) => 0,
            None => buf.len(),
        };
        {
            let mut st = self.fs.lock();
            if n > 0 {
                let data = &mut st.inodes.get_mut(&self.ino).unwrap().data;
                let end = offset as usize + n;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[offset as usize..end].copy_from_slice(&buf[..n]);
                st.pending.push(Pending::Write {
                    ino: self.ino,
                    off: offset,
                    bytes: buf[..n].to_vec(),
                });
            }
        }
        if let Some(f) = fault {
            return Err(f.error());
        }
        self.fs.leave(Op::Write);
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync(Op::SyncData)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(Op::SyncAll)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.run(Op::SetLen, |st| {
            st.inodes
                .get_mut(&self.ino)
                .unwrap()
                .data
                .resize(len as usize, 0);
            st.pending.push(Pending::SetLen { ino: self.ino, len });
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.fs.run(Op::Allocate, |st| {
            let data = &mut st.inodes.get_mut(&self.ino).unwrap().data;
            if (data.len() as u64) < len {
                data.resize(len as usize, 0);
                st.pending.push(Pending::SetLen { ino: self.ino, len });
            }
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.fs
            .run(Op::Len, |st| Ok(st.inodes[&self.ino].data.len() as u64))
    }
}

impl MemFile {
    fn sync(&self, op: Op) -> io::Result<()> {
        match self.fs.enter(op)? {
            Some(f) => {
                // The kernel reports a writeback error once and forgets the pages.
                self.fs.lock().sync_file(self.ino, false);
                Err(f.error())
            }
            None => {
                self.fs.lock().sync_file(self.ino, true);
                self.fs.leave(op);
                Ok(())
            }
        }
    }
}

struct LockGuard {
    fs: FaultFs,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Vfs for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let op = if mode == OpenMode::CreateNew {
            Op::Create
        } else {
            Op::Open
        };
        let ino = self.run(op, |st| match (st.names.get(path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            )),
            (Some(Node::File(ino)), _) => Ok(ino),
            (Some(Node::Dir), _) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            )),
            (None, OpenMode::CreateNew) => {
                parent_is_dir(st, path)?;
                let ino = st.next_ino;
                st.next_ino += 1;
                st.inodes.insert(ino, Inode::default());
                st.names.insert(path.to_path_buf(), Node::File(ino));
                st.pending.push(Pending::Link {
                    path: path.to_path_buf(),
                    node: Some(Node::File(ino)),
                });
                Ok(ino)
            }
            (None, _) => Err(not_found(path)),
        })?;
        Ok(Arc::new(MemFile {
            fs: self.clone(),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.run(Op::MkDir, |st| {
            if st.names.contains_key(path) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            parent_is_dir(st, path)?;
            st.names.insert(path.to_path_buf(), Node::Dir);
            st.pending.push(Pending::Link {
                path: path.to_path_buf(),
                node: Some(Node::Dir),
            });
            Ok(())
        })
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.run(Op::ListDir, |st| {
            if st.names.get(path) != Some(&Node::Dir) {
                return Err(not_found(path));
            }
            Ok(st
                .names
                .keys()
                .filter(|p| p.parent() == Some(path))
                .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
                .collect())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(Op::Rename, |st| {
            let node = st.names.remove(from).ok_or_else(|| not_found(from))?;
            st.names.insert(to.to_path_buf(), node);
            st.pending.push(Pending::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            });
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.run(Op::Remove, |st| match st.names.get(path) {
            Some(Node::File(_)) => {
                st.names.remove(path);
                st.pending.push(Pending::Link {
                    path: path.to_path_buf(),
                    node: None,
                });
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            None => Err(not_found(path)),
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // A failed directory sync changes nothing: the entries stay pending.
        self.run(Op::SyncDir, |st| {
            if st.names.get(path) != Some(&Node::Dir) {
                return Err(not_found(path));
            }
            let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut st.pending)
                .into_iter()
                .partition(|p| p.dirs().iter().any(|d| d == path));
            st.pending = rest;
            let mut names = std::mem::take(&mut st.durable_names);
            let mut files = HashMap::new();
            for p in &mine {
                apply(&mut names, &mut files, p, usize::MAX);
            }
            st.durable_names = names;
            Ok(())
        })
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        self.run(Op::Stat, |st| match st.names.get(path) {
            Some(Node::Dir) => Ok(Stat {
                kind: Kind::Dir,
                len: 0,
            }),
            Some(Node::File(ino)) => Ok(Stat {
                kind: Kind::File,
                len: st.inodes[ino].data.len() as u64,
            }),
            None => Err(not_found(path)),
        })
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        // Counted as a creation: it makes a name, pending until its directory is synced.
        self.run(Op::Create, |st| {
            let node = match st.names.get(from) {
                Some(Node::File(ino)) => Node::File(*ino),
                Some(Node::Dir) => return Err(io::Error::from_raw_os_error(libc::EPERM)),
                None => return Err(not_found(from)),
            };
            if st.names.contains_key(to) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                ));
            }
            parent_is_dir(st, to)?;
            st.names.insert(to.to_path_buf(), node);
            st.pending.push(Pending::Link {
                path: to.to_path_buf(),
                node: Some(node),
            });
            Ok(())
        })
    }

    fn same_file(&self, a: &Path, b: &Path) -> io::Result<bool> {
        let st = self.lock();
        Ok(matches!(
            (st.names.get(a), st.names.get(b)),
            (Some(Node::File(x)), Some(Node::File(y))) if x == y
        ))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.run(Op::Lock, |st| {
            parent_is_dir(st, path)?;
            if !st.locks.insert(path.to_path_buf()) {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            Ok(())
        })?;
        Ok(Box::new(LockGuard {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

/// The real file system (`HookFs`) with faults planted in the log's segment files
/// (`*.wal`), for tests whose processes share a store: a writer that fails runs on it, a
/// reader in another process reads the same files through the OS. Faults are planned per
/// process with `set_plan`, which also restarts the counts.
#[derive(Debug, Clone, Default)]
pub struct OsFaults {
    st: Arc<Mutex<OsState>>,
}

/// Which segment operation fails, and how.
#[derive(Clone, Default)]
pub struct OsPlan {
    /// The k-th fdatasync of a segment (1-based) waits this long (a device retrying),
    /// then fails with EIO.
    pub fail_sync: Option<(u64, std::time::Duration)>,
    /// A failed fdatasync also loses what was written to the file since its last sync:
    /// it reads as zeros from then on (a kernel that dropped the pages it could not
    /// write back).
    pub lose_unsynced: bool,
    /// The k-th write to a segment (1-based) stores the first half of its bytes and then
    /// never returns (the process is to be killed in the middle of it).
    pub tear_write: Option<u64>,
    /// Called when a planted fault happens, with what happened.
    pub on_fault: Option<FaultHook>,
}

/// What `OsPlan::on_fault` calls.
pub type FaultHook = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for OsPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsPlan")
            .field("fail_sync", &self.fail_sync)
            .field("lose_unsynced", &self.lose_unsynced)
            .field("tear_write", &self.tear_write)
            .finish()
    }
}

#[derive(Debug, Default)]
struct OsState {
    plan: OsPlan,
    writes: u64,
    syncs: u64,
    /// Per segment: the byte range written since its last successful sync.
    dirty: HashMap<PathBuf, (u64, u64)>,
}

impl OsFaults {
    pub fn new() -> OsFaults {
        OsFaults::default()
    }

    pub fn arc(&self) -> Arc<dyn Vfs> {
        HookFs::arc(&Arc::new(self.clone()))
    }

    /// Plans the faults to come; counts start again from zero.
    pub fn set_plan(&self, plan: OsPlan) {
        let mut st = self.lock();
        st.plan = plan;
        st.writes = 0;
        st.syncs = 0;
    }

    fn lock(&self) -> MutexGuard<'_, OsState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault(&self, what: &str) {
        let hook = self.lock().plan.on_fault.clone();
        if let Some(h) = hook {
            h(what);
        }
    }
}

impl Hook for OsFaults {
    /// Notes the range a segment's write dirties; the planned write is torn.
    fn write_at(&self, f: &Opened, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !is_segment(&f.path) {
            return f.file.write_at(buf, offset);
        }
        let tear = {
            let mut st = self.lock();
            st.writes += 1;
            let end = offset + buf.len() as u64;
            let range = st.dirty.entry(f.path.clone()).or_insert((offset, end));
            *range = (range.0.min(offset), range.1.max(end));
            st.plan.tear_write == Some(st.writes)
        };
        if !tear {
            return f.file.write_at(buf, offset);
        }
        evstore::wal::vfs::write_all_at(&*f.file, &buf[..buf.len() / 2], offset)?;
        self.fault(&format!(
            "torn write of {} bytes at {offset} of {}",
            buf.len(),
            f.path.display()
        ));
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// A segment's planned fdatasync waits, loses the unsynced range if planned, and
    /// fails; another one forgets the range it made durable.
    fn sync_data(&self, f: &Opened) -> io::Result<()> {
        if !is_segment(&f.path) {
            return f.file.sync_data();
        }
        let fail = {
            let mut st = self.lock();
            st.syncs += 1;
            let n = st.syncs;
            st.plan.fail_sync.filter(|&(k, _)| k == n).map(|(_, d)| d)
        };
        let Some(delay) = fail else {
            f.file.sync_data()?;
            self.lock().dirty.remove(&f.path);
            return Ok(());
        };
        std::thread::sleep(delay);
        let (lose, dirty) = {
            let mut st = self.lock();
            (st.plan.lose_unsynced, st.dirty.remove(&f.path))
        };
        if let (true, Some((from, to))) = (lose, dirty) {
            let len = f.file.len()?.min(to);
            if len > from {
                let zeros = vec![0u8; (len - from) as usize];
                evstore::wal::vfs::write_all_at(&*f.file, &zeros, from)?;
            }
        }
        self.fault(&format!("failed fdatasync of {}", f.path.display()));
        Err(io::Error::from_raw_os_error(libc::EIO))
    }

    fn sync_all(&self, f: &Opened) -> io::Result<()> {
        f.file.sync_all()?;
        if is_segment(&f.path) {
            self.lock().dirty.remove(&f.path);
        }
        Ok(())
    }
}

/// Whether `path` is one of the log's segment files, where `OsFaults` plants its faults.
fn is_segment(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "wal")
}
