//! Benchmarks for the derived modalities, each against its Python reference in the same run.
//!
//! ```text
//! MGSCOPE_PY=$(bash ../shared/tools/reference-env.sh) cargo run --release --bin modality_bench
//! ```
//!
//! * Heatmaps: 48 frames × 36 keypoints (one person, an iMiGUE-like pose with jitter), 64×64,
//!   σ 0.6, joint and limb volumes, vs mmaction2's `GeneratePoseTarget` (NumPy) pinned to one
//!   core. Also checks the outputs are identical.
//! * Taylor: 64 frames of 640×360 (the real `single_face.mp4` from `MGSCOPE_TAYLOR_VIDEO` or
//!   ../shared/data/real/, decoded by OpenCV in the reference venv; else synthetic frames),
//!   K = 3, vs a vectorised float32 NumPy implementation of the same maths on one core.
//!
//! Without `MGSCOPE_PY` only the Rust timings are printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mgscope::modality::heatmap::{generate_pose_target, imigue36, HeatmapParams, PoseArrays};
use mgscope::modality::npy::{read_npy_as, write_npy};
use mgscope::modality::taylor::{taylor_video, TaylorParams};
use rand::{Rng, SeedableRng};

type BoxErr = Box<dyn std::error::Error>;

const PY_BENCH: &str = r#"
import json, sys, time
import numpy as np

def stats_ms(ts, cpu):
    return [float(np.min(ts) * 1e3), float(np.median(ts) * 1e3), float(cpu / len(ts) * 1e3)]

def bench_heatmap(kp_path, sc_path, out_dir, reps, skel_json):
    from mmaction.datasets.transforms import GeneratePoseTarget
    sk = json.loads(skel_json)
    kp, sc = np.load(kp_path), np.load(sc_path)
    res = {}
    for kind in ('joint', 'limb'):
        g = GeneratePoseTarget(sigma=0.6, use_score=True, with_kp=kind == 'joint',
                               with_limb=kind == 'limb', skeletons=[tuple(e) for e in sk['limbs']],
                               left_kp=sk['left_kp'], right_kp=sk['right_kp'],
                               left_limb=sk['left_limb'], right_limb=sk['right_limb'])
        g.eps = 1e-3  # pyskl's EPS, as MM-Gesture
        ts = []
        cpu = 0.0
        for _ in range(reps):
            r = {'keypoint': kp.copy(), 'keypoint_score': sc.copy(), 'img_shape': (64, 64)}
            c = time.thread_time()
            t = time.perf_counter()
            out = g.transform(r)['imgs']
            ts.append(time.perf_counter() - t)
            cpu += time.thread_time() - c
        np.save(f'{out_dir}/py_{kind}.npy', out)
        res[kind] = stats_ms(ts, cpu)
    print(json.dumps(res))

def decode(video, out, n):
    import cv2
    cap = cv2.VideoCapture(video)
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    np.save(out, np.stack(frames))

def taylor_np(gray_u8, terms=3):
    # the same maths as taylor.py --fp32, vectorised over pixels and a chunk of output frames
    L = terms + 3
    n_out = gray_u8.shape[0] - L + 1
    fact = [np.float32(1), np.float32(1), np.float32(2), np.float32(6)]
    out = np.empty((n_out,) + gray_u8.shape[1:] + (3,), np.uint8)
    for c0 in range(0, n_out, 8):
        c1 = min(n_out, c0 + 8)
        g = gray_u8[c0:c1 + L - 1].astype(np.float32) / np.float32(255)
        win = [g[j:j + c1 - c0] for j in range(L)]
        d = list(win)
        dk = [None]
        for k in range(1, L):
            d = [d[j + 1] - d[j] for j in range(L - k)]
            dk.append(d[0])
        xa = [w - win[0] for w in win]
        s = []
        for i in range(terms):
            if i == 0:
                p = [np.ones_like(x) for x in xa]
            elif i == 1:
                p = xa
            elif i == 2:
                p = [x * x for x in xa]
            else:
                p = [x * x * x for x in xa]
            acc = p[0] / fact[i]
            for j in range(1, L):
                acc = acc + p[j] / fact[i]
            s.append(acc)
        ch = []
        for c in range(3):
            acc = s[0] * dk[c + 1]
            for i in range(1, terms):
                acc = acc + s[i] * dk[c + 1 + i]
            ch.append(acc / np.float32(L))
        f = np.maximum(np.stack(ch, -1), np.float32(0))
        mx = f.max(axis=(1, 2, 3), keepdims=True)
        scale = (np.float32(1) / np.where(mx > 0, mx, 1)) * np.float32(255)
        out[c0:c1] = np.where(mx > 0, f * scale, f).astype(np.uint8)
    return out

def bench_taylor(rgb_path, out_path, reps):
    import cv2
    cv2.setNumThreads(1)
    rgb = np.load(rgb_path)
    ts = []
    cpu = 0.0
    for _ in range(reps):
        c = time.thread_time()
        t = time.perf_counter()
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
        out = taylor_np(gray)
        ts.append(time.perf_counter() - t)
        cpu += time.thread_time() - c
    np.save(out_path, out)
    print(json.dumps({'taylor': stats_ms(ts, cpu)}))

mode = sys.argv[1]
if mode == 'heatmap':
    bench_heatmap(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
elif mode == 'decode':
    decode(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif mode == 'taylor':
    bench_taylor(sys.argv[2], sys.argv[3], int(sys.argv[4]))
"#;

/// (min, median) in ms. Both are printed: this machine may be shared, and the minimum is the
/// least disturbed run, on both sides alike.
#[derive(Clone, Copy, Debug)]
struct Stat {
    min: f64,
    median: f64,
    /// Mean on-CPU time of the calling thread per run (NaN if unknown). On a shared machine
    /// it leaves out the time the single-threaded runs spent descheduled.
    cpu: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>, cpu: f64) -> Self {
        v.sort_by(f64::total_cmp);
        Stat {
            min: v[0] * 1e3,
            median: v[v.len() / 2] * 1e3,
            cpu: cpu * 1e3,
        }
    }

    fn add(self, o: Stat) -> Stat {
        Stat {
            min: self.min + o.min,
            median: self.median + o.median,
            cpu: self.cpu + o.cpu,
        }
    }
}

/// On-CPU seconds of the calling thread so far (Linux schedstat; accurate over many runs).
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

fn time_reps(reps: usize, mut f: impl FnMut()) -> Stat {
    f(); // warm-up
    let c0 = thread_cpu_s();
    let ts = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = match (c0, thread_cpu_s()) {
        (Some(a), Some(b)) => (b - a) / reps as f64,
        _ => f64::NAN,
    };
    Stat::of(ts, cpu)
}

/// An iMiGUE-like seated upper body on a 64×64 canvas (after PoseCompact + Resize), jittered
/// per frame; scores in [0.3, 1].
fn synthetic_clip(frames: usize) -> (Vec<f32>, Vec<f32>) {
    const TEMPLATE: [(f32, f32); 36] = [
        (32.0, 18.0),
        (32.0, 26.0),
        (22.0, 27.0),
        (18.0, 38.0),
        (24.0, 46.0),
        (42.0, 27.0),
        (46.0, 38.0),
        (40.0, 46.0),
        (30.0, 16.0),
        (34.0, 16.0),
        (27.0, 17.0),
        (37.0, 17.0),
        (28.0, 20.0),
        (29.0, 22.5),
        (32.0, 24.0),
        (35.0, 22.5),
        (36.0, 20.0),
        (30.0, 14.0),
        (34.0, 14.0),
        (32.0, 15.0),
        (30.5, 21.0),
        (32.0, 20.5),
        (33.5, 21.0),
        (32.0, 22.0),
        (40.5, 46.5),
        (43.0, 49.0),
        (43.5, 51.0),
        (42.0, 52.0),
        (40.5, 51.5),
        (39.0, 50.5),
        (23.5, 46.5),
        (21.0, 49.0),
        (20.5, 51.0),
        (22.0, 52.0),
        (23.5, 51.5),
        (25.0, 50.5),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2025);
    let mut kp = Vec::with_capacity(frames * 36 * 2);
    let mut sc = Vec::with_capacity(frames * 36);
    for t in 0..frames {
        let sway = (t as f32 * 0.3).sin() * 1.5;
        for (i, &(x, y)) in TEMPLATE.iter().enumerate() {
            let hand = if i >= 24 || i == 4 || i == 7 {
                2.0
            } else {
                0.0
            };
            kp.push(x + sway + hand * (t as f32 * 0.5).cos() + rng.random_range(-0.4..0.4));
            kp.push(y + hand * (t as f32 * 0.4).sin() + rng.random_range(-0.4..0.4));
            sc.push(rng.random_range(0.3..1.0));
        }
    }
    (kp, sc)
}

fn run_py(py: &str, script: &Path, args: &[&str]) -> Result<String, BoxErr> {
    let mut cmd = if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0", py]);
        c
    } else {
        Command::new(py)
    };
    let out = cmd
        .arg(script)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("PYTHONWARNINGS", "ignore")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "python {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    Ok(stdout.lines().last().unwrap_or_default().to_owned())
}

/// `"key": [min, median]` from the reference's one-line JSON.
fn json_stat(s: &str, key: &str) -> Option<Stat> {
    let i = s.find(&format!("\"{key}\""))?;
    let rest = s[i + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let rest = rest.strip_prefix('[')?;
    let end = rest.find(']')?;
    let mut it = rest[..end].split(',').map(|v| v.trim().parse::<f64>());
    Some(Stat {
        min: it.next()?.ok()?,
        median: it.next()?.ok()?,
        cpu: it.next()?.ok()?,
    })
}

fn skeleton_json() -> String {
    let s = imigue36();
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let limbs = s
        .limbs
        .iter()
        .map(|(a, b)| format!("[{a},{b}]"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{{\"limbs\":[{limbs}],\"left_kp\":[{}],\"right_kp\":[{}],\"left_limb\":[{}],\"right_limb\":[{}]}}",
        list(&s.left_kp),
        list(&s.right_kp),
        list(&s.left_limb),
        list(&s.right_limb)
    )
}

fn synthetic_frames(n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut v = vec![0u8; n * h * w * 3];
    for t in 0..n {
        let cx = w as f32 / 2.0 + 80.0 * (t as f32 * 0.2).sin();
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - h as f32 / 2.0).powi(2)).sqrt();
                let base = if d < 60.0 {
                    200.0
                } else {
                    60.0 + 40.0 * (x as f32 / w as f32)
                };
                for c in 0..3 {
                    let noise: f32 = rng.random_range(-4.0..4.0);
                    v[((t * h + y) * w + x) * 3 + c] = (base + noise).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    v
}

fn main() -> Result<(), BoxErr> {
    let py = std::env::var("MGSCOPE_PY").ok().filter(|s| !s.is_empty());
    let dir = std::env::temp_dir().join(format!("mgscope_modality_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("bench.py");
    std::fs::write(&script, PY_BENCH)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "modality_bench: {cores} logical cores; reference pinned to core 0 when taskset exists"
    );

    // ---------------------------------------------------------------- heatmaps
    let (t, v) = (48usize, 36usize);
    let (kp, sc) = synthetic_clip(t);
    let kp_path = dir.join("kp.npy");
    let sc_path = dir.join("sc.npy");
    write_npy(&kp_path, &[1, t, v, 2], &kp)?;
    write_npy(&sc_path, &[1, t, v], &sc)?;
    let sk = imigue36();
    let pose = PoseArrays {
        keypoints: &kp,
        scores: Some(&sc),
        num_persons: 1,
        num_frames: t,
        num_keypoints: v,
    };
    let mut rust = Vec::new();
    for (kind, base) in [
        ("joint", HeatmapParams::joint(0.6)),
        ("limb", HeatmapParams::limb(0.6)),
    ] {
        for threads in [1usize, 2] {
            let p = HeatmapParams {
                threads,
                ..base.clone()
            };
            let st = time_reps(300, || {
                std::hint::black_box(generate_pose_target(pose, 64, 64, &sk, &p).ok());
            });
            rust.push((kind, threads, st));
        }
    }
    let r = |kind: &str, th: usize| {
        let one = |k: &str| {
            rust.iter()
                .find(|(kk, t, _)| *kk == k && *t == th)
                .map(|x| x.2)
                .unwrap_or(Stat {
                    min: f64::NAN,
                    median: f64::NAN,
                    cpu: f64::NAN,
                })
        };
        if kind == "joint+limb" {
            one("joint").add(one("limb"))
        } else {
            one(kind)
        }
    };
    let py_hm = match &py {
        Some(py) => {
            let out = run_py(
                py,
                &script,
                &[
                    "heatmap",
                    &kp_path.to_string_lossy(),
                    &sc_path.to_string_lossy(),
                    &dir.to_string_lossy(),
                    "15",
                    &skeleton_json(),
                ],
            )?;
            Some((json_stat(&out, "joint"), json_stat(&out, "limb")))
        }
        None => None,
    };
    println!("\nHeatmaps, 48 frames x 36 keypoints, 64x64, sigma 0.6: ms per clip as min / median");
    println!(
        "  {:<11} {:>15} {:>15} {:>17} {:>15} {:>15}",
        "", "rust 1 thread", "rust 2 threads", "numpy (1 core)", "ratio 1T", "ratio 2T"
    );
    for kind in ["joint", "limb", "joint+limb"] {
        let (r1, r2) = (r(kind, 1), r(kind, 2));
        let p = py_hm.and_then(|(j, l)| match kind {
            "joint" => j,
            "limb" => l,
            _ => Some(j?.add(l?)),
        });
        let cell = |s: Stat| format!("{:.3} / {:.3}", s.min, s.median);
        match p {
            Some(p) => println!(
                "  {kind:<11} {:>15} {:>15} {:>17} {:>15} {:>15}",
                cell(r1),
                cell(r2),
                format!("{:.1} / {:.1}", p.min, p.median),
                format!("{:.0}x / {:.0}x", p.min / r1.min, p.median / r1.median),
                format!("{:.0}x / {:.0}x", p.min / r2.min, p.median / r2.median),
            ),
            None => println!("  {kind:<11} {:>15} {:>15}", cell(r1), cell(r2)),
        }
    }
    if let Some((Some(j), Some(l))) = py_hm {
        println!("  on-CPU time per clip, single thread both sides (mean):");
        for (kind, p) in [("joint", j), ("limb", l), ("joint+limb", j.add(l))] {
            let r1 = r(kind, 1);
            println!(
                "    {kind:<11} rust {:.3} ms   numpy {:.1} ms   ratio {:.0}x",
                r1.cpu,
                p.cpu,
                p.cpu / r1.cpu
            );
        }
    }
    if py_hm.is_some() {
        for (kind, p) in [
            ("joint", HeatmapParams::joint(0.6)),
            ("limb", HeatmapParams::limb(0.6)),
        ] {
            let ours = generate_pose_target(pose, 64, 64, &sk, &p)?;
            let (_, theirs) = read_npy_as::<f32>(dir.join(format!("py_{kind}.npy")))?;
            let max = ours
                .data
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let bits = ours
                .data
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            println!(
                "  check {kind}: max abs diff vs numpy {max:e}, {bits} values differ in any bit"
            );
        }
    }

    // ---------------------------------------------------------------- Taylor
    let (n, h, w) = (64usize, 360usize, 640usize);
    let video: Option<PathBuf> = std::env::var_os("MGSCOPE_TAYLOR_VIDEO")
        .map(PathBuf::from)
        .or_else(|| {
            // ../shared next to the main checkout, or two levels up from a helper crate
            ["../shared", "../../shared"]
                .iter()
                .map(|d| {
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join(d)
                        .join("data/real/single_face.mp4")
                })
                .find(|p| p.exists())
        });
    let rgb_path = dir.join("rgb.npy");
    let mut source = "synthetic";
    let rgb = match (&py, &video) {
        (Some(py), Some(video)) => {
            run_py(
                py,
                &script,
                &[
                    "decode",
                    &video.to_string_lossy(),
                    &rgb_path.to_string_lossy(),
                    &n.to_string(),
                ],
            )?;
            let (shape, rgb) = read_npy_as::<u8>(&rgb_path)?;
            if shape == [n, h, w, 3] {
                source = "single_face.mp4";
                rgb
            } else {
                synthetic_frames(n, h, w)
            }
        }
        _ => synthetic_frames(n, h, w),
    };
    if source == "synthetic" {
        write_npy(&rgb_path, &[n, h, w, 3], &rgb)?;
    }
    let mut rows = Vec::new();
    for threads in [1usize, 2] {
        let p = TaylorParams {
            threads,
            ..TaylorParams::mm_gesture()
        };
        rows.push(time_reps(5, || {
            std::hint::black_box(taylor_video(&rgb, n, h, w, &p).ok());
        }));
    }
    println!(
        "\nTaylor video, {n} frames of {w}x{h} ({source}), K=3, MM-Gesture float32 path: ms per clip as min / median"
    );
    let cell = |s: Stat| format!("{:.1} / {:.1}", s.min, s.median);
    match &py {
        Some(py) => {
            let out_path = dir.join("py_taylor.npy");
            let out = run_py(
                py,
                &script,
                &[
                    "taylor",
                    &rgb_path.to_string_lossy(),
                    &out_path.to_string_lossy(),
                    "3",
                ],
            )?;
            let p = json_stat(&out, "taylor").ok_or("no timing from the numpy reference")?;
            println!(
                "  rust 1 thread {}   rust 2 threads {}   numpy (1 core) {}   ratio 1T {:.1}x / {:.1}x   ratio 2T {:.1}x / {:.1}x",
                cell(rows[0]),
                cell(rows[1]),
                cell(p),
                p.min / rows[0].min,
                p.median / rows[0].median,
                p.min / rows[1].min,
                p.median / rows[1].median
            );
            println!(
                "  on-CPU time per clip, single thread both sides (mean): rust {:.1} ms   numpy {:.1} ms   ratio {:.1}x",
                rows[0].cpu,
                p.cpu,
                p.cpu / rows[0].cpu
            );
            let ours = taylor_video(&rgb, n, h, w, &TaylorParams::mm_gesture())?;
            let (_, theirs) = read_npy_as::<u8>(&out_path)?;
            let diff = ours
                .data
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a != b)
                .count();
            let maxd = ours
                .data
                .iter()
                .zip(&theirs)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            println!(
                "  check: {diff} of {} bytes differ from the numpy version (max {maxd}); it sums the window in plain order, torch (and Rust) not for the last H*W mod 32 pixels",
                theirs.len()
            );
        }
        None => println!(
            "  rust 1 thread {}   rust 2 threads {}   (set MGSCOPE_PY for the numpy reference)",
            cell(rows[0]),
            cell(rows[1])
        ),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
