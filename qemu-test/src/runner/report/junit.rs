//! The JUnit XML report of one test binary under `cargo test`, written with
//! `quick-xml` after the run.
//!
//! `QEMU_TEST_JUNIT=DIR` asks for it: each test binary writes
//! `DIR/<package>.<binary>.xml` (see [`file_name`]), so the binaries of a
//! `cargo test --workspace` each leave their own file and none overwrites
//! another's. Under nextest, which runs each test in a process of its own,
//! no file is written: nextest's own JUnit (`[profile.ci.junit]` in
//! `.config/nextest.toml`) covers the run.
//!
//! The report has one `<testsuite>` named `<package>::<binary>` (the
//! binary id nextest uses too, so CI history lines up whichever runs the
//! tests) with one `<testcase>` per test that was run or skipped
//! (filtered-out tests are left out, as libtest does). A case carries:
//!
//! - its VM as properties: `machine`, `arch`, `accel`, `qemu`, and
//!   `artifacts` (the kept artifact dir) when there is one;
//! - a failure as `<failure message="first line" type="kind">` around the
//!   whole failure message, the console's last lines in `<system-out>` and
//!   QEMU's own last words in `<system-err>`; `<system-out>` ends with one
//!   `[[ATTACHMENT|path]]` line per file of the kept artifact dir (the
//!   form Jenkins' JUnit attachments and GitLab pick up);
//! - a skip as `<skipped message="reason"/>`, whether it was known when
//!   the tests were listed (no QEMU binary) or found while running.
//!
//! Text that XML 1.0 cannot carry (the console's escape sequences and
//! other control characters) is written as `\u{1b}`; everything else is
//! escaped by quick-xml.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::runner::outcome::{ConsoleEvidence, Failure, Outcome, Record};

/// The report's file name for a binary of a package:
/// `<package>.<binary>.xml` (neither name can hold a `.`).
pub(crate) fn file_name(package: &str, binary: &str) -> String {
    format!("{package}.{binary}.xml")
}

/// One binary's run, as the report shows it.
#[derive(Debug)]
pub(crate) struct Suite<'a> {
    pub(crate) package: &'a str,
    pub(crate) binary: &'a str,
    pub(crate) records: &'a [Record],
    /// The whole run's wall time.
    pub(crate) time: Duration,
}

impl Suite<'_> {
    /// `<package>::<binary>`.
    fn id(&self) -> String {
        format!("{}::{}", self.package, self.binary)
    }

    /// The report, as XML.
    pub(crate) fn to_xml(&self) -> io::Result<Vec<u8>> {
        let mut records: Vec<&Record> = self.records.iter().collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let count =
            |f: fn(&Outcome) -> bool| records.iter().filter(|r| f(&r.outcome)).count().to_string();
        let tests = records.len().to_string();
        let failures = count(|o| matches!(o, Outcome::Failed(_)));
        let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
        let id = self.id();
        let time = seconds(self.time);
        let totals = [
            ("name", id.as_str()),
            ("tests", &tests),
            ("failures", &failures),
            ("errors", "0"),
            ("skipped", &skipped),
            ("time", &time),
        ];
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("testsuites")
            .with_attributes(totals)
            .write_inner_content(|w| {
                w.create_element("testsuite")
                    .with_attributes(totals)
                    .write_inner_content(|w| {
                        records.iter().try_for_each(|r| test_case(w, &id, r))
                    })?;
                Ok(())
            })?;
        let mut xml = w.into_inner();
        xml.push(b'\n');
        Ok(xml)
    }

    /// Writes the report into `dir` (created if needed), atomically;
    /// returns the file's path.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name(self.package, self.binary));
        crate::os::write_atomically(&path, &self.to_xml()?)?;
        Ok(path)
    }
}

/// One `<testcase>`.
fn test_case(w: &mut Writer<Vec<u8>>, class: &str, record: &Record) -> io::Result<()> {
    let time = seconds(record.duration);
    let name = xml_text(&record.name);
    w.create_element("testcase")
        .with_attributes([("name", &*name), ("classname", class), ("time", &time)])
        .write_inner_content(|w| {
            properties(w, record)?;
            match &record.outcome {
                Outcome::Passed => Ok(()),
                Outcome::Skipped(reason) => {
                    w.create_element("skipped")
                        .with_attribute(("message", &*xml_text(reason)))
                        .write_empty()?;
                    Ok(())
                }
                Outcome::Failed(failure) => failed(w, failure),
            }
        })?;
    Ok(())
}

/// The `<properties>`: which VM, and where its kept artifacts are.
fn properties(w: &mut Writer<Vec<u8>>, record: &Record) -> io::Result<()> {
    let mut pairs: Vec<(&str, String)> = record
        .vm
        .iter()
        .flat_map(|vm| vm.pairs())
        .map(|(name, value)| (name, value.to_string()))
        .collect();
    if let Some(dir) = record.outcome.failure().and_then(|f| f.artifact_dir()) {
        pairs.push(("artifacts", dir.display().to_string()));
    }
    if pairs.is_empty() {
        return Ok(());
    }
    w.create_element("properties").write_inner_content(|w| {
        for (name, value) in &pairs {
            w.create_element("property")
                .with_attributes([("name", *name), ("value", &*xml_text(value))])
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The `<failure>`, and the console's and QEMU's last lines.
fn failed(w: &mut Writer<Vec<u8>>, failure: &Failure) -> io::Result<()> {
    w.create_element("failure")
        .with_attributes([
            ("message", &*xml_text(failure.headline())),
            ("type", failure.kind.name()),
        ])
        .write_text_content(BytesText::new(&xml_text(&failure.to_string())))?;
    let console = match &failure.console {
        ConsoleEvidence::None => None,
        ConsoleEvidence::InReason { tail } | ConsoleEvidence::Tail(tail) => Some(tail.clone()),
    };
    let attachments = failure
        .artifact_dir()
        .map(|dir| attachments(dir))
        .filter(|lines| !lines.is_empty());
    let out = match (console, attachments) {
        (None, None) => None,
        (Some(tail), None) => Some(tail),
        (None, Some(lines)) => Some(lines),
        (Some(tail), Some(lines)) => Some(format!("{}\n{lines}", tail.trim_end())),
    };
    if let Some(out) = out {
        w.create_element("system-out")
            .write_text_content(BytesText::new(&xml_text(&out)))?;
    }
    if let Some(output) = &failure.qemu_output {
        w.create_element("system-err")
            .write_text_content(BytesText::new(&xml_text(output)))?;
    }
    Ok(())
}

/// `[[ATTACHMENT|path]]` for each file of `dir` (and of its siblings'
/// subdirs), sorted, one per line.
fn attachments(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(kind) if kind.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| format!("[[ATTACHMENT|{}]]\n", f.display()))
        .collect()
}

/// `1.500`: seconds with milliseconds, as JUnit readers expect.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// `text` with every character XML 1.0 cannot hold (control characters
/// other than tab, newline and carriage return; U+FFFE, U+FFFF) written as
/// `\u{..}`, so that a console's escape sequences keep the file readable.
pub(super) fn xml_text(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{fffe}' | '\u{ffff}'))
    };
    if text.chars().all(allowed) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if allowed(c) {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::outcome::{ArtifactsFate, FailureKind, VmFacts};

    fn records() -> Vec<Record> {
        let vm = VmFacts {
            binary: Some("/usr/bin/qemu-system-x86_64".into()),
            arch: Some("x86_64".into()),
            machine: Some("pc".into()),
            accel: Some("tcg".into()),
        };
        let failure = Failure {
            artifacts: ArtifactsFate::Kept("/a/b".into()),
            console: ConsoleEvidence::Tail("SeaBIOS\n\u{1b}[2Jboot <&>".into()),
            qemu_output: Some("qemu: warning".into()),
            vm: Some(vm.clone()),
            ..Failure::new(FailureKind::Timeout, "timed out <&>\nmore")
        };
        vec![
            Record {
                name: "b::fails".into(),
                outcome: Outcome::Failed(Box::new(failure)),
                vm: Some(vm.clone()),
                duration: Duration::from_millis(1500),
            },
            Record {
                name: "a::passes".into(),
                outcome: Outcome::Passed,
                vm: Some(vm),
                duration: Duration::from_millis(10),
            },
            Record {
                name: "c::skipped".into(),
                outcome: Outcome::Skipped("qemu-system-x not found".into()),
                vm: None,
                duration: Duration::ZERO,
            },
        ]
    }

    #[test]
    fn reports_carry_outcomes_vms_and_evidence() {
        let records = records();
        let suite = Suite {
            package: "my-pkg",
            binary: "vm",
            records: &records,
            time: Duration::from_secs(2),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = suite.write(&dir.path().join("reports")).unwrap();
        assert_eq!(path, dir.path().join("reports/my-pkg.vm.xml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("name"), Some("my-pkg::vm"));
        let counts: Vec<_> = ["tests", "failures", "errors", "skipped"]
            .iter()
            .map(|a| suite.attribute(*a).unwrap())
            .collect();
        assert_eq!(counts, ["3", "1", "0", "1"]);
        let cases: Vec<_> = suite.children().filter(|n| n.is_element()).collect();
        let names: Vec<_> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
        assert_eq!(names, ["a::passes", "b::fails", "c::skipped"]);
        assert_eq!(cases[1].attribute("classname"), Some("my-pkg::vm"));
        assert_eq!(cases[1].attribute("time"), Some("1.500"));

        fn child<'a, 'i>(
            case: roxmltree::Node<'a, 'i>,
            tag: &str,
        ) -> Option<roxmltree::Node<'a, 'i>> {
            case.children().find(|n| n.has_tag_name(tag))
        }
        let failure = child(cases[1], "failure").unwrap();
        assert_eq!(failure.attribute("message"), Some("timed out <&>"));
        assert_eq!(failure.attribute("type"), Some("timeout"));
        assert!(failure.text().unwrap().contains("artifacts: /a/b"));
        let out = child(cases[1], "system-out").unwrap().text().unwrap();
        assert_eq!(out, "SeaBIOS\n\\u{1b}[2Jboot <&>");
        assert_eq!(
            child(cases[1], "system-err").unwrap().text(),
            Some("qemu: warning")
        );
        let props: Vec<(&str, &str)> = child(cases[1], "properties")
            .unwrap()
            .children()
            .filter(|n| n.is_element())
            .map(|p| (p.attribute("name").unwrap(), p.attribute("value").unwrap()))
            .collect();
        assert_eq!(
            props,
            [
                ("machine", "pc"),
                ("arch", "x86_64"),
                ("accel", "tcg"),
                ("qemu", "/usr/bin/qemu-system-x86_64"),
                ("artifacts", "/a/b"),
            ]
        );
        assert!(child(cases[0], "failure").is_none());
        assert!(child(cases[2], "properties").is_none());
        assert_eq!(
            child(cases[2], "skipped").unwrap().attribute("message"),
            Some("qemu-system-x not found")
        );
    }

    #[test]
    fn failures_attach_their_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("console.log"), "x").unwrap();
        std::fs::create_dir(dir.path().join("dest")).unwrap();
        std::fs::write(dir.path().join("dest/qmp.jsonl"), "x").unwrap();
        let failure = Failure {
            artifacts: ArtifactsFate::Kept(dir.path().to_path_buf()),
            console: ConsoleEvidence::Tail("login:".into()),
            ..Failure::new(FailureKind::Error, "boom")
        };
        let records = [Record {
            name: "t".into(),
            outcome: Outcome::Failed(Box::new(failure)),
            vm: None,
            duration: Duration::ZERO,
        }];
        let suite = Suite {
            package: "p",
            binary: "b",
            records: &records,
            time: Duration::ZERO,
        };
        let xml = String::from_utf8(suite.to_xml().unwrap()).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let out = doc
            .descendants()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap();
        let d = dir.path().display();
        assert_eq!(
            out,
            format!("login:\n[[ATTACHMENT|{d}/console.log]]\n[[ATTACHMENT|{d}/dest/qmp.jsonl]]\n")
        );
    }

    #[test]
    fn control_characters_are_spelled_out() {
        assert_eq!(xml_text("a\tb\nc\r"), "a\tb\nc\r");
        assert_eq!(xml_text("\u{1b}[0m\u{0}"), "\\u{1b}[0m\\u{0}");
        assert_eq!(xml_text("ü☃\u{85}"), "ü☃\u{85}");
        assert!(matches!(xml_text("plain"), Cow::Borrowed(_)));
    }
}
