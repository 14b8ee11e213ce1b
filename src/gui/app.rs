//! The window: curves, the embedding map, the current views, and the run's buttons.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eframe::egui::{self, Color32, ColorImage, TextureHandle, TextureOptions};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use crate::live::{LiveState, RunStatus};
use crate::train::{Control, StepMetrics};

/// Ten distinguishable colours for class labels (Tableau 10).
const PALETTE: [Color32; 10] = [
    Color32::from_rgb(31, 119, 180),
    Color32::from_rgb(255, 127, 14),
    Color32::from_rgb(44, 160, 44),
    Color32::from_rgb(214, 39, 40),
    Color32::from_rgb(148, 103, 189),
    Color32::from_rgb(140, 86, 75),
    Color32::from_rgb(227, 119, 194),
    Color32::from_rgb(127, 127, 127),
    Color32::from_rgb(188, 189, 34),
    Color32::from_rgb(23, 190, 207),
];

pub struct App {
    state: Arc<Mutex<LiveState>>,
    /// None when watching a run from its files (no buttons).
    control: Option<Arc<Control>>,
    textures: Vec<[TextureHandle; 2]>,
    textures_step: Option<u64>,
    /// Save a screenshot here once the run has finished (or after `screenshot_after` steps), then close.
    screenshot: Option<PathBuf>,
    screenshot_after: Option<u64>,
    screenshot_requested: bool,
    screenshot_done: Arc<Mutex<Option<std::result::Result<(), String>>>>,
    close_when_finished: bool,
    /// How often the window redraws: every redraw costs CPU time, which a CPU adapter shares
    /// with training.
    repaint_every: Duration,
}

impl App {
    pub fn new(
        state: Arc<Mutex<LiveState>>,
        control: Option<Arc<Control>>,
        screenshot: Option<PathBuf>,
        screenshot_after: Option<u64>,
        repaint_every: Duration,
    ) -> Self {
        Self {
            repaint_every,
            state,
            control,
            textures: Vec::new(),
            textures_step: None,
            close_when_finished: screenshot.is_some(),
            screenshot,
            screenshot_after,
            screenshot_requested: false,
            screenshot_done: Arc::new(Mutex::new(None)),
        }
    }

    pub fn screenshot_result(&self) -> Arc<Mutex<Option<std::result::Result<(), String>>>> {
        self.screenshot_done.clone()
    }
}

fn curve<'a>(metrics: &[StepMetrics], f: fn(&StepMetrics) -> f64) -> PlotPoints<'a> {
    metrics
        .iter()
        .map(|m| [m.step as f64, f(m)])
        .filter(|p| p[1].is_finite())
        .collect()
}

fn small_plot(ui: &mut egui::Ui, id: &str, title: &str, points: PlotPoints<'_>, height: f32) {
    ui.label(title);
    Plot::new(id)
        .height(height)
        .allow_scroll(false)
        .allow_zoom(false)
        .allow_drag(false)
        .show(ui, |p| p.line(Line::new(title, points)));
}

fn eta(s: &LiveState) -> String {
    let Some(last) = s.metrics.last() else {
        return "-".into();
    };
    let first = &s.metrics[0];
    let steps = last.step.saturating_sub(first.step).max(1) as f64;
    let per_step = (last.elapsed_s - first.elapsed_s).max(0.0) / steps;
    let left = s.total_steps.saturating_sub(last.step) as f64 * per_step;
    format!("{:.0} min {:02.0} s", (left / 60.0).floor(), left % 60.0)
}

impl App {
    fn header(&mut self, ui: &mut egui::Ui, s: &LiveState) {
        ui.horizontal(|ui| {
            ui.heading(&s.title);
            let status = match &s.status {
                RunStatus::Starting => "starting".to_string(),
                RunStatus::Running => "running".to_string(),
                RunStatus::Paused => "paused".to_string(),
                RunStatus::Finished(m) => format!("finished: {m}"),
                RunStatus::Failed(m) => format!("failed: {m}"),
            };
            ui.label(status);
        });
        ui.horizontal(|ui| {
            if let Some(m) = s.metrics.last() {
                ui.label(format!(
                    "step {}/{}  epoch {}  loss {:.4}  collapse std {:.4}  {:.1} images/s  ETA {}",
                    m.step,
                    s.total_steps,
                    m.epoch,
                    m.loss,
                    m.collapse_std,
                    m.images_per_s,
                    eta(s)
                ));
                if let Some(p) = m.probe_accuracy {
                    ui.label(format!("probe {p:.1}%"));
                }
            }
            if self.control.is_some() && s.elapsed_s > 0.0 {
                ui.label(format!(
                    "snapshots {:.1}% of the training thread",
                    100.0 * s.snapshot_s / s.elapsed_s
                ));
            }
        });
        if let Some(control) = &self.control {
            let running = matches!(
                s.status,
                RunStatus::Running | RunStatus::Paused | RunStatus::Starting
            );
            ui.add_enabled_ui(running, |ui| {
                ui.horizontal(|ui| {
                    let paused = control.pause.load(Ordering::Relaxed);
                    if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
                        control.pause.store(!paused, Ordering::Relaxed);
                    }
                    if ui.button("Save checkpoint now").clicked() {
                        control.save.store(true, Ordering::Relaxed);
                    }
                    if ui.button("Stop").clicked() {
                        control.stop.store(true, Ordering::Relaxed);
                    }
                    if let Some(p) = &s.last_checkpoint {
                        ui.label(format!("last checkpoint: {}", p.display()));
                    }
                });
            });
        }
    }

    fn views(&mut self, ui: &mut egui::Ui, s: &LiveState) {
        let Some(v) = &s.views else {
            ui.label("views appear after the first step");
            return;
        };
        if self.textures_step != Some(v.step) {
            let ctx = ui.ctx().clone();
            self.textures = v
                .pairs
                .iter()
                .enumerate()
                .map(|(i, pair)| {
                    pair.clone().map(|rgb| {
                        let img = ColorImage::from_rgb([v.side, v.side], &rgb);
                        ctx.load_texture(format!("view {i}"), img, TextureOptions::NEAREST)
                    })
                })
                .collect();
            self.textures_step = Some(v.step);
        }
        let whose = if self.control.is_some() {
            "trained on at"
        } else {
            "drawn as the run draws them, seeded by"
        };
        ui.label(format!("views {whose} step {} (top T, bottom T')", v.step));
        let size = egui::vec2(64.0, 64.0);
        for row in 0..2 {
            ui.horizontal(|ui| {
                for pair in &self.textures {
                    ui.add(egui::Image::new(&pair[row]).fit_to_exact_size(size));
                }
            });
        }
    }

    fn embedding(ui: &mut egui::Ui, s: &LiveState) {
        let Some(e) = &s.embedding else {
            ui.label("the embedding map appears after the first step");
            return;
        };
        ui.label(format!(
            "probe set ({} images) on the first two principal components of the online representations, step {}",
            e.points.len(),
            e.step
        ));
        Plot::new("embedding")
            .height((ui.available_height() - 190.0).max(200.0))
            .legend(Legend::default())
            .data_aspect(1.0)
            .show(ui, |p| {
                let mut classes: Vec<Option<u32>> = e.labels.clone();
                classes.sort();
                classes.dedup();
                for class in classes {
                    let pts: PlotPoints = e
                        .points
                        .iter()
                        .zip(&e.labels)
                        .filter(|(_, l)| **l == class)
                        .map(|(pt, _)| *pt)
                        .collect();
                    let (name, color) = match class {
                        Some(c) => (format!("class {c}"), PALETTE[c as usize % PALETTE.len()]),
                        None => ("images".to_string(), PALETTE[0]),
                    };
                    p.points(Points::new(name, pts).radius(2.0).color(color));
                }
            });
    }

    fn maybe_screenshot(&mut self, ctx: &egui::Context, s: &LiveState) {
        let Some(path) = self.screenshot.clone() else {
            return;
        };
        let finished = matches!(s.status, RunStatus::Finished(_) | RunStatus::Failed(_));
        let reached = self.screenshot_after.is_some_and(|n| {
            s.metrics.last().is_some_and(|m| m.step >= n) && s.embedding.is_some()
        });
        if (finished || reached) && !self.screenshot_requested {
            self.screenshot_requested = true;
            let done = self.screenshot_done.clone();
            let ctx2 = ctx.clone();
            ctx.request_screenshot(move |image| {
                let [w, h] = image.size;
                let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
                let result = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
                    .ok_or_else(|| "bad screenshot size".to_string())
                    .and_then(|img| img.save(&path).map_err(|e| e.to_string()));
                *done.lock().expect("screenshot") = Some(result);
                ctx2.request_repaint();
            });
        }
        let done = self.screenshot_done.lock().expect("screenshot").is_some();
        if done && (finished || !self.close_when_finished || self.screenshot_after.is_some()) {
            if let Some(c) = &self.control {
                c.stop.store(true, Ordering::Relaxed);
            }
            if finished {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        ctx.request_repaint_after(self.repaint_every);
        let s = self.state.lock().expect("live state").clone();
        egui::CentralPanel::default().show(ui, |ui| {
            self.header(ui, &s);
            ui.separator();
            ui.columns(2, |cols| {
                let h = 110.0;
                small_plot(
                    &mut cols[0],
                    "loss",
                    "loss",
                    curve(&s.metrics, |m| m.loss),
                    h,
                );
                small_plot(
                    &mut cols[0],
                    "collapse",
                    "collapse std (about 1/sqrt(d) healthy, 0 collapsed)",
                    curve(&s.metrics, |m| m.collapse_std),
                    h,
                );
                small_plot(
                    &mut cols[0],
                    "lr",
                    "learning rate",
                    curve(&s.metrics, |m| m.lr),
                    h,
                );
                small_plot(&mut cols[0], "tau", "tau", curve(&s.metrics, |m| m.tau), h);
                if s.metrics.iter().any(|m| m.probe_accuracy.is_some()) {
                    small_plot(
                        &mut cols[0],
                        "probe",
                        "online probe top-1 (%)",
                        curve(&s.metrics, |m| m.probe_accuracy.unwrap_or(f64::NAN)),
                        h,
                    );
                }
                Self::embedding(&mut cols[1], &s);
                cols[1].separator();
                self.views(&mut cols[1], &s);
            });
        });
        self.maybe_screenshot(&ctx, &s);
    }
}
