//! The demo dataset: a few rendered press-conference videos in the iMiGUE release layout, so
//! every feature runs offline on first launch. `synth` makes the pixels and keypoints; this
//! module writes them the way the release ships them.

pub mod raster;
pub mod synth;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::dataset::skeleton::OPENPOSE_GROUPS;
use crate::dataset::Split;
use crate::{Error, Result};

pub use synth::{DemoConfig, Segment, VideoPlan};

/// What `write_demo` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub out: PathBuf,
    pub videos: usize,
    pub frames: u64,
    pub samples: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub with_video: bool,
}

/// Cross-subject split: the last subject is test, the one before it val, the rest train
/// (with two subjects: train and val).
pub fn split_of_subject(subject: usize, n_subjects: usize) -> Split {
    match n_subjects {
        0 | 1 => Split::Train,
        2 => {
            if subject == 1 {
                Split::Val
            } else {
                Split::Train
            }
        }
        n if subject == n - 1 => Split::Test,
        n if subject == n - 2 => Split::Val,
        _ => Split::Train,
    }
}

/// Writes the demo release into `out`: per video `{VID}/{VID}.mp4`, `{VID}_openpose.xlsx`,
/// `{VID}_openpose.csv`, `{VID}_label.csv`; plus `subjects.csv` and MM-Gesture-style
/// `iMiGUE_{train,val,test}_clips_list.txt`. `progress` is called with (videos done, total).
pub fn write_demo(
    cfg: &DemoConfig,
    out: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<DemoReport> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let plans = synth::plan(cfg);
    let n_subjects = plans.iter().map(|p| p.subject).max().map_or(0, |m| m + 1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(plans.len().max(1));
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(plan) = plans.get(i) else {
                            return Ok(());
                        };
                        write_video(cfg, plan, &out.join(&plan.vid))?;
                        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                        progress(d, plans.len());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a demo worker thread panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }

    let mut lists: [(Split, String); 3] = [
        (Split::Train, String::new()),
        (Split::Val, String::new()),
        (Split::Test, String::new()),
    ];
    let mut subjects = String::from("vid,subject\n");
    let mut samples = 0;
    let tax = crate::dataset::Taxonomy::imigue();
    for p in &plans {
        subjects.push_str(&format!("{},subject{:02}\n", p.vid, p.subject));
        let split = split_of_subject(p.subject, n_subjects);
        for (row, s) in p.segments.iter().enumerate() {
            let label = tax.from_raw(s.raw_class).unwrap_or(0);
            if let Some((_, text)) = lists.iter_mut().find(|(sp, _)| *sp == split) {
                text.push_str(&format!("{}_{row}.mp4 {label}\n", p.vid));
            }
            samples += 1;
        }
    }
    write_file(&out.join("subjects.csv"), subjects.as_bytes())?;
    for (split, text) in &lists {
        write_file(
            &out.join(format!("iMiGUE_{}_clips_list.txt", split.as_str())),
            text.as_bytes(),
        )?;
    }
    write_file(
        &out.join("README.txt"),
        format!(
            "mgscope demo dataset (seed {}): {} videos of a rendered seated figure, iMiGUE release layout.\n\
             Import it with: mgscope import --format imigue {} DATASET_DIR\n",
            cfg.seed,
            plans.len(),
            out.display()
        )
        .as_bytes(),
    )?;
    Ok(DemoReport {
        out: out.to_path_buf(),
        videos: plans.len(),
        frames: plans.iter().map(|p| u64::from(p.n_frames)).sum(),
        samples,
        bytes: dir_size(out),
        seconds: started.elapsed().as_secs_f64(),
        with_video: cfg!(feature = "video"),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn write_video(cfg: &DemoConfig, plan: &VideoPlan, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let vid = &plan.vid;

    let label_path = dir.join(format!("{vid}_label.csv"));
    let mut labels = String::new();
    for s in &plan.segments {
        labels.push_str(&format!("{},{},{}\n", s.raw_class, s.start, s.end));
    }
    write_file(&label_path, labels.as_bytes())?;

    let csv_path = dir.join(format!("{vid}_openpose.csv"));
    let xlsx_path = dir.join(format!("{vid}_openpose.xlsx"));
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&csv_path).map_err(|e| Error::io(&csv_path, e))?,
    );
    let mut book = rust_xlsxwriter::Workbook::new();
    let xerr = |e: rust_xlsxwriter::XlsxError| Error::format(&xlsx_path, "workbook", e.to_string());
    let sheet = book.add_worksheet_with_constant_memory().map_err(xerr)?;

    #[cfg(feature = "video")]
    let mut writer = crate::media::H264Writer::create(
        &dir.join(format!("{vid}.mp4")),
        cfg.width,
        cfg.height,
        cfg.fps,
        20,
    )?;
    #[cfg(feature = "video")]
    let mut rgb = vec![0u8; cfg.width as usize * cfg.height as usize * 3];
    #[cfg(not(feature = "video"))]
    let _ = cfg;

    let mut line = String::with_capacity(OPENPOSE_GROUPS * 3 * 8);
    for i in 0..plan.n_frames {
        #[cfg(feature = "video")]
        {
            plan.render(i, &mut rgb);
            writer.write_rgb(&rgb)?;
        }
        let kp = plan.keypoints(i);
        line.clear();
        for (g, p) in kp.iter().enumerate() {
            for (d, v) in p.iter().enumerate() {
                // Two decimals, as OpenPose's own exports carry; the xlsx holds the same value.
                let v = (f64::from(*v) * 100.0).round() / 100.0;
                sheet.write_number(i, (g * 3 + d) as u16, v).map_err(xerr)?;
                if g + d > 0 {
                    line.push(',');
                }
                line.push_str(&format!("{v}"));
            }
        }
        line.push('\n');
        csv.write_all(line.as_bytes())
            .map_err(|e| Error::io(&csv_path, e))?;
    }
    csv.flush().map_err(|e| Error::io(&csv_path, e))?;
    book.save(&xlsx_path).map_err(xerr)?;
    #[cfg(feature = "video")]
    writer.finish()?;
    Ok(())
}
