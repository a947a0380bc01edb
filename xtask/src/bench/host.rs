//! What the host was doing while a benchmark ran, and the CPU time the
//! benchmark's own processes spent.
//!
//! A [`Snapshot`] is taken before and after each benchmark; between two of
//! them, [`HostLoad`] tells how much of the machine other processes used
//! (all CPU time in `/proc/stat` minus this process's and its reaped
//! children's), how much the hypervisor stole, and the load average. A
//! benchmark is flagged as run on a loaded host when others used more than
//! [`LOADED_OTHERS`] of the CPUs or steal exceeded [`LOADED_STEAL`]: its
//! wall times then say little about 3 %, and the CPU-time and
//! instruction-count ratios weigh more.
//!
//! [`cpu_self`], [`cpu_children`] and [`cpu_of`] measure the CPU time
//! (user + system) of this process, of its reaped children (QEMUs that
//! exited), and of a live process (a QEMU still running).

use std::path::Path;
use std::time::{Duration, Instant};

/// Others' share of all CPUs above which the host counts as loaded.
pub(super) const LOADED_OTHERS: f64 = 0.25;
/// Steal time (share of all CPU time) above which the host counts as
/// loaded.
pub(super) const LOADED_STEAL: f64 = 0.05;

/// The host's and this process's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    when: Instant,
    /// `/proc/stat`'s first line: all CPUs' busy and steal time.
    busy: Duration,
    steal: Duration,
    ours: Duration,
    load: f64,
}

impl Snapshot {
    pub(super) fn now() -> Snapshot {
        let (busy, steal) = proc_stat().unwrap_or_default();
        Snapshot {
            when: Instant::now(),
            busy,
            steal,
            ours: cpu_self() + cpu_children(),
            load: load_average(),
        }
    }
}

/// What the host did between two snapshots.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostLoad {
    /// CPU time of other processes, as a share of all CPUs' time.
    pub(super) others: f64,
    /// Steal time, as a share of all CPUs' time.
    pub(super) steal: f64,
    /// One-minute load average at the start and at the end.
    pub(super) load: (f64, f64),
}

impl HostLoad {
    pub(super) fn between(start: &Snapshot, end: &Snapshot) -> HostLoad {
        let cpus = cpus();
        let all = (end.when - start.when).as_secs_f64() * cpus as f64;
        let share = |d: Duration| {
            if all > 0.0 {
                (d.as_secs_f64() / all).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let busy = end.busy.saturating_sub(start.busy);
        let ours = end.ours.saturating_sub(start.ours);
        HostLoad {
            others: share(busy.saturating_sub(ours)),
            steal: share(end.steal.saturating_sub(start.steal)),
            load: (start.load, end.load),
        }
    }

    pub(super) fn loaded(&self) -> bool {
        self.others > LOADED_OTHERS || self.steal > LOADED_STEAL
    }

    /// For the table: `others 85 % · steal 0.1 % · load 6.2→7.0 · **loaded**`.
    pub(super) fn cell(&self) -> String {
        format!(
            "others {:.0} % · steal {:.1} % · load {:.1}→{:.1}{}",
            self.others * 100.0,
            self.steal * 100.0,
            self.load.0,
            self.load.1,
            if self.loaded() { " · **loaded**" } else { "" }
        )
    }
}

/// Every thread of this process kept to one CPU while it lives (and the
/// processes they start, which inherit it); as before when dropped.
///
/// On a shared host, where the scheduler puts a client and its QEMU (on
/// one CPU or two, next to which other process) moved a run's ratios by
/// tens of percent, more than any change measured; on one CPU, both sides
/// meet the same conditions and runs repeat.
pub(super) struct Pinned {
    before: libc::cpu_set_t,
    pub(super) cpu: usize,
}

impl Pinned {
    /// Pins to the last CPU this process may run on; `None` if it cannot.
    pub(super) fn last_cpu() -> Option<Pinned> {
        // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity
        // fills it.
        let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if unsafe { libc::sched_getaffinity(0, size, &mut before) } != 0 {
            return None;
        }
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| unsafe { libc::CPU_ISSET(c, &before) })?;
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut one) };
        set_all_threads(&one).then_some(Pinned { before, cpu })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        set_all_threads(&self.before);
    }
}

/// Sets the affinity of every thread of this process (a thread's own
/// setting is what the threads and processes it starts inherit).
fn set_all_threads(set: &libc::cpu_set_t) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    let mut all = true;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of `size` bytes.
        let set = unsafe { libc::sched_setaffinity(tid, size, set) } == 0;
        // A thread that ended meanwhile needs no setting.
        let gone = || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        all &= set || gone();
    }
    all
}

pub(super) fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The one-minute load average (0 if unreadable).
pub(super) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// All CPUs' busy time (everything but idle and iowait) and steal time.
fn proc_stat() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    let ticks = |n: u64| Duration::from_secs_f64(n as f64 / clock_ticks());
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    Some((ticks(busy), ticks(at(7))))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of this process, all threads.
pub(super) fn cpu_self() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of this process's children that have exited and been reaped.
pub(super) fn cpu_children() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// CPU time of the live process `pid`, all threads, from each thread's
/// `schedstat` (nanoseconds on a CPU). Zero once it is gone.
pub(super) fn cpu_of(pid: u32) -> Duration {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return Duration::ZERO;
    };
    let mut ns = 0;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_forward() {
        let a = Snapshot::now();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        let b = Snapshot::now();
        assert!(b.ours > a.ours, "our CPU time did not grow");
        let load = HostLoad::between(&a, &b);
        assert!((0.0..=1.0).contains(&load.others));
        assert!(cpu_of(std::process::id()) > Duration::ZERO);
        assert!(!load.cell().is_empty());
    }

    #[test]
    fn pinning_holds_and_lets_go() {
        let before = std::thread::available_parallelism().unwrap().get();
        let pinned = Pinned::last_cpu().expect("can pin");
        assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
        let spawned = std::thread::spawn(|| std::thread::available_parallelism().unwrap().get());
        assert_eq!(spawned.join().unwrap(), 1, "new threads inherit it");
        drop(pinned);
        assert_eq!(std::thread::available_parallelism().unwrap().get(), before);
    }
}
