//! SGD with Nesterov momentum against its formula, and a softmax classifier trained with it on
//! the GPU following the f64 reference trajectory.

mod common;

use byol_wgpu::graph::{CpuRunner, Executable, Graph};
use byol_wgpu::nn::{Layers, Mode, ParamRole};
use byol_wgpu::ops::SoftmaxCrossEntropy;
use byol_wgpu::optim::Sgd;
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
