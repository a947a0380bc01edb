//! Kernel images: Debian's x86 bzImage unpacked to the `vmlinux` ELF that
//! QEMU boots through its PVH entry point (the payload is LZ4 in the
//! kernel's legacy frame, or gzip), arm64 `Image`s, the kernel release a
//! file names, and the checks a user-supplied kernel or busybox gets.

use std::io::Read;

use super::target::{KernelImage, Target};

/// A kernel ready to boot: its bytes and what they are.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub(crate) bytes: Vec<u8>,
    /// `vmlinux (PVH)`, `bzImage` or `Image`, for the manifest.
    pub(crate) format: &'static str,
    /// Why a bzImage is booted as it is (about 0.7 s slower on TCG).
    pub(crate) note: Option<String>,
}

/// Turns the kernel file a package or the user provides into what the
/// guest boots: on x86_64 the PVH `vmlinux` out of a bzImage (or an ELF
/// `vmlinux` as it is), on aarch64 an `Image` (gunzipped if need be).
/// The error says what the file is not.
pub(crate) fn prepare(target: &Target, file: Vec<u8>) -> Result<Kernel, String> {
    match target.kernel {
        KernelImage::BzImage if file.starts_with(b"\x7fELF") => {
            if le_u16(&file, 0x12) != Some(target.elf_machine) {
                return Err("it is an ELF file, but not an x86_64 kernel".into());
            }
            if release(&file).is_none() {
                return Err("it is not a Linux kernel (an x86_64 ELF file without a \
                            Linux version banner)"
                    .into());
            }
            if !has_pvh_note(&file) {
                return Err("it is an x86_64 ELF kernel without a PVH entry note \
                            (CONFIG_PVH), which QEMU cannot boot: use the bzImage \
                            (arch/x86/boot/bzImage, or /boot/vmlinuz-<release>)"
                    .into());
            }
            Ok(Kernel {
                bytes: file,
                format: "vmlinux (PVH)",
                note: None,
            })
        }
        KernelImage::BzImage => {
            if file.get(0x202..0x206) != Some(b"HdrS") {
                return Err("it is not an x86 kernel (neither a bzImage nor a vmlinux ELF)".into());
            }
            Ok(match pvh_vmlinux(&file) {
                Ok(elf) => Kernel {
                    bytes: elf,
                    format: "vmlinux (PVH)",
                    note: None,
                },
                Err(why) => Kernel {
                    bytes: file,
                    format: "bzImage",
                    note: Some(why),
                },
            })
        }
        KernelImage::Arm64Image => {
            let image = if file.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&file[..])
                    .read_to_end(&mut out)
                    .map_err(|e| format!("cannot gunzip it: {e}"))?;
                out
            } else {
                file
            };
            if image.get(0x38..0x3c) != Some(b"ARM\x64") {
                return Err(
                    "it is not an arm64 kernel Image (no ARM\\x64 magic at 0x38; \
                            an EFI zboot or uImage file will not do)"
                        .into(),
                );
            }
            Ok(Kernel {
                bytes: image,
                format: "Image",
                note: None,
            })
        }
    }
}

/// The kernel release (`uname -r`) a kernel file was built as: from an
/// x86 bzImage's header, else from the `Linux version ...` banner in it.
pub(crate) fn release(kernel: &[u8]) -> Option<String> {
    let banner = if kernel.get(0x202..0x206) == Some(b"HdrS") {
        let at = 0x200 + usize::from(le_u16(kernel, 0x20e)?);
        kernel.get(at..)?
    } else {
        let key = b"Linux version ";
        let at = kernel.windows(key.len()).position(|w| w == key)?;
        &kernel[at + key.len()..]
    };
    let end = banner
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == 0)
        .unwrap_or(banner.len());
    let release = std::str::from_utf8(&banner[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

/// Checks that `busybox` is a statically linked program for the target:
/// the initramfs has no libraries.
pub(crate) fn check_busybox(target: &Target, busybox: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    if !busybox.starts_with(b"\x7fELF\x02\x01") {
        return Err("it is not a 64-bit little-endian ELF program".into());
    }
    if le_u16(busybox, 0x12) != Some(target.elf_machine) {
        return Err(format!("it is not an {} program", target.arch));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (
        le_u64(busybox, 0x20),
        le_u16(busybox, 0x36),
        le_u16(busybox, 0x38),
    ) else {
        return Err("its ELF header is truncated".into());
    };
    let dynamic = (0..usize::from(phnum)).any(|i| {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX);
        le_u32(busybox, at.saturating_add(i * usize::from(phentsize))) == Some(PT_INTERP)
    });
    if dynamic {
        return Err(
            "it is dynamically linked; the guest needs a static busybox \
                    (Debian and Ubuntu: the busybox-static package's /bin/busybox)"
                .into(),
        );
    }
    Ok(())
}

/// The uncompressed kernel (`vmlinux`, an ELF) inside an x86 bzImage, if
/// QEMU can boot it directly: the payload (boot protocol 2.08+
/// `payload_offset`/`payload_length`) is LZ4 (legacy frame, what Debian's
/// cloud kernel uses), xz (its generic kernel) or gzip, and the ELF carries
/// the PVH entry note.
fn pvh_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS header)".into());
    }
    let version = le_u16(bz, 0x206).unwrap_or(0);
    if version < 0x208 {
        return Err(format!("boot protocol {version:#x} has no payload fields"));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = le_u32(bz, 0x248).ok_or("truncated bzImage header")? as usize;
    let length = le_u32(bz, 0x24c).ok_or("truncated bzImage header")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    let payload = bz
        .get(start..start + length)
        .ok_or("the bzImage payload lies outside the file")?;
    let elf = if payload.starts_with(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
        lz4_legacy_decompress(payload)?
    } else if payload.starts_with(XZ_MAGIC) {
        xz_decompress(payload)?
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot gunzip the kernel payload: {e}"))?;
        out
    } else {
        return Err(format!(
            "the kernel payload is compressed in a way this build does not unpack (it starts {:02x?})",
            &payload[..payload.len().min(6)]
        ));
    };
    if !has_pvh_note(&elf) {
        return Err("the kernel has no PVH entry note (CONFIG_PVH)".into());
    }
    Ok(elf)
}

const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";

/// Decompresses an xz stream with the `xz` program (xz-utils): the
/// kernel's streams use the x86 BCJ filter, which liblzma has and pure
/// Rust LZMA decoders lack. Run as a program, not through a shell.
fn xz_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("xz")
        .args(["--decompress", "--stdout", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run `xz` to unpack the kernel's xz payload ({e}): install xz-utils")
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running xz: {e}"))?;
    // xz stops reading at the end of the stream: padding after it may
    // meet a closed pipe.
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "xz could not unpack the kernel payload: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Decompresses an LZ4 "legacy frame" (`lz4 -l`): the magic, then blocks
/// of a little-endian `u32` compressed size and up to 8 MiB of data each.
/// The kernel build appends the uncompressed size as a final `u32`, which
/// is checked.
fn lz4_legacy_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    const BLOCK: usize = 8 << 20;
    let mut rest = &data[4..];
    let mut out = Vec::new();
    while let Some(size) = le_u32(rest, 0) {
        if size == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        let Some(block) = rest.get(4..4 + size as usize) else {
            break;
        };
        let at = out.len();
        out.resize(at + BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[at..])
            .map_err(|e| format!("cannot decompress the LZ4 kernel payload: {e}"))?;
        out.truncate(at + n);
        rest = &rest[4 + size as usize..];
    }
    match le_u32(rest, 0) {
        Some(size) if rest.len() == 4 && size as usize == out.len() => Ok(out),
        None if rest.is_empty() => Ok(out),
        _ => Err(format!(
            "the LZ4 kernel payload does not end as expected ({} bytes left after {} decompressed)",
            rest.len(),
            out.len()
        )),
    }
}

/// Whether `elf` is a 64-bit little-endian ELF with a `PT_NOTE` holding
/// Xen's `XEN_ELFNOTE_PHYS32_ENTRY` (type 18): the PVH entry point QEMU
/// needs to boot an uncompressed x86 kernel.
fn has_pvh_note(elf: &[u8]) -> bool {
    const PT_NOTE: u32 = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (le_u64(elf, 0x20), le_u16(elf, 0x36), le_u16(elf, 0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let ph = phoff as usize + i * usize::from(phentsize);
        if le_u32(elf, ph) != Some(PT_NOTE) {
            return false;
        }
        let notes = le_u64(elf, ph + 8)
            .zip(le_u64(elf, ph + 32))
            .and_then(|(offset, size)| {
                elf.get(
                    usize::try_from(offset).ok()?
                        ..usize::try_from(offset.checked_add(size)?).ok()?,
                )
            });
        let Some(mut notes) = notes else {
            return false;
        };
        while let (Some(namesz), Some(descsz), Some(kind)) =
            (le_u32(notes, 0), le_u32(notes, 4), le_u32(notes, 8))
        {
            let name_end = 12 + namesz as usize;
            if notes.get(12..name_end) == Some(b"Xen\0") && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return true;
            }
            let next = name_end.next_multiple_of(4) + (descsz as usize).next_multiple_of(4);
            match notes.get(next..) {
                Some(rest) => notes = rest,
                None => break,
            }
        }
        false
    })
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::linux::target::{AARCH64, X86_64};
    use std::io::Write;

    /// A minimal 64-bit ELF for `machine` with one `PT_NOTE` segment
    /// holding `notes`.
    fn elf_with_notes(notes: &[(&[u8], u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, kind) in notes {
            body.extend((name.len() as u32).to_le_bytes());
            body.extend(8u32.to_le_bytes());
            body.extend(kind.to_le_bytes());
            body.extend(*name);
            body.resize(body.len().next_multiple_of(4), 0);
            body.extend(0x0100_0000u64.to_le_bytes());
        }
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // e_machine
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes()); // e_phentsize
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[0x40..0x44].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        elf[0x48..0x50].copy_from_slice(&(0x78u64).to_le_bytes()); // p_offset
        elf[0x60..0x68].copy_from_slice(&(body.len() as u64).to_le_bytes()); // p_filesz
        elf.extend(body);
        elf
    }

    #[test]
    fn pvh_note_is_found_among_others() {
        assert!(has_pvh_note(&elf_with_notes(&[
            (b"GNU\0", 3),
            (b"Xen\0", 18)
        ])));
        assert!(!has_pvh_note(&elf_with_notes(&[(b"Xen\0", 17)])));
        assert!(!has_pvh_note(&elf_with_notes(&[(b"GNU\0", 18)])));
        let mut truncated = elf_with_notes(&[(b"Xen\0", 18)]);
        truncated.truncate(0x80);
        assert!(!has_pvh_note(&truncated));
        assert!(!has_pvh_note(b"\x7fELF\x01\x01"));
    }

    /// An LZ4 legacy frame as the kernel build writes it: blocks of at most
    /// 8 MiB, then the uncompressed size.
    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(8 << 20) {
            let block = lz4_flex::block::compress(chunk);
            out.extend((block.len() as u32).to_le_bytes());
            out.extend(block);
        }
        out.extend((data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn lz4_legacy_frames_decompress_and_check_their_size() {
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        let frame = lz4_legacy(&data);
        assert_eq!(lz4_legacy_decompress(&frame).unwrap(), data);
        let mut wrong = frame.clone();
        let n = wrong.len();
        wrong[n - 4] ^= 1;
        assert!(lz4_legacy_decompress(&wrong).is_err());
    }

    /// A bzImage whose payload is `payload` and whose version string is
    /// `version`.
    fn bzimage(payload: &[u8], version: &str) -> Vec<u8> {
        // One setup sector after the boot sector, the payload right after
        // them; the version string in the setup sector.
        let mut bz = vec![0u8; 1024];
        bz[0x1f1] = 1;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        bz[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        bz[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
        bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bz.extend(payload);
        bz
    }

    #[test]
    fn bzimage_payloads_are_unpacked_to_a_pvh_elf() {
        let elf = elf_with_notes(&[(b"Xen\0", 18)]);
        assert_eq!(pvh_vmlinux(&bzimage(&lz4_legacy(&elf), "")).unwrap(), elf);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        assert_eq!(
            pvh_vmlinux(&bzimage(&gz.finish().unwrap(), "")).unwrap(),
            elf
        );
        let e = pvh_vmlinux(&bzimage(b"\x28\xb5\x2f\xfd zstd", "")).unwrap_err();
        assert!(e.contains("compressed in a way"), "{e}");
        let no_pvh = elf_with_notes(&[(b"Xen\0", 17)]);
        let e = pvh_vmlinux(&bzimage(&lz4_legacy(&no_pvh), "")).unwrap_err();
        assert!(e.contains("PVH"), "{e}");
        assert!(pvh_vmlinux(b"MZ not a kernel").is_err());
    }

    #[test]
    fn kernels_are_prepared_for_their_architecture() {
        let mut elf = elf_with_notes(&[(b"Xen\0", 18)]);
        elf.extend(b"Linux version 6.1.0-9-cloud-amd64 (x@y) #1 SMP\0");
        let bz = bzimage(&lz4_legacy(&elf), "6.1.0-9-cloud-amd64 (x@y) #1 SMP");
        let k = prepare(&X86_64, bz.clone()).unwrap();
        assert_eq!(
            (k.bytes.as_slice(), k.format),
            (elf.as_slice(), "vmlinux (PVH)")
        );
        // A payload it cannot unpack: the bzImage boots as it is.
        let zstd = bzimage(b"\x28\xb5\x2f\xfd zstd", "");
        let k = prepare(&X86_64, zstd.clone()).unwrap();
        assert_eq!((k.bytes, k.format), (zstd, "bzImage"));
        assert!(k.note.unwrap().contains("compressed in a way"));
        // A vmlinux is taken as it is, if QEMU can boot it.
        assert_eq!(prepare(&X86_64, elf.clone()).unwrap().bytes, elf);
        let mut no_pvh = elf_with_notes(&[]);
        no_pvh.extend(b"Linux version 6.1.0-9-cloud-amd64 (x@y) #1 SMP\0");
        let e = prepare(&X86_64, no_pvh).unwrap_err();
        assert!(e.contains("PVH"), "{e}");
        let e = prepare(&X86_64, elf_with_notes(&[(b"Xen\0", 18)])).unwrap_err();
        assert!(e.contains("not a Linux kernel"), "{e}");
        let e = prepare(&X86_64, b"hello".to_vec()).unwrap_err();
        assert!(e.contains("not an x86 kernel"), "{e}");
        // arm64: an Image, gzip'd or not; an x86 kernel is refused.
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(prepare(&AARCH64, image.clone()).unwrap().bytes, image);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&image).unwrap();
        assert_eq!(
            prepare(&AARCH64, gz.finish().unwrap()).unwrap().bytes,
            image
        );
        let e = prepare(&AARCH64, bz).unwrap_err();
        assert!(e.contains("not an arm64 kernel Image"), "{e}");
    }

    #[test]
    fn releases_are_read_from_the_header_or_the_banner() {
        let bz = bzimage(
            b"",
            "6.1.0-9-cloud-amd64 (debian-kernel@lists.debian.org) #1",
        );
        assert_eq!(release(&bz).as_deref(), Some("6.1.0-9-cloud-amd64"));
        let image = b"\0\0junk\0Linux version 6.12.1-arm64 (gcc) #1 SMP\0".to_vec();
        assert_eq!(release(&image).as_deref(), Some("6.12.1-arm64"));
        assert_eq!(release(b"nothing here"), None);
    }

    #[test]
    fn busybox_must_be_a_static_program_for_the_guest() {
        let mut program = elf_with_notes(&[]);
        assert_eq!(check_busybox(&X86_64, &program), Ok(()));
        let e = check_busybox(&AARCH64, &program).unwrap_err();
        assert!(e.contains("not an aarch64 program"), "{e}");
        program[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        let e = check_busybox(&X86_64, &program).unwrap_err();
        assert!(e.contains("dynamically linked"), "{e}");
        assert!(check_busybox(&X86_64, b"#!/bin/sh\n").is_err());
    }
}
