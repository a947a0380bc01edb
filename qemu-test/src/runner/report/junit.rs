//! The JUnit XML report (`QEMU_TEST_JUNIT=path`), written with
//! `quick-junit` after the run.
//!
//! One `<testsuite>` named after the test binary; one `<testcase>` per test
//! that was run or skipped (filtered-out tests are left out, as libtest
//! does), with the whole failure message (reason, console tail, artifact
//! dir) as the `<failure>` text and the kept artifact dir as a property.
//!
//! Under nextest every test is its own process and would overwrite the
//! file: use nextest's own JUnit support there (`[profile.ci.junit]`).

use std::io;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::runner::outcome::{Outcome, Record};

/// Builds the report of `records` for the test binary `binary`.
pub(crate) fn report(binary: &str, records: &[Record], total: Duration) -> Report {
    let mut suite = TestSuite::new(binary);
    suite.set_time(total);
    let mut records = records.to_vec();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    for record in &records {
        let status = match &record.outcome {
            Outcome::Passed => TestCaseStatus::success(),
            Outcome::Failed(failure) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(failure.headline())
                    .set_type(failure.kind.name())
                    .set_description(failure.to_string());
                status
            }
            Outcome::Skipped(reason) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(reason.as_str());
                status
            }
        };
        let mut case = TestCase::new(record.name.as_str(), status);
        case.set_classname(binary).set_time(record.duration);
        if let Some(dir) = record.outcome.failure().and_then(|f| f.artifact_dir()) {
            case.add_property(Property::new("artifacts", dir.display().to_string()));
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new(binary);
    report.set_time(total);
    report.add_test_suite(suite);
    report
}

/// Writes the report to `path` (creating its directory), atomically.
pub(crate) fn write(path: &Path, report: &Report) -> io::Result<()> {
    let xml = report.to_string().map_err(io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::os::write_atomically(path, xml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::outcome::{ArtifactsFate, Failure, FailureKind};

    #[test]
    fn reports_round_trip() {
        let records = vec![
            Record {
                name: "b::fails".into(),
                outcome: Outcome::Failed(Box::new(Failure {
                    artifacts: ArtifactsFate::Kept("/a/b".into()),
                    ..Failure::new(FailureKind::Error, "boom\n--- console ---\n<&>")
                })),
                duration: Duration::from_millis(1500),
            },
            Record {
                name: "a::passes".into(),
                outcome: Outcome::Passed,
                duration: Duration::from_millis(10),
            },
            Record {
                name: "c::skipped".into(),
                outcome: Outcome::Skipped("qemu-system-x not found".into()),
                duration: Duration::ZERO,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/junit.xml");
        write(&path, &report("suite", &records, Duration::from_secs(2))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = Report::deserialize_from_str(&text).unwrap();
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.name.as_str(), "suite");
        assert_eq!(suite.tests, 3);
        assert_eq!(suite.failures, 1);
        assert_eq!(suite.skipped, 1);
        assert_eq!(suite.test_cases[0].name.as_str(), "a::passes");
        match &suite.test_cases[1].status {
            TestCaseStatus::NonSuccess {
                message,
                description,
                ..
            } => {
                assert_eq!(message.as_ref().unwrap().as_str(), "boom");
                assert!(description.as_ref().unwrap().as_str().contains("<&>"));
            }
            other => panic!("{other:?}"),
        }
    }
}
