#![allow(clippy::needless_range_loop)] // frame indices are the point of these tests
//! Frame-exact decoding: frame i is the same pixels as FFmpeg's own decode of the i-th frame
//! (`ffmpeg -fps_mode passthrough -pix_fmt rgb24`), sequentially and in random order, for
//! several codecs and GOP structures made with FFmpeg's encoders, and for the real videos.

use crate::common;

use std::path::Path;
use std::process::Command;

use mgscope::media::decode::{build_index, FrameIndex, VideoReader};

/// All frames as FFmpeg's CLI decodes them, RGB24, presentation order, no frame dropped or
/// duplicated.
fn ffmpeg_frames(path: &Path) -> (Vec<Vec<u8>>, usize) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("run ffmpeg (installed by scripts/install-system-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = VideoReader::open(path).expect("open");
    let (w, h) = reader.index().display_size();
    let size = (w * h * 3) as usize;
    assert_eq!(
        out.stdout.len() % size,
        0,
        "{}: raw size vs {w}x{h}",
        path.display()
    );
    (out.stdout.chunks(size).map(<[u8]>::to_vec).collect(), size)
}

fn make(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]).args(args).arg(&p);
    let out = cmd.output().expect("ffmpeg");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn check_exact(path: &Path) -> usize {
    let (want, _) = ffmpeg_frames(path);
    let mut r = VideoReader::open(path).expect("open");
    assert_eq!(r.len(), want.len(), "{}: frame count", path.display());
    for (i, w) in want.iter().enumerate() {
        let f = r.frame(i).expect("sequential frame");
        assert!(
            f.data == *w,
            "{}: sequential frame {i} differs",
            path.display()
        );
    }
    // Random access in a fixed scrambled order, including backwards jumps and repeats.
    let n = want.len();
    let mut order: Vec<usize> = (0..n).map(|i| (i * 7919 + 13) % n).collect();
    order.extend([n - 1, 0, n / 2, n / 2, n / 2 + 1, 1]);
    for &i in &order {
        let f = r.frame(i).expect("random frame");
        assert_eq!(f.index, i);
        assert!(
            f.data == want[i],
            "{}: random-access frame {i} differs",
            path.display()
        );
    }
    n
}

const SRC: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=25:duration=3",
];

fn with_src(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = SRC.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn h264_with_b_frames_short_gops_mp4() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = make(
        tmp.path(),
        "b.mp4",
        &with_src(&[
            "-c:v", "libx264", "-bf", "3", "-g", "12", "-pix_fmt", "yuv420p",
        ]),
    );
    let idx = build_index(&p).expect("index");
    assert!(
        idx.keyframes.len() >= 6,
        "{} keyframes",
        idx.keyframes.len()
    );
    assert_eq!(check_exact(&p), 75);
}

#[test]
fn hevc_open_gop_mkv() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = make(
        tmp.path(),
        "h.mkv",
        &with_src(&[
            "-c:v",
            "libx265",
            "-x265-params",
            "keyint=16:min-keyint=16:bframes=4:open-gop=1:log-level=error",
            "-pix_fmt",
            "yuv420p",
        ]),
    );
    assert_eq!(check_exact(&p), 75);
}

#[test]
fn vp9_webm_and_mjpeg_avi_odd_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = make(
        tmp.path(),
        "v.webm",
        &with_src(&[
            "-c:v",
            "libvpx-vp9",
            "-g",
            "10",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ]),
    );
    assert_eq!(check_exact(&p), 75);
    let p = make(
        tmp.path(),
        "m.avi",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=321x241:rate=30:duration=1",
            "-c:v",
            "mjpeg",
            "-pix_fmt",
            "yuvj444p",
        ],
    );
    let r = VideoReader::open(&p).expect("open");
    assert_eq!(r.index().display_size(), (321, 241));
    assert_eq!(check_exact(&p), 30);
}

#[test]
fn variable_frame_rate_and_nonzero_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Irregular timestamps: gaps grow after frame 20; the stream starts at 7 s.
    let p = make(
        tmp.path(),
        "vfr.mkv",
        &with_src(&[
            "-vf",
            "setpts='(N+if(gt(N,20),N*N/20,0))/25/TB+7/TB'",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-bf",
            "2",
            "-g",
            "10",
        ]),
    );
    let idx = build_index(&p).expect("index");
    let gaps: Vec<i64> = idx.pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().max() > gaps.iter().min(),
        "timestamps are irregular"
    );
    assert!(idx.pts[0] > 0, "non-zero start");
    assert_eq!(check_exact(&p), 75);
}

#[test]
fn rotation_metadata_is_applied_like_ffmpeg() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plain = make(tmp.path(), "plain.mp4", &with_src(&["-c:v", "libx264"]));
    // FFmpeg 5.1 writes a display matrix from the `rotate` tag only when stream-copying.
    let p = make(
        tmp.path(),
        "rot.mp4",
        &[
            "-i",
            plain.to_str().expect("utf-8"),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
        ],
    );
    let idx = build_index(&p).expect("index");
    assert_eq!(idx.rotation % 180, 90, "rotation {}", idx.rotation);
    assert_eq!(idx.display_size(), (240, 320));
    assert_eq!(check_exact(&p), 75);
}

#[test]
fn real_videos_are_frame_exact() {
    let real = common::real_data();
    assert_eq!(check_exact(&real.join("single_face.mp4")), 72);
    assert_eq!(check_exact(&real.join("pose2sim-cam01.mp4")), 100);
}

#[test]
fn index_round_trips_through_bytes() {
    let real = common::real_data();
    let idx = build_index(&real.join("single_face.mp4")).expect("index");
    let b = idx.to_bytes();
    assert_eq!(FrameIndex::from_bytes(&b), Some(idx.clone()));
    assert_eq!(FrameIndex::from_bytes(&b[..b.len() - 1]), None);
    assert_eq!(FrameIndex::from_bytes(b"nope"), None);
}

#[test]
fn damaged_files_name_the_file_and_keep_what_decodes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    let e = VideoReader::open(&empty)
        .err()
        .expect("zero bytes")
        .to_string();
    assert!(e.contains("empty.mp4"), "{e}");
    let text = tmp.path().join("notes.mp4");
    std::fs::write(
        &text,
        b"this is not a video at all, just some text\n".repeat(100),
    )
    .expect("write");
    let e = VideoReader::open(&text)
        .err()
        .expect("not a video")
        .to_string();
    assert!(e.contains("notes.mp4"), "{e}");

    // Truncated mkv (streamable, so the demuxer reads up to the cut): the frames before the
    // cut decode exactly as FFmpeg decodes the intact file.
    let p = make(
        tmp.path(),
        "whole.mkv",
        &with_src(&["-c:v", "libx264", "-g", "10", "-bf", "2"]),
    );
    let (want, _) = ffmpeg_frames(&p);
    let bytes = std::fs::read(&p).expect("read");
    let cut = tmp.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let mut r = VideoReader::open(&cut).expect("a truncated file still opens");
    assert!(
        r.len() > 10 && r.len() < want.len(),
        "{} frames survive",
        r.len()
    );
    for i in 0..r.len().saturating_sub(4) {
        let f = r.frame(i).expect("frame before the damage");
        assert!(f.data == want[i], "frame {i}");
    }
    let e = r
        .frame(want.len() + 5)
        .expect_err("out of range")
        .to_string();
    assert!(e.contains("cut.mkv") && e.contains("out of range"), "{e}");
}

#[test]
fn prefetcher_fills_the_cache_around_the_cursor_with_exact_frames() {
    use mgscope::media::cache::{FrameCache, Prefetcher};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().expect("tmp");
    let p = make(
        tmp.path(),
        "b.mp4",
        &with_src(&["-c:v", "libx264", "-bf", "3", "-g", "12"]),
    );
    let (want, size) = ffmpeg_frames(&p);
    let idx = build_index(&p).expect("index");
    let cache = Arc::new(FrameCache::new(size * 20));
    let pf = Prefetcher::spawn(p.clone(), idx, cache.clone(), 10, 4, Box::new(|| {}));
    pf.set_cursor(40);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (36..=50).any(|i| !cache.contains(pf.key, i)) {
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch did not fill 36..=50"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for i in 36..=50 {
        let f = cache.get(pf.key, i).expect("cached");
        assert!(f.data == want[i], "prefetched frame {i}");
    }
    assert!(cache.bytes() <= size * 20);
    // Jump: the new window fills and the budget still holds.
    pf.set_cursor(5);
    while (5..=15).any(|i| !cache.contains(pf.key, i)) {
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch did not follow the cursor"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(cache.get(pf.key, 5).is_some_and(|f| f.data == want[5]));
    assert!(cache.len() <= 20);
    assert!(pf.take_errors().is_empty());
}

#[test]
fn probe_decode_cli_and_dataset_index_cache() {
    let tmp = tempfile::tempdir().expect("tmp");
    let real = common::real_data().join("single_face.mp4");
    let (want, _) = ffmpeg_frames(&real);
    let npy = tmp.path().join("f.npy");
    common::ok(&[
        "probe",
        "decode",
        common::s(&real),
        "--frame",
        "40",
        "--out",
        common::s(&npy),
    ]);
    let bytes = std::fs::read(&npy).expect("npy");
    assert!(bytes.starts_with(b"\x93NUMPY\x01\x00"));
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hlen]);
    assert!(header.contains("'shape': (360, 640, 3)"), "{header}");
    assert!(bytes[10 + hlen..] == want[40][..]);
    let png = tmp.path().join("f.png");
    common::ok(&[
        "probe",
        "decode",
        common::s(&real),
        "--frame",
        "71",
        "--out",
        common::s(&png),
    ]);
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));
    let e = common::fails(&[
        "probe",
        "decode",
        common::s(&real),
        "--frame",
        "72",
        "--out",
        common::s(&png),
    ]);
    assert!(
        e.contains("single_face.mp4") && e.contains("out of range"),
        "{e}"
    );

    // The demo's own H.264 (B-frames) is frame-exact too, and its index is cached in the dataset.
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    common::ok(&[
        "demo",
        common::s(&release),
        "--tiny",
        "--import",
        common::s(&ds_dir),
    ]);
    let ds = mgscope::store::Dataset::open(&ds_dir).expect("open");
    let v = ds.videos().expect("videos").remove(0);
    let (path, idx) = mgscope::media::dataset_index(&ds, &v).expect("index");
    assert_eq!(idx.len() as u32, v.n_frames);
    let stamp = mgscope::media::file_stamp(&path).expect("stamp");
    let cached = ds
        .cache_get(&v.vid, "frame_index", &stamp)
        .expect("get")
        .expect("cached");
    assert_eq!(FrameIndex::from_bytes(&cached), Some(idx.clone()));
    assert_eq!(
        mgscope::media::dataset_index(&ds, &v).expect("again").1,
        idx
    );
    check_exact(&path);
}
