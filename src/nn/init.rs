//! Initial weights as torchvision draws them, from a seed: convolutions kaiming-normal with
//! fan-out (ResNet's init), linear layers uniform in +-1/sqrt(fan-in) (nn.Linear's default, bias
//! too), batch norm scale 1 and shift 0, running mean 0 and variance 1, optimiser state 0.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{NamedParam, ParamRole};

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The module a parameter belongs to: its name without the last component.
fn module(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(m, _)| m)
}

/// Initial values for `params`, in their order, drawn from `seed`.
pub fn initial_values(params: &[NamedParam], seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let is_batch_norm = |p: &NamedParam| {
        params
            .iter()
            .any(|q| q.name == format!("{}.running_mean", module(&p.name)))
    };
    params
        .iter()
        .map(|p| {
            let n: usize = p.shape.iter().product();
            match (p.role, p.shape.len()) {
                (ParamRole::Weight, 4) => {
                    let fan_out = p.shape[0] * p.shape[2] * p.shape[3];
                    let std = (2.0 / fan_out as f32).sqrt();
                    (0..n).map(|_| std * normal(&mut rng)).collect()
                }
                (ParamRole::Weight, _) => {
                    let bound = 1.0 / (p.shape[1] as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                (ParamRole::Bias, _) if is_batch_norm(p) => vec![
                    if p.name.ends_with(".weight") {
                        1.0
                    } else {
                        0.0
                    };
                    n
                ],
                (ParamRole::Bias, _) => {
                    // A linear layer's bias: bounded by its weight's fan-in.
                    let weight = format!("{}.weight", module(&p.name));
                    let fan_in = params
                        .iter()
                        .find(|q| q.name == weight)
                        .map_or(n, |w| w.shape[1]);
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
                (ParamRole::RunningStat, _) => vec![
                    if p.name.ends_with("running_var") {
                        1.0
                    } else {
                        0.0
                    };
                    n
                ],
                (ParamRole::OptimizerState, _) => vec![0.0; n],
            }
        })
        .collect()
}

/// A freshly initialised encoder of `config`'s shape, under torchvision's names (the
/// random-network baseline of the evaluations).
pub fn random_encoder(config: &super::ResNetConfig, seed: u64) -> super::Weights {
    let mut g = crate::graph::Graph::new();
    let x = g.input("images", &[2, config.in_channels, 32, 32]);
    let mut layers = super::Layers::new(&mut g, super::Mode::Eval, "");
    config.build(&mut layers, x);
    let params = layers.params;
    let mut weights = super::Weights::default();
    for (p, v) in params.iter().zip(initial_values(&params, seed)) {
        weights.insert(&p.name, &p.shape, v);
    }
    weights
}
