//! The paper's linear-evaluation protocol (Appendix C.1) on the device: a linear classifier
//! trained by SGD with Nesterov momentum and a cosine learning rate, in mini-batches.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::linear::{Score, Tally};
use crate::gpu::Gpu;
use crate::graph::{Executable, Graph, Pending, TensorId};
use crate::nn::{Layers, Mode, NamedParam};
use crate::ops::SoftmaxCrossEntropy;
use crate::optim::{LrSchedule, Sgd};
use crate::{Error, Result};

/// The length and shuffling of one SGD fit.
pub(super) struct SgdRun {
    pub epochs: usize,
    pub seed: u64,
}

/// A linear classifier's training graph and its inference twin on the same device. Widths are
/// padded to multiples of 4 (the fast matmul kernels need them): padded feature columns are
/// zero, padded classes never appear as targets and are ignored when scoring.
pub(super) struct Classifier {
    train: Executable,
    infer: Executable,
    x: TensorId,
    y: TensorId,
    schedule: TensorId,
    params: Vec<NamedParam>,
    infer_x: TensorId,
    infer_params: Vec<NamedParam>,
    batch: usize,
    /// The features' width, and the padded width the graph takes.
    dim: usize,
    padded_dim: usize,
    classes: usize,
    padded_classes: usize,
}

impl Classifier {
    pub(super) fn new(
        gpu: &Arc<Gpu>,
        batch: usize,
        features: usize,
        real_classes: usize,
    ) -> Result<Self> {
        let (dim, classes) = (
            features.next_multiple_of(4),
            real_classes.next_multiple_of(4),
        );
        let mut g = Graph::new();
        let x = g.input("features", &[batch, dim]);
        let y = g.input("targets", &[batch, classes]);
        let schedule = g.input("schedule", &[2]);
        let mut l = Layers::new(&mut g, Mode::Train, "");
        let logits = l.linear("fc", x, classes, true);
        let per_sample = l.graph.apply(SoftmaxCrossEntropy, &[logits, y]);
        let loss = l.graph.mean(per_sample, 0);
        let trainable = l.params.clone();
        let ids: Vec<TensorId> = trainable.iter().map(|p| p.id).collect();
        let grads = l.graph.grad(loss, &ids)?;
        Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        }
        .append(&mut l, &trainable, &grads, schedule);
        let params = l.params.clone();
        let train = Executable::new(gpu, &g, &[loss])?;

        let mut gi = Graph::new();
        let infer_x = gi.input("features", &[batch, dim]);
        let mut li = Layers::new(&mut gi, Mode::Eval, "");
        let logits = li.linear("fc", infer_x, classes, true);
        let infer_params = li.params.clone();
        let infer = Executable::new(gpu, &gi, &[logits])?;
        Ok(Self {
            train,
            infer,
            x,
            y,
            schedule,
            params,
            infer_x,
            infer_params,
            batch,
            dim: features,
            padded_dim: dim,
            classes: real_classes,
            padded_classes: classes,
        })
    }

    /// Zero weights, bias and momentum: a fresh classifier.
    fn reset(&self) -> Result<()> {
        for p in &self.params {
            self.train
                .write(p.id, &vec![0.0; p.shape.iter().product()])?;
        }
        Ok(())
    }

    /// Trains on `rows` of `x` (standardised) for `epochs` with a cosine learning rate.
    pub(super) fn fit(
        &self,
        x: &[f32],
        labels: &[u32],
        rows: &[usize],
        run: &SgdRun,
        lr: f64,
    ) -> Result<f64> {
        self.reset()?;
        let steps_per_epoch = rows.len().div_ceil(self.batch).max(1);
        let schedule = LrSchedule {
            base: lr,
            warmup_steps: 0,
            total_steps: (steps_per_epoch * run.epochs) as u64,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
        let mut order = rows.to_vec();
        let mut xb = vec![0f32; self.batch * self.padded_dim];
        let mut yb = vec![0f32; self.batch * self.padded_classes];
        let mut in_flight: Vec<Pending> = Vec::new();
        let mut last_loss = f64::NAN;
        let mut step = 0u64;
        for _ in 0..run.epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(self.batch) {
                // The last partial batch is topped up from the start of the epoch's order.
                let picks = chunk.iter().chain(order.iter()).take(self.batch);
                yb.fill(0.0);
                for (i, &r) in picks.enumerate() {
                    self.copy_row(&mut xb, i, x, r);
                    yb[i * self.padded_classes + labels[r] as usize] = 1.0;
                }
                self.train.write(self.x, &xb)?;
                self.train.write(self.y, &yb)?;
                self.train
                    .write(self.schedule, &[schedule.at(step) as f32, 0.0])?;
                in_flight.push(self.train.submit(&[], 0..1)?);
                if in_flight.len() > 1 {
                    last_loss = f64::from(self.train.collect(in_flight.remove(0))?[0][0]);
                }
                step += 1;
                if chunk.len() < self.batch {
                    break;
                }
            }
        }
        for p in in_flight.drain(..) {
            last_loss = f64::from(self.train.collect(p)?[0][0]);
        }
        if !last_loss.is_finite() {
            return Err(Error::Training(format!(
                "the linear classifier diverged at lr {lr}"
            )));
        }
        Ok(last_loss)
    }

    /// Row `r` of the features `x` into row `i` of the padded batch `xb`.
    fn copy_row(&self, xb: &mut [f32], i: usize, x: &[f32], r: usize) {
        let dst = i * self.padded_dim;
        xb[dst..dst + self.dim].copy_from_slice(&x[r * self.dim..(r + 1) * self.dim]);
    }

    /// Accuracy and cross-entropy on `rows`.
    pub(super) fn score(&self, x: &[f32], labels: &[u32], rows: &[usize]) -> Result<Score> {
        for (p, q) in self.params.iter().zip(&self.infer_params) {
            debug_assert_eq!(p.name, q.name);
            self.infer.write(q.id, &self.train.read(p.id)?)?;
        }
        let mut tally = Tally::default();
        let mut xb = vec![0f32; self.batch * self.padded_dim];
        for chunk in rows.chunks(self.batch) {
            for (i, &r) in chunk.iter().enumerate() {
                self.copy_row(&mut xb, i, x, r);
            }
            let logits = self.infer.run(&[(self.infer_x, &xb)])?.remove(0);
            for (i, &r) in chunk.iter().enumerate() {
                let start = i * self.padded_classes;
                let row: Vec<f64> = logits[start..start + self.classes]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                tally.add(&row, labels[r] as usize);
            }
        }
        Ok(tally.score())
    }
}
