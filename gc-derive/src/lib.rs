//! `#[derive(Trace)]` for the `gomalloc-gc` collector (crate `gc`).
//!
//! The derived impl traces every field (rule 1 of `gc::Trace`), needs tracing iff some field
//! does (rule 2), and forbids a `Drop` impl on the type (rule 5) unless the type says
//! `#[gc(unsafe_drop)]`. A field marked `#[gc(unsafe_skip)]` is not traced: the author
//! promises it holds no GC pointer.
//!
//! Fields whose type puts a GC pointer (`Gc`, `Weak`, `Lock`, `RefLock`) inside a cell that
//! bypasses the write barrier (`Cell`, `RefCell`, `UnsafeCell`, `OnceCell`, `Mutex`,
//! `RwLock`) are rejected with an error pointing at `gc::Lock` / `gc::RefLock` (rule 4).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Data, DeriveInput, Field, Fields, GenericParam, Ident, Type, parse_macro_input};

/// Cells that bypass the collector's write barrier.
const UNBARRIERED: &[&str] = &[
    "Cell",
    "RefCell",
    "UnsafeCell",
    "OnceCell",
    "Mutex",
    "RwLock",
];
/// Types that hold GC pointers.
const GC_TYPES: &[&str] = &["Gc", "Weak", "Lock", "RefLock"];

/// Derives `gc::Trace`. See the crate documentation.
#[proc_macro_derive(Trace, attributes(gc))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Which `#[gc(...)]` flags an attribute list carries.
fn gc_flags(attrs: &[syn::Attribute]) -> syn::Result<Vec<Ident>> {
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("gc")) {
        a.parse_nested_meta(|meta| {
            match meta.path.get_ident() {
                Some(i) if i == "unsafe_drop" || i == "unsafe_skip" => out.push(i.clone()),
                _ => return Err(meta.error("expected `unsafe_drop` or `unsafe_skip`")),
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Collects the identifiers of a type (every path segment, at any depth).
struct Idents(Vec<Ident>);
impl<'a> Visit<'a> for Idents {
    fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
        self.0.push(s.ident.clone());
        syn::visit::visit_path_segment(self, s);
    }
}

/// Finds an unbarriered cell whose type arguments mention a GC type.
struct CellAroundGc(Option<(Ident, Ident)>);
impl<'a> Visit<'a> for CellAroundGc {
    fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
        if self.0.is_none() && UNBARRIERED.iter().any(|c| s.ident == c) {
            if let syn::PathArguments::AngleBracketed(args) = &s.arguments {
                let mut inner = Idents(Vec::new());
                inner.visit_angle_bracketed_generic_arguments(args);
                if let Some(g) = inner
                    .0
                    .into_iter()
                    .find(|i| GC_TYPES.iter().any(|c| i == c))
                {
                    self.0 = Some((s.ident.clone(), g));
                }
            }
        }
        syn::visit::visit_path_segment(self, s);
    }
}

/// Rejects an unbarriered cell around a GC pointer.
fn check_field(f: &Field) -> syn::Result<()> {
    let mut v = CellAroundGc(None);
    v.visit_type(&f.ty);
    if let Some((cell, gc)) = v.0 {
        return Err(syn::Error::new(
            f.ty.span(),
            format!(
                "`{gc}` inside `{cell}`: a GC pointer changed through `{cell}` bypasses the \
                 collector's write barrier; use `gc::Lock` (for Copy values) or `gc::RefLock`"
            ),
        ));
    }
    Ok(())
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let type_flags = gc_flags(&input.attrs)?;
    let unsafe_drop = type_flags.iter().any(|i| i == "unsafe_drop");

    let mut generics = input.generics.clone();
    for p in generics.params.iter_mut() {
        if let GenericParam::Type(t) = p {
            t.bounds.push(syn::parse_quote!(::gc::Trace));
        }
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let (plain_impl_g, _, plain_where) = input.generics.split_for_impl();

    let mut field_types: Vec<Type> = Vec::new();
    let body = match &input.data {
        Data::Struct(s) => {
            let (pat, calls) = fields_pattern(&s.fields, &mut field_types)?;
            quote! { let Self #pat = self; #calls }
        }
        Data::Enum(e) => {
            let mut arms = Vec::new();
            for v in &e.variants {
                let vn = &v.ident;
                let (pat, calls) = fields_pattern(&v.fields, &mut field_types)?;
                arms.push(quote! { Self::#vn #pat => { #calls } });
            }
            if arms.is_empty() {
                quote! {}
            } else {
                quote! { match self { #(#arms)* } }
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "#[derive(Trace)] does not support unions",
            ));
        }
    };
    let needs = field_types
        .iter()
        .map(|t| quote_spanned!(t.span()=> || <#t as ::gc::Trace>::NEEDS_TRACE));
    let no_drop = if unsafe_drop {
        quote! {}
    } else {
        quote! {
            impl #plain_impl_g ::gc::__private::MustNotImplDrop for #name #ty_g #plain_where {}
        }
    };
    Ok(quote! {
        // SAFETY: generated: every traced field is traced (rule 1), NEEDS_TRACE is the OR of
        // the fields' (rule 2), fields behind unbarriered cells were rejected (rule 4), and
        // a Drop impl conflicts with the impl below unless the type opted out (rule 5).
        unsafe impl #impl_g ::gc::Trace for #name #ty_g #where_c {
            const NEEDS_TRACE: bool = false #(#needs)*;
            #[inline]
            #[allow(unused_variables)]
            fn trace(&self, __tracer: &mut ::gc::Tracer) {
                if !<Self as ::gc::Trace>::NEEDS_TRACE {
                    return;
                }
                #body
            }
        }
        #no_drop
    })
}

/// A destructuring pattern for `fields` and the trace calls for its traced fields.
fn fields_pattern(
    fields: &Fields,
    types: &mut Vec<Type>,
) -> syn::Result<(TokenStream2, TokenStream2)> {
    let mut binds = Vec::new();
    let mut calls = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let skip = gc_flags(&f.attrs)?.iter().any(|i| i == "unsafe_skip");
        // Bound by position, named fields too: a name made from the field's (`__f__pad`
        // for `_pad`) would trip `non_snake_case` in the user's crate.
        let bind = format_ident!("__f{}", i);
        binds.push((f.ident.clone(), bind.clone(), skip));
        if skip {
            continue;
        }
        check_field(f)?;
        types.push(f.ty.clone());
        let ty = &f.ty;
        calls.push(quote_spanned!(f.ty.span()=> <#ty as ::gc::Trace>::trace(#bind, __tracer);));
    }
    let pat = match fields {
        Fields::Named(_) => {
            let items = binds.iter().map(|(id, b, skip)| {
                if *skip {
                    quote! { #id: _ }
                } else {
                    quote! { #id: #b }
                }
            });
            quote! { { #(#items,)* } }
        }
        Fields::Unnamed(_) => {
            let items = binds.iter().map(|(_, b, skip)| {
                if *skip {
                    quote! { _ }
                } else {
                    quote! { #b }
                }
            });
            quote! { ( #(#items,)* ) }
        }
        Fields::Unit => quote! {},
    };
    Ok((pat, quote! { #(#calls)* }))
}
