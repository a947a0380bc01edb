//! What QEMU's own functional tests (Python `QemuSystemTest` on
//! `QEMUMachine`) do, written with the attribute: deadlines for tests that
//! drive machines by hand, expected launch failures, machines without QMP,
//! arguments known only at run time, sibling machines (a migration), and
//! QEMU's own `-m`/`-smp` syntax.

use std::time::Instant;

use qemu_test::prelude::*;

/// B2: a `no_vm` test's deadline is its own `timeout` (before, the key was
/// refused with `no_vm` and a hidden 60 s applied).
#[qemu_test(no_vm, timeout = "1s", should_fail = "timed out after 1 s")]
fn no_vm_tests_have_their_own_deadline() {
    std::thread::sleep(Duration::from_secs(3));
}

/// B3: `should_fail = "text"` matches a launch failure too (QEMU's own
/// words are in the launch error).
#[qemu_test(
    arch = "x86_64",
    machine = "none",
    args = ["-S", "-cpu", ""],
    should_fail = "-cpu option cannot be empty"
)]
fn should_fail_matches_a_launch_failure(_vm: &mut Vm) {}

/// Upstream's `set_qmp_monitor(False); launch(); wait(); exitcode()`: with
/// `qmp = false` QEMU is only started, and the body judges how it ended.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S", "-cpu", ""], qmp = false)]
fn an_expected_launch_failure_is_the_bodys_to_judge(vm: &mut Vm) -> TestResult {
    vm.wait(None)?;
    assert_eq!(vm.exit_code(), Some(1));
    assert!(
        vm.log().contains("-cpu option cannot be empty"),
        "{}",
        vm.log()
    );
    // Its output is in the test's artifacts like any VM's.
    let log = std::fs::read_to_string(vm.artifacts().join("qemu.log"))?;
    assert!(log.contains("-cpu option cannot be empty"), "{log}");
    Ok(())
}

/// `launch = false`: the body adds what only it knows, then launches.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"], launch = false)]
fn the_body_launches_with_arguments_known_at_run_time(vm: &mut Vm) -> TestResult {
    assert!(!vm.is_running());
    let name = format!("run-time-{}", std::process::id());
    vm.add_args(["-name", &name]);
    vm.launch()?;
    assert_eq!(vm.command("query-name", json!({}))?["name"], name.as_str());
    Ok(())
}

/// A migration between the test's VM and a sibling: the destination
/// listens on a TCP port QEMU picks (read back from `query-migrate`), the
/// guest keeps answering on the destination's console, and each machine's
/// logs are in its own artifact directory.
#[qemu_test(
    machine = "virt",
    console,
    kernel = guest::ECHO_SHELL_AARCH64,
    siblings = 1,
    timeout = "60s"
)]
fn migrates_to_a_sibling_over_tcp(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    vm.console().exec_and_wait("before", "you said: before")?;
    let mut dest = vm.sibling("dest")?;
    dest.add_args(["-incoming", "defer"]);
    dest.launch()?;
    dest.command("migrate-incoming", json!({"uri": "tcp:127.0.0.1:0"}))?;
    let port = listening_port(&mut dest)?;
    vm.command("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}))?;
    wait_migrated(vm)?;
    dest.event_wait("RESUME", Duration::from_secs(30), None)?;
    dest.console().exec_and_wait("after", "you said: after")?;
    for file in ["qemu.log", "console.log", "qmp.jsonl"] {
        assert!(dest.artifacts().join(file).is_file(), "{file}");
        assert!(vm.artifacts().join(file).is_file(), "{file}");
    }
    assert_eq!(dest.artifacts(), vm.artifacts().join("dest"));
    Ok(())
}

/// The same over a Unix socket in the sibling's own socket dir, a path
/// that exists only at run time.
#[qemu_test(
    machine = "virt",
    console,
    kernel = guest::ECHO_SHELL_AARCH64,
    siblings = 1,
    timeout = "60s"
)]
fn migrates_to_a_sibling_over_a_unix_socket(vm: &mut Vm) -> TestResult {
    vm.console().wait_for("login:")?;
    let mut dest = vm.sibling("dest")?;
    dest.add_args(["-incoming", "defer"]);
    dest.launch()?;
    let socket = dest
        .sock_dir()
        .ok_or("no socket dir")?
        .join("migration.sock");
    let uri = format!("unix:{}", socket.display());
    dest.command("migrate-incoming", json!({ "uri": uri }))?;
    vm.command("migrate", json!({ "uri": uri }))?;
    wait_migrated(vm)?;
    dest.event_wait("RESUME", Duration::from_secs(30), None)?;
    dest.console()
        .exec_and_wait("over unix", "you said: over unix")?;
    Ok(())
}

/// A sibling beyond the declared count is refused, naming the fix; the
/// declared ones are reserved at admission, so none waits mid-body.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"], siblings = 1)]
fn siblings_beyond_the_declaration_are_refused(vm: &mut Vm) -> TestResult {
    let started = Instant::now();
    let mut one = vm.sibling("one")?;
    one.launch()?;
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = vm.sibling("two").unwrap_err().to_string();
    assert!(err.contains("declares 1 sibling(s)"), "{err}");
    assert!(err.contains("siblings = N"), "{err}");
    let err = vm.sibling("bad/name").unwrap_err().to_string();
    assert!(err.contains("invalid sibling name"), "{err}");
    // A dropped handle gives the sibling back; it still runs.
    let pid = one.pid();
    drop(one);
    let mut one = vm.sibling("one")?;
    assert_eq!(one.pid(), pid);
    assert!(one.is_running());
    Ok(())
}

/// A sibling lives until the test ends: a handle dropped at once (the
/// call as a statement) leaves it running, and asking again returns the
/// same QEMU.
#[qemu_test(arch = "x86_64", machine = "none", args = ["-S"], siblings = ["peer"])]
fn a_dropped_sibling_handle_leaves_the_sibling_running(vm: &mut Vm) -> TestResult {
    let pid = vm
        .sibling("peer")?
        .pid()
        .ok_or("the runner launched peer")?;
    vm.sibling("peer")?;
    let mut peer = vm.sibling("peer")?;
    assert_eq!(peer.pid(), Some(pid));
    assert!(peer.is_running());
    assert_eq!(
        peer.command("query-status", json!({}))?["status"],
        "prelaunch"
    );
    Ok(())
}

/// QEMU's `-m` and `-smp` syntax: the guest starts with the first size and
/// count (that is what the scheduler reserves), with room to hot-plug.
#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    args = ["-S"],
    memory = "128M,slots=2,maxmem=1G",
    smp = "1,sockets=1,cores=2,maxcpus=2"
)]
fn memory_and_smp_take_qemus_syntax(vm: &mut Vm) -> TestResult {
    let memory = vm.command("query-memory-size-summary", json!({}))?;
    assert_eq!(memory["base-memory"], 128u64 << 20, "{memory}");
    let cpus = vm.command("query-cpus-fast", json!({}))?;
    assert_eq!(cpus.as_array().map(Vec::len), Some(1), "{cpus}");
    let hotpluggable = vm.command("query-hotpluggable-cpus", json!({}))?;
    assert_eq!(
        hotpluggable.as_array().map(Vec::len),
        Some(2),
        "{hotpluggable}"
    );
    let cmdline = std::fs::read_to_string(vm.artifacts().join("cmdline.txt"))?;
    assert_eq!(cmdline.matches(" -smp ").count(), 1, "{cmdline}");
    Ok(())
}

/// One body, two targets: `version::x86_64` and `version::aarch64`, each
/// skipped on its own if its QEMU is missing.
#[qemu_test(arch = ["x86_64", "aarch64"], machine = "none", args = ["-S"])]
fn version(vm: &mut Vm) -> TestResult {
    let target = vm.command("query-target", json!({}))?;
    let arch = target["arch"].as_str().unwrap_or_default().to_string();
    assert!(
        vm.test_name().ends_with(&format!("version::{arch}")),
        "{arch} in {}",
        vm.test_name()
    );
    assert!(vm.command("query-version", json!({}))?["qemu"]["major"].as_u64() >= Some(7));
    Ok(())
}

/// The port `migrate-incoming` with port 0 is listening on.
fn listening_port(dest: &mut Machine) -> Result<String, BoxError> {
    let info = dest.command("query-migrate", json!({}))?;
    let port = info["socket-address"]
        .as_array()
        .and_then(|addresses| addresses.iter().find_map(|a| a["port"].as_str()))
        .ok_or_else(|| format!("no listening port in query-migrate: {info}"))?;
    Ok(port.to_string())
}

/// Waits until the source reports the migration completed.
fn wait_migrated(vm: &mut Vm) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = vm.command("query-migrate", json!({}))?;
        match info["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => return Err(format!("migration failed: {info}").into()),
            _ if Instant::now() > deadline => return Err(format!("migration stuck: {info}").into()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

use qemu_test::BoxError;

qemu_test::main!();
