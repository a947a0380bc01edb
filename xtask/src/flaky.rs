//! `cargo xtask flaky [--runs N] [-- CARGO-TEST-ARGS…]`: runs the test
//! suite N times in a row (default 20) to find tests that fail only
//! sometimes. Not part of CI: it takes N times as long as the suite.
//!
//! It builds once (`cargo test --workspace --no-run`), then runs
//! `cargo test --workspace --no-fail-fast CARGO-TEST-ARGS…` N times, each
//! run's stdout and stderr going, in order, to
//! `<target>/qemu-test/flaky/run-NN.log`. From libtest's output (the
//! `test X ... FAILED` lines and the `failures:` list; libtest-mimic, which
//! the VM test binaries use, prints the same) it records per run the
//! outcome, the counts, and which test of which test binary failed. A run
//! that fails with no failed test (a build error, a crashed test binary)
//! is reported with cargo's `error:` lines instead.
//!
//! The summary, a markdown table per run plus the tests that failed and
//! how often, is printed and written to `<target>/qemu-test/flaky.md`. The
//! command fails if any run failed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::util;

/// `cargo xtask flaky` flags.
#[derive(Debug)]
pub struct Options {
    /// How many times to run the suite.
    pub runs: usize,
    /// Appended to each `cargo test --workspace --no-fail-fast`.
    pub passthrough: Vec<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 20,
            passthrough: Vec::new(),
        }
    }
}

/// One failed test: its test binary (`machine`, `qemu_test (doc-tests)`)
/// and its name as libtest prints it (without libtest-mimic's `[kind]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Failure {
    binary: String,
    test: String,
}

/// What one run's output says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// In order of appearance, without duplicates.
    failures: Vec<Failure>,
    /// Cargo's `error: …` lines.
    errors: Vec<String>,
}

/// Where the parser is in the `failures:` list of test names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum List {
    /// Not in one.
    #[default]
    Outside,
    /// The previous line was `failures:`.
    Header,
    /// In the indented names.
    Names,
    /// After the names' blank line: `test result:` must come next.
    Ended,
}

/// Reads libtest output (through cargo) line by line.
#[derive(Debug, Default)]
struct Parser {
    parsed: Parsed,
    /// The test binary whose output this is (from cargo's `Running` line).
    binary: String,
    list: List,
    /// The names of the current `failures:` list, kept once `test result:`
    /// follows it (a test's own message may hold look-alikes).
    listed: Vec<String>,
}

impl Parser {
    /// Takes one line (without its newline); returns the failures it
    /// announces for the first time.
    fn line(&mut self, line: &str) -> Vec<Failure> {
        let list = std::mem::take(&mut self.list);
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            self.binary = binary_name(rest);
        } else if let Some(krate) = trimmed.strip_prefix("Doc-tests ") {
            self.binary = format!("{krate} (doc-tests)");
        } else if let Some(error) = line.strip_prefix("error: ") {
            self.parsed.errors.push(error.to_string());
        } else if let Some(counts) = line.strip_prefix("test result: ") {
            self.counts(counts);
            let listed = std::mem::take(&mut self.listed);
            if list == List::Ended {
                return listed.iter().filter_map(|n| self.failed(n)).collect();
            }
        } else if line == "failures:" {
            self.list = List::Header;
            self.listed.clear();
        } else if matches!(list, List::Header | List::Names) && is_list_entry(line) {
            self.list = List::Names;
            self.listed.push(line.to_string());
        } else if list == List::Names && line.is_empty() {
            self.list = List::Ended;
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            return self.failed(name).into_iter().collect();
        }
        Vec::new()
    }

    /// Records `name` as failed in the current binary, once.
    fn failed(&mut self, name: &str) -> Option<Failure> {
        let failure = Failure {
            binary: self.binary.clone(),
            test: test_name(name),
        };
        if self.parsed.failures.contains(&failure) {
            return None;
        }
        self.parsed.failures.push(failure.clone());
        Some(failure)
    }

    /// `ok. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s`
    fn counts(&mut self, text: &str) {
        for part in text.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.parsed.passed += n,
                "failed" => self.parsed.failed += n,
                "ignored" => self.parsed.ignored += n,
                _ => {}
            }
        }
    }

    fn finish(self) -> Parsed {
        self.parsed
    }
}

/// A line of the `failures:` name list: four spaces and a name.
fn is_list_entry(line: &str) -> bool {
    line.strip_prefix("    ")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(' '))
}

/// A test name as printed, without libtest-mimic's padding and `[kind] `
/// prefix or libtest's ` - should panic`.
fn test_name(printed: &str) -> String {
    let name = printed.trim();
    let name = match name.strip_prefix('[').and_then(|n| n.split_once(']')) {
        Some((_, rest)) => rest.trim(),
        None => name,
    };
    name.strip_suffix(" - should panic")
        .unwrap_or(name)
        .to_string()
}

/// The test binary in cargo's `Running tests/machine.rs
/// (target/debug/deps/machine-0123456789abcdef)`: `machine`.
fn binary_name(running: &str) -> String {
    let path = match running.rsplit_once('(') {
        Some((_, path)) => path.trim_end_matches(')'),
        None => running,
    };
    let file = Path::new(path.trim())
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    match file.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => file,
    }
}

/// One run of the suite.
#[derive(Debug)]
struct Run {
    passed: bool,
    /// How cargo ended, when not with success.
    status: String,
    duration: Duration,
    parsed: Parsed,
    log: PathBuf,
}

/// Runs `cmd` with stdout and stderr into one pipe (so their order is
/// kept), copying everything to `log` and parsing it.
fn run_once(mut cmd: Command, log: &Path) -> Result<Run, String> {
    let shown = util::display(&cmd);
    let mut file = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let (reader, writer) = rustix::pipe::pipe().map_err(|e| format!("creating a pipe: {e}"))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| format!("duplicating a pipe: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        // Plain text to parse, whatever the user's settings.
        .env("CARGO_TERM_COLOR", "never");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    // Our copies of the write end go with `cmd`: EOF comes when cargo and
    // every test process are done.
    drop(cmd);
    let mut parser = Parser::default();
    let mut lines = BufReader::new(File::from(reader));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = lines
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading the output of `{shown}`: {e}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf)
            .map_err(|e| format!("writing {}: {e}", log.display()))?;
        let line = String::from_utf8_lossy(&buf);
        for failure in parser.line(line.trim_end_matches(['\n', '\r'])) {
            println!("    FAILED {}: {}", failure.binary, failure.test);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for `{shown}`: {e}"))?;
    Ok(Run {
        passed: status.success(),
        status: status.to_string(),
        duration: started.elapsed(),
        parsed: parser.finish(),
        log: log.to_path_buf(),
    })
}

/// `cargo test --workspace` plus `args`.
fn cargo_test(args: &[OsString]) -> Command {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace"]).args(args);
    cmd
}

/// Runs the suite `opts.runs` times; see the module docs.
pub fn flaky(opts: Options) -> Result<(), String> {
    if opts.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    // Cargo's own arguments come before a `--`; the test binaries' after.
    let cargo_args: Vec<OsString> = opts
        .passthrough
        .iter()
        .take_while(|a| *a != "--")
        .cloned()
        .collect();
    println!("==> build");
    util::run(cargo_test(&cargo_args).arg("--no-run"))?;

    let root = util::artifacts_root(&util::target_dir());
    let path = root.join("flaky.md");
    let logs = root.join("flaky");
    match std::fs::remove_dir_all(&logs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", logs.display())),
    }
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;

    let mut args: Vec<OsString> = vec!["--no-fail-fast".into()];
    args.extend(opts.passthrough.iter().cloned());
    let shown = util::display(&cargo_test(&args));
    let started = SystemTime::now();
    let width = opts.runs.to_string().len();
    let mut runs = Vec::with_capacity(opts.runs);
    for i in 1..=opts.runs {
        println!("\n==> run {i}/{}: $ {shown}", opts.runs);
        let log = logs.join(format!("run-{i:0width$}.log"));
        let run = run_once(cargo_test(&args), &log)?;
        println!(
            "    {} in {}: {} passed, {} failed, {} ignored (log: {})",
            if run.passed { "ok" } else { "FAILED" },
            util::human(run.duration),
            run.parsed.passed,
            run.parsed.failed,
            run.parsed.ignored,
            run.log.display()
        );
        runs.push(run);
        // After every run, so that a series cut short still has its report.
        let report = summary(&shown, started, &runs);
        std::fs::write(&path, &report).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }

    let report = summary(&shown, started, &runs);
    println!("\n{report}");
    println!("flaky: written to {}", path.display());
    let failed = runs.iter().filter(|r| !r.passed).count();
    if failed > 0 {
        return Err(format!(
            "{failed} of {} runs failed (see {})",
            runs.len(),
            path.display()
        ));
    }
    Ok(())
}

/// Text for a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A markdown code span for a cell.
fn code(text: &str) -> String {
    if text.contains('`') {
        cell(text)
    } else {
        format!("`{}`", cell(text))
    }
}

/// How many failed tests a run's row names (the tally below has them all).
const MAX_NAMES_PER_RUN: usize = 5;

/// The markdown report.
fn summary(command: &str, started: SystemTime, runs: &[Run]) -> String {
    let failed_runs = runs.iter().filter(|r| !r.passed).count();
    let mut md = String::new();
    let _ = writeln!(md, "# Flaky tests\n");
    let _ = writeln!(
        md,
        "{} run{} of `{}` in a row (one build first), started {}: **{}**.\n",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        command,
        humantime::format_rfc3339_seconds(started),
        match failed_runs {
            0 => "every run passed".to_string(),
            n => format!("{n} of {} runs failed", runs.len()),
        }
    );
    let _ = writeln!(
        md,
        "| run | result | time | passed | failed | ignored | failed tests |"
    );
    let _ = writeln!(md, "| ---: | --- | ---: | ---: | ---: | ---: | --- |");
    for (i, run) in runs.iter().enumerate() {
        let what = if run.parsed.failures.is_empty() && !run.passed {
            // Nothing named: say what cargo said.
            let errors: Vec<String> = run.parsed.errors.iter().map(|e| cell(e)).collect();
            if errors.is_empty() {
                cell(&format!("cargo: {}", run.status))
            } else {
                errors.join("; ")
            }
        } else {
            let failures = &run.parsed.failures;
            let mut names: Vec<String> = failures
                .iter()
                .take(MAX_NAMES_PER_RUN)
                .map(|f| format!("{} {}", code(&f.binary), code(&f.test)))
                .collect();
            if failures.len() > MAX_NAMES_PER_RUN {
                names.push(format!("and {} more", failures.len() - MAX_NAMES_PER_RUN));
            }
            names.join(", ")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            if run.passed { "ok" } else { "**FAILED**" },
            util::human(run.duration),
            run.parsed.passed,
            run.parsed.failed,
            run.parsed.ignored,
            what
        );
    }

    // Each failed test, most often failed first.
    let mut tally: Vec<(&Failure, Vec<usize>)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for failure in &run.parsed.failures {
            match tally.iter_mut().find(|(f, _)| *f == failure) {
                Some((_, in_runs)) => in_runs.push(i + 1),
                None => tally.push((failure, vec![i + 1])),
            }
        }
    }
    tally.sort_by(|(a, ra), (b, rb)| rb.len().cmp(&ra.len()).then(a.cmp(b)));
    if !tally.is_empty() {
        let _ = writeln!(md, "\n## Tests that failed\n");
        let _ = writeln!(md, "| test binary | test | failed in |");
        let _ = writeln!(md, "| --- | --- | --- |");
        for (failure, in_runs) in &tally {
            let list: Vec<String> = in_runs.iter().map(usize::to_string).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} of {} runs ({}) |",
                code(&failure.binary),
                code(&failure.test),
                in_runs.len(),
                runs.len(),
                list.join(", ")
            );
        }
    }
    if let Some(dir) = runs.first().and_then(|r| r.log.parent()) {
        let _ = writeln!(
            md,
            "\nEach run's whole output: `{}/run-*.log`.",
            dir.display()
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Parsed, Vec<Failure>) {
        let mut parser = Parser::default();
        let live = text.lines().flat_map(|l| parser.line(l)).collect();
        (parser.finish(), live)
    }

    fn failure(binary: &str, test: &str) -> Failure {
        Failure {
            binary: binary.into(),
            test: test.into(),
        }
    }

    /// What cargo test prints for a libtest binary, a libtest-mimic one
    /// (padded names, `[kind]`) and doc tests, with failures in each.
    const OUTPUT: &str = "\
   Compiling qemu-test v0.1.0
     Running unittests src/lib.rs (target/debug/deps/qemu_test-0123456789abcdef)

running 3 tests
test a::ok ... ok
test a::bad ... FAILED
test a::panics - should panic ... FAILED

failures:

---- a::bad stdout ----
thread 'a::bad' panicked at src/a.rs:1:1:
failures:
    not a test name

failures:
    a::bad
    a::panics - should panic

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

error: test failed, to rerun pass `-p qemu-test --lib`
     Running tests/runner_vm.rs (target/debug/deps/runner_vm-fedcba9876543210)

running 3 tests
test [pc]   basic::passes      ... ok
test [virt] boot::echoes_twice ... FAILED
test        plain::no_vm       ... ignored

failures:

---- boot::echoes_twice ----
timed out after 2 s

failures:
    boot::echoes_twice

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.00s

   Doc-tests qemu_test

running 1 test
test qemu-test/src/lib.rs - (line 5) ... FAILED

failures:
    qemu-test/src/lib.rs - (line 5)

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.50s

error: 3 targets failed:
";

    #[test]
    fn failures_counts_and_errors_are_parsed() {
        let (parsed, live) = parse(OUTPUT);
        let expected = vec![
            failure("qemu_test", "a::bad"),
            failure("qemu_test", "a::panics"),
            failure("runner_vm", "boot::echoes_twice"),
            failure("qemu_test (doc-tests)", "qemu-test/src/lib.rs - (line 5)"),
        ];
        assert_eq!(parsed.failures, expected);
        assert_eq!(live, expected, "each failure is announced once");
        assert_eq!((parsed.passed, parsed.failed, parsed.ignored), (2, 4, 1));
        assert_eq!(
            parsed.errors,
            [
                "test failed, to rerun pass `-p qemu-test --lib`",
                "3 targets failed:"
            ]
        );
    }

    #[test]
    fn a_failure_only_in_the_list_is_found() {
        // `--nocapture` output can split the `test X ... FAILED` line.
        let (parsed, _) = parse(
            "     Running tests/m.rs (target/debug/deps/m-0123456789abcdef)\n\
             test x::y ... some output\nFAILED\n\nfailures:\n    x::y\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored\n",
        );
        assert_eq!(parsed.failures, [failure("m", "x::y")]);
    }

    #[test]
    fn binary_names_lose_their_hash() {
        assert_eq!(
            binary_name("tests/machine.rs (target/debug/deps/machine-0123456789abcdef)"),
            "machine"
        );
        assert_eq!(
            binary_name("target/debug/deps/my-tests-0123456789abcdef"),
            "my-tests"
        );
        assert_eq!(test_name("[virt] a::b   "), "a::b");
        assert_eq!(test_name("a - should panic"), "a");
    }

    #[test]
    fn the_summary_tallies_failures_across_runs() {
        let run = |passed: bool, failures: Vec<Failure>, errors: Vec<String>| Run {
            passed,
            status: if passed {
                "exit status: 0"
            } else {
                "exit status: 101"
            }
            .into(),
            duration: Duration::from_secs(2),
            parsed: Parsed {
                passed: 10,
                failed: failures.len() as u64,
                ignored: 1,
                failures,
                errors,
            },
            log: PathBuf::from("/t/qemu-test/flaky/run-1.log"),
        };
        let runs = [
            run(true, vec![], vec![]),
            run(false, vec![failure("m", "a|b"), failure("m", "c")], vec![]),
            run(false, vec![failure("m", "c")], vec![]),
            run(false, vec![], vec!["could not compile `x`".into()]),
        ];
        let md = summary("cargo test --workspace", SystemTime::UNIX_EPOCH, &runs);
        assert!(md.contains("**3 of 4 runs failed**"), "{md}");
        assert!(
            md.contains("| 2 | **FAILED** | 2.00 s | 10 | 2 | 1 | `m` `a\\|b`, `m` `c` |"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | **FAILED** | 2.00 s | 10 | 0 | 1 | could not compile `x` |"),
            "{md}"
        );
        let tally = md.split("## Tests that failed").nth(1).unwrap();
        let c = tally.find("| `m` | `c` | 2 of 4 runs (2, 3) |").unwrap();
        let ab = tally.find("| `m` | `a\\|b` | 1 of 4 runs (2) |").unwrap();
        assert!(c < ab, "most often failed first: {md}");
        assert!(md.contains("`/t/qemu-test/flaky/run-*.log`"), "{md}");
        let all_ok = summary("c", SystemTime::UNIX_EPOCH, &runs[..1]);
        assert!(
            all_ok.contains("**every run passed**") && !all_ok.contains("## Tests that failed")
        );
    }
}
