//! Every op's forward and backward on the GPU against the CPU f64 reference, and every
//! reference backward against central finite differences of the reference forward.
//!
//! Each case builds y = op(inputs), the scalar L = sum(y * r) for a random r, and its
//! gradients by autodiff; the GPU executor and the CPU interpreter run the same graph.

mod common;

use byol_wgpu::graph::{CpuRunner, Executable, Graph, TensorId};
use byol_wgpu::ops::{
    batch_statistics, numel, BnAct, BnApply, ChannelBroadcast, ChannelMoments, ChannelSum, Conv2d,
    HostTensor, MaxPool2d, Op, SoftmaxCrossEntropy,
};
use common::{assert_close, gpu, random};

type Build = fn(&mut Graph, &[TensorId]) -> TensorId;

struct Case {
    name: &'static str,
    inputs: Vec<Vec<usize>>,
    build: Build,
}

fn case(name: &'static str, inputs: &[&[usize]], build: Build) -> Case {
    Case {
        name,
        inputs: inputs.iter().map(|s| s.to_vec()).collect(),
        build,
    }
}

struct Built {
    graph: Graph,
    xs: Vec<TensorId>,
    r: TensorId,
    y: TensorId,
    loss: TensorId,
    grads: Vec<TensorId>,
}

fn build(c: &Case) -> Built {
    let mut g = Graph::new();
    let xs: Vec<TensorId> = c
        .inputs
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("x{i}"), s))
        .collect();
    let y = (c.build)(&mut g, &xs);
    let y_shape = g.shape(y).to_vec();
    let r = g.input("r", &y_shape);
    let weighted = g.mul(y, r);
    let flat = g.reshape(weighted, &[numel(&y_shape)]);
    let loss = g.sum(flat, 0);
    let grads = g.grad(loss, &xs).unwrap();
    Built {
        graph: g,
        xs,
        r,
        y,
        loss,
        grads,
    }
}

fn feeds(c: &Case, b: &Built, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    let mut feeds: Vec<(TensorId, Vec<f32>)> =
        b.xs.iter()
            .zip(&c.inputs)
            .enumerate()
            .map(|(i, (&x, s))| (x, random(numel(s), seed + i as u64)))
            .collect();
    feeds.push((b.r, random(numel(b.graph.shape(b.y)), seed + 100)));
    feeds
}

/// GPU forward and every gradient against the CPU interpreter of the same graph.
fn check_gpu(c: &Case) {
    let b = build(c);
    let outputs: Vec<TensorId> = std::iter::once(b.y)
        .chain(b.grads.iter().copied())
        .collect();
    let data = feeds(c, &b, 7);
    let inputs: Vec<(TensorId, &[f32])> = data.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let exe = Executable::new(&gpu(), &b.graph, &outputs).unwrap();
    let got = exe.run(&inputs).unwrap();
    let want = CpuRunner::new(&b.graph, &outputs).run(&inputs);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let what = if i == 0 {
            format!("{} forward", c.name)
        } else {
            format!("{} d/dx{}", c.name, i - 1)
        };
        assert_close(&what, g, &w.data, 2e-5, 2e-4);
    }
}

/// The reference gradients against central differences of the reference loss, in f64.
fn check_finite_differences(c: &Case) {
    let b = build(c);
    let data = feeds(c, &b, 11);
    let host: Vec<(TensorId, HostTensor)> = data
        .iter()
        .map(|(t, v)| (*t, HostTensor::from_f32(b.graph.shape(*t), v)))
        .collect();
    let analytic = CpuRunner::new(&b.graph, &b.grads).run_f64(&host);
    let mut loss_at = CpuRunner::new(&b.graph, &[b.loss]);
    let h = 1e-6;
    for (xi, grad) in analytic.iter().enumerate() {
        let n = grad.data.len();
        // Up to 24 elements spread over the tensor.
        for j in (0..n).step_by(n.div_ceil(24).max(1)) {
            let mut eval = |delta: f64| {
                let mut inputs = host.clone();
                inputs[xi].1.data[j] += delta;
                loss_at.run_f64(&inputs)[0].data[0]
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            let a = grad.data[j];
            assert!(
                (a - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "{}: d/dx{xi}[{j}] is {a} by the reference backward, {numeric} by finite differences",
                c.name
            );
        }
    }
}

/// Batch norm with batch statistics; inputs (x, gamma, beta). `batch_stats`: dx in one op, as
/// training builds it, or through the statistics' own gradients.
fn batch_norm_train(g: &mut Graph, x: &[TensorId], batch_stats: bool) -> TensorId {
    batch_norm_then(g, x, batch_stats, BnAct::Identity)
}

/// `batch_norm_train` followed by `act` in the same op; for `BnAct::AddRelu` the residual is x[3].
fn batch_norm_then(g: &mut Graph, x: &[TensorId], batch_stats: bool, act: BnAct) -> TensorId {
    let (mean, var) = if batch_stats {
        batch_statistics(g, x[0])
    } else {
        differentiable_statistics(g, x[0])
    };
    let bn = BnApply {
        eps: 1e-5,
        batch_stats,
        act,
    };
    let inputs = [&[x[0], mean, var, x[1], x[2]][..], &x[3..]].concat();
    g.apply(bn, &inputs)
}

/// The batch mean and variance of x's channels from ops that all have gradients (the mean of
/// the squared deviations), where `batch_statistics` has none: to check the fused batch-norm
/// gradient against the one through its statistics.
fn differentiable_statistics(g: &mut Graph, x: TensorId) -> (TensorId, TensorId) {
    let shape = g.shape(x).to_vec();
    let mean = g.apply(ChannelSum::mean_of(&shape), &[x]);
    let minus_mean = g.apply(
        ChannelBroadcast {
            shape: shape.clone(),
            scale: -1.0,
        },
        &[mean],
    );
    let deviation = g.add(x, minus_mean);
    let square = g.mul(deviation, deviation);
    let var = g.apply(ChannelSum::mean_of(&shape), &[square]);
    (mean, var)
}

fn cases() -> Vec<Case> {
    vec![
        case("matmul", &[&[37, 53], &[53, 29]], |g, x| {
            g.matmul(x[0], x[1])
        }),
        case("matmul vec4-aligned", &[&[36, 20], &[20, 44]], |g, x| {
            g.matmul(x[0], x[1])
        }),
        case("matmul tiny", &[&[3, 5], &[5, 2]], |g, x| {
            g.matmul(x[0], x[1])
        }),
        case("matmul A^T", &[&[53, 37], &[53, 29]], |g, x| {
            g.matmul_t(x[0], x[1], true, false)
        }),
        case("matmul B^T", &[&[37, 53], &[29, 53]], |g, x| {
            g.matmul_t(x[0], x[1], false, true)
        }),
        case("matmul A^T B^T", &[&[52, 36], &[28, 52]], |g, x| {
            g.matmul_t(x[0], x[1], true, true)
        }),
        case(
            "matmul multi-workgroup",
            &[&[130, 68], &[68, 132]],
            |g, x| g.matmul(x[0], x[1]),
        ),
        case("bias_add", &[&[7, 13], &[13]], |g, x| {
            g.bias_add(x[0], x[1])
        }),
        case("add", &[&[5, 9], &[5, 9]], |g, x| g.add(x[0], x[1])),
        case("mul", &[&[5, 9], &[5, 9]], |g, x| g.mul(x[0], x[1])),
        case("mul of a tensor by itself", &[&[5, 9]], |g, x| {
            g.mul(x[0], x[0])
        }),
        case("scale", &[&[17]], |g, x| g.scale(x[0], -2.5)),
        case("relu", &[&[6, 11]], |g, x| g.relu(x[0])),
        case("sum axis 0", &[&[3, 4, 5]], |g, x| g.sum(x[0], 0)),
        case("sum axis 1", &[&[3, 4, 5]], |g, x| g.sum(x[0], 1)),
        case("sum axis 2", &[&[3, 4, 5]], |g, x| g.sum(x[0], 2)),
        case("mean axis 1", &[&[3, 4, 5]], |g, x| g.mean(x[0], 1)),
        case("sum of a long vector", &[&[1000]], |g, x| g.sum(x[0], 0)),
        case("mean over a long axis", &[&[2, 700, 3]], |g, x| {
            g.mean(x[0], 1)
        }),
        case("l2_normalize", &[&[9, 70]], |g, x| g.l2_normalize(x[0])),
        case("l2_normalize short rows", &[&[4, 3]], |g, x| {
            g.l2_normalize(x[0])
        }),
        case("byol_loss", &[&[9, 70], &[9, 70]], |g, x| {
            g.byol_loss(x[0], x[1])
        }),
        case("byol_loss short rows", &[&[5, 3], &[5, 3]], |g, x| {
            g.byol_loss(x[0], x[1])
        }),
        case("softmax_cross_entropy", &[&[9, 70]], |g, x| {
            let onehot = (0..9 * 70)
                .map(|i| f32::from(i % 70 == (i / 70) * 7))
                .collect();
            let y = g.constant(&[9, 70], onehot);
            g.apply(SoftmaxCrossEntropy, &[x[0], y])
        }),
        case("softmax_cross_entropy soft targets", &[&[4, 3]], |g, x| {
            let y = g.constant(
                &[4, 3],
                vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.1, 0.1, 0.8],
            );
            g.apply(SoftmaxCrossEntropy, &[x[0], y])
        }),
        case(
            "conv2d 3x3 stride 1 pad 1",
            &[&[2, 3, 7, 6], &[5, 3, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 3x3 stride 2 pad 1",
            &[&[2, 4, 9, 8], &[6, 4, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 2, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 1x1 stride 2",
            &[&[3, 5, 7, 7], &[4, 5, 1, 1]],
            |g, x| g.apply(Conv2d { stride: 2, pad: 0 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 7x7 stride 2 pad 3",
            &[&[1, 3, 13, 11], &[4, 3, 7, 7]],
            |g, x| g.apply(Conv2d { stride: 2, pad: 3 }, &[x[0], x[1]]),
        ),
        // Each pass picks the smallest GEMM tile that covers it: these shapes take 16- and
        // 32-row tiles and fewer columns per lane, and the weight gradient computed by taps.
        case(
            "conv2d one input channel, more channels than taps",
            &[&[2, 1, 6, 5], &[12, 1, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 20 output channels",
            &[&[2, 3, 6, 5], &[20, 3, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        // Stride-1 passes with at most 16 channels on their output side (the forward pass of a
        // narrow layer, the input gradient of a stem) run a direct kernel on software
        // adapters: several workgroups of columns and rows, a wider kernel, no padding.
        case(
            "conv2d 3 channels, several workgroups",
            &[&[2, 3, 35, 15], &[4, 3, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 16 channels",
            &[&[1, 16, 19, 9], &[16, 16, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d 5x5 stride 1 pad 0",
            &[&[1, 2, 11, 13], &[3, 2, 5, 5]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 0 }, &[x[0], x[1]]),
        ),
        case(
            "conv2d many channels",
            &[&[2, 70, 5, 5], &[66, 70, 3, 3]],
            |g, x| g.apply(Conv2d { stride: 1, pad: 1 }, &[x[0], x[1]]),
        ),
        case(
            "batch norm, training, NCHW",
            &[&[3, 4, 5, 6], &[4], &[4]],
            |g, x| batch_norm_train(g, x, true),
        ),
        case(
            "batch norm, training, NC",
            &[&[7, 5], &[5], &[5]],
            |g, x| batch_norm_train(g, x, true),
        ),
        // More than 256 elements per channel: each reduction lane strides over several
        // images and positions.
        case(
            "batch norm, training, long channels",
            &[&[5, 3, 7, 11], &[3], &[3]],
            |g, x| batch_norm_train(g, x, true),
        ),
        case(
            "batch norm, training, NC, long channels",
            &[&[300, 3], &[3], &[3]],
            |g, x| batch_norm_train(g, x, true),
        ),
        case(
            "batch norm, training, through the statistics' gradients",
            &[&[3, 4, 5, 6], &[4], &[4]],
            |g, x| batch_norm_train(g, x, false),
        ),
        // The fused ReLU and residual add, on the scalar kernels (S not a multiple of 4: the
        // plane, and [N, C]) and on the vec4 ones (S = 16 and S = 96, over 256 vec4 a channel).
        case(
            "batch norm + relu, training, NCHW",
            &[&[3, 4, 5, 6], &[4], &[4]],
            |g, x| batch_norm_then(g, x, true, BnAct::Relu),
        ),
        case(
            "batch norm + relu, training, NC",
            &[&[300, 3], &[3], &[3]],
            |g, x| batch_norm_then(g, x, true, BnAct::Relu),
        ),
        case(
            "batch norm + relu, training, vec4",
            &[&[3, 4, 4, 4], &[4], &[4]],
            |g, x| batch_norm_then(g, x, true, BnAct::Relu),
        ),
        // Planes of 2, 5 and 11 vec4: the pointwise vec4 kernels take runs of 2, 5 and 1.
        case(
            "batch norm + relu, training, vec4, runs of 2",
            &[&[3, 5, 2, 4], &[5], &[5]],
            |g, x| batch_norm_then(g, x, true, BnAct::Relu),
        ),
        case(
            "batch norm + add + relu, training, vec4, runs of 5",
            &[&[3, 4, 4, 5], &[4], &[4], &[3, 4, 4, 5]],
            |g, x| batch_norm_then(g, x, true, BnAct::AddRelu),
        ),
        case(
            "batch norm + relu, training, vec4, runs of 1",
            &[&[2, 3, 4, 11], &[3], &[3]],
            |g, x| batch_norm_then(g, x, true, BnAct::Relu),
        ),
        case(
            "batch norm + add + relu, training, NCHW",
            &[&[3, 4, 5, 3], &[4], &[4], &[3, 4, 5, 3]],
            |g, x| batch_norm_then(g, x, true, BnAct::AddRelu),
        ),
        case(
            "batch norm + add + relu, training, vec4, long channels",
            &[&[11, 3, 8, 12], &[3], &[3], &[11, 3, 8, 12]],
            |g, x| batch_norm_then(g, x, true, BnAct::AddRelu),
        ),
        case(
            "batch norm, training, vec4, long channels",
            &[&[11, 3, 8, 12], &[3], &[3]],
            |g, x| batch_norm_train(g, x, true),
        ),
        case(
            "batch norm + relu, through the statistics' gradients",
            &[&[3, 4, 2, 2], &[4], &[4]],
            |g, x| batch_norm_then(g, x, false, BnAct::Relu),
        ),
        case(
            "batch norm + add + relu, through the statistics' gradients",
            &[&[3, 4, 5, 3], &[4], &[4], &[3, 4, 5, 3]],
            |g, x| batch_norm_then(g, x, false, BnAct::AddRelu),
        ),
        case(
            "batch norm, inference",
            &[&[3, 4, 2, 3], &[4], &[4], &[4], &[4]],
            |g, x| {
                // A variance must be positive: use v^2 + 0.5.
                let sq = g.mul(x[2], x[2]);
                let half = g.constant(&[4], vec![0.5; 4]);
                let var = g.add(sq, half);
                g.apply(BnApply::new(1e-5, false), &[x[0], x[1], var, x[3], x[4]])
            },
        ),
        case("max pool 3x3 stride 2 pad 1", &[&[2, 3, 9, 8]], |g, x| {
            g.apply(
                MaxPool2d {
                    k: 3,
                    stride: 2,
                    pad: 1,
                },
                &[x[0]],
            )
        }),
        case("max pool on a small image", &[&[1, 2, 3, 2]], |g, x| {
            g.apply(
                MaxPool2d {
                    k: 3,
                    stride: 2,
                    pad: 1,
                },
                &[x[0]],
            )
        }),
        case("global average pool", &[&[2, 3, 4, 5]], |g, x| {
            let flat = g.reshape(x[0], &[2, 3, 20]);
            g.mean(flat, 2)
        }),
        case("reshape", &[&[4, 6]], |g, x| {
            let r = g.reshape(x[0], &[3, 8]);
            g.relu(r)
        }),
        case(
            "a two-layer chain",
            &[&[8, 12], &[12, 16], &[16]],
            |g, x| {
                let h = g.matmul(x[0], x[1]);
                let h = g.bias_add(h, x[2]);
                let h = g.relu(h);
                g.l2_normalize(h)
            },
        ),
    ]
}

#[test]
fn gpu_forward_and_backward_match_the_reference() {
    for c in cases() {
        check_gpu(&c);
    }
}

#[test]
fn reference_backward_matches_finite_differences() {
    for c in cases() {
        check_finite_differences(&c);
    }
}

#[test]
fn stop_gradient_blocks_the_gradient() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 3]);
    let stopped = g.stop_gradient(x);
    let y = g.mul(x, stopped);
    let flat = g.reshape(y, &[12]);
    let loss = g.sum(flat, 0);
    let dx = g.grad(loss, &[x]).unwrap()[0];
    let xs = random(12, 3);
    let exe = Executable::new(&gpu(), &g, &[dx]).unwrap();
    let got = exe.run(&[(x, &xs)]).unwrap();
    // d/dx sum(x * sg(x)) = sg(x) = x: only the unstopped factor contributes.
    let want: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
    assert_close("d/dx x*sg(x)", &got[0], &want, 1e-6, 1e-6);
}

#[test]
fn the_gradient_of_an_unused_tensor_is_zero() {
    let mut g = Graph::new();
    let x = g.input("x", &[3]);
    let unused = g.input("unused", &[2]);
    let loss = g.sum(x, 0);
    let grads = g.grad(loss, &[x, unused]).unwrap();
    let exe = Executable::new(&gpu(), &g, &grads).unwrap();
    let got = exe
        .run(&[(x, &[1.0, 2.0, 3.0]), (unused, &[5.0, 6.0])])
        .unwrap();
    assert_eq!(got[0], vec![1.0; 3]);
    assert_eq!(got[1], vec![0.0; 2]);
}

#[test]
fn gradients_need_a_scalar_loss() {
    let mut g = Graph::new();
    let x = g.input("x", &[3]);
    let y = g.relu(x);
    let err = g.grad(y, &[x]).unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
}

#[test]
fn mismatched_shapes_are_an_error_not_a_panic_in_try_apply() {
    let mut g = Graph::new();
    let a = g.input("a", &[3, 4]);
    let b = g.input("b", &[5, 6]);
    let err = g
        .try_apply(byol_wgpu::ops::MatMul::default(), &[a, b])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 4]") && err.contains("[5, 6]"), "{err}");
}

#[test]
fn long_weight_gradients_split_k() {
    let g = byol_wgpu::ops::ConvGeometry {
        batch: 2,
        ci: 3,
        h: 32,
        w: 32,
        co: 4,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    assert_eq!(byol_wgpu::ops::conv2d::weight_grad_splits(&g), 2);
    let short = byol_wgpu::ops::ConvGeometry { h: 8, w: 8, ..g };
    assert_eq!(byol_wgpu::ops::conv2d::weight_grad_splits(&short), 1);
}

/// The one-pass batch statistics on each of their kernels (vec4 runs, scalar runs across odd
/// planes, [N, C] columns), with channels of more than 256 runs, against the f64 reference:
/// on values centred on 0, and on values offset by 1000 with a spread of 1, where a variance
/// from the difference of the sum of squares and the squared sum would lose every digit.
#[test]
fn batch_statistics_match_the_reference_on_each_kernel_even_far_from_zero() {
    let gpu = gpu();
    for shape in [[7usize, 3, 16, 12], [5, 3, 11, 13], [300, 6, 1, 1]] {
        let shape: Vec<usize> = if shape[2] == 1 {
            shape[..2].to_vec()
        } else {
            shape.to_vec()
        };
        for offset in [0.0f32, 1000.0] {
            let x: Vec<f32> = random(numel(&shape), 3)
                .iter()
                .enumerate()
                .map(|(i, v)| offset + v + (i % 5) as f32 * 0.1)
                .collect();
            let mut g = Graph::new();
            let input = g.input("x", &shape);
            let moments = g.apply(ChannelMoments, &[input]);
            let exe = Executable::new(&gpu, &g, &[moments]).unwrap();
            let got = exe.run(&[(input, x.as_slice())]).unwrap();
            let want = ChannelMoments.reference(&[&HostTensor::from_f32(&shape, &x)]);
            let c = shape[1];
            let what = format!("moments of {shape:?} offset by {offset}");
            // The mean to the rounding of the offset; the variance (about 0.34) to 1e-5 of itself.
            assert_close(
                &format!("{what}: mean"),
                &got[0][..c],
                &want.data[..c],
                1e-6 * f64::from(offset).max(1.0),
                1e-6,
            );
            assert_close(
                &format!("{what}: variance"),
                &got[0][c..],
                &want.data[c..],
                0.0,
                1e-5,
            );
        }
    }
}
