//! The `byol` command line: parses, then calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod cli;

use byol_wgpu::demo::{MlpRegression, MlpShape};
use byol_wgpu::gpu::{self, AdapterChoice, Gpu};
use byol_wgpu::graph::Executable;
use byol_wgpu::parallel::Group;
use byol_wgpu::{bench, Error};

#[derive(Parser)]
#[command(
    name = "byol",
    version,
    about = "BYOL self-supervised training on any GPU through wgpu"
)]
struct Cli {
    #[command(flatten)]
    adapter: AdapterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct AdapterArgs {
    /// Graphics API: vulkan, metal, dx12 or gl (default: the best available)
    #[arg(long, global = true, env = "BYOL_BACKEND")]
    backend: Option<String>,
    /// Use the adapter whose name contains this (case-insensitive)
    #[arg(long, global = true, env = "BYOL_ADAPTER")]
    adapter: Option<String>,
    /// Use at most this many bytes per buffer binding, below the adapter's limit: to see how a
    /// run fits a smaller GPU
    #[arg(long, global = true, env = "BYOL_MAX_BINDING_BYTES", value_parser = clap::value_parser!(u64).range(1024..))]
    max_binding_bytes: Option<u64>,
    /// Time the GEMM kernels that can run each convolution and product (they compute the same
    /// bits) and keep the fastest: on or off (default: on for hardware GPUs, off for software
    /// adapters)
    #[arg(long, global = true, env = "BYOL_TUNE", value_name = "on|off", hide_possible_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    tune: Option<bool>,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter: name, backend, type, driver, limits and features
    Info,
    /// Train BYOL: with no flags, the quick preset on Fashion-MNIST
    Train(Box<cli::train::TrainArgs>),
    /// Fit a two-layer MLP with SGD on the GPU: a quick check that the stack works end to end
    Demo {
        /// Optimiser steps
        #[arg(long, default_value_t = 200)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Representations of images with a trained encoder, in inference mode
    Embed {
        /// Encoder: a training run or checkpoint directory (its online encoder), or safetensors
        /// with torchvision names (optionally under encoder. or online.encoder.)
        #[arg(long)]
        weights: PathBuf,
        /// Images as float32 [N, C, H, W], already normalised
        #[arg(long, required_unless_present = "images", conflicts_with = "images")]
        npy: Option<PathBuf>,
        /// A folder of PNG/JPEG/WebP images (sorted by path; class subfolders allowed), made into
        /// views as the run made its evaluation views
        #[arg(long)]
        images: Option<PathBuf>,
        /// View side for --images with a weights file (default 224, or the images' side up to 64)
        #[arg(long)]
        image_size: Option<usize>,
        /// Where to write the float32 [N, D] representations
        #[arg(long)]
        out: PathBuf,
        /// Images per GPU batch
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// A grid of images with their T and T' views, as PNG
    AugmentPreview {
        /// Dataset (default: Fashion-MNIST)
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Images (rows)
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// (T, T') pairs per image
        #[arg(long, default_value_t = 3)]
        pairs: usize,
        /// View side (default: the images' own up to 64 px, else 224)
        #[arg(long)]
        image_size: Option<usize>,
        /// Draw the views as this preset trains them (crop floor, resampling, brightness, blur)
        #[arg(long, default_value = "quick")]
        preset: String,
        /// Leave out the Gaussian blur
        #[arg(long)]
        no_blur: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A window over a run's files, running or finished (builds with --features gui)
    Watch {
        /// The run directory
        dir: PathBuf,
        /// Save a PNG of the window once the embedding map is drawn, then close it
        #[arg(long)]
        screenshot: Option<PathBuf>,
    },
    /// Evaluate an encoder: linear probe or kNN on a labelled dataset
    Eval {
        #[command(subcommand)]
        what: cli::eval::EvalCommand,
    },
    /// Write a run's online encoder as safetensors with torchvision's names
    Export {
        /// A training run or one of its checkpoints
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Kernel microbenchmarks
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Images/s of whole BYOL steps (augmentations, both networks, LARS, EMA) for a preset's
    /// networks and the bytes allocated after the first step. Default: the small preset at
    /// 3x32x32 on a hardware GPU, the quick preset at 1x28x28 on a CPU adapter (minutes there)
    Step {
        #[arg(long)]
        json: bool,
        /// Default: small on a GPU, quick on a CPU adapter
        #[arg(long)]
        preset: Option<String>,
        /// Images per step (default: the preset's)
        #[arg(long)]
        batch: Option<usize>,
        /// First-stage width (default: the preset's)
        #[arg(long)]
        width: Option<usize>,
        /// Projector/predictor hidden width (default: the preset's)
        #[arg(long)]
        hidden: Option<usize>,
        /// View side in pixels (default: 28 for quick and tiny, else 32)
        #[arg(long)]
        image_size: Option<usize>,
        /// Image channels (default: 1 for quick and tiny, else 3)
        #[arg(long)]
        channels: Option<usize>,
        /// Timed steps after the first
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Also time every kernel alone and list the time by kernel
        #[arg(long)]
        profile: bool,
    },
    /// Images/s of the augmentation pipeline (both views) at 32 px and at 224 px
    Augment {
        #[arg(long)]
        json: bool,
        /// Images per batch (default: 256 on a GPU, 64 on a CPU adapter), fewer where a
        /// batch of views would not fit one buffer binding
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Convolution GFLOP/s (forward and both gradients) for every layer shape of a small-stem
    /// ResNet-18 at 32x32, beside the matmul figure, and ResNet-18 images/s
    Conv {
        /// Print one JSON object instead of a table
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Only the layers whose name contains this (and no ResNet-18 images/s)
        #[arg(long)]
        layer: Option<String>,
    },
    /// GB/s of the element-wise and batch-norm kernels beside a plain copy, on one activation
    Memory {
        /// Print one JSON object instead of a table
        #[arg(long)]
        json: bool,
        /// The activation [N, C, H, W] (default: the quick preset's first layer at batch 128)
        #[arg(long, num_args = 4, value_names = ["N", "C", "H", "W"], default_values_t = [128, 8, 28, 28])]
        shape: Vec<usize>,
    },
    /// The cost of summing each preset's gradients over data-parallel ranks: the floats per
    /// step, reading them off the device and back, and (under mpirun) the allreduce
    Allreduce {
        #[arg(long)]
        json: bool,
        /// Timed repetitions per preset (the median is reported)
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Matmul GFLOP/s for square and BYOL-head shapes beside the adapter's FMA peak
    Matmul {
        /// Print one JSON object instead of a table
        #[arg(long)]
        json: bool,
        /// Only the shapes whose sides are at most this (default: all on a GPU, 1024 on a CPU
        /// adapter, where 2048 takes over ten minutes)
        #[arg(long)]
        max_size: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let group = match Group::from_launcher() {
        Ok(g) => std::sync::Arc::new(g),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let choice = AdapterChoice {
        backend: cli.adapter.backend,
        name: cli.adapter.adapter,
        max_binding_bytes: cli.adapter.max_binding_bytes,
        tune_kernels: cli.adapter.tune,
        // Under mpirun each process takes the device of its rank on its machine.
        ordinal: (group.size() > 1).then(|| group.local_rank()),
    };
    let result = match group.size() {
        1 => run(cli.command, &choice),
        _ => run_in_group(cli.command, &choice, &group),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Every rank stopped at the same step, after the same checkpoint.
        Err(e @ Error::Interrupted { .. }) => {
            if group.is_root() {
                eprintln!("error: {e}");
            }
            // mpirun ends the job at the first rank to exit with an error: none leaves before
            // rank 0 has said where to resume.
            group.barrier();
            ExitCode::from(130)
        }
        Err(e) if group.size() > 1 => {
            // One write: mpirun interleaves its abort notice with the ranks' output, and
            // eprintln! writes a formatted line piece by piece.
            let line = format!("error on {}: {e}\n", group.describe());
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            // The other ranks may be waiting for this one in a collective: end them all.
            group.abort(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::NoAdapter { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The commands a group of processes started by mpirun runs together.
fn run_in_group(
    command: Command,
    choice: &AdapterChoice,
    group: &std::sync::Arc<Group>,
) -> byol_wgpu::Result<()> {
    match command {
        Command::Info => info_in_group(choice, group),
        Command::Train(args) => cli::train::run(&args, &Gpu::new(choice)?, group),
        Command::Bench {
            what: BenchCommand::Allreduce { json, repeats },
        } => bench_allreduce(&*Gpu::new(choice)?, group, json, repeats),
        _ => Err(Error::Config(format!(
            "under mpirun byol trains (`byol train`), lists adapters (`byol info`) and measures the gradient sums (`byol bench allreduce`); run other commands as one process ({} processes were started)",
            group.size()
        ))),
    }
}

fn run(command: Command, choice: &AdapterChoice) -> byol_wgpu::Result<()> {
    match command {
        Command::Info => info(choice),
        Command::Train(args) => {
            let alone = std::sync::Arc::new(Group::alone());
            cli::train::run(&args, &Gpu::new(choice)?, &alone)
        }
        Command::Demo { steps, seed } => demo(&Gpu::new(choice)?, steps, seed),
        Command::Embed {
            weights,
            npy,
            images,
            image_size,
            out,
            batch,
        } => {
            let gpu = Gpu::new(choice)?;
            let (n, d) = match (npy, images) {
                (Some(npy), _) => {
                    let (_, w) = cli::eval::load_encoder(&weights)?;
                    byol_wgpu::eval::embed_npy(&gpu, &w, &npy, &out, batch)?
                }
                (None, Some(dir)) => {
                    cli::eval::embed_images(&gpu, &weights, &dir, image_size, &out, batch)?
                }
                (None, None) => unreachable!("clap requires --npy or --images"),
            };
            println!("wrote {n} x {d} representations to {}", out.display());
            Ok(())
        }
        Command::Bench { what } => bench(what, &Gpu::new(choice)?),
        Command::Eval { what } => cli::eval::run(&what, &Gpu::new(choice)?),
        Command::Watch { dir, screenshot } => watch(&dir, screenshot, choice),
        Command::AugmentPreview {
            data,
            out,
            count,
            pairs,
            image_size,
            preset,
            no_blur,
            seed,
        } => {
            let path = data.unwrap_or_else(byol_wgpu::data::default_dataset_path);
            let dataset = byol_wgpu::data::open(&path, byol_wgpu::data::Split::Train, 512)?;
            let side = image_size.unwrap_or_else(|| {
                let s = dataset.max_side();
                if s <= 64 {
                    s
                } else {
                    224
                }
            });
            let mut recipe = byol_wgpu::train::TrainConfig::preset(&preset)?;
            recipe.blur &= !no_blur;
            let views = recipe.view_distributions();
            let grid = byol_wgpu::augment::preview_grid(
                &Gpu::new(choice)?,
                dataset.as_ref(),
                side,
                count,
                pairs,
                &views,
                seed,
            )?;
            grid.save_png(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Export { checkpoint, out } => {
            let n = cli::eval::export(&checkpoint, &out)?;
            println!("wrote {n} tensors to {}", out.display());
            Ok(())
        }
    }
}

/// Prints a report as a table, or as one JSON object.
fn print_report<R: serde::Serialize>(report: &R, json: bool, table: impl Fn(&R) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialise")
        );
    } else {
        println!("{}", table(report));
    }
}

/// `byol bench allreduce` on every rank; rank 0 prints.
fn bench_allreduce(gpu: &Gpu, group: &Group, json: bool, repeats: usize) -> byol_wgpu::Result<()> {
    let report = bench::allreduce_report(gpu, group, repeats)?;
    if group.is_root() {
        print_report(&report, json, bench::AllreduceReport::table);
    }
    Ok(())
}

fn bench(what: BenchCommand, gpu: &std::sync::Arc<Gpu>) -> byol_wgpu::Result<()> {
    match what {
        BenchCommand::Allreduce { json, repeats } => {
            bench_allreduce(gpu, &Group::alone(), json, repeats)?
        }
        BenchCommand::Matmul { json, max_size } => {
            let max_size = max_size.or(gpu.is_cpu().then_some(1024));
            let shapes: Vec<_> = bench::matmul_shapes()
                .into_iter()
                .filter(|&(m, n, k)| max_size.is_none_or(|s| m.max(n).max(k) <= s))
                .collect();
            let report = bench::matmul_report(gpu, &shapes, |r| {
                if !json {
                    eprintln!(
                        "  {} {}x{}x{}: {:.1} GFLOP/s",
                        r.kernel, r.m, r.n, r.k, r.gflops
                    );
                }
            })?;
            print_report(&report, json, bench::MatmulReport::table);
        }
        BenchCommand::Step {
            json,
            preset,
            batch,
            width,
            hidden,
            image_size,
            channels,
            steps,
            profile,
        } => {
            let preset =
                preset.unwrap_or_else(|| if gpu.is_cpu() { "quick" } else { "small" }.to_string());
            let mut config = byol_wgpu::train::TrainConfig::preset(&preset)?;
            config.batch = batch.unwrap_or(config.batch);
            config.width = width.unwrap_or(config.width);
            config.hidden = hidden.unwrap_or(config.hidden);
            config.accumulate = 1;
            let grayscale = matches!(preset.as_str(), "quick" | "tiny");
            let side = image_size.unwrap_or(if grayscale { 28 } else { 32 });
            let channels = channels.unwrap_or(if grayscale { 1 } else { 3 });
            let image = [channels, side, side];
            print_report(
                &bench::step_report(gpu, &config, image, steps, profile)?,
                json,
                bench::StepReport::table,
            );
        }
        BenchCommand::Augment { json, batch } => {
            let batch = batch.unwrap_or(if gpu.is_cpu() { 64 } else { 256 });
            print_report(
                &bench::augment_report(gpu, batch)?,
                json,
                bench::AugmentReport::table,
            );
        }
        BenchCommand::Memory { json, shape } => {
            let shape: [usize; 4] = shape.try_into().expect("clap takes four values");
            print_report(
                &bench::memory_report(gpu, shape)?,
                json,
                bench::MemoryReport::table,
            );
        }
        BenchCommand::Conv { json, batch, layer } => {
            let report = bench::conv_report(gpu, batch, layer.as_deref(), |r| {
                if !json {
                    eprintln!(
                        "  {}: {:.1} / {:.1} / {:.1} GFLOP/s",
                        r.layer, r.forward.gflops, r.grad_input.gflops, r.grad_weight.gflops
                    );
                }
            })?;
            print_report(&report, json, bench::ConvReport::table);
        }
    }
    Ok(())
}

fn info(choice: &AdapterChoice) -> byol_wgpu::Result<()> {
    let adapters = gpu::enumerate(choice)?;
    if adapters.is_empty() {
        // Let selection produce the error that names the fix.
        gpu::select(choice)?;
    }
    let chosen = gpu::select(choice)?.get_info();
    for a in &adapters {
        let mark = if a.get_info() == chosen {
            " (chosen)"
        } else {
            ""
        };
        let description = gpu::describe(a);
        let (name, rest) = description.split_once('\n').unwrap_or((&description, ""));
        println!("{name}{mark}\n{rest}\n");
    }
    Ok(())
}

/// One line per rank, in rank order: its machine and the adapter it takes.
fn info_in_group(choice: &AdapterChoice, group: &Group) -> byol_wgpu::Result<()> {
    let adapter = gpu::select(choice).map(|a| {
        let i = a.get_info();
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    });
    for r in 0..group.size() {
        if r == group.rank() {
            match &adapter {
                Ok(a) => println!(
                    "{} on {} (rank {} there): {a}",
                    group.describe(),
                    group.host(),
                    group.local_rank()
                ),
                Err(e) => println!("{} on {}: {e}", group.describe(), group.host()),
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        group.barrier();
    }
    adapter.map(|_| ())
}

fn demo(gpu: &std::sync::Arc<Gpu>, steps: usize, seed: u64) -> byol_wgpu::Result<()> {
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    let shape = MlpShape {
        batch: 256,
        inputs: 64,
        hidden: 256,
        outputs: 16,
    };
    let mlp = MlpRegression::build(shape, 0.05);
    let exe = Executable::new(gpu, &mlp.graph, &[mlp.loss])?;
    let (init, x, target) = mlp.data(seed);
    for (p, v) in mlp.params.iter().zip(&init) {
        exe.write(*p, v)?;
    }
    exe.write(mlp.x, &x)?;
    exe.write(mlp.target, &target)?;
    println!(
        "MLP {}-{}-{}, batch {}, {} kernels per step",
        shape.inputs,
        shape.hidden,
        shape.outputs,
        shape.batch,
        exe.dispatch_count()
    );
    let start = std::time::Instant::now();
    for step in 0..steps {
        let loss = exe.run(&[])?[0][0];
        if !loss.is_finite() {
            return Err(Error::Graph(format!("loss became {loss} at step {step}")));
        }
        if step % 20 == 0 || step + 1 == steps {
            println!("step {step:>4}  loss {loss:.5}");
        }
    }
    println!("{steps} steps in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(feature = "gui")]
fn watch(
    dir: &std::path::Path,
    screenshot: Option<PathBuf>,
    choice: &AdapterChoice,
) -> byol_wgpu::Result<()> {
    let options = byol_wgpu::gui::WindowOptions {
        screenshot,
        screenshot_after: None,
    };
    byol_wgpu::gui::watch(&Gpu::new(choice)?, dir, options)
}

#[cfg(not(feature = "gui"))]
fn watch(_: &std::path::Path, _: Option<PathBuf>, _: &AdapterChoice) -> byol_wgpu::Result<()> {
    Err(cli::train::no_window())
}
