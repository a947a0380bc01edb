// Runs the expansion: every test is registered with the spec, body, ignore
// and should_fail its attribute describes.
use qemu_test::__private::{Body, BodyResult, ShouldFail, TestDef, TESTS};
use qemu_test::guest::{Guest, Load};
use qemu_test::prelude::*;
use qemu_test::spec::{Accel, Image};

/// A guest of this test's own (the path form of `kernel` borrows it).
static TINY: Guest = Guest {
    name: "tiny",
    arch: "aarch64",
    machine: "virt",
    cpu: None,
    load: Load::Kernel,
    ready: None,
    bytes: &[0; 4],
};

#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    cpu = "max",
    smp = 2,
    memory = 512,
    accel = "tcg",
    kernel = "bzImage",
    initrd = "initrd.img",
    append = "console=ttyS0",
    drive = ["file=a.img,if=virtio", "file=b.img,if=virtio"],
    args = ["-no-reboot", "-d", "guest_errors"],
    console = "isa-serial",
    console_index = 1,
    timeout = "1m 30s",
    ignore = "slow",
    should_fail = "boom",
)]
fn every_key(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(
    binary = "qemu-system-aarch64",
    memory = "1G",
    drive = "file=c.img",
    console
)]
fn binary_and_one_drive(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(kernel = TINY, ignore, should_fail)]
fn flags(vm: &mut Vm) {
    let _ = vm;
}

mod common {
    use qemu_test::prelude::*;
    pub fn ready(_vm: &mut Vm) -> TestResult {
        Err("not ready".into())
    }
}

#[qemu_test(kernel = TINY, console, snapshot = "tiny-1.0", setup = common::ready)]
fn from_a_snapshot(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test(no_vm)]
fn plain_passes() {}

#[qemu_test(no_vm, should_fail)]
fn plain_fails() -> Result<(), String> {
    Err("expected".to_string())
}

#[qemu_test(arch = ["x86_64", "aarch64"], machine = "none")]
fn per_target(vm: &mut Vm) {
    let _ = vm;
}

fn find(name: &str) -> &'static TestDef {
    TESTS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
}

/// A `harness = false` target (as a `#[qemu_test]` one must be): `main`
/// runs the check.
fn main() {
    every_attribute_registers_what_it_describes();
    println!("every attribute registers what it describes: ok");
}

fn every_attribute_registers_what_it_describes() {
    assert_eq!(
        TESTS.len(),
        8,
        "six functions, one of them a matrix of three"
    );

    let t = find("every_key");
    assert_eq!(t.module_path, module_path!());
    assert!(t.file.ends_with("registered.rs"), "{}", t.file);
    assert_eq!(t.line, 19); // the line of the attribute
    assert_eq!(t.ignore, Some("slow"));
    assert_eq!(t.should_fail, ShouldFail::WithMessage("boom"));
    assert!(matches!(t.body, Body::Vm(_)));
    let spec = (t.spec)();
    assert_eq!(spec.arch.as_deref(), Some("x86_64"));
    assert_eq!(spec.binary, None);
    assert_eq!(spec.machine.as_deref(), Some("q35"));
    assert_eq!(spec.cpu.as_deref(), Some("max"));
    assert_eq!(spec.smp.cpus(), 2);
    assert_eq!(spec.memory.as_deref(), Some("512M"));
    assert_eq!(spec.accel, Accel::Tcg);
    assert_eq!(spec.kernel, Some(Image::Path("bzImage".into())));
    assert_eq!(spec.initrd, Some(Image::Path("initrd.img".into())));
    assert_eq!(spec.append.as_deref(), Some("console=ttyS0"));
    assert_eq!(
        spec.drives,
        ["file=a.img,if=virtio", "file=b.img,if=virtio"]
    );
    assert_eq!(spec.args, ["-no-reboot", "-d", "guest_errors"]);
    let console = spec.console.expect("a console");
    assert_eq!(console.device.as_deref(), Some("isa-serial"));
    assert_eq!(console.index, 1);
    assert_eq!(spec.timeout, Duration::from_secs(90));
    assert_eq!(spec.snapshot, None);
    assert!(t.setup.is_none());

    let t = find("from_a_snapshot");
    assert_eq!((t.spec)().snapshot.as_deref(), Some("tiny-1.0"));
    let setup = t.setup.expect("a setup function");
    assert_eq!(setup.path, concat!(module_path!(), "::common::ready"));

    let spec = (find("binary_and_one_drive").spec)();
    assert_eq!(spec.binary.as_deref(), Some("qemu-system-aarch64"));
    assert_eq!(spec.memory.as_deref(), Some("1G"));
    assert_eq!(spec.drives, ["file=c.img"]);
    assert_eq!(spec.console.expect("a console"), Default::default());
    assert_eq!(spec.timeout, qemu_test::spec::DEFAULT_TIMEOUT);

    let t = find("flags");
    assert_eq!(t.ignore, Some(""));
    assert_eq!(t.should_fail, ShouldFail::Yes);
    assert_eq!((t.spec)().builtin_guest(), Some(&TINY));

    let variants: Vec<(Option<&str>, Option<String>)> = TESTS
        .iter()
        .filter(|t| t.name == "per_target")
        .map(|t| (t.variant, (t.spec)().arch))
        .collect();
    assert_eq!(
        variants,
        [
            (Some("x86_64"), Some("x86_64".to_string())),
            (Some("aarch64"), Some("aarch64".to_string()))
        ]
    );

    let t = find("plain_passes");
    assert_eq!(t.ignore, None);
    assert_eq!(t.should_fail, ShouldFail::No);
    let Body::Plain(body) = t.body else {
        panic!("a plain body")
    };
    assert_eq!(body(), BodyResult::Passed);

    let Body::Plain(body) = find("plain_fails").body else {
        panic!("a plain body")
    };
    // A string error reads as it is, not quoted as `Debug` would.
    match body() {
        BodyResult::Failed(error) => assert_eq!(error.message(), "expected"),
        other => panic!("{other:?}"),
    }
}
