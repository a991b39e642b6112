//! Test-time views of RGB-like clips (RGB, or Taylor / flow / depth rendered as 8-bit video):
//! frame sampling, resizing, cropping and normalisation as the reference test pipelines do.
//!
//! * Video Swin (MM-Gesture `configs/recognition/swin/*.py`, mmaction2 1.x):
//!   `SampleFrames(32, 2, num_clips=4, test_mode)` → `Resize((-1, 224))` → `ThreeCrop(224)`
//!   → ImageNet mean/std: 12 views. Validation: 1 clip, `Resize((-1, 256))`, `CenterCrop(224)`.
//! * RGB SlowOnly / RGBPoseConv3D (pyskl `configs/rgbpose_conv3d/*.py`): `MMUniformSampleFrames`
//!   (RGB 8 frames, test seed 255) → `MMCompact` (the keypoints' square box, zero padding) →
//!   `Resize` to a square → MM-Gesture's dataset mean/std.
//!
//! Resizing is bilinear with OpenCV's `INTER_LINEAR` geometry (half-pixel centres, edges
//! clamped) computed in f32 and rounded to 8 bits; OpenCV's own 8-bit path uses 11-bit fixed
//! point weights, so single pixels can differ from `cv2.resize` by one level.

use candle_core::{Device, Tensor};

/// ImageNet statistics on the 0–255 scale, RGB order (mmaction2's data preprocessors).
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// MM-Gesture's iMiGUE statistics (`dataset/tools/video_mean_std.ipynb`), RGB order.
pub const IMIGUE_MEAN: [f32; 3] = [66.156_93, 59.393_875, 67.088_844];
pub const IMIGUE_STD: [f32; 3] = [62.47, 57.966_86, 58.183_13];

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// mmaction2 1.x `SampleFrames._get_test_clips` + `transform` with `out_of_bound_opt='loop'`:
/// `num_clips * clip_len` indices into a clip of `n` frames.
pub fn sample_frames_test(
    n: usize,
    clip_len: usize,
    interval: usize,
    num_clips: usize,
) -> Vec<usize> {
    if n == 0 || clip_len == 0 || num_clips == 0 {
        return Vec::new();
    }
    let ori = (clip_len - 1) * interval + 1;
    let max_off = n.saturating_sub(ori);
    let offsets: Vec<usize> = if num_clips > 1 {
        let between = max_off as f64 / (num_clips - 1) as f64;
        // np.round: halves to even
        (0..num_clips)
            .map(|i| (i as f64 * between).round_ties_even() as usize)
            .collect()
    } else {
        vec![max_off / 2]
    };
    offsets
        .iter()
        .flat_map(|&o| (0..clip_len).map(move |k| (o + k * interval) % n))
        .collect()
}

/// mmcv `rescale_size` for `Resize((-1, short))`: the short side becomes `short`, each side
/// `int(side * factor + 0.5)`.
pub fn short_side_size(w: usize, h: usize, short: usize) -> (usize, usize) {
    let f = short as f64 / w.min(h) as f64;
    let s = |x: usize| (x as f64 * f + 0.5) as usize;
    (s(w), s(h))
}

/// Bilinear resize with `cv2.INTER_LINEAR` sampling positions.
pub fn resize_bilinear(img: &Rgb, dw: usize, dh: usize) -> Rgb {
    if dw == img.width && dh == img.height {
        return img.clone();
    }
    let taps = |src: usize, dst: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f64 / dst as f64;
        (0..dst)
            .map(|d| {
                let x = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(src - 1);
                let x1 = (x0 + 1).min(src - 1);
                (x0, x1, (x - x0 as f64) as f32)
            })
            .collect()
    };
    let xs = taps(img.width, dw);
    let ys = taps(img.height, dh);
    let mut out = vec![0u8; dw * dh * 3];
    let row = img.width * 3;
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let p = |y: usize, x: usize| f32::from(img.data[y * row + x * 3 + c]);
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                let bot = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                let v = top + (bot - top) * fy;
                out[(oy * dw + ox) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Rgb {
        width: dw,
        height: dh,
        data: out,
    }
}

/// The box `[x0, y0, x1, y1)` of `img`, zero where it leaves the image (pyskl `MMCompact`
/// with `allow_imgpad`, and every crop).
pub fn crop_padded(img: &Rgb, bx: [i64; 4]) -> Rgb {
    let [x0, y0, x1, y1] = bx;
    let (nw, nh) = ((x1 - x0).max(0) as usize, (y1 - y0).max(0) as usize);
    let mut out = vec![0u8; nw * nh * 3];
    for oy in 0..nh {
        let sy = y0 + oy as i64;
        if sy < 0 || sy >= img.height as i64 {
            continue;
        }
        for ox in 0..nw {
            let sx = x0 + ox as i64;
            if sx < 0 || sx >= img.width as i64 {
                continue;
            }
            let s = (sy as usize * img.width + sx as usize) * 3;
            let d = (oy * nw + ox) * 3;
            out[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    Rgb {
        width: nw,
        height: nh,
        data: out,
    }
}

/// mmaction2 `ThreeCrop`: along the long side, left/top, right/bottom, middle.
pub fn three_crop_boxes(w: usize, h: usize, crop: usize) -> [[i64; 4]; 3] {
    let c = crop as i64;
    if h == crop {
        let step = (w as i64 - c) / 2;
        [
            [0, 0, c, c],
            [2 * step, 0, 2 * step + c, c],
            [step, 0, step + c, c],
        ]
    } else {
        let step = (h as i64 - c) / 2;
        [
            [0, 0, c, c],
            [0, 2 * step, c, 2 * step + c],
            [0, step, c, step + c],
        ]
    }
}

/// mmaction2 `CenterCrop`.
pub fn center_crop_box(w: usize, h: usize, crop: usize) -> [i64; 4] {
    let left = (w as i64 - crop as i64).div_euclid(2);
    let top = (h as i64 - crop as i64).div_euclid(2);
    [left, top, left + crop as i64, top + crop as i64]
}

/// Frames of one view → `[3, T, H, W]` f32, `(x - mean) / std` per channel.
pub fn normalize_clip(
    frames: &[Rgb],
    mean: [f32; 3],
    std: [f32; 3],
) -> candle_core::Result<Tensor> {
    let (w, h) = match frames.first() {
        Some(f) => (f.width, f.height),
        None => candle_core::bail!("a view without frames"),
    };
    let t = frames.len();
    let mut data = vec![0f32; 3 * t * h * w];
    for (ti, f) in frames.iter().enumerate() {
        if f.width != w || f.height != h {
            candle_core::bail!(
                "frame {ti} is {}x{}, the view's first frame {w}x{h}",
                f.width,
                f.height
            );
        }
        for (p, px) in f.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[(c * t + ti) * h * w + p] = (f32::from(px[c]) - mean[c]) / std[c];
            }
        }
    }
    Tensor::from_vec(data, (3, t, h, w), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_frames_matches_mmaction2_test_offsets() {
        // 100 frames, 32×2: ori 63, max_off 37, offsets round([0, 12.33, 24.67, 37]) = 0, 12, 25, 37
        let v = sample_frames_test(100, 32, 2, 4);
        assert_eq!(v.len(), 128);
        assert_eq!(&v[..3], &[0, 2, 4]);
        assert_eq!(v[32], 12);
        assert_eq!(v[64], 25);
        assert_eq!(v[96], 37);
        assert_eq!(v[127], 37 + 62);
        // A short clip loops: 20 frames, offset 0, index 2k mod 20.
        let v = sample_frames_test(20, 32, 2, 1);
        assert_eq!(v[9], 18);
        assert_eq!(v[10], 0);
        // Halves round to even: max_off 3 over 2 segments → 1.5 → 2, 3.
        let v = sample_frames_test(66, 32, 2, 3);
        assert_eq!((v[0], v[32], v[64]), (0, 2, 3));
    }

    #[test]
    fn resize_keeps_constants_and_interpolates_at_half_pixels() {
        let img = Rgb {
            width: 2,
            height: 1,
            data: vec![0, 0, 0, 200, 100, 50],
        };
        let r = resize_bilinear(&img, 4, 1);
        // x = (d + 0.5) / 2 - 0.5: -0.25 → clamp 0, 0.25, 0.75, 1.25 → clamp to the last.
        assert_eq!(r.data, vec![0, 0, 0, 50, 25, 13, 150, 75, 38, 200, 100, 50]);
        assert_eq!(short_side_size(640, 360, 224), (398, 224));
        assert_eq!(short_side_size(360, 640, 224), (224, 398));
    }

    #[test]
    fn crops_pad_with_zeros_and_three_crop_orders_left_right_middle() {
        let img = Rgb {
            width: 2,
            height: 2,
            data: (1..=12).collect(),
        };
        let c = crop_padded(&img, [-1, 0, 2, 1]);
        assert_eq!((c.width, c.height), (3, 1));
        assert_eq!(c.data, vec![0, 0, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            three_crop_boxes(398, 224, 224),
            [[0, 0, 224, 224], [174, 0, 398, 224], [87, 0, 311, 224]]
        );
        assert_eq!(center_crop_box(455, 256, 224), [115, 16, 339, 240]);
    }

    #[test]
    fn normalisation_is_per_channel_in_cthw_order() {
        let f = Rgb {
            width: 1,
            height: 1,
            data: vec![123, 116, 103],
        };
        let t = normalize_clip(&[f.clone(), f], IMAGENET_MEAN, IMAGENET_STD).expect("clip");
        assert_eq!(t.dims(), [3, 2, 1, 1]);
        let v = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        assert!((v[0] - (123.0 - 123.675) / 58.395).abs() < 1e-6);
        assert!((v[2] - (116.0 - 116.28) / 57.12).abs() < 1e-6);
    }
}
