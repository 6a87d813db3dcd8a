//! `#[owl::remote]` and `#[owl::main]`.
//!
//! `#[remote]` turns `fn name(params) -> R` (or `async fn`) into a unit
//! struct `name` with `remote(&rt, args..)`, `options(CallOpts)` and
//! `call(params)` (a plain local call), plus a registry entry with a stable
//! id (the hash of the module path and name), placed in owl's link-time
//! registry: only functions compiled into the binary can ever be invoked.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, spanned::Spanned, FnArg, GenericArgument, Ident, ItemFn, PathArguments,
    ReturnType, Type,
};

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_runtime(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Runtime" && s.arguments.is_none())
}

/// `Result<T, ..>` (any path ending in `Result`): returns `T`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

fn error(span: Span, msg: &str) -> TokenStream {
    syn::Error::new(span, msg).to_compile_error().into()
}

#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(
            TokenStream2::from(attr).span(),
            "#[owl::remote] takes no arguments; set options per call with `f.options(owl::CallOpts::new()...)`",
        );
    }
    let func = parse_macro_input!(item as ItemFn);
    if !func.sig.generics.params.is_empty() {
        return error(
            func.sig.generics.span(),
            "remote functions cannot be generic: each needs one stable id",
        );
    }
    let vis = &func.vis;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let is_async = func.sig.asyncness.is_some();
    let impl_name = format_ident!("__owl_impl_{}", name);
    let call_name = format_ident!("__OwlCall_{}", name);
    let with_name = format_ident!("__OwlWith_{}", name);
    let info_name = format_ident!("__OWL_FN_{}", name_str.to_uppercase());
    let decode_name = format_ident!("__owl_decode_{}", name);

    // Parameters: injected runtimes, and call arguments.
    let mut arg_fields: Vec<Ident> = Vec::new();
    let mut arg_types: Vec<Type> = Vec::new();
    let mut impl_args: Vec<TokenStream2> = Vec::new();
    let mut takes: Vec<TokenStream2> = Vec::new();
    let mut all_params: Vec<TokenStream2> = Vec::new();
    let mut all_names: Vec<Ident> = Vec::new();
    for (i, input) in func.sig.inputs.iter().enumerate() {
        let FnArg::Typed(pat) = input else {
            return error(input.span(), "remote functions cannot take self");
        };
        let ty = &*pat.ty;
        let ident = format_ident!("__arg{}", i);
        all_params.push(quote!(#ident: #ty));
        all_names.push(ident.clone());
        if is_runtime(ty) {
            impl_args.push(quote!(::owl::__private::current_runtime()));
        } else {
            takes.push(quote!(let #ident = ::owl::__owl_take!(self.#ident);));
            impl_args.push(quote!(#ident));
            arg_fields.push(ident);
            arg_types.push(ty.clone());
        }
    }

    let (ret_ty, store) = match &func.sig.output {
        ReturnType::Default => (quote!(()), quote!(::owl::__private::store_return)),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (quote!(#ok), quote!(::owl::__private::store_result)),
            None => (quote!(#ty), quote!(::owl::__private::store_return)),
        },
    };

    let mut inner = func.clone();
    inner.sig.ident = impl_name.clone();
    inner.vis = syn::Visibility::Inherited;
    let fn_output = &func.sig.output;
    let asyncness = &func.sig.asyncness;
    let await_ = if is_async { quote!(.await) } else { quote!() };

    let run_body = if is_async {
        quote! {
            ::owl::__private::Exec::Future(::std::boxed::Box::pin(async move {
                #store(#impl_name(#(#impl_args),*).await)
            }))
        }
    } else {
        quote! { ::owl::__private::Exec::Done(#store(#impl_name(#(#impl_args),*))) }
    };

    let expanded = quote! {
        #[allow(non_snake_case, clippy::too_many_arguments)]
        #inner

        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        #vis struct #name;

        #[allow(non_upper_case_globals)]
        #[::owl::__private::linkme::distributed_slice(::owl::__private::REMOTE_FNS)]
        #[linkme(crate = ::owl::__private::linkme)]
        static #info_name: ::owl::FnInfo = ::owl::FnInfo {
            id: ::owl::FnId(::owl::__private::stable_hash(concat!(module_path!(), "::", #name_str))),
            name: #name_str,
            path: concat!(module_path!(), "::", #name_str),
            is_async: #is_async,
            decode: #decode_name,
        };

        #[allow(non_snake_case)]
        fn #decode_name(
            __args: ::std::vec::Vec<::owl::__private::ArgIn>,
        ) -> ::std::result::Result<::std::boxed::Box<dyn ::owl::__private::Call>, ::std::string::String> {
            let mut __it = __args.into_iter();
            let __call = #call_name {
                #(#arg_fields: ::owl::__private::Arg::from_wire(__it.next())?,)*
            };
            if __it.next().is_some() {
                return Err("more arguments than the function takes".into());
            }
            Ok(::std::boxed::Box::new(__call))
        }

        #[allow(non_camel_case_types)]
        struct #call_name {
            #(#arg_fields: ::owl::__private::Arg<#arg_types>,)*
        }

        impl ::owl::__private::Call for #call_name {
            fn deps(&self, __f: &mut dyn FnMut(&::owl::__private::Arc<::owl::__private::ObjectCell>) -> bool) {
                let _ = true #(&& self.#arg_fields.dep(__f))*;
            }

            fn keep_args(
                &mut self,
                __arena: &::owl::__private::Arc<::owl::__private::Arena>,
                __max: usize,
            ) -> ::std::result::Result<(), ::owl::PutError> {
                #(self.#arg_fields.keep(__arena, __max)?;)*
                let _ = (__arena, __max);
                Ok(())
            }

            fn run(&mut self) -> ::owl::__private::Exec {
                #(#takes)*
                #run_body
            }

            fn wire(
                &mut self,
                __w: &mut ::owl::__private::Wiring<'_>,
                __f: &mut dyn FnMut(::owl::__private::ArgOut<'_>),
            ) -> ::std::result::Result<(), ::owl::PutError> {
                #(self.#arg_fields.wire(__w, __f)?;)*
                let _ = (__w, __f);
                Ok(())
            }
        }

        /// Submits calls with per-call options.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone)]
        #vis struct #with_name(::std::option::Option<::owl::CallOpts>);

        impl #with_name {
            #[allow(clippy::too_many_arguments)]
            pub fn remote(
                self,
                __rt: &::owl::Runtime,
                #(#arg_fields: impl ::owl::IntoArg<#arg_types>,)*
            ) -> ::std::result::Result<::owl::ObjectRef<#ret_ty>, ::owl::SubmitError> {
                __rt.submit(
                    &#info_name,
                    ::std::boxed::Box::new(#call_name { #(#arg_fields: #arg_fields.into_arg(),)* }),
                    self.0,
                )
            }
        }

        impl #name {
            /// Submits a call; arguments may be values or `ObjectRef`s.
            #[allow(clippy::too_many_arguments)]
            pub fn remote(
                &self,
                __rt: &::owl::Runtime,
                #(#arg_fields: impl ::owl::IntoArg<#arg_types>,)*
            ) -> ::std::result::Result<::owl::ObjectRef<#ret_ty>, ::owl::SubmitError> {
                #with_name(None).remote(__rt, #(#arg_fields),*)
            }

            /// Per-call options (priority, name, retries).
            pub fn options(&self, opts: ::owl::CallOpts) -> #with_name {
                #with_name(Some(opts))
            }

            /// Calls the function here, as a plain function.
            #[allow(clippy::too_many_arguments)]
            pub #asyncness fn call(&self, #(#all_params),*) #fn_output {
                #impl_name(#(#all_names),*)#await_
            }

            /// The registry entry (stable id, name).
            pub fn info(&self) -> &'static ::owl::FnInfo {
                &#info_name
            }
        }
    };
    expanded.into()
}

/// Runs an `async fn main(rt: owl::Runtime)` as the root task of a node
/// configured from `OWL_*` variables.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(
            TokenStream2::from(attr).span(),
            "#[owl::main] takes no arguments; configure with OWL_* variables",
        );
    }
    let func = parse_macro_input!(item as ItemFn);
    if func.sig.asyncness.is_none() {
        return error(
            func.sig.span(),
            "#[owl::main] needs an async fn taking an owl::Runtime",
        );
    }
    let mut inner = func.clone();
    inner.sig.ident = format_ident!("__owl_main");
    inner.vis = syn::Visibility::Inherited;
    let output = &func.sig.output;
    let attrs = &func.attrs;
    // The builder is kept: a worker of an open cluster that was declared
    // dead joins again with it (`serve_rejoining`).
    let start = match output {
        ReturnType::Default => quote! {
            let __builder = ::owl::Runtime::builder()
                .from_env()
                .unwrap_or_else(|e| panic!("owl could not start: {e}"));
            let __rt = __builder
                .clone()
                .build()
                .unwrap_or_else(|e| panic!("owl could not start: {e}"));
        },
        ReturnType::Type(..) => quote! {
            let __builder = ::owl::Runtime::builder().from_env()?;
            let __rt = __builder.clone().build()?;
        },
    };
    // Worker nodes of a cluster serve tasks; only the driver (node 0 of a
    // launched cluster, a program attached to an open one) runs main.
    let serve = match output {
        // A worker the cluster declared dead (it did not run for longer
        // than dead_after) says so and exits cleanly: the run went on
        // without it, so its exit alone fails no run.
        ReturnType::Default => quote! {
            match __rt.serve_rejoining(__builder) {
                Ok(()) => {}
                Err(e @ ::owl::Error::DeclaredDead { .. }) => {
                    eprintln!("owl worker: {e}");
                }
                Err(e) => panic!("owl worker: {e}"),
            }
            return;
        },
        ReturnType::Type(..) => quote! {
            match __rt.serve_rejoining(__builder) {
                Err(e @ ::owl::Error::DeclaredDead { .. }) => {
                    eprintln!("owl worker: {e}");
                }
                r => r?,
            }
            return Ok(());
        },
    };
    quote! {
        #(#attrs)*
        fn main() #output {
            #inner
            #start
            if __rt.serves() {
                #serve
            }
            let __out = __rt.block_on(__owl_main);
            __rt.check_leaks_if_asked();
            __out
        }
    }
    .into()
}
