//! Minimal NPY (numpy `.npy`) reading and writing: format versions 1.0, 2.0 and 3.0; element
//! types f32, f64, u8, i32, i64 in either byte order; C or Fortran order on reading (converted
//! to C order); C order, little-endian, version 1.0 (2.0 when the header needs it) on writing.
//!
//! Format: numpy `numpy/lib/format.py` (magic `\x93NUMPY`, version, header length, a Python dict
//! literal with `descr`, `fortran_order` and `shape`, padded so the data starts on a 64-byte
//! boundary).

use std::path::{Path, PathBuf};

use super::error::{ModalityError, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element types this module reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    U8,
    I32,
    I64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::U8 => "|u1",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
        }
    }
}

/// The elements of an array, in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// An array read from an NPY file: its shape and elements (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// Rust element types that map onto an NPY dtype.
pub trait NpyElement: Copy + sealed::Sealed {
    const DTYPE: DType;
    fn write_le(self, out: &mut Vec<u8>);
    fn wrap(v: Vec<Self>) -> NpyData;
    fn unwrap(d: NpyData) -> std::result::Result<Vec<Self>, NpyData>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u8 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

macro_rules! npy_element {
    ($t:ty, $dt:ident) => {
        impl NpyElement for $t {
            const DTYPE: DType = DType::$dt;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn wrap(v: Vec<Self>) -> NpyData {
                NpyData::$dt(v)
            }
            fn unwrap(d: NpyData) -> std::result::Result<Vec<Self>, NpyData> {
                match d {
                    NpyData::$dt(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}
npy_element!(f32, F32);
npy_element!(f64, F64);
npy_element!(u8, U8);
npy_element!(i32, I32);
npy_element!(i64, I64);

impl NpyData {
    pub fn dtype(&self) -> DType {
        match self {
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
            NpyData::U8(_) => DType::U8,
            NpyData::I32(_) => DType::I32,
            NpyData::I64(_) => DType::I64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NpyArray {
    /// The elements as `T`, or an error naming the dtype actually stored (no conversion).
    pub fn into_vec<T: NpyElement>(self) -> Result<Vec<T>> {
        T::unwrap(self.data).map_err(|d| {
            npy_err(
                None,
                format!("expected dtype {:?}, file holds {:?}", T::DTYPE, d.dtype()),
            )
        })
    }

    /// The elements converted to f64 (exact for every supported dtype except i64 beyond 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

fn npy_err(path: Option<&Path>, detail: impl Into<String>) -> ModalityError {
    ModalityError::Npy {
        path: path.map(Path::to_path_buf),
        detail: detail.into(),
    }
}

/// Reads an NPY file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ModalityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_npy(&bytes).map_err(|e| match e {
        ModalityError::Npy { path: None, detail } => ModalityError::Npy {
            path: Some(path.to_path_buf()),
            detail,
        },
        other => other,
    })
}

/// Reads an NPY file holding elements of type `T` and returns (shape, elements).
pub fn read_npy_as<T: NpyElement>(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<T>)> {
    let path = path.as_ref();
    let arr = read_npy(path)?;
    let shape = arr.shape.clone();
    let data = T::unwrap(arr.data).map_err(|d| {
        npy_err(
            Some(path),
            format!("expected dtype {:?}, file holds {:?}", T::DTYPE, d.dtype()),
        )
    })?;
    Ok((shape, data))
}

struct Header {
    dtype: DType,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
}

/// Parses the bytes of an NPY file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(npy_err(None, "not an NPY file (missing \\x93NUMPY magic)"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(npy_err(None, "truncated header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => {
            return Err(npy_err(
                None,
                format!("unsupported format version {major}.{minor}"),
            ))
        }
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| npy_err(None, "truncated header"))?;
    let text = &bytes[header_start..data_start];
    // Versions 1 and 2 promise latin-1; version 3 UTF-8. The keys and values we read are ASCII.
    let text: String = if major == 3 {
        std::str::from_utf8(text)
            .map_err(|_| npy_err(None, "header is not UTF-8"))?
            .to_owned()
    } else {
        text.iter().map(|&b| char::from(b)).collect()
    };
    let h = parse_header(&text)?;
    let numel = h
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| npy_err(None, "shape overflows"))?;
    let nbytes = numel
        .checked_mul(h.dtype.size())
        .ok_or_else(|| npy_err(None, "shape overflows"))?;
    let body = &bytes[data_start..];
    if body.len() < nbytes {
        return Err(npy_err(
            None,
            format!(
                "truncated data: shape {:?} needs {nbytes} bytes, file has {}",
                h.shape,
                body.len()
            ),
        ));
    }
    let body = &body[..nbytes];
    let data = decode(body, h.dtype, h.big_endian);
    let data = if h.fortran && h.shape.len() > 1 {
        fortran_to_c(data, &h.shape)
    } else {
        data
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
    })
}

fn decode(body: &[u8], dtype: DType, big: bool) -> NpyData {
    macro_rules! dec {
        ($t:ty, $n:expr) => {
            body.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
                .collect()
        };
    }
    match dtype {
        DType::U8 => NpyData::U8(body.to_vec()),
        DType::F32 => NpyData::F32(dec!(f32, 4)),
        DType::F64 => NpyData::F64(dec!(f64, 8)),
        DType::I32 => NpyData::I32(dec!(i32, 4)),
        DType::I64 => NpyData::I64(dec!(i64, 8)),
    }
}

fn fortran_to_c(data: NpyData, shape: &[usize]) -> NpyData {
    fn permute<T: Copy>(v: Vec<T>, shape: &[usize]) -> Vec<T> {
        let n = v.len();
        if n == 0 {
            return v;
        }
        let mut out = Vec::with_capacity(n);
        let nd = shape.len();
        // Fortran strides: the first axis varies fastest.
        let mut fstride = vec![1usize; nd];
        for a in 1..nd {
            fstride[a] = fstride[a - 1] * shape[a - 1];
        }
        let mut idx = vec![0usize; nd];
        for _ in 0..n {
            let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
            out.push(v[off]);
            for a in (0..nd).rev() {
                idx[a] += 1;
                if idx[a] < shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        out
    }
    match data {
        NpyData::F32(v) => NpyData::F32(permute(v, shape)),
        NpyData::F64(v) => NpyData::F64(permute(v, shape)),
        NpyData::U8(v) => NpyData::U8(permute(v, shape)),
        NpyData::I32(v) => NpyData::I32(permute(v, shape)),
        NpyData::I64(v) => NpyData::I64(permute(v, shape)),
    }
}

/// Finds `'key':` in the header dict and returns the text after the colon.
fn dict_value<'a>(text: &'a str, key: &str) -> Result<&'a str> {
    for quote in ['\'', '"'] {
        let pat = format!("{quote}{key}{quote}");
        if let Some(i) = text.find(&pat) {
            let rest = text[i + pat.len()..].trim_start();
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| npy_err(None, format!("header: no ':' after '{key}'")))?;
            return Ok(rest.trim_start());
        }
    }
    Err(npy_err(
        None,
        format!("header has no '{key}' entry: {text}"),
    ))
}

fn parse_header(text: &str) -> Result<Header> {
    let descr_txt = dict_value(text, "descr")?;
    let q = descr_txt
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| {
            npy_err(
                None,
                "header: descr is not a string (structured dtypes are not supported)",
            )
        })?;
    let end = descr_txt[1..]
        .find(q)
        .ok_or_else(|| npy_err(None, "header: unterminated descr"))?;
    let descr = &descr_txt[1..1 + end];
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "u1" => DType::U8,
        "i4" => DType::I32,
        "i8" => DType::I64,
        _ => {
            return Err(npy_err(
                None,
                format!("unsupported dtype '{descr}' (supported: f4, f8, u1, i4, i8)"),
            ))
        }
    };
    let big_endian = order == '>' || (order == '=' && cfg!(target_endian = "big"));

    let fo = dict_value(text, "fortran_order")?;
    let fortran = if fo.starts_with("True") {
        true
    } else if fo.starts_with("False") {
        false
    } else {
        return Err(npy_err(
            None,
            "header: fortran_order is neither True nor False",
        ));
    };

    let sh = dict_value(text, "shape")?;
    let sh = sh
        .strip_prefix('(')
        .ok_or_else(|| npy_err(None, "header: shape is not a tuple"))?;
    let close = sh
        .find(')')
        .ok_or_else(|| npy_err(None, "header: unterminated shape"))?;
    let mut shape = Vec::new();
    for part in sh[..close].split(',') {
        let p = part.trim().trim_end_matches('L');
        if p.is_empty() {
            continue;
        }
        shape.push(
            p.parse::<usize>()
                .map_err(|_| npy_err(None, format!("header: bad dimension '{p}'")))?,
        );
    }
    Ok(Header {
        dtype,
        big_endian,
        fortran,
        shape,
    })
}

/// Serialises an array (C order, little-endian) into NPY bytes.
pub fn to_npy_bytes<T: NpyElement>(shape: &[usize], data: &[T]) -> Result<Vec<u8>> {
    let numel: usize = shape.iter().product();
    if numel != data.len() {
        return Err(ModalityError::shape(
            "npy write",
            format!(
                "shape {shape:?} has {numel} elements, data has {}",
                data.len()
            ),
        ));
    }
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_txt}, }}",
        T::DTYPE.descr()
    );
    let (version, prefix) = if dict.len() + 1 + 10 <= usize::from(u16::MAX) {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let unpadded = prefix + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let header_len = total - prefix;
    let mut out = Vec::with_capacity(total + data.len() * T::DTYPE.size());
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if version == 1 {
        // header_len <= u16::MAX was checked when choosing the version
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let n = u32::try_from(header_len).map_err(|_| npy_err(None, "header longer than 4 GiB"))?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    for &x in data {
        x.write_le(&mut out);
    }
    Ok(out)
}

/// Writes an array (C order) to an NPY file.
pub fn write_npy<T: NpyElement>(path: impl AsRef<Path>, shape: &[usize], data: &[T]) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_npy_bytes(shape, data)?;
    std::fs::write(path, bytes).map_err(|source| ModalityError::Io {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!(
            "{}/{name}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/modality")
        )
    }

    #[test]
    fn round_trip_all_dtypes() {
        let shape = [2usize, 3];
        let b = to_npy_bytes(&shape, &[1.5f32, -2.0, 3.25, 0.0, 1e-30, f32::MAX]).unwrap();
        assert_eq!((b.len() - 24) % 64, 0, "data starts on a 64-byte boundary");
        let a = parse_npy(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(
            a.into_vec::<f32>().unwrap(),
            vec![1.5, -2.0, 3.25, 0.0, 1e-30, f32::MAX]
        );
        let a = parse_npy(&to_npy_bytes(&[4], &[1u8, 2, 3, 255]).unwrap()).unwrap();
        assert_eq!(a.data, NpyData::U8(vec![1, 2, 3, 255]));
        let a = parse_npy(&to_npy_bytes(&[2], &[i64::MIN, 7i64]).unwrap()).unwrap();
        assert_eq!(a.data, NpyData::I64(vec![i64::MIN, 7]));
        let a = parse_npy(&to_npy_bytes(&[], &[0.1f64]).unwrap()).unwrap();
        assert!(a.shape.is_empty());
        assert_eq!(a.data, NpyData::F64(vec![0.1]));
        let a = parse_npy(&to_npy_bytes::<f32>(&[0, 4], &[]).unwrap()).unwrap();
        assert_eq!(a.shape, vec![0, 4]);
        assert!(a.data.is_empty());
    }

    fn with_header(dict: &str, version: u8, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(version);
        out.push(0);
        let mut d = dict.as_bytes().to_vec();
        d.push(b'\n');
        if version == 1 {
            out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&d);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn fortran_order_big_endian_and_v2_v3() {
        // numpy: np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5.
        let body: Vec<u8> = [0i64, 3, 1, 4, 2, 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for v in [1u8, 2, 3] {
            let b = with_header(
                "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }",
                v,
                &body,
            );
            let a = parse_npy(&b).unwrap();
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.data, NpyData::I64(vec![0, 1, 2, 3, 4, 5]));
        }
        let body: Vec<u8> = [1.0f32, -2.5]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let b = with_header(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
            1,
            &body,
        );
        assert_eq!(parse_npy(&b).unwrap().data, NpyData::F32(vec![1.0, -2.5]));
    }

    #[test]
    fn clear_errors() {
        let e = parse_npy(b"hello world").unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
        let b = with_header(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
            1,
            &[0; 8],
        );
        let e = parse_npy(&b).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype '<c8'"), "{e}");
        let b = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            1,
            &[0; 16],
        );
        let e = parse_npy(&b).unwrap_err().to_string();
        assert!(e.contains("truncated data"), "{e}");
        let mut b = to_npy_bytes(&[1], &[1u8]).unwrap();
        b[6] = 9;
        assert!(parse_npy(&b).unwrap_err().to_string().contains("version 9"));
        let a = parse_npy(&to_npy_bytes(&[1], &[1u8]).unwrap()).unwrap();
        assert!(a.into_vec::<f32>().unwrap_err().to_string().contains("U8"));
        assert!(to_npy_bytes(&[2, 2], &[1u8]).is_err());
        let e = read_npy("/nonexistent/x.npy").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.npy"), "{e}");
    }

    #[test]
    fn reads_numpy_written_fixtures() {
        let a = read_npy(fixture("taylor_input_rgb.npy")).unwrap();
        assert_eq!(a.shape, vec![10, 45, 80, 3]);
        assert_eq!(a.data.dtype(), DType::U8);
        let a = read_npy(fixture("pipe_real_input_kp.npy")).unwrap();
        assert_eq!(a.shape.len(), 4);
        assert_eq!(a.data.dtype(), DType::F32);
        let (shape, v) = read_npy_as::<i64>(fixture("sampling_cases.npy")).unwrap();
        assert_eq!(shape[1], 3);
        assert_eq!(v[..3], [100, 48, 1]);
        // and a file written here reads back in numpy's layout
        let dir = std::env::temp_dir().join(format!("npy_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_npy(&p, &[3], &[1.0f64, 2.0, 3.0]).unwrap();
        let (s, v) = read_npy_as::<f64>(&p).unwrap();
        assert_eq!((s, v), (vec![3], vec![1.0, 2.0, 3.0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The layouts numpy writes, read through this module: the ensemble's score matrices come in
/// all of them (fixtures from tools/make_ensemble_fixtures.py).
#[cfg(test)]
mod numpy_layouts {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/{name}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ensemble/npy")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// numpy wrote `np.arange(12).reshape(3, 4) / 8 + 0.125` in each layout.
    fn expected() -> Vec<f64> {
        (0..12).map(|i| f64::from(i) / 8.0 + 0.125).collect()
    }

    #[test]
    fn every_float_layout_reads_in_c_order() {
        for file in [
            "f4_le_c_v1.npy",
            "f8_le_c_v1.npy",
            "f4_be_c_v1.npy",
            "f8_be_f_v1.npy",
            "f4_le_f_v1.npy",
            "f4_le_c_v2.npy",
            "f8_le_c_v3.npy",
        ] {
            let a = parse_npy(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(a.shape, vec![3, 4], "{file}");
            let got: Vec<f64> = match a.data {
                NpyData::F32(v) => v.into_iter().map(f64::from).collect(),
                NpyData::F64(v) => v,
                _ => panic!("{file}: not a float array"),
            };
            assert_eq!(got, expected(), "{file}");
        }
        assert!(parse_npy(&fixture("object.npy")).is_err());
        let mut truncated = fixture("f4_le_c_v1.npy");
        truncated.truncate(truncated.len() - 3);
        assert!(parse_npy(&truncated).is_err());
    }

    #[test]
    fn writer_is_byte_identical_to_numpy() {
        let data: Vec<f32> = expected().into_iter().map(|v| v as f32).collect();
        assert_eq!(
            to_npy_bytes(&[3, 4], &data).ok(),
            Some(fixture("f4_le_c_v1.npy"))
        );
        assert!(to_npy_bytes(&[2, 2], &[1.0f32]).is_err());
    }
}
