//! Rules between keys, and the rules for the function the attribute is on.
//!
//! Every error points at the offending token: the later of two conflicting
//! keys, the `async` keyword, the parameter's type. All errors are reported
//! at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, ItemFn, Type};

use crate::parse::{Config, Errors};

/// Checks the rules between keys.
pub(crate) fn config(config: &Config) -> Option<syn::Error> {
    let mut errors = Errors::default();

    if let (Some(binary), Some(arch)) = (&config.binary, &config.arch) {
        let later = if binary.index > arch.index {
            &binary.key
        } else {
            &arch.key
        };
        errors.add(syn::Error::new(
            later.span(),
            "`binary` and `arch` are mutually exclusive: `binary` names the QEMU executable, \
             `arch` picks `qemu-system-<arch>`; keep one",
        ));
    }

    if let (Some(index), None) = (&config.console_index, &config.console) {
        errors.add(syn::Error::new(
            index.key.span(),
            "`console_index` requires `console`: add `console` (or `console = \"<device type>\"`)",
        ));
    }

    if let (Some(setup), None) = (&config.setup, &config.snapshot) {
        errors.add(syn::Error::new(
            setup.key.span(),
            "`setup` requires `snapshot`: it gets the VM ready before its state is saved; \
             add `snapshot = \"<name>\"` (or call the function from the test body instead)",
        ));
    }

    // A booted snapshot is made and restored by the runner, over QMP.
    if let Some(snapshot) = &config.snapshot {
        for (key, setting) in [("qmp", &config.qmp), ("launch", &config.launch)] {
            if let Some(setting) = setting.as_ref().filter(|s| !s.value.value) {
                let later = if setting.index > snapshot.index {
                    &setting.key
                } else {
                    &snapshot.key
                };
                errors.add(syn::Error::new(
                    later.span(),
                    format!(
                        "`snapshot` cannot be combined with `{key} = false`: the runner makes and \
                         restores booted snapshots by launching the VM itself, over its QMP monitor"
                    ),
                ));
            }
        }
    }

    if config.no_vm.is_some() {
        for key in config.vm_keys() {
            errors.add(syn::Error::new(
                key.span(),
                format!(
                    "`{key}` cannot be combined with `no_vm`: a `no_vm` test starts no VM \
                     (only `timeout`, `ignore` and `should_fail` apply)"
                ),
            ));
        }
    }

    errors.finish()
}

/// Checks the function's signature. `no_vm` is `None` when the arguments
/// could not be parsed at all, so the parameter rules cannot be checked.
pub(crate) fn function(func: &ItemFn, no_vm: Option<bool>) -> Option<syn::Error> {
    let mut errors = Errors::default();
    let sig = &func.sig;

    for attr in &func.attrs {
        if attr.path().is_ident("test") {
            errors.add(syn::Error::new_spanned(
                attr,
                "`#[qemu_test]` already registers the test; remove `#[test]`",
            ));
        }
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.add(syn::Error::new_spanned(
            asyncness,
            "`#[qemu_test]` functions cannot be `async`: the API is synchronous; remove `async`",
        ));
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.add(syn::Error::new_spanned(
            unsafety,
            "`#[qemu_test]` functions cannot be `unsafe`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.add(syn::Error::new_spanned(
            &sig.generics,
            "`#[qemu_test]` functions cannot be generic: remove the generic parameters",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        errors.add(syn::Error::new_spanned(
            receiver,
            "`#[qemu_test]` functions cannot take `self`: write a free function",
        ));
        return errors.finish();
    }

    let inputs = &sig.inputs;
    match (no_vm, inputs.len()) {
        // Without a config, whether a VM is wanted is unknown.
        (None, _) | (Some(true), 0) => {}
        (Some(true), _) => errors.add(syn::Error::new_spanned(
            inputs,
            "a `no_vm` test takes no parameters: it gets no VM",
        )),
        (Some(false), 0) => errors.add(syn::Error::new(
            sig.paren_token.span.join(),
            "a VM test takes the VM as its only parameter, as in `fn name(vm: &mut Vm)`; \
             add `no_vm` to the attribute for a test without a VM",
        )),
        (Some(false), 1) => {
            if let Some(FnArg::Typed(arg)) = inputs.first() {
                if !is_vm_ref(&arg.ty) {
                    errors.add(syn::Error::new_spanned(
                        &arg.ty,
                        format!(
                            "the VM parameter must be `&mut Vm`, found `{}`",
                            pretty(&arg.ty)
                        ),
                    ));
                }
            }
        }
        (Some(false), _) => {
            let extra: TokenStream = inputs
                .iter()
                .skip(1)
                .map(ToTokens::to_token_stream)
                .collect();
            errors.add(syn::Error::new_spanned(
                extra,
                "a VM test takes exactly one parameter, as in `fn name(vm: &mut Vm)`; remove the others",
            ));
        }
    }

    errors.finish()
}

/// `&mut Vm`, `&'_ mut Vm` or `&mut some::path::Vm`.
fn is_vm_ref(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Reference(reference) => {
            reference.mutability.is_some()
                && match &reference.lifetime {
                    None => true,
                    Some(lifetime) => lifetime.ident == "_",
                }
                && is_vm_path(&reference.elem)
        }
        _ => false,
    }
}

fn is_vm_path(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Vm" && segment.arguments.is_none()),
        _ => false,
    }
}

/// Looks through invisible groups and parentheses.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// A type as a person writes it: `&mut Machine`, not `& mut Machine`.
fn pretty(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    text.replace("& ", "&")
        .replace(" :: ", "::")
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_args;
    use quote::quote;

    fn config_error(tokens: TokenStream) -> Option<String> {
        let parsed = parse_args(tokens).unwrap();
        assert!(parsed.errors.is_none());
        config(&parsed.config).map(|e| e.to_string())
    }

    fn fn_error(func: TokenStream, no_vm: bool) -> Option<String> {
        function(&syn::parse2(func).unwrap(), Some(no_vm)).map(|e| e.to_string())
    }

    #[test]
    fn binary_and_arch_conflict() {
        let message = config_error(quote!(binary = "q", arch = "aarch64")).unwrap();
        assert!(message.contains("mutually exclusive"));
        assert!(config_error(quote!(arch = "aarch64")).is_none());
    }

    #[test]
    fn console_index_needs_console() {
        assert!(config_error(quote!(console_index = 1))
            .unwrap()
            .contains("requires `console`"));
        assert!(config_error(quote!(console, console_index = 1)).is_none());
    }

    #[test]
    fn setup_needs_a_snapshot() {
        assert!(config_error(quote!(snapshot = "booted")).is_none());
        assert!(config_error(quote!(snapshot = "booted", setup = boot)).is_none());
        assert!(config_error(quote!(setup = common::boot))
            .unwrap()
            .starts_with("`setup` requires `snapshot`"));
    }

    #[test]
    fn no_vm_rejects_every_vm_key() {
        let parsed = parse_args(quote!(no_vm, machine = "virt", ignore, smp = 2)).unwrap();
        let errors: Vec<String> = config(&parsed.config)
            .unwrap()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("`machine` cannot be combined with `no_vm`"));
        assert!(errors[1].starts_with("`smp` cannot be combined with `no_vm`"));
        assert!(config_error(quote!(no_vm, ignore = "x", should_fail)).is_none());
        // B2 (issue 16): a `no_vm` test has a deadline too, and sets it.
        assert!(config_error(quote!(no_vm, timeout = "5m")).is_none());
    }

    #[test]
    fn vm_parameter_types() {
        for ok in [
            quote!(
                fn t(vm: &mut Vm) {}
            ),
            quote!(
                fn t(_: &mut Vm) {}
            ),
            quote!(
                fn t(mut vm: &'_ mut Vm) {}
            ),
            quote!(
                fn t(vm: &mut qemu_test::Vm) -> TestResult {
                    Ok(())
                }
            ),
            quote!(
                fn t(vm: &mut ::qemu_test::runner::Vm) {}
            ),
        ] {
            assert_eq!(fn_error(ok.clone(), false), None, "{ok}");
        }
        for bad in [
            quote!(
                fn t(vm: Vm) {}
            ),
            quote!(
                fn t(vm: &Vm) {}
            ),
            quote!(
                fn t(vm: &mut Machine) {}
            ),
            quote!(
                fn t(vm: &'static mut Vm) {}
            ),
            quote!(
                fn t(vm: &mut Vm<u8>) {}
            ),
            quote!(
                fn t(vm: &mut <X as Y>::Vm) {}
            ),
        ] {
            let message = fn_error(bad.clone(), false).unwrap_or_else(|| panic!("accepted {bad}"));
            assert!(
                message.starts_with("the VM parameter must be `&mut Vm`"),
                "{message}"
            );
        }
        assert_eq!(
            fn_error(
                quote!(
                    fn t(vm: &mut Machine) {}
                ),
                false
            )
            .unwrap(),
            "the VM parameter must be `&mut Vm`, found `&mut Machine`"
        );
    }

    #[test]
    fn parameter_counts() {
        assert!(fn_error(
            quote!(
                fn t() {}
            ),
            false
        )
        .unwrap()
        .contains("only parameter"));
        assert!(fn_error(
            quote!(
                fn t(a: &mut Vm, b: u8) {}
            ),
            false
        )
        .unwrap()
        .contains("exactly one"));
        assert!(fn_error(
            quote!(
                fn t(vm: &mut Vm) {}
            ),
            true
        )
        .unwrap()
        .contains("takes no parameters"));
        assert_eq!(
            fn_error(
                quote!(
                    fn t() {}
                ),
                true
            ),
            None
        );
    }

    #[test]
    fn signature_rules() {
        assert!(fn_error(
            quote!(
                async fn t(vm: &mut Vm) {}
            ),
            false
        )
        .unwrap()
        .contains("`async`"));
        assert!(fn_error(
            quote!(
                unsafe fn t(vm: &mut Vm) {}
            ),
            false
        )
        .unwrap()
        .contains("`unsafe`"));
        assert!(fn_error(
            quote!(
                fn t<T>(vm: &mut Vm) {}
            ),
            false
        )
        .unwrap()
        .contains("generic"));
        assert!(fn_error(
            quote!(
                fn t(&self) {}
            ),
            false
        )
        .unwrap()
        .contains("`self`"));
        assert!(fn_error(
            quote!(
                #[test]
                fn t() {}
            ),
            true
        )
        .unwrap()
        .contains("remove `#[test]`"));
        let all = function(
            &syn::parse2(quote!(
                async fn t<T>() {}
            ))
            .unwrap(),
            Some(true),
        )
        .unwrap();
        assert_eq!(all.into_iter().count(), 2);
    }

    #[test]
    fn parameters_are_not_checked_without_a_config() {
        assert_eq!(
            function(
                &syn::parse2(quote!(
                    fn t(a: u8, b: u8) {}
                ))
                .unwrap(),
                None
            )
            .map(|e| e.to_string()),
            None
        );
    }
}
