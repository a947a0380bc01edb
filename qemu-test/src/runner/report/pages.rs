//! Where the HTML reports go, and how the pages of many test processes
//! come together.
//!
//! Each test binary run writes `<root>/report/<package>.<binary>.html`, a
//! page of its own (see [`html`](super::html)), and
//! `<package>.<binary>.json`, what the index needs of it; then
//! `<root>/index.html`, the index of every page in `<root>/report/`, is
//! written anew. `<root>` is the artifact root (`<target>/qemu-test`, or
//! `QEMU_TEST_ARTIFACTS`). A run whose filters select no test writes
//! nothing, so that `cargo test --workspace NAME` keeps the other
//! binaries' pages.
//!
//! Under nextest each test runs in a process of its own. Each process
//! keeps its test's [`Entry`] in `<package>.<binary>.d/<test>.json`,
//! with nextest's run id (`NEXTEST_RUN_ID`); then it writes the binary's
//! page and the index from every entry of the same run, dropping those of
//! earlier runs. The files of one report dir are written under a lock,
//! so concurrent processes (nextest's, or several `cargo test` at once)
//! take turns, and each file is replaced atomically.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::os::FileLock;
use crate::runner::outcome::Record;
use crate::runner::report::html::{self, Entry, Run};

/// The report dir of an artifact root.
pub(crate) fn report_dir(root: &Path) -> PathBuf {
    root.join("report")
}

/// Writes this binary's page and the index (see the [module docs](self));
/// returns the index's path, or `None` if there was nothing to write.
pub(crate) fn write(
    root: &Path,
    (package, binary): (&str, &str),
    records: &[Record],
    took: Duration,
    nextest: Option<&str>,
) -> io::Result<Option<PathBuf>> {
    if records.is_empty() {
        return Ok(None);
    }
    let dir = report_dir(root);
    crate::os::create_private_dir_all(&dir)?;
    let _turn = FileLock::exclusive(&dir.join(".lock"));
    let stem = format!("{package}.{binary}");
    let mut entries: Vec<Entry> = records.iter().map(Entry::of).collect();
    let mut seconds = took.as_secs_f64();
    if let Some(run_id) = nextest {
        entries = gather(&dir.join(format!("{stem}.d")), run_id, entries)?;
        seconds = entries.iter().map(|e| e.duration_ms / 1000.0).sum();
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let run = Run {
        package: package.into(),
        binary: binary.into(),
        finished: unix_now(),
        seconds,
        page: format!("{stem}.html"),
        entries,
    };
    crate::os::write_atomically(&dir.join(&run.page), html::page(&run, &dir)?.as_bytes())?;
    let summary = serde_json::to_vec(
        &Run {
            // The index needs no evidence.
            entries: run.entries.iter().map(summary_of).collect(),
            ..run.clone()
        }
        .to_json(),
    )?;
    crate::os::write_atomically(&dir.join(format!("{stem}.json")), &summary)?;
    let index = root.join("index.html");
    crate::os::write_atomically(&index, html::index(&runs(&dir)?)?.as_bytes())?;
    Ok(Some(index))
}

/// Keeps `mine` (this process's entries) in `dir` under `run_id`, and
/// returns every entry of that run found there; entries of other runs
/// are removed.
fn gather(dir: &Path, run_id: &str, mine: Vec<Entry>) -> io::Result<Vec<Entry>> {
    crate::os::create_private_dir_all(dir)?;
    for entry in &mine {
        let kept = json!({"run": run_id, "entry": entry.to_json()});
        let file = dir.join(format!("{}.json", file_safe(&entry.name)));
        crate::os::write_atomically(&file, &serde_json::to_vec(&kept)?)?;
    }
    let mut all = Vec::new();
    for file in json_files(dir)? {
        let kept: Option<Value> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let entry = kept
            .filter(|kept| kept["run"] == run_id)
            .and_then(|kept| Entry::from_json(&kept["entry"]));
        match entry {
            Some(entry) => all.push(entry),
            _ => {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    Ok(all)
}

/// Every binary's run in the report dir, the most recent first.
fn runs(dir: &Path) -> io::Result<Vec<Run>> {
    let mut runs: Vec<Run> = json_files(dir)?
        .iter()
        .filter_map(|file| serde_json::from_slice(&std::fs::read(file).ok()?).ok())
        .filter_map(|value: Value| Run::from_json(&value))
        .collect();
    runs.sort_by(|a: &Run, b: &Run| {
        b.finished
            .total_cmp(&a.finished)
            .then_with(|| a.page.cmp(&b.page))
    });
    Ok(runs)
}

/// The `*.json` files in `dir`.
fn json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

/// What the index keeps of an entry: the name, result and duration.
fn summary_of(entry: &Entry) -> Entry {
    Entry {
        name: entry.name.clone(),
        result: entry.result.clone(),
        kind: entry.kind.clone(),
        duration_ms: entry.duration_ms,
        message: None,
        console: None,
        qemu_output: None,
        vm: None,
        artifacts: None,
    }
}

/// A file name for a test: anything but `[A-Za-z0-9_.:-]` as `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
