//! Kernel microbenchmarks: throughput against the adapter's own measured FMA peak.
//!
//! Timing is wall-clock around a submission of `reps` identical dispatches and the wait for it,
//! repeated; the figure is the median sample. Submission overhead is amortised by sizing each
//! sample to about a quarter of a second.

mod allreduce;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::graph::TensorId;
use crate::graph::{Executable, Graph};
use crate::nn::{Layers, Mode, ParamRole, ResNetConfig, Stem};
use crate::ops::conv2d::{self, ConvGeometry, ConvPass};
use crate::ops::{
    BnApply, BnBatchStatsGrad, ChannelMoments, ChannelSum, MatmulKernel, Params, Relu,
};
use crate::Result;

pub use allreduce::{allreduce_report, gradient_floats, AllreduceReport, AllreduceRow};

const SAMPLES: usize = 5;
const TARGET_SAMPLE_SECONDS: f64 = 0.25;

/// Median seconds per run of `dispatches` (one launch, or the launches of one pass), after one
/// warm-up run.
pub fn time_dispatch(gpu: &Gpu, dispatches: &[Dispatch]) -> Result<f64> {
    gpu.seconds_per_run(dispatches, TARGET_SAMPLE_SECONDS, SAMPLES)
}

pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// GFLOP/s of an FMA-bound kernel: the adapter's arithmetic roof.
pub fn fma_peak_gflops(gpu: &Gpu) -> Result<f64> {
    const ITERS: usize = 4096;
    const FLOPS_PER_ITER: f64 = 64.0;
    // Enough invocations to fill a large GPU; software adapters need far fewer.
    let groups: u32 = if gpu.is_cpu() { 64 } else { 4096 };
    let invocations = groups as usize * 256;
    let out = gpu.storage_buffer("fma peak output", (invocations * 4) as u64)?;
    let params = Params::default().u(ITERS).padded(4);
    let d = gpu.dispatch(
        &KernelKey::new("fma_peak", "main"),
        &params,
        &[(1, &out)],
        [groups, 1, 1],
    )?;
    let seconds = time_dispatch(gpu, std::slice::from_ref(&d))?;
    Ok(invocations as f64 * ITERS as f64 * FLOPS_PER_ITER / seconds / 1e9)
}

#[derive(Debug, Clone, Serialize)]
pub struct MatmulResult {
    pub kernel: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatmulReport {
    pub adapter: String,
    pub backend: String,
    pub peak_gflops: f64,
    pub results: Vec<MatmulResult>,
}

/// The shapes `byol bench matmul` measures: squares, then the BYOL heads' layers
/// (ResNet-50 at batch 512: 2048 -> 4096 -> 256; ResNet-18 at batch 256: 512 -> 4096).
pub fn matmul_shapes() -> Vec<(usize, usize, usize)> {
    vec![
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (512, 4096, 2048),
        (512, 256, 4096),
        (256, 4096, 512),
    ]
}

/// Deterministic values in [-1, 1) that do not overflow sums.
fn filler(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 2000) as f32) / 1000.0 - 1.0)
        .collect()
}

/// GFLOP/s of one product with one kernel variant and transposition.
pub fn bench_matmul(
    gpu: &Gpu,
    kernel: MatmulKernel,
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
) -> Result<MatmulResult> {
    let a = gpu.storage_buffer("bench a", (m * k * 4) as u64)?;
    let b = gpu.storage_buffer("bench b", (k * n * 4) as u64)?;
    let c = gpu.storage_buffer("bench c", (m * n * 4) as u64)?;
    gpu.write_f32(&a, &filler(m * k, 1));
    gpu.write_f32(&b, &filler(k * n, 2));
    let d = kernel.dispatch(gpu, (&a, &b, &c), (m, n, k), trans_a, trans_b)?;
    let seconds = time_dispatch(gpu, std::slice::from_ref(&d))?;
    let suffix = match (trans_a, trans_b) {
        (false, false) => "",
        (true, false) => " A^T",
        (false, true) => " B^T",
        (true, true) => " A^T B^T",
    };
    Ok(MatmulResult {
        kernel: format!("{}{suffix}", kernel.name()),
        m,
        n,
        k,
        gflops: 2.0 * (m * n * k) as f64 / seconds / 1e9,
    })
}

/// The whole `byol bench matmul` report: the peak, then every shape with every kernel variant
/// that supports it, then the transposed forms backward uses at 1024 with the variants training
/// may run them on (`MatmulKernel::candidates`).
pub fn matmul_report(
    gpu: &Gpu,
    shapes: &[(usize, usize, usize)],
    mut progress: impl FnMut(&MatmulResult),
) -> Result<MatmulReport> {
    let peak_gflops = fma_peak_gflops(gpu)?;
    let mut results = Vec::new();
    let mut record = |r: MatmulResult, results: &mut Vec<MatmulResult>| {
        progress(&r);
        results.push(r);
    };
    for &(m, n, k) in shapes {
        for kernel in [
            MatmulKernel::Subgroup,
            MatmulKernel::Vec4,
            MatmulKernel::Tiled,
            MatmulKernel::TiledLarge,
            MatmulKernel::SubgroupInOrder,
        ] {
            if kernel.available(gpu) && kernel.supports(m, n, k, false) {
                record(
                    bench_matmul(gpu, kernel, (m, n, k), false, false)?,
                    &mut results,
                );
            }
        }
    }
    let s = 1024;
    for (ta, tb) in [(true, false), (false, true)] {
        for kernel in MatmulKernel::candidates(gpu, s, s, s, ta) {
            record(bench_matmul(gpu, kernel, (s, s, s), ta, tb)?, &mut results);
        }
    }
    Ok(MatmulReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        peak_gflops,
        results,
    })
}

impl MatmulReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nFMA peak: {:.1} GFLOP/s\n\n| kernel | m | n | k | GFLOP/s | % of peak |\n|---|---:|---:|---:|---:|---:|\n",
            self.adapter, self.backend, self.peak_gflops
        );
        for r in &self.results {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.0}% |\n",
                r.kernel,
                r.m,
                r.n,
                r.k,
                r.gflops,
                100.0 * r.gflops / self.peak_gflops
            ));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvResult {
    pub layer: String,
    pub geometry: String,
    pub forward: PassResult,
    pub grad_input: PassResult,
    pub grad_weight: PassResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvReport {
    pub adapter: String,
    pub backend: String,
    /// The fastest of the variants training may run 1024^3 on.
    pub matmul_1024_gflops: f64,
    pub layers: Vec<ConvResult>,
    /// Absent when only some layers were measured.
    pub resnet18_forward_images_per_s: Option<f64>,
    pub resnet18_train_images_per_s: Option<f64>,
}

/// The distinct convolutions of a small-stem ResNet-18 on 32x32 images, with a layer that has each.
pub fn resnet18_small_convs(batch: usize) -> Vec<(String, ConvGeometry)> {
    let conv = |ci, h, co, k, stride, pad| ConvGeometry {
        batch,
        ci,
        h,
        w: h,
        co,
        kh: k,
        kw: k,
        stride,
        pad,
    };
    vec![
        ("conv1".into(), conv(3, 32, 64, 3, 1, 1)),
        ("layer1.*.conv*".into(), conv(64, 32, 64, 3, 1, 1)),
        ("layer2.0.conv1".into(), conv(64, 32, 128, 3, 2, 1)),
        ("layer2.*.conv2".into(), conv(128, 16, 128, 3, 1, 1)),
        ("layer2.0.downsample".into(), conv(64, 32, 128, 1, 2, 0)),
        ("layer3.0.conv1".into(), conv(128, 16, 256, 3, 2, 1)),
        ("layer3.*.conv2".into(), conv(256, 8, 256, 3, 1, 1)),
        ("layer3.0.downsample".into(), conv(128, 16, 256, 1, 2, 0)),
        ("layer4.0.conv1".into(), conv(256, 8, 512, 3, 2, 1)),
        ("layer4.*.conv2".into(), conv(512, 4, 512, 3, 1, 1)),
        ("layer4.0.downsample".into(), conv(256, 8, 512, 1, 2, 0)),
    ]
}

/// The three passes of one convolution (forward, input and weight gradients), on the kernels
/// training runs them on.
pub fn bench_conv(gpu: &Gpu, g: &ConvGeometry) -> Result<[PassResult; 3]> {
    let x = gpu.storage_buffer("bench x", (g.batch * g.ci * g.h * g.w * 4) as u64)?;
    let w = gpu.storage_buffer("bench w", (g.co * g.ci * g.kh * g.kw * 4) as u64)?;
    let y = gpu.storage_buffer(
        "bench y",
        (g.output_shape().iter().product::<usize>() * 4) as u64,
    )?;
    gpu.write_f32(&x, &filler(g.batch * g.ci * g.h * g.w, 1));
    gpu.write_f32(&w, &filler(g.co * g.ci * g.kh * g.kw, 2));
    gpu.write_f32(&y, &filler(g.output_shape().iter().product(), 3));
    let flops = 2.0 * g.macs() as f64;
    // The weight gradient as training runs it: K split into chunks (summed by a small reduction
    // that is not timed here).
    let splits = conv2d::weight_grad_splits(g);
    let partial = gpu.storage_buffer(
        "bench dw partials",
        (splits * g.co * g.ci * g.kh * g.kw * 4) as u64,
    )?;
    let passes = [
        (ConvPass::Forward, 1, (&w, &x, &y)),
        (ConvPass::GradInput, 1, (&w, &y, &x)),
        (ConvPass::GradWeight, splits, (&y, &x, &partial)),
    ];
    let mut out = Vec::with_capacity(3);
    for (pass, splits, buffers) in passes {
        let d = conv2d::dispatch(gpu, pass, g, splits, buffers)?;
        // The kernels by name, once each (an input gradient launches one per parity class).
        let mut names: Vec<&str> = d
            .iter()
            .map(|d| d.label.trim_end_matches("::main"))
            .collect();
        names.dedup();
        out.push(PassResult {
            gflops: flops / time_dispatch(gpu, &d)? / 1e9,
            kernels: names.join(" + "),
        });
    }
    Ok(out.try_into().expect("three passes"))
}

/// One pass of a convolution: its speed, and the kernels that ran it (shader names).
#[derive(Debug, Clone, Serialize)]
pub struct PassResult {
    pub gflops: f64,
    pub kernels: String,
}

/// Images per second of a small-stem ResNet-18 at 32x32: inference, and a training pass
/// (forward in training mode and the gradients of every parameter).
pub fn resnet18_images_per_s(gpu: &Arc<Gpu>, batch: usize) -> Result<(f64, f64)> {
    let config = ResNetConfig::of_depth(18, 1, 3, Stem::Small)?;
    let mut rates = [0.0; 2];
    for (rate, mode) in rates.iter_mut().zip([Mode::Eval, Mode::Train]) {
        let mut g = Graph::new();
        let x = g.input("x", &[batch, 3, 32, 32]);
        let mut layers = Layers::new(&mut g, mode, "");
        let y = config.build(&mut layers, x);
        let params = layers.params;
        let outputs = if mode == Mode::Train {
            let flat = g.reshape(y, &[batch * config.out_dim()]);
            let loss = g.sum(flat, 0);
            let wrt: Vec<_> = params
                .iter()
                .filter(|p| p.role != ParamRole::RunningStat)
                .map(|p| p.id)
                .collect();
            // Read every gradient back, or the backward pass is dead code and never runs.
            let mut outputs = g.grad(loss, &wrt)?;
            outputs.push(loss);
            outputs
        } else {
            vec![y]
        };
        let exe = Executable::new(gpu, &g, &outputs)?;
        for (p, value) in params.iter().zip(crate::nn::initial_values(&params, 0)) {
            exe.write(p.id, &value)?;
        }
        let images = filler(batch * 3 * 32 * 32, 5);
        exe.run(&[(x, &images)])?;
        let mut samples = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            exe.run(&[(x, &images)])?;
            samples.push(t.elapsed().as_secs_f64());
        }
        *rate = batch as f64 / median(&mut samples);
    }
    Ok((rates[0], rates[1]))
}

/// The `byol bench conv` report: every layer and the whole network, or only the layers whose
/// name contains `layer_filter`.
pub fn conv_report(
    gpu: &Arc<Gpu>,
    batch: usize,
    layer_filter: Option<&str>,
    mut progress: impl FnMut(&ConvResult),
) -> Result<ConvReport> {
    let mut matmul_1024_gflops = 0.0f64;
    for kernel in MatmulKernel::candidates(gpu, 1024, 1024, 1024, false) {
        let r = bench_matmul(gpu, kernel, (1024, 1024, 1024), false, false)?;
        matmul_1024_gflops = matmul_1024_gflops.max(r.gflops);
    }
    let mut layers = Vec::new();
    let convs = resnet18_small_convs(batch)
        .into_iter()
        .filter(|(layer, _)| layer_filter.is_none_or(|f| layer.contains(f)));
    for (layer, g) in convs {
        let [forward, grad_input, grad_weight] = bench_conv(gpu, &g)?;
        let r = ConvResult {
            layer,
            geometry: format!(
                "{}x{}x{}x{} -> {} ch, {}x{} stride {}",
                g.batch, g.ci, g.h, g.w, g.co, g.kh, g.kw, g.stride
            ),
            forward,
            grad_input,
            grad_weight,
        };
        progress(&r);
        layers.push(r);
    }
    let network = match layer_filter {
        Some(_) => None,
        None => Some(resnet18_images_per_s(gpu, batch)?),
    };
    Ok(ConvReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        matmul_1024_gflops,
        layers,
        resnet18_forward_images_per_s: network.map(|(fwd, _)| fwd),
        resnet18_train_images_per_s: network.map(|(_, train)| train),
    })
}

impl ConvReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nmatmul 1024^3: {:.1} GFLOP/s\n\n| layer | shape | forward GFLOP/s | grad input GFLOP/s | grad weight GFLOP/s | kernels |\n|---|---|---:|---:|---:|---|\n",
            self.adapter, self.backend, self.matmul_1024_gflops
        );
        for r in &self.layers {
            let passes = [&r.forward, &r.grad_input, &r.grad_weight];
            let kernels: Vec<&str> = passes.iter().map(|p| p.kernels.as_str()).collect();
            s.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
                r.layer,
                r.geometry,
                r.forward.gflops,
                r.grad_input.gflops,
                r.grad_weight.gflops,
                kernels.join(", ")
            ));
        }
        if let (Some(fwd), Some(train)) = (
            self.resnet18_forward_images_per_s,
            self.resnet18_train_images_per_s,
        ) {
            s.push_str(&format!(
                "\nResNet-18 (small stem, 32x32): inference {fwd:.1} images/s, training pass (forward + backward) {train:.1} images/s\n"
            ));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub adapter: String,
    pub backend: String,
    /// What was stepped: preset, networks, image shape.
    pub setup: String,
    pub batch: usize,
    pub images_per_s: f64,
    pub seconds_per_step: f64,
    /// From building the step's graph to the end of its first step: recording every launch,
    /// which compiles the pipelines (most of it where the driver's shader cache is empty).
    pub seconds_to_first_step: f64,
    /// Kernel launches per step (augmentations included).
    pub dispatches_per_step: usize,
    /// Whether the device timed the GEMM candidates (`Gpu::fastest`), how many problems it
    /// timed and the seconds that took (within `seconds_to_first_step`).
    pub tuning: bool,
    pub tuned_problems: usize,
    pub tuning_seconds: f64,
    /// The step's roofline: the work of its ops (augmentations not counted) against the
    /// adapter's FMA and copy peaks measured in the same run.
    pub roofline: Roofline,
    /// Bytes the device allocated over the steps after the first (zero by design).
    pub bytes_allocated_after_first_step: u64,
    /// Seconds per step by kernel (each launch timed alone), largest first; empty unless asked.
    pub profile: Vec<KernelTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Roofline {
    /// Floating-point operations per step (a multiply-add counts 2).
    pub flops_per_step: f64,
    /// Bytes the step's ops must move at least: each reads its inputs once and writes its
    /// output once (split-K partial sums included, re-reads inside a kernel not).
    pub bytes_per_step: f64,
    /// The two over the median step time.
    pub gflops: f64,
    pub gbps: f64,
    pub peak_gflops: f64,
    pub peak_gbps: f64,
    /// Per op family (conv2d, conv2d_grad_weight, matmul, bn_apply, ...), most FLOPs first.
    pub families: Vec<FamilyWork>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyWork {
    pub family: String,
    #[serde(flatten)]
    pub work: crate::ops::Work,
}

/// The roofline of a step that does `work` in `seconds`, with the adapter's peaks.
fn roofline(gpu: &Gpu, work: Vec<(String, crate::ops::Work)>, seconds: f64) -> Result<Roofline> {
    let mut families: Vec<FamilyWork> = work
        .into_iter()
        .map(|(family, work)| FamilyWork { family, work })
        .collect();
    families.sort_by(|a, b| b.work.flops.total_cmp(&a.work.flops));
    let flops_per_step: f64 = families.iter().map(|f| f.work.flops).sum();
    let bytes_per_step: f64 = families.iter().map(|f| f.work.bytes).sum();
    let copy_floats = if gpu.is_cpu() { 1 << 22 } else { 1 << 24 };
    Ok(Roofline {
        flops_per_step,
        bytes_per_step,
        gflops: flops_per_step / seconds / 1e9,
        gbps: bytes_per_step / seconds / 1e9,
        peak_gflops: fma_peak_gflops(gpu)?,
        peak_gbps: copy_peak_gbps(gpu, copy_floats)?,
        families,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    pub kernel: String,
    pub launches: usize,
    pub seconds: f64,
}

/// Seconds per launch of each kernel in `dispatches`, each run alone (median of 3), summed by
/// kernel name, largest first.
pub fn profile(gpu: &Gpu, dispatches: &[Dispatch]) -> Result<Vec<KernelTime>> {
    let mut by_kernel: Vec<KernelTime> = Vec::new();
    for d in dispatches {
        let mut samples = Vec::with_capacity(3);
        for _ in 0..3 {
            let t = Instant::now();
            gpu.run(std::slice::from_ref(d))?;
            samples.push(t.elapsed().as_secs_f64());
        }
        let seconds = median(&mut samples);
        match by_kernel.iter_mut().find(|k| *k.kernel == *d.label) {
            Some(k) => {
                k.launches += 1;
                k.seconds += seconds;
            }
            None => by_kernel.push(KernelTime {
                kernel: d.label.to_string(),
                launches: 1,
                seconds,
            }),
        }
    }
    by_kernel.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(by_kernel)
}

/// Images/s of whole BYOL steps (both views augmented on the device, both networks, LARS,
/// EMA) for a training config's networks on `image`-shaped views, with the bytes allocated
/// after the first step.
pub fn step_report(
    gpu: &Arc<Gpu>,
    config: &crate::train::TrainConfig,
    image: [usize; 3],
    steps: usize,
    with_profile: bool,
) -> Result<StepReport> {
    let started = Instant::now();
    let batch = config.micro_batch(1)?;
    let nets = config.nets(image[0])?;
    let step =
        crate::byol::ByolStep::build(&nets, batch, image, &config.lars(), Default::default())?;
    let exe = Executable::new(gpu, &step.graph, &[step.loss, step.collapse_std])?;
    for (p, value) in step
        .params
        .iter()
        .zip(step.initial_values(0, crate::byol::TargetInit::Copy))
    {
        exe.write(p.id, &value)?;
    }
    let side = image[1];
    let images: Vec<crate::data::Image> = (0..batch)
        .map(|i| {
            let pixels = filler(side * side * image[0], i)
                .iter()
                .map(|v| ((v + 1.0) * 127.0) as u8)
                .collect();
            crate::data::Image::new(side, side, image[0], pixels)
        })
        .collect::<Result<_>>()?;
    let norm = crate::data::Normalization {
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let augmenter = crate::augment::Augmenter::new(
        gpu,
        batch,
        side,
        image[0],
        &norm,
        side,
        &[exe.input_buffer(step.view1)?, exe.input_buffer(step.view2)?],
    )?;
    let dists = [
        crate::augment::ViewDistribution::t(),
        crate::augment::ViewDistribution::t_prime(),
    ];
    exe.write(step.schedule, &[0.1, 0.99])?;
    let one_step = |k: u64| -> Result<()> {
        let params = crate::augment::draw(&mut crate::augment::step_rng(0, k), &dists, &images);
        augmenter.upload(&images, &params)?;
        let pending = exe.submit(augmenter.dispatches(), 0..exe.phase_count())?;
        exe.collect(pending)?;
        Ok(())
    };
    one_step(0)?;
    let seconds_to_first_step = started.elapsed().as_secs_f64();
    let before = gpu.allocated_bytes();
    let mut samples = Vec::new();
    for k in 0..steps.max(1) {
        let t = Instant::now();
        one_step(k as u64 + 1)?;
        samples.push(t.elapsed().as_secs_f64());
    }
    let seconds = median(&mut samples);
    let allocated = gpu.allocated_bytes() - before;
    let roofline = roofline(
        gpu,
        step.graph.work(&[step.loss, step.collapse_std]),
        seconds,
    )?;
    let profile = if with_profile {
        let all: Vec<Dispatch> = augmenter
            .dispatches()
            .iter()
            .chain(exe.dispatches())
            .cloned()
            .collect();
        self::profile(gpu, &all)?
    } else {
        Vec::new()
    };
    Ok(StepReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        setup: format!(
            "preset {}: {} width {}, {:?} stem, heads {}/{}, views {:?}",
            config.preset,
            config.arch,
            config.width,
            config.stem,
            config.hidden,
            config.projection,
            image
        ),
        batch,
        images_per_s: batch as f64 / seconds,
        seconds_per_step: seconds,
        seconds_to_first_step,
        dispatches_per_step: augmenter.dispatches().len() + exe.dispatch_count(),
        tuning: gpu.tunes_kernels(),
        tuned_problems: gpu.tuned_problems(),
        tuning_seconds: gpu.tuning_seconds(),
        roofline,
        bytes_allocated_after_first_step: allocated,
        profile,
    })
}

impl StepReport {
    /// ", N GEMMs tuned in S s" where the device timed kernel candidates.
    fn tuning_summary(&self) -> String {
        if !self.tuning {
            return String::new();
        }
        format!(
            ", {} GEMMs tuned in {:.1} s",
            self.tuned_problems, self.tuning_seconds
        )
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nBYOL step ({}), batch {}: {:.2} images/s ({:.3} s per step, median)\n{} kernel launches per step\nfirst step done {:.1} s after building the graph (pipelines compiled{})\nbytes allocated after the first step: {}\n",
            self.adapter, self.backend, self.setup, self.batch, self.images_per_s, self.seconds_per_step, self.dispatches_per_step, self.seconds_to_first_step, self.tuning_summary(), self.bytes_allocated_after_first_step
        );
        let r = &self.roofline;
        s.push_str(&format!(
            "roofline: {:.3} GFLOP and {:.1} MB per step (augmentations not counted): {:.2} GFLOP/s ({:.1}% of the FMA peak, {:.1} GFLOP/s), {:.2} GB/s ({:.1}% of the copy peak, {:.2} GB/s)\n\nop family                       GFLOP/step   share    MB/step   share\n",
            r.flops_per_step / 1e9,
            r.bytes_per_step / 1e6,
            r.gflops,
            100.0 * r.gflops / r.peak_gflops,
            r.peak_gflops,
            r.gbps,
            100.0 * r.gbps / r.peak_gbps,
            r.peak_gbps
        ));
        for f in &r.families {
            s.push_str(&format!(
                "{:<30} {:>11.4} {:>6.1}% {:>10.2} {:>6.1}%\n",
                f.family,
                f.work.flops / 1e9,
                100.0 * f.work.flops / r.flops_per_step,
                f.work.bytes / 1e6,
                100.0 * f.work.bytes / r.bytes_per_step
            ));
        }
        if !self.profile.is_empty() {
            let total: f64 = self.profile.iter().map(|k| k.seconds).sum();
            s.push_str("\nkernel                                launches   ms/step   share\n");
            for k in &self.profile {
                s.push_str(&format!(
                    "{:<38} {:>8} {:>9.2} {:>6.1}%\n",
                    k.kernel,
                    k.launches,
                    k.seconds * 1e3,
                    100.0 * k.seconds / total
                ));
            }
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AugmentRow {
    pub side: usize,
    pub source_side: usize,
    pub batch: usize,
    /// Both views of a batch, kernels only.
    pub kernel_images_per_s: f64,
    /// Both views including the parameter draws, packing and upload of the batch.
    pub pipeline_images_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AugmentReport {
    pub adapter: String,
    pub backend: String,
    pub rows: Vec<AugmentRow>,
}

/// Images/s of the augmentation pipeline (T and T' views of RGB images) at 32 px from 32 px
/// sources and at 224 px from 256 px sources.
pub fn augment_report(gpu: &Arc<Gpu>, batch: usize) -> Result<AugmentReport> {
    use crate::augment::{draw, step_rng, Augmenter, ViewDistribution};
    let dists = [ViewDistribution::t(), ViewDistribution::t_prime()];
    let norm = crate::data::Normalization::IMAGENET;
    let mut rows = Vec::new();
    for (side, source) in [(32usize, 32usize), (224, 256)] {
        // As many as asked, or as fit one binding (the views, and the source pixels).
        let binding = gpu.max_binding_bytes() as usize;
        let batch = batch
            .min(binding / (3 * side * side * 4))
            .min(binding / (source * source * 4))
            .max(1);
        let images: Vec<crate::data::Image> = (0..batch)
            .map(|i| {
                let pixels = filler(source * source * 3, i)
                    .iter()
                    .map(|v| ((v + 1.0) * 127.0) as u8)
                    .collect();
                crate::data::Image::new(source, source, 3, pixels)
            })
            .collect::<Result<_>>()?;
        let outs = (0..2)
            .map(|_| gpu.storage_buffer("view", (batch * 3 * side * side * 4) as u64))
            .collect::<Result<Vec<_>>>()?;
        let aug = Augmenter::new(gpu, batch, side, 3, &norm, source, &[&outs[0], &outs[1]])?;
        aug.upload(&images, &draw(&mut step_rng(0, 0), &dists, &images))?;
        let kernel = time_dispatch(gpu, aug.dispatches())?;
        let mut samples = Vec::new();
        for k in 0..SAMPLES {
            let t = Instant::now();
            let params = draw(&mut step_rng(0, k as u64 + 1), &dists, &images);
            aug.upload(&images, &params)?;
            gpu.run(aug.dispatches())?;
            samples.push(t.elapsed().as_secs_f64());
        }
        rows.push(AugmentRow {
            side,
            source_side: source,
            batch,
            kernel_images_per_s: batch as f64 / kernel,
            pipeline_images_per_s: batch as f64 / median(&mut samples),
        });
    }
    Ok(AugmentReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        rows,
    })
}

impl AugmentReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nT and T' views of RGB images (images/s, medians)\n\nview  source  batch   kernels   with draws + upload\n",
            self.adapter, self.backend
        );
        for r in &self.rows {
            s.push_str(&format!(
                "{:>4}  {:>6}  {:>5}  {:>8.1}  {:>8.1}\n",
                r.side, r.source_side, r.batch, r.kernel_images_per_s, r.pipeline_images_per_s
            ));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryResult {
    pub kernel: String,
    /// Bytes read and written per launch, counting the tensor-sized operands.
    pub bytes: u64,
    pub gbps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub adapter: String,
    pub backend: String,
    pub shape: Vec<usize>,
    /// A vec4 copy of one tensor: the adapter's memory roof, measured in the same run.
    pub peak_gbps: f64,
    pub results: Vec<MemoryResult>,
}

/// GB/s of a vec4 copy of `len` floats.
fn copy_peak_gbps(gpu: &Gpu, len: usize) -> Result<f64> {
    let src = gpu.storage_buffer("bandwidth src", (len * 4) as u64)?;
    let dst = gpu.storage_buffer("bandwidth dst", (len * 4) as u64)?;
    let len4 = len.div_ceil(4);
    let d = crate::ops::launch(
        gpu,
        ("bandwidth_peak", "main"),
        &Params::default().u(len4).padded(4),
        &[(1, &src), (2, &dst)],
        crate::ops::per_element(len4),
    )?;
    let seconds = time_dispatch(gpu, &d)?;
    Ok((2 * len4 * 16) as f64 / seconds / 1e9)
}

/// GB/s of the memory-bound kernels that dominate a training step (element-wise, batch norm)
/// on an activation of `shape` [N, C, H, W], beside a plain copy of it.
pub fn memory_report(gpu: &Arc<Gpu>, shape: [usize; 4]) -> Result<MemoryReport> {
    let len: usize = shape.iter().product();
    let c = shape[1];
    let tensor = (len * 4) as u64;
    // (kernel, tensor-sized operands read and written, the graph of the one op).
    type Build = fn(&mut Graph, &[usize], usize) -> TensorId;
    let cases: [(&str, u64, Build); 6] = [
        ("add", 3, |g, s, _| {
            let (a, b) = (g.input("a", s), g.input("b", s));
            g.add(a, b)
        }),
        ("relu", 2, |g, s, _| {
            let x = g.input("x", s);
            g.apply(Relu, &[x])
        }),
        ("batch norm: normalise", 2, |g, s, c| {
            let x = g.input("x", s);
            let stats: Vec<TensorId> = (0..4).map(|i| g.input(&format!("s{i}"), &[c])).collect();
            let bn = BnApply::new(1e-5, false);
            g.apply(bn, &[x, stats[0], stats[1], stats[2], stats[3]])
        }),
        ("batch norm: input gradient", 3, |g, s, c| {
            let (dy, x) = (g.input("dy", s), g.input("x", s));
            let stats: Vec<TensorId> = (0..3).map(|i| g.input(&format!("s{i}"), &[c])).collect();
            let sums = g.input("sums", &[2, c]);
            let inputs = [&[dy, x][..], &stats[..], &[sums]].concat();
            let grad = BnBatchStatsGrad {
                eps: 1e-5,
                masked: false,
            };
            g.apply(grad, &inputs)
        }),
        ("batch norm: channel sum", 1, |g, s, _| {
            let x = g.input("x", s);
            g.apply(ChannelSum { scale: 1.0 }, &[x])
        }),
        ("batch norm: mean and variance", 1, |g, s, _| {
            let x = g.input("x", s);
            g.apply(ChannelMoments, &[x])
        }),
    ];
    let mut results = Vec::new();
    for (kernel, operands, build) in cases {
        let mut g = Graph::new();
        let out = build(&mut g, &shape, c);
        let exe = Executable::new(gpu, &g, &[out])?;
        let seconds = time_dispatch(gpu, exe.dispatches())?;
        let bytes = operands * tensor;
        results.push(MemoryResult {
            kernel: kernel.into(),
            bytes,
            gbps: bytes as f64 / seconds / 1e9,
        });
    }
    Ok(MemoryReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        shape: shape.to_vec(),
        peak_gbps: copy_peak_gbps(gpu, len)?,
        results,
    })
}

impl MemoryReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nactivation {:?}; copy peak {:.2} GB/s\n\n| kernel | MB moved | GB/s | % of copy |\n|---|---:|---:|---:|\n",
            self.adapter, self.backend, self.shape, self.peak_gbps
        );
        for r in &self.results {
            s.push_str(&format!(
                "| {} | {:.1} | {:.2} | {:.0}% |\n",
                r.kernel,
                r.bytes as f64 / 1e6,
                r.gbps,
                100.0 * r.gbps / self.peak_gbps
            ));
        }
        s
    }
}
