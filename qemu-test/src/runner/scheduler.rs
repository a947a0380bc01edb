//! The host budget: how many VMs may run at once.
//!
//! A VM test asks for as many CPU slots as it has vCPUs and as many memory
//! slots as its RAM plus QEMU's own overhead needs ([`Need::for_vm`]). The
//! budget is `QEMU_TEST_JOBS` CPU slots (default: the number of cores) and
//! the memory available when the process starts (`MemAvailable` less a
//! reserve), in [`MEM_SLOT_MIB`] slots.
//!
//! The budget holds across processes: every slot is a file in
//! `<state dir>/slots/` (see [`super::state::state_dir`]), held with an
//! exclusive `flock` for as long as the VM runs, so test binaries run side
//! by side, and nextest's one-process-per-test, share one budget. The kernel
//! releases the locks of a process that dies. Within a process, waiting
//! tests are admitted in arrival order; a waiter polls the files every
//! [`POLL`] for slots freed by other processes and is woken at once when a
//! test of its own process finishes. A test takes all its slots or none, so
//! two tests can never hold half of what each needs.
//!
//! Across processes, waiters are served one at a time too: only the holder
//! of `<state dir>/slots/turnstile` takes slots, and it holds it until it
//! has all of them. So a test that needs two slots (a VM and its sibling)
//! gets the next two freed, instead of watching single-VM tests of other
//! processes take each slot as it frees.
//!
//! A test needing more than the whole budget is clamped to it: it runs
//! alone rather than never.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::os;
use crate::runner::state::state_dir;

/// The size of one memory slot.
pub(crate) const MEM_SLOT_MIB: u64 = 64;
/// What a QEMU process needs besides guest RAM (TCG translation cache,
/// device models, libraries): measured at 40–50 MiB for small TCG guests.
pub(crate) const QEMU_OVERHEAD_MIB: u64 = 64;
/// Memory left for the rest of the system.
const RESERVE_MIB: u64 = 512;
/// How often a waiting test looks for slots freed by other processes.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What one test asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    /// CPU slots (vCPUs).
    pub(crate) cpus: usize,
    /// Memory slots.
    pub(crate) mem: usize,
}

impl Need {
    /// `n` times this need (a test's VM and its siblings).
    pub(crate) fn times(self, n: u32) -> Need {
        let n = n.max(1) as usize;
        Need {
            cpus: self.cpus * n,
            mem: self.mem * n,
        }
    }

    /// The need of a VM with `smp` vCPUs and `memory_mib` of RAM.
    pub(crate) fn for_vm(smp: u32, memory_mib: u64) -> Need {
        let mib = memory_mib.saturating_add(QEMU_OVERHEAD_MIB);
        Need {
            cpus: smp.max(1) as usize,
            mem: mib.div_ceil(MEM_SLOT_MIB) as usize,
        }
    }
}

/// Slots in use by this process, and the arrival queue.
#[derive(Debug, Default)]
struct State {
    cpu_held: Vec<bool>,
    mem_held: Vec<bool>,
    next_ticket: u64,
    serving: u64,
}

/// The budget of this process; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Scheduler {
    cpu: Vec<Slot>,
    mem: Vec<Slot>,
    turnstile: Slot,
    state: Mutex<State>,
    changed: Condvar,
}

/// One slot file, opened lazily.
#[derive(Debug)]
struct Slot {
    path: PathBuf,
    file: OnceLock<File>,
}

impl Slot {
    /// Its file, opened on first use; `None` when it cannot be.
    fn file(&self) -> Option<&File> {
        match self.file.get() {
            Some(file) => Some(file),
            None => os::open_lock(&self.path)
                .ok()
                .map(|file| self.file.get_or_init(|| file)),
        }
    }

    fn try_lock(&self) -> bool {
        // No slot file (a read-only state dir): run unscheduled rather
        // than never.
        self.file()
            .is_none_or(|file| os::try_lock(file, os::LockMode::Exclusive))
    }

    fn unlock(&self) {
        if let Some(file) = self.file.get() {
            os::unlock(file);
        }
    }

    /// Blocks until this slot is ours; held until the guard drops (not held
    /// at all when its file cannot be opened or locked).
    fn hold(&self) -> Held<'_> {
        Held(
            self.file()
                .filter(|file| os::wait_lock(file, os::LockMode::Exclusive).is_ok()),
        )
    }
}

/// A slot held by [`Slot::hold`].
#[derive(Debug)]
struct Held<'a>(Option<&'a File>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.0 {
            os::unlock(file);
        }
    }
}

/// Slots held by one test; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    scheduler: &'static Scheduler,
    cpu: Vec<usize>,
    mem: Vec<usize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        for &i in &self.cpu {
            self.scheduler.cpu[i].unlock();
            state.cpu_held[i] = false;
        }
        for &i in &self.mem {
            self.scheduler.mem[i].unlock();
            state.mem_held[i] = false;
        }
        drop(state);
        self.scheduler.changed.notify_all();
    }
}

impl Scheduler {
    /// A scheduler over `cpus` CPU slots and `mem` memory slots in `dir`.
    pub(crate) fn new(dir: &Path, cpus: usize, mem: usize) -> Scheduler {
        let _ = os::create_private_dir_all(dir);
        let slots = |kind: &str, n: usize| -> Vec<Slot> {
            (0..n.max(1))
                .map(|i| Slot {
                    path: dir.join(format!("{kind}-{i}")),
                    file: OnceLock::new(),
                })
                .collect()
        };
        let cpu = slots("cpu", cpus);
        let mem = slots("mem", mem);
        let turnstile = Slot {
            path: dir.join("turnstile"),
            file: OnceLock::new(),
        };
        let state = State {
            cpu_held: vec![false; cpu.len()],
            mem_held: vec![false; mem.len()],
            ..State::default()
        };
        Scheduler {
            cpu,
            mem,
            turnstile,
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `need` fits (clamped to the whole budget), then holds it.
    pub(crate) fn acquire(&'static self, need: Need) -> Reservation {
        let need = Need {
            cpus: need.cpus.clamp(1, self.cpu.len()),
            mem: need.mem.min(self.mem.len()),
        };
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        drop(state);
        // First in this process; now first across processes.
        let turn = self.turnstile.hold();
        let mut state = self.lock();
        loop {
            if let Some((cpu, mem)) = self.try_take(&mut state, need) {
                state.serving += 1;
                drop(state);
                drop(turn);
                self.changed.notify_all();
                return Reservation {
                    scheduler: self,
                    cpu,
                    mem,
                };
            }
            state = self
                .changed
                .wait_timeout(state, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes all of `need` or nothing.
    fn try_take(&self, state: &mut State, need: Need) -> Option<(Vec<usize>, Vec<usize>)> {
        let cpu = take(&self.cpu, &mut state.cpu_held, need.cpus);
        let mem = cpu
            .as_ref()
            .and_then(|_| take(&self.mem, &mut state.mem_held, need.mem));
        match (cpu, mem) {
            (Some(cpu), Some(mem)) => Some((cpu, mem)),
            (cpu, _) => {
                for i in cpu.unwrap_or_default() {
                    self.cpu[i].unlock();
                    state.cpu_held[i] = false;
                }
                None
            }
        }
    }
}

/// Locks `n` free slots of `slots`, or none.
fn take(slots: &[Slot], held: &mut [bool], n: usize) -> Option<Vec<usize>> {
    let mut taken = Vec::with_capacity(n);
    for (i, slot) in slots.iter().enumerate() {
        if taken.len() == n {
            break;
        }
        if !held[i] && slot.try_lock() {
            held[i] = true;
            taken.push(i);
        }
    }
    if taken.len() == n {
        return Some(taken);
    }
    for i in taken {
        slots[i].unlock();
        held[i] = false;
    }
    None
}

/// This process's scheduler, sized from `QEMU_TEST_JOBS` (or the cores) and
/// the available memory.
pub(crate) fn scheduler(jobs: Option<usize>) -> &'static Scheduler {
    static SCHEDULER: OnceLock<Scheduler> = OnceLock::new();
    SCHEDULER.get_or_init(|| {
        let cpus =
            jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let mem = mem_available_mib().map_or(1 << 20, |mib| {
            mib.saturating_sub(RESERVE_MIB.max(mib / 10)) / MEM_SLOT_MIB
        });
        Scheduler::new(&state_dir().join("slots"), cpus, mem as usize)
    })
}

/// `MemAvailable` from `/proc/meminfo`, in MiB.
fn mem_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn leak(s: Scheduler) -> &'static Scheduler {
        Box::leak(Box::new(s))
    }

    #[test]
    fn needs_round_memory_up() {
        assert_eq!(Need::for_vm(1, 128), Need { cpus: 1, mem: 3 });
        assert_eq!(Need::for_vm(0, 0), Need { cpus: 1, mem: 1 });
        assert_eq!(Need::for_vm(4, 1024), Need { cpus: 4, mem: 17 });
    }

    #[test]
    fn meminfo_parses() {
        assert_eq!(
            parse_mem_available("MemTotal: 100 kB\nMemAvailable:   2097152 kB\n"),
            Some(2048)
        );
        assert_eq!(parse_mem_available("MemTotal: 100 kB\n"), None);
    }

    #[test]
    fn never_more_than_the_budget_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let sched = leak(Scheduler::new(dir.path(), 3, 100));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (running, peak) = (running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let cpus = 1 + i % 2;
                    let _r = sched.acquire(Need { cpus, mem: 1 });
                    let now = running.fetch_add(cpus, Ordering::SeqCst) + cpus;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(cpus, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn memory_limits_too_and_big_needs_are_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let sched = leak(Scheduler::new(dir.path(), 4, 4));
        let a = sched.acquire(Need { cpus: 1, mem: 3 });
        let started = Instant::now();
        let t = std::thread::spawn(move || {
            let _b = sched.acquire(Need { cpus: 1, mem: 2 });
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(a);
        let admitted = t.join().unwrap();
        assert!(admitted - started >= Duration::from_millis(100));
        // More than the whole budget: clamped, so it runs.
        drop(sched.acquire(Need { cpus: 64, mem: 64 }));
    }

    #[test]
    fn a_big_need_is_not_starved_by_small_ones_of_other_processes() {
        // Two processes' schedulers over one budget of two: while one slot
        // is busy, a need of two waits; a need of one that comes later
        // must not take the slot that frees first.
        let dir = tempfile::tempdir().unwrap();
        let one = leak(Scheduler::new(dir.path(), 2, 10));
        let two = leak(Scheduler::new(dir.path(), 2, 10));
        let busy = one.acquire(Need { cpus: 1, mem: 1 });
        let order = Arc::new(Mutex::new(Vec::new()));
        let admitted = |sched: &'static Scheduler, cpus, name: &'static str| {
            let order = order.clone();
            std::thread::spawn(move || {
                let held = sched.acquire(Need { cpus, mem: 1 });
                order.lock().unwrap().push(name);
                std::thread::sleep(Duration::from_millis(50));
                drop(held);
            })
        };
        let big = admitted(two, 2, "big");
        while !os::is_locked(&dir.path().join("turnstile")) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let small = admitted(one, 1, "small");
        std::thread::sleep(Duration::from_millis(100));
        assert!(order.lock().unwrap().is_empty(), "the free slot was taken");
        drop(busy);
        big.join().unwrap();
        small.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["big", "small"]);
    }

    #[test]
    fn slots_are_shared_across_schedulers_through_the_files() {
        // Two schedulers over one directory behave like two processes:
        // each opens its own file descriptions, so flock arbitrates.
        let dir = tempfile::tempdir().unwrap();
        let one = leak(Scheduler::new(dir.path(), 1, 10));
        let two = leak(Scheduler::new(dir.path(), 1, 10));
        let held = one.acquire(Need { cpus: 1, mem: 1 });
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            drop(two.acquire(Need { cpus: 1, mem: 1 }));
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(150));
        drop(held);
        assert!(t.join().unwrap() >= Duration::from_millis(140));
    }
}
