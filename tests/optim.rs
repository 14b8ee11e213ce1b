//! SGD with Nesterov momentum and LARS (clipped or not) against their formulas, and a softmax
//! classifier trained with SGD on the GPU following the f64 reference trajectory.

mod common;

use byol_wgpu::graph::{CpuRunner, Executable, Graph};
use byol_wgpu::nn::{Layers, Mode, ParamRole};
use byol_wgpu::ops::SoftmaxCrossEntropy;
use byol_wgpu::optim::{Lars, Sgd};
use common::{assert_close, gpu, random};

#[test]
fn nesterov_steps_follow_the_formula() {
    // loss = sum(w * c): the gradient is c at every step.
    let mut g = Graph::new();
    let c = g.input("c", &[3]);
    let schedule = g.input("schedule", &[2]);
    let mut l = Layers::new(&mut g, Mode::Train, "");
    let w = l.param("w", &[3], ParamRole::Weight);
    let wc = l.graph.mul(w, c);
    let loss = l.graph.sum(wc, 0);
    let grads = l.graph.grad(loss, &[w]).unwrap();
    let params = vec![l.params[0].clone()];
    let sgd = Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.1,
    };
    sgd.append(&mut l, &params, &grads, schedule);
    let m = l.params[1].id;
    let exe = Executable::new(&gpu(), &g, &[loss]).unwrap();
    let (w0, cv, lr) = ([1.0f64, -2.0, 0.5], [0.3f64, 0.7, -1.1], 0.05f64);
    exe.write(w, &w0.map(|v| v as f32)).unwrap();
    exe.write(m, &[0.0; 3]).unwrap();
    exe.write(c, &cv.map(|v| v as f32)).unwrap();
    exe.write(schedule, &[lr as f32, 0.0]).unwrap();
    let (mut wr, mut mr) = (w0, [0.0f64; 3]);
    for _ in 0..3 {
        exe.run(&[]).unwrap();
        for i in 0..3 {
            let g = cv[i] + 0.1 * wr[i];
            mr[i] = 0.9 * mr[i] + g;
            wr[i] -= lr * (g + 0.9 * mr[i]);
        }
    }
    assert_close("w", &exe.read(w).unwrap(), &wr, 1e-6, 1e-5);
    assert_close("momentum", &exe.read(m).unwrap(), &mr, 1e-6, 1e-5);
}

/// Three LARS steps on loss = sum(w * c) + sum(b * c) (a weight w and an excluded bias b, whose
/// gradients are c) at learning rate `lr`, against the formula in f64: u = c + wd w, scaled by
/// eta |w| / |u|, with `clip` by min(eta |w| / |u| / lr, 1) (1 at lr 0); the bias steps by c.
fn lars_steps(clip: bool, lr: f64) {
    let (momentum, wd, eta) = (0.9, 1e-2, 0.02);
    let mut g = Graph::new();
    let c = g.input("c", &[3]);
    let schedule = g.input("schedule", &[2]);
    let mut l = Layers::new(&mut g, Mode::Train, "");
    let w = l.param("w", &[3], ParamRole::Weight);
    let b = l.param("b", &[3], ParamRole::Bias);
    let wc = l.graph.mul(w, c);
    let bc = l.graph.mul(b, c);
    let both = l.graph.add(wc, bc);
    let loss = l.graph.sum(both, 0);
    let grads = l.graph.grad(loss, &[w, b]).unwrap();
    let params = l.params.clone();
    let lars = Lars {
        momentum: momentum as f32,
        weight_decay: wd as f32,
        eta: eta as f32,
        clip,
    };
    lars.append(&mut l, &params, &grads, schedule);
    let (mw, mb) = (l.params[2].id, l.params[3].id);
    let exe = Executable::new(&gpu(), &g, &[loss]).unwrap();
    let (w0, b0, cv) = (
        [1.0f64, -2.0, 0.5],
        [0.2f64, 0.1, -0.4],
        [0.3f64, 0.7, -1.1],
    );
    exe.write(w, &w0.map(|v| v as f32)).unwrap();
    exe.write(b, &b0.map(|v| v as f32)).unwrap();
    exe.write(mw, &[0.0; 3]).unwrap();
    exe.write(mb, &[0.0; 3]).unwrap();
    exe.write(c, &cv.map(|v| v as f32)).unwrap();
    exe.write(schedule, &[lr as f32, 0.0]).unwrap();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (mut wr, mut br, mut mwr, mut mbr) = (w0, b0, [0.0f64; 3], [0.0f64; 3]);
    for _ in 0..3 {
        exe.run(&[]).unwrap();
        let u: Vec<f64> = (0..3).map(|i| cv[i] + wd * wr[i]).collect();
        let ratio = eta * norm(&wr) / norm(&u);
        let ratio = match (clip, lr > 0.0) {
            (false, _) => ratio,
            (true, true) => (ratio / lr).min(1.0),
            (true, false) => 1.0,
        };
        for i in 0..3 {
            mwr[i] = momentum * mwr[i] + u[i] * ratio;
            wr[i] -= lr * mwr[i];
            mbr[i] = momentum * mbr[i] + cv[i];
            br[i] -= lr * mbr[i];
        }
    }
    let what = format!("clip {clip}, lr {lr}");
    assert_close(
        &format!("w ({what})"),
        &exe.read(w).unwrap(),
        &wr,
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("b ({what})"),
        &exe.read(b).unwrap(),
        &br,
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("m ({what})"),
        &exe.read(mw).unwrap(),
        &mwr,
        1e-6,
        1e-5,
    );
}

#[test]
fn lars_steps_follow_the_formula() {
    // eta |w| / |u| is about 0.034 here: lr 0.5 leaves it below the cap, lr 0.01 clips it to 1.
    for clip in [false, true] {
        for lr in [0.5, 0.01, 0.0] {
            lars_steps(clip, lr);
        }
    }
}

#[test]
fn a_softmax_classifier_follows_the_reference_trajectory() {
    let (batch, dim, classes) = (32, 20, 5);
    let mut g = Graph::new();
    let x = g.input("x", &[batch, dim]);
    let y = g.input("y", &[batch, classes]);
    let schedule = g.input("schedule", &[2]);
    let mut l = Layers::new(&mut g, Mode::Train, "");
    let logits = l.linear("fc", x, classes, true);
    let per_sample = l.graph.apply(SoftmaxCrossEntropy, &[logits, y]);
    let loss = l.graph.mean(per_sample, 0);
    let params = l.params.clone();
    let ids: Vec<_> = params.iter().map(|p| p.id).collect();
    let grads = l.graph.grad(loss, &ids).unwrap();
    Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.0,
    }
    .append(&mut l, &params, &grads, schedule);
    let all = l.params.clone();
    let exe = Executable::new(&gpu(), &g, &[loss]).unwrap();
    let mut cpu = CpuRunner::new(&g, &[loss]);
    for (i, p) in all.iter().enumerate() {
        let v = if p.role == ParamRole::OptimizerState {
            vec![0.0; p.shape.iter().product()]
        } else {
            random(p.shape.iter().product(), 40 + i as u64)
        };
        exe.write(p.id, &v).unwrap();
        cpu.set_param(p.id, &v);
    }
    let xv = random(batch * dim, 1);
    let labels: Vec<f32> = (0..batch * classes)
        .map(|i| f32::from(i % classes == (i / classes) % classes))
        .collect();
    let feeds = [
        (x, &xv[..]),
        (y, &labels[..]),
        (schedule, &[0.2f32, 0.0][..]),
    ];
    let mut losses = Vec::new();
    for _ in 0..30 {
        let got = exe.run(&feeds).unwrap()[0][0];
        let want = cpu.run(&feeds)[0].data[0];
        assert_close("loss", &[got], &[want], 1e-4, 1e-4);
        losses.push(got);
    }
    assert!(losses[29] < 0.5 * losses[0], "it learns: {losses:?}");
    for p in &all {
        assert_close(
            &p.name,
            &exe.read(p.id).unwrap(),
            &cpu.param(p.id).data,
            1e-4,
            1e-3,
        );
    }
}
