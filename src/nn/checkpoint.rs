//! Reading model weights: PyTorch `.pth` checkpoints (the zip format `torch.save` has written
//! since torch 1.6, as pyskl and mmaction2 release them), `.safetensors` and `.npz`; writing
//! `.safetensors`. Building a model from a state dict with the reference's strict checking.
//!
//! A `.pth` is a zip holding `<name>/data.pkl` plus one file per storage (`<name>/data/<key>`)
//! (`torch/serialization.py`, `_save` / `_load`). The pickle is read by [`crate::pickle`] with
//! torch's constructors recognised as data; nothing in it is executed, and any other global
//! (a training-state object, `os.system`, …) refuses the file with its name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::pickle::{
    read_pickle_with, PickleError, ReadOptions, TorchDType, TorchTensorRef, Value,
};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("{path}: data.pkl: {source}")]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{path}: key {key}: {what}")]
    Tensor {
        path: PathBuf,
        key: String,
        what: String,
    },
    #[error("{path}: {report}")]
    Mismatch { path: PathBuf, report: LoadReport },
    #[error("{path}: building the model: {source}")]
    Model {
        path: PathBuf,
        source: candle_core::Error,
    },
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// Named tensors read from a checkpoint, in their stored dtype, on the CPU.
#[derive(Debug, Clone)]
pub struct StateDict {
    pub tensors: BTreeMap<String, Tensor>,
    pub source: PathBuf,
}

impl StateDict {
    /// Reads `.pth` / `.pt` / `.pth.tar` (torch zip), `.safetensors` or `.npz`, chosen by the
    /// file's first bytes rather than its name.
    pub fn read(path: &Path) -> Result<StateDict> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut head = [0u8; 16];
        let n = std::fs::File::open(path)
            .and_then(|mut f| read_up_to(&mut f, &mut head))
            .map_err(io)?;
        let head = &head[..n];
        let fmt = |what: String| CheckpointError::Format {
            path: path.to_path_buf(),
            what,
        };
        let tensors = if head.starts_with(b"PK\x03\x04") {
            let is_npz = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
            if is_npz {
                read_npz(path)?
            } else {
                read_torch_zip(path)?
            }
        } else if head.len() >= 8 && head[8..].first() == Some(&b'{') {
            candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| fmt(format!("not a readable safetensors file: {e}")))?
                .into_iter()
                .collect()
        } else if head.starts_with(&[0x80]) {
            return Err(fmt(
                "a legacy (torch < 1.6, non-zip) checkpoint: load it in Python and \
                 re-save it with torch.save(obj, path) from torch ≥ 1.6"
                    .into(),
            ));
        } else if head.is_empty() {
            return Err(fmt("the file is empty".into()));
        } else {
            return Err(fmt(
                "not a checkpoint: expected a torch zip (.pth), .safetensors or .npz".into(),
            ));
        };
        if tensors.is_empty() {
            return Err(fmt("the checkpoint holds no tensors".into()));
        }
        Ok(StateDict {
            tensors,
            source: path.to_path_buf(),
        })
    }

    pub fn dims(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.dims())
    }

    /// Renames every key that starts with `from` to start with `to` instead.
    pub fn rename_prefix(&mut self, from: &str, to: &str) {
        let keys: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(from))
            .cloned()
            .collect();
        for k in keys {
            if let Some(t) = self.tensors.remove(&k) {
                self.tensors.insert(format!("{to}{}", &k[from.len()..]), t);
            }
        }
    }

    /// Writes all tensors to a `.safetensors` file.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        write_safetensors(&self.tensors, path)
    }
}

/// Writes named tensors (moved to the CPU, contiguous) to a `.safetensors` file.
pub fn write_safetensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let err = |what: String| CheckpointError::Format {
        path: path.to_path_buf(),
        what,
    };
    let mut cpu = HashMap::with_capacity(tensors.len());
    for (k, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.contiguous())
            .map_err(|e| err(format!("key {k}: {e}")))?;
        cpu.insert(k.clone(), t);
    }
    candle_core::safetensors::save(&cpu, path).map_err(|e| err(format!("writing: {e}")))
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_npz(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let v = Tensor::read_npz(path).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        what: format!("not a readable .npz: {e}"),
    })?;
    Ok(v.into_iter().collect())
}

/// Which entry of a loaded `.pth` is the state dict: mmengine / pyskl `load_checkpoint` take
/// `state_dict` when present, else the object itself; `model` covers other trainers.
fn find_state_dict(top: &Value) -> Option<&[(Value, Value)]> {
    let d = top.as_dict()?;
    for wrapper in ["state_dict", "model", "module"] {
        if let Some(inner) = top.get(wrapper).and_then(Value::as_dict) {
            return Some(inner);
        }
    }
    Some(d)
}

fn read_torch_zip(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let fmt = |what: String| CheckpointError::Format {
        path: path.to_path_buf(),
        what,
    };
    let file = std::fs::File::open(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| fmt(format!("damaged torch zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    if names.iter().any(|n| n.ends_with("/constants.pkl")) {
        return Err(fmt(
            "a TorchScript archive (torch.jit.save); save the state dict with \
             torch.save(model.state_dict(), path)"
                .into(),
        ));
    }
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
        .ok_or_else(|| fmt("zip archive without data.pkl: not a torch checkpoint".into()))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let read_entry = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
        let mut e = zip
            .by_name(name)
            .map_err(|e| fmt(format!("archive entry {name}: {e}")))?;
        let mut buf = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut buf)
            .map_err(|e| fmt(format!("archive entry {name}: {e}")))?;
        Ok(buf)
    };
    let big_endian = match read_entry(&mut zip, &format!("{prefix}byteorder")) {
        Ok(b) => b.trim_ascii() == b"big",
        Err(_) => false,
    };
    let bytes = read_entry(&mut zip, &pkl)?;
    let opts = ReadOptions {
        torch: true,
        ..Default::default()
    };
    let top = read_pickle_with(&bytes, &opts).map_err(|source| CheckpointError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;
    let sd = find_state_dict(&top).ok_or_else(|| {
        fmt(format!(
            "data.pkl holds a {}, expected a state dict (a dict of tensors)",
            top.type_name()
        ))
    })?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (k, v) in sd {
        let (Some(key), Value::TorchTensor(r)) = (k.as_str(), v) else {
            continue;
        };
        if !storages.contains_key(&r.storage) {
            let data = read_entry(&mut zip, &format!("{prefix}data/{}", r.storage))?;
            storages.insert(r.storage.clone(), data);
        }
        let data = &storages[&r.storage];
        let t = materialize(r, data, big_endian).map_err(|what| CheckpointError::Tensor {
            path: path.to_path_buf(),
            key: key.to_string(),
            what,
        })?;
        out.insert(key.to_string(), t);
    }
    // DataParallel / DistributedDataParallel wrap every key in `module.`; mmengine strips it.
    if !out.is_empty() && out.keys().all(|k| k.starts_with("module.")) {
        out = out
            .into_iter()
            .map(|(k, v)| (k["module.".len()..].to_string(), v))
            .collect();
    }
    Ok(out)
}

/// Copies a strided view out of its storage bytes into a contiguous CPU tensor.
fn materialize(
    r: &TorchTensorRef,
    data: &[u8],
    big_endian: bool,
) -> std::result::Result<Tensor, String> {
    let size = r.dtype.itemsize();
    if data.len() < r.storage_numel * size {
        return Err(format!(
            "storage {} has {} bytes, its header says {} elements of {} bytes",
            r.storage,
            data.len(),
            r.storage_numel,
            size
        ));
    }
    let n = r.numel();
    let mut bytes = Vec::with_capacity(n * size);
    let contiguous = {
        let mut expect = 1usize;
        let mut ok = true;
        for (&d, &s) in r.shape.iter().zip(&r.stride).rev() {
            if d > 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        bytes.extend_from_slice(&data[r.offset * size..(r.offset + n) * size]);
    } else {
        let mut idx = vec![0usize; r.shape.len()];
        for _ in 0..n {
            let e = r.offset + idx.iter().zip(&r.stride).map(|(i, s)| i * s).sum::<usize>();
            bytes.extend_from_slice(&data[e * size..(e + 1) * size]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < r.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    if big_endian && size > 1 {
        for c in bytes.chunks_exact_mut(size) {
            c.reverse();
        }
    }
    let shape = Shape::from(r.shape.clone());
    let dev = &Device::Cpu;
    let t = match r.dtype {
        TorchDType::F32 => Tensor::from_raw_buffer(&bytes, DType::F32, shape.dims(), dev),
        TorchDType::F64 => Tensor::from_raw_buffer(&bytes, DType::F64, shape.dims(), dev),
        TorchDType::F16 => Tensor::from_raw_buffer(&bytes, DType::F16, shape.dims(), dev),
        TorchDType::BF16 => Tensor::from_raw_buffer(&bytes, DType::BF16, shape.dims(), dev),
        TorchDType::I64 => Tensor::from_raw_buffer(&bytes, DType::I64, shape.dims(), dev),
        TorchDType::I32 => Tensor::from_raw_buffer(&bytes, DType::I32, shape.dims(), dev),
        TorchDType::I16 => Tensor::from_raw_buffer(&bytes, DType::I16, shape.dims(), dev),
        TorchDType::U8 | TorchDType::Bool => {
            Tensor::from_raw_buffer(&bytes, DType::U8, shape.dims(), dev)
        }
        TorchDType::I8 => {
            let v: Vec<i64> = bytes.iter().map(|&b| i64::from(b as i8)).collect();
            Tensor::from_vec(v, shape.dims(), dev)
        }
    };
    t.map_err(|e| e.to_string())
}

/// Keys a checkpoint may hold that no model requests: BatchNorm's step counter, Swin's
/// relative-position index (recomputed), mmaction2 1.x's preprocessor statistics, and the
/// optimiser and counter state `mgscope train` stores beside the weights.
pub fn is_ignorable_buffer(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.ends_with("relative_position_index")
        || key.starts_with("data_preprocessor.")
        || key.starts_with("train.")
}

/// What loading found beyond the keys that matched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// (key, shape the model expects)
    pub missing: Vec<(String, Vec<usize>)>,
    /// (key, checkpoint shape, model shape)
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    pub unexpected: Vec<String>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty() && self.unexpected.is_empty()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 8;
        let mut parts = Vec::new();
        if !self.mismatched.is_empty() {
            let list: Vec<String> = self
                .mismatched
                .iter()
                .take(SHOW)
                .map(|(k, c, m)| format!("{k} (checkpoint {c:?}, model {m:?})"))
                .collect();
            parts.push(format!(
                "{} mis-shaped key(s): {}{}",
                self.mismatched.len(),
                list.join(", "),
                more(self.mismatched.len(), SHOW)
            ));
        }
        if !self.missing.is_empty() {
            let list: Vec<String> = self
                .missing
                .iter()
                .take(SHOW)
                .map(|(k, s)| format!("{k} {s:?}"))
                .collect();
            parts.push(format!(
                "{} key(s) the model needs are missing: {}{}",
                self.missing.len(),
                list.join(", "),
                more(self.missing.len(), SHOW)
            ));
        }
        if !self.unexpected.is_empty() {
            let list: Vec<&str> = self
                .unexpected
                .iter()
                .take(SHOW)
                .map(String::as_str)
                .collect();
            parts.push(format!(
                "{} unexpected key(s): {}{}",
                self.unexpected.len(),
                list.join(", "),
                more(self.unexpected.len(), SHOW)
            ));
        }
        if parts.is_empty() {
            write!(f, "all keys matched")
        } else {
            write!(f, "{}", parts.join("; "))
        }
    }
}

fn more(n: usize, shown: usize) -> String {
    if n > shown {
        format!(" and {} more", n - shown)
    } else {
        String::new()
    }
}

/// A VarBuilder backend over a state dict that records what the model asked for.
struct Tracking {
    tensors: BTreeMap<String, Tensor>,
    used: Arc<Mutex<HashSet<String>>>,
    report: Arc<Mutex<LoadReport>>,
}

impl SimpleBackend for Tracking {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let want = s.dims().to_vec();
        let found = self.tensors.get(name);
        if let Some(t) = found {
            if let Ok(mut u) = self.used.lock() {
                u.insert(name.to_string());
            }
            if t.dims() == want.as_slice() {
                return t.to_dtype(dtype)?.to_device(dev);
            }
        }
        if let Ok(mut r) = self.report.lock() {
            match found {
                Some(t) => r
                    .mismatched
                    .push((name.to_string(), t.dims().to_vec(), want.clone())),
                None => r.missing.push((name.to_string(), want.clone())),
            }
        }
        // Building goes on either way so that one error lists every problem; strict mode
        // refuses the model afterwards. Non-strict keeps the model's own initialisation, as
        // mmengine's `load_state_dict(strict=False)` does.
        Ok(h.var(s, dtype, dev)?.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => {
                if let Ok(mut u) = self.used.lock() {
                    u.insert(name.to_string());
                }
                t.to_dtype(dtype)?.to_device(dev)
            }
            None => candle_core::bail!("checkpoint has no key {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Builds a model from a state dict. Strict: any missing, unexpected or mis-shaped key is an
/// error naming the key(s) and shapes (PyTorch `load_state_dict(strict=True)`). Not strict:
/// the model keeps its own initialisation for those and the report lists them (mmengine's
/// `load_state_dict(strict=False)`, which also skips mis-shaped tensors).
pub fn build_model<M>(
    sd: &StateDict,
    strict: bool,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<(M, LoadReport)> {
    let used = Arc::new(Mutex::new(HashSet::new()));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let backend = Tracking {
        tensors: sd.tensors.clone(),
        used: used.clone(),
        report: report.clone(),
    };
    let boxed: Box<dyn SimpleBackend> = Box::new(backend);
    let vb = VarBuilder::from_backend(boxed, dtype, device.clone());
    let built = build(vb);
    let used = used.lock().map(|u| u.clone()).unwrap_or_default();
    let mut report = report.lock().map(|r| r.clone()).unwrap_or_default();
    let model = match built {
        Ok(m) => m,
        Err(source) => {
            if !report.is_clean() {
                return Err(CheckpointError::Mismatch {
                    path: sd.source.clone(),
                    report,
                });
            }
            return Err(CheckpointError::Model {
                path: sd.source.clone(),
                source,
            });
        }
    };
    report.unexpected = sd
        .tensors
        .keys()
        .filter(|k| !used.contains(*k) && !is_ignorable_buffer(k))
        .cloned()
        .collect();
    if strict && !report.is_clean() {
        return Err(CheckpointError::Mismatch {
            path: sd.source.clone(),
            report,
        });
    }
    Ok((model, report))
}
