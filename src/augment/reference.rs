//! The augmentations on the CPU in f64, step for step as shaders/augment.wgsl runs them: the
//! reference the device kernel is tested against.

use super::params::{blur_radius, JitterOp, ViewParams};
use crate::data::{Image, Normalization};

/// Keys' cubic convolution weight with a = -0.5 (PIL's and TensorFlow's bicubic).
pub fn cubic_weight(t: f64) -> f64 {
    const A: f64 = -0.5;
    let t = t.abs();
    if t <= 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A
    } else {
        0.0
    }
}

/// The tent kernel: over the same 4 x 4 taps as the cubic, bilinear resampling.
pub fn tent_weight(t: f64) -> f64 {
    (1.0 - t.abs()).max(0.0)
}

/// RGB in [0, 1] to hue (turns), saturation, value; as TensorFlow converts.
pub fn rgb_to_hsv([r, g, b]: [f64; 3]) -> [f64; 3] {
    let v = r.max(g).max(b);
    let range = v - r.min(g).min(b);
    let s = if v > 0.0 { range / v } else { 0.0 };
    let h = if range <= 0.0 {
        0.0
    } else if v == r {
        (g - b) / range
    } else if v == g {
        (b - r) / range + 2.0
    } else {
        (r - g) / range + 4.0
    };
    [(h / 6.0).rem_euclid(1.0), s, v]
}

pub fn hsv_to_rgb([h, s, v]: [f64; 3]) -> [f64; 3] {
    let h6 = h * 6.0;
    let r = ((h6 - 3.0).abs() - 1.0).clamp(0.0, 1.0);
    let g = (2.0 - (h6 - 2.0).abs()).clamp(0.0, 1.0);
    let b = (2.0 - (h6 - 4.0).abs()).clamp(0.0, 1.0);
    [r, g, b].map(|c| ((c - 1.0) * s + 1.0) * v)
}

/// One view [channels, side, side] of `image` for `p`, normalised with `norm`.
pub fn augment(
    image: &Image,
    p: &ViewParams,
    side: usize,
    channels: usize,
    norm: &Normalization,
) -> Vec<f64> {
    let plane = side * side;
    let mut x = vec![0.0f64; channels * plane];
    let [x0, y0, cw, ch] = p.crop.map(|v| v as usize);
    let sx = cw as f64 / side as f64;
    let sy = ch as f64 / side as f64;
    let weight = if p.bilinear {
        tent_weight
    } else {
        cubic_weight
    };
    for oy in 0..side {
        for ox in 0..side {
            let fx = if p.flip { side - 1 - ox } else { ox };
            let u = (fx as f64 + 0.5) * sx - 0.5;
            let v = (oy as f64 + 0.5) * sy - 0.5;
            let (iu, iv) = (u.floor(), v.floor());
            for c in 0..channels {
                let mut acc = 0.0;
                for j in -1..=2 {
                    let wy = weight(v - (iv + j as f64));
                    let yy = (iv as i64 + j).clamp(0, ch as i64 - 1) as usize + y0;
                    for i in -1..=2 {
                        let wx = weight(u - (iu + i as f64));
                        let xx = (iu as i64 + i).clamp(0, cw as i64 - 1) as usize + x0;
                        acc += wx * wy * image.at(xx, yy, c);
                    }
                }
                x[c * plane + oy * side + ox] = acc.clamp(0.0, 1.0);
            }
        }
    }
    let color = channels == 3;
    if p.jitter {
        for op in p.order {
            match op {
                JitterOp::Brightness => {
                    x.iter_mut().for_each(|v| {
                        let (f, d) = (f64::from(p.brightness_factor), f64::from(p.brightness));
                        *v = (f * *v + d).clamp(0.0, 1.0)
                    });
                }
                JitterOp::Contrast => {
                    for c in 0..channels {
                        let ch = &mut x[c * plane..(c + 1) * plane];
                        let mean = ch.iter().sum::<f64>() / plane as f64;
                        let f = f64::from(p.contrast);
                        ch.iter_mut()
                            .for_each(|v| *v = (f * (*v - mean) + mean).clamp(0.0, 1.0));
                    }
                }
                JitterOp::Saturation | JitterOp::Hue if color => {
                    for i in 0..plane {
                        let [h, s, v] = rgb_to_hsv([x[i], x[plane + i], x[2 * plane + i]]);
                        let (h, s) = if op == JitterOp::Saturation {
                            (h, (s * f64::from(p.saturation)).clamp(0.0, 1.0))
                        } else {
                            ((h + f64::from(p.hue)).rem_euclid(1.0), s)
                        };
                        let rgb = hsv_to_rgb([h, s, v]);
                        for c in 0..3 {
                            x[c * plane + i] = rgb[c].clamp(0.0, 1.0);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if p.grayscale && color {
        for i in 0..plane {
            let g = 0.2989 * x[i] + 0.5870 * x[plane + i] + 0.1140 * x[2 * plane + i];
            for c in 0..3 {
                x[c * plane + i] = g;
            }
        }
    }
    if p.blur_sigma > 0.0 {
        blur(&mut x, channels, side, f64::from(p.blur_sigma));
    }
    for c in 0..channels {
        let (mean, std) = (f64::from(norm.mean[c]), f64::from(norm.std[c]));
        for v in &mut x[c * plane..(c + 1) * plane] {
            if p.solarize && *v >= 0.5 {
                *v = 1.0 - *v;
            }
            *v = (v.clamp(0.0, 1.0) - mean) / std;
        }
    }
    x
}

/// Normalised Gaussian weights for offsets -radius..=radius.
pub fn gaussian_kernel(radius: usize, sigma: f64) -> Vec<f64> {
    let w: Vec<f64> = (-(radius as i64)..=radius as i64)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// Separable blur, horizontal then vertical, with zero padding (the reference code's 'SAME').
fn blur(x: &mut [f64], channels: usize, side: usize, sigma: f64) {
    let r = blur_radius(side) as i64;
    let k = gaussian_kernel(r as usize, sigma);
    let plane = side * side;
    let mut tmp = vec![0.0; x.len()];
    for c in 0..channels {
        for y in 0..side {
            for xo in 0..side {
                let mut acc = 0.0;
                for d in -r..=r {
                    let xx = xo as i64 + d;
                    if (0..side as i64).contains(&xx) {
                        acc += k[(d + r) as usize] * x[c * plane + y * side + xx as usize];
                    }
                }
                tmp[c * plane + y * side + xo] = acc;
            }
        }
        for y in 0..side {
            for xo in 0..side {
                let mut acc = 0.0;
                for d in -r..=r {
                    let yy = y as i64 + d;
                    if (0..side as i64).contains(&yy) {
                        acc += k[(d + r) as usize] * tmp[c * plane + yy as usize * side + xo];
                    }
                }
                x[c * plane + y * side + xo] = acc;
            }
        }
    }
}
