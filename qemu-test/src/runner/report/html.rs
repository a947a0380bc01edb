//! The HTML report: one self-contained page per test binary run, and an
//! index of the pages (where they go and how nextest's processes share
//! them: [`pages`](super::pages)).
//!
//! A page lists every test with its result and duration, then shows each
//! failure with its evidence, so that a person reads one page instead of
//! opening five files: the failure message, the screenshot (inline, if
//! the artifact dir has `screen.png`), the console's last lines, QEMU's
//! last words, the end of the QMP transcript, the timeline, and links to
//! every file of the artifact dir. It reads [`Entry`] fields (made from
//! each test's [`Record`]) and the files
//! of kept artifact dirs, never a VM. Styles and pictures are inside the
//! page: it can be mailed or attached to a CI run as one file (the links
//! to the artifacts work next to the artifact root).
//!
//! The page is written with `quick-xml` (well-formed, every text escaped);
//! characters XML cannot carry (a console's escape sequences) are spelled
//! out as `\u{1b}`.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use quick_xml::events::{BytesText, Event};
use quick_xml::Writer;
use serde_json::{json, Value};

use super::junit::xml_text;
use crate::runner::outcome::{ConsoleEvidence, Outcome, Record};

type Html = Writer<Vec<u8>>;

/// One test as the pages show it: what its [`Record`] says, in a form a
/// later process can read back (nextest).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// `passed`, `failed` or `skipped`.
    pub(crate) result: String,
    /// The failure's kind (`timeout`, `guest_crash`...).
    pub(crate) kind: Option<String>,
    /// The skip's reason, or the failure's reason and notes.
    pub(crate) message: Option<String>,
    /// The console's last lines (a failure whose reason does not end with
    /// them already).
    pub(crate) console: Option<String>,
    /// QEMU's last words (a failure).
    pub(crate) qemu_output: Option<String>,
    /// Which VM: `machine pc, arch x86_64, accel tcg, qemu ...`.
    pub(crate) vm: Option<String>,
    /// The kept artifact dir.
    pub(crate) artifacts: Option<PathBuf>,
    pub(crate) duration_ms: f64,
}

impl Entry {
    /// The entry of a finished (or skipped) test.
    pub(crate) fn of(record: &Record) -> Entry {
        let mut entry = Entry {
            name: record.name.clone(),
            result: String::new(),
            kind: None,
            message: None,
            console: None,
            qemu_output: None,
            vm: record.vm.as_ref().map(ToString::to_string),
            artifacts: None,
            duration_ms: record.duration.as_secs_f64() * 1000.0,
        };
        match &record.outcome {
            Outcome::Passed => entry.result = "passed".into(),
            Outcome::Skipped(reason) => {
                entry.result = "skipped".into();
                entry.message = Some(reason.clone());
            }
            Outcome::Failed(failure) => {
                entry.result = "failed".into();
                entry.kind = Some(failure.kind.name().into());
                let mut message = failure.reason.trim_end().to_string();
                for note in &failure.notes {
                    message.push_str(&format!("\nnote: {note}"));
                }
                entry.message = Some(message);
                entry.console = match &failure.console {
                    ConsoleEvidence::Tail(tail) => Some(tail.clone()),
                    ConsoleEvidence::None | ConsoleEvidence::InReason { .. } => None,
                };
                entry.qemu_output = failure.qemu_output.clone();
                entry.artifacts = failure.artifact_dir().cloned();
            }
        }
        entry
    }

    /// Whether it failed.
    pub(crate) fn failed(&self) -> bool {
        self.result == "failed"
    }

    /// The entry as JSON, for a later process to read back.
    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({
            "name": self.name,
            "result": self.result,
            "duration_ms": self.duration_ms,
        });
        let optional = [
            ("kind", self.kind.clone()),
            ("message", self.message.clone()),
            ("console", self.console.clone()),
            ("qemu_output", self.qemu_output.clone()),
            ("vm", self.vm.clone()),
            (
                "artifacts",
                self.artifacts.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        for (key, text) in optional {
            if let Some(text) = text {
                value[key] = text.into();
            }
        }
        value
    }

    /// An entry [`Entry::to_json`] wrote; `None` if `value` is not one.
    pub(crate) fn from_json(value: &Value) -> Option<Entry> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
        Some(Entry {
            name: text("name")?,
            result: text("result")?,
            kind: text("kind"),
            message: text("message"),
            console: text("console"),
            qemu_output: text("qemu_output"),
            vm: text("vm"),
            artifacts: text("artifacts").map(PathBuf::from),
            duration_ms: value.get("duration_ms")?.as_f64()?,
        })
    }
}

impl Run {
    /// The run as JSON, for the index to read back.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "package": self.package,
            "binary": self.binary,
            "finished": self.finished,
            "seconds": self.seconds,
            "page": self.page,
            "entries": self.entries.iter().map(Entry::to_json).collect::<Vec<_>>(),
        })
    }

    /// A run [`Run::to_json`] wrote; `None` if `value` is not one.
    pub(crate) fn from_json(value: &Value) -> Option<Run> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
        let number = |key: &str| value.get(key)?.as_f64();
        let entries = value.get("entries")?.as_array()?;
        Some(Run {
            package: text("package")?,
            binary: text("binary")?,
            finished: number("finished")?,
            seconds: number("seconds")?,
            page: text("page")?,
            entries: entries
                .iter()
                .map(Entry::from_json)
                .collect::<Option<_>>()?,
        })
    }
}

/// One binary's run: what its page and the index show.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub(crate) package: String,
    pub(crate) binary: String,
    /// When it finished, in Unix seconds.
    pub(crate) finished: f64,
    /// Its wall time, in seconds (under nextest: the sum of its tests').
    pub(crate) seconds: f64,
    /// Its page's file name, in the report dir.
    pub(crate) page: String,
    /// The tests, sorted by name.
    pub(crate) entries: Vec<Entry>,
}

/// At most this many QMP messages, the last ones, are shown.
const QMP_LINES: usize = 200;
/// At most this many timeline steps, the first ones, are shown.
const TIMELINE_STEPS: usize = 300;
/// A longer QMP message or timeline detail is cut.
const LINE_CHARS: usize = 400;
/// A larger screenshot is linked, not put inside the page.
const MAX_INLINE_PICTURE: u64 = 8 << 20;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}\
td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left;vertical-align:top}\
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;white-space:pre-wrap}\
.passed{color:#176f2c}.failed{color:#b00020;font-weight:bold}.skipped{color:#8a6d00}\
section.failure{border-top:2px solid #b00020;margin-top:2em}\
img.screen{max-width:100%;border:1px solid #888}\
td.num{text-align:right;font-variant-numeric:tabular-nums}";

/// The page of one binary's run; `dir` is where it is written (links to
/// the artifacts are relative to it).
pub(crate) fn page(run: &Run, dir: &Path) -> io::Result<String> {
    let title = format!("{}::{}", run.package, run.binary);
    document(&title, |w| {
        heading(w, "h1", &title)?;
        paragraph(w, &summary(run))?;
        tests_table(w, run, None)?;
        for (i, entry) in run.entries.iter().enumerate() {
            if entry.failed() {
                failure(w, i, entry, dir)?;
            }
        }
        Ok(())
    })
}

/// The index of every binary's page (`runs`, most recent first), written
/// next to the report dir.
pub(crate) fn index(runs: &[Run]) -> io::Result<String> {
    document("qemu-test reports", |w| {
        heading(w, "h1", "qemu-test reports")?;
        if runs.is_empty() {
            paragraph(w, "No test binary has written a report yet.")?;
        }
        for run in runs {
            let page = format!("report/{}", encode(&run.page));
            w.create_element("h2").write_inner_content(|w| {
                link(w, &page, &format!("{}::{}", run.package, run.binary))
            })?;
            paragraph(w, &summary(run))?;
            tests_table(w, run, Some(&page))?;
        }
        Ok(())
    })
}

/// `<!DOCTYPE html>` and the page around what `body` writes.
fn document(title: &str, body: impl FnOnce(&mut Html) -> io::Result<()>) -> io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 1);
    w.write_event(Event::DocType(BytesText::from_escaped("html")))?;
    w.create_element("html")
        .with_attribute(("lang", "en"))
        .write_inner_content(|w| {
            w.create_element("head").write_inner_content(|w| {
                w.create_element("meta")
                    .with_attribute(("charset", "utf-8"))
                    .write_empty()?;
                text_element(w, "title", title)?;
                w.create_element("style")
                    .write_text_content(BytesText::from_escaped(STYLE))?;
                Ok(())
            })?;
            w.create_element("body").write_inner_content(body)?;
            Ok(())
        })?;
    let mut html = String::from_utf8_lossy(&w.into_inner()).into_owned();
    html.push('\n');
    Ok(html)
}

/// `12 tests: 10 passed, 1 failed, 1 skipped · 34.5 s · finished 2026-...`.
fn summary(run: &Run) -> String {
    let count = |result: &str| run.entries.iter().filter(|e| e.result == result).count();
    let finished = UNIX_EPOCH + Duration::from_secs_f64(run.finished.max(0.0));
    format!(
        "{} tests: {} passed, {} failed, {} skipped · {} · finished {}",
        run.entries.len(),
        count("passed"),
        count("failed"),
        count("skipped"),
        duration(run.seconds * 1000.0),
        humantime::format_rfc3339_seconds(finished),
    )
}

/// The table of tests: name (linking to its failure, on `page` if the
/// table is not on it), result, duration, VM.
fn tests_table(w: &mut Html, run: &Run, page: Option<&str>) -> io::Result<()> {
    w.create_element("table")
        .with_attribute(("class", "tests"))
        .write_inner_content(|w| {
            w.create_element("tr").write_inner_content(|w| {
                for head in ["test", "result", "duration"] {
                    text_element(w, "th", head)?;
                }
                Ok(())
            })?;
            for (i, entry) in run.entries.iter().enumerate() {
                test_row(w, i, entry, page)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// One row of the tests table.
fn test_row(w: &mut Html, i: usize, entry: &Entry, page: Option<&str>) -> io::Result<()> {
    let result = match (&entry.kind, &entry.message) {
        (Some(kind), _) => format!("failed ({kind})"),
        (None, Some(reason)) if entry.result == "skipped" => format!("skipped: {reason}"),
        _ => entry.result.clone(),
    };
    w.create_element("tr").write_inner_content(|w| {
        w.create_element("td").write_inner_content(|w| {
            if entry.failed() {
                let target = format!("{}#t{i}", page.unwrap_or(""));
                link(w, &target, &entry.name)
            } else {
                text(w, &entry.name)
            }
        })?;
        w.create_element("td")
            .with_attribute(("class", entry.result.as_str()))
            .write_text_content(BytesText::new(&xml_text(&result)))?;
        w.create_element("td")
            .with_attribute(("class", "num"))
            .write_text_content(BytesText::new(&duration(entry.duration_ms)))?;
        Ok(())
    })?;
    Ok(())
}

/// One failure's section: its message and its evidence.
fn failure(w: &mut Html, i: usize, entry: &Entry, dir: &Path) -> io::Result<()> {
    let id = format!("t{i}");
    w.create_element("section")
        .with_attributes([("class", "failure"), ("id", id.as_str())])
        .write_inner_content(|w| {
            heading(w, "h2", &entry.name)?;
            if let Some(vm) = &entry.vm {
                paragraph(w, vm)?;
            }
            preformatted(w, "Failure", entry.message.as_deref().unwrap_or("failed"))?;
            let artifacts = entry.artifacts.as_deref();
            if let Some(artifacts) = artifacts {
                screenshot(w, &entry.name, artifacts, dir)?;
            }
            if let Some(console) = &entry.console {
                preformatted(w, "Console (last lines)", console)?;
            }
            if let Some(output) = &entry.qemu_output {
                preformatted(w, "QEMU output (last lines)", output)?;
            }
            if let Some(artifacts) = artifacts {
                transcript(w, artifacts)?;
                timeline(w, artifacts)?;
                files(w, artifacts, dir)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// `screen.png`, inside the page (or linked, if huge).
fn screenshot(w: &mut Html, test: &str, artifacts: &Path, dir: &Path) -> io::Result<()> {
    let path = artifacts.join("screen.png");
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(());
    };
    heading(w, "h3", "Screen")?;
    if meta.len() > MAX_INLINE_PICTURE {
        return w
            .create_element("p")
            .write_inner_content(|w| link(w, &href(&path, dir), "screen.png"))
            .map(drop);
    }
    let Ok(png) = std::fs::read(&path) else {
        return Ok(());
    };
    let src = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    let alt = format!("the display of {test} when it failed");
    w.create_element("img")
        .with_attributes([
            ("class", "screen"),
            ("src", src.as_str()),
            ("alt", xml_text(&alt).as_ref()),
        ])
        .write_empty()?;
    Ok(())
}

/// The last [`QMP_LINES`] messages of `qmp.jsonl`: time since the first
/// message, direction, message.
fn transcript(w: &mut Html, artifacts: &Path) -> io::Result<()> {
    let Ok(text) = std::fs::read_to_string(artifacts.join("qmp.jsonl")) else {
        return Ok(());
    };
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(first) = lines.first().and_then(|l| l["time"].as_f64()) else {
        return Ok(());
    };
    let skipped = lines.len().saturating_sub(QMP_LINES);
    let mut shown = String::new();
    if skipped > 0 {
        shown.push_str(&format!("({skipped} earlier messages in qmp.jsonl)\n"));
    }
    for line in &lines[skipped..] {
        let at = line["time"].as_f64().unwrap_or(first) - first;
        let arrow = if line["dir"] == "send" { "→" } else { "←" };
        let body = match line.get("msg") {
            Some(msg) => msg.to_string(),
            None => line["raw"].as_str().unwrap_or_default().to_string(),
        };
        shown.push_str(&format!("{at:>9.3} s {arrow} {}\n", cut(&body)));
    }
    preformatted(w, "QMP transcript", &shown)
}

/// The first [`TIMELINE_STEPS`] steps of `timeline.jsonl`, as a table.
fn timeline(w: &mut Html, artifacts: &Path) -> io::Result<()> {
    let Ok(text) = std::fs::read_to_string(artifacts.join("timeline.jsonl")) else {
        return Ok(());
    };
    let steps: Vec<serde_json::Map<String, Value>> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    heading(w, "h3", "Timeline")?;
    w.create_element("table").write_inner_content(|w| {
        w.create_element("tr").write_inner_content(|w| {
            for head in ["t (s)", "step", "ms", "detail"] {
                text_element(w, "th", head)?;
            }
            Ok(())
        })?;
        for step in steps.iter().take(TIMELINE_STEPS) {
            timeline_row(w, step)?;
        }
        Ok(())
    })?;
    if steps.len() > TIMELINE_STEPS {
        let more = steps.len() - TIMELINE_STEPS;
        paragraph(w, &format!("({more} more steps in timeline.jsonl)"))?;
    }
    Ok(())
}

/// One step: its start, name, duration and the rest of its fields.
fn timeline_row(w: &mut Html, step: &serde_json::Map<String, Value>) -> io::Result<()> {
    let field = |k: &str| match step.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let detail: Vec<String> = step
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "t" | "step" | "ms"))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            v => format!("{k}: {v}"),
        })
        .collect();
    w.create_element("tr").write_inner_content(|w| {
        for (value, class) in [
            (field("t"), "num"),
            (field("step"), ""),
            (field("ms"), "num"),
        ] {
            w.create_element("td")
                .with_attribute(("class", class))
                .write_text_content(BytesText::new(&value))?;
        }
        text_element(w, "td", &cut(&detail.join(", ")))?;
        Ok(())
    })?;
    Ok(())
}

/// Links to every file of the artifact dir (and of its siblings' dirs).
fn files(w: &mut Html, artifacts: &Path, dir: &Path) -> io::Result<()> {
    let mut found = Vec::new();
    list_files(artifacts, artifacts, 2, &mut found);
    found.sort();
    heading(w, "h3", "Artifacts")?;
    w.create_element("p").write_inner_content(|w| {
        link(w, &href(artifacts, dir), &artifacts.display().to_string())
    })?;
    w.create_element("ul").write_inner_content(|w| {
        for (relative, size) in &found {
            w.create_element("li").write_inner_content(|w| {
                let label = relative.display().to_string();
                link(w, &href(&artifacts.join(relative), dir), &label)?;
                text(w, &format!(" ({})", bytes(*size)))
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The files under `dir` (down to `depth` levels) as paths relative to
/// `base`, with their sizes.
fn list_files(base: &Path, dir: &Path, depth: u32, found: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() && depth > 1 {
            list_files(base, &path, depth - 1, found);
        } else if meta.is_file() {
            if let Ok(relative) = path.strip_prefix(base) {
                found.push((relative.to_path_buf(), meta.len()));
            }
        }
    }
}

/// A link to `path` from a page in `dir`: relative when both are under
/// one root, else a `file://` URL; each part percent-encoded.
fn href(path: &Path, dir: &Path) -> String {
    match relative(path, dir) {
        Some(relative) => relative
            .components()
            .map(|c| match c {
                Component::ParentDir => "..".to_string(),
                other => encode(&other.as_os_str().to_string_lossy()),
            })
            .collect::<Vec<_>>()
            .join("/"),
        None => format!(
            "file://{}",
            path.components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(encode(&part.to_string_lossy())),
                    _ => None,
                })
                .fold(String::new(), |url, part| url + "/" + &part)
        ),
    }
}

/// `path` relative to `dir`, when they share a parent (`dir/../x`).
fn relative(path: &Path, dir: &Path) -> Option<PathBuf> {
    let mut up = PathBuf::new();
    let mut base = dir;
    for _ in 0..2 {
        if let Ok(rest) = path.strip_prefix(base) {
            return Some(up.join(rest));
        }
        up.push("..");
        base = base.parent()?;
    }
    None
}

/// Characters a path segment must not hold as they are in a URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A URL path segment for `part`.
fn encode(part: &str) -> String {
    utf8_percent_encode(part, SEGMENT).to_string()
}

fn heading(w: &mut Html, level: &str, title: &str) -> io::Result<()> {
    text_element(w, level, title)
}

fn paragraph(w: &mut Html, content: &str) -> io::Result<()> {
    text_element(w, "p", content)
}

/// A heading and `content` in a `<pre>`.
fn preformatted(w: &mut Html, title: &str, content: &str) -> io::Result<()> {
    heading(w, "h3", title)?;
    text_element(w, "pre", content.trim_end())
}

fn text_element(w: &mut Html, name: &str, content: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(&xml_text(content)))?;
    Ok(())
}

fn text(w: &mut Html, content: &str) -> io::Result<()> {
    w.write_event(Event::Text(BytesText::new(&xml_text(content))))?;
    Ok(())
}

fn link(w: &mut Html, target: &str, label: &str) -> io::Result<()> {
    w.create_element("a")
        .with_attribute(("href", target))
        .write_text_content(BytesText::new(&xml_text(label)))?;
    Ok(())
}

/// `line` cut to [`LINE_CHARS`] characters.
fn cut(line: &str) -> String {
    crate::timeline::excerpt(line, LINE_CHARS)
}

/// `12 ms`, `3.45 s`, `2 min 5 s`.
fn duration(ms: f64) -> String {
    match ms {
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms if ms < 120_000.0 => format!("{:.2} s", ms / 1000.0),
        ms => {
            let s = (ms / 1000.0).round() as u64;
            format!("{} min {} s", s / 60, s % 60)
        }
    }
}

/// `512 B`, `12.3 KiB`, `4.0 MiB`.
fn bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_under_one_root_and_encoded() {
        let dir = Path::new("/t/qemu-test/report");
        assert_eq!(
            href(Path::new("/t/qemu-test/pkg/bin/m::a b/console.log"), dir),
            "../pkg/bin/m%3A%3Aa%20b/console.log"
        );
        assert_eq!(
            href(Path::new("/elsewhere/x#1/qmp.jsonl"), dir),
            "file:///elsewhere/x%231/qmp.jsonl"
        );
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(12.4), "12 ms");
        assert_eq!(duration(3456.0), "3.46 s");
        assert_eq!(duration(125_000.0), "2 min 5 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024 + 300), "12.3 KiB");
    }

    #[test]
    fn a_page_escapes_what_it_shows() {
        let run = Run {
            package: "p".into(),
            binary: "b".into(),
            finished: 0.0,
            seconds: 1.0,
            page: "p.b.html".into(),
            entries: vec![Entry {
                name: "m::t".into(),
                result: "failed".into(),
                kind: Some("error".into()),
                message: Some("<script>&\u{1b}[0m".into()),
                console: None,
                qemu_output: None,
                vm: None,
                artifacts: None,
                duration_ms: 5.0,
            }],
        };
        let page = page(&run, Path::new("/r/report")).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("&lt;script&gt;&amp;\\u{1b}[0m"), "{page}");
        assert!(!page.contains("<script>"));
    }
}
