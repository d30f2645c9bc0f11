//! Helpers shared by integration tests. Each test file that needs them says `mod common;`.
#![allow(dead_code)]

pub mod life;
pub mod moves;
pub mod pg;
pub mod procs;
pub mod promises;
pub mod writers;
