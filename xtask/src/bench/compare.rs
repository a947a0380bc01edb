//! Judging ours against raw to 3 % (P1, P2): paired, interleaved samples
//! of wall time and CPU time, and instruction counts.
//!
//! Each pair is one raw and one qemu-test measurement taken back to back
//! (in alternating order), so drift in the host's load hits both alike;
//! the headline ratio is the median of the pairs' ratios, with a bootstrap
//! 95 % interval that says whether the run could tell 3 % at all. The CPU
//! time (user + system, client and QEMU together) is less disturbed by
//! other processes than wall time, and instruction counts (see
//! `instructions.rs`) not at all; a verdict needs both the time and the
//! instruction ratio within the limit.

use std::time::Duration;

use super::instructions::PerOp;
use super::stats::{median_ci, median_f64, ratio, Stats};
use super::table::{Check, Row};
use crate::util;

/// The most ours may cost, as a ratio to raw.
pub(super) const LIMIT: f64 = 1.03;

/// One measurement: how long it took and how much CPU it used (the client
/// and the QEMUs it talked to).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
}

/// Paired samples: `raw[i]` and `ours[i]` were taken back to back.
#[derive(Debug, Default)]
pub(super) struct Pairs {
    pub(super) raw: Vec<Sample>,
    pub(super) ours: Vec<Sample>,
}

impl Pairs {
    pub(super) fn push(&mut self, raw: Sample, ours: Sample) {
        self.raw.push(raw);
        self.ours.push(ours);
    }

    fn walls(samples: &[Sample]) -> Vec<Duration> {
        samples.iter().map(|s| s.wall).collect()
    }

    fn cpu(samples: &[Sample]) -> Duration {
        samples.iter().map(|s| s.cpu).sum()
    }
}

/// Instruction counts of one operation, both sides; or why there are none.
pub(super) type Counted = Result<(PerOp, PerOp), String>;

/// The row (and the detail lines) for `pairs` and `counted`: time ratio
/// and instruction ratio, each judged against [`LIMIT`].
pub(super) fn row(id: &'static str, what: &str, pairs: &Pairs, counted: &Counted) -> (Row, String) {
    let (raw, ours) = (
        Stats::of(&Pairs::walls(&pairs.raw)),
        Stats::of(&Pairs::walls(&pairs.ours)),
    );
    let ratios: Vec<f64> = pairs
        .raw
        .iter()
        .zip(&pairs.ours)
        .map(|(r, o)| ratio(o.wall, r.wall))
        .collect();
    let paired = median_f64(&ratios);
    let (lo, hi) = median_ci(&ratios);
    let cpu = ratio(Pairs::cpu(&pairs.ours), Pairs::cpu(&pairs.raw));
    let per = |d: Duration| util::human(d / pairs.raw.len() as u32);
    let mut row = Row::new(id, what);
    row.raw = format!("{} (min {})", util::human(raw.median), util::human(raw.min));
    row.ours = format!(
        "{} (min {})",
        util::human(ours.median),
        util::human(ours.min)
    );
    row.ratio = Some(paired);
    row.target = "≤ 1.03 (time and instructions)";
    row.checks.push(Check::at_most("time", paired, LIMIT));
    let counts = match counted {
        Ok((raw_i, ours_i)) => {
            let total = ours_i.total / raw_i.total;
            row.instructions = Some(total);
            row.checks
                .push(Check::at_most("instructions", total, LIMIT));
            format!(
                "instructions per operation, client + QEMU: {} vs {}; the client alone: {} vs {} ({:.2}×)",
                thousands(ours_i.total),
                thousands(raw_i.total),
                thousands(ours_i.client),
                thousands(raw_i.client),
                ours_i.client / raw_i.client
            )
        }
        Err(why) => format!("no instruction counts: {why}"),
    };
    row.note = format!(
        "median of {} paired ratios, 95 % interval {lo:.3}–{hi:.3}; ratio of minima {:.3}; \
         CPU time (client + QEMU, user + system) {cpu:.3}× ({} vs {} per operation); {counts}",
        ratios.len(),
        ratio(ours.min, raw.min),
        per(Pairs::cpu(&pairs.ours)),
        per(Pairs::cpu(&pairs.raw)),
    );
    let detail = format!(
        "{id} raw:  {}\n{id} ours: {}\n{id} paired ratio: median {paired:.3} (95 % {lo:.3}–{hi:.3}); CPU ratio {cpu:.3}; {counts}\n",
        raw.line(),
        ours.line(),
    );
    (row, detail)
}

/// `1234567.8` as `1 234 568`.
pub(super) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1234567.8), "1 234 568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1 000");
    }

    #[test]
    fn rows_judge_time_and_instructions() {
        let ms = |n: u64| Sample {
            wall: Duration::from_millis(n),
            cpu: Duration::from_millis(n / 2),
        };
        let mut pairs = Pairs::default();
        for i in 0..20 {
            pairs.push(ms(100 + i), ms(101 + i));
        }
        let per = |total, client| PerOp { client, total };
        let (row, _) = row(
            "P9",
            "x",
            &pairs,
            &Ok((per(1000.0, 10.0), per(1010.0, 20.0))),
        );
        assert_eq!(row.verdict(), "met", "{}", row.note);
        let (row, _) = row_with(&pairs, per(1000.0, 10.0), per(1100.0, 110.0));
        assert_eq!(row.verdict(), "**missed** (instructions)");
        let (row, _) = super::row("P9", "x", &pairs, &Err("no valgrind".into()));
        assert!(row.note.contains("no valgrind") && row.verdict() == "met");
    }

    fn row_with(pairs: &Pairs, raw: PerOp, ours: PerOp) -> (Row, String) {
        row("P9", "x", pairs, &Ok((raw, ours)))
    }
}
