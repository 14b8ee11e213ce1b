//! What a run shows of its representations: at every checkpoint a map of a fixed probe set
//! (DIR/embedding.png), and at the end a verdict: kNN top-1 on the test split of the online
//! encoder beside a random-init encoder of the same shape (DIR/verdict.json). A run that
//! learned nothing says so.

use std::path::Path;
use std::sync::Arc;

use crate::data::{Dataset, Image, Split};
use crate::eval::{encode_dataset, knn_eval, DatasetEncoder};
use crate::gpu::Gpu;
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

/// A fixed set of images whose representations a run draws: the first of the test split
/// where it has labels, else of the training data.
pub struct ProbeSet {
    images: Vec<Image>,
    labels: Vec<Option<u32>>,
    names: Vec<String>,
    max_side: usize,
}

impl ProbeSet {
    pub fn new(train: &dyn Dataset, test: Option<&dyn Dataset>) -> Self {
        let source = test.filter(|t| t.classes() >= 2).unwrap_or(train);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..source.len() {
            if images.len() == PROBE_IMAGES {
                break;
            }
            if let Ok(img) = source.load(i) {
                images.push(img);
                labels.push(source.label(i));
            }
        }
        Self {
            images,
            labels,
            names: source.class_names(),
            max_side: source.max_side().max(1),
        }
    }

    /// The probe set through the online encoder, on its two leading principal components.
    pub fn draw(&self, trainer: &Trainer, path: &Path) -> Result<()> {
        if self.images.is_empty() {
            return Ok(());
        }
        let weights = trainer.online_encoder()?;
        let batch = self.images.len().min(128);
        let view = trainer.state().views;
        let encoder = DatasetEncoder::new(trainer.gpu(), &weights, &view, batch, self.max_side)?;
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

/// kNN top-1 (%) of the online encoder and of a random-init encoder of the same shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub k: usize,
    pub temperature: f64,
    pub train_images: usize,
    pub test_images: usize,
    pub online_top1: f64,
    pub random_init_top1: f64,
}

impl Verdict {
    /// The run's last lines.
    pub fn lines(&self) -> String {
        let gain = self.online_top1 - self.random_init_top1;
        let word = if gain > 0.0 {
            "BYOL learned"
        } else {
            "BYOL did not beat a random encoder: train longer, or check the run's curves"
        };
        format!(
            "kNN top-1 on {} test images (k {}, bank of {} training images):\n  online encoder       {:6.2}%\n  random-init encoder  {:6.2}%\n{word} ({gain:+.2} points)",
            self.test_images, self.k, self.train_images, self.online_top1, self.random_init_top1
        )
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
    let score = |weights: &Weights| -> Result<f64> {
        let bank = encoded(gpu, weights, train.as_ref(), &view, VERDICT_TRAIN_IMAGES)?;
        let queries = encoded(gpu, weights, test.as_ref(), &view, VERDICT_TEST_IMAGES)?;
        Ok(knn_eval(gpu, &bank, &queries, K, TEMPERATURE)?.top1)
    };
    let online_top1 = score(&trainer.online_encoder()?)?;
    let encoder = config.nets(view.channels)?.encoder;
    let random_init_top1 = score(&crate::nn::random_encoder(&encoder, config.seed))?;
    Ok(Some(Verdict {
        k: K,
        temperature: TEMPERATURE,
        train_images: train.len().min(VERDICT_TRAIN_IMAGES),
        test_images: test.len().min(VERDICT_TEST_IMAGES),
        online_top1,
        random_init_top1,
    }))
}

fn encoded(
    gpu: &Arc<Gpu>,
    weights: &Weights,
    dataset: &dyn Dataset,
    view: &crate::data::ViewSpec,
    limit: usize,
) -> Result<crate::eval::Features> {
    encode_dataset(gpu, weights, dataset, view, 256, Some(limit))
}
