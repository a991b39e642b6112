//! UI frame time of the app with all six panes visible while a demo clip plays.
//!
//! ```text
//! cargo bench --bench ui -- [--frames 300]
//! ```
//!
//! 1. The app's own work per frame (its whole `ui` and tessellation, no drawing), through
//!    egui_kittest: what the app costs, whatever renders it.
//! 2. With a display (`DISPLAY`, e.g. Xvfb), the real window: `mgscope gui` measuring itself
//!    (`MGSCOPE_FRAME_STATS`, see src/app/frame_stats.rs) idle and with a training run and an
//!    extraction on background threads (`MGSCOPE_FRAME_LOAD=1`). It reports eframe's frame
//!    time (ui, tessellation, wgpu paint and present, without vsync waits) and the wall-clock
//!    interval between frames under continuous repaint.
//!
//! Goals (issue 6): p95 ≤ 16.7 ms idle, ≤ 33 ms under load.

use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;

use mgscope::app::MgApp;
use mgscope::dataset::import::{import, Format};
use mgscope::render::PaneKind;
use mgscope::store::Dataset;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(h: &mut Harness<'_, MgApp>, frames: usize, render: bool) -> (f64, f64, f64) {
    let mut ms = Vec::with_capacity(frames);
    for _ in 0..frames {
        let t = Instant::now();
        h.step();
        if render {
            if let Err(e) = h.render() {
                eprintln!("render failed: {e}");
            }
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        // A window paces itself to the display; keep to ~60 Hz so playback is real time.
        if let Some(rest) = Duration::from_millis(16).checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    ms.sort_by(f64::total_cmp);
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        percentile(&ms, 1.0),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let frames = args
        .iter()
        .position(|a| a == "--frames")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300usize);
    // `--panes N`: only the first N panes (to see what each costs); `--render`: add kittest's wgpu
    // draw and read-back of the whole window to each frame.
    let panes = args
        .iter()
        .position(|a| a == "--panes")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(6usize)
        .clamp(1, 6);
    let render = args.iter().any(|a| a == "--render");
    let tmp = tempfile::tempdir()?;
    let release = tmp.path().join("release");
    mgscope::demo::write_demo(&mgscope::demo::DemoConfig::tiny(), &release, &|_, _| {})?;
    let root = tmp.path().join("ds");
    {
        let mut ds = Dataset::open_or_create(&root, "imigue")?;
        import(Format::Imigue, &release, &mut ds, &Default::default())?;
    }
    let r = root.clone();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_eframe(move |cc| MgApp::new(cc, Some(r), None));
    h.state_mut().show_panes(&PaneKind::ALL[..panes]);
    h.step();
    h.key_press(egui::Key::ArrowDown);
    let t = Instant::now();
    while (h.state().open_clip().and_then(|c| c.1).is_none() || h.state().panes_busy())
        && t.elapsed() < Duration::from_secs(120)
    {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.key_press(egui::Key::Space);
    h.step();
    if !h.state().playing() {
        return Err("the clip did not start playing".into());
    }
    let (p50, p95, max) = measure(&mut h, frames, render);
    println!(
        "app logic, {panes} panes playing{}: p50 {p50:.1} ms  p95 {p95:.1} ms  max {max:.1} ms  ({frames} frames)",
        if render { ", with kittest's wgpu render + read-back" } else { "" }
    );
    drop(h);
    if std::env::var_os("DISPLAY").is_none() {
        println!("no DISPLAY: the real-window figures need one (xvfb-run cargo bench --bench ui)");
    } else {
        for load in [false, true] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgscope"))
                .arg("gui")
                .arg(&root)
                .env("HOME", tmp.path())
                .env("MGSCOPE_FRAME_STATS", frames.to_string())
                .env("MGSCOPE_FRAME_LOAD", if load { "1" } else { "0" })
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().rev().find(|l| l.starts_with('{')) {
                Some(l) => println!(
                    "real window, {}: {l}",
                    if load {
                        "training + extraction running"
                    } else {
                        "idle background"
                    }
                ),
                None => println!(
                    "real window: no figures ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    println!("goals: p95 <= 16.7 ms idle, <= 33 ms under load (issue 6)");
    Ok(())
}
