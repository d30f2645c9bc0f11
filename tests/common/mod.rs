//! Helpers shared by integration tests. Each test file that needs them says `mod common;`.
#![allow(dead_code)]

pub mod pg;
pub mod procs;
pub mod promises;
