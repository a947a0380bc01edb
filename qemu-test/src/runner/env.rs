//! The runner's configuration: the `QEMU_TEST_*` environment variables,
//! parsed once per process.
//!
//! | variable | values | default |
//! | --- | --- | --- |
//! | `QEMU_TEST_QEMU_DIR` | a directory searched for `qemu-system-*` before `PATH` | unset |
//! | `QEMU_TEST_ACCEL` | `auto`, `kvm`, `tcg` or any `-accel` value; overrides every test's `accel` | unset |
//! | `QEMU_TEST_KEEP` | `failed`, `always`, `never`: which artifact dirs to keep | `failed` |
//! | `QEMU_TEST_ARTIFACTS` | root of the artifact dirs | `<target>/qemu-test` |
//! | `QEMU_TEST_REQUIRE` | `1`: every skip fails instead (a missing binary, accelerator or guest image; a `Skip` from the body) | `0` |
//! | `QEMU_TEST_JUNIT` | a directory: each test binary writes its JUnit XML report there, as `<package>.<binary>.xml`; ignored under nextest (use its own JUnit) | unset |
//! | `QEMU_TEST_JOBS` | how many vCPUs may run at once (host-wide) | the number of cores |
//! | `QEMU_TEST_ON_FAILURE` | `report`, or `pause` to keep a failed test's VM running until Enter | `report` |
//! | `QEMU_TEST_TIMEOUT_FACTOR` | a number > 0 that scales every test's deadline (a slow host: `3`) | `1` |
//! | `QEMU_TEST_GDB` | `1`, or a test's name: start its VM halted with a gdbstub, print the `gdb` command and wait (needs a terminal) | unset |
//! | `QEMU_TEST_VMLINUX` | the guest kernel with debug symbols, for the `gdb` command `QEMU_TEST_GDB` prints | unset |
//! | `QEMU_TEST_OFFLINE` | `1`: download no declared asset ([`Asset`](crate::guest::Asset)); a test whose assets are not in the cache is skipped with the reason (a failure under `QEMU_TEST_REQUIRE=1`) | `0` |
//!
//! A malformed value is an error at start-up, never silently ignored.
//!
//! Two variables that are not ours are read too: `NEXTEST` (`1` in every
//! test process `cargo nextest run` starts), because under nextest, which
//! runs each test in a process of its own, a per-process JUnit file makes
//! no sense; and `NEXTEST_RUN_ID`, which tells the HTML report which test
//! processes belong to one run.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::spec::Accel;

/// Which artifact directories are kept after a test (`QEMU_TEST_KEEP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Keep the directories of failed tests (the default).
    #[default]
    Failed,
    /// Keep every directory.
    Always,
    /// Remove every directory, even a failed test's.
    Never,
}

impl Keep {
    /// Whether a test that `passed` keeps its artifact directory.
    pub(crate) fn keeps(self, passed: bool) -> bool {
        match self {
            Keep::Failed => !passed,
            Keep::Always => true,
            Keep::Never => false,
        }
    }
}

/// What happens when a test fails (`QEMU_TEST_ON_FAILURE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Tear the VM down and report (the default).
    #[default]
    Report,
    /// Keep the VM running, print how to attach to it, and wait for Enter
    /// on the terminal (only when there is one).
    Pause,
}

/// Which tests run under gdb (`QEMU_TEST_GDB`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GdbTarget {
    /// `1`: every VM test.
    All,
    /// The test of this name.
    Test(String),
}

/// The runner's configuration; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Config {
    /// `QEMU_TEST_QEMU_DIR`.
    pub(crate) qemu_dir: Option<PathBuf>,
    /// `QEMU_TEST_ACCEL`.
    pub(crate) accel: Option<Accel>,
    /// `QEMU_TEST_KEEP`.
    pub(crate) keep: Keep,
    /// `QEMU_TEST_ARTIFACTS`, made absolute.
    pub(crate) artifacts: Option<PathBuf>,
    /// `QEMU_TEST_REQUIRE`.
    pub(crate) require: bool,
    /// `QEMU_TEST_JUNIT` (a directory), made absolute.
    pub(crate) junit: Option<PathBuf>,
    /// `QEMU_TEST_JOBS`.
    pub(crate) jobs: Option<usize>,
    /// `QEMU_TEST_ON_FAILURE`.
    pub(crate) on_failure: OnFailure,
    /// `NEXTEST=1`: nextest started this process for one test.
    pub(crate) nextest: bool,
    /// `NEXTEST_RUN_ID`: the nextest run this process belongs to.
    pub(crate) nextest_run: Option<String>,
    /// `QEMU_TEST_TIMEOUT_FACTOR` (`None`: 1).
    pub(crate) timeout_factor: Option<f64>,
    /// `QEMU_TEST_GDB`.
    pub(crate) gdb: Option<GdbTarget>,
    /// `QEMU_TEST_VMLINUX`, made absolute.
    pub(crate) vmlinux: Option<PathBuf>,
}

impl Config {
    /// A test's deadline as configured: `timeout` scaled by
    /// `QEMU_TEST_TIMEOUT_FACTOR`.
    pub(crate) fn scaled(&self, timeout: std::time::Duration) -> std::time::Duration {
        match self.timeout_factor {
            Some(factor) => timeout.mul_f64(factor),
            None => timeout,
        }
    }
}

/// A malformed `QEMU_TEST_*` variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub(crate) struct ConfigError {
    /// The variable.
    pub(crate) name: &'static str,
    /// Its value.
    pub(crate) value: String,
    /// What it may be.
    pub(crate) expected: &'static str,
}

/// A yes/no variable's value (unset is no).
fn flag(name: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ConfigError {
            name,
            value: other.into(),
            expected: "1 or 0",
        }),
    }
}

impl Config {
    /// Reads the configuration through `lookup` (a variable's value, or
    /// `None` when unset). Empty values count as unset.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let text =
            |name: &'static str, expected: &'static str| -> Result<Option<String>, ConfigError> {
                match get(name) {
                    None => Ok(None),
                    Some(v) => v.into_string().map(Some).map_err(|v| ConfigError {
                        name,
                        value: v.to_string_lossy().into_owned(),
                        expected,
                    }),
                }
            };
        let bad = |name: &'static str, value: String, expected: &'static str| ConfigError {
            name,
            value,
            expected,
        };

        let keep = match text("QEMU_TEST_KEEP", "failed, always or never")?.as_deref() {
            None | Some("failed") => Keep::Failed,
            Some("always") => Keep::Always,
            Some("never") => Keep::Never,
            Some(other) => {
                return Err(bad(
                    "QEMU_TEST_KEEP",
                    other.into(),
                    "failed, always or never",
                ))
            }
        };
        let require = flag("QEMU_TEST_REQUIRE", text("QEMU_TEST_REQUIRE", "1 or 0")?)?;
        // Only checked: the assets read it themselves (a library user
        // fetches them without the runner).
        flag("QEMU_TEST_OFFLINE", text("QEMU_TEST_OFFLINE", "1 or 0")?)?;
        let jobs = match text("QEMU_TEST_JOBS", "a positive number")? {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(bad("QEMU_TEST_JOBS", v, "a positive number")),
            },
        };
        let on_failure = match text("QEMU_TEST_ON_FAILURE", "report or pause")?.as_deref() {
            None | Some("report") => OnFailure::Report,
            Some("pause") => OnFailure::Pause,
            Some(other) => {
                return Err(bad("QEMU_TEST_ON_FAILURE", other.into(), "report or pause"))
            }
        };
        let timeout_factor = match text("QEMU_TEST_TIMEOUT_FACTOR", "a number greater than 0")? {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if f > 0.0 && f.is_finite() && f <= 1000.0 => Some(f),
                _ => {
                    return Err(bad(
                        "QEMU_TEST_TIMEOUT_FACTOR",
                        v,
                        "a number greater than 0 (and at most 1000), e.g. 2.5",
                    ))
                }
            },
        };
        Config {
            qemu_dir: get("QEMU_TEST_QEMU_DIR").map(absolute),
            accel: text("QEMU_TEST_ACCEL", "auto, kvm, tcg or another -accel value")?
                .map(|a| Accel::from(a.as_str())),
            keep,
            artifacts: get("QEMU_TEST_ARTIFACTS").map(absolute),
            require,
            junit: junit_dir(get("QEMU_TEST_JUNIT"))?,
            jobs,
            on_failure,
            timeout_factor,
            ..Config::default()
        }
        .with_the_rest(&get)
    }

    /// `QEMU_TEST_GDB`, `QEMU_TEST_VMLINUX`, and nextest's `NEXTEST` and
    /// `NEXTEST_RUN_ID`.
    fn with_the_rest(
        mut self,
        get: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let string = |name: &str| get(name).map(|v| v.to_string_lossy().into_owned());
        self.gdb = match string("QEMU_TEST_GDB").as_deref() {
            None | Some("0") => None,
            Some("1") => Some(GdbTarget::All),
            Some(name) => Some(GdbTarget::Test(name.to_string())),
        };
        self.vmlinux = get("QEMU_TEST_VMLINUX").map(absolute);
        if let Some(path) = self.vmlinux.as_deref().filter(|p| !p.is_file()) {
            return Err(ConfigError {
                name: "QEMU_TEST_VMLINUX",
                value: path.display().to_string(),
                expected: "an existing file: the guest kernel with debug symbols (vmlinux)",
            });
        }
        self.nextest = string("NEXTEST").is_some_and(|v| v == "1");
        self.nextest_run = string("NEXTEST_RUN_ID");
        Ok(self)
    }

    /// The process environment's configuration.
    pub(crate) fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name))
    }
}

/// The configuration of this process, read from the environment once.
pub(crate) fn config() -> Result<&'static Config, ConfigError> {
    static CONFIG: OnceLock<Result<Config, ConfigError>> = OnceLock::new();
    CONFIG
        .get_or_init(Config::from_env)
        .as_ref()
        .map_err(Clone::clone)
}

/// `QEMU_TEST_JUNIT`: a directory, made absolute. It used to name the
/// report file, so a name ending in `.xml` is refused rather than made a
/// directory nobody expects.
fn junit_dir(value: Option<OsString>) -> Result<Option<PathBuf>, ConfigError> {
    let dir = value.map(absolute);
    match dir.as_deref() {
        Some(path) if path.extension().is_some_and(|e| e == "xml") => Err(ConfigError {
            name: "QEMU_TEST_JUNIT",
            value: path.display().to_string(),
            expected: "a directory (each test binary writes its own <package>.<binary>.xml there)",
        }),
        _ => Ok(dir),
    }
}

/// `path` made absolute against the current directory (tests may change
/// directory; the artifact root must not move with them).
fn absolute(path: OsString) -> PathBuf {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.keep, Keep::Failed);
        assert_eq!(config.on_failure, OnFailure::Report);
    }

    #[test]
    fn every_variable() {
        let config = parse(&[
            ("QEMU_TEST_QEMU_DIR", "/opt/qemu/bin"),
            ("QEMU_TEST_ACCEL", "tcg"),
            ("QEMU_TEST_KEEP", "never"),
            ("QEMU_TEST_ARTIFACTS", "/tmp/a"),
            ("QEMU_TEST_REQUIRE", "1"),
            ("QEMU_TEST_JUNIT", "/tmp/junit"),
            ("QEMU_TEST_JOBS", "4"),
            ("QEMU_TEST_ON_FAILURE", "pause"),
            ("QEMU_TEST_TIMEOUT_FACTOR", "2.5"),
            ("QEMU_TEST_OFFLINE", "1"),
        ])
        .unwrap();
        assert_eq!(
            config.qemu_dir.as_deref(),
            Some(std::path::Path::new("/opt/qemu/bin"))
        );
        assert_eq!(config.accel, Some(Accel::Tcg));
        assert_eq!(config.keep, Keep::Never);
        assert!(config.require);
        assert_eq!(config.jobs, Some(4));
        assert_eq!(config.on_failure, OnFailure::Pause);
        assert_eq!(
            config.scaled(std::time::Duration::from_secs(60)),
            std::time::Duration::from_secs(150)
        );
        assert_eq!(
            config.junit.as_deref(),
            Some(std::path::Path::new("/tmp/junit"))
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let config = parse(&[("QEMU_TEST_ARTIFACTS", "out/artifacts")]).unwrap();
        let artifacts = config.artifacts.unwrap();
        assert!(artifacts.is_absolute());
        assert!(artifacts.ends_with("out/artifacts"));
    }

    #[test]
    fn malformed_values_are_errors() {
        for (name, value) in [
            ("QEMU_TEST_KEEP", "sometimes"),
            ("QEMU_TEST_REQUIRE", "maybe"),
            ("QEMU_TEST_OFFLINE", "perhaps"),
            ("QEMU_TEST_JOBS", "0"),
            ("QEMU_TEST_JOBS", "many"),
            ("QEMU_TEST_ON_FAILURE", "explode"),
            ("QEMU_TEST_TIMEOUT_FACTOR", "0"),
            ("QEMU_TEST_TIMEOUT_FACTOR", "-1"),
            ("QEMU_TEST_TIMEOUT_FACTOR", "fast"),
            ("QEMU_TEST_JUNIT", "/tmp/report.xml"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn empty_means_unset() {
        assert_eq!(
            parse(&[("QEMU_TEST_KEEP", ""), ("QEMU_TEST_JOBS", "")]).unwrap(),
            Config::default()
        );
    }
}
