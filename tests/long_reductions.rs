//! Long reductions keep their rounding error small however long they are: batch-norm
//! statistics over N*H*W, sums over an axis, the squared norms of LARS and the weight gradient
//! of a convolution over N*Ho*Wo, each over 100k+ terms against an f64 sum. The terms are all
//! positive and alike, the case where a plain running sum in f32 drifts most (its error grows
//! with n: 4e-5 relative for a lane's run of 4096 terms of 0.1).

mod common;

use byol_wgpu::graph::{Executable, Graph, TensorId};
use byol_wgpu::ops::{numel, ChannelMoments, ChannelSum, Conv2d, ConvGeometry, SquaredNorms};
use common::gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` copies of 0.1: every addition of a running sum rounds the same way, so its errors
/// add up instead of cancelling.
fn tenths(len: usize) -> Vec<f32> {
    vec![0.1; len]
}

/// Seeded values in [0.1, 0.101).
fn near_tenth(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| 0.1 + 1e-3 * rng.random::<f32>()).collect()
}

/// Runs `build` on the device with `inputs` and returns its output.
fn run(
    shapes: &[&[usize]],
    data: &[&[f32]],
    build: impl Fn(&mut Graph, &[TensorId]) -> TensorId,
) -> Vec<f32> {
    let mut g = Graph::new();
    let xs: Vec<TensorId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("x{i}"), s))
        .collect();
    let y = build(&mut g, &xs);
    let exe = Executable::new(&gpu(), &g, &[y]).unwrap();
    let feeds: Vec<(TensorId, &[f32])> = xs.iter().zip(data).map(|(&x, &d)| (x, d)).collect();
    exe.run(&feeds).unwrap().remove(0)
}

fn assert_relative(what: &str, got: f32, want: f64, tol: f64) {
    let rel = (f64::from(got) - want).abs() / want.abs();
    assert!(
        rel <= tol,
        "{what}: {got} against {want}, relative error {rel:.2e} (allowed {tol:.0e})"
    );
}

/// Relative error allowed for the cascaded sums: about 16 f32 roundings (measured on
/// llvmpipe: 3e-8 to 1.5e-7; a plain running sum per lane: 1e-5 to 4e-5).
const TOL: f64 = 1e-6;

/// The weight gradient sums each chunk of at most MAX_WEIGHT_GRAD_CHUNK (2048) products in a
/// plain running sum: measured 2.5e-6 here, 9.4e-6 with the former chunks of 8192.
const WEIGHT_GRAD_TOL: f64 = 5e-6;

#[test]
fn batch_norm_statistics_over_a_million_elements_per_channel() {
    // Two channels of 16 x 256 x 256 elements: each reduction lane runs over 1024 vec4 (the
    // vec4 kernel); with 255 x 257 planes, over 4080 scalars (the scalar kernel).
    for (h, w) in [(256, 256), (255, 257)] {
        let shape = [16, 2, h, w];
        let x = tenths(numel(&shape));
        let got = run(&[&shape], &[&x], |g, xs| {
            g.apply(ChannelSum { scale: 1.0 }, &[xs[0]])
        });
        let plane = h * w;
        for c in 0..2 {
            let want: f64 = (0..16)
                .flat_map(|n| x[(n * 2 + c) * plane..(n * 2 + c + 1) * plane].iter())
                .map(|&v| f64::from(v))
                .sum();
            assert_relative(&format!("{h}x{w}: channel {c} sum"), got[c], want, TOL);
        }
        // The one-pass mean and variance of training, on values near 0.1 with a spread of
        // 3e-4: far from zero against their spread, where a variance from the sums of x and x^2
        // would keep no digit (measured here: 3e-8 to 1.4e-7 relative).
        let x = near_tenth(numel(&shape), 5);
        let got = run(&[&shape], &[&x], |g, xs| g.apply(ChannelMoments, &[xs[0]]));
        for c in 0..2 {
            let values: Vec<f64> = (0..16)
                .flat_map(|n| x[(n * 2 + c) * plane..(n * 2 + c + 1) * plane].iter())
                .map(|&v| f64::from(v))
                .collect();
            let m = values.len() as f64;
            let mean = values.iter().sum::<f64>() / m;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
            assert_relative(&format!("{h}x{w}: channel {c} mean"), got[c], mean, TOL);
            assert_relative(
                &format!("{h}x{w}: channel {c} variance"),
                got[2 + c],
                var,
                TOL,
            );
        }
    }
}

#[test]
fn sums_over_a_long_axis() {
    // 300k terms for each of 3 outputs (one workgroup per output), and 120k for each of 64
    // (one invocation per output).
    for (shape, axis) in [([1usize, 300_000, 3], 1usize), ([120_000, 64, 1], 0)] {
        let x = tenths(numel(&shape));
        let got = run(&[&shape], &[&x], |g, xs| g.sum(xs[0], axis));
        let (mid, inner) = (shape[axis], shape[2] * if axis == 0 { shape[1] } else { 1 });
        for o in [0, inner - 1] {
            let want: f64 = (0..mid).map(|m| f64::from(x[m * inner + o])).sum();
            assert_relative(
                &format!("{shape:?} sum over axis {axis}, output {o}"),
                got[o],
                want,
                TOL,
            );
        }
    }
}

#[test]
fn lars_norms_of_a_large_tensor() {
    let n = 2_000_000;
    let (w, gr) = (tenths(n), near_tenth(n, 4));
    let got = run(&[&[n], &[n]], &[&w, &gr], |g, xs| {
        g.apply(SquaredNorms { weight_decay: 0.5 }, &[xs[0], xs[1]])
    });
    let sq = |f: &dyn Fn(usize) -> f64| (0..n).map(|i| f(i) * f(i)).sum::<f64>();
    assert_relative("|w|^2", got[0], sq(&|i| f64::from(w[i])), TOL);
    assert_relative(
        "|g + wd w|^2",
        got[1],
        sq(&|i| f64::from(gr[i]) + 0.5 * f64::from(w[i])),
        TOL,
    );
    assert_relative("|g|^2", got[2], sq(&|i| f64::from(gr[i])), TOL);
}

#[test]
fn a_weight_gradient_over_a_quarter_million_output_pixels() {
    // The small preset's stem at its batch: K = 256 x 32 x 32 = 262,144 products per weight.
    let geometry = ConvGeometry {
        batch: 256,
        ci: 1,
        h: 32,
        w: 32,
        co: 4,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    let x_shape = [256, 1, 32, 32];
    let w_shape = [4, 1, 3, 3];
    let x = tenths(numel(&x_shape));
    let w = near_tenth(numel(&w_shape), 6);
    // d(sum y)/dw: for each weight, the sum of the inputs its tap reads.
    let got = run(&[&x_shape, &w_shape], &[&x, &w], |g, xs| {
        let y = g.apply(Conv2d { stride: 1, pad: 1 }, &[xs[0], xs[1]]);
        let flat = g.reshape(y, &[256 * 4 * 32 * 32]);
        let loss = g.sum(flat, 0);
        g.grad(loss, &[xs[1]]).unwrap()[0]
    });
    for (ky, kx) in [(0, 0), (1, 1), (2, 1)] {
        let mut want = 0.0;
        for n in 0..256 {
            for oy in 0..32usize {
                for ox in 0..32usize {
                    let (y, xx) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                    if y < 32 && xx < 32 {
                        want += f64::from(x[(n * 32 + y) * 32 + xx]);
                    }
                }
            }
        }
        for co in 0..4 {
            assert_relative(
                &format!("dw[{co}, 0, {ky}, {kx}]"),
                got[co * 9 + ky * 3 + kx],
                want,
                WEIGHT_GRAD_TOL,
            );
        }
    }
    let splits = byol_wgpu::ops::conv2d::weight_grad_splits(&geometry);
    assert!(262_144usize.div_ceil(splits) <= byol_wgpu::ops::conv2d::MAX_WEIGHT_GRAD_CHUNK);
}
