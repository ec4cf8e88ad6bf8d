//! Catalogs of functions for the setup tests, shaped like the engine's built-ins but
//! declared here: a function and its keys in one line each.

#![allow(dead_code)]

use daq_engine::worker::{Arity, Catalog, ConfigKey, FunctionSpec, KeyType, Template};

/// Function `name` of `template` with these arities and `keys` (no summary).
pub const fn spec(
    name: &'static str,
    template: Template,
    (sources, sinks, observes): (Arity, Arity, Arity),
    keys: &'static [ConfigKey],
) -> FunctionSpec {
    FunctionSpec {
        sources,
        sinks,
        observes,
        ..FunctionSpec::new(name, template, "", keys)
    }
}

/// Config key `name` of type `ty` without a default.
pub const fn key(name: &'static str, ty: KeyType, required: bool) -> ConfigKey {
    ConfigKey {
        name,
        ty,
        required,
        default: None,
        doc: "test key",
    }
}

/// The functions of a static list as a `Catalog` (`[FunctionSpec]` implements it but is
/// unsized, so it cannot be a `&dyn Catalog`).
pub struct ListCatalog(pub &'static [FunctionSpec]);

impl Catalog for ListCatalog {
    fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.0.function(name)
    }
    fn names(&self) -> Vec<&'static str> {
        self.0.names()
    }
}
