//! Initial weights: torchvision's distributions, the target's start, reproducibility.

use byol_wgpu::byol::{ByolNets, ByolStep, TargetInit};
use byol_wgpu::nn::{initial_values, Layers, Mode, ParamRole, ResNetConfig, Stem};
use byol_wgpu::optim::Lars;

fn small_step() -> ByolStep {
    let nets = ByolNets {
        encoder: ResNetConfig::of_depth(18, 1, 3, Stem::Small).unwrap(),
        hidden: 64,
        projection: 16,
        predictor: true,
    };
    ByolStep::build(
        &nets,
        4,
        [3, 8, 8],
        &Lars {
            momentum: 0.9,
            weight_decay: 1e-5,
            eta: 0.02,
            clip: false,
        },
        Default::default(),
    )
    .unwrap()
}

fn std_dev(v: &[f32]) -> f64 {
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    (v.iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / v.len() as f64)
        .sqrt()
}

#[test]
fn resnet_weights_follow_torchvision() {
    let config = ResNetConfig::of_depth(18, 1, 3, Stem::Small).unwrap();
    let mut g = byol_wgpu::graph::Graph::new();
    let x = g.input("x", &[2, 3, 8, 8]);
    let mut l = Layers::new(&mut g, Mode::Train, "");
    config.build(&mut l, x);
    let params = l.params;
    let values = initial_values(&params, 7);
    for (p, v) in params.iter().zip(&values) {
        match p.role {
            ParamRole::Weight => {
                // kaiming normal, fan-out: std sqrt(2 / (Co Kh Kw)); the big layers pin it to 3%.
                let want = (2.0 / (p.shape[0] * p.shape[2] * p.shape[3]) as f64).sqrt();
                let tolerance = if v.len() > 100_000 { 0.03 } else { 0.25 };
                assert!(
                    (std_dev(v) / want - 1.0).abs() < tolerance,
                    "{}: std {} against {want}",
                    p.name,
                    std_dev(v)
                );
            }
            ParamRole::Bias => assert!(
                v.iter()
                    .all(|&x| x == if p.name.ends_with("weight") { 1.0 } else { 0.0 }),
                "{}",
                p.name
            ),
            ParamRole::RunningStat => assert!(
                v.iter().all(|&x| x
                    == if p.name.ends_with("running_var") {
                        1.0
                    } else {
                        0.0
                    }),
                "{}",
                p.name
            ),
            ParamRole::OptimizerState => unreachable!(),
        }
    }
}

#[test]
fn linear_layers_are_uniform_within_their_fan_in() {
    let step = small_step();
    let values = step.initial_values(1, TargetInit::Copy);
    let find = |name: &str| step.params.iter().position(|p| p.name == name).unwrap();
    for (name, fan_in) in [
        ("online.projector.0.weight", 512),
        ("online.projector.0.bias", 512),
        ("online.projector.3.weight", 64),
    ] {
        let v = &values[find(name)];
        let bound = 1.0 / (fan_in as f32).sqrt();
        assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
        // Uniform on [-b, b] has std b / sqrt(3).
        let want = f64::from(bound) / 3f64.sqrt();
        assert!(
            (std_dev(v) / want - 1.0).abs() < 0.2,
            "{name}: std {} against {want}",
            std_dev(v)
        );
    }
    assert!(
        values[find("online.projector.1.weight")]
            .iter()
            .all(|&x| x == 1.0),
        "batch norm scale"
    );
    assert!(
        values[find("online.projector.1.bias")]
            .iter()
            .all(|&x| x == 0.0),
        "batch norm shift"
    );
}

#[test]
fn the_target_starts_as_a_copy_or_its_own_draw() {
    let step = small_step();
    let copy = step.initial_values(3, TargetInit::Copy);
    let own = step.initial_values(3, TargetInit::Random);
    let find = |name: &str| step.params.iter().position(|p| p.name == name).unwrap();
    for name in [
        "encoder.conv1.weight",
        "encoder.layer3.0.downsample.0.weight",
        "projector.0.bias",
        "projector.3.weight",
    ] {
        let (online, target) = (
            find(&format!("online.{name}")),
            find(&format!("target.{name}")),
        );
        assert_eq!(copy[online], copy[target], "{name} copied");
        assert_eq!(
            own[online], copy[online],
            "the online network does not depend on the target's start"
        );
        assert_ne!(own[target], own[online], "{name} drawn apart");
    }
    assert!(step
        .params
        .iter()
        .zip(&copy)
        .filter(|(p, _)| p.role == ParamRole::OptimizerState)
        .all(|(_, v)| v.iter().all(|&x| x == 0.0)));
}

#[test]
fn a_seed_gives_the_same_weights_and_another_seed_others() {
    let step = small_step();
    assert_eq!(
        step.initial_values(5, TargetInit::Random),
        step.initial_values(5, TargetInit::Random)
    );
    assert_ne!(
        step.initial_values(5, TargetInit::Random),
        step.initial_values(6, TargetInit::Random)
    );
}
