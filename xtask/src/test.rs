//! `cargo xtask test`: the whole check sequence CI runs, step by step, with
//! a summary (each step, its outcome and duration) at the end.
//!
//! Steps: setup, fmt, `guests --check`, the Linux guest (found or built in
//! the per-user cache by the library's builder, so that no test pays for
//! the first build; quick when up to date), `cargo test --workspace` (its
//! test binaries side by side: see [`test_binaries`]), and with
//! `--nextest` two `cargo nextest run --partition` halves. Three more run
//! in threads next to them, their output shown after `cargo test`'s and
//! their times their own, overlapping:
//!
//! - clippy, then doc (rustdoc with broken links and missing docs as
//!   errors), in a target dir of their own (`<target>/lint`): a check build
//!   shares nothing with the test build, and two dirs spare both cargo's
//!   lock, so they compile side by side;
//! - `package` (the crates work from their packaged sources alone: see
//!   [`package`]): its build waits for the suite's (they share the target
//!   dir) and then compiles and runs the user crate while the suite's VM
//!   tests run.
//!
//! A failing serial step stops the sequence; a failing thread fails it at
//! the end.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{guests, linux_guest, package, setup, test_binaries, util};

/// `cargo xtask test` flags.
#[derive(Debug)]
pub struct Options {
    /// Skip `cargo fmt` and `cargo clippy`.
    pub quick: bool,
    /// Also run the suite under `cargo nextest`, in two partitions.
    pub nextest: bool,
    /// Appended to the `cargo test --workspace` command line.
    pub passthrough: Vec<OsString>,
    /// How many test binaries run at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            nextest: false,
            passthrough: Vec::new(),
            jobs: DEFAULT_JOBS,
        }
    }
}

/// Test binaries run at once by default. Most of a binary's time is spent
/// waiting (VMs booting under the host-wide slot budget, timeouts,
/// fixture builds), so more binaries than cores fit.
pub const DEFAULT_JOBS: usize = 4;

/// `cargo test` arguments split at their `--`: cargo's, the binaries'.
fn split_passthrough(args: &[OsString]) -> (&[OsString], &[OsString]) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[]),
    }
}

enum Outcome {
    Passed,
    Skipped(String),
    Failed(String),
    NotRun,
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    duration: Duration,
}

/// What a step's body returns: `Ok(None)` passed, `Ok(Some(why))` skipped.
type StepResult = Result<Option<String>, String>;

#[derive(Default)]
struct Steps {
    done: Vec<Step>,
    failed: bool,
}

impl Steps {
    fn run(&mut self, name: &'static str, body: impl FnOnce() -> StepResult) {
        if self.failed {
            self.done.push(Step {
                name,
                outcome: Outcome::NotRun,
                duration: Duration::ZERO,
            });
            return;
        }
        println!("\n==> {name}");
        let start = Instant::now();
        let outcome = match body() {
            Ok(None) => Outcome::Passed,
            Ok(Some(why)) => {
                println!("    skipped: {why}");
                Outcome::Skipped(why)
            }
            Err(e) => {
                self.failed = true;
                Outcome::Failed(e)
            }
        };
        self.done.push(Step {
            name,
            outcome,
            duration: start.elapsed(),
        });
    }

    /// Records a step that ran elsewhere (a thread), whatever failed
    /// meanwhile: it ran, and its outcome is its own.
    fn record(&mut self, name: &'static str, result: StepResult, duration: Duration) {
        let outcome = match result {
            Ok(None) => Outcome::Passed,
            Ok(Some(why)) => Outcome::Skipped(why),
            Err(e) => {
                self.failed = true;
                Outcome::Failed(e)
            }
        };
        self.done.push(Step {
            name,
            outcome,
            duration,
        });
    }

    fn summary(&self, total: Duration) {
        println!("\n==> summary");
        let width = self.done.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for step in &self.done {
            let (word, note) = match &step.outcome {
                Outcome::Passed => ("ok", String::new()),
                Outcome::Skipped(why) => ("skipped", why.clone()),
                Outcome::Failed(e) => ("FAILED", e.clone()),
                Outcome::NotRun => ("not run", String::new()),
            };
            let time = if matches!(step.outcome, Outcome::NotRun | Outcome::Skipped(_)) {
                String::new()
            } else {
                util::human(step.duration)
            };
            println!("    {:<width$}  {word:<7}  {time:>9}  {note}", step.name);
        }
        println!(
            "    {:<width$}  {:<7}  {:>9}",
            "total",
            if self.failed { "FAILED" } else { "ok" },
            util::human(total)
        );
    }
}

/// `true` if `cargo nextest` runs.
fn nextest_available() -> bool {
    util::cargo()
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The report of a packaging check whose thread panicked.
fn panicked_check() -> package::Report {
    package::Report {
        log: String::new(),
        result: Err("the packaging check panicked".into()),
    }
}

/// What one of the lint checks printed, whether it passed, how long it took.
struct Checked {
    name: &'static str,
    log: String,
    result: StepResult,
    duration: Duration,
}

/// clippy, then the docs, in a target dir of their own (`<target>/lint`), so
/// that they run while the tests build and run: a check build shares no
/// artifacts with the test build, and its own dir spares both cargo's lock
/// on the target dir.
fn lint() -> Vec<Checked> {
    let dir = util::target_dir().join("lint");
    let mut clippy = util::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    // The docs the way docs.rs builds them, with a broken or private
    // intra-doc link and a missing doc as errors: the guide and the API docs
    // are the users' manual.
    let mut doc = util::cargo();
    doc.args([
        "doc",
        "--no-deps",
        "-p",
        "qemu-test",
        "-p",
        "qemu-test-macros",
    ])
    .env(
        "RUSTDOCFLAGS",
        "-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links -D missing_docs",
    );
    [("clippy", clippy), ("doc", doc)]
        .into_iter()
        .map(|(name, mut cmd)| {
            cmd.env("CARGO_TARGET_DIR", &dir).stdin(Stdio::null());
            let start = Instant::now();
            let mut log = format!("$ {}\n", util::display(&cmd));
            let result = match cmd.output() {
                Ok(out) => {
                    log.push_str(&String::from_utf8_lossy(&out.stdout));
                    log.push_str(&String::from_utf8_lossy(&out.stderr));
                    if out.status.success() {
                        Ok(None)
                    } else {
                        Err(format!("`cargo {name}` failed ({})", out.status))
                    }
                }
                Err(e) => Err(format!("cannot run cargo {name}: {e}")),
            };
            Checked {
                name,
                log,
                result,
                duration: start.elapsed(),
            }
        })
        .collect()
}

/// Runs the sequence; see the module docs.
pub fn test(opts: Options) -> Result<(), String> {
    let start = Instant::now();
    let ci = util::is_ci();
    // Under CI a VM test must never be skipped for a missing QEMU.
    let require = ci && std::env::var_os("QEMU_TEST_REQUIRE").is_none();
    let with_env = |cmd: &mut std::process::Command| {
        if require {
            cmd.env("QEMU_TEST_REQUIRE", "1");
        }
    };
    let mut steps = Steps::default();

    steps.run("setup", || {
        setup::setup(setup::Options::default()).map(|()| None)
    });
    if opts.quick {
        for name in ["fmt", "clippy", "doc"] {
            steps.run(name, || Ok(Some("--quick".into())));
        }
    } else {
        steps.run("fmt", || {
            util::run(util::cargo().args(["fmt", "--all", "--check"])).map(|()| None)
        });
    }
    // clippy and the docs, next to everything below (see `lint`).
    let linting = (!opts.quick && !steps.failed).then(|| std::thread::spawn(lint));
    steps.run("guests --check", || {
        let absent = setup::missing(setup::GUEST_TOOLS);
        let mut names: Vec<String> = absent.iter().map(|t| t.program.to_string()).collect();
        names.extend(
            setup::missing_agent_toolchains()
                .into_iter()
                .map(|(name, _)| name),
        );
        if !names.is_empty() {
            let why = format!(
                "{} not found (`cargo xtask setup --guests` installs them)",
                names.join(", ")
            );
            // Setup installs them under CI, so this is a real failure there.
            return if ci { Err(why) } else { Ok(Some(why)) };
        }
        guests::build_builtin(true).map(|()| None)
    });
    // The Linux guest is not committed: the Linux tests would build it on
    // first use into the per-user cache; building it here (the same
    // library code) keeps that time out of the tests' and says so in the
    // summary. Quick when it is there.
    // (The aarch64 one is built only by `cargo xtask guests --aarch64`.)
    steps.run("linux guest", || {
        linux_guest::build(linux_guest::Options::default()).map(|()| None)
    });
    // The packaging check, next to the suite (see the module docs).
    let packaging = (!steps.failed).then(|| {
        std::thread::spawn(move || {
            let start = Instant::now();
            let report = package::check(require);
            (report, start.elapsed())
        })
    });
    steps.run("cargo test", || {
        if require {
            println!("    QEMU_TEST_REQUIRE=1 (CI): a VM test that cannot run fails instead of being skipped");
        }
        let (cargo_args, test_args) = split_passthrough(&opts.passthrough);
        let env: &[(&str, &str)] = if require {
            &[("QEMU_TEST_REQUIRE", "1")]
        } else {
            &[]
        };
        test_binaries::run(&test_binaries::Options {
            cargo_args,
            test_args,
            jobs: opts.jobs,
            env,
        })
        .map(|()| None)
    });
    if let Some(linting) = linting {
        let checked = linting.join().unwrap_or_else(|_| {
            vec![Checked {
                name: "clippy",
                log: String::new(),
                result: Err("the lint thread panicked".into()),
                duration: Duration::ZERO,
            }]
        });
        for c in checked {
            println!("\n==> {} (ran next to the tests)", c.name);
            print!("{}", c.log);
            steps.record(c.name, c.result, c.duration);
        }
    }
    if let Some(packaging) = packaging {
        println!("\n==> package (ran next to cargo test)");
        let (report, duration) = packaging
            .join()
            .unwrap_or_else(|_| (panicked_check(), Duration::ZERO));
        print!("{}", report.log);
        steps.record("package", report.result.map(|()| None), duration);
    }
    if opts.nextest {
        let available = nextest_available();
        for (name, partition) in [("nextest 1/2", "count:1/2"), ("nextest 2/2", "count:2/2")] {
            steps.run(name, || {
                if !available {
                    return Ok(Some(
                        "cargo-nextest is not installed (`cargo install --locked cargo-nextest`)"
                            .into(),
                    ));
                }
                let mut cmd = util::cargo();
                cmd.args(["nextest", "run", "--workspace", "--partition", partition]);
                with_env(&mut cmd);
                util::run(&mut cmd).map(|()| None)
            });
        }
    }

    steps.summary(start.elapsed());
    if steps.failed {
        Err("test failed (see the summary above)".into())
    } else {
        Ok(())
    }
}
