//! Sibling machines: more VMs in one test, configured like the test's own
//! (upstream's `get_vm(name=...)`), each with its own artifact subdirectory
//! holding the same files as the main VM's.
//!
//! A test declares how many it starts (`siblings = N`); the runner reserves
//! their host budget together with the test's own at admission (all of it
//! or nothing), so a body never waits for host room and cannot deadlock
//! with other tests. Each sibling runs under the test's deadline, the
//! watchdog kills it when the deadline passes.
//!
//! A sibling lives until the test ends, like the test's own VM: the handle
//! [`Vm::sibling`](crate::Vm::sibling) returns goes back to the runner when
//! it is dropped, and the same call returns it again. The runner ends every
//! sibling with the test; `shutdown` or `kill` ends one sooner.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::error::{BoxError, SiblingError};
use crate::machine::{KillSwitch, Machine};
use crate::runner::artifacts;
use crate::runner::launch::build_machine;
use crate::runner::network::{self, Devices};
use crate::runner::resolve::Plan;
use crate::shell::Shell;
use crate::timeline::Timeline;

/// A machine started next to a test's own VM, configured like it; get one
/// with [`Vm::sibling`](crate::Vm::sibling). It derefs to [`Machine`]: add
/// arguments, launch it, drive it. Its logs (`qemu.log`, `console.log`,
/// `qmp.jsonl`) and, once launched, `cmdline.txt` and `repro.sh` are in
/// [`artifacts`](Sibling::artifacts), `<test artifacts>/<name>/`.
///
/// A sibling lives until the test ends: dropping the handle gives it back
/// to the runner, which ends it with the test, and
/// [`Vm::sibling`](crate::Vm::sibling) returns it again
/// (`vm.sibling("server")?;` as a statement does not stop the server).
/// `shutdown` or `kill` ends it sooner.
#[derive(Debug)]
pub struct Sibling {
    /// `None` only while it is dropped.
    kept: Option<Kept>,
    /// Where dropping it puts it: the test's siblings (`Weak::new()` for
    /// one kept there, which dropping ends).
    home: Weak<Mutex<HashMap<String, Sibling>>>,
}

/// A sibling's machine and what belongs to it.
#[derive(Debug)]
struct Kept {
    machine: Machine,
    name: String,
    dir: PathBuf,
    /// The test's name, for `repro.sh`.
    test: String,
    cwd: PathBuf,
    /// The test's networks and program dir; whether the runner set up
    /// the guest side.
    devices: Devices,
}

impl Sibling {
    fn kept(&self) -> &Kept {
        self.kept.as_ref().expect("a sibling is kept until dropped")
    }

    fn kept_mut(&mut self) -> &mut Kept {
        self.kept.as_mut().expect("a sibling is kept until dropped")
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.kept().name
    }

    /// Its artifact directory, `<test artifacts>/<name>/`.
    pub fn artifacts(&self) -> &Path {
        &self.kept().dir
    }

    /// A [`Shell`] on its console (see [`Vm::shell`](crate::Vm::shell)).
    pub fn shell(&self) -> Shell {
        Shell::new(self.kept().machine.console())
    }

    /// Takes its NIC on `network` down or up (QMP `set_link`), like
    /// [`Vm::set_link`](crate::Vm::set_link).
    pub fn set_link(&mut self, network: &str, up: bool) -> Result<(), BoxError> {
        let shell = self.console_shell();
        network::set_link(&mut self.kept_mut().machine, shell, network, up)
    }

    fn console_shell(&self) -> Option<Shell> {
        self.kept().devices.configures_guest.then(|| self.shell())
    }

    /// Makes the host program `program` runnable in its guest, like
    /// [`Vm::install`](crate::Vm::install).
    pub fn install(&self, program: impl AsRef<Path>) -> Result<String, BoxError> {
        super::share::install(
            &self.shell(),
            self.kept().devices.programs.as_deref(),
            program.as_ref(),
        )
    }
}

impl Deref for Sibling {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.kept().machine
    }
}

impl DerefMut for Sibling {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.kept_mut().machine
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        if let (Some(home), Some(kept)) = (self.home.upgrade(), self.kept.take()) {
            let name = kept.name.clone();
            let back = Sibling {
                kept: Some(kept),
                home: Weak::new(),
            };
            home.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, back);
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // Best effort: a sibling that cannot write its reproduction files
        // still ends; the machine's own drop kills QEMU after this.
        if !self.machine.command_line().is_empty() {
            let _ = artifacts::write_launch_files(
                &self.dir,
                &format!("{} (sibling {})", self.test, self.name),
                &self.machine,
                &self.cwd,
                &[],
            );
        }
    }
}

/// What a test's siblings are made from, and the ones made so far.
#[derive(Debug)]
pub(crate) struct Siblings {
    plan: Plan,
    /// The test VM's arguments (accelerator resolved), without the
    /// runner's pause-mode monitor.
    args: Vec<String>,
    deadline: Instant,
    /// The test's artifact dir.
    dir: PathBuf,
    test: String,
    cwd: PathBuf,
    timeline: Timeline,
    declared: u32,
    made: Mutex<Vec<String>>,
    /// Every sibling's kill switch, for the watchdog.
    kills: Arc<Mutex<Vec<KillSwitch>>>,
    /// The test's networks, which named siblings join, and program dir.
    devices: Devices,
    /// The siblings no handle holds: the ones the runner launched, until
    /// the body takes them, and every handle the body dropped. They end
    /// with this.
    launched: Arc<Mutex<HashMap<String, Sibling>>>,
}

/// What the runner knows when it makes a test's siblings.
pub(crate) struct SiblingTemplate {
    pub(crate) plan: Plan,
    pub(crate) args: Vec<String>,
    pub(crate) deadline: Instant,
    pub(crate) dir: PathBuf,
    pub(crate) test: String,
    pub(crate) cwd: PathBuf,
    /// The test's timeline: each sibling records its steps there.
    pub(crate) timeline: Timeline,
    /// The test's networks and program dir.
    pub(crate) devices: Devices,
}

impl Siblings {
    /// Up to `declared` siblings from `template`.
    pub(crate) fn new(template: SiblingTemplate, declared: u32) -> Siblings {
        let SiblingTemplate {
            plan,
            args,
            deadline,
            dir,
            test,
            cwd,
            timeline,
            devices,
        } = template;
        Siblings {
            plan,
            args,
            deadline,
            dir,
            test,
            cwd,
            timeline,
            declared,
            made: Mutex::new(Vec::new()),
            kills: Arc::default(),
            devices,
            launched: Arc::default(),
        }
    }

    /// The sibling named `name`: the one the runner launched or the body
    /// made and dropped, else a new one, not launched.
    pub(crate) fn get(&self, name: &str) -> Result<Sibling, SiblingError> {
        let launched = self
            .launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let mut sibling = match launched {
            Some(sibling) => sibling,
            None => self.make(name)?,
        };
        sibling.home = Arc::downgrade(&self.launched);
        Ok(sibling)
    }

    /// Keeps a sibling the runner launched for the body.
    pub(crate) fn keep(&self, mut sibling: Sibling) {
        sibling.home = Weak::new();
        self.launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sibling.name().to_string(), sibling);
    }

    /// Runs `f` on each sibling the runner launched and still keeps.
    pub(crate) fn each_launched(
        &self,
        mut f: impl FnMut(&mut Sibling) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut launched = self.launched.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = launched.keys().cloned().collect();
        names.sort_by_key(|n| self.plan.spec.sibling_names.iter().position(|s| s == n));
        for name in names {
            if let Some(sibling) = launched.get_mut(&name) {
                f(sibling)?;
            }
        }
        Ok(())
    }

    /// The kill switches of the siblings made so far and later.
    pub(crate) fn kill_switches(&self) -> Arc<Mutex<Vec<KillSwitch>>> {
        self.kills.clone()
    }

    /// A new sibling named `name`, not launched.
    pub(crate) fn make(&self, name: &str) -> Result<Sibling, SiblingError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SiblingError::InvalidName { name: name.into() });
        }
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if made.iter().any(|m| m == name) {
            return Err(SiblingError::Duplicate { name: name.into() });
        }
        let names = &self.plan.spec.sibling_names;
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            return Err(SiblingError::NotNamed {
                name: name.into(),
                names: names.clone(),
            });
        }
        if made.len() >= self.declared as usize {
            return Err(SiblingError::Undeclared {
                name: name.into(),
                declared: self.declared,
            });
        }
        let dir = self.dir.join(name);
        crate::os::create_private_dir_all(&dir).map_err(|source| SiblingError::Io {
            name: name.into(),
            dir: dir.clone(),
            source,
        })?;
        let mut machine = build_machine(&self.plan, self.args.clone(), &dir).map_err(|source| {
            SiblingError::Files {
                name: name.into(),
                source,
            }
        })?;
        let spec = &self.plan.spec;
        if spec.sibling_names.iter().any(|n| n == name) {
            self.devices
                .attach(&mut machine, spec, name, &self.cwd)
                .map_err(|source| SiblingError::Net {
                    name: name.into(),
                    source,
                })?;
        }
        machine.set_deadline(Some(self.deadline));
        machine.set_timeline(self.timeline.for_vm(name));
        self.kills
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(machine.kill_switch());
        made.push(name.to_string());
        Ok(Sibling {
            kept: Some(Kept {
                machine,
                name: name.to_string(),
                dir,
                test: self.test.clone(),
                cwd: self.cwd.clone(),
                devices: self.devices.clone(),
            }),
            home: Weak::new(),
        })
    }
}
