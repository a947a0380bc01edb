//! The initramfs: a gzip'd cpio (newc) archive built in memory. Entries
//! are sorted (parents first) and time-stamped 0, owned by root, so the
//! same inputs give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// An initramfs under construction: path (no leading `/`) -> entry.
/// Parent directories are added implicitly.
#[derive(Default)]
pub(crate) struct Archive {
    entries: BTreeMap<String, Entry>,
}

enum Entry {
    Dir,
    File { mode: u32, bytes: Vec<u8> },
    Symlink(String),
    CharDev { mode: u32, major: u32, minor: u32 },
}

impl Archive {
    fn add(&mut self, path: &str, entry: Entry) {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = p.parent();
        }
        self.entries.insert(path.to_string(), entry);
    }
    pub(crate) fn dir(&mut self, path: &str) {
        self.add(path, Entry::Dir);
    }
    pub(crate) fn file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) {
        self.add(path, Entry::File { mode, bytes });
    }
    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, Entry::Symlink(target.to_string()));
    }
    pub(crate) fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.add(path, Entry::CharDev { mode, major, minor });
    }

    /// The archive as cpio newc (sorted, so parents come first; mtime 0),
    /// gzip'd.
    pub(crate) fn to_gzip_cpio(&self) -> std::io::Result<Vec<u8>> {
        use cpio::newc::{Builder, ModeFileType};
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut w = gz;
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let b = Builder::new(path).ino(ino).uid(0).gid(0).mtime(0);
            let (b, data): (Builder, &[u8]) = match entry {
                Entry::Dir => (
                    b.mode(0o755)
                        .set_mode_file_type(ModeFileType::Directory)
                        .nlink(2),
                    &[],
                ),
                Entry::File { mode, bytes } => (
                    b.mode(*mode).set_mode_file_type(ModeFileType::Regular),
                    bytes,
                ),
                Entry::Symlink(target) => (
                    b.mode(0o777).set_mode_file_type(ModeFileType::Symlink),
                    target.as_bytes(),
                ),
                Entry::CharDev { mode, major, minor } => (
                    b.mode(*mode)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
            };
            let size = u32::try_from(data.len())
                .map_err(|_| std::io::Error::other(format!("{path} is too large for cpio")))?;
            let mut fw = b.write(w, size);
            fw.write_all(data)?;
            w = fw.finish()?;
        }
        cpio::newc::trailer(w)?.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn archive_round_trips_through_a_cpio_reader() {
        let mut a = Archive::default();
        a.file("bin/busybox", 0o755, b"ELF".to_vec());
        a.symlink("bin/sh", "busybox");
        a.char_dev("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"#!/bin/sh\n".to_vec());
        let gz = a.to_gzip_cpio().unwrap();
        assert_eq!(gz, a.to_gzip_cpio().unwrap(), "reproducible");
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .unwrap();
        let mut seen = Vec::new();
        let mut rest: &[u8] = &cpio;
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            let (name, mode, rdev) = (
                e.name().to_string(),
                e.mode(),
                (e.rdev_major(), e.rdev_minor()),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            seen.push((name, mode, rdev, data));
            rest = reader.finish().unwrap();
        }
        let names: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]
        );
        assert_eq!(seen[0].1, 0o040755);
        assert_eq!((seen[1].1, seen[1].3.as_slice()), (0o100755, &b"ELF"[..]));
        assert_eq!(
            (seen[2].1, seen[2].3.as_slice()),
            (0o120777, &b"busybox"[..])
        );
        assert_eq!((seen[4].1, seen[4].2), (0o020600, (5, 1)));
    }
}
