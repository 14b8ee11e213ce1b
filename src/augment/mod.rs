//! The paper's augmentations on the device: per-image parameters drawn on the CPU from a seeded
//! RNG (params.rs), one kernel per view over the whole batch (shaders/augment.wgsl) writing
//! straight into the buffers the training step reads, and the f64 reference (reference.rs).

mod params;
mod preview;
pub mod reference;

pub use params::{
    blur_radius, Brightness, Interpolation, JitterOp, ViewDistribution, ViewParams, PARAM_WORDS,
};
pub use preview::{preview_grid, preview_views};

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Image, Normalization};
use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::{Error, Result};

/// The RNG of one training step's augmentation draws: a function of the run's seed and the
/// step alone, so a resumed run draws what an uninterrupted one would.
pub fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6175_676d_656e_7473);
    rng.set_stream(step);
    rng
}

/// Draws parameters for every image and every view distribution: `[view][image]`.
pub fn draw(
    rng: &mut ChaCha8Rng,
    views: &[ViewDistribution],
    images: &[Image],
) -> Vec<Vec<ViewParams>> {
    let mut out = vec![Vec::with_capacity(images.len()); views.len()];
    for img in images {
        for (v, dist) in views.iter().enumerate() {
            out[v].push(dist.sample(rng, img.width, img.height));
        }
    }
    out
}

/// An image converted to `channels` (grayscale replicated to RGB, RGB to luma).
pub fn with_channels(image: &Image, channels: usize) -> Image {
    if image.channels == channels {
        return image.clone();
    }
    let pixels = if channels == 3 {
        image.pixels.iter().flat_map(|&g| [g, g, g]).collect()
    } else {
        image
            .pixels
            .chunks_exact(3)
            .map(|p| {
                let g =
                    0.2989 * f64::from(p[0]) + 0.5870 * f64::from(p[1]) + 0.1140 * f64::from(p[2]);
                g.round().clamp(0.0, 255.0) as u8
            })
            .collect()
    };
    Image {
        channels,
        pixels,
        ..image.clone()
    }
}

/// The largest blur radius the kernel holds (shaders/augment.wgsl's MAX_RADIUS).
const MAX_BLUR_RADIUS: usize = 63;

/// Augments batches of `batch` images into `views` output buffers of [batch, channels, side,
/// side] floats each. Every buffer is made once; a step uploads pixels and parameters only.
pub struct Augmenter {
    gpu: Arc<Gpu>,
    batch: usize,
    channels: usize,
    capacity: usize,
    source: wgpu::Buffer,
    info: wgpu::Buffer,
    params: Vec<wgpu::Buffer>,
    _scratch: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
}

impl Augmenter {
    /// `max_side` bounds the source images' sides (the source buffer holds `batch` such
    /// squares); `outputs` are the views' destination buffers.
    pub fn new(
        gpu: &Arc<Gpu>,
        batch: usize,
        side: usize,
        channels: usize,
        norm: &Normalization,
        max_side: usize,
        outputs: &[&wgpu::Buffer],
    ) -> Result<Self> {
        // Room for a batch of max_side squares, within what one binding may hold; a batch of
        // larger images is refused at upload.
        let binding_words = (gpu.max_binding_bytes() / 4) as usize;
        let capacity = (batch * max_side * max_side).min(binding_words);
        if blur_radius(side) > MAX_BLUR_RADIUS {
            return Err(Error::Shape {
                op: "augment".into(),
                msg: format!("views of {side} px need a blur radius above {MAX_BLUR_RADIUS}: use at most 1279 px"),
            });
        }
        let view_floats = (batch * channels * side * side) as u64 * 4;
        for o in outputs {
            if o.size() < view_floats {
                return Err(Error::Shape {
                    op: "augment".into(),
                    msg: format!(
                        "a view buffer of {} bytes cannot hold {view_floats}",
                        o.size()
                    ),
                });
            }
        }
        let source = gpu.storage_buffer("augment source pixels", capacity as u64 * 4)?;
        let info = gpu.storage_buffer("augment image info", batch as u64 * 16)?;
        let params = outputs
            .iter()
            .map(|_| gpu.storage_buffer("augment params", (batch * PARAM_WORDS * 4) as u64))
            .collect::<Result<Vec<_>>>()?;
        let scratch = gpu.storage_buffer("augment scratch", view_floats)?;
        let mut uniforms = vec![
            side as u32,
            channels as u32,
            blur_radius(side) as u32,
            batch as u32,
        ];
        uniforms.extend(norm.mean.iter().chain([&0.0]).map(|v| v.to_bits()));
        uniforms.extend(norm.std.iter().chain([&1.0]).map(|v| v.to_bits()));
        let key = KernelKey::new("augment", "augment");
        let dispatches = outputs
            .iter()
            .zip(&params)
            .map(|(out, p)| {
                gpu.dispatch(
                    &key,
                    &uniforms,
                    &[(1, &source), (2, &info), (3, p), (4, out), (5, &scratch)],
                    [batch as u32, 1, 1],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            gpu: gpu.clone(),
            batch,
            channels,
            capacity,
            source,
            info,
            params,
            _scratch: scratch,
            dispatches,
        })
    }

    /// Uploads a batch's pixels and each view's parameters (`params[view][image]`).
    pub fn upload(&self, images: &[Image], params: &[Vec<ViewParams>]) -> Result<()> {
        if images.len() != self.batch || params.len() != self.params.len() {
            return Err(Error::Shape {
                op: "augment".into(),
                msg: format!(
                    "{} images and {} views for a batch of {} and {} views",
                    images.len(),
                    params.len(),
                    self.batch,
                    self.params.len()
                ),
            });
        }
        let mut pixels: Vec<u32> = Vec::with_capacity(self.capacity);
        let mut info: Vec<u32> = Vec::with_capacity(4 * self.batch);
        for img in images {
            let img = with_channels(img, self.channels);
            info.extend([pixels.len() as u32, img.width as u32, img.height as u32, 0]);
            pixels.extend(img.pixels.chunks_exact(img.channels).map(|px| {
                px.iter()
                    .enumerate()
                    .map(|(c, &v)| u32::from(v) << (8 * c))
                    .sum::<u32>()
            }));
        }
        if pixels.len() > self.capacity {
            return Err(Error::Shape {
                op: "augment".into(),
                msg: format!(
                    "the batch has {} source pixels, the device buffer holds {}: use a smaller batch",
                    pixels.len(),
                    self.capacity
                ),
            });
        }
        let queue = &self.gpu.queue;
        queue.write_buffer(&self.source, 0, bytemuck::cast_slice(&pixels));
        queue.write_buffer(&self.info, 0, bytemuck::cast_slice(&info));
        for (buf, view) in self.params.iter().zip(params) {
            let words: Vec<f32> = view.iter().flat_map(|p| p.to_words()).collect();
            queue.write_buffer(buf, 0, bytemuck::cast_slice(&words));
        }
        Ok(())
    }

    /// The kernels that write the views, for the caller's command encoder.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}
