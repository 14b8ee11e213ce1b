//! Two BYOL steps against PyTorch (../shared/fixtures/byol_step.safetensors): the losses, every
//! online gradient, and every online and target tensor (parameters, batch-norm statistics)
//! after each step; and bit-identical repeats.

mod common;

use std::path::PathBuf;

use byol_wgpu::byol::{ByolNets, ByolStep};
use byol_wgpu::graph::{Executable, TensorId};
use byol_wgpu::nn::{load_safetensors, ParamRole, ResNetConfig, Weights};
use byol_wgpu::optim::{Lars, TauSchedule};
use common::{assert_close, gpu};

fn fixture() -> Weights {
    load_safetensors(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/byol_step.safetensors"),
    )
    .unwrap()
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
    };
    let (batch, size, in_ch): (usize, usize, usize) =
        (meta(w, "batch"), meta(w, "size"), meta(w, "in_ch"));
    let step = ByolStep::build(&nets, batch, [in_ch, size, size], &lars).unwrap();
    let outputs: Vec<TensorId> = std::iter::once(step.loss)
        .chain(step.grads.iter().copied())
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
