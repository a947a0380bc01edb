//! The run's summary on stderr, after libtest's: every test that was
//! skipped (not run here, or skipped itself at run time), with its reason.
//! libtest's own line only counts them as "ignored", and nextest, which
//! judges a test by its exit status, shows a run-time skip as a pass: this
//! line is where the reason is.

use std::io::Write;

use crate::runner::outcome::{Outcome, Record};

/// Writes the skipped tests and their reasons to `out` (nothing if none).
pub(crate) fn write_skips(out: &mut impl Write, records: &[Record]) -> std::io::Result<()> {
    let mut skipped: Vec<(&str, &str)> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skipped(reason) => Some((r.name.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    if skipped.is_empty() {
        return Ok(());
    }
    skipped.sort();
    writeln!(out, "qemu-test: {} skipped:", skipped.len())?;
    for (name, reason) in skipped {
        let reason = reason.lines().next().unwrap_or("");
        writeln!(out, "    {name}: {reason}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn skips_are_listed_with_their_first_line() {
        let record = |name: &str, outcome| Record {
            name: name.into(),
            outcome,
            vm: None,
            duration: Duration::ZERO,
        };
        let records = [
            record("b", Outcome::Skipped("no VNC\nmore".into())),
            record("a", Outcome::Passed),
            record("c", Outcome::Skipped("qemu-system-x not found".into())),
        ];
        let mut out = Vec::new();
        write_skips(&mut out, &records).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "qemu-test: 2 skipped:\n    b: no VNC\n    c: qemu-system-x not found\n"
        );
        let mut out = Vec::new();
        write_skips(&mut out, &records[1..2]).unwrap();
        assert!(out.is_empty());
    }
}
