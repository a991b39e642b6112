//! PyTorch's `F.interpolate` for the two modes Depth Anything V2 uses, as separable per-axis
//! tap tables applied with `index_select` (any device, cost proportional to the output):
//!
//! * bicubic, `align_corners=False`, with the `scale_factor` the caller passed (DINOv2's
//!   `interpolate_pos_encoding`): ATen `UpSampleKernel.cpp` `HelperInterpCubic` with
//!   `UpSample.h` `area_pixel_compute_source_index` / `get_cubic_upsample_coefficients`
//!   (Keys' kernel, A = −0.75, taps clamped to the edge);
//! * bilinear, `align_corners=True` (the DPT head and the final resize to the frame):
//!   `HelperInterpLinear`.
//!
//! The index and weight arithmetic is done in `f32` as in ATen's float kernels, so that the
//! sample positions round the same way.

use candle_core::{Result, Tensor};

/// One axis of a separable resampling: output `o` is `Σ_k weight[k][o] · input[index[k][o]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub index: Vec<Vec<u32>>,
    pub weight: Vec<Vec<f32>>,
}

impl Taps {
    pub fn out_len(&self) -> usize {
        self.index.first().map_or(0, Vec::len)
    }

    /// `out[o] = Σ_k w[k][o] · src[idx[k][o]]`, summed in tap order like ATen's `interpolate`.
    pub fn apply_slice(&self, src: &[f32], stride: usize, offset: usize, o: usize) -> f32 {
        let mut acc = 0f32;
        for (k, (idx, w)) in self.index.iter().zip(&self.weight).enumerate() {
            let v = src[offset + idx[o] as usize * stride] * w[o];
            acc = if k == 0 { v } else { acc + v };
        }
        acc
    }
}

/// `upsample_get_value_bounded`: taps outside the input read its edge.
fn clamp_index(i: i64, len: usize) -> u32 {
    i.clamp(0, len as i64 - 1) as u32
}

fn cubic_near(x: f32, a: f32) -> f32 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic_far(x: f32, a: f32) -> f32 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// Bicubic taps (`mode="bicubic", align_corners=False`) from `in_len` to `out_len` samples when
/// the caller passed `scale_factor` (ATen then samples at `(o + 0.5) / scale_factor − 0.5`,
/// not at the `in_len / out_len` spacing; pass `None` for a `size=` call).
pub fn bicubic_taps(in_len: usize, out_len: usize, scale_factor: Option<f64>) -> Taps {
    const A: f32 = -0.75;
    // `compute_scales_value`: 1/scale_factor in double, then rounded to the kernel's float.
    let scale = match scale_factor {
        Some(s) if s > 0.0 => (1.0 / s) as f32,
        _ => in_len as f32 / out_len as f32,
    };
    let mut index: Vec<Vec<u32>> = (0..4).map(|_| Vec::with_capacity(out_len)).collect();
    let mut weight: Vec<Vec<f32>> = (0..4).map(|_| Vec::with_capacity(out_len)).collect();
    for o in 0..out_len {
        let real = scale * (o as f32 + 0.5) - 0.5;
        // `guard_index_and_lambda`.
        let i0 = (real.floor() as i64).min(in_len as i64 - 1);
        let t = (real - i0 as f32).clamp(0.0, 1.0);
        let w = [
            cubic_far(t + 1.0, A),
            cubic_near(t, A),
            cubic_near(1.0 - t, A),
            cubic_far(2.0 - t, A),
        ];
        for k in 0..4 {
            index[k].push(clamp_index(i0 - 1 + k as i64, in_len));
            weight[k].push(w[k]);
        }
    }
    Taps { index, weight }
}

/// Bilinear taps with `align_corners=True`: the corner samples of input and output coincide.
pub fn bilinear_align_corners_taps(in_len: usize, out_len: usize) -> Taps {
    let scale = if out_len > 1 {
        (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
    } else {
        0.0
    };
    let mut index: Vec<Vec<u32>> = (0..2).map(|_| Vec::with_capacity(out_len)).collect();
    let mut weight: Vec<Vec<f32>> = (0..2).map(|_| Vec::with_capacity(out_len)).collect();
    for o in 0..out_len {
        let real = scale * o as f32;
        let i0 = (real.floor() as i64).min(in_len as i64 - 1);
        let lambda = (real - i0 as f32).clamp(0.0, 1.0);
        index[0].push(clamp_index(i0, in_len));
        index[1].push(clamp_index(i0 + 1, in_len));
        weight[0].push(1.0 - lambda);
        weight[1].push(lambda);
    }
    Taps { index, weight }
}

/// Resamples `x` along `dim` with `taps`.
pub fn resample(x: &Tensor, dim: usize, taps: &Taps) -> Result<Tensor> {
    let device = x.device();
    let rank = x.rank();
    let out_len = taps.out_len();
    // Weights broadcast along `dim` only.
    let mut wshape = vec![1usize; rank];
    wshape[dim] = out_len;
    // index_select reads its source as laid out in memory.
    let x = x.contiguous()?;
    let mut acc: Option<Tensor> = None;
    for (idx, w) in taps.index.iter().zip(&taps.weight) {
        let idx = Tensor::from_slice(idx, out_len, device)?;
        let w = Tensor::from_slice(w, wshape.as_slice(), device)?.to_dtype(x.dtype())?;
        let term = x.index_select(&idx, dim)?.broadcast_mul(&w)?;
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    acc.ok_or_else(|| candle_core::Error::Msg("resample: no taps".into()))
}

/// Resamples the last two axes of `x`, width first, then height, as ATen nests the sums;
/// `taps(in_len, axis)` gives the taps of one axis (0 = height, 1 = width).
fn separable(x: &Tensor, what: &str, taps: impl Fn(usize, usize) -> Taps) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 2 {
        candle_core::bail!("{what} resize needs [.., H, W], got {:?}", x.dims());
    }
    let (h, w) = (x.dims()[rank - 2], x.dims()[rank - 1]);
    let x = resample(x, rank - 1, &taps(w, 1))?;
    resample(&x, rank - 2, &taps(h, 0))
}

/// `F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=True)` of a `[.., H, W]`
/// tensor.
pub fn bilinear_align_corners(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    separable(x, "bilinear", |n, axis| {
        bilinear_align_corners_taps(n, if axis == 0 { oh } else { ow })
    })
}

/// `F.interpolate(x, scale_factor=(sh, sw), mode="bicubic", align_corners=False)` of a
/// `[.., H, W]` tensor to `[.., oh, ow]` (the output size ATen derives, `floor(H · sh)`, is the
/// caller's to compute).
pub fn bicubic_scale_factor(
    x: &Tensor,
    (oh, ow): (usize, usize),
    (sh, sw): (f64, f64),
) -> Result<Tensor> {
    separable(x, "bicubic", |n, axis| {
        if axis == 0 {
            bicubic_taps(n, oh, Some(sh))
        } else {
            bicubic_taps(n, ow, Some(sw))
        }
    })
}

/// `F.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=False)` of a `[.., H, W]`
/// tensor (mmaction2's Swin `inflate_weights` resizes the bias tables so).
pub fn bicubic_size(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    separable(x, "bicubic", |n, axis| {
        bicubic_taps(n, if axis == 0 { oh } else { ow }, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate_at_integers() {
        let taps = bicubic_taps(8, 16, Some(2.0));
        for o in 0..16 {
            let s: f32 = (0..4).map(|k| taps.weight[k][o]).sum();
            assert!((s - 1.0).abs() < 1e-6, "{o}: {s}");
        }
        // Same size with scale 1: the identity (t = 0 gives weights 0, 1, 0, 0).
        let id = bicubic_taps(5, 5, Some(1.0));
        for o in 0..5 {
            assert_eq!(id.index[1][o], o as u32);
            assert_eq!(id.weight[1][o], 1.0);
            assert_eq!(id.weight[0][o], 0.0);
        }
    }

    #[test]
    fn bilinear_align_corners_keeps_corners() {
        let x = Tensor::new(&[[0f32, 1.0], [2.0, 3.0]], &Device::Cpu).expect("tensor");
        let y = bilinear_align_corners(&x, 3, 3).expect("resize");
        let v: Vec<Vec<f32>> = y.to_vec2().expect("vec");
        assert_eq!(
            v,
            vec![
                vec![0.0, 0.5, 1.0],
                vec![1.0, 1.5, 2.0],
                vec![2.0, 2.5, 3.0]
            ]
        );
        // A single output sample reads the first input sample.
        let t = bilinear_align_corners_taps(7, 1);
        assert_eq!((t.index[0][0], t.weight[0][0]), (0, 1.0));
    }
}
