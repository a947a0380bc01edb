//! The evidence a failing test leaves: `screen.png` when its VM has a
//! display (a plain failure, a timeout), none otherwise; `Vm::screendump`.
//! Drives `evidence-fixture` on real QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qemu_test_suite::isolated;
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
