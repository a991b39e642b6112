//! MM-Gesture's RGBPoseConv3D initialisation (`[RGB_J]merge_pretrain.ipynb`,
//! `[RGB_L]merge_pretrain.ipynb`; mm-gesture.md §3.3): an RGB SlowOnly-R50 checkpoint becomes
//! the RGB pathway (`backbone.*` → `backbone.rgb_path.*`, `cls_head.fc_cls` →
//! `cls_head.fc_rgb`) and a PoseC3D checkpoint the pose pathway (`backbone.pose_path.*`,
//! `cls_head.fc_pose`). The convolutions that receive the other pathway's lateral features
//! have more input channels than their single-stream originals; they are zero-padded along
//! dim 1 (each pathway's own features come first in the concat), so at the start the fused
//! network computes exactly what the two single-stream networks did. The lateral modules
//! themselves keep the model's fresh initialisation.

use std::collections::BTreeMap;

use candle_core::{Result, Tensor};

use super::checkpoint::StateDict;

/// What the merge did with each key of the RGBPoseConv3D model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeReport {
    pub copied: usize,
    /// (key, checkpoint shape, model shape): zero-padded along dim 1.
    pub padded: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Model keys neither checkpoint has (the laterals): left at their initialisation.
    pub initialised: Vec<String>,
    /// Present but of a shape that padding cannot reach (e.g. a head for another class
    /// count): left at their initialisation.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl std::fmt::Display for MergeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tensors copied, {} zero-padded for lateral inputs, {} initialised (laterals)",
            self.copied,
            self.padded.len(),
            self.initialised.len()
        )?;
        if !self.mismatched.is_empty() {
            let list: Vec<String> = self
                .mismatched
                .iter()
                .map(|(k, c, m)| format!("{k} {c:?}→{m:?}"))
                .collect();
            write!(f, "; shape differs, initialised: {}", list.join(", "))?;
        }
        Ok(())
    }
}

/// The single-stream key an RGBPoseConv3D key comes from, and from which checkpoint
/// (`true` = RGB).
fn source_key(key: &str) -> Option<(bool, String)> {
    if let Some(rest) = key.strip_prefix("backbone.rgb_path.") {
        Some((true, format!("backbone.{rest}")))
    } else if let Some(rest) = key.strip_prefix("backbone.pose_path.") {
        Some((false, format!("backbone.{rest}")))
    } else if let Some(rest) = key.strip_prefix("cls_head.fc_rgb.") {
        Some((true, format!("cls_head.fc_cls.{rest}")))
    } else {
        key.strip_prefix("cls_head.fc_pose.")
            .map(|rest| (false, format!("cls_head.fc_cls.{rest}")))
    }
}

/// Every key of `model` (an initialised RGBPoseConv3D: key → tensor), taken from the RGB and
/// pose checkpoints where they have it.
pub fn merge_pretrained(
    rgb: &StateDict,
    pose: &StateDict,
    model: &BTreeMap<String, Tensor>,
) -> Result<(BTreeMap<String, Tensor>, MergeReport)> {
    let mut out = BTreeMap::new();
    let mut rep = MergeReport::default();
    for (key, init) in model {
        let src = source_key(key).and_then(|(is_rgb, k)| {
            let sd = if is_rgb { rgb } else { pose };
            sd.tensors.get(&k)
        });
        let Some(src) = src else {
            rep.initialised.push(key.clone());
            out.insert(key.clone(), init.clone());
            continue;
        };
        let (s, m) = (src.dims().to_vec(), init.dims().to_vec());
        let src = src.to_dtype(init.dtype())?.to_device(init.device())?;
        let pads = s.len() == m.len()
            && s.len() >= 2
            && s[1] < m[1]
            && s.iter()
                .zip(&m)
                .enumerate()
                .all(|(i, (a, b))| i == 1 || a == b);
        if s == m {
            rep.copied += 1;
            out.insert(key.clone(), src);
        } else if pads {
            out.insert(key.clone(), src.pad_with_zeros(1, 0, m[1] - s[1])?);
            rep.padded.push((key.clone(), s, m));
        } else {
            rep.mismatched.push((key.clone(), s, m));
            out.insert(key.clone(), init.clone());
        }
    }
    Ok((out, rep))
}
