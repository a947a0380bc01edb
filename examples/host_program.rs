//! Running a program your build made inside a real Linux guest, with one
//! call: [`Vm::install`] brings the program and the shared libraries it
//! needs (the host's glibc, libgcc) into the guest and returns its path.
//!
//! The program here is `wordfreq` (`program/wordfreq.rs`), which the
//! examples' build script compiles with rustc: an ordinary, dynamically
//! linked Rust binary, like your `target/debug/your-tool`.
//!
//! Run it:
//!
//! ```text
//! cargo run -p qemu-test-examples --example host_program
//! ```
//!
//! What to copy into your own suite:
//!
//! - `kernel = guest::LINUX_X86_64_GENERIC`: the Linux guest with Debian's
//!   generic kernel, which can mount host directories (9p). `vm.install`
//!   puts the program in the test's program dir, shared into the guest:
//!   milliseconds, whatever its size. (On `LINUX_X86_64` it is copied over
//!   the console instead, at about 60 KiB/s.)
//! - `shares = ["host_dir:/mnt/dir"]` shares your own directories too
//!   (`:ro` for read-only).
//! - In an integration test of the crate that builds your binary, the path
//!   is `env!("CARGO_BIN_EXE_<name>")`.

use qemu_test::prelude::*;

/// The program the build script made.
const WORDFREQ: &str = concat!(env!("OUT_DIR"), "/wordfreq");

#[qemu_test(kernel = guest::LINUX_X86_64_GENERIC, console, timeout = "180s")]
fn counts_words_in_the_guest(vm: &mut Vm) -> TestResult {
    let wordfreq = vm.install(WORDFREQ)?;
    let sh = vm.shell();
    sh.succeed("printf 'the cat and the dog and the bird\\n' >/tmp/text")?;
    assert_eq!(
        sh.succeed(&format!("{wordfreq} 2 </tmp/text"))?,
        "3 the\n2 and\n"
    );
    // Its error path: unreadable input.
    let failed = sh.run(&format!("{wordfreq} </"))?;
    assert_eq!(failed.status, 1);
    assert!(failed.stderr.contains("cannot read stdin"), "{failed:?}");
    Ok(())
}

qemu_test::main!();
