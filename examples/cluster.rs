//! A three-node test: a server and two clients on a private network,
//! talking by name, through a partition and its heal.
//!
//! Run it:
//!
//! ```text
//! cargo run -p qemu-test-examples --example cluster
//! ```
//!
//! (The Linux guest is built on first use, about half a minute.)
//!
//! What to copy into your own suite:
//!
//! - `siblings = ["server", "backup"]` names two more VMs, configured like
//!   the test's own (`main`); the runner boots all three together.
//! - `networks = ["lan"]` puts them on one private network: addresses
//!   `10.99.0.1` to `.3`, and each guest resolves the others by name.
//! - `vm.network("lan")` partitions and heals it while the test runs;
//!   everything on it is captured in `net-lan.pcap`, kept with the logs
//!   when the test fails.

use qemu_test::prelude::*;
use qemu_test::Shell;

/// A tiny key-value service on port 7000 in the guest: each connection
/// gets the value of the file `/srv/value`.
fn serve(server: &Shell) -> TestResult {
    server.succeed("mkdir -p /srv && echo 42 >/srv/value")?;
    server.succeed("(while :; do nc -l -p 7000 -e cat /srv/value; done) >/dev/null 2>&1 &")?;
    Ok(())
}

/// Asks `host`'s service for its value from `client`.
fn ask(client: &Shell, host: &str) -> TestResult<String> {
    let out = client.run(&format!("nc -w 2 {host} 7000"))?;
    Ok(out.stdout.trim().to_string())
}

#[qemu_test(
    kernel = guest::LINUX_X86_64,
    console,
    siblings = ["server", "backup"],
    networks = ["lan"],
    timeout = "180s"
)]
fn clients_reach_the_server_by_name(vm: &mut Vm) -> TestResult {
    let server = vm.sibling("server")?;
    let backup = vm.sibling("backup")?;
    serve(&server.shell())?;
    // The service takes a moment to listen.
    vm.shell()
        .wait_until_succeeds("nc -w 2 server 7000 | grep -qx 42", Duration::from_secs(10))?;
    assert_eq!(ask(&backup.shell(), "server")?, "42");

    // Cut `main` off: it can no longer reach the server; the others can.
    let lan = vm.network("lan")?;
    lan.partition(&[&["main"], &["server", "backup"]])?;
    assert_eq!(ask(&vm.shell(), "server")?, "");
    assert_eq!(ask(&backup.shell(), "server")?, "42");

    // Heal: one network again, at once.
    lan.heal()?;
    assert_eq!(ask(&vm.shell(), "server")?, "42");
    println!("capture: {}", lan.pcap().display());
    Ok(())
}

qemu_test::main!();
