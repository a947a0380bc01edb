//! `cargo xtask test`: the whole check sequence CI runs, step by step, with
//! a summary (each step, its outcome and duration) at the end. Stops at the
//! first failing step.
//!
//! Steps: setup, fmt, clippy, doc (rustdoc with broken links and missing
//! docs as errors), `guests --check`, the Linux guest (found or
//! built in the per-user cache by the library's builder, so that no test
//! pays for the first build; quick when up to date), `cargo test
//! --workspace`, `package` (the crates work from their packaged sources
//! alone: see [`package`]), and with `--nextest` two `cargo nextest run
//! --partition` halves.
//!
//! `package` starts with `cargo test`, in a thread of its own: its build
//! waits for the suite's (they share the target dir) and then compiles and
//! runs the user crate while the suite's VM tests run. Its output is shown
//! after `cargo test`'s, and its time is its own, overlapping.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{guests, linux_guest, package, setup, util};

/// `cargo xtask test` flags.
#[derive(Debug, Default)]
pub struct Options {
    /// Skip `cargo fmt` and `cargo clippy`.
    pub quick: bool,
    /// Also run the suite under `cargo nextest`, in two partitions.
    pub nextest: bool,
    /// Appended to the `cargo test --workspace` command line.
    pub passthrough: Vec<OsString>,
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

    /// Records a step that ran elsewhere (a thread), unless an earlier
    /// step failed, in which case it counts as not run.
    fn record(&mut self, name: &'static str, result: StepResult, duration: Duration) {
        if self.failed {
            self.done.push(Step {
                name,
                outcome: Outcome::NotRun,
                duration: Duration::ZERO,
            });
            return;
        }
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

/// Builds the published crates' docs the way docs.rs would, with a broken
/// or private intra-doc link and a missing doc as errors: the guide and the
/// API docs are the users' manual.
fn doc() -> StepResult {
    util::run(
        util::cargo()
            .args(["doc", "--no-deps", "-p", "qemu-test", "-p", "qemu-test-macros"])
            .env(
                "RUSTDOCFLAGS",
                "-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links -D missing_docs",
            ),
    )
    .map(|()| None)
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
        steps.run("clippy", || {
            util::run(util::cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
            .map(|()| None)
        });
        steps.run("doc", doc);
    }
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
        let mut cmd = util::cargo();
        cmd.args(["test", "--workspace"]).args(&opts.passthrough);
        with_env(&mut cmd);
        if require {
            println!("    QEMU_TEST_REQUIRE=1 (CI): a VM test that cannot run fails instead of being skipped");
        }
        util::run(&mut cmd).map(|()| None)
    });
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
