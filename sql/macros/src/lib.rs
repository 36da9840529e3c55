//! `#[sql_bounds]`: the sqlx bounds every piece of SQL generic over the
//! backend needs, added to an `impl` block or a function in one line.
//!
//! Use it through `edge_sql` (`#[edge_sql::sql_bounds]`), which documents
//! the set. Why an attribute and not only a trait: Rust does not carry a
//! trait's `where` clauses to its users when they bound other types (as
//! `i64: Encode<'q, DB>` does), so a trait alone would still make every
//! generic item repeat them. The attribute writes them into the item, and
//! the list lives here, once.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::parse::Parser as _;
use syn::{Generics, Ident, Item, WherePredicate, parse_macro_input};

/// Adds the sqlx bounds of `edge_sql::SqlDatabase` for the type parameter
/// named in the arguments (`DB` when none is named) to the `where` clause
/// of an `impl` block, a function or a trait.
#[proc_macro_attribute]
pub fn sql_bounds(args: TokenStream, item: TokenStream) -> TokenStream {
    let db: Ident = if args.is_empty() {
        Ident::new("DB", proc_macro2::Span::call_site())
    } else {
        parse_macro_input!(args as Ident)
    };
    let mut item = parse_macro_input!(item as Item);
    let generics = match &mut item {
        Item::Impl(item) => &mut item.generics,
        Item::Fn(item) => &mut item.sig.generics,
        Item::Trait(item) => &mut item.generics,
        other => {
            return syn::Error::new_spanned(
                other,
                "#[sql_bounds] goes on an impl block, a function or a trait",
            )
            .to_compile_error()
            .into();
        }
    };
    if let Err(err) = add_bounds(generics, &db) {
        return err.to_compile_error().into();
    }
    quote!(#item).into()
}

/// The set itself, for the type parameter `db`.
fn bounds(db: &Ident) -> TokenStream2 {
    let sqlx = quote!(::edge_sql::__private::sqlx);
    quote! {
        #db: ::edge_sql::SqlDatabase,
        for<'c> &'c mut <#db as #sqlx::Database>::Connection: #sqlx::Executor<'c, Database = #db>,
        for<'q> <#db as #sqlx::Database>::Arguments<'q>: #sqlx::IntoArguments<'q, #db>,
        usize: #sqlx::ColumnIndex<<#db as #sqlx::Database>::Row>,
        for<'q> i64: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> f64: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> bool: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> String: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> Vec<u8>: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> &'q str: #sqlx::Encode<'q, #db> + #sqlx::Type<#db>,
        for<'q> Option<i64>: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> Option<String>: #sqlx::Encode<'q, #db> + #sqlx::Decode<'q, #db> + #sqlx::Type<#db>,
        for<'q> Option<&'q str>: #sqlx::Encode<'q, #db> + #sqlx::Type<#db>,
    }
}

fn add_bounds(generics: &mut Generics, db: &Ident) -> syn::Result<()> {
    if !generics.type_params().any(|param| param.ident == *db) {
        return Err(syn::Error::new_spanned(
            db,
            format!("#[sql_bounds]: the item has no type parameter `{db}`"),
        ));
    }
    let predicates =
        syn::punctuated::Punctuated::<WherePredicate, syn::Token![,]>::parse_terminated
            .parse2(bounds(db))?;
    generics.make_where_clause().predicates.extend(predicates);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generics_of(item: &str) -> Generics {
        match syn::parse_str::<Item>(item) {
            Ok(Item::Impl(item)) => item.generics,
            Ok(Item::Fn(item)) => item.sig.generics,
            _ => panic!("not an impl or a fn: {item}"),
        }
    }

    #[test]
    fn the_bounds_join_those_already_written() {
        let mut generics = generics_of("impl<DB: Backend> Store<DB> where DB: Send {}");
        let db = Ident::new("DB", proc_macro2::Span::call_site());
        add_bounds(&mut generics, &db).expect("DB is a parameter");
        let predicates = &generics.where_clause.expect("a where clause").predicates;
        assert_eq!(predicates.len(), 1 + 13);
        let text = quote!(#predicates).to_string();
        assert!(text.contains("Executor"), "{text}");
        assert!(text.contains(":: edge_sql :: SqlDatabase"), "{text}");
    }

    #[test]
    fn a_missing_parameter_is_named() {
        let mut generics = generics_of("fn f<T>() {}");
        let db = Ident::new("DB", proc_macro2::Span::call_site());
        let err = add_bounds(&mut generics, &db).expect_err("no DB");
        assert!(err.to_string().contains("no type parameter `DB`"));
    }
}
