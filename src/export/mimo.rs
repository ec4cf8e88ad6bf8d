//! mimoCoRB2's own data files (`mimocorb2/functions/data.py`, "mimo files") and the three
//! built-ins around them: `data.export` writes one, `data.simulate_importer` replays one paced
//! by its timestamps, `data.clocked_importer` replays one at a fixed rate.
//!
//! # The format (mimoCoRB2 0.0.4, `mimoFile`)
//! A Python pickle of the dict `{'version': 1, 'header': 'This is a mimoCoRB file',
//! 'data_dtype': numpy.dtype, 'data_length': int, 'metadata_dtype': numpy.dtype,
//! 'metadata_length': 1}`, then per event the data records (`data_length × itemsize` bytes,
//! numpy's layout) followed by the metadata record (counter int64, timestamp float64,
//! deadtime float64). `data.export` writes `<source buffer>.mimo` in the run directory; the
//! header is pickle protocol 2 (numpy dtypes as numpy itself reduces them), which
//! `pickle.load` and so mimoCoRB2's `mimoFile.from_file` read.
//!
//! Reading takes what Python writes (protocols 2 to 5: frames, memo, `STACK_GLOBAL`): a
//! small pickle machine for the opcodes a dict of ints, strings and numpy dtypes uses, and
//! nothing else (no object is ever constructed; an unknown opcode is an error).
//!
//! # The importers, as mimoCoRB2 runs them
//! Both hand each event's data on; like mimoCoRB2's Importer the counter starts again at 0
//! and the timestamp is the time of sending. `data.simulate_importer` keeps the recorded
//! gaps between timestamps (measured from the first event, so delays do not add up; earlier
//! timestamps than the last come at once, "bunches"); `data.clocked_importer` sends `rate`
//! events per second, evenly (`uniform`) or with exponential gaps (`poisson`: a Poisson
//! process of that rate — mimoCoRB2 slept `np.random.poisson(1/rate)` whole seconds, which
//! is 0 s for most events at any rate above 1 Hz). A relative `filename` is looked up next
//! to the setup file (mimoCoRB2: the working directory, usually the same).
//!
//! Guarantees: per event nothing is allocated (the readers and the writer are buffered,
//! with buffers made in `build`); a file that ends inside a record ends the replay there, as
//! mimoCoRB2's reader does; a header that does not match the sink is refused before the run.

use crate::dtype::{Base, Dtype, FieldType, Metadata, Shape};
use crate::keys;
use crate::worker::{
    Build, BuildContext, Check, EventMut, EventRef, Exporter, Function, FunctionSpec, Importer,
    Key, Produced, Template, WorkerError,
};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a mimoCoRB2 file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MimoError {
    /// The bytes are not a header as mimoCoRB2 writes it; says what was found instead.
    #[error("not a mimoCoRB2 data file as mimoCoRB2 0.0.4 writes it: {0}")]
    NotMimo(String),
    /// The file could not be opened.
    #[error("{}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The file's header could not be read.
    #[error("{}: {source}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// Why not ([`MimoError::NotMimo`], or the read failed).
        source: Box<MimoError>,
    },
    /// The file to go on after holds another buffer's header.
    #[error("{} exists with another header: not this worker's file", path.display())]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
}

/// The header text mimoCoRB2 writes.
const HEADER: &str = "This is a mimoCoRB file";

/// A value of the pickle subset a mimo header uses.
#[derive(Clone, Debug, PartialEq)]
enum Py {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    Tuple(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    /// `module.name`.
    Global(String, String),
    /// `class(*args)` with `__setstate__(state)`.
    Object(Box<Py>, Box<Py>, Option<Box<Py>>),
}

/// Why a mimo file cannot be read.
fn bad(what: impl std::fmt::Display) -> MimoError {
    MimoError::NotMimo(what.to_string())
}

/// How deep a header's values may nest and how many it may make in all (memo copies
/// included). numpy's reduction of a dtype nests 6 deep (a subarray's element type inside
/// its state inside the field list) and a header of a thousand fields makes some ten
/// thousand values: a pickle past these is damaged or made to exhaust the stack or the
/// memory, and is refused before it does.
const MAX_DEPTH: u32 = 32;
const MAX_VALUES: u64 = 1 << 20;

/// A value on the pickle machine's stack with how deep it nests and how many values it
/// holds, so that no value past [`MAX_DEPTH`] or [`MAX_VALUES`] is ever made.
#[derive(Clone)]
struct Weighed {
    py: Py,
    depth: u32,
    values: u64,
}

impl Weighed {
    fn leaf(py: Py) -> Weighed {
        Weighed {
            py,
            depth: 1,
            values: 1,
        }
    }

    /// `self` holding `part` besides what it held.
    fn holding(&mut self, part: &Weighed) -> Result<(), MimoError> {
        grow(&mut self.depth, &mut self.values, part)
    }

    /// A container `make` builds from `parts`.
    fn of(parts: Vec<Weighed>, make: impl FnOnce(Vec<Py>) -> Py) -> Result<Weighed, MimoError> {
        let mut v = Weighed::leaf(Py::None);
        for p in &parts {
            v.holding(p)?;
        }
        v.py = make(parts.into_iter().map(|p| p.py).collect());
        Ok(v)
    }
}

/// The depth and size of a value that comes to hold `part` besides what it held.
fn grow(depth: &mut u32, values: &mut u64, part: &Weighed) -> Result<(), MimoError> {
    *depth = (*depth).max(part.depth + 1);
    *values += part.values;
    if *depth > MAX_DEPTH {
        return Err(bad(format!(
            "pickle values nested deeper than {MAX_DEPTH} (no mimo header does)"
        )));
    }
    Ok(())
}

/// Runs the pickle at the start of `r`; returns the value and the bytes it took.
fn unpickle(r: &mut impl Read) -> Result<(Py, usize), MimoError> {
    let mut stack: Vec<Weighed> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: Vec<Option<Weighed>> = Vec::new();
    let mut used = 0usize;
    // Values made so far: one a value or container, a copy out of or into the memo whole.
    let mut made = 0u64;
    let mut take = |n: usize, used: &mut usize| -> Result<Vec<u8>, MimoError> {
        if n > 1 << 20 {
            return Err(bad("a pickle item larger than 1 MiB"));
        }
        let mut b = vec![0u8; n];
        r.read_exact(&mut b)
            .map_err(|e| bad(format!("header: {e}")))?;
        *used += n;
        Ok(b)
    };
    let mut count = |values: u64| -> Result<(), MimoError> {
        made += values;
        if made > MAX_VALUES {
            return Err(bad(format!(
                "a pickle larger than {MAX_VALUES} values (no mimo header is)"
            )));
        }
        Ok(())
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let pop = |stack: &mut Vec<Weighed>| stack.pop().ok_or_else(|| bad("pickle stack underflow"));
    let since_mark =
        |stack: &mut Vec<Weighed>, marks: &mut Vec<usize>| -> Result<Vec<Weighed>, MimoError> {
            let m = marks.pop().ok_or_else(|| bad("pickle without its mark"))?;
            if m > stack.len() {
                return Err(bad("pickle mark past the stack"));
            }
            Ok(stack.split_off(m))
        };
    let put = |memo: &mut Vec<Option<Weighed>>, i: usize, v: Weighed| -> Result<(), MimoError> {
        if i > 1 << 16 {
            return Err(bad("pickle memo index too large"));
        }
        if memo.len() <= i {
            memo.resize(i + 1, None);
        }
        memo[i] = Some(v);
        Ok(())
    };
    let leaf = |py| Some(Weighed::leaf(py));
    loop {
        let op = take(1, &mut used)?[0];
        // A value this op makes, pushed and counted below.
        let made = match op {
            // PROTO, FRAME: their argument says nothing a header needs.
            0x80 | 0x95 => {
                take(if op == 0x80 { 1 } else { 8 }, &mut used)?;
                None
            }
            b'.' => return Ok((pop(&mut stack)?.py, used)), // STOP
            b'(' => {
                marks.push(stack.len()); // MARK
                None
            }
            b'N' => leaf(Py::None),
            0x88 => leaf(Py::Bool(true)),
            0x89 => leaf(Py::Bool(false)),
            b'K' => leaf(Py::Int(i64::from(take(1, &mut used)?[0]))),
            b'M' => leaf(Py::Int(le(&take(2, &mut used)?) as i64)),
            b'J' => leaf(Py::Int(i64::from(le(&take(4, &mut used)?) as u32 as i32))),
            0x8c | b'X' | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let n = le(&take(width, &mut used)?) as usize;
                let s = String::from_utf8(take(n, &mut used)?)
                    .map_err(|_| bad("a pickled string is not UTF-8"))?;
                leaf(Py::Str(s))
            }
            b'c' => {
                // GLOBAL: "module\nname\n".
                let mut text = Vec::new();
                let mut lines = 0;
                while lines < 2 {
                    let b = take(1, &mut used)?[0];
                    if b == b'\n' {
                        lines += 1;
                    }
                    text.push(b);
                    if text.len() > 256 {
                        return Err(bad("a pickled global name is too long"));
                    }
                }
                let text = String::from_utf8_lossy(&text).into_owned();
                let mut parts = text.split('\n');
                let m = parts.next().unwrap_or_default().to_string();
                let n = parts.next().unwrap_or_default().to_string();
                leaf(Py::Global(m, n))
            }
            0x93 => {
                // STACK_GLOBAL
                let (n, m) = (pop(&mut stack)?, pop(&mut stack)?);
                match (m.py, n.py) {
                    (Py::Str(m), Py::Str(n)) => leaf(Py::Global(m, n)),
                    _ => return Err(bad("STACK_GLOBAL without two names")),
                }
            }
            b')' => leaf(Py::Tuple(Vec::new())),
            b't' => {
                let items = since_mark(&mut stack, &mut marks)?;
                Some(Weighed::of(items, Py::Tuple)?)
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err(bad("pickle stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                Some(Weighed::of(items, Py::Tuple)?)
            }
            b'}' => leaf(Py::Dict(Vec::new())),
            b'u' | b's' => {
                let items = if op == b'u' {
                    since_mark(&mut stack, &mut marks)?
                } else {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                };
                if items.len() % 2 != 0 {
                    return Err(bad("SETITEMS with an odd number of items"));
                }
                let Some(Weighed {
                    py: Py::Dict(d),
                    depth,
                    values,
                }) = stack.last_mut()
                else {
                    return Err(bad("SETITEMS without a dict"));
                };
                for item in &items {
                    grow(depth, values, item)?;
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k.py, v.py));
                }
                None
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let class = pop(&mut stack)?;
                Some(Weighed::of(vec![class, args], |mut p| {
                    let args = p.pop().unwrap_or(Py::None);
                    let class = p.pop().unwrap_or(Py::None);
                    Py::Object(Box::new(class), Box::new(args), None)
                })?)
            }
            b'b' => {
                let state = pop(&mut stack)?;
                let Some(Weighed {
                    py: Py::Object(_, _, s),
                    depth,
                    values,
                }) = stack.last_mut()
                else {
                    return Err(bad("BUILD without an object"));
                };
                grow(depth, values, &state)?;
                *s = Some(Box::new(state.py));
                None
            }
            // MEMOIZE (at the next index), PUT (at the index that follows, 1 or 4 bytes).
            0x94 | b'q' | b'r' => {
                let (i, what) = match op {
                    0x94 => (memo.len(), "MEMOIZE on nothing"),
                    b'q' => (le(&take(1, &mut used)?) as usize, "PUT on nothing"),
                    _ => (le(&take(4, &mut used)?) as usize, "PUT on nothing"),
                };
                let top = stack.last().cloned().ok_or_else(|| bad(what))?;
                count(top.values)?;
                put(&mut memo, i, top)?;
                None
            }
            b'h' | b'j' => {
                let i = le(&take(if op == b'h' { 1 } else { 4 }, &mut used)?) as usize;
                let v = memo
                    .get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| bad(format!("pickle memo {i} is empty")))?;
                count(v.values)?;
                stack.push(v);
                None
            }
            other => {
                return Err(bad(format!(
                    "pickle opcode 0x{other:02x} (not one a mimo header uses)"
                )))
            }
        };
        if let Some(v) = made {
            count(1)?;
            stack.push(v);
        }
    }
}

/// Our field type of a pickled numpy field dtype: an element (type string and byte order,
/// `('f4', False, True)` with state `(3, '<', None, …)`) or a subarray of one (`('V8', …)`
/// with state `(3, '|', (element dtype, shape), …)`).
fn field_type_of(p: &Py) -> Result<FieldType, MimoError> {
    let Py::Object(class, args, state) = p else {
        return Err(bad("a field type is not a numpy dtype"));
    };
    if !matches!(&**class, Py::Global(_, n) if n == "dtype") {
        return Err(bad(format!("a field type is {class:?}, not numpy.dtype")));
    }
    let Py::Tuple(a) = &**args else {
        return Err(bad("numpy.dtype without arguments"));
    };
    let Some(Py::Str(code)) = a.first() else {
        return Err(bad("numpy.dtype without its type string"));
    };
    let state = match state.as_deref() {
        Some(Py::Tuple(s)) => s.as_slice(),
        _ => &[],
    };
    if let Some(Py::Tuple(sub)) = state.get(2) {
        // A subarray: (element dtype, shape).
        let (Some(elem), Some(Py::Tuple(dims))) = (sub.first(), sub.get(1)) else {
            return Err(bad("a subarray dtype without its element and shape"));
        };
        let elem = field_type_of(elem)?;
        let dims: Vec<u32> = dims
            .iter()
            .map(|d| match d {
                Py::Int(n) => u32::try_from(*n).map_err(|_| bad("a subarray dimension < 0")),
                _ => Err(bad("a subarray dimension is not a number")),
            })
            .collect::<Result<_, _>>()?;
        let shape = Shape::new(&dims).ok_or_else(|| bad(format!("subarray shape {dims:?}")))?;
        return FieldType::new(elem.base, elem.order, shape)
            .ok_or_else(|| bad(format!("subarray {code} of shape {dims:?} is too large")));
    }
    let order = match state.get(1) {
        Some(Py::Str(o)) if o == ">" => ">",
        _ => "<",
    };
    FieldType::parse(&format!("{order}{code}")).map_err(|e| bad(e.to_string()))
}

/// Our dtype of a pickled structured numpy dtype, checking numpy's offsets and size.
fn dtype_of(p: &Py) -> Result<Dtype, MimoError> {
    let Py::Object(_, _, Some(state)) = p else {
        return Err(bad("a dtype without its state"));
    };
    let Py::Tuple(s) = &**state else {
        return Err(bad("a dtype's state is not a tuple"));
    };
    // numpy's state: (version, byte order, subarray, names, fields, itemsize, alignment, flags).
    let (Some(Py::Tuple(names)), Some(Py::Dict(fields)), Some(Py::Int(size))) =
        (s.get(3), s.get(4), s.get(5))
    else {
        return Err(bad(
            "data_dtype is not a structured dtype (mimoCoRB2 buffers are)",
        ));
    };
    let mut out = Vec::new();
    for n in names {
        let Py::Str(name) = n else {
            return Err(bad("a field name is not a string"));
        };
        let Some((_, Py::Tuple(f))) = fields.iter().find(|(k, _)| k == n) else {
            return Err(bad(format!("field '{name}' has no type")));
        };
        let ty = field_type_of(f.first().ok_or_else(|| bad("a field without type"))?)?;
        let offset = match f.get(1) {
            Some(Py::Int(o)) => *o,
            _ => return Err(bad(format!("field '{name}' has no offset"))),
        };
        out.push((name.clone(), ty, offset));
    }
    let d = Dtype::new(out.iter().map(|(n, s, _)| (n.clone(), *s))).map_err(bad)?;
    for ((name, _, offset), f) in out.iter().zip(d.fields()) {
        if *offset as usize != f.offset {
            return Err(bad(format!(
                "field '{name}' at byte {offset}: only packed records are read here"
            )));
        }
    }
    if *size as usize != d.record_size() {
        return Err(bad(format!(
            "records of {size} bytes with fields of {}: padded records are not read here",
            d.record_size()
        )));
    }
    Ok(d)
}

/// What a mimo file's header says.
#[derive(Clone, Debug, PartialEq)]
pub struct MimoHeader {
    /// The records' type.
    pub data_dtype: Dtype,
    /// Records per event.
    pub data_length: usize,
    /// Bytes the pickle takes at the start of the file.
    pub header_bytes: usize,
}

impl MimoHeader {
    /// Reads the header at the start of `r`.
    pub fn read(r: &mut impl Read) -> Result<MimoHeader, MimoError> {
        let (v, header_bytes) = unpickle(r)?;
        let Py::Dict(d) = v else {
            return Err(bad("the header is not a dict"));
        };
        let get = |k: &str| {
            d.iter()
                .find(|(key, _)| matches!(key, Py::Str(s) if s == k))
                .map(|(_, v)| v)
        };
        let data_dtype = dtype_of(get("data_dtype").ok_or_else(|| bad("no data_dtype"))?)?;
        let int = |k: &str| match get(k) {
            Some(Py::Int(i)) if *i >= 0 => Ok(*i as usize),
            _ => Err(bad(format!("no {k}"))),
        };
        let data_length = int("data_length")?;
        let meta = dtype_of(get("metadata_dtype").ok_or_else(|| bad("no metadata_dtype"))?)?;
        if meta != crate::dtype::metadata_dtype() || int("metadata_length")? != 1 {
            return Err(bad(format!(
                "metadata {meta} × {}, not mimoCoRB2's counter, timestamp, deadtime",
                int("metadata_length")?
            )));
        }
        Ok(MimoHeader {
            data_dtype,
            data_length,
            header_bytes,
        })
    }

    /// The header as data.export writes it (pickle protocol 2).
    pub fn to_pickle(dtype: &Dtype, data_length: usize) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'('];
        let s = |p: &mut Vec<u8>, s: &str| {
            p.push(b'X');
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        };
        let int = |p: &mut Vec<u8>, i: i32| {
            p.push(b'J');
            p.extend_from_slice(&i.to_le_bytes());
        };
        // A dtype as numpy reduces it: `numpy.dtype(code, False, True)`, then its state
        // begins (3, byte order, …).
        let reduce = |p: &mut Vec<u8>, code: &str, order: &str| {
            p.extend_from_slice(b"cnumpy\ndtype\n(");
            s(p, code);
            p.extend_from_slice(&[0x89, 0x88, b't', b'R', b'(']);
            int(p, 3);
            s(p, order);
        };
        // One field's dtype: the state (3, byte order, subarray, names, fields, elsize,
        // alignment, flags).
        let element = |p: &mut Vec<u8>, t: &FieldType| {
            let full = t.element_str();
            let (order, code) = full.split_at(1);
            reduce(p, code, order);
            p.extend_from_slice(b"NNN");
            let (size, align, flags) = numpy_layout(t.base);
            int(p, size);
            int(p, align);
            int(p, flags);
            p.extend_from_slice(b"tb");
        };
        let field = |p: &mut Vec<u8>, t: &FieldType| {
            if t.shape.is_scalar() {
                return element(p, t);
            }
            reduce(p, &format!("V{}", t.size()), "|");
            p.push(b'(');
            element(
                p,
                &FieldType::new(t.base, t.order, Shape::SCALAR).unwrap_or(*t),
            );
            p.push(b'(');
            for &d in t.shape.dims() {
                int(p, d as i32);
            }
            p.extend_from_slice(b"ttNN");
            int(p, t.size() as i32);
            int(p, base_alignment(t.base));
            int(p, numpy_layout(t.base).2);
            p.extend_from_slice(b"tb");
        };
        let structured = |p: &mut Vec<u8>, d: &Dtype| {
            reduce(p, &format!("V{}", d.record_size()), "|");
            p.extend_from_slice(b"N(");
            for f in d.fields() {
                s(p, &f.name);
            }
            p.extend_from_slice(b"t}(");
            for f in d.fields() {
                s(p, &f.name);
                p.push(b'(');
                field(p, &f.ty);
                int(p, f.offset as i32);
                p.push(b't');
            }
            p.push(b'u');
            int(p, d.record_size() as i32);
            int(p, 1);
            // numpy's flags of a record: 16, and 8 more when a field holds unicode text.
            let text = d
                .fields()
                .iter()
                .any(|f| matches!(f.ty.base, Base::Unicode(_)));
            int(p, if text { 24 } else { 16 });
            p.extend_from_slice(b"tb");
        };
        s(&mut p, "version");
        int(&mut p, 1);
        s(&mut p, "header");
        s(&mut p, HEADER);
        s(&mut p, "data_dtype");
        structured(&mut p, dtype);
        s(&mut p, "data_length");
        int(&mut p, data_length as i32);
        s(&mut p, "metadata_dtype");
        structured(&mut p, &crate::dtype::metadata_dtype());
        s(&mut p, "metadata_length");
        int(&mut p, 1);
        p.extend_from_slice(b"u.");
        p
    }
}

/// The (elsize, alignment, flags) numpy pickles for an element dtype: -1, -1 for numbers,
/// bool and complex (their size is in the type string), the size and alignment for text;
/// unicode text has flag 8.
fn numpy_layout(b: Base) -> (i32, i32, i32) {
    match b {
        Base::Bytes(n) => (n as i32, 1, 0),
        Base::Unicode(n) => (4 * n as i32, 4, 8),
        _ => (-1, -1, 0),
    }
}

/// numpy's alignment of an element (what a subarray of it says).
fn base_alignment(b: Base) -> i32 {
    match b {
        Base::Num(s) => s.size() as i32,
        Base::Bool | Base::Bytes(_) => 1,
        Base::Complex64 | Base::Unicode(_) => 4,
        Base::Complex128 => 8,
    }
}

fn meta_bytes(m: &Metadata) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&m.counter.to_le_bytes());
    b[8..16].copy_from_slice(&m.timestamp.to_le_bytes());
    b[16..].copy_from_slice(&m.deadtime.to_le_bytes());
    b
}

fn meta_from(b: &[u8; 24]) -> Metadata {
    let f = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[r]);
        a
    };
    Metadata {
        counter: i64::from_le_bytes(f(0..8)),
        timestamp: f64::from_le_bytes(f(8..16)),
        deadtime: f64::from_le_bytes(f(16..24)),
    }
}

/// A mimo file being read, event by event.
pub struct MimoReader {
    file: BufReader<File>,
    /// Its header.
    pub header: MimoHeader,
    meta: [u8; 24],
}

impl MimoReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<MimoReader, MimoError> {
        let f = File::open(path).map_err(|source| MimoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = BufReader::with_capacity(1 << 20, f);
        let header = MimoHeader::read(&mut file).map_err(|e| MimoError::Header {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok(MimoReader {
            file,
            header,
            meta: [0; 24],
        })
    }

    /// Reads the next event's data into `data` (its length: data_length × record size);
    /// `None` at the end of the file (or a record cut short, as mimoCoRB2 stops there too).
    pub fn next_into(&mut self, data: &mut [u8]) -> std::io::Result<Option<Metadata>> {
        for buf in [data, &mut self.meta[..]] {
            match self.file.read_exact(buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(meta_from(&self.meta)))
    }
}

keys! {
    list KEYS;
    const FILENAME: Key<str> = ("filename", required, "the mimo file to replay (data.export's <buffer>.mimo); relative to the setup file");
    const RATE: Key<f64> = ("rate", required, "events per second (> 0)");
    const DISTRIBUTION: Key<str> = ("distribution", "uniform", "uniform (even gaps) or poisson (exponential gaps of mean 1/rate)");
    const SEED: Key<u64> = ("seed", 1, "random seed of the poisson gaps");
}

/// The declaration of `data.export`.
pub const EXPORT_SPEC: FunctionSpec = FunctionSpec::new(
    "data.export",
    Template::Exporter,
    "mimoCoRB2's data.export: writes every event of its source into <buffer>.mimo in \
     the run directory, mimoCoRB2's own format (a pickled header with the numpy dtypes, \
     then data and metadata bytes per event); events pass on unchanged to sinks of the \
     source's shape.",
    &[],
)
.writing(crate::worker::Writes {
    name_key: None,
    extension: "mimo",
    per_process: false,
    numbered: false,
});

/// The declaration of `data.simulate_importer`.
pub const SIMULATE_SPEC: FunctionSpec = FunctionSpec::new(
    "data.simulate_importer",
    Template::Importer,
    "mimoCoRB2's data.simulate_importer: replays a mimo file with the recorded gaps \
     between its timestamps; new counter and timestamp, as mimoCoRB2's Importer sets.",
    &[FILENAME.spec()],
);

/// The declaration of `data.clocked_importer`.
pub const CLOCKED_SPEC: FunctionSpec = FunctionSpec::new(
    "data.clocked_importer",
    Template::Importer,
    "mimoCoRB2's data.clocked_importer: replays a mimo file at `rate` events per \
     second, evenly or as a Poisson process; new counter and timestamp.",
    KEYS,
);

/// The three functions, for the registry, with their checks.
pub fn functions() -> Vec<(Function, Check)> {
    vec![
        (
            Function {
                spec: EXPORT_SPEC,
                build: Build::Exporter(|c| Ok(Box::new(MimoExport::build(c)?))),
            },
            Check::Config(|c| export_path(c).map(drop)),
        ),
        (
            Function {
                spec: SIMULATE_SPEC,
                build: Build::Importer(|c| Ok(Box::new(Replay::build(c, None)?))),
            },
            Check::Config(|c| open_for_sink(c).map(drop)),
        ),
        (
            Function {
                spec: CLOCKED_SPEC,
                build: Build::Importer(|c| {
                    let rate = clock(c)?;
                    Ok(Box::new(Replay::build(c, Some(rate))?))
                }),
            },
            Check::Config(|c| {
                clock(c)?;
                open_for_sink(c).map(drop)
            }),
        ),
    ]
}

fn one<'a>(
    ctx: &'a BuildContext,
    side: &'a [crate::worker::BufferShape],
    want: &'static str,
) -> Result<&'a crate::worker::BufferShape, WorkerError> {
    match side {
        [b] => Ok(b),
        _ => Err(crate::worker::WiringError::Count {
            worker: ctx.worker.clone(),
            want,
            has: side.len(),
        }
        .into()),
    }
}

fn export_path(ctx: &BuildContext) -> Result<PathBuf, WorkerError> {
    let src = one(ctx, &ctx.sources, "one source buffer")?;
    // It writes one file, <buffer>.mimo.
    ctx.one_process("data.export", "")?;
    Ok(ctx.run_dir.join(format!("{}.mimo", src.name)))
}

/// `data.export`.
pub struct MimoExport {
    path: PathBuf,
    file: BufWriter<File>,
    /// Events the file held when this process took it over (an earlier process of this
    /// worker in this run wrote them and failed).
    earlier: u64,
}

impl MimoExport {
    /// Creates `<buffer>.mimo` with its header; after a restart in the same run, goes on
    /// after the last whole event of the file the earlier process wrote (never truncates it).
    pub fn build(ctx: &BuildContext) -> Result<MimoExport, WorkerError> {
        let path = export_path(ctx)?;
        let src = one(ctx, &ctx.sources, "one source buffer")?;
        let header = MimoHeader::to_pickle(&src.dtype, src.data_length);
        let event = (src.data_length * src.dtype.record_size() + 24) as u64;
        let io = |source| WorkerError::Io {
            what: format!("opening {}", path.display()),
            source,
        };
        let (file, earlier) = match std::fs::metadata(&path) {
            Ok(m) if m.len() >= header.len() as u64 => {
                let mut start = vec![0u8; header.len()];
                File::open(&path)
                    .and_then(|mut f| f.read_exact(&mut start))
                    .map_err(io)?;
                if start != header {
                    return Err(WorkerError::output(MimoError::NotOurs { path }));
                }
                let events = (m.len() - header.len() as u64) / event;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io)?;
                // An event cut by the earlier process's death is removed.
                f.set_len(header.len() as u64 + events * event)
                    .map_err(io)?;
                let mut f = f;
                use std::io::Seek;
                f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
                tracing::info!(
                    "{}: resuming after {events} events written by an earlier process of this worker",
                    path.display()
                );
                (f, events)
            }
            _ => {
                let mut f = File::create(&path).map_err(io)?;
                f.write_all(&header).map_err(io)?;
                (f, 0)
            }
        };
        Ok(MimoExport {
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            earlier,
        })
    }

    fn io(&self, source: std::io::Error) -> WorkerError {
        WorkerError::Io {
            what: format!("writing {}", self.path.display()),
            source,
        }
    }
}

impl Exporter for MimoExport {
    fn kept_from_earlier(&self) -> Option<u64> {
        Some(self.earlier)
    }

    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        let r = self
            .file
            .write_all(event.data)
            .and_then(|()| self.file.write_all(&meta_bytes(&event.meta)));
        r.map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), WorkerError> {
        self.file.flush().map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        let r = self
            .file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all());
        r.map_err(|e| self.io(e))
    }
}

/// Opens the configured file and checks it holds the sink's records.
fn open_for_sink(ctx: &BuildContext) -> Result<MimoReader, WorkerError> {
    let sink = one(ctx, &ctx.sinks, "one sink buffer")?;
    let name = ctx.config.get(FILENAME)?;
    let path = ctx.setup_dir.join(name);
    let r = MimoReader::open(&path)
        .map_err(|e| WorkerError::from(ctx.config.error(FILENAME.name, e.to_string())))?;
    if r.header.data_dtype != sink.dtype || r.header.data_length != sink.data_length {
        return Err(ctx
            .config
            .error(
                FILENAME.name,
                format!(
                    "{} holds {} records of {} per event, but sink '{}' holds {} of {} \
                     (mimoCoRB2: \"Data type mismatch\")",
                    path.display(),
                    r.header.data_length,
                    r.header.data_dtype,
                    sink.name,
                    sink.data_length,
                    sink.dtype
                ),
            )
            .into());
    }
    Ok(r)
}

/// `data.clocked_importer`'s rate and distribution (true: poisson).
fn clock(ctx: &BuildContext) -> Result<(f64, bool), WorkerError> {
    let rate = ctx.config.get(RATE)?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(ctx
            .config
            .error(RATE.name, format!("must be a number > 0, found {rate}"))
            .into());
    }
    let poisson = match ctx.config.get(DISTRIBUTION)? {
        "uniform" => false,
        "poisson" => true,
        other => {
            return Err(ctx
                .config
                .error(
                    DISTRIBUTION.name,
                    format!("'{other}' is not one of: uniform, poisson"),
                )
                .into())
        }
    };
    Ok((rate, poisson))
}

/// `data.simulate_importer` (no clock: the recorded timestamps) and `data.clocked_importer`.
pub struct Replay {
    reader: MimoReader,
    /// Rate and whether the gaps are exponential.
    clock: Option<(f64, bool)>,
    rng: rand_xoshiro::Xoshiro256PlusPlus,
    /// The event read and not sent yet.
    pending: Option<Metadata>,
    buf: Vec<u8>,
    /// When the first event went, and its recorded timestamp.
    start: Option<(Instant, f64)>,
    /// Seconds after `start` the pending event is due.
    due: f64,
    /// The file keeps its events while the run is paused.
    hold: super::replay::Hold,
}

impl Replay {
    /// Opens the file (its records must be the sink's).
    pub fn build(ctx: &BuildContext, clock: Option<(f64, bool)>) -> Result<Replay, WorkerError> {
        use rand::SeedableRng;
        let reader = open_for_sink(ctx)?;
        let size = reader.header.data_length * reader.header.data_dtype.record_size();
        Ok(Replay {
            reader,
            clock,
            rng: rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(ctx.config.get(SEED)?),
            pending: None,
            buf: vec![0; size],
            start: None,
            due: 0.0,
            hold: Default::default(),
        })
    }
}

impl Importer for Replay {
    /// A recording waits for the resume, as `replay.hdf5`'s does: nothing of it is
    /// discarded, and its clock goes on from where the pause stopped it.
    fn pause(&mut self, paused: bool) -> bool {
        self.hold
            .pause(paused, self.start.as_mut().map(|(t0, _)| t0))
    }

    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        if self.hold.waits() {
            return Ok(Produced::Idle);
        }
        if self.pending.is_none() {
            let Some(m) = self
                .reader
                .next_into(&mut self.buf)
                .map_err(|e| WorkerError::failed("reading the mimo file", e))?
            else {
                return Ok(Produced::End);
            };
            match (self.start, self.clock) {
                (None, _) => self.due = 0.0,
                (Some((_, t0)), None) => self.due = m.timestamp - t0,
                (Some(_), Some((rate, poisson))) => {
                    self.due += if poisson {
                        use rand::Rng;
                        let u: f64 = self.rng.random();
                        -(1.0 - u).ln() / rate
                    } else {
                        1.0 / rate
                    };
                }
            }
            self.pending = Some(m);
        }
        let Some(m) = self.pending else {
            return Ok(Produced::Idle);
        };
        let (t0, _) = *self.start.get_or_insert((Instant::now(), m.timestamp));
        let wait = self.due - t0.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait.min(0.1)));
            if wait > 0.1 {
                return Ok(Produced::Idle);
            }
        }
        out.copy_data_from("data.import", &self.buf)?;
        out.meta.timestamp = crate::clock::wall_clock();
        self.pending = None;
        Ok(Produced::Event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restarted data.export goes on with the file of its earlier process: it truncated it
    /// (File::create), losing every event written before the failure.
    #[test]
    fn a_restarted_export_keeps_the_events_of_its_earlier_process() {
        let dir = crate::fsio::test_dir("mimo-restart");
        let shape = crate::worker::BufferShape {
            name: "raw".into(),
            dtype: Dtype::parse([("a", "i2")]).unwrap(),
            data_length: 3,
        };
        let mut ctx = BuildContext::for_test("export", serde_json::json!({}), vec![shape], vec![]);
        ctx.run_dir = dir.clone();
        let dtype = ctx.sources[0].dtype.clone();
        let data = [1u8, 0, 2, 0, 3, 0];
        let event = |counter| EventRef {
            data: &data,
            meta: Metadata {
                counter,
                ..Metadata::default()
            },
            dtype: &dtype,
        };
        let mut first = MimoExport::build(&ctx).unwrap();
        assert_eq!(first.kept_from_earlier(), Some(0));
        for c in 0..5 {
            first.consume(&event(c)).unwrap();
        }
        first.finish().unwrap();
        drop(first);
        // The earlier process died inside an event: half of one more is in the file.
        let path = dir.join("raw.mimo");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[9, 9, 9]).unwrap();
        drop(f);
        let mut second = MimoExport::build(&ctx).unwrap();
        assert_eq!(second.kept_from_earlier(), Some(5));
        second.consume(&event(5)).unwrap();
        second.finish().unwrap();
        let mut r = MimoReader::open(&path).unwrap();
        let mut buf = [0u8; 6];
        let mut counters = Vec::new();
        while let Some(m) = r.next_into(&mut buf).unwrap() {
            assert_eq!(buf, data);
            counters.push(m.counter);
        }
        assert_eq!(counters, [0, 1, 2, 3, 4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn our_header_reads_back() {
        let d = Dtype::parse([("ch0", "f4"), ("n", "u1"), ("t", "i8")]).unwrap();
        let p = MimoHeader::to_pickle(&d, 16);
        let mut r = &p[..];
        let h = MimoHeader::read(&mut r).unwrap();
        assert_eq!(h.data_dtype, d);
        assert_eq!(h.data_length, 16);
        assert_eq!(h.header_bytes, p.len());
        // Cut anywhere, it is an error, never a panic.
        for n in 0..p.len() {
            assert!(MimoHeader::read(&mut &p[..n]).is_err());
        }
    }

    /// Headers a damaged or foreign file might start with: our own header with bytes
    /// changed, inserted or cut off is read or refused, never a panic.
    #[test]
    fn a_damaged_header_is_read_or_refused() {
        use proptest::prelude::*;
        let d = Dtype::parse([("ch0", "f4"), ("sub", "(2,3)>i2"), ("s", "S4")]).unwrap();
        let good = MimoHeader::to_pickle(&d, 16);
        let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8);
        proptest!(ProptestConfig::with_cases(3000), |(edits in edits)| {
            let mut p = good.clone();
            for (at, x, how) in edits {
                let at = at % (p.len() + 1);
                match how {
                    0 if at < p.len() => p[at] ^= x.max(1),
                    1 => p.insert(at, x),
                    _ => p.truncate(at.max(1)),
                }
            }
            let _ = MimoHeader::read(&mut &p[..]);
        });
    }

    /// Pickles made to nest deeper or grow larger than any header: refused at once with
    /// a message, where unbounded they exhaust the stack (dropping a million nested
    /// values) or the memory (a value doubled through the memo 64 times, or millions of
    /// values each 24 times the two bytes that make it).
    #[test]
    fn a_pickle_bomb_is_refused() {
        // None, then (None, REDUCE) a million times: class(args) nested a million deep.
        let mut deep = vec![0x80, 2, b'N'];
        for _ in 0..1_000_000 {
            deep.extend_from_slice(b"NR");
        }
        deep.push(b'.');
        // A string, then 64 times: MEMOIZE, GET, TUPLE2: each tuple holds the last twice.
        let mut wide = vec![0x80, 2, 0x8c, 1, b'x'];
        for i in 0..64u8 {
            wide.extend_from_slice(&[0x94, b'h', i, 0x86]);
        }
        wide.push(b'.');
        // A million empty tuples side by side: no value deep or large, but each one made.
        let mut many = vec![0x80, 2];
        for _ in 0..=MAX_VALUES {
            many.extend_from_slice(b"(t");
        }
        many.push(b'.');
        for bomb in [deep, wide, many] {
            let e = MimoHeader::read(&mut &bomb[..]).unwrap_err().to_string();
            assert!(e.contains("deeper") || e.contains("larger"), "{e}");
        }
    }
}
