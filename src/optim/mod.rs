//! LARS, SGD with (Nesterov) momentum and the target EMA as in-place updates appended to a
//! training graph, and the learning-rate and tau schedules that feed them each step.

mod schedule;

pub use schedule::{LrSchedule, TauSchedule};

use crate::graph::{Graph, TensorId};
use crate::nn::{Layers, NamedParam, ParamRole};
use crate::ops::{
    Accumulate, LarsMomentum, LarsParams, ScheduledRule, ScheduledUpdate, SquaredNorms,
};

/// LARS as the paper runs it (Appendix J): momentum 0.9, trust coefficient eta, weight decay;
/// biases and batch-norm parameters excluded from both decay and trust scaling. `clip` caps
/// every tensor's rate at the step's lr (solo-learn's `clip_lr`, part of its small-image
/// recipe); the paper does not clip.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lars {
    pub momentum: f32,
    pub weight_decay: f32,
    pub eta: f32,
    pub clip: bool,
}

impl Lars {
    /// Appends, for every trainable parameter with its gradient, a momentum buffer (a new
    /// parameter named `momentum.` + the parameter's name, `OptimizerState`) and the in-place
    /// LARS step with the learning rate `schedule[0]`. Returns each parameter's updated value
    /// and its [|w|^2, |u|^2, |g|^2] (before the step).
    pub fn append(
        &self,
        layers: &mut Layers,
        params: &[NamedParam],
        grads: &[TensorId],
        schedule: TensorId,
    ) -> (Vec<TensorId>, Vec<TensorId>) {
        let saved_prefix = std::mem::replace(&mut layers.prefix, "momentum.".into());
        let (updated, norms) = params
            .iter()
            .zip(grads)
            .map(|(p, &g)| {
                let excluded = p.role != ParamRole::Weight;
                let m = layers.param(&p.name, &p.shape, ParamRole::OptimizerState);
                let graph: &mut Graph = layers.graph;
                let lars = LarsParams {
                    momentum: self.momentum,
                    weight_decay: if excluded { 0.0 } else { self.weight_decay },
                    eta: self.eta,
                    excluded,
                    clip: self.clip,
                };
                let norms = graph.apply(
                    SquaredNorms {
                        weight_decay: lars.weight_decay,
                    },
                    &[p.id, g],
                );
                let m = graph.apply(LarsMomentum(lars), &[m, g, p.id, norms, schedule]);
                let w = graph.apply(ScheduledUpdate(ScheduledRule::Step), &[p.id, m, schedule]);
                (w, norms)
            })
            .unzip();
        layers.prefix = saved_prefix;
        (updated, norms)
    }
}

/// SGD with momentum (Nesterov's form when `nesterov`) and weight decay, as torch.optim.SGD:
/// g' = g + wd w; m <- momentum m + g'; w <- w - lr (g' + momentum m) (Nesterov) or
/// w <- w - lr m, with lr = `schedule[0]`. The linear evaluation's optimiser.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Sgd {
    /// Appends a momentum buffer (`momentum.` + the parameter's name) and the in-place step
    /// for every parameter with its gradient.
    pub fn append(
        &self,
        layers: &mut Layers,
        params: &[NamedParam],
        grads: &[TensorId],
        schedule: TensorId,
    ) {
        let saved_prefix = std::mem::replace(&mut layers.prefix, "momentum.".into());
        for (p, &g) in params.iter().zip(grads) {
            let m = layers.param(&p.name, &p.shape, ParamRole::OptimizerState);
            let graph: &mut Graph = layers.graph;
            let g = if self.weight_decay > 0.0 {
                let decay = graph.scale(p.id, self.weight_decay);
                graph.add(g, decay)
            } else {
                g
            };
            let m = graph.apply(
                Accumulate {
                    a: self.momentum,
                    b: 1.0,
                },
                &[m, g],
            );
            let step = if self.nesterov {
                let look_ahead = graph.scale(m, self.momentum);
                graph.add(g, look_ahead)
            } else {
                m
            };
            graph.apply(
                ScheduledUpdate(ScheduledRule::Step),
                &[p.id, step, schedule],
            );
        }
        layers.prefix = saved_prefix;
    }
}

/// Appends xi <- tau xi + (1 - tau) theta for each target parameter and the online value it
/// follows (already updated), with tau = `schedule[1]`.
pub fn append_ema(graph: &mut Graph, target: &[TensorId], online: &[TensorId], schedule: TensorId) {
    for (&xi, &theta) in target.iter().zip(online) {
        graph.apply(ScheduledUpdate(ScheduledRule::Ema), &[xi, theta, schedule]);
    }
}
