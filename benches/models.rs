//! Forward latency per clip and peak memory of each model on the CPU, candle against PyTorch
//! (mmaction2 1.2 modules) on the same input, the same thread count, in the same run.
//!
//! ```text
//! cargo bench --bench models -- [--threads 2] [--reps 3] [--arch posec3d-joint36,swin-t]
//!     [--python ~/.cache/mgscope-reference/venv/bin/python]
//! ```
//!
//! Each measurement runs in its own process (this binary re-run with `--child`, or Python) so
//! that its peak resident memory (VmHWM / ru_maxrss) is its own. Weights are random and full
//! size (32 classes); inputs are the reference test-time shapes. The printed ratio is
//! candle / PyTorch median latency: below 1.0 candle is faster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mgscope::modality::npy::{read_npy_as, write_npy};
use mgscope::nn::checkpoint::StateDict;
use mgscope::nn::models::Model;

mod common;

use common::{peak_mib, run_json, Res};

/// (arch, input shapes): the shapes of one test view.
const CASES: &[(&str, &[&[usize]])] = &[
    ("posec3d-joint36", &[&[1, 36, 48, 56, 56]]),
    ("slowonly-r50-rgb", &[&[1, 3, 8, 224, 224]]),
    (
        "rgbpose-conv3d",
        &[&[1, 3, 8, 256, 256], &[1, 36, 32, 64, 64]],
    ),
    ("swin-t", &[&[1, 3, 32, 224, 224]]),
];

const PY: &str = r#"
import json, os, resource, sys, time
import numpy as np
import torch
from mmaction.registry import MODELS
from mmaction.utils import register_all_modules
register_all_modules()
arch, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dev = os.environ.get('MGSCOPE_BENCH_DEVICE', 'cpu')
cuda = dev.startswith('cuda')
# Strict f32 on both sides unless MGSCOPE_TF32=1 (then both use TF32 tensor cores).
tf32 = os.environ.get('MGSCOPE_TF32') == '1'
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
inputs = [torch.from_numpy(np.load(p)).to(dev) for p in sys.argv[4:]]
torch.set_num_threads(threads)
def r3d(**kw):
    d = dict(type='ResNet3dSlowOnly', depth=50, pretrained=None, lateral=False,
             conv1_kernel=(1, 7, 7), inflate=(0, 0, 1, 1), norm_eval=False)
    d.update(kw)
    return d
if arch == 'posec3d-joint36':
    bb = r3d(in_channels=36, base_channels=32, num_stages=3, out_indices=(2,), stage_blocks=(4, 6, 3),
             conv1_stride_s=1, pool1_stride_s=1, inflate=(0, 1, 1), spatial_strides=(2, 2, 2),
             temporal_strides=(1, 1, 2), dilations=(1, 1, 1))
    cfg = dict(type='Recognizer3D', backbone=bb, cls_head=dict(type='I3DHead', in_channels=512, num_classes=32))
elif arch == 'slowonly-r50-rgb':
    cfg = dict(type='Recognizer3D', backbone=r3d(), cls_head=dict(type='I3DHead', in_channels=2048, num_classes=32))
elif arch == 'rgbpose-conv3d':
    bb = dict(type='RGBPoseConv3D', speed_ratio=4, channel_ratio=4,
              rgb_pathway=dict(num_stages=4, lateral=True, lateral_infl=1, lateral_activate=[0, 0, 1, 1],
                               fusion_kernel=7, base_channels=64, conv1_kernel=(1, 7, 7), inflate=(0, 0, 1, 1)),
              pose_pathway=dict(num_stages=3, stage_blocks=(4, 6, 3), lateral=True, lateral_inv=True,
                                lateral_infl=16, lateral_activate=(0, 1, 1), fusion_kernel=7, in_channels=36,
                                base_channels=32, out_indices=(2,), conv1_kernel=(1, 7, 7), conv1_stride_s=1,
                                conv1_stride_t=1, pool1_stride_s=1, pool1_stride_t=1, inflate=(0, 1, 1),
                                spatial_strides=(2, 2, 2), temporal_strides=(1, 1, 1), dilations=(1, 1, 1)))
    cfg = dict(type='MMRecognizer3D', backbone=bb,
               cls_head=dict(type='RGBPoseHead', num_classes=32, in_channels=[2048, 512]))
elif arch == 'swin-t':
    bb = dict(type='SwinTransformer3D', arch='tiny', pretrained=None, pretrained2d=False, patch_size=(2, 4, 4),
              window_size=(8, 7, 7), drop_path_rate=0.1)
    cfg = dict(type='Recognizer3D', backbone=bb, cls_head=dict(type='I3DHead', in_channels=768, num_classes=32))
else:
    raise SystemExit('unknown arch ' + arch)
model = MODELS.build(cfg).to(dev).eval()
def fwd():
    with torch.no_grad():
        if arch == 'rgbpose-conv3d':
            r, p = model.backbone(inputs[0], inputs[1])
            out = model.cls_head((r, p))
        else:
            out = model.cls_head(model.backbone(inputs[0]))
    if cuda:
        torch.cuda.synchronize()
    return out
fwd()
ts = []
for _ in range(reps):
    t = time.perf_counter(); fwd(); ts.append(time.perf_counter() - t)
peak = (torch.cuda.max_memory_reserved() / 2**20 if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({'median_s': float(np.median(ts)), 'min_s': float(min(ts)), 'peak_mib': peak}))
"#;

struct Args {
    threads: usize,
    reps: usize,
    arches: Vec<String>,
    python: Option<PathBuf>,
    child: Option<String>,
    inputs: Vec<PathBuf>,
    device: String,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        threads: 2,
        reps: 3,
        arches: CASES.iter().map(|c| c.0.to_string()).collect(),
        python: std::env::var_os("MGSCOPE_PY")
            .map(PathBuf::from)
            .or_else(|| {
                let p = dirs_home().join(".cache/mgscope-reference/venv/bin/python");
                p.exists().then_some(p)
            }),
        child: None,
        inputs: Vec::new(),
        device: "cpu".to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--threads" => a.threads = val()?.parse()?,
            "--reps" => a.reps = val()?.parse()?,
            "--arch" => a.arches = val()?.split(',').map(str::to_string).collect(),
            "--python" => a.python = Some(PathBuf::from(val()?)),
            "--child" => a.child = Some(val()?),
            "--input" => a.inputs.push(PathBuf::from(val()?)),
            "--device" => a.device = val()?,
            "--bench" => {}
            "--help" | "-h" => {
                println!(
                    "models [--threads T] [--reps N] [--arch A,B] [--python PY] [--device cuda:0]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// One model in this process: build, warm up, time; prints JSON like the Python side.
fn child(arch: &str, inputs: &[PathBuf], reps: usize, device: &str) -> Res<()> {
    let dev = mgscope::nn::models::parse_device(device)?;
    if std::env::var("MGSCOPE_TF32").is_ok_and(|v| v == "1") {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
    }
    // Random weights from the model's own initialisers, then rebuilt from plain tensors:
    // a model built on `Var`s would record an autograd graph in every forward pass.
    let vm = VarMap::new();
    Model::build_named(arch, 32, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let tensors = vm
        .data()
        .lock()
        .map_err(|_| "poisoned VarMap")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_detached_tensor()))
        .collect();
    let sd = StateDict {
        tensors,
        source: PathBuf::from(format!("random {arch}")),
    };
    let (model, _) = Model::from_state_dict(arch, &sd, true, DType::F32, &dev)?;
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|p| -> Res<Tensor> {
            let (shape, data) = read_npy_as::<f32>(p)?;
            Ok(Tensor::from_vec(data, shape, &dev)?)
        })
        .collect::<Res<_>>()?;
    model.forward(&xs)?;
    dev.synchronize()?;
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        model.forward(&xs)?;
        dev.synchronize()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    println!(
        "{{\"median_s\": {}, \"min_s\": {}, \"peak_mib\": {}}}",
        ts[ts.len() / 2],
        ts[0],
        peak_mib()
    );
    Ok(())
}

fn write_inputs(dir: &Path, arch: &str, shapes: &[&[usize]]) -> Res<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        // A deterministic, heatmap-like range of values.
        let data: Vec<f32> = (0..n)
            .map(|k| ((k * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let p = dir.join(format!("{arch}_{i}.npy"));
        write_npy(&p, shape, &data)?;
        out.push(p);
    }
    Ok(out)
}

fn main() -> Res<()> {
    let a = parse_args()?;
    if let Some(arch) = &a.child {
        return child(arch, &a.inputs, a.reps, &a.device);
    }
    let dir = std::env::temp_dir().join(format!("mgscope-models-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let me = std::env::current_exe()?;
    println!(
        "forward per view on {}, {} thread(s), median of {} after a warm-up; ratio = candle / PyTorch",
        a.device, a.threads, a.reps
    );
    println!(
        "{:<18} {:>28} {:>10} {:>10} {:>7} {:>11} {:>11}",
        "arch", "input", "candle s", "torch s", "ratio", "candle MiB", "torch MiB"
    );
    for (arch, shapes) in CASES.iter().filter(|c| a.arches.iter().any(|x| x == c.0)) {
        let inputs = write_inputs(&dir, arch, shapes)?;
        let mut cmd = Command::new(&me);
        cmd.env("RAYON_NUM_THREADS", a.threads.to_string()).args([
            "--child",
            arch,
            "--reps",
            &a.reps.to_string(),
            "--device",
            &a.device,
        ]);
        for p in &inputs {
            cmd.arg("--input").arg(p);
        }
        let ours = run_json(&mut cmd)?;
        let theirs = match &a.python {
            Some(py) => {
                let mut c = Command::new(py);
                c.env("OMP_NUM_THREADS", a.threads.to_string())
                    .env("MKL_NUM_THREADS", a.threads.to_string())
                    .env("MGSCOPE_BENCH_DEVICE", &a.device)
                    .args(["-W", "ignore", "-c", PY, arch])
                    .arg(a.threads.to_string())
                    .arg(a.reps.to_string())
                    .args(&inputs);
                match run_json(&mut c) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!("{arch}: PyTorch side failed: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let input = shapes
            .iter()
            .map(|s| s.iter().map(usize::to_string).collect::<Vec<_>>().join("×"))
            .collect::<Vec<_>>()
            .join(" + ");
        let (tt, tm) = theirs.as_ref().map_or((f64::NAN, f64::NAN), |t| {
            (f(t, "median_s"), f(t, "peak_mib"))
        });
        println!(
            "{:<18} {:>28} {:>10.3} {:>10.3} {:>7.2} {:>11.0} {:>11.0}",
            arch,
            input,
            f(&ours, "median_s"),
            tt,
            f(&ours, "median_s") / tt,
            f(&ours, "peak_mib"),
            tm
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
