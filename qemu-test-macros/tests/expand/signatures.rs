// Every accepted signature: any parameter pattern, `Vm` by any path, any
// return type that converts into an outcome.
use qemu_test::prelude::*;

#[qemu_test]
fn returns_unit(vm: &mut Vm) {
    let _ = vm;
}

#[qemu_test]
fn returns_test_result(_: &mut Vm) -> TestResult {
    Ok(())
}

#[qemu_test]
fn returns_result_with_string(mut vm: &'_ mut qemu_test::Vm) -> Result<(), String> {
    let _ = &mut vm;
    Err("no".into())
}

#[qemu_test]
fn absolute_path(vm: &mut ::qemu_test::runner::Vm) -> std::result::Result<(), std::io::Error> {
    let _ = vm;
    Ok(())
}

/// Documented, with other attributes kept.
#[qemu_test(no_vm)]
#[allow(clippy::eq_op)]
fn r#plain() {
    assert_eq!(1, 1);
}

#[qemu_test(no_vm)]
const fn const_plain() {}

// A configured-out test disappears together with its registration.
#[qemu_test(no_vm)]
#[cfg(any())]
fn configured_out() {}

mod nested {
    use qemu_test::prelude::*;

    // The same name in another module registers separately.
    #[qemu_test]
    fn returns_unit(vm: &mut Vm) {
        let _ = vm;
    }
}

// A `harness = false` target: compiling is the test.
fn main() {}
