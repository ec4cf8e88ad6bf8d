//! Workers: the templates (Importer, Filter, Processor, Exporter, Observer) that user and
//! built-in functions are written against, and the declarations the setup validator checks.

pub mod api;
pub mod key;
pub mod plugin;
pub mod registry;
pub mod spec;

pub use api::{
    BufferShape, BuildContext, Config, ConfigError, Emit, EventMut, EventRef, Exporter, Filter,
    Importer, Observer, Processor, Produced, SinkMask, WiringError, WorkerError,
};
pub use key::{
    Items, Key, KeyValue, Lookup, Mapping, MaybeKey, Numbers, PerChannel, PerChannelValue, Strings,
};
pub use registry::{Alias, Build, Check, Function, Registry};
pub use spec::{
    opt, Arity, Catalog, ConfigKey, FunctionSpec, KeyType, Template, WorkerFiles, Writes,
};

/// Writes a worker's result file `path` by a rename ([`crate::fsio::replace`]), so a reader
/// never sees a half-written file; a failure is [`WorkerError::Io`] naming the file.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), WorkerError> {
    crate::fsio::replace(path, bytes).map_err(|source| WorkerError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// True when `file` names a Python worker file.
pub fn is_python(file: Option<&std::path::Path>) -> bool {
    file.is_some_and(|f| f.extension().is_some_and(|e| e == "py"))
}
