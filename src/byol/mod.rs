//! One BYOL training step as one graph: the online network (encoder, projector, predictor) and
//! the target network (encoder, projector) on both views, the symmetric loss, the online
//! network's gradients, LARS, and the target's EMA, all in one submission.

use crate::graph::{Graph, TensorId};
use crate::nn::{Layers, Mode, NamedParam, ParamRole, ResNetConfig};
use crate::ops::{Accumulate, ColumnStdMean, SoftmaxCrossEntropy};
use crate::optim::{append_ema, Lars, Sgd};
use crate::Result;

/// The networks' shapes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ByolNets {
    pub encoder: ResNetConfig,
    /// Hidden width of the projector and predictor (4096 in the paper).
    pub hidden: usize,
    /// Output width of the projector and predictor (256 in the paper).
    pub projection: usize,
    /// Without a predictor the online projection is compared to the target's directly (an ablation).
    pub predictor: bool,
}

/// How the target network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetInit {
    /// The online network's initial weights (most implementations).
    Copy,
    /// A draw of its own, as the authors' reference code does.
    Random,
}

/// How the step is built beyond the networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOptions {
    /// Micro-batches per optimiser step (see `ByolStep::accumulate`).
    pub accumulate: usize,
    /// Train a linear probe with this many classes on the online encoder's representations
    /// of the images' centre views (stop-gradient), alongside BYOL.
    pub probe_classes: Option<usize>,
}

impl Default for StepOptions {
    fn default() -> Self {
        Self {
            accumulate: 1,
            probe_classes: None,
        }
    }
}

/// The online linear probe's tensors.
pub struct Probe {
    /// The centre views of the micro-batch's images (no augmentation), [batch, C, H, W]: the
    /// online encoder reads them with the batch's own normalisation statistics, leaving the
    /// running ones alone, so the probe watches training without changing it.
    pub view: TensorId,
    /// One-hot labels [batch, classes rounded up to a multiple of 4].
    pub labels: TensorId,
    /// [probe lr, unused].
    pub schedule: TensorId,
    /// Logits [batch, classes rounded up]; the padded classes never win (they are trained down).
    pub logits: TensorId,
    pub classes: usize,
}

/// The step's graph and the tensors a trainer feeds and reads.
pub struct ByolStep {
    pub graph: Graph,
    pub view1: TensorId,
    pub view2: TensorId,
    /// [lr, tau] for this step.
    pub schedule: TensorId,
    pub loss: TensorId,
    /// L2-normalised online projections of view 1.
    pub online_projection: TensorId,
    /// [1]: the mean per-dimension std of `online_projection` (the collapse monitor).
    pub collapse_std: TensorId,
    /// Every online gradient of one (micro-)batch, in the order of the trainable parameters.
    pub grads: Vec<TensorId>,
    /// Per trainable parameter, [|w|^2, |u|^2, |g|^2] of the update (g averaged over the
    /// micro-batches): the weight and gradient norms of the metrics.
    pub norms: Vec<TensorId>,
    /// Micro-batches per optimiser step. Above 1 the graph has two phases: phase 0 (forward,
    /// backward, gradients added into accumulators) runs for every micro-batch, phase 1 (LARS,
    /// EMA, accumulators cleared) after the last.
    pub accumulate: usize,
    /// The gradient accumulators phase 0 adds into (online, then probe); empty without
    /// accumulation. Data-parallel processes sum these between the phases.
    pub accumulators: Vec<TensorId>,
    /// Every batch-norm running statistic with the factor a micro-batch's forward passes
    /// scale its old value by (the product of its updates' decays): each update is
    /// r <- d r + (1 - d) s, so a micro-batch maps r0 to D r0 + e, affine in r0.
    pub running_stats: Vec<(TensorId, f64)>,
    /// The online linear probe, when asked for.
    pub probe: Option<Probe>,
    /// All parameters: `online.*`, `target.*`, `momentum.online.*`, when accumulating
    /// `accumulated.online.*`, and with a probe `probe.*` and `momentum.probe.*`.
    pub params: Vec<NamedParam>,
}

impl ByolStep {
    /// Initial values of every parameter, in `params` order: the online networks drawn from
    /// `seed` (torchvision's initialisation), the target a copy of them or its own draw, the
    /// momentum buffers zero. The target's batch-norm running statistics start at 0 and 1
    /// either way.
    pub fn initial_values(&self, seed: u64, target: TargetInit) -> Vec<Vec<f32>> {
        let mut values = crate::nn::initial_values(&self.params, seed);
        if target == TargetInit::Copy {
            for (i, p) in self.params.iter().enumerate() {
                if let Some(online) = p.name.strip_prefix("target.") {
                    let twin = format!("online.{online}");
                    if let Some(j) = self.params.iter().position(|q| q.name == twin) {
                        values[i] = values[j].clone();
                    }
                }
            }
        }
        values
    }

    /// The f32 values in `accumulators`: what data-parallel processes sum every step.
    pub fn accumulator_floats(&self) -> usize {
        self.accumulators
            .iter()
            .map(|&t| self.graph.shape(t).iter().product::<usize>())
            .sum()
    }

    /// The step for micro-batches of `batch` images of shape `image`.
    pub fn build(
        nets: &ByolNets,
        batch: usize,
        image: [usize; 3],
        lars: &Lars,
        options: StepOptions,
    ) -> Result<Self> {
        let mut graph = Graph::new();
        let shape = [batch, image[0], image[1], image[2]];
        let view1 = graph.input("view1", &shape);
        let view2 = graph.input("view2", &shape);
        let schedule = graph.input("schedule", &[2]);
        let mut l = Layers::new(&mut graph, Mode::Train, "");

        // Each view is its own forward pass, so batch-norm statistics are per view; the order
        // (online v1, online v2, target v1, target v2) fixes the running-statistic updates.
        let online = |l: &mut Layers, v: TensorId| {
            l.prefix = "online.encoder.".into();
            let y = nets.encoder.build(l, v);
            l.prefix = "online.projector.".into();
            let z = l.mlp_head(y, nets.hidden, nets.projection);
            if nets.predictor {
                l.prefix = "online.predictor.".into();
                (y, z, l.mlp_head(z, nets.hidden, nets.projection))
            } else {
                (y, z, z)
            }
        };
        let target = |l: &mut Layers, v: TensorId| {
            l.prefix = "target.encoder.".into();
            let y = nets.encoder.build(l, v);
            l.prefix = "target.projector.".into();
            let z = l.mlp_head(y, nets.hidden, nets.projection);
            l.graph.stop_gradient(z)
        };
        let (_, z1, p1) = online(&mut l, view1);
        let (_, _, p2) = online(&mut l, view2);
        let t1 = target(&mut l, view1);
        let t2 = target(&mut l, view2);

        // loss = mean over the batch of the sum of both directions' 2 - 2 cos.
        let l12 = l.graph.byol_loss(p1, t2);
        let l21 = l.graph.byol_loss(p2, t1);
        let per_sample = l.graph.add(l12, l21);
        let loss = l.graph.mean(per_sample, 0);
        let online_projection = l.graph.l2_normalize(z1);
        let collapse_std = l.graph.apply(ColumnStdMean, &[online_projection]);

        let trainable: Vec<NamedParam> = l
            .params
            .iter()
            .filter(|p| p.name.starts_with("online.") && p.role != ParamRole::RunningStat)
            .cloned()
            .collect();
        let wrt: Vec<TensorId> = trainable.iter().map(|p| p.id).collect();
        let grads = l.graph.grad(loss, &wrt)?;
        let probe = options
            .probe_classes
            .map(|classes| append_probe(&mut l, nets, shape, classes))
            .transpose()?;
        let running_stats = running_decay(&l);

        // With accumulation, phase 0 adds each micro-batch's gradients / accumulate into
        // accumulators (online and probe alike); phase 1 steps both optimisers from them.
        let accumulate = options.accumulate.max(1);
        let mut accumulators = Vec::new();
        let mut accumulated = |l: &mut Layers, params: &[NamedParam], grads: &[TensorId]| {
            if accumulate == 1 {
                return grads.to_vec();
            }
            l.prefix = "accumulated.".into();
            let mean = Accumulate {
                a: 1.0,
                b: 1.0 / accumulate as f32,
            };
            let acc: Vec<TensorId> = params
                .iter()
                .zip(grads)
                .map(|(p, &g)| {
                    let a = l.param(&p.name, &p.shape, ParamRole::OptimizerState);
                    l.graph.apply(mean, &[a, g]);
                    a
                })
                .collect();
            accumulators.extend(&acc);
            acc
        };
        let online_grads = accumulated(&mut l, &trainable, &grads);
        let probe_grads = probe
            .as_ref()
            .map(|(_, params, grads)| accumulated(&mut l, params, grads));
        if accumulate > 1 {
            l.graph.start_phase();
        }
        if let (Some((p, params, _)), Some(grads)) = (&probe, &probe_grads) {
            PROBE_SGD.append(&mut l, params, grads, p.schedule);
        }
        let (updated, norms) = lars.append(&mut l, &trainable, &online_grads, schedule);
        let clear = Accumulate { a: 0.0, b: 0.0 };
        for &a in &accumulators {
            l.graph.apply(clear, &[a, a]);
        }
        let probe = probe.map(|(p, _, _)| p);

        // The target follows the updated online parameters (not their running statistics).
        let mut target_ids = Vec::new();
        let mut online_ids = Vec::new();
        for (p, &new) in trainable.iter().zip(&updated) {
            let twin = p.name.replacen("online.", "target.", 1);
            if let Some(t) = l.params.iter().find(|t| t.name == twin) {
                target_ids.push(t.id);
                online_ids.push(new);
            }
        }
        append_ema(l.graph, &target_ids, &online_ids, schedule);
        let params = l.params;
        Ok(Self {
            graph,
            view1,
            view2,
            schedule,
            loss,
            online_projection,
            collapse_std,
            grads,
            norms,
            accumulate,
            accumulators,
            running_stats,
            probe,
            params,
        })
    }
}

/// A linear classifier on the online encoder's representations of clean views, stop_gradient
/// and batch-normalised, trained by its own SGD with Nesterov momentum (appended by the caller,
/// with the online optimiser: returned are the probe's trainable parameters and gradients).
///
/// Measured with a PyTorch BYOL over the former quick run's 40 steps (5,120 images; training-batch
/// top-1): clean views, not view 1, since a random crop of 8% of an image is far harder to
/// classify than the image (view 1 22/20/27% at steps 20/30/40, clean views 30/37/39-52%).
/// The batch's statistics, not the running ones: through the running statistics, which trail
/// the weights early in a run, the same probe read 45% against 57% (seeds 0-2, mean of steps
/// 36-40). The target encoder read no better (50%), and here one batch of the separable-classes
/// test dropped to chance through it, so the probe watches the encoder users export.
fn append_probe(
    l: &mut Layers,
    nets: &ByolNets,
    shape: [usize; 4],
    classes: usize,
) -> Result<(Probe, Vec<NamedParam>, Vec<TensorId>)> {
    let batch = shape[0];
    let padded = classes.next_multiple_of(4);
    let view = l.graph.input("probe view", &shape);
    let labels = l.graph.input("probe labels", &[batch, padded]);
    let schedule = l.graph.input("probe schedule", &[2]);
    l.mode = Mode::Watch;
    l.prefix = "online.encoder.".into();
    let y = nets.encoder.build(l, view);
    l.mode = Mode::Train;
    let features = l.graph.stop_gradient(y);
    let first = l.params.len();
    l.prefix = "probe.".into();
    // Standardised over the batch first: the representation's scale differs between networks
    // and drifts through training, and one learning rate has to suit all of it.
    let standard = l.batch_norm("bn", features);
    let logits = l.linear("fc", standard, padded, true);
    let per_sample = l.graph.apply(SoftmaxCrossEntropy, &[logits, labels]);
    let loss = l.graph.mean(per_sample, 0);
    let params: Vec<NamedParam> = l.params[first..]
        .iter()
        .filter(|p| p.role != ParamRole::RunningStat)
        .cloned()
        .collect();
    let ids: Vec<TensorId> = params.iter().map(|p| p.id).collect();
    let grads = l.graph.grad(loss, &ids)?;
    let probe = Probe {
        view,
        labels,
        schedule,
        logits,
        classes,
    };
    Ok((probe, params, grads))
}

/// The probe's optimiser.
const PROBE_SGD: Sgd = Sgd {
    momentum: 0.9,
    nesterov: true,
    weight_decay: 0.0,
};

/// Each running statistic of `l` with the product of its updates' decays.
fn running_decay(l: &Layers) -> Vec<(TensorId, f64)> {
    l.params
        .iter()
        .filter(|p| p.role == ParamRole::RunningStat)
        .map(|p| {
            let decay = l
                .running_updates
                .iter()
                .filter(|(t, _)| *t == p.id)
                .map(|&(_, d)| f64::from(d))
                .product();
            (p.id, decay)
        })
        .collect()
}
