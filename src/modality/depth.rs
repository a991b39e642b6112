//! Depth: Depth Anything V2 ([`crate::nn::depth_anything_v2`] on [`crate::nn::dinov2`], our
//! own port), with user-supplied safetensors weights, and MM-Gesture's per-clip 8-bit
//! normalisation (`Video-Depth-Anything/utils/dc_utils.py` `save_video(..., is_depths=True)`:
//! one min and max over the whole clip, `uint8((d − min) / (max − min) · 255)`).
//!
//! A frame goes through what `depth_anything_v2/dpt.py` `infer_image` does:
//! `image2tensor` turns the 8-bit RGB into float64 in [0, 1], resizes it keeping the aspect
//! ratio so that the lower side is 518 and both sides are multiples of 14
//! (`util/transform.py` `Resize(..., keep_aspect_ratio=True, ensure_multiple_of=14,
//! resize_method="lower_bound")`, [`network_size`]) with OpenCV's INTER_CUBIC
//! ([`resize_cubic_cv`]), and applies the ImageNet mean/std; the network's prediction is
//! resized back to the frame bilinearly with `align_corners=True`.
//!
//! Weights: the official checkpoints' keys (`pretrained.*`, `depth_head.*`), or a Hugging Face
//! `depth-anything/Depth-Anything-V2-*-hf` file (`backbone.*`, `neck.*`, `head.*`), whose
//! tensors are renamed on load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::nn::depth_anything_v2::{self, hf_to_official, DepthAnythingV2};
use crate::nn::interp::{bilinear_align_corners_taps, Taps};
use crate::{Error, Result};

/// The lower side of the network input (`infer_image`'s `input_size`).
pub const INPUT: usize = 518;
/// Both sides of the network input are multiples of the ViT patch.
pub const MULTIPLE: usize = 14;
const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Environment variable naming a weights file when none is given.
pub const WEIGHTS_ENV: &str = "MGSCOPE_DEPTH_WEIGHTS";

/// What the depth modality says when no model is available.
pub const NO_MODEL: &str = "no depth model loaded — how to get one: download Depth Anything V2 \
weights as safetensors (small: depth_anything_v2_vits, base: _vitb, large: _vitl; the checkpoint's \
keys are `pretrained.*` and `depth_head.*`; the Hugging Face Depth-Anything-V2-*-hf \
model.safetensors files work too), then pass --weights FILE [--encoder small|base|large] or set \
MGSCOPE_DEPTH_WEIGHTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoder {
    Small,
    Base,
    Large,
}

impl Encoder {
    pub fn config(self) -> depth_anything_v2::Config {
        match self {
            Encoder::Small => depth_anything_v2::Config::vit_small(),
            Encoder::Base => depth_anything_v2::Config::vit_base(),
            Encoder::Large => depth_anything_v2::Config::vit_large(),
        }
    }
}

fn cerr(what: &str) -> impl FnOnce(candle_core::Error) -> Error + '_ {
    move |e| Error::Invalid(format!("depth model: {what}: {e}"))
}

pub struct DepthModel {
    net: DepthAnythingV2,
    device: Device,
    input_size: usize,
}

impl DepthModel {
    /// Loads weights from a safetensors file in the official or the Hugging Face layout.
    pub fn load(path: &Path, encoder: Encoder, device: &Device) -> Result<DepthModel> {
        Self::load_config(path, &encoder.config(), device)
    }

    /// [`DepthModel::load`] for any configuration (other widths and depths than the released
    /// encoders).
    pub fn load_config(
        path: &Path,
        cfg: &depth_anything_v2::Config,
        device: &Device,
    ) -> Result<DepthModel> {
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "depth weights {} ({NO_MODEL})",
                path.display()
            )));
        }
        // SAFETY: the file is mapped read-only for the life of the tensors; mgscope does not
        // write it, and a concurrent writer would be the user's own doing.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|e| Error::format(path, "safetensors", e.to_string()))?;
        let hf_layout = st
            .tensors()
            .iter()
            .any(|(name, _)| name.starts_with("backbone."));
        let vb = if hf_layout {
            let mut tensors = HashMap::new();
            for (name, _) in st.tensors() {
                let t = st
                    .load(&name, device)
                    .map_err(|e| Error::format(path, name.clone(), e.to_string()))?;
                tensors.insert(name, t);
            }
            let tensors = hf_to_official(tensors)
                .map_err(|e| Error::format(path, "Hugging Face layout", e.to_string()))?;
            VarBuilder::from_tensors(tensors, DType::F32, device)
        } else {
            VarBuilder::from_backend(Box::new(st), DType::F32, device.clone())
        };
        Self::from_var_builder(vb, cfg, device).map_err(|e| {
            let enc = &cfg.encoder;
            Error::format(
                path,
                format!(
                    "weights for a ViT of width {} and depth {}",
                    enc.embed_dim, enc.depth
                ),
                e.to_string(),
            )
        })
    }

    /// Builds the network from a VarBuilder with the official checkpoint's key names
    /// (`pretrained.*`, `depth_head.*`).
    pub fn from_var_builder(
        vb: VarBuilder,
        cfg: &depth_anything_v2::Config,
        device: &Device,
    ) -> Result<DepthModel> {
        let net = DepthAnythingV2::new(cfg, vb).map_err(cerr("building the network"))?;
        Ok(DepthModel {
            net,
            device: device.clone(),
            input_size: INPUT,
        })
    }

    /// The lower side of the network input (518 unless changed; `infer_image`'s
    /// `input_size`).
    pub fn with_input_size(mut self, input_size: usize) -> Result<DepthModel> {
        if input_size == 0 {
            return Err(Error::Invalid("depth: input size 0".into()));
        }
        self.input_size = input_size;
        Ok(self)
    }

    /// Weights from `explicit`, else `$MGSCOPE_DEPTH_WEIGHTS`; the error explains how to get
    /// a model.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(WEIGHTS_ENV).map(PathBuf::from))
            .ok_or_else(|| Error::Invalid(NO_MODEL.to_string()))
    }

    /// The network's own output for a preprocessed input: `[height, width]` row-major.
    pub fn forward_input(&self, input: &Input) -> Result<Vec<f32>> {
        let x = Tensor::from_slice(&input.data, (1, 3, input.height, input.width), &self.device)
            .map_err(cerr("input tensor"))?;
        let d = self.net.forward(&x).map_err(cerr("forward"))?;
        let dims = d.dims().to_vec();
        if dims != [1, input.height, input.width] {
            return Err(Error::Invalid(format!(
                "depth: output shape {dims:?}, expected [1, {}, {}]",
                input.height, input.width
            )));
        }
        d.flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(cerr("reading the output"))
    }

    /// Relative inverse depth of one RGB24 frame, `[h, w]` row-major (`infer_image`).
    pub fn infer(&self, rgb: &[u8], w: usize, h: usize) -> Result<Vec<f32>> {
        if rgb.len() != w * h * 3 || w == 0 || h == 0 {
            return Err(Error::Invalid(format!(
                "depth: frame of {} bytes is not {w}×{h}×3",
                rgb.len()
            )));
        }
        let input = preprocess_sized(rgb, w, h, self.input_size);
        let d = self.forward_input(&input)?;
        Ok(resize_bilinear_align_corners(
            &d,
            input.width,
            input.height,
            w,
            h,
        ))
    }
}

/// The network input of a `w × h` frame (`Resize.get_size` with `keep_aspect_ratio=True`,
/// `ensure_multiple_of=14`, `resize_method="lower_bound"`): `(width, height)`.
///
/// One scale for both sides, the larger of `size / w` and `size / h`; each scaled side is
/// rounded to a multiple of 14 half-to-even (numpy's `round`), and rounded up instead if that
/// fell below `size`.
pub fn network_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    let (mut scale_w, mut scale_h) = (size as f64 / w as f64, size as f64 / h as f64);
    if scale_w > scale_h {
        scale_h = scale_w;
    } else {
        scale_w = scale_h;
    }
    let m = MULTIPLE as f64;
    let constrain = |x: f64| -> usize {
        let y = (x / m).round_ties_even() * m;
        let y = if y < size as f64 {
            (x / m).ceil() * m
        } else {
            y
        };
        y as usize
    };
    (constrain(scale_w * w as f64), constrain(scale_h * h as f64))
}

/// A preprocessed frame: normalised CHW float `[3, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub data: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

/// `image2tensor` with the default input size 518.
pub fn preprocess(rgb: &[u8], w: usize, h: usize) -> Input {
    preprocess_sized(rgb, w, h, INPUT)
}

/// `image2tensor(frame, input_size)`: RGB24 `[h, w, 3]` → /255 in float64 → INTER_CUBIC to
/// [`network_size`] → ImageNet mean/std (still float64) → float32 CHW.
pub fn preprocess_sized(rgb: &[u8], w: usize, h: usize, input_size: usize) -> Input {
    let (nw, nh) = network_size(w, h, input_size);
    let src: Vec<f64> = rgb.iter().map(|&v| f64::from(v) / 255.0).collect();
    let resized = resize_cubic_cv(&src, w, h, 3, nw, nh);
    let mut data = vec![0f32; 3 * nw * nh];
    for (i, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * nw * nh + i] = ((px[c] - MEAN[c]) / STD[c]) as f32;
        }
    }
    Input {
        data,
        width: nw,
        height: nh,
    }
}

/// OpenCV's `interpolateCubic` (A = −0.75), in float as OpenCV computes the coefficients;
/// the last one is `1 − c0 − c1 − c2`.
fn cv_cubic_coeffs(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// OpenCV's INTER_CUBIC taps for one axis (`resize.cpp` `resize`, generic path): the source
/// position `(d + 0.5) · src/dst − 0.5` is computed in double and rounded to float, the
/// coefficients come from its fractional part, and taps beyond the image repeat its edge.
fn cv_cubic_taps(src: usize, dst: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let c = cv_cubic_coeffs(f - s);
            let s = s as i64;
            let mut idx = [0usize; 4];
            for (k, i) in idx.iter_mut().enumerate() {
                *i = (s - 1 + k as i64).clamp(0, src as i64 - 1) as usize;
            }
            (idx, c.map(f64::from))
        })
        .collect()
}

/// `cv2.resize(img, (dw, dh), interpolation=cv2.INTER_CUBIC)` of a float64 `[sh, sw, channels]`
/// image (OpenCV's `HResizeCubic` then `VResizeCubic` for `double`: sums in double, left to
/// right, with float coefficients). No clamping: float images may overshoot [0, 1].
pub fn resize_cubic_cv(
    src: &[f64],
    sw: usize,
    sh: usize,
    channels: usize,
    dw: usize,
    dh: usize,
) -> Vec<f64> {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() != sw * sh * channels {
        return vec![0.0; dw * dh * channels];
    }
    let tx = cv_cubic_taps(sw, dw);
    let ty = cv_cubic_taps(sh, dh);
    let row = dw * channels;
    let mut horiz = vec![0f64; sh * row];
    for y in 0..sh {
        let s = &src[y * sw * channels..(y + 1) * sw * channels];
        for (x, (idx, a)) in tx.iter().enumerate() {
            for c in 0..channels {
                horiz[y * row + x * channels + c] = s[idx[0] * channels + c] * a[0]
                    + s[idx[1] * channels + c] * a[1]
                    + s[idx[2] * channels + c] * a[2]
                    + s[idx[3] * channels + c] * a[3];
            }
        }
    }
    let mut out = vec![0f64; dh * row];
    for (y, (idx, b)) in ty.iter().enumerate() {
        let r = |k: usize| &horiz[idx[k] * row..(idx[k] + 1) * row];
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        for (i, o) in out[y * row..(y + 1) * row].iter_mut().enumerate() {
            *o = r0[i] * b[0] + r1[i] * b[1] + r2[i] * b[2] + r3[i] * b[3];
        }
    }
    out
}

/// PyTorch `F.interpolate(mode="bilinear", align_corners=True)` of a single-channel map
/// (the same taps as the network's own resizes, [`bilinear_align_corners_taps`]).
pub fn resize_bilinear_align_corners(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
) -> Vec<f32> {
    if sw == 0 || sh == 0 || src.len() != sw * sh {
        return vec![0.0; dw * dh];
    }
    let tx: Taps = bilinear_align_corners_taps(sw, dw);
    let ty: Taps = bilinear_align_corners_taps(sh, dh);
    // Width first, then height, as ATen nests the sums.
    let mut rows = vec![0f32; sh * dw];
    for y in 0..sh {
        for x in 0..dw {
            rows[y * dw + x] = tx.apply_slice(src, 1, y * sw, x);
        }
    }
    let mut out = vec![0f32; dw * dh];
    for y in 0..dh {
        for x in 0..dw {
            out[y * dw + x] = ty.apply_slice(&rows, dw, x, y);
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
    use crate::modality::npy::read_npy_as;
    use crate::nn::dinov2;
    use candle_nn::VarMap;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/depth")
            .join(name)
    }

    fn npy<T: crate::modality::npy::NpyElement>(name: &str) -> (Vec<usize>, Vec<T>) {
        read_npy_as::<T>(fixture(&format!("{name}.npy"))).expect(name)
    }

    /// The model of `tools/make_depth_fixtures.py`.
    fn tiny_config() -> depth_anything_v2::Config {
        depth_anything_v2::Config {
            encoder: dinov2::Config {
                embed_dim: 32,
                depth: 5,
                num_heads: 2,
                ..dinov2::Config::vit_small()
            },
            taps: [0, 2, 3, 4],
            features: 8,
            out_channels: [8, 16, 24, 32],
        }
    }

    fn load_tiny(file: &str) -> DepthModel {
        DepthModel::load_config(&fixture(file), &tiny_config(), &Device::Cpu)
            .and_then(|m| m.with_input_size(140))
            .expect("load")
    }

    /// (max |a − b|, max |b|).
    fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
        assert_eq!(a.len(), b.len());
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        (d, b.iter().map(|v| v.abs()).fold(0f32, f32::max))
    }

    #[test]
    fn network_size_matches_the_reference_resize() {
        let (shape, rows) = npy::<i64>("resize_sizes");
        assert_eq!(shape[1], 5);
        for r in rows.chunks_exact(5) {
            let [w, h, size, nw, nh] = [r[0], r[1], r[2], r[3], r[4]].map(|v| v as usize);
            assert_eq!(network_size(w, h, size), (nw, nh), "{w}×{h} at {size}");
            assert_eq!((nw % 14, nh % 14), (0, 0));
        }
        // A case where numpy's half-to-even rounding decides: 539/14 = 38.5 → 38 → 532.
        assert_eq!(network_size(539, 518, 518), (532, 518));
    }

    #[test]
    fn cubic_resize_matches_opencv() {
        let (shape, src) = npy::<f64>("cubic_src");
        let (sh, sw) = (shape[0], shape[1]);
        for name in ["down", "up", "mixed"] {
            let (s, want) = npy::<f64>(&format!("cubic_{name}"));
            let got = resize_cubic_cv(&src, sw, sh, 3, s[1], s[0]);
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            assert!(d <= 1e-12, "{name}: max |diff| {d:e}");
        }
    }

    #[test]
    fn pos_embed_bicubic_matches_torch() {
        for name in ["down", "up"] {
            let (s, src) = npy::<f32>(&format!("posinterp_{name}_src"));
            let (o, want) = npy::<f32>(&format!("posinterp_{name}_out"));
            let side = s[1] as f64;
            let x = Tensor::from_vec(src, (s[0], s[1], s[2]), &Device::Cpu).expect("x");
            let sf = ((o[1] as f64 + 0.1) / side, (o[2] as f64 + 0.1) / side);
            let got: Vec<f32> = crate::nn::interp::bicubic_scale_factor(&x, (o[1], o[2]), sf)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("resize");
            let (d, scale) = max_diff(&got, &want);
            eprintln!("position-embedding bicubic {name}: max |diff| {d:e} (max |value| {scale})");
            // A few float ulps: ATen's kernel may fuse the multiply-adds.
            assert!(d <= 1e-5 * scale.max(1.0), "{name}: {d:e}");
        }
    }

    #[test]
    fn preprocessing_matches_image2tensor() {
        let (fs, rgb) = npy::<u8>("frame_rgb");
        let (is, want) = npy::<f32>("input");
        let x = preprocess_sized(&rgb, fs[1], fs[0], 140);
        assert_eq!((x.height, x.width), (is[1], is[2]));
        assert_eq!(
            (x.width, x.height),
            (210, 140),
            "non-square, lower side 140"
        );
        let (d, scale) = max_diff(&x.data, &want);
        eprintln!("preprocessed input: max |diff| {d:e} (max |value| {scale})");
        assert!(d <= 1e-6, "{d:e}");
    }

    #[test]
    fn depth_matches_the_reference_on_a_demo_frame() {
        let (fs, rgb) = npy::<u8>("frame_rgb");
        let (is, input) = npy::<f32>("input");
        let (_, dpt_want) = npy::<f32>("dpt_out");
        let (ds, depth_want) = npy::<f32>("depth");
        for file in ["tiny_official.safetensors", "tiny_hf.safetensors"] {
            let model = load_tiny(file);
            // The network alone, on the reference's own input tensor.
            let inp = Input {
                data: input.clone(),
                width: is[2],
                height: is[1],
            };
            let raw = model.forward_input(&inp).expect("forward");
            let (d, scale) = max_diff(&raw, &dpt_want);
            eprintln!("{file}: network output max |diff| {d:e} (max |value| {scale})");
            assert!(d <= 1e-4 * scale, "{file}: {d:e} of {scale}");
            // The whole of infer_image from the 8-bit frame.
            let depth = model.infer(&rgb, fs[1], fs[0]).expect("infer");
            assert_eq!(depth.len(), ds[0] * ds[1]);
            let (d, scale) = max_diff(&depth, &depth_want);
            eprintln!("{file}: depth max |diff| {d:e} (max |value| {scale})");
            assert!(d <= 1e-4 * scale, "{file}: {d:e} of {scale}");
        }
    }

    /// A tiny network with random weights saved to safetensors and loaded back through
    /// the same path as real weights.
    #[test]
    fn random_weights_load_and_run_through_the_file_path() {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tiny.safetensors");
        let cfg = depth_anything_v2::Config {
            encoder: dinov2::Config {
                embed_dim: 24,
                depth: 4,
                num_heads: 2,
                img_size: 70,
                ..dinov2::Config::vit_small()
            },
            taps: [0, 1, 2, 3],
            features: 8,
            out_channels: [8, 8, 8, 8],
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let built = DepthModel::from_var_builder(vb, &cfg, &dev)
            .and_then(|m| m.with_input_size(28))
            .expect("build");
        varmap.save(&path).expect("save safetensors");
        let (w, h) = (64usize, 36usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
        let a = built.infer(&rgb, w, h).expect("infer");

        // SAFETY: the file was written above and is not modified while mapped.
        let vb2 = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &dev) }
            .expect("mmap");
        let loaded = DepthModel::from_var_builder(vb2, &cfg, &dev)
            .and_then(|m| m.with_input_size(28))
            .expect("load");
        let b = loaded.infer(&rgb, w, h).expect("infer");
        assert_eq!(a.len(), w * h);
        assert_eq!(a, b, "the saved and reloaded weights give the same depth");
        assert!(a.iter().all(|v| v.is_finite() && *v >= 0.0), "ReLU output");

        // A file missing keys names the file and the missing key.
        let mut broken = varmap.data().lock().expect("lock").clone();
        broken.retain(|k, _| !k.starts_with("depth_head.scratch.refinenet2"));
        let tensors: HashMap<String, Tensor> = broken
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        let bad = dir.path().join("broken.safetensors");
        candle_core::safetensors::save(&tensors, &bad).expect("save");
        let e = DepthModel::load_config(&bad, &cfg, &dev)
            .err()
            .expect("missing keys");
        let msg = e.to_string();
        assert!(msg.contains("broken.safetensors"), "{msg}");
        assert!(msg.contains("depth_head.scratch.refinenet2"), "{msg}");
        // Weights of another size than the encoder asked for say which encoder was expected.
        let e = DepthModel::load(&path, Encoder::Small, &dev)
            .err()
            .expect("wrong encoder");
        let msg = e.to_string();
        assert!(
            msg.contains("tiny.safetensors") && msg.contains("width 384"),
            "{msg}"
        );
    }

    /// The released ViT-S wiring (12 blocks, taps 2/5/8/11, 64 features) on a 16:9 frame:
    /// a 2×4 patch grid, whose stride-2 layer is 1×2 and whose fusion sizes are uneven.
    #[test]
    fn released_small_encoder_runs_on_a_wide_frame() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let model = DepthModel::from_var_builder(vb, &Encoder::Small.config(), &dev)
            .and_then(|m| m.with_input_size(28))
            .expect("build");
        let (w, h) = (64usize, 36usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 53) % 247) as u8).collect();
        let input = preprocess_sized(&rgb, w, h, 28);
        assert_eq!((input.width, input.height), (56, 28));
        let raw = model.forward_input(&input).expect("forward");
        assert_eq!(raw.len(), 56 * 28);
        let d = model.infer(&rgb, w, h).expect("infer");
        assert_eq!(d.len(), w * h);
        assert!(d.iter().all(|v| v.is_finite() && *v >= 0.0));
    }

    #[test]
    fn released_configs_name_the_checkpoint_shapes() {
        let s = Encoder::Small.config();
        assert_eq!(
            (s.encoder.embed_dim, s.encoder.depth, s.features),
            (384, 12, 64)
        );
        let l = Encoder::Large.config();
        assert_eq!(l.taps, [4, 11, 17, 23]);
        assert_eq!(l.out_channels, [256, 512, 1024, 1024]);
        assert_eq!(Encoder::Base.config().out_channels, [96, 192, 384, 768]);
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
        // A constant image stays constant through the cubic resize and normalisation.
        let rgb = vec![128u8; 10 * 7 * 3];
        let x = preprocess(&rgb, 10, 7);
        assert_eq!((x.width, x.height), (742, 518));
        for c in 0..3 {
            let want = ((128.0 / 255.0 - MEAN[c]) / STD[c]) as f32;
            let plane = &x.data[c * x.width * x.height..(c + 1) * x.width * x.height];
            assert!(plane.iter().all(|v| (v - want).abs() < 1e-6));
        }
        // Weights of the cubic kernel sum to 1 at any phase.
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let s: f32 = cv_cubic_coeffs(t).iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
    }
}
