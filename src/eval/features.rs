//! Representations of every image of a dataset: evaluation views made by the augmentation
//! kernel straight into the encoder's input, the encoder in inference mode.

use std::sync::Arc;

use super::Encoder;
use crate::augment::{Augmenter, ViewParams};
use crate::data::{Dataset, Image, ViewSpec};
use crate::gpu::Gpu;
use crate::nn::Weights;
use crate::{Error, Result};

/// Representations [len, dim], row i for image i, with the labels where the dataset has them.
pub struct Features {
    pub data: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<Option<u32>>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Every label, or an error for unlabelled data.
    pub fn require_labels(&self, what: &str) -> Result<Vec<u32>> {
        self.labels
            .iter()
            .map(|l| {
                l.ok_or_else(|| {
                    Error::Config(format!(
                        "{what} needs a labelled dataset (class subfolders, IDX or CIFAR labels)"
                    ))
                })
            })
            .collect()
    }
}

/// An encoder fed by the augmentation kernel's centre views: images in, representations out.
pub struct DatasetEncoder {
    pub encoder: Encoder,
    augmenter: Augmenter,
}

impl DatasetEncoder {
    /// For batches of `batch` images no larger than `max_side`, seen as `view` says, or of
    /// fewer where the adapter cannot hold `batch` at once.
    pub fn new(
        gpu: &Arc<Gpu>,
        weights: &Weights,
        view: &ViewSpec,
        batch: usize,
        max_side: usize,
    ) -> Result<Self> {
        let (side, channels) = (view.side, view.channels);
        halving_until_it_fits(batch, |batch| {
            let encoder = Encoder::new(gpu, weights, batch, [channels, side, side])?;
            let augmenter =
                centre_view_augmenter(gpu, view, batch, max_side, encoder.input_buffer()?)?;
            Ok(Self { encoder, augmenter })
        })
    }

    /// Representations [images.len(), dim] (any count: batches are padded with copies).
    pub fn encode(&self, images: &[Image]) -> Result<Vec<f32>> {
        let batch = self.encoder.batch();
        let dim = self.encoder.out_dim();
        let mut out = Vec::with_capacity(images.len() * dim);
        for chunk in images.chunks(batch) {
            upload_centre_views(&self.augmenter, chunk, batch)?;
            let y = self.encoder.embed_after(self.augmenter.dispatches())?;
            out.extend_from_slice(&y[..chunk.len() * dim]);
        }
        Ok(out)
    }
}

/// The centre views (`view`) of `dataset` (all of it, or its first `limit` images) through
/// `weights`' encoder. Unreadable images are an error here: an evaluation must see them all.
pub fn encode_dataset(
    gpu: &Arc<Gpu>,
    weights: &Weights,
    dataset: &dyn Dataset,
    view: &ViewSpec,
    batch: usize,
    limit: Option<usize>,
) -> Result<Features> {
    let n = limit.unwrap_or(usize::MAX).min(dataset.len());
    if n == 0 {
        return Err(Error::Config("the dataset has no images".into()));
    }
    let encoder = DatasetEncoder::new(gpu, weights, view, batch.clamp(1, n), dataset.max_side())?;
    let batch = encoder.encoder.batch();
    collect_batches(dataset, n, batch, encoder.encoder.out_dim(), |images| {
        encoder.encode(images)
    })
}

/// The normalised pixels of the centre views as features (the raw-pixel baseline), made by
/// the same augmentation kernel.
pub fn pixel_features(
    gpu: &Arc<Gpu>,
    dataset: &dyn Dataset,
    view: &ViewSpec,
    batch: usize,
    limit: Option<usize>,
) -> Result<Features> {
    let n = limit.unwrap_or(usize::MAX).min(dataset.len());
    if n == 0 {
        return Err(Error::Config("the dataset has no images".into()));
    }
    let dim = view.channels * view.side * view.side;
    let (batch, views, augmenter) = halving_until_it_fits(batch.clamp(1, n), |batch| {
        let views = gpu.storage_buffer("pixel views", (batch * dim * 4) as u64)?;
        let augmenter = centre_view_augmenter(gpu, view, batch, dataset.max_side(), &views)?;
        Ok((batch, views, augmenter))
    })?;
    collect_batches(dataset, n, batch, dim, |images| {
        upload_centre_views(&augmenter, images, batch)?;
        gpu.run(augmenter.dispatches())?;
        gpu.read_f32(&views, images.len() * dim)
    })
}

/// The augmentation kernel set to write `view`'s centre views of `batch` images into `out`.
fn centre_view_augmenter(
    gpu: &Arc<Gpu>,
    view: &ViewSpec,
    batch: usize,
    max_side: usize,
    out: &wgpu::Buffer,
) -> Result<Augmenter> {
    Augmenter::new(
        gpu,
        batch,
        view.side,
        view.channels,
        &view.normalization,
        max_side,
        &[out],
    )
}

/// `make(batch)`, halving the batch while the adapter cannot hold its buffers. Features do
/// not depend on the batch (inference-mode batch norm), so only speed changes.
pub(crate) fn halving_until_it_fits<T>(
    batch: usize,
    mut make: impl FnMut(usize) -> Result<T>,
) -> Result<T> {
    let mut batch = batch;
    loop {
        match make(batch) {
            Err(Error::AdapterLimit { .. }) if batch > 1 => batch /= 2,
            result => return result,
        }
    }
}

/// Uploads the centre views of `images`, padded to `batch` with copies of the last.
fn upload_centre_views(augmenter: &Augmenter, images: &[Image], batch: usize) -> Result<()> {
    let mut padded = images.to_vec();
    while padded.len() < batch {
        padded.push(images[images.len() - 1].clone());
    }
    let views = padded
        .iter()
        .map(|i| ViewParams::center(i.width, i.height))
        .collect();
    augmenter.upload(&padded, &[views])
}

/// Features [n, dim] of the first `n` images of `dataset`, `features` turning each batch of
/// up to `batch` images into their rows.
fn collect_batches(
    dataset: &dyn Dataset,
    n: usize,
    batch: usize,
    dim: usize,
    mut features: impl FnMut(&[Image]) -> Result<Vec<f32>>,
) -> Result<Features> {
    let mut data = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let rows = batch.min(n - start);
        let images = load_range(dataset, start, rows)?;
        labels.extend((start..start + rows).map(|i| dataset.label(i)));
        data.extend(features(&images)?);
    }
    Ok(Features { data, dim, labels })
}

fn load_range(dataset: &dyn Dataset, start: usize, rows: usize) -> Result<Vec<Image>> {
    (start..start + rows)
        .map(|i| {
            dataset.load(i).map_err(|reason| Error::File {
                path: dataset.describe(i).into(),
                msg: reason,
            })
        })
        .collect()
}
