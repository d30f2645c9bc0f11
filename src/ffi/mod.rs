//! The C ABI: opaque handles, status codes, the last-error message, the panic boundary
//! and the global runtime (asynchronous work only). `include/evstore.h` is generated from this folder.
#![allow(non_camel_case_types)]
// Every exported function checks its pointers itself; their safety contract is the C
// API's, stated in each doc comment.
#![allow(clippy::missing_safety_doc)]

mod account;
mod args;
mod batch;
mod cancel;
mod consumer;
mod extensible;
mod fork;
mod gate;
mod lifecycle;
mod reads;
mod runtime;
mod schema;
mod stats;
mod status;
mod store;
mod subjects;
mod subscription;

pub use account::*;
pub use batch::*;
pub use consumer::*;
pub use lifecycle::*;
pub use reads::*;
pub use runtime::*;
pub use schema::*;
pub use stats::*;
pub use status::*;
pub use store::*;
pub use subjects::*;
pub use subscription::*;
