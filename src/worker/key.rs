//! Typed config keys: each key a function reads is declared once, as a const with its name,
//! type, default and doc, and read through that declaration.
//!
//! ```
//! use daq_engine::key;
//! use daq_engine::worker::{Config, Key};
//!
//! /// `n_events`: events to produce.
//! const N_EVENTS: Key<u64> = key!("n_events", 200000, "events to produce, then end");
//!
//! let config = Config::new("src", serde_json::Map::new());
//! assert_eq!(config.get(N_EVENTS).unwrap(), 200000);
//! assert_eq!(N_EVENTS.spec().default, Some("200000"));
//! ```
//!
//! The erased form, [`Key::spec`], is what a [`FunctionSpec`](super::FunctionSpec) lists, so
//! the setup check (the type, at the value's file position), `daq-engine functions` and the
//! README's function reference come from the same declaration as the read. The default's
//! text is made from the very literal the typed default is (by [`key!`](crate::key)); a key
//! without a default value either is required ([`Key`] through `key!(name, required, doc)`)
//! or reads as an `Option` ([`MaybeKey`], `key!(name, absent: "what absence means", doc)`,
//! whose text is shown in parentheses).
//!
//! A function with several keys declares them as a table, one a line, with
//! [`keys!`](crate::keys): `keys! { const LEVEL: Key<f64> = ("level", required, "…"); … }`.

use super::api::{Config, ConfigError};
use super::spec::{ConfigKey, KeyType};
use serde_json::Value;
use std::marker::PhantomData;

/// A type a config value is read as.
pub trait KeyValue: 'static {
    /// The declared type, checked by `daq-engine check` against the YAML value.
    const TYPE: KeyType;
    /// What a message calls a valid value.
    const WHAT: &'static str;
    /// How the default is written in a declaration.
    type Default: Copy + 'static;
    /// What a read returns (text is borrowed from the config).
    type Out<'a>;
    /// The value, if `v` is one.
    fn parse(v: &Value) -> Option<Self::Out<'_>>;
    /// The default as a read returns it.
    fn from_default<'a>(d: Self::Default) -> Self::Out<'a>;
}

macro_rules! copy_value {
    ($t:ty, $ty:expr, $what:expr, |$v:ident| $parse:expr) => {
        impl KeyValue for $t {
            const TYPE: KeyType = $ty;
            const WHAT: &'static str = $what;
            type Default = $t;
            type Out<'a> = $t;
            fn parse($v: &Value) -> Option<$t> {
                $parse
            }
            fn from_default<'a>(d: $t) -> Self::Out<'a> {
                d
            }
        }
    };
}

copy_value!(f64, KeyType::Float, "a number", |v| v.as_f64());
copy_value!(u64, KeyType::Int, "a whole number ≥ 0", |v| v.as_u64());
copy_value!(usize, KeyType::Int, "a whole number ≥ 0", |v| v
    .as_u64()
    .and_then(|u| usize::try_from(u).ok()));
copy_value!(u32, KeyType::Int, "a whole number 0 … 4294967295", |v| v
    .as_u64()
    .and_then(|u| u32::try_from(u).ok()));
copy_value!(i64, KeyType::Int, "a whole number", |v| v.as_i64());
copy_value!(bool, KeyType::Bool, "true or false", |v| v.as_bool());

impl KeyValue for str {
    const TYPE: KeyType = KeyType::Str;
    const WHAT: &'static str = "a string";
    type Default = &'static str;
    type Out<'a> = &'a str;
    fn parse(v: &Value) -> Option<&str> {
        v.as_str()
    }
    fn from_default<'a>(d: &'static str) -> Self::Out<'a> {
        d
    }
}

/// A list of strings (one string counts as a list of one).
pub enum Strings {}

impl KeyValue for Strings {
    const TYPE: KeyType = KeyType::List;
    const WHAT: &'static str = "a list of strings";
    type Default = &'static [&'static str];
    type Out<'a> = Vec<String>;
    fn parse(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => a.iter().map(|x| x.as_str().map(String::from)).collect(),
            _ => None,
        }
    }
    fn from_default<'a>(d: &'static [&'static str]) -> Self::Out<'a> {
        d.iter().map(|s| s.to_string()).collect()
    }
}

/// A list of numbers.
pub enum Numbers {}

impl KeyValue for Numbers {
    const TYPE: KeyType = KeyType::List;
    const WHAT: &'static str = "a list of numbers";
    type Default = &'static [f64];
    type Out<'a> = Vec<f64>;
    fn parse(v: &Value) -> Option<Vec<f64>> {
        v.as_array()?.iter().map(|x| x.as_f64()).collect()
    }
    fn from_default<'a>(d: &'static [f64]) -> Self::Out<'a> {
        d.to_vec()
    }
}

/// One number for every channel, or a list of one number per channel.
pub enum PerChannel {}

/// A [`PerChannel`] value as read.
#[derive(Clone, Debug, PartialEq)]
pub enum PerChannelValue {
    /// The same number for every channel.
    All(f64),
    /// One number per channel.
    Each(Vec<f64>),
}

impl KeyValue for PerChannel {
    const TYPE: KeyType = KeyType::Any;
    const WHAT: &'static str = "a number or a list of numbers";
    type Default = f64;
    type Out<'a> = PerChannelValue;
    fn parse(v: &Value) -> Option<PerChannelValue> {
        match v {
            Value::Array(_) => Numbers::parse(v).map(PerChannelValue::Each),
            _ => v.as_f64().map(PerChannelValue::All),
        }
    }
    fn from_default<'a>(d: f64) -> Self::Out<'a> {
        PerChannelValue::All(d)
    }
}

/// A mapping, read as its JSON value (the function reads the entries).
pub enum Mapping {}

impl KeyValue for Mapping {
    const TYPE: KeyType = KeyType::Map;
    const WHAT: &'static str = "a mapping";
    type Default = ();
    type Out<'a> = &'a serde_json::Map<String, Value>;
    fn parse(v: &Value) -> Option<&serde_json::Map<String, Value>> {
        v.as_object()
    }
    fn from_default<'a>(_: ()) -> Self::Out<'a> {
        unreachable!("a mapping key is required or may be absent; it has no default value")
    }
}

/// A list, read as its JSON items (the function reads them).
pub enum Items {}

impl KeyValue for Items {
    const TYPE: KeyType = KeyType::List;
    const WHAT: &'static str = "a list";
    type Default = &'static [Value];
    type Out<'a> = &'a [Value];
    fn parse(v: &Value) -> Option<&[Value]> {
        v.as_array().map(Vec::as_slice)
    }
    fn from_default<'a>(d: &'static [Value]) -> Self::Out<'a> {
        d
    }
}

/// `Clone`, `Copy` and `Debug` of a key type for every `T` (a derive would ask `T: Clone`,
/// which `str` is not); `Debug` shows `Key(name: Type)`.
macro_rules! copy_and_debug {
    ($key:ident) => {
        impl<T: KeyValue + ?Sized> Clone for $key<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T: KeyValue + ?Sized> Copy for $key<T> {}

        impl<T: KeyValue + ?Sized> std::fmt::Debug for $key<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({}: {:?})", stringify!($key), self.name, T::TYPE)
            }
        }
    };
}

#[derive(Debug)]
enum Fallback<D> {
    /// This value, shown as this text.
    Value(D, &'static str),
    /// The setup must give the key.
    Required,
}

impl<D: Copy> Clone for Fallback<D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D: Copy> Copy for Fallback<D> {}

/// A config key read as `T`: with a default value (`key!(name, default, doc)`), or required
/// (`key!(name, required, doc)`). [`Config::get`] returns the value or the default.
pub struct Key<T: KeyValue + ?Sized> {
    /// The key as written under `config:`.
    pub name: &'static str,
    /// One line: what it does, with its unit.
    pub doc: &'static str,
    fallback: Fallback<T::Default>,
    ty: PhantomData<fn() -> *const T>,
}

copy_and_debug!(Key);

/// Two keys are the same when they declare the same: name, type, default and doc.
impl<T: KeyValue + ?Sized> PartialEq for Key<T> {
    fn eq(&self, other: &Self) -> bool {
        self.spec() == other.spec()
    }
}

impl<T: KeyValue + ?Sized> Eq for Key<T> {}

impl<T: KeyValue + ?Sized> Key<T> {
    /// A key the setup must give.
    pub const fn required(name: &'static str, doc: &'static str) -> Self {
        Key {
            name,
            doc,
            fallback: Fallback::Required,
            ty: PhantomData,
        }
    }

    /// A key with a default value, shown as `text` ([`key!`](crate::key) makes the text
    /// from the default's own literal).
    pub const fn with_default(
        name: &'static str,
        default: T::Default,
        text: &'static str,
        doc: &'static str,
    ) -> Self {
        Key {
            name,
            doc,
            fallback: Fallback::Value(default, text),
            ty: PhantomData,
        }
    }

    /// The default value, `None` for a required key.
    pub fn default_value<'a>(&self) -> Option<T::Out<'a>> {
        match self.fallback {
            Fallback::Value(d, _) => Some(T::from_default(d)),
            Fallback::Required => None,
        }
    }

    /// The declaration as a [`FunctionSpec`](super::FunctionSpec) lists it.
    pub const fn spec(&self) -> ConfigKey {
        let (required, default) = match self.fallback {
            Fallback::Value(_, text) => (false, Some(text)),
            Fallback::Required => (true, None),
        };
        ConfigKey {
            name: self.name,
            ty: T::TYPE,
            required,
            default,
            doc: self.doc,
        }
    }
}

/// A config key that may be absent, read as `Option<T>`: absence means something that is
/// not one value (all fields, the source buffer's name, no limit), said in `absent`.
pub struct MaybeKey<T: KeyValue + ?Sized> {
    /// The key as written under `config:`.
    pub name: &'static str,
    /// One line: what it does, with its unit.
    pub doc: &'static str,
    /// What leaving it out means, in parentheses (shown as its default).
    pub absent: &'static str,
    ty: PhantomData<fn() -> *const T>,
}

copy_and_debug!(MaybeKey);

impl<T: KeyValue + ?Sized> MaybeKey<T> {
    /// A key that may be absent; `absent` says, in parentheses, what that means.
    pub const fn new(name: &'static str, absent: &'static str, doc: &'static str) -> Self {
        MaybeKey {
            name,
            doc,
            absent,
            ty: PhantomData,
        }
    }

    /// The declaration as a [`FunctionSpec`](super::FunctionSpec) lists it.
    pub const fn spec(&self) -> ConfigKey {
        ConfigKey {
            name: self.name,
            ty: T::TYPE,
            required: false,
            default: Some(self.absent),
            doc: self.doc,
        }
    }
}

/// What [`Config::get`] reads: a typed [`Key`] (its value or default), a [`MaybeKey`] (its
/// value, if given), or, for plugins written against the untyped API, a key name (the raw
/// JSON value, if present).
pub trait Lookup {
    /// What the read returns.
    type Out<'a>;
    /// Reads `self` from `config`.
    fn look_up(self, config: &Config) -> Self::Out<'_>;
}

impl Lookup for &str {
    type Out<'a> = Option<&'a Value>;
    fn look_up(self, config: &Config) -> Option<&Value> {
        config.values.get(self)
    }
}

impl<T: KeyValue + ?Sized> Lookup for Key<T> {
    type Out<'a> = Result<T::Out<'a>, ConfigError>;
    fn look_up(self, config: &Config) -> Result<T::Out<'_>, ConfigError> {
        match given::<T>(config, self.name)? {
            Some(v) => Ok(v),
            None => self
                .default_value()
                .ok_or_else(|| config.error(self.name, "is required")),
        }
    }
}

impl<T: KeyValue + ?Sized> Lookup for MaybeKey<T> {
    type Out<'a> = Result<Option<T::Out<'a>>, ConfigError>;
    fn look_up(self, config: &Config) -> Result<Option<T::Out<'_>>, ConfigError> {
        given::<T>(config, self.name)
    }
}

/// The value of `name` as `T` if the config gives it (null counts as not given).
pub(crate) fn given<'a, T: KeyValue + ?Sized>(
    config: &'a Config,
    name: &str,
) -> Result<Option<T::Out<'a>>, ConfigError> {
    match config.values.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::parse(v)
            .map(Some)
            .ok_or_else(|| config.error(name, format!("expected {}, found {v}", T::WHAT))),
    }
}

/// Declares a typed config key, once: `key!(name, default, doc)` (a literal default; a list
/// of literals for a list key), `key!(name, required, doc)`, or
/// `key!(name, absent: "what absence means", doc)` (a [`MaybeKey`](crate::worker::MaybeKey)).
/// The default's text in the docs is made from the default's own literal.
#[macro_export]
macro_rules! key {
    ($name:literal, required, $doc:expr $(,)?) => {
        $crate::worker::Key::required($name, $doc)
    };
    ($name:literal, absent: $meaning:literal, $doc:expr $(,)?) => {
        $crate::worker::MaybeKey::new($name, concat!("(", $meaning, ")"), $doc)
    };
    ($name:literal, [], $doc:expr $(,)?) => {
        $crate::worker::Key::with_default($name, &[] as &[_], "[]", $doc)
    };
    ($name:literal, [$first:literal $(, $rest:literal)* $(,)?], $doc:expr $(,)?) => {
        $crate::worker::Key::with_default(
            $name,
            &[$first $(, $rest)*] as &[_],
            concat!("[", $first $(, ", ", $rest)*, "]"),
            $doc,
        )
    };
    ($name:literal, $default:literal, $doc:expr $(,)?) => {
        $crate::worker::Key::with_default($name, $default, concat!($default), $doc)
    };
}

/// Declares a table of typed config keys, one a line, each with what [`key!`](crate::key)
/// takes in its parentheses (a default, `required`, `absent: "…"` or a list):
///
/// ```
/// use daq_engine::keys;
/// use daq_engine::worker::{Key, MaybeKey};
///
/// keys! {
///     /// The channel a trigger looks at.
///     const CHANNEL: Key<str> = ("trigger_channel", required, "A..D");
///     pub const LEVEL: Key<f64> = ("trigger_level", -0.05, "trigger level (V)");
///     const NAME: MaybeKey<str> = ("filename", absent: "the source's name", "file");
/// }
/// assert_eq!(LEVEL.spec().default, Some("-0.05"));
/// assert!(CHANNEL.spec().required);
/// assert_eq!(NAME.spec().default, Some("(the source's name)"));
/// ```
///
/// It is [`key!`](crate::key) in a form rustfmt leaves alone, so a function's key block
/// reads as a table instead of five lines a key.
///
/// A first line `list KEYS;` (or `list pub KEYS;`, with a visibility) also declares `KEYS`,
/// the declarations of the whole table in its order, as a
/// [`FunctionSpec`](super::FunctionSpec) lists them: a function whose keys are the table
/// names each key once. A function whose keys are its own table and keys it shares with
/// others joins the lists with [`join_keys!`](crate::join_keys).
///
/// ```
/// use daq_engine::keys;
/// use daq_engine::worker::{FunctionSpec, Key, Template};
///
/// keys! {
///     list KEYS;
///     const N: Key<u64> = ("n_events", 0, "events, then end; 0 = no limit");
///     const RATE: Key<f64> = ("rate", 100.0, "events per second");
/// }
/// const SPEC: FunctionSpec = FunctionSpec::new("my.source", Template::Importer, "…", KEYS);
/// assert_eq!(SPEC.keys.iter().map(|k| k.name).collect::<Vec<_>>(), ["n_events", "rate"]);
/// # let _ = (N, RATE);
/// ```
#[macro_export]
macro_rules! keys {
    (list $list_vis:vis $list:ident; $($(#[$attr:meta])* $vis:vis const $name:ident: $ty:ty = ($($args:tt)*);)*) => {
        /// The keys of this table, in its order, as a function's declaration lists them.
        $list_vis const $list: &[$crate::worker::ConfigKey] = &[$($name.spec()),*];
        $crate::keys! { $($(#[$attr])* $vis const $name: $ty = ($($args)*);)* }
    };
    ($($(#[$attr:meta])* $vis:vis const $name:ident: $ty:ty = ($($args:tt)*);)*) => {
        $($(#[$attr])* $vis const $name: $ty = $crate::key!($($args)*);)*
    };
}

/// Key lists (each a `&[ConfigKey]`: a [`keys!`](crate::keys) table's `list`, or
/// `&[KEY.spec()]`), one after the other, as one `&'static [ConfigKey]`, joined at compile
/// time: a function whose keys are its own table followed by keys others share names each
/// key once.
///
/// ```
/// use daq_engine::{join_keys, keys};
/// use daq_engine::worker::{ConfigKey, FunctionSpec, Key, Template};
///
/// const SEED: Key<i64> = daq_engine::key!("seed", 1, "random seed");
/// keys! {
///     list OWN;
///     const RATE: Key<f64> = ("rate", 100.0, "events per second");
///     const N: Key<u64> = ("n_events", 0, "events, then end; 0 = no limit");
/// }
/// const KEYS: &[ConfigKey] = join_keys!(OWN, &[SEED.spec()]);
/// const SPEC: FunctionSpec = FunctionSpec::new("my.source", Template::Importer, "…", KEYS);
/// let names: Vec<_> = SPEC.keys.iter().map(|k| k.name).collect();
/// assert_eq!(names, ["rate", "n_events", "seed"]);
/// # let _ = (RATE, N);
/// ```
#[macro_export]
macro_rules! join_keys {
    ($($list:expr),* $(,)?) => {{
        const LISTS: &[&[$crate::worker::ConfigKey]] = &[$($list),*];
        const KEYS: [$crate::worker::ConfigKey; $crate::worker::ConfigKey::count(LISTS)] =
            $crate::worker::ConfigKey::join(LISTS);
        &KEYS
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: Key<u64> = crate::key!("n_events", 200000, "events");
    const LEVEL: Key<f64> = crate::key!("level", -0.05, "volts");
    const EDGE: Key<str> = crate::key!("edge", "rising", "rising or falling");
    const CHANNELS: Key<Strings> = crate::key!("channels", ["A", "B"], "channels");
    const NAME: MaybeKey<str> = crate::key!("filename", absent: "the source's name", "file");
    const NEED: Key<f64> = crate::key!("threshold", required, "level");

    fn cfg(v: Value) -> Config {
        Config::from_json("w", v)
    }

    #[test]
    fn reads_value_or_declared_default() {
        let c = cfg(json!({"n_events": 5, "edge": "falling", "threshold": 1}));
        assert_eq!(c.get(N).unwrap(), 5);
        assert_eq!(c.get(LEVEL).unwrap(), -0.05);
        assert_eq!(c.get(EDGE).unwrap(), "falling");
        assert_eq!(c.get(CHANNELS).unwrap(), vec!["A", "B"]);
        assert_eq!(c.get(NAME).unwrap(), None);
        assert_eq!(c.get(NEED).unwrap(), 1.0);
        assert_eq!(c.get("edge"), Some(&json!("falling")));
        let e = cfg(json!({})).get(NEED).unwrap_err();
        assert_eq!(
            e.to_string(),
            "worker 'w', config key 'threshold': is required"
        );
    }

    #[test]
    fn a_wrong_type_is_an_error_naming_the_key() {
        let c = cfg(json!({"n_events": "many", "edge": 3, "filename": [1]}));
        assert_eq!(
            c.get(N).unwrap_err().to_string(),
            "worker 'w', config key 'n_events': expected a whole number ≥ 0, found \"many\""
        );
        assert!(c.get(EDGE).is_err());
        assert!(c.get(NAME).is_err());
    }

    crate::keys! {
        list pub(crate) T_KEYS;
        /// The table form of the keys above, and a list key.
        const T_N: Key<u64> = ("n_events", 200000, "events");
        const T_LEVEL: Key<f64> = ("level", -0.05, "volts");
        const T_NAME: MaybeKey<str> = ("filename", absent: "the source's name", "file");
        pub(crate) const T_NEED: Key<f64> = ("threshold", required, "level");
        const T_NONE: Key<Strings> = ("none", [], "no channels");
        const T_CHANNELS: Key<Strings> = ("channels", ["A", "B"], "channels");
    }

    #[test]
    fn a_table_declares_the_same_keys() {
        assert_eq!(T_N.spec(), N.spec());
        assert_eq!(T_LEVEL.spec(), LEVEL.spec());
        assert_eq!(T_NAME.spec(), NAME.spec());
        assert_eq!(T_NEED.spec(), NEED.spec());
        assert_eq!(T_CHANNELS.spec(), CHANNELS.spec());
        assert_eq!(T_NONE.spec().default, Some("[]"));
        assert_eq!(T_NONE.default_value(), Some(Vec::<String>::new()));
        assert_eq!(
            format!("{T_N:?} {T_NAME:?}"),
            "Key(n_events: Int) MaybeKey(filename: Str)"
        );
    }

    #[test]
    fn joined_lists_keep_every_key_in_their_order() {
        const JOINED: &[ConfigKey] =
            crate::join_keys!(&[], &[N.spec()], T_KEYS, &[], &[EDGE.spec()]);
        let names: Vec<&str> = JOINED.iter().map(|k| k.name).collect();
        assert_eq!(
            names,
            [
                "n_events",
                "n_events",
                "level",
                "filename",
                "threshold",
                "none",
                "channels",
                "edge"
            ]
        );
        assert_eq!(JOINED[3], T_NAME.spec());
        assert_eq!(crate::join_keys!(), &[] as &[ConfigKey]);
    }

    #[test]
    fn the_spec_shows_the_default_literal() {
        assert_eq!(N.spec().default, Some("200000"));
        assert_eq!(LEVEL.spec().default, Some("-0.05"));
        assert_eq!(EDGE.spec().default, Some("rising"));
        assert_eq!(CHANNELS.spec().default, Some("[A, B]"));
        assert_eq!(NAME.spec().default, Some("(the source's name)"));
        assert_eq!((NEED.spec().required, NEED.spec().default), (true, None));
        assert_eq!(N.spec().ty, KeyType::Int);
        assert_eq!(CHANNELS.spec().ty, KeyType::List);
    }
}
