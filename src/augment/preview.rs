//! A picture of what the augmentations do: each row an original image (its evaluation view)
//! and several T and T' views of it, all made by the device kernel.

use std::sync::Arc;

use super::{draw, step_rng, Augmenter, ViewDistribution, ViewParams};
use crate::data::{Dataset, Image, Normalization};
use crate::gpu::Gpu;
use crate::viz::Canvas;
use crate::Result;

/// Views of `images`: per image the centre view, then `pairs` (T, T') pairs drawn from `seed`.
/// Returns each view as 8-bit RGB pixels [side * side * 3], row by row, views in order.
pub fn preview_views(
    gpu: &Arc<Gpu>,
    images: &[Image],
    side: usize,
    channels: usize,
    views: &[ViewDistribution; 2],
    pairs: usize,
    seed: u64,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let n = images.len();
    let norm = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    let per_view = channels * side * side;
    let columns = 1 + 2 * pairs;
    let outs = (0..columns)
        .map(|_| gpu.storage_buffer("preview view", (n * per_view * 4) as u64))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&wgpu::Buffer> = outs.iter().collect();
    let max_side = images
        .iter()
        .map(|i| i.width.max(i.height))
        .max()
        .unwrap_or(1);
    let aug = Augmenter::new(gpu, n, side, channels, &norm, max_side, &refs)?;
    let mut params = vec![images
        .iter()
        .map(|i| ViewParams::center(i.width, i.height))
        .collect()];
    let mut rng = step_rng(seed, 0);
    for _ in 0..pairs {
        params.extend(draw(&mut rng, views, images));
    }
    aug.upload(images, &params)?;
    gpu.run(aug.dispatches())?;
    let mut rows = vec![Vec::with_capacity(columns); n];
    for buf in &outs {
        let v = gpu.read_f32(buf, n * per_view)?;
        for (i, row) in rows.iter_mut().enumerate() {
            let img = &v[i * per_view..(i + 1) * per_view];
            let plane = side * side;
            let rgb = (0..plane)
                .flat_map(|p| (0..3).map(move |c| (p, c.min(channels - 1))))
                .map(|(p, c)| (img[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            row.push(rgb);
        }
    }
    Ok(rows)
}

/// `byol augment-preview`: a grid of the first `count` images of `dataset` with their views,
/// each view drawn `scale` times larger.
pub fn preview_grid(
    gpu: &Arc<Gpu>,
    dataset: &dyn Dataset,
    side: usize,
    count: usize,
    pairs: usize,
    views: &[ViewDistribution; 2],
    seed: u64,
) -> Result<Canvas> {
    let n = count.min(dataset.len()).max(1);
    let images: Vec<Image> = (0..dataset.len())
        .filter_map(|i| dataset.load(i).ok())
        .take(n)
        .collect();
    let rows = preview_views(gpu, &images, side, dataset.channels(), views, pairs, seed)?;
    let scale = (96 / side).max(1);
    let cell = side * scale;
    let gap = 4;
    let header = 22;
    let columns = 1 + 2 * pairs;
    let width = columns * (cell + gap) + gap + gap;
    let height = header + rows.len() * (cell + gap) + gap;
    let mut canvas = Canvas::new(width, height, [246, 246, 246]);
    let ink = [40, 40, 40];
    canvas.text(gap as i32, 4, "original", ink, 14.0)?;
    for p in 0..pairs {
        let x = (gap + (1 + 2 * p) * (cell + gap) + gap) as i32;
        canvas.text(x, 4, "t", ink, 14.0)?;
        canvas.text(x + (cell + gap) as i32, 4, "t'", ink, 14.0)?;
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, rgb) in row.iter().enumerate() {
            // A wider gap after the original.
            let x0 = gap + c * (cell + gap) + if c > 0 { gap } else { 0 };
            let y0 = header + r * (cell + gap);
            for y in 0..cell {
                for x in 0..cell {
                    let i = 3 * ((y / scale) * side + x / scale);
                    canvas.set(
                        (x0 + x) as i64,
                        (y0 + y) as i64,
                        [rgb[i], rgb[i + 1], rgb[i + 2]],
                    );
                }
            }
        }
    }
    Ok(canvas)
}
