//! Times the two hot paths of the ensemble engine against a straightforward numpy implementation
//! on identical random data:
//!   (a) one weight change -> new top-1, 4,562 clips x 32 classes x 8 streams (iMiGUE test size);
//!   (b) the exhaustive simplex grid at step 0.05 over 6 streams on 777 clips x 32 classes (val size).
//!
//! Run: `MGSCOPE_PY=/path/to/python-with-numpy cargo bench --bench ensemble`
//! Without MGSCOPE_PY the numpy side is skipped.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use mgscope::ensemble::fusion::Fusion;
use mgscope::ensemble::search::{self, Control, Objective};
use mgscope::ensemble::stream::{ScoreKind, ScoreStream, Stream};
use mgscope::modality::npy::to_npy_bytes as write_npy_f32;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NUMPY_SCRIPT: &str = r#"
import itertools, json, sys, time
import numpy as np

d = sys.argv[1]
P = np.load(d + "/inc_probs.npy")
L = np.load(d + "/inc_labels.npy").astype(np.int64)
changes = np.load(d + "/inc_changes.npy")
S = P.shape[0]
w = np.full(S, 1.0 / S, dtype=np.float32)
fused = np.tensordot(w, P, axes=1)
times = []
for s, nw in changes:
    s = int(s)
    t0 = time.perf_counter()
    fused += (np.float32(nw) - w[s]) * P[s]
    w[s] = nw
    top1 = float((fused.argmax(axis=1) == L).mean())
    times.append(time.perf_counter() - t0)
inc_us = float(np.median(times) * 1e6)

G = np.load(d + "/grid_probs.npy")
GL = np.load(d + "/grid_labels.npy").astype(np.int64)
S, N, C = G.shape
n = 20
W = []
for bars in itertools.combinations(range(n + S - 1), S - 1):
    prev, units = -1, []
    for b in bars:
        units.append(b - prev - 1)
        prev = b
    units.append(n + S - 2 - prev)
    W.append(units)
W = np.array(W, dtype=np.float32) / np.float32(n)
Pf = G.reshape(S, N * C)
t0 = time.perf_counter()
best, best_w = -1.0, None
for wv in W:
    acc = float(((wv @ Pf).reshape(N, C).argmax(axis=1) == GL).mean())
    if acc > best:
        best, best_w = acc, wv
grid_s = time.perf_counter() - t0
print(json.dumps({"inc_us": inc_us, "grid_s": grid_s, "grid_best": best, "grid_vectors": len(W),
                  "numpy": np.__version__}))
"#;

/// Softmax outputs of models of varying quality: each stream is right with its own probability and
/// otherwise confidently wrong, like real ensemble members.
fn peaked_streams(
    rng: &mut ChaCha8Rng,
    labels: &[u32],
    c: usize,
    s: usize,
) -> Result<Vec<ScoreStream>, Box<dyn Error>> {
    let ids: Vec<String> = (0..labels.len()).map(|i| format!("clip{i:05}")).collect();
    let mut out = Vec::with_capacity(s);
    for k in 0..s {
        let q = 0.35 + 0.05 * k as f64;
        let mut vals = Vec::with_capacity(labels.len() * c);
        for &l in labels {
            let target = if rng.random_bool(q) {
                l as usize
            } else {
                rng.random_range(0..c)
            };
            for j in 0..c {
                let boost = if j == target { 3.0 } else { 0.0 };
                vals.push(rng.random_range(-1.5f32..1.5) + boost);
            }
        }
        out.push(
            ScoreStream::from_flat(format!("s{k}"), ids.clone(), c, vals, ScoreKind::Logits)?.0,
        );
    }
    Ok(out)
}

/// Flat random probabilities (uniform, normalised): almost nothing can be pruned, the worst case.
fn flat_streams(
    rng: &mut ChaCha8Rng,
    n: usize,
    c: usize,
    s: usize,
) -> Result<Vec<ScoreStream>, Box<dyn Error>> {
    let ids: Vec<String> = (0..n).map(|i| format!("clip{i:05}")).collect();
    let mut out = Vec::with_capacity(s);
    for k in 0..s {
        let mut vals: Vec<f32> = (0..n * c).map(|_| rng.random_range(0.0f32..1.0)).collect();
        for row in vals.chunks_exact_mut(c) {
            let z: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= z);
        }
        out.push(
            ScoreStream::from_flat(
                format!("f{k}"),
                ids.clone(),
                c,
                vals,
                ScoreKind::Probabilities,
            )?
            .0,
        );
    }
    Ok(out)
}

fn fusion_of(streams: Vec<ScoreStream>, labels: &[u32]) -> Result<Fusion, Box<dyn Error>> {
    let ids = streams[0].clip_ids.clone();
    let labels = labels.iter().map(|&l| Some(l)).collect();
    Ok(Fusion::new(
        ids,
        labels,
        streams.into_iter().map(Stream::from).collect(),
    )?)
}

fn write_stack(path: &Path, streams: &[ScoreStream]) -> Result<(), Box<dyn Error>> {
    let (n, c) = (streams[0].len(), streams[0].classes);
    let data: Vec<f32> = streams
        .iter()
        .flat_map(|s| s.probs.iter().copied())
        .collect();
    std::fs::write(path, write_npy_f32(&[streams.len(), n, c], &data)?)?;
    Ok(())
}

fn write_vec(path: &Path, shape: &[usize], v: &[f32]) -> Result<(), Box<dyn Error>> {
    std::fs::write(path, write_npy_f32(shape, v)?)?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rng = ChaCha8Rng::seed_from_u64(2025);

    // (a) one weight change -> new top-1.
    let (n_a, c, s_a) = (4562, 32, 8);
    let labels_a: Vec<u32> = (0..n_a).map(|_| rng.random_range(0..c as u32)).collect();
    let streams_a = peaked_streams(&mut rng, &labels_a, c, s_a)?;
    let changes: Vec<(usize, f32)> = (0..2001)
        .map(|_| (rng.random_range(0..s_a), rng.random_range(0.0f32..1.0)))
        .collect();
    let fusion_a = fusion_of(streams_a.clone(), &labels_a)?;
    let mut inc = fusion_a.incremental(&vec![1.0 / s_a as f32; s_a])?;
    let mut times = Vec::with_capacity(changes.len());
    let mut checksum = 0.0;
    for &(k, w) in &changes {
        let t = Instant::now();
        inc.set_weight(k, w)?;
        checksum += inc.top1().unwrap_or(0.0);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mean_a = times.iter().sum::<f64>() / times.len() as f64;
    let inc_us = median(&mut times);
    let t = Instant::now();
    let scratch_reps = 50;
    for _ in 0..scratch_reps {
        checksum += f64::from(fusion_a.predict(inc.weights())?[0]);
    }
    let scratch_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(scratch_reps);

    // (b) exhaustive grid, step 0.05, 6 streams, 777 clips.
    let (n_b, s_b) = (777, 6);
    let labels_b: Vec<u32> = (0..n_b).map(|_| rng.random_range(0..c as u32)).collect();
    let streams_b = peaked_streams(&mut rng, &labels_b, c, s_b)?;
    let fusion_b = fusion_of(streams_b.clone(), &labels_b)?;
    let flat_b = fusion_of(flat_streams(&mut rng, n_b, c, s_b)?, &labels_b)?;
    let time_grid =
        |f: &Fusion, threads: usize| -> Result<(f64, search::SearchResult), Box<dyn Error>> {
            let ctl = Control {
                threads,
                ..Control::quiet()
            };
            let mut best_time = f64::INFINITY;
            let mut result = None;
            for _ in 0..3 {
                let t = Instant::now();
                let r = search::grid_search(f, 0.05, Objective::Top1, &ctl)?;
                best_time = best_time.min(t.elapsed().as_secs_f64());
                result = Some(r);
            }
            Ok((best_time, result.ok_or("no grid run")?))
        };
    let (grid_s, grid_r) = time_grid(&fusion_b, threads)?;
    let (grid_1t, _) = time_grid(&fusion_b, 1)?;
    let (flat_s, _) = time_grid(&flat_b, threads)?;
    let (flat_1t, _) = time_grid(&flat_b, 1)?;

    println!("ensemble_bench ({threads} threads available; checksum {checksum:.3})");
    println!(
        "(a) one weight change -> top-1, {n_a} x {c} x {s_a}: median {inc_us:.1} us (mean {mean_a:.1} us incl. a full re-sum every 256 changes; from scratch {scratch_us:.0} us)"
    );
    println!(
        "(b) grid step 0.05, {s_b} streams, {n_b} x {c}: {} vectors, {grid_s:.3} s ({threads} threads), {grid_1t:.3} s (1 thread); best top-1 {:.4} at {:?}",
        grid_r.evaluated, grid_r.score, grid_r.weights
    );
    println!("    flat random probabilities: {flat_s:.3} s ({threads} threads), {flat_1t:.3} s (1 thread)");
    for (name, f) in [("peaked", &fusion_b), ("flat", &flat_b)] {
        let (kept, all, undecided) = search::pruning_stats(f)?;
        println!(
            "    {name}: {undecided} of {n_b} clips depend on the weights; {kept} of {all} class scores scored per stream ({:.1}%, padding included)",
            100.0 * kept as f64 / all as f64
        );
    }

    let Some(py) = std::env::var_os("MGSCOPE_PY") else {
        println!("numpy comparison skipped: set MGSCOPE_PY to a python with numpy");
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("mgscope_ensemble_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    write_stack(&dir.join("inc_probs.npy"), &streams_a)?;
    let labels_f: Vec<f32> = labels_a.iter().map(|&l| l as f32).collect();
    write_vec(&dir.join("inc_labels.npy"), &[n_a], &labels_f)?;
    let ch: Vec<f32> = changes.iter().flat_map(|&(k, w)| [k as f32, w]).collect();
    write_vec(&dir.join("inc_changes.npy"), &[changes.len(), 2], &ch)?;
    write_stack(&dir.join("grid_probs.npy"), &streams_b)?;
    let labels_f: Vec<f32> = labels_b.iter().map(|&l| l as f32).collect();
    write_vec(&dir.join("grid_labels.npy"), &[n_b], &labels_f)?;
    let script = dir.join("bench.py");
    std::fs::write(&script, NUMPY_SCRIPT)?;
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(&dir)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        println!(
            "numpy comparison failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let np_inc = v["inc_us"].as_f64().ok_or("numpy output lacks inc_us")?;
    let np_grid = v["grid_s"].as_f64().ok_or("numpy output lacks grid_s")?;
    println!("numpy {} (same data):", v["numpy"].as_str().unwrap_or("?"));
    println!(
        "(a) numpy median {np_inc:.1} us -> Rust is {:.1}x faster",
        np_inc / inc_us
    );
    println!(
        "(b) numpy {np_grid:.3} s over {} vectors, best top-1 {:.4} -> Rust is {:.1}x faster ({:.1}x on 1 thread; flat data {:.1}x / {:.1}x)",
        v["grid_vectors"],
        v["grid_best"].as_f64().unwrap_or(f64::NAN),
        np_grid / grid_s,
        np_grid / grid_1t,
        np_grid / flat_s,
        np_grid / flat_1t
    );
    Ok(())
}
