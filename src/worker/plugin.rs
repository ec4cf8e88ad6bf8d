//! User worker functions from shared libraries (`file: libmyworker.so` in a setup).
//!
//! A user writes functions against [`crate::worker`] in a crate of type `cdylib` that depends
//! on `daq-engine`, and lists them with [`crate::export_functions!`]. The engine loads the
//! library at start-up (in the supervisor to validate the setup, and in each worker process
//! that uses it) and refuses it — with a message saying what to rebuild — when it was built
//! against another daq-engine version, another plugin ABI, or by another compiler, since Rust
//! trait objects have no stable layout across those.

use super::registry::{Function, Registry};
use std::path::Path;

/// Version of the plugin contract; bumped when [`PluginInfo`], the worker traits or the types
/// they hand over change. 2: a dtype's [`Field`](crate::dtype::Field) holds a
/// [`FieldType`](crate::dtype::FieldType) (bool, text, complex, byte order, subarrays), no
/// longer a bare `Scalar`: a library built against 1 would misread every field. 3:
/// [`Processor`](crate::worker::Processor) gained `process_from` and `accepts` (several
/// sources) and [`Exporter`](crate::worker::Exporter) `events_dropped`, which moves their
/// vtables. 4: [`WorkerError`](crate::worker::WorkerError) gained `Wiring`, which moves
/// `Other`: a library built against 3 returning `Other` crashed the worker (found by
/// `engine_user::a_shared_library_filter_runs_in_the_pipeline` with a stale build). 5:
/// `WorkerError` gained typed variants (`Output`, `Failed`, `Json`, `SlotSize`, `NoSink`,
/// `Stalled`, `LostRoom`) and [`WiringError`](crate::worker::WiringError) four, which
/// moves `Other` again. 6: [`Importer`](crate::worker::Importer) gained `pause` (a source
/// that holds its data while a run is paused), which moves its vtable.
pub const ABI_VERSION: u32 = 6;
/// The daq-engine version a plugin was built against (this crate's, expanded in the plugin).
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The compiler that built this crate.
pub const RUSTC_VERSION: &str = env!("DAQ_RUSTC_VERSION");
/// The symbol every plugin exports.
pub const SYMBOL: &[u8] = b"daq_engine_plugin_v1";

/// What a plugin library describes about itself.
#[repr(C)]
pub struct PluginInfo {
    /// [`ABI_VERSION`] as the plugin saw it.
    pub abi: u32,
    /// [`ENGINE_VERSION`] as the plugin saw it.
    pub engine_version: &'static str,
    /// [`RUSTC_VERSION`] as the plugin saw it.
    pub rustc_version: &'static str,
    /// The plugin's functions.
    pub functions: fn() -> Vec<Function>,
}

/// Declares the functions a plugin library exports:
///
/// ```ignore
/// daq_engine::export_functions![my_filter::FUNCTION, my_processor::FUNCTION];
/// ```
/// where each item is a [`Function`](crate::worker::Function) (a spec and a constructor).
#[macro_export]
macro_rules! export_functions {
    ($($f:expr),* $(,)?) => {
        #[no_mangle]
        pub extern "Rust" fn daq_engine_plugin_v1() -> &'static $crate::worker::plugin::PluginInfo {
            fn functions() -> ::std::vec::Vec<$crate::worker::Function> {
                ::std::vec![$($f),*]
            }
            static INFO: $crate::worker::plugin::PluginInfo = $crate::worker::plugin::PluginInfo {
                abi: $crate::worker::plugin::ABI_VERSION,
                engine_version: $crate::worker::plugin::ENGINE_VERSION,
                rustc_version: $crate::worker::plugin::RUSTC_VERSION,
                functions,
            };
            &INFO
        }
    };
}

/// Why a plugin could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be loaded.
    #[error("{path}: cannot load: {detail}")]
    Load {
        /// The library.
        path: String,
        /// The loader's message.
        detail: String,
    },
    /// It is not a daq-engine plugin.
    #[error("{path}: not a daq-engine worker library (no `daq_engine_plugin_v1`; list the functions with `daq_engine::export_functions![...]`)")]
    NotAPlugin {
        /// The library.
        path: String,
    },
    /// Built against something else.
    #[error("{path}: built for daq-engine {their_engine} (plugin ABI {their_abi}) with {their_rustc}; this is daq-engine {ENGINE_VERSION} (ABI {ABI_VERSION}) built with {RUSTC_VERSION}: rebuild the library against this daq-engine with the same compiler")]
    Mismatch {
        /// The library.
        path: String,
        /// Its ABI.
        their_abi: u32,
        /// Its engine version.
        their_engine: String,
        /// Its compiler.
        their_rustc: String,
    },
}

/// Loads the plugin at `path` and adds its functions to `registry`; returns their names.
/// The library stays loaded for the life of the process.
pub fn load(path: &Path, registry: &mut Registry) -> Result<Vec<&'static str>, PluginError> {
    let p = path.display().to_string();
    // SAFETY: loading a library runs its initialisers; the user asked for this file by naming
    // it in the setup, as with any plugin system.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| PluginError::Load {
        path: p.clone(),
        detail: e.to_string(),
    })?;
    // SAFETY: the symbol, when present, was generated by `export_functions!` with exactly this
    // signature; its name carries the ABI version, so an older layout has another name.
    let info: &'static PluginInfo = unsafe {
        let f = lib
            .get::<fn() -> &'static PluginInfo>(SYMBOL)
            .map_err(|_| PluginError::NotAPlugin { path: p.clone() })?;
        f()
    };
    if info.abi != ABI_VERSION
        || info.engine_version != ENGINE_VERSION
        || info.rustc_version != RUSTC_VERSION
    {
        return Err(PluginError::Mismatch {
            path: p,
            their_abi: info.abi,
            their_engine: info.engine_version.to_string(),
            their_rustc: info.rustc_version.to_string(),
        });
    }
    let functions = (info.functions)();
    let names = functions.iter().map(|f| f.spec.name).collect();
    for f in functions {
        registry.add(f);
    }
    // The functions' code lives in the library: keep it mapped for the rest of the process.
    std::mem::forget(lib);
    Ok(names)
}
