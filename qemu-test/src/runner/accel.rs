//! Whether KVM really works here, decided by booting a probe VM with it.
//!
//! `/dev/kvm` existing proves little: nested or paravirtualized KVM may
//! accept `-accel kvm` and then run guests far too slowly, or die on the
//! first real instruction. So the probe runs guest code:
//!
//! - x86 targets boot the firmware QEMU ships (SeaBIOS) with no disk and
//!   wait for it to print `No bootable device` on its debug port: a whole
//!   POST (real and protected mode, PCI enumeration, option ROMs) must
//!   finish within [`PROBE_BUDGET`], and at most [`SLOWER_THAN_TCG`] times
//!   as slowly as the same POST under TCG (or [`POST_SLACK`], whichever is
//!   longer). A healthy KVM needs a fraction of TCG's time; a KVM that
//!   emulates the guest instead of running it (nested setups without
//!   hardware virtualization) needs many times more, and then fails on the
//!   first instruction its emulator lacks, as Linux's `cmpxchg16b`.
//! - other targets start paused, check `query-kvm`, resume, and check that
//!   the VM is still running and not in `internal-error`.
//!
//! The cheap preconditions (`/dev/kvm` readable and writable, a target of
//! the host's architecture) are checked every time. The probe's result is
//! cached per process and in a file of the [state dir](super::state::state_dir)
//! keyed by the binary, `/dev/kvm` and the boot, so a nextest run (one
//! process per test) probes once; remove `kvm-probe-*` there to probe again.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::machine::Machine;
use crate::os::FileLock;
use crate::qemu_opts::target_arch;
use crate::runner::state::{fnv1a, state_dir};

/// How long the probe guest may take to finish booting under KVM.
pub(crate) const PROBE_BUDGET: Duration = Duration::from_secs(2);
/// How many times TCG's POST time KVM may take.
const SLOWER_THAN_TCG: u32 = 4;
/// The least POST time KVM is allowed whatever TCG's (a loaded host slows
/// both, and TCG's POST takes well under 0.1 s).
const POST_SLACK: Duration = Duration::from_millis(500);

/// Why KVM is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unusable {
    pub(crate) reason: String,
    /// A probe VM failed: KVM is there but broken, which is worth a word
    /// to the user (unlike a missing `/dev/kvm` or a foreign target).
    pub(crate) probed: bool,
}

/// One binary's probe result, computed once.
type ProbeCell = Arc<OnceLock<Result<(), String>>>;

/// `Ok` when KVM works with `binary` on this host, else why not.
pub(crate) fn kvm_usable(binary: &Path) -> Result<(), Unusable> {
    preconditions(binary).map_err(|reason| Unusable {
        reason,
        probed: false,
    })?;
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ProbeCell>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(binary.to_path_buf())
        .or_default()
        .clone();
    cell.get_or_init(|| cached_probe(binary))
        .clone()
        .map_err(|reason| Unusable {
            reason,
            probed: true,
        })
}

/// What rules KVM out without starting anything.
fn preconditions(binary: &Path) -> Result<(), String> {
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    if let Some(target) = target_arch(binary) {
        let host = std::env::consts::ARCH;
        if !same_family(host, target) {
            return Err(format!("KVM cannot run {target} guests on a {host} host"));
        }
    }
    Ok(())
}

/// Whether a `host` (`std::env::consts::ARCH`) can run `target`
/// (`qemu-system-<target>`) guests with KVM.
fn same_family(host: &str, target: &str) -> bool {
    matches!(
        (host, target),
        ("x86_64", "x86_64" | "i386")
            | ("x86", "i386")
            | ("aarch64", "aarch64" | "arm")
            | ("arm", "arm")
            | ("powerpc64", "ppc64" | "ppc")
            | ("riscv64", "riscv64")
            | ("s390x", "s390x")
            | ("loongarch64", "loongarch64")
            | ("mips64", "mips64" | "mips64el")
    )
}

/// The probe, through the file cache.
fn cached_probe(binary: &Path) -> Result<(), String> {
    let dir = state_dir();
    let key = cache_key(binary);
    let file = dir.join(format!("kvm-probe-{key:016x}.txt"));
    // Concurrent test processes wait for the one probing.
    let _lock = FileLock::exclusive(&dir.join(format!("kvm-probe-{key:016x}.lock")));
    if let Some(cached) = fs::read_to_string(&file)
        .ok()
        .and_then(|text| parse_cached(&text))
    {
        return cached;
    }
    let result = probe(binary);
    let text = match &result {
        Ok(()) => "usable\n".to_string(),
        Err(reason) => format!("unusable\n{reason}\n"),
    };
    let _ = fs::write(&file, text);
    result
}

fn parse_cached(text: &str) -> Option<Result<(), String>> {
    let (verdict, reason) = text.split_once('\n').unwrap_or((text, ""));
    match verdict {
        "usable" => Some(Ok(())),
        "unusable" => Some(Err(format!("{} (cached probe result)", reason.trim_end()))),
        _ => None,
    }
}

/// Identifies the binary, `/dev/kvm` and this boot.
fn cache_key(binary: &Path) -> u64 {
    let canonical = fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let meta = |path: &Path| {
        fs::metadata(path)
            .map(|m| {
                format!(
                    "{}:{}:{}:{}:{}:{}",
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.mode(),
                    m.uid(),
                    m.rdev()
                )
            })
            .unwrap_or_default()
    };
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    // The probe's own version: a verdict of an older probe is not kept.
    let key = format!(
        "probe 2|{}|{}|{}|{}",
        canonical.display(),
        meta(&canonical),
        meta(Path::new("/dev/kvm")),
        boot_id.trim()
    );
    fnv1a(key.as_bytes())
}

/// Boots the probe VM.
fn probe(binary: &Path) -> Result<(), String> {
    if !matches!(target_arch(binary), Some("x86_64" | "i386")) {
        return probe_other(binary);
    }
    let kvm = post_time(binary, "kvm")?;
    // TCG's time on this host now, for scale; if even TCG cannot boot the
    // firmware, the launch of any test will say why.
    let tcg = post_time(binary, "tcg").unwrap_or(Duration::from_millis(100));
    let allowed = (tcg * SLOWER_THAN_TCG).max(POST_SLACK);
    if kvm > allowed {
        return Err(format!(
            "a probe VM took {} to finish its firmware's POST under KVM, against {} under TCG: \
             KVM is present but emulates rather than runs guests here (nested without hardware \
             virtualization?), far slower than TCG, and real guests fail on it",
            humane(kvm),
            humane(tcg)
        ));
    }
    Ok(())
}

/// How long SeaBIOS takes from launch to `No bootable device` on its
/// debug port with `-accel accel`, at most [`PROBE_BUDGET`].
fn post_time(binary: &Path, accel: &str) -> Result<Duration, String> {
    let mut vm = probe_machine(binary, accel);
    // SeaBIOS prints its log on the debug port 0x402.
    vm.set_console(Some("isa-debugcon,iobase=0x402"), 0);
    let started = Instant::now();
    launch(&mut vm, accel)?;
    let result = (|| {
        if accel == "kvm" {
            kvm_enabled(&mut vm)?;
        }
        let left = PROBE_BUDGET.saturating_sub(started.elapsed());
        if vm
            .console()
            .with_timeout(left)
            .wait_for("No bootable device")
            .is_ok()
        {
            return Ok(started.elapsed());
        }
        let status = vm
            .command("query-status", json!({}))
            .map(|s| s["status"].to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        Err(format!(
            "a probe VM did not finish its firmware's POST within {PROBE_BUDGET:?} under {accel} \
             (status {status}; TCG needs about 0.1 s): KVM is present but broken or far too slow here"
        ))
    })();
    vm.kill();
    result
}

/// Non-x86 targets: start paused, resume, and check the VM still runs.
fn probe_other(binary: &Path) -> Result<(), String> {
    let mut vm = probe_machine(binary, "kvm");
    vm.add_args(["-S"]);
    if matches!(target_arch(binary), Some("aarch64" | "arm")) {
        vm.set_machine("virt");
        vm.add_args(["-cpu", "host"]);
    }
    launch(&mut vm, "kvm")?;
    let result = (|| {
        kvm_enabled(&mut vm)?;
        vm.command("cont", json!({}))
            .map_err(|e| format!("cont failed: {e}"))?;
        std::thread::sleep(Duration::from_millis(200));
        let status = vm
            .command("query-status", json!({}))
            .map_err(|e| format!("query-status failed: {e}"))?;
        if status["status"] != "running" {
            return Err(format!(
                "a probe VM stopped under KVM (status {})",
                status["status"]
            ));
        }
        Ok(())
    })();
    vm.kill();
    result
}

/// A probe machine, not launched, with `-accel accel -nodefaults`.
fn probe_machine(binary: &Path, accel: &str) -> Machine {
    let mut vm = Machine::builder(binary.to_string_lossy())
        .name("kvm-probe")
        .qmp_timeout(Duration::from_secs(10))
        .build();
    // Nothing the probe does may take long, even if QEMU hangs.
    vm.set_deadline(Some(Instant::now() + Duration::from_secs(15)));
    vm.add_args(["-accel", accel, "-nodefaults"]);
    vm
}

/// Launches a probe machine; the error names QEMU's last words.
fn launch(vm: &mut Machine, accel: &str) -> Result<(), String> {
    let Err(e) = vm.launch() else {
        return Ok(());
    };
    let output = vm.log();
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    Err(if last.is_empty() {
        format!("QEMU did not start with -accel {accel}: {e}")
    } else {
        format!("QEMU did not start with -accel {accel}: {last}")
    })
}

/// Checks that QEMU really runs with KVM.
fn kvm_enabled(vm: &mut Machine) -> Result<(), String> {
    let kvm = vm
        .command("query-kvm", json!({}))
        .map_err(|e| format!("query-kvm failed: {e}"))?;
    if kvm["enabled"] != true {
        return Err(format!(
            "QEMU runs without KVM despite -accel kvm (query-kvm: {kvm})"
        ));
    }
    Ok(())
}

/// `1.75 s`, `80 ms`.
fn humane(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert!(same_family("x86_64", "x86_64"));
        assert!(same_family("x86_64", "i386"));
        assert!(!same_family("x86_64", "aarch64"));
        assert!(same_family("aarch64", "arm"));
    }

    #[test]
    fn cross_arch_kvm_is_refused_without_a_probe() {
        let other = if std::env::consts::ARCH == "aarch64" {
            "x86_64"
        } else {
            "aarch64"
        };
        let err = preconditions(Path::new(&format!("/nonexistent/qemu-system-{other}")));
        assert!(err.is_err());
    }

    #[test]
    fn cached_results_parse() {
        assert_eq!(parse_cached("usable\n"), Some(Ok(())));
        assert!(parse_cached("unusable\nslow\n")
            .unwrap()
            .unwrap_err()
            .starts_with("slow"));
        assert_eq!(parse_cached("garbage"), None);
    }
}
