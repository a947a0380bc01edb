//! What `cargo xtask bench` P8 runs: three VMs on one network until every
//! pair pings, cold and from a booted snapshot, against one VM reaching
//! its first command; and a file into the guest through a share against
//! over the serial console. Not run by `cargo test` (`test = false`).

use std::path::Path;
use std::time::Instant;

use qemu_test::prelude::*;

/// Every VM pings every other by name.
fn all_pairs(vm: &mut Vm) -> TestResult {
    let b = vm.sibling("b")?;
    let c = vm.sibling("c")?;
    let shells = [("main", vm.shell()), ("b", b.shell()), ("c", c.shell())];
    for (me, shell) in &shells {
        for (peer, _) in &shells {
            if peer != me {
                shell.succeed(&format!("ping -c1 -W5 {peer}"))?;
            }
        }
    }
    Ok(())
}

mod three {
    use super::*;

    #[qemu_test(console, kernel = guest::LINUX_X86_64, siblings = ["b", "c"], networks = ["lan"], timeout = "180s")]
    fn cold(vm: &mut Vm) -> TestResult {
        all_pairs(vm)
    }

    #[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "p8-three", siblings = ["b", "c"], networks = ["lan"], timeout = "180s")]
    fn snapshot(vm: &mut Vm) -> TestResult {
        all_pairs(vm)
    }
}

mod one {
    use super::*;

    #[qemu_test(console, kernel = guest::LINUX_X86_64, timeout = "120s")]
    fn cold(vm: &mut Vm) -> TestResult {
        vm.shell().succeed("true")?;
        Ok(())
    }

    #[qemu_test(console, kernel = guest::LINUX_X86_64, snapshot = "p8-one", timeout = "120s")]
    fn snapshot(vm: &mut Vm) -> TestResult {
        vm.shell().succeed("true")?;
        Ok(())
    }
}

/// The file both copies move: `QEMU_TEST_BENCH_FILE` (made by the bench).
fn bench_file() -> TestResult<std::path::PathBuf> {
    Ok(std::env::var_os("QEMU_TEST_BENCH_FILE")
        .ok_or("QEMU_TEST_BENCH_FILE is not set (cargo xtask bench sets it)")?
        .into())
}

/// Prints `name bytes seconds` for the bench to read.
fn report(name: &str, file: &Path, took: Duration) -> TestResult {
    let bytes = std::fs::metadata(file)?.len();
    println!("qemu-test-bench {name} {bytes} {:.6}", took.as_secs_f64());
    Ok(())
}

mod copy {
    use super::*;

    /// Through a share (`QEMU_TEST_BENCH_FILE`'s dir, read-only) into the
    /// guest's memory.
    #[qemu_test(console, kernel = guest::LINUX_X86_64_GENERIC, memory = "384M", shares = ["../target/qemu-test-bench-share:/mnt/bench:ro"], timeout = "600s")]
    fn share(vm: &mut Vm) -> TestResult {
        let file = bench_file()?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("a file name")?;
        let sh = vm.shell().with_timeout(Duration::from_secs(300));
        let started = Instant::now();
        sh.succeed(&format!("cp /mnt/bench/{name} /tmp/copy"))?;
        let took = started.elapsed();
        let size = sh.succeed("wc -c </tmp/copy")?;
        assert_eq!(size.trim(), std::fs::metadata(&file)?.len().to_string());
        report("share", &file, took)
    }

    /// Over the serial console (`Shell::copy_to_guest` on
    /// `console_only`: the data channel would carry it otherwise).
    #[qemu_test(console, kernel = guest::LINUX_X86_64_GENERIC, memory = "384M", timeout = "1800s")]
    fn serial(vm: &mut Vm) -> TestResult {
        let file = std::env::var_os("QEMU_TEST_BENCH_SERIAL_FILE")
            .map(std::path::PathBuf::from)
            .unwrap_or(bench_file()?);
        let sh = vm
            .shell()
            .console_only()
            .with_timeout(Duration::from_secs(1700));
        sh.succeed("true")?;
        let started = Instant::now();
        sh.copy_to_guest(&file, "/tmp/copy")?;
        let took = started.elapsed();
        report("serial", &file, took)
    }
}

qemu_test::main!();
