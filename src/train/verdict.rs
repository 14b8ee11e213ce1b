//! What a run shows of its representations: at every checkpoint a map of a fixed probe set
//! (DIR/embedding.png), and at the end a verdict: kNN top-1 on the test split of the online
//! encoder beside a random-init encoder of the same shape (DIR/verdict.json). A run that
//! learned nothing says so.

use std::path::Path;
use std::sync::Mutex;

use crate::data::{Dataset, Image, Split};
use crate::eval::{encode_dataset, knn_eval, linear_eval, DatasetEncoder, LinearEvalConfig};
use crate::nn::Weights;
use crate::Result;

use super::{open_dataset, Trainer};

/// Images of the probe set drawn in embedding.png.
pub const PROBE_IMAGES: usize = 1000;
/// The kNN verdict's bank (training images) and queries (test images): enough for a
/// top-1 within about a point, few enough to take seconds on a CPU adapter.
pub const VERDICT_TRAIN_IMAGES: usize = 5_000;
pub const VERDICT_TEST_IMAGES: usize = 2_000;
const K: usize = 20;
const TEMPERATURE: f64 = 0.1;
/// Gains within this many points count as level: the standard error of a top-1 near 70% on
/// 2,000 test images is 1 point.
const LEVEL: f64 = 1.0;

/// A fixed set of images whose representations a run draws: the first of the test split
/// where it has labels, else of the training data.
pub struct ProbeSet {
    images: Vec<Image>,
    labels: Vec<Option<u32>>,
    names: Vec<String>,
    max_side: usize,
    /// Built at the first checkpoint and given each later checkpoint's weights, as the live
    /// window's snapshots do, instead of a new encoder per checkpoint.
    encoder: Mutex<Option<DatasetEncoder>>,
}

impl ProbeSet {
    pub fn new(train: &dyn Dataset, test: Option<&dyn Dataset>) -> Self {
        let source = test.filter(|t| t.classes() >= 2).unwrap_or(train);
        let (images, labels) = crate::data::first_readable(source, PROBE_IMAGES);
        Self {
            images,
            labels,
            names: source.class_names(),
            max_side: source.max_side().max(1),
            encoder: Mutex::new(None),
        }
    }

    /// The probe set through the online encoder, on its two leading principal components.
    pub fn draw(&self, trainer: &Trainer, path: &Path) -> Result<()> {
        if self.images.is_empty() {
            return Ok(());
        }
        let weights = trainer.online_encoder()?;
        let mut encoder = self.encoder.lock().expect("probe encoder");
        let encoder = match encoder.as_mut() {
            Some(e) => {
                e.encoder.set_weights(&weights)?;
                e
            }
            None => {
                let batch = self.images.len().min(128);
                let view = trainer.state().views;
                let e = DatasetEncoder::new(trainer.gpu(), &weights, &view, batch, self.max_side)?;
                encoder.insert(e)
            }
        };
        let features = encoder.encode(&self.images)?;
        let dim = features.len() / self.images.len();
        let points = crate::viz::pca_2d(&features, dim);
        crate::viz::scatter(
            path,
            &format!(
                "online representations of {} images after step {}",
                self.images.len(),
                trainer.state().step
            ),
            ("first principal component", "second principal component"),
            &points,
            &self.labels,
            &self.names,
        )
    }
}

/// Top-1 (%) of the online encoder and of a random-init encoder of the same shape on the test
/// split, by kNN and by a linear probe (L-BFGS logistic regression) on the same features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub k: usize,
    pub temperature: f64,
    pub train_images: usize,
    pub test_images: usize,
    /// kNN.
    pub online_top1: f64,
    pub random_init_top1: f64,
    /// The linear probe: what the paper measures, and what decides the verdict. A random
    /// network's features are close to the pixels, which kNN rewards on small images: a run
    /// can gain 7 points by the probe and lose 2 by kNN (measured on Fashion-MNIST).
    pub online_linear_top1: f64,
    pub random_init_linear_top1: f64,
}

impl Verdict {
    /// The run's last lines.
    pub fn lines(&self) -> String {
        let gain = self.online_linear_top1 - self.random_init_linear_top1;
        let knn_gain = self.online_top1 - self.random_init_top1;
        let word = if gain > LEVEL {
            "BYOL learned"
        } else if gain >= -LEVEL {
            "BYOL is level with a random encoder: train longer"
        } else {
            "BYOL did not beat a random encoder: train longer, or check the run's curves"
        };
        let knn = format!("kNN (k {})", self.k);
        let row =
            |name: &str, linear: f64, knn: f64| format!("  {name:21}{linear:6.2}%  {knn:9.2}%");
        [
            format!(
                "top-1 on {} test images, features of {} training images:",
                self.test_images, self.train_images
            ),
            format!("{:23}{:>7}  {knn:>9}", "", "linear"),
            row("online encoder", self.online_linear_top1, self.online_top1),
            row(
                "random-init encoder",
                self.random_init_linear_top1,
                self.random_init_top1,
            ),
            format!("{word} ({gain:+.2} points by the linear probe, {knn_gain:+.2} by kNN)"),
        ]
        .join("\n")
    }
}

/// The verdict of `trainer`'s run, or None when its data has no labelled test split.
pub fn verdict(trainer: &Trainer) -> Result<Option<Verdict>> {
    let config = &trainer.config;
    let Ok(test) = open_dataset(config, Split::Test) else {
        return Ok(None);
    };
    let train = open_dataset(config, Split::Train)?;
    if test.classes() < 2 || train.classes() < 2 {
        return Ok(None);
    }
    let gpu = trainer.gpu();
    let view = trainer.state().views;
    // (kNN, linear) top-1.
    let score = |weights: &Weights| -> Result<(f64, f64)> {
        let encode =
            |data: &dyn Dataset, limit| encode_dataset(gpu, weights, data, &view, 256, Some(limit));
        let bank = encode(train.as_ref(), VERDICT_TRAIN_IMAGES)?;
        let queries = encode(test.as_ref(), VERDICT_TEST_IMAGES)?;
        let knn = knn_eval(gpu, &bank, &queries, K, TEMPERATURE)?.top1;
        let linear = linear_eval(gpu, &bank, &queries, &LinearEvalConfig::default())?.top1;
        Ok((knn, linear))
    };
    let (online_top1, online_linear_top1) = score(&trainer.online_encoder()?)?;
    let encoder = config.nets(view.channels)?.encoder;
    let (random_init_top1, random_init_linear_top1) =
        score(&crate::nn::random_encoder(&encoder, config.seed))?;
    Ok(Some(Verdict {
        k: K,
        temperature: TEMPERATURE,
        train_images: train.len().min(VERDICT_TRAIN_IMAGES),
        test_images: test.len().min(VERDICT_TEST_IMAGES),
        online_top1,
        random_init_top1,
        online_linear_top1,
        random_init_linear_top1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(online_linear: f64, online_knn: f64) -> Verdict {
        Verdict {
            k: 20,
            temperature: 0.1,
            train_images: 5000,
            test_images: 2000,
            online_top1: online_knn,
            random_init_top1: 68.4,
            online_linear_top1: online_linear,
            random_init_linear_top1: 71.3,
        }
    }

    #[test]
    fn the_linear_probe_decides_and_a_point_either_way_is_level() {
        let last = |v: Verdict| v.lines().lines().last().unwrap().to_string();
        assert!(last(verdict(77.0, 66.0))
            .starts_with("BYOL learned (+5.70 points by the linear probe, -2.40 by kNN)"));
        assert!(last(verdict(71.7, 59.0)).starts_with("BYOL is level"));
        assert!(last(verdict(69.0, 70.0)).starts_with("BYOL did not beat"));
        // The numbers sit under their column heads.
        let text = verdict(71.7, 58.95).lines();
        let lines: Vec<&str> = text.lines().collect();
        for (head, cell) in [("linear", "71.70%"), ("(k 20)", "58.95%")] {
            let end = |line: &str, s: &str| line.find(s).unwrap() + s.len();
            assert_eq!(end(lines[1], head), end(lines[2], cell), "{text}");
        }
    }
}
