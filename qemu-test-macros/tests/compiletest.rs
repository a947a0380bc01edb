//! Compile-fail tests: every mistake `#[qemu_test]` reports, with the exact
//! diagnostic (`tests/ui/*.stderr`), and expansions that must compile and
//! register correctly (`tests/ui-pass`).
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p
//! qemu-test-macros --test compiletest`, then read every changed one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
