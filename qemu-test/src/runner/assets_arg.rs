//! `--qemu-test-assets list|fetch`: a test binary prints, as JSON, the
//! declared assets ([`Asset`]) its selected tests need, or fetches them into
//! the cache first, so that CI can fetch and cache them ahead of the run
//! (petri's `--list-required-artifacts`). Taken off the command line before
//! libtest-mimic sees it; the rest of the line selects the tests as
//! libtest's filters do (`FILTER`, `--exact`, `--skip`):
//!
//! ```text
//! cargo test --test vm -- --qemu-test-assets list
//! cargo test --test vm -- --qemu-test-assets fetch boot::
//! ```
//!
//! Both print one JSON object on stdout: `{"cache": DIR, "assets": [{"url",
//! "sha256", "file", "compression", "cached", "path", "tests"}]}`, each asset
//! once with the tests that use it; `fetch` prints it after fetching (and
//! re-verifying what was cached), its progress on stderr, and fails if any
//! asset could not be had.

use std::ffi::OsString;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};
use serde_json::{json, Value};

use crate::guest::{self, Asset};
use crate::runner::cache_arg::fail;
use crate::runner::harness;
use crate::runner::registry::TestDef;

const FLAG: &str = "--qemu-test-assets";

/// Runs the assets command if `args` (the whole command line) holds one;
/// `None` if it does not.
pub(crate) fn intercept(defs: &[TestDef], args: &[OsString]) -> Option<ExitCode> {
    let (command, rest) = match command(args)? {
        Ok(found) => found,
        Err(e) => return Some(fail(&e)),
    };
    let fetch = match command.as_str() {
        "list" => false,
        "fetch" => true,
        other => {
            return Some(fail(&format!(
                "{FLAG}: unknown command `{other}` (one of: list, fetch)"
            )))
        }
    };
    // libtest's own parser: a wrong flag is its usual error.
    let filters = Arguments::from_iter(rest);
    let needed = needed(defs, &filters);
    let (report, failures) = report(&needed, fetch);
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if failures.is_empty() {
        return Some(ExitCode::SUCCESS);
    }
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    Some(ExitCode::FAILURE)
}

/// The assets of the tests `filters` select, each once, with the names of
/// the tests that use it (in the tests' order).
fn needed(defs: &[TestDef], filters: &Arguments) -> Vec<(Asset, Vec<String>)> {
    let mut tests: Vec<(String, &TestDef)> =
        defs.iter().map(|d| (harness::test_name(d), d)).collect();
    tests.sort_by(|a, b| a.0.cmp(&b.0));
    let mut needed: Vec<(Asset, Vec<String>)> = Vec::new();
    for (name, def) in tests {
        let probe = Trial::test(name.clone(), || Ok(())).with_ignored_flag(def.ignore.is_some());
        if filters.is_filtered_out(&probe) {
            continue;
        }
        let spec = (def.spec)();
        for asset in spec.assets() {
            match needed
                .iter_mut()
                .find(|(a, _)| a.sha_key() == asset.sha_key())
            {
                Some((_, users)) => users.push(name.clone()),
                None => needed.push((asset.clone(), vec![name.clone()])),
            }
        }
    }
    needed
}

/// The JSON report, fetching each asset first if `fetch`; and what could
/// not be had.
fn report(needed: &[(Asset, Vec<String>)], fetch: bool) -> (Value, Vec<String>) {
    let mut failures = Vec::new();
    let assets: Vec<Value> = needed
        .iter()
        .map(|(asset, tests)| {
            let path = match fetch {
                true => asset.fetch().map(Some),
                false => asset.cached(),
            };
            let path = path.unwrap_or_else(|e| {
                failures.push(e.to_string());
                None
            });
            json!({
                "url": asset.url(),
                "sha256": asset.sha256(),
                "file": asset.file_name(),
                "compression": asset.compression().name(),
                "cached": path.is_some(),
                "path": path,
                "tests": tests,
            })
        })
        .collect();
    let cache = guest::cache_dir().ok().map(|dir| dir.join("assets"));
    (json!({ "cache": cache, "assets": assets }), failures)
}

/// The command after `--qemu-test-assets` (or `--qemu-test-assets=...`),
/// and the other arguments (the program name first).
fn command(args: &[OsString]) -> Option<Result<(String, Vec<OsString>), String>> {
    let mut rest = args.first().cloned().into_iter().collect::<Vec<_>>();
    let mut found = None;
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if found.is_none() && text == FLAG {
            found = Some(
                iter.next()
                    .map(|c| c.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("{FLAG} needs a command: list or fetch")),
            );
        } else if let Some(command) = text.strip_prefix(FLAG).and_then(|r| r.strip_prefix('=')) {
            found.get_or_insert(Ok(command.to_string()));
        } else {
            rest.push(arg.clone());
        }
    }
    Some(found?.map(|command| (command, rest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::registry::{Body, ShouldFail};
    use crate::spec::VmSpec;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_is_taken_off_the_line() {
        assert_eq!(command(&args(&["t", "--exact", "x"])), None);
        assert_eq!(
            command(&args(&[
                "t",
                "boot::",
                "--qemu-test-assets",
                "list",
                "--exact"
            ])),
            Some(Ok(("list".into(), args(&["t", "boot::", "--exact"]))))
        );
        assert_eq!(
            command(&args(&["t", "--qemu-test-assets=fetch"])),
            Some(Ok(("fetch".into(), args(&["t"]))))
        );
        assert!(matches!(
            command(&args(&["t", "--qemu-test-assets"])),
            Some(Err(e)) if e.contains("needs a command")
        ));
    }

    static KERNEL: Asset = Asset::new(
        "https://example.org/vmlinuz.xz",
        "1111111111111111111111111111111111111111111111111111111111111111",
    );
    static DISK: Asset = Asset::new(
        "https://example.org/disk.qcow2",
        "2222222222222222222222222222222222222222222222222222222222222222",
    );

    fn def(name: &'static str, spec: fn() -> VmSpec) -> TestDef {
        TestDef {
            name,
            variant: None,
            module_path: "suite::boot",
            file: file!(),
            line: line!(),
            spec,
            body: Body::Vm(|_| crate::runner::outcome::BodyResult::Passed),
            ignore: None,
            should_fail: ShouldFail::No,
            setup: None,
        }
    }

    /// Each asset once, with its users; the filters select the tests.
    #[test]
    fn the_selected_tests_assets_are_listed() {
        let defs = [
            def("a", || VmSpec::new().with_kernel(&KERNEL).with_disk(&DISK)),
            def("b", || VmSpec::new().with_kernel(&KERNEL)),
            def("c", || VmSpec::new().with_kernel("/boot/vmlinuz")),
        ];
        let all = needed(&defs, &Arguments::from_iter(["t"]));
        let shown: Vec<(&str, Vec<String>)> =
            all.iter().map(|(a, t)| (a.url(), t.clone())).collect();
        assert_eq!(
            shown,
            [
                (
                    "https://example.org/vmlinuz.xz",
                    vec!["boot::a".to_string(), "boot::b".into()]
                ),
                (
                    "https://example.org/disk.qcow2",
                    vec!["boot::a".to_string()]
                ),
            ]
        );
        let one = needed(&defs, &Arguments::from_iter(["t", "--exact", "boot::b"]));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].1, ["boot::b"]);
        let none = needed(&defs, &Arguments::from_iter(["t", "--skip", "boot::"]));
        assert!(none.is_empty());
    }
}
