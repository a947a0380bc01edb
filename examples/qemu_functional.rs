//! Patterns of QEMU's own functional tests (Python `QemuSystemTest` on
//! `QEMUMachine`), written with the attribute: a suite to copy from when
//! porting them.
//!
//! Run it with `cargo run -p qemu-test-examples --example qemu_functional`
//! (libtest's flags go after `--`, e.g. `-- --list`).
//!
//! | upstream | here |
//! | --- | --- |
//! | `self.skipTest("...")` in the middle of a test | `return Err(Skip::new("...").into())` |
//! | `@skipUnless`, `require_netdev('user')`, `require_device(...)` | `requires = [netdev("user"), device(...)]`, decided before launch |
//! | `set_qmp_monitor(False); launch(); wait(); exitcode()` | `qmp = false`, then `vm.wait(None)` and `vm.exit_code()` |
//! | `-incoming tcp:...` on a port found at run time | `launch = false` (add arguments, then launch) or a sibling with `-incoming defer` |
//! | `self.get_vm(name="dest")` | `siblings = 1` and `vm.sibling("dest")` |
//! | one test per built target | `arch = ["x86_64", "aarch64"]` |

use qemu_test::prelude::*;

/// QEMU refuses an empty CPU model: the launch is expected to end, and the
/// body judges how.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S", "-cpu", ""], qmp = false)]
fn empty_cpu_model_is_refused(vm: &mut Vm) -> TestResult {
    vm.wait(None)?;
    assert_eq!(vm.exit_code(), Some(1));
    assert!(vm.log().contains("-cpu option cannot be empty"));
    Ok(())
}

/// Skips itself when the QEMU at hand lacks a feature it only finds out
/// about at run time.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"])]
fn vnc_is_queryable(vm: &mut Vm) -> TestResult {
    match vm.command("query-vnc", json!({})) {
        Ok(vnc) => {
            assert!(vnc.get("enabled").is_some());
            Ok(())
        }
        Err(_) => Err(Skip::new("VNC support not available").into()),
    }
}

/// Runs only where the user-mode network backend and a virtio NIC exist.
#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    args = ["-S", "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0"],
    requires = [netdev("user"), device("virtio-net-pci")]
)]
fn nic_on_user_networking(vm: &mut Vm) -> TestResult {
    let pci = vm.command("query-pci", json!({}))?;
    assert!(
        pci.to_string().contains("\"desc\":\"Ethernet controller\""),
        "{pci}"
    );
    Ok(())
}

/// A migration to a sibling listening on a port QEMU picks; both machines'
/// logs land in the test's artifact dir (`dest/` for the sibling).
#[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, siblings = 1)]
fn migrates(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    let mut dest = vm.sibling("dest")?;
    dest.add_args(["-incoming", "defer"]);
    dest.launch()?;
    dest.command("migrate-incoming", json!({"uri": "tcp:127.0.0.1:0"}))?;
    let info = dest.command("query-migrate", json!({}))?;
    let port = info["socket-address"][0]["port"]
        .as_str()
        .ok_or("no port")?;
    vm.command("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}))?;
    dest.event_wait("RESUME", Duration::from_secs(30), None)?;
    dest.console().exec_and_wait("hello", "you said: hello")?;
    Ok(())
}

/// One body for each target: `version::x86_64`, `version::aarch64`.
#[qemu_test(arch = ["x86_64", "aarch64"], machine = "none", args = ["-S"])]
fn version(vm: &mut Vm) -> TestResult {
    let version = vm.command("query-version", json!({}))?;
    assert!(version["qemu"]["major"].as_u64() >= Some(7), "{version}");
    Ok(())
}

qemu_test::main!();
