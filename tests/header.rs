//! The committed header must be what cbindgen generates from src/ffi now.

#[test]
fn the_committed_header_matches_the_generated_one() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/evstore.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/evstore.h"))
            .expect("include/evstore.h exists");
    let generated = generated.expect("build.rs generated the header");
    assert!(
        generated == committed,
        "include/evstore.h is stale: run `make header` and commit it"
    );
}
