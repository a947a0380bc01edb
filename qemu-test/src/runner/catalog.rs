//! What a QEMU binary has: its machine types (`-machine help`), CPU
//! models (`-cpu help`) and device types (`-device help`), and the names
//! nearest to one it does not have ("did you mean `virt`?").
//!
//! A test that names a machine, CPU or device its QEMU lacks has a typo
//! (or wants another QEMU): [`resolve`](super::resolve) makes that an
//! error with the near matches, not a skip. Each list is asked once per
//! binary and process, and kept in a file of the [state dir](super::state)
//! keyed by the binary's [`file_identity`] (canonical path, size, mtime,
//! inode), as snapshot keys identify it, so that a nextest run (one process
//! per test) does not pay for three QEMU starts (30-50 ms each) in every
//! test. A list QEMU would not give, or that does not parse, is not kept,
//! and nothing is judged against it: the launch reports the problem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use crate::runner::state::{fnv1a, state_dir};
use crate::snapshot::file_identity;

/// A kind of name a QEMU binary lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Catalog {
    /// `-machine help`.
    Machines,
    /// `-cpu help`.
    Cpus,
    /// `-device help`.
    Devices,
    /// `-netdev help`.
    Netdevs,
}

impl Catalog {
    /// The option that lists the names.
    pub(crate) fn option(self) -> &'static str {
        match self {
            Catalog::Machines => "-machine",
            Catalog::Cpus => "-cpu",
            Catalog::Devices => "-device",
            Catalog::Netdevs => "-netdev",
        }
    }

    /// What one name is, for messages.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Catalog::Machines => "machine type",
            Catalog::Cpus => "CPU model",
            Catalog::Devices => "device type",
            Catalog::Netdevs => "netdev backend",
        }
    }

    /// The cache file's prefix.
    fn file_prefix(self) -> &'static str {
        match self {
            Catalog::Machines => "machine-types",
            Catalog::Cpus => "cpu-models",
            Catalog::Devices => "device-types",
            Catalog::Netdevs => "netdev-backends",
        }
    }

    /// Parses what `<binary> <option> help` printed; `None` if it is not
    /// a list this parser knows.
    fn parse(self, text: &str) -> Option<Vec<String>> {
        let names = match self {
            Catalog::Machines => parse_machine_help(text),
            Catalog::Cpus => parse_cpu_help(text)?,
            Catalog::Devices => parse_device_help(text),
            Catalog::Netdevs => parse_netdev_help(text)?,
        };
        (!names.is_empty()).then_some(names)
    }
}

/// One binary's list, if it could be had.
type Names = Option<Arc<Vec<String>>>;

/// The names of kind `catalog` that `binary` has; `None` when QEMU does
/// not list them (or not in a form this parser knows).
pub(crate) fn names(binary: &Path, catalog: Catalog) -> Names {
    static CACHE: OnceLock<Mutex<HashMap<(PathBuf, Catalog), Names>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (binary.to_path_buf(), catalog);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let canonical = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let id = fnv1a(file_identity(&canonical).to_string().as_bytes());
    let file = state_dir().join(format!("{}-{id:016x}.txt", catalog.file_prefix()));
    let kept = std::fs::read_to_string(&file)
        .ok()
        .map(|text| parse_kept(&text))
        .filter(|names| !names.is_empty());
    let names = kept.or_else(|| {
        let output = Command::new(binary)
            .args([catalog.option(), "help"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let names = catalog.parse(&String::from_utf8_lossy(&output.stdout))?;
        keep(&file, &names);
        Some(names)
    });
    let names = names.map(Arc::new);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, names.clone());
    names
}

/// The end line of a kept list. [`keep`]'s rename is atomic, but nothing is
/// fsynced: after a crash the file may be there with its data cut short,
/// and then it lacks this line and is asked again.
const KEPT_END: &str = "# end";

/// Writes `names` to `file`, one per line, through a temp file renamed into
/// place: concurrent readers see the whole list or none. Best effort.
fn keep(file: &Path, names: &[String]) {
    let text = format!("{}\n{KEPT_END}\n", names.join("\n"));
    let _ = crate::os::write_atomically(file, text.as_bytes());
}

/// A list [`keep`] wrote; empty if it is incomplete.
fn parse_kept(text: &str) -> Vec<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.pop() != Some(KEPT_END) {
        return Vec::new();
    }
    lines.into_iter().map(str::to_string).collect()
}

/// `-machine help`: a header line, then `name   description` lines.
fn parse_machine_help(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with(char::is_whitespace))
        .filter(|line| !line.starts_with("Supported machines"))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `-cpu help`: `Available CPUs:`, then one model per line, either alone
/// and indented (`  cortex-a57`: Arm, RISC-V) or after the target's tag
/// (`x86 Haswell  description`), up to the next section (x86's CPUID
/// flags). Other layouts are not guessed at: `None`.
fn parse_cpu_help(text: &str) -> Option<Vec<String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("Available CPUs"));
    lines.next()?;
    let mut names = Vec::new();
    for line in lines {
        if line.trim().is_empty() || line.ends_with(':') {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name] if line.starts_with(char::is_whitespace) => names.push(name.to_string()),
            ["x86", name, ..] => names.push(name.to_string()),
            _ => return None,
        }
    }
    Some(names)
}

/// `-device help`: section headers, then `name "virtio-net-pci", bus PCI,
/// alias "virtio-net", desc "..."` lines; names and aliases both count.
fn parse_device_help(text: &str) -> Vec<String> {
    let quoted = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(key).nth(1)?;
        Some(rest.split('"').next()?.to_string())
    };
    text.lines()
        .filter(|line| line.starts_with("name \""))
        .flat_map(|line| [quoted(line, "name \""), quoted(line, "alias \"")])
        .flatten()
        .collect()
}

/// `-netdev help`: `Available netdev backend types:`, then one per line.
fn parse_netdev_help(text: &str) -> Option<Vec<String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("Available netdev backend types"));
    lines.next()?;
    Some(
        lines
            .map(str::trim)
            .take_while(|l| !l.is_empty() && !l.contains(' '))
            .map(str::to_string)
            .collect(),
    )
}

/// Up to three of `known` nearest to `wanted`, nearest first: the same
/// name in another case, then those within a few edits (a third of the
/// name's length, at least one, at most three).
pub(crate) fn near<'a>(wanted: &str, known: &'a [String]) -> Vec<&'a str> {
    let lower = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (distance(&lower, &k.to_lowercase()), k.as_str()))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(3).map(|(_, k)| k).collect()
}

/// The edit distance between `a` and `b`, in characters: insertions,
/// deletions, substitutions and swaps of two neighbours (`q53` → `q35`)
/// count one each (Damerau-Levenshtein, optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: the distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kept_lists_round_trip_and_cut_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine-types-x.txt");
        let types = strings(&["pc", "q35"]);
        keep(&file, &types);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(parse_kept(&text), types);
        assert!(parse_kept("pc\nq3").is_empty());
        assert!(parse_kept("").is_empty());
    }

    #[test]
    fn netdev_help_is_parsed() {
        let text = "Available netdev backend types:\nsocket\nstream\nuser\nvde\n";
        assert_eq!(
            Catalog::Netdevs.parse(text).unwrap(),
            ["socket", "stream", "user", "vde"]
        );
        assert!(Catalog::Netdevs.parse("nothing known\n").is_none());
    }

    #[test]
    fn machine_help_is_parsed() {
        let text = "Supported machines are:\n\
                    microvm              microvm (i386)\n\
                    pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\n\
                    q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\n\
                    none                 empty machine\n";
        assert_eq!(
            Catalog::Machines.parse(text).unwrap(),
            ["microvm", "pc", "q35", "none"]
        );
    }

    #[test]
    fn cpu_help_is_parsed_in_both_layouts() {
        let arm = "Available CPUs:\n  a64fx\n  cortex-a57\n  max\n";
        assert_eq!(parse_cpu_help(arm).unwrap(), ["a64fx", "cortex-a57", "max"]);
        let x86 = "Available CPUs:\n\
                   x86 486                   (alias configured by machine type)\n\
                   x86 Haswell               Intel Core Processor (Haswell)\n\
                   x86 max                   Enables all features\n\
                   \n\
                   Recognized CPUID flags:\n  3dnow fpu\n";
        assert_eq!(parse_cpu_help(x86).unwrap(), ["486", "Haswell", "max"]);
        // Another layout is not guessed at.
        let ppc = "PowerPC 601_v1           PVR 00010001\n";
        assert_eq!(parse_cpu_help(ppc), None);
        let odd = "Available CPUs:\nPowerPC 601_v1 PVR 00010001\n";
        assert_eq!(parse_cpu_help(odd), None);
    }

    #[test]
    fn device_help_has_names_and_aliases() {
        let text = "Controller/Bridge/Hub devices:\n\
                    name \"pci-bridge\", bus PCI, desc \"Standard PCI Bridge\"\n\
                    \n\
                    Storage devices:\n\
                    name \"ich9-ahci\", bus PCI, alias \"ahci\"\n";
        assert_eq!(parse_device_help(text), ["pci-bridge", "ich9-ahci", "ahci"]);
    }

    #[test]
    fn near_matches() {
        let known = strings(&["virt", "virt-7.2", "vexpress-a9", "sbsa-ref", "none"]);
        assert_eq!(near("virtt", &known), ["virt"]);
        assert_eq!(near("Virt", &known), ["virt"]);
        assert_eq!(near("virt-7.1", &known), ["virt-7.2"]);
        assert_eq!(near("qqqqqq", &known), Vec::<&str>::new());
        let cpus = strings(&["Haswell", "Haswell-v1", "Broadwell"]);
        assert_eq!(near("haswel", &cpus), ["Haswell"]);
        assert_eq!(near("q53", &strings(&["q35", "pc"])), ["q35"]);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "abc"), 3);
    }
}
