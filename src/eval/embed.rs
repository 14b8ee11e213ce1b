//! The representation y (the encoder's pooled features) of many images, in inference mode.

use std::path::Path;
use std::sync::Arc;

use crate::data::npy;
use crate::gpu::Gpu;
use crate::graph::{Executable, Graph, TensorId};
use crate::nn::{upload, Layers, Mode, ResNetConfig, Weights};
use crate::{Error, Result};

/// The prefix under which `weights` holds a ResNet: a torchvision file, a fixture or checkpoint
/// of this project's (`encoder.`, `online.encoder.`).
pub fn find_encoder_prefix(weights: &Weights) -> Result<&'static str> {
    ["", "encoder.", "online.encoder."]
        .into_iter()
        .find(|p| weights.shape(&format!("{p}conv1.weight")).is_some())
        .ok_or_else(|| Error::File { path: weights.path.clone(), msg: "no ResNet encoder in this file (no conv1.weight, encoder.conv1.weight or online.encoder.conv1.weight)".into() })
}

/// An encoder compiled for batches of `batch` images of one size, in inference mode.
pub struct Encoder {
    pub config: ResNetConfig,
    exe: Executable,
    params: Vec<crate::nn::NamedParam>,
    input: TensorId,
    image_shape: [usize; 3],
    batch: usize,
    out_dim: usize,
}

impl Encoder {
    pub fn new(
        gpu: &Arc<Gpu>,
        weights: &Weights,
        batch: usize,
        image_shape: [usize; 3],
    ) -> Result<Self> {
        let prefix = find_encoder_prefix(weights)?;
        let config = ResNetConfig::infer(weights, prefix)?;
        if image_shape[0] != config.in_channels {
            return Err(Error::Shape {
                op: "embed".into(),
                msg: format!(
                    "the images have {} channels, the encoder takes {}",
                    image_shape[0], config.in_channels
                ),
            });
        }
        let mut g = Graph::new();
        let input = g.input(
            "images",
            &[batch, image_shape[0], image_shape[1], image_shape[2]],
        );
        let mut layers = Layers::new(&mut g, Mode::Eval, "");
        let features = config.build(&mut layers, input);
        let params = layers.params;
        let exe = Executable::new(gpu, &g, &[features])?;
        upload(&exe, &params, weights, prefix)?;
        let params = params.clone();
        let out_dim = config.out_dim();
        Ok(Self {
            config,
            exe,
            params,
            input,
            image_shape,
            batch,
            out_dim,
        })
    }

    /// Replaces the weights with `weights`' (same architecture; a later training state).
    pub fn set_weights(&self, weights: &Weights) -> Result<()> {
        upload(
            &self.exe,
            &self.params,
            weights,
            find_encoder_prefix(weights)?,
        )
    }

    /// Images per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The device buffer of the input images, for kernels that write it (the augmentations).
    pub fn input_buffer(&self) -> Result<&wgpu::Buffer> {
        self.exe.input_buffer(self.input)
    }

    /// Runs `before` (which fills the input buffer) and the encoder in one submission;
    /// returns the representations [batch, out_dim].
    pub fn embed_after(&self, before: &[crate::gpu::Dispatch]) -> Result<Vec<f32>> {
        let pending = self.exe.submit(before, 0..self.exe.phase_count())?;
        Ok(self.exe.collect(pending)?.remove(0))
    }

    /// Representations [N, out_dim] of `images` [N, C, H, W] (any N: the last batch is padded).
    pub fn embed(&self, images: &[f32]) -> Result<Vec<f32>> {
        let per_image: usize = self.image_shape.iter().product();
        let n = images.len() / per_image;
        let mut out = Vec::with_capacity(n * self.out_dim);
        let mut padded = vec![0.0; self.batch * per_image];
        for chunk in images.chunks(self.batch * per_image) {
            let rows = chunk.len() / per_image;
            padded[..chunk.len()].copy_from_slice(chunk);
            padded[chunk.len()..].fill(0.0);
            let y = self.exe.run(&[(self.input, &padded)])?.remove(0);
            out.extend_from_slice(&y[..rows * self.out_dim]);
        }
        Ok(out)
    }
}

/// `byol embed --npy`: images [N, C, H, W] float32, already normalised, to representations [N, D].
pub fn embed_npy(
    gpu: &Arc<Gpu>,
    weights: &Weights,
    images: &Path,
    out: &Path,
    batch: usize,
) -> Result<(usize, usize)> {
    let (shape, data) = npy::read(images)?;
    let &[n, c, h, w] = shape.as_slice() else {
        return Err(Error::File {
            path: images.to_path_buf(),
            msg: format!("expected images [N, C, H, W], got shape {shape:?}"),
        });
    };
    if n == 0 {
        return Err(Error::File {
            path: images.to_path_buf(),
            msg: "no images".into(),
        });
    }
    let encoder = super::features::halving_until_it_fits(batch.clamp(1, n), |batch| {
        Encoder::new(gpu, weights, batch, [c, h, w])
    })?;
    let y = encoder.embed(&data)?;
    npy::write(out, &[n, encoder.config.out_dim()], &y)?;
    Ok((n, encoder.config.out_dim()))
}
