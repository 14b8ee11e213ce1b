//! `byol train`: flags over a config file over a preset, then the loop with a progress bar.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use byol_wgpu::augment::{Brightness, Interpolation};
use byol_wgpu::byol::TargetInit;
use byol_wgpu::gpu::Gpu;
use byol_wgpu::nn::Stem;
use byol_wgpu::parallel::Group;
use byol_wgpu::train::{Control, Event, TrainConfig, Trainer};
use byol_wgpu::{Error, Result};

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Dataset: a folder of IDX files, CIFAR binary batches or images (default: Fashion-MNIST)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Train on the first N images only (0: all)
    #[arg(long)]
    subset: Option<usize>,
    /// quick (default), small, small-batch, imagenet, imagenet-300, imagenet-100, imagenet-40, tiny
    #[arg(long)]
    preset: Option<String>,
    /// A TOML file of config keys (flags override it)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the run's checkpoints, metrics and config go (default: runs/<preset>-<time>)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory (or from this checkpoint)
    #[arg(long, conflicts_with_all = ["data", "preset", "config", "out"])]
    resume: Option<PathBuf>,
    /// Show the run in a window (builds with --features gui)
    #[arg(long)]
    gui: bool,
    /// With --gui: save a PNG of the window when the run ends (or after --screenshot-after steps), then close it
    #[arg(long, requires = "gui")]
    screenshot: Option<PathBuf>,
    /// With --screenshot: take it after this many steps (and stop the run there)
    #[arg(long, requires = "screenshot")]
    screenshot_after: Option<u64>,
    /// Stop after this many optimiser steps in total (the schedules still span all epochs)
    #[arg(long)]
    steps: Option<u64>,
    /// resnet18, resnet34, resnet50, resnet101, resnet152, resnet200
    #[arg(long)]
    arch: Option<String>,
    /// Planes of the first ResNet stage (64 in torchvision)
    #[arg(long)]
    width: Option<usize>,
    /// small (3x3 stride 1, no pool) or imagenet (7x7 stride 2 + max pool)
    #[arg(long, value_parser = parse_stem)]
    stem: Option<Stem>,
    /// Side of the views in pixels
    #[arg(long)]
    image_size: Option<usize>,
    /// Hidden width of the projector and predictor
    #[arg(long)]
    hidden: Option<usize>,
    /// Output width of the projector and predictor
    #[arg(long)]
    projection: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per optimiser step
    #[arg(long)]
    batch: Option<usize>,
    /// Split each step's batch into this many micro-batches (gradients averaged)
    #[arg(long)]
    accumulate: Option<usize>,
    /// Base learning rate (the step's peak is lr x batch / 256)
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    warmup_epochs: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f32>,
    /// LARS trust coefficient
    #[arg(long)]
    eta: Option<f32>,
    /// Cap every tensor's LARS rate at the step's lr: true or false
    #[arg(long)]
    lars_clip: Option<bool>,
    #[arg(long)]
    momentum: Option<f32>,
    /// Target EMA: tau rises from this to 1 over the run
    #[arg(long)]
    tau_base: Option<f64>,
    /// A constant tau instead (0: target = online; 1: a fixed random target)
    #[arg(long)]
    tau: Option<f64>,
    /// Gaussian blur in the views: on or off
    #[arg(long)]
    blur: Option<bool>,
    /// The smallest random crop, as a fraction of the image's area, in (0, 1]
    #[arg(long)]
    crop_min_scale: Option<f64>,
    /// How crops are resized to the view: bicubic (the paper) or bilinear (torchvision)
    #[arg(long, value_enum)]
    interpolation: Option<Interpolation>,
    /// Colour jitter's brightness: additive (x + d, the paper's code) or multiplicative
    /// ((1 + d) x, torchvision's)
    #[arg(long, value_enum)]
    brightness: Option<Brightness>,
    /// Train without the predictor (an ablation)
    #[arg(long)]
    no_predictor: bool,
    /// Train a linear probe alongside, on the online encoder's representations of the clean
    /// images, and log its accuracy (labelled data; default true; one more encoder forward)
    #[arg(long)]
    online_probe: Option<bool>,
    /// copy (the target starts as the online network) or random (its own draw)
    #[arg(long, value_parser = parse_target_init)]
    target_init: Option<TargetInit>,
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every this many optimiser steps (0: by time and at the end only)
    #[arg(long)]
    checkpoint_every: Option<u64>,
    #[arg(long)]
    checkpoint_minutes: Option<f64>,
}

fn parse_stem(s: &str) -> std::result::Result<Stem, String> {
    match s {
        "small" => Ok(Stem::Small),
        "imagenet" => Ok(Stem::Imagenet),
        _ => Err("use small or imagenet".into()),
    }
}

fn parse_target_init(s: &str) -> std::result::Result<TargetInit, String> {
    match s {
        "copy" => Ok(TargetInit::Copy),
        "random" => Ok(TargetInit::Random),
        _ => Err("use copy or random".into()),
    }
}

impl TrainArgs {
    /// The preset, then the file, then the flags.
    fn config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::from_file(self.config.as_deref(), self.preset.as_deref())?;
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    c.$field = v.clone();
                }
            )*};
        }
        set!(
            arch,
            width,
            stem,
            hidden,
            projection,
            epochs,
            batch,
            accumulate,
            lr,
            warmup_epochs,
            weight_decay,
            eta,
            lars_clip,
            momentum,
            tau_base,
            blur,
            crop_min_scale,
            interpolation,
            brightness,
            target_init,
            seed,
            checkpoint_every,
            checkpoint_minutes
        );
        if self.data.is_some() {
            c.data = self.data.clone();
        }
        if let Some(n) = self.subset {
            c.subset = (n > 0).then_some(n);
        }
        if self.image_size.is_some() {
            c.image_size = self.image_size;
        }
        if self.tau.is_some() {
            c.tau = self.tau;
        }
        if self.steps.is_some() {
            c.stop_after = self.steps;
        }
        if self.no_predictor {
            c.predictor = false;
        }
        Ok(c)
    }
}

fn default_out(preset: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("{preset}-{secs}"))
}

/// Trains alone or as one rank of `group`: rank 0 speaks for the group (progress, notes, the
/// verdict), the other ranks stay quiet unless they fail.
pub fn run(args: &TrainArgs, gpu: &Arc<Gpu>, group: &Arc<Group>) -> Result<()> {
    if args.gui && group.size() > 1 {
        return Err(Error::Config(
            "--gui shows one process's run: start it without mpirun".into(),
        ));
    }
    let root = group.is_root();
    let (mut trainer, compiling) = match &args.resume {
        Some(dir) => {
            let compiling = announce(gpu, group);
            (Trainer::resume(group, gpu, dir, args.steps)?, compiling)
        }
        None => {
            let config = args.config()?;
            config.validate()?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| default_out(&config.preset));
            let compiling = announce(gpu, group);
            (Trainer::new(group, gpu, config, &out)?, compiling)
        }
    };
    if root {
        report_start(&trainer, gpu, compiling.elapsed().as_secs_f64());
    }
    if args.gui {
        return run_in_window(trainer, args);
    }
    let total = trainer
        .config
        .stop_after
        .unwrap_or(trainer.info.total_steps)
        .min(trainer.info.total_steps);
    let control = stop_on_signal()?;
    let mut last_checkpoint = None;
    let bar = progress_bar(total, trainer.state().step);
    if !root {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let quiet_every = (total / 20).max(1);
    // (seconds synchronising, seconds of the whole step) of each step, in a group.
    let mut sync_times = Vec::new();
    let batch = trainer.config.batch as f64;
    let mut on = |e: Event| match e {
        _ if !root => {}
        Event::Step(m) => {
            if let Some(s) = m.sync_s {
                sync_times.push((s, batch / m.images_per_s));
            }
            bar.set_position(m.step);
            let probe = m
                .probe_accuracy
                .map_or(String::new(), |a| format!("  probe {a:.1}%"));
            bar.set_message(format!(
                "loss {:.4}  lr {:.3}  tau {:.4}  std {:.4}{probe}  {:.1} img/s",
                m.loss, m.lr, m.tau, m.collapse_std, m.images_per_s
            ));
            if bar.is_hidden() && (m.step % quiet_every == 0 || m.step == total) {
                eprintln!(
                    "step {}/{total}  epoch {}  loss {:.4}  lr {:.4}  tau {:.4}  collapse std {:.4}{probe}  {:.1} img/s",
                    m.step, m.epoch, m.loss, m.lr, m.tau, m.collapse_std, m.images_per_s
                );
            }
        }
        Event::EpochEnd { epoch, skipped } if !skipped.is_empty() => {
            // One line an epoch, however many images failed: the first names the cause.
            bar.suspend(|| {
                eprintln!(
                    "epoch {epoch}: skipped {} unreadable images (the first: {}: {})",
                    skipped.len(),
                    skipped[0].name,
                    skipped[0].reason
                );
            });
        }
        Event::EpochEnd { .. } => {}
        Event::Checkpoint(p) => {
            bar.suspend(|| eprintln!("checkpoint: {}", p.display()));
            last_checkpoint = Some(p.to_path_buf());
        }
    };
    let result = trainer.run_with(&mut on, &mut |_| {}, Some(&control));
    bar.finish_and_clear();
    result?;
    let s = trainer.state();
    // Only a stop request ends the loop early (in a group, whichever rank caught it).
    if s.step < total {
        return Err(Error::Interrupted {
            step: s.step,
            checkpoint: last_checkpoint.unwrap_or_default(),
            run: trainer.out.clone(),
        });
    }
    if !root {
        return Ok(());
    }
    if !sync_times.is_empty() {
        let median = |mut v: Vec<f64>| byol_wgpu::bench::median(&mut v);
        let sync = median(sync_times.iter().map(|t| t.0).collect());
        let step = median(sync_times.iter().map(|t| t.1).collect());
        eprintln!(
            "{} ranks summed {:.1} MB of gradients per step in {:.1} ms (median), {:.1}% of the median step of {:.1} ms",
            trainer.group().size(),
            trainer.info.summed_per_step as f64 * 4e-6,
            1e3 * sync,
            100.0 * sync / step,
            1e3 * step
        );
    }
    // `epoch` is the epoch the loader is in, not the number completed: count them by steps.
    let epochs = s.step as f64 / trainer.info.steps_per_epoch as f64;
    println!(
        "trained {} steps ({epochs:.2} epochs) in {:.0} s; run: {}",
        s.step,
        s.elapsed_s,
        trainer.out.display()
    );
    report_verdict(&trainer)
}

/// Ctrl-C or SIGTERM: the first stops the run after the step in flight, with a checkpoint; a
/// second exits at once, leaving the checkpoints there are.
fn stop_on_signal() -> Result<Arc<Control>> {
    let control = Arc::new(Control::default());
    let flag = control.clone();
    ctrlc::set_handler(move || {
        if flag.stop.swap(true, Ordering::Relaxed) {
            eprintln!("\nstopped at once; the last checkpoint stands");
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after the step in flight, with a checkpoint (Ctrl-C again to quit at once)"
        );
    })
    .map_err(|e| Error::Training(format!("cannot catch Ctrl-C: {e}")))?;
    Ok(control)
}

/// The run's last lines: its online encoder against a random one, also in DIR/verdict.json.
fn report_verdict(trainer: &Trainer) -> Result<()> {
    eprintln!(
        "scoring the online encoder against a random-init one (linear probe and kNN on the test split)..."
    );
    match byol_wgpu::train::verdict(trainer)? {
        Some(v) => {
            let json = serde_json::to_vec_pretty(&v).expect("verdicts serialise");
            byol_wgpu::nn::write_atomically(&trainer.out.join("verdict.json"), &json)?;
            println!("{}", v.lines());
        }
        None => {
            println!("no labelled test split: no kNN verdict (use `byol eval` with labelled data)")
        }
    }
    Ok(())
}

/// The adapter, what it costs where it is slow, and that the kernels compile now: said before
/// they do, which takes half a minute or more on a fresh CPU adapter. Returns when compiling
/// began. In a group, rank 0 says it for all: the number of processes, with its own adapter.
fn announce(gpu: &Gpu, group: &Group) -> std::time::Instant {
    if !group.is_root() {
        return std::time::Instant::now();
    }
    if group.size() > 1 {
        eprintln!(
            "{} processes train together, one batch share each (`mpirun ... byol info` lists their adapters)",
            group.size()
        );
    }
    eprintln!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    if let Some(note) = byol_wgpu::gpu::slowness(&gpu.info, gpu.features) {
        eprintln!("{note}");
    }
    eprintln!(
        "compiling the step's kernels (on a CPU adapter with an empty shader cache: half a minute or more)..."
    );
    std::time::Instant::now()
}

fn report_start(trainer: &Trainer, gpu: &Gpu, ready_s: f64) {
    let c = &trainer.config;
    let i = &trainer.info;
    let tuned = if gpu.tunes_kernels() {
        format!(
            "; {} GEMMs tuned in {:.1} s",
            gpu.tuned_problems(),
            gpu.tuning_seconds()
        )
    } else {
        String::new()
    };
    eprintln!(
        "ready in {ready_s:.1} s ({} ops run once to compile their kernels{tuned})\ndata: {} images of {:?}; preset {}: {} width {} stem {:?}, heads {}/{}, batch {} ({} micro-batches), {} epochs = {} steps, {} kernels per micro-batch\nrun: {}",
        i.ops_compiled_ahead,
        i.dataset_len,
        i.image_shape,
        c.preset,
        c.arch,
        c.width,
        c.stem,
        c.hidden,
        c.projection,
        c.batch,
        c.accumulate,
        c.epochs,
        i.total_steps,
        i.kernels_per_step,
        trainer.out.display()
    );
    for note in &trainer.notes {
        eprintln!("{note}");
    }
}

fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}  ETA {eta}")
            .expect("valid template"),
    );
    bar.set_position(done);
    bar
}

#[cfg(feature = "gui")]
fn run_in_window(trainer: Trainer, args: &TrainArgs) -> Result<()> {
    let trainer = byol_wgpu::gui::train_with_window(
        trainer,
        byol_wgpu::gui::WindowOptions {
            screenshot: args.screenshot.clone(),
            screenshot_after: args.screenshot_after,
        },
    )?;
    println!("run: {}", trainer.out.display());
    report_verdict(&trainer)
}

#[cfg(not(feature = "gui"))]
fn run_in_window(_: Trainer, _: &TrainArgs) -> Result<()> {
    Err(no_window())
}

/// The error of a window command in a build without the window.
#[cfg(not(feature = "gui"))]
pub fn no_window() -> byol_wgpu::Error {
    byol_wgpu::Error::Config(
        "this build has no window: rebuild with `cargo build --release --features gui`".into(),
    )
}
