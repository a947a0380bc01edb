//! `cargo xtask <command>`: the project's own tooling (the alias lives in
//! `.cargo/config.toml`: `run --quiet --package xtask --`).
//!
//! - `cargo xtask setup [--guests]` makes sure the host has what the tests
//!   need: `qemu-system-aarch64` and `qemu-system-x86_64` (Debian packages
//!   `qemu-system-arm`, `qemu-system-x86`), found in `$QEMU_TEST_QEMU_DIR` or
//!   on `PATH`; `qemu-img` (`qemu-utils`, for a disk image's overlay) and
//!   the UEFI firmware (`ovmf`, `qemu-efi-aarch64`) that the declared-asset
//!   and UEFI tests use. With `--guests`, or when `CI` is set, also the tools that
//!   rebuild the built-in guests (`aarch64-linux-gnu-as`/`ld`/`objcopy` from
//!   `binutils-aarch64-linux-gnu`, the x86 ones from the host's binutils or
//!   `binutils-x86-64-linux-gnu`). Missing packages
//!   are installed with `apt-get install -y --no-install-recommends` when
//!   running as root; otherwise the exact `sudo` command is printed and the
//!   command fails. When everything is there it only prints what it found
//!   (with the QEMU version) and never calls `apt-get`.
//!
//! - `cargo xtask test [--quick] [--nextest] [--jobs N] [-- ARGS…]` is what
//!   CI runs: setup, `cargo fmt --all --check`, the guest check (`guests
//!   --check`; skipped with a note when the cross binutils are missing,
//!   except under CI where setup installs them), the Linux guest build (from
//!   Debian packages into its cache; quick when up to date), then `cargo
//!   test --workspace ARGS…` with its test binaries run N at a time
//!   (default 4) and the doc tests beside them. Next to those, in threads:
//!   `cargo clippy --workspace --all-targets -- -D warnings` and the doc
//!   check (both skipped by `--quick`) in a target dir of their own, and
//!   the packaging check (`package.rs`: both crates are packaged, unpacked
//!   outside the repository, and a fresh crate built from those sources
//!   alone runs the quick start's echo-guest tests and a Linux-guest shell
//!   test). With `CI` set, `QEMU_TEST_REQUIRE=1` is exported (unless
//!   already set), so a VM test that cannot run fails instead of being
//!   skipped. `--nextest` then also runs `cargo nextest run --workspace` as
//!   two partitions (`count:1/2`, `count:2/2`), when cargo-nextest is
//!   installed. Prints each step's outcome and duration, and each test
//!   binary's.
//!
//! - `cargo xtask demo` runs setup and the quick-start example suite
//!   (`cargo run -p qemu-test-examples --example quickstart`) on real VMs,
//!   keeping every test's artifacts, then explains what happened and lists
//!   the artifact directories under `target/qemu-test/`.
//!
//! - `cargo xtask guests [--check] [--aarch64] [--update]` assembles the
//!   built-in guests from `guests/` (`guests.rs`) and finds or builds the
//!   x86_64 Linux guest in the per-user cache with the library's builder
//!   (`linux_guest.rs`), plus the aarch64 one with `--aarch64`; `--update`
//!   fetches the guests' package lists again first. `--check` verifies the
//!   committed bare-metal binaries match their source and leaves the Linux
//!   guests alone.
//!
//! - `cargo xtask cache [list|prune|prune-all]` lists the caches (the
//!   per-user guest cache and this workspace's snapshot store) with their
//!   sizes, or removes the stale entries, or everything not in use
//!   ([`qemu_test::cache`]).
//!
//! - `cargo xtask bench [--runs N] [--warmups N] [--calls N] [--suite-runs N]
//!   [--flood-bytes N] [--flood-runs N] [--vms N] [--snapshot-runs N]
//!   [--build-runs N] [--channel-runs N] [--only P1,P5,C,…]
//!   [--no-instructions] [--no-rebuild]` measures qemu-test's overhead as
//!   ratios against raw baselines taken in the same run (raw QEMU; for P7,
//!   the build cost, a crate without qemu-test; for C1–C4, the data
//!   channel, the same virtio-serial device driven by hand) and writes a
//!   markdown table to `target/qemu-test/bench.md` (see [`bench`] for what
//!   each row means). A debug xtask re-runs itself with `--release` unless
//!   `--no-rebuild`. It takes several minutes and is not part of `cargo
//!   xtask test`. `cargo xtask bench-probe KIND N` repeats one of P1's or
//!   P2's operations N times in a process of its own: what the bench counts
//!   instructions of under callgrind (see `bench/probe.rs`).
//!
//! - `cargo xtask flaky [--runs N] [-- CARGO-TEST-ARGS…]` runs `cargo test
//!   --workspace --no-fail-fast CARGO-TEST-ARGS…` N times in a row (default
//!   20, after one build), records each run's outcome and failed tests, and
//!   writes a markdown summary to `target/qemu-test/flaky.md` (each run's
//!   whole output next to it, in `flaky/`); fails if any run failed. Not
//!   run by CI (see [`flaky`]).
//!
//! Every external program is run directly with `std::process::Command`
//! (never through a shell).

mod agent;
mod bench;
mod demo;
mod flaky;
mod guests;
mod linux_guest;
mod package;
mod setup;
mod test;
mod test_binaries;
mod util;

use std::ffi::OsString;
use std::process::ExitCode;

use lexopt::ValueExt;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup [--guests]                 install/check QEMU (and, with --guests, the guest build tools)
  test [--quick] [--nextest] [--jobs N] [-- CARGO-TEST-ARGS...]
                                   fmt, clippy, guest check and the whole test suite (what CI runs);
                                   N test binaries at a time (default 4)
  demo                             boot a few real VMs with the quick-start example suite
  guests [--check] [--aarch64] [--update]
                                   rebuild the built-in guests (and the Linux guests), or check
                                   the committed binaries; --aarch64 also builds the aarch64 Linux guest,
                                   --update fetches its package lists again
  cache [list|prune|prune-all]     list the caches (guests, snapshots) or remove stale entries / all
  bench [--runs N] [--warmups N] [--calls N] [--suite-runs N] [--flood-bytes N] [--flood-runs N]
        [--vms N] [--snapshot-runs N] [--build-runs N] [--channel-runs N] [--only P1,P7,C,…]
        [--no-instructions] [--no-rebuild]
                                   overhead vs raw QEMU, build cost (P7), the data channel (C);
                                   writes target/qemu-test/bench.md
  bench-probe KIND N               repeat one benchmarked operation N times (for callgrind, strace)
  flaky [--runs N] [-- CARGO-TEST-ARGS...]
                                   run the test suite N times (default 20); writes target/qemu-test/flaky.md
";

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<OsString>) -> Result<(), String> {
    // Everything after the first `--` goes verbatim to `cargo test`.
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let mut parser = lexopt::Parser::from_args(ours);
    let command = match parser.next().map_err(|e| e.to_string())? {
        Some(lexopt::Arg::Value(v)) => v.string().map_err(|e| e.to_string())?,
        Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h')) => {
            print!("{USAGE}");
            return Ok(());
        }
        None => return Err(format!("no command given\n\n{USAGE}")),
        Some(other) => return Err(format!("{}\n\n{USAGE}", other.unexpected())),
    };
    if !passthrough.is_empty() && !matches!(command.as_str(), "test" | "flaky") {
        return Err(format!("`{command}` takes no arguments after `--`"));
    }
    let unexpected = |arg: lexopt::Arg<'_>| format!("{}\n\n{USAGE}", arg.unexpected());
    match command.as_str() {
        "setup" => {
            let mut opts = setup::Options::default();
            while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                match arg {
                    lexopt::Arg::Long("guests") => opts.guests = true,
                    other => return Err(unexpected(other)),
                }
            }
            setup::setup(opts)
        }
        "test" => {
            let mut opts = test::Options {
                passthrough,
                ..Default::default()
            };
            while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                match arg {
                    lexopt::Arg::Long("quick") => opts.quick = true,
                    lexopt::Arg::Long("nextest") => opts.nextest = true,
                    lexopt::Arg::Long("jobs") => {
                        opts.jobs = parser
                            .value()
                            .map_err(|e| e.to_string())?
                            .parse()
                            .map_err(|e| format!("--jobs: {e:?}"))?;
                    }
                    other => return Err(unexpected(other)),
                }
            }
            test::test(opts)
        }
        "demo" => {
            if let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                return Err(unexpected(arg));
            }
            demo::demo()
        }
        "guests" => {
            let mut check = false;
            let mut linux = linux_guest::Options::default();
            while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                match arg {
                    lexopt::Arg::Long("check") => check = true,
                    lexopt::Arg::Long("aarch64") => linux.aarch64 = true,
                    lexopt::Arg::Long("update") => linux.update = true,
                    other => return Err(unexpected(other)),
                }
            }
            // guests.rs reports (or, as root, installs) missing binutils itself.
            guests::build_builtin(check)?;
            // The Linux guest is a cache under target/, not committed: `--check` leaves it alone.
            if check {
                Ok(())
            } else {
                linux_guest::build(linux)
            }
        }
        "cache" => {
            let command = match parser.next().map_err(|e| e.to_string())? {
                None => "list".to_string(),
                Some(lexopt::Arg::Value(v)) => v.string().map_err(|e| e.to_string())?,
                Some(other) => return Err(unexpected(other)),
            };
            if let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                return Err(unexpected(arg));
            }
            cache(&command)
        }
        "bench" => {
            let mut opts = bench::Options::default();
            while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                match arg {
                    lexopt::Arg::Long("runs") => opts.runs = count(&mut parser, "--runs")?,
                    lexopt::Arg::Long("warmups") => opts.warmups = count(&mut parser, "--warmups")?,
                    lexopt::Arg::Long("calls") => opts.calls = count(&mut parser, "--calls")?,
                    lexopt::Arg::Long("snapshot-runs") => {
                        opts.snapshot_runs = count(&mut parser, "--snapshot-runs")?
                    }
                    lexopt::Arg::Long("suite-runs") => {
                        opts.suite_runs = count(&mut parser, "--suite-runs")?
                    }
                    lexopt::Arg::Long("flood-bytes") => {
                        opts.flood_bytes = count(&mut parser, "--flood-bytes")?
                    }
                    lexopt::Arg::Long("flood-runs") => {
                        opts.flood_runs = count(&mut parser, "--flood-runs")?
                    }
                    lexopt::Arg::Long("vms") => opts.vms = count(&mut parser, "--vms")?,
                    lexopt::Arg::Long("build-runs") => {
                        opts.build_runs = count(&mut parser, "--build-runs")?
                    }
                    lexopt::Arg::Long("channel-runs") => {
                        opts.channel_runs = count(&mut parser, "--channel-runs")?
                    }
                    lexopt::Arg::Long("only") => {
                        let value = parser.value().map_err(|e| e.to_string())?;
                        let value = value.to_string_lossy().to_ascii_uppercase();
                        for id in value.split(',').filter(|id| !id.is_empty()) {
                            if !bench::IDS.contains(&id) {
                                return Err(format!(
                                    "--only: unknown benchmark `{id}` (one of {})",
                                    bench::IDS.join(", ")
                                ));
                            }
                            opts.only.push(id.to_string());
                        }
                    }
                    lexopt::Arg::Long("no-rebuild") => opts.no_rebuild = true,
                    lexopt::Arg::Long("no-instructions") => opts.instructions = false,
                    other => return Err(unexpected(other)),
                }
            }
            bench::bench(opts)
        }
        "bench-probe" => {
            let kind = parser
                .value()
                .map_err(|e| e.to_string())?
                .string()
                .map_err(|e| e.to_string())?;
            let n = count(&mut parser, "COUNT")?;
            bench::probe::probe(&kind, n)
        }
        "flaky" => {
            let mut opts = flaky::Options {
                passthrough,
                ..Default::default()
            };
            while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
                match arg {
                    lexopt::Arg::Long("runs") => opts.runs = count(&mut parser, "--runs")?,
                    other => return Err(unexpected(other)),
                }
            }
            flaky::flaky(opts)
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
}

/// `cargo xtask cache COMMAND`: the per-user cache and this workspace's
/// snapshot store.
fn cache(command: &str) -> Result<(), String> {
    let root = qemu_test::guest::cache_dir().map_err(|e| format!("cannot open the cache: {e}"))?;
    let snapshots = util::artifacts_root(&util::target_dir()).join("snapshots");
    let caches = qemu_test::cache::Caches::at(root, Some(snapshots));
    print!("{}", qemu_test::cache::command(&caches, command)?);
    Ok(())
}

/// The value of a numeric option.
fn count(parser: &mut lexopt::Parser, what: &str) -> Result<usize, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    value.parse::<usize>().map_err(|e| format!("{what}: {e}"))
}
