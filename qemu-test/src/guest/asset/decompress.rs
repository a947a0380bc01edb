//! Decompressing a verified download (xz, gzip, Zstandard; each possibly
//! several concatenated streams) into the file the cache keeps, hashing
//! what it writes. The `assets` feature.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::store::hex;
use super::Compression;

/// Decompresses `from` into `to` (created); the size and SHA-256 of what
/// it wrote. The error says what went wrong, for the user.
pub(super) fn decompress(
    compression: Compression,
    from: &Path,
    to: &Path,
) -> Result<(u64, String), String> {
    let mut input = BufReader::with_capacity(
        1 << 20,
        File::open(from).map_err(|e| format!("cannot open {}: {e}", from.display()))?,
    );
    check_magic(compression, input.fill_buf().map_err(|e| e.to_string())?)?;
    let file = File::create(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut output = Hashing::new(file);
    let copied = match compression {
        Compression::Xz => io::copy(
            &mut liblzma::read::XzDecoder::new_multi_decoder(input),
            &mut output,
        ),
        Compression::Gzip => io::copy(
            &mut flate2::bufread::MultiGzDecoder::new(input),
            &mut output,
        ),
        Compression::Zstd => zstd_frames(&mut input, &mut output),
        Compression::None => io::copy(&mut input, &mut output),
    };
    copied.map_err(|e| format!("{e} (a damaged or truncated file)"))?;
    output
        .finish()
        .map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// Every Zstandard frame of `input`, one after the other.
fn zstd_frames(input: &mut BufReader<File>, output: &mut Hashing) -> io::Result<u64> {
    let mut total = 0;
    while !input.fill_buf()?.is_empty() {
        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut *input)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        total += io::copy(&mut frame, output)?;
    }
    Ok(total)
}

/// Refuses a file that does not start the way its compression does, with
/// what it looks like instead.
fn check_magic(compression: Compression, head: &[u8]) -> Result<(), String> {
    let magic: &[u8] = match compression {
        Compression::Xz => &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        Compression::Gzip => &[0x1f, 0x8b],
        Compression::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
        Compression::None => return Ok(()),
    };
    if head.starts_with(magic) {
        return Ok(());
    }
    let looks = [
        (Compression::Xz, &[0xfd, b'7', b'z', b'X', b'Z'][..]),
        (Compression::Gzip, &[0x1f, 0x8b][..]),
        (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd][..]),
    ]
    .into_iter()
    .find(|(_, m)| head.starts_with(m))
    .map_or("not compressed".to_string(), |(c, _)| {
        format!("{} compressed", c.name())
    });
    Err(format!(
        "it is not a {} file (it looks {looks}); say how it is compressed with \
         Asset::with_compression",
        compression.name()
    ))
}

/// A file writer that hashes what it writes.
struct Hashing {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Hashing {
    fn new(file: File) -> Hashing {
        Hashing {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Syncs the file; its size and SHA-256.
    fn finish(self) -> io::Result<(u64, String)> {
        self.file.sync_all()?;
        Ok((self.bytes, hex(&self.hasher.finalize())))
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Each format round-trips, two concatenated streams included, and the
    /// hash is of what was written.
    #[test]
    fn each_format_decompresses() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (a, b) = data.split_at(300_000);
        let xz = |part: &[u8]| {
            let mut out = Vec::new();
            liblzma::read::XzEncoder::new(part, 1)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let gz = |part: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            enc.finish().unwrap()
        };
        let zst = |part: &[u8]| {
            ruzstd::encoding::compress_to_vec(part, ruzstd::encoding::CompressionLevel::Fastest)
        };
        type Compress<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;
        let cases: [(Compression, Compress); 3] = [
            (Compression::Xz, &xz),
            (Compression::Gzip, &gz),
            (Compression::Zstd, &zst),
        ];
        for (compression, compress) in cases {
            let from = dir.path().join(format!("in.{}", compression.name()));
            std::fs::write(&from, [compress(a), compress(b)].concat()).unwrap();
            let to = dir.path().join("out");
            let (bytes, sha) = decompress(compression, &from, &to).unwrap();
            assert_eq!(std::fs::read(&to).unwrap(), data, "{compression:?}");
            assert_eq!(bytes, data.len() as u64);
            assert_eq!(sha, hex(&Sha256::digest(&data)));
        }
    }

    #[test]
    fn the_wrong_format_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("k.xz");
        std::fs::write(&from, [0x1f, 0x8b, 8, 0]).unwrap();
        let error = decompress(Compression::Xz, &from, &dir.path().join("k")).unwrap_err();
        assert!(
            error.contains("not a xz file (it looks gz compressed)"),
            "{error}"
        );
        std::fs::write(&from, b"plain text").unwrap();
        let error = decompress(Compression::Zstd, &from, &dir.path().join("k")).unwrap_err();
        assert!(error.contains("it looks not compressed"), "{error}");
        // Cut short.
        let mut whole = Vec::new();
        liblzma::read::XzEncoder::new(&[7u8; 100_000][..], 1)
            .read_to_end(&mut whole)
            .unwrap();
        std::fs::write(&from, &whole[..whole.len() / 2]).unwrap();
        let error = decompress(Compression::Xz, &from, &dir.path().join("k")).unwrap_err();
        assert!(error.contains("damaged or truncated"), "{error}");
    }
}
