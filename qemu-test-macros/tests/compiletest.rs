//! Compile-fail tests: every mistake `#[qemu_test]` reports, with the exact
//! diagnostic (`tests/ui/*.stderr`).
//!
//! Expansions that must compile and register correctly are plain test
//! targets (`tests/expand/*.rs`, listed in `Cargo.toml`): built with the
//! workspace's other targets, they spare trybuild a full build of
//! `qemu-test` and its dependencies (`cargo check` is enough for it).
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p
//! qemu-test-macros --test compiletest`, then read every changed one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
