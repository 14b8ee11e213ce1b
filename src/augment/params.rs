//! The per-image random draws of SPEC.md's augmentation table, made on the CPU from a seeded
//! RNG and uploaded with the batch.

use rand::Rng;

/// Colour-jitter operations, in the index order of `ViewParams::order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterOp {
    Brightness = 0,
    Contrast = 1,
    Saturation = 2,
    Hue = 3,
}

impl JitterOp {
    pub const ALL: [JitterOp; 4] = [
        JitterOp::Brightness,
        JitterOp::Contrast,
        JitterOp::Saturation,
        JitterOp::Hue,
    ];
}

/// Everything random about one view of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewParams {
    /// Crop box in source pixels: x0, y0, width, height (integers).
    pub crop: [u32; 4],
    /// Resample the crop bilinearly (torchvision's default) instead of bicubically.
    pub bilinear: bool,
    pub flip: bool,
    /// Whether colour jitter applies; its four draws below are used only then.
    pub jitter: bool,
    /// Brightness: x -> brightness_factor x + brightness (the factor is 1 for the reference
    /// code's additive delta, the delta 0 for torchvision's multiplicative factor).
    pub brightness: f32,
    pub brightness_factor: f32,
    /// Contrast factor around each channel's mean.
    pub contrast: f32,
    /// Saturation factor (HSV).
    pub saturation: f32,
    /// Hue shift, in turns.
    pub hue: f32,
    /// The order in which the four jitter ops apply.
    pub order: [JitterOp; 4],
    pub grayscale: bool,
    /// Gaussian blur sigma in output pixels; 0 for no blur.
    pub blur_sigma: f32,
    pub solarize: bool,
}

/// Floats per image in the device's parameter buffer.
pub const PARAM_WORDS: usize = 16;

impl ViewParams {
    /// The whole image, nothing random: the view used for evaluation.
    pub fn identity(width: usize, height: usize) -> Self {
        Self {
            crop: [0, 0, width as u32, height as u32],
            bilinear: false,
            flip: false,
            jitter: false,
            brightness: 0.0,
            brightness_factor: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
            order: JitterOp::ALL,
            grayscale: false,
            blur_sigma: 0.0,
            solarize: false,
        }
    }

    /// The evaluation view: small images (up to 64 px) whole; larger ones the centre square
    /// of 87.5% of the shorter side (the usual resize-256, crop-224).
    pub fn center(width: usize, height: usize) -> Self {
        if width.max(height) <= 64 {
            return Self::identity(width, height);
        }
        let side = ((width.min(height) as f64) * 0.875).round().max(1.0) as usize;
        Self {
            crop: [
                ((width - side) / 2) as u32,
                ((height - side) / 2) as u32,
                side as u32,
                side as u32,
            ],
            ..Self::identity(width, height)
        }
    }

    /// The layout shaders/augment.wgsl reads.
    pub fn to_words(&self) -> [f32; PARAM_WORDS] {
        let order = self
            .order
            .iter()
            .enumerate()
            .map(|(i, &op)| (op as u32) << (2 * i))
            .sum::<u32>();
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        [
            self.crop[0] as f32,
            self.crop[1] as f32,
            self.crop[2] as f32,
            self.crop[3] as f32,
            b(self.flip),
            b(self.jitter),
            self.brightness,
            self.contrast,
            self.saturation,
            self.hue,
            order as f32,
            b(self.grayscale),
            self.blur_sigma,
            b(self.solarize),
            self.brightness_factor,
            b(self.bilinear),
        ]
    }
}

/// How colour jitter changes brightness by a draw d in [-b, b].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Brightness {
    /// x + d, as the BYOL reference code: lifts a black background to grey.
    Additive,
    /// (1 + d) x, as torchvision's ColorJitter: black stays black.
    Multiplicative,
}

/// How the crop is resized to the view.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Keys' cubic, a = -0.5: the paper's table.
    Bicubic,
    /// torchvision's RandomResizedCrop default.
    Bilinear,
}

/// One column of SPEC.md's table: the probabilities and ranges of a view distribution.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewDistribution {
    pub crop_area: (f64, f64),
    pub crop_log_ratio: (f64, f64),
    pub interpolation: Interpolation,
    pub flip_p: f64,
    pub jitter_p: f64,
    pub brightness: f32,
    pub brightness_mode: Brightness,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub grayscale_p: f64,
    pub blur_p: f64,
    pub blur_sigma: (f32, f32),
    pub solarize_p: f64,
}

impl ViewDistribution {
    /// T, the first view's distribution.
    pub fn t() -> Self {
        Self {
            crop_area: (0.08, 1.0),
            crop_log_ratio: ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln()),
            interpolation: Interpolation::Bicubic,
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.4,
            brightness_mode: Brightness::Additive,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            grayscale_p: 0.2,
            blur_p: 1.0,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
        }
    }

    /// T', the second view's distribution.
    pub fn t_prime() -> Self {
        Self {
            blur_p: 0.1,
            solarize_p: 0.2,
            ..Self::t()
        }
    }

    /// The same distribution without blur (the `small` preset's setting for tiny images).
    pub fn without_blur(self) -> Self {
        Self {
            blur_p: 0.0,
            ..self
        }
    }

    /// The same distribution with crops of at least `crop_min_scale` of the image's area,
    /// resized by `interpolation`, and brightness changed as `mode` says.
    pub fn with_recipe(
        self,
        crop_min_scale: f64,
        interpolation: Interpolation,
        mode: Brightness,
    ) -> Self {
        Self {
            crop_area: (crop_min_scale, self.crop_area.1),
            interpolation,
            brightness_mode: mode,
            ..self
        }
    }

    /// Draws one view's parameters for a `width` x `height` source image.
    pub fn sample(&self, rng: &mut impl Rng, width: usize, height: usize) -> ViewParams {
        let crop = self.sample_crop(rng, width, height);
        let flip = rng.random_bool(self.flip_p);
        let jitter = rng.random_bool(self.jitter_p);
        let sym = |rng: &mut dyn rand::RngCore, r: f32| {
            if r > 0.0 {
                rng.random_range(-r..=r)
            } else {
                0.0
            }
        };
        let delta = sym(rng, self.brightness);
        let (brightness, brightness_factor) = match self.brightness_mode {
            Brightness::Additive => (delta, 1.0),
            Brightness::Multiplicative => (0.0, 1.0 + delta),
        };
        let contrast = 1.0 + sym(rng, self.contrast);
        let saturation = 1.0 + sym(rng, self.saturation);
        let hue = sym(rng, self.hue);
        let mut order = JitterOp::ALL;
        rand::seq::SliceRandom::shuffle(&mut order[..], rng);
        let grayscale = rng.random_bool(self.grayscale_p);
        let blur = rng.random_bool(self.blur_p);
        let sigma = rng.random_range(self.blur_sigma.0..=self.blur_sigma.1);
        let solarize = rng.random_bool(self.solarize_p);
        ViewParams {
            crop,
            bilinear: self.interpolation == Interpolation::Bilinear,
            flip,
            jitter,
            brightness,
            brightness_factor,
            contrast,
            saturation,
            hue,
            order,
            grayscale,
            blur_sigma: if blur { sigma } else { 0.0 },
            solarize,
        }
    }

    /// Random resized crop as torchvision draws it: ten tries at an area and log aspect ratio,
    /// then the centre crop of the whole image with the ratio clamped into range.
    fn sample_crop(&self, rng: &mut impl Rng, width: usize, height: usize) -> [u32; 4] {
        let (w_img, h_img) = (width as f64, height as f64);
        let area = w_img * h_img;
        for _ in 0..10 {
            let target = area * rng.random_range(self.crop_area.0..=self.crop_area.1);
            let ratio = rng
                .random_range(self.crop_log_ratio.0..=self.crop_log_ratio.1)
                .exp();
            let w = (target * ratio).sqrt().round() as usize;
            let h = (target / ratio).sqrt().round() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let x0 = rng.random_range(0..=width - w);
                let y0 = rng.random_range(0..=height - h);
                return [x0 as u32, y0 as u32, w as u32, h as u32];
            }
        }
        let (lo, hi) = (self.crop_log_ratio.0.exp(), self.crop_log_ratio.1.exp());
        let ratio = w_img / h_img;
        let (w, h) = if ratio < lo {
            (width, ((w_img / lo).round() as usize).clamp(1, height))
        } else if ratio > hi {
            (((h_img * hi).round() as usize).clamp(1, width), height)
        } else {
            (width, height)
        };
        [
            ((width - w) / 2) as u32,
            ((height - h) / 2) as u32,
            w as u32,
            h as u32,
        ]
    }
}

/// Radius of the blur kernel for an output side: the kernel covers 10% of the side, made odd
/// (3 taps at 28-32 px, 23 at 224 px), as the reference code builds it.
pub fn blur_radius(side: usize) -> usize {
    side / 10 / 2
}
