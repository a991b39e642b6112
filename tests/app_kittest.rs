//! The real app driven through egui_kittest with its wgpu renderer (Mesa's lavapipe here): a
//! tiny demo dataset with two stored score streams; selecting, stepping frames, relabeling
//! from the keyboard, undo, the ensemble slider (a drag as one undo step, presets), and what the
//! panes draw.
#![cfg(feature = "gui")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

use mgscope::app::MgApp;
use mgscope::dataset::import::{import, Format};
use mgscope::dataset::Split;
use mgscope::ensemble::fusion::Fusion;
use mgscope::ensemble::metrics::evaluate;
use mgscope::ensemble::search::{kfold, Control, Method, Objective};
use mgscope::ensemble::stream::{CompositeStream, Stream};
use mgscope::store::{Dataset, StoredStream};

/// Scores that favour class `(label + shift) % C` with strength `sharp`, plus a fixed ripple.
fn stream(
    name: &str,
    ids: &[String],
    labels: &[Option<u32>],
    shift: u32,
    sharp: f32,
) -> StoredStream {
    let c = 32;
    let mut probs = Vec::with_capacity(ids.len() * c);
    for (i, l) in labels.iter().enumerate() {
        let target = l.map(|l| (l + shift) % c as u32).unwrap_or(0) as usize;
        let mut row: Vec<f32> = (0..c)
            .map(|k| {
                1.0 + ((i * 31 + k * 17) % 23) as f32 / 10.0 + if k == target { sharp } else { 0.0 }
            })
            .collect();
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
        probs.extend(row);
    }
    StoredStream {
        name: name.into(),
        classes: c,
        clip_ids: ids.to_vec(),
        probs,
        source: "test".into(),
        report: "{}".into(),
    }
}

fn val_samples(ds: &Dataset) -> Vec<mgscope::dataset::Sample> {
    ds.samples()
        .expect("samples")
        .into_iter()
        .filter(|s| s.split == Split::Val)
        .collect()
}

fn demo_dataset(dir: &Path) -> PathBuf {
    let release = dir.join("release");
    mgscope::demo::write_demo(&mgscope::demo::DemoConfig::tiny(), &release, &|_, _| {})
        .expect("demo");
    let root = dir.join("ds");
    let mut ds = Dataset::open_or_create(&root, "imigue").expect("dataset");
    import(Format::Imigue, &release, &mut ds, &Default::default()).expect("import");
    let val = val_samples(&ds);
    assert!(val.len() >= 4, "the tiny demo has {} val clips", val.len());
    let ids: Vec<String> = val.iter().map(|s| s.clip_id.clone()).collect();
    let labels: Vec<Option<u32>> = val.iter().map(|s| s.label).collect();
    // "good" is mostly right, "shifted" mostly one class off: weights change top-1.
    ds.put_stream(&stream("good", &ids, &labels, 0, 0.9))
        .expect("stream");
    ds.put_stream(&stream("shifted", &ids, &labels, 1, 2.0))
        .expect("stream");
    root
}

/// The engine's fusion of every stored stream over the val clips, as the Ensemble tab builds it.
fn val_fusion(root: &Path) -> Fusion {
    let ds = Dataset::open(root).expect("open");
    let val = val_samples(&ds);
    let streams = ds
        .stream_names()
        .expect("names")
        .iter()
        .map(|n| {
            Stream::Single(
                ds.load_stream(n)
                    .expect("load")
                    .to_stream()
                    .expect("stream"),
            )
        })
        .collect();
    Fusion::new(
        val.iter().map(|s| s.clip_id.clone()).collect(),
        val.iter().map(|s| s.label).collect(),
        streams,
    )
    .expect("fusion")
}

fn harness(root: &Path) -> Harness<'static, MgApp> {
    let root = root.to_path_buf();
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_eframe(move |cc| MgApp::new(cc, Some(root), None))
}

/// Steps the app (background jobs run on their own threads) until `done` holds.
fn wait_for(h: &mut Harness<'_, MgApp>, what: &str, done: impl Fn(&MgApp) -> bool) {
    let t = Instant::now();
    while !done(h.state()) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

/// The app on `root` with the Ensemble tab open.
fn ensemble_tab(root: &Path) -> Harness<'static, MgApp> {
    let mut h = harness(root);
    h.step();
    h.get_by_label("Ensemble").click();
    h.run_steps(3);
    h
}

/// Ctrl+Shift+Z.
fn redo(h: &mut Harness<'_, MgApp>) {
    h.key_press_modifiers(
        egui::Modifiers::COMMAND.plus(egui::Modifiers::SHIFT),
        egui::Key::Z,
    );
    h.run_steps(2);
}

/// Types `name` into the preset field, saves, and reads the preset back from the store.
fn save_preset_via_ui(
    h: &mut Harness<'_, MgApp>,
    root: &Path,
    name: &str,
) -> mgscope::store::LoadedPreset {
    h.get_by_label("Preset name").click();
    h.run_steps(2);
    h.get_by_label("Preset name").type_text(name);
    h.run_steps(2);
    h.get_by_label("Save preset").click();
    h.run_steps(2);
    Dataset::open(root)
        .expect("open")
        .load_preset(name)
        .expect("the preset is in the dataset")
}

fn shown(app: &MgApp) -> Option<(String, u32)> {
    app.open_clip().and_then(|(c, f)| Some((c.to_string(), f?)))
}

#[test]
fn select_step_relabel_undo_through_the_keyboard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = demo_dataset(tmp.path());
    let first = Dataset::open(&root)
        .expect("open")
        .samples()
        .expect("samples")[0]
        .clone();
    let mut h = harness(&root);
    h.step();

    h.key_press(egui::Key::ArrowDown);
    wait_for(&mut h, "the first frame", |a| shown(a).is_some());
    assert_eq!(shown(h.state()), Some((first.clip_id.clone(), first.start)));
    assert!(h
        .query_by_label_contains(&format!("— frame {} (", first.start))
        .is_some());

    h.key_press(egui::Key::ArrowRight);
    wait_for(&mut h, "the next frame", |a| {
        shown(a).is_some_and(|(_, f)| f == first.start + 1)
    });
    assert!(h
        .query_by_label_contains(&format!("— frame {} (", first.start + 1))
        .is_some());

    // Two digits then Enter assign a class; the store has it before the screen does.
    let old = first.label.expect("labelled");
    let new = if old == 12 { 13 } else { 12 };
    for d in new.to_string().chars() {
        let key = egui::Key::from_name(&d.to_string()).expect("digit key");
        h.key_press(key);
    }
    h.key_press(egui::Key::Enter);
    h.step();
    let ds = Dataset::open(&root).expect("reopen");
    assert_eq!(ds.sample(&first.clip_id).expect("sample").label, Some(new));
    let hist = ds.history(Some(&first.clip_id)).expect("history");
    assert_eq!(hist.len(), 1, "{hist:?}");
    drop(ds);

    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    let ds = Dataset::open(&root).expect("reopen");
    assert_eq!(ds.sample(&first.clip_id).expect("sample").label, Some(old));
}

#[test]
fn moving_a_weight_slider_shows_the_engines_top1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = demo_dataset(tmp.path());
    let mut h = ensemble_tab(&root);

    // The engine's own figures for the weights the test sets.
    let fusion = val_fusion(&root);
    let top1 = |w: &[f32]| {
        evaluate(&fusion.fused(w).expect("fused"), 32, fusion.labels())
            .expect("metrics")
            .top1
    };
    let names = fusion.stream_names().to_vec();
    let good = names.iter().position(|n| n == "good").expect("good");
    let equal = top1(&[0.5, 0.5]);
    assert!((h.state().ensemble_top1().expect("top-1") - equal).abs() < 1e-12);

    let sliders: Vec<_> = h.get_all_by_role(egui::accesskit::Role::Slider).collect();
    assert_eq!(sliders.len(), 2, "one slider per stream");
    // All weight on the shifted stream: top-1 drops to what the engine says.
    sliders[good].set_value_accesskit(0.0);
    h.run_steps(2);
    let mut w = vec![0.5f32; 2];
    w[good] = 0.0;
    assert_eq!(h.state().ensemble_weights(), &w[..]);
    let expected = top1(&w);
    assert!(
        expected < equal,
        "the shifted stream alone should be worse: {expected} vs {equal}"
    );
    assert_eq!(h.state().ensemble_top1(), Some(expected));
    let shown = format!("top-1 {:.2} %", expected * 100.0);
    assert!(
        h.query_by_label_contains(&shown).is_some(),
        "the tab should read {shown:?}"
    );

    // "Search weights" runs the engine's k-fold search as a job and shows what it says.
    h.get_by_label("Search weights").click();
    h.run_steps(2);
    let t = Instant::now();
    while h.query_by_label("Search weights").is_none()
        || h.query_by_label_contains("searching").is_some()
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the search did not finish"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
    let engine = kfold(
        &fusion,
        5,
        0,
        &Method::Grid { step: 0.05 },
        Objective::Top1,
        &Control::quiet(),
    );
    let text = match &engine {
        Ok(r) => format!(
            "tuned top-1 {:.2} % on all labelled clips; 5-fold held-out {:.2} ± {:.2} %",
            r.tuned.score * 100.0,
            r.heldout_mean * 100.0,
            r.heldout_stderr * 100.0
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        h.query_by_label_contains(&text).is_some(),
        "the tab should read {text:?}"
    );
    if let Ok(r) = engine {
        h.get_by_label("Apply the tuned weights").click();
        h.run_steps(2);
        assert_eq!(h.state().ensemble_weights(), &r.tuned.weights[..]);
        assert_eq!(h.state().ensemble_top1(), Some(r.tuned.score));
    }
}

#[test]
fn a_slider_drag_is_one_undo_step_and_a_preset_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = demo_dataset(tmp.path());
    let fusion = val_fusion(&root);
    let engine = |w: &[f32]| {
        evaluate(&fusion.fused(w).expect("fused"), 32, fusion.labels()).expect("metrics")
    };
    let names = fusion.stream_names().to_vec();
    let good = names.iter().position(|n| n == "good").expect("good");
    let shifted = 1 - good;
    let mut h = ensemble_tab(&root);
    let before = h.state().ensemble_weights().to_vec();
    assert_eq!(before, [0.5, 0.5]);

    // Press on the good stream's rail, move in several steps, release.
    let rail = h
        .get_all_by_role(egui::accesskit::Role::Slider)
        .collect::<Vec<_>>()[good]
        .rect();
    let at = |f: f32| egui::pos2(rail.left() + f * rail.width(), rail.center().y);
    h.hover_at(at(0.5));
    h.step();
    h.drag_at(at(0.5));
    h.step();
    let mut seen = Vec::new();
    for f in [0.4, 0.3, 0.2, 0.12] {
        h.hover_at(at(f));
        h.step();
        let w = h.state().ensemble_weights()[good];
        // The figures follow the pointer during the drag, not only at the release.
        assert_eq!(
            h.state().ensemble_top1(),
            Some(engine(h.state().ensemble_weights()).top1)
        );
        seen.push(w);
    }
    h.drop_at(at(0.12));
    h.run_steps(2);
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "the drag should pass several values: {seen:?}"
    );
    let dragged = h.state().ensemble_weights().to_vec();
    assert!(dragged[good] < 0.3, "{dragged:?}");
    assert_eq!(dragged[shifted], 0.5);
    assert_eq!(
        h.state().ensemble_undo_depth(),
        1,
        "the whole drag is one step"
    );
    let shown = format!("top-1 {:.2} %", engine(&dragged).top1 * 100.0);
    assert!(h.query_by_label_contains(&shown).is_some(), "{shown:?}");

    // One Ctrl+Z restores the weight from before the drag, and the engine's top-1 with it.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().ensemble_weights(), &before[..]);
    let equal = engine(&before);
    assert_eq!(h.state().ensemble_top1(), Some(equal.top1));
    let shown = format!(
        "top-1 {:.2} % (+0.00 pts vs equal weights)",
        equal.top1 * 100.0
    );
    assert!(h.query_by_label(&shown).is_some(), "{shown:?}");
    assert!(h
        .state()
        .status()
        .starts_with("undid weight of 'good' 0.50 ->"));
    // Ctrl+Shift+Z brings the drag back as a whole.
    redo(&mut h);
    assert_eq!(h.state().ensemble_weights(), &dragged[..]);

    // Save these weights as a preset; the store has them and the figures compare with them.
    let saved = save_preset_via_ui(&mut h, &root, "kit");
    let by_name = |w: &[f32]| {
        names
            .iter()
            .zip(w)
            .map(|(n, w)| mgscope::store::PresetTerm::stream(n.clone(), *w))
            .collect::<Vec<_>>()
    };
    assert_eq!(saved.terms, by_name(&dragged));
    assert!(saved.missing.is_empty());
    assert_eq!(h.state().ensemble_compared_preset(), Some("kit"));
    let at_kit = engine(&dragged);
    assert!(h
        .query_by_label(&format!(
            "top-1 {:.2} % (+0.00 pts vs 'kit')",
            at_kit.top1 * 100.0
        ))
        .is_some());

    // Move the other stream: the change against the preset is the engine's difference.
    h.get_all_by_role(egui::accesskit::Role::Slider)
        .collect::<Vec<_>>()[shifted]
        .set_value_accesskit(0.0);
    h.run_steps(2);
    let moved = h.state().ensemble_weights().to_vec();
    assert_eq!(moved[shifted], 0.0);
    assert_eq!(
        h.state().ensemble_undo_depth(),
        2,
        "a set value is one step"
    );
    let now = engine(&moved);
    for text in [
        format!(
            "top-1 {:.2} % ({:+.2} pts vs 'kit')",
            now.top1 * 100.0,
            (now.top1 - at_kit.top1) * 100.0
        ),
        format!(
            "mean class acc {:.2} % ({:+.2} pts vs 'kit')",
            now.mean_class_accuracy * 100.0,
            (now.mean_class_accuracy - at_kit.mean_class_accuracy) * 100.0
        ),
    ] {
        assert!(
            h.query_by_label(&text).is_some(),
            "the tab should read {text:?}"
        );
    }

    // Compare with equal weights through the picker, pick the preset again, load it.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "compare with")
        .click();
    h.run_steps(2);
    h.get_by_label("equal weights").click();
    h.run_steps(2);
    assert_eq!(h.state().ensemble_compared_preset(), None);
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "compare with")
        .click();
    h.run_steps(2);
    h.get_by_label("kit").click();
    h.run_steps(2);
    assert_eq!(h.state().ensemble_compared_preset(), Some("kit"));
    assert_eq!(
        h.state().ensemble_weights(),
        &moved[..],
        "choosing only compares"
    );
    h.get_by_label("Load").click();
    h.run_steps(2);
    assert_eq!(h.state().ensemble_weights(), &dragged[..]);
    assert_eq!(h.state().ensemble_undo_depth(), 3, "a load is one step");
    assert_eq!(h.state().ensemble_top1(), Some(at_kit.top1));
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().ensemble_weights(), &moved[..]);
    drop(h);

    // A new window on the dataset compares with the preset loaded last and has the sliders
    // where they were left.
    let h = ensemble_tab(&root);
    assert_eq!(h.state().ensemble_compared_preset(), Some("kit"));
    assert_eq!(h.state().ensemble_weights(), &moved[..]);
    assert_eq!(h.state().ensemble_top1(), Some(now.top1));
}

#[test]
fn the_panes_render_the_clip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = demo_dataset(tmp.path());
    let mut h = harness(&root);
    h.step();
    h.key_press(egui::Key::ArrowDown);
    wait_for(&mut h, "the first frame", |a| shown(a).is_some());
    // Let the per-clip job finish (heatmaps, Taylor, flow of a short clip).
    wait_for(&mut h, "the panes' job", |a| !a.panes_busy());
    h.run_steps(3);
    let img = h.render().expect("render");
    // The pane area of the 1280×800 window (under the pane toolbar, left of the tabs).
    let (x0, y0, w, hgt) = (396u32, 170u32, 516u32, 445u32);
    let mut region = Vec::with_capacity((w * hgt * 3) as usize);
    let mut colourful = 0usize;
    for y in y0..y0 + hgt {
        for x in x0..x0 + w {
            let p = img.get_pixel(x, y).0;
            region.extend_from_slice(&p[..3]);
            let spread = p[0].max(p[1]).max(p[2]) - p[0].min(p[1]).min(p[2]);
            colourful += usize::from(spread > 60);
        }
    }
    // RGB, flow, Taylor and heatmap pixels, not the window's flat greys.
    assert!(
        colourful > 20_000,
        "only {colourful} coloured pixels: the panes drew nothing"
    );
    compare_snapshot("panes_demo_clip", &region, w, hgt);
}

/// Holds `rgb` to `tests/snapshots/NAME.png` (written when UPDATE_SNAPSHOTS is set): at most
/// 1 % of the pixels may differ by more than 16 levels in a channel (fonts and filtering may
/// move by a level between Mesa versions; a missing or misplaced pane moves thousands).
fn compare_snapshot(name: &str, rgb: &[u8], w: u32, h: u32) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.png"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let img = image::RgbImage::from_raw(w, h, rgb.to_vec()).expect("image");
        img.save(&path).expect("write snapshot");
        return;
    }
    let want = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()))
        .to_rgb8();
    assert_eq!(want.dimensions(), (w, h), "{}", path.display());
    let differing = want
        .as_raw()
        .chunks_exact(3)
        .zip(rgb.chunks_exact(3))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 16))
        .count();
    let share = differing as f64 / (w * h) as f64;
    if share > 0.01 {
        let got = path.with_extension("new.png");
        let _ = image::RgbImage::from_raw(w, h, rgb.to_vec()).map(|i| i.save(&got));
        panic!(
            "{:.2} % of the pixels differ from {} (this run's image: {})",
            share * 100.0,
            path.display(),
            got.display()
        );
    }
}

/// The demo dataset with, besides "good" and "shifted", the two heads of one RGBPose model as
/// `mgscope predict --register rp` stores them: a sound rgb head and a pose head that is
/// confidently two classes off.
fn demo_with_heads(dir: &Path) -> PathBuf {
    let root = demo_dataset(dir);
    let mut ds = Dataset::open(&root).expect("open");
    let val = val_samples(&ds);
    let ids: Vec<String> = val.iter().map(|s| s.clip_id.clone()).collect();
    let labels: Vec<Option<u32>> = val.iter().map(|s| s.label).collect();
    ds.put_stream(&stream("rp.rgb", &ids, &labels, 0, 1.2))
        .expect("stream");
    ds.put_stream(&stream("rp.pose", &ids, &labels, 2, 3.0))
        .expect("stream");
    root
}

/// The engine's figures for good, rp = (inner pose · pose + inner rgb · rgb), shifted: the
/// composite built as `CompositeStream` and fused by `Fusion`, in the tab's order.
fn composite_top1_parts(root: &Path, outer: &[f32], pose: f32, rgb: f32) -> f64 {
    let ds = Dataset::open(root).expect("open");
    let val = val_samples(&ds);
    let load = |n: &str| {
        ds.load_stream(n)
            .expect("load")
            .to_stream()
            .expect("stream")
    };
    let rp = CompositeStream::new("rp", vec![(load("rp.pose"), pose), (load("rp.rgb"), rgb)])
        .expect("composite");
    let f = Fusion::new(
        val.iter().map(|s| s.clip_id.clone()).collect(),
        val.iter().map(|s| s.label).collect(),
        vec![
            Stream::Single(load("good")),
            Stream::Composite(rp),
            Stream::Single(load("shifted")),
        ],
    )
    .expect("fusion");
    evaluate(&f.fused(outer).expect("fused"), 32, f.labels())
        .expect("metrics")
        .top1
}

fn inner(h: &Harness<'_, MgApp>) -> Vec<f32> {
    h.state()
        .ensemble_inner_weights("rp")
        .expect("the composite")
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

#[test]
fn inner_sliders_of_a_composite_show_the_engines_top1_and_undo_as_one_step() {
    use egui::accesskit::Role;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = demo_with_heads(tmp.path());
    let mut h = ensemble_tab(&root);
    assert_eq!(h.state().ensemble_weights(), &[0.25; 4]);
    assert_eq!(h.get_all_by_role(Role::Slider).count(), 4, "flat at first");

    // The tab offers the two heads as one model; grouping is one step.
    h.get_by_label("Group as 'rp'").click();
    h.run_steps(2);
    assert_eq!(h.state().ensemble_weights(), &[0.25, 0.5, 0.25]);
    // rp.pose sorts before rp.rgb, so it is the first part.
    let parts: Vec<String> = h
        .state()
        .ensemble_inner_weights("rp")
        .expect("composite")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(parts, ["rp.pose", "rp.rgb"]);
    assert_eq!(inner(&h), [0.5, 0.5]);
    assert_eq!(h.state().ensemble_undo_depth(), 1);
    assert_eq!(
        h.get_all_by_role(Role::Slider).count(),
        5,
        "three outer sliders and two inner ones"
    );
    let outer = [0.25, 0.5, 0.25];
    // Engine order: (pose, rgb) as the tab holds them.
    let engine = |pose: f32, rgb: f32| composite_top1_parts(&root, &outer, pose, rgb);
    let grouped = engine(0.5, 0.5);
    assert_eq!(h.state().ensemble_top1(), Some(grouped));

    // The pose head to 0: the composite is the rgb head alone, top-1 is the engine's.
    h.get_by_role_and_label(Role::Slider, "rp.pose")
        .set_value_accesskit(0.0);
    h.run_steps(2);
    assert_eq!(inner(&h), [0.0, 0.5]);
    let no_pose = engine(0.0, 0.5);
    assert!(
        no_pose > grouped,
        "without the shifted pose head top-1 should rise: {no_pose} vs {grouped}"
    );
    assert_eq!(h.state().ensemble_top1(), Some(no_pose));
    let shown = format!("top-1 {:.2} %", no_pose * 100.0);
    assert!(h.query_by_label_contains(&shown).is_some(), "{shown:?}");
    assert_eq!(
        h.state().ensemble_undo_depth(),
        2,
        "a set value is one step"
    );

    // A drag on the rgb head's inner slider: the figures follow it, one undo step in all.
    let rail = h.get_by_role_and_label(Role::Slider, "rp.rgb").rect();
    let at = |f: f32| egui::pos2(rail.left() + f * rail.width(), rail.center().y);
    h.hover_at(at(0.5));
    h.step();
    h.drag_at(at(0.5));
    h.step();
    let mut seen = Vec::new();
    for f in [0.6, 0.7, 0.8, 0.9] {
        h.hover_at(at(f));
        h.step();
        let w = inner(&h);
        assert_eq!(h.state().ensemble_top1(), Some(engine(w[0], w[1])));
        seen.push(w[1]);
    }
    h.drop_at(at(0.9));
    h.run_steps(2);
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "the drag should pass several values: {seen:?}"
    );
    let dragged = inner(&h);
    assert!(dragged[1] > 0.75, "{dragged:?}");
    assert_eq!(
        h.state().ensemble_undo_depth(),
        3,
        "the whole drag is one step"
    );
    assert_eq!(h.state().ensemble_weights(), &outer);

    // One Ctrl+Z takes the drag back, inner weight and figures with it.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(inner(&h), [0.0, 0.5]);
    assert_eq!(h.state().ensemble_top1(), Some(no_pose));
    assert!(
        h.state()
            .status()
            .starts_with("undid weight of 'rp.rgb' in 'rp' 0.50 ->"),
        "{}",
        h.state().status()
    );
    redo(&mut h);
    assert_eq!(inner(&h), dragged);

    // Saved as a preset, the composite and its sub-weights are in the store.
    let saved = save_preset_via_ui(&mut h, &root, "heads");
    let rp = saved
        .terms
        .iter()
        .find(|t| t.name == "rp")
        .expect("the composite term");
    assert_eq!(rp.weight, 0.5);
    assert_eq!(
        rp.parts,
        vec![
            ("rp.pose".to_string(), 0.0),
            ("rp.rgb".to_string(), dragged[1])
        ]
    );
    assert_eq!(saved.terms, h.state().ensemble_terms());
    let at_heads = h.state().ensemble_top1();

    // Undo the grouping itself, then load the preset: the composite comes back as one step.
    for _ in 0..3 {
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
        h.run_steps(2);
    }
    assert!(h.state().ensemble_inner_weights("rp").is_none());
    assert_eq!(h.state().ensemble_weights(), &[0.25; 4]);
    h.get_by_label("Load").click();
    h.run_steps(2);
    assert_eq!(h.state().ensemble_terms(), saved.terms);
    assert_eq!(h.state().ensemble_top1(), at_heads);
    drop(h);

    // A new window opens on the composite as it was left.
    let h = ensemble_tab(&root);
    assert_eq!(h.state().ensemble_terms(), saved.terms);
    assert_eq!(h.state().ensemble_top1(), at_heads);
    assert_eq!(h.get_all_by_role(Role::Slider).count(), 5);
}
