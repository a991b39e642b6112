//! Depth: Depth Anything V2 (candle-transformers' `depth_anything_v2` on its `dinov2`), with
//! user-supplied safetensors weights, and MM-Gesture's per-clip 8-bit normalisation
//! (`Video-Depth-Anything/utils/dc_utils.py` `save_video(..., is_depths=True)`: one min and
//! max over the whole clip, `uint8((d − min) / (max − min) · 255)`).
//!
//! Preprocessing follows Depth Anything V2's `image2tensor`: RGB in [0, 1], bicubic resize,
//! ImageNet mean/std; the prediction is resized back to the frame bilinearly with
//! `align_corners=True`. One deviation, forced by candle-transformers: its DINOv2/DPT take a
//! square 518×518 input (the reference keeps the aspect ratio, lower side 518, multiple of 14),
//! so frames are resized to 518×518.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};
use candle_transformers::models::depth_anything_v2::{DepthAnythingV2, DepthAnythingV2Config};
use candle_transformers::models::dinov2::DinoVisionTransformer;

use crate::{Error, Result};

pub const INPUT: usize = 518;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Environment variable naming a weights file when none is given.
pub const WEIGHTS_ENV: &str = "MGSCOPE_DEPTH_WEIGHTS";

/// What the depth modality says when no model is available.
pub const NO_MODEL: &str = "no depth model loaded — how to get one: download Depth Anything V2 \
weights as safetensors (small: depth_anything_v2_vits, base: _vitb, large: _vitl; the checkpoint's \
keys are `pretrained.*` and `depth_head.*`), then pass --weights FILE [--encoder \
small|base|large] or set MGSCOPE_DEPTH_WEIGHTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoder {
    Small,
    Base,
    Large,
}

impl Encoder {
    fn dino(self) -> (usize, usize, usize) {
        // (depth, embed dim, heads) of DINOv2 ViT-S/B/L.
        match self {
            Encoder::Small => (12, 384, 6),
            Encoder::Base => (12, 768, 12),
            Encoder::Large => (24, 1024, 16),
        }
    }

    fn config(self) -> DepthAnythingV2Config {
        match self {
            Encoder::Small => DepthAnythingV2Config::vit_small(),
            Encoder::Base => DepthAnythingV2Config::vit_base(),
            Encoder::Large => DepthAnythingV2Config::vit_large(),
        }
    }
}

fn cerr(what: &str) -> impl FnOnce(candle_core::Error) -> Error + '_ {
    move |e| Error::Invalid(format!("depth model: {what}: {e}"))
}

pub struct DepthModel {
    net: DepthAnythingV2,
    device: Device,
}

impl DepthModel {
    /// Loads weights from a safetensors file.
    pub fn load(path: &Path, encoder: Encoder, device: &Device) -> Result<DepthModel> {
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "depth weights {} ({NO_MODEL})",
                path.display()
            )));
        }
        // SAFETY: the file is mapped read-only for the life of the tensors; mgscope does not
        // write it, and a concurrent writer would be the user's own doing.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
            .map_err(|e| Error::format(path, "safetensors", e.to_string()))?;
        let (depth, dim, heads) = encoder.dino();
        Self::from_var_builder(vb, depth, dim, heads, encoder.config(), device)
            .map_err(|e| Error::format(path, "weights", e.to_string()))
    }

    /// Builds the network from a VarBuilder with the checkpoint's key names
    /// (`pretrained.*`, `depth_head.*`).
    pub fn from_var_builder(
        vb: VarBuilder,
        depth: usize,
        embed_dim: usize,
        heads: usize,
        cfg: DepthAnythingV2Config,
        device: &Device,
    ) -> Result<DepthModel> {
        let dino = DinoVisionTransformer::new(vb.pp("pretrained"), depth, embed_dim, heads)
            .map_err(cerr("building DINOv2"))?;
        let net =
            DepthAnythingV2::new(Arc::new(dino), cfg, vb).map_err(cerr("building the DPT head"))?;
        Ok(DepthModel {
            net,
            device: device.clone(),
        })
    }

    /// Weights from `explicit`, else `$MGSCOPE_DEPTH_WEIGHTS`; the error explains how to get
    /// a model.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(WEIGHTS_ENV).map(PathBuf::from))
            .ok_or_else(|| Error::Invalid(NO_MODEL.to_string()))
    }

    /// Relative inverse depth of one RGB24 frame, `[h, w]` row-major.
    pub fn infer(&self, rgb: &[u8], w: usize, h: usize) -> Result<Vec<f32>> {
        if rgb.len() != w * h * 3 || w == 0 || h == 0 {
            return Err(Error::Invalid(format!(
                "depth: frame of {} bytes is not {w}×{h}×3",
                rgb.len()
            )));
        }
        let input = preprocess(rgb, w, h);
        let x = Tensor::from_vec(input, (1, 3, INPUT, INPUT), &self.device)
            .map_err(cerr("input tensor"))?;
        let d = self.net.forward(&x).map_err(cerr("forward"))?;
        // The head's output size is its own business (candle's DPT ends at 520×520 for a
        // 518 input); take it from the tensor.
        let dims = d.dims().to_vec();
        let (oh, ow) = match dims[..] {
            [.., oh, ow] => (oh, ow),
            _ => {
                return Err(Error::Invalid(format!(
                    "depth: unexpected output shape {dims:?}"
                )))
            }
        };
        let d = d
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(cerr("reading the output"))?;
        if d.len() != oh * ow {
            return Err(Error::Invalid(format!(
                "depth: model output has {} values, expected {oh}×{ow}",
                d.len()
            )));
        }
        Ok(resize_bilinear_align_corners(&d, ow, oh, w, h))
    }
}

/// Keys's cubic convolution with a = −0.75, as OpenCV's INTER_CUBIC.
fn cubic(x: f32) -> f32 {
    let a = -0.75f32;
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// RGB24 `[h, w, 3]` → normalised CHW float `[3, 518, 518]`: bicubic (OpenCV's half-pixel
/// mapping, border replicated), /255, ImageNet mean/std.
pub fn preprocess(rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
    let taps = |src: usize, dst: usize| -> Vec<([usize; 4], [f32; 4])> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|o| {
                let f = (o as f32 + 0.5) * scale - 0.5;
                let i0 = f.floor();
                let t = f - i0;
                let mut idx = [0usize; 4];
                let mut wt = [0f32; 4];
                for k in 0..4 {
                    let i = (i0 as isize + k as isize - 1).clamp(0, src as isize - 1);
                    idx[k] = i as usize;
                    wt[k] = cubic(t - (k as f32 - 1.0));
                }
                (idx, wt)
            })
            .collect()
    };
    let tx = taps(w, INPUT);
    let ty = taps(h, INPUT);
    // Horizontal pass into [h, 518, 3], then vertical into [3, 518, 518].
    let mut tmp = vec![0f32; h * INPUT * 3];
    for y in 0..h {
        for (ox, (idx, wt)) in tx.iter().enumerate() {
            for c in 0..3 {
                let mut acc = 0.0;
                for k in 0..4 {
                    acc += wt[k] * f32::from(rgb[(y * w + idx[k]) * 3 + c]);
                }
                tmp[(y * INPUT + ox) * 3 + c] = acc;
            }
        }
    }
    let mut out = vec![0f32; 3 * INPUT * INPUT];
    for (oy, (idx, wt)) in ty.iter().enumerate() {
        for ox in 0..INPUT {
            for c in 0..3 {
                let mut acc = 0.0;
                for k in 0..4 {
                    acc += wt[k] * tmp[(idx[k] * INPUT + ox) * 3 + c];
                }
                // OpenCV saturates the 8-bit result before the /255 of the reference.
                let v = acc.round().clamp(0.0, 255.0) / 255.0;
                out[(c * INPUT + oy) * INPUT + ox] = (v - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

/// PyTorch `F.interpolate(mode="bilinear", align_corners=True)` of a single-channel map.
pub fn resize_bilinear_align_corners(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
) -> Vec<f32> {
    let map = |o: usize, d: usize, s: usize| -> (usize, usize, f32) {
        if d <= 1 || s <= 1 {
            return (0, 0, 0.0);
        }
        let f = o as f32 * (s - 1) as f32 / (d - 1) as f32;
        let i = (f.floor() as usize).min(s - 1);
        let j = (i + 1).min(s - 1);
        (i, j, f - i as f32)
    };
    let mut out = vec![0f32; dw * dh];
    for y in 0..dh {
        let (y0, y1, fy) = map(y, dh, sh);
        for x in 0..dw {
            let (x0, x1, fx) = map(x, dw, sw);
            let top = src[y0 * sw + x0] * (1.0 - fx) + src[y0 * sw + x1] * fx;
            let bot = src[y1 * sw + x0] * (1.0 - fx) + src[y1 * sw + x1] * fx;
            out[y * dw + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

/// MM-Gesture's depth video quantisation: one min and max over the whole clip,
/// `uint8((d − min) / (max − min) · 255)` (truncation, as numpy's astype). A constant clip is 0.
pub fn clip_to_u8(frames: &[Vec<f32>]) -> Vec<Vec<u8>> {
    let (lo, hi) = frames
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    frames
        .iter()
        .map(|f| {
            f.iter()
                .map(|&v| {
                    if range > 0.0 && range.is_finite() {
                        ((v - lo) / range * 255.0) as u8
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// A tiny network with random weights (the real ones are user-supplied), saved to
    /// safetensors by the test and loaded back through the same path as real weights.
    #[test]
    fn random_weights_load_and_run_through_the_file_path() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tiny.safetensors");
        let cfg = || {
            DepthAnythingV2Config::new([8, 8, 8, 8], 24, 8, false, false, vec![0, 1, 2, 3], 518, 37)
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let built = DepthModel::from_var_builder(vb, 4, 24, 2, cfg(), &dev).expect("build");
        varmap.save(&path).expect("save safetensors");
        let (w, h) = (64usize, 36usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
        let a = built.infer(&rgb, w, h).expect("infer");

        // SAFETY: the file was written above and is not modified while mapped.
        let vb2 = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &dev) }
            .expect("mmap");
        let loaded = DepthModel::from_var_builder(vb2, 4, 24, 2, cfg(), &dev).expect("load");
        let b = loaded.infer(&rgb, w, h).expect("infer");
        assert_eq!(a.len(), w * h);
        assert_eq!(a, b, "the saved and reloaded weights give the same depth");
        assert!(a.iter().all(|v| v.is_finite() && *v >= 0.0), "ReLU output");

        // A file missing keys names what is missing.
        let mut broken = varmap.data().lock().expect("lock").clone();
        broken.retain(|k, _| !k.starts_with("depth_head.scratch"));
        let tensors: std::collections::HashMap<String, Tensor> = broken
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        let bad = dir.path().join("broken.safetensors");
        candle_core::safetensors::save(&tensors, &bad).expect("save");
        let e = DepthModel::load(&bad, Encoder::Small, &dev)
            .err()
            .expect("mismatch");
        assert!(e.to_string().contains("broken.safetensors"), "{e}");
    }

    #[test]
    fn no_model_is_explained() {
        let e = DepthModel::load(
            Path::new("/nonexistent/vits.safetensors"),
            Encoder::Small,
            &Device::Cpu,
        )
        .err()
        .expect("missing");
        assert!(e.to_string().contains("no depth model loaded"), "{e}");
    }

    #[test]
    fn clip_normalisation_matches_mm_gesture() {
        let f = vec![vec![1.0, 2.0], vec![3.0, 5.0]];
        // (d-1)/4*255 truncated: 0, 63.75→63, 127.5→127, 255.
        assert_eq!(clip_to_u8(&f), vec![vec![0, 63], vec![127, 255]]);
        assert_eq!(clip_to_u8(&[vec![2.0, 2.0]]), vec![vec![0, 0]]);
    }

    #[test]
    fn resizes_match_their_definitions() {
        // align_corners=True keeps the corners and interpolates linearly in between.
        let src = vec![0.0, 1.0, 2.0, 3.0];
        let out = resize_bilinear_align_corners(&src, 2, 2, 3, 3);
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]);
        // A constant image stays constant through the bicubic resize and normalisation.
        let rgb = vec![128u8; 10 * 7 * 3];
        let x = preprocess(&rgb, 10, 7);
        for c in 0..3 {
            let want = (128.0 / 255.0 - MEAN[c]) / STD[c];
            let plane = &x[c * INPUT * INPUT..(c + 1) * INPUT * INPUT];
            assert!(plane.iter().all(|v| (v - want).abs() < 1e-6));
        }
        // Weights of the cubic kernel sum to 1 at any phase.
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let s: f32 = (0..4).map(|k| cubic(t - (k as f32 - 1.0))).sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
    }
}
