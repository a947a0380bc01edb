//! `cargo xtask test`'s `cargo test` step, with the test binaries run side
//! by side instead of one after another.
//!
//! `cargo test --workspace` runs each test binary to its end before it
//! starts the next, so the suite's time is the sum of its binaries' times,
//! and most of them spend it waiting: for a VM to boot, a timeout to
//! expire, a fixture crate to build. Here the binaries are built with
//! `cargo test --workspace --no-run` (the same build `cargo test` does) and
//! then run [`Options::jobs`] at a time, each as cargo would run it: from
//! its package's directory, with the `CARGO_*` variables cargo sets. The
//! doc tests run as one more job (`cargo test --workspace --doc`). VM tests
//! still share the host-wide slot budget, so running more binaries at once
//! queues more VMs, never more than the host takes.
//!
//! Each binary's output goes to `<target>/qemu-test/ci/<binary>.log` and is
//! printed, whole, when it ends; a summary of every binary with its time
//! and outcome follows.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util;

/// How the binaries are built and run.
pub struct Options<'a> {
    /// Arguments for cargo (before a `--` in `cargo xtask test -- …`).
    pub cargo_args: &'a [OsString],
    /// Arguments for every test binary (after that `--`).
    pub test_args: &'a [OsString],
    /// How many binaries run at once.
    pub jobs: usize,
    /// Environment variables for every binary (`QEMU_TEST_REQUIRE=1`).
    pub env: &'a [(&'a str, &'a str)],
}

/// One job: a test binary, or the doc tests.
struct Job {
    /// `package/target (kind)`, as shown.
    name: String,
    cmd: Command,
}

/// How a job ended.
struct Ended {
    name: String,
    passed: bool,
    time: Duration,
    /// CPU time of the binary and its descendants.
    cpu: Duration,
}

/// Builds the workspace's test binaries and runs them with the doc tests;
/// an error names the binaries that failed.
pub fn run(opts: &Options<'_>) -> Result<(), String> {
    let mut jobs = vec![doc_tests(opts)];
    jobs.extend(build(opts)?);
    let logs = util::target_dir().join("qemu-test").join("ci");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    println!(
        "    {} jobs (the doc tests and {} test binaries), {} at a time; logs in {}",
        jobs.len(),
        jobs.len() - 1,
        opts.jobs,
        logs.display()
    );
    let ended = run_jobs(jobs, opts.jobs.max(1), &logs);
    summary(&ended)
}

/// `cargo test --workspace --no-run`: the test binaries, as jobs.
fn build(opts: &Options<'_>) -> Result<Vec<Job>, String> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--no-run"])
        .arg("--message-format=json-render-diagnostics")
        .args(opts.cargo_args)
        .stdout(Stdio::piped());
    println!("$ {}", util::display(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run cargo test --no-run: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut jobs = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo's messages: {e}"))?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(job) = binary_job(&msg, opts) {
            jobs.push(job);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the tests failed ({status})"));
    }
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(jobs)
}

/// The job for a `compiler-artifact` message that is a test executable.
fn binary_job(msg: &serde_json::Value, opts: &Options<'_>) -> Option<Job> {
    if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
        return None;
    }
    let exe = msg["executable"].as_str()?;
    let manifest = Path::new(msg["manifest_path"].as_str()?);
    let dir = manifest.parent()?;
    let (package, version) = package_of(msg["package_id"].as_str()?, dir);
    let target = msg["target"]["name"].as_str()?;
    let kind = msg["target"]["kind"][0].as_str().unwrap_or("test");
    let mut cmd = Command::new(exe);
    cmd.args(opts.test_args)
        .current_dir(dir)
        .env("CARGO_MANIFEST_DIR", dir)
        .env("CARGO_MANIFEST_PATH", manifest)
        .env("CARGO_PKG_NAME", &package)
        .env("CARGO_PKG_VERSION", &version)
        .envs(opts.env.iter().copied());
    Some(Job {
        name: format!("{package}/{target} ({kind})"),
        cmd,
    })
}

/// The package's name and version from a package id
/// (`path+file:///…/dir#name@1.0.0`, or `…/name#1.0.0` when the directory
/// is named after the package).
fn package_of(id: &str, dir: &Path) -> (String, String) {
    let fragment = id.rsplit_once('#').map_or("", |(_, f)| f);
    match fragment.split_once('@') {
        Some((name, version)) => (name.to_string(), version.to_string()),
        None => (
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fragment.to_string(),
        ),
    }
}

/// `cargo test --workspace --doc`, as a job.
fn doc_tests(opts: &Options<'_>) -> Job {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--doc"])
        .args(opts.cargo_args)
        .arg("--")
        .args(opts.test_args)
        .envs(opts.env.iter().copied());
    Job {
        name: "doc tests".into(),
        cmd,
    }
}

/// Runs the jobs, `parallel` at a time, printing each one's output when it
/// ends.
fn run_jobs(jobs: Vec<Job>, parallel: usize, logs: &Path) -> Vec<Ended> {
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let ended = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let Some(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                    break;
                };
                let done = run_job(job, logs);
                ended.lock().unwrap_or_else(|e| e.into_inner()).push(done);
            });
        }
    });
    ended.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Runs one job with its output in its log, then prints the log.
fn run_job(mut job: Job, logs: &Path) -> Ended {
    let log_path: PathBuf = logs.join(format!("{}.log", file_name(&job.name)));
    let started = Instant::now();
    let waited = File::create(&log_path)
        .and_then(|log| {
            let err = log.try_clone()?;
            job.cmd.stdin(Stdio::null()).stdout(log).stderr(err);
            run_counted(&mut job.cmd)
        })
        .map_err(|e| format!("cannot run {}: {e}", util::display(&job.cmd)));
    let time = started.elapsed();
    let (status, cpu) = match waited {
        Ok((status, cpu)) => (Ok(status), cpu),
        Err(e) => (Err(e), Duration::ZERO),
    };
    let passed = matches!(&status, Ok(s) if s.success());
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let word = if passed { "ok" } else { "FAILED" };
    // One print per job, so that outputs do not interleave.
    let mut text = format!(
        "\n     Ran {} ({word}, {}, {} of CPU)\n$ {}\n{output}",
        job.name,
        util::human(time),
        util::human(cpu),
        util::display(&job.cmd)
    );
    match status {
        Err(e) => text.push_str(&format!("{e}\n")),
        Ok(s) if !s.success() => text.push_str(&format!("({} {s})\n", job.name)),
        Ok(_) => {}
    }
    print!("{text}");
    Ended {
        name: job.name,
        passed,
        time,
        cpu,
    }
}

/// Runs `cmd` to its end: its status, and the CPU time (user + system) of
/// it and of every descendant it waited for (the QEMUs of a test binary,
/// the compilers of a build), which is what the host's cores paid for it.
fn run_counted(cmd: &mut Command) -> std::io::Result<(ExitStatus, Duration)> {
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet waited for (std's `Child`
        // only reaps it in `wait`, which is never called); the pointers
        // are to live locals.
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if got == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((
        ExitStatus::from_raw(status),
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    ))
}

/// `name` as a file name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Prints every job's outcome, slowest first; an error names the failed.
fn summary(ended: &[Ended]) -> Result<(), String> {
    let mut sorted: Vec<&Ended> = ended.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.time));
    println!("\n    test binaries, slowest first (wall, CPU of it and its children):");
    for e in &sorted {
        let word = if e.passed { "ok" } else { "FAILED" };
        println!(
            "    {:>9}  {:>9}  {word:<6}  {}",
            util::human(e.time),
            util::human(e.cpu),
            e.name
        );
    }
    let cpu: Duration = ended.iter().map(|e| e.cpu).sum();
    println!("    CPU time of all: {}", util::human(cpu));
    let failed: Vec<&str> = sorted
        .iter()
        .filter(|e| !e.passed)
        .map(|e| e.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_ids_name_their_package() {
        let dir = Path::new("/w/tests");
        assert_eq!(
            package_of("path+file:///w/tests#qemu-test-suite@0.0.0", dir),
            ("qemu-test-suite".into(), "0.0.0".into())
        );
        assert_eq!(
            package_of("path+file:///w/tests#0.1.0", dir),
            ("tests".into(), "0.1.0".into())
        );
    }

    #[test]
    fn names_become_file_names() {
        assert_eq!(
            file_name("qemu-test/machine (test)"),
            "qemu-test_machine__test_"
        );
    }
}
