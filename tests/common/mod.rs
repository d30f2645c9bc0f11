//! Helpers shared by integration tests. Each test file that needs them says `mod common;`.
#![allow(dead_code)]

pub mod life;
pub mod moves;
pub mod pg;
pub mod procs;
pub mod promises;
pub mod writers;

/// Every file under `dir`, recursively, with its bytes (the erasure checks search every
/// byte of a store).
pub fn every_file(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
}

/// Every event of a cursor, owned.
pub fn drain(mut c: Box<dyn evstore::store::EventCursor>) -> Vec<evstore::store::Event> {
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.to_owned());
    }
    out
}

/// Every event of a tailing cursor up to the end of the log, owned.
pub fn drain_tail(mut c: Box<dyn evstore::store::TailCursor>) -> Vec<evstore::store::Event> {
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.to_owned());
    }
    out
}

/// The first of `files` (as `every_file` gives them) that holds `needle`.
pub fn holder<'a>(
    files: &'a [(std::path::PathBuf, Vec<u8>)],
    needle: &[u8],
) -> Option<&'a std::path::Path> {
    files
        .iter()
        .find(|(_, b)| b.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p.as_path())
}

/// The keys in a key file (its documented layout: `EVSKEYS1`, then entries of CRC,
/// body length, subject length u16, subject, key length u8, key).
pub fn keys_in(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert_eq!(&bytes[..8], b"EVSKEYS1");
    let mut at = 8;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..at + 8 + len];
        let n = u16::from_le_bytes(body[..2].try_into().unwrap()) as usize;
        let name = String::from_utf8(body[2..2 + n].to_vec()).unwrap();
        out.push((name, body[3 + n..].to_vec()));
        at += 8 + len;
    }
    out
}
