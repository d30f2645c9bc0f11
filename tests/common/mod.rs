//! Helpers shared by integration tests. Each test file that needs them says `mod common;`.
#![allow(dead_code)]

pub mod life;
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
