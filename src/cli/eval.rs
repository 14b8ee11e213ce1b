//! `byol eval linear|knn`, `byol export` and the checkpoint-aware parts of `byol embed`: where
//! the encoder, the data and the view settings come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use byol_wgpu::data::{self, Dataset, Split, ViewSpec};
use byol_wgpu::eval::{self, find_encoder_prefix, Features, LinearEvalConfig, Solver};
use byol_wgpu::gpu::Gpu;
use byol_wgpu::nn::{self, ResNetConfig, Weights};
use byol_wgpu::train::checkpoint;
use byol_wgpu::{Error, Result};

#[derive(Args, Debug)]
pub struct EncoderArgs {
    /// A training run (or one of its checkpoints): its online encoder, dataset and views
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// An encoder in safetensors with torchvision names instead
    #[arg(long, conflicts_with = "checkpoint")]
    weights: Option<PathBuf>,
    /// Dataset with train and test splits (default: the run's, else Fashion-MNIST)
    #[arg(long)]
    data: Option<PathBuf>,
    /// View side (default: the run's; for --weights, the dataset's side up to 64 px, else 224)
    #[arg(long)]
    image_size: Option<usize>,
    /// A freshly initialised encoder of the same shape instead (a baseline)
    #[arg(long)]
    random_init: bool,
    /// The raw pixels instead of an encoder (a baseline)
    #[arg(long, conflicts_with = "random_init")]
    pixels: bool,
    /// Seed of --random-init and of the evaluation's shuffles
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training images
    #[arg(long)]
    train_images: Option<usize>,
    /// Use only the first N test images
    #[arg(long)]
    test_images: Option<usize>,
    /// Images per encoder run
    #[arg(long, default_value_t = 256)]
    encode_batch: usize,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Linear classifier on frozen, standardised representations: L2 strength (or learning
    /// rate) chosen on a held-out split of the training set, accuracy on the test set
    Linear {
        #[command(flatten)]
        encoder: EncoderArgs,
        /// lbfgs: multinomial logistic regression to its optimum on the host; sgd: the
        /// paper's protocol (Nesterov momentum, cosine lr) on the device
        #[arg(long, value_enum, default_value_t = Solver::Lbfgs)]
        solver: Solver,
        /// SGD: epochs over the training features
        #[arg(long, default_value_t = 80)]
        epochs: usize,
        /// SGD: batch size
        #[arg(long, default_value_t = 1024)]
        batch: usize,
    },
    /// k-nearest-neighbour classification with cosine similarity and weighted votes
    Knn {
        #[command(flatten)]
        encoder: EncoderArgs,
        #[arg(long, default_value_t = 20)]
        k: usize,
        #[arg(long, default_value_t = 0.1)]
        temperature: f64,
    },
}

/// What is evaluated, on which data, seen how.
struct Source {
    /// None for the raw-pixel baseline.
    weights: Option<Weights>,
    what: String,
    train: Arc<dyn Dataset>,
    test: Arc<dyn Dataset>,
    view: ViewSpec,
}

/// A run's (or checkpoint's) online-encoder tensors and its state.
/// A damaged newest checkpoint is passed over, with a line saying so.
pub fn load_checkpoint(path: &Path) -> Result<(checkpoint::TrainState, Weights)> {
    let loaded = checkpoint::load(path)?;
    for line in loaded.fallback_lines() {
        eprintln!("{line}");
    }
    Ok((loaded.state, loaded.tensors))
}

/// Encoder weights from a run or checkpoint directory (with the run's state) or a file.
pub fn load_encoder(path: &Path) -> Result<(Option<checkpoint::TrainState>, Weights)> {
    if path.is_dir() {
        let (state, w) = load_checkpoint(path)?;
        Ok((Some(state), w))
    } else {
        Ok((None, nn::load_safetensors(path)?))
    }
}

/// `byol embed --images`: representations of a folder's images, in sorted path order.
pub fn embed_images(
    gpu: &Arc<Gpu>,
    weights: &Path,
    dir: &Path,
    image_size: Option<usize>,
    out: &Path,
    batch: usize,
) -> Result<(usize, usize)> {
    let (state, w) = load_encoder(weights)?;
    let side = image_size
        .or(state.as_ref().map(|s| s.views.side))
        .unwrap_or(224);
    let folder = data::Folder::open(dir, side * 2)?;
    let view = match &state {
        Some(s) => ViewSpec { side, ..s.views },
        None => {
            let side = image_size.unwrap_or_else(|| {
                let s = folder.max_side();
                if s <= 64 {
                    s
                } else {
                    224
                }
            });
            let channels = ResNetConfig::infer(&w, find_encoder_prefix(&w)?)?.in_channels;
            ViewSpec {
                side,
                channels,
                normalization: data::Normalization::IMAGENET,
            }
        }
    };
    let f = eval::encode_dataset(gpu, &w, &folder, &view, batch, None)?;
    data::npy::write(out, &[f.len(), f.dim], &f.data)?;
    Ok((f.len(), f.dim))
}

fn open_splits(path: &Path, side: usize) -> Result<(Arc<dyn Dataset>, Arc<dyn Dataset>)> {
    let max_side = side * 2;
    Ok((
        data::open(path, Split::Train, max_side)?,
        data::open(path, Split::Test, max_side)?,
    ))
}

fn resolve(args: &EncoderArgs) -> Result<Source> {
    let (mut weights, mut what, data_path, view) = if let Some(dir) = &args.checkpoint {
        let (state, tensors) = load_checkpoint(dir)?;
        let data = args
            .data
            .clone()
            .or(state.config.data.clone())
            .unwrap_or_else(data::default_dataset_path);
        let mut view = state.views;
        view.side = args.image_size.unwrap_or(view.side);
        let what = format!("online encoder of {} (step {})", dir.display(), state.step);
        (Some(tensors), what, data, Some(view))
    } else if let Some(file) = &args.weights {
        let w = nn::load_safetensors(file)?;
        let data = args.data.clone().unwrap_or_else(data::default_dataset_path);
        (Some(w), format!("encoder {}", file.display()), data, None)
    } else {
        let data = args.data.clone().unwrap_or_else(data::default_dataset_path);
        (None, String::new(), data, None)
    };
    let probe_side = view.map_or(args.image_size.unwrap_or(224), |v| v.side);
    let (train, test) = open_splits(&data_path, probe_side)?;
    let view = view.unwrap_or_else(|| ViewSpec {
        side: args.image_size.unwrap_or_else(|| {
            let s = train.max_side();
            if s <= 64 {
                s
            } else {
                224
            }
        }),
        channels: train.channels(),
        normalization: train.normalization(),
    });
    if args.pixels {
        weights = None;
        what = "raw pixels".into();
    } else if args.random_init {
        let w = weights.ok_or_else(|| {
            Error::Config(
                "--random-init needs --checkpoint or --weights for the encoder's shape".into(),
            )
        })?;
        let config = ResNetConfig::infer(&w, find_encoder_prefix(&w)?)?;
        weights = Some(nn::random_encoder(&config, args.seed));
        what = format!("randomly initialised {what}");
    } else if weights.is_none() {
        return Err(Error::Config(
            "give --checkpoint RUN_DIR or --weights FILE (or --pixels for the raw-pixel baseline)"
                .into(),
        ));
    }
    Ok(Source {
        weights,
        what,
        train,
        test,
        view,
    })
}

fn features(gpu: &Arc<Gpu>, s: &Source, args: &EncoderArgs) -> Result<(Features, Features)> {
    let encode = |d: &Arc<dyn Dataset>, limit| match &s.weights {
        Some(w) => eval::encode_dataset(gpu, w, d.as_ref(), &s.view, args.encode_batch, limit),
        None => eval::pixel_features(gpu, d.as_ref(), &s.view, args.encode_batch, limit),
    };
    Ok((
        encode(&s.train, args.train_images)?,
        encode(&s.test, args.test_images)?,
    ))
}

pub fn run(command: &EvalCommand, gpu: &Arc<Gpu>) -> Result<()> {
    match command {
        EvalCommand::Linear {
            encoder,
            solver,
            epochs,
            batch,
        } => {
            let source = resolve(encoder)?;
            let clock = Clock::start();
            let (train, test) = features(gpu, &source, encoder)?;
            let extracted = clock.lap();
            let cfg = LinearEvalConfig {
                solver: *solver,
                epochs: *epochs,
                batch: *batch,
                seed: encoder.seed,
                ..LinearEvalConfig::default()
            };
            let r = eval::linear_eval(gpu, &train, &test, &cfg)?;
            let evaluated = clock.lap();
            if encoder.json {
                println!(
                    "{}",
                    serde_json::json!({"what": source.what, "report": r, "extract_s": extracted, "evaluate_s": evaluated})
                );
            } else {
                println!("linear evaluation of the {}", source.what);
                for line in r.lines() {
                    println!("{line}");
                }
                println!("{}", timing_line(extracted, evaluated));
            }
        }
        EvalCommand::Knn {
            encoder,
            k,
            temperature,
        } => {
            let source = resolve(encoder)?;
            let clock = Clock::start();
            let (train, test) = features(gpu, &source, encoder)?;
            let extracted = clock.lap();
            let r = eval::knn_eval(gpu, &train, &test, *k, *temperature)?;
            let evaluated = clock.lap();
            if encoder.json {
                println!(
                    "{}",
                    serde_json::json!({"what": source.what, "report": r, "extract_s": extracted, "evaluate_s": evaluated})
                );
            } else {
                println!(
                    "kNN (k {}, T {}) of the {}: {} train / {} test images: top-1 {:.2}%  top-5 {:.2}%",
                    r.k, r.temperature, source.what, r.train_images, r.test_images, r.top1, r.top5
                );
                println!("{}", timing_line(extracted, evaluated));
            }
        }
    }
    Ok(())
}

/// Seconds since the last lap.
struct Clock(std::cell::Cell<std::time::Instant>);

impl Clock {
    fn start() -> Self {
        Self(std::cell::Cell::new(std::time::Instant::now()))
    }

    fn lap(&self) -> f64 {
        let now = std::time::Instant::now();
        now.duration_since(self.0.replace(now)).as_secs_f64()
    }
}

fn timing_line(extracted: f64, evaluated: f64) -> String {
    format!("features extracted in {extracted:.1} s, evaluated in {evaluated:.1} s")
}

/// `byol export`: the online encoder of a checkpoint under torchvision's names.
pub fn export(checkpoint_dir: &Path, out: &Path) -> Result<usize> {
    let (state, tensors) = load_checkpoint(checkpoint_dir)?;
    let mut w = Weights::default();
    for (name, (shape, data)) in &tensors.tensors {
        if let Some(plain) = name.strip_prefix("online.encoder.") {
            w.insert(plain, shape, data.clone());
        }
    }
    w.metadata.insert(
        "source".into(),
        format!("byol-wgpu online encoder, step {}", state.step),
    );
    w.metadata.insert("arch".into(), state.config.arch.clone());
    // Fails here, not in PyTorch, if the names do not describe a ResNet.
    ResNetConfig::infer(&w, "")?;
    nn::save_safetensors(out, &w)?;
    Ok(w.tensors.len())
}
