//! What a window shows of a run, shared between the training thread and the window: the
//! metrics so far, a 2-D map of a fixed probe set's representations, the latest views. The
//! training thread takes snapshots between steps, never more than a few percent of its time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::data::{Dataset, Image, Normalization};
use crate::eval::DatasetEncoder;
use crate::train::{StepMetrics, Trainer};
use crate::Result;

/// Representations of the probe set on their two leading principal components.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub step: u64,
    pub points: Vec<[f64; 2]>,
    pub labels: Vec<Option<u32>>,
}

/// The first images of a step's two views, as 8-bit RGB rows.
#[derive(Debug, Clone)]
pub struct ViewPairs {
    pub step: u64,
    pub side: usize,
    pub pairs: Vec<[Vec<u8>; 2]>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Starting,
    Running,
    Paused,
    Finished(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct LiveState {
    pub title: String,
    pub metrics: Vec<StepMetrics>,
    pub total_steps: u64,
    pub embedding: Option<Embedding>,
    pub views: Option<ViewPairs>,
    pub status: RunStatus,
    /// Seconds the training thread spent on snapshots, and in all.
    pub snapshot_s: f64,
    pub elapsed_s: f64,
    pub last_checkpoint: Option<PathBuf>,
}

impl LiveState {
    pub fn new(title: String, total_steps: u64) -> Self {
        Self {
            title,
            metrics: Vec::new(),
            total_steps,
            embedding: None,
            views: None,
            status: RunStatus::Starting,
            snapshot_s: 0.0,
            elapsed_s: 0.0,
            last_checkpoint: None,
        }
    }
}

/// Undoes the normalisation of a [C, S, S] view and returns RGB bytes.
pub fn view_to_rgb(view: &[f32], channels: usize, side: usize, norm: &Normalization) -> Vec<u8> {
    let plane = side * side;
    (0..plane)
        .flat_map(|p| (0..3).map(move |c| (p, c.min(channels - 1))))
        .map(|(p, c)| {
            let v = view[c * plane + p] * norm.std[c] + norm.mean[c];
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect()
}

/// Takes snapshots of a training run for a window.
pub struct Snapshots {
    images: Vec<Image>,
    labels: Vec<Option<u32>>,
    encoder: Option<DatasetEncoder>,
    next: Instant,
    /// The most of the training thread's time snapshots may take.
    budget: f64,
    min_interval: Duration,
    pub spent: Duration,
}

impl Snapshots {
    /// The probe set: the first `count` readable images of `probe`.
    pub fn new(probe: &dyn Dataset, count: usize) -> Self {
        let (images, labels) = crate::data::first_readable(probe, count);
        Self {
            images,
            labels,
            encoder: None,
            next: Instant::now(),
            budget: 0.03,
            min_interval: Duration::from_secs(2),
            spent: Duration::ZERO,
        }
    }

    /// When it is time: the probe set's embedding with the current online encoder and the
    /// current views, into `state`. The interval grows so that snapshots stay within 3% of
    /// the thread's time.
    pub fn maybe_take(&mut self, trainer: &Trainer, state: &Mutex<LiveState>) -> Result<()> {
        if Instant::now() < self.next || self.images.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let weights = trainer.online_encoder()?;
        let view = trainer.state().views;
        let encoder = match self.encoder.take() {
            Some(e) => {
                e.encoder.set_weights(&weights)?;
                e
            }
            None => {
                let max_side = self
                    .images
                    .iter()
                    .map(|i| i.width.max(i.height))
                    .max()
                    .unwrap_or(1);
                DatasetEncoder::new(
                    trainer.gpu(),
                    &weights,
                    &view,
                    self.images.len().min(128),
                    max_side,
                )?
            }
        };
        let features = encoder.encode(&self.images)?;
        self.encoder = Some(encoder);
        let dim = features.len() / self.images.len();
        let points = crate::viz::pca_2d(&features, dim);
        let [v1, v2] = trainer.current_views(SHOWN_VIEWS)?;
        let per = view.channels * view.side * view.side;
        let shown = v1.len() / per;
        let pairs = (0..shown)
            .map(|i| {
                let rgb = |v: &[f32]| {
                    view_to_rgb(
                        &v[i * per..(i + 1) * per],
                        view.channels,
                        view.side,
                        &view.normalization,
                    )
                };
                [rgb(&v1), rgb(&v2)]
            })
            .collect();
        let step = trainer.state().step;
        let cost = started.elapsed();
        self.spent += cost;
        self.next = Instant::now() + self.min_interval.max(cost.div_f64(self.budget));
        let mut s = state.lock().expect("live state");
        s.embedding = Some(Embedding {
            step,
            points,
            labels: self.labels.clone(),
        });
        s.views = Some(ViewPairs {
            step,
            side: view.side,
            pairs,
        });
        s.snapshot_s = self.spent.as_secs_f64();
        Ok(())
    }
}

/// Images whose two views the window shows.
const SHOWN_VIEWS: usize = 6;

/// Images in the embedding map's probe set.
pub const PROBE_IMAGES: usize = 256;

/// Runs `trainer` on this thread, keeping `state` up to date and obeying `control`;
/// `on_change` is called when the run ends (the window redraws on its own timer otherwise).
pub fn train_live(
    trainer: &mut Trainer,
    probe: &dyn Dataset,
    state: &Arc<Mutex<LiveState>>,
    control: &crate::train::Control,
    on_change: &(dyn Fn() + Sync),
) -> Result<()> {
    let mut snapshots = Snapshots::new(probe, PROBE_IMAGES);
    let started = Instant::now();
    state.lock().expect("live state").status = RunStatus::Running;
    let mut on = |e: crate::train::Event| {
        let mut s = state.lock().expect("live state");
        match e {
            crate::train::Event::Step(m) => s.metrics.push(m.clone()),
            crate::train::Event::Checkpoint(p) => s.last_checkpoint = Some(p.to_path_buf()),
            crate::train::Event::EpochEnd { .. } => {}
        }
        s.elapsed_s = started.elapsed().as_secs_f64();
        s.status = if control.pause.load(std::sync::atomic::Ordering::Relaxed) {
            RunStatus::Paused
        } else {
            RunStatus::Running
        };
    };
    let mut failure = None;
    let mut between = |t: &Trainer| {
        if failure.is_none() {
            if let Err(e) = snapshots.maybe_take(t, state) {
                failure = Some(e);
            }
        }
    };
    let result = trainer.run_with(&mut on, &mut between, Some(control));
    let mut s = state.lock().expect("live state");
    s.status = match (&result, failure) {
        (Err(e), _) => RunStatus::Failed(e.to_string()),
        (Ok(()), Some(e)) => RunStatus::Failed(format!("snapshots failed: {e}")),
        (Ok(()), None) => RunStatus::Finished(format!("trained {} steps", trainer.state().step)),
    };
    drop(s);
    on_change();
    result
}
