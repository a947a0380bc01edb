//! Fetching an asset under its fetch lock: download into
//! `<sha256>.part` (resuming what an earlier attempt left), verify its
//! SHA-256, decompress it into a temp dir beside the entries, write the
//! manifest, rename the dir into place. The `assets` feature.
//!
//! The download is tried again after a dropped connection or a stall (an
//! attempt that receives nothing for [`STALL`]): at once when the attempt
//! made progress, else after 1, 2, 4 s; after [`ATTEMPTS`] attempts
//! without progress it fails. A resumed download asks for the rest with a
//! `Range` request; a server that answers with the whole file starts it
//! over. A resumed file whose hash does not match is downloaded once more
//! from the start before the hash is called wrong.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::progress::{size, Progress};
use super::store::{sha256_file, FetchLock, Store, MANIFEST};
use super::{decompress, Asset, Compression};
use crate::error::AssetError;

/// Attempts without progress before a download fails.
const ATTEMPTS: u32 = 4;

/// How long one attempt may receive its body; a download that takes
/// longer goes on in the next attempt, with a range request.
const STALL: Duration = Duration::from_secs(120);

/// How a download failed.
enum Failure {
    /// The server refused it.
    Http(u16),
    /// The network: no connection, a timeout, a dropped body, HTTP 5xx.
    Network(String),
    /// The local file.
    Local(String),
}

/// What a download got.
struct Downloaded {
    bytes: u64,
    /// It continued an earlier attempt's bytes.
    resumed: bool,
}

/// Fetches `asset` into `store`, under its fetch `lock`.
pub(super) fn fetch(
    asset: &Asset,
    store: &Store,
    lock: &FetchLock,
    mut progress: Progress,
) -> Result<(), AssetError> {
    let sha = asset.sha_key();
    let part = store.part(&sha);
    let cache_error = |cause: String| AssetError::Cache {
        url: asset.url().to_string(),
        cause,
    };
    let bytes = download_verified(asset, &part, &mut progress)?;
    let work = store.work_dir(&sha, lock).map_err(cache_error)?;
    let file = work.path().join(asset.file_name());
    let compression = asset.compression();
    let (kept, file_sha) = match compression {
        Compression::None => {
            fs::rename(&part, &file).map_err(|e| cache_error(format!("cannot move it: {e}")))?;
            (bytes, sha.clone())
        }
        _ => {
            progress.say(format!("decompressing ({})", compression.name()));
            let made = decompress::decompress(compression, &part, &file).map_err(|cause| {
                AssetError::Decompress {
                    url: asset.url().to_string(),
                    format: compression.name(),
                    cause,
                }
            });
            // A download that does not decompress is of no use to resume.
            let _ = fs::remove_file(&part);
            made?
        }
    };
    let manifest = serde_json::json!({
        "url": asset.url(),
        "sha256": sha,
        "download_bytes": bytes,
        "compression": compression.name(),
        "file": asset.file_name(),
        "bytes": kept,
        "file_sha256": file_sha,
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    crate::os::write_atomically(&work.path().join(MANIFEST), text.as_bytes())
        .map_err(|e| cache_error(format!("cannot write its manifest: {e}")))?;
    store
        .install(&sha, work.path(), lock)
        .map_err(cache_error)?;
    progress.say(format!(
        "cached as {} ({}) in {}",
        store.entry_dir(&sha).join(asset.file_name()).display(),
        size(kept),
        progress.elapsed()
    ));
    Ok(())
}

/// Downloads `asset` into `part` until its SHA-256 is the declared one
/// (a resumed download that does not verify is tried once more from the
/// start); its size. A wrong hash removes `part`.
fn download_verified(
    asset: &Asset,
    part: &Path,
    progress: &mut Progress,
) -> Result<u64, AssetError> {
    let expected = asset.sha_key();
    let mut from_scratch = false;
    loop {
        let got = download(asset.url(), part, progress).map_err(|f| failure(asset, f))?;
        let hash = sha256_file(part).map_err(|e| AssetError::Cache {
            url: asset.url().to_string(),
            cause: format!("cannot read {}: {e}", part.display()),
        })?;
        if hash == expected {
            progress.say(format!("downloaded {}, SHA-256 verified", size(got.bytes)));
            return Ok(got.bytes);
        }
        let _ = fs::remove_file(part);
        if got.resumed && !from_scratch {
            progress
                .say("the resumed download does not verify; downloading it again from the start");
            from_scratch = true;
            continue;
        }
        return Err(AssetError::Mismatch {
            url: asset.url().to_string(),
            expected,
            got: hash,
            bytes: got.bytes,
        });
    }
}

/// The error for a failed download.
fn failure(asset: &Asset, failure: Failure) -> AssetError {
    let url = asset.url().to_string();
    match failure {
        Failure::Http(status) => AssetError::Http { url, status },
        Failure::Network(cause) => AssetError::Offline {
            url,
            reason: format!(
                "the download failed ({cause}); offline from now on in this process \
                 (QEMU_TEST_OFFLINE=1 says so up front)"
            ),
        },
        Failure::Local(cause) => AssetError::Cache { url, cause },
    }
}

/// Downloads `url` into `part`, continuing what is there.
fn download(url: &str, part: &Path, progress: &mut Progress) -> Result<Downloaded, Failure> {
    let mut failures = 0;
    let mut ranges_ignored = false;
    progress.say(format!("downloading {url}"));
    loop {
        let had = fs::metadata(part).map_or(0, |m| m.len());
        let attempt = attempt(url, part, had, ranges_ignored, progress);
        progress.end_bar();
        let now = fs::metadata(part).map_or(0, |m| m.len());
        match attempt {
            Ok(Attempt::Complete { resumed }) => {
                return Ok(Downloaded {
                    bytes: now,
                    resumed,
                })
            }
            Ok(Attempt::RangesIgnored) => ranges_ignored = true,
            Err(Failure::Network(cause)) => {
                if now > had {
                    failures = 0;
                } else {
                    failures += 1;
                }
                if failures >= ATTEMPTS {
                    return Err(Failure::Network(cause));
                }
                if failures == 0 {
                    progress.say(format!("interrupted at {} ({cause}); resuming", size(now)));
                } else {
                    let pause = Duration::from_secs(1 << (failures - 1));
                    progress.say(format!(
                        "failed ({cause}); trying again in {} s (retry {failures} of {})",
                        pause.as_secs(),
                        ATTEMPTS - 1
                    ));
                    std::thread::sleep(pause);
                }
            }
            Err(other) => return Err(other),
        }
    }
}

/// How an attempt ended, when it did not fail.
enum Attempt {
    /// The whole file is there; `resumed`: after an earlier attempt's
    /// bytes.
    Complete { resumed: bool },
    /// The server does not take ranges (its answer to one was not usable):
    /// next time, start over without a stall limit.
    RangesIgnored,
}

/// One request: the rest of the file after `had` bytes.
fn attempt(
    url: &str,
    part: &Path,
    had: u64,
    ranges_ignored: bool,
    progress: &mut Progress,
) -> Result<Attempt, Failure> {
    let agent = agent(if ranges_ignored { None } else { Some(STALL) });
    let mut request = agent.get(url);
    let ranged = had > 0 && !ranges_ignored;
    if ranged {
        request = request.header("Range", format!("bytes={had}-"));
    }
    let response = request.call().map_err(network)?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let start = match status {
        206 if ranged && range_start(header("content-range").as_deref()) == Some(had) => had,
        206 | 416 if ranged => {
            let _ = fs::remove_file(part);
            return Ok(Attempt::RangesIgnored);
        }
        200..=299 => 0,
        429 | 500..=599 => return Err(Failure::Network(format!("HTTP {status}"))),
        _ => return Err(Failure::Http(status)),
    };
    let total = length.map(|l| l + start);
    let reader = response.into_body().into_reader();
    let file = open_at(part, start)?;
    receive(reader, file, (start, total), progress)?;
    Ok(Attempt::Complete { resumed: start > 0 })
}

/// The body into `file`, from `start` of `total` bytes.
fn receive(
    mut reader: impl Read,
    mut file: File,
    (start, total): (u64, Option<u64>),
    progress: &mut Progress,
) -> Result<(), Failure> {
    let local = |e: std::io::Error| Failure::Local(format!("cannot write the download: {e}"));
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().map_err(local)?;
                return Err(Failure::Network(e.to_string()));
            }
        };
        file.write_all(&buf[..n]).map_err(local)?;
        done += n as u64;
        progress.bytes(done, total);
    }
    file.sync_all().map_err(local)?;
    match total {
        Some(total) if done < total => Err(Failure::Network(format!(
            "the connection closed after {done} of {total} bytes"
        ))),
        _ => Ok(()),
    }
}

/// `part` opened for writing at `start` (truncated there).
fn open_at(part: &Path, start: u64) -> Result<File, Failure> {
    let local = |e: std::io::Error| Failure::Local(format!("cannot write {}: {e}", part.display()));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(local)?;
    file.set_len(start).map_err(local)?;
    file.seek(SeekFrom::Start(start)).map_err(local)?;
    Ok(file)
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: Option<&str>) -> Option<u64> {
    let range = value?.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

fn network(e: ureq::Error) -> Failure {
    Failure::Network(e.to_string())
}

/// The HTTP client: statuses handled here, proxies from the environment
/// (`HTTPS_PROXY`, `ALL_PROXY`, as ureq reads them), a connect and answer
/// timeout, and `body` for the whole body of one attempt.
fn agent(body: Option<Duration>) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(body)
        .user_agent(format!("qemu-test/{}", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_ranges_are_read() {
        assert_eq!(super::range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(super::range_start(Some("bytes 0-9/*")), Some(0));
        assert_eq!(super::range_start(Some("items 1-2/3")), None);
        assert_eq!(super::range_start(None), None);
    }
}
