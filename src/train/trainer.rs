//! The training loop: batches from the loader, both views augmented on the device, the BYOL
//! step, metrics read back one step late (the queue never waits for the CPU), checkpoints.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::{self, TrainState};
use super::metrics::{MetricsLog, StepMetrics};
use super::replicas::{Replicas, StepSums};
use super::TrainConfig;
use crate::augment::{draw, step_rng, Augmenter, ViewDistribution, ViewParams};
use crate::byol::{ByolStep, StepOptions};
use crate::data::{self, Dataset, EpochReader, Loader, Skipped, Split, ViewSpec};
use crate::gpu::Gpu;
use crate::graph::{Executable, Pending};
use crate::nn::{ParamRole, Weights};
use crate::optim::{LrSchedule, TauSchedule};
use crate::parallel::Group;
use crate::{Error, Result};

/// The online probe's learning rate (SGD with Nesterov momentum, constant). Over the former quick
/// run's 40 steps (5,120 images) in a PyTorch BYOL (seeds 0-2, mean top-1 of steps 36-40), 0.05,
/// 0.1, 0.2 and 0.5 read 54%, 57%, 57% and 50%; Adam at 0.03, 55%.
const PROBE_LR: f32 = 0.1;

/// Largest side a folder image keeps when decoded, as a multiple of the view side.
const SOURCE_SIDE_FACTOR: usize = 2;

/// Requests from outside the loop (a window's buttons), obeyed between optimiser steps.
#[derive(Debug, Default)]
pub struct Control {
    pub pause: AtomicBool,
    /// Save a checkpoint after the current step (cleared when done).
    pub save: AtomicBool,
    /// Stop after the current step, with a checkpoint.
    pub stop: AtomicBool,
}

/// What the loop tells its caller.
pub enum Event<'a> {
    Step(&'a StepMetrics),
    EpochEnd { epoch: u64, skipped: &'a [Skipped] },
    Checkpoint(&'a Path),
}

/// Run-level facts for the caller's display.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub dataset_len: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub image_shape: [usize; 3],
    pub kernels_per_step: usize,
    /// Ops of the step run once while it was built, to compile kernels new to the device.
    pub ops_compiled_ahead: usize,
    /// The f32 values the ranks of a group sum every step (0 alone).
    pub summed_per_step: usize,
}

pub struct Trainer {
    pub config: TrainConfig,
    pub out: PathBuf,
    pub info: RunInfo,
    state: TrainState,
    step: ByolStep,
    exe: Executable,
    augmenter: Augmenter,
    loader: Loader,
    views: [ViewDistribution; 2],
    lr: LrSchedule,
    tau: TauSchedule,
    /// The images embedding.png draws at every checkpoint.
    probe: super::ProbeSet,
    /// The processes training this run together (this one alone without MPI).
    replicas: Replicas,
    /// What the trainer decided for the user while opening the run (a damaged checkpoint
    /// passed over, a batch split to fit the adapter), one line each, for the user to read.
    pub notes: Vec<String>,
}

/// A run's dataset split opened as the config says.
pub fn open_dataset(config: &TrainConfig, split: Split) -> Result<Arc<dyn Dataset>> {
    let path = config
        .data
        .clone()
        .unwrap_or_else(data::default_dataset_path);
    let side = config.image_size.unwrap_or(224);
    let dataset = data::open(&path, split, side * SOURCE_SIDE_FACTOR)?;
    Ok(match (split, config.subset) {
        (Split::Train, Some(n)) if n > 0 => Arc::new(data::Subset::new(dataset, n)),
        _ => dataset,
    })
}

/// The side of the views: the config's, else the dataset's own for images up to 64 px.
pub fn view_side(config: &TrainConfig, dataset: &dyn Dataset) -> usize {
    config.image_size.unwrap_or_else(|| {
        let side = dataset.max_side();
        if side <= 64 {
            side
        } else {
            224
        }
    })
}

/// The next number of micro-batches per rank above the config's that divides its batch into
/// micro-batches of at least two images on each of `ranks` ranks, if there is one.
fn finer_split(config: &TrainConfig, ranks: usize) -> Option<usize> {
    (config.accumulate + 1..=config.batch / (2 * ranks))
        .find(|a| config.batch.is_multiple_of(a * ranks))
}

impl Trainer {
    /// A new run in `out` (which must not hold one already), trained by the processes of
    /// `group` together, each on its share of every batch.
    pub fn new(
        group: &Arc<Group>,
        gpu: &Arc<Gpu>,
        config: TrainConfig,
        out: &Path,
    ) -> Result<Self> {
        if !checkpoint::list(out).is_empty() {
            return Err(Error::Config(format!(
                "{} already holds a run: continue it with --resume {0}, or choose another --out",
                out.display()
            )));
        }
        let state = TrainState {
            format: checkpoint::FORMAT,
            step: 0,
            epoch: 0,
            position: 0,
            skipped: 0,
            elapsed_s: 0.0,
            views: ViewSpec {
                side: 0,
                channels: 0,
                normalization: crate::data::Normalization::IMAGENET,
            },
            config: config.clone(),
        };
        let mut trainer = Self::build_agreed(group, gpu, state, out)?;
        let values = trainer.step.initial_values(config.seed, config.target_init);
        for (p, v) in trainer.step.params.iter().zip(values) {
            trainer.exe.write(p.id, &v)?;
        }
        trainer
            .replicas
            .agree(&trainer.exe, &trainer.step, &trainer.state)?;
        Ok(trainer)
    }

    /// Continues the run whose checkpoint (or run directory) is `path`, with the processes of
    /// `group` (their number may differ from the run's before, if it divides the batch).
    pub fn resume(
        group: &Arc<Group>,
        gpu: &Arc<Gpu>,
        path: &Path,
        stop_after: Option<u64>,
    ) -> Result<Self> {
        let loaded = checkpoint::load(path)?;
        let notes = loaded.fallback_lines();
        let (dir, mut state, mut tensors) = (loaded.dir, loaded.state, loaded.tensors);
        if stop_after.is_some() {
            state.config.stop_after = stop_after;
        }
        let run = dir
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.to_path_buf());
        let mut trainer = Self::build_agreed(group, gpu, state, &run)?;
        trainer.notes.splice(0..0, notes);
        // Checkpoints from before the probe standardised its features lack probe.bn.*: the
        // probe watches the run and is no part of the model, so missing parts start fresh.
        let values = trainer
            .step
            .initial_values(trainer.config.seed, trainer.config.target_init);
        for (p, v) in trainer.step.params.iter().zip(values) {
            if p.name.starts_with("probe.") && !tensors.tensors.contains_key(&p.name) {
                tensors.insert(&p.name, &p.shape, v);
            }
        }
        crate::nn::upload(&trainer.exe, &trainer.step.params, &tensors, "")?;
        trainer
            .replicas
            .agree(&trainer.exe, &trainer.step, &trainer.state)?;
        Ok(trainer)
    }

    /// `build_fitting` on every rank of `group`, then the same split on all of them: the
    /// finest any rank's adapter needed. Every rank takes part in the same rounds.
    fn build_agreed(
        group: &Arc<Group>,
        gpu: &Arc<Gpu>,
        state: TrainState,
        out: &Path,
    ) -> Result<Self> {
        let mut trainer = Self::build_fitting(group, gpu, state.clone(), out)?;
        loop {
            let own = trainer.config.accumulate as u64;
            let agreed = group.max(own);
            if group.max(u64::from(agreed != own)) == 0 {
                return Ok(trainer);
            }
            if agreed != own {
                let mut state = state.clone();
                state.config.accumulate = agreed as usize;
                trainer = Self::build_fitting(group, gpu, state, out)?;
                trainer.notes.push(format!(
                    "another rank's adapter needs the batch in {agreed} micro-batches per rank: this one trains it so too"
                ));
            }
        }
    }

    /// Builds the run, splitting each batch into more micro-batches (batch norm per
    /// micro-batch, as with --accumulate) while one micro-batch needs a buffer larger than the
    /// adapter allows.
    fn build_fitting(
        group: &Arc<Group>,
        gpu: &Arc<Gpu>,
        mut state: TrainState,
        out: &Path,
    ) -> Result<Self> {
        let asked = state.config.accumulate;
        let mut first_refusal = None;
        loop {
            match Self::build(group, gpu, state.clone(), out) {
                Ok(mut trainer) => {
                    if let Some(why) = first_refusal {
                        let c = &trainer.config;
                        let asked = match asked {
                            1 => "at once".to_string(),
                            n => format!("as {n} micro-batches"),
                        };
                        let ranks = group.size();
                        let per_rank = match ranks {
                            1 => String::new(),
                            n => format!(" per rank of {n}"),
                        };
                        trainer.notes.push(format!(
                            "batch {} does not fit this adapter {asked} ({why}): training it as {} micro-batches{per_rank} of {} (batch norm per micro-batch, as --accumulate {} would)",
                            c.batch,
                            c.accumulate,
                            c.batch / (c.accumulate * ranks),
                            c.accumulate,
                        ));
                    }
                    return Ok(trainer);
                }
                Err(Error::AdapterLimit {
                    what,
                    needed,
                    limit,
                }) => {
                    let Some(accumulate) = finer_split(&state.config, group.size()) else {
                        return Err(Error::AdapterLimit {
                            what,
                            needed,
                            limit,
                        });
                    };
                    first_refusal.get_or_insert_with(|| {
                        format!("{what} needs {needed} bytes, the adapter binds at most {limit}")
                    });
                    state.config.accumulate = accumulate;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The run with each batch shared by the processes of `group`.
    fn build(
        group: &Arc<Group>,
        gpu: &Arc<Gpu>,
        mut state: TrainState,
        out: &Path,
    ) -> Result<Self> {
        let ranks = group.size();
        let config = state.config.clone();
        config.validate()?;
        let dataset = open_dataset(&config, Split::Train)?;
        let side = view_side(&config, dataset.as_ref());
        config.check_side(side)?;
        let channels = dataset.channels();
        state.views = ViewSpec {
            side,
            channels,
            normalization: dataset.normalization(),
        };
        let micro = config.micro_batch(ranks)?;
        let loader = Loader::new(dataset.clone(), micro, config.seed);
        let micro_per_step = config.accumulate * ranks;
        let steps_per_epoch = (loader.batches_per_epoch() / micro_per_step) as u64;
        if steps_per_epoch == 0 {
            return Err(Error::Config(format!(
                "the dataset has {} images, fewer than one batch of {}: lower --batch",
                dataset.len(),
                config.batch
            )));
        }
        let total_steps = steps_per_epoch * config.epochs as u64;
        let image_shape = [channels, side, side];
        let probe_classes =
            (config.online_probe && dataset.classes() >= 2).then(|| dataset.classes());
        let step = ByolStep::build(
            &config.nets(channels)?,
            micro,
            image_shape,
            &config.lars(),
            StepOptions {
                accumulate: micro_per_step,
                probe_classes,
            },
        )?;
        let outputs: Vec<_> = [step.loss, step.collapse_std]
            .into_iter()
            .chain(step.norms.iter().copied())
            .chain(step.probe.as_ref().map(|p| p.logits))
            .collect();
        let exe = Executable::new(gpu, &step.graph, &outputs)?;
        if let Some(p) = &step.probe {
            exe.write(p.schedule, &[PROBE_LR, 0.0])?;
        }
        let max_side = dataset.max_side().max(1);
        let augmenter = Augmenter::new(
            gpu,
            micro,
            side,
            channels,
            &dataset.normalization(),
            max_side,
            &[step.view1, step.view2]
                .into_iter()
                .chain(step.probe.as_ref().map(|p| p.view))
                .map(|t| exe.input_buffer(t))
                .collect::<Result<Vec<_>>>()?,
        )?;
        let views = config.view_distributions();
        let test = open_dataset(&config, Split::Test).ok();
        let probe = super::ProbeSet::new(dataset.as_ref(), test.as_deref());
        let lr = LrSchedule {
            base: config.peak_lr(),
            warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as u64,
            total_steps,
        };
        let tau = TauSchedule {
            base: config.tau_base,
            total_steps,
        };
        let info = RunInfo {
            dataset_len: dataset.len(),
            steps_per_epoch,
            total_steps,
            image_shape,
            kernels_per_step: exe.dispatch_count() + augmenter.dispatches().len(),
            ops_compiled_ahead: exe.ops_compiled_ahead(),
            summed_per_step: if ranks > 1 {
                step.accumulator_floats()
            } else {
                0
            },
        };
        let replicas = Replicas::new(group.clone(), &step);
        Ok(Self {
            config,
            out: out.to_path_buf(),
            info,
            state,
            step,
            exe,
            augmenter,
            loader,
            views,
            lr,
            tau,
            probe,
            replicas,
            notes: Vec::new(),
        })
    }

    /// The processes training this run together.
    pub fn group(&self) -> &Arc<Group> {
        &self.replicas.group
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The first `count` images of both views the last submitted step trained on
    /// ([count, C, S, S] each, normalised). Waits for the device.
    pub fn current_views(&self, count: usize) -> Result<[Vec<f32>; 2]> {
        let v = self.state.views;
        let len = count.min(self.loader.batch) * v.channels * v.side * v.side;
        let read = |t| -> Result<Vec<f32>> { self.gpu().read_f32(self.exe.input_buffer(t)?, len) };
        Ok([read(self.step.view1)?, read(self.step.view2)?])
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.exe.gpu()
    }

    /// The step's [lr, tau] after `step` optimiser steps.
    fn schedule(&self, step: u64) -> (f64, f64) {
        let tau = self.config.tau.unwrap_or_else(|| self.tau.at(step));
        (self.lr.at(step), tau)
    }

    /// Every parameter's current value, named as in the graph.
    pub fn tensors(&self) -> Result<Weights> {
        let mut w = Weights::default();
        for p in &self.step.params {
            w.insert(&p.name, &p.shape, self.exe.read(p.id)?);
        }
        Ok(w)
    }

    /// The online encoder's tensors under torchvision's names.
    pub fn online_encoder(&self) -> Result<Weights> {
        let mut w = Weights::default();
        for p in &self.step.params {
            if p.role == ParamRole::OptimizerState {
                continue;
            }
            if let Some(name) = p.name.strip_prefix("online.encoder.") {
                w.insert(name, &p.shape, self.exe.read(p.id)?);
            }
        }
        Ok(w)
    }

    /// Saves a checkpoint of the current step, unless some weight is no longer finite (the
    /// run diverged): then the error names the last good checkpoint, which stays.
    ///
    /// In a group, rank 0 writes and the others wait for it.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let saved = if self.group().is_root() {
            self.write_checkpoint()
        } else {
            Ok(checkpoint::path_of(&self.out, self.state.step))
        };
        self.group().barrier();
        saved
    }

    fn write_checkpoint(&self) -> Result<PathBuf> {
        let tensors = self.tensors()?;
        if let Some(name) = tensors
            .tensors
            .iter()
            .find(|(_, (_, d))| d.iter().any(|v| !v.is_finite()))
            .map(|(n, _)| n)
        {
            return Err(self.diverged(format!(
                "'{name}' is no longer finite after step {}",
                self.state.step
            )));
        }
        let path = checkpoint::save(&self.out, &self.state, &tensors)?;
        self.write_curves()?;
        self.probe.draw(self, &self.out.join("embedding.png"))?;
        Ok(path)
    }

    /// DIR/curves.png: loss, lr, tau, collapse std, gradient norm and the online probe over
    /// the steps so far.
    pub fn write_curves(&self) -> Result<()> {
        use crate::viz::Panel;
        let log = super::metrics::read(&self.out.join("metrics.jsonl"))?;
        let series = |f: fn(&StepMetrics) -> f64| -> Vec<(f64, f64)> {
            log.iter().map(|m| (m.step as f64, f(m))).collect()
        };
        let healthy = 1.0 / (self.config.projection as f64).sqrt();
        let panel = |title, y_label, name, f| Panel {
            title,
            y_label,
            series: vec![(name, series(f))],
        };
        let mut panels = vec![
            panel("BYOL loss", "loss (0-8)", "loss", |m| m.loss),
            panel("learning rate", "lr", "lr", |m| m.lr),
            panel("target EMA", "tau", "tau", |m| m.tau),
            Panel {
                title: "collapse: std of the normalised projections",
                y_label: "mean std per dimension",
                series: vec![
                    ("online projections", series(|m| m.collapse_std)),
                    (
                        "1/sqrt(d): no collapse",
                        log.iter().map(|m| (m.step as f64, healthy)).collect(),
                    ),
                ],
            },
            panel("gradient norm", "L2 norm", "gradient", |m| m.grad_norm),
        ];
        if log.iter().any(|m| m.probe_accuracy.is_some()) {
            panels.push(panel(
                "online linear probe on training batches",
                "top-1 (%)",
                "probe",
                |m| m.probe_accuracy.unwrap_or(f64::NAN),
            ));
        }
        crate::viz::curves(
            &self.out.join("curves.png"),
            &panels,
            self.info.steps_per_epoch as f64,
        )
    }

    fn diverged(&self, what: String) -> Error {
        let last = checkpoint::list(&self.out)
            .pop()
            .map_or("none was written".to_string(), |p| p.display().to_string());
        Error::Training(format!(
            "training diverged: {what}; the last good checkpoint is {last}. Lower --lr or check the data"
        ))
    }

    fn next_batch(
        &mut self,
        reader: &mut EpochReader,
        on: &mut dyn FnMut(Event),
    ) -> Result<data::Batch> {
        let mut empty_epochs = 0;
        loop {
            if let Some(b) = reader.next() {
                self.state.position = b.next_position;
                return Ok(b);
            }
            self.state.skipped += reader.skipped().len() as u64;
            on(Event::EpochEnd {
                epoch: self.state.epoch,
                skipped: reader.skipped(),
            });
            empty_epochs += 1;
            if empty_epochs > 1 {
                return Err(Error::Training(format!(
                    "no full batch of readable images in an epoch of {}",
                    self.loader.dataset.len()
                )));
            }
            self.state.epoch += 1;
            self.state.position = 0;
            *reader = self.loader.epoch(self.state.epoch, 0);
        }
    }

    /// Trains until the last step (or `stop_after`), reporting each step, epoch end and
    /// checkpoint to `on`. A non-finite loss stops the run with an error naming the step; the
    /// checkpoints written before it stay.
    pub fn run(&mut self, on: &mut dyn FnMut(Event)) -> Result<()> {
        self.run_with(on, &mut |_| {}, None)
    }

    /// `run`, also calling `between` after every optimiser step (with the queue still busy)
    /// and obeying `control` (pause, save now, stop) between steps.
    ///
    /// In a group of N ranks every rank reads each step's N x accumulate micro-batches in
    /// order and trains its own run of them (rank r the r-th); between phase 0 and phase 1 the
    /// ranks sum their gradients (see `Replicas`). The step's images and augmentations are
    /// those of one process with N x accumulate micro-batches. Rank 0 writes the run's files.
    pub fn run_with(
        &mut self,
        on: &mut dyn FnMut(Event),
        between: &mut dyn FnMut(&Trainer),
        control: Option<&Control>,
    ) -> Result<()> {
        let stop = self
            .config
            .stop_after
            .unwrap_or(self.info.total_steps)
            .min(self.info.total_steps);
        let root = self.group().is_root();
        let ranks = self.group().size();
        let mut log = None;
        if root {
            std::fs::create_dir_all(&self.out).map_err(|e| Error::File {
                path: self.out.clone(),
                msg: e.to_string(),
            })?;
            log = Some(MetricsLog::open(&self.out, self.state.step)?);
            let json = serde_json::to_vec_pretty(&self.config).expect("config serialises");
            crate::nn::write_atomically(&self.out.join("config.json"), &json)?;
        }
        let mut reader = self.loader.epoch(self.state.epoch, self.state.position);
        let acc = self.config.accumulate;
        let micro_per_step = acc * ranks;
        let mine = self.group().rank() * acc..(self.group().rank() + 1) * acc;
        let mut last_checkpoint = Instant::now();
        let mut in_flight: VecDeque<(u64, usize, u64, Pending)> = VecDeque::new();
        let mut tally = StepTally::new(self.state.elapsed_s);

        // Reads a submitted micro-batch's outputs into the tally; alone, the last micro-batch
        // of a step also ran phase 1 and ends the step.
        let collect = |this: &mut Self,
                       (step, micro, epoch, pending): (u64, usize, u64, Pending),
                       tally: &mut StepTally,
                       log: &mut Option<MetricsLog>,
                       on: &mut dyn FnMut(Event)|
         -> Result<()> {
            let out = this.exe.collect(pending)?;
            tally.sums.loss += f64::from(out[0][0]);
            tally.sums.collapse_std = f64::from(out[1][0]);
            let norms_end = 2 + this.step.norms.len();
            if let (Some(probe), Some(logits)) = (&this.step.probe, out.get(norms_end)) {
                let correct = probe_correct(logits, probe, &labels_of(&mut tally.labels));
                tally.sums.probe_correct += correct as f64;
                tally.sums.probe_seen += this.loader.batch as f64;
            }
            if ranks == 1 && micro + 1 == acc {
                let sums = std::mem::take(&mut tally.sums);
                this.end_step(step, epoch, sums, &out[2..norms_end], None, tally, log, on)?;
            }
            Ok(())
        };

        while self.state.step < stop {
            let step = self.state.step;
            let epoch = self.state.epoch;
            let (lr, tau) = self.schedule(step);
            for micro in 0..micro_per_step {
                let batch = self.next_batch(&mut reader, on)?;
                if !mine.contains(&micro) {
                    continue;
                }
                let mut rng = step_rng(
                    self.config.seed,
                    step * micro_per_step as u64 + micro as u64,
                );
                let mut params = draw(&mut rng, &self.views, &batch.images);
                if self.step.probe.is_some() {
                    let centre = batch.images.iter();
                    params.push(
                        centre
                            .map(|i| ViewParams::center(i.width, i.height))
                            .collect(),
                    );
                }
                self.augmenter.upload(&batch.images, &params)?;
                if let Some(probe) = &self.step.probe {
                    let padded = self.step.graph.shape(probe.labels)[1];
                    let mut onehot = vec![0f32; batch.labels.len() * padded];
                    for (i, l) in batch.labels.iter().enumerate() {
                        let l = l.ok_or_else(|| {
                            Error::Training(format!(
                                "{} has no label",
                                self.loader.dataset.describe(batch.indices[i])
                            ))
                        })?;
                        onehot[i * padded + l as usize] = 1.0;
                    }
                    self.exe.write(probe.labels, &onehot)?;
                    tally
                        .labels
                        .push_back(batch.labels.iter().map(|l| l.unwrap_or(0)).collect());
                }
                self.exe
                    .write(self.step.schedule, &[lr as f32, tau as f32])?;
                // Alone, the step's last micro-batch runs phase 1 in the same submission; in a
                // group, phase 1 waits for the other ranks' gradients.
                let phases = if ranks == 1 && micro + 1 == acc {
                    0..self.exe.phase_count()
                } else {
                    0..1
                };
                let pending = self.exe.submit(self.augmenter.dispatches(), phases)?;
                in_flight.push_back((step, micro - mine.start, epoch, pending));
                // Keep one run queued behind the one being read back.
                while in_flight.len() > 1 {
                    let oldest = in_flight.pop_front().unwrap();
                    collect(self, oldest, &mut tally, &mut log, on)?;
                }
            }
            // Alone, what the step's end asks for is read after `between`; a group agrees on
            // it before phase 1, so that every rank saves and stops at the same step.
            let mut agreed = None;
            if ranks > 1 {
                while let Some(p) = in_flight.pop_front() {
                    collect(self, p, &mut tally, &mut log, on)?;
                }
                let own = StepSums {
                    requests: Requests::read(control, &last_checkpoint, &self.config),
                    ..std::mem::take(&mut tally.sums)
                };
                let started_sync = Instant::now();
                let all = self.replicas.synchronise(&self.exe, &self.step, acc, own)?;
                let sync_s = started_sync.elapsed().as_secs_f64();
                agreed = Some(all.requests);
                let phase1 = self.exe.submit(&[], 1..self.exe.phase_count())?;
                let out = self.exe.collect(phase1)?;
                let norms_end = 2 + self.step.norms.len();
                self.end_step(
                    step,
                    epoch,
                    all,
                    &out[2..norms_end],
                    Some(sync_s),
                    &mut tally,
                    &mut log,
                    on,
                )?;
            }
            self.state.step += 1;
            between(self);
            let requests =
                agreed.unwrap_or_else(|| Requests::read(control, &last_checkpoint, &self.config));
            if control.is_some_and(|c| c.pause.load(Ordering::Relaxed)) {
                while let Some(p) = in_flight.pop_front() {
                    collect(self, p, &mut tally, &mut log, on)?;
                }
                while control.is_some_and(|c| {
                    c.pause.load(Ordering::Relaxed) && !c.stop.load(Ordering::Relaxed)
                }) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            if requests.stop {
                break;
            }
            let due_by_steps = self.config.checkpoint_every > 0
                && self.state.step.is_multiple_of(self.config.checkpoint_every);
            if (due_by_steps || requests.due_by_time || requests.save) && self.state.step < stop {
                while let Some(p) = in_flight.pop_front() {
                    collect(self, p, &mut tally, &mut log, on)?;
                }
                self.state.elapsed_s = tally.elapsed();
                let path = self.save_checkpoint()?;
                on(Event::Checkpoint(&path));
                last_checkpoint = Instant::now();
            }
        }
        while let Some(p) = in_flight.pop_front() {
            collect(self, p, &mut tally, &mut log, on)?;
        }
        self.state.elapsed_s = tally.elapsed();
        let path = self.save_checkpoint()?;
        on(Event::Checkpoint(&path));
        Ok(())
    }

    /// The step's metrics from what its micro-batches add up to and phase 1's norms: logged
    /// (by rank 0) and reported. A loss that is not finite ends the run.
    #[allow(clippy::too_many_arguments)]
    fn end_step(
        &self,
        step: u64,
        epoch: u64,
        sums: StepSums,
        norms: &[Vec<f32>],
        sync_s: Option<f64>,
        tally: &mut StepTally,
        log: &mut Option<MetricsLog>,
        on: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let micro_per_step = self.config.accumulate * self.group().size();
        let loss = sums.loss / micro_per_step as f64;
        if !loss.is_finite() {
            return Err(self.diverged(format!("the loss became {loss} at step {}", step + 1)));
        }
        let probe_accuracy =
            (sums.probe_seen > 0.0).then(|| 100.0 * sums.probe_correct / sums.probe_seen);
        let (lr, tau) = self.schedule(step);
        let (mut ww, mut gg) = (0.0, 0.0);
        for n in norms {
            ww += f64::from(n[0]);
            gg += f64::from(n[2]);
        }
        let now = Instant::now();
        let dt = now.duration_since(tally.last_step_time).as_secs_f64();
        tally.last_step_time = now;
        let m = StepMetrics {
            step: step + 1,
            epoch,
            loss,
            lr,
            tau,
            collapse_std: sums.collapse_std,
            weight_norm: ww.sqrt(),
            grad_norm: gg.sqrt(),
            probe_accuracy,
            images_per_s: self.config.batch as f64 / dt.max(1e-9),
            elapsed_s: tally.elapsed(),
            sync_s,
        };
        if let Some(log) = log {
            log.append(&m)?;
        }
        on(Event::Step(&m));
        Ok(())
    }
}

/// What a step's end asks for besides the update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Requests {
    /// A checkpoint now (a window's button).
    pub save: bool,
    /// Stop after this step, with a checkpoint (a signal or a window's button).
    pub stop: bool,
    /// The checkpoint interval in minutes has passed.
    pub due_by_time: bool,
}

impl Requests {
    fn read(control: Option<&Control>, last_checkpoint: &Instant, config: &TrainConfig) -> Self {
        Self {
            save: control.is_some_and(|c| c.save.swap(false, Ordering::Relaxed)),
            stop: control.is_some_and(|c| c.stop.load(Ordering::Relaxed)),
            due_by_time: last_checkpoint.elapsed().as_secs_f64()
                >= config.checkpoint_minutes * 60.0,
        }
    }
}

/// What the collected runs of the current optimiser step add up to, and the run's clock.
struct StepTally {
    sums: StepSums,
    /// Labels of submitted micro-batches whose logits are not collected yet, oldest first.
    labels: VecDeque<Vec<u32>>,
    last_step_time: Instant,
    started: Instant,
    /// Seconds the run trained before this process continued it.
    elapsed_before: f64,
}

impl StepTally {
    fn new(elapsed_before: f64) -> Self {
        Self {
            sums: StepSums::default(),
            labels: VecDeque::new(),
            last_step_time: Instant::now(),
            started: Instant::now(),
            elapsed_before,
        }
    }

    /// Seconds the run has trained, in this process and before it.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }
}

fn labels_of(queue: &mut VecDeque<Vec<u32>>) -> Vec<u32> {
    queue.pop_front().unwrap_or_default()
}

/// How many rows of `logits` rank their label first among the probe's real classes.
fn probe_correct(logits: &[f32], probe: &crate::byol::Probe, labels: &[u32]) -> usize {
    let padded = logits.len() / labels.len().max(1);
    labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let row = &logits[i * padded..i * padded + probe.classes];
            let truth = row[l as usize];
            row.iter().all(|&v| v <= truth)
        })
        .count()
}
