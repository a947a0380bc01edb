//! What makes a `#[qemu_test]` in the wrong kind of target fail loudly.
//!
//! A `#[qemu_test]` runs only in a test target built without libtest's
//! harness (`harness = false` in its `[[test]]` section) whose `main` is
//! `qemu_test::main!()`. In a target built with the harness (the default),
//! libtest would find no tests and pass: "running 0 tests ... ok". So the
//! expansion adds, beside the registration, a `#[test]` that fails with the
//! fix, under `#[cfg(test)]`: cargo passes `--test` (which sets `cfg(test)`)
//! to rustc only for targets built with the harness, so in a `harness =
//! false` target the guard does not exist (tests/runner_misuse.rs checks
//! both with a real `cargo test`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::ItemFn;

/// The guard for the function in `item`; nothing if `item` is not a
/// function (the attribute reports that itself).
pub(crate) fn libtest_guard(item: TokenStream) -> TokenStream {
    let Ok(func) = syn::parse2::<ItemFn>(item) else {
        return TokenStream::new();
    };
    let name = func.sig.ident.unraw().to_string();
    let module = format_ident!("__qemu_test_{}", name);
    // The guard exists exactly when the function does.
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let message = format!(
        "`{name}` is a #[qemu_test], but the test target `{{}}` is built with libtest's \
         harness, which never runs it. Add `harness = false` to the target's section in \
         Cargo.toml:\n\n    [[test]]\n    name = \"{{}}\"\n    harness = false\n\n\
         and end the file with `qemu_test::main!();`"
    );
    quote! {
        #(#cfgs)*
        #[cfg(test)]
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #module {
            #[::core::prelude::v1::test]
            fn needs_harness_false() {
                // The crate's name: the target's, with `-` as `_`.
                let target = ::core::module_path!().split("::").next().unwrap_or("");
                ::core::panic!(#message, target, target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_is_a_failing_test_under_cfg_test() {
        let out = libtest_guard(quote!(
            #[cfg(feature = "slow")]
            fn r#match(vm: &mut Vm) {}
        ))
        .to_string();
        assert!(
            out.starts_with("# [cfg (feature = \"slow\")] # [cfg (test)]"),
            "{out}"
        );
        assert!(out.contains("mod __qemu_test_match"), "{out}");
        assert!(out.contains("fn needs_harness_false"), "{out}");
        assert!(out.contains("harness = false"), "{out}");
        syn::parse2::<syn::File>(out.parse().unwrap()).expect("valid Rust");
        assert!(libtest_guard(quote!(
            struct S;
        ))
        .is_empty());
    }
}
