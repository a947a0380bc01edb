//! The evidence a failing test leaves: `screen.png` when its VM has a
//! display (a plain failure, a timeout), none otherwise; `Vm::screendump`.
//! Drives `evidence-fixture` on real QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qemu_test_suite::isolated;
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
    let run = run(&["screen::"], &[]);
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
