//! The results table: one [`Row`] per figure, judged by its [`Check`]s.

use std::fmt::Write as _;

use super::host::HostLoad;

/// One row of the results table.
pub(super) struct Row {
    pub(super) id: &'static str,
    pub(super) what: String,
    pub(super) raw: String,
    pub(super) ours: String,
    /// ours ÷ raw, the figure's headline ratio (time, unless said).
    pub(super) ratio: Option<f64>,
    /// Instructions ours ÷ raw (client and QEMU together), where counted.
    pub(super) instructions: Option<f64>,
    pub(super) target: &'static str,
    /// What decides the verdict: all must hold. None: reported only.
    pub(super) checks: Vec<Check>,
    pub(super) note: String,
    /// What the host did while the figure was measured (set by the
    /// bench for every row).
    pub(super) host: Option<HostLoad>,
}

impl Row {
    /// A row with nothing judged yet.
    pub(super) fn new(id: &'static str, what: impl Into<String>) -> Row {
        Row {
            id,
            what: what.into(),
            raw: "—".into(),
            ours: "—".into(),
            ratio: None,
            instructions: None,
            target: "—",
            checks: Vec::new(),
            note: String::new(),
            host: None,
        }
    }

    pub(super) fn verdict(&self) -> String {
        if self.checks.is_empty() {
            return "—".into();
        }
        let missed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| !c.holds())
            .map(|c| c.what)
            .collect();
        if missed.is_empty() {
            "met".into()
        } else {
            format!("**missed** ({})", missed.join(", "))
        }
    }
}

/// One condition of a target.
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    /// Names the value in a verdict: `time`, `instructions`, `lost`.
    pub(super) what: &'static str,
    pub(super) value: f64,
    pub(super) limit: f64,
    /// Whether the value must be at most (else at least) the limit.
    pub(super) at_most: bool,
}

impl Check {
    pub(super) fn at_most(what: &'static str, value: f64, limit: f64) -> Check {
        Check {
            what,
            value,
            limit,
            at_most: true,
        }
    }

    pub(super) fn at_least(what: &'static str, value: f64, limit: f64) -> Check {
        Check {
            what,
            value,
            limit,
            at_most: false,
        }
    }

    fn holds(&self) -> bool {
        if self.at_most {
            self.value <= self.limit
        } else {
            self.value >= self.limit
        }
    }
}

pub(super) fn render(rows: &[Row]) -> String {
    let mut t = String::from(
        "| id | benchmark | raw | qemu-test | ratio | instructions | target | verdict | host | notes |\n",
    );
    t.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let num = |x: Option<f64>| x.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into());
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.what,
            r.raw,
            r.ours,
            num(r.ratio),
            num(r.instructions),
            r.target,
            r.verdict(),
            r.host.as_ref().map(HostLoad::cell).unwrap_or_default(),
            r.note
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_need_every_check() {
        let mut row = Row::new("P9", "x");
        assert_eq!(row.verdict(), "—");
        row.checks.push(Check::at_most("time", 1.03, 1.03));
        assert_eq!(row.verdict(), "met");
        row.checks.push(Check::at_most("instructions", 1.031, 1.03));
        assert_eq!(row.verdict(), "**missed** (instructions)");
        row.checks[1].value = 1.0;
        row.checks.push(Check::at_least("throughput", 0.9, 0.95));
        assert_eq!(row.verdict(), "**missed** (throughput)");
        row.checks[2].value = 0.95;
        assert_eq!(row.verdict(), "met");
        assert!(render(&[row]).contains("| met |"));
    }
}
