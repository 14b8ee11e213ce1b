//! Pictures a run writes: training curves and grids of augmented views, as PNG.

mod font;
mod pca;

pub use pca::pca_2d;

use std::path::Path;

use crate::{Error, Result};

pub type Rgb = [u8; 3];

/// An RGB image to draw on.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Self {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// A line from (x0, y0) to (x1, y1) (Bresenham).
    pub fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.set(x0, y0, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Text in the 5x7 font, each font pixel `scale` pixels wide; returns the width drawn.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb, scale: i64) -> i64 {
        let mut cx = x;
        for ch in s.chars() {
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(cx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
        cx - x
    }

    /// Copies `other` with its top-left corner at (x, y).
    pub fn paste(&mut self, other: &Canvas, x: i64, y: i64) {
        for yy in 0..other.height {
            for xx in 0..other.width {
                let i = 3 * (yy * other.width + xx);
                let c = [other.pixels[i], other.pixels[i + 1], other.pixels[i + 2]];
                self.set(x + xx as i64, y + yy as i64, c);
            }
        }
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        let img =
            image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
                .expect("canvas size matches its pixels");
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        crate::nn::write_atomically(path, &bytes)
    }
}

const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const LINE: Rgb = [31, 119, 180];

/// A number in at most 7 characters.
fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e7 {
        format!("{v:.0}")
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.chars().take(7).collect()
    }
}

/// One panel: a title, the y range, and the curve of (x, y) points.
pub fn plot(
    canvas: &mut Canvas,
    (x, y, w, h): (i64, i64, i64, i64),
    title: &str,
    points: &[(f64, f64)],
) {
    canvas.text(x + 4, y + 4, title, INK, 2);
    let (px, py, pw, ph) = (x + 60, y + 24, w - 70, h - 40);
    canvas.rect(px, py, pw, ph, [255, 255, 255]);
    for k in 0..=4 {
        let gy = py + ph * k / 4;
        canvas.line((px, gy), (px + pw - 1, gy), GRID);
    }
    let finite: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    if finite.is_empty() {
        canvas.text(px + 8, py + ph / 2 - 7, "no data", INK, 2);
        return;
    }
    let (xmin, xmax) = (
        finite[0].0,
        finite[finite.len() - 1].0.max(finite[0].0 + 1e-9),
    );
    let ymin = finite.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut ymax = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if ymax - ymin < 1e-12 {
        ymax = ymin + 1e-12f64.max(ymin.abs() * 1e-3);
    }
    canvas.text(x + 2, py, &short(ymax), INK, 1);
    canvas.text(x + 2, py + ph - 7, &short(ymin), INK, 1);
    canvas.text(px, py + ph + 4, &short(xmin), INK, 1);
    let right = short(xmax);
    canvas.text(
        px + pw - 6 * right.len() as i64,
        py + ph + 4,
        &right,
        INK,
        1,
    );
    let to_px = |(vx, vy): (f64, f64)| {
        (
            px + ((vx - xmin) / (xmax - xmin) * (pw - 1) as f64).round() as i64,
            py + ph - 1 - ((vy - ymin) / (ymax - ymin) * (ph - 1) as f64).round() as i64,
        )
    };
    if finite.len() == 1 {
        let (cx, cy) = to_px(finite[0]);
        canvas.rect(cx - 2, cy - 2, 5, 5, LINE);
    }
    for pair in finite.windows(2) {
        canvas.line(to_px(pair[0]), to_px(pair[1]), LINE);
    }
}

/// Panels stacked vertically, one per named series over the same x axis.
pub fn curves(path: &Path, series: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    let (w, h) = (640i64, 170i64);
    let mut canvas = Canvas::new(
        w as usize,
        (h * series.len() as i64) as usize,
        [246, 246, 246],
    );
    for (i, (title, points)) in series.iter().enumerate() {
        plot(&mut canvas, (0, h * i as i64, w, h), title, points);
    }
    canvas.save_png(path)
}
