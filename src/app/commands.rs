//! Every command of the app, defined once: its name, its shortcuts and when it applies. The
//! keyboard handler, the help overlay and the command palette all read this table, so a
//! shortcut exists in exactly one place.

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandId {
    PrevSample,
    NextSample,
    PlayPause,
    ShuttleForward,
    ShuttleReverse,
    SlowForward,
    SlowReverse,
    Pause,
    StepBack,
    StepForward,
    StepBack10,
    StepForward10,
    GoToStart,
    GoToEnd,
    ToggleLoop,
    ToggleFit,
    ToggleSkeleton,
    ClassDigit,
    ApplyClass,
    Cancel,
    ToggleReviewed,
    Undo,
    Redo,
    OpenDataset,
    ImportScores,
    GenerateDemo,
    FocusFilter,
    CommandPalette,
    Help,
    TabLabel,
    TabPredictions,
    TabEnsemble,
    TabTraining,
}

pub struct Command {
    pub id: CommandId,
    pub name: &'static str,
    pub shortcuts: &'static [KeyboardShortcut],
    /// Offered in the command palette (digit entry and Escape only make sense as keys).
    pub in_palette: bool,
}

const fn key(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::NONE, k)
}

const fn shift(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::SHIFT, k)
}

const fn cmd(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::COMMAND, k)
}

const fn cmd_shift(k: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), k)
}

const fn c(id: CommandId, name: &'static str, shortcuts: &'static [KeyboardShortcut]) -> Command {
    Command {
        id,
        name,
        shortcuts,
        in_palette: true,
    }
}

const DIGITS: [Key; 10] = [
    Key::Num0,
    Key::Num1,
    Key::Num2,
    Key::Num3,
    Key::Num4,
    Key::Num5,
    Key::Num6,
    Key::Num7,
    Key::Num8,
    Key::Num9,
];

const DIGIT_SHORTCUTS: [KeyboardShortcut; 10] = {
    let mut out = [key(Key::Num0); 10];
    let mut i = 0;
    while i < 10 {
        out[i] = key(DIGITS[i]);
        i += 1;
    }
    out
};

use CommandId as C;

pub const COMMANDS: &[Command] = &[
    c(
        C::PrevSample,
        "Previous sample",
        &[key(Key::ArrowUp), key(Key::PageUp)],
    ),
    c(
        C::NextSample,
        "Next sample",
        &[key(Key::ArrowDown), key(Key::PageDown)],
    ),
    c(C::PlayPause, "Play / pause", &[key(Key::Space)]),
    c(
        C::ShuttleForward,
        "Play forward (again: faster, up to 4×)",
        &[key(Key::L)],
    ),
    c(
        C::ShuttleReverse,
        "Play backward (again: faster, up to 4×)",
        &[key(Key::J)],
    ),
    c(
        C::SlowForward,
        "Play forward slower (down to 0.25×)",
        &[shift(Key::L)],
    ),
    c(
        C::SlowReverse,
        "Play backward slower (down to 0.25×)",
        &[shift(Key::J)],
    ),
    c(C::Pause, "Pause", &[key(Key::K)]),
    c(C::StepBack, "Previous frame", &[key(Key::ArrowLeft)]),
    c(C::StepForward, "Next frame", &[key(Key::ArrowRight)]),
    c(C::StepBack10, "Back 10 frames", &[shift(Key::ArrowLeft)]),
    c(
        C::StepForward10,
        "Forward 10 frames",
        &[shift(Key::ArrowRight)],
    ),
    c(C::GoToStart, "Go to the sample's start", &[key(Key::Home)]),
    c(C::GoToEnd, "Go to the sample's end", &[key(Key::End)]),
    c(C::ToggleLoop, "Loop the sample on/off", &[cmd(Key::L)]),
    c(
        C::ToggleFit,
        "Timeline: fit sample / fit video",
        &[key(Key::F)],
    ),
    c(C::ToggleSkeleton, "Skeleton on/off", &[key(Key::S)]),
    Command {
        id: C::ClassDigit,
        name: "Type a class number",
        shortcuts: &DIGIT_SHORTCUTS,
        in_palette: false,
    },
    Command {
        id: C::ApplyClass,
        name: "Relabel with the typed class number",
        shortcuts: &[key(Key::Enter)],
        in_palette: false,
    },
    Command {
        id: C::Cancel,
        name: "Cancel the typed class / close overlay",
        shortcuts: &[key(Key::Escape)],
        in_palette: false,
    },
    c(C::ToggleReviewed, "Toggle reviewed", &[key(Key::R)]),
    // One pair of keys for what the user is working on: the weights while the Ensemble tab is
    // shown, the labels everywhere else (see `MgApp::undo_target`).
    c(
        C::Undo,
        "Undo (Ensemble tab: weights; else labels)",
        &[cmd(Key::Z)],
    ),
    c(
        C::Redo,
        "Redo (Ensemble tab: weights; else labels)",
        &[cmd(Key::Y), cmd_shift(Key::Z)],
    ),
    c(C::OpenDataset, "Open dataset…", &[cmd(Key::O)]),
    c(C::ImportScores, "Import score files…", &[cmd(Key::I)]),
    c(C::GenerateDemo, "Generate demo dataset", &[]),
    c(C::FocusFilter, "Filter the sample list", &[cmd(Key::F)]),
    Command {
        id: C::CommandPalette,
        name: "Command palette",
        shortcuts: &[cmd(Key::K)],
        in_palette: false,
    },
    c(
        C::Help,
        "Keyboard shortcuts (this list)",
        &[key(Key::Questionmark), key(Key::F1)],
    ),
    c(C::TabLabel, "Show the Label tab", &[cmd(Key::Num1)]),
    c(
        C::TabPredictions,
        "Show the Predictions tab",
        &[cmd(Key::Num2)],
    ),
    c(C::TabEnsemble, "Show the Ensemble tab", &[cmd(Key::Num3)]),
    c(C::TabTraining, "Show the Training tab", &[cmd(Key::Num4)]),
];

pub fn command(id: CommandId) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.id == id)
}

/// The digit a [`CommandId::ClassDigit`] shortcut stands for.
pub fn digit_of(k: Key) -> Option<u32> {
    DIGITS.iter().position(|&d| d == k).map(|i| i as u32)
}

/// What the app looks like to the availability rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    pub dataset: bool,
    pub any_visible: bool,
    pub sample: bool,
    pub clip: bool,
    pub typing_class: bool,
    pub overlay_open: bool,
    pub busy: bool,
}

pub fn available(id: CommandId, cx: &Context) -> bool {
    match id {
        C::PrevSample | C::NextSample => cx.any_visible,
        C::PlayPause
        | C::ShuttleForward
        | C::ShuttleReverse
        | C::SlowForward
        | C::SlowReverse
        | C::Pause
        | C::StepBack
        | C::StepForward
        | C::StepBack10
        | C::StepForward10
        | C::GoToStart
        | C::GoToEnd
        | C::ToggleLoop
        | C::ToggleFit
        | C::ToggleSkeleton => cx.clip,
        C::ClassDigit | C::ToggleReviewed => cx.sample,
        C::ApplyClass => cx.sample && cx.typing_class,
        C::Cancel => cx.typing_class || cx.overlay_open,
        C::Undo | C::Redo | C::FocusFilter | C::ImportScores => cx.dataset,
        C::GenerateDemo => !cx.busy,
        C::OpenDataset
        | C::CommandPalette
        | C::Help
        | C::TabLabel
        | C::TabPredictions
        | C::TabEnsemble
        | C::TabTraining => true,
    }
}

/// Shortcuts with more modifiers first: egui matches Shift and Alt loosely, so Right would
/// otherwise also fire for Shift+Right.
fn by_specificity() -> Vec<(CommandId, KeyboardShortcut)> {
    let mut all: Vec<_> = COMMANDS
        .iter()
        .flat_map(|c| c.shortcuts.iter().map(move |s| (c.id, *s)))
        .collect();
    let weight = |m: Modifiers| {
        usize::from(m.shift)
            + usize::from(m.alt)
            + usize::from(m.ctrl)
            + usize::from(m.command)
            + usize::from(m.mac_cmd)
    };
    all.sort_by_key(|(_, s)| std::cmp::Reverse(weight(s.modifiers)));
    all
}

/// Takes this frame's presses of available commands out of the input (so egui does not also
/// use them for focus moves or button activation), in the order they were pressed.
pub fn take_pressed(
    input: &mut egui::InputState,
    cx: &Context,
) -> Vec<(CommandId, KeyboardShortcut)> {
    let mut hits: Vec<(usize, CommandId, KeyboardShortcut)> = Vec::new();
    for (id, sc) in by_specificity() {
        if !available(id, cx) {
            continue;
        }
        // Remember where each press was among the events, so several keys in one frame run
        // in the order they were typed.
        let positions: Vec<usize> = input
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e, egui::Event::Key { key, pressed: true, modifiers, .. }
                    if *key == sc.logical_key && modifiers.matches_logically(sc.modifiers))
            })
            .map(|(i, _)| i)
            .collect();
        if positions.is_empty() {
            continue;
        }
        input.count_and_consume_key(sc.modifiers, sc.logical_key);
        // Later positions shift left once earlier events are consumed; the order among the
        // hits is what matters, and consumption never reorders events.
        hits.extend(positions.into_iter().map(|p| (p, id, sc)));
    }
    hits.sort_by_key(|(p, _, _)| *p);
    hits.into_iter().map(|(_, id, sc)| (id, sc)).collect()
}

/// A command palette entry: a command, or a class to relabel the open sample with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    Command(CommandId),
    Class(u32),
}

/// Subsequence match of `query` in `candidate`, case-insensitive, whitespace in the query
/// ignored. `None` when some query character is missing; otherwise higher is better: runs of
/// consecutive characters, word starts and the very start score extra, gaps cost a little.
/// The best alignment is found (not the first), so "tc" takes the "c" of "chin" in
/// "touch chin" rather than the one inside "touch".
pub fn fuzzy_score(query: &str, candidate: &str) -> Option<i32> {
    const RUN: i32 = 5;
    const WORD_START: i32 = 8;
    const FIRST: i32 = 10;
    const MAX_GAP: usize = 5;
    let q: Vec<char> = query
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if q.is_empty() {
        return Some(0);
    }
    let cand: Vec<char> = candidate.chars().flat_map(char::to_lowercase).collect();
    let bonus = |j: usize| {
        1 + if j == 0 { FIRST } else { 0 }
            + if j == 0 || !cand[j - 1].is_alphanumeric() {
                WORD_START
            } else {
                0
            }
    };
    // best[j]: the best score with the current query character matched at candidate j.
    let mut best: Vec<Option<i32>> = cand
        .iter()
        .enumerate()
        .map(|(j, &ch)| (ch == q[0]).then(|| bonus(j) - j.min(MAX_GAP) as i32))
        .collect();
    for &qc in &q[1..] {
        let mut next = vec![None; cand.len()];
        for (j, &ch) in cand.iter().enumerate() {
            if ch != qc {
                continue;
            }
            next[j] = (0..j)
                .filter_map(|p| {
                    best[p].map(|b| {
                        b + if p + 1 == j {
                            RUN
                        } else {
                            -((j - p - 1).min(MAX_GAP) as i32)
                        }
                    })
                })
                .max()
                .map(|b| b + bonus(j));
        }
        best = next;
    }
    best.into_iter()
        .flatten()
        .max()
        .map(|s| s - cand.len() as i32 / 8)
}

/// Entries matching `query`, best first; ties keep the given order.
pub fn rank<T: Copy>(query: &str, entries: &[(T, String)]) -> Vec<(T, i32)> {
    let mut out: Vec<(usize, T, i32)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, (e, name))| fuzzy_score(query, name).map(|s| (i, *e, s)))
        .collect();
    out.sort_by_key(|(i, _, s)| (std::cmp::Reverse(*s), *i));
    out.into_iter().map(|(_, e, s)| (e, s)).collect()
}

/// The text a class entry shows (and is matched by) in the palette.
pub fn class_entry_name(name: &str) -> String {
    format!("label: {name}")
}

fn shortcut_text(ctx: &egui::Context, c: &Command) -> String {
    if c.id == CommandId::ClassDigit {
        return "0 … 9".into();
    }
    c.shortcuts
        .iter()
        .map(|s| {
            // egui spells this key out as "Questionmark".
            if s.logical_key == Key::Questionmark {
                "?".to_string()
            } else {
                ctx.format_shortcut(s)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `?` overlay: every command with its shortcuts; those that do not apply now are dimmed.
pub fn help_ui(ui: &mut egui::Ui, cx: &Context) {
    let ctx = ui.ctx().clone();
    ui.set_min_width(460.0);
    let max_h = (ctx.content_rect().height() - 140.0).max(200.0);
    egui::ScrollArea::vertical()
        .max_height(max_h)
        .show(ui, |ui| {
            egui::Grid::new("help-keys")
                .num_columns(2)
                .striped(true)
                .spacing([24.0, 4.0])
                .show(ui, |ui| {
                    for c in COMMANDS {
                        let keys = shortcut_text(&ctx, c);
                        let keys = if keys.is_empty() {
                            "(palette)".to_string()
                        } else {
                            keys
                        };
                        if available(c.id, cx) {
                            ui.monospace(keys);
                            ui.label(c.name);
                        } else {
                            ui.weak(egui::RichText::new(keys).monospace());
                            ui.weak(c.name);
                        }
                        ui.end_row();
                    }
                });
        });
    ui.weak("Keys are ignored while a text field has the focus. Esc closes this list.");
}

/// Ctrl+K: a text field filtering commands and classes; Enter runs the selected entry.
#[derive(Default)]
pub struct Palette {
    pub open: bool,
    query: String,
    selected: usize,
    focus: bool,
}

impl Palette {
    pub fn toggle(&mut self) {
        self.open = !self.open;
        self.query.clear();
        self.selected = 0;
        self.focus = self.open;
    }

    /// Available commands, then (with a sample open) one "label: …" entry per class.
    fn entries(cx: &Context, classes: &[(u32, String)]) -> Vec<(Entry, String)> {
        let mut all: Vec<(Entry, String)> = COMMANDS
            .iter()
            .filter(|c| c.in_palette && available(c.id, cx))
            .map(|c| (Entry::Command(c.id), c.name.to_string()))
            .collect();
        if cx.sample {
            all.extend(
                classes
                    .iter()
                    .map(|(id, name)| (Entry::Class(*id), class_entry_name(name))),
            );
        }
        all
    }

    /// The entry to run, once chosen; the palette closes then.
    pub fn ui(
        &mut self,
        ctx: &egui::Context,
        cx: &Context,
        classes: &[(u32, String)],
    ) -> Option<Entry> {
        let all = Self::entries(cx, classes);
        let names: std::collections::HashMap<Entry, &str> =
            all.iter().map(|(e, n)| (*e, n.as_str())).collect();
        let ranked = rank(&self.query, &all);
        // Taken before the text field sees them: it would drop the focus on Enter/Escape.
        let (up, down, enter, escape) = ctx.input_mut(|i| {
            (
                i.count_and_consume_key(Modifiers::NONE, Key::ArrowUp),
                i.count_and_consume_key(Modifiers::NONE, Key::ArrowDown),
                i.consume_key(Modifiers::NONE, Key::Enter),
                i.consume_key(Modifiers::NONE, Key::Escape),
            )
        });
        if escape {
            self.open = false;
            return None;
        }
        let last = ranked.len().saturating_sub(1);
        self.selected = (self.selected + down).saturating_sub(up).min(last);
        let mut chosen = if enter {
            ranked.get(self.selected).map(|(e, _)| *e)
        } else {
            None
        };
        egui::Window::new("Command palette")
            .title_bar(false)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 60.0))
            .fixed_size(egui::vec2(480.0, 0.0))
            .show(ctx, |ui| {
                let r = ui.add(
                    egui::TextEdit::singleline(&mut self.query)
                        .hint_text("a command or a class…  (Up/Down, Enter; Esc closes)")
                        .desired_width(f32::INFINITY),
                );
                if std::mem::take(&mut self.focus) {
                    r.request_focus();
                }
                if r.changed() {
                    self.selected = 0;
                }
                ui.separator();
                if ranked.is_empty() {
                    ui.weak("nothing matches");
                }
                egui::ScrollArea::vertical()
                    .max_height(320.0)
                    .show(ui, |ui| {
                        for (k, (e, _)) in ranked.iter().enumerate() {
                            let name = names.get(e).copied().unwrap_or_default();
                            ui.horizontal(|ui| {
                                let sel = k == self.selected;
                                let resp = ui.selectable_label(sel, name);
                                if sel && (up > 0 || down > 0) {
                                    resp.scroll_to_me(None);
                                }
                                if resp.clicked() {
                                    chosen = Some(*e);
                                }
                                if let Entry::Command(id) = e {
                                    if let Some(c) = command(*id) {
                                        ui.with_layout(
                                            egui::Layout::right_to_left(egui::Align::Center),
                                            |ui| ui.weak(shortcut_text(ui.ctx(), c)),
                                        );
                                    }
                                }
                            });
                        }
                    });
            });
        if chosen.is_some() {
            self.open = false;
        }
        chosen
    }
}

/// The app's side of the registry: what the rules see, what each command does, and the two
/// overlays. Kept here so that mod.rs only calls in.
impl super::MgApp {
    pub(super) fn command_context(&self) -> Context {
        Context {
            dataset: self.dataset.is_some(),
            any_visible: !self.visible().is_empty(),
            sample: self.current().is_some(),
            clip: self.clip.is_some(),
            typing_class: !self.class_entry.is_empty(),
            overlay_open: self.help_open,
            busy: self.demo_job.is_some(),
        }
    }

    pub(super) fn run_command(
        &mut self,
        id: CommandId,
        shortcut: Option<egui::KeyboardShortcut>,
        ctx: &egui::Context,
    ) {
        use CommandId as C;
        if let Some(c) = self.clip.as_mut() {
            match id {
                C::PlayPause => c.toggle_play(),
                C::ShuttleForward => c.shuttle(true, false),
                C::ShuttleReverse => c.shuttle(false, false),
                C::SlowForward => c.shuttle(true, true),
                C::SlowReverse => c.shuttle(false, true),
                C::Pause => c.pause(),
                C::StepBack => c.step(-1),
                C::StepForward => c.step(1),
                C::StepBack10 => c.step(-10),
                C::StepForward10 => c.step(10),
                C::GoToStart => c.go_to_start(),
                C::GoToEnd => c.go_to_end(),
                C::ToggleLoop => c.loop_sample = !c.loop_sample,
                _ => {}
            }
        }
        match id {
            C::ToggleSkeleton => self.panes.settings.skeleton = !self.panes.settings.skeleton,
            C::PrevSample | C::NextSample => {
                let next = self.adjacent(id == C::NextSample);
                if next.is_some() && next != self.selected {
                    self.select(next, ctx);
                    self.reveal_selected = true;
                }
            }
            C::ToggleFit => self.timeline.toggle_fit(),
            C::ClassDigit => {
                if let Some(d) = shortcut.and_then(|s| digit_of(s.logical_key)) {
                    self.class_entry.push_str(&d.to_string());
                }
            }
            C::ApplyClass => {
                let entry = std::mem::take(&mut self.class_entry);
                match entry.parse::<u32>() {
                    Ok(c) => self.relabel(c),
                    Err(_) => self.error = Some(format!("{entry} is not a class index")),
                }
            }
            C::Cancel => {
                if !self.class_entry.is_empty() {
                    self.class_entry.clear();
                } else {
                    self.help_open = false;
                }
            }
            C::ToggleReviewed => {
                if let Some(r) = self.current().map(|s| s.reviewed) {
                    self.act(|ds, clip, who| ds.set_reviewed(clip, !r, who));
                }
            }
            C::Undo | C::Redo => {
                let undo = id == C::Undo;
                match self.undo_target() {
                    super::UndoTarget::Weights => self.weights_undo_redo(undo),
                    super::UndoTarget::Labels => self.undo_redo(undo),
                }
            }
            C::OpenDataset => self.open_dialog = true,
            C::ImportScores => self.scores_dialog = true,
            C::GenerateDemo => self.demo_requested = true,
            C::FocusFilter => self.focus_filter = true,
            C::CommandPalette => self.palette.toggle(),
            C::Help => self.help_open = !self.help_open,
            C::TabLabel => self.tab = super::Tab::Label,
            C::TabPredictions => self.tab = super::Tab::Predictions,
            C::TabEnsemble => self.tab = super::Tab::Ensemble,
            C::TabTraining => self.tab = super::Tab::Training,
            _ => {}
        }
    }

    /// The help overlay and the command palette, above everything else.
    pub(super) fn overlays(&mut self, ctx: &egui::Context) {
        let cx = self.command_context();
        if self.help_open {
            let mut open = true;
            egui::Window::new("Keyboard shortcuts")
                .open(&mut open)
                .collapsible(false)
                .resizable(false)
                .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
                .show(ctx, |ui| help_ui(ui, &cx));
            self.help_open &= open;
        }
        if self.palette.open {
            let classes: Vec<(u32, String)> = self
                .dataset
                .as_ref()
                .map(|d| {
                    d.taxonomy()
                        .classes
                        .iter()
                        .map(|c| (c.id, c.name.clone()))
                        .collect()
                })
                .unwrap_or_default();
            match self.palette.ui(ctx, &cx, &classes) {
                Some(Entry::Command(id)) => self.run_command(id, None, ctx),
                Some(Entry::Class(c)) => self.relabel(c),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_commands_share_a_shortcut() {
        let mut seen = HashSet::new();
        for c in COMMANDS {
            for s in c.shortcuts {
                assert!(
                    seen.insert((s.modifiers, s.logical_key)),
                    "{:?} is bound twice (again by {})",
                    s,
                    c.name
                );
            }
        }
    }

    #[test]
    fn ids_and_names_are_unique() {
        let ids: HashSet<_> = COMMANDS.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), COMMANDS.len());
        let names: HashSet<_> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), COMMANDS.len());
    }

    #[test]
    fn jkl_and_selection_keys_are_where_the_readme_says() {
        let bound = |id| {
            command(id)
                .map(|c| c.shortcuts.to_vec())
                .unwrap_or_default()
        };
        assert_eq!(bound(C::ShuttleForward), [key(Key::L)]);
        assert_eq!(bound(C::Pause), [key(Key::K)]);
        assert_eq!(bound(C::ShuttleReverse), [key(Key::J)]);
        // j/k no longer select samples.
        assert_eq!(
            bound(C::NextSample),
            [key(Key::ArrowDown), key(Key::PageDown)]
        );
        assert_eq!(bound(C::PrevSample), [key(Key::ArrowUp), key(Key::PageUp)]);
        assert_eq!(digit_of(Key::Num7), Some(7));
        assert_eq!(digit_of(Key::A), None);
    }

    fn press(k: Key, modifiers: Modifiers) -> egui::Event {
        egui::Event::Key {
            key: k,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers,
        }
    }

    fn input_with(events: Vec<egui::Event>) -> egui::InputState {
        let mut i = egui::InputState::default();
        i.events = events;
        i
    }

    #[test]
    fn shift_right_is_ten_frames_not_one() {
        let cx = Context {
            clip: true,
            ..Default::default()
        };
        let mut input = input_with(vec![
            press(Key::ArrowRight, Modifiers::SHIFT),
            press(Key::ArrowRight, Modifiers::NONE),
            press(Key::Z, Modifiers::COMMAND.plus(Modifiers::SHIFT)),
        ]);
        let got: Vec<_> = take_pressed(&mut input, &cx)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        // Ctrl+Shift+Z needs a dataset, which this context lacks: left for egui.
        assert_eq!(got, [C::StepForward10, C::StepForward]);
        assert_eq!(input.events.len(), 1);
    }

    #[test]
    fn presses_run_in_typed_order() {
        let cx = Context {
            sample: true,
            clip: true,
            typing_class: true,
            ..Default::default()
        };
        let mut input = input_with(vec![
            press(Key::Num1, Modifiers::NONE),
            press(Key::Num2, Modifiers::NONE),
            press(Key::Enter, Modifiers::NONE),
        ]);
        let got: Vec<_> = take_pressed(&mut input, &cx)
            .into_iter()
            .map(|(id, sc)| (id, digit_of(sc.logical_key)))
            .collect();
        assert_eq!(
            got,
            [
                (C::ClassDigit, Some(1)),
                (C::ClassDigit, Some(2)),
                (C::ApplyClass, None)
            ]
        );
        assert!(input.events.is_empty());
    }

    #[test]
    fn unavailable_commands_leave_their_keys_alone() {
        let mut input = input_with(vec![press(Key::Space, Modifiers::NONE)]);
        assert!(take_pressed(&mut input, &Context::default()).is_empty());
        assert_eq!(input.events.len(), 1);
    }

    #[test]
    fn fuzzy_scorer_needs_a_subsequence() {
        assert!(fuzzy_score("tch", "label: touch chin").is_some());
        assert!(fuzzy_score("TOUCH", "label: touch chin").is_some());
        assert_eq!(fuzzy_score("xyz", "label: touch chin"), None);
        assert_eq!(fuzzy_score("chint", "label: touch chin"), None);
        assert_eq!(fuzzy_score("", "anything"), Some(0));
    }

    #[test]
    fn fuzzy_scorer_prefers_prefixes_runs_and_word_starts() {
        let s = |q, c| fuzzy_score(q, c).unwrap_or(i32::MIN);
        // A run beats scattered letters.
        assert!(s("undo", "Undo") > s("undo", "Unreviewed do"));
        // Word starts beat mid-word letters.
        assert!(s("tc", "label: touch chin") > s("tc", "label: scratch"));
        assert_eq!(
            s("tc", "label: touch chin"),
            (1 + 8 - 5) + (-5 + 1 + 8) - 17 / 8
        );
        // At the very start beats later.
        assert!(s("play", "Play / pause") > s("play", "Display"));
        // Exact value checks keep the weights honest.
        assert_eq!(s("un", "Undo"), 1 + 10 + 8 + 1 + 5);
        assert_eq!(s("ud", "Undo"), 1 + 10 + 8 + 1 - 1);
    }

    #[test]
    fn rank_puts_the_best_first_and_keeps_order_on_ties() {
        let entries = vec![
            (0, "Next sample".to_string()),
            (1, "Previous sample".to_string()),
            (2, class_entry_name("touch chin")),
            (3, class_entry_name("touch ears")),
        ];
        let r = rank("touch", &entries);
        assert_eq!(r.iter().map(|(e, _)| *e).collect::<Vec<_>>(), [2, 3]);
        let r = rank("prev", &entries);
        assert_eq!(r[0].0, 1);
        let r = rank("ch ch", &entries);
        assert_eq!(r[0].0, 2);
        assert_eq!(rank("", &entries).len(), 4);
    }
}
