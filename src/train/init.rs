//! Initial weights: the reference initialisation drawn from the run's seed, and loading a
//! checkpoint with another head (`load_from` for transfer).
//!
//! mmaction2 `ResNet3d.init_weights` / pyskl `pyskl/models/cnns/resnet3d.py`: conv weights
//! `kaiming_init` (normal, fan_out, ReLU gain), BatchNorm weight 1 and bias 0, the last BN of
//! every Bottleneck3d zeroed (`zero_init_residual=True`); `I3DHead.init_weights`: `fc_cls`
//! normal with std 0.01 (`init_std`), bias 0.
//!
//! candle's own initialisers draw from the device generator, which cannot be seeded per run;
//! here every tensor is redrawn from a ChaCha stream in key order.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{mix, stream, Result, TrainError};
use crate::nn::checkpoint::StateDict;

/// The VarMap's variables by key (sorted, so every pass over them has one order).
pub fn named_vars(vm: &VarMap) -> Result<BTreeMap<String, Var>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::Invalid("the model's variable map is poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Whether a key is a BatchNorm running statistic (a buffer, not a parameter).
pub fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var")
}

/// Standard normal draws by Box–Muller (rand 0.9 has no normal distribution without
/// rand_distr).
fn normals(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos() * std) as f32);
        out.push((r * a.sin() * std) as f32);
    }
    out.truncate(n);
    out
}

/// The rgb → pose laterals of RGBPoseConv3D (`DeConvModule`, a ConvTranspose3d).
fn is_deconv_lateral(key: &str) -> bool {
    key.contains("pose_path.") && key.contains("_lateral.conv.weight")
}

/// Re-initialises every variable as the reference does, from `seed`.
pub fn init_reference(vm: &VarMap, seed: u64) -> Result<()> {
    for (key, var) in named_vars(vm)? {
        let t = var.as_tensor();
        let dims = t.dims().to_vec();
        let n = t.elem_count();
        // one stream per key, so adding a layer does not reshuffle the others
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, stream::INIT), fnv(&key)));
        let values: Vec<f32> = if is_deconv_lateral(&key) && dims.len() == 5 {
            // RGBPoseConv3D's init only redraws nn.Conv3d, so its ConvTranspose3d laterals keep
            // PyTorch's default: kaiming_uniform(a=√5), i.e. U(±1/√fan_in) with the transposed
            // weight's fan_in = out channels × kernel.
            let fan_in: usize = dims[1] * dims[2..].iter().product::<usize>();
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            (0..n)
                .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                .collect()
        } else if key.ends_with(".conv.weight") && dims.len() == 5 {
            let fan_out: usize = dims[0] * dims[2..].iter().product::<usize>();
            normals(&mut rng, n, (2.0 / fan_out.max(1) as f64).sqrt())
        } else if ["fc_cls.weight", "fc_rgb.weight", "fc_pose.weight"]
            .iter()
            .any(|k| key.ends_with(k))
        {
            normals(&mut rng, n, 0.01)
        } else if key.ends_with(".bn.weight") {
            let v = if key.ends_with(".conv3.bn.weight") {
                0.0
            } else {
                1.0
            };
            vec![v; n]
        } else if key.ends_with(".running_var") {
            vec![1.0; n]
        } else {
            // biases and running means
            vec![0.0; n]
        };
        let new = Tensor::from_vec(values, dims, t.device())?.to_dtype(t.dtype())?;
        var.set(&new)?;
    }
    Ok(())
}

/// Re-initialises a Video Swin as mmaction2 does, from `seed`: `SwinTransformer3D.init_weights`
/// (`mmaction/models/backbones/swin.py`, `_init_weights`: Linear weights truncated normal with
/// std 0.02 — its ±2 cut-off is ±100 std, so a plain normal — and bias 0; LayerNorm weight 1
/// and bias 0; the relative position bias tables truncated normal with std 0.02), the patch
/// embedding's Conv3d left at PyTorch's default (`kaiming_uniform_(a=√5)`: U(±1/√fan_in) for
/// weight and bias), and `I3DHead.init_weights` (`fc_cls` normal, std 0.01, bias 0).
pub fn init_swin(vm: &VarMap, seed: u64) -> Result<()> {
    let conv_fan_in = named_vars(vm)?
        .get("backbone.patch_embed.proj.weight")
        .map(|v| v.as_tensor().dims()[1..].iter().product::<usize>())
        .unwrap_or(1);
    for (key, var) in named_vars(vm)? {
        let t = var.as_tensor();
        let dims = t.dims().to_vec();
        let n = t.elem_count();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, stream::INIT), fnv(&key)));
        let uniform = |rng: &mut ChaCha8Rng, bound: f64| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let values: Vec<f32> = if key.starts_with("backbone.patch_embed.proj.") {
            uniform(&mut rng, 1.0 / (conv_fan_in as f64).sqrt())
        } else if key.ends_with("fc_cls.weight") {
            normals(&mut rng, n, 0.01)
        } else if key.ends_with("relative_position_bias_table") {
            normals(&mut rng, n, 0.02)
        } else if key.contains("norm") && key.ends_with(".weight") {
            vec![1.0; n]
        } else if key.ends_with(".weight") && dims.len() == 2 {
            normals(&mut rng, n, 0.02)
        } else {
            // Linear and LayerNorm biases
            vec![0.0; n]
        };
        let new = Tensor::from_vec(values, dims, t.device())?.to_dtype(t.dtype())?;
        var.set(&new)?;
    }
    Ok(())
}

/// 64-bit FNV-1a of a key.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What `load_matching` copied and left alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferReport {
    pub loaded: usize,
    /// (key, checkpoint shape, model shape): kept at their initialisation.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Model keys the checkpoint lacks.
    pub missing: Vec<String>,
    /// Checkpoint keys the model lacks.
    pub unused: Vec<String>,
}

impl std::fmt::Display for TransferReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tensors loaded", self.loaded)?;
        if !self.mismatched.is_empty() {
            let list: Vec<String> = self
                .mismatched
                .iter()
                .map(|(k, c, m)| format!("{k} {c:?}→{m:?}"))
                .collect();
            write!(f, "; re-initialised (shape differs): {}", list.join(", "))?;
        }
        if !self.missing.is_empty() {
            write!(f, "; not in the checkpoint: {}", self.missing.join(", "))?;
        }
        if !self.unused.is_empty() {
            write!(f, "; {} checkpoint keys unused", self.unused.len())?;
        }
        Ok(())
    }
}

/// mmengine `load_checkpoint(strict=False)` as `load_from` uses it: every model tensor whose key
/// is in the checkpoint with the same shape is copied; a head for another class count keeps
/// its fresh initialisation. Refuses a checkpoint that shares no tensor with the model.
pub fn load_matching(vm: &VarMap, sd: &StateDict) -> Result<TransferReport> {
    let mut report = TransferReport::default();
    let vars = named_vars(vm)?;
    for (key, var) in &vars {
        let t = var.as_tensor();
        match sd.tensors.get(key) {
            Some(src) if src.dims() == t.dims() => {
                let src = src.to_dtype(t.dtype())?.to_device(t.device())?;
                var.set(&src)?;
                report.loaded += 1;
            }
            Some(src) => {
                report
                    .mismatched
                    .push((key.clone(), src.dims().to_vec(), t.dims().to_vec()))
            }
            None => report.missing.push(key.clone()),
        }
    }
    report.unused = sd
        .tensors
        .keys()
        .filter(|k| !vars.contains_key(*k) && !crate::nn::checkpoint::is_ignorable_buffer(k))
        .cloned()
        .collect();
    if report.loaded == 0 {
        return Err(TrainError::Checkpoint {
            path: sd.source.clone(),
            message: format!("no tensor matches the model by key and shape ({report})"),
        });
    }
    Ok(report)
}
