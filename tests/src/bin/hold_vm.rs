//! Helper process for the hygiene tests: launches a VM from a thread that
//! then exits, prints `QEMU_PID <pid>` and waits to be killed.

use std::thread;
use std::time::Duration;

fn main() {
    let vm = thread::spawn(|| {
        let mut vm = qemu_test_suite::stopped_x86();
        vm.launch().expect("launching QEMU");
        vm
    })
    .join()
    .expect("the launching thread");
    println!("QEMU_PID {}", vm.pid().expect("a running VM has a pid"));
    thread::sleep(Duration::from_secs(60));
}
