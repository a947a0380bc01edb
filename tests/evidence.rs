//! The evidence a failing test leaves: `screen.png` when its VM has a
//! display (a plain failure, a timeout), none otherwise; `Vm::screendump`.
//! Drives `evidence-fixture` on real QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qemu_test_suite::{isolated, parse_html};
use serde_json::Value;
use tempfile::TempDir;

const FIXTURE: &str = env!("CARGO_BIN_EXE_evidence-fixture");

/// One run of the fixture: exit code, stdout, stderr, artifact root.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    root: TempDir,
}

impl Run {
    /// The artifact dir of `test`.
    fn dir(&self, test: &str) -> PathBuf {
        self.root
            .path()
            .join("qemu-test-suite/evidence-fixture")
            .join(test)
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Reads `timeline.jsonl`: one JSON object per line.
fn timeline(dir: &Path) -> Vec<Value> {
    let path = dir.join("timeline.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The steps named `step`.
fn steps<'a>(timeline: &'a [Value], step: &str) -> Vec<&'a Value> {
    timeline.iter().filter(|s| s["step"] == step).collect()
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let root = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(FIXTURE);
    cmd.args(args);
    let out = isolated(cmd, envs, root.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        root,
    }
}

/// Decodes a PNG: (width, height, how many distinct colours).
fn picture(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let step = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..info.buffer_size()].chunks(step).collect();
    (info.width, info.height, colours.len())
}

#[test]
fn a_failing_or_timed_out_test_with_a_display_keeps_its_screen() {
    let junit = tempfile::tempdir().unwrap();
    let run = run(
        &["screen::"],
        &[("QEMU_TEST_JUNIT", junit.path().to_str().unwrap())],
    );
    run.assert_code(101);
    for test in [
        "screen::fails_with_display",
        "screen::times_out_with_display",
    ] {
        let shot = run.dir(test).join("screen.png");
        assert!(shot.is_file(), "no {}\n{}", shot.display(), run.stdout);
        let (width, height, colours) = picture(&shot);
        // SeaBIOS's text screen: 720x400, text on a background.
        assert!(width >= 640 && height >= 400, "{width}x{height}");
        assert!(colours >= 2, "a blank picture: {test}");
    }
    assert!(run.stdout.contains("timed out after 6 s"), "{}", run.stdout);
    // No display: no picture, and no note about it.
    let blind = run.dir("screen::fails_without_display");
    assert!(blind.join("console.log").is_file(), "{}", run.stdout);
    assert!(!blind.join("screen.png").exists());
    assert!(!run.stdout.contains("no screenshot"), "{}", run.stdout);
    check_report(&run);
    // The JUnit case of a failure attaches its files.
    let xml = junit.path().join("qemu-test-suite.evidence-fixture.xml");
    let xml = std::fs::read_to_string(&xml).unwrap_or_else(|e| panic!("{}: {e}", xml.display()));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("screen::fails_with_display"))
        .expect(&xml);
    let out = case
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect(&xml);
    let shot = run.dir("screen::fails_with_display").join("screen.png");
    assert!(
        out.contains(&format!("[[ATTACHMENT|{}]]", shot.display())),
        "{out}"
    );
}

/// The run's HTML page and the index: every test with its result and
/// duration; each failure with its message, picture, console, QMP
/// transcript, timeline and links to its files.
fn check_report(run: &Run) {
    let report = run.root.path().join("report");
    let path = report.join("qemu-test-suite.evidence-fixture.html");
    let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let page = parse_html(&page);
    let rows: Vec<Vec<String>> = page.find("table")[0]
        .find("tr")
        .iter()
        .skip(1)
        .map(|tr| {
            tr.find("td")
                .iter()
                .map(|td| td.all_text().trim().to_string())
                .collect()
        })
        .collect();
    let summary: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("screen::fails_with_display", "failed (error)"),
            ("screen::fails_without_display", "failed (error)"),
            ("screen::screendump_api", "passed"),
            ("screen::times_out_with_display", "failed (timeout)"),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r[2].ends_with(" s") || r[2].ends_with(" ms")),
        "{rows:?}"
    );
    // The table links each failure to its section.
    let links: Vec<&String> = page.find("table")[0]
        .find("a")
        .iter()
        .map(|a| &a.attributes["href"])
        .collect();
    assert_eq!(links, ["#t0", "#t1", "#t3"]);
    let section = page.by_id("t0").expect("the first failure's section");
    let text = section.all_text();
    for part in [
        "the BIOS found nothing to boot",
        "No bootable device.",
        "screendump",
        "qmp_capabilities",
        "launch.qmp",
        "verdict",
    ] {
        assert!(text.contains(part), "no {part:?} in the section:\n{text}");
    }
    // The picture is in the page.
    let img = &section.find("img")[0];
    let src = img.attributes["src"]
        .strip_prefix("data:image/png;base64,")
        .expect("an inline PNG");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(src)
        .unwrap();
    let shot = run.dir("screen::fails_with_display").join("screen.png");
    assert_eq!(png, std::fs::read(shot).unwrap());
    // The links to the artifacts lead to the files.
    let files: Vec<&String> = section
        .find("li")
        .iter()
        .map(|li| &li.find("a")[0].attributes["href"])
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    for href in files {
        let file = report.join(href.replace("%3A", ":"));
        assert!(file.is_file(), "{href} leads nowhere ({})", file.display());
    }
    assert!(page.by_id("t2").is_none(), "a passing test has no section");
    // The index links the page and lists its tests.
    let index = parse_html(&std::fs::read_to_string(run.root.path().join("index.html")).unwrap());
    let hrefs: Vec<&String> = index
        .find("a")
        .iter()
        .map(|a| &a.attributes["href"])
        .collect();
    assert!(
        hrefs.contains(&&"report/qemu-test-suite.evidence-fixture.html".to_string()),
        "{hrefs:?}"
    );
    assert!(
        hrefs.contains(&&"report/qemu-test-suite.evidence-fixture.html#t3".to_string()),
        "{hrefs:?}"
    );
    assert!(index.all_text().contains("screen::screendump_api"));
    in_a_browser(&path);
}

/// Loads the page in headless Chromium, when it is installed (Debian's
/// `chromium`; not in CI): the browser's DOM has every test, the failure
/// sections and the picture.
fn in_a_browser(page: &Path) {
    let Ok(out) = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
    else {
        eprintln!("note: no chromium here: the page was not loaded in a browser");
        return;
    };
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "screen::times_out_with_display",
        "id=\"t3\"",
        "<img class=\"screen\" src=\"data:image/png;base64,",
    ] {
        assert!(
            dom.contains(part),
            "no {part:?} in the browser's DOM:\n{dom}"
        );
    }
}

#[test]
fn screendump_saves_png_and_ppm_and_says_when_there_is_no_display() {
    let copy = tempfile::tempdir().unwrap();
    let png = copy.path().join("bios.png");
    let run = run(
        &["--exact", "screen::screendump_api"],
        &[("EVIDENCE_COPY_PNG", png.to_str().unwrap())],
    );
    run.assert_code(0);
    let (width, height, colours) = picture(&png);
    assert!(width >= 640 && height >= 400 && colours >= 2);
}

#[test]
fn a_failing_test_keeps_its_timeline() {
    let run = run(&["--exact", "screen::fails_with_display"], &[]);
    run.assert_code(101);
    let timeline = timeline(&run.dir("screen::fails_with_display"));
    assert_eq!(timeline[0]["step"], "start");
    assert_eq!(timeline[0]["test"], "screen::fails_with_display");
    let names: Vec<&str> = timeline
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "queue",
        "launch",
        "launch.spawn",
        "launch.qmp",
        "body",
        "console",
        "screenshot",
        "teardown",
        "verdict",
    ] {
        assert!(names.contains(&step), "no {step} in {names:?}");
    }
    // In the order they started, each with its time.
    let times: Vec<f64> = timeline.iter().map(|s| s["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let wait = steps(&timeline, "console")[0];
    assert_eq!(wait["matched"], "No bootable device.");
    assert!(wait["ms"].as_f64().unwrap() > 0.0);
    let commands: Vec<&Value> = steps(&timeline, "qmp")
        .into_iter()
        .map(|s| &s["command"])
        .collect();
    assert!(
        commands.contains(&&Value::from("screendump")),
        "{commands:?}"
    );
    assert_eq!(steps(&timeline, "verdict")[0]["result"], "error");
    assert_eq!(steps(&timeline, "body")[0]["end"], "failed");
}

#[test]
fn a_failing_linux_test_keeps_the_kernel_log_and_its_commands() {
    let guests = std::env::var("QEMU_TEST_GUESTS_DIR").unwrap_or_default();
    let require = std::env::var("QEMU_TEST_REQUIRE").unwrap_or_default();
    let run = run(
        &["--exact", "linux::fails_after_commands"],
        &[
            ("QEMU_TEST_GUESTS_DIR", &guests),
            ("QEMU_TEST_REQUIRE", &require),
        ],
    );
    if run
        .stderr
        .contains("note: skipping linux::fails_after_commands:")
    {
        eprintln!("{}", run.stderr);
        return;
    }
    run.assert_code(101);
    let dir = run.dir("linux::fails_after_commands");
    let dmesg = std::fs::read_to_string(dir.join("dmesg.txt"))
        .unwrap_or_else(|e| panic!("no dmesg.txt: {e}\n{}", run.stdout));
    assert!(dmesg.contains("Linux version"), "{dmesg}");
    // Below the console's log level: only the whole log has it.
    assert!(dmesg.contains("qemu-test-evidence-marker"), "{dmesg}");
    let timeline = timeline(&dir);
    let shell: Vec<(&str, &Value)> = steps(&timeline, "shell")
        .into_iter()
        .map(|s| (s["command"].as_str().unwrap(), &s["status"]))
        .collect();
    assert_eq!(shell[0], ("echo hello", &Value::from(0)), "{shell:?}");
    assert_eq!(shell[2], ("false", &Value::from(1)), "{shell:?}");
    assert_eq!(shell[3], ("dmesg", &Value::from(0)), "{shell:?}");
    assert!(steps(&timeline, "shell")
        .iter()
        .all(|s| s["ms"].as_f64().unwrap() > 0.0));
    assert!(!steps(&timeline, "shell.ready").is_empty());
    assert_eq!(steps(&timeline, "dmesg")[0]["result"], "saved");
}
