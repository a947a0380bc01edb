//! Emitting code: the function, unchanged, plus one registration.
//!
//! The registration is a thin call into the runtime: a `static TestDef` in
//! the `::qemu_test::__private::TESTS` distributed slice whose `spec` builds
//! a `VmSpec` with one `with_*` call per key, and whose `body` calls the
//! function and converts what it returns through `IntoOutcome`. Paths are
//! always absolute: `::qemu_test::...`, or the path given with `crate =
//! path` (a renamed dependency) in its place, tokens and spans as the user
//! wrote them. Values keep the user's spans too, so that type errors point
//! at the user's tokens.
//!
//! `kernel` and `initrd` values are passed to `VmSpec::with_kernel` /
//! `with_initrd` (which take `impl Into<Image>`) as follows:
//!
//! - a string literal is passed as is (`.with_kernel("vmlinuz")`): a path;
//! - a path expression (`guest::ECHO_SHELL_AARCH64`) is borrowed
//!   (`.with_kernel(&guest::ECHO_SHELL_AARCH64)`): it names a `static Guest`;
//! - any other expression is passed by value (`.with_kernel(kernel_path())`):
//!   it must evaluate to something `Image` converts from (`&'static Guest`,
//!   `String`, `PathBuf`, `&str`, `&Path`).
//!
//! If anything is wrong, the output is the function exactly as written plus
//! the errors (tokio's `token_stream_with_error`), so that IDEs still see the
//! function and no secondary errors appear.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, ReturnType};

use crate::parse::{self, Choice, Config, Errors, Firmware, Image, Setting, Siblings, Smp};
use crate::validate;

/// The attribute: parse, validate, emit.
pub(crate) fn qemu_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return token_stream_with_error(item, error),
    };
    let mut errors = Errors::default();
    let config = match parse::parse_args(args) {
        Ok(parsed) => {
            if let Some(error) = parsed.errors {
                errors.add(error);
            }
            if let Some(error) = validate::config(&parsed.config) {
                errors.add(error);
            }
            Some(parsed.config)
        }
        Err(error) => {
            errors.add(error);
            None
        }
    };
    let no_vm = config.as_ref().map(|config| config.no_vm.is_some());
    if let Some(error) = validate::function(&func, no_vm) {
        errors.add(error);
    }
    match (errors.finish(), config) {
        (None, Some(config)) => expand(&config, &func, item),
        (Some(error), _) => token_stream_with_error(item, error),
        (None, None) => unreachable!("a config that failed to parse left an error"),
    }
}

/// The function as written, followed by the errors.
fn token_stream_with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

/// The function as written, followed by its registration: one per
/// variant (one, unless `arch` or `machine` lists several).
fn expand(config: &Config, func: &ItemFn, item: TokenStream) -> TokenStream {
    let ident = &func.sig.ident;
    let name = ident.unraw().to_string();
    let variants = variants(config);
    let registrations = variants.iter().enumerate().map(|(i, variant)| {
        let static_name = match i {
            0 => format_ident!("__QEMU_TEST_{}", name.to_uppercase()),
            i => format_ident!("__QEMU_TEST_{}_{i}", name.to_uppercase()),
        };
        registration(config, func, &static_name, variant)
    });
    quote! {
        #item
        #(#registrations)*
    }
}

/// One test of a matrix: the `arch` and `machine` it runs with, and the
/// name it adds to the function's (`x86_64`, `q35`, `x86_64::q35`).
struct Variant<'a> {
    arch: Option<&'a LitStr>,
    machine: Option<&'a LitStr>,
    label: Option<String>,
}

/// Every combination of the `arch` and `machine` values.
fn variants(config: &Config) -> Vec<Variant<'_>> {
    fn options(setting: &Option<Setting<Choice>>) -> Vec<(Option<&LitStr>, bool)> {
        match setting.as_ref().map(|s| &s.value) {
            None => vec![(None, false)],
            Some(Choice::One(value)) => vec![(Some(value), false)],
            Some(Choice::Each(values)) => values.iter().map(|v| (Some(v), true)).collect(),
        }
    }
    let mut variants = Vec::new();
    for (arch, arch_named) in options(&config.arch) {
        for (machine, machine_named) in options(&config.machine) {
            let parts: Vec<String> = [(arch, arch_named), (machine, machine_named)]
                .into_iter()
                .filter(|(_, named)| *named)
                .filter_map(|(value, _)| value.map(LitStr::value))
                .collect();
            let label = (!parts.is_empty()).then(|| parts.join("::"));
            variants.push(Variant {
                arch,
                machine,
                label,
            });
        }
    }
    variants
}

/// The registration of one variant of the test.
fn registration(
    config: &Config,
    func: &ItemFn,
    static_name: &syn::Ident,
    variant: &Variant<'_>,
) -> TokenStream {
    let krate = &crate_path(config);
    let ident = &func.sig.ident;
    let name = LitStr::new(&ident.unraw().to_string(), ident.span());
    let spec = spec(config, variant, krate);
    let label = match &variant.label {
        Some(label) => quote!(::core::option::Option::Some(#label)),
        None => quote!(::core::option::Option::None),
    };
    let body = body(config, func, krate);
    let ignore = option_str(config.ignore.as_ref());
    let should_fail = match &config.should_fail {
        None => quote!(#krate::__private::ShouldFail::No),
        Some(Setting { value: None, .. }) => quote!(#krate::__private::ShouldFail::Yes),
        Some(Setting {
            value: Some(message),
            ..
        }) => {
            quote!(#krate::__private::ShouldFail::WithMessage(#message))
        }
    };

    let setup = match &config.setup {
        None => quote!(::core::option::Option::None),
        Some(Setting { value: path, .. }) => {
            let text = path.to_token_stream().to_string().replace(' ', "");
            let span = path.span();
            // The function is called through a `fn(&mut Vm)` wrapper, so a
            // wrong signature is a type error at the user's path.
            let setup_fn = quote_spanned! {span=>
                let setup: fn(&mut #krate::Vm) -> _ = #path;
            };
            let run = quote! {
                {
                    fn __qemu_test_setup(vm: &mut #krate::Vm) -> #krate::__private::BodyResult {
                        #setup_fn
                        #krate::__private::IntoOutcome::into_outcome(setup(vm))
                    }
                    __qemu_test_setup
                }
            };
            quote! {
                ::core::option::Option::Some(#krate::__private::Setup {
                    path: ::core::concat!(::core::module_path!(), "::", #text),
                    run: #run,
                })
            }
        }
    };

    // The registration exists exactly when the function does.
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));

    quote! {
        #(#cfgs)*
        #[#krate::__private::linkme::distributed_slice(#krate::__private::TESTS)]
        #[linkme(crate = #krate::__private::linkme)]
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #static_name: #krate::__private::TestDef = #krate::__private::TestDef {
            name: #name,
            variant: #label,
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            spec: {
                fn __qemu_test_spec() -> #krate::spec::VmSpec {
                    #krate::spec::VmSpec::new() #spec
                }
                __qemu_test_spec
            },
            body: #body,
            ignore: #ignore,
            should_fail: #should_fail,
            setup: #setup,
        };
    }
}

/// Where the generated code finds the runtime: `crate = path`, or
/// `::qemu_test`.
fn crate_path(config: &Config) -> TokenStream {
    match &config.krate {
        Some(Setting { value, .. }) => value.to_token_stream(),
        None => quote!(::qemu_test),
    }
}

/// `tokens` (a path: no groups) located at `span`, so that an error about
/// the whole expression they start is reported there alone.
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            token.set_span(Span::call_site().located_at(span));
            token
        })
        .collect()
}

/// `Some("reason")`, `Some("")` for a bare flag, or `None`.
fn option_str(setting: Option<&Setting<Option<LitStr>>>) -> TokenStream {
    match setting {
        None => quote!(::core::option::Option::None),
        Some(Setting { value: None, .. }) => quote!(::core::option::Option::Some("")),
        Some(Setting {
            value: Some(reason),
            ..
        }) => quote!(::core::option::Option::Some(#reason)),
    }
}

/// The `with_*` calls that follow `VmSpec::new()` for one variant, in the
/// order of the keys' documentation.
fn spec(config: &Config, variant: &Variant<'_>, krate: &TokenStream) -> TokenStream {
    let mut calls = TokenStream::new();
    let mut string = |method: &str, value: Option<&LitStr>| {
        if let Some(value) = value {
            calls.extend(call(method, value.span(), value.to_token_stream()));
        }
    };
    string("with_binary", value(&config.binary));
    string("with_arch", variant.arch);
    string("with_machine", variant.machine);
    string("with_cpu", value(&config.cpu));
    if let Some(smp) = &config.smp {
        calls.extend(match &smp.value {
            Smp::Count(count) => call("with_smp", count.span, u32_literal(count.value, count.span)),
            Smp::Syntax(lit) => call("with_smp", lit.span(), lit.to_token_stream()),
        });
    }
    if let Some(memory) = &config.memory {
        let size = LitStr::new(&memory.value.value, memory.value.span);
        calls.extend(call(
            "with_memory",
            memory.value.span,
            size.to_token_stream(),
        ));
    }
    if let Some(accel) = &config.accel {
        calls.extend(call(
            "with_accel",
            accel.value.span(),
            accel.value.to_token_stream(),
        ));
    }
    if let Some(kernel) = &config.kernel {
        calls.extend(image("with_kernel", &kernel.value));
    }
    if let Some(initrd) = &config.initrd {
        calls.extend(image("with_initrd", &initrd.value));
    }
    if let Some(append) = &config.append {
        calls.extend(call(
            "with_append",
            append.value.span(),
            append.value.to_token_stream(),
        ));
    }
    for drive in config.drive.iter().flat_map(|setting| &setting.value) {
        calls.extend(call("with_drive", drive.span(), drive.to_token_stream()));
    }
    for disk in config.disk.iter().flat_map(|setting| &setting.value) {
        calls.extend(image("with_disk", disk));
    }
    if let Some(firmware) = &config.firmware {
        calls.extend(match &firmware.value {
            Firmware::Uefi(lit) => {
                let span = lit.span();
                call(
                    "with_firmware",
                    span,
                    quote_spanned!(span=> #krate::spec::Firmware::Uefi),
                )
            }
            Firmware::Expr(expr) => call("with_firmware", expr.span(), expr.to_token_stream()),
        });
    }
    if let Some(args) = config.args.as_ref().filter(|args| !args.value.is_empty()) {
        let values = &args.value;
        calls.extend(call("with_args", args.key.span(), quote!([#(#values),*])));
    }
    if let Some(console) = &config.console {
        calls.extend(call("with_console", console.key.span(), TokenStream::new()));
        if let Some(device) = &console.value {
            calls.extend(call(
                "with_console_device",
                device.span(),
                device.to_token_stream(),
            ));
        }
        if let Some(index) = &config.console_index {
            let literal = u32_literal(index.value.value, index.value.span);
            calls.extend(call("with_console_index", index.value.span, literal));
        }
    }
    if let Some(timeout) = &config.timeout {
        let span = timeout.value.lit.span();
        let secs = Literal::u64_suffixed(timeout.value.value.as_secs());
        let nanos = Literal::u32_suffixed(timeout.value.value.subsec_nanos());
        let duration = quote_spanned!(span=> ::core::time::Duration::new(#secs, #nanos));
        calls.extend(call("with_timeout", span, duration));
    }
    if let Some(snapshot) = &config.snapshot {
        calls.extend(call(
            "with_snapshot",
            snapshot.value.span(),
            snapshot.value.to_token_stream(),
        ));
    }
    for (method, setting) in [("with_qmp", &config.qmp), ("with_launch", &config.launch)] {
        if let Some(Setting { value, .. }) = setting {
            calls.extend(call(method, value.span(), value.to_token_stream()));
        }
    }
    if let Some(requires) = &config.requires {
        let items = &requires.value;
        let span = requires.key.span();
        // The requirement functions are in scope without an import.
        let list = quote_spanned! {span=>
            {
                #[allow(unused_imports)]
                use #krate::requires::*;
                [#(#items),*]
            }
        };
        calls.extend(call("with_requirements", span, list));
    }
    match config.siblings.as_ref().map(|s| &s.value) {
        Some(Siblings::Count(count)) => {
            let literal = u32_literal(count.value, count.span);
            calls.extend(call("with_siblings", count.span, literal));
        }
        Some(Siblings::Names(names)) => {
            let span = config
                .siblings
                .as_ref()
                .map_or(Span::call_site(), |s| s.key.span());
            calls.extend(call("with_sibling_names", span, quote!([#(#names),*])));
        }
        None => {}
    }
    for network in config.networks.iter().flat_map(|setting| &setting.value) {
        calls.extend(call(
            "with_network",
            network.span(),
            network.to_token_stream(),
        ));
    }
    for share in config.shares.iter().flat_map(|setting| &setting.value) {
        calls.extend(call("with_share", share.span(), share.to_token_stream()));
    }
    if let Some(forward) = &config.forward {
        let ports = forward.value.iter().map(|p| {
            let mut literal = Literal::u16_unsuffixed(p.value as u16);
            literal.set_span(p.span);
            literal
        });
        calls.extend(call(
            "with_forward",
            forward.key.span(),
            quote!([#(#ports),*]),
        ));
    }
    calls
}

/// A setting's value, if it is set.
fn value<T>(setting: &Option<Setting<T>>) -> Option<&T> {
    setting.as_ref().map(|s| &s.value)
}

/// `.method(arg)`, with the method name at `span`.
fn call(method: &str, span: Span, arg: TokenStream) -> TokenStream {
    let method = syn::Ident::new(method, span);
    quote_spanned!(span=> .#method(#arg))
}

fn u32_literal(value: u32, span: Span) -> TokenStream {
    let mut literal = Literal::u32_unsuffixed(value);
    literal.set_span(span);
    literal.into_token_stream()
}

/// `.with_kernel(...)` following the rule in the module documentation.
fn image(method: &str, image: &Image) -> TokenStream {
    match image {
        Image::Lit(lit) => call(method, lit.span(), lit.to_token_stream()),
        Image::Path(path) => {
            let span = path.span();
            call(method, span, quote_spanned!(span=> &#path))
        }
        Image::Expr(expr) => call(method, expr.span(), expr.to_token_stream()),
    }
}

/// `Body::Vm(..)` or `Body::Plain(..)`: a `fn` with the runtime's signature
/// that calls the test and converts its return value.
fn body(config: &Config, func: &ItemFn, krate: &TokenStream) -> TokenStream {
    // The call is located at the return type (or the name, when there is
    // none), so that a return type without `IntoOutcome` is reported there;
    // its tokens still resolve at the call site.
    let ret_span = match &func.sig.output {
        ReturnType::Default => func.sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let at_ret = Span::call_site().located_at(ret_span);
    let mut ident = func.sig.ident.clone();
    ident.set_span(at_ret);
    let krate_at_ret = respan(krate, at_ret);
    let into_outcome = quote_spanned!(at_ret=> #krate_at_ret::__private::IntoOutcome::into_outcome);
    if config.no_vm.is_some() {
        let call = quote_spanned!(at_ret=> #into_outcome(#ident()));
        return quote! {
            #krate::__private::Body::Plain({
                fn __qemu_test_body() -> #krate::__private::BodyResult {
                    #call
                }
                __qemu_test_body
            })
        };
    }
    let arg_span = match func.sig.inputs.first() {
        Some(FnArg::Typed(arg)) => arg.ty.span(),
        _ => Span::call_site(),
    };
    let vm = quote_spanned!(Span::call_site().located_at(arg_span)=> vm);
    let call = quote_spanned!(at_ret=> #into_outcome(#ident(#vm)));
    quote! {
        #krate::__private::Body::Vm({
            fn __qemu_test_body(vm: &mut #krate::Vm) -> #krate::__private::BodyResult {
                #call
            }
            __qemu_test_body
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion, as one normalized line.
    fn expand_str(args: TokenStream, item: TokenStream) -> String {
        let output = qemu_test(args, item);
        syn::parse2::<syn::File>(output.clone()).expect("the expansion is valid Rust");
        output.to_string()
    }

    #[test]
    fn the_function_is_kept_and_registered() {
        let out = expand_str(
            quote!(
                machine = "virt",
                console,
                kernel = guest::ECHO_SHELL_AARCH64
            ),
            quote! {
                /// Docs stay.
                fn boots(vm: &mut Vm) -> TestResult { Ok(()) }
            },
        );
        let expected_fn = quote! {
            #[doc = r" Docs stay."]
            fn boots(vm: &mut Vm) -> TestResult { Ok(()) }
        };
        assert!(out.starts_with(&expected_fn.to_string()), "{out}");
        for part in [
            quote!(static __QEMU_TEST_BOOTS: ::qemu_test::__private::TestDef),
            quote!(name: "boots",),
            quote!(::qemu_test::spec::VmSpec::new()
                .with_machine("virt")
                .with_kernel(&guest::ECHO_SHELL_AARCH64)
                .with_console()),
            quote!(fn __qemu_test_body(vm: &mut ::qemu_test::Vm)),
            quote!(::qemu_test::__private::IntoOutcome::into_outcome(boots(vm))),
            quote!(ignore: ::core::option::Option::None,),
            quote!(should_fail: ::qemu_test::__private::ShouldFail::No,),
        ] {
            assert!(out.contains(&part.to_string()), "missing {part}\nin {out}");
        }
    }

    #[test]
    fn every_key_becomes_a_call() {
        let out = expand_str(
            quote!(
                binary = "qemu-system-x86_64",
                machine = "q35",
                cpu = "max",
                smp = 2,
                memory = 512,
                accel = "tcg",
                kernel = "bzImage",
                initrd = initrd_path(),
                append = "console=ttyS0",
                drive = ["file=a.img", "file=b.img"],
                args = ["-no-reboot", "-s"],
                console = "isa-serial",
                console_index = 1,
                timeout = "1m 30s 5ms",
                ignore = "slow",
                should_fail = "oops",
            ),
            quote!(
                fn t(vm: &mut Vm) {}
            ),
        );
        let calls = quote!(::qemu_test::spec::VmSpec::new()
            .with_binary("qemu-system-x86_64")
            .with_machine("q35")
            .with_cpu("max")
            .with_smp(2)
            .with_memory("512M")
            .with_accel("tcg")
            .with_kernel("bzImage")
            .with_initrd(initrd_path())
            .with_append("console=ttyS0")
            .with_drive("file=a.img")
            .with_drive("file=b.img")
            .with_args(["-no-reboot", "-s"])
            .with_console()
            .with_console_device("isa-serial")
            .with_console_index(1)
            .with_timeout(::core::time::Duration::new(90u64, 5000000u32)));
        assert!(out.contains(&calls.to_string()), "{out}");
        assert!(out.contains(&quote!(ignore: ::core::option::Option::Some("slow")).to_string()));
        assert!(out.contains(
            &quote!(::qemu_test::__private::ShouldFail::WithMessage("oops")).to_string()
        ));
    }

    #[test]
    fn flags_and_arch() {
        let out = expand_str(
            quote!(arch = "aarch64", ignore, should_fail),
            quote!(
                fn t(vm: &mut Vm) {}
            ),
        );
        assert!(
            out.contains(&quote!(VmSpec::new().with_arch("aarch64")).to_string()),
            "{out}"
        );
        assert!(out.contains(&quote!(ignore: ::core::option::Option::Some("")).to_string()));
        assert!(out.contains(&quote!(::qemu_test::__private::ShouldFail::Yes).to_string()));
    }

    #[test]
    fn no_vm_tests_get_a_plain_body() {
        let out = expand_str(
            quote!(no_vm),
            quote!(
                fn plain() {}
            ),
        );
        assert!(
            out.contains(&quote!(::qemu_test::__private::Body::Plain).to_string()),
            "{out}"
        );
        assert!(
            out.contains(&quote!(into_outcome(plain())).to_string()),
            "{out}"
        );
        assert!(
            out.contains(
                "-> :: qemu_test :: spec :: VmSpec { :: qemu_test :: spec :: VmSpec :: new () }"
            ),
            "{out}"
        );
    }

    #[test]
    fn cfg_attributes_apply_to_the_registration() {
        let out = expand_str(
            quote!(),
            quote!(
                #[cfg(feature = "slow")]
                #[inline]
                fn t(vm: &mut Vm) {}
            ),
        );
        let registration = &out[out.find("{ }").unwrap()..];
        assert!(
            registration.starts_with("{ } # [cfg (feature = \"slow\")] # [:: qemu_test"),
            "{out}"
        );
        assert!(!registration.contains("inline"), "{out}");
    }

    #[test]
    fn the_crate_key_replaces_every_path_to_the_runtime() {
        for (args, item) in [
            (
                quote!(
                    crate = qt,
                    console,
                    snapshot = "s",
                    setup = ready,
                    should_fail
                ),
                quote!(
                    fn t(vm: &mut Vm) {}
                ),
            ),
            (
                quote!(no_vm, crate = ::qt),
                quote!(
                    fn t() {}
                ),
            ),
        ] {
            let out = expand_str(args, item);
            assert!(!out.contains("qemu_test ::"), "{out}");
            assert!(out.contains("# [qt :: __private :: linkme :: distributed_slice (qt :: __private :: TESTS)]")
                || out.contains("# [:: qt :: __private :: linkme :: distributed_slice (:: qt :: __private :: TESTS)]"), "{out}");
        }
    }

    #[test]
    fn raw_names_are_unraw_in_the_test_list() {
        let out = expand_str(
            quote!(),
            quote!(
                fn r#match(vm: &mut Vm) {}
            ),
        );
        assert!(out.contains("name : \"match\""), "{out}");
        assert!(out.contains("__QEMU_TEST_MATCH"), "{out}");
    }

    #[test]
    fn errors_keep_the_function_as_written() {
        let item = quote!(
            fn boots(vm: &mut Vm) {}
        );
        let out = qemu_test(quote!(machin = "virt"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("TestDef"), "{out}");
    }

    #[test]
    fn argument_and_function_errors_are_reported_together() {
        let out = qemu_test(
            quote!(smp = "two"),
            quote!(
                async fn t(vm: &mut Vm) {}
            ),
        )
        .to_string();
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    }

    #[test]
    fn not_a_function() {
        let out = qemu_test(
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
    }
}
