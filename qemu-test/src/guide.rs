//! The guide: how to write, run and debug VM tests with qemu-test.
//!
//! The README gets you started. This guide is the reference behind it. Each
//! chapter is a module with no code, only documentation, and every Rust
//! example in it compiles.
//!
//! | chapter | what it covers |
//! | --- | --- |
//! | [`attribute`] | `#[qemu_test]`: the test function and every key |
//! | [`runner`] | what `cargo test` does with a suite: names, deadlines, artifacts, failure messages, scheduling, skips, pausing on failure |
//! | [`configuration`] | every `QEMU_TEST_*` environment variable |
//! | [`snapshots`] | booted snapshots: boot once, start every test from a copy |
//! | [`linux`] | the built-in guests, the Linux guests and [`Shell`](crate::Shell) |
//! | [`networks`] | several VMs on private networks, faults, captures, port forwards |
//! | [`assets`] | kernels, initrds and disk images declared by URL and SHA-256; UEFI firmware |
//! | [`machine`] | [`Machine`](crate::Machine) on its own, without the attribute |
//! | [`ci`] | nextest, JUnit, splitting a suite across machines, GitHub Actions |
//!
//! # How the pieces fit
//!
//! A test goes through the crate in one direction:
//!
//! 1. The [`#[qemu_test]`](crate::qemu_test) attribute checks its arguments
//!    at compile time and registers the function with a
//!    [`VmSpec`](crate::VmSpec), a plain description of the VM.
//! 2. [`qemu_test::main!()`](crate::main) is the test binary's `main`. The
//!    [runner](crate::runner) lists the registered tests the way libtest
//!    does. It finds the QEMU binary, the machine type and the accelerator
//!    for each test, and skips what this host cannot run.
//! 3. For each test the runner waits for room on the host, then launches a
//!    [`Machine`](crate::Machine): one QEMU process, driven over QMP and the
//!    serial [`Console`](crate::Console).
//! 4. The body gets the machine as a [`Vm`](crate::Vm) and runs under the
//!    test's deadline.
//! 5. The runner judges the result, tears the VM down and keeps the
//!    artifacts of a failed test: QEMU's output, the console, every QMP
//!    message, and a script that relaunches the same VM.
//!
//! # A first suite
//!
//! Put the tests in a test target of their own with `harness = false`, so
//! that the runner, not libtest, is its `main`:
//!
//! ```toml
//! # Cargo.toml
//! [dev-dependencies]
//! qemu-test = { path = "../qemu-test/qemu-test" }
//!
//! [[test]]
//! name = "vm"
//! harness = false
//! ```
//!
//! ```no_run
//! // tests/vm.rs
//! use qemu_test::prelude::*;
//!
//! #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
//! fn echoes(vm: &mut Vm) -> TestResult {
//!     vm.console().wait_for("login:")?;
//!     vm.console().exec_and_wait("hi", "you said: hi")?;
//!     Ok(())
//! }
//!
//! #[qemu_test(console, kernel = guest::ECHO_SHELL_AARCH64)]
//! fn resets(vm: &mut Vm) -> TestResult {
//!     vm.console().wait_for("login:")?;
//!     vm.command("system_reset", json!({}))?;
//!     vm.event_wait("RESET", Duration::from_secs(5), None)?;
//!     Ok(())
//! }
//!
//! qemu_test::main!();
//! ```
//!
//! `cargo test` boots one VM per test, runs the body, tears the VM down
//! and reports like libtest. The dependency must keep its name,
//! `qemu-test`: the code the attribute expands to refers to `::qemu_test`.
//!
//! The repository's `examples/` has suites to copy: `quickstart.rs` (the
//! echo guest: console, QMP, events), `failing.rs` (a failure, and where
//! its artifacts land), `linux_program.rs` (a program of your own run
//! inside the Linux guest) and `assets.rs` (a distribution's image
//! declared by URL and SHA-256, booted with UEFI).

pub mod attribute {
    //! `#[qemu_test]`: the test function and every key. The attribute's own
    //! documentation ([`qemu_test`](crate::qemu_test)) has the same table,
    //! and what the attribute expands to.
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(arch = "x86_64", machine = "q35", smp = 2, memory = "256M", timeout = "90s")]
    //! fn two_cpus(vm: &mut Vm) -> TestResult {
    //!     let cpus = vm.command("query-cpus-fast", json!({}))?;
    //!     assert_eq!(cpus.as_array().map(Vec::len), Some(2));
    //!     Ok(())
    //! }
    //!
    //! #[qemu_test(no_vm)]
    //! fn plain_logic() {
    //!     assert_eq!(1 + 1, 2);
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! # The function
    //!
    //! - A VM test takes one parameter, `&mut Vm` ([`Vm`](crate::Vm)
    //!   derefs to [`Machine`](crate::Machine)). A `no_vm` test takes none.
    //! - It returns nothing, [`TestResult`](crate::TestResult), or any
    //!   `Result<(), E>` with `E: Debug`. An `Err` or a panic fails the
    //!   test; [`Skip`](crate::Skip) as the error skips it (see
    //!   [skips](crate::guide::runner#skips)).
    //! - It cannot be `async`, `unsafe` or generic, cannot take `self`, and
    //!   must not also carry `#[test]`.
    //!
    //! A wrong key, a value of the wrong type, a key given twice, a bad
    //! duration, size or `-smp` value, two keys that exclude each other, or
    //! a wrong signature is a compile error that points at the offending
    //! token. An unknown key's error suggests the nearest one.
    //!
    //! # Keys
    //!
    //! All keys are optional and each may be given once.
    //!
    //! | key | value | meaning |
    //! | --- | --- | --- |
    //! | `binary` | `"qemu-system-aarch64"`, or a path | the QEMU executable: a name is looked up in `QEMU_TEST_QEMU_DIR`, then `PATH`. Excludes `arch` |
    //! | `arch` | `"x86_64"` | runs `qemu-system-<arch>`. Excludes `binary`. Without either, a built-in guest's architecture |
    //! | `machine` | `"virt"`, `"q35"` | `-machine`. Default: a built-in guest's machine type |
    //! | `cpu` | `"max"` | `-cpu`. Default: a built-in guest's CPU, if it needs one |
    //! | `smp` | `2`, or QEMU's syntax: `"1,sockets=2,cores=2,maxcpus=8"` | `-smp`. The scheduler reserves the starting count of vCPUs |
    //! | `memory` | `"256M"`, `"2G"`, `512` (MiB), or QEMU's syntax: `"512M,slots=2,maxmem=4G"` | `-m`. The scheduler reserves the starting size |
    //! | `accel` | `"auto"` (default), `"kvm"`, `"tcg"` | the accelerator. `auto` uses KVM only if a probe VM really runs with it, else TCG |
    //! | `kernel` | a path string, or an expression (`guest::LINUX_X86_64`) | `-kernel` (`-bios` for a firmware guest); see [below](#kernel-and-initrd) |
    //! | `initrd` | the same as `kernel` | `-initrd` |
    //! | `append` | `"console=ttyS0"` | `-append`, the kernel command line (after a built-in Linux guest's own) |
    //! | `drive` | `"file=a.img,if=virtio"`, or an array of them | one `-drive` per string |
    //! | `disk` | an [`Asset`](crate::guest::Asset), a path, a [`Disk`](crate::spec::Disk), or an array of them | a disk image used through a qcow2 overlay of the test's own, so the image is never written; see [assets](crate::guide::assets#disk-images) |
    //! | `firmware` | `"uefi"`, or a [`Firmware`](crate::spec::Firmware) | boots UEFI (OVMF, AAVMF) with a variable store of the test's own; see [assets](crate::guide::assets#uefi-firmware) |
    //! | `args` | `["-no-reboot", "-d", "guest_errors"]` | more arguments, passed verbatim, one string per argument |
    //! | `console` | a flag, or a device type: `console = "isa-serial"` | attaches [`vm.console()`](crate::Machine::console) to the machine's first serial port, or to a `-device` of that type |
    //! | `console_index` | `1` | puts the console on a later port: fills that many ports with `null` first. Needs `console` |
    //! | `timeout` | `"60s"` (default), `"2m"`, `"1m 30s"`, `"500ms"` | the test's deadline, `no_vm` tests included; see [deadlines](crate::guide::runner#deadlines) |
    //! | `qmp` | `false` | no QMP monitor: QEMU is only started, and the body judges how it ends |
    //! | `launch` | `false` | the body gets the machine configured but not launched, and launches it |
    //! | `siblings` | `1`, or names: `["server", "backup"]` | more machines configured like the test's: a count the body starts with [`Vm::sibling`](crate::Vm::sibling); names the runner starts with the test's VM; see [networks](crate::guide::networks) |
    //! | `networks` | `["lan"]` | private networks every VM of the test is on; see [networks](crate::guide::networks) |
    //! | `forward` | `[8080]` | guest TCP ports reachable from the host through [`vm.forward(port)`](crate::Machine::forward); see [networks](crate::guide::networks#port-forwards) |
    //! | `shares` | `["testdata:/mnt/data:ro", "out:/mnt/out"]` | host directories in the guest (9p; needs [`LINUX_X86_64_GENERIC`](crate::guest::LINUX_X86_64_GENERIC)); see [networks](crate::guide::networks#host-directories-and-host-programs) |
    //! | `snapshot` | `"name"` (letters, digits, `-`, `_`, `.`) | starts from a shared booted snapshot; see [booted snapshots](crate::guide::snapshots) |
    //! | `setup` | a function path: `setup = configure` | the `fn(&mut Vm) -> TestResult` that gets a snapshot's VM ready before it is saved. Needs `snapshot` |
    //! | `requires` | `[device("virtio-9p-pci"), netdev("user"), command("ncat"), memlock("64M"), check("what", f)]` | what the host must offer, else the test is skipped with the reason, decided before launch and when the tests are listed; see [`requires`](crate::requires) |
    //! | `ignore` | a flag, or `"reason"` | as libtest's `#[ignore]`: runs only with `--ignored` or `--include-ignored` |
    //! | `should_fail` | a flag, or `"expected text"` | the test must fail; see [below](#expected-failures) |
    //! | `no_vm` | a flag | a plain test in the same binary, without a VM. Only `timeout`, `requires`, `ignore` and `should_fail` go with it |
    //! | `crate` | a path: `crate = qt` | where the runtime crate is, when the dependency is renamed (`qt = { package = "qemu-test", ... }`); default `::qemu_test` |
    //!
    //! Several drives are one array (`drive = ["a", "b"]`): like every key,
    //! `drive` may appear only once. Drives are opened as given, so a test
    //! that writes to a disk changes its image. Add `snapshot=on` to the
    //! drive (or `args = ["-snapshot"]`) to keep the image as it is.
    //! Tests that start from a booted snapshot always get `-snapshot`.
    //!
    //! A test that names no QEMU (no `binary`, no `arch`, no built-in guest
    //! as `kernel`) fails and says so.
    //!
    //! # `kernel` and `initrd`
    //!
    //! - A string literal is a path on the host: `kernel = "/boot/vmlinuz"`.
    //! - A path such as `guest::ECHO_SHELL_AARCH64` names a built-in
    //!   [`Guest`](crate::guest::Guest). A built-in guest also brings its
    //!   architecture, machine type and CPU, and the Linux guests their
    //!   initrd, kernel command line and arguments. The test's own keys come
    //!   on top. See [the guests](crate::guide::linux).
    //! - Any other expression is passed as is and must give a `String`,
    //!   `PathBuf`, `&str`, `&Path` or `&'static Guest`: `kernel =
    //!   kernel_path()`, `kernel = env!("MY_KERNEL")`.
    //! - A declared [`Asset`](crate::guest::Asset) (URL and SHA-256) is
    //!   fetched into the cache before the test starts: `kernel = KERNEL`
    //!   for a `static`, `kernel = &*KERNEL` for one in a `LazyLock`. See
    //!   [assets](crate::guide::assets).
    //!
    //! # Expected failures
    //!
    //! `should_fail` follows libtest's `#[should_panic]` for any failure: an
    //! `Err`, a panic, the deadline passing, or QEMU failing to launch. With
    //! a text, the failure's message must contain it. A test that passes
    //! fails. A skip stays a skip.
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(arch = "x86_64", machine = "none", args = ["-cpu", ""], should_fail = "-cpu option cannot be empty")]
    //! fn qemu_refuses_an_empty_cpu(_vm: &mut Vm) {}
    //! # fn main() {}
    //! ```
    //!
    //! # Machines without QMP, launched by the body, siblings
    //!
    //! These follow what QEMU's own Python tests do with `QEMUMachine`.
    //!
    //! With `qmp = false` the runner only starts QEMU. The body waits for it
    //! and judges how it ended (upstream's `set_qmp_monitor(False)`):
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(arch = "x86_64", machine = "none", args = ["-cpu", ""], qmp = false)]
    //! fn empty_cpu_exits_with_1(vm: &mut Vm) -> TestResult {
    //!     vm.wait(None)?;
    //!     assert_eq!(vm.exit_code(), Some(1));
    //!     assert!(vm.log().contains("-cpu option cannot be empty"));
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! With `launch = false` the body adds what only it knows (a port, a
    //! socket path, a name) and launches the machine itself. `cmdline.txt`
    //! and `repro.sh` are then written after the body:
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(arch = "x86_64", machine = "none", args = ["-S"], launch = false)]
    //! fn named_at_run_time(vm: &mut Vm) -> TestResult {
    //!     let name = format!("run-{}", std::process::id());
    //!     vm.add_args(["-name", &name]);
    //!     vm.launch()?;
    //!     assert_eq!(vm.command("query-name", json!({}))?["name"], name.as_str());
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! `siblings = N` lets the body start N more machines, each configured
    //! like the test's own (the same QEMU, machine, kernel and arguments),
    //! with [`Vm::sibling`](crate::Vm::sibling). The runner reserves their
    //! host budget together with the test's, so a body never waits for room.
    //! Each [`Sibling`](crate::Sibling) has its own artifact subdirectory,
    //! runs under the test's deadline, and is killed when dropped. One more
    //! than declared is refused with a
    //! [`SiblingError`](crate::SiblingError) that names the fix. The
    //! `Vm::sibling` docs show a migration between two machines.
    //!
    //! `snapshot` cannot go with `qmp = false` or `launch = false`: the
    //! runner makes and restores snapshots itself, over QMP.
}

pub mod runner {
    //! What `cargo test` does with a suite: names, deadlines, artifacts,
    //! failure messages, scheduling, skips, pausing on failure.
    //!
    //! # Names and flags
    //!
    //! A `qemu_test::main!()` binary takes libtest's command line: filters,
    //! `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored`,
    //! `--test-threads`, `--nocapture`, `--format`. A test is named like a
    //! libtest test, `module::function` (the module path without the
    //! crate; a matrix adds the variant: `version::x86_64`), and `--list`
    //! prints `boot::echoes: test`, so `--exact`, nextest's `test(=NAME)`
    //! and CI history see one name. The machine type, architecture,
    //! accelerator and QEMU binary are in a failure's `vm:` line and the
    //! JUnit properties. `cargo test` and `cargo nextest run` drive it like
    //! any test binary. A `#[qemu_test]` in a test target that keeps
    //! libtest's own harness fails with the `harness = false` lines to add.
    //!
    //! A body may write its own files into [`vm.artifacts()`](crate::Vm::artifacts),
    //! and [`vm.test_name()`](crate::Vm::test_name) is its name.
    //!
    //! # Deadlines
    //!
    //! Each test has one deadline, `timeout` (60 s by default), for the
    //! whole test. On a slow host, `QEMU_TEST_TIMEOUT_FACTOR=3` triples
    //! every test's deadline, `no_vm` tests and snapshot setups included.
    //! Every console, shell, QMP and event wait of the test's machines is
    //! capped by the deadline, so no wait can outlive the test. When it passes, the
    //! runner kills the VM's QEMU, which ends any wait the body is in, and
    //! the test fails as timed out. A body that still does not return soon
    //! after is abandoned, and the test fails all the same.
    //!
    //! After the body the runner tears the VM down: a graceful `quit`, then
    //! a kill after 5 s. A guest that powered off by itself, or a body that
    //! shut the machine down, is fine. No outcome leaves a QEMU process
    //! behind: QEMU runs in its own process group, dies with the test
    //! process (`PR_SET_PDEATHSIG`), and a dropped
    //! [`Machine`](crate::Machine) kills and reaps it.
    //!
    //! # Guest crashes
    //!
    //! A guest kernel crash fails its test at once instead of at the
    //! deadline. The runner watches for a kernel panic, Oops or BUG line on
    //! the console, and for QEMU's `GUEST_PANICKED` event. On machines with
    //! PCI (`q35`, `pc`, Arm `virt` and their versions) every VM gets
    //! `-device pvpanic-pci -action panic=pause` for that, unless the
    //! test's own arguments name `pvpanic` or `-action`: a guest with the
    //! pvpanic driver then reports a panic even without a console, and QEMU
    //! keeps the crashed VM instead of shutting it down. (The built-in
    //! x86_64 Linux guests load the pvpanic driver; the aarch64 guest does
    //! not, so its crashes show on the console only.) The
    //! runner lets the console run for half a second more (the
    //! call trace), kills the VM and fails the test; the message shows the
    //! crash line and up to 60 console lines from it.
    //!
    //! A test that crashes its guest on purpose says so first, with
    //! [`Vm::expect_guest_crash`](crate::Vm::expect_guest_crash), and waits
    //! for the crash with
    //! [`Machine::wait_for_guest_crash`](crate::Machine::wait_for_guest_crash):
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(console, kernel = guest::LINUX_X86_64)]
    //! fn sysrq_crashes_the_guest(vm: &mut Vm) -> TestResult {
    //!     vm.shell().succeed("true")?;
    //!     vm.expect_guest_crash();
    //!     vm.console().send_line("echo c > /proc/sysrq-trigger")?;
    //!     let crash = vm.wait_for_guest_crash(Duration::from_secs(30))?;
    //!     assert!(crash.to_string().contains("sysrq triggered crash"));
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! # Artifacts
    //!
    //! Each VM test gets a directory (mode 0700),
    //! `<target>/qemu-test/<package>/<binary>/<test>/` (or under
    //! `QEMU_TEST_ARTIFACTS`); a second run of the same test at the same
    //! time takes `<test>.2/`, and a new run replaces only what finished
    //! runs left:
    //!
    //! | file | what |
    //! | --- | --- |
    //! | `qemu.log` | QEMU's stdout and stderr |
    //! | `console.log` | everything the guest printed on the console, byte for byte |
    //! | `qmp.jsonl` | every QMP message both ways, time-stamped |
    //! | `cmdline.txt` | the whole QEMU command line, shell-quoted |
    //! | `repro.sh` | relaunches the same VM by hand: the console on your terminal, QMP on a Unix socket next to it |
    //! | `timeline.jsonl` | each step of the test with its time (see below) |
    //! | `screen.png` | after a failure, what the VM's display showed (a VM with a display) |
    //! | `dmesg.txt` | after a failure, the guest kernel's whole log (a Linux guest whose shell answers) |
    //! | `<name>/` | the same files for each [sibling](crate::Vm::sibling) |
    //!
    //! A stale directory from an earlier run is removed before the test
    //! starts. After the test the directory is kept if the test failed and
    //! removed if it passed; `QEMU_TEST_KEEP=always` or `never` changes that.
    //! Two runs of one test at once take turns with its directory.
    //!
    //! # The evidence of a failure
    //!
    //! A failed test keeps, besides its logs:
    //!
    //! - `screen.png`, a picture of its display, taken before the VM is torn
    //!   down, or killed at the deadline or after a guest crash. The runner's
    //!   VMs start with `-display none -vga none`; a test that adds a display
    //!   device (`args = ["-vga", "std"]`, `-device virtio-gpu-pci`,
    //!   `-device ramfb`...) gets the picture. A body takes its own with
    //!   [`vm.screendump(path)`](crate::Machine::screendump) (PNG, or PPM for
    //!   a `.ppm` path).
    //! - `dmesg.txt`, the guest kernel's whole log, when the VM still runs
    //!   after the failure and a [`Shell`](crate::Shell) answers on its
    //!   console within 5 s. The console shows only the messages at the
    //!   console's log level; `dmesg` has them all. (The shell reads it over
    //!   the console, so `console.log` ends with that exchange; the failure
    //!   message's console lines are from before it.)
    //! - `timeline.jsonl`, every step of the test with its start (`t`,
    //!   seconds since the test started) and duration (`ms`): the wait for
    //!   the host budget (`queue`), the booted snapshot, the launch and its
    //!   phases (`launch.spawn`, `launch.qmp`, `launch.restore`), each QMP
    //!   command (its name and error class; `qmp.jsonl` has the messages),
    //!   each event and console wait with what it matched, each shell
    //!   command with its exit status, the screenshot, the kernel log, the
    //!   teardown and the verdict. A slow test shows where its time went:
    //!
    //! ```text
    //! {"t":0.0,"step":"start","test":"boot::echoes","unix":1796491933.522}
    //! {"t":0.0,"step":"queue","ms":0.178}
    //! {"t":0.0012,"step":"launch","ms":326.362,"pid":31612}
    //! {"t":0.3291,"step":"body","ms":5560.3,"end":"failed"}
    //! {"t":0.3318,"step":"shell","ms":5507.2,"command":"echo hello","status":0}
    //! {"t":5.8399,"step":"qmp","ms":0.21,"command":"query-status"}
    //! {"t":5.8402,"step":"verdict","result":"error"}
    //! ```
    //!
    //! Steps of a [sibling](crate::Vm::sibling) carry its name (`"vm"`).
    //! The timeline is written into every kept directory (so a passing test
    //! has one under `QEMU_TEST_KEEP=always`).
    //!
    //! # The HTML report
    //!
    //! Every run of a test binary writes one self-contained page,
    //! `<target>/qemu-test/report/<package>.<binary>.html`, and
    //! `<target>/qemu-test/index.html` links every binary's page (the most
    //! recent first) and lists each test with its result and duration. A
    //! page lists every test with its result and duration, then, for each
    //! failure: the failure message, the screenshot (inside the page), the
    //! console's last lines, QEMU's last words, the end of the QMP
    //! transcript, the timeline, and links to every file of its artifact
    //! directory. When a test failed, the runner names the index on stderr.
    //! A run whose filters select no test of a binary leaves that binary's
    //! page as it was.
    //!
    //! Under nextest, which runs each test in a process of its own, every
    //! process adds its test to its binary's page (and the index), for the
    //! tests of the same nextest run (`NEXTEST_RUN_ID`); a new run starts a
    //! new page.
    //!
    //! # Failure messages
    //!
    //! A failure names its reason (the body's error and its causes, the
    //! panic, the timeout, QEMU's launch error), then the evidence. Here a
    //! console wait gave up (`examples/failing.rs`):
    //!
    //! ```text
    //! ---- waits_for_a_prompt_that_never_comes ----
    //! timed out after 2s waiting for "# " on the console
    //! --- last console lines ---
    //!
    //! qemu-test echo shell
    //! login: uname -a
    //! you said: uname -a
    //! $
    //! artifacts: /home/me/project/target/qemu-test/failing/waits_for_a_prompt_that_never_comes
    //! ```
    //!
    //! The guest's last 20 console lines and the end of QEMU's own output
    //! are shown unless the reason holds them already, then anything else
    //! that went wrong on the way (the teardown, writing `repro.sh`), then
    //! where the artifacts are. The JUnit report carries the same message,
    //! and its `<system-out>` ends with one `[[ATTACHMENT|path]]` line per
    //! file of the kept artifact directory, which CI systems (Jenkins'
    //! JUnit attachments, GitLab) show with the test.
    //!
    //! # Scheduling
    //!
    //! Each VM test reserves its vCPUs (`smp`) and its memory plus QEMU's own
    //! overhead. VMs start while the host has room: `QEMU_TEST_JOBS` vCPUs
    //! (default: the number of cores) and the memory available when the run
    //! starts. The budget holds across processes: each slot is a locked file
    //! in a per-user directory (`$TMPDIR/qemu-test-<uid>`), so parallel test
    //! binaries, and nextest's one process per test, share one budget and
    //! never oversubscribe the host. A test takes all its slots or none. A
    //! test that needs more than the whole budget runs alone.
    //!
    //! Without `--test-threads` (or `RUST_TEST_THREADS`), a binary runs as
    //! many tests at once as there are CPU slots.
    //!
    //! # The accelerator
    //!
    //! `accel = "auto"` (the default) runs the test with KVM only when KVM
    //! really runs guests here: `/dev/kvm` must be usable, the target must be
    //! the host's architecture, and a probe VM must boot with KVM (on x86,
    //! the firmware's whole POST, no slower than a few times TCG's). Nested
    //! or emulated KVM that would hang guests fails the probe, and the test
    //! runs on TCG. The reason is noted in `qemu.log`, `cmdline.txt` and
    //! `repro.sh`, and on stderr when KVM is there but broken. The verdict
    //! is cached per user (remove `kvm-probe-*` in `$TMPDIR/qemu-test-<uid>`
    //! to probe again). `QEMU_TEST_ACCEL` overrides every test's `accel`.
    //!
    //! # Skips
    //!
    //! A test is skipped, not failed, when the host lacks what it needs:
    //!
    //! - found when the tests are listed: the `qemu-system-*` binary, an
    //!   explicitly requested KVM, a built-in guest that cannot be had here,
    //!   or a [requirement](crate::requires) (`requires = [...]`). The test is
    //!   listed as ignored and the reason is printed on stderr;
    //! - found while it runs: the body returns [`Skip`](crate::Skip) as its
    //!   error.
    //!
    //! A machine type, CPU model or device type named in the attribute
    //! (`machine`, `cpu`, `console = "device"`, `-device` in `args`) that
    //! the QEMU binary lacks is not a skip but a mistake: the test fails
    //! with the nearest names ("did you mean `q35`?").
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
    //! fn needs_vnc(vm: &mut Vm) -> TestResult {
    //!     if vm.command("query-vnc", json!({})).is_err() {
    //!         return Err(Skip::new("this QEMU has no VNC support").into());
    //!     }
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! After libtest's own summary, the runner lists every skipped test with
    //! its reason on stderr. JUnit shows skips as skipped. nextest judges a
    //! test only by its exit status, so there a test that skips itself at
    //! run time shows as passed (its reason is in its output); skips found
    //! at list time show as skipped.
    //!
    //! `QEMU_TEST_REQUIRE=1` turns every skip into a failure. Use it in CI,
    //! where a missing QEMU must not pass silently.
    //!
    //! # Pausing on failure
    //!
    //! With `QEMU_TEST_ON_FAILURE=pause`, a test that fails with its VM still
    //! running keeps the VM up. The runner hands the guest's console over
    //! on a socket in the artifact directory, prints how to reach it, a
    //! second QMP monitor and a gdbstub, and waits for Enter on the terminal
    //! before tearing the VM down:
    //!
    //! ```text
    //! console:   socat '-,raw,echo=0,escape=0x1d' "UNIX-CONNECT:.../boot\\:\\:echoes/console.sock"
    //!            (Ctrl-] leaves; if what you type does not show, type `stty echo`)
    //! QMP:       socat - "UNIX-CONNECT:.../boot\\:\\:echoes/qmp-pause.sock"
    //! gdb:       on QMP, {"execute":"human-monitor-command","arguments":{"command-line":"gdbserver unix:..."}}
    //!            then gdb -q -ex 'target remote ...'
    //! ```
    //!
    //! Whoever connects to the console first sees the last 8 KiB the guest
    //! printed, then everything it prints, and types into it (log in, look
    //! around); the console log stays complete. One person at a time; one
    //! test pauses at a time. Without a terminal (CI, nextest without
    //! `--no-capture`) it says so and does not wait.
    //!
    //! ```sh
    //! QEMU_TEST_ON_FAILURE=pause cargo test --test vm -- boot::echoes --nocapture
    //! ```
    //!
    //! # Debugging with gdb
    //!
    //! `QEMU_TEST_GDB=<test name>` (or `1` for every test) starts the test's
    //! VM halted, with QEMU's gdbstub on a Unix socket of its own, prints
    //! the `gdb` command that attaches to it, and waits until the VM runs:
    //! gdb's `continue` (or `detach`), or Enter to run it without gdb. Then
    //! the test goes on, without a deadline (a person at a breakpoint makes
    //! one meaningless). `QEMU_TEST_VMLINUX=<path>` adds the kernel's
    //! symbols to the command (a distribution kernel has none: build one
    //! with debug info). A guest of another architecture than the host's
    //! gets `gdb-multiarch`. It needs a terminal; without one the runner
    //! says so and runs the test as usual.
    //!
    //! ```sh
    //! QEMU_TEST_GDB=boot::echoes cargo test --test vm -- --exact boot::echoes
    //! # === boot::echoes: its VM is halted, waiting for gdb (QEMU_TEST_GDB) ===
    //! # gdb:       gdb -q -ex 'target remote /tmp/qemu-test-1000/runner/3f2a...-gdb.sock'
    //! ```
}

pub mod configuration {
    //! Every `QEMU_TEST_*` environment variable.
    //!
    //! The runner reads its variables once per process. A malformed value
    //! is an error at start-up, never ignored; an empty one counts as
    //! unset.
    //!
    //! | variable | meaning | default |
    //! | --- | --- | --- |
    //! | `QEMU_TEST_QEMU_DIR` | a directory searched for `qemu-system-*` before `PATH` | unset |
    //! | `QEMU_TEST_ACCEL` | `auto`, `kvm`, `tcg` or another `-accel` value: overrides every test's `accel` | unset |
    //! | `QEMU_TEST_KEEP` | which artifact directories to keep: `failed`, `always`, `never` | `failed` |
    //! | `QEMU_TEST_ARTIFACTS` | the root of the artifact directories (and of the booted snapshots) | `<target>/qemu-test` |
    //! | `QEMU_TEST_REQUIRE` | `1`: a test that cannot run here, or skips itself, fails instead of being skipped | `0` |
    //! | `QEMU_TEST_JUNIT` | a directory: each test binary writes its JUnit XML report there as `<package>.<binary>.xml` (a path ending in `.xml` is an error); not under nextest | unset |
    //! | `QEMU_TEST_JOBS` | how many vCPUs may run at once, host-wide | the number of cores |
    //! | `QEMU_TEST_ON_FAILURE` | `report`, or `pause`: keep a failed test's VM running until Enter, its console handed over on a socket (needs a terminal) | `report` |
    //! | `QEMU_TEST_TIMEOUT_FACTOR` | a number greater than 0 (at most 1000) that scales every test's deadline: `3` on a slow host | `1` |
    //! | `QEMU_TEST_GDB` | `1`, or a test's name: its VM starts halted with a gdbstub, the runner prints the `gdb` command and waits until the VM runs (needs a terminal; the test then has no deadline) | unset |
    //! | `QEMU_TEST_VMLINUX` | a kernel with debug symbols (an existing file), for the `gdb` command of `QEMU_TEST_GDB` | unset |
    //! | `QEMU_TEST_OFFLINE` | `1`: download no declared asset; a test whose assets are not in the cache is skipped with the reason (a failure under `QEMU_TEST_REQUIRE=1`). A download that fails for a reason of the network turns it on for the rest of the process | `0` |
    //! | `QEMU_TEST_CACHE_DIR` | the per-user cache: the embedded guests' images (`guests/`), the Linux guests' builds, packages and package lists (`linux-<arch>/`), the declared assets (`assets/`) | `$XDG_CACHE_HOME/qemu-test`, else `~/.cache/qemu-test` |
    //! | `QEMU_TEST_LINUX_KERNEL`, `QEMU_TEST_BUSYBOX`, `QEMU_TEST_LINUX_MODULES` | build the Linux guest from this kernel, static busybox and `lib/modules/<release>` instead of Debian's packages (`_X86_64`, `_AARCH64` suffixes: one guest's) | unset |
    //! | `QEMU_TEST_GUESTS_DIR` | a directory of Linux guests built elsewhere, used instead of the cache (never built) | unset |
    //!
    //! `<target>` is the cargo target directory the test binary was built
    //! in. Relative paths are taken from the directory the test binary
    //! starts in, except `QEMU_TEST_GUESTS_DIR`, which is taken from the
    //! workspace (the target directory's parent).
    //!
    //! Besides its own variables the runner honours libtest's
    //! `RUST_TEST_THREADS`. The runner's shared state (the scheduler's slot
    //! files, locks, the KVM probe's verdicts) lives in
    //! `$TMPDIR/qemu-test-<uid>`.
}

pub mod snapshots {
    //! Booted snapshots: boot a VM once, start every test from a copy.
    //!
    //! A test that needs a booted guest need not boot one:
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! fn configured(vm: &mut Vm) -> TestResult {
    //!     vm.shell().succeed("mkdir -p /srv && echo ready > /srv/state")?;
    //!     Ok(())
    //! }
    //!
    //! #[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "configured", setup = configured)]
    //! fn serves(vm: &mut Vm) -> TestResult {
    //!     assert_eq!(vm.shell().succeed("cat /srv/state")?, "ready\n");
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! The first test that needs snapshot `configured` boots the VM, runs
    //! `setup` (under that test's deadline), saves the whole VM state to
    //! `<target>/qemu-test/snapshots/` and shuts the VM down. That test and
    //! every later one, in this run or the next, start a fresh QEMU that
    //! loads the state and resumes where `setup` left off.
    //!
    //! - **Without `setup`**, a built-in guest is saved once it prints its
    //!   ready marker (`login:` for the echo guest,
    //!   [`LINUX_READY`](crate::guest::LINUX_READY) for the Linux guests).
    //!   `snapshot = "linux-shell"` alone makes every Linux test start at
    //!   the shell.
    //! - **The key** is everything that affects the VM: the QEMU binary
    //!   (path, size, modification time), every argument (the accelerator
    //!   included), the machine type, the console, the files the arguments
    //!   name (by path, size, modification time and inode, as cargo
    //!   fingerprints sources), and what gets the VM ready: the ready marker,
    //!   or the setup function's path and the test binary's identity (a
    //!   rebuilt binary may have a changed setup, so it makes the snapshot
    //!   again). A changed key makes a new snapshot and removes the old one,
    //!   unless another process is restoring it.
    //! - **Once, across processes**: making a snapshot holds an exclusive
    //!   file lock, so parallel tests, test binaries and nextest's processes
    //!   make it once; the others wait, then restore it. A setup that fails
    //!   fails its test, with the snapshot's boot logs in `create/` beside
    //!   the state. The other tests of the same process that need it fail at
    //!   once, naming the first failure, instead of booting again.
    //! - **Isolation**: every test gets its own copy-on-write guest RAM, and
    //!   its disks are opened with `-snapshot`: nothing a test writes
    //!   reaches an image, and no test sees another's writes. A setup's disk
    //!   writes are not kept either, so set up state in memory (the Linux
    //!   guests' root file system is a tmpfs).
    //! - **What you see**: a restored test's `console.log` starts at the
    //!   restore (the boot is in the snapshot's `create/console.log`), and
    //!   the guest and QMP answer at once. `cmdline.txt` shows `-incoming
    //!   defer` and the RAM file; `repro.sh` boots the same VM cold.
    //!
    //! # Guest RAM in a file
    //!
    //! Where it can, the snapshot keeps the guest RAM in a file of its own,
    //! `ram`, beside the device state. The VM that makes the snapshot maps
    //! it shared, and every restored VM maps it private (copy on write): a
    //! restore reads no RAM at all, restored VMs share the file's page
    //! cache, and the file never changes. This needs a machine whose RAM
    //! QEMU names predictably (`q35`, `pc` and their versions; `virt` on
    //! Arm) and no memory options beyond a plain `-m SIZE`. Otherwise
    //! (`-numa`, `-mem-path`, a `memory-backend` of your own, `-m` with
    //! `slots` or `maxmem`) the RAM is saved in the state file, which works
    //! the same and restores more slowly.
    //!
    //! # Without the attribute
    //!
    //! [`Machine::snapshot_key`](crate::Machine::snapshot_key) and
    //! [`Machine::launch_snapshot`](crate::Machine::launch_snapshot) do the
    //! same for any [`Machine`](crate::Machine), with a
    //! [`SnapshotStore`](crate::snapshot::SnapshotStore) of your choice; see
    //! the [`snapshot`](crate::snapshot) module.
}

pub mod linux {
    //! The built-in guests, the Linux guests and [`Shell`](crate::Shell).
    //!
    //! # Built-in guests
    //!
    //! [`guest`](crate::guest) has guests to boot without bringing your own.
    //! Give one as `kernel` and the test gets its architecture, machine type
    //! and CPU too.
    //!
    //! | guest | what | for |
    //! | --- | --- | --- |
    //! | [`ECHO_SHELL_AARCH64`](crate::guest::ECHO_SHELL_AARCH64) | a bare-metal program of a few hundred bytes, embedded in the crate, that boots in about 0.1 s. It prints `login:`, answers each line with `you said: <line>`, and understands `poweroff`, `reset`, `panic`, `flood N` and `bytes` | `qemu-system-aarch64 -M virt` |
    //! | [`SERIAL_PORTS_X86_64`](crate::guest::SERIAL_PORTS_X86_64) | a tiny firmware, embedded, that prints one line on each of COM1 to COM4 | `qemu-system-x86_64 -M q35` |
    //! | [`LINUX_X86_64`](crate::guest::LINUX_X86_64) | Debian's cloud kernel and a busybox initramfs, with a root shell on the first serial port; boots to the shell in a few seconds on TCG | `qemu-system-x86_64 -M q35` |
    //! | [`LINUX_X86_64_GENERIC`](crate::guest::LINUX_X86_64_GENERIC) | the same with Debian's generic kernel, which mounts host directories (9p): `shares`, [`Vm::install`](crate::Vm::install); see [networks](crate::guide::networks#host-directories-and-host-programs) | `qemu-system-x86_64 -M q35` |
    //! | [`LINUX_AARCH64`](crate::guest::LINUX_AARCH64) | the same for Arm | `qemu-system-aarch64 -M virt` |
    //!
    //! The embedded guests are written once to a cache directory for QEMU
    //! to load (`QEMU_TEST_CACHE_DIR`).
    //!
    //! # Getting the Linux guests
    //!
    //! The Linux guests are not embedded: a test that uses one builds it on
    //! first use, before its deadline starts, into the per-user cache
    //! (`QEMU_TEST_CACHE_DIR`, else `~/.cache/qemu-test`), from Debian's
    //! packages (fetched with apt through private package lists: no root,
    //! nothing installed; a manifest records their versions and hashes).
    //! The first time takes a few seconds to half a minute, with a line per
    //! step on stderr; later uses find it. Test processes that start
    //! together (nextest) build it once.
    //!
    //! On a host without apt, or without Debian's cloud kernel (Ubuntu),
    //! point the builder at a kernel and a static busybox:
    //! `QEMU_TEST_LINUX_KERNEL`, `QEMU_TEST_BUSYBOX`, and
    //! `QEMU_TEST_LINUX_MODULES` if the kernel has the guest's drivers as
    //! modules (see [`LinuxSource`](crate::guest::LinuxSource)). Otherwise a
    //! test that uses a guest is skipped, saying what to install or set (a
    //! failure under `QEMU_TEST_REQUIRE=1`); a build that fails fails the
    //! test with its cause. [`LinuxBuilder`](crate::guest::LinuxBuilder)
    //! builds one from code, and `QEMU_TEST_GUESTS_DIR` names a directory
    //! of guests built elsewhere.
    //!
    //! The caches are listed with their sizes and pruned by any test
    //! binary: `cargo test --test NAME -- --qemu-test-cache list` (or
    //! `prune`, `prune-all`), or by [`cache`](crate::cache).
    //!
    //! The guests' own documentation ([`LINUX_X86_64`](crate::guest::LINUX_X86_64),
    //! [`LINUX_AARCH64`](crate::guest::LINUX_AARCH64)) says what their
    //! command line does and what runs inside: busybox tools, a writable
    //! tmpfs root, virtio block devices (hot-plugged ones too) as `/dev/vd*`,
    //! a clean power-off from QMP `system_powerdown` (x86_64) or `poweroff`.
    //! [`linux_x86_64`](crate::guest::linux_x86_64) finds (or builds) the
    //! files and their manifest (the kernel release, the package versions).
    //!
    //! # `vm.shell()`
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(console, kernel = guest::LINUX_X86_64, memory = "256M", timeout = "90s")]
    //! fn runs_commands(vm: &mut Vm) -> TestResult {
    //!     let shell = vm.shell();
    //!     assert_eq!(shell.succeed("echo hi")?, "hi\n");
    //!     shell.fail("false")?;
    //!     let out = shell.run("ls /nope")?; // status, stdout, stderr
    //!     assert_ne!(out.status, 0);
    //!     // The guest has busybox and no C library: copy static binaries.
    //!     shell.copy_to_guest("target/release/my-tool", "/tmp/my-tool")?;
    //!     shell.succeed("chmod 755 /tmp/my-tool")?;
    //!     assert_eq!(shell.succeed("/tmp/my-tool --version")?, "my-tool 1.0\n");
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! [`Shell`](crate::Shell) (`vm.shell()`) runs commands in the guest in
    //! one of two ways, and says which with
    //! [`transport`](crate::Shell::transport):
    //!
    //! - **The data channel** (the built-in Linux guests): a small agent in
    //!   the guest answers on a virtio-serial port the runner adds. stdout
    //!   and stderr come back separately and byte-exact, a command takes a
    //!   few milliseconds, and copies stream at tens to hundreds of MB/s.
    //!   Each command is a fresh `sh -c` in `/root` with stdin at EOF; a
    //!   command past its deadline has its process group killed; output is
    //!   capped at 256 MiB ([`with_output_limit`](crate::Shell::with_output_limit)).
    //!   A failed test's artifacts hold `agent.log`, a line per request.
    //! - **The serial console** (any guest with a POSIX shell on it, and the
    //!   fallback when no agent answers within about 5 s of the console
    //!   shell): each command is typed as a small script between unique
    //!   markers, its exit status is echoed, and its output comes back with
    //!   its size, as text if it is short and base64-encoded otherwise, so
    //!   prompts, echo and kernel messages cannot confuse it. A command past
    //!   its deadline is interrupted with Ctrl-C. Everything goes through the
    //!   UART: think megabytes, not gigabytes.
    //!   [`console_only`](crate::Shell::console_only) forces this way.
    //!
    //! Either way each command runs in a subshell, so `cd` and variables do
    //! not carry over: chain them in one command (`cd /tmp && ls`). The
    //! console always shows what the guest prints.
    //!
    //! | method | gives |
    //! | --- | --- |
    //! | [`succeed`](crate::Shell::succeed) | stdout; an error if the status is not 0 |
    //! | [`fail`](crate::Shell::fail) | stdout; an error if the status is 0 |
    //! | [`run`](crate::Shell::run) | an [`Output`](crate::shell::Output): status, stdout, stderr |
    //! | [`wait_until_succeeds`](crate::Shell::wait_until_succeeds), [`wait_until_fails`](crate::Shell::wait_until_fails) | retries a command until it does, within a timeout |
    //! | [`copy_to_guest`](crate::Shell::copy_to_guest), [`copy_from_guest`](crate::Shell::copy_from_guest), [`write_file`](crate::Shell::write_file), [`read_file`](crate::Shell::read_file) | files, byte-exact |
    //! | [`with_timeout`](crate::Shell::with_timeout) | the same shell with another deadline per operation |
    //!
    //! The [`shell`](crate::shell) module says how a command runs and what
    //! its limits are.
    //!
    //! With `snapshot = "linux-shell"` each test resumes at the shell
    //! instead of booting (see [booted snapshots](crate::guide::snapshots)).
    //!
    //! # Other guests
    //!
    //! Any kernel or firmware works: give its path as `kernel` (and
    //! `initrd`, `append`, `machine`, `cpu`). [`Console`](crate::Console)
    //! waits for any text or regular expression, and a
    //! [`Pattern`](crate::Pattern) marked [`fails`](crate::Pattern::fails)
    //! ends a wait with an error as soon as it appears:
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(arch = "x86_64", machine = "q35", console, kernel = "images/bzImage", append = "console=ttyS0")]
    //! fn boots_my_kernel(vm: &mut Vm) -> TestResult {
    //!     vm.console().wait_for_any(&[
    //!         Pattern::text("login:"),
    //!         Pattern::text("Kernel panic").fails(),
    //!     ])?;
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
}

pub mod networks {
    //! # Networks: several VMs, faults, captures, port forwards
    //!
    //! A test that names its siblings and declares a network gets all its
    //! VMs booted together on a private L2 network, with addresses and
    //! names set in the Linux guests before the body starts:
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(
    //!     kernel = guest::LINUX_X86_64,
    //!     console,
    //!     siblings = ["server", "backup"],
    //!     networks = ["lan"],
    //!     timeout = "120s"
    //! )]
    //! fn cluster(vm: &mut Vm) -> TestResult {
    //!     let server = vm.sibling("server")?;
    //!     server.shell().succeed("nc -l -p 7000 -e hostname >/dev/null 2>&1 &")?;
    //!     vm.shell().wait_until_succeeds("nc server 7000 | grep -qx server", Duration::from_secs(10))?;
    //!     vm.shell().succeed("ping -c1 -W5 backup")?;
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! - The test's VM is `main`; each named sibling goes by its name. The
    //!   runner reserves their host budget together, launches them at
    //!   once (their boots overlap), and [`vm.sibling("server")`](crate::Vm::sibling)
    //!   hands each to the body. Their logs are in `<artifacts>/<name>/`.
    //! - Network `k` (in declaration order, from 0) is `10.99.k.0/24`; the
    //!   `i`th VM (`main` first) is `10.99.k.(i+1)` with MAC
    //!   `52:54:00:kk:ii:01`. In the Linux guest the NIC is named after
    //!   the network (`ip addr show lan`), `/etc/hosts` names every VM
    //!   (`server`, and `server.lan` on each network), and the host name is
    //!   the VM's. [`Network::address_of`](crate::net::Network::address_of)
    //!   gives the addresses on the host.
    //! - Rootless and isolated: the NICs are QEMU `dgram` netdevs on Unix
    //!   sockets in a private directory, joined by a switch thread in the
    //!   test process. No tap, bridge, multicast or root; nothing reaches
    //!   the host or another test, which may use the same addresses.
    //! - The switch writes every frame to `net-<name>.pcap` in the test's
    //!   artifact dir (kept when it fails; tcpdump and Wireshark read it,
    //!   so does [`read_pcap`](crate::net::read_pcap) in the test itself).
    //! - Guests other than the crate's Linux guests get the NICs (MACs as
    //!   above) and set up their side themselves.
    //!
    //! # Faults
    //!
    //! ```no_run
    //! # use qemu_test::prelude::*;
    //! # fn body(vm: &mut Vm) -> TestResult {
    //! let lan = vm.network("lan")?;
    //! lan.partition(&[&["main"], &["server", "backup"]])?; // at once
    //! vm.shell().fail("ping -c1 -W1 server")?;
    //! lan.heal()?;
    //! lan.disconnect("backup")?; // the cable pulled at the switch
    //! lan.reconnect("backup")?;
    //! vm.set_link("lan", false)?; // the NIC's link: the guest sees it
    //! vm.set_link("lan", true)?; // returns once traffic flows again
    //! # Ok(()) }
    //! ```
    //!
    //! # Port forwards
    //!
    //! `forward = [8080]` gives every VM a second NIC on QEMU's user-mode
    //! network with `restrict=on` (the guest reaches neither the host nor
    //! the outside through it); in the Linux guest it is `forward`, at
    //! `10.0.2.15`. [`vm.forward(8080)`](crate::Machine::forward) returns
    //! the host address that reaches the guest's port 8080: on 127.0.0.1,
    //! a port the kernel picked (QEMU binds port 0 and the real one is read
    //! back), so concurrent tests never collide. Other guest ports are
    //! forwarded when first asked for. They close with QEMU.
    //!
    //! ```no_run
    //! # use qemu_test::prelude::*;
    //! #[qemu_test(kernel = guest::LINUX_X86_64, console, forward = [8080])]
    //! fn web(vm: &mut Vm) -> TestResult {
    //!     vm.shell().succeed("mkdir -p /www && echo hi >/www/index.html && httpd -p 8080 -h /www")?;
    //!     let addr = vm.forward(8080)?;
    //!     let stream = std::net::TcpStream::connect(addr)?;
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! # From a booted snapshot
    //!
    //! With `snapshot = "name"`, the snapshot is saved with neither NICs
    //! nor netdevs, only spare PCIe root ports (part of its key). Each
    //! restored copy, the siblings' too, gets its own NICs hot-plugged
    //! after the restore, and the guest side is set up through its shell
    //! like after a boot: three copies of one snapshot get three MACs,
    //! addresses and names.
    //!
    //! # Host directories and host programs
    //!
    //! Debian's cloud kernel has no 9p; the guest
    //! [`LINUX_X86_64_GENERIC`](crate::guest::LINUX_X86_64_GENERIC) is the
    //! same guest with Debian's generic kernel, which has. On it:
    //!
    //! - `shares = ["testdata:/mnt/data:ro", "out:/mnt/out"]` shares host
    //!   directories into every VM of the test (virtio-9p), mounted at the
    //!   guest path (`:ro`: read-only; a read-write share's directory is
    //!   made if missing). A relative host path is taken from where the
    //!   tests run (the package's directory under cargo). Big reads and
    //!   writes run at memory speed: 50 MB reach the guest in well under a
    //!   second, where the console moves about 60 KiB/s.
    //! - [`vm.install(path)`](crate::Vm::install) makes a program your build
    //!   made runnable in the guest, with the shared libraries `ldd` says
    //!   it needs (the host's glibc and libgcc: the guest runs them), and
    //!   returns its path there. It goes through the test's read-only
    //!   program dir, `<artifacts>/host/`, mounted at `/run/qemu-test/host`.
    //!   (On [`LINUX_X86_64`](crate::guest::LINUX_X86_64) it is copied over
    //!   the console instead.)
    //!
    //! ```no_run
    //! use qemu_test::prelude::*;
    //!
    //! #[qemu_test(kernel = guest::LINUX_X86_64_GENERIC, console, shares = ["testdata:/mnt/data:ro"])]
    //! fn my_tool_reads_the_data(vm: &mut Vm) -> TestResult {
    //!     // In an integration test of your crate: env!("CARGO_BIN_EXE_my-tool").
    //!     let tool = vm.install("target/debug/my-tool")?;
    //!     vm.shell().succeed(&format!("{tool} /mnt/data"))?;
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! With `snapshot`, shares are hot-plugged and mounted after each
    //! restore, like NICs (a mounted share would block the save).
}

pub mod assets {
    //! Kernels, initrds and disk images declared by URL and SHA-256, and
    //! UEFI firmware.
    //!
    //! # Declaring an asset
    //!
    //! A test can boot what qemu-test does not build: a distribution's
    //! kernel, a cloud image, an installer ISO. Declare it as an
    //! [`Asset`](crate::guest::Asset), by URL and the SHA-256 of the file as
    //! downloaded (what `sha256sum` prints, or the image's `SHA256SUMS`),
    //! the way QEMU's functional tests do, and use it like a path:
    //!
    //! ```no_run
    //! use qemu_test::guest::Asset;
    //! use qemu_test::prelude::*;
    //!
    //! // QEMU's own tests/functional/test_aarch64_virt.py asset.
    //! static ALPINE: Asset = Asset::new(
    //!     "https://dl-cdn.alpinelinux.org/alpine/v3.17/releases/aarch64/alpine-standard-3.17.2-aarch64.iso",
    //!     "5a36304ecf039292082d92b48152a9ec21009d3a62f459de623e19c4bd9dc027",
    //! );
    //!
    //! #[qemu_test(
    //!     arch = "aarch64",
    //!     machine = "virt",
    //!     cpu = "max,pauth=off",
    //!     memory = "1G",
    //!     firmware = "uefi",
    //!     disk = ALPINE,
    //!     console,
    //!     timeout = "5m"
    //! )]
    //! fn alpine_boots(vm: &mut Vm) -> TestResult {
    //!     vm.console().wait_for("Welcome to Alpine Linux")?;
    //!     Ok(())
    //! }
    //! # fn main() {}
    //! ```
    //!
    //! Before the test's deadline starts, the runner finds the asset in the
    //! per-user cache (`~/.cache/qemu-test/assets/<sha256>/`, or under
    //! `QEMU_TEST_CACHE_DIR`) or downloads it there, once for every test and
    //! every process: a process that finds another one downloading waits
    //! for it. The download is checked against the hash before anything is
    //! cached; a wrong hash fails the test with both hashes and leaves
    //! nothing behind. A URL ending in `.xz`, `.gz` or `.zst` is
    //! decompressed once, and QEMU gets the decompressed file
    //! ([`Asset::with_compression`](crate::guest::Asset::with_compression)
    //! says otherwise). An interrupted download resumes where it stopped.
    //! A progress bar shows on a terminal, a line per step otherwise.
    //!
    //! Downloading needs the `assets` cargo feature (an HTTP client with
    //! rustls and the decoders, left out of the default build):
    //!
    //! ```toml
    //! [dev-dependencies]
    //! qemu-test = { version = "0.1", features = ["assets"] }
    //! ```
    //!
    //! Without it, assets already in the cache are used, and a missing one
    //! fails the test with [`AssetError::FeatureOff`](crate::AssetError::FeatureOff),
    //! which names the feature. `kernel`, `initrd` and `disk` take assets;
    //! an asset made at run time (say, its URL from the environment) lives
    //! in a `LazyLock` and is written `kernel = &*KERNEL`.
    //!
    //! A test binary is usually a debug build, and so are its
    //! dependencies: the pure-Rust zstd decoder then runs several times
    //! slower than optimized. For large `.zst` images, optimize it in your
    //! workspace's `Cargo.toml` (xz and gzip are fast either way):
    //!
    //! ```toml
    //! [profile.dev.package.ruzstd]
    //! opt-level = 3
    //! ```
    //!
    //! # Disk images
    //!
    //! `disk = IMAGE` (an asset, a path, or a [`Disk`](crate::spec::Disk)
    //! for another interface: `Disk::new(&ALPINE).with_interface("ide")`)
    //! attaches the image through a qcow2 overlay of the test's own,
    //! `disk0.qcow2` in its artifact directory (`qemu-img create -f qcow2 -b
    //! IMAGE -F FORMAT`): the guest writes to the overlay, never to the
    //! cached image, and every test starts from the same image. Several
    //! disks are an array: `disk = [ROOT, DATA]` (`disk0`, `disk1`, the
    //! drives' ids too). This needs `qemu-img` (Debian's `qemu-utils`).
    //!
    //! # UEFI firmware
    //!
    //! `firmware = "uefi"` boots the host's UEFI firmware: OVMF on x86_64
    //! (Debian's `ovmf`), AAVMF on aarch64 (`qemu-efi-aarch64`), found
    //! through QEMU's firmware descriptors (`/usr/share/qemu/firmware`) as
    //! libvirt finds it. The code is mapped read-only and the machine gets
    //! a copy of the variable-store template of its own (`efivars.fd` in
    //! the artifact directory), so what one test writes to its variables no
    //! other test sees. A host without the firmware skips the test, naming
    //! the package (a failure under `QEMU_TEST_REQUIRE=1`). Firmware of the
    //! test's own (paths or assets) is
    //! [`Firmware::UefiFiles`](crate::spec::Firmware::UefiFiles). A kernel
    //! given with `kernel` under UEFI must be one the firmware can start
    //! (an EFI stub image); the built-in Linux guests' kernels boot through
    //! PVH and are not.
    //!
    //! # Offline
    //!
    //! `QEMU_TEST_OFFLINE=1` downloads nothing: a test whose assets are not
    //! in the cache is skipped, with the asset and the reason. The same
    //! happens by itself once a download fails for a reason of the network
    //! (no route, refused, a timeout, an HTTP 5xx): the test is skipped and
    //! no other download is tried in that process. Under
    //! `QEMU_TEST_REQUIRE=1` such a skip is a failure. An HTTP 404 or a
    //! wrong hash is always a failure.
    //!
    //! # Fetching ahead, for CI caches
    //!
    //! A test binary lists the assets its selected tests need, as JSON,
    //! with `--qemu-test-assets list`, or fetches them first with `fetch`
    //! (and checks the cached ones against their hash); libtest's filters
    //! select the tests:
    //!
    //! ```text
    //! cargo test --test vm -- --qemu-test-assets list
    //! cargo test --test vm -- --qemu-test-assets fetch boot::
    //! ```
    //!
    //! ```text
    //! {"cache": "/home/me/.cache/qemu-test/assets",
    //!  "assets": [{"url": "...", "sha256": "...", "file": "vmlinuz",
    //!              "compression": "xz", "cached": true,
    //!              "path": ".../assets/<sha256>/vmlinuz", "tests": ["boot::linux"]}]}
    //! ```
    //!
    //! `fetch` fails when an asset could not be had. A CI job restores the
    //! cache's `assets/` directory, runs `fetch`, saves it, and runs the
    //! tests with `QEMU_TEST_OFFLINE=1 QEMU_TEST_REQUIRE=1`. Assets no test
    //! used for 30 days, and interrupted downloads, are stale for
    //! `--qemu-test-cache prune`.
}

pub mod machine {
    //! [`Machine`](crate::Machine) on its own, without the attribute.
    //!
    //! [`Machine`](crate::Machine) owns one QEMU process. It follows QEMU's
    //! Python `QEMUMachine` (python/qemu/machine) method for method; the
    //! [`machine`](crate::machine) module has the mapping. Use it in a
    //! `no_vm` test, in a plain `#[test]`, or anywhere else.
    //!
    //! ```no_run
    //! use qemu_test::{guest, Machine, Pattern};
    //! use serde_json::json;
    //! use std::time::Duration;
    //!
    //! let mut vm = Machine::builder("qemu-system-aarch64")
    //!     .args(["-cpu", "max", "-kernel"])
    //!     .arg(guest::ECHO_SHELL_AARCH64.path()?.to_string_lossy())
    //!     .log_dir("target/my-logs") // QEMU's output, the console log, the QMP transcript
    //!     .build();
    //! vm.set_machine("virt");
    //! vm.set_console(None, 0); // the machine's first serial port
    //! vm.launch()?; // Error::Launch carries QEMU's own output
    //!
    //! let console = vm.console();
    //! console.wait_for("login:")?;
    //! console.exec_and_wait("hello", "you said: hello")?;
    //! console.wait_for_any(&[Pattern::text("$ "), Pattern::text("guest panic").fails()])?;
    //!
    //! vm.command("system_reset", json!({}))?; // Error::Qmp { class, desc } on failure
    //! vm.event_wait("RESET", Duration::from_secs(5), Some(json!({"data": {"guest": false}})))?;
    //! vm.shutdown()?; // quit, wait, and a kill with Error::AbnormalShutdown if needed
    //! # Ok::<(), Box<dyn std::error::Error>>(())
    //! ```
    //!
    //! - **Process lifetime**: QEMU runs in its own process group and dies
    //!   with its parent (`PR_SET_PDEATHSIG`). Dropping a running `Machine`
    //!   kills and reaps it. The temp and socket directories are made on
    //!   first use (a default machine needs neither), private (0700),
    //!   unique, and removed at shutdown; the directories of a process that
    //!   was killed are removed by the next process's first launch.
    //! - **Logs**: with a [`log_dir`](crate::MachineBuilder::log_dir) (the
    //!   runner sets one per test), QEMU's output, the console log and the
    //!   QMP transcript are files there; without one, QEMU's output is kept
    //!   in memory ([`log`](crate::Machine::log)) and nothing is written to
    //!   disk.
    //! - **QMP**: a socketpair by default (no socket path), or a Unix or
    //!   TCP socket with [`MonitorAddr`](crate::MonitorAddr). The client
    //!   ([`qmp_client`](crate::Machine::qmp_client)) is `Sync`: threads may
    //!   send commands at once. Every message both ways goes to the QMP
    //!   transcript (with a log dir), time-stamped, written by a background
    //!   thread within milliseconds. QEMU's errors come back as
    //!   [`Error::Qmp`](crate::Error::Qmp) with its class and description;
    //!   a message over 16 MiB is refused
    //!   ([`QmpError::TooLong`](crate::QmpError::TooLong)).
    //! - **Events**: [`get_qmp_event`](crate::Machine::get_qmp_event),
    //!   [`get_qmp_events`](crate::Machine::get_qmp_events),
    //!   [`event_wait`](crate::Machine::event_wait),
    //!   [`events_wait`](crate::Machine::events_wait) and
    //!   [`clear_events`](crate::Machine::clear_events), with
    //!   `QEMUMachine`'s cache; [`event_match`](crate::event_match) is its
    //!   matcher.
    //! - **Console**: pipes on QEMU's stdio (QEMU writes a pipe several
    //!   times faster than a socket), or a socketpair when a wrapper or the
    //!   arguments take QEMU's stdio. A drain thread keeps every byte the
    //!   guest prints (invalid UTF-8 included), in memory and in the console
    //!   log, and never stops while QEMU runs. Waits have deadlines, and
    //!   their errors show the last 20 lines the guest printed.
    //! - **fd passing**: [`add_fd`](crate::Machine::add_fd) at launch,
    //!   [`send_fd_scm`](crate::Machine::send_fd_scm) over the QMP socket
    //!   (then `getfd` or `add-fd`).
    //! - **Guest crashes**: [`Console::crash`](crate::Console::crash) is the
    //!   first kernel panic, Oops or BUG line the console showed, and
    //!   [`wait_for_guest_crash`](crate::Machine::wait_for_guest_crash)
    //!   waits for one or for QEMU's `GUEST_PANICKED` event.
    //! - **Deadlines**: [`set_deadline`](crate::Machine::set_deadline) caps
    //!   every wait of the machine; inside a test the runner sets it to the
    //!   test's deadline.
    //! - **Snapshots**: see [snapshots](crate::guide::snapshots#without-the-attribute).
    //!
    //! Errors are typed, one enum per domain: [`Error`](crate::Error) for
    //! the machine, with [`QmpError`](crate::QmpError),
    //! [`ConsoleError`](crate::ConsoleError),
    //! [`EventError`](crate::EventError) inside it, and
    //! [`ShellError`](crate::ShellError),
    //! [`SetupError`](crate::SetupError),
    //! [`SnapshotError`](crate::SnapshotError) and
    //! [`SiblingError`](crate::SiblingError) beside it. All convert into
    //! [`TestResult`](crate::TestResult)'s error with `?`.
}

pub mod ci {
    //! nextest, JUnit, splitting a suite across machines, GitHub Actions.
    //!
    //! # Supported QEMU
    //!
    //! The project's CI runs every test against Debian bookworm's QEMU 7.2,
    //! `qemu-system-x86_64` and `qemu-system-aarch64` (Debian packages
    //! `qemu-system-x86` and `qemu-system-arm`): use 7.2 or later. Before
    //! a test runs, the runner checks that its QEMU has what the test's
    //! keys are built on (`networks`: `-netdev dgram`, new in 7.2;
    //! `forward`: `-netdev user`; `shares`: `virtio-9p-pci`), and fails
    //! the test with what is missing instead of leaving it to QEMU's own
    //! error at launch.
    //!
    //! # In CI
    //!
    //! Set `QEMU_TEST_REQUIRE=1` so that a test that cannot run (no QEMU, no
    //! machine type, no KVM when it asks for KVM, a guest that is not built)
    //! fails instead of being skipped, and keep `target/qemu-test` as the
    //! job's artifact when it fails: it holds each failed test's logs and
    //! `repro.sh`.
    //!
    //! # JUnit
    //!
    //! Under `cargo test`, `QEMU_TEST_JUNIT=DIR` makes each test binary
    //! write its JUnit XML report into `DIR` as `<package>.<binary>.xml`
    //! (its test suite is named `<package>::<binary>`, as nextest names
    //! binaries): one `<testcase>` per test that ran or was skipped; a
    //! failure carries its kind as the type, the whole message, the console
    //! tail in `<system-out>`, QEMU's output in `<system-err>`, and the
    //! machine, architecture, accelerator, QEMU binary and kept artifact
    //! directory as properties. Under nextest no file is written (one
    //! process per test would overwrite it): use nextest's own JUnit report
    //! (below).
    //!
    //! # nextest
    //!
    //! `cargo nextest run` works: nextest runs every test in its own process,
    //! and the runner's slot files keep the host budget across them (see
    //! [scheduling](crate::guide::runner#scheduling)). The repository's
    //! `.config/nextest.toml` is a documented starting point to copy: a test
    //! group for VM tests, `threads-required` for tests with several vCPUs,
    //! a slow-timeout backstop, and a `ci` profile with JUnit:
    //!
    //! ```toml
    //! [profile.ci]
    //! fail-fast = false
    //!
    //! [profile.ci.junit]
    //! path = "junit.xml"   # target/nextest/ci/junit.xml
    //! ```
    //!
    //! Split a suite across machines with `--partition count:1/2` on one and
    //! `count:2/2` on the other. Skips found while a test runs show as
    //! passes under nextest (see [skips](crate::guide::runner#skips)).
    //!
    //! # Declared assets
    //!
    //! Tests that boot [declared assets](crate::guide::assets) download them
    //! into `~/.cache/qemu-test/assets/` on first use. In CI, keep that
    //! directory between jobs and fetch ahead, so that a network problem
    //! shows as one clear step rather than as skipped tests:
    //!
    //! ```yaml
    //!       - uses: actions/cache@v4
    //!         with: { path: ~/.cache/qemu-test/assets, key: qemu-test-assets-${{ hashFiles('tests/**/*.rs') }}, restore-keys: qemu-test-assets- }
    //!       - run: cargo test --test vm -- --qemu-test-assets fetch
    //!       - run: cargo test
    //!         env: { QEMU_TEST_OFFLINE: "1", QEMU_TEST_REQUIRE: "1" }
    //! ```
    //!
    //! # GitHub Actions
    //!
    //! ```yaml
    //! jobs:
    //!   vm-tests:
    //!     runs-on: ubuntu-latest
    //!     strategy:
    //!       matrix: { partition: [1, 2] }
    //!     steps:
    //!       - uses: actions/checkout@v4
    //!       - run: sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-arm qemu-system-x86
    //!       - uses: taiki-e/install-action@nextest
    //!       - run: cargo nextest run --profile ci --partition count:${{ matrix.partition }}/2
    //!         env: { QEMU_TEST_REQUIRE: "1" }
    //!       - uses: actions/upload-artifact@v4
    //!         if: failure()
    //!         with: { name: qemu-test-artifacts-${{ matrix.partition }}, path: target/qemu-test }
    //! ```
}
