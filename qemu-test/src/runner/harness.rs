//! The libtest-mimic glue: registered tests → trials → run → reports.
//!
//! Every libtest flag is libtest-mimic's (filters, `--exact`, `--skip`,
//! `--list`, `--ignored`, `--include-ignored`, `--test-threads`,
//! `--format`, `--nocapture`), so `cargo test` and `cargo nextest run`
//! drive a `qemu_test::main!()` binary like any test binary. A trial is
//! named exactly as libtest would name the function: `module::function`,
//! the module path without the crate (`--list` prints `boot::echoes:
//! test`), so `--exact`, nextest's `test(=NAME)` and CI history see the
//! same name for a `#[qemu_test]` as for a `#[test]`. The machine, the
//! architecture and the accelerator are in the failure report and the
//! JUnit properties instead.
//!
//! Tests that cannot run here (no such QEMU binary, no usable KVM for
//! `accel = "kvm"`, a guest image not built) are resolved when the trials
//! are built and marked ignored, at `--list` time too (so nextest, which
//! lists with `--list --ignored`, shows them as skipped), with the reason
//! on stderr; under `QEMU_TEST_REQUIRE=1` they run and fail. A test that
//! names a machine, CPU or device its QEMU does not have is not ignored:
//! it runs and fails with the near matches.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Trial};

use crate::runner::artifacts;
use crate::runner::case::{Context, TestCase};
use crate::runner::env::{self, Config};
use crate::runner::outcome::Unrunnable;
use crate::runner::outcome::{Outcome, Record};
use crate::runner::registry::{Body, TestDef};
use crate::runner::report::{junit, pages, summary};
use crate::runner::requirements;
use crate::runner::resolve;

/// Which test binary this is: its package and its name, for artifact
/// dirs and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The package the binary belongs to.
    pub(crate) package: String,
    /// The test target's name (`vm` for `tests/vm.rs`).
    pub(crate) binary: String,
}

/// Runs `defs` as libtest-mimic trials with `args`; returns the exit code.
pub(crate) fn run(defs: &'static [TestDef], id: Identity, mut args: Arguments) -> ExitCode {
    let started = Instant::now();
    let config = match env::config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.test_threads.is_none() {
        args.test_threads = default_threads(config);
    }
    let ctx: &'static Context = Box::leak(Box::new(Context {
        config,
        root: artifacts::root(config.artifacts.as_deref()),
        package: id.package,
        binary: id.binary,
        cwd: std::env::current_dir().unwrap_or_default(),
        records: Mutex::new(Vec::new()),
    }));
    let cases = cases(defs, &args, config);
    let (trials, not_run) = trials(&cases, &args, ctx);
    let conclusion = libtest_mimic::run(&args, trials);
    if args.list {
        return conclusion.exit_code();
    }
    let mut records = ctx
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    records.extend(not_run);
    write_html(ctx, &records, started.elapsed());
    let suite = junit::Suite {
        package: &ctx.package,
        binary: &ctx.binary,
        records: &records,
        time: started.elapsed(),
    };
    match write_reports(&suite, config) {
        Ok(()) => conclusion.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every registered test as a case, sorted by name.
fn cases(defs: &'static [TestDef], args: &Arguments, config: &Config) -> Vec<&'static TestCase> {
    let mut cases: Vec<&'static TestCase> = defs
        .iter()
        .map(|def| &*Box::leak(Box::new(case(def, args, config))))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// The libtest-mimic trials, and a record for each test that the filters
/// select but that will not run (ignored, or unrunnable here).
fn trials(
    cases: &[&'static TestCase],
    args: &Arguments,
    ctx: &'static Context,
) -> (Vec<Trial>, Vec<Record>) {
    let mut not_run = Vec::new();
    let trials = cases
        .iter()
        .map(|&case| {
            let skip = match case.unrunnable() {
                Some(Unrunnable::Missing(reason)) if !ctx.config.require => Some(reason.clone()),
                _ => None,
            };
            let trial = Trial::ignorable_test(case.name.clone(), move || case.run(ctx))
                .with_ignored_flag(case.def.ignore.is_some() || skip.is_some());
            if args.list && !args.is_filtered_out(&trial) {
                // Listed as ignored, so that nextest and libtest show a
                // skip; why is only said here.
                if let Some(reason) = &skip {
                    eprintln!("note: {} is listed as ignored: {reason}", case.name);
                }
            }
            if !args.list && !args.is_filtered_out(&trial) && args.is_ignored(&trial) {
                if let Some(reason) = &skip {
                    eprintln!("note: skipping {}: {reason}", case.name);
                }
                let reason = skip.or_else(|| {
                    case.def
                        .ignore
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                });
                not_run.push(Record {
                    name: case.name.clone(),
                    outcome: Outcome::Skipped(reason.unwrap_or_else(|| "ignored".into())),
                    vm: case.vm_facts(ctx, None),
                    duration: Default::default(),
                });
            }
            trial
        })
        .collect();
    (trials, not_run)
}

/// The summary of skips on stderr, and the JUnit file if asked for (not
/// under nextest, whose own JUnit covers the run: one file per test
/// process would only overwrite the last).
fn write_reports(suite: &junit::Suite, config: &Config) -> Result<(), String> {
    let _ = summary::write_skips(&mut std::io::stderr(), suite.records);
    match &config.junit {
        Some(dir) if config.nextest => {
            eprintln!(
                "note: qemu-test: QEMU_TEST_JUNIT={} is not used under nextest, which runs each \
                 test in a process of its own; use nextest's JUnit report ([profile.ci.junit] \
                 in .config/nextest.toml)",
                dir.display()
            );
            Ok(())
        }
        Some(dir) => suite
            .write(dir)
            .map(drop)
            .map_err(|e| format!("cannot write the JUnit report into {}: {e}", dir.display())),
        None => Ok(()),
    }
}

/// This run's HTML page and the index of all pages (see
/// [`pages`]); a page that cannot be written is a note, not a failure.
fn write_html(ctx: &Context, records: &[Record], took: Duration) {
    // Under nextest, one process per test: the run's processes share a
    // page (an old nextest without a run id: they share a parent).
    let run = ctx.config.nextest.then(|| {
        ctx.config
            .nextest_run
            .clone()
            .unwrap_or_else(|| format!("ppid-{}", std::os::unix::process::parent_id()))
    });
    let ids = (ctx.package.as_str(), ctx.binary.as_str());
    match pages::write(&ctx.root, ids, records, took, run.as_deref()) {
        Ok(Some(index)) if records.iter().any(|r| r.outcome.failure().is_some()) => {
            eprintln!(
                "note: qemu-test: the report of this run: {}",
                index.display()
            );
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "note: qemu-test: cannot write the HTML report in {}: {e}",
            pages::report_dir(&ctx.root).display()
        ),
    }
}

/// Builds a test case, resolving its VM unless the filters leave it out.
fn case(def: &'static TestDef, args: &Arguments, config: &Config) -> TestCase {
    let name = test_name(def);
    let mut spec = (def.spec)();
    spec.timeout = config.scaled(spec.timeout);
    let mut case = TestCase {
        def,
        name,
        spec,
        plan: None,
        unmet: None,
    };
    // Marked ignored so that `--ignored` does not filter it out here.
    let probe = Trial::test(case.name.clone(), || Ok(())).with_ignored_flag(true);
    if args.is_filtered_out(&probe) {
        return case;
    }
    match def.body {
        Body::Vm(_) => case.plan = Some(resolve::plan(&case.spec, config)),
        Body::Plain(_) => case.unmet = requirements::check(&case.spec.requires, None, config).err(),
    }
    case
}

/// `module::function`: the module path without the crate's name, then the
/// variant of a matrix (`module::function::x86_64`, as rstest names its
/// cases).
pub(crate) fn test_name(def: &TestDef) -> String {
    let name = match def.module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{}", def.name),
        None => def.name.to_string(),
    };
    match def.variant {
        Some(variant) => format!("{name}::{variant}"),
        None => name,
    }
}

/// `RUST_TEST_THREADS` (libtest's variable), else one thread per CPU slot.
fn default_threads(config: &Config) -> Option<usize> {
    let from_env = std::env::var("RUST_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0);
    from_env
        .or(config.jobs)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::registry::ShouldFail;
    use crate::spec::VmSpec;

    fn def(module_path: &'static str) -> TestDef {
        TestDef {
            name: "boots",
            variant: None,
            module_path,
            file: file!(),
            line: line!(),
            spec: || VmSpec::new().with_machine("virt").with_arch("aarch64"),
            body: Body::Vm(|_| crate::runner::outcome::BodyResult::Passed),
            ignore: None,
            should_fail: ShouldFail::No,
            setup: None,
        }
    }

    #[test]
    fn names_drop_the_crate() {
        assert_eq!(test_name(&def("my_tests")), "boots");
        assert_eq!(
            test_name(&def("my_tests::guest::echo")),
            "guest::echo::boots"
        );
    }

    #[test]
    fn filtered_out_tests_are_not_resolved() {
        let d: &'static TestDef = Box::leak(Box::new(def("t::m")));
        let args = Arguments::from_iter(["test", "--exact", "nothing"]);
        assert!(case(d, &args, &Config::default()).plan.is_none());
        let args = Arguments::from_iter(["test", "m::boots"]);
        assert!(case(d, &args, &Config::default()).plan.is_some());
    }
}
