//! A guest the framework did not build: Debian's kernel booted with an
//! initramfs and a data disk that this test makes itself. Its getty asks
//! for a user and a password on the serial port; `Shell::login` gives
//! them and `Shell` works as that user; a port forward reaches the web
//! server the guest runs from the test's disk.

use std::io::{Read, Write};
use std::path::Path;

use qemu_test::prelude::*;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pass";

/// The test's own `/init`: mounts, loads the virtio modules, sets the
/// password, mounts the data disk, serves it on port 8080 through the only
/// NIC (the port-forward NIC), and hands over to busybox init (a getty on
/// the serial port).
const INIT: &str = r#"#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /data /home/tester
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
chmod 1777 /tmp
for m in $(cat /etc/modules); do insmod /lib/modules/$m; done
hostname foreign
echo "tester:$(mkpasswd -m sha512 'PASSWORD'):19000:0:99999:7:::" >>/etc/shadow
chown tester:tester /home/tester
mount -t ext4 -o ro /dev/vda /data
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
httpd -p 8080 -h /data/www
exec /sbin/init
"#;

const INITTAB: &str = "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n";
const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/home/tester:/bin/sh\n";
const SHADOW: &str = "root:*:19000:0:99999:7:::\n";
const GROUP: &str = "root:x:0:\ntester:x:1000:\n";

/// `bin/busybox`, the module files and their load order, from the crate's
/// Linux guest's initramfs (what this test needs of Debian's packages).
fn parts_from(initrd: &Path) -> TestResult<Vec<(String, u32, Vec<u8>)>> {
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(initrd)?).read_to_end(&mut cpio)?;
    let mut parts = Vec::new();
    let mut rest: &[u8] = &cpio;
    loop {
        let mut reader = cpio::NewcReader::new(rest)?;
        if reader.entry().is_trailer() {
            break;
        }
        let (name, mode) = (reader.entry().name().to_string(), reader.entry().mode());
        let mut data = Vec::new();
        reader.read_to_end(&mut data)?;
        let wanted =
            name == "bin/busybox" || name == "etc/modules" || name.starts_with("lib/modules/");
        if wanted && mode & 0o170000 == 0o100000 {
            parts.push((name, mode & 0o7777, data));
        }
        rest = reader.finish()?;
    }
    Ok(parts)
}

/// The test's initramfs: its own init and accounts, busybox and modules.
fn initramfs(parts: Vec<(String, u32, Vec<u8>)>) -> TestResult<Vec<u8>> {
    let mut files = parts;
    let init = INIT.replace("PASSWORD", PASSWORD);
    for (name, mode, data) in [
        ("init", 0o755, init.as_str()),
        ("etc/inittab", 0o644, INITTAB),
        ("etc/passwd", 0o644, PASSWD),
        ("etc/shadow", 0o600, SHADOW),
        ("etc/group", 0o644, GROUP),
    ] {
        files.push((name.to_string(), mode, data.as_bytes().to_vec()));
    }
    let dirs = ["bin", "dev", "etc", "lib", "lib/modules"];
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for (ino, dir) in (1u32..).zip(dirs) {
        let entry = cpio::newc::Builder::new(dir)
            .ino(ino)
            .mode(0o040755)
            .nlink(2)
            .write(out, 0);
        out = entry.finish()?;
    }
    // `#!/bin/sh` needs it before busybox installs its links.
    let sh = cpio::newc::Builder::new("bin/sh")
        .ino(99)
        .mode(0o120777)
        .write(out, 7);
    let mut sh = sh;
    sh.write_all(b"busybox")?;
    out = sh.finish()?;
    for (ino, (name, mode, data)) in (100u32..).zip(&files) {
        let mut entry = cpio::newc::Builder::new(name)
            .ino(ino)
            .mode(0o100000 | mode)
            .write(out, data.len() as u32);
        entry.write_all(data)?;
        out = entry.finish()?;
    }
    Ok(cpio::newc::trailer(out)?.finish()?)
}

/// The test's data disk: an ext4 image with a web page, made by mke2fs.
fn disk(dir: &Path) -> TestResult<std::path::PathBuf> {
    let content = dir.join("disk-content");
    std::fs::create_dir_all(content.join("www"))?;
    std::fs::write(
        content.join("www/index.html"),
        "hello from the test's own disk\n",
    )?;
    let image = dir.join("data.img");
    let status = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&content)
        .arg(&image)
        .arg("8M")
        .status()?;
    if !status.success() {
        return Err(format!("mke2fs failed: {status}").into());
    }
    Ok(image)
}

#[qemu_test(
    arch = "x86_64",
    machine = "q35",
    console,
    launch = false,
    forward = [8080],
    requires = [command("mke2fs")],
    timeout = "180s"
)]
fn serial_login_and_a_port_forward_on_a_guest_of_the_tests_own(vm: &mut Vm) -> TestResult {
    let linux = guest::LINUX_X86_64
        .linux()
        .ok_or("a Linux guest")?
        .files()?;
    let initrd = vm.artifacts().join("foreign-initrd.gz");
    std::fs::write(&initrd, initramfs(parts_from(&linux.initrd)?)?)?;
    let disk = disk(vm.artifacts())?;
    vm.add_args(["-nodefaults", "-kernel"]);
    vm.add_args([
        linux.kernel.to_string_lossy().into_owned(),
        "-initrd".into(),
    ]);
    vm.add_args([initrd.to_string_lossy().into_owned(), "-append".into()]);
    vm.add_args(["console=ttyS0,115200 quiet".to_string(), "-drive".into()]);
    vm.add_args([format!(
        "file={},if=virtio,format=raw,readonly=on",
        disk.display()
    )]);
    vm.launch()?;

    let shell = vm.shell().with_timeout(Duration::from_secs(60));
    shell.login(USER, PASSWORD)?;
    assert_eq!(shell.succeed("id -un")?, "tester\n");
    assert_eq!(shell.succeed("hostname")?, "foreign\n");
    assert_eq!(
        shell.succeed("cat /data/www/index.html")?,
        "hello from the test's own disk\n"
    );
    // A command's status and stderr, as a user without rights.
    let refused = shell.run("touch /etc/hostname")?;
    assert_ne!(refused.status, 0);

    let web = vm.forward(8080)?;
    let mut stream = std::net::TcpStream::connect_timeout(&web, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    assert!(
        reply.ends_with("hello from the test's own disk\n"),
        "{reply}"
    );
    Ok(())
}

qemu_test::main!();
