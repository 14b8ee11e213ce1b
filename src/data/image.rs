//! One decoded image as the loader hands it to the augmentations: 8-bit, row-major, 1 or 3
//! interleaved channels.

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub pixels: Vec<u8>,
}

impl Image {
    pub fn new(width: usize, height: usize, channels: usize, pixels: Vec<u8>) -> Result<Self> {
        if !matches!(channels, 1 | 3)
            || pixels.len() != width * height * channels
            || width == 0
            || height == 0
        {
            return Err(Error::Shape {
                op: "image".into(),
                msg: format!(
                    "{width}x{height} with {channels} channels needs {} bytes, got {}",
                    width * height * channels,
                    pixels.len()
                ),
            });
        }
        Ok(Self {
            width,
            height,
            channels,
            pixels,
        })
    }

    /// The value of channel `c` at (x, y) in [0, 1]; a grayscale image answers every channel.
    pub fn at(&self, x: usize, y: usize, c: usize) -> f64 {
        let c = c.min(self.channels - 1);
        f64::from(self.pixels[(y * self.width + x) * self.channels + c]) / 255.0
    }

    /// Decodes a PNG, JPEG or WebP file's bytes, keeping one channel for grayscale files and
    /// three otherwise (alpha is dropped). Images whose longer side exceeds `max_side` are
    /// downscaled (Catmull-Rom) to fit, so every image of a batch fits the device's buffer.
    pub fn decode(bytes: &[u8], max_side: usize) -> std::result::Result<Self, String> {
        let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let img = if w.max(h) > max_side {
            let scale = max_side as f64 / w.max(h) as f64;
            let nw = ((w as f64 * scale).round() as u32).max(1);
            let nh = ((h as f64 * scale).round() as u32).max(1);
            img.resize_exact(nw, nh, image::imageops::FilterType::CatmullRom)
        } else {
            img
        };
        let gray = !img.color().has_color();
        let (width, height) = (img.width() as usize, img.height() as usize);
        let (channels, pixels) = if gray {
            (1, img.into_luma8().into_raw())
        } else {
            (3, img.into_rgb8().into_raw())
        };
        Self::new(width, height, channels, pixels).map_err(|e| e.to_string())
    }
}
