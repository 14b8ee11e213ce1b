//! Every convolution kernel family the adapter can run, each pass against the f64 reference:
//! the tiled GEMMs of hardware GPUs run here too, so CI on a software adapter checks them all.

mod common;

use byol_wgpu::graph::Graph;
use byol_wgpu::nn::{Layers, Mode};
use byol_wgpu::ops::conv2d::{self, ConvKernels, ConvPass};
use byol_wgpu::ops::gemm_subgroup::Tile;
use byol_wgpu::ops::{Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeometry, HostTensor, Op};
use byol_wgpu::train::TrainConfig;
use common::{assert_close, gpu, random};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn geometry(
    batch: usize,
    ci: usize,
    (h, w): (usize, usize),
    co: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeometry {
    ConvGeometry {
        batch,
        ci,
        h,
        w,
        co,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

/// Layers that take each path: the direct kernels (few channels, stride 1), the row kernels
/// (3x3, stride 1, widths of multiples of 4), fitted and large GEMM tiles, parity classes of strided input gradients, split-K and by-taps weight gradients.
fn geometries() -> Vec<ConvGeometry> {
    vec![
        geometry(2, 3, (13, 11), 20, 3, 1, 1),
        geometry(2, 8, (9, 9), 8, 3, 1, 1),
        geometry(2, 5, (9, 8), 6, 3, 2, 1),
        geometry(3, 20, (7, 7), 24, 1, 2, 0),
        geometry(1, 3, (13, 11), 8, 7, 2, 3),
        geometry(2, 70, (5, 5), 66, 3, 1, 1),
        geometry(2, 3, (32, 32), 4, 3, 1, 1),
        geometry(2, 1, (6, 5), 12, 3, 1, 1),
        // Channels across the 128-row edge of the large tiles, K not a multiple of their 8.
        geometry(1, 132, (5, 5), 130, 3, 2, 1),
        // 3x3 stride-1 passes over widths that are multiples of 4 (conv_rows.rs): a lane's runs
        // across rows and images, in one row, one run per row; channels across the 32-row tile.
        geometry(2, 5, (6, 8), 40, 3, 1, 1),
        geometry(3, 20, (4, 12), 24, 3, 1, 1),
        geometry(2, 17, (3, 32), 33, 3, 1, 1),
        geometry(2, 18, (4, 4), 20, 3, 1, 1),
    ]
}

fn buffer(len: usize, data: Option<&[f32]>) -> wgpu::Buffer {
    let gpu = gpu();
    let b = gpu.storage_buffer("conv test", (len * 4) as u64).unwrap();
    if let Some(data) = data {
        gpu.write_f32(&b, data);
    }
    b
}

/// Output elements checked per pass when the full f64 reference would be too slow.
const SAMPLES: usize = 1500;

/// Convolutions whose full reference takes more multiply-adds than this are checked on
/// SAMPLES output elements instead.
const FULL_REFERENCE_MACS: usize = 150_000_000;

/// The reference of one output element of `pass` (for weight gradients, element `index` of
/// the [splits, Co, Ci, Kh, Kw] partial sums).
fn reference_at(
    pass: ConvPass,
    g: &ConvGeometry,
    (x, w, dy): (&[f32], &[f32], &[f32]),
    splits: usize,
    index: usize,
) -> f64 {
    let (ho, wo) = (g.ho(), g.wo());
    let xi = |n: usize, c: usize, y: usize, xx: usize| ((n * g.ci + c) * g.h + y) * g.w + xx;
    let wi = |co: usize, c: usize, ky: usize, kx: usize| ((co * g.ci + c) * g.kh + ky) * g.kw + kx;
    let yi = |n: usize, co: usize, oy: usize, ox: usize| ((n * g.co + co) * ho + oy) * wo + ox;
    let mut acc = 0.0;
    match pass {
        ConvPass::Forward => {
            let (n, co, oy, ox) = (
                index / (g.co * ho * wo),
                index / (ho * wo) % g.co,
                index / wo % ho,
                index % wo,
            );
            for c in 0..g.ci {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let (y, xx) = (
                            (oy * g.stride + ky).wrapping_sub(g.pad),
                            (ox * g.stride + kx).wrapping_sub(g.pad),
                        );
                        if y < g.h && xx < g.w {
                            acc += f64::from(x[xi(n, c, y, xx)]) * f64::from(w[wi(co, c, ky, kx)]);
                        }
                    }
                }
            }
        }
        ConvPass::GradInput => {
            let (n, c, y, xx) = (
                index / (g.ci * g.h * g.w),
                index / (g.h * g.w) % g.ci,
                index / g.w % g.h,
                index % g.w,
            );
            for co in 0..g.co {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let (sy, sx) = (y + g.pad, xx + g.pad);
                        if sy < ky
                            || sx < kx
                            || (sy - ky) % g.stride != 0
                            || (sx - kx) % g.stride != 0
                        {
                            continue;
                        }
                        let (oy, ox) = ((sy - ky) / g.stride, (sx - kx) / g.stride);
                        if oy < ho && ox < wo {
                            acc +=
                                f64::from(dy[yi(n, co, oy, ox)]) * f64::from(w[wi(co, c, ky, kx)]);
                        }
                    }
                }
            }
        }
        ConvPass::GradWeight => {
            let weights = g.co * g.ci * g.kh * g.kw;
            let (split, e) = (index / weights, index % weights);
            let (co, c, ky, kx) = (
                e / (g.ci * g.kh * g.kw),
                e / (g.kh * g.kw) % g.ci,
                e / g.kw % g.kh,
                e % g.kw,
            );
            let k = g.batch * ho * wo;
            let chunk = k.div_ceil(splits);
            for kk in split * chunk..((split + 1) * chunk).min(k) {
                let (n, oy, ox) = (kk / (ho * wo), kk / wo % ho, kk % wo);
                let (y, xx) = (
                    (oy * g.stride + ky).wrapping_sub(g.pad),
                    (ox * g.stride + kx).wrapping_sub(g.pad),
                );
                if y < g.h && xx < g.w {
                    acc += f64::from(x[xi(n, c, y, xx)]) * f64::from(dy[yi(n, co, oy, ox)]);
                }
            }
        }
    }
    acc
}

fn check(kernels: ConvKernels, g: &ConvGeometry) {
    check_passes(|_| kernels, g);
}

/// A convolution's seeded operands, on the host and on the device.
struct Operands {
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
    buffers: [wgpu::Buffer; 3],
}

impl Operands {
    fn new(g: &ConvGeometry) -> Self {
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let x = random(numel(&[g.batch, g.ci, g.h, g.w]), 1);
        let w = random(numel(&[g.co, g.ci, g.kh, g.kw]), 2);
        let dy = random(numel(&g.output_shape()), 3);
        let buffers = [&x, &w, &dy].map(|v| buffer(v.len(), Some(v)));
        Self { x, w, dy, buffers }
    }

    /// The pass's splits of K (weight gradients split as training does).
    fn splits(pass: ConvPass, g: &ConvGeometry) -> usize {
        match pass {
            ConvPass::GradWeight => conv2d::weight_grad_splits(g),
            _ => 1,
        }
    }

    /// The pass's (a, b) operands as gemm_operands.wgsl reads them, and the output's length.
    fn of(&self, pass: ConvPass, g: &ConvGeometry) -> (&wgpu::Buffer, &wgpu::Buffer, usize) {
        let [x, w, dy] = &self.buffers;
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let weights = numel(&[g.co, g.ci, g.kh, g.kw]);
        match pass {
            ConvPass::Forward => (w, x, numel(&g.output_shape())),
            ConvPass::GradInput => (w, dy, numel(&[g.batch, g.ci, g.h, g.w])),
            ConvPass::GradWeight => (dy, x, Self::splits(pass, g) * weights),
        }
    }

    /// The pass on `kernels`.
    fn run(&self, kernels: ConvKernels, pass: ConvPass, g: &ConvGeometry) -> Vec<f32> {
        let gpu = gpu();
        let (a, b, len) = self.of(pass, g);
        let out = buffer(len, None);
        let launches =
            conv2d::dispatch_on(kernels, &gpu, pass, g, Self::splits(pass, g), (a, b, &out))
                .unwrap_or_else(|e| panic!("{kernels:?} {pass:?} {g:?}: {e}"));
        gpu.run(&launches).unwrap();
        gpu.read_f32(&out, len).unwrap()
    }
}

const PASSES: [ConvPass; 3] = [ConvPass::Forward, ConvPass::GradInput, ConvPass::GradWeight];

/// `check` with the kernels of each pass given by `kernels`.
fn check_passes(kernels: impl Fn(ConvPass) -> ConvKernels, g: &ConvGeometry) {
    let operands = Operands::new(g);
    let (x, w, dy) = (&operands.x, &operands.w, &operands.dy);
    let x_shape = [g.batch, g.ci, g.h, g.w];
    let w_shape = [g.co, g.ci, g.kh, g.kw];
    let y_shape = g.output_shape();
    let host = |shape: &[usize], data: &[f32]| HostTensor::from_f32(shape, data);
    let splits = conv2d::weight_grad_splits(g);
    let taps = g.kh * g.kw;
    let k_of = |pass| match pass {
        ConvPass::Forward => g.ci * taps,
        ConvPass::GradInput => g.co * taps,
        ConvPass::GradWeight => (g.batch * g.ho() * g.wo()).div_ceil(splits),
    };
    let sampled = g.macs() > FULL_REFERENCE_MACS;
    for pass in PASSES {
        let kernels = kernels(pass);
        let got = operands.run(kernels, pass, g);
        let len = got.len();
        let pass_splits = Operands::splits(pass, g);
        // Sums of K products of values in [-1, 1]: the f32 rounding grows like sqrt(K).
        let k = k_of(pass) as f64;
        let what = format!("{kernels:?} {pass:?} {g:?}");
        if sampled {
            // Every element of the first and last rows of the output, and a seeded spread.
            let mut rng = ChaCha8Rng::seed_from_u64(len as u64);
            let picks: Vec<usize> = (0..64.min(len))
                .chain((len.saturating_sub(64))..len)
                .chain((0..SAMPLES).map(|_| rng.random_range(0..len)))
                .collect();
            let want: Vec<f64> = picks
                .iter()
                .map(|&i| reference_at(pass, g, (x, w, dy), pass_splits, i))
                .collect();
            let have: Vec<f32> = picks.iter().map(|&i| got[i]).collect();
            assert_close(
                &format!("{what}, sampled"),
                &have,
                &want,
                1e-5 * k.sqrt(),
                1e-5,
            );
            continue;
        }
        let want = match pass {
            ConvPass::Forward => Conv2d {
                stride: g.stride,
                pad: g.pad,
            }
            .reference(&[&host(&x_shape, x), &host(&w_shape, w)]),
            ConvPass::GradInput => Conv2dGradInput { geometry: *g }
                .reference(&[&host(&y_shape, dy), &host(&w_shape, w)]),
            ConvPass::GradWeight => Conv2dGradWeight {
                geometry: *g,
                splits,
            }
            .reference(&[&host(&x_shape, x), &host(&y_shape, dy)]),
        };
        assert_close(&what, &got, &want.data, 1e-5 * k.sqrt(), 1e-5);
    }
}

/// The distinct convolutions of a preset's encoder, read off the graph it trains.
fn preset_layers(preset: &str, in_channels: usize, side: usize) -> Vec<ConvGeometry> {
    let config = TrainConfig::preset(preset).unwrap();
    let encoder = config.nets(in_channels).unwrap().encoder;
    let mut graph = Graph::new();
    let x = graph.input("views", &[config.batch, in_channels, side, side]);
    let mut layers = Layers::new(&mut graph, Mode::Train, "");
    encoder.build(&mut layers, x);
    let mut out: Vec<ConvGeometry> = Vec::new();
    for t in graph.ids() {
        let node = graph.node(t);
        let Some(rest) = node.name.strip_prefix("conv2d(stride=") else {
            continue;
        };
        let (stride, pad) = rest.trim_end_matches(')').split_once(", pad=").unwrap();
        let (xs, ws) = (graph.shape(node.inputs()[0]), graph.shape(node.inputs()[1]));
        let g = ConvGeometry {
            batch: xs[0],
            ci: xs[1],
            h: xs[2],
            w: xs[3],
            co: ws[0],
            kh: ws[2],
            kw: ws[3],
            stride: stride.parse().unwrap(),
            pad: pad.parse().unwrap(),
        };
        if !out.contains(&g) {
            out.push(g);
        }
    }
    assert!(out.len() >= 8, "{preset}: {} convolutions", out.len());
    out
}

#[test]
fn every_kernel_family_matches_the_reference_in_every_pass() {
    let families = families();
    assert!(families.contains(&ConvKernels::Tiled) && families.contains(&ConvKernels::TiledLarge));
    assert!(
        geometries()
            .iter()
            .any(|g| conv2d::weight_grad_splits(g) > 1),
        "a weight gradient that splits K"
    );
    for kernels in families {
        for g in geometries() {
            check(kernels, &g);
        }
    }
}

/// Every family the adapter runs, the in-order subgroup GEMM on its own tile and on one of 4
/// rows (narrower than lavapipe's 8-lane subgroups, as its 16 rows are on 32- and 64-lane GPUs).
fn families() -> Vec<ConvKernels> {
    let gpu = gpu();
    [
        ConvKernels::Tiled,
        ConvKernels::TiledLarge,
        ConvKernels::Subgroup,
        ConvKernels::SubgroupInOrder(Tile::in_order()),
        ConvKernels::SubgroupInOrder(Tile { rows: 4, col4: 1 }),
    ]
    .into_iter()
    .filter(|k| k.available(&gpu))
    .collect()
}

/// The kernels the adapter picks (`ConvKernels::choose`, pass by pass) at every layer of the
/// presets that train on small images, at their real batch sizes: tiny (16), quick (128) on
/// 1 x 28 x 28 and small (256) on 3 x 32 x 32. The families it picks for no pass run the same
/// layers at batch 16 (on a software adapter the tiled GEMMs are slow; their grid grows with
/// the batch, their code path does not).
#[test]
fn every_layer_of_the_small_image_presets_at_their_batch() {
    let gpu = gpu();
    let passes = [ConvPass::Forward, ConvPass::GradInput, ConvPass::GradWeight];
    for (preset, channels, side) in [("tiny", 1, 28), ("quick", 1, 28), ("small", 3, 32)] {
        for g in preset_layers(preset, channels, side) {
            let chosen = |pass| {
                let splits = match pass {
                    ConvPass::GradWeight => conv2d::weight_grad_splits(&g),
                    _ => 1,
                };
                ConvKernels::choose(&gpu, pass, &g, splits)
            };
            check_passes(chosen, &g);
            for other in families()
                .into_iter()
                .filter(|&k| passes.iter().all(|&pass| chosen(pass) != k))
            {
                check(
                    other,
                    &ConvGeometry {
                        batch: g.batch.min(16),
                        ..g
                    },
                );
            }
        }
    }
}

/// Seeded random geometries: odd sides, every kernel size and stride the encoders use and
/// more, channel counts across tile edges, long weight gradients that split K into chunks
/// that do not divide it.
#[test]
fn a_seeded_sweep_of_geometries() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut split = 0;
    for _ in 0..36 {
        let k = [1, 3, 3, 5, 7][rng.random_range(0..5)];
        let pad = rng.random_range(0..=k / 2);
        let side = |rng: &mut ChaCha8Rng| rng.random_range((k - 2 * pad).max(1)..=40);
        let g = ConvGeometry {
            batch: rng.random_range(1..=6),
            ci: rng.random_range(1..=40),
            h: side(&mut rng),
            w: side(&mut rng),
            co: rng.random_range(1..=72),
            kh: k,
            kw: k,
            stride: rng.random_range(1..=3),
            pad,
        };
        split += usize::from(conv2d::weight_grad_splits(&g) > 1);
        for kernels in families() {
            check(kernels, &g);
        }
    }
    // Long weight gradients: K chunks of at most MAX_WEIGHT_GRAD_CHUNK, and a last chunk shorter.
    // (5, 28): the row kernels' weight gradient, its chunks not whole runs of 4 pixels.
    for (batch, side) in [(5, 31), (9, 23), (3, 57), (5, 28)] {
        let g = ConvGeometry {
            batch,
            ci: 3,
            h: side,
            w: side,
            co: 5,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
        };
        let k = batch * side * side;
        assert!(k % conv2d::weight_grad_splits(&g) != 0 || k > conv2d::MAX_WEIGHT_GRAD_CHUNK);
        split += 1;
        for kernels in families() {
            check(kernels, &g);
        }
    }
    assert!(split >= 3, "the sweep splits K");
}

/// The tiled families and the in-order subgroup GEMM are the candidates a hardware GPU times
/// for every pass (`ConvKernels::candidates`, `Gpu::fastest`): they must compute the same bits,
/// so that the choice, which timing noise can flip between runs, never changes what a run
/// computes. At every geometry of `geometries` and every layer of the small-image presets
/// (batch 8: the code path does not depend on it).
#[test]
fn the_tuning_candidates_agree_bit_for_bit() {
    let mut layers = geometries();
    for (preset, channels, side) in [("quick", 1, 28), ("small", 3, 32)] {
        layers.extend(
            preset_layers(preset, channels, side)
                .into_iter()
                .map(|g| ConvGeometry { batch: 8, ..g }),
        );
    }
    let candidates: Vec<ConvKernels> = families()
        .into_iter()
        .filter(|k| *k != ConvKernels::Subgroup)
        .collect();
    assert!(candidates.len() >= 2);
    for g in &layers {
        let operands = Operands::new(g);
        for pass in PASSES {
            let tiled = operands.run(ConvKernels::Tiled, pass, g);
            for other in candidates.iter().skip(1) {
                let got = operands.run(*other, pass, g);
                let differ = tiled
                    .iter()
                    .zip(&got)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                let what = format!("{other:?} against Tiled, {pass:?} {g:?}");
                assert_eq!(differ, 0, "{what}: {differ} of {} differ", tiled.len());
            }
        }
    }
}

/// With tuning on, `conv2d::fastest` times each pass's candidates once per geometry and keeps
/// one of them; with it off, the first runs untimed.
#[test]
fn tuning_times_each_pass_once() {
    let gpu = byol_wgpu::gpu::Gpu::from_env().unwrap();
    let candidates = [ConvKernels::Tiled, ConvKernels::TiledLarge];
    let g = geometry(2, 9, (10, 10), 12, 3, 2, 1);
    let operands = Operands::new(&g);
    for (i, pass) in PASSES.into_iter().enumerate() {
        let (a, b, len) = operands.of(pass, &g);
        let out = buffer(len, None);
        let splits = Operands::splits(pass, &g);
        let choose = || conv2d::fastest(&gpu, &candidates, pass, &g, splits, (a, b, &out)).unwrap();
        gpu.set_kernel_tuning(false);
        assert_eq!(choose(), ConvKernels::Tiled);
        assert_eq!(gpu.tuned_problems(), i);
        gpu.set_kernel_tuning(true);
        let chosen = choose();
        assert!(candidates.contains(&chosen));
        assert_eq!(gpu.tuned_problems(), i + 1);
        assert_eq!(choose(), chosen);
        assert_eq!(gpu.tuned_problems(), i + 1, "{pass:?} timed again");
    }
}
