//! Small helpers shared by the commands: finding programs, running them,
//! locating the workspace and its target directory.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command (the one running us, if any) run from the workspace
/// root.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// `true` when running under CI (`CI` set to anything but empty, `0` or
/// `false`, as GitHub Actions, GitLab and most others do).
pub fn is_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        ),
        Err(_) => false,
    }
}

/// `true` when the effective user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn is_executable(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Looks `name` up in the directories of `path_var` (a `PATH`-style list),
/// like the shell's `command -v`.
pub fn find_in(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Looks `name` up on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, &std::env::var_os("PATH")?)
}

/// Looks a QEMU binary up where the framework does: `$QEMU_TEST_QEMU_DIR`
/// first, then `PATH`.
pub fn find_qemu(name: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QEMU_TEST_QEMU_DIR").filter(|d| !d.is_empty()) {
        let candidate = Path::new(&dir).join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
    }
    find_on_path(name)
}

/// A command line for display (quoted the POSIX shell way).
pub fn display(cmd: &Command) -> String {
    // `$CARGO` is a long toolchain path; `cargo` says the same.
    let program = match Path::new(cmd.get_program()).file_name() {
        Some(name) if name == "cargo" => name,
        _ => cmd.get_program(),
    };
    let words = std::iter::once(program)
        .chain(cmd.get_args())
        .map(|w| w.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

/// Runs `cmd` with inherited stdout/stderr, printing it first; an error if
/// it cannot start or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// The first line of `program --version`, if it runs.
pub fn version_line(program: &Path) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The workspace's target directory, as cargo sees it (honours
/// `CARGO_TARGET_DIR` and cargo configuration).
pub fn target_dir() -> PathBuf {
    let fallback = || {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(|d| workspace_root().join(d))
            .unwrap_or_else(|| workspace_root().join("target"))
    };
    match cargo_metadata() {
        Ok(meta) => meta["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(fallback),
        Err(_) => fallback(),
    }
}

/// `cargo metadata --no-deps` for the workspace.
pub fn cargo_metadata() -> Result<serde_json::Value, String> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed ({})", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cannot parse cargo metadata: {e}"))
}

/// Where the framework puts its artifacts: `$QEMU_TEST_ARTIFACTS`, else
/// `<target>/qemu-test`.
pub fn artifacts_root(target: &Path) -> PathBuf {
    match std::env::var_os("QEMU_TEST_ARTIFACTS").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => target.join("qemu-test"),
    }
}

/// A duration for humans: `1.234 s`, `12.3 ms`, `45.6 µs`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_like_command_v() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/true\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap();
        assert_eq!(find_in("tool", &path), Some(exe));
        assert_eq!(find_in("plain", &path), None, "not executable");
        assert_eq!(find_in("missing", &path), None);
        // A directory with the name is not a program.
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        assert_eq!(find_in("subdir", &path), None);
    }

    #[test]
    fn durations_for_humans() {
        assert_eq!(human(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(human(Duration::from_micros(12_340)), "12.34 ms");
        assert_eq!(human(Duration::from_nanos(45_600)), "45.6 µs");
    }
}
