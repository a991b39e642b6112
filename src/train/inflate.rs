//! ImageNet 2-D Swin weights as a Video Swin's starting point (`pretrained2d=True`): mmaction2
//! 1.2 `mmaction/models/backbones/swin.py` `SwinTransformer3D.inflate_weights`.
//!
//! - `relative_position_index` and `attn_mask` buffers are dropped (the 3-D model builds its own);
//! - the patch embedding `[C, 3, h, w]` is repeated over the temporal patch size and divided by
//!   it, so a clip of identical frames embeds as the image did;
//! - each relative-position bias table `[(2w−1)², heads]` is resized bicubically to the 3-D
//!   window's `(2Wh−1) × (2Ww−1)` when the windows differ, then tiled over the `2Wd−1` temporal
//!   offsets; a table with another head count is left out (mmaction2 warns and passes);
//! - the final `norm` becomes `norm3` when the network has four stages (the name mmaction2 1.x
//!   gives the last stage's norm); otherwise it stays unused, as in mmaction2;
//! - the classifier (`head.*`) has no counterpart and stays unused.
//!
//! Keys come out under the recognizer's `backbone.` prefix.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::{Result, TrainError};
use crate::nn::checkpoint::StateDict;
use crate::nn::interp::bicubic_size;
use crate::nn::swin3d::Config;

/// Whether a checkpoint is a 2-D Swin: a 4-D patch-embedding kernel.
pub fn is_swin2d(sd: &StateDict) -> bool {
    [
        "patch_embed.proj.weight",
        "backbone.patch_embed.proj.weight",
    ]
    .iter()
    .any(|k| sd.tensors.get(*k).is_some_and(|t| t.rank() == 4))
}

/// The 2-D checkpoint's tensors inflated for a Video Swin of config `cfg`, under `backbone.`,
/// and what was left out and why.
pub fn inflate_swin2d(sd: &StateDict, cfg: &Config) -> Result<(StateDict, Vec<String>)> {
    let bad = |message: String| TrainError::Checkpoint {
        path: sd.source.clone(),
        message,
    };
    let (wd, wh, ww) = cfg.window_size;
    let pt = cfg.patch_size.0;
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for (key, t) in &sd.tensors {
        let k = key.strip_prefix("backbone.").unwrap_or(key);
        if k.contains("relative_position_index") || k.contains("attn_mask") {
            continue;
        }
        let (name, value) = if k == "patch_embed.proj.weight" {
            let dims = t.dims().to_vec();
            if dims.len() != 4 {
                return Err(bad(format!(
                    "{key}: expected a 2-D kernel [C, 3, h, w], got {dims:?}"
                )));
            }
            let t5 = t.unsqueeze(2)?;
            let rep = Tensor::cat(&vec![&t5; pt], 2)?;
            (k.to_string(), (rep / pt as f64)?)
        } else if k.ends_with("relative_position_bias_table") {
            let stage = stage_of(k).ok_or_else(|| bad(format!("{key}: no layers.N in the key")))?;
            let heads = *cfg.num_heads.get(stage).ok_or_else(|| {
                bad(format!(
                    "{key}: stage {stage} beyond the model's {}",
                    cfg.num_heads.len()
                ))
            })?;
            let (l1, nh) = t
                .dims2()
                .map_err(|_| bad(format!("{key}: expected [L, heads], got {:?}", t.dims())))?;
            if nh != heads {
                notes.push(format!(
                    "{key}: {nh} heads, the model has {heads}; left out"
                ));
                continue;
            }
            let (oh, ow) = (2 * wh - 1, 2 * ww - 1);
            let table = if l1 != oh * ow {
                let s1 = (l1 as f64).sqrt() as usize;
                if s1 * s1 != l1 {
                    return Err(bad(format!("{key}: {l1} rows is not a square table")));
                }
                // [L, nH] → [nH, S, S] → bicubic → [nH, oh·ow] → [oh·ow, nH]
                let planes = t.t()?.contiguous()?.reshape((nh, s1, s1))?;
                bicubic_size(&planes, oh, ow)?
                    .reshape((nh, oh * ow))?
                    .t()?
                    .contiguous()?
            } else {
                t.clone()
            };
            let tiled = Tensor::cat(&vec![&table; 2 * wd - 1], 0)?;
            (k.to_string(), tiled)
        } else if (k == "norm.weight" || k == "norm.bias") && cfg.depths.len() == 4 {
            (k.replacen("norm", "norm3", 1), t.clone())
        } else {
            (k.to_string(), t.clone())
        };
        out.insert(format!("backbone.{name}"), value);
    }
    Ok((
        StateDict {
            tensors: out,
            source: sd.source.clone(),
        },
        notes,
    ))
}

/// `N` of `layers.N.…`.
fn stage_of(key: &str) -> Option<usize> {
    let rest = key.split("layers.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(x: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
        let t = Tensor::from_slice(x, (1, h, w), &candle_core::Device::Cpu).expect("tensor");
        bicubic_size(&t, oh, ow)
            .and_then(|r| r.flatten_all())
            .and_then(|r| r.to_vec1())
            .expect("resize")
    }

    #[test]
    fn bicubic_keeps_constants_and_matches_torch() {
        // A constant image stays constant (the weights sum to 1).
        let c = resize(&[2.5; 9], 3, 3, 5, 7);
        assert!(c.iter().all(|&v| (v - 2.5).abs() < 1e-5), "{c:?}");
        // Same size: the identity (t = 0 gives weights 0, 1, 0, 0).
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize(&x, 3, 4, 3, 4), x);
        // Values printed by torch 2.11 `F.interpolate(..., mode='bicubic')`.
        let up = resize(&[0.0, 1.0], 1, 2, 1, 4);
        let want = [-0.105_468_75_f64, 0.226_562_5, 0.773_437_5, 1.105_468_75];
        for (a, b) in up.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{up:?}");
        }
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let r = resize(&x, 2, 3, 3, 2);
        let want = [
            -0.069_010_46,
            1.5481774,
            1.6914062,
            3.3085938,
            3.4518225,
            5.06901,
        ];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{r:?}");
        }
    }

    #[test]
    fn stage_is_read_from_the_key() {
        assert_eq!(
            stage_of("layers.2.blocks.1.attn.relative_position_bias_table"),
            Some(2)
        );
        assert_eq!(stage_of("norm.weight"), None);
    }
}
