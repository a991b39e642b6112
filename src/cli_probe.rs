//! `mgscope probe …`: one modality on one input, written to a file — what a researcher uses to
//! check a step against the reference by hand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};

#[cfg(feature = "video")]
use mgscope::media::decode::VideoReader;
use mgscope::modality::heatmap::{self, HeatmapKind, HeatmapParams, PoseArrays};
use mgscope::modality::npy::{read_npy_as, write_npy};
#[cfg(feature = "video")]
use mgscope::modality::{depth, flow, flow_vis, taylor};

#[derive(Subcommand)]
pub enum Probe {
    #[cfg(feature = "video")]
    /// Decode exactly one frame (by presentation-order index) and write it.
    Decode {
        video: PathBuf,
        #[arg(long)]
        frame: usize,
        /// `.png` (RGB) or `.npy` (uint8 [H, W, 3]).
        #[arg(long)]
        out: PathBuf,
    },
    /// Skeleton heatmaps (GeneratePoseTarget): keypoints [M,T,V,2] → [T,C,H,W] float32.
    Heatmap {
        #[arg(long)]
        keypoints: PathBuf,
        /// Scores [M,T,V]; default all ones.
        #[arg(long)]
        scores: Option<PathBuf>,
        /// `H,W` of the image the keypoints are in.
        #[arg(long, value_parser = parse_pair)]
        image_size: (usize, usize),
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long, default_value_t = 0.6)]
        sigma: f64,
        #[arg(long, default_value = "imigue36")]
        skeleton: String,
        #[arg(long, default_value_t = 1.0)]
        scaling: f64,
        /// Append the flipped copy (test-time `double`).
        #[arg(long)]
        double: bool,
        /// Peak = 1 instead of the keypoint score.
        #[arg(long)]
        no_score: bool,
        /// Score threshold below which a point or limb is not drawn: pyskl's 1e-3 (MM-Gesture),
        /// mmaction2's 1e-4.
        #[arg(long, default_value_t = 1e-3)]
        eps: f64,
        #[arg(long)]
        out: PathBuf,
    },
    #[cfg(feature = "video")]
    /// Taylor video of a clip: [T', H, W, 3] uint8.
    Taylor {
        video: PathBuf,
        #[arg(long, default_value_t = 0)]
        start: usize,
        /// Last frame (inclusive); default the last frame of the video.
        #[arg(long)]
        end: Option<usize>,
        #[arg(long, default_value_t = 3)]
        terms: usize,
        /// `frame`: MM-Gesture's taylor.py (one max per frame); `channel`: the notebook's.
        #[arg(long, value_enum, default_value = "frame")]
        norm: Norm,
        #[arg(long)]
        out: PathBuf,
    },
    #[cfg(feature = "video")]
    /// Dense optical flow (DIS) between two frames: [H, W, 2] float32, pixels.
    Flow {
        video: PathBuf,
        /// `A,B`: flow from frame A to frame B.
        #[arg(long, value_parser = parse_pair)]
        frames: (usize, usize),
        #[arg(long, value_enum, default_value = "medium")]
        preset: FlowPreset,
        #[arg(long)]
        out: PathBuf,
        /// Also write the Middlebury colour-wheel picture.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    #[cfg(feature = "video")]
    /// Depth of one frame with Depth Anything V2 weights: [H, W] float32.
    Depth {
        video: PathBuf,
        #[arg(long)]
        frame: usize,
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "small")]
        encoder: depth::Encoder,
        #[arg(long)]
        out: PathBuf,
    },
    /// One forward pass of a model on a saved input: logits `[N, classes]` float32 (for
    /// RGBPoseConv3D both heads, stacked `[2, N, classes]` as rgb, pose).
    Infer {
        /// One of: posec3d-joint36, posec3d-limb36, posec3d-ntu60, slowonly-r50-rgb,
        /// rgbpose-conv3d, swin-t, swin-s, swin-b.
        #[arg(long)]
        arch: String,
        /// `.pth` (pyskl / mmaction2), `.safetensors` or `.npz`.
        #[arg(long)]
        checkpoint: PathBuf,
        /// `[N, C, T, H, W]` float32 `.npy` (for RGBPoseConv3D the RGB clip).
        #[arg(long)]
        input: PathBuf,
        /// RGBPoseConv3D's heatmap volume `[N, C, T, H, W]`.
        #[arg(long)]
        input_pose: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `f32`, `bf16` or `f16`.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// `false` loads what fits and reports the rest, like `strict=False`.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        strict: bool,
    },
    /// MM-Gesture's RGBPoseConv3D initialisation from an RGB SlowOnly-R50 and a PoseC3D
    /// checkpoint: pathways and heads renamed, the convolutions that receive laterals
    /// zero-padded, the laterals freshly initialised from --seed. Writes a .safetensors that
    /// `predict --arch rgbpose-conv3d` and `train --init` load.
    MergeRgbpose {
        #[arg(long)]
        rgb: PathBuf,
        #[arg(long)]
        pose: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Classes of the two heads; default the pose checkpoint's.
        #[arg(long)]
        classes: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Rewrite a checkpoint (.pth / .npz / .safetensors) as .safetensors; with --arch, first
    /// check strictly that it builds that architecture.
    Convert {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        arch: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Joint,
    Limb,
}

#[cfg(feature = "video")]
#[derive(Clone, Copy, ValueEnum)]
pub enum Norm {
    Frame,
    Channel,
}

#[cfg(feature = "video")]
#[derive(Clone, Copy, ValueEnum)]
pub enum FlowPreset {
    Ultrafast,
    Fast,
    Medium,
}

fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected two numbers `A,B`, found {s:?}"))?;
    let p = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{x:?} is not a non-negative integer"))
    };
    Ok((p(a)?, p(b)?))
}

#[cfg(feature = "video")]
fn frames(
    video: &Path,
    start: usize,
    end: Option<usize>,
) -> Result<(Vec<u8>, usize, usize, usize)> {
    let mut r = VideoReader::open(video)?;
    let end = end.unwrap_or(r.len().saturating_sub(1));
    if end < start || end >= r.len() {
        bail!(
            "{}: frames {start}..={end} are not inside the video's 0..={}",
            video.display(),
            r.len().saturating_sub(1)
        );
    }
    let mut data = Vec::new();
    let (mut w, mut h) = (0, 0);
    for i in start..=end {
        let f = r.frame(i)?;
        (w, h) = (f.width as usize, f.height as usize);
        data.extend_from_slice(&f.data);
    }
    Ok((data, end - start + 1, h, w))
}

pub fn run(p: Probe) -> Result<()> {
    match p {
        #[cfg(feature = "video")]
        Probe::Decode { video, frame, out } => {
            let mut r = VideoReader::open(&video)?;
            let f = r.frame(frame)?;
            let ext = out.extension().map(|e| e.to_string_lossy().to_lowercase());
            match ext.as_deref() {
                Some("png") => mgscope::media::write_png(&out, &f)?,
                Some("npy") => write_npy(&out, &[f.height as usize, f.width as usize, 3], &f.data)?,
                _ => bail!("--out must end in .png or .npy, got {}", out.display()),
            }
            println!(
                "frame {frame} of {} ({} frames): {}x{} -> {}",
                video.display(),
                r.len(),
                f.width,
                f.height,
                out.display()
            );
        }
        Probe::Heatmap {
            keypoints,
            scores,
            image_size,
            kind,
            sigma,
            skeleton,
            scaling,
            double,
            no_score,
            eps,
            out,
        } => {
            let (shape, kp) = read_npy_as::<f32>(&keypoints)?;
            let [m, t, v, 2] = shape[..] else {
                bail!(
                    "{}: expected keypoints [M,T,V,2], found shape {shape:?}",
                    keypoints.display()
                );
            };
            let sc = match &scores {
                Some(p) => {
                    let (s_shape, s) = read_npy_as::<f32>(p)?;
                    if s_shape != [m, t, v] {
                        bail!(
                            "{}: expected scores [{m},{t},{v}], found {s_shape:?}",
                            p.display()
                        );
                    }
                    Some(s)
                }
                None => None,
            };
            let sk = heatmap::skeleton_by_name(&skeleton)
                .with_context(|| format!("unknown skeleton {skeleton:?}: imigue36 or coco17"))?;
            if sk.num_keypoints != v {
                bail!(
                    "skeleton {skeleton} has {} keypoints, the file has V = {v}",
                    sk.num_keypoints
                );
            }
            let mut params = match kind {
                Kind::Joint => HeatmapParams::joint(sigma),
                Kind::Limb => HeatmapParams::limb(sigma),
            };
            params.scaling = scaling;
            params.double = double;
            params.use_score = !no_score;
            params.eps = eps;
            let hm = heatmap::generate_pose_target(
                PoseArrays {
                    keypoints: &kp,
                    scores: sc.as_deref(),
                    num_persons: m,
                    num_frames: t,
                    num_keypoints: v,
                },
                image_size.0,
                image_size.1,
                &sk,
                &params,
            )?;
            write_npy(&out, &hm.shape, &hm.data)?;
            println!(
                "{} heatmaps {:?} -> {}",
                if matches!(params.kind, HeatmapKind::Joint) {
                    "joint"
                } else {
                    "limb"
                },
                hm.shape,
                out.display()
            );
        }
        #[cfg(feature = "video")]
        Probe::Taylor {
            video,
            start,
            end,
            terms,
            norm,
            out,
        } => {
            let (rgb, n, h, w) = frames(&video, start, end)?;
            let mut params = match norm {
                Norm::Frame => taylor::TaylorParams::mm_gesture(),
                Norm::Channel => taylor::TaylorParams::notebook(),
            };
            params.terms = terms;
            let tv = taylor::taylor_video(&rgb, n, h, w, &params)?;
            write_npy(&out, &[tv.frames, tv.height, tv.width, 3], &tv.data)?;
            println!(
                "Taylor video of {} frames {start}..: {} frames {}x{} -> {}",
                video.display(),
                tv.frames,
                tv.width,
                tv.height,
                out.display()
            );
        }
        #[cfg(feature = "video")]
        Probe::Flow {
            video,
            frames: (a, b),
            preset,
            out,
            png,
        } => {
            let mut r = VideoReader::open(&video)?;
            let fa = r.frame(a)?;
            let fb = r.frame(b)?;
            let (w, h) = (fa.width as usize, fa.height as usize);
            let ga = flow::rgb_to_gray(&fa.data, w, h)?;
            let gb = flow::rgb_to_gray(&fb.data, w, h)?;
            let params = match preset {
                FlowPreset::Ultrafast => flow::DisParams::ultrafast(),
                FlowPreset::Fast => flow::DisParams::fast(),
                FlowPreset::Medium => flow::DisParams::medium(),
            };
            let t = std::time::Instant::now();
            let f = flow::dis_flow(&ga, &gb, &params)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            write_npy(&out, &[h, w, 2], &f.data)?;
            if let Some(p) = png {
                let rgb = flow_vis::flow_to_rgb(&f, None)?;
                mgscope::media::write_png(
                    &p,
                    &mgscope::media::decode::RgbFrame {
                        index: a,
                        width: w as u32,
                        height: h as u32,
                        data: rgb,
                    },
                )?;
            }
            println!(
                "flow {a}->{b} of {} ({w}x{h}, max {:.2} px, {ms:.1} ms) -> {}",
                video.display(),
                f.max_magnitude(),
                out.display()
            );
        }
        #[cfg(feature = "video")]
        Probe::Depth {
            video,
            frame,
            weights,
            encoder,
            out,
        } => {
            let path = depth::DepthModel::locate(weights.as_deref())?;
            let model = depth::DepthModel::load(&path, encoder, &candle_core::Device::Cpu)?;
            let mut r = VideoReader::open(&video)?;
            let f = r.frame(frame)?;
            let d = model.infer(&f.data, f.width as usize, f.height as usize)?;
            write_npy(&out, &[f.height as usize, f.width as usize], &d)?;
            println!("depth of frame {frame} -> {}", out.display());
        }
        Probe::MergeRgbpose {
            rgb,
            pose,
            out,
            classes,
            seed,
        } => merge_rgbpose(&rgb, &pose, &out, classes, seed)?,
        Probe::Convert {
            checkpoint,
            out,
            arch,
        } => {
            let sd = mgscope::nn::checkpoint::StateDict::read(&checkpoint)?;
            if let Some(a) = &arch {
                let (m, _) = mgscope::nn::models::Model::from_state_dict(
                    a,
                    &sd,
                    true,
                    candle_core::DType::F32,
                    &candle_core::Device::Cpu,
                )?;
                println!("{a}: {} classes, every key matched", m.num_classes);
            }
            sd.save_safetensors(&out)?;
            println!(
                "{} tensors from {} -> {}",
                sd.tensors.len(),
                checkpoint.display(),
                out.display()
            );
        }
        Probe::Infer {
            arch,
            checkpoint,
            input,
            input_pose,
            out,
            device,
            dtype,
            strict,
        } => infer(
            &arch,
            &checkpoint,
            &input,
            input_pose.as_deref(),
            &out,
            &device,
            &dtype,
            strict,
        )?,
    }
    Ok(())
}

fn merge_rgbpose(
    rgb: &Path,
    pose: &Path,
    out: &Path,
    classes: Option<usize>,
    seed: u64,
) -> Result<()> {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use mgscope::nn::checkpoint::{write_safetensors, StateDict};
    use mgscope::nn::{rgbpose, rgbpose_merge};
    let (r, p) = (StateDict::read(rgb)?, StateDict::read(pose)?);
    let classes = match classes {
        Some(c) => c,
        None => p
            .tensors
            .get("cls_head.fc_cls.weight")
            .map(|t| t.dims()[0])
            .with_context(|| {
                format!(
                    "{}: no cls_head.fc_cls.weight to take the class count from; pass --classes",
                    pose.display()
                )
            })?,
    };
    let mut cfg = rgbpose::Config::rgbpose_conv3d();
    cfg.num_classes = classes;
    // Widths, blocks, inflation and input channels (36 for MM-Gesture's keypoints, 17 for
    // COCO) come from the two checkpoints, so reduced pathways merge too; strides stay
    // RGBPoseConv3D's (the pose pathway keeps its 32 frames).
    use mgscope::nn::models::resnet3d_config_from;
    if let Ok(c) = resnet3d_config_from(&r, "backbone.", cfg.rgb.clone()) {
        cfg.rgb = c;
    }
    if let Ok(c) = resnet3d_config_from(&p, "backbone.", cfg.pose.clone()) {
        cfg.pose = c;
    }
    let vm = VarMap::new();
    rgbpose::RGBPose::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    mgscope::train::init::init_reference(&vm, seed)?;
    let model: std::collections::BTreeMap<String, candle_core::Tensor> =
        mgscope::train::init::named_vars(&vm)?
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
    let (merged, rep) = rgbpose_merge::merge_pretrained(&r, &p, &model)?;
    if rep.copied == 0 {
        bail!(
            "neither {} nor {} has a tensor of RGBPoseConv3D's pathways (expected backbone.* keys of an RGB SlowOnly-R50 and a PoseC3D)",
            rgb.display(),
            pose.display()
        );
    }
    write_safetensors(&merged, out)?;
    println!("{rep}");
    println!("RGBPoseConv3D ({classes} classes) -> {}", out.display());
    Ok(())
}

fn read_clip(path: &Path) -> Result<candle_core::Tensor> {
    let (shape, data) = read_npy_as::<f32>(path)
        .with_context(|| format!("reading the input {}", path.display()))?;
    if shape.len() != 5 {
        bail!(
            "{}: shape {shape:?}; expected [N, C, T, H, W]",
            path.display()
        );
    }
    Ok(candle_core::Tensor::from_vec(
        data,
        shape,
        &candle_core::Device::Cpu,
    )?)
}

#[allow(clippy::too_many_arguments)]
fn infer(
    arch: &str,
    checkpoint: &Path,
    input: &Path,
    input_pose: Option<&Path>,
    out: &Path,
    device: &str,
    dtype: &str,
    strict: bool,
) -> Result<()> {
    use mgscope::nn::models::{self, Inputs, Model};
    let a = models::arch(arch)
        .with_context(|| format!("unknown --arch {arch:?}; known: {}", models::arch_names()))?;
    let device = models::parse_device(device)?;
    let dtype = models::parse_dtype(dtype)?;
    let mut inputs = vec![read_clip(input)?];
    match (a.inputs, input_pose) {
        (Inputs::RgbPose, Some(p)) => inputs.push(read_clip(p)?),
        (Inputs::RgbPose, None) => bail!("{arch} needs --input-pose (the heatmap volume)"),
        (_, Some(_)) => bail!("{arch} takes one input; --input-pose is for rgbpose-conv3d"),
        (_, None) => {}
    }
    let t0 = std::time::Instant::now();
    let (model, report) = Model::load(arch, checkpoint, strict, dtype, &device)?;
    if !report.is_clean() {
        eprintln!("warning: {}: {report}", checkpoint.display());
    }
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let logits = model.forward(&inputs)?;
    let fwd_s = t1.elapsed().as_secs_f64();
    let stacked = if logits.len() == 1 {
        logits[0].clone()
    } else {
        candle_core::Tensor::stack(&logits, 0)?
    };
    let shape = stacked.dims().to_vec();
    let values = stacked.flatten_all()?.to_vec1::<f32>()?;
    write_npy(out, &shape, &values)?;
    println!(
        "{arch}: {} classes, input {:?}{} -> logits {shape:?} in {}; load {load_s:.2} s, forward {fwd_s:.2} s",
        model.num_classes,
        inputs[0].dims(),
        inputs
            .get(1)
            .map(|p| format!(" + pose {:?}", p.dims()))
            .unwrap_or_default(),
        out.display()
    );
    Ok(())
}
