//! Restricted Python pickle reader and protocol-2 writer for pyskl annotation
//! pickles and score dumps.
//!
//! Reference: opcode semantics follow CPython `Lib/pickle.py` (and the
//! `pickletools` docs); array reconstruction follows numpy
//! `ndarray.__reduce__` / `ndarray.__setstate__`, `numpy.dtype.__reduce__` and
//! `numpy.core.numeric._frombuffer`.
//!
//! Nothing in a pickle is ever executed: `GLOBAL`/`STACK_GLOBAL` resolve
//! against a fixed whitelist of data constructors that are re-implemented
//! here, and every other global is refused with
//! [`PickleError::ForbiddenGlobal`].

use std::collections::{HashMap, HashSet};

/// Values nested deeper than this are refused. CPython's own pickler cannot
/// write much deeper structures (recursion limit 1000), and the cap keeps the
/// recursive `Drop`, `Debug`, `PartialEq` and writer of [`Value`] well inside
/// a 2 MiB thread stack (the reader itself is iterative).
pub const MAX_DEPTH: usize = 1000;

/// Widest `LONG1`/`LONG4` integer accepted; decimal conversion is quadratic,
/// so this bounds the work a hostile pickle can cause.
const MAX_BIGINT_BYTES: usize = 4096;

/// Cost units charged per materialised [`Value`] node; payload bytes cost one
/// unit each. Roughly tracks memory, since a `Value` is a few dozen bytes.
const NODE_COST: usize = 16;

/// The memo lets a pickle reference one object many times; expanding those
/// references into a tree could blow up exponentially, so the total cost of
/// the output is capped relative to the input size.
const EXPANSION_FACTOR: usize = 64;
const EXPANSION_FLOOR: usize = 64 << 20;

// ---------------------------------------------------------------------------
// Public data model
// ---------------------------------------------------------------------------

/// A numpy element type that can be loaded as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The code numpy's `dtype.__reduce__` uses, e.g. `"f4"`.
    pub fn numpy_code(self) -> &'static str {
        match self {
            DType::Bool => "b1",
            DType::I8 => "i1",
            DType::U8 => "u1",
            DType::I16 => "i2",
            DType::U16 => "u2",
            DType::I32 => "i4",
            DType::U32 => "u4",
            DType::I64 => "i8",
            DType::U64 => "u8",
            DType::F16 => "f2",
            DType::F32 => "f4",
            DType::F64 => "f8",
        }
    }

    /// Parses a numpy type code without byte-order prefix.
    pub fn from_numpy_code(code: &str) -> Option<DType> {
        Some(match code {
            "b1" | "?" => DType::Bool,
            "i1" => DType::I8,
            "u1" => DType::U8,
            "i2" => DType::I16,
            "u2" => DType::U16,
            "i4" => DType::I32,
            "u4" => DType::U32,
            "i8" => DType::I64,
            "u8" => DType::U64,
            "f2" => DType::F16,
            "f4" => DType::F32,
            "f8" => DType::F64,
            _ => return None,
        })
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DType::Bool | DType::F16 | DType::F32 | DType::F64)
    }
}

/// A numpy array. `data` is always little-endian, laid out in C or Fortran
/// order as `fortran_order` says.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    pub data: Vec<u8>,
}

/// A loaded pickle. Python `bytes` and `bytearray` both become `Bytes`;
/// `set` and `frozenset` both become `Set`; `OrderedDict` becomes `Dict`.
/// `BigInt` holds the decimal text of integers outside `i64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Array(NdArray),
    /// A tensor of a torch zip checkpoint, read only with [`ReadOptions::torch`]: a strided
    /// view into the storage file `data/<key>` that the caller reads from the archive.
    TorchTensor(TorchTensorRef),
}

/// Element type of a torch storage (`torch.FloatStorage`, `torch.BFloat16Storage`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TorchDType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl TorchDType {
    pub fn itemsize(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    /// The storage class name torch pickles (`torch/storage.py`, `_pickle_storage_type`).
    fn from_storage_name(name: &str) -> Option<TorchDType> {
        Some(match name {
            "FloatStorage" => TorchDType::F32,
            "DoubleStorage" => TorchDType::F64,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensorRef {
    /// The storage's key: its bytes are the archive entry `<prefix>/data/<storage>`.
    pub storage: String,
    pub dtype: TorchDType,
    /// Elements in the storage, as its persistent id states.
    pub storage_numel: usize,
    /// In elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    /// In elements.
    pub stride: Vec<usize>,
}

impl TorchTensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("pickle truncated: the opcode at offset {offset} needs more bytes than remain")]
    Truncated { offset: usize },
    #[error("unknown pickle opcode 0x{opcode:02x} at offset {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    #[error("pickle stack underflow at offset {offset}")]
    StackUnderflow { offset: usize },
    #[error("pickle MARK missing for the opcode at offset {offset}")]
    MarkMissing { offset: usize },
    #[error(
        "forbidden global {module}.{name} at offset {offset}: only whitelisted numpy/builtin data constructors are loaded"
    )]
    ForbiddenGlobal {
        module: String,
        name: String,
        offset: usize,
    },
    #[error("unsupported pickle feature at offset {offset}: {what}")]
    Unsupported { what: String, offset: usize },
    #[error("bad numpy state at offset {offset}: expected {expected}")]
    BadNumpyState { expected: String, offset: usize },
    #[error("pickle memo key {key} missing at offset {offset}")]
    MemoKeyMissing { key: u64, offset: usize },
    #[error("invalid pickle data at offset {offset}: {what}")]
    Invalid { what: String, offset: usize },
    #[error("pickle nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("pickle expands past its size budget of {limit} units through shared references")]
    TooLarge { limit: usize },
    #[error("array error: {0}")]
    Array(String),
    #[error("persistent_load: {0}")]
    PersistentLoad(String),
}

/// Hook that turns a persistent id (from `PERSID`/`BINPERSID`) into a value,
/// as `Unpickler.persistent_load` does in Python.
pub type PersistentLoad<'a> = &'a dyn Fn(Value) -> Result<Value, PickleError>;

/// Reader options. Without a `persistent_load` hook, persistent ids are refused.
#[derive(Default, Clone, Copy)]
pub struct ReadOptions<'a> {
    pub persistent_load: Option<PersistentLoad<'a>>,
    /// Read the `data.pkl` of a torch zip checkpoint: torch's storage classes and
    /// `_rebuild_tensor_v2` / `_rebuild_parameter` are recognised (re-implemented as data,
    /// never called) and storage persistent ids become [`Value::TorchTensor`] views.
    pub torch: bool,
}

// ---------------------------------------------------------------------------
// NdArray helpers
// ---------------------------------------------------------------------------

impl NdArray {
    /// Builds an array from little-endian bytes, checking the size.
    pub fn new(
        dtype: DType,
        shape: Vec<usize>,
        fortran_order: bool,
        data: Vec<u8>,
    ) -> Result<Self, PickleError> {
        let a = NdArray {
            dtype,
            shape,
            fortran_order,
            data,
        };
        a.check_size()?;
        Ok(a)
    }

    /// A C-order float32 array.
    pub fn from_f32(shape: Vec<usize>, values: Vec<f32>) -> Result<Self, PickleError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NdArray::new(DType::F32, shape, false, data)
    }

    /// A C-order float64 array.
    pub fn from_f64(shape: Vec<usize>, values: Vec<f64>) -> Result<Self, PickleError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NdArray::new(DType::F64, shape, false, data)
    }

    /// A C-order int64 array.
    pub fn from_i64(shape: Vec<usize>, values: Vec<i64>) -> Result<Self, PickleError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NdArray::new(DType::I64, shape, false, data)
    }

    /// Number of elements (product of the shape; 1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    fn check_size(&self) -> Result<(), PickleError> {
        let expected = self
            .shape
            .iter()
            .try_fold(self.dtype.itemsize(), |acc, &d| acc.checked_mul(d));
        match expected {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(PickleError::Array(format!(
                "shape {:?} of {} needs {} bytes, data has {}",
                self.shape,
                self.dtype.numpy_code(),
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                self.data.len()
            ))),
        }
    }

    /// Elements in C order, converted to f32 from any numeric dtype.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, PickleError> {
        // Narrowing f64/i64 to f32 is the documented intent of this accessor.
        self.convert(|e| e.as_f64() as f32)
    }

    /// Elements in C order, converted to f64 from any numeric dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, PickleError> {
        self.convert(Elem::as_f64)
    }

    /// Elements in C order; only bool and integer dtypes are accepted, and
    /// uint64 values above `i64::MAX` are an error.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, PickleError> {
        if !(self.dtype.is_integer() || self.dtype == DType::Bool) {
            return Err(PickleError::Array(format!(
                "cannot read {} array as integers",
                self.dtype.numpy_code()
            )));
        }
        let mut overflow = false;
        let out = self.convert(|e| match e {
            Elem::I(v) => v,
            Elem::U(v) => i64::try_from(v).unwrap_or_else(|_| {
                overflow = true;
                0
            }),
            Elem::B(b) => i64::from(b),
            Elem::F(v) => v as i64,
        })?;
        if overflow {
            return Err(PickleError::Array(
                "uint64 value does not fit in i64".to_string(),
            ));
        }
        Ok(out)
    }

    fn convert<T: Copy>(&self, mut f: impl FnMut(Elem) -> T) -> Result<Vec<T>, PickleError> {
        self.check_size()?;
        let storage: Vec<T> = self
            .data
            .chunks_exact(self.dtype.itemsize())
            .map(|c| f(decode_elem(self.dtype, c)))
            .collect();
        Ok(self.reorder_to_c(storage))
    }

    fn reorder_to_c<T: Copy>(&self, storage: Vec<T>) -> Vec<T> {
        if !self.fortran_order || self.shape.len() < 2 || storage.is_empty() {
            return storage;
        }
        let nd = self.shape.len();
        let mut fstrides = vec![0usize; nd];
        let mut acc = 1usize;
        for (s, &d) in fstrides.iter_mut().zip(&self.shape) {
            *s = acc;
            acc = acc.saturating_mul(d);
        }
        let mut idx = vec![0usize; nd];
        let mut out = Vec::with_capacity(storage.len());
        for _ in 0..storage.len() {
            let off: usize = idx.iter().zip(&fstrides).map(|(i, s)| i * s).sum();
            if let Some(v) = storage.get(off) {
                out.push(*v);
            }
            // Advance the C-order multi-index: last axis fastest.
            for k in (0..nd).rev() {
                idx[k] += 1;
                if idx[k] < self.shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Elem {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl Elem {
    fn as_f64(self) -> f64 {
        match self {
            Elem::I(v) => v as f64,
            Elem::U(v) => v as f64,
            Elem::F(v) => v,
            Elem::B(b) => f64::from(u8::from(b)),
        }
    }
}

/// Decodes one little-endian element; `c` is exactly `itemsize` long.
fn decode_elem(dtype: DType, c: &[u8]) -> Elem {
    fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        for (d, s) in a.iter_mut().zip(c) {
            *d = *s;
        }
        a
    }
    match dtype {
        DType::Bool => Elem::B(c.first().is_some_and(|&b| b != 0)),
        DType::I8 => Elem::I(i64::from(i8::from_le_bytes(arr(c)))),
        DType::U8 => Elem::U(u64::from(u8::from_le_bytes(arr(c)))),
        DType::I16 => Elem::I(i64::from(i16::from_le_bytes(arr(c)))),
        DType::U16 => Elem::U(u64::from(u16::from_le_bytes(arr(c)))),
        DType::I32 => Elem::I(i64::from(i32::from_le_bytes(arr(c)))),
        DType::U32 => Elem::U(u64::from(u32::from_le_bytes(arr(c)))),
        DType::I64 => Elem::I(i64::from_le_bytes(arr(c))),
        DType::U64 => Elem::U(u64::from_le_bytes(arr(c))),
        DType::F16 => Elem::F(f64::from(f16_to_f32(u16::from_le_bytes(arr(c))))),
        DType::F32 => Elem::F(f64::from(f32::from_le_bytes(arr(c)))),
        DType::F64 => Elem::F(f64::from_le_bytes(arr(c))),
    }
}

/// IEEE 754 binary16 to binary32; exact for every input.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal half: value is m * 2^-24, renormalise into f32.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

// ---------------------------------------------------------------------------
// Value helpers
// ---------------------------------------------------------------------------

impl Value {
    /// Looks up a str key in a `Dict`. When a key repeats, the last entry
    /// wins, as it would in Python.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `Int`, `Bool`, or a 0-d integer/bool array (numpy scalars already
    /// load as `Int`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Array(a) if a.shape.is_empty() => {
                a.to_i64_vec().ok().and_then(|v| v.first().copied())
            }
            _ => None,
        }
    }

    /// `Float`, `Int`, `Bool`, or a 0-d numeric array.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Array(a) if a.shape.is_empty() => {
                a.to_f64_vec().ok().and_then(|v| v.first().copied())
            }
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Items of a `List` or `Tuple`.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Python-flavoured type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Array(_) => "ndarray",
            Value::TorchTensor(_) => "torch.Tensor",
        }
    }
}

// ---------------------------------------------------------------------------
// Opcodes
// ---------------------------------------------------------------------------

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// Loads a pickle (protocols 0–5) into a [`Value`] without executing anything.
pub fn read_pickle(bytes: &[u8]) -> Result<Value, PickleError> {
    read_pickle_with(bytes, &ReadOptions::default())
}

/// [`read_pickle`] with options (e.g. a persistent-id hook).
pub fn read_pickle_with(bytes: &[u8], opts: &ReadOptions<'_>) -> Result<Value, PickleError> {
    let budget = bytes
        .len()
        .saturating_mul(EXPANSION_FACTOR)
        .saturating_add(EXPANSION_FLOOR);
    let mut r = Reader {
        data: bytes,
        pos: 0,
        at: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::default(),
        persistent_load: opts.persistent_load,
        torch: opts.torch,
        budget,
        budget_limit: budget,
    };
    r.run()
}

/// The whitelisted callables a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Reconstruct,
    NdarrayClass,
    DtypeClass,
    Scalar,
    FromBuffer,
    CodecsEncode,
    Set,
    FrozenSet,
    Tuple,
    List,
    Bytes,
    ByteArray,
    OrderedDict,
    TorchStorage(TorchDType),
    TorchRebuildTensorV2,
    TorchRebuildParameter,
}

/// torch's own data constructors, allowed only when reading a torch checkpoint.
fn resolve_torch_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::TorchRebuildTensorV2),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Some(Global::TorchRebuildParameter)
        }
        ("torch", n) => TorchDType::from_storage_name(n).map(Global::TorchStorage),
        _ => None,
    }
}

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    let numpy_multiarray = matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray");
    let builtins = matches!(module, "builtins" | "__builtin__");
    Some(match name {
        "_reconstruct" if numpy_multiarray => Global::Reconstruct,
        "scalar" if numpy_multiarray => Global::Scalar,
        "_frombuffer" if matches!(module, "numpy.core.numeric" | "numpy._core.numeric") => {
            Global::FromBuffer
        }
        "ndarray" if module == "numpy" => Global::NdarrayClass,
        "dtype" if module == "numpy" => Global::DtypeClass,
        "encode" if module == "_codecs" => Global::CodecsEncode,
        "OrderedDict" if module == "collections" => Global::OrderedDict,
        "set" if builtins => Global::Set,
        "frozenset" if builtins => Global::FrozenSet,
        "tuple" if builtins => Global::Tuple,
        "list" if builtins => Global::List,
        "bytes" if builtins => Global::Bytes,
        "bytearray" if builtins => Global::ByteArray,
        _ => return None,
    })
}

/// A numpy dtype under construction: `numpy.dtype(code, ...)` followed by a
/// `BUILD` whose state carries the byte order.
#[derive(Debug, Clone)]
struct DtypeNode {
    code: String,
    order: u8,
}

/// Objects live in an arena and the stack/memo hold indices, so that `BUILD`,
/// `APPEND` and `SETITEM` mutate the one shared object as Python does.
#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Set(Vec<usize>),
    Array(NdArray),
    Class(Global),
    Dtype(DtypeNode),
    /// `_reconstruct(ndarray, ...)` result waiting for its `BUILD` state.
    PendingArray,
    /// A torch storage named by a persistent id.
    TorchStorage {
        key: String,
        dtype: TorchDType,
        numel: usize,
    },
    TorchTensor(TorchTensorRef),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::Array(_) => "ndarray",
            Node::Class(_) => "class/function",
            Node::Dtype(_) => "numpy dtype",
            Node::PendingArray => "unbuilt ndarray",
            Node::TorchStorage { .. } => "torch storage",
            Node::TorchTensor(_) => "torch.Tensor",
        }
    }
}

/// The pickle memo. Keys are almost always small and sequential, so they
/// index a vector; only outliers go to a (SipHash, so DoS-safe) map.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<usize>>,
    sparse: HashMap<u64, usize>,
    len: u64,
}

/// Dense keys above this go to the map, bounding the vector a hostile key
/// can force (8 MiB of slots).
const MEMO_DENSE_LIMIT: u64 = 1 << 20;

impl Memo {
    fn get(&self, key: u64) -> Option<usize> {
        if key < MEMO_DENSE_LIMIT {
            self.dense.get(key as usize).copied().flatten()
        } else {
            self.sparse.get(&key).copied()
        }
    }

    fn insert(&mut self, key: u64, value: usize) {
        let fresh = if key < MEMO_DENSE_LIMIT {
            let k = key as usize;
            if self.dense.len() <= k {
                self.dense.resize(k + 1, None);
            }
            self.dense
                .get_mut(k)
                .is_some_and(|slot| slot.replace(value).is_none())
        } else {
            self.sparse.insert(key, value).is_none()
        };
        if fresh {
            self.len += 1;
        }
    }
}

/// Steps of the iterative arena-to-`Value` conversion.
enum Work {
    /// Convert node `.0`, found at nesting depth `.1`.
    Enter(usize, usize),
    /// Assemble the last `.1` finished values into container node `.0`.
    Exit(usize, usize),
}

struct Reader<'a, 'o> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for error messages.
    at: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: Memo,
    persistent_load: Option<PersistentLoad<'o>>,
    torch: bool,
    budget: usize,
    budget_limit: usize,
}

type R<T> = Result<T, PickleError>;

impl Reader<'_, '_> {
    // ----- errors -----

    fn invalid(&self, what: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            what: what.into(),
            offset: self.at,
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> PickleError {
        PickleError::Unsupported {
            what: what.into(),
            offset: self.at,
        }
    }

    fn bad_numpy(&self, expected: impl Into<String>) -> PickleError {
        PickleError::BadNumpyState {
            expected: expected.into(),
            offset: self.at,
        }
    }

    // ----- input -----

    fn take(&mut self, n: u64) -> R<&[u8]> {
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(PickleError::Truncated { offset: self.at });
        }
        // n <= remaining, which fits in usize.
        let n = n as usize;
        let s = self.data.get(self.pos..self.pos + n);
        self.pos += n;
        s.ok_or(PickleError::Truncated { offset: self.at })
    }

    fn take_array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_le_bytes(self.take_array()?))
    }

    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// A text line without its trailing `\n`.
    fn line(&mut self) -> R<&[u8]> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: self.at })?;
        let s = rest.get(..n).unwrap_or(&[]);
        self.pos += n + 1;
        Ok(s)
    }

    fn line_str(&mut self) -> R<String> {
        let at = self.at;
        let l = self.line()?;
        std::str::from_utf8(l)
            .map(str::to_owned)
            .map_err(|_| PickleError::Invalid {
                what: "line is not UTF-8".into(),
                offset: at,
            })
    }

    fn line_u64(&mut self) -> R<u64> {
        let s = self.line_str()?;
        s.trim()
            .parse::<u64>()
            .map_err(|_| self.invalid(format!("bad memo key {s:?}")))
    }

    // ----- stack -----

    fn push(&mut self, n: Node) {
        self.nodes.push(n);
        self.stack.push(self.nodes.len() - 1);
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> R<usize> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::StackUnderflow { offset: self.at });
        }
        self.stack
            .pop()
            .ok_or(PickleError::StackUnderflow { offset: self.at })
    }

    fn top(&self) -> R<usize> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::StackUnderflow { offset: self.at });
        }
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::StackUnderflow { offset: self.at })
    }

    fn pop_mark(&mut self) -> R<Vec<usize>> {
        let m = self
            .marks
            .pop()
            .ok_or(PickleError::MarkMissing { offset: self.at })?;
        if m > self.stack.len() {
            return Err(PickleError::StackUnderflow { offset: self.at });
        }
        Ok(self.stack.split_off(m))
    }

    fn node(&self, i: usize) -> R<&Node> {
        self.nodes
            .get(i)
            .ok_or(PickleError::StackUnderflow { offset: self.at })
    }

    fn node_mut(&mut self, i: usize) -> R<&mut Node> {
        let at = self.at;
        self.nodes
            .get_mut(i)
            .ok_or(PickleError::StackUnderflow { offset: at })
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        let i = self.memo.get(key).ok_or(PickleError::MemoKeyMissing {
            key,
            offset: self.at,
        })?;
        self.stack.push(i);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let i = self.top()?;
        self.memo.insert(key, i);
        Ok(())
    }

    // ----- main loop -----

    fn run(&mut self) -> R<Value> {
        loop {
            self.at = self.pos;
            let code = self.u8()?;
            match code {
                op::PROTO => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.unsupported(format!("pickle protocol {p}")));
                    }
                }
                op::FRAME => {
                    // Frames only batch reads; the content is parsed as usual.
                    self.u64()?;
                }
                op::STOP => {
                    let root = self.pop()?;
                    return self.materialize(root);
                }
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.floor() {
                        self.pop()?;
                    } else {
                        // CPython pops the mark when the current segment is empty.
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                op::NONE => self.push(Node::None),
                op::NEWTRUE => self.push(Node::Bool(true)),
                op::NEWFALSE => self.push(Node::Bool(false)),
                op::INT => {
                    let s = self.line_str()?;
                    let n = match s.trim() {
                        "01" => Node::Bool(true),
                        "00" => Node::Bool(false),
                        t => self.parse_decimal(t)?,
                    };
                    self.push(n);
                }
                op::LONG => {
                    let s = self.line_str()?;
                    let t = s.trim();
                    let t = t.strip_suffix('L').unwrap_or(t);
                    let n = self.parse_decimal(t)?;
                    self.push(n);
                }
                op::BININT => {
                    let v = self.i32()?;
                    self.push(Node::Int(i64::from(v)));
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Node::Int(i64::from(v)));
                }
                op::BININT2 => {
                    let v = self.u16()?;
                    self.push(Node::Int(i64::from(v)));
                }
                op::LONG1 => {
                    let n = u64::from(self.u8()?);
                    self.load_long(n)?;
                }
                op::LONG4 => {
                    let n = self.i32()?;
                    let n = u64::try_from(n).map_err(|_| self.invalid("negative LONG4 length"))?;
                    self.load_long(n)?;
                }
                op::FLOAT => {
                    let s = self.line_str()?;
                    let v = s
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.invalid(format!("bad float {s:?}")))?;
                    self.push(Node::Float(v));
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Node::Float(v));
                }
                op::STRING => {
                    let l = self.line()?.to_vec();
                    let b = self.decode_string_repr(&l)?;
                    self.push(Node::Str(latin1_to_string(&b)));
                }
                op::BINSTRING => {
                    let n = self.i32()?;
                    let n =
                        u64::try_from(n).map_err(|_| self.invalid("negative BINSTRING length"))?;
                    let s = latin1_to_string(self.take(n)?);
                    self.push(Node::Str(s));
                }
                op::SHORT_BINSTRING => {
                    let n = u64::from(self.u8()?);
                    let s = latin1_to_string(self.take(n)?);
                    self.push(Node::Str(s));
                }
                op::UNICODE => {
                    let l = self.line()?.to_vec();
                    let s = self.decode_raw_unicode_escape(&l)?;
                    self.push(Node::Str(s));
                }
                op::BINUNICODE => {
                    let n = u64::from(self.u32()?);
                    self.load_unicode(n)?;
                }
                op::SHORT_BINUNICODE => {
                    let n = u64::from(self.u8()?);
                    self.load_unicode(n)?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64()?;
                    self.load_unicode(n)?;
                }
                op::BINBYTES => {
                    let n = u64::from(self.u32()?);
                    self.load_bytes(n)?;
                }
                op::SHORT_BINBYTES => {
                    let n = u64::from(self.u8()?);
                    self.load_bytes(n)?;
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.u64()?;
                    self.load_bytes(n)?;
                }
                op::EMPTY_LIST => self.push(Node::List(Vec::new())),
                op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new())),
                op::EMPTY_DICT => self.push(Node::Dict(Vec::new())),
                op::EMPTY_SET => self.push(Node::Set(Vec::new())),
                op::APPEND => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.extend_list(l, vec![v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.extend_list(l, items)?;
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    if self.stack.len() < self.floor() + n {
                        return Err(PickleError::StackUnderflow { offset: self.at });
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Node::Tuple(items));
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Node::Dict(pairs));
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend_dict(d, vec![(k, v)])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let d = self.top()?;
                    self.extend_dict(d, pairs)?;
                }
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    let s = self.top()?;
                    let kind = self.node(s)?.kind();
                    match self.node_mut(s)? {
                        Node::Set(v) => v.extend(items),
                        _ => return Err(self.unsupported(format!("ADDITEMS on a {kind}"))),
                    }
                }
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items));
                }
                op::GET => {
                    let k = self.line_u64()?;
                    self.memo_get(k)?;
                }
                op::BINGET => {
                    let k = u64::from(self.u8()?);
                    self.memo_get(k)?;
                }
                op::LONG_BINGET => {
                    let k = u64::from(self.u32()?);
                    self.memo_get(k)?;
                }
                op::PUT => {
                    let k = self.line_u64()?;
                    self.memo_put(k)?;
                }
                op::BINPUT => {
                    let k = u64::from(self.u8()?);
                    self.memo_put(k)?;
                }
                op::LONG_BINPUT => {
                    let k = u64::from(self.u32()?);
                    self.memo_put(k)?;
                }
                op::MEMOIZE => {
                    // CPython's MEMOIZE key is len(memo).
                    let k = self.memo.len;
                    self.memo_put(k)?;
                }
                op::GLOBAL => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.global(module, name)?;
                    self.push(Node::Class(g));
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Str(module), Node::Str(name)) =
                        (self.node(module)?, self.node(name)?)
                    else {
                        return Err(self.invalid("STACK_GLOBAL needs two str"));
                    };
                    let g = self.global(module.clone(), name.clone())?;
                    self.push(Node::Class(g));
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let args = self.tuple_items(args, "REDUCE arguments")?;
                    let n = self.call(f, &args)?;
                    self.push(n);
                }
                op::NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = self.tuple_items(args, "NEWOBJ arguments")?;
                    let n = self.new_obj(cls, &args)?;
                    self.push(n);
                }
                op::NEWOBJ_EX => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !matches!(self.node(kwargs)?, Node::Dict(d) if d.is_empty()) {
                        return Err(self.unsupported("NEWOBJ_EX with keyword arguments"));
                    }
                    let args = self.tuple_items(args, "NEWOBJ_EX arguments")?;
                    let n = self.new_obj(cls, &args)?;
                    self.push(n);
                }
                op::INST => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.global(module, name)?;
                    let args = self.pop_mark()?;
                    self.nodes.push(Node::Class(g));
                    let f = self.nodes.len() - 1;
                    let n = self.call(f, &args)?;
                    self.push(n);
                }
                op::OBJ => {
                    let mut args = self.pop_mark()?;
                    if args.is_empty() {
                        return Err(PickleError::StackUnderflow { offset: self.at });
                    }
                    let cls = args.remove(0);
                    let n = self.call(cls, &args)?;
                    self.push(n);
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let inst = self.top()?;
                    self.build(inst, state)?;
                }
                op::PERSID => {
                    let pid = self.line()?;
                    let pid = Value::Str(latin1_to_string(pid));
                    self.persistent(pid)?;
                }
                op::BINPERSID if self.torch && self.persistent_load.is_none() => {
                    let pid = self.pop()?;
                    let n = self.torch_storage(pid)?;
                    self.push(n);
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let pid = self.materialize(pid)?;
                    self.persistent(pid)?;
                }
                op::NEXT_BUFFER | op::READONLY_BUFFER => {
                    return Err(self.unsupported(
                        "protocol-5 out-of-band buffers (pickle was dumped with buffer_callback)",
                    ));
                }
                op::EXT1 | op::EXT2 | op::EXT4 => {
                    return Err(self.unsupported("copyreg extension registry (EXT1/EXT2/EXT4)"));
                }
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        opcode: code,
                        offset: self.at,
                    })
                }
            }
        }
    }

    fn global(&self, module: String, name: String) -> R<Global> {
        let torch = if self.torch {
            resolve_torch_global(&module, &name)
        } else {
            None
        };
        torch
            .or_else(|| resolve_global(&module, &name))
            .ok_or(PickleError::ForbiddenGlobal {
                module,
                name,
                offset: self.at,
            })
    }

    fn persistent(&mut self, pid: Value) -> R<()> {
        let Some(hook) = self.persistent_load else {
            return Err(
                self.unsupported("persistent ids (PERSID/BINPERSID) need a persistent_load hook")
            );
        };
        let v = hook(pid)?;
        let i = self.intern(v);
        self.stack.push(i);
        Ok(())
    }

    /// torch's `persistent_id` for a storage: `('storage', <StorageClass>, key, location,
    /// numel)` (`torch/serialization.py`, `_save`).
    fn torch_storage(&self, pid: usize) -> R<Node> {
        let items = self.tuple_items(pid, "torch persistent id")?;
        let bad =
            || self.invalid("torch persistent id is not ('storage', type, key, location, numel)");
        let [tag, ty, key, _location, numel] = items.as_slice() else {
            return Err(bad());
        };
        if self.str_arg(*tag) != Some("storage") {
            return Err(bad());
        }
        let dtype = match self.node(*ty)? {
            Node::Class(Global::TorchStorage(d)) => *d,
            _ => return Err(self.unsupported("torch storage of an unknown type")),
        };
        let key = self.str_arg(*key).ok_or_else(bad)?.to_string();
        let numel = self
            .int_arg(*numel)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(bad)?;
        Ok(Node::TorchStorage { key, dtype, numel })
    }

    /// `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`: the
    /// view is recorded and checked against the storage length, nothing is read yet.
    fn torch_tensor(&self, args: &[usize]) -> R<Node> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(self.invalid("_rebuild_tensor_v2(storage, offset, size, stride, ...)"));
        };
        let Node::TorchStorage { key, dtype, numel } = self.node(*storage)? else {
            return Err(self.invalid("_rebuild_tensor_v2 without a storage"));
        };
        let offset = self
            .int_arg(*offset)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.invalid("tensor storage offset"))?;
        let shape = self.shape_arg(*size)?;
        let stride = self.shape_arg(*stride)?;
        if shape.len() != stride.len() {
            return Err(self.invalid(format!(
                "tensor size {shape:?} and stride {stride:?} differ in rank"
            )));
        }
        let last = shape.iter().zip(&stride).try_fold(offset, |acc, (&d, &s)| {
            if d == 0 {
                Some(acc)
            } else {
                (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
            }
        });
        let empty = shape.contains(&0);
        match last {
            Some(l) if empty || l < *numel => {}
            _ => {
                return Err(self.invalid(format!(
                    "tensor view (offset {offset}, size {shape:?}, stride {stride:?}) reaches past storage {key} of {numel} elements"
                )))
            }
        }
        Ok(Node::TorchTensor(TorchTensorRef {
            storage: key.clone(),
            dtype: *dtype,
            storage_numel: *numel,
            offset,
            shape,
            stride,
        }))
    }

    /// Copies a hook-provided value into the arena.
    fn intern(&mut self, v: Value) -> usize {
        let n = match v {
            Value::None => Node::None,
            Value::Bool(b) => Node::Bool(b),
            Value::Int(i) => Node::Int(i),
            Value::BigInt(s) => Node::BigInt(s),
            Value::Float(f) => Node::Float(f),
            Value::Str(s) => Node::Str(s),
            Value::Bytes(b) => Node::Bytes(b),
            Value::List(v) => Node::List(v.into_iter().map(|x| self.intern(x)).collect()),
            Value::Tuple(v) => Node::Tuple(v.into_iter().map(|x| self.intern(x)).collect()),
            Value::Set(v) => Node::Set(v.into_iter().map(|x| self.intern(x)).collect()),
            Value::Dict(v) => Node::Dict(
                v.into_iter()
                    .map(|(k, x)| (self.intern(k), self.intern(x)))
                    .collect(),
            ),
            Value::Array(a) => Node::Array(a),
            Value::TorchTensor(t) => Node::TorchTensor(t),
        };
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn load_unicode(&mut self, n: u64) -> R<()> {
        let at = self.at;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| PickleError::Invalid {
                what: "string is not valid UTF-8".into(),
                offset: at,
            })?;
        self.push(Node::Str(s));
        Ok(())
    }

    fn load_bytes(&mut self, n: u64) -> R<()> {
        let b = self.take(n)?.to_vec();
        self.push(Node::Bytes(b));
        Ok(())
    }

    fn load_long(&mut self, n: u64) -> R<()> {
        if n > MAX_BIGINT_BYTES as u64 {
            return Err(
                self.unsupported(format!("integer of {n} bytes (limit {MAX_BIGINT_BYTES})"))
            );
        }
        let b = self.take(n)?.to_vec();
        self.push(long_from_le(&b));
        Ok(())
    }

    /// Decimal text (INT/LONG) to `Int`, or a normalised `BigInt`.
    fn parse_decimal(&self, t: &str) -> R<Node> {
        if let Ok(v) = t.parse::<i64>() {
            return Ok(Node::Int(v));
        }
        let (neg, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(self.invalid(format!("bad integer {t:?}")));
        }
        if digits.len() > MAX_BIGINT_BYTES * 3 {
            return Err(self.unsupported("integer with too many digits"));
        }
        let digits = digits.trim_start_matches('0');
        // Short forms that still failed i64 parsing are only possible with
        // leading zeros or "+"; re-parse the normalised text.
        let text = if neg {
            format!("-{digits}")
        } else {
            digits.to_string()
        };
        if digits.is_empty() {
            return Ok(Node::Int(0));
        }
        Ok(match text.parse::<i64>() {
            Ok(v) => Node::Int(v),
            Err(_) => Node::BigInt(text),
        })
    }

    /// Python 2 `str` repr (protocol 0 STRING) to bytes.
    fn decode_string_repr(&self, l: &[u8]) -> R<Vec<u8>> {
        let inner = match l {
            [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
            _ => return Err(self.invalid("STRING argument is not quoted")),
        };
        let mut out = Vec::with_capacity(inner.len());
        let mut i = 0;
        while let Some(&c) = inner.get(i) {
            i += 1;
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = inner.get(i) else {
                return Err(self.invalid("trailing backslash in STRING"));
            };
            i += 1;
            match e {
                b'\n' => {}
                b'\\' | b'\'' | b'"' => out.push(e),
                b'a' => out.push(7),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'v' => out.push(11),
                b'x' => {
                    let h = inner
                        .get(i..i + 2)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| self.invalid("bad \\x escape in STRING"))?;
                    out.push(h);
                    i += 2;
                }
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match inner.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push((v & 0xff) as u8);
                }
                _ => {
                    out.push(b'\\');
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// `raw-unicode-escape` (protocol 0 UNICODE): latin-1 bytes with
    /// `\uXXXX` / `\UXXXXXXXX` escapes.
    fn decode_raw_unicode_escape(&self, l: &[u8]) -> R<String> {
        let mut out = String::with_capacity(l.len());
        let mut i = 0;
        let mut pending_high: Option<u32> = None;
        while let Some(&c) = l.get(i) {
            let width = match (c, l.get(i + 1)) {
                (b'\\', Some(b'u')) => 4,
                (b'\\', Some(b'U')) => 8,
                _ => 0,
            };
            let cp = if width > 0 {
                let cp = l
                    .get(i + 2..i + 2 + width)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| self.invalid("bad \\u escape in UNICODE"))?;
                i += 2 + width;
                cp
            } else {
                i += 1;
                u32::from(c)
            };
            if let Some(hi) = pending_high.take() {
                if (0xdc00..0xe000).contains(&cp) {
                    let full = 0x10000 + ((hi - 0xd800) << 10) + (cp - 0xdc00);
                    out.push(char::from_u32(full).ok_or_else(|| self.invalid("bad surrogate"))?);
                    continue;
                }
                return Err(self.invalid("unpaired surrogate in UNICODE"));
            }
            if (0xd800..0xdc00).contains(&cp) {
                pending_high = Some(cp);
                continue;
            }
            out.push(
                char::from_u32(cp).ok_or_else(|| self.invalid("invalid code point in UNICODE"))?,
            );
        }
        if pending_high.is_some() {
            return Err(self.invalid("unpaired surrogate in UNICODE"));
        }
        Ok(out)
    }

    // ----- containers -----

    fn pairs(&self, items: Vec<usize>) -> R<Vec<(usize, usize)>> {
        if items.len() % 2 != 0 {
            return Err(self.invalid("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    fn extend_list(&mut self, l: usize, items: Vec<usize>) -> R<()> {
        let kind = self.node(l)?.kind();
        match self.node_mut(l)? {
            Node::List(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.unsupported(format!("APPEND to a {kind}"))),
        }
    }

    fn extend_dict(&mut self, d: usize, pairs: Vec<(usize, usize)>) -> R<()> {
        let kind = self.node(d)?.kind();
        match self.node_mut(d)? {
            Node::Dict(v) => {
                v.extend(pairs);
                Ok(())
            }
            _ => Err(self.unsupported(format!("SETITEM on a {kind}"))),
        }
    }

    fn tuple_items(&self, i: usize, what: &str) -> R<Vec<usize>> {
        match self.node(i)? {
            Node::Tuple(v) => Ok(v.clone()),
            n => Err(self.invalid(format!("{what} must be a tuple, got {}", n.kind()))),
        }
    }

    /// Items of any iterable container (for `set(x)`, `list(x)`, ...).
    fn iter_items(&self, i: usize) -> R<Vec<usize>> {
        match self.node(i)? {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => Ok(v.clone()),
            Node::Dict(v) => Ok(v.iter().map(|(k, _)| *k).collect()),
            n => Err(self.unsupported(format!("iterating a {}", n.kind()))),
        }
    }

    fn str_arg(&self, i: usize) -> Option<&str> {
        match self.node(i).ok()? {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_arg(&self, i: usize) -> Option<i64> {
        match self.node(i).ok()? {
            Node::Int(v) => Some(*v),
            Node::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Raw bytes from `bytes`, `bytearray`, or a Python-2 `str` (latin-1).
    fn bytes_arg(&self, i: usize) -> Option<Vec<u8>> {
        match self.node(i).ok()? {
            Node::Bytes(b) => Some(b.clone()),
            Node::Str(s) => string_to_latin1(s),
            _ => None,
        }
    }

    fn shape_arg(&self, i: usize) -> R<Vec<usize>> {
        let items = match self.node(i)? {
            Node::Tuple(v) | Node::List(v) => v.clone(),
            // numpy accepts a bare int for 1-d shapes.
            Node::Int(_) => vec![i],
            n => return Err(self.bad_numpy(format!("shape tuple, got {}", n.kind()))),
        };
        items
            .iter()
            .map(|&d| {
                self.int_arg(d)
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| self.bad_numpy("non-negative integer dimensions"))
            })
            .collect()
    }

    fn dtype_arg(&self, i: usize) -> R<(DType, bool)> {
        match self.node(i)? {
            Node::Dtype(d) => self.resolve_dtype(d),
            n => Err(self.bad_numpy(format!("numpy dtype, got {}", n.kind()))),
        }
    }

    /// Element type and whether its data is big-endian.
    fn resolve_dtype(&self, d: &DtypeNode) -> R<(DType, bool)> {
        let Some(t) = DType::from_numpy_code(&d.code) else {
            let hint = if d.code.starts_with('O') {
                " (object arrays are not supported)"
            } else {
                ""
            };
            return Err(self.unsupported(format!("numpy dtype {:?}{hint}", d.code)));
        };
        let big = match d.order {
            b'>' => true,
            b'<' | b'|' => false,
            _ => cfg!(target_endian = "big"),
        };
        Ok((t, big && t.itemsize() > 1))
    }

    // ----- calls -----

    fn class_of(&self, f: usize) -> R<Global> {
        match self.node(f)? {
            Node::Class(g) => Ok(*g),
            n => Err(self.unsupported(format!("calling a {}", n.kind()))),
        }
    }

    /// `f(*args)` for whitelisted callables, reimplemented without executing.
    fn call(&self, f: usize, args: &[usize]) -> R<Node> {
        let g = self.class_of(f)?;
        match g {
            Global::Reconstruct => {
                let [cls, _shape, _typecode] = args else {
                    return Err(self.bad_numpy("_reconstruct(ndarray, shape, typecode)"));
                };
                match self.node(*cls)? {
                    Node::Class(Global::NdarrayClass) => Ok(Node::PendingArray),
                    _ => Err(self.unsupported("_reconstruct of an ndarray subclass")),
                }
            }
            Global::NdarrayClass => Err(self.unsupported("calling numpy.ndarray directly")),
            Global::DtypeClass => {
                let code = args
                    .first()
                    .and_then(|&a| self.str_arg(a))
                    .ok_or_else(|| self.bad_numpy("numpy.dtype(code: str, ...)"))?;
                let (order, code) = match code.as_bytes().first() {
                    Some(&o @ (b'<' | b'>' | b'|' | b'=')) => (o, &code[1..]),
                    _ => (b'=', code),
                };
                Ok(Node::Dtype(DtypeNode {
                    code: code.to_string(),
                    order,
                }))
            }
            Global::Scalar => {
                let [dt, payload] = args else {
                    return Err(self.bad_numpy("scalar(dtype, bytes)"));
                };
                let (t, big) = self.dtype_arg(*dt)?;
                let mut raw = self
                    .bytes_arg(*payload)
                    .ok_or_else(|| self.bad_numpy("scalar payload bytes"))?;
                if raw.len() != t.itemsize() {
                    return Err(self.bad_numpy(format!(
                        "{} payload bytes for {}",
                        t.itemsize(),
                        t.numpy_code()
                    )));
                }
                if big {
                    raw.reverse();
                }
                Ok(match decode_elem(t, &raw) {
                    Elem::B(b) => Node::Bool(b),
                    Elem::I(v) => Node::Int(v),
                    Elem::U(v) => match i64::try_from(v) {
                        Ok(v) => Node::Int(v),
                        Err(_) => Node::BigInt(v.to_string()),
                    },
                    Elem::F(v) => Node::Float(v),
                })
            }
            Global::FromBuffer => {
                let [buf, dt, shape, order] = args else {
                    return Err(self.bad_numpy("_frombuffer(buffer, dtype, shape, order)"));
                };
                let data = match self.node(*buf)? {
                    Node::Bytes(b) => b.clone(),
                    n => return Err(self.bad_numpy(format!("buffer bytes, got {}", n.kind()))),
                };
                let (t, big) = self.dtype_arg(*dt)?;
                let shape = self.shape_arg(*shape)?;
                let fortran = match self.str_arg(*order) {
                    Some("C") => false,
                    Some("F") => true,
                    _ => return Err(self.bad_numpy("order 'C' or 'F'")),
                };
                self.make_array(t, big, shape, fortran, data)
            }
            Global::CodecsEncode => {
                let s = args
                    .first()
                    .and_then(|&a| self.str_arg(a))
                    .ok_or_else(|| self.invalid("_codecs.encode needs a str"))?;
                let enc = match args.get(1) {
                    Some(&e) => self
                        .str_arg(e)
                        .ok_or_else(|| self.invalid("encoding must be a str"))?,
                    None => "utf-8",
                };
                Ok(Node::Bytes(self.encode(s, enc)?))
            }
            Global::Set | Global::FrozenSet | Global::Tuple | Global::List => {
                let items = match args {
                    [] => Vec::new(),
                    [it] => self.iter_items(*it)?,
                    _ => return Err(self.invalid("too many arguments to a builtin container")),
                };
                Ok(match g {
                    Global::Tuple => Node::Tuple(items),
                    Global::List => Node::List(items),
                    _ => Node::Set(items),
                })
            }
            Global::Bytes | Global::ByteArray => match args {
                [] => Ok(Node::Bytes(Vec::new())),
                [b] => match self.node(*b)? {
                    Node::Bytes(b) => Ok(Node::Bytes(b.clone())),
                    n => Err(self.unsupported(format!("bytes() of a {}", n.kind()))),
                },
                [s, e] => {
                    let (Some(s), Some(e)) = (self.str_arg(*s), self.str_arg(*e)) else {
                        return Err(self.invalid("bytes(str, encoding) needs two str"));
                    };
                    Ok(Node::Bytes(self.encode(s, e)?))
                }
                _ => Err(self.invalid("too many arguments to bytes()")),
            },
            Global::OrderedDict => {
                let pairs = match args {
                    [] => Vec::new(),
                    [it] => {
                        let items = self.iter_items(*it)?;
                        let mut pairs = Vec::with_capacity(items.len());
                        for p in items {
                            match self.iter_items(p)?.as_slice() {
                                [k, v] => pairs.push((*k, *v)),
                                _ => return Err(self.invalid("OrderedDict item is not a pair")),
                            }
                        }
                        pairs
                    }
                    _ => return Err(self.invalid("too many arguments to OrderedDict")),
                };
                Ok(Node::Dict(pairs))
            }
            Global::TorchRebuildTensorV2 => self.torch_tensor(args),
            Global::TorchRebuildParameter => match args.first().map(|&a| self.node(a)) {
                Some(Ok(Node::TorchTensor(t))) => Ok(Node::TorchTensor(t.clone())),
                _ => Err(self.invalid("_rebuild_parameter(tensor, requires_grad, hooks)")),
            },
            Global::TorchStorage(_) => Err(self.unsupported("constructing a torch storage")),
        }
    }

    /// `cls.__new__(cls, *args)`: mutable builtins ignore the arguments and
    /// are filled in by later APPENDS/SETITEMS; immutable ones take them.
    fn new_obj(&self, cls: usize, args: &[usize]) -> R<Node> {
        match self.class_of(cls)? {
            Global::List => Ok(Node::List(Vec::new())),
            Global::Set => Ok(Node::Set(Vec::new())),
            Global::OrderedDict => Ok(Node::Dict(Vec::new())),
            Global::ByteArray => Ok(Node::Bytes(Vec::new())),
            Global::Tuple | Global::FrozenSet | Global::Bytes => self.call(cls, args),
            g => Err(self.unsupported(format!("NEWOBJ of {g:?}"))),
        }
    }

    fn encode(&self, s: &str, enc: &str) -> R<Vec<u8>> {
        match enc.to_ascii_lowercase().replace('_', "-").as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => string_to_latin1(s)
                .ok_or_else(|| self.invalid("string has characters outside latin-1")),
            "utf-8" | "utf8" => Ok(s.as_bytes().to_vec()),
            "ascii" if s.is_ascii() => Ok(s.as_bytes().to_vec()),
            other => Err(self.unsupported(format!("_codecs.encode with encoding {other:?}"))),
        }
    }

    fn make_array(
        &self,
        t: DType,
        big: bool,
        shape: Vec<usize>,
        fortran: bool,
        mut data: Vec<u8>,
    ) -> R<Node> {
        if big {
            for c in data.chunks_exact_mut(t.itemsize()) {
                c.reverse();
            }
        }
        let a = NdArray::new(t, shape, fortran, data).map_err(|e| self.bad_numpy(e.to_string()))?;
        Ok(Node::Array(a))
    }

    // ----- BUILD -----

    fn build(&mut self, inst: usize, state: usize) -> R<()> {
        match self.node(inst)? {
            Node::PendingArray => {
                let n = self.array_state(state)?;
                *self.node_mut(inst)? = n;
                Ok(())
            }
            Node::Dtype(_) => {
                let items = self.tuple_items(state, "dtype state")?;
                let order = items
                    .get(1)
                    .and_then(|&o| self.str_arg(o))
                    .and_then(|o| match o.as_bytes() {
                        [c @ (b'<' | b'>' | b'|' | b'=')] => Some(*c),
                        _ => None,
                    })
                    .ok_or_else(|| self.bad_numpy("dtype state (version, '<'|'>'|'|'|'=', ...)"))?;
                if let Node::Dtype(d) = self.node_mut(inst)? {
                    d.order = order;
                }
                Ok(())
            }
            _ if matches!(self.node(state)?, Node::None) => Ok(()),
            // An OrderedDict's instance attributes, e.g. the `_metadata` torch attaches to a
            // state dict; the items are what matter.
            Node::Dict(_) if matches!(self.node(state)?, Node::Dict(_)) => Ok(()),
            n => Err(self.unsupported(format!("BUILD (__setstate__) on a {}", n.kind()))),
        }
    }

    /// numpy `ndarray.__setstate__`: `(version, shape, dtype, is_fortran,
    /// rawdata)`, or the 4-tuple form without version from old numpy.
    fn array_state(&self, state: usize) -> R<Node> {
        let items = self
            .tuple_items(state, "ndarray state")
            .map_err(|_| self.bad_numpy("ndarray state tuple"))?;
        let (shape, dt, fortran, raw) = match items.as_slice() {
            [_, s, d, f, r] | [s, d, f, r] => (*s, *d, *f, *r),
            _ => {
                return Err(
                    self.bad_numpy("ndarray state (version, shape, dtype, is_fortran, rawdata)")
                )
            }
        };
        let shape = self.shape_arg(shape)?;
        let (t, big) = self.dtype_arg(dt)?;
        let fortran = self
            .int_arg(fortran)
            .ok_or_else(|| self.bad_numpy("is_fortran bool"))?
            != 0;
        let data = match self.node(raw)? {
            Node::Bytes(b) => b.clone(),
            Node::Str(s) => {
                string_to_latin1(s).ok_or_else(|| self.bad_numpy("latin-1 str rawdata"))?
            }
            Node::List(_) => {
                return Err(self.unsupported("numpy object arrays (rawdata is a list)"))
            }
            n => return Err(self.bad_numpy(format!("rawdata bytes, got {}", n.kind()))),
        };
        self.make_array(t, big, shape, fortran, data)
    }

    // ----- output -----

    fn charge(&mut self, units: usize) -> R<()> {
        self.budget = self
            .budget
            .checked_sub(units)
            .ok_or(PickleError::TooLarge {
                limit: self.budget_limit,
            })?;
        Ok(())
    }

    /// Converts an arena object into a [`Value`] tree. Iterative (an explicit
    /// work stack) so that nesting depth never touches the thread stack.
    fn materialize(&mut self, root: usize) -> R<Value> {
        let mut work = vec![Work::Enter(root, 0)];
        let mut done: Vec<Value> = Vec::new();
        // Containers currently being assembled, to detect cycles.
        let mut path = HashSet::new();
        while let Some(w) = work.pop() {
            match w {
                Work::Enter(i, depth) => {
                    if depth > MAX_DEPTH {
                        return Err(PickleError::TooDeep { limit: MAX_DEPTH });
                    }
                    self.charge(NODE_COST)?;
                    // Each payload clone is charged right after it is made, so
                    // at most one allocation past the budget ever happens.
                    let (leaf, units) = match self.node(i)? {
                        Node::None => (Value::None, 0),
                        Node::Bool(b) => (Value::Bool(*b), 0),
                        Node::Int(v) => (Value::Int(*v), 0),
                        Node::Float(v) => (Value::Float(*v), 0),
                        Node::BigInt(s) => (Value::BigInt(s.clone()), s.len()),
                        Node::Str(s) => (Value::Str(s.clone()), s.len()),
                        Node::Bytes(b) => (Value::Bytes(b.clone()), b.len()),
                        Node::Array(a) => (Value::Array(a.clone()), a.data.len()),
                        Node::TorchTensor(t) => (Value::TorchTensor(t.clone()), t.shape.len()),
                        Node::List(v) | Node::Tuple(v) | Node::Set(v) => {
                            let kids: Vec<usize> = v.iter().rev().copied().collect();
                            self.enter_container(i, kids.len(), &mut path, &mut work)?;
                            work.extend(kids.into_iter().map(|c| Work::Enter(c, depth + 1)));
                            continue;
                        }
                        Node::Dict(v) => {
                            let kids: Vec<usize> =
                                v.iter().rev().flat_map(|&(k, x)| [x, k]).collect();
                            self.enter_container(i, kids.len(), &mut path, &mut work)?;
                            work.extend(kids.into_iter().map(|c| Work::Enter(c, depth + 1)));
                            continue;
                        }
                        n @ (Node::Class(_)
                        | Node::Dtype(_)
                        | Node::PendingArray
                        | Node::TorchStorage { .. }) => {
                            return Err(self.unsupported(format!(
                                "a bare {} cannot be returned as data",
                                n.kind()
                            )))
                        }
                    };
                    self.charge(units)?;
                    done.push(leaf);
                }
                Work::Exit(i, n) => {
                    path.remove(&i);
                    let start = done
                        .len()
                        .checked_sub(n)
                        .ok_or(PickleError::StackUnderflow { offset: self.at })?;
                    let items = done.split_off(start);
                    let v = match self.node(i)? {
                        Node::List(_) => Value::List(items),
                        Node::Tuple(_) => Value::Tuple(items),
                        Node::Set(_) => Value::Set(items),
                        _ => {
                            let mut pairs = Vec::with_capacity(items.len() / 2);
                            let mut it = items.into_iter();
                            while let (Some(k), Some(x)) = (it.next(), it.next()) {
                                pairs.push((k, x));
                            }
                            Value::Dict(pairs)
                        }
                    };
                    done.push(v);
                }
            }
        }
        done.pop()
            .ok_or(PickleError::StackUnderflow { offset: self.at })
    }

    fn enter_container(
        &self,
        i: usize,
        n: usize,
        path: &mut HashSet<usize>,
        work: &mut Vec<Work>,
    ) -> R<()> {
        if !path.insert(i) {
            return Err(self.unsupported("self-referencing (cyclic) structure"));
        }
        work.push(Work::Exit(i, n));
        Ok(())
    }
}

fn latin1_to_string(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// Inverse of [`latin1_to_string`]; `None` if a char is above U+00FF.
/// Works on the UTF-8 bytes directly because array payloads go through it.
fn string_to_latin1(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c < 0x80 {
            out.push(c);
            i += 1;
        } else if c == 0xc2 || c == 0xc3 {
            // Two-byte sequences starting C2/C3 encode exactly U+0080..U+00FF.
            let cont = *b.get(i + 1)?;
            out.push(((c & 0x03) << 6) | (cont & 0x3f));
            i += 2;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Little-endian two's complement (LONG1/LONG4 payload) to `Int`/`BigInt`.
fn long_from_le(b: &[u8]) -> Node {
    if b.is_empty() {
        return Node::Int(0);
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    if b.len() <= 8 {
        let fill = if neg { 0xff } else { 0 };
        let mut a = [fill; 8];
        a[..b.len()].copy_from_slice(b);
        return Node::Int(i64::from_le_bytes(a));
    }
    // Magnitude = two's-complement negation for negative values.
    let mut mag = b.to_vec();
    if neg {
        let mut carry = true;
        for x in mag.iter_mut() {
            *x = !*x;
            if carry {
                let (y, c) = x.overflowing_add(1);
                *x = y;
                carry = c;
            }
        }
    }
    while mag.len() > 1 && mag.last() == Some(&0) {
        mag.pop();
    }
    if mag.len() <= 8 {
        let mut a = [0u8; 8];
        a[..mag.len()].copy_from_slice(&mag);
        let m = u64::from_le_bytes(a);
        if !neg {
            if let Ok(v) = i64::try_from(m) {
                return Node::Int(v);
            }
        } else if m <= 1u64 << 63 {
            return Node::Int((m as i64).wrapping_neg());
        }
    }
    let digits = magnitude_to_decimal(&mag);
    Node::BigInt(if neg { format!("-{digits}") } else { digits })
}

/// Unsigned little-endian bytes to decimal text.
fn magnitude_to_decimal(mag: &[u8]) -> String {
    let mut limbs: Vec<u32> = mag
        .chunks(4)
        .map(|c| {
            let mut a = [0u8; 4];
            a[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(a)
        })
        .collect();
    let mut chunks = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for l in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*l);
            *l = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut s = chunks
        .last()
        .map_or_else(|| "0".to_string(), u32::to_string);
    for c in chunks.iter().rev().skip(1) {
        s.push_str(&format!("{c:09}"));
    }
    s
}

/// Decimal text to minimal little-endian two's complement; `None` if the
/// text is not a decimal integer.
fn decimal_to_le(text: &str) -> Option<Vec<u8>> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut mag: Vec<u8> = Vec::new();
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for x in mag.iter_mut() {
            let v = u32::from(*x) * 10 + carry;
            *x = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    while mag.last() == Some(&0) {
        mag.pop();
    }
    if mag.is_empty() {
        return Some(Vec::new());
    }
    mag.push(0);
    if neg {
        let mut carry = true;
        for x in mag.iter_mut() {
            *x = !*x;
            if carry {
                let (y, c) = x.overflowing_add(1);
                *x = y;
                carry = c;
            }
        }
    }
    trim_twos_complement(&mut mag);
    Some(mag)
}

/// Drops redundant sign-extension bytes, as Python's `encode_long` does.
fn trim_twos_complement(b: &mut Vec<u8>) {
    while b.len() > 1 {
        let last = b[b.len() - 1];
        let prev_neg = b[b.len() - 2] & 0x80 != 0;
        if (last == 0 && !prev_neg) || (last == 0xff && prev_neg) {
            b.pop();
        } else {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// Serialises `v` as a protocol-2 pickle that Python 3 with numpy 1.x or 2.x
/// loads (arrays use numpy's own protocol-2 `_reconstruct` form).
///
/// A `BigInt` whose text is not a decimal integer is written as a `str`
/// rather than risking a malformed stream; an `NdArray` whose `data` does not
/// match its shape is written as-is and numpy will refuse it on load.
pub fn write_pickle(v: &Value) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(&[op::PROTO, 2]);
    write_value(&mut w, v);
    w.push(op::STOP);
    w
}

/// CPython batches APPENDS/SETITEMS in groups of this size.
const BATCH: usize = 1000;

fn write_value(w: &mut Vec<u8>, v: &Value) {
    match v {
        // A torch view only means something inside its checkpoint archive; the writer serves
        // annotation and score pickles, which never hold one.
        Value::None | Value::TorchTensor(_) => w.push(op::NONE),
        Value::Bool(true) => w.push(op::NEWTRUE),
        Value::Bool(false) => w.push(op::NEWFALSE),
        Value::Int(i) => write_int(w, *i),
        Value::BigInt(s) => match decimal_to_le(s) {
            Some(b) => write_long(w, &b),
            None => write_str(w, s),
        },
        Value::Float(f) => {
            w.push(op::BINFLOAT);
            w.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => write_str(w, s),
        Value::Bytes(b) => write_bytes(w, b),
        Value::List(items) => {
            w.push(op::EMPTY_LIST);
            write_list_items(w, items);
        }
        Value::Tuple(items) => write_tuple(w, items),
        Value::Dict(items) => {
            w.push(op::EMPTY_DICT);
            for chunk in items.chunks(BATCH) {
                if let [(k, x)] = chunk {
                    write_value(w, k);
                    write_value(w, x);
                    w.push(op::SETITEM);
                } else {
                    w.push(op::MARK);
                    for (k, x) in chunk {
                        write_value(w, k);
                        write_value(w, x);
                    }
                    w.push(op::SETITEMS);
                }
            }
        }
        Value::Set(items) => {
            // Protocol 2 has no set opcodes; CPython writes set(list).
            write_global(w, "builtins", "set");
            w.push(op::EMPTY_LIST);
            write_list_items(w, items);
            w.push(op::TUPLE1);
            w.push(op::REDUCE);
        }
        Value::Array(a) => write_array(w, a),
    }
}

fn write_list_items(w: &mut Vec<u8>, items: &[Value]) {
    for chunk in items.chunks(BATCH) {
        if let [x] = chunk {
            write_value(w, x);
            w.push(op::APPEND);
        } else {
            w.push(op::MARK);
            for x in chunk {
                write_value(w, x);
            }
            w.push(op::APPENDS);
        }
    }
}

fn write_tuple(w: &mut Vec<u8>, items: &[Value]) {
    match items.len() {
        0 => w.push(op::EMPTY_TUPLE),
        n @ 1..=3 => {
            for x in items {
                write_value(w, x);
            }
            w.push(op::TUPLE1 + (n as u8 - 1));
        }
        _ => {
            w.push(op::MARK);
            for x in items {
                write_value(w, x);
            }
            w.push(op::TUPLE);
        }
    }
}

fn write_int(w: &mut Vec<u8>, i: i64) {
    if let Ok(b) = u8::try_from(i) {
        w.push(op::BININT1);
        w.push(b);
    } else if let Ok(h) = u16::try_from(i) {
        w.push(op::BININT2);
        w.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(x) = i32::try_from(i) {
        w.push(op::BININT);
        w.extend_from_slice(&x.to_le_bytes());
    } else {
        let mut b = i.to_le_bytes().to_vec();
        trim_twos_complement(&mut b);
        write_long(w, &b);
    }
}

fn write_long(w: &mut Vec<u8>, b: &[u8]) {
    match u8::try_from(b.len()) {
        Ok(n) => {
            w.push(op::LONG1);
            w.push(n);
        }
        Err(_) => {
            w.push(op::LONG4);
            // Widths past i32::MAX bytes cannot come from a decimal String
            // that fits in memory; saturating keeps this total.
            let n = i32::try_from(b.len()).unwrap_or(i32::MAX);
            w.extend_from_slice(&n.to_le_bytes());
        }
    }
    w.extend_from_slice(b);
}

fn write_str(w: &mut Vec<u8>, s: &str) {
    match u32::try_from(s.len()) {
        Ok(n) => {
            w.push(op::BINUNICODE);
            w.extend_from_slice(&n.to_le_bytes());
        }
        Err(_) => {
            // Protocol 2 has no wider str opcode; every Python 3 unpickler
            // accepts the protocol-4 one regardless of the PROTO header.
            w.push(op::BINUNICODE8);
            w.extend_from_slice(&(s.len() as u64).to_le_bytes());
        }
    }
    w.extend_from_slice(s.as_bytes());
}

fn write_global(w: &mut Vec<u8>, module: &str, name: &str) {
    w.push(op::GLOBAL);
    w.extend_from_slice(module.as_bytes());
    w.push(b'\n');
    w.extend_from_slice(name.as_bytes());
    w.push(b'\n');
}

/// Protocol 2 has no bytes opcode; CPython writes
/// `_codecs.encode(<latin-1 str>, 'latin1')`.
fn write_bytes(w: &mut Vec<u8>, b: &[u8]) {
    write_global(w, "_codecs", "encode");
    write_str(w, &latin1_to_string(b));
    write_str(w, "latin1");
    w.push(op::TUPLE2);
    w.push(op::REDUCE);
}

/// Mirrors numpy's protocol-2 `ndarray.__reduce__` output.
fn write_array(w: &mut Vec<u8>, a: &NdArray) {
    write_global(w, "numpy.core.multiarray", "_reconstruct");
    write_global(w, "numpy", "ndarray");
    write_int(w, 0);
    w.push(op::TUPLE1);
    write_bytes(w, b"b");
    w.push(op::TUPLE3);
    w.push(op::REDUCE);

    w.push(op::MARK);
    write_int(w, 1);
    let shape: Vec<Value> = a
        .shape
        .iter()
        .map(|&d| Value::Int(i64::try_from(d).unwrap_or(i64::MAX)))
        .collect();
    write_tuple(w, &shape);
    write_global(w, "numpy", "dtype");
    write_str(w, a.dtype.numpy_code());
    w.push(op::NEWFALSE);
    w.push(op::NEWTRUE);
    w.push(op::TUPLE3);
    w.push(op::REDUCE);
    w.push(op::MARK);
    write_int(w, 3);
    write_str(w, if a.dtype.itemsize() == 1 { "|" } else { "<" });
    w.extend_from_slice(&[op::NONE, op::NONE, op::NONE]);
    write_int(w, -1);
    write_int(w, -1);
    write_int(w, 0);
    w.push(op::TUPLE);
    w.push(op::BUILD);
    w.push(if a.fortran_order {
        op::NEWTRUE
    } else {
        op::NEWFALSE
    });
    write_bytes(w, &a.data);
    w.push(op::TUPLE);
    w.push(op::BUILD);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pickle/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}"))
            .unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
    }

    fn load(name: &str) -> Value {
        read_pickle(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    // ----- a small JSON reader for expected.json (no serde in this crate) -----

    #[derive(Debug)]
    enum J {
        Null,
        Bool(bool),
        /// Raw number text, so 64-bit integers and floats both stay exact.
        Num(String),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        fn get(&self, k: &str) -> Option<&J> {
            match self {
                J::Obj(v) => v.iter().find(|(key, _)| key == k).map(|(_, x)| x),
                _ => None,
            }
        }
    }

    struct Json<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Json<'_> {
        fn parse(text: &str) -> J {
            let mut p = Json {
                s: text.as_bytes(),
                i: 0,
            };
            let v = p.value();
            p.ws();
            assert_eq!(p.i, p.s.len(), "trailing JSON");
            v
        }

        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn eat(&mut self, lit: &str) -> bool {
            if self.s[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                true
            } else {
                false
            }
        }

        fn value(&mut self) -> J {
            self.ws();
            match self.s[self.i] {
                b'{' => {
                    self.i += 1;
                    let mut v = Vec::new();
                    self.ws();
                    if self.eat("}") {
                        return J::Obj(v);
                    }
                    loop {
                        self.ws();
                        let J::Str(k) = self.value() else {
                            panic!("JSON key is not a string")
                        };
                        self.ws();
                        assert!(self.eat(":"));
                        v.push((k, self.value()));
                        self.ws();
                        if self.eat("}") {
                            return J::Obj(v);
                        }
                        assert!(self.eat(","));
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut v = Vec::new();
                    self.ws();
                    if self.eat("]") {
                        return J::Arr(v);
                    }
                    loop {
                        v.push(self.value());
                        self.ws();
                        if self.eat("]") {
                            return J::Arr(v);
                        }
                        assert!(self.eat(","));
                    }
                }
                b'"' => {
                    self.i += 1;
                    let mut units: Vec<u16> = Vec::new();
                    let mut out = String::new();
                    loop {
                        let c = self.s[self.i];
                        self.i += 1;
                        match c {
                            b'"' => break,
                            b'\\' => {
                                let e = self.s[self.i];
                                self.i += 1;
                                let ch = match e {
                                    b'n' => '\n',
                                    b't' => '\t',
                                    b'r' => '\r',
                                    b'b' => '\u{8}',
                                    b'f' => '\u{c}',
                                    b'u' => {
                                        let h = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                            .unwrap();
                                        self.i += 4;
                                        units.push(u16::from_str_radix(h, 16).unwrap());
                                        if let Ok(s) = String::from_utf16(&units) {
                                            out.push_str(&s);
                                            units.clear();
                                        }
                                        continue;
                                    }
                                    other => char::from(other),
                                };
                                out.push(ch);
                            }
                            _ => {
                                // Multi-byte UTF-8 sequences pass through byte-wise.
                                let start = self.i - 1;
                                let mut end = self.i;
                                while end < self.s.len() && (self.s[end] & 0xc0) == 0x80 {
                                    end += 1;
                                }
                                out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap());
                                self.i = end;
                            }
                        }
                    }
                    J::Str(out)
                }
                _ => {
                    if self.eat("null") {
                        return J::Null;
                    }
                    if self.eat("true") {
                        return J::Bool(true);
                    }
                    if self.eat("false") {
                        return J::Bool(false);
                    }
                    let start = self.i;
                    while self.i < self.s.len()
                        && (self.s[self.i].is_ascii_alphanumeric()
                            || matches!(self.s[self.i], b'-' | b'+' | b'.'))
                    {
                        self.i += 1;
                    }
                    J::Num(
                        std::str::from_utf8(&self.s[start..self.i])
                            .unwrap()
                            .to_string(),
                    )
                }
            }
        }
    }

    fn json_f64(t: &str) -> f64 {
        match t {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => t.parse().unwrap_or_else(|_| panic!("bad JSON float {t}")),
        }
    }

    fn is_float_text(t: &str) -> bool {
        t.contains(['.', 'e', 'E', 'I', 'N'])
    }

    fn same_f64(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Compares a loaded value with its expected.json rendering exactly.
    fn check(got: &Value, exp: &J, path: &str) {
        match exp {
            J::Obj(_) if exp.get("shape").is_some() && exp.get("data").is_some() => {
                let a = got
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: expected ndarray, got {}", got.type_name()));
                let Some(J::Str(code)) = exp.get("dtype") else {
                    panic!("{path}: no dtype")
                };
                assert_eq!(a.dtype.numpy_code(), code, "{path}: dtype");
                let Some(J::Arr(shape)) = exp.get("shape") else {
                    panic!("{path}: shape")
                };
                let shape: Vec<usize> = shape
                    .iter()
                    .map(|d| match d {
                        J::Num(t) => t.parse().unwrap(),
                        _ => panic!("{path}: shape item"),
                    })
                    .collect();
                assert_eq!(a.shape, shape, "{path}: shape");
                if let Some(J::Bool(f)) = exp.get("fortran") {
                    assert_eq!(a.fortran_order, *f, "{path}: fortran_order");
                }
                let Some(J::Arr(data)) = exp.get("data") else {
                    panic!("{path}: data")
                };
                assert_eq!(a.len(), data.len(), "{path}: len");
                if matches!(a.dtype, DType::F16 | DType::F32 | DType::F64) {
                    let v = a.to_f64_vec().unwrap();
                    for (i, (x, e)) in v.iter().zip(data).enumerate() {
                        let J::Num(t) = e else { panic!("{path}[{i}]") };
                        assert!(same_f64(*x, json_f64(t)), "{path}[{i}]: {x} != {t}");
                    }
                    if a.dtype == DType::F32 {
                        let v32 = a.to_f32_vec().unwrap();
                        assert!(v32.iter().zip(&v).all(|(x, y)| same_f64(f64::from(*x), *y)));
                    }
                } else {
                    let v = a.to_i64_vec().unwrap();
                    for (i, (x, e)) in v.iter().zip(data).enumerate() {
                        let want: i64 = match e {
                            J::Num(t) => t.parse().unwrap(),
                            J::Bool(b) => i64::from(*b),
                            _ => panic!("{path}[{i}]"),
                        };
                        assert_eq!(*x, want, "{path}[{i}]");
                    }
                }
            }
            J::Obj(items) => {
                let d = got
                    .as_dict()
                    .unwrap_or_else(|| panic!("{path}: expected dict, got {}", got.type_name()));
                let keys: Vec<&str> = d.iter().map(|(k, _)| k.as_str().unwrap()).collect();
                let want: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys, want, "{path}: keys");
                for (k, e) in items {
                    check(got.get(k).unwrap(), e, &format!("{path}.{k}"));
                }
            }
            J::Arr(items) => {
                let l = got
                    .as_list()
                    .unwrap_or_else(|| panic!("{path}: expected list, got {}", got.type_name()));
                assert_eq!(l.len(), items.len(), "{path}: len");
                for (i, (g, e)) in l.iter().zip(items).enumerate() {
                    check(g, e, &format!("{path}[{i}]"));
                }
            }
            J::Num(t) if is_float_text(t) => match got {
                Value::Float(f) => assert!(same_f64(*f, json_f64(t)), "{path}: {f} != {t}"),
                _ => panic!("{path}: expected float, got {got:?}"),
            },
            J::Num(t) => assert_eq!(got, &Value::Int(t.parse().unwrap()), "{path}"),
            J::Str(s) => match got {
                Value::Str(g) | Value::BigInt(g) => assert_eq!(g, s, "{path}"),
                _ => panic!("{path}: expected str, got {got:?}"),
            },
            J::Bool(b) => assert_eq!(got, &Value::Bool(*b), "{path}"),
            J::Null => assert_eq!(got, &Value::None, "{path}"),
        }
    }

    fn expected() -> J {
        Json::parse(&String::from_utf8(fixture("expected.json")).unwrap())
    }

    // ----- real pickles made by Python/numpy -----

    #[test]
    fn pyskl_annotations_match_numpy_values() {
        let exp = expected();
        let exp = exp.get("annotation").unwrap();
        for name in [
            "ann_p2.pkl",
            "ann_p4.pkl",
            "ann_p5.pkl",
            "ann_p2_np1.pkl",
            "ann_p4_np1.pkl",
            "ann_p5_np1.pkl",
        ] {
            let v = load(name);
            check(&v, exp, name);
            // The accessors the workbench uses.
            let anns = v.get("annotations").and_then(Value::as_list).unwrap();
            assert_eq!(anns.len(), 3);
            let a = &anns[2];
            assert_eq!(
                a.get("label").and_then(Value::as_i64),
                Some(59),
                "np.int64 label"
            );
            assert_eq!(a.get("total_frames").and_then(Value::as_i64), Some(5));
            let kp = a.get("keypoint").and_then(Value::as_array).unwrap();
            assert_eq!(kp.shape, vec![1, 5, 36, 2]);
            assert_eq!(kp.to_f32_vec().unwrap().len(), 360);
            let shape = a.get("img_shape").and_then(Value::as_list).unwrap();
            assert_eq!(shape, &[Value::Int(720), Value::Int(1280)]);
            assert!(matches!(a.get("img_shape"), Some(Value::Tuple(_))));
        }
    }

    #[test]
    fn score_dumps_match_numpy_values() {
        let exp = expected();
        check(&load("scores_p4.pkl"), exp.get("scores").unwrap(), "scores");
        for name in [
            "mixed_p2.pkl",
            "mixed_p4.pkl",
            "mixed_p5.pkl",
            "mixed_p2_np1.pkl",
        ] {
            let v = load(name);
            check(&v, exp.get("mixed").unwrap(), name);
            let f = v.get("f64_fortran").and_then(Value::as_array).unwrap();
            assert!(f.fortran_order, "{name}");
            // C-order view of arange(12).reshape(3, 4) * 0.5 - 2.
            let want: Vec<f64> = (0..12).map(|i| f64::from(i) * 0.5 - 2.0).collect();
            assert_eq!(f.to_f64_vec().unwrap(), want, "{name}");
            let be = v.get("be_f4").and_then(Value::as_array).unwrap();
            assert_eq!(be.to_f32_vec().unwrap()[..2], [1.5, -2.25], "{name}");
        }
    }

    #[test]
    fn every_dtype_and_byte_order_matches_numpy() {
        let exp = expected();
        for name in ["dtypes_p2.pkl", "dtypes_p4.pkl"] {
            check(&load(name), exp.get("dtypes").unwrap(), name);
        }
    }

    fn builtins_expected() -> Value {
        let s = |x: &str| Value::Str(x.to_string());
        let i = Value::Int;
        let shared = Value::List(vec![i(1), i(2)]);
        let entries = vec![
            ("none", Value::None),
            ("t", Value::Bool(true)),
            ("f", Value::Bool(false)),
            ("small", i(5)),
            ("neg", i(-3)),
            ("i16", i(40000)),
            ("i32", i(-(1 << 31))),
            ("i64", i(1 << 62)),
            (
                "big",
                Value::BigInt("1267650600228229401496703205376".into()),
            ),
            (
                "negbig",
                Value::BigInt("-1267650600228229401496703205376".into()),
            ),
            ("float", Value::Float(1.25)),
            ("negf", Value::Float(-1e300)),
            ("str", s("h\u{e9}llo \u{2713} \\ \n \u{1F600}")),
            ("bytes", Value::Bytes(vec![0, 0xff, b'a', b'b'])),
            ("empty_bytes", Value::Bytes(vec![])),
            ("ba", Value::Bytes(b"xy".to_vec())),
            ("tuple0", Value::Tuple(vec![])),
            ("tuple1", Value::Tuple(vec![i(1)])),
            ("tuple5", Value::Tuple((1..=5).map(i).collect())),
            (
                "list",
                Value::List(vec![i(1), Value::List(vec![i(2), Value::List(vec![i(3)])])]),
            ),
            ("set", Value::Set(vec![i(7)])),
            ("fs", Value::Set(vec![i(8)])),
            ("shared", Value::List(vec![shared.clone(), shared])),
        ];
        Value::Dict(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
    }

    #[test]
    fn builtin_types_load_at_every_protocol() {
        let want = builtins_expected();
        for p in 0..=5 {
            let name = format!("builtins_p{p}.pkl");
            assert_eq!(load(&name), want, "{name}");
        }
    }

    #[test]
    fn ordered_dict_keeps_insertion_order() {
        let want = Value::Dict(vec![
            (Value::Str("zeta".into()), Value::Int(1)),
            (
                Value::Str("alpha".into()),
                Value::List(vec![Value::Float(1.5), Value::None]),
            ),
            (
                Value::Str("mid".into()),
                Value::Dict(vec![(
                    Value::Str("x".into()),
                    Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                )]),
            ),
        ]);
        assert_eq!(load("ordered_p2.pkl"), want);
        assert_eq!(load("ordered_p4.pkl"), want);
    }

    #[test]
    fn dangerous_globals_are_refused() {
        match read_pickle(&fixture("evil_os_system_p0.pkl")) {
            Err(PickleError::ForbiddenGlobal {
                module,
                name,
                offset,
            }) => {
                assert_eq!(
                    (module.as_str(), name.as_str(), offset),
                    ("os", "system", 0)
                );
            }
            other => panic!("expected ForbiddenGlobal, got {other:?}"),
        }
        // os.system pickles under its defining module (posix on Linux).
        match read_pickle(&fixture("evil_reduce_p4.pkl")) {
            Err(PickleError::ForbiddenGlobal { name, .. }) => assert_eq!(name, "system"),
            other => panic!("expected ForbiddenGlobal, got {other:?}"),
        }
        let e = read_pickle(b"\x80\x02cbuiltins\neval\n.").unwrap_err();
        assert!(matches!(e, PickleError::ForbiddenGlobal { .. }));
        assert!(e.to_string().contains("builtins.eval"), "{e}");
    }

    fn err_text(r: Result<Value, PickleError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unsupported_numpy_content_gives_clear_errors() {
        let e = err_text(read_pickle(&fixture("object_array_p4.pkl")));
        assert!(e.contains("object arrays"), "{e}");
        let e = err_text(read_pickle(&fixture("unicode_array_p4.pkl")));
        assert!(e.contains("numpy dtype \"U"), "{e}");
        let e = err_text(read_pickle(&fixture("oob_p5.pkl")));
        assert!(e.contains("out-of-band"), "{e}");
    }

    // ----- hand-made streams -----

    #[test]
    fn python2_style_array_with_str_payloads() {
        // A py2-era pickle: typecode, dtype code, byte order and rawdata are
        // all `str` (SHORT_BINSTRING); big-endian int16 [1, -2].
        let mut p = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n".to_vec();
        p.extend_from_slice(
            b"K\x00\x85U\x01b\x87R(K\x01K\x02\x85cnumpy\ndtype\nU\x02i2\x89\x88\x87R",
        );
        p.extend_from_slice(b"(K\x03U\x01>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
        p.extend_from_slice(b"\x89U\x04\x00\x01\xff\xfetb.");
        let v = read_pickle(&p).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!((a.dtype, a.shape.as_slice()), (DType::I16, &[2usize][..]));
        assert_eq!(a.data, vec![1, 0, 0xfe, 0xff], "stored little-endian");
        assert_eq!(a.to_i64_vec().unwrap(), vec![1, -2]);
    }

    #[test]
    fn protocol0_text_opcodes() {
        let v = read_pickle(b"(S'a\\x41\\n\\'\\\\'\np0\nVx\\u00e9\\U0001f600\np1\nF-0.5\nI007\nL-12345678901234567890123L\ng0\nl.").unwrap();
        assert_eq!(
            v,
            Value::List(vec![
                Value::Str("aA\n'\\".into()),
                Value::Str("x\u{e9}\u{1F600}".into()),
                Value::Float(-0.5),
                Value::Int(7),
                Value::BigInt("-12345678901234567890123".into()),
                Value::Str("aA\n'\\".into()),
            ])
        );
    }

    #[test]
    fn long_encodings_normalise() {
        // Non-minimal 9-byte LONG1 that fits in i64.
        assert_eq!(
            read_pickle(b"\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\x00.").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            read_pickle(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\xff.").unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(read_pickle(b"\x80\x02\x8a\x00.").unwrap(), Value::Int(0));
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "-340282366920938463463374607431768211456",
            "123456789012345678901234567890123456789",
        ] {
            let le = decimal_to_le(text).unwrap();
            match long_from_le(&le) {
                Node::BigInt(s) => assert_eq!(s, text),
                n => panic!("{text}: {n:?}"),
            }
        }
        for v in [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i64::MAX,
            i64::MIN,
        ] {
            let le = decimal_to_le(&v.to_string()).unwrap();
            assert!(matches!(long_from_le(&le), Node::Int(x) if x == v), "{v}");
        }
    }

    #[test]
    fn structural_errors() {
        use PickleError as E;
        type Case = (&'static [u8], fn(&E) -> bool);
        let cases: &[Case] = &[
            (b"", |e| matches!(e, E::Truncated { offset: 0 })),
            (b"\x80", |e| matches!(e, E::Truncated { offset: 0 })),
            (b"\x80\x02N", |e| matches!(e, E::Truncated { offset: 3 })),
            (b"\x80\x02\xff", |e| {
                matches!(
                    e,
                    E::UnknownOpcode {
                        opcode: 0xff,
                        offset: 2
                    }
                )
            }),
            (b"\x80\x09N.", |e| matches!(e, E::Unsupported { .. })),
            (b"a.", |e| matches!(e, E::StackUnderflow { offset: 0 })),
            (b"]e.", |e| matches!(e, E::MarkMissing { offset: 1 })),
            (b"(.", |e| matches!(e, E::StackUnderflow { offset: 1 })),
            (b"h\x05.", |e| matches!(e, E::MemoKeyMissing { key: 5, .. })),
            (b"Nr\xff\xff\xff\xff0j\xfe\xff\xff\xff.", |e| {
                matches!(
                    e,
                    E::MemoKeyMissing {
                        key: 0xffff_fffe,
                        ..
                    }
                )
            }),
            (b"N]s.", |e| matches!(e, E::StackUnderflow { .. })),
            (b"K\x01K\x02a.", |e| matches!(e, E::Unsupported { .. })),
            (b"(K\x01d.", |e| matches!(e, E::Invalid { .. })),
            (b"X\x02\x00\x00\x00\xff\xfe.", |e| {
                matches!(e, E::Invalid { .. })
            }),
            (b"\x80\x04\x8c\x01a\x8c\x01b\x93.", |e| {
                matches!(e, E::ForbiddenGlobal { .. })
            }),
            (b"\x80\x02cnumpy\ndtype\n.", |e| {
                matches!(e, E::Unsupported { .. })
            }),
            (b"\x80\x02\x82\x01.", |e| matches!(e, E::Unsupported { .. })),
            (b"\x80\x05\x97.", |e| matches!(e, E::Unsupported { .. })),
        ];
        for (bytes, ok) in cases {
            let e = read_pickle(bytes).unwrap_err();
            assert!(ok(&e), "{bytes:?} gave {e:?}");
        }
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        let mut p = b"\x80\x04\x8e".to_vec();
        p.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            read_pickle(&p),
            Err(PickleError::Truncated { offset: 2 })
        ));
        let mut p = b"\x80\x04\x8d".to_vec();
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            read_pickle(&p),
            Err(PickleError::Truncated { .. })
        ));
        let mut p = b"\x80\x05\x96".to_vec();
        p.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
        assert!(matches!(
            read_pickle(&p),
            Err(PickleError::Truncated { .. })
        ));
        let p = b"\x80\x02\x8b\xff\xff\xff\x7f";
        assert!(matches!(
            read_pickle(p),
            Err(PickleError::Unsupported { .. })
        ));
        let p = b"\x80\x02\x8b\xff\xff\xff\xff";
        assert!(matches!(read_pickle(p), Err(PickleError::Invalid { .. })));
        let p = b"T\xff\xff\xff\xff";
        assert!(matches!(read_pickle(p), Err(PickleError::Invalid { .. })));
        // A shape whose byte size overflows usize.
        let mut p = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n".to_vec();
        p.extend_from_slice(b"K\x00\x85U\x01b\x87R(K\x01\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f");
        p.extend_from_slice(b"K\x10\x86cnumpy\ndtype\nU\x02f8\x89\x88\x87R\x89U\x00tb.");
        let e = err_text(read_pickle(&p));
        assert!(e.contains("bad numpy state"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_stack_overflow() {
        let nest = |n: usize| {
            let mut p = b"\x80\x02".to_vec();
            p.extend(std::iter::repeat_n(b']', n));
            p.extend(std::iter::repeat_n(b'a', n - 1));
            p.push(b'.');
            p
        };
        assert!(matches!(
            read_pickle(&nest(200_000)),
            Err(PickleError::TooDeep { .. })
        ));
        let ok = read_pickle(&nest(MAX_DEPTH)).unwrap();
        let mut depth = 0;
        let mut cur = &ok;
        while let Some([inner]) = cur.as_list() {
            cur = inner;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH - 1);
        assert_eq!(read_pickle(&write_pickle(&ok)).unwrap(), ok);
    }

    #[test]
    fn memo_fanout_bomb_is_refused() {
        // Each level is a list holding the previous level twice: 2^60 leaves.
        let mut p = b"\x80\x02(NNNNNNNNlq\x00".to_vec();
        for k in 0..60u8 {
            p.extend_from_slice(&[b'h', k, b'h', k, b'\x86', b'q', k + 1]);
        }
        p.push(b'.');
        assert!(matches!(read_pickle(&p), Err(PickleError::TooLarge { .. })));
    }

    #[test]
    fn memo_keys_dense_sparse_and_memoize() {
        // LONG_BINPUT far outside the dense range, PUT/GET text keys, and
        // MEMOIZE numbering after explicit keys (it uses len(memo)).
        let p = b"\x80\x04(K\x07r\xff\xff\xff\xffK\x08p3\nK\x09\x94j\xff\xff\xff\xffg3\nh\x02l.";
        assert_eq!(
            read_pickle(p).unwrap(),
            Value::List([7, 8, 9, 7, 8, 9].into_iter().map(Value::Int).collect())
        );
    }

    #[test]
    fn cycles_are_refused() {
        let e = err_text(read_pickle(b"\x80\x02]q\x00h\x00a."));
        assert!(e.contains("cyclic"), "{e}");
    }

    #[test]
    fn persistent_ids_need_a_hook() {
        let p = b"\x80\x02X\x03\x00\x00\x00keyQ.";
        let e = err_text(read_pickle(p));
        assert!(e.contains("persistent_load"), "{e}");
        let hook = |pid: Value| -> Result<Value, PickleError> {
            match pid.as_str() {
                Some("key") => Ok(Value::List(vec![Value::Int(42)])),
                _ => Err(PickleError::PersistentLoad(format!("unknown id {pid:?}"))),
            }
        };
        let opts = ReadOptions {
            persistent_load: Some(&hook),
            ..Default::default()
        };
        assert_eq!(
            read_pickle_with(p, &opts).unwrap(),
            Value::List(vec![Value::Int(42)])
        );
        assert!(matches!(
            read_pickle_with(b"Pnope\n.", &opts),
            Err(PickleError::PersistentLoad(_))
        ));
    }

    // ----- robustness -----

    fn pkl_fixtures() -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(FIXTURES)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pkl"))
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        out.sort();
        assert!(out.len() >= 20, "fixtures missing");
        out
    }

    #[test]
    fn never_panics_on_truncated_or_corrupted_input() {
        let files = pkl_fixtures();
        for (name, bytes) in &files {
            for n in 0..bytes.len() {
                assert!(
                    read_pickle(&bytes[..n]).is_err(),
                    "{name} prefix {n} loaded"
                );
            }
        }
        // xorshift64: deterministic and dependency-free.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..4000 {
            let (_, bytes) = &files[round % files.len()];
            let mut m = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = if next() % 2 == 0 {
                    m[at] ^ (1 << (next() % 8))
                } else {
                    next() as u8
                };
            }
            let _ = read_pickle(&m);
        }
    }

    // ----- arrays and helpers -----

    #[test]
    fn half_precision_conversion() {
        let cases = [
            (0x0000u16, 0.0f32),
            (0x8000, -0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3e00, 1.5),
            (0x7bff, 65504.0),
            (0x0400, 2f32.powi(-14)),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x0001, 2f32.powi(-24)),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (h, f) in cases {
            assert_eq!(f16_to_f32(h).to_bits(), f.to_bits(), "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn array_helpers() {
        let a = NdArray::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((a.len(), a.ndim(), a.is_empty()), (4, 2, false));
        assert_eq!(a.to_f64_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert!(a.to_i64_vec().is_err(), "floats are not silently truncated");
        assert!(NdArray::from_f32(vec![3], vec![1.0]).is_err());
        // Fortran storage is returned in C order.
        let f = NdArray::new(DType::U8, vec![2, 3], true, vec![1, 4, 2, 5, 3, 6]).unwrap();
        assert_eq!(f.to_i64_vec().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        // Inconsistent public fields are an error, not a panic.
        let bad = NdArray {
            dtype: DType::F32,
            shape: vec![usize::MAX, 2],
            fortran_order: true,
            data: vec![0; 3],
        };
        assert!(bad.to_f32_vec().is_err());
        let big =
            NdArray::new(DType::U64, vec![1], false, u64::MAX.to_le_bytes().to_vec()).unwrap();
        assert!(big.to_i64_vec().is_err());
        assert_eq!(big.to_f64_vec().unwrap(), vec![u64::MAX as f64]);
    }

    #[test]
    fn value_accessors() {
        let v = Value::Dict(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Int(3), Value::None),
            (Value::Str("a".into()), Value::Bool(true)),
        ]);
        assert_eq!(v.get("a"), Some(&Value::Bool(true)), "last duplicate wins");
        assert_eq!(v.get("b"), None);
        assert_eq!(Value::Bool(true).as_i64(), Some(1));
        assert_eq!(Value::Int(2).as_f64(), Some(2.0));
        assert_eq!(Value::Float(2.5).as_i64(), None);
        let zero_d = Value::Array(NdArray::from_i64(vec![], vec![9]).unwrap());
        assert_eq!(zero_d.as_i64(), Some(9));
        assert_eq!(zero_d.as_f64(), Some(9.0));
        assert_eq!(Value::Tuple(vec![]).as_list(), Some(&[][..]));
        assert_eq!(Value::Str("x".into()).as_str(), Some("x"));
        assert_eq!(v.type_name(), "dict");
        assert_eq!(zero_d.type_name(), "ndarray");
        assert_eq!(Value::BigInt("1".into()).type_name(), "int");
    }

    // ----- writer -----

    /// Must match `rust_sample()` in tools/make_pickle_fixtures.py.
    fn sample_value() -> Value {
        let s = |x: &str| Value::Str(x.to_string());
        let kp: Vec<f32> = (0..360).map(|i| i as f32 * 0.25 - 10.0).collect();
        let sc: Vec<f32> = (0..180).map(|i| (i % 256) as f32 / 256.0).collect();
        let arr = |dtype, shape: Vec<usize>, fortran, data| {
            Value::Array(NdArray::new(dtype, shape, fortran, data).unwrap())
        };
        let f64_fortran: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let i64s: Vec<u8> = [-1i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [0x3e00u16, 0xc000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dict = |items: Vec<(&str, Value)>| {
            Value::Dict(items.into_iter().map(|(k, v)| (s(k), v)).collect())
        };
        let hw = Value::Tuple(vec![Value::Int(720), Value::Int(1280)]);
        dict(vec![
            (
                "split",
                dict(vec![
                    (
                        "train",
                        Value::List(vec![s("S001C001P001R001A001"), s("S001C001P001R001A002")]),
                    ),
                    ("val", Value::List(vec![s("S001C001P001R001A003")])),
                ]),
            ),
            (
                "annotations",
                Value::List(vec![dict(vec![
                    ("frame_dir", s("S001C001P001R001A001")),
                    ("label", Value::Int(0)),
                    ("total_frames", Value::Int(5)),
                    ("img_shape", hw.clone()),
                    ("original_shape", hw),
                    (
                        "keypoint",
                        Value::Array(NdArray::from_f32(vec![1, 5, 36, 2], kp).unwrap()),
                    ),
                    (
                        "keypoint_score",
                        Value::Array(NdArray::from_f32(vec![1, 5, 36], sc).unwrap()),
                    ),
                ])]),
            ),
            (
                "extras",
                dict(vec![
                    (
                        "big",
                        Value::BigInt("1267650600228229401496703205376".into()),
                    ),
                    ("negbig", Value::BigInt("-1180591620717411303425".into())),
                    ("i64min", Value::Int(i64::MIN)),
                    ("bytes", Value::Bytes((0..=255).collect())),
                    ("empty", Value::Bytes(vec![])),
                    ("set", Value::Set(vec![Value::Int(1)])),
                    (
                        "tuple4",
                        Value::Tuple(vec![Value::Int(1), s("a"), Value::None, Value::Bool(true)]),
                    ),
                    ("float", Value::Float(-0.1)),
                    ("unicode", s("h\u{e9} \u{2713} \u{1F600}")),
                    (
                        "f64_fortran",
                        arr(DType::F64, vec![2, 3], true, f64_fortran),
                    ),
                    ("i64", arr(DType::I64, vec![2], false, i64s)),
                    ("u8", arr(DType::U8, vec![2], false, vec![0, 255])),
                    ("bool", arr(DType::Bool, vec![2], false, vec![1, 0])),
                    ("f16", arr(DType::F16, vec![2], false, f16s)),
                    (
                        "zero_d",
                        arr(DType::F32, vec![], false, 3.5f32.to_le_bytes().to_vec()),
                    ),
                    ("empty_arr", arr(DType::F32, vec![0, 3], false, vec![])),
                ]),
            ),
        ])
    }

    const WRITTEN: &str = "written_by_rust.pkl";

    /// Regenerates the committed writer fixture; then run
    /// `python tools/make_pickle_fixtures.py --check tests/fixtures/pickle/written_by_rust.pkl`.
    #[test]
    #[ignore = "regenerates a committed fixture"]
    fn regenerate_written_fixture() {
        std::fs::write(
            format!("{FIXTURES}{WRITTEN}"),
            write_pickle(&sample_value()),
        )
        .unwrap();
    }

    #[test]
    fn writer_output_is_stable_and_numpy_checked() {
        assert_eq!(
            write_pickle(&sample_value()),
            fixture(WRITTEN),
            "writer output changed; regenerate and re-run the numpy --check"
        );
    }

    #[test]
    fn write_then_read_round_trips() {
        let v = sample_value();
        assert_eq!(read_pickle(&write_pickle(&v)).unwrap(), v);
        let many: Vec<Value> = (0..2500).map(Value::Int).collect();
        let edge = Value::List(vec![
            Value::Int(i64::MAX),
            Value::Int(i64::MIN + 1),
            Value::Int(-1),
            Value::Int(255),
            Value::Int(256),
            Value::Int(65536),
            Value::Int(i64::from(i32::MIN)),
            Value::Int(i64::from(i32::MIN) - 1),
            Value::BigInt("-9223372036854775809".into()),
            Value::Float(f64::INFINITY),
            Value::Float(-0.0),
            Value::Str(String::new()),
            Value::List(vec![]),
            Value::Dict(vec![]),
            Value::Set(vec![]),
            Value::Tuple(vec![Value::None; 4]),
            Value::List(many.clone()),
            Value::Dict(many.iter().map(|k| (k.clone(), Value::None)).collect()),
            Value::Dict(vec![(Value::Tuple(vec![Value::Int(1)]), Value::Int(2))]),
        ]);
        assert_eq!(read_pickle(&write_pickle(&edge)).unwrap(), edge);
        // Invalid BigInt text degrades to a str instead of corrupting the stream.
        let junk = Value::BigInt("12\nc os\nsystem\n".into());
        assert_eq!(
            read_pickle(&write_pickle(&junk)).unwrap(),
            Value::Str("12\nc os\nsystem\n".into())
        );
    }
}
