//! Parsing the attribute's arguments into a [`Config`].
//!
//! Like tokio's `Configuration`, every setting keeps the tokens it came from
//! (the key's [`Ident`] and the value's literal or expression), so that later
//! errors can point at them, and a setter rejects a key given twice. Each
//! argument is checked on its own here (its key and the type of its value);
//! rules between keys live in [`validate`](crate::validate).

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Token};

/// What each key accepts: its name, the type of value it expects and an
/// example, used in "wrong value" messages.
struct Key {
    name: &'static str,
    expects: &'static str,
    example: &'static str,
}

/// Every accepted key, in the order the documentation lists them.
#[rustfmt::skip]
const KEYS: &[Key] = &[
    key("binary",        "a string literal",                                "binary = \"qemu-system-aarch64\""),
    key("arch",          "a string literal or an array of them (one test each)", "arch = \"aarch64\""),
    key("machine",       "a string literal or an array of them (one test each)", "machine = \"virt\""),
    key("cpu",           "a string literal",                                "cpu = \"max\""),
    key("smp",           "an integer literal of at least 1 or an -smp string", "smp = 2"),
    key("memory",        "a size string or an integer literal (MiB)",       "memory = \"256M\""),
    key("accel",         "one of \"auto\", \"kvm\" or \"tcg\"",             "accel = \"tcg\""),
    key("kernel",        "a path string or an image expression",            "kernel = guest::ECHO_SHELL_AARCH64"),
    key("initrd",        "a path string or an image expression",            "initrd = \"initrd.img\""),
    key("append",        "a string literal",                                "append = \"console=ttyS0\""),
    key("drive",         "a string literal or an array of string literals", "drive = \"file=disk.img,if=virtio\""),
    key("disk",          "an image (a path string, an asset, a `Disk`) or an array of them", "disk = ROOTFS"),
    key("firmware",      "\"uefi\" or a `Firmware` expression",            "firmware = \"uefi\""),
    key("args",          "an array of string literals, one per argument",   "args = [\"-no-reboot\", \"-d\", \"guest_errors\"]"),
    key("console",       "no value or a device type string",                "console = \"isa-serial\""),
    key("console_index", "an integer literal",                              "console_index = 1"),
    key("timeout",       "a duration string",                               "timeout = \"60s\""),
    key("qmp",           "`true` or `false`",                               "qmp = false"),
    key("launch",        "`true` or `false`",                               "launch = false"),
    key("siblings",      "an integer literal of at least 1, or an array of names", "siblings = [\"server\", \"backup\"]"),
    key("networks",      "an array of network names",                       "networks = [\"lan\"]"),
    key("forward",       "an array of guest TCP ports",                     "forward = [8080]"),
    key("shares",        "an array of \"HOST_DIR:/GUEST_DIR[:ro]\" strings", "shares = [\"testdata:/mnt/data:ro\"]"),
    key("snapshot",      "a name string (letters, digits, `-`, `_`, `.`)",  "snapshot = \"booted\""),
    key("setup",         "a path to a function `fn(&mut Vm) -> TestResult`", "setup = wait_for_shell"),
    key("requires",      "an array of requirements",                         "requires = [device(\"virtio-9p-pci\"), command(\"ncat\")]"),
    key("ignore",        "no value or a reason string",                     "ignore = \"needs KVM\""),
    key("should_fail",   "no value or an expected message string",          "should_fail = \"guest panic\""),
    key("no_vm",         "no value",                                        "no_vm"),
    key("crate",         "a path to the qemu-test crate",                   "crate = qt"),
];

const fn key(name: &'static str, expects: &'static str, example: &'static str) -> Key {
    Key {
        name,
        expects,
        example,
    }
}

/// The accelerators `accel` accepts.
pub(crate) const ACCELS: &[&str] = &["auto", "kvm", "tcg"];

/// One setting: the key as written, its value and its position among the
/// arguments (so that a rule between two keys can point at the later one).
#[derive(Clone)]
pub(crate) struct Setting<T> {
    pub key: Ident,
    pub value: T,
    pub index: usize,
}

/// An integer value with the span of its literal.
#[derive(Clone)]
pub(crate) struct Int {
    pub value: u32,
    pub span: Span,
}

/// A value, or several: `arch = ["x86_64", "aarch64"]` makes one test per
/// value (a matrix with `machine = [...]`).
#[derive(Clone)]
pub(crate) enum Choice {
    /// `arch = "x86_64"`.
    One(LitStr),
    /// `arch = ["x86_64", "aarch64"]`.
    Each(Vec<LitStr>),
}

/// An `-smp` value: a count, or QEMU's syntax.
#[derive(Clone)]
pub(crate) enum Smp {
    /// `smp = 2`.
    Count(Int),
    /// `smp = "1,sockets=2,maxcpus=8"`.
    Syntax(LitStr),
}

/// `siblings = 2` or `siblings = ["b", "c"]`.
#[derive(Clone)]
pub(crate) enum Siblings {
    /// How many the body makes.
    Count(Int),
    /// Their names: the runner launches them.
    Names(Vec<LitStr>),
}

/// A memory size, normalized to what QEMU's `-m` takes.
#[derive(Clone)]
pub(crate) struct Memory {
    pub value: String,
    pub span: Span,
}

/// A duration with the literal it was parsed from.
#[derive(Clone)]
pub(crate) struct Timeout {
    pub value: Duration,
    pub lit: LitStr,
}

/// A `kernel` or `initrd` value. How each kind is passed to the runtime is
/// described in [`expand`](crate::expand).
#[derive(Clone)]
pub(crate) enum Image {
    /// A string literal: a path on the host.
    Lit(LitStr),
    /// A path expression such as `guest::ECHO_SHELL_AARCH64`: a `static`
    /// built-in guest, passed by reference.
    Path(Expr),
    /// Any other expression, passed by value.
    Expr(Expr),
}

/// A `firmware` value.
#[derive(Clone)]
pub(crate) enum Firmware {
    /// `firmware = "uefi"`: the host's UEFI firmware.
    Uefi(LitStr),
    /// Any other expression: a `qemu_test::spec::Firmware`.
    Expr(Expr),
}

/// The attribute's arguments, each optional, each with its tokens.
#[derive(Default)]
pub(crate) struct Config {
    pub binary: Option<Setting<LitStr>>,
    pub arch: Option<Setting<Choice>>,
    pub machine: Option<Setting<Choice>>,
    pub cpu: Option<Setting<LitStr>>,
    pub smp: Option<Setting<Smp>>,
    pub memory: Option<Setting<Memory>>,
    pub accel: Option<Setting<LitStr>>,
    pub kernel: Option<Setting<Image>>,
    pub initrd: Option<Setting<Image>>,
    pub append: Option<Setting<LitStr>>,
    pub drive: Option<Setting<Vec<LitStr>>>,
    /// `disk = IMAGE` or `disk = [A, B]`.
    pub disk: Option<Setting<Vec<Image>>>,
    pub firmware: Option<Setting<Firmware>>,
    pub args: Option<Setting<Vec<LitStr>>>,
    /// `console` (`None`) or `console = "device"`.
    pub console: Option<Setting<Option<LitStr>>>,
    pub console_index: Option<Setting<Int>>,
    pub timeout: Option<Setting<Timeout>>,
    pub snapshot: Option<Setting<LitStr>>,
    /// `qmp = false`: no QMP monitor.
    pub qmp: Option<Setting<syn::LitBool>>,
    /// `launch = false`: the body launches the VM.
    pub launch: Option<Setting<syn::LitBool>>,
    /// `siblings = N` (how many sibling machines the body may start) or
    /// `siblings = ["b", "c"]` (named siblings the runner launches).
    pub siblings: Option<Setting<Siblings>>,
    /// `networks = ["lan"]`: the private networks every VM is on.
    pub networks: Option<Setting<Vec<LitStr>>>,
    /// `forward = [8080]`: guest TCP ports forwarded from the host.
    pub forward: Option<Setting<Vec<Int>>>,
    /// `shares = ["host:/guest:ro"]`: host directories in the guest.
    pub shares: Option<Setting<Vec<LitStr>>>,
    /// `setup = path`: the snapshot's setup function.
    pub setup: Option<Setting<syn::ExprPath>>,
    /// `requires = [device("..."), ...]`: expressions of
    /// `qemu_test::requires`.
    pub requires: Option<Setting<Vec<Expr>>>,
    /// `ignore` (`None`) or `ignore = "reason"`.
    pub ignore: Option<Setting<Option<LitStr>>>,
    /// `should_fail` (`None`) or `should_fail = "message"`.
    pub should_fail: Option<Setting<Option<LitStr>>>,
    pub no_vm: Option<Setting<()>>,
    /// `crate = path`: where the runtime crate is, for a renamed
    /// dependency.
    pub krate: Option<Setting<syn::Path>>,
}

/// The result of parsing: the settings that were understood, and the errors
/// (if any) for the ones that were not. A partial config lets the function
/// checks still run (they need to know about `no_vm`).
pub(crate) struct Parsed {
    pub config: Config,
    pub errors: Option<syn::Error>,
}

/// Parses `key = value, flag, ...`.
///
/// A syntax error in the list as a whole is returned as `Err`; an error in
/// one argument is collected and the others are still parsed.
pub(crate) fn parse_args(args: TokenStream) -> syn::Result<Parsed> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut config = Config::default();
    let mut errors = Errors::default();
    for (index, meta) in metas.into_iter().enumerate() {
        errors.push(config.set(index, meta));
    }
    Ok(Parsed {
        config,
        errors: errors.finish(),
    })
}

/// Collects errors into one [`syn::Error`].
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Keeps the error of `result`, if any.
    pub fn push<T>(&mut self, result: syn::Result<T>) {
        if let Err(error) = result {
            self.add(error);
        }
    }

    /// Keeps `error`.
    pub fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// All the errors, or `None`.
    pub fn finish(self) -> Option<syn::Error> {
        self.0
    }
}

/// A value as written after a key.
enum Value {
    /// No value: `console`.
    Flag,
    /// `key = expr`.
    Expr(Expr),
    /// `key(...)`, never accepted.
    List(syn::MetaList),
}

impl Config {
    /// Parses one argument and stores it, rejecting a key given twice.
    fn set(&mut self, index: usize, meta: Meta) -> syn::Result<()> {
        let Some(key) = meta.path().get_ident().cloned() else {
            return Err(syn::Error::new_spanned(
                meta.path(),
                format!("expected a key such as `machine`; {}", accepted_keys()),
            ));
        };
        let value = match meta {
            Meta::Path(_) => Value::Flag,
            Meta::NameValue(nv) => Value::Expr(nv.value),
            Meta::List(list) => Value::List(list),
        };
        let name = key.to_string();
        let Some(info) = KEYS.iter().find(|k| k.name == name) else {
            return Err(unknown_key(&key));
        };
        if let Value::List(list) = &value {
            return Err(syn::Error::new_spanned(
                list,
                format!(
                    "expected `{name} = ...`: `{name}` expects {}, e.g. `{}`",
                    info.expects, info.example
                ),
            ));
        }
        let ctx = Ctx { key: &key, info };
        let site = Site {
            key: key.clone(),
            index,
        };
        match name.as_str() {
            "binary" => site.store(&mut self.binary, ctx.string(value)?),
            "arch" => site.store(&mut self.arch, ctx.choice(value)?),
            "machine" => site.store(&mut self.machine, ctx.choice(value)?),
            "cpu" => site.store(&mut self.cpu, ctx.string(value)?),
            "smp" => site.store(&mut self.smp, ctx.smp(value)?),
            "memory" => site.store(&mut self.memory, ctx.memory(value)?),
            "accel" => site.store(&mut self.accel, ctx.accel(value)?),
            "kernel" => site.store(&mut self.kernel, ctx.image(value)?),
            "initrd" => site.store(&mut self.initrd, ctx.image(value)?),
            "append" => site.store(&mut self.append, ctx.string(value)?),
            "drive" => site.store(&mut self.drive, ctx.drives(value)?),
            "disk" => site.store(&mut self.disk, ctx.disks(value)?),
            "firmware" => site.store(&mut self.firmware, ctx.firmware(value)?),
            "args" => site.store(&mut self.args, ctx.string_array(value)?),
            "console" => site.store(&mut self.console, ctx.flag_or_string(value)?),
            "console_index" => site.store(&mut self.console_index, ctx.int(value)?),
            "timeout" => site.store(&mut self.timeout, ctx.timeout(value)?),
            "snapshot" => site.store(&mut self.snapshot, ctx.snapshot_name(value)?),
            "qmp" => site.store(&mut self.qmp, ctx.boolean(value)?),
            "launch" => site.store(&mut self.launch, ctx.boolean(value)?),
            "siblings" => site.store(&mut self.siblings, ctx.siblings(value)?),
            "networks" => site.store(&mut self.networks, ctx.networks(value)?),
            "forward" => site.store(&mut self.forward, ctx.ports(value)?),
            "shares" => site.store(&mut self.shares, ctx.shares(value)?),
            "setup" => site.store(&mut self.setup, ctx.path(value)?),
            "requires" => site.store(&mut self.requires, ctx.expr_array(value)?),
            "ignore" => site.store(&mut self.ignore, ctx.flag_or_string(value)?),
            "should_fail" => site.store(&mut self.should_fail, ctx.flag_or_string(value)?),
            "no_vm" => {
                // Recorded even with a bad value, so that the function is
                // still checked as a `no_vm` test (no secondary errors).
                let flag = ctx.flag(value);
                site.store(&mut self.no_vm, ())?;
                flag
            }
            "crate" => site.store(&mut self.krate, ctx.crate_path(value)?),
            _ => unreachable!("every key in KEYS is handled"),
        }
    }

    /// The keys that describe a VM (everything but `ignore`, `should_fail`
    /// and `no_vm`), in argument order.
    pub fn vm_keys(&self) -> Vec<&Ident> {
        let mut keys: Vec<(usize, &Ident)> = [
            self.binary.as_ref().map(Setting::position),
            self.arch.as_ref().map(Setting::position),
            self.machine.as_ref().map(Setting::position),
            self.cpu.as_ref().map(Setting::position),
            self.smp.as_ref().map(Setting::position),
            self.memory.as_ref().map(Setting::position),
            self.accel.as_ref().map(Setting::position),
            self.kernel.as_ref().map(Setting::position),
            self.initrd.as_ref().map(Setting::position),
            self.append.as_ref().map(Setting::position),
            self.drive.as_ref().map(Setting::position),
            self.disk.as_ref().map(Setting::position),
            self.firmware.as_ref().map(Setting::position),
            self.args.as_ref().map(Setting::position),
            self.console.as_ref().map(Setting::position),
            self.console_index.as_ref().map(Setting::position),
            self.snapshot.as_ref().map(Setting::position),
            self.qmp.as_ref().map(Setting::position),
            self.launch.as_ref().map(Setting::position),
            self.siblings.as_ref().map(Setting::position),
            self.networks.as_ref().map(Setting::position),
            self.forward.as_ref().map(Setting::position),
            self.shares.as_ref().map(Setting::position),
            self.setup.as_ref().map(Setting::position),
        ]
        .into_iter()
        .flatten()
        .collect();
        keys.sort_by_key(|(index, _)| *index);
        keys.into_iter().map(|(_, key)| key).collect()
    }
}

impl<T> Setting<T> {
    fn position(&self) -> (usize, &Ident) {
        (self.index, &self.key)
    }
}

/// Where a setting was written: its key and its position.
struct Site {
    key: Ident,
    index: usize,
}

impl Site {
    /// Stores a setting unless its key was already given.
    fn store<T>(self, slot: &mut Option<Setting<T>>, value: T) -> syn::Result<()> {
        let Site { key, index } = self;
        if slot.is_some() {
            let mut message = format!("duplicate `{key}` key");
            if key == "drive" {
                message.push_str("; give several drives as an array: `drive = [\"...\", \"...\"]`");
            }
            if key == "disk" {
                message.push_str("; give several disks as an array: `disk = [ROOT, DATA]`");
            }
            return Err(syn::Error::new(key.span(), message));
        }
        *slot = Some(Setting { key, value, index });
        Ok(())
    }
}

/// The key being parsed, for error messages.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    key: &'a Ident,
    info: &'a Key,
}

impl Ctx<'_> {
    /// "`smp` expects an integer literal of at least 1, e.g. `smp = 2`".
    fn wrong_type(&self, tokens: impl quote::ToTokens) -> syn::Error {
        syn::Error::new_spanned(tokens, self.expects())
    }

    fn expects(&self) -> String {
        format!(
            "`{}` expects {}, e.g. `{}`",
            self.key, self.info.expects, self.info.example
        )
    }

    /// The value of a key that needs one.
    fn expr(&self, value: Value) -> syn::Result<Expr> {
        match value {
            Value::Expr(expr) => Ok(expr),
            Value::Flag => Err(syn::Error::new(
                self.key.span(),
                format!("`{}` needs a value: {}", self.key, self.expects()),
            )),
            Value::List(list) => Err(self.wrong_type(list)),
        }
    }

    fn string(&self, value: Value) -> syn::Result<LitStr> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(lit),
            other => Err(self.wrong_type(other)),
        }
    }

    fn int(&self, value: Value) -> syn::Result<Int> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => parse_u32(&lit, self.key),
            other => Err(self.wrong_type(other)),
        }
    }

    fn flag(&self, value: Value) -> syn::Result<()> {
        match value {
            Value::Flag => Ok(()),
            Value::Expr(expr) => Err(syn::Error::new_spanned(
                expr,
                format!(
                    "`{}` is a flag and takes no value: write `{}`",
                    self.key, self.key
                ),
            )),
            Value::List(list) => Err(self.wrong_type(list)),
        }
    }

    /// An array of expressions (checked by the compiler in the expansion).
    fn expr_array(&self, value: Value) -> syn::Result<Vec<Expr>> {
        match self.expr(value)? {
            Expr::Array(array) => Ok(array.elems.into_iter().collect()),
            other => Err(self.wrong_type(other)),
        }
    }

    /// A string, or a non-empty array of distinct strings.
    fn choice(&self, value: Value) -> syn::Result<Choice> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(Choice::One(lit)),
            array @ Expr::Array(_) => {
                let span = array.span();
                let items = self.string_array(Value::Expr(array))?;
                if items.is_empty() {
                    return Err(syn::Error::new(
                        span,
                        format!("`{}` needs at least one value", self.key),
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    if items[..i]
                        .iter()
                        .any(|earlier| earlier.value() == item.value())
                    {
                        return Err(syn::Error::new(
                            item.span(),
                            format!("`{}` lists {:?} twice", self.key, item.value()),
                        ));
                    }
                    if !item
                        .value()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                    {
                        return Err(syn::Error::new(
                            item.span(),
                            format!(
                                "{:?} cannot name a test: a `{}` list takes plain names (letters, digits, `_`, `-`, `.`), \
                                 as each becomes part of its test's name",
                                item.value(),
                                self.key
                            ),
                        ));
                    }
                }
                Ok(Choice::Each(items))
            }
            other => Err(self.wrong_type(other)),
        }
    }

    fn boolean(&self, value: Value) -> syn::Result<syn::LitBool> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Bool(lit),
                ..
            }) => Ok(lit),
            other => Err(self.wrong_type(other)),
        }
    }

    /// `smp = 2` or `smp = "1,sockets=2,cores=2,maxcpus=8"`.
    fn smp(&self, value: Value) -> syn::Result<Smp> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => {
                let count = parse_u32(&lit, self.key)?;
                if count.value == 0 {
                    return Err(syn::Error::new(count.span, "`smp` must be at least 1"));
                }
                Ok(Smp::Count(count))
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => match smp_syntax(&lit.value()) {
                Ok(()) => Ok(Smp::Syntax(lit)),
                Err(why) => Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "invalid `smp` {:?}: {why}; expected a count or QEMU's syntax, e.g. \
                         `smp = 2` or `smp = \"1,sockets=2,cores=2,maxcpus=8\"`",
                        lit.value()
                    ),
                )),
            },
            other => Err(self.wrong_type(other)),
        }
    }

    fn flag_or_string(&self, value: Value) -> syn::Result<Option<LitStr>> {
        match value {
            Value::Flag => Ok(None),
            other => self.string(other).map(Some),
        }
    }

    fn string_array(&self, value: Value) -> syn::Result<Vec<LitStr>> {
        match self.expr(value)? {
            Expr::Array(array) => {
                let mut errors = Errors::default();
                let mut strings = Vec::new();
                for elem in array.elems {
                    match elem {
                        Expr::Lit(ExprLit {
                            lit: Lit::Str(lit), ..
                        }) => strings.push(lit),
                        other => errors.add(syn::Error::new_spanned(
                            other,
                            format!(
                                "`{}` takes string literals only, e.g. `{}`",
                                self.key, self.info.example
                            ),
                        )),
                    }
                }
                match errors.finish() {
                    Some(error) => Err(error),
                    None => Ok(strings),
                }
            }
            other => Err(self.wrong_type(other)),
        }
    }

    fn drives(&self, value: Value) -> syn::Result<Vec<LitStr>> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(vec![lit]),
            array @ Expr::Array(_) => self.string_array(Value::Expr(array)),
            other => Err(self.wrong_type(other)),
        }
    }

    fn memory(&self, value: Value) -> syn::Result<Memory> {
        match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => {
                let mib = lit
                    .base10_parse::<u64>()
                    .map_err(|e| syn::Error::new(lit.span(), format!("invalid `memory`: {e}")))?;
                if mib == 0 {
                    return Err(syn::Error::new(lit.span(), "`memory` must not be zero"));
                }
                Ok(Memory {
                    value: format!("{mib}M"),
                    span: lit.span(),
                })
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => match memory_value(&lit.value()) {
                Some(size) => Ok(Memory {
                    value: size,
                    span: lit.span(),
                }),
                None => Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "invalid `memory` size {:?}: expected a non-zero number with an optional \
                         K, M, G or T suffix, e.g. \"256M\" or \"2G\" (a bare number is MiB), \
                         optionally with hotplug room: \"512M,slots=2,maxmem=4G\"",
                        lit.value()
                    ),
                )),
            },
            other => Err(self.wrong_type(other)),
        }
    }

    fn accel(&self, value: Value) -> syn::Result<LitStr> {
        let lit = self.string(value)?;
        if ACCELS.contains(&lit.value().as_str()) {
            Ok(lit)
        } else {
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "unknown accelerator {:?}: expected one of \"auto\", \"kvm\" or \"tcg\"",
                    lit.value()
                ),
            ))
        }
    }

    fn image(&self, value: Value) -> syn::Result<Image> {
        let expr = self.expr(value)?;
        match ungroup(&expr) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(Image::Lit(lit.clone())),
            Expr::Lit(_) => Err(self.wrong_type(expr)),
            Expr::Path(_) => Ok(Image::Path(expr)),
            _ => Ok(Image::Expr(expr)),
        }
    }

    /// `siblings = N` (at least 1) or `siblings = ["name", ...]`.
    fn siblings(&self, value: Value) -> syn::Result<Siblings> {
        let expr = self.expr(value)?;
        if let Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) = &expr
        {
            let count = parse_u32(lit, self.key)?;
            if count.value == 0 {
                return Err(syn::Error::new(
                    count.span,
                    "`siblings` must be at least 1 (leave the key out for none)",
                ));
            }
            return Ok(Siblings::Count(count));
        }
        let span = expr.span();
        let names = self.distinct_names(Value::Expr(expr), |name| {
            let valid = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            match (valid, name) {
                (_, "main") => Err(
                    "`main` is the test's own VM on its networks; name the sibling otherwise"
                        .into(),
                ),
                (true, _) => Ok(()),
                (false, _) => Err(format!(
                    "invalid sibling name {name:?}: use 1 to 64 ASCII letters, digits, `-` or `_`"
                )),
            }
        })?;
        if names.is_empty() {
            return Err(syn::Error::new(
                span,
                "`siblings` needs at least one name (leave the key out for none)",
            ));
        }
        Ok(Siblings::Names(names))
    }

    /// `networks = ["lan", ...]`: names of guest interfaces too.
    fn networks(&self, value: Value) -> syn::Result<Vec<LitStr>> {
        self.distinct_names(value, |name| {
            let valid = (1..=15).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            match (valid, name) {
                (_, "forward" | "lo") => Err(format!("{name:?} names another interface; call the network otherwise")),
                (true, _) => Ok(()),
                (false, _) => Err(format!(
                    "invalid network name {name:?}: use 1 to 15 lowercase ASCII letters, digits, `-` or `_`, \
                     starting with a letter (it names the guest's interface)"
                )),
            }
        })
    }

    /// An array of distinct strings, each checked by `check`.
    fn distinct_names(
        &self,
        value: Value,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> syn::Result<Vec<LitStr>> {
        let names = self.string_array(value)?;
        for (i, name) in names.iter().enumerate() {
            check(&name.value()).map_err(|why| syn::Error::new(name.span(), why))?;
            if names[..i].iter().any(|n| n.value() == name.value()) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("`{}` lists {:?} twice", self.key, name.value()),
                ));
            }
        }
        Ok(names)
    }

    /// `shares = ["host:/guest", "host:/guest:ro"]`.
    fn shares(&self, value: Value) -> syn::Result<Vec<LitStr>> {
        let shares = self.string_array(value)?;
        for share in &shares {
            let text = share.value();
            let mut parts: Vec<&str> = text.rsplitn(3, ':').collect();
            parts.reverse();
            let guest = match parts.as_slice() {
                [_, guest, "ro" | "rw"] | [_, guest] => *guest,
                [_, _, guest] => *guest,
                _ => "",
            };
            let safe = |c: char| c.is_ascii_alphanumeric() || "/_-.+@".contains(c);
            if !guest.starts_with('/') || !guest.chars().all(safe) || parts[0].is_empty() {
                return Err(syn::Error::new(
                    share.span(),
                    format!(
                        "invalid share {text:?}: expected \"HOST_DIR:/GUEST_DIR\" or \"HOST_DIR:/GUEST_DIR:ro\", \
                         the guest path absolute (letters, digits, /_-.+@)"
                    ),
                ));
            }
        }
        Ok(shares)
    }

    /// `forward = [8080, 22]`: distinct TCP ports.
    fn ports(&self, value: Value) -> syn::Result<Vec<Int>> {
        let Expr::Array(array) = self.expr(value)? else {
            return Err(syn::Error::new(self.key.span(), self.expects()));
        };
        let mut ports: Vec<Int> = Vec::new();
        for elem in array.elems {
            let Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) = &elem
            else {
                return Err(self.wrong_type(elem));
            };
            let port = parse_u32(lit, self.key)?;
            if port.value == 0 || port.value > 65535 {
                return Err(syn::Error::new(port.span, "a TCP port is 1 to 65535"));
            }
            if ports.iter().any(|p| p.value == port.value) {
                return Err(syn::Error::new(
                    port.span,
                    format!("`forward` lists {} twice", port.value),
                ));
            }
            ports.push(port);
        }
        Ok(ports)
    }

    /// One image, or an array of images (`disk = [ROOT, DATA]`).
    fn disks(&self, value: Value) -> syn::Result<Vec<Image>> {
        let expr = self.expr(value)?;
        match ungroup(&expr) {
            Expr::Array(array) => array
                .elems
                .iter()
                .map(|elem| self.image(Value::Expr(elem.clone())))
                .collect(),
            _ => Ok(vec![self.image(Value::Expr(expr))?]),
        }
    }

    /// `"uefi"`, or an expression.
    fn firmware(&self, value: Value) -> syn::Result<Firmware> {
        let expr = self.expr(value)?;
        match ungroup(&expr) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) if lit.value() == "uefi" => Ok(Firmware::Uefi(lit.clone())),
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Err(syn::Error::new(
                lit.span(),
                format!(
                    "unknown firmware {:?}: write `firmware = \"uefi\"` for the host's UEFI firmware \
                     (OVMF, AAVMF), or give a `qemu_test::spec::Firmware` (your own files); without \
                     the key QEMU's default firmware (SeaBIOS on x86) is used",
                    lit.value()
                ),
            )),
            Expr::Lit(_) => Err(self.wrong_type(expr)),
            _ => Ok(Firmware::Expr(expr)),
        }
    }

    /// A snapshot name: it becomes part of a file name.
    fn snapshot_name(&self, value: Value) -> syn::Result<LitStr> {
        let lit = self.string(value)?;
        let name = lit.value();
        let valid = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if valid {
            Ok(lit)
        } else {
            Err(syn::Error::new(
                lit.span(),
                format!(
                    "invalid snapshot name {name:?}: use 1 to 64 ASCII letters, digits, `-`, `_` or `.` \
                     (not starting with `.`), e.g. `snapshot = \"booted\"`"
                ),
            ))
        }
    }

    /// A path to a function, such as `wait_for_shell` or `common::boot`.
    fn path(&self, value: Value) -> syn::Result<syn::ExprPath> {
        match ungroup(&self.expr(value)?) {
            Expr::Path(path) => Ok(path.clone()),
            other => Err(self.wrong_type(other)),
        }
    }

    /// The runtime crate's path: `qt`, `::qt` or `crate::reexported`, with
    /// no generic arguments. A string (tokio's and serde's spelling) gets a
    /// message with the path to write instead.
    fn crate_path(&self, value: Value) -> syn::Result<syn::Path> {
        match ungroup(&self.expr(value)?) {
            Expr::Path(syn::ExprPath {
                qself: None, path, ..
            }) if path
                .segments
                .iter()
                .all(|segment| segment.arguments.is_none()) =>
            {
                Ok(path.clone())
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Err(syn::Error::new(
                lit.span(),
                format!(
                    "`crate` takes a path, not a string: write `crate = {}` (the name the \
                     dependency has in your Cargo.toml, with `-` as `_`)",
                    lit.value().trim().replace('-', "_")
                ),
            )),
            other => Err(self.wrong_type(other)),
        }
    }

    fn timeout(&self, value: Value) -> syn::Result<Timeout> {
        let lit = match self.expr(value)? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => lit,
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => {
                return Err(syn::Error::new(
                    int.span(),
                    format!(
                        "`timeout` expects a duration string with a unit, e.g. `timeout = \"{}s\"`",
                        int.base10_digits()
                    ),
                ))
            }
            other => return Err(self.wrong_type(other)),
        };
        let value = humantime::parse_duration(&lit.value()).map_err(|e| {
            syn::Error::new(
                lit.span(),
                format!(
                    "invalid `timeout` {:?}: {e}; expected a duration such as \"60s\", \"2m\" or \"1m 30s\"",
                    lit.value()
                ),
            )
        })?;
        if value.is_zero() {
            return Err(syn::Error::new(
                lit.span(),
                "`timeout` must be longer than zero, e.g. `timeout = \"60s\"`",
            ));
        }
        Ok(Timeout { value, lit })
    }
}

/// Looks through the invisible groups a `macro_rules!` expansion wraps
/// around `$e:expr` fragments.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => ungroup(&group.expr),
        other => other,
    }
}

fn parse_u32(lit: &LitInt, key: &Ident) -> syn::Result<Int> {
    let value = lit
        .base10_parse::<u32>()
        .map_err(|e| syn::Error::new(lit.span(), format!("invalid `{key}`: {e}")))?;
    Ok(Int {
        value,
        span: lit.span(),
    })
}

/// Checks a QEMU memory size (digits and an optional `K`/`M`/`G`/`T`
/// suffix, any case, not zero) and returns it as written.
pub(crate) fn memory_size(size: &str) -> Option<String> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !matches!(suffix, "" | "K" | "k" | "M" | "m" | "G" | "g" | "T" | "t") {
        return None;
    }
    if digits.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(size.to_string())
}

/// Checks an `-m` value: a size ([`memory_size`], optionally as
/// `size=SIZE`), then optionally `slots=N` and `maxmem=SIZE`; returns it as
/// written.
pub(crate) fn memory_value(value: &str) -> Option<String> {
    let mut parts = value.split(',');
    let first = parts.next()?;
    memory_size(first.strip_prefix("size=").unwrap_or(first))?;
    for part in parts {
        let (key, setting) = part.split_once('=')?;
        let valid = match key {
            "slots" => !setting.is_empty() && setting.bytes().all(|b| b.is_ascii_digit()),
            "maxmem" => memory_size(setting).is_some(),
            _ => false,
        };
        if !valid {
            return None;
        }
    }
    Some(value.to_string())
}

/// Checks an `-smp` value as QEMU reads it: a count or `cpus=N` first, and
/// topology keys with numbers.
pub(crate) fn smp_syntax(value: &str) -> Result<(), String> {
    const KEYS: &[&str] = &[
        "cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads", "books", "drawers",
    ];
    for (i, part) in value.split(',').enumerate() {
        let (key, number) = match part.split_once('=') {
            Some((key, number)) => (key, number),
            None if i == 0 => ("cpus", part),
            None => return Err(format!("`{part}` is not `key=number`")),
        };
        if !KEYS.contains(&key) {
            return Err(format!(
                "unknown key `{key}` (accepted: {})",
                KEYS.join(", ")
            ));
        }
        match number.parse::<u32>() {
            Ok(0) if key == "cpus" && i == 0 && !part.contains('=') => {
                return Err("the count must be at least 1".into())
            }
            Ok(_) => {}
            Err(_) => return Err(format!("`{number}` is not a number")),
        }
    }
    Ok(())
}

/// "unknown key `machin`; did you mean `machine`? ..."
fn unknown_key(key: &Ident) -> syn::Error {
    let name = key.to_string();
    let suggestion = KEYS
        .iter()
        .map(|k| (distance(&name, k.name), k.name))
        .filter(|(d, candidate)| *d <= 2 && *d < candidate.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_default();
    syn::Error::new(
        key.span(),
        format!("unknown key `{name}`{suggestion} {}", accepted_keys()),
    )
}

fn accepted_keys() -> String {
    let keys: Vec<String> = KEYS.iter().map(|k| format!("`{}`", k.name)).collect();
    format!("(accepted keys: {})", keys.join(", "))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> Config {
        let parsed = parse_args(tokens).expect("the argument list parses");
        if let Some(error) = parsed.errors {
            panic!("unexpected error: {error}");
        }
        parsed.config
    }

    fn error(tokens: TokenStream) -> String {
        let parsed = parse_args(tokens).expect("the argument list parses");
        parsed.errors.expect("an error").to_string()
    }

    #[test]
    fn networks_named_siblings_and_forwards() {
        let config = parse(quote!(
            siblings = ["server", "b-2"],
            networks = ["lan", "mgmt"],
            forward = [8080, 22]
        ));
        match config.siblings.map(|s| s.value) {
            Some(Siblings::Names(names)) => assert_eq!(names.len(), 2),
            _ => panic!("names expected"),
        }
        assert_eq!(config.networks.unwrap().value.len(), 2);
        let ports: Vec<u32> = config
            .forward
            .unwrap()
            .value
            .iter()
            .map(|p| p.value)
            .collect();
        assert_eq!(ports, [8080, 22]);
        for (tokens, message) in [
            (quote!(networks = ["LAN"]), "invalid network name \"LAN\""),
            (quote!(networks = ["lan", "lan"]), "lists \"lan\" twice"),
            (quote!(networks = ["forward"]), "names another interface"),
            (quote!(siblings = ["main"]), "`main` is the test's own VM"),
            (quote!(siblings = ["a b"]), "invalid sibling name"),
            (quote!(siblings = []), "at least one name"),
            (quote!(forward = [0]), "a TCP port is 1 to 65535"),
            (quote!(forward = [80, 80]), "lists 80 twice"),
            (
                quote!(forward = 80),
                "`forward` expects an array of guest TCP ports",
            ),
        ] {
            let got = error(tokens);
            assert!(got.contains(message), "{got}");
        }
    }

    #[test]
    fn empty_arguments_give_an_empty_config() {
        let config = parse(quote!());
        assert!(config.machine.is_none() && config.no_vm.is_none() && config.vm_keys().is_empty());
    }

    #[test]
    fn every_key_parses() {
        let config = parse(quote!(
            arch = "aarch64",
            machine = "virt",
            cpu = "max",
            smp = 2,
            memory = "1G",
            accel = "tcg",
            kernel = guest::ECHO_SHELL_AARCH64,
            initrd = "initrd.img",
            append = "console=ttyS0",
            drive = ["file=a.img", "file=b.img"],
            args = ["-no-reboot", "-d", "guest_errors"],
            console = "isa-serial",
            console_index = 1,
            timeout = "1m 30s",
            snapshot = "booted",
            ignore = "slow",
            should_fail = "guest panic",
        ));
        assert!(matches!(config.arch.unwrap().value, Choice::One(l) if l.value() == "aarch64"));
        assert!(matches!(config.machine.unwrap().value, Choice::One(l) if l.value() == "virt"));
        assert_eq!(config.cpu.unwrap().value.value(), "max");
        assert!(matches!(
            config.smp.unwrap().value,
            Smp::Count(Int { value: 2, .. })
        ));
        assert_eq!(config.memory.unwrap().value.value, "1G");
        assert_eq!(config.accel.unwrap().value.value(), "tcg");
        assert!(matches!(config.kernel.unwrap().value, Image::Path(_)));
        assert!(matches!(config.initrd.unwrap().value, Image::Lit(l) if l.value() == "initrd.img"));
        assert_eq!(config.append.unwrap().value.value(), "console=ttyS0");
        let drives: Vec<String> = config
            .drive
            .unwrap()
            .value
            .iter()
            .map(LitStr::value)
            .collect();
        assert_eq!(drives, ["file=a.img", "file=b.img"]);
        let args: Vec<String> = config
            .args
            .unwrap()
            .value
            .iter()
            .map(LitStr::value)
            .collect();
        assert_eq!(args, ["-no-reboot", "-d", "guest_errors"]);
        assert_eq!(config.console.unwrap().value.unwrap().value(), "isa-serial");
        assert_eq!(config.console_index.unwrap().value.value, 1);
        assert_eq!(config.timeout.unwrap().value.value, Duration::from_secs(90));
        assert_eq!(config.snapshot.unwrap().value.value(), "booted");
        assert_eq!(config.ignore.unwrap().value.unwrap().value(), "slow");
        assert_eq!(
            config.should_fail.unwrap().value.unwrap().value(),
            "guest panic"
        );
    }

    #[test]
    fn flags_parse_without_values() {
        let config = parse(quote!(console, ignore, should_fail));
        assert!(config.console.unwrap().value.is_none());
        assert!(config.ignore.unwrap().value.is_none());
        assert!(config.should_fail.unwrap().value.is_none());
        assert!(parse(quote!(no_vm)).no_vm.is_some());
    }

    #[test]
    fn settings_remember_their_key_and_position() {
        let config = parse(quote!(console, machine = "virt"));
        let machine = config.machine.unwrap();
        assert_eq!(machine.key, "machine");
        assert_eq!(machine.index, 1);
        assert_eq!(config.console.unwrap().index, 0);
    }

    #[test]
    fn vm_keys_come_in_argument_order() {
        let config = parse(quote!(
            snapshot = "s",
            timeout = "5s",
            ignore,
            machine = "virt",
            no_vm
        ));
        let keys: Vec<String> = config.vm_keys().iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["snapshot", "machine"]);
    }

    #[test]
    fn kernel_values_are_classified() {
        let kernel = |tokens| parse(tokens).kernel.unwrap().value;
        assert!(matches!(
            kernel(quote!(kernel = "/boot/vmlinuz")),
            Image::Lit(_)
        ));
        assert!(matches!(kernel(quote!(kernel = ECHO)), Image::Path(_)));
        assert!(matches!(
            kernel(quote!(kernel = guest::ECHO_SHELL_AARCH64)),
            Image::Path(_)
        ));
        assert!(matches!(
            kernel(quote!(kernel = build_kernel())),
            Image::Expr(_)
        ));
        assert!(matches!(
            kernel(quote!(kernel = &guest::ECHO)),
            Image::Expr(_)
        ));
        assert!(error(quote!(kernel = 3))
            .contains("`kernel` expects a path string or an image expression"));
    }

    #[test]
    fn a_single_drive_is_a_list_of_one() {
        let drives = parse(quote!(drive = "file=a.img")).drive.unwrap().value;
        assert_eq!(drives.len(), 1);
        assert!(parse(quote!(drive = [])).drive.unwrap().value.is_empty());
    }

    #[test]
    fn integer_memory_is_mib() {
        assert_eq!(
            parse(quote!(memory = 512)).memory.unwrap().value.value,
            "512M"
        );
    }

    #[test]
    fn memory_sizes_are_checked() {
        for ok in ["256", "256M", "256m", "2G", "1t", "4096K"] {
            assert_eq!(memory_size(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in ["", "M", "lots", "1.5G", "256MB", "-1", "0", "0G", " 1G"] {
            assert_eq!(memory_size(bad), None, "{bad:?}");
        }
        for ok in ["512M,slots=2,maxmem=4G", "size=1G", "1G,maxmem=2G"] {
            assert_eq!(memory_value(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "512M,slots=x",
            "512M,maxmem=lots",
            "512M,prealloc=on",
            "0,slots=1",
        ] {
            assert_eq!(memory_value(bad), None, "{bad:?}");
        }
        assert!(smp_syntax("1,sockets=2,cores=2,threads=2,maxcpus=8").is_ok());
        assert!(smp_syntax("sockets=2").is_ok());
        assert!(smp_syntax("2,bogus=1")
            .unwrap_err()
            .contains("unknown key `bogus`"));
        assert!(smp_syntax("two").is_err());
        assert!(smp_syntax("0").is_err());
        assert!(error(quote!(memory = "lots")).contains("invalid `memory` size \"lots\""));
        assert!(error(quote!(memory = 0)).contains("must not be zero"));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert_eq!(
            error(quote!(machine = "virt", machine = "q35")),
            "duplicate `machine` key"
        );
        assert!(error(quote!(drive = "a", drive = "b")).contains("as an array"));
        assert_eq!(
            error(quote!(console, console = "isa-serial")),
            "duplicate `console` key"
        );
    }

    #[test]
    fn unknown_keys_list_the_accepted_ones() {
        let message = error(quote!(machin = "virt"));
        assert!(
            message.starts_with("unknown key `machin`; did you mean `machine`?"),
            "{message}"
        );
        assert!(message.contains("`should_fail`"), "{message}");
        let message = error(quote!(frobnicate));
        assert!(
            message.starts_with("unknown key `frobnicate` (accepted keys: `binary`"),
            "{message}"
        );
    }

    #[test]
    fn arrays_of_arches_and_machines_make_a_matrix() {
        let config = parse(quote!(arch = ["x86_64", "aarch64"], machine = "virt"));
        match config.arch.unwrap().value {
            Choice::Each(items) => assert_eq!(items.len(), 2),
            Choice::One(_) => panic!("an array"),
        }
        assert!(error(quote!(arch = [])).contains("`arch` needs at least one value"));
        assert!(error(quote!(machine = ["q35", "q35"])).contains("`machine` lists \"q35\" twice"));
        assert!(error(quote!(machine = ["virt,gic-version=3"])).contains("cannot name a test"));
    }

    #[test]
    fn wrong_value_types_say_what_is_expected() {
        assert_eq!(
            error(quote!(smp = 2.5)),
            "`smp` expects an integer literal of at least 1 or an -smp string, e.g. `smp = 2`"
        );
        assert!(error(quote!(qmp = "no")).starts_with("`qmp` expects `true` or `false`"));
        assert_eq!(
            error(quote!(siblings = 0)),
            "`siblings` must be at least 1 (leave the key out for none)"
        );
        assert_eq!(
            error(quote!(machine = 1)),
            "`machine` expects a string literal or an array of them (one test each), e.g. `machine = \"virt\"`"
        );
        assert!(error(quote!(machine)).starts_with("`machine` needs a value"));
        assert!(
            error(quote!(args = "-a")).starts_with("`args` expects an array of string literals")
        );
        assert!(error(quote!(args = ["-a", 1])).starts_with("`args` takes string literals only"));
        assert!(error(quote!(no_vm = true)).contains("is a flag and takes no value"));
        assert!(error(quote!(console(1))).starts_with("expected `console = ...`"));
        assert!(
            error(quote!(qemu::machine = "virt")).starts_with("expected a key such as `machine`")
        );
        assert_eq!(error(quote!(smp = 0)), "`smp` must be at least 1");
        assert!(error(quote!(smp = 5000000000)).starts_with("invalid `smp`"));
    }

    #[test]
    fn the_crate_key_takes_a_path() {
        let path = |tokens| {
            let krate = parse(tokens).krate.unwrap().value;
            quote::ToTokens::to_token_stream(&krate).to_string()
        };
        assert_eq!(path(quote!(crate = qt)), "qt");
        assert_eq!(path(quote!(crate = ::qt)), ":: qt");
        assert_eq!(
            path(quote!(crate = crate::support::qemu_test)),
            "crate :: support :: qemu_test"
        );
        assert_eq!(
            error(quote!(crate = "my-qt")),
            "`crate` takes a path, not a string: write `crate = my_qt` (the name the \
             dependency has in your Cargo.toml, with `-` as `_`)"
        );
        assert_eq!(
            error(quote!(crate = qt::<u8>)),
            "`crate` expects a path to the qemu-test crate, e.g. `crate = qt`"
        );
        assert!(error(quote!(crate)).starts_with("`crate` needs a value"));
        assert_eq!(
            error(quote!(crate = qt, crate = qt)),
            "duplicate `crate` key"
        );
        // Not a VM key: a `no_vm` test may name the crate too.
        assert!(parse(quote!(no_vm, crate = qt)).vm_keys().is_empty());
    }

    #[test]
    fn accelerators_are_checked() {
        assert!(parse(quote!(accel = "kvm")).accel.is_some());
        assert_eq!(
            error(quote!(accel = "hvf")),
            "unknown accelerator \"hvf\": expected one of \"auto\", \"kvm\" or \"tcg\""
        );
    }

    #[test]
    fn timeouts_are_checked() {
        assert_eq!(
            parse(quote!(timeout = "250ms"))
                .timeout
                .unwrap()
                .value
                .value,
            Duration::from_millis(250)
        );
        assert!(error(quote!(timeout = "soon")).starts_with("invalid `timeout` \"soon\""));
        assert!(error(quote!(timeout = "0s")).starts_with("`timeout` must be longer than zero"));
        assert!(error(quote!(timeout = 60)).contains("`timeout = \"60s\"`"));
    }

    #[test]
    fn every_bad_argument_is_reported() {
        let parsed = parse_args(quote!(smp = "two", machine = "virt", memory = "x")).unwrap();
        assert_eq!(parsed.errors.unwrap().into_iter().count(), 2);
        assert!(parsed.config.machine.is_some());
    }

    #[test]
    fn a_malformed_list_is_a_syntax_error() {
        assert!(parse_args(quote!(machine = )).is_err());
        assert!(parse_args(quote!(machine "virt")).is_err());
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("machin", "machine"), 1);
        assert_eq!(distance("smp", "smp"), 0);
        assert_eq!(distance("", "cpu"), 3);
        assert_eq!(distance("kernal", "kernel"), 1);
    }
}
