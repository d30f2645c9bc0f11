//! Generates include/evstore.h from src/ffi with cbindgen, and gives the shared library
//! its soname.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=EVSTORE_WRITE_HEADER");
    // The soname carries the ABI version (EVS_ABI_VERSION = the major version).
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libevstore.so.{}",
        std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap()
    );
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("evstore.h");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(&out);
            // The committed header is refreshed only on request (make header), so that a
            // stale one is caught by tests/header.rs instead of silently rewritten.
            if std::env::var_os("EVSTORE_WRITE_HEADER").is_some() {
                bindings.write_to_file(crate_dir.join("include/evstore.h"));
            }
        }
        Err(e) => println!("cargo:warning=cbindgen failed: {e}"),
    }
}
