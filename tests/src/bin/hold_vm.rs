//! Helper process for the hygiene tests: launches a VM from a thread that
//! then exits, prints `QEMU_PID <pid>` and waits to be killed.

use std::thread;
use std::time::Duration;

fn main() {
    // A test process as a user would run it: SIGINT ends it. (A suite
    // started from a background job inherits SIGINT ignored, and the
    // hygiene test would then wait for the sleep below instead.)
    // SAFETY: setting a signal's disposition to its default before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let vm = thread::spawn(|| {
        let mut vm = qemu_test_suite::stopped_x86();
        vm.launch().expect("launching QEMU");
        // Both dirs, for the hygiene tests (they are made on first use).
        vm.temp_dir().expect("a temp dir");
        vm.sock_dir().expect("a socket dir");
        vm
    })
    .join()
    .expect("the launching thread");
    println!("QEMU_PID {}", vm.pid().expect("a running VM has a pid"));
    thread::sleep(Duration::from_secs(60));
}
