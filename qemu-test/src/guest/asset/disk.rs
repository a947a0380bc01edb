//! A disk image used through a qcow2 overlay of its own: the image (an
//! asset in the cache, or any file) stays as it is, the guest's writes go
//! to the overlay. Made with `qemu-img` (Debian's `qemu-utils`), found in
//! `QEMU_TEST_QEMU_DIR` or on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::AssetError;

/// Makes `overlay`, a qcow2 file backed by `image` (made absolute), with
/// the backing format `qemu-img` finds in `image`; an overlay already
/// there is replaced.
pub(crate) fn make_overlay(image: &Path, overlay: &Path) -> Result<(), AssetError> {
    let error = |cause: String| AssetError::Overlay {
        image: image.to_path_buf(),
        overlay: overlay.to_path_buf(),
        cause,
    };
    let qemu_img = qemu_img().ok_or_else(missing)?;
    let image = std::path::absolute(image).map_err(|e| error(e.to_string()))?;
    let format = format_of(&qemu_img, &image).map_err(error)?;
    let _ = std::fs::remove_file(overlay);
    let output = Command::new(&qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", &format, "-b"])
        .arg(&image)
        .arg(overlay)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| error(format!("cannot run {}: {e}", qemu_img.display())))?;
    if !output.status.success() {
        return Err(error(format!(
            "qemu-img create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The format `qemu-img` finds in `image` (`raw`, `qcow2`, ...).
pub(crate) fn image_format(image: &Path) -> Result<String, AssetError> {
    let qemu_img = qemu_img().ok_or_else(missing)?;
    format_of(&qemu_img, image).map_err(|cause| AssetError::Cache {
        url: image.display().to_string(),
        cause,
    })
}

/// Checks that `qemu-img` is there (the runner asks when it lists a test
/// with a disk image).
pub(crate) fn qemu_img_available() -> Result<(), AssetError> {
    qemu_img().map(drop).ok_or_else(missing)
}

fn missing() -> AssetError {
    AssetError::Unavailable {
        what: "qemu-img (for a disk image's overlay)".to_string(),
        reason: "it is not in QEMU_TEST_QEMU_DIR or on PATH; install Debian's qemu-utils \
                 package (`cargo xtask setup` does)"
            .to_string(),
    }
}

/// The image's format as `qemu-img info` sees it (`raw`, `qcow2`, ...).
fn format_of(qemu_img: &Path, image: &Path) -> Result<String, String> {
    let output = Command::new(qemu_img)
        .args(["info", "--output=json"])
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", qemu_img.display()))?;
    if !output.status.success() {
        return Err(format!(
            "qemu-img info failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("qemu-img info printed no JSON: {e}"))?;
    info["format"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "qemu-img info names no format".to_string())
}

/// `qemu-img` in `QEMU_TEST_QEMU_DIR`, else on `PATH`.
fn qemu_img() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let qemu_dir = std::env::var_os("QEMU_TEST_QEMU_DIR").filter(|d| !d.is_empty());
    let path = std::env::var_os("PATH").unwrap_or_default();
    qemu_dir
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("qemu-img"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay names its backing file and format; the image is not
    /// written.
    #[test]
    fn overlays_back_onto_the_image() {
        if qemu_img().is_none() {
            eprintln!("note: no qemu-img here, nothing to check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![7u8; 1 << 20]).unwrap();
        let overlay = dir.path().join("disk.qcow2");
        make_overlay(&image, &overlay).unwrap();
        let info = Command::new(qemu_img().unwrap())
            .args(["info", "--output=json"])
            .arg(&overlay)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["backing-filename-format"], "raw");
        assert_eq!(info["backing-filename"], image.to_str().unwrap());
        assert_eq!(info["virtual-size"], 1 << 20);
        let missing = dir.path().join("missing.img");
        match make_overlay(&missing, &overlay) {
            Err(AssetError::Overlay { cause, .. }) => {
                assert!(cause.contains("qemu-img info"), "{cause}")
            }
            other => panic!("{other:?}"),
        }
    }
}
