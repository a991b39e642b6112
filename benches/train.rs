//! Training throughput of PoseC3D joint36 (batch 8, 48×56², 32 classes), or with `--arch
//! swin-t` of Video Swin-T (3×32×224², a GPU workload), on the CPU or a GPU: one SGD
//! step (forward in train mode, cross-entropy, backward, clipped momentum SGD) in candle
//! against PyTorch + mmaction2 on the same input, the same thread count, in the same run.
//!
//! ```text
//! cargo bench --bench train -- [--threads 2] [--reps 2] [--batch 8] [--python PY]
//!                              [--device cuda:0] [--amp bf16] [--arch posec3d|swin-t]
//! ```
//!
//! Each side runs in its own process; the ratio is candle samples/s over PyTorch samples/s
//! (the issue's goal is ≥ 1.0 on the CPU, ≥ 0.8 against PyTorch eager on the same GPU).
//! `--amp bf16` runs the convolutions in bf16 on both sides (`torch.autocast` for PyTorch,
//! `ops3d::autocast` for candle); `MGSCOPE_TF32=1` lets both use TF32 for f32 products
//! (otherwise neither does, PyTorch's cuDNN default included).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mgscope::modality::npy::{read_npy_as, write_npy};
use mgscope::nn::resnet3d::{Config, PoseC3D};
use mgscope::nn::swin3d::{self, VideoSwin};
use mgscope::train::optim::{cross_entropy, Sgd};

mod common;

use common::{peak_mib, run_json, Res};

const PY: &str = r#"
import json, resource, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmaction.utils import register_all_modules
register_all_modules()
threads, reps = int(sys.argv[1]), int(sys.argv[2])
dev, amp, arch = sys.argv[5], sys.argv[6], sys.argv[7]
x = torch.from_numpy(np.load(sys.argv[3])).to(dev)
y = torch.from_numpy(np.load(sys.argv[4]).astype(np.int64)).to(dev)
torch.set_num_threads(threads)
cuda = dev.startswith('cuda')
sync = torch.cuda.synchronize if cuda else (lambda: None)
# Both sides use TF32 tensor cores for f32 products, or neither (MGSCOPE_TF32=1).
import os
tf32 = os.environ.get('MGSCOPE_TF32') == '1'
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
bb = dict(type='ResNet3dSlowOnly', depth=50, pretrained=None, lateral=False, in_channels=36,
          base_channels=32, num_stages=3, out_indices=(2,), stage_blocks=(4, 6, 3),
          conv1_kernel=(1, 7, 7), conv1_stride_s=1, pool1_stride_s=1, inflate=(0, 1, 1),
          spatial_strides=(2, 2, 2), temporal_strides=(1, 1, 2), dilations=(1, 1, 1))
head_in = 512
if arch == 'swin-t':
    bb = dict(type='SwinTransformer3D', arch='tiny', pretrained=None, pretrained2d=False,
              patch_size=(2, 4, 4), window_size=(8, 7, 7), drop_path_rate=0.1)
    head_in = 768
model = MODELS.build(dict(type='Recognizer3D', backbone=bb,
                          cls_head=dict(type='I3DHead', in_channels=head_in, num_classes=32,
                                        dropout_ratio=0.5))).to(dev).train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
def step():
    opt.zero_grad()
    with torch.autocast('cuda', dtype=torch.bfloat16, enabled=(amp == 'bf16' and cuda)):
        loss = F.cross_entropy(model.cls_head(model.backbone(x)).float(), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 40)
    opt.step()
step(); sync()
ts = []
for _ in range(reps):
    t = time.perf_counter(); step(); sync(); ts.append(time.perf_counter() - t)
peak = (torch.cuda.max_memory_reserved() / 2**20 if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({'step_s': float(np.median(ts)), 'peak_mib': peak}))
"#;

/// A training-mode forward pass of whichever network is benchmarked.
type Forward = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

fn child(x: &PathBuf, y: &PathBuf, reps: usize, device: &str, amp: &str, arch: &str) -> Res<()> {
    // As `mgscope train` does.
    mgscope::train::retain_freed_memory();
    let dev = mgscope::nn::models::parse_device(device)?;
    let amp = match amp {
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        _ => None,
    };
    let _autocast = mgscope::nn::ops3d::autocast(amp);
    if std::env::var("MGSCOPE_TF32").is_ok_and(|v| v == "1") {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
    }
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let net: Box<Forward> = if arch == "swin-t" {
        let m = VideoSwin::new(&swin3d::Config::swin_t(), vb)?;
        Box::new(move |x| m.forward_t(x, true))
    } else {
        let m = PoseC3D::new(&Config::posec3d_joint36(), vb)?;
        // Device-independent initial weights and dropout masks, so that the first step's loss
        // and gradient norm can be compared between the CPU and a GPU.
        mgscope::train::init::init_reference(&vm, 7)?;
        m.head.set_dropout_seed(7)?;
        Box::new(move |x| m.forward_t(x, true))
    };
    let params: BTreeMap<String, candle_core::Var> = vm
        .data()
        .lock()
        .map_err(|_| "poisoned VarMap")?
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (shape, data) = read_npy_as::<f32>(x)?;
    let x = Tensor::from_vec(data, shape, &dev)?;
    let (_, labels) = read_npy_as::<f32>(y)?;
    let labels: Vec<u32> = labels.iter().map(|v| *v as u32).collect();
    let y = Tensor::new(labels.as_slice(), &dev)?;
    let mut sgd = Sgd::new(0.9, 3e-4);
    let mut step = || -> Res<(f64, f64)> {
        let logits = net(&x)?;
        let loss = cross_entropy(&logits, &y, 0.0)?;
        let grads = loss.backward()?;
        let info = sgd.step(&params, &grads, 0.05, Some(40.0))?;
        dev.synchronize()?;
        Ok((f64::from(loss.to_scalar::<f32>()?), info.grad_norm))
    };
    let (loss0, grad_norm0) = step()?;
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        step()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    println!(
        "{{\"step_s\": {}, \"peak_mib\": {}, \"loss0\": {loss0}, \"grad_norm0\": {grad_norm0}}}",
        ts.get(ts.len() / 2).copied().unwrap_or(f64::NAN),
        peak_mib()
    );
    Ok(())
}

fn main() -> Res<()> {
    let mut threads = 2usize;
    let mut reps = 2usize;
    let mut batch = 8usize;
    let mut python = std::env::var_os("MGSCOPE_PY")
        .map(PathBuf::from)
        .or_else(|| {
            let p = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/mgscope-reference/venv/bin/python");
            p.exists().then_some(p)
        });
    let mut device = "cpu".to_string();
    let mut amp = "off".to_string();
    let mut arch = "posec3d".to_string();
    let mut child_io: Option<(PathBuf, PathBuf)> = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--threads" => threads = val()?.parse()?,
            "--reps" => reps = val()?.parse()?,
            "--batch" => batch = val()?.parse()?,
            "--python" => python = Some(PathBuf::from(val()?)),
            "--device" => device = val()?,
            "--amp" => amp = val()?,
            "--arch" => arch = val()?,
            "--child" => {
                let x = PathBuf::from(val()?);
                let y = PathBuf::from(it.next().ok_or("--child X Y")?);
                child_io = Some((x, y));
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if let Some((x, y)) = child_io {
        return child(&x, &y, reps, &device, &amp, &arch);
    }
    let dir = std::env::temp_dir().join(format!("mgscope-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let shape = if arch == "swin-t" {
        [batch, 3, 32, 224, 224]
    } else {
        [batch, 36, 48, 56, 56]
    };
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n)
        .map(|k| ((k * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let y: Vec<f32> = (0..batch).map(|i| ((i * 7) % 32) as f32).collect();
    let (xp, yp) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy(&xp, &shape, &x)?;
    write_npy(&yp, &[batch], &y)?;
    let ours = run_json(
        Command::new(std::env::current_exe()?)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .args(["--reps", &reps.to_string(), "--device", &device])
            .args(["--amp", &amp, "--arch", &arch, "--child"])
            .arg(&xp)
            .arg(&yp),
    )?;
    let theirs = match &python {
        Some(py) => run_json(
            Command::new(py)
                .env("OMP_NUM_THREADS", threads.to_string())
                .args(["-W", "ignore", "-c", PY])
                .arg(threads.to_string())
                .arg(reps.to_string())
                .arg(&xp)
                .arg(&yp)
                .arg(&device)
                .arg(&amp)
                .arg(&arch),
        )
        .map_err(|e| eprintln!("PyTorch side failed: {e}"))
        .ok(),
        None => None,
    };
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "candle first step: loss {:.7}, gradient norm {:.7}",
        f(&ours, "loss0"),
        f(&ours, "grad_norm0")
    );
    let ours_sps = batch as f64 / f(&ours, "step_s");
    let (theirs_sps, theirs_mib) = theirs.as_ref().map_or((f64::NAN, f64::NAN), |t| {
        (batch as f64 / f(t, "step_s"), f(t, "peak_mib"))
    });
    let goal = if device.starts_with("cuda") { 0.8 } else { 1.0 };
    println!(
        "{arch} training on {device} (mixed precision: {amp}), batch {batch}×{}×{}×{}², {threads} thread(s), median of {reps} steps after a warm-up",
        shape[1],
        shape[2],
        shape[3]
    );
    println!(
        "candle {ours_sps:.3} samples/s ({:.0} MiB) · PyTorch {theirs_sps:.3} samples/s ({theirs_mib:.0} MiB) · ratio {:.2} (goal ≥ {goal})",
        f(&ours, "peak_mib"),
        ours_sps / theirs_sps
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
