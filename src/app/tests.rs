//! The app's keyboard path and command dispatch on a small dataset without media.

use super::clip_view::{ClipView, Transport};
use super::commands::{CommandId as C, COMMANDS};
use super::*;
use crate::dataset::{NewSample, NewVideo};
use crate::store::ImportReport;

/// Two videos: 0001 with samples at 0..29, 30..59, 60..89 (train, val, train) and 0002 with
/// 0..49, 50..99 (train, test).
fn app() -> (tempfile::TempDir, MgApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut ds = Dataset::open_or_create(dir.path(), "imigue").expect("create");
        let video = |vid: &str, spans: &[(u32, u32, Split)]| NewVideo {
            vid: vid.into(),
            subject: "s1".into(),
            media_path: None,
            n_frames: 200,
            width: Some(64),
            height: Some(36),
            fps: Some(25.0),
            keypoints: None,
            samples: spans
                .iter()
                .enumerate()
                .map(|(i, &(start, end, split))| NewSample {
                    clip_id: format!("{vid}_{i}"),
                    row_index: i as u32,
                    start,
                    end,
                    label: Some(i as u32),
                    split,
                })
                .collect(),
        };
        let mut rep = ImportReport::default();
        ds.add_video(
            &video(
                "0001",
                &[
                    (0, 29, Split::Train),
                    (30, 59, Split::Val),
                    (60, 89, Split::Train),
                ],
            ),
            &mut rep,
        )
        .expect("add 0001");
        ds.add_video(
            &video("0002", &[(0, 49, Split::Train), (50, 99, Split::Test)]),
            &mut rep,
        )
        .expect("add 0002");
    }
    let mut app = MgApp::default();
    app.open(dir.path());
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.samples.len(), 5);
    (dir, app)
}

fn clip_ids(app: &MgApp) -> Option<&str> {
    app.current().map(|s| s.clip_id.as_str())
}

/// Selects a sample by clip id and gives it a clip view standing in for the video.
fn open(app: &mut MgApp, clip: &str, ctx: &egui::Context) {
    let i = app.samples.iter().position(|s| s.clip_id == clip);
    app.select(i, ctx);
    let s = app.current().cloned().expect("sample");
    app.clip = Some(ClipView::for_test(&s, 200));
}

#[test]
fn page_down_and_up_follow_the_filtered_order() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    app.split_filter = Some(Split::Train);
    let mut seen = Vec::new();
    for _ in 0..4 {
        app.run_command(C::NextSample, None, &ctx);
        seen.push(clip_ids(&app).unwrap_or_default().to_string());
    }
    // The val and test samples are filtered out; the last one stays selected at the end.
    assert_eq!(seen, ["0001_0", "0001_2", "0002_0", "0002_0"]);
    app.run_command(C::PrevSample, None, &ctx);
    assert_eq!(clip_ids(&app), Some("0001_2"));
    app.run_command(C::PrevSample, None, &ctx);
    app.run_command(C::PrevSample, None, &ctx);
    assert_eq!(clip_ids(&app), Some("0001_0"));
    // A text filter narrows the order further.
    app.split_filter = None;
    app.filter = "0002".into();
    app.run_command(C::NextSample, None, &ctx);
    assert_eq!(clip_ids(&app), Some("0002_0"));
}

#[derive(Debug, PartialEq)]
struct Observed {
    selected: Option<usize>,
    class_entry: String,
    cursor: Option<u32>,
    transport: Option<Transport>,
    looping: Option<bool>,
    skeleton: Option<bool>,
    fit: timeline::Fit,
    tab: Tab,
    help: bool,
    palette: bool,
    focus_filter: bool,
    open_dialog: bool,
    scores_dialog: bool,
    demo: bool,
    samples: Vec<(Option<u32>, bool, u32, u32)>,
    error: Option<String>,
}

fn observe(app: &MgApp) -> Observed {
    Observed {
        selected: app.selected,
        class_entry: app.class_entry.clone(),
        cursor: app.clip.as_ref().map(|c| c.cursor()),
        transport: app.clip.as_ref().map(|c| c.transport()),
        looping: app.clip.as_ref().map(|c| c.loop_sample),
        skeleton: app.clip.as_ref().map(|_| app.panes.settings.skeleton),
        fit: app.timeline.fit(),
        tab: app.tab,
        help: app.help_open,
        palette: app.palette.open,
        focus_filter: app.focus_filter,
        open_dialog: app.open_dialog,
        scores_dialog: app.scores_dialog,
        demo: app.demo_requested,
        samples: app
            .samples
            .iter()
            .map(|s| (s.label, s.reviewed, s.start, s.end))
            .collect(),
        error: app.error.clone(),
    }
}

#[test]
fn every_command_dispatches_to_a_visible_change() {
    let ctx = egui::Context::default();
    for c in COMMANDS {
        let (_dir, mut app) = app();
        open(&mut app, "0001_1", &ctx);
        // Put the app where the command has something to do.
        match c.id {
            C::Cancel => app.help_open = true,
            C::ApplyClass => app.class_entry = "5".into(),
            C::Undo => app.relabel(7),
            C::Redo => {
                app.relabel(7);
                app.undo_redo(true);
            }
            C::Pause => app.run_command(C::ShuttleForward, None, &ctx),
            C::GoToStart => app.run_command(C::StepForward10, None, &ctx),
            C::TabLabel => app.tab = Tab::Ensemble,
            C::PrevSample
            | C::NextSample
            | C::PlayPause
            | C::ShuttleForward
            | C::ShuttleReverse
            | C::SlowForward
            | C::SlowReverse
            | C::StepBack
            | C::StepForward
            | C::StepBack10
            | C::StepForward10
            | C::GoToEnd
            | C::ToggleLoop
            | C::ToggleFit
            | C::ToggleSkeleton
            | C::ClassDigit
            | C::ToggleReviewed
            | C::OpenDataset
            | C::ImportScores
            | C::GenerateDemo
            | C::FocusFilter
            | C::CommandPalette
            | C::Help
            | C::TabPredictions
            | C::TabEnsemble
            | C::TabTraining => {}
        }
        let cx = app.command_context();
        assert!(commands::available(c.id, &cx), "{} not available", c.name);
        let before = observe(&app);
        app.run_command(c.id, c.shortcuts.first().copied(), &ctx);
        let after = observe(&app);
        assert_ne!(before, after, "{} changed nothing", c.name);
        assert!(after.error.is_none(), "{}: {:?}", c.name, after.error);
    }
}

#[test]
fn digits_then_enter_relabel_through_the_store() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_0", &ctx);
    for k in [egui::Key::Num1, egui::Key::Num2] {
        app.run_command(
            C::ClassDigit,
            Some(egui::KeyboardShortcut::new(egui::Modifiers::NONE, k)),
            &ctx,
        );
    }
    app.run_command(C::ApplyClass, None, &ctx);
    assert_eq!(app.current().and_then(|s| s.label), Some(12));
    let hist = app
        .dataset
        .as_ref()
        .and_then(|d| d.history(Some("0001_0")).ok())
        .unwrap_or_default();
    assert_eq!(hist.len(), 1);
    // Out of range: refused with a message, nothing written.
    app.class_entry = "99".into();
    app.run_command(C::ApplyClass, None, &ctx);
    assert_eq!(app.current().and_then(|s| s.label), Some(12));
    assert!(app.error.as_deref().is_some_and(|e| e.contains("99")));
}

/// One egui frame that only runs the key handler, with these key presses as its input.
fn frame_with_keys(app: &mut MgApp, ctx: &egui::Context, keys: &[(egui::Key, egui::Modifiers)]) {
    let events = keys
        .iter()
        .map(|&(key, modifiers)| egui::Event::Key {
            key,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers,
        })
        .collect();
    ctx.begin_pass(egui::RawInput {
        events,
        ..Default::default()
    });
    app.keyboard(ctx);
    end_pass(ctx);
}

fn end_pass(ctx: &egui::Context) {
    // Nothing paints these frames: the font atlas upload is dropped on purpose.
    ctx.end_pass().textures_delta.clear();
}

#[test]
fn jkl_and_arrows_through_real_key_events() {
    use egui::{Key, Modifiers as M};
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    let speed = |app: &MgApp| app.clip.as_ref().map(|c| c.transport().speed());
    frame_with_keys(&mut app, &ctx, &[(Key::L, M::NONE)]);
    assert_eq!(speed(&app), Some(1.0));
    frame_with_keys(&mut app, &ctx, &[(Key::L, M::NONE), (Key::L, M::NONE)]);
    assert_eq!(speed(&app), Some(4.0));
    frame_with_keys(&mut app, &ctx, &[(Key::J, M::NONE)]);
    assert_eq!(speed(&app), Some(-1.0));
    frame_with_keys(&mut app, &ctx, &[(Key::K, M::NONE)]);
    assert_eq!(speed(&app), Some(0.0));
    // j and k no longer move the selection.
    assert_eq!(clip_ids(&app), Some("0001_1"));
    let cursor = |app: &MgApp| app.clip.as_ref().map(|c| c.cursor());
    frame_with_keys(&mut app, &ctx, &[(Key::ArrowRight, M::SHIFT)]);
    assert_eq!(cursor(&app), Some(40));
    frame_with_keys(&mut app, &ctx, &[(Key::ArrowLeft, M::NONE)]);
    assert_eq!(cursor(&app), Some(39));
    // The cursor leaves the sample (30..59) to let its bounds be judged.
    frame_with_keys(
        &mut app,
        &ctx,
        &[(Key::End, M::NONE), (Key::ArrowRight, M::SHIFT)],
    );
    assert_eq!(cursor(&app), Some(69));
    frame_with_keys(
        &mut app,
        &ctx,
        &[(Key::Home, M::NONE), (Key::ArrowLeft, M::SHIFT)],
    );
    assert_eq!(cursor(&app), Some(20));
    // PageDown: next sample in the browser, same video, so the view is kept and retargeted.
    frame_with_keys(&mut app, &ctx, &[(Key::PageDown, M::NONE)]);
    assert_eq!(clip_ids(&app), Some("0001_2"));
    assert_eq!(cursor(&app), Some(60));
    // ? opens the list of keys, Escape closes it.
    frame_with_keys(&mut app, &ctx, &[(Key::Questionmark, M::SHIFT)]);
    assert!(app.help_open);
    frame_with_keys(&mut app, &ctx, &[(Key::Escape, M::NONE)]);
    assert!(!app.help_open);
}

#[test]
fn keys_are_left_alone_while_a_text_field_has_focus() {
    use egui::{Key, Modifiers as M};
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    let field = egui::Id::unique("a text field");
    let l = |ctx: &egui::Context| {
        ctx.begin_pass(egui::RawInput {
            events: vec![egui::Event::Key {
                key: Key::L,
                physical_key: None,
                pressed: true,
                repeat: false,
                modifiers: M::NONE,
            }],
            ..Default::default()
        });
    };
    l(&ctx);
    // What a focused TextEdit leaves behind: its state and the focus.
    egui::text_edit::TextEditState::default().store(&ctx, field);
    ctx.memory_mut(|m| m.request_focus(field));
    app.keyboard(&ctx);
    end_pass(&ctx);
    assert_eq!(app.clip.as_ref().map(|c| c.transport().speed()), Some(0.0));
    // A focused button is not a text field: the key is a command.
    l(&ctx);
    ctx.memory_mut(|m| m.request_focus(egui::Id::unique("a button")));
    app.keyboard(&ctx);
    end_pass(&ctx);
    assert_eq!(app.clip.as_ref().map(|c| c.transport().speed()), Some(1.0));
}

/// One pass of the timeline panel alone, with these pointer events.
fn timeline_pass(app: &mut MgApp, ctx: &egui::Context, t: f64, events: Vec<egui::Event>) {
    let input = egui::RawInput {
        events,
        time: Some(t),
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1200.0, timeline::HEIGHT),
        )),
        ..Default::default()
    };
    let mut out = ctx.run_ui(input, |ui| app.timeline_panel(ui));
    out.textures_delta.clear();
}

fn button(pos: egui::Pos2, pressed: bool) -> egui::Event {
    egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    }
}

#[test]
fn dragging_the_end_handle_is_one_bounds_change_at_release() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    timeline_pass(&mut app, &ctx, 0.0, vec![]);
    let (rect, scale) = app.timeline.last.expect("the track was drawn");
    let y = rect.center().y;
    // The end handle sits on the boundary after frame 59; drag it 5 frames right.
    let from = egui::pos2(scale.x_of(60.0), y);
    let to = egui::pos2(scale.x_of(65.0), y);
    let mut t = 0.1;
    timeline_pass(&mut app, &ctx, t, vec![egui::Event::PointerMoved(from)]);
    t += 0.05;
    timeline_pass(&mut app, &ctx, t, vec![button(from, true)]);
    for k in 1..=10 {
        t += 0.05;
        let p = from + (to - from) * (k as f32 / 10.0);
        timeline_pass(&mut app, &ctx, t, vec![egui::Event::PointerMoved(p)]);
        // Nothing is written while the handle moves, and the cursor stays where it was.
        assert_eq!(app.current().map(|s| (s.start, s.end)), Some((30, 59)));
        assert_eq!(app.clip.as_ref().map(|c| c.cursor()), Some(30));
    }
    t += 0.05;
    timeline_pass(&mut app, &ctx, t, vec![button(to, false)]);
    timeline_pass(&mut app, &ctx, t + 0.05, vec![]);
    assert_eq!(app.current().map(|s| (s.start, s.end)), Some((30, 64)));
    assert_eq!(app.clip.as_ref().map(|c| c.range()), Some((30, 64)));
    let hist = app
        .dataset
        .as_ref()
        .and_then(|d| d.history(Some("0001_1")).ok())
        .unwrap_or_default();
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(
        (hist[0].old_value.as_str(), hist[0].new_value.as_str()),
        ("30,59", "30,64")
    );
    // Undo puts the bounds back in the clip view too.
    app.run_command(C::Undo, None, &ctx);
    app.sync_clip_range();
    assert_eq!(app.clip.as_ref().map(|c| c.range()), Some((30, 59)));
}

#[test]
fn a_click_on_the_track_seeks_to_that_frame() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    timeline_pass(&mut app, &ctx, 0.0, vec![]);
    let (rect, scale) = app.timeline.last.expect("the track was drawn");
    // Middle of frame 45, well away from the handles.
    let p = egui::pos2(scale.x_of(45.5), rect.center().y);
    timeline_pass(&mut app, &ctx, 0.1, vec![egui::Event::PointerMoved(p)]);
    timeline_pass(&mut app, &ctx, 0.15, vec![button(p, true)]);
    timeline_pass(&mut app, &ctx, 0.2, vec![button(p, false)]);
    assert_eq!(app.clip.as_ref().map(|c| c.cursor()), Some(45));
    let hist = app
        .dataset
        .as_ref()
        .and_then(|d| d.history(Some("0001_1")).ok())
        .unwrap_or_default();
    assert!(hist.is_empty());
}

#[test]
fn bounds_the_store_refuses_are_shown_not_saved() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    // The clip view believes the video is longer than the store does (200 frames).
    let i = app.samples.iter().position(|s| s.clip_id == "0001_1");
    app.select(i, &ctx);
    let s = app.current().cloned().expect("sample");
    app.clip = Some(ClipView::for_test(&s, 400));
    timeline_pass(&mut app, &ctx, 0.0, vec![]);
    app.timeline.toggle_fit();
    timeline_pass(&mut app, &ctx, 0.05, vec![]);
    let (rect, scale) = app.timeline.last.expect("the track was drawn");
    let y = rect.center().y;
    let from = egui::pos2(scale.x_of(60.0), y);
    let to = egui::pos2(scale.x_of(300.0), y);
    let mut t = 0.1;
    timeline_pass(&mut app, &ctx, t, vec![egui::Event::PointerMoved(from)]);
    t += 0.05;
    timeline_pass(&mut app, &ctx, t, vec![button(from, true)]);
    for k in 1..=5 {
        t += 0.05;
        let p = from + (to - from) * (k as f32 / 5.0);
        timeline_pass(&mut app, &ctx, t, vec![egui::Event::PointerMoved(p)]);
    }
    timeline_pass(&mut app, &ctx, t + 0.05, vec![button(to, false)]);
    assert_eq!(app.current().map(|s| (s.start, s.end)), Some((30, 59)));
    let shown = app.timeline.error.clone().unwrap_or_default();
    assert!(shown.contains("beyond its video's last frame"), "{shown}");
    assert!(app.error.is_some());
}

/// The whole window, frame by frame, as egui_kittest drives it.
fn harness(app: MgApp) -> egui_kittest::Harness<'static, MgApp> {
    egui_kittest::Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut MgApp| app.draw(ui), app)
}

#[test]
fn the_window_shows_the_key_list_and_relabels_from_the_palette() {
    use egui::{Key, Modifiers as M};
    use egui_kittest::kittest::Queryable;
    let (_dir, mut app) = app();
    open(&mut app, "0001_1", &egui::Context::default());
    let mut h = harness(app);
    h.run();
    assert!(h.query_by_label("Keyboard shortcuts").is_none());
    h.key_press(Key::Questionmark);
    h.run();
    assert!(h.query_by_label("Keyboard shortcuts").is_some());
    assert!(h
        .query_by_label("Play backward (again: faster, up to 4×)")
        .is_some());
    h.key_press(Key::Escape);
    h.run();
    assert!(h.query_by_label("Keyboard shortcuts").is_none());

    h.key_press_modifiers(M::COMMAND, Key::K);
    h.run();
    h.event(egui::Event::Text("tch chin".into()));
    h.run();
    // The best match is the class, offered as a palette entry.
    assert!(h.query_by_label("label: touch chin").is_some());
    h.key_press(Key::Enter);
    h.run();
    let app = h.state();
    assert!(!app.palette.open);
    assert_eq!(app.current().and_then(|s| s.label), Some(10));
    assert_eq!(app.status, "saved change to 0001_1");
}

#[test]
fn the_window_steps_and_shuttles_from_the_keyboard_with_the_timeline_shown() {
    use egui::{Key, Modifiers as M};
    use egui_kittest::kittest::Queryable;
    let (_dir, mut app) = app();
    open(&mut app, "0001_1", &egui::Context::default());
    let mut h = harness(app);
    h.run();
    // After a click on a checkbox the keys still reach the commands and leave it alone.
    h.get_by_label("skeleton").click();
    h.run();
    assert_eq!(
        h.state()
            .clip
            .as_ref()
            .map(|_| h.state().panes.settings.skeleton),
        Some(false)
    );
    h.key_press(Key::Space);
    h.key_press(Key::K);
    h.run();
    assert_eq!(
        h.state()
            .clip
            .as_ref()
            .map(|_| h.state().panes.settings.skeleton),
        Some(false)
    );
    h.key_press_modifiers(M::SHIFT, Key::ArrowRight);
    h.key_press(Key::ArrowRight);
    h.run();
    assert_eq!(h.state().clip.as_ref().map(|c| c.cursor()), Some(41));
    h.key_press(Key::F);
    h.run();
    assert_eq!(h.state().timeline.fit(), timeline::Fit::Video);
    h.key_press(Key::J);
    h.key_press(Key::K);
    h.run();
    let t = h.state().clip.as_ref().map(|c| c.transport());
    assert_eq!(t.map(|t| (t.playing, t.forward)), Some((false, false)));
}

#[test]
fn escape_during_a_handle_drag_saves_nothing() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    timeline_pass(&mut app, &ctx, 0.0, vec![]);
    let (rect, scale) = app.timeline.last.expect("the track was drawn");
    let from = egui::pos2(scale.x_of(30.0), rect.center().y);
    let to = egui::pos2(scale.x_of(25.0), rect.center().y);
    timeline_pass(&mut app, &ctx, 0.1, vec![egui::Event::PointerMoved(from)]);
    timeline_pass(&mut app, &ctx, 0.15, vec![button(from, true)]);
    timeline_pass(&mut app, &ctx, 0.2, vec![egui::Event::PointerMoved(to)]);
    let escape = egui::Event::Key {
        key: egui::Key::Escape,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    };
    timeline_pass(&mut app, &ctx, 0.25, vec![escape]);
    timeline_pass(&mut app, &ctx, 0.3, vec![button(to, false)]);
    timeline_pass(&mut app, &ctx, 0.35, vec![]);
    assert_eq!(app.current().map(|s| (s.start, s.end)), Some((30, 59)));
    let hist = app
        .dataset
        .as_ref()
        .and_then(|d| d.history(Some("0001_1")).ok())
        .unwrap_or_default();
    assert!(hist.is_empty(), "{hist:?}");
    // Without the Escape the same drag moves the start.
    timeline_pass(&mut app, &ctx, 0.4, vec![button(from, true)]);
    timeline_pass(&mut app, &ctx, 0.45, vec![egui::Event::PointerMoved(to)]);
    timeline_pass(&mut app, &ctx, 0.5, vec![button(to, false)]);
    timeline_pass(&mut app, &ctx, 0.55, vec![]);
    assert_eq!(app.current().map(|s| (s.start, s.end)), Some((25, 59)));
}

/// Two 32-class streams over the one val clip (0001_1) that disagree, and the Ensemble tab
/// loaded on them.
fn app_with_streams() -> (tempfile::TempDir, MgApp) {
    let (dir, mut app) = app();
    // 0001_1 is labelled 1: "right" is right.
    with_streams(&mut app, &[("right", 1), ("wrong", 5)]);
    assert_eq!(app.ensemble.weights(), &[0.5, 0.5]);
    (dir, app)
}

fn edit(app: &mut MgApp, w: &[f32], what: &str) {
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble.edit_weights(ds, w.to_vec(), what.into());
}

#[test]
fn ctrl_z_undoes_weights_in_the_ensemble_tab_and_labels_elsewhere() {
    let (_dir, mut app) = app_with_streams();
    let ctx = egui::Context::default();
    open(&mut app, "0001_1", &ctx);
    app.relabel(7);
    app.tab = Tab::Ensemble;
    edit(&mut app, &[0.9, 0.1], "first");
    edit(&mut app, &[0.2, 0.3], "second");
    assert_eq!(app.ensemble_undo_depth(), 2);

    let z = |app: &mut MgApp, id| app.run_command(id, None, &ctx);
    z(&mut app, C::Undo);
    assert_eq!(app.ensemble_weights(), &[0.9, 0.1]);
    assert_eq!(app.status, "undid second");
    z(&mut app, C::Undo);
    assert_eq!(app.ensemble_weights(), &[0.5, 0.5]);
    // The weights' history is exhausted: the label is not touched behind the user's back.
    z(&mut app, C::Undo);
    assert_eq!(app.ensemble_weights(), &[0.5, 0.5]);
    assert!(
        app.status.starts_with("no weight change to undo"),
        "{}",
        app.status
    );
    assert_eq!(app.current().and_then(|s| s.label), Some(7));
    z(&mut app, C::Redo);
    assert_eq!(app.ensemble_weights(), &[0.9, 0.1]);

    // In the Label tab the same keys walk the label store.
    app.tab = Tab::Label;
    z(&mut app, C::Undo);
    assert_eq!(app.current().and_then(|s| s.label), Some(1));
    assert_eq!(app.ensemble_weights(), &[0.9, 0.1]);

    // A new weight change drops the redo branch.
    app.tab = Tab::Ensemble;
    edit(&mut app, &[0.4, 0.4], "third");
    z(&mut app, C::Redo);
    assert_eq!(app.ensemble_weights(), &[0.4, 0.4]);
    assert_eq!(app.ensemble_undo_depth(), 2);
}

#[test]
fn another_split_keeps_the_weights_and_their_history() {
    let (_dir, mut app) = app_with_streams();
    edit(&mut app, &[0.8, 0.2], "tuned");
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble.load(ds, Split::Val);
    assert_eq!(app.ensemble_weights(), &[0.8, 0.2]);
    assert_eq!(app.ensemble_undo_depth(), 1);
}

#[test]
fn the_dataset_remembers_the_weights_and_the_last_loaded_preset() {
    let (dir, mut app) = app_with_streams();
    {
        let ds = app.dataset.as_mut().expect("dataset");
        ds.save_preset(
            "kept",
            &[
                crate::store::PresetTerm::stream("right", 0.75),
                crate::store::PresetTerm::stream("gone", 0.5),
            ],
            crate::store::SaveMode::CreateOnly,
        )
        .expect("save");
    }
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble.load_preset(ds, "kept");
    // "wrong" is not in the preset: it took no part in that ensemble.
    assert_eq!(app.ensemble_weights(), &[0.75, 0.0]);
    assert_eq!(app.ensemble_compared_preset(), Some("kept"));
    assert_eq!(app.ensemble_undo_depth(), 1);
    edit(&mut app, &[0.6, 0.1], "after loading");

    // A new window on the same dataset: compared with "kept", the sliders where they were left.
    let mut again = MgApp::default();
    again.open(dir.path());
    assert_eq!(again.ensemble_compared_preset(), Some("kept"));
    assert_eq!(again.ensemble_weights(), &[0.6, 0.1]);
    assert_eq!(again.ensemble_undo_depth(), 0);

    // Without working weights it opens on the preset itself.
    let ds = again.dataset.as_mut().expect("dataset");
    ds.set_working_weights(&[]).expect("forget the weights");
    let mut third = MgApp::default();
    third.open(dir.path());
    assert_eq!(third.ensemble_weights(), &[0.75, 0.0]);
}

#[test]
fn the_browser_filters_on_the_ensemble_and_orders_by_a_queue() {
    let (_dir, mut app) = app_with_streams();
    // Equal weights tie 0001_1 (label 1) between class 1 and class 5; favour "wrong".
    edit(&mut app, &[0.2, 0.8], "favour wrong");
    let ids = |app: &MgApp| -> Vec<String> {
        app.visible()
            .iter()
            .map(|&i| app.samples[i].clip_id.clone())
            .collect()
    };
    app.browse.misclassified = true;
    assert_eq!(ids(&app), vec!["0001_1".to_string()]);
    app.browse.misclassified = false;
    app.browse.predicted = Some(5);
    assert_eq!(ids(&app), vec!["0001_1".to_string()]);
    app.browse.predicted = Some(1);
    assert!(ids(&app).is_empty(), "predicted 5, not 1");
    // Favour "right": no longer misclassified.
    edit(&mut app, &[0.8, 0.2], "favour right");
    assert_eq!(ids(&app), vec!["0001_1".to_string()]);
    app.browse.predicted = None;
    app.browse.misclassified = true;
    assert!(ids(&app).is_empty());
    app.browse.misclassified = false;
    // A queue lists only the fusion's clips (the val split), in its order.
    app.browse.order = BrowseOrder::Queue(crate::ensemble::queue::QueueKind::Margin);
    assert_eq!(ids(&app), vec!["0001_1".to_string()]);
    app.browse.order = BrowseOrder::Dataset;
    assert_eq!(ids(&app).len(), 5);
    // Reviewed / not reviewed.
    app.browse.reviewed = Some(true);
    assert!(ids(&app).is_empty());
    app.browse.reviewed = Some(false);
    assert_eq!(ids(&app).len(), 5);
}

#[test]
fn recent_datasets_are_unique_newest_first_and_capped() {
    let mut r = Vec::new();
    for i in 0..10 {
        remember_recent(&mut r, Path::new(&format!("/d{i}")));
    }
    remember_recent(&mut r, Path::new("/d5"));
    assert_eq!(r.len(), RECENT_MAX);
    assert_eq!(r[0], PathBuf::from("/d5"));
    assert_eq!(r[1], PathBuf::from("/d9"));
    assert_eq!(
        r.iter().filter(|p| p.as_path() == Path::new("/d5")).count(),
        1
    );
    assert!(!r.contains(&PathBuf::from("/d0")), "the oldest fell off");
}

#[test]
fn dropping_a_folder_opens_it_and_other_files_are_named() {
    let (dir, mut app) = app();
    let ctx = egui::Context::default();
    assert_eq!(app.recent.first().map(PathBuf::as_path), Some(dir.path()));
    let other = tempfile::tempdir().expect("tmp");
    let note = other.path().join("notes.txt");
    std::fs::write(&note, "x").expect("write");
    app.dropped(&note, &ctx);
    let e = app.error.take().expect("an error for a text file");
    assert!(e.contains("notes.txt") && e.contains("checkpoint"), "{e}");
    // A folder that is not a dataset is refused by name, the open one stays.
    app.dropped(other.path(), &ctx);
    assert!(app.error.take().is_some());
    assert_eq!(app.samples.len(), 5);
    // Dropping the dataset folder reopens it.
    app.dropped(dir.path(), &ctx);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.samples.len(), 5);
    // A checkpoint goes to the Predictions tab's loader.
    let ckpt = other.path().join("best.safetensors");
    std::fs::write(&ckpt, b"not really").expect("write");
    app.dropped(&ckpt, &ctx);
    assert_eq!(app.tab, Tab::Predictions);
    assert!(app.status.contains("best.safetensors"), "{}", app.status);
}

/// 32-class scores over the one val clip (0001_1, labelled 1) favouring `favoured`.
fn one_clip_stream(name: &str, favoured: usize) -> crate::store::StoredStream {
    let mut probs = vec![0.01f32; 32];
    probs[favoured] = 0.69;
    crate::store::StoredStream {
        name: name.into(),
        classes: 32,
        clip_ids: vec!["0001_1".into()],
        probs,
        source: "test".into(),
        report: "{}".into(),
    }
}

fn with_streams(app: &mut MgApp, streams: &[(&str, usize)]) {
    let ds = app.dataset.as_mut().expect("dataset");
    for (n, c) in streams {
        ds.put_stream(&one_clip_stream(n, *c)).expect("stream");
    }
    app.ensemble.load(ds, Split::Val);
}

fn term(name: &str, weight: f32, parts: &[(&str, f32)]) -> crate::store::PresetTerm {
    crate::store::PresetTerm {
        name: name.into(),
        weight,
        parts: parts.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
    }
}

#[test]
fn grouping_heads_keeps_their_weights_and_is_one_undo_step() {
    let (_dir, mut app) = app();
    // What `mgscope predict --register m` stores for an RGBPose checkpoint.
    with_streams(&mut app, &[("m.pose", 5), ("m.rgb", 1), ("right", 1)]);
    let third = 1.0 / 3.0;
    assert_eq!(app.ensemble_weights(), &[third; 3]);
    edit(&mut app, &[0.1, 0.3, 0.6], "tuned");
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble
        .group(ds, "m", &["m.pose".to_string(), "m.rgb".to_string()]);
    // Outer = the heads' sum, inner = their shares: the same fused scores.
    let terms = app.ensemble_terms();
    assert_eq!(terms.len(), 2, "{terms:?}");
    assert_eq!(terms[0].name, "m");
    assert!((terms[0].weight - 0.4).abs() < 1e-6, "{terms:?}");
    let inner = app.ensemble_inner_weights("m").expect("composite");
    assert_eq!(inner[0].0, "m.pose");
    assert!((inner[0].1 - 0.25).abs() < 1e-6 && (inner[1].1 - 0.75).abs() < 1e-6);
    assert_eq!(terms[1], term("right", 0.6, &[]));
    assert_eq!(app.ensemble_undo_depth(), 2);
    // The dataset remembers the composite with its parts.
    let ds = app.dataset.as_ref().expect("dataset");
    assert_eq!(ds.working_weights().expect("read"), Some(terms.clone()));

    let ctx = egui::Context::default();
    app.tab = Tab::Ensemble;
    app.run_command(C::Undo, None, &ctx);
    assert!(
        app.status.starts_with("undid group m.pose + m.rgb"),
        "{}",
        app.status
    );
    assert_eq!(app.ensemble_weights(), &[0.1, 0.3, 0.6]);
    assert!(app.ensemble_inner_weights("m").is_none());
    app.run_command(C::Redo, None, &ctx);
    assert_eq!(app.ensemble_terms(), terms);

    // Ungrouping gives each head outer × inner.
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble.ungroup(ds, "m");
    let w = app.ensemble_weights().to_vec();
    assert_eq!(w.len(), 3);
    assert!(
        (w[0] - 0.1).abs() < 1e-6 && (w[1] - 0.3).abs() < 1e-6,
        "{w:?}"
    );
}

#[test]
fn the_mm_gesture_layout_loads_from_a_preset_and_round_trips() {
    use crate::ensemble::fusion::{mm_gesture, names};
    let (dir, mut app) = app();
    let streams = [
        (names::SWIN_B_RGB, 1),
        (names::SWIN_S_RGB_MA52, 1),
        (names::SWIN_B_TAYLOR, 2),
        (names::SWIN_B_FLOW, 3),
        (names::SWIN_B_DEPTH, 1),
        (names::RGB_J_RGB, 4),
        (names::RGB_J_POSE, 1),
        (names::RGB_L_RGB, 1),
        (names::RGB_L_POSE, 6),
    ];
    with_streams(&mut app, &streams);
    assert_eq!(
        app.ensemble_weights().len(),
        9,
        "flat until a preset says otherwise"
    );
    // The engine's preset as the store keeps it (plain streams written as [(name, 1.0)]).
    let mm: Vec<crate::store::PresetTerm> = mm_gesture()
        .terms
        .iter()
        .map(|t| crate::store::PresetTerm {
            name: t.name.clone(),
            weight: t.weight,
            parts: t.parts.clone(),
        })
        .collect();
    let ds = app.dataset.as_mut().expect("dataset");
    ds.save_preset("mm", &mm, crate::store::SaveMode::CreateOnly)
        .expect("save");
    let ds = app.dataset.as_ref().expect("dataset");
    app.ensemble.load_preset(ds, "mm");
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.ensemble_undo_depth(), 1, "a load is one step");
    let terms = app.ensemble_terms();
    assert_eq!(terms.len(), 7, "{terms:?}");
    for (name, rgb, pose) in [
        (names::RGB_J, names::RGB_J_RGB, names::RGB_J_POSE),
        (names::RGB_L, names::RGB_L_RGB, names::RGB_L_POSE),
    ] {
        let t = terms.iter().find(|t| t.name == name).expect("composite");
        assert_eq!(t, &term(name, 0.5, &[(rgb, 0.5), (pose, 0.5)]));
    }
    for n in [
        names::SWIN_B_RGB,
        names::SWIN_B_FLOW,
        names::SWIN_S_RGB_MA52,
    ] {
        assert!(terms.contains(&term(n, 0.2, &[])), "{n}: {terms:?}");
    }
    // The figures are the engine's for MM-Gesture's rule.
    let ds = app.dataset.as_ref().expect("dataset");
    let available: Vec<_> = streams
        .iter()
        .map(|(n, _)| {
            ds.load_stream(n)
                .expect("load")
                .to_stream()
                .expect("stream")
        })
        .collect();
    let (f, w) = mm_gesture()
        .fusion(&available, vec!["0001_1".into()], vec![Some(1)])
        .expect("engine");
    let m = crate::ensemble::metrics::evaluate(&f.fused(&w).expect("fused"), 32, f.labels())
        .expect("metrics");
    assert_eq!(app.ensemble.top1(), Some(m.top1));

    // Saved from the sliders and read back: the same composites and sub-weights.
    let ds = app.dataset.as_mut().expect("dataset");
    ds.save_preset("again", &terms, crate::store::SaveMode::CreateOnly)
        .expect("save");
    assert_eq!(ds.load_preset("again").expect("load").terms, terms);
    // A new window on the dataset has the composites where they were left.
    let mut again = MgApp::default();
    again.open(dir.path());
    assert_eq!(again.ensemble_terms(), terms);
}

/// Steps the app's jobs until no score import is running.
fn finish_imports(app: &mut MgApp) {
    let t = std::time::Instant::now();
    while !app.score_jobs.is_empty() {
        assert!(t.elapsed().as_secs() < 30, "the import did not finish");
        app.poll_jobs();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn csv_row(clip: &str, favoured: usize, classes: usize) -> String {
    let row: Vec<String> = (0..classes)
        .map(|c| if c == favoured { "0.69" } else { "0.01" }.to_string())
        .collect();
    format!("{clip},{}\n", row.join(","))
}

#[test]
fn dropping_score_files_adds_streams_and_bad_ones_are_named() {
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    let labels_before: Vec<_> = app.samples.iter().map(|s| s.label).collect();
    let files = tempfile::tempdir().expect("tmp");

    // A csv carries its clip ids; the stream is named after the file.
    let csv = files.path().join("swin_rgb.csv");
    std::fs::write(&csv, csv_row("0001_1", 1, 32)).expect("write");
    app.dropped(&csv, &ctx);
    finish_imports(&mut app);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert!(app.status.contains("as stream swin_rgb"), "{}", app.status);
    assert_eq!(app.tab, Tab::Ensemble);
    assert_eq!(app.ensemble_terms(), vec![term("swin_rgb", 1.0, &[])]);
    // The same file again does not replace it.
    app.dropped(&csv, &ctx);
    finish_imports(&mut app);
    let names: Vec<String> = app.ensemble_terms().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["swin_rgb", "swin_rgb-2"]);

    // An RGBPose dump: rows in the order of the id list beside it, one stream per head.
    use crate::pickle::{write_pickle, NdArray, Value};
    let head = |c: usize| {
        let mut p = vec![0.01f32; 32];
        p[c] = 0.69;
        Value::Array(NdArray::from_f32(vec![32], p).expect("array"))
    };
    let dump = Value::List(vec![Value::Dict(vec![
        (Value::Str("rgb".into()), head(1)),
        (Value::Str("pose".into()), head(5)),
    ])]);
    let pkl = files.path().join("p3d.pkl");
    std::fs::write(&pkl, write_pickle(&dump)).expect("write");
    std::fs::write(files.path().join("p3d.ids.txt"), "0001_1\n").expect("write");
    app.dropped(&pkl, &ctx);
    finish_imports(&mut app);
    assert!(app.error.is_none(), "{:?}", app.error);
    let names: Vec<String> = app.ensemble_terms().into_iter().map(|t| t.name).collect();
    assert!(
        names.contains(&"p3d.rgb".to_string()) && names.contains(&"p3d.pose".to_string()),
        "{names:?}"
    );
    assert!(app.status.contains("p3d.ids.txt"), "{}", app.status);

    // Bad files: each error names the file and what is wrong; nothing else changes.
    let junk = files.path().join("broken.pkl");
    std::fs::write(&junk, b"this is not a pickle").expect("write");
    app.dropped(&junk, &ctx);
    finish_imports(&mut app);
    let e = app.error.take().expect("an error for a broken pickle");
    assert!(
        e.contains("broken.pkl") && e.contains("not a score file"),
        "{e}"
    );
    let narrow = files.path().join("ten.csv");
    std::fs::write(&narrow, csv_row("0001_1", 1, 10)).expect("write");
    app.dropped(&narrow, &ctx);
    finish_imports(&mut app);
    let e = app.error.take().expect("an error for 10 classes");
    assert!(
        e.contains("ten.csv") && e.contains("10 classes per row") && e.contains("32"),
        "{e}"
    );
    let stranger = files.path().join("stranger.csv");
    std::fs::write(&stranger, csv_row("9999_0", 1, 32)).expect("write");
    app.dropped(&stranger, &ctx);
    finish_imports(&mut app);
    let e = app.error.take().expect("an error for unknown clips");
    assert!(
        e.contains("stranger.csv") && e.contains("none of its 1 clip ids"),
        "{e}"
    );
    let ds = app.dataset.as_ref().expect("dataset");
    let stored = ds.stream_names().expect("names");
    assert_eq!(stored, ["p3d.pose", "p3d.rgb", "swin_rgb", "swin_rgb-2"]);
    let labels_after: Vec<_> = app.samples.iter().map(|s| s.label).collect();
    assert_eq!(labels_before, labels_after);
}

#[test]
fn a_dump_without_an_id_list_takes_the_order_of_the_split_it_fits() {
    use crate::pickle::{write_pickle, NdArray, Value};
    let (_dir, mut app) = app();
    let ctx = egui::Context::default();
    let files = tempfile::tempdir().expect("tmp");
    let row = |c: usize| {
        let mut p = vec![0.01f32; 32];
        p[c] = 0.69;
        Value::Array(NdArray::from_f32(vec![32], p).expect("array"))
    };
    // One row: the val split (0001_1) fits; two rows: none of the one-clip splits does.
    let one = files.path().join("one.pkl");
    std::fs::write(&one, write_pickle(&Value::List(vec![row(1)]))).expect("write");
    app.dropped(&one, &ctx);
    finish_imports(&mut app);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert!(
        app.status.contains("the val split's clip order"),
        "{}",
        app.status
    );
    let two = files.path().join("two.pkl");
    std::fs::write(&two, write_pickle(&Value::List(vec![row(1), row(2)]))).expect("write");
    app.dropped(&two, &ctx);
    finish_imports(&mut app);
    let e = app.error.take().expect("no order fits");
    assert!(e.contains("two.pkl") && e.contains("two.ids.txt"), "{e}");
}
