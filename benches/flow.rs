//! Flow benchmark on real frames warped by known motions: this crate's DIS against OpenCV's
//! Farnebäck and DIS (opencv-python-headless), same frames, same thread count, same run.
//!
//! ```text
//! cargo run --release --bin flow_bench -- [--video V] [--frames 10,40] [--reps 10]
//!     [--threads 2] [--python PY] [--workdir DIR]
//! ```
//! `PY` is a Python with `cv2` and `numpy` (default: `$FLOW_BENCH_PYTHON`, else
//! `~/.cache/mgscope-reference/venv/bin/python`, as made by `shared/tools/reference-env.sh`).
//! Frames are decoded with the `ffmpeg` CLI as 8-bit gray. For each base frame and motion,
//! `prev(x) = frame(x + f(x))` (bilinear, rounded to 8 bit) and `next = frame`, so the true
//! flow from prev to next is exactly `f`; the EPE is averaged over pixels whose `x + f(x)` lies
//! inside the frame.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use mgscope::modality::flow::{DisFlow, DisParams, FlowField, GrayImage};
use mgscope::modality::flow_vis::epe_masked;

type Res<T> = Result<T, String>;

struct Args {
    video: PathBuf,
    frames: Vec<usize>,
    reps: usize,
    threads: usize,
    python: Option<PathBuf>,
    workdir: Option<PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        video: PathBuf::from("/work/shared/data/real/single_face.mp4"),
        frames: vec![10, 40],
        reps: 10,
        threads: 2,
        python: std::env::var_os("FLOW_BENCH_PYTHON").map(PathBuf::from),
        workdir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--video" => a.video = PathBuf::from(val()?),
            "--frames" => {
                a.frames = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--frames: {e}")))
                    .collect::<Res<_>>()?
            }
            "--reps" => a.reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--python" => a.python = Some(PathBuf::from(val()?)),
            "--workdir" => a.workdir = Some(PathBuf::from(val()?)),
            // `cargo bench` passes --bench to harness-less benches.
            "--bench" => {}
            "-h" | "--help" => {
                println!("flow_bench [--video V] [--frames 10,40] [--reps N] [--threads T] [--python PY] [--workdir DIR]");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.frames.is_empty() || a.reps == 0 || a.threads == 0 {
        return Err("need at least one frame, one rep and one thread".into());
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn probe_size(video: &Path) -> Res<(usize, usize)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.trim().split(',').map(|t| t.trim().parse::<usize>());
    match (it.next(), it.next()) {
        (Some(Ok(w)), Some(Ok(h))) => Ok((w, h)),
        _ => Err(format!(
            "ffprobe could not read the size of {}: {s}",
            video.display()
        )),
    }
}

/// Frame `n` (0-based, decode order = presentation order for this use) as 8-bit gray.
fn decode_gray(video: &Path, n: usize, w: usize, h: usize) -> Res<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-vframes", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if out.stdout.len() != w * h {
        return Err(format!(
            "ffmpeg gave {} bytes for frame {n} of {} ({}x{} expected): {}",
            out.stdout.len(),
            video.display(),
            w,
            h,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

// ---------------------------------------------------------------------------------------------
// Known motions

struct Motion {
    name: &'static str,
    f: Box<dyn Fn(f64, f64) -> (f64, f64)>,
}

fn motions(w: usize, h: usize) -> Vec<Motion> {
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let affine = move |a: [f64; 4], t: (f64, f64)| {
        move |x: f64, y: f64| {
            let (dx, dy) = (x - cx, y - cy);
            (
                a[0] * dx + a[1] * dy + cx + t.0 - x,
                a[2] * dx + a[3] * dy + cy + t.1 - y,
            )
        }
    };
    let (th, s) = (4.0f64.to_radians(), 1.06);
    vec![
        Motion {
            name: "translate",
            f: Box::new(|_, _| (3.37, -2.41)),
        },
        Motion {
            name: "affine",
            f: Box::new(affine([1.03, 0.04, -0.02, 0.98], (4.2, -2.7))),
        },
        Motion {
            name: "rot+zoom",
            f: Box::new(affine(
                [s * th.cos(), -s * th.sin(), s * th.sin(), s * th.cos()],
                (0.0, 0.0),
            )),
        },
        Motion {
            name: "nonrigid",
            f: Box::new(|x, y| {
                (
                    5.0 * (2.0 * PI * x / 220.0 + 0.3).sin() * (2.0 * PI * y / 160.0).cos(),
                    4.0 * (2.0 * PI * x / 180.0).cos() * (2.0 * PI * y / 140.0 + 0.7).sin(),
                )
            }),
        },
    ]
}

struct Pair {
    motion: usize,
    prev: Vec<u8>,
    next: Vec<u8>,
    gt: FlowField,
    mask: Vec<bool>,
}

fn bilinear(img: &[u8], w: usize, h: usize, x: f64, y: f64) -> f64 {
    let x = x.clamp(0.0, (w - 1) as f64);
    let y = y.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |xx: usize, yy: usize| f64::from(img[yy * w + xx]);
    let top = p(x0, y0) + fx * (p(x1, y0) - p(x0, y0));
    let bot = p(x0, y1) + fx * (p(x1, y1) - p(x0, y1));
    top + fy * (bot - top)
}

fn make_pair(frame: &[u8], w: usize, h: usize, motion: usize, m: &Motion) -> Pair {
    let mut prev = vec![0u8; w * h];
    let mut gt = vec![0f32; w * h * 2];
    let mut mask = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (m.f)(x as f64, y as f64);
            let (sx, sy) = (x as f64 + fx, y as f64 + fy);
            let i = y * w + x;
            prev[i] = bilinear(frame, w, h, sx, sy).round().clamp(0.0, 255.0) as u8;
            gt[2 * i] = fx as f32;
            gt[2 * i + 1] = fy as f32;
            mask[i] = sx >= 0.0 && sy >= 0.0 && sx <= (w - 1) as f64 && sy <= (h - 1) as f64;
        }
    }
    Pair {
        motion,
        prev,
        next: frame.to_vec(),
        gt: FlowField {
            width: w,
            height: h,
            data: gt,
        },
        mask,
    }
}

// ---------------------------------------------------------------------------------------------
// NPY (format version 1.0, little-endian, C order)

fn npy_write(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> Res<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = u16::try_from(header.len()).map_err(|_| "npy header too long".to_string())?;
    let mut buf = Vec::with_capacity(10 + header.len() + bytes.len());
    buf.extend_from_slice(b"\x93NUMPY\x01\x00");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    buf.extend_from_slice(bytes);
    f.write_all(&buf)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a little-endian `<f4` C-order array: (shape, values).
fn npy_read_f32(path: &Path) -> Res<(Vec<usize>, Vec<f32>)> {
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |m: &str| format!("{}: {m}", path.display());
    if raw.len() < 10 || &raw[..6] != b"\x93NUMPY" {
        return Err(bad("not an NPY file"));
    }
    let (hlen, hstart) = match raw[6] {
        1 => (usize::from(u16::from_le_bytes([raw[8], raw[9]])), 10),
        2 | 3 if raw.len() >= 12 => (
            u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported NPY version")),
    };
    let header = raw
        .get(hstart..hstart + hlen)
        .map(String::from_utf8_lossy)
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(&format!(
            "need little-endian float32 in C order: {header}"
        )));
    }
    let shape_s = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| bad(&format!("shape: {e}"))))
        .collect::<Res<_>>()?;
    let n: usize = shape.iter().product();
    let body = &raw[hstart + hlen..];
    if body.len() != n * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let vals = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, vals))
}

// ---------------------------------------------------------------------------------------------
// OpenCV reference (Python)

/// OpenCV side, run as a co-process so its timings interleave with ours under the same load.
/// Protocol: one line `K METHOD REPS` per request; answers one line with REPS timings in
/// seconds, after writing `pairK_METHOD.npy` (the flow of the last run).
const PY_SCRIPT: &str = r##"
import sys, time
import numpy as np
import cv2

d, threads = sys.argv[1], int(sys.argv[2])
cv2.setNumThreads(threads)

def farneback():
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

def dis(preset):
    inst = cv2.DISOpticalFlow_create(preset)
    return lambda a, b: inst.calc(a, b, None)

methods = {"cv_farneback": farneback(),
           "cv_dis_medium": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
           "cv_dis_fast": dis(cv2.DISOPTICAL_FLOW_PRESET_FAST)}
pairs = {}
print(f"opencv {cv2.__version__}, {cv2.getNumThreads()} threads", flush=True)
for line in sys.stdin:
    parts = line.split()
    if not parts or parts[0] == "quit":
        break
    k, name, reps = int(parts[0]), parts[1], int(parts[2])
    if k not in pairs:
        pairs[k] = (np.load(f"{d}/pair{k}_prev.npy"), np.load(f"{d}/pair{k}_next.npy"))
    a, b = pairs[k]
    fn = methods[name]
    flow = fn(a, b)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        flow = fn(a, b)
        ts.append(time.perf_counter() - t0)
    np.save(f"{d}/pair{k}_{name}.npy", np.ascontiguousarray(flow, dtype=np.float32))
    print(" ".join(f"{t:.9f}" for t in ts), flush=True)
"##;

fn find_python(args: &Args) -> Res<PathBuf> {
    let mut cands: Vec<PathBuf> = args.python.iter().cloned().collect();
    if let Some(home) = std::env::var_os("HOME") {
        cands.push(Path::new(&home).join(".cache/mgscope-reference/venv/bin/python"));
    }
    for c in cands {
        let ok = Command::new(&c)
            .args(["-c", "import cv2, numpy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(c);
        }
    }
    Err(
        "no Python with cv2 + numpy: pass --python, set FLOW_BENCH_PYTHON, or run \
         py=$(bash shared/tools/reference-env.sh)"
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------

/// Per method: all timings (ms) per pair, and the EPE of each pair.
#[derive(Default)]
struct MethodResult {
    ms: BTreeMap<usize, Vec<f64>>,
    epe: BTreeMap<usize, f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("flow_bench: {e}");
        std::process::exit(1);
    }
}

struct Reference {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start(py: &Path, script: &Path, dir: &Path, threads: usize) -> Res<(Self, String)> {
        let mut child = Command::new(py)
            .arg(script)
            .arg(dir)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", py.display()))?;
        let stdin = child
            .stdin
            .take()
            .ok_or("no stdin for the reference process")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout for the reference process")?;
        let mut r = Self {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
        };
        let banner = r.line()?;
        Ok((r, banner))
    }

    fn line(&mut self) -> Res<String> {
        use std::io::BufRead;
        let mut l = String::new();
        let n = self.stdout.read_line(&mut l).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the OpenCV reference process exited".into());
        }
        Ok(l.trim().to_string())
    }

    /// Runs `name` on pair `k` `reps` times; returns the timings in ms.
    fn run(&mut self, k: usize, name: &str, reps: usize) -> Res<Vec<f64>> {
        writeln!(self.stdin, "{k} {name} {reps}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.line()?
            .split_whitespace()
            .map(|t| t.parse::<f64>().map(|s| s * 1e3).map_err(|e| e.to_string()))
            .collect()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

const OURS: [&str; 3] = ["dis_medium", "dis_fast", "dis_ultrafast"];
const THEIRS: [&str; 3] = ["cv_dis_medium", "cv_dis_fast", "cv_farneback"];
/// Timing rounds: each round runs every method on every pair, so slow phases of a shared
/// machine hit all methods alike.
const ROUNDS: usize = 3;

fn run() -> Res<()> {
    let args = parse_args()?;
    let (w, h) = probe_size(&args.video)?;
    let ms = motions(w, h);
    let mut pairs = Vec::new();
    for &fi in &args.frames {
        let frame = decode_gray(&args.video, fi, w, h)?;
        for (mi, m) in ms.iter().enumerate() {
            pairs.push(make_pair(&frame, w, h, mi, m));
        }
    }
    let dir = args
        .workdir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("flow_bench_{}", std::process::id())));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (k, p) in pairs.iter().enumerate() {
        npy_write(
            &dir.join(format!("pair{k}_prev.npy")),
            "|u1",
            &[h, w],
            &p.prev,
        )?;
        npy_write(
            &dir.join(format!("pair{k}_next.npy")),
            "|u1",
            &[h, w],
            &p.next,
        )?;
        if args.workdir.is_some() {
            let gt: Vec<u8> = p.gt.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            npy_write(&dir.join(format!("pair{k}_gt.npy")), "<f4", &[h, w, 2], &gt)?;
            let m: Vec<u8> = p.mask.iter().map(|&b| u8::from(b)).collect();
            npy_write(&dir.join(format!("pair{k}_mask.npy")), "|u1", &[h, w], &m)?;
        }
    }
    let py = find_python(&args)?;
    let script = dir.join("ref_flow.py");
    std::fs::write(&script, PY_SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let (mut reference, cv_version) = Reference::start(&py, &script, &dir, args.threads)?;
    println!(
        "{} {}x{}, frames {:?}, {} motions, {} pairs; {} rounds x {} reps; {} threads; {}",
        args.video.display(),
        w,
        h,
        args.frames,
        ms.len(),
        pairs.len(),
        ROUNDS,
        args.reps,
        args.threads,
        cv_version
    );

    let presets = [
        DisParams::medium(),
        DisParams::fast(),
        DisParams::ultrafast(),
    ];
    let mut ours = Vec::new();
    for p in presets {
        ours.push(DisFlow::new(p.with_threads(args.threads)).map_err(|e| e.to_string())?);
    }
    let mut results: BTreeMap<&str, MethodResult> = BTreeMap::new();
    let inputs: Vec<(GrayImage, GrayImage)> = pairs
        .iter()
        .map(|p| {
            Ok((
                GrayImage::from_u8(w, h, &p.prev).map_err(|e| e.to_string())?,
                GrayImage::from_u8(w, h, &p.next).map_err(|e| e.to_string())?,
            ))
        })
        .collect::<Res<_>>()?;
    for round in 0..ROUNDS {
        for (k, p) in pairs.iter().enumerate() {
            let (a, b) = &inputs[k];
            for (name, dis) in OURS.iter().zip(ours.iter_mut()) {
                let mut flow = dis.calc(a, b).map_err(|e| e.to_string())?;
                let mut ts = Vec::with_capacity(args.reps);
                for _ in 0..args.reps {
                    let t0 = Instant::now();
                    flow = dis.calc(a, b).map_err(|e| e.to_string())?;
                    ts.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                let r = results.entry(name).or_default();
                r.ms.entry(k).or_default().extend(ts);
                if round == 0 {
                    let e = epe_masked(&flow, &p.gt, Some(&p.mask)).map_err(|e| e.to_string())?;
                    r.epe.insert(k, e);
                }
            }
            for name in THEIRS {
                let ts = reference.run(k, name, args.reps)?;
                let r = results.entry(name).or_default();
                r.ms.entry(k).or_default().extend(ts);
                if round == 0 {
                    let (shape, vals) = npy_read_f32(&dir.join(format!("pair{k}_{name}.npy")))?;
                    if shape != [h, w, 2] {
                        return Err(format!("{name}: flow shape {shape:?}"));
                    }
                    let flow = FlowField {
                        width: w,
                        height: h,
                        data: vals,
                    };
                    let e = epe_masked(&flow, &p.gt, Some(&p.mask)).map_err(|e| e.to_string())?;
                    r.epe.insert(k, e);
                }
            }
        }
    }
    drop(reference);

    // Table: time = mean over pairs of each pair's median; EPE per motion = mean over frames.
    struct Row {
        ms: f64,
        per: Vec<f64>,
        mean: f64,
    }
    let rows: BTreeMap<&str, Row> = results
        .iter_mut()
        .map(|(name, r)| {
            let t = r.ms.values_mut().map(|v| median(v)).sum::<f64>() / r.ms.len().max(1) as f64;
            let mut per = vec![0.0; ms.len()];
            let mut cnt = vec![0usize; ms.len()];
            for (k, e) in &r.epe {
                per[pairs[*k].motion] += e;
                cnt[pairs[*k].motion] += 1;
            }
            for (p, c) in per.iter_mut().zip(&cnt) {
                *p /= (*c).max(1) as f64;
            }
            let mean = per.iter().sum::<f64>() / per.len().max(1) as f64;
            (*name, Row { ms: t, per, mean })
        })
        .collect();
    let reference_of = |n: &str| rows.get(n).map(|r| (r.ms, r.mean));
    let (dm, fb) = (reference_of("cv_dis_medium"), reference_of("cv_farneback"));
    println!("EPE in px over pixels whose source lies inside the frame, mean of the base frames;");
    println!(
        "ms = mean over pairs of the per-pair median; ratios are ours/theirs (time, mean EPE)"
    );
    let mut head = format!("{:<14} {:>8}", "method", "ms/pair");
    for m in &ms {
        head.push_str(&format!(" {:>9}", m.name));
    }
    head.push_str(&format!(
        " {:>9} {:>13} {:>13}",
        "mean EPE", "vs cvDISmed", "vs cvFarneb"
    ));
    println!("{head}");
    for name in OURS.iter().chain(THEIRS.iter()) {
        let Some(r) = rows.get(name) else {
            continue;
        };
        let mut line = format!("{name:<14} {:>8.2}", r.ms);
        for e in &r.per {
            line.push_str(&format!(" {e:>9.3}"));
        }
        let ratio = |x: Option<(f64, f64)>| match x {
            Some((rt, re)) => format!("{:.2}x,{:.2}x", r.ms / rt, r.mean / re),
            None => "-".into(),
        };
        line.push_str(&format!(
            " {:>9.3} {:>13} {:>13}",
            r.mean,
            ratio(dm),
            ratio(fb)
        ));
        println!("{line}");
    }
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
