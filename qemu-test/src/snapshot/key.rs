//! What identifies a snapshot: [`SnapshotKey`], and the identity of the
//! files it names.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::SnapshotError;

/// What identifies a snapshot: a name and every input that affects the
/// saved state. Two keys with the same parts have the same [`id`](Self::id).
///
/// ```
/// use qemu_test::snapshot::SnapshotKey;
///
/// let key = SnapshotKey::new("booted")?.with("args", vec!["-m", "256M"]);
/// let other = SnapshotKey::new("booted")?.with("args", vec!["-m", "512M"]);
/// assert!(key.id().starts_with("booted-"));
/// assert_ne!(key.id(), other.id());
/// assert!(SnapshotKey::new("../evil").is_err());
/// # Ok::<(), qemu_test::SnapshotError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    name: String,
    parts: BTreeMap<String, Value>,
}

impl SnapshotKey {
    /// A key with only a name: 1 to 64 ASCII letters, digits, `-`, `_` or
    /// `.`, not starting with `.` (it becomes part of a file name).
    pub fn new(name: &str) -> Result<SnapshotKey, SnapshotError> {
        let valid = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(SnapshotError::InvalidName {
                name: name.to_string(),
            });
        }
        Ok(SnapshotKey {
            name: name.to_string(),
            parts: BTreeMap::new(),
        })
    }

    /// Adds (or replaces) one part of the key.
    ///
    /// ```
    /// # use qemu_test::snapshot::SnapshotKey;
    /// let key = SnapshotKey::new("booted")?.with("setup", "wait for the shell, v2");
    /// # Ok::<(), qemu_test::SnapshotError>(())
    /// ```
    pub fn with(mut self, part: &str, value: impl Into<Value>) -> SnapshotKey {
        self.parts.insert(part.to_string(), value.into());
        self
    }

    /// Adds a file's identity (path, size, modification time, inode) as a
    /// part, or `"missing"` if there is no such file.
    ///
    /// ```
    /// # use qemu_test::snapshot::SnapshotKey;
    /// let key = SnapshotKey::new("booted")?.with_file("kernel", "/boot/vmlinuz".as_ref());
    /// # Ok::<(), qemu_test::SnapshotError>(())
    /// ```
    pub fn with_file(self, part: &str, path: &Path) -> SnapshotKey {
        self.with(part, file_identity(path))
    }

    /// The snapshot's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>-<16 hex digits of the SHA-256 of the key>`: the snapshot's
    /// directory name in the store.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.to_json().to_string().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.name)
    }

    /// The whole key as JSON (what `key.json` beside the state holds).
    pub fn to_json(&self) -> Value {
        json!({ "name": self.name, "parts": self.parts })
    }
}

/// A file's identity without reading it: path, size, mtime (ns), inode.
pub(crate) fn file_identity(path: &Path) -> Value {
    match fs::metadata(path) {
        Ok(meta) => json!({
            "path": path.to_string_lossy(),
            "size": meta.len(),
            "mtime_ns": i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            "inode": meta.ino(),
            "device": meta.dev(),
        }),
        Err(_) => json!({ "path": path.to_string_lossy(), "missing": true }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_name_safe() {
        for good in ["booted", "a", "linux-shell_2.0", &"x".repeat(64)] {
            assert!(SnapshotKey::new(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "sp ace", "ünï", &"x".repeat(65)] {
            assert!(
                matches!(
                    SnapshotKey::new(bad),
                    Err(SnapshotError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_cover_every_part() {
        let base = SnapshotKey::new("s").unwrap();
        let a = base.clone().with("args", vec!["-m", "1G"]);
        assert_eq!(a.id(), base.clone().with("args", vec!["-m", "1G"]).id());
        assert_ne!(a.id(), base.clone().with("args", vec!["-m", "2G"]).id());
        assert_ne!(a.id(), a.clone().with("setup", "x").id());
        assert_ne!(
            a.id(),
            SnapshotKey::new("t")
                .unwrap()
                .with("args", vec!["-m", "1G"])
                .id()
        );
        assert_eq!(a.id().len(), "s-".len() + 16);
    }

    #[test]
    fn a_changed_file_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kernel");
        fs::write(&file, "one").unwrap();
        let key = || SnapshotKey::new("k").unwrap().with_file("kernel", &file);
        let before = key().id();
        assert_eq!(before, key().id());
        fs::write(&file, "three").unwrap();
        assert_ne!(before, key().id(), "size changed");
        fs::remove_file(&file).unwrap();
        assert_eq!(key().to_json()["parts"]["kernel"]["missing"], true);
    }
}
