//! Linear evaluation (SPEC.md, paper Appendix C.1): a linear classifier on frozen
//! representations, trained with SGD and Nesterov momentum, the learning rate chosen on a
//! held-out part of the training set, top-1 and top-5 reported on the test set.
//!
//! The representations are computed once (centre views) and standardised per dimension with
//! the training set's statistics, so one learning-rate grid suits encoders of any scale
//! (a random network's features are far smaller than a trained one's).

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Features;
use crate::gpu::Gpu;
use crate::graph::{Executable, Graph, Pending, TensorId};
use crate::nn::{Layers, Mode, NamedParam};
use crate::ops::SoftmaxCrossEntropy;
use crate::optim::{LrSchedule, Sgd};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearEvalConfig {
    pub epochs: usize,
    pub batch: usize,
    /// Candidate learning rates; the best on the held-out split is used.
    pub lrs: Vec<f64>,
    /// Share of the training set held out to choose the learning rate.
    pub held_out: f64,
    pub seed: u64,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        Self {
            epochs: 80,
            batch: 1024,
            lrs: vec![0.4, 0.3, 0.2, 0.1, 0.05],
            held_out: 0.1,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearEvalReport {
    pub train_images: usize,
    pub test_images: usize,
    pub dim: usize,
    pub classes: usize,
    /// Held-out top-1 (%) for each candidate learning rate.
    pub held_out_top1: Vec<(f64, f64)>,
    pub lr: f64,
    pub top1: f64,
    pub top5: f64,
}

/// Per-dimension mean and std of the training rows.
fn standardizer(f: &Features, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let d = f.dim;
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for &r in rows {
        for (j, &v) in f.row(r).iter().enumerate() {
            mean[j] += f64::from(v);
            sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let n = rows.len().max(1) as f64;
    let std = (0..d)
        .map(|j| {
            let m = mean[j] / n;
            ((sq[j] / n - m * m).max(0.0).sqrt().max(1e-6)) as f32
        })
        .collect();
    (mean.iter().map(|m| (m / n) as f32).collect(), std)
}

/// A linear classifier's training graph and its inference twin on the same device. Widths are
/// padded to multiples of 4 (the fast matmul kernels need them): padded feature columns are
/// zero, padded classes never appear as targets and are ignored when scoring.
struct Classifier {
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
    fn new(gpu: &Arc<Gpu>, batch: usize, features: usize, real_classes: usize) -> Result<Self> {
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
    fn fit(
        &self,
        x: &[f32],
        labels: &[u32],
        rows: &[usize],
        cfg: &LinearEvalConfig,
        lr: f64,
    ) -> Result<f64> {
        self.reset()?;
        let steps_per_epoch = rows.len().div_ceil(self.batch).max(1);
        let schedule = LrSchedule {
            base: lr,
            warmup_steps: 0,
            total_steps: (steps_per_epoch * cfg.epochs) as u64,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order = rows.to_vec();
        let mut xb = vec![0f32; self.batch * self.padded_dim];
        let mut yb = vec![0f32; self.batch * self.padded_classes];
        let mut in_flight: Vec<Pending> = Vec::new();
        let mut last_loss = f64::NAN;
        let mut step = 0u64;
        for _ in 0..cfg.epochs {
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

    /// Top-1 and top-5 accuracy (%) on `rows`.
    fn accuracy(&self, x: &[f32], labels: &[u32], rows: &[usize]) -> Result<(f64, f64)> {
        for (p, q) in self.params.iter().zip(&self.infer_params) {
            debug_assert_eq!(p.name, q.name);
            self.infer.write(q.id, &self.train.read(p.id)?)?;
        }
        let (mut top1, mut top5) = (0usize, 0usize);
        let mut xb = vec![0f32; self.batch * self.padded_dim];
        for chunk in rows.chunks(self.batch) {
            for (i, &r) in chunk.iter().enumerate() {
                self.copy_row(&mut xb, i, x, r);
            }
            let logits = self.infer.run(&[(self.infer_x, &xb)])?.remove(0);
            for (i, &r) in chunk.iter().enumerate() {
                let start = i * self.padded_classes;
                let row = &logits[start..start + self.classes];
                let truth = row[labels[r] as usize];
                let above = row.iter().filter(|&&v| v > truth).count();
                top1 += usize::from(above == 0);
                top5 += usize::from(above < 5);
            }
        }
        let n = rows.len().max(1) as f64;
        Ok((100.0 * top1 as f64 / n, 100.0 * top5 as f64 / n))
    }
}

/// Chooses the learning rate on a held-out split of `train`, retrains on all of `train`, and
/// reports accuracy on `test`.
pub fn linear_eval(
    gpu: &Arc<Gpu>,
    train: &Features,
    test: &Features,
    cfg: &LinearEvalConfig,
) -> Result<LinearEvalReport> {
    let train_labels = train.require_labels("linear evaluation")?;
    let test_labels = test.require_labels("linear evaluation")?;
    if train.dim != test.dim {
        return Err(Error::Config(
            "train and test features differ in width".into(),
        ));
    }
    let classes = train_labels
        .iter()
        .chain(&test_labels)
        .max()
        .map_or(0, |&m| m as usize + 1);
    if classes < 2 || train.len() < 10 {
        return Err(Error::Config(format!(
            "linear evaluation needs at least 2 classes and 10 training images, got {classes} and {}",
            train.len()
        )));
    }
    let mut all: Vec<usize> = (0..train.len()).collect();
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6865_6c64));
    let held = ((train.len() as f64 * cfg.held_out).round() as usize).clamp(1, train.len() - 1);
    let (val_rows, fit_rows) = all.split_at(held);

    let (mean, std) = standardizer(train, fit_rows);
    let standardize = |f: &Features| -> Vec<f32> {
        f.data
            .chunks(f.dim)
            .flat_map(|r| r.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s))
            .collect()
    };
    let (xtr, xte) = (standardize(train), standardize(test));
    let batch = cfg.batch.min(fit_rows.len()).max(1);
    let clf = Classifier::new(gpu, batch, train.dim, classes)?;
    let mut held_out_top1 = Vec::new();
    for &lr in &cfg.lrs {
        let acc = match clf.fit(&xtr, &train_labels, fit_rows, cfg, lr) {
            Ok(_) => clf.accuracy(&xtr, &train_labels, val_rows)?.0,
            Err(Error::Training(_)) => 0.0,
            Err(e) => return Err(e),
        };
        held_out_top1.push((lr, acc));
    }
    let lr = held_out_top1
        .iter()
        .fold((f64::NAN, -1.0), |best, &(lr, acc)| {
            if acc > best.1 {
                (lr, acc)
            } else {
                best
            }
        })
        .0;
    let every: Vec<usize> = (0..train.len()).collect();
    clf.fit(&xtr, &train_labels, &every, cfg, lr)?;
    let test_rows: Vec<usize> = (0..test.len()).collect();
    let (top1, top5) = clf.accuracy(&xte, &test_labels, &test_rows)?;
    Ok(LinearEvalReport {
        train_images: train.len(),
        test_images: test.len(),
        dim: train.dim,
        classes,
        held_out_top1,
        lr,
        top1,
        top5,
    })
}
