//! A test's host shares and host programs, from its spec: each VM gets a
//! 9p device per `shares = [...]` entry, plus, on a guest whose kernel has
//! 9p, the test's read-only program dir (`<artifacts>/host/`, mounted at
//! [`HOST_DIR`] in the guest), where [`install`] puts host programs and
//! the shared libraries they need. The Linux guest mounts them through its
//! shell, after a boot and after a restore alike (the devices were
//! hot-plugged then: a mounted export would have blocked the save).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{BoxError, NetError};
use crate::machine::{Machine, Share};
use crate::shell::Shell;
use crate::spec::{ShareSpec, VmSpec};

/// Where the test's program dir is mounted in the guest.
pub const HOST_DIR: &str = "/run/qemu-test/host";
/// The program dir's mount tag.
const HOST_TAG: &str = "qemu-test-host";
/// The 9p mount options: big messages make big reads and writes fast.
const MOUNT_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=512000";
/// How long a hot-plugged share may take to appear in the guest.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the spec's guest can mount 9p shares (its kernel has them).
pub(crate) fn guest_has_9p(spec: &VmSpec) -> bool {
    spec.builtin_guest()
        .and_then(|g| g.linux())
        .is_some_and(|linux| linux.has_9p())
}

/// The test's program dir, made in `artifacts` if the guest can mount it.
pub(crate) fn program_dir(spec: &VmSpec, artifacts: &Path) -> std::io::Result<Option<PathBuf>> {
    if !guest_has_9p(spec) {
        return Ok(None);
    }
    let dir = artifacts.join("host");
    std::fs::create_dir_all(&dir)?;
    Ok(Some(dir))
}

/// The host directory of a share: as given, or relative to `cwd`. A
/// read-write share's is made if missing; a read-only share's must exist.
fn host_dir(share: &ShareSpec, cwd: &Path) -> Result<PathBuf, NetError> {
    let path = cwd.join(&share.host);
    if !share.read_only && !path.exists() {
        std::fs::create_dir_all(&path).map_err(|e| NetError::Share {
            path: path.clone(),
            why: format!("cannot make it: {e}"),
        })?;
    }
    match path.is_dir() {
        true => Ok(path),
        false => Err(NetError::Share {
            path,
            why: "it is not a directory (a relative path is taken from the directory the tests \
                  run in)"
                .into(),
        }),
    }
}

/// Gives `machine` its 9p devices: the spec's shares, then the program dir.
pub(crate) fn attach(
    machine: &mut Machine,
    spec: &VmSpec,
    programs: Option<&Path>,
    cwd: &Path,
) -> Result<(), NetError> {
    for (n, share) in spec.shares.iter().enumerate() {
        let mut device = Share::new(host_dir(share, cwd)?, format!("share{n}"));
        if share.read_only {
            device = device.read_only();
        }
        machine.add_share(device);
    }
    if let Some(dir) = programs {
        machine.add_share(Share::new(dir, HOST_TAG).read_only());
    }
    Ok(())
}

/// Mounts the shares (and the program dir) in the guest through `shell`,
/// waiting for hot-plugged ones to appear.
pub(crate) fn mount(shell: &Shell, spec: &VmSpec, programs: bool) -> Result<(), BoxError> {
    let mut mounts: Vec<(String, String)> = spec
        .shares
        .iter()
        .enumerate()
        .map(|(n, share)| (format!("share{n}"), share.guest.clone()))
        .collect();
    if programs {
        mounts.push((HOST_TAG.into(), HOST_DIR.into()));
    }
    if mounts.is_empty() {
        return Ok(());
    }
    let mut script = String::from(
        "qt_mount() { mkdir -p \"$2\" || return 1; t=0; \
         until mount -t 9p -o OPTIONS \"$1\" \"$2\" 2>/dev/null; do t=$((t+1)); \
         [ $t -gt 200 ] && { mount -t 9p -o OPTIONS \"$1\" \"$2\"; return 1; }; sleep 0.05; done; }\n",
    )
    .replace("OPTIONS", MOUNT_OPTIONS);
    for (tag, dir) in &mounts {
        let dir = shlex::try_quote(dir).map_err(|e| format!("mount point {dir:?}: {e}"))?;
        writeln!(script, "qt_mount {tag} {dir} || exit 1").expect("a String takes writes");
    }
    shell.with_timeout(MOUNT_TIMEOUT).succeed(&script)?;
    Ok(())
}

/// What `ldd` says a program needs: `(libraries, the dynamic loader)`;
/// nothing for a static program.
fn needed(program: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>), BoxError> {
    let out = Command::new("ldd").arg(program).output().map_err(|e| {
        format!(
            "cannot run `ldd` to find what {} needs: {e}",
            program.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        let static_program = String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
            || text.contains("statically linked")
            || text.contains("not a dynamic executable");
        if static_program {
            return Ok((Vec::new(), None));
        }
        return Err(format!(
            "ldd {}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let (mut libs, mut loader) = (Vec::new(), None);
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            return Err(format!(
                "{} needs a library ldd cannot find: {line}",
                program.display()
            )
            .into());
        }
        if let Some((_, rest)) = line.split_once("=> ") {
            if let Some(path) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                libs.push(PathBuf::from(path));
            }
        } else if let Some(path) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            loader = Some(PathBuf::from(path));
        }
    }
    Ok((libs, loader))
}

/// Copies `from` (following links) to `dir/name`, unless the same size is
/// there already.
fn stage(from: &Path, dir: &Path) -> Result<PathBuf, BoxError> {
    std::fs::create_dir_all(dir)?;
    let name = from
        .file_name()
        .ok_or_else(|| format!("{} has no file name", from.display()))?;
    let to = dir.join(name);
    let same = std::fs::metadata(&to).ok().map(|m| m.len())
        == std::fs::metadata(from).ok().map(|m| m.len());
    if !same {
        std::fs::copy(from, &to)
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    }
    Ok(to)
}

/// Makes the host program `program` runnable in the guest by its path (the
/// returned one): through the program dir if the VM has one (`programs`,
/// mounted at [`HOST_DIR`]), else copied over the console (slow: about 60
/// KiB/s). Its shared libraries come along (as `ldd` finds them on the
/// host), with the dynamic loader at the path the program names.
pub(crate) fn install(
    shell: &Shell,
    programs: Option<&Path>,
    program: &Path,
) -> Result<String, BoxError> {
    let (libs, loader) = needed(program)?;
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'/')
        })
        .ok_or_else(|| {
            format!(
                "{}: the program's file name cannot be typed in a shell",
                program.display()
            )
        })?;
    match programs {
        Some(dir) => {
            stage(program, &dir.join("bin"))?;
            for lib in &libs {
                stage(lib, &dir.join("lib"))?;
            }
            let mut script = String::from("mkdir -p /lib && { [ -e /lib/x86_64-linux-gnu ] || ln -s HOST/lib /lib/x86_64-linux-gnu; }")
                .replace("HOST", HOST_DIR);
            if let Some(loader) = &loader {
                let staged = stage(loader, &dir.join("lib64"))?;
                let file = staged
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default();
                let parent = loader.parent().and_then(|p| p.to_str()).unwrap_or("/lib64");
                write!(
                    script,
                    " && mkdir -p {parent} && ln -sf {HOST_DIR}/lib64/{file} {}",
                    loader.display()
                )
                .expect("a String takes writes");
            }
            shell.succeed(&script)?;
            Ok(format!("{HOST_DIR}/bin/{name}"))
        }
        None => {
            let shell = shell.with_timeout(Duration::from_secs(600));
            let root = "/usr/local/lib/qemu-test";
            shell.succeed(&format!("mkdir -p {root}/bin /lib/x86_64-linux-gnu"))?;
            for lib in &libs {
                let file = lib.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                shell.copy_to_guest(lib, &format!("/lib/x86_64-linux-gnu/{file}"))?;
            }
            if let Some(loader) = &loader {
                shell.succeed(&format!(
                    "mkdir -p {}",
                    loader.parent().and_then(|p| p.to_str()).unwrap_or("/lib64")
                ))?;
                shell.copy_to_guest(loader, &loader.to_string_lossy())?;
                shell.succeed(&format!("chmod 755 {}", loader.display()))?;
            }
            let target = format!("{root}/bin/{name}");
            shell.copy_to_guest(program, &target)?;
            shell.succeed(&format!("chmod 755 {target}"))?;
            Ok(target)
        }
    }
}
