//! The live training window (feature `gui`): training runs on its own thread and publishes a
//! `LiveState`; the window (eframe on its own wgpu device) draws it a few times a second. The
//! window reads views and representations through the snapshots the training thread takes
//! (small readbacks every few seconds), so sharing one device would save no copies worth the
//! coupling.

mod app;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::data::Split;
use crate::live::{train_live, LiveState, RunStatus};
use crate::train::{open_dataset, Control, Trainer};
use crate::{Error, Result};

/// Where a screenshot goes, and when it is taken.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    /// Save a PNG of the window here, then close it.
    pub screenshot: Option<PathBuf>,
    /// Take the screenshot after this many steps (and an embedding) instead of at the end;
    /// the run is stopped then, with a checkpoint.
    pub screenshot_after: Option<u64>,
}

/// Redraw interval when nothing is clicked: four times a second, every 3 s when the adapter is
/// a CPU (the window is then drawn on the cores that train: at 1 s it cost lavapipe 12% of its
/// images/s). Input redraws at once either way.
fn repaint_every(gpu: &crate::gpu::Gpu) -> std::time::Duration {
    std::time::Duration::from_millis(if gpu.is_cpu() { 3000 } else { 250 })
}

fn native_options() -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 860.0])
            .with_title("byol-wgpu"),
        ..Default::default()
    }
}

/// Trains `trainer` on a thread of its own while a window shows it; returns when both end.
pub fn train_with_window(mut trainer: Trainer, options: WindowOptions) -> Result<Trainer> {
    let total = trainer
        .config
        .stop_after
        .unwrap_or(trainer.info.total_steps)
        .min(trainer.info.total_steps);
    let title = format!(
        "{} - preset {}",
        trainer.out.display(),
        trainer.config.preset
    );
    let state = Arc::new(Mutex::new(LiveState::new(title, total)));
    let control = Arc::new(Control::default());
    // The probe set for the embedding map: the test split where there is one.
    let probe = open_dataset(&trainer.config, Split::Test)
        .or_else(|_| open_dataset(&trainer.config, Split::Train))?;
    let app = app::App::new(
        state.clone(),
        Some(control.clone()),
        options.screenshot.clone(),
        options.screenshot_after,
        repaint_every(trainer.gpu()),
    );
    let shot = app.screenshot_result();
    let repaint: Arc<Mutex<Option<eframe::egui::Context>>> = Arc::new(Mutex::new(None));
    let thread = {
        let (state, control, repaint) = (state.clone(), control.clone(), repaint.clone());
        std::thread::spawn(move || {
            let wake = move || {
                if let Some(ctx) = repaint.lock().expect("repaint").as_ref() {
                    ctx.request_repaint();
                }
            };
            train_live(&mut trainer, probe.as_ref(), &state, &control, &wake).map(|()| trainer)
        })
    };
    let ui_result = eframe::run_native(
        "byol-wgpu",
        native_options(),
        Box::new(move |cc| {
            *repaint.lock().expect("repaint") = Some(cc.egui_ctx.clone());
            Ok(Box::new(app))
        }),
    );
    // Closing the window stops the run (with a checkpoint).
    control
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let train_result = thread
        .join()
        .map_err(|_| Error::Training("the training thread panicked".into()))?;
    ui_result.map_err(|e| Error::Gpu(format!("the window failed: {e}")))?;
    screenshot_outcome(&shot, options.screenshot.as_deref())?;
    train_result
}

fn screenshot_outcome(
    shot: &Mutex<Option<std::result::Result<(), String>>>,
    path: Option<&Path>,
) -> Result<()> {
    match (path, shot.lock().expect("screenshot").take()) {
        (Some(p), Some(Err(e))) => Err(Error::File {
            path: p.to_path_buf(),
            msg: e,
        }),
        (Some(p), None) => Err(Error::File {
            path: p.to_path_buf(),
            msg: "the window closed before the screenshot was taken".into(),
        }),
        _ => Ok(()),
    }
}

/// `byol watch DIR`: a window over a run's files (running or finished), refreshed every second:
/// curves from metrics.jsonl, and the embedding map and views from its newest checkpoint.
pub fn watch(gpu: &Arc<crate::gpu::Gpu>, dir: &Path, options: WindowOptions) -> Result<()> {
    let title = format!("{} (watching)", dir.display());
    let state = Arc::new(Mutex::new(LiveState::new(title, 0)));
    let app = app::App::new(
        state.clone(),
        None,
        options.screenshot.clone(),
        None,
        repaint_every(gpu),
    );
    let shot = app.screenshot_result();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = options.screenshot.is_some();
    let thread = {
        let (state, stop, gpu, dir) = (state.clone(), stop.clone(), gpu.clone(), dir.to_path_buf());
        std::thread::spawn(move || watch_loop(&gpu, &dir, &state, &stop, once))
    };
    let ui_result = eframe::run_native(
        "byol-wgpu",
        native_options(),
        Box::new(move |_| Ok(Box::new(app))),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let watched = thread
        .join()
        .map_err(|_| Error::Training("the watching thread panicked".into()))?;
    ui_result.map_err(|e| Error::Gpu(format!("the window failed: {e}")))?;
    screenshot_outcome(&shot, options.screenshot.as_deref())?;
    watched
}

fn watch_loop(
    gpu: &Arc<crate::gpu::Gpu>,
    dir: &Path,
    state: &Mutex<LiveState>,
    stop: &std::sync::atomic::AtomicBool,
    once: bool,
) -> Result<()> {
    let mut shown_checkpoint: Option<PathBuf> = None;
    let mut probe: Option<(Vec<crate::data::Image>, Vec<Option<u32>>)> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let metrics = crate::train::metrics::read(&dir.join("metrics.jsonl"))?;
        // A new checkpoint, read only when one appears; a damaged one is passed over.
        let fresh = crate::train::checkpoint::list(dir)
            .pop()
            .filter(|c| Some(c) != shown_checkpoint.as_ref())
            .and_then(|_| crate::train::checkpoint::load(dir).ok())
            .filter(|c| Some(&c.dir) != shown_checkpoint.as_ref());
        let mut embedding = None;
        let mut views = None;
        let mut total = 0;
        if let Some(loaded) = fresh {
            let (ckpt, run_state, tensors) = (loaded.dir, loaded.state, loaded.tensors);
            let config = &run_state.config;
            total = config.stop_after.unwrap_or(u64::MAX);
            if probe.is_none() {
                let d = open_dataset(config, Split::Test)
                    .or_else(|_| open_dataset(config, Split::Train))?;
                let n = d.len().min(crate::live::PROBE_IMAGES);
                let imgs: Vec<_> = (0..n)
                    .filter_map(|i| d.load(i).ok().map(|im| (im, d.label(i))))
                    .collect();
                probe = Some(imgs.into_iter().unzip());
            }
            let (images, labels) = probe.as_ref().expect("probe set loaded");
            let max_side = images
                .iter()
                .map(|i| i.width.max(i.height))
                .max()
                .unwrap_or(1);
            let enc = crate::eval::DatasetEncoder::new(
                gpu,
                &tensors,
                &run_state.views,
                images.len().clamp(1, 128),
                max_side,
            )?;
            let f = enc.encode(images)?;
            let dim = f.len() / images.len().max(1);
            embedding = Some(crate::live::Embedding {
                step: run_state.step,
                points: crate::viz::pca_2d(&f, dim),
                labels: labels.clone(),
            });
            views = Some(sample_views(gpu, images, &run_state)?);
            shown_checkpoint = Some(ckpt.clone());
        }
        {
            let mut s = state.lock().expect("live state");
            if let Some(last) = metrics.last() {
                s.elapsed_s = last.elapsed_s;
                if total != 0 {
                    s.total_steps = total.min(last.step.max(s.total_steps)).max(last.step);
                }
                s.total_steps = s.total_steps.max(last.step);
            }
            s.metrics = metrics;
            if embedding.is_some() {
                s.embedding = embedding;
                s.views = views;
            }
            s.last_checkpoint = shown_checkpoint.clone();
            s.status = RunStatus::Running;
            if once && s.embedding.is_some() {
                s.status = RunStatus::Finished("shown".into());
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Ok(())
}

/// T and T' views of the first probe images as the run draws them (its recipe), seeded
/// by the checkpoint's step: what the run's views look like.
fn sample_views(
    gpu: &Arc<crate::gpu::Gpu>,
    images: &[crate::data::Image],
    run: &crate::train::checkpoint::TrainState,
) -> Result<crate::live::ViewPairs> {
    let dists = run.config.view_distributions();
    let shown = &images[..images.len().min(6)];
    let rows = crate::augment::preview_views(
        gpu,
        shown,
        run.views.side,
        run.views.channels,
        &dists,
        1,
        run.step,
    )?;
    Ok(crate::live::ViewPairs {
        step: run.step,
        side: run.views.side,
        pairs: rows
            .into_iter()
            .map(|r| [r[1].clone(), r[2].clone()])
            .collect(),
    })
}
