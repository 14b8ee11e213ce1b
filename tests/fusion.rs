//! The fused batch-norm kernels against the unfused graph they replace, at the activation shapes
//! the presets train: batch norm + ReLU and batch norm + residual add + ReLU, forward and every
//! gradient, on the GPU. Each op is also checked against its f64 reference in tests/ops.rs at
//! small shapes; here the question is whether fusing changes anything at the real ones (the
//! vec4 kernels where S is a multiple of 4, the scalar ones at 7x7 and [N, C]).

mod common;

use byol_wgpu::graph::{Executable, Graph, TensorId};
use byol_wgpu::ops::{batch_statistics, numel, BnAct, BnApply};
use common::{assert_close, gpu, random};

/// y = act(batch_norm(x)) with batch statistics, and the scalar sum(y * w); inputs
/// (x, gamma, beta, w) and the residual last for `BnAct::AddRelu`. `fused`: one `BnApply` with
/// `act`, or the transform followed by the add and ReLU ops.
fn build(shape: &[usize], act: BnAct, fused: bool) -> (Graph, Vec<TensorId>, Vec<TensorId>) {
    let mut g = Graph::new();
    let c = shape[1];
    let x = g.input("x", shape);
    let gamma = g.input("gamma", &[c]);
    let beta = g.input("beta", &[c]);
    let w = g.input("w", shape);
    let mut inputs = vec![x, gamma, beta];
    if act == BnAct::AddRelu {
        inputs.push(g.input("r", shape));
    }
    let (mean, var) = batch_statistics(&mut g, x);
    let bn_inputs = [&[x, mean, var, gamma, beta][..], &inputs[3..]].concat();
    let y = if fused {
        let bn = BnApply {
            eps: 1e-5,
            batch_stats: true,
            act,
        };
        g.apply(bn, &bn_inputs)
    } else {
        let z = g.apply(BnApply::new(1e-5, true), &bn_inputs[..5]);
        let z = match act {
            BnAct::AddRelu => g.add(z, inputs[3]),
            _ => z,
        };
        match act {
            BnAct::Identity => z,
            _ => g.relu(z),
        }
    };
    let weighted = g.mul(y, w);
    let flat = g.reshape(weighted, &[numel(shape)]);
    let loss = g.sum(flat, 0);
    let grads = g.grad(loss, &inputs).unwrap();
    inputs.insert(3, w);
    let outputs = std::iter::once(y).chain(grads).collect();
    (g, inputs, outputs)
}

fn run(shape: &[usize], act: BnAct, fused: bool) -> Vec<Vec<f32>> {
    let (g, inputs, outputs) = build(shape, act, fused);
    let data: Vec<Vec<f32>> = inputs
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let v = random(numel(g.shape(t)), 40 + i as u64);
            // gamma away from zero, as trained networks have it.
            if i == 1 {
                v.iter().map(|g| 1.0 + 0.5 * g).collect()
            } else {
                v
            }
        })
        .collect();
    let feeds: Vec<(TensorId, &[f32])> = inputs
        .iter()
        .zip(&data)
        .map(|(&t, v)| (t, v.as_slice()))
        .collect();
    let exe = Executable::new(&gpu(), &g, &outputs).unwrap();
    exe.run(&feeds).unwrap()
}

fn compare(shape: &[usize], act: BnAct) {
    let fused = run(shape, act, true);
    let unfused = run(shape, act, false);
    let names = ["y", "dx", "d gamma", "d beta", "d residual"];
    for ((got, want), name) in fused.iter().zip(&unfused).zip(names) {
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        // Sums over a channel add in another order in the fused pass (vec4 lanes against
        // scalars): a few f32 roundings of the largest value, no more.
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let what = format!("{act:?} {shape:?} {name}");
        assert_close(&what, got, &want, 1e-5 * scale, 1e-4);
    }
}

/// The quick preset at batch 128 (ResNet-18 width 8 on 28x28, heads 512) and the small one at
/// batch 256 (width 64 on 32x32, heads 4096), stage by stage.
const QUICK: [&[usize]; 5] = [
    &[128, 8, 28, 28],
    &[128, 16, 14, 14],
    &[128, 32, 7, 7],
    &[128, 64, 4, 4],
    &[128, 512],
];
const SMALL: [&[usize]; 5] = [
    &[256, 64, 32, 32],
    &[256, 128, 16, 16],
    &[256, 256, 8, 8],
    &[256, 512, 4, 4],
    &[256, 4096],
];

#[test]
fn fused_batch_norm_relu_matches_the_unfused_graph_at_the_presets_shapes() {
    for shape in QUICK.iter().chain(&SMALL) {
        compare(shape, BnAct::Relu);
    }
}

#[test]
fn fused_residual_add_matches_the_unfused_graph_at_the_presets_shapes() {
    // The heads have no residual.
    for shape in QUICK[..4].iter().chain(&SMALL[..4]) {
        compare(shape, BnAct::AddRelu);
    }
}
