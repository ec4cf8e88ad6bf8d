//! Workers: the templates (Importer, Filter, Processor, Exporter, Observer) that user and
//! built-in functions are written against, and the declarations the setup validator checks.

pub mod api;
pub mod key;
pub mod spec;

pub use api::{
    BufferShape, BuildContext, Config, ConfigError, Emit, EventMut, EventRef, Exporter, Filter,
    Importer, Observer, Processor, Produced, SinkMask, WorkerError,
};
pub use key::{
    Items, Key, KeyValue, Lookup, Mapping, MaybeKey, Numbers, PerChannel, PerChannelValue, Strings,
};
pub use spec::{opt, Arity, Catalog, ConfigKey, FunctionSpec, KeyType, Template};
