//! Building the built-in bare-metal test guests (`guests/*/`) from their
//! assembly sources with GNU binutils (and, through [`crate::agent`], the
//! Linux guests' agent from its C source).
//!
//! The binaries are committed (the `qemu-test` crate embeds them with
//! `include_bytes!`), so users never need a cross assembler. This module
//! rebuilds them, or checks that the committed files match their sources.
//! The build is deterministic: no build ids, no timestamps, no debug info,
//! and `objcopy -O binary` keeps only the bytes of the single `.text`
//! section, so the same sources always give the same bytes.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which binutils a guest needs.
#[derive(Clone, Copy)]
enum Arch {
    Aarch64,
    X86,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86 => "x86",
        }
    }

    /// Tool name prefixes to try, best first. The unprefixed host tools only
    /// qualify when the host is the right architecture.
    fn prefixes(self) -> Vec<&'static str> {
        match self {
            Arch::Aarch64 => {
                let mut p = vec!["aarch64-linux-gnu-"];
                if cfg!(target_arch = "aarch64") {
                    p.push("");
                }
                p
            }
            Arch::X86 => {
                let mut p = vec![];
                if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
                    p.push("");
                }
                p.push("x86_64-linux-gnu-");
                p
            }
        }
    }

    /// The Debian/Ubuntu package with the cross binutils.
    fn package(self) -> &'static str {
        match self {
            Arch::Aarch64 => "binutils-aarch64-linux-gnu",
            Arch::X86 => "binutils-x86-64-linux-gnu",
        }
    }

    fn as_args(self) -> &'static [&'static str] {
        match self {
            Arch::Aarch64 => &[],
            Arch::X86 => &["--32"],
        }
    }

    fn ld_args(self) -> &'static [&'static str] {
        match self {
            Arch::Aarch64 => &["--build-id=none"],
            Arch::X86 => &["-m", "elf_i386", "--build-id=none"],
        }
    }
}

/// One built-in guest: `guests/<dir>/<source>` linked with `<script>` into
/// `guests/<dir>/<output>`.
struct BuiltinGuest {
    dir: &'static str,
    source: &'static str,
    script: &'static str,
    output: &'static str,
    arch: Arch,
    /// Exact image size, if fixed (firmware images must fill the ROM).
    size: Option<usize>,
}

const GUESTS: &[BuiltinGuest] = &[
    BuiltinGuest {
        dir: "echo-shell-aarch64",
        source: "echo.S",
        script: "echo.ld",
        output: "echo-shell-aarch64.bin",
        arch: Arch::Aarch64,
        size: None,
    },
    BuiltinGuest {
        dir: "serial-ports-x86_64",
        source: "ports.S",
        script: "ports.ld",
        output: "serial-ports-x86_64.bin",
        arch: Arch::X86,
        size: Some(64 * 1024),
    },
];

/// The assembler, linker and objcopy for one architecture.
struct Tools {
    assembler: String,
    linker: String,
    objcopy: String,
}

/// Assembles every built-in guest from source.
///
/// With `check == false` the fresh images are written to
/// `guests/<name>/<name>.bin` (only if they changed). With `check == true`
/// nothing is written; the committed images must be byte-identical to a
/// fresh build, else the error names each stale (or missing) file.
///
/// Missing cross binutils are reported with the exact `apt-get` command to
/// install them; when running as root they are installed right away.
pub fn build_builtin(check: bool) -> Result<(), String> {
    let root = workspace_root();
    let guests_dir = root.join("guests");
    let scratch =
        std::env::temp_dir().join(format!("qemu-test-xtask-guests-{}", std::process::id()));
    fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let images_dir = root.join("qemu-test/src/guest/images");
    let result = build_all(&guests_dir, &images_dir, &scratch, check);
    let _ = fs::remove_dir_all(&scratch);
    result?;
    crate::agent::build(check)
}

fn build_all(
    guests_dir: &Path,
    images_dir: &Path,
    scratch: &Path,
    check: bool,
) -> Result<(), String> {
    let mut stale = Vec::new();
    for guest in GUESTS {
        let tools = find_tools(guest.arch)?;
        let dir = guests_dir.join(guest.dir);
        let fresh = assemble(guest, &tools, &dir, scratch)?;
        // The images live in the crate that embeds them.
        let target = images_dir.join(guest.output);
        let display = format!("qemu-test/src/guest/images/{}", guest.output);
        let committed = match fs::read(&target) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {display}: {e}")),
        };
        let up_to_date = committed.as_deref() == Some(&fresh[..]);
        if check {
            if up_to_date {
                println!("{display}: up to date ({} bytes)", fresh.len());
            } else if committed.is_none() {
                stale.push(format!("{display} is missing"));
            } else {
                stale.push(format!(
                    "{display} is stale (does not match {})",
                    guest.source
                ));
            }
        } else if up_to_date {
            println!("{display}: unchanged ({} bytes)", fresh.len());
        } else {
            fs::write(&target, &fresh).map_err(|e| format!("cannot write {display}: {e}"))?;
            println!("{display}: written ({} bytes)", fresh.len());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}; rebuild with `cargo xtask guests` and commit the result",
            stale.join("; ")
        ))
    }
}

/// `xtask/..`: the workspace root.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join(".."))
}

/// Assembles, links and flattens one guest; returns the image bytes.
fn assemble(
    guest: &BuiltinGuest,
    tools: &Tools,
    dir: &Path,
    scratch: &Path,
) -> Result<Vec<u8>, String> {
    let object = scratch.join(format!("{}.o", guest.dir));
    let elf = scratch.join(format!("{}.elf", guest.dir));
    let image = scratch.join(format!("{}.bin", guest.dir));

    let mut cmd = Command::new(&tools.assembler);
    cmd.args(guest.arch.as_args())
        .arg("-o")
        .arg(&object)
        .arg(dir.join(guest.source));
    run(cmd)?;

    let mut cmd = Command::new(&tools.linker);
    cmd.args(guest.arch.ld_args())
        .arg("-T")
        .arg(dir.join(guest.script))
        .arg("-o")
        .arg(&elf)
        .arg(&object);
    run(cmd)?;

    let mut cmd = Command::new(&tools.objcopy);
    cmd.args(["-O", "binary"]).arg(&elf).arg(&image);
    run(cmd)?;

    let bytes = fs::read(&image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    if bytes.is_empty() {
        return Err(format!(
            "guests/{}: the build produced an empty image",
            guest.dir
        ));
    }
    if let Some(size) = guest.size {
        if bytes.len() != size {
            return Err(format!(
                "guests/{}: image is {} bytes, expected exactly {size}",
                guest.dir,
                bytes.len()
            ));
        }
    }
    Ok(bytes)
}

/// Runs a tool, turning a failure into an error with its output.
fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Finds binutils for `arch`, installing them first if they are missing
/// and we are root.
fn find_tools(arch: Arch) -> Result<Tools, String> {
    if let Some(tools) = probe_tools(arch) {
        return Ok(tools);
    }
    let package = arch.package();
    let install = format!("apt-get install -y --no-install-recommends {package}");
    eprintln!(
        "The {} binutils (as, ld, objcopy) needed to build the test guests are missing.",
        arch.name()
    );
    if !is_root() {
        eprintln!("Install them with:\n    sudo {install}");
        return Err(format!(
            "missing {} binutils; run `sudo {install}`",
            arch.name()
        ));
    }
    eprintln!("Running as root; installing them with:\n    {install}");
    if !apt_get_install(package) {
        // The package lists may simply be missing or out of date.
        eprintln!("Retrying after `apt-get update`.");
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        let _ = update.status();
        if !apt_get_install(package) {
            return Err(format!("`{install}` failed"));
        }
    }
    probe_tools(arch).ok_or_else(|| format!("{package} is installed but its tools were not found"))
}

fn apt_get_install(package: &str) -> bool {
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive");
    matches!(cmd.status(), Ok(status) if status.success())
}

fn probe_tools(arch: Arch) -> Option<Tools> {
    arch.prefixes().into_iter().find_map(|prefix| {
        let tools = Tools {
            assembler: format!("{prefix}as"),
            linker: format!("{prefix}ld"),
            objcopy: format!("{prefix}objcopy"),
        };
        let all = [&tools.assembler, &tools.linker, &tools.objcopy];
        all.iter().all(|tool| runs(tool)).then_some(tools)
    })
}

/// Whether `tool --version` runs successfully.
fn runs(tool: &str) -> bool {
    matches!(Command::new(tool).arg("--version").output(), Ok(out) if out.status.success())
}

fn is_root() -> bool {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0"); // effective uid
        }
    }
    matches!(Command::new("id").arg("-u").output(), Ok(out) if out.status.success() && out.stdout.trim_ascii() == b"0")
}
