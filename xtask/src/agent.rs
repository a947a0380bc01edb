//! The guest agent (`guests/agent/agent.c`): built as a static binary for
//! each Linux guest architecture, committed in the runtime crate
//! (`qemu-test/src/guest/images/agent-<arch>`), which puts it in the
//! guests' initramfs.
//!
//! The build is reproducible: stripped, no build id, compiled from a copy
//! named `agent.c` in a scratch dir, so no path or date ends up in it. The
//! bytes still depend on the toolchain (the compiler and linker versions,
//! and the static C library linked in: a Debian libc update changes
//! them), so the toolchain that built the committed binaries is recorded
//! beside them (`agent.toolchain.json`). `--check` rebuilds and compares
//! with the same toolchain; with a different one it says it cannot verify
//! (an error under CI, which must have the recorded toolchain).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util;

/// The compiler flags: small, static, stripped, reproducible.
const FLAGS: &[&str] = &[
    "-static",
    "-Os",
    "-s",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wl,--gc-sections",
    "-Wl,--build-id=none",
];

/// Where the source is, from the workspace root.
const SOURCE: &str = "guests/agent/agent.c";

/// Where the binaries and the toolchain record go, from the workspace root.
const IMAGES: &str = "qemu-test/src/guest/images";

/// The toolchain record's file name.
const TOOLCHAIN_FILE: &str = "agent.toolchain.json";

/// One architecture the agent is built for.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The Linux guest architecture.
    pub arch: &'static str,
    /// The cross compiler's name (the host's own `gcc` stands in on that
    /// architecture).
    pub compiler: &'static str,
}

/// The agent's architectures.
pub const TARGETS: &[Target] = &[
    Target {
        arch: "x86_64",
        compiler: "x86_64-linux-gnu-gcc",
    },
    Target {
        arch: "aarch64",
        compiler: "aarch64-linux-gnu-gcc",
    },
];

impl Target {
    /// The binary's file name in the images dir.
    fn output(self) -> String {
        format!("agent-{}", self.arch)
    }

    /// Whether the host is this architecture (its own `gcc` builds for it).
    fn native(self) -> bool {
        std::env::consts::ARCH == self.arch
    }

    /// The compiler to run: the cross compiler, else the host's own on
    /// its architecture.
    pub fn find_compiler(self) -> Option<PathBuf> {
        util::find_on_path(self.compiler)
            .or_else(|| self.native().then(|| util::find_on_path("gcc")).flatten())
    }

    /// The Debian packages of the compiler and of the static C library.
    pub fn packages(self) -> [&'static str; 2] {
        match (self.arch, self.native()) {
            (_, true) => ["gcc", "libc6-dev"],
            ("aarch64", false) => ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
            _ => ["gcc-x86-64-linux-gnu", "libc6-dev-amd64-cross"],
        }
    }
}

/// Whether `compiler` can link a static program: it finds `libc.a`.
pub fn has_static_libc(compiler: &Path) -> bool {
    print_file(compiler, "-print-file-name=libc.a").is_some_and(|p| p.is_absolute() && p.is_file())
}

/// What `compiler -print-…` names, if it runs.
fn print_file(compiler: &Path, flag: &str) -> Option<PathBuf> {
    let out = Command::new(compiler).arg(flag).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then(|| PathBuf::from(text))
}

/// Builds the agent for every architecture. Without `check`, writes the
/// binaries (if changed) and the toolchain record; with `check`, writes
/// nothing and fails if a committed binary differs from a build with the
/// recorded toolchain (a different toolchain is reported as unverifiable,
/// which fails only under CI).
pub fn build(check: bool) -> Result<(), String> {
    let root = util::workspace_root();
    let images = root.join(IMAGES);
    let record_path = images.join(TOOLCHAIN_FILE);
    let recorded: Value = fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let scratch = tempfile::Builder::new()
        .prefix("qemu-test-agent-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch dir: {e}"))?;
    let source = fs::read(root.join(SOURCE)).map_err(|e| format!("cannot read {SOURCE}: {e}"))?;
    fs::write(scratch.path().join("agent.c"), &source)
        .map_err(|e| format!("cannot write to {}: {e}", scratch.path().display()))?;
    let mut record = BTreeMap::new();
    let mut problems = Vec::new();
    for &target in TARGETS {
        let compiler = target.find_compiler().ok_or_else(|| missing(target))?;
        if !has_static_libc(&compiler) {
            return Err(missing(target));
        }
        let toolchain = toolchain(&compiler)?;
        let fresh = compile(&compiler, scratch.path(), target)?;
        let outcome = if check {
            verify(target, &images, &fresh, &toolchain, &recorded[target.arch])
        } else {
            write(target, &images, &fresh)
        };
        match outcome {
            Ok(line) => println!("{line}"),
            Err(problem) => problems.push(problem),
        }
        record.insert(target.arch, toolchain);
    }
    if !check {
        let text = serde_json::to_string_pretty(&record).expect("JSON") + "\n";
        if fs::read_to_string(&record_path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&record_path, text)
                .map_err(|e| format!("cannot write {}: {e}", record_path.display()))?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The error for a missing compiler or C library, with the fix.
fn missing(target: Target) -> String {
    format!(
        "building the {} agent needs a C compiler with a static C library (Debian packages {}); \
         `cargo xtask setup --guests` installs them",
        target.arch,
        target.packages().join(" ")
    )
}

/// Compiles the agent for `target` in `dir` (holding `agent.c`).
fn compile(compiler: &Path, dir: &Path, target: Target) -> Result<Vec<u8>, String> {
    let output = target.output();
    let mut cmd = Command::new(compiler);
    cmd.current_dir(dir)
        .env("LC_ALL", "C")
        .args(FLAGS)
        .args(["-o", &output, "agent.c"]);
    let shown = util::display(&cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::read(dir.join(&output)).map_err(|e| format!("cannot read the built {output}: {e}"))
}

/// What the bytes of a build depend on besides the source and the flags.
fn toolchain(compiler: &Path) -> Result<Value, String> {
    let hash = |flag: &str| -> Result<String, String> {
        let path = print_file(compiler, flag)
            .filter(|p| p.is_file())
            .ok_or_else(|| format!("{} {flag} names no file", compiler.display()))?;
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(sha256_hex(&bytes))
    };
    let linker = print_file(compiler, "-print-prog-name=ld").unwrap_or_else(|| "ld".into());
    Ok(json!({
        "compiler": util::version_line(compiler).unwrap_or_default(),
        "linker": util::version_line(&linker).unwrap_or_default(),
        "libc.a sha256": hash("-print-file-name=libc.a")?,
        "libgcc.a sha256": hash("-print-libgcc-file-name")?,
    }))
}

/// Checks the committed binary against a fresh build.
fn verify(
    target: Target,
    images: &Path,
    fresh: &[u8],
    toolchain: &Value,
    recorded: &Value,
) -> Result<String, String> {
    let shown = format!("{IMAGES}/{}", target.output());
    let committed = fs::read(images.join(target.output()))
        .map_err(|e| format!("{shown} cannot be read ({e}); build it with `cargo xtask guests`"))?;
    if toolchain != recorded {
        let why = format!(
            "{shown}: toolchain differs, cannot verify (recorded in {IMAGES}/{TOOLCHAIN_FILE} → here: {})",
            differences(recorded, toolchain)
        );
        return if util::is_ci() {
            Err(format!("{why} (CI must verify: give it the recorded toolchain, or rebuild and commit the agents)"))
        } else {
            Ok(format!("{why} (not an error outside CI)"))
        };
    }
    if committed == fresh {
        Ok(format!("{shown}: up to date ({} bytes)", fresh.len()))
    } else {
        Err(format!(
            "{shown} is stale (does not match {SOURCE} built with the recorded toolchain); \
             rebuild with `cargo xtask guests` and commit the result"
        ))
    }
}

/// What differs between two toolchain records, field by field.
fn differences(recorded: &Value, here: &Value) -> String {
    let Some(fields) = here.as_object() else {
        return "nothing recorded".into();
    };
    if !recorded.is_object() {
        return "nothing recorded for this architecture".into();
    }
    fields
        .iter()
        .filter(|(key, value)| recorded.get(key.as_str()) != Some(value))
        .map(|(key, value)| format!("{key}: {} → {value}", recorded[key.as_str()]))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes the fresh binary if it changed.
fn write(target: Target, images: &Path, fresh: &[u8]) -> Result<String, String> {
    let shown = format!("{IMAGES}/{}", target.output());
    let path = images.join(target.output());
    if fs::read(&path).ok().as_deref() == Some(fresh) {
        return Ok(format!("{shown}: unchanged ({} bytes)", fresh.len()));
    }
    fs::write(&path, fresh).map_err(|e| format!("cannot write {shown}: {e}"))?;
    Ok(format!("{shown}: written ({} bytes)", fresh.len()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
