//! Two BYOL steps against PyTorch (tests/fixtures/byol_step.safetensors): the losses, every
//! online gradient, and every online and target tensor (parameters, batch-norm statistics)
//! after each step; and bit-identical repeats.

mod common;

use byol_wgpu::byol::{ByolNets, ByolStep, StepOptions};
use byol_wgpu::graph::{Executable, TensorId};
use byol_wgpu::nn::{load_safetensors, ParamRole, ResNetConfig, Weights};
use byol_wgpu::optim::{Lars, TauSchedule};
use common::{assert_close, gpu};

fn fixture() -> Weights {
    load_safetensors(&common::repo().join("tests/fixtures/byol_step.safetensors")).unwrap()
}

fn meta<T: serde::de::DeserializeOwned>(w: &Weights, key: &str) -> T {
    serde_json::from_str(&w.metadata[key]).unwrap()
}

fn expect(w: &Weights, name: &str) -> Vec<f64> {
    w.require(name)
        .unwrap()
        .1
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

struct Setup {
    step: ByolStep,
    exe: Executable,
    lr: f32,
    tau: TauSchedule,
}

fn setup(w: &Weights) -> Setup {
    setup_on(&gpu(), w)
}

fn setup_on(gpu: &std::sync::Arc<byol_wgpu::gpu::Gpu>, w: &Weights) -> Setup {
    setup_accumulating(gpu, w, 1)
}

fn setup_accumulating(
    gpu: &std::sync::Arc<byol_wgpu::gpu::Gpu>,
    w: &Weights,
    accumulate: usize,
) -> Setup {
    let nets = ByolNets {
        encoder: ResNetConfig::infer(w, "online.encoder.").unwrap(),
        hidden: meta(w, "hidden"),
        projection: meta(w, "proj"),
        predictor: true,
    };
    let lars = Lars {
        momentum: meta(w, "momentum"),
        weight_decay: meta(w, "wd"),
        eta: meta(w, "eta"),
        clip: false,
    };
    let (batch, size, in_ch): (usize, usize, usize) =
        (meta(w, "batch"), meta(w, "size"), meta(w, "in_ch"));
    let options = StepOptions {
        accumulate,
        probe_classes: None,
    };
    let step = ByolStep::build(&nets, batch, [in_ch, size, size], &lars, options).unwrap();
    let outputs: Vec<TensorId> = std::iter::once(step.loss)
        .chain(step.grads.iter().copied())
        .chain(step.norms.iter().copied())
        .chain([step.collapse_std])
        .collect();
    let exe = Executable::new(gpu, &step.graph, &outputs).unwrap();
    for p in &step.params {
        let data = match p.role {
            ParamRole::OptimizerState => vec![0.0; p.shape.iter().product()],
            _ => w.require(&p.name).unwrap().1.to_vec(),
        };
        exe.write(p.id, &data).unwrap();
    }
    let tau = TauSchedule {
        base: meta(w, "tau_base"),
        total_steps: meta(w, "total_steps"),
    };
    Setup {
        step,
        exe,
        lr: meta(w, "lr"),
        tau,
    }
}

fn run(s: &Setup, w: &Weights, k: u64) -> Vec<Vec<f32>> {
    let schedule = [s.lr, s.tau.at(k) as f32];
    let views = [
        (s.step.view1, w.data("view1").unwrap()),
        (s.step.view2, w.data("view2").unwrap()),
        (s.step.schedule, &schedule[..]),
    ];
    s.exe.run(&views).unwrap()
}

#[test]
fn two_steps_match_pytorch() {
    let w = fixture();
    let s = setup(&w);
    let trainable: Vec<_> = s
        .step
        .params
        .iter()
        .filter(|p| p.name.starts_with("online.") && p.role != ParamRole::RunningStat)
        .collect();
    for k in 1..=2u64 {
        let tau = s.tau.at(k - 1);
        assert!(
            (tau - f64::from(w.data(&format!("tau{k}")).unwrap()[0])).abs() < 1e-7,
            "tau of step {k}"
        );
        let out = run(&s, &w, k - 1);
        assert_close(
            &format!("loss{k}"),
            &out[0],
            &expect(&w, &format!("loss{k}")),
            1e-4,
            1e-3,
        );
        for (p, got) in trainable.iter().zip(&out[1..]) {
            let name = format!("grad{k}.{}", p.name);
            assert_close(&name, got, &expect(&w, &name), 1e-4, 1e-3);
        }
        for p in s
            .step
            .params
            .iter()
            .filter(|p| p.role != ParamRole::OptimizerState)
        {
            let name = format!("after{k}.{}", p.name);
            assert_close(
                &name,
                &s.exe.read(p.id).unwrap(),
                &expect(&w, &name),
                1e-4,
                1e-3,
            );
        }
    }
}

#[test]
fn repeated_runs_are_bit_identical() {
    let w = fixture();
    let losses =
        |s: &Setup| -> Vec<u32> { (0..3).map(|k| run(s, &w, k)[0][0].to_bits()).collect() };
    let first = losses(&setup(&w));
    let second = losses(&setup(&w));
    assert_eq!(first, second);
}

#[test]
fn steps_allocate_nothing_after_the_first() {
    // A device of its own: its byte counter sees no other test's buffers.
    let gpu = byol_wgpu::gpu::Gpu::from_env().unwrap();
    let w = fixture();
    let s = setup_on(&gpu, &w);
    run(&s, &w, 0);
    let before = gpu.allocated_bytes();
    run(&s, &w, 1);
    run(&s, &w, 2);
    assert_eq!(gpu.allocated_bytes(), before);
}

/// Runs micro-batches (view1, view2) of one accumulating optimiser step; returns the outputs
/// of the last.
fn accumulate_step(s: &Setup, micro: &[(&[f32], &[f32])], k: u64) -> Vec<Vec<f32>> {
    let schedule = [s.lr, s.tau.at(k) as f32];
    s.exe.write(s.step.schedule, &schedule).unwrap();
    let mut last = None;
    for (i, (v1, v2)) in micro.iter().enumerate() {
        s.exe.write(s.step.view1, v1).unwrap();
        s.exe.write(s.step.view2, v2).unwrap();
        let phases = if i + 1 == micro.len() { 0..2 } else { 0..1 };
        last = Some(s.exe.submit(&[], phases).unwrap());
        if i + 1 < micro.len() {
            s.exe.collect(last.take().unwrap()).unwrap();
        }
    }
    s.exe.collect(last.unwrap()).unwrap()
}

#[test]
fn accumulating_the_same_batch_twice_is_one_step() {
    let w = fixture();
    let s = setup_accumulating(&gpu(), &w, 2);
    assert_eq!(s.exe.phase_count(), 2);
    let (v1, v2) = (w.data("view1").unwrap(), w.data("view2").unwrap());
    accumulate_step(&s, &[(v1, v2), (v1, v2)], 0);
    // Running statistics were updated twice; every trained tensor matches one plain step.
    for p in s
        .step
        .params
        .iter()
        .filter(|p| matches!(p.role, ParamRole::Weight | ParamRole::Bias))
    {
        let name = format!("after1.{}", p.name);
        assert_close(
            &name,
            &s.exe.read(p.id).unwrap(),
            &expect(&w, &name),
            1e-4,
            1e-3,
        );
    }
}

#[test]
fn accumulated_gradients_are_the_mean_of_the_micro_batches() {
    let w = fixture();
    let (v1, v2) = (w.data("view1").unwrap(), w.data("view2").unwrap());
    let other: Vec<f32> = v1.iter().map(|v| -0.5 * v).collect();
    // Each micro-batch's gradients from a plain step on the initial weights.
    let grads = |a: &[f32], b: &[f32]| {
        let s = setup(&w);
        s.exe.write(s.step.view1, a).unwrap();
        s.exe.write(s.step.view2, b).unwrap();
        s.exe.write(s.step.schedule, &[s.lr, 0.99]).unwrap();
        let n = s.step.grads.len();
        s.exe.run(&[]).unwrap()[1..=n].to_vec()
    };
    let (ga, gb) = (grads(v1, v2), grads(&other, v2));
    let s = setup_accumulating(&gpu(), &w, 2);
    let out = accumulate_step(&s, &[(v1, v2), (&other, v2)], 0);
    let n = s.step.grads.len();
    for (i, (a, b)) in ga.iter().zip(&gb).enumerate() {
        let mean_sq: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((f64::from(*x) + f64::from(*y)) / 2.0).powi(2))
            .sum();
        let got = &out[1 + n + i];
        assert_close(
            &format!("|g|^2 of parameter {i}"),
            &got[2..3],
            &[mean_sq],
            1e-7,
            1e-3,
        );
    }
    // The collapse monitor of a healthy random network sits near 1/sqrt(d).
    let std = out[1 + 2 * n][0];
    assert!(std > 0.02 && std < 0.5, "collapse std {std}");
}
