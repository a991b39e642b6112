//! Decode benchmarks against FFmpeg's own CLI, measured in the same run:
//! - sequential decode vs `ffmpeg -threads T -i V -f null -` (goal ≥ 0.95× its throughput),
//!   and with RGB conversion vs `ffmpeg -i V -pix_fmt rgb24 -f null -`;
//! - random frame-exact access vs decoding forward from the previous keyframe at the measured
//!   sequential rate plus one RGB conversion (goal ≤ 1.2×);
//! - a cached frame (goal < 1 ms).
//!
//! Run: `cargo bench --bench decode` (uses `ffmpeg` from PATH; makes its test videos in a temp dir).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use mgscope::media::cache::FrameCache;
use mgscope::media::decode::VideoReader;

fn make(dir: &Path, name: &str, size: &str, secs: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30:duration={secs}"))
        .args([
            "-c:v", "libx264", "-bf", "3", "-g", "60", "-pix_fmt", "yuv420p",
        ])
        .arg(&p)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    p
}

fn ffmpeg_secs(v: &Path, extra: &[&str]) -> f64 {
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let st = Command::new("ffmpeg")
                .args(["-v", "error", "-threads", "0", "-i"])
                .arg(v)
                .args(extra)
                .args(["-f", "null", "-"])
                .status()
                .expect("ffmpeg");
            assert!(st.success());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    best
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, size, secs) in [("v360.mp4", "640x360", 20), ("v720.mp4", "1280x720", 10)] {
        let v = make(tmp.path(), name, size, secs);
        let mut r = VideoReader::open(&v).expect("open");
        let n = r.len();

        let ours_raw = (0..3)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(r.decode_all_raw().expect("decode"), n);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let ff_raw = ffmpeg_secs(&v, &[]);
        let ours_rgb = (0..3)
            .map(|_| {
                let t = Instant::now();
                for i in 0..n {
                    std::hint::black_box(r.frame(i).expect("frame"));
                }
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let ff_rgb = ffmpeg_secs(&v, &["-pix_fmt", "rgb24"]);
        println!("{name} ({n} frames, {size}, GOP 60, 3 B-frames)");
        println!(
            "  sequential decode:         mgscope {:7.1} fps   ffmpeg -f null {:7.1} fps   ratio {:.2}x (goal >= 0.95)",
            n as f64 / ours_raw,
            n as f64 / ff_raw,
            ff_raw / ours_raw
        );
        println!(
            "  sequential decode to RGB:  mgscope {:7.1} fps   ffmpeg rgb24   {:7.1} fps   ratio {:.2}x",
            n as f64 / ours_rgb,
            n as f64 / ff_rgb,
            ff_rgb / ours_rgb
        );

        // Random access vs the floor: decoding forward from the previous keyframe.
        let idx = r.index().clone();
        let per_frame_raw = ours_raw / n as f64;
        let per_conversion = ((ours_rgb - ours_raw) / n as f64).max(0.0);
        // What a keyframe costs on its own: seek, flush, one decode and one conversion, on
        // keyframes visited in an order that never lets the reader decode forward. An I-frame
        // is several average frames' work and cannot use the frame threads.
        let keys: Vec<usize> = idx.keyframes.iter().rev().copied().collect();
        let t = Instant::now();
        for &k in &keys {
            std::hint::black_box(r.frame(k).expect("frame"));
        }
        let per_key = t.elapsed().as_secs_f64() / keys.len() as f64;
        let targets: Vec<usize> = (0..40).map(|k| (k * 7919 + 101) % n).collect();
        let t = Instant::now();
        for &i in &targets {
            std::hint::black_box(r.frame(i).expect("frame"));
        }
        let random = t.elapsed().as_secs_f64() / targets.len() as f64;
        // Two floors, both decoding (without conversion) every frame from the previous keyframe
        // up to the target plus one RGB conversion: (a) every frame at the sequential rate;
        // (b) the keyframe at its measured cost, the rest at the sequential rate.
        let (mut floor_a, mut floor_b) = (0.0, 0.0);
        for &i in &targets {
            let key = idx
                .keyframes
                .iter()
                .rev()
                .find(|&&k| k <= i)
                .copied()
                .unwrap_or(0);
            floor_a += (i - key + 1) as f64 * per_frame_raw + per_conversion;
            floor_b += per_key + (i - key) as f64 * per_frame_raw;
        }
        floor_a /= targets.len() as f64;
        floor_b /= targets.len() as f64;
        println!(
            "  random frame-exact access: {:.2} ms/frame; decoding forward from the keyframe {:.2} ms; ratio {:.2}x (goal <= 1.2)",
            random * 1e3,
            floor_a * 1e3,
            random / floor_a.max(1e-9)
        );
        println!(
            "    keyframe alone {:.2} ms (an average sequential frame + conversion: {:.2} ms); with the keyframe at that cost the floor is {:.2} ms, ratio {:.2}x",
            per_key * 1e3,
            (per_frame_raw + per_conversion) * 1e3,
            floor_b * 1e3,
            random / floor_b.max(1e-9)
        );

        let cache = FrameCache::new(1 << 30);
        let f = Arc::new(r.frame(n / 2).expect("frame"));
        cache.insert(1, f);
        let t = Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(cache.get(1, n / 2));
        }
        println!(
            "  cached frame: {:.3} µs (goal < 1 ms)",
            t.elapsed().as_secs_f64() * 1e6 / 10_000.0
        );
    }
}
