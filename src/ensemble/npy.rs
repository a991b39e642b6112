//! Minimal NPY reader/writer for 2-D float score matrices.
//!
//! Reproduces the NPY format of `numpy.lib.format` (versions 1.0, 2.0 and 3.0).

use super::stream::{EnsembleError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A float array read from an `.npy` file, converted to f32 and re-laid out in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// The dtype string as written in the header, e.g. `<f4`.
    pub descr: String,
    pub fortran_order: bool,
}

impl NpyArray {
    pub fn shape_2d(&self) -> Result<[usize; 2]> {
        match self.shape[..] {
            [r, c] => Ok([r, c]),
            _ => Err(npy_err(format!(
                "expected a 2-D [clips, classes] array, found shape {:?}",
                self.shape
            ))),
        }
    }
}

fn npy_err(msg: impl Into<String>) -> EnsembleError {
    EnsembleError::Npy(msg.into())
}

#[derive(Clone, Copy)]
enum Endian {
    Little,
    Big,
}

pub fn read_npy(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(npy_err("not an NPY file (missing \\x93NUMPY magic)"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(npy_err("truncated header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => return Err(npy_err(format!("unsupported NPY version {major}.{minor}"))),
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            npy_err(format!(
                "header of {header_len} bytes runs past the end of the file"
            ))
        })?;
    let header_bytes = &bytes[header_start..header_end];
    // v1/v2 headers are latin-1, v3 is UTF-8; the keys and values we accept are ASCII in both.
    let header: String = if major == 3 {
        std::str::from_utf8(header_bytes)
            .map_err(|_| npy_err("v3 header is not UTF-8"))?
            .to_string()
    } else {
        header_bytes.iter().map(|&b| char::from(b)).collect()
    };
    let dict = parse_header(&header)?;
    let descr = dict.descr.ok_or_else(|| npy_err("header has no 'descr'"))?;
    let fortran_order = dict
        .fortran_order
        .ok_or_else(|| npy_err("header has no 'fortran_order'"))?;
    let shape = dict.shape.ok_or_else(|| npy_err("header has no 'shape'"))?;

    let (endian, width) = parse_descr(&descr)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| npy_err(format!("shape {shape:?} overflows")))?;
    let need = count
        .checked_mul(width)
        .ok_or_else(|| npy_err(format!("shape {shape:?} overflows")))?;
    let body = &bytes[header_end..];
    if body.len() < need {
        return Err(npy_err(format!(
            "truncated data: shape {shape:?} of {descr} needs {need} bytes, file has {}",
            body.len()
        )));
    }
    // Trailing bytes are ignored, as numpy.load does (several arrays may be saved to one file).
    let mut values: Vec<f32> = Vec::with_capacity(count);
    for chunk in body[..need].chunks_exact(width) {
        values.push(match (width, endian) {
            (4, Endian::Little) => f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            (4, Endian::Big) => f32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            (_, e) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                let v = match e {
                    Endian::Little => f64::from_le_bytes(b),
                    Endian::Big => f64::from_be_bytes(b),
                };
                v as f32
            }
        });
    }
    let data = if fortran_order && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut out = vec![0.0f32; count];
        for j in 0..c {
            for i in 0..r {
                out[i * c + j] = values[j * r + i];
            }
        }
        out
    } else if fortran_order && shape.len() > 2 {
        return Err(npy_err(format!(
            "Fortran-order arrays of {} dimensions are not supported",
            shape.len()
        )));
    } else {
        values
    };
    Ok(NpyArray {
        shape,
        data,
        descr,
        fortran_order,
    })
}

fn parse_descr(descr: &str) -> Result<(Endian, usize)> {
    let native = if cfg!(target_endian = "big") {
        Endian::Big
    } else {
        Endian::Little
    };
    let (endian, rest) = match descr.as_bytes().first() {
        Some(b'<') => (Endian::Little, &descr[1..]),
        Some(b'>') => (Endian::Big, &descr[1..]),
        // '=' is native order, '|' "not applicable" (single-byte and object dtypes).
        Some(b'=' | b'|') => (native, &descr[1..]),
        _ => (native, descr),
    };
    match rest {
        "f4" => Ok((endian, 4)),
        "f8" => Ok((endian, 8)),
        "O" => Err(npy_err(
            "object array (pickled Python objects); load it with the pickle importer instead",
        )),
        other => Err(npy_err(format!(
            "unsupported dtype `{descr}` (`{other}`); only float32 (f4) and float64 (f8) score matrices are read"
        ))),
    }
}

#[derive(Default)]
struct HeaderDict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parses the Python dict literal numpy writes, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(h: &str) -> Result<HeaderDict> {
    let mut p = Lexer {
        s: h.as_bytes(),
        i: 0,
    };
    let mut out = HeaderDict::default();
    p.expect_byte(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect_byte(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(npy_err("structured dtypes are not supported"));
                }
                out.descr = Some(p.string()?);
            }
            "fortran_order" => out.fortran_order = Some(p.boolean()?),
            "shape" => out.shape = Some(p.tuple()?),
            other => return Err(npy_err(format!("unexpected header key '{other}'"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect_byte(b'}')?;
            break;
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_byte(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(npy_err(format!(
                "malformed header: expected '{}' at byte {}",
                char::from(c),
                self.i
            )))
        }
    }
    fn string(&mut self) -> Result<String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(npy_err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                )))
            }
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == q {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err(npy_err("malformed header: unterminated string"))
    }
    fn boolean(&mut self) -> Result<bool> {
        for (word, v) in [("True", true), ("False", false)] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(npy_err(format!(
            "malformed header: expected True/False at byte {}",
            self.i
        )))
    }
    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect_byte(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            // Python 2 era files may write `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d: usize = digits
                .parse()
                .map_err(|_| npy_err(format!("malformed shape at byte {start}")))?;
            self.eat(b'L');
            dims.push(d);
            self.ws();
            if !self.eat(b',') {
                self.expect_byte(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Writes a little-endian float32 C-order NPY v1.0 file (what `numpy.save` writes for such an array).
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(npy_err(format!(
            "shape {shape:?} holds {count} values, got {}",
            data.len()
        )));
    }
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // numpy leaves room for the first axis to grow to 21 digits, then pads magic + length + header
    // + '\n' to a multiple of 64 (a full 64 when already aligned) so the data is aligned.
    let growth = shape
        .first()
        .map_or(0, |d| 21usize.saturating_sub(d.to_string().len()));
    header.push_str(&" ".repeat(growth));
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(64 - unpadded % 64));
    header.push('\n');
    let hlen = u16::try_from(header.len()).map_err(|_| npy_err("header too long for NPY v1.0"))?;
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/{}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ensemble/npy"),
            name
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// numpy wrote `np.arange(12).reshape(3, 4) / 8 + 0.125` in each of these layouts.
    fn expected() -> Vec<f32> {
        (0..12).map(|i| i as f32 / 8.0 + 0.125).collect()
    }

    #[test]
    fn reads_every_float_layout_numpy_writes() {
        for (file, descr, fortran) in [
            ("f4_le_c_v1.npy", "<f4", false),
            ("f8_le_c_v1.npy", "<f8", false),
            ("f4_be_c_v1.npy", ">f4", false),
            ("f8_be_f_v1.npy", ">f8", true),
            ("f4_le_f_v1.npy", "<f4", true),
            ("f4_le_c_v2.npy", "<f4", false),
            ("f8_le_c_v3.npy", "<f8", false),
        ] {
            let a = read_npy(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(a.shape, vec![3, 4], "{file}");
            assert_eq!(a.descr, descr, "{file}");
            assert_eq!(a.fortran_order, fortran, "{file}");
            assert_eq!(a.data, expected(), "{file}");
        }
    }

    #[test]
    fn clear_errors_for_unsupported_files() {
        let msg = |f: &str| {
            read_npy(&fixture(f))
                .and_then(|a| a.shape_2d().map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        assert!(
            msg("i8_1d.npy").contains("unsupported dtype `<i8`"),
            "{}",
            msg("i8_1d.npy")
        );
        assert!(
            msg("object.npy").contains("pickle importer"),
            "{}",
            msg("object.npy")
        );
        assert!(
            msg("f4_1d.npy").contains("expected a 2-D"),
            "{}",
            msg("f4_1d.npy")
        );
        assert!(read_npy(b"PK\x03\x04 not npy")
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut truncated = fixture("f4_le_c_v1.npy");
        truncated.truncate(truncated.len() - 3);
        let e = read_npy(&truncated).unwrap_err().to_string();
        assert!(e.contains("needs 48 bytes, file has 45"), "{e}");
    }

    #[test]
    fn writer_round_trips_and_matches_numpy_bytes() {
        let bytes = write_npy_f32(&[3, 4], &expected()).unwrap();
        assert_eq!(bytes, fixture("f4_le_c_v1.npy"));
        assert_eq!((bytes.len() - 48) % 64, 0);
        let back = read_npy(&bytes).unwrap();
        assert_eq!(back.data, expected());
        assert!(write_npy_f32(&[2, 2], &[1.0]).is_err());
    }

    #[test]
    fn header_parser_tolerates_spacing_and_key_order() {
        let h = parse_header("{ \"shape\": (2,3) ,'fortran_order':True, 'descr':'>f8'}").unwrap();
        assert_eq!(h.shape, Some(vec![2, 3]));
        assert_eq!(h.fortran_order, Some(true));
        assert_eq!(h.descr.as_deref(), Some(">f8"));
        assert_eq!(
            parse_header("{'shape': (), 'fortran_order': False, 'descr': '<f4'}")
                .unwrap()
                .shape,
            Some(vec![])
        );
        assert!(parse_header("{'shape': (2, x)}").is_err());
    }
}
