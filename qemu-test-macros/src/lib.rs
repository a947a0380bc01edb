//! The `#[qemu_test]` attribute of the qemu-test framework.
//!
//! Use it through the runtime crate, which re-exports it as
//! `qemu_test::qemu_test` and in `qemu_test::prelude`; the code it expands
//! to refers to `::qemu_test` (or the path given with `crate = ...`), so
//! this crate is not useful on its own.
//!
//! The crate follows dtolnay's one-file-per-phase layout: `parse` turns the
//! arguments into a `Config` that keeps every token, `validate` checks the
//! rules between keys and the function's signature, and `expand` emits the
//! function plus its registration.

mod expand;
mod guard;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Turns a function into a test that runs against a freshly launched QEMU
/// virtual machine.
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64, timeout = "30s")]
/// fn guest_echoes(vm: &mut Vm) -> TestResult {
///     vm.console().wait_for("login:")?;
///     vm.console().exec_and_wait("hello", "you said: hello")?;
///     Ok(())
/// }
///
/// #[qemu_test(no_vm)]
/// fn plain_logic() {
///     assert_eq!(1 + 1, 2);
/// }
/// # fn main() {}
/// ```
///
/// The test binary is a `harness = false` test target whose file ends with
/// `qemu_test::main!();`; `cargo test` then runs every `#[qemu_test]` in it
/// (with the usual filters, `--list`, `--ignored`, ...), under the
/// function's name.
///
/// # The function
///
/// - A VM test takes exactly one parameter of type `&mut Vm` (any pattern;
///   `&mut qemu_test::Vm` or any path ending in `Vm` is accepted too). With
///   `no_vm` it takes none.
/// - It may return nothing, or `TestResult`, or any `Result<(), E>` with
///   `E: Debug`: an `Err` fails the test, as does a panic.
/// - It cannot be `async`, `unsafe` or generic, cannot take `self`, and must
///   not also carry `#[test]`.
///
/// # Keys
///
/// All keys are optional and each may be given once. A key with a wrong
/// value, an unknown key or a function with the wrong signature is a compile
/// error that points at the offending token.
///
/// | key | value | meaning |
/// | --- | --- | --- |
/// | `binary` | `"qemu-system-aarch64"` | the QEMU executable: a name looked up in `QEMU_TEST_QEMU_DIR` and `PATH`, or a path; excludes `arch` |
/// | `arch` | `"aarch64"`, or `["x86_64", "aarch64"]` | run `qemu-system-<arch>`; excludes `binary`. Without either, a built-in guest's architecture is used. An array makes one test per value (see below) |
/// | `machine` | `"virt"`, or `["q35", "pc"]` | `-machine`; defaults to a built-in guest's machine. An array makes one test per value |
/// | `cpu` | `"max"` | `-cpu` |
/// | `smp` | `2`, or QEMU's syntax `"1,sockets=2,cores=2,maxcpus=8"` | `-smp`; the vCPUs the guest starts with are the host cores the scheduler reserves |
/// | `memory` | `"256M"`, `"2G"`, `512` (MiB), or `"512M,slots=2,maxmem=4G"` | `-m`: digits with an optional `K`, `M`, `G` or `T` suffix (a bare number or an integer literal is MiB), optionally with hotplug room; the starting size is what the scheduler reserves |
/// | `accel` | `"auto"`, `"kvm"` or `"tcg"` | the accelerator; `auto` (the default) uses KVM when it works, else TCG |
/// | `kernel` | `"vmlinuz"` or an expression | `-kernel` (or `-bios` for a built-in firmware guest); see below |
/// | `initrd` | `"initrd.img"` or an expression | `-initrd`; same values as `kernel` |
/// | `append` | `"console=ttyS0"` | `-append`, the kernel command line |
/// | `drive` | `"file=a.img,if=virtio"` or `["file=a.img", "file=b.img"]` | one `-drive` per string |
/// | `disk` | `ROOTFS`, `"disk.img"`, `Disk::new(&ROOTFS).with_interface("ide")`, or an array of them | a disk image (a declared `Asset`, a path) used through a qcow2 overlay of its own in the test's artifact dir (`disk0.qcow2`, ...), so the image is never written; virtio unless a `qemu_test::spec::Disk` says otherwise. Needs `qemu-img` |
/// | `firmware` | `"uefi"`, or a `qemu_test::spec::Firmware` | boot UEFI: the host's OVMF (x86_64) or AAVMF (aarch64), found through QEMU's firmware descriptors, with a copy of the variable store of its own (`efivars.fd` in the artifact dir); skipped with the package to install where there is none |
/// | `args` | `["-no-reboot", "-d", "guest_errors"]` | extra arguments, verbatim, one string per argument |
/// | `console` | flag, or a device type such as `"isa-serial"` | attach the serial console (`vm.console()`): to the machine's default serial port, or to a `-device` of that type |
/// | `console_index` | `1` (integer literal) | fill that many serial ports with `null` before the console; requires `console` |
/// | `timeout` | `"60s"`, `"2m"`, `"1m 30s"`, `"500ms"` | the per-test deadline (default 60 s, `no_vm` tests too): the VM is killed and the test fails; a body still running is abandoned. Any [humantime] duration other than zero |
/// | `snapshot` | `"name"` (letters, digits, `-`, `_`, `.`) | start from a shared booted snapshot: the VM is booted once (per key), got ready, saved, and every test with the same snapshot and VM starts from a restored copy; see below |
/// | `qmp` | `false` | no QMP monitor: QEMU is only started, and the body judges how it ends (`vm.wait(None)`, `vm.exit_code()`, `vm.log()`), e.g. an expected launch failure |
/// | `launch` | `false` | the runner does not launch the VM: the body gets it configured, adds what only it knows at run time (a port, a socket path) and calls `vm.launch()` |
/// | `siblings` | `1` (integer literal, at least 1), or names: `["server", "backup"]` | sibling machines configured like the test's VM and reserved with it at admission. A count: the body makes and launches them with `vm.sibling("name")`. Names: the runner launches them with the test's VM (restored from its `snapshot` too), they join its `networks`, and `vm.sibling("server")` hands each over |
/// | `networks` | `["lan"]` (names: lowercase letters, digits, `-`, `_`; at most 15) | private L2 networks every VM of the test is on (the test's VM is `main`, named siblings by their names): network `k` is `10.99.k.0/24`, member `i` is `.i+1`, names resolve in the Linux guest (`ping server`); `vm.network("lan")` partitions, cuts, captures (`net-lan.pcap` in the artifacts). See `qemu_test::net` |
/// | `shares` | `["testdata:/mnt/data:ro", "out:/mnt/out"]` | host directories shared into every VM (virtio-9p; `:ro` read-only), mounted there by a Linux guest whose kernel has 9p (`guest::LINUX_X86_64_GENERIC`); a relative host path is taken from the directory the tests run in |
/// | `forward` | `[8080, 22]` (guest TCP ports) | a port-forward NIC on every VM (`restrict=on`: the guest reaches nothing through it); `vm.forward(8080)` returns the host address (127.0.0.1, a port the kernel picked) reaching the guest's port; other ports are added at run time |
/// | `setup` | a path: `setup = wait_for_shell` | the function (`fn(&mut Vm) -> TestResult`) that gets a `snapshot`'s VM ready before it is saved; requires `snapshot`. Without it, a built-in guest's ready marker (`login:`, the Linux shell's marker) is waited for |
/// | `requires` | `[device("virtio-9p-pci"), netdev("user"), command("ncat")]` | what the host must offer, else the test is skipped with the reason (checked before launch, when the tests are listed); the functions of `qemu_test::requires` are in scope: `device`, `netdev`, `machine`, `accel`, `command`, `memlock`, `check(what, fn)`. Allowed with `no_vm` (but not the ones that need a QEMU) |
/// | `ignore` | flag, or `"reason"` | skip the test unless run with `--ignored` |
/// | `should_fail` | flag, or `"message"` | the test must fail (return `Err`, panic, time out, or fail to launch QEMU), with a message containing the given text if there is one |
/// | `no_vm` | flag | a plain test without a VM (it may drive `Machine`s itself): the function takes no parameters, and only `timeout` (default 60 s), `ignore`, `should_fail` and `crate` may be combined with it |
/// | `crate` | a path: `crate = qt` | where the generated code finds the runtime crate, for a renamed dependency (default `::qemu_test`); see below |
///
/// Several drives are given as one array (`drive = ["a", "b"]`), not by
/// repeating the key: like every key, `drive` may appear only once.
///
/// ## One body, several targets
///
/// `arch = ["x86_64", "aarch64"]` registers one test per value, named after
/// the function and the value (`version::x86_64`, `version::aarch64`, as
/// rstest names its cases); each is filtered, skipped (its QEMU missing)
/// and reported on its own. With arrays for both `arch` and `machine`, every
/// combination runs (`version::x86_64::q35`). The values become parts of
/// test names, so they are plain names (`virt`, not `virt,gic-version=3`).
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// #[qemu_test(arch = ["x86_64", "aarch64"], machine = "none", args = ["-S"])]
/// fn version(vm: &mut Vm) -> TestResult {
///     assert!(vm.command("query-version", json!({}))?["qemu"]["major"].as_u64() >= Some(7));
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `kernel` and `initrd` values
///
/// The value becomes the argument of `VmSpec::with_kernel` (or
/// `with_initrd`), which takes anything `qemu_test::spec::Image` converts
/// from:
///
/// - a string literal is a path on the host: `kernel = "/boot/vmlinuz"`;
/// - a path names a `static` or `const` and is passed by reference: a
///   `Guest` such as `guest::ECHO_SHELL_AARCH64` (a guest built into the
///   crate, or one of yours), or a path of your own of type `&str`,
///   `String`, `PathBuf`, `&Path` or `&Guest` (`const KERNEL: &str =
///   "/boot/vmlinuz"; ... kernel = KERNEL`);
/// - any other expression is passed as is and must evaluate to a `String`,
///   `PathBuf`, `&str`, `&Path` or `&'static Guest`, for example
///   `kernel = kernel_path()` or `kernel = env!("KERNEL")`.
///
/// A declared `qemu_test::guest::Asset` (a file named by URL and SHA-256,
/// fetched once into the per-user cache) is a path too: `static KERNEL:
/// Asset = Asset::new(URL, SHA256); ... kernel = KERNEL`; one made at run
/// time in a `LazyLock` is written `kernel = &*KERNEL`. `disk` takes the
/// same values.
///
/// ## Booted snapshots
///
/// ```no_run
/// use qemu_test::prelude::*;
///
/// fn configured(vm: &mut Vm) -> TestResult {
///     vm.shell().succeed("mkdir -p /srv && echo ready > /srv/state")?;
///     Ok(())
/// }
///
/// #[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "configured", setup = configured)]
/// fn starts_configured(vm: &mut Vm) -> TestResult {
///     assert_eq!(vm.shell().succeed("cat /srv/state")?, "ready\n");
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// The first test that needs the snapshot boots the VM, runs `setup` (under
/// the test's timeout), saves the whole VM state under
/// `target/qemu-test/snapshots/` and shuts it down; that test and every
/// later one (in this process or another, e.g. under nextest) start a fresh
/// QEMU that loads the state and resumes: the console shows only what the
/// guest prints after the restore. Snapshots are keyed by everything that
/// affects the VM (QEMU binary, arguments, machine, console, the files they
/// name, and the setup: its path and, because its code may have changed,
/// the test binary), so a change makes a new one. Disks are opened with
/// `-snapshot`: nothing a test writes reaches the image, and no test sees
/// another's writes.
///
/// ## A renamed dependency
///
/// The generated code names the runtime crate as `::qemu_test`. If your
/// `Cargo.toml` gives the dependency another name, say so with `crate`, a
/// path (not a string, as tokio's and serde's `crate` keys take):
///
/// ```toml
/// [dev-dependencies]
/// qt = { package = "qemu-test", version = "0.1" }
/// ```
///
/// ```ignore
/// use qt::prelude::*;
///
/// #[qemu_test(crate = qt, machine = "virt", console, kernel = guest::ECHO_SHELL_AARCH64)]
/// fn boots(vm: &mut Vm) -> TestResult {
///     vm.console().wait_for("login:")?;
///     Ok(())
/// }
///
/// qt::main!();
/// ```
///
/// Any path that leads to the crate works: `crate = ::qt`, or
/// `crate = crate::support::qt` for a re-export. To rename once for a whole
/// test file instead, alias the crate back at its top:
/// `extern crate qt as qemu_test;`.
///
/// # What it expands to
///
/// The function, unchanged, and a hidden `static` that registers it with the
/// runner: its name and location, a `fn() -> VmSpec` that calls one
/// `VmSpec::with_*` method per key, a body that calls the function and
/// converts its return value, the `ignore` and `should_fail` settings, and
/// the `setup` function (wrapped like the body).
///
/// In a target built with libtest's harness (no `harness = false`), it
/// also expands to a `#[test]` that fails and says to add `harness =
/// false`: libtest would never run the function.
///
/// [humantime]: https://docs.rs/humantime
#[proc_macro_attribute]
pub fn qemu_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut out = expand::qemu_test(args.into(), item.clone().into());
    out.extend(guard::libtest_guard(item.into()));
    out.into()
}
