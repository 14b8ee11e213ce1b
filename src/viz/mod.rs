//! Pictures a run writes: training curves, the map of its representations, grids of augmented
//! views. Charts and text are drawn by plotters on RGB buffers (with the Ubuntu font that
//! egui ships, so no system font is needed) and saved as PNG.

mod pca;

pub use pca::pca_2d;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

pub type Rgb = [u8; 3];

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The font every picture uses, registered on first use.
fn font(size: f64) -> FontDesc<'static> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is a constant of the build: it parses, or nothing could be drawn.
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .unwrap_or_else(|_| panic!("the bundled Ubuntu font does not parse"));
    });
    ("sans-serif", size).into_font()
}

fn draw_error(e: impl std::fmt::Display) -> Error {
    Error::Training(format!("drawing a picture failed: {e}"))
}

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

    /// A drawing area over the whole canvas.
    fn area(&mut self) -> Area<'_> {
        BitMapBackend::with_buffer(&mut self.pixels, (self.width as u32, self.height as u32))
            .into_drawing_area()
    }

    /// `s` with its top-left corner at (x, y), `size` pixels high.
    pub fn text(&mut self, x: i32, y: i32, s: &str, c: Rgb, size: f64) -> Result<()> {
        let area = self.area();
        let style = font(size).color(&RGBColor(c[0], c[1], c[2]));
        area.draw_text(s, &style, (x, y)).map_err(draw_error)?;
        area.present().map_err(draw_error)
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

/// One chart of `curves`: its title, what its y axis measures, and its named series of (step,
/// value) points. A chart with several series gets a legend.
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

/// The range an axis covers: that of the finite values, padded, and widened when they are
/// all equal; None when there are none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    let pad = ((hi - lo) * 0.05).max(lo.abs().max(1e-12) * 1e-3);
    Some((lo - pad, hi + pad))
}

/// Tick labels for an axis over lo..hi: as many decimals as its ticks (about ten over the
/// range) need to differ, scientific for tiny or huge magnitudes.
fn ticks(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let magnitude = lo.abs().max(hi.abs());
    let scientific = magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude);
    let tick = ((hi - lo) / 10.0).max(1e-300);
    let decimals = (-tick.log10().floor()).clamp(0.0, 10.0) as usize;
    move |v: &f64| {
        if scientific {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// Charts stacked vertically over the same steps, each with the step on its lower axis and the
/// epoch (`steps_per_epoch` steps each) on its upper one.
pub fn curves(path: &Path, panels: &[Panel], steps_per_epoch: f64) -> Result<()> {
    let (width, height) = (760, 240);
    let mut canvas = Canvas::new(width, height * panels.len().max(1), [255, 255, 255]);
    {
        let root = canvas.area();
        for (panel, area) in panels
            .iter()
            .zip(root.split_evenly((panels.len().max(1), 1)))
        {
            draw_panel(&area, panel, steps_per_epoch.max(1e-9))?;
        }
        root.present().map_err(draw_error)?;
    }
    canvas.save_png(path)
}

fn draw_panel(area: &Area, panel: &Panel, steps_per_epoch: f64) -> Result<()> {
    let points = || panel.series.iter().flat_map(|(_, p)| p.iter());
    let xs = span(points().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let ys = span(points().map(|p| p.1));
    let (y0, y1) = ys.unwrap_or((0.0, 1.0));
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, font(17.0))
        .margin(8)
        .x_label_area_size(34)
        .top_x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(xs.0..xs.1, y0..y1)
        .map_err(draw_error)?
        .set_secondary_coord(xs.0 / steps_per_epoch..xs.1 / steps_per_epoch, y0..y1);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(panel.y_label)
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .y_label_formatter(&ticks(y0, y1))
        .x_label_formatter(&ticks(xs.0, xs.1))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(draw_error)?;
    chart
        .configure_secondary_axes()
        .x_desc("epoch")
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .x_label_formatter(&ticks(xs.0 / steps_per_epoch, xs.1 / steps_per_epoch))
        .draw()
        .map_err(draw_error)?;
    if ys.is_none() {
        let (w, h) = area.dim_in_pixel();
        let style = font(15.0).color(&RGBColor(90, 90, 90));
        area.draw_text("no data yet", &style, (w as i32 / 2 - 40, h as i32 / 2))
            .map_err(draw_error)?;
        return Ok(());
    }
    for (i, (name, series)) in panel.series.iter().enumerate() {
        let color = class_color(i);
        let finite: Vec<(f64, f64)> = series.iter().copied().filter(|p| p.1.is_finite()).collect();
        let drawn = if finite.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(finite[0], 3, color.filled())))
        } else {
            chart.draw_series(LineSeries::new(finite, color.stroke_width(2)))
        }
        .map_err(draw_error)?;
        drawn.label(*name).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
    }
    if panel.series.len() > 1 {
        chart
            .configure_series_labels()
            .label_font(font(12.0))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

/// Matplotlib's ten category colours, then plotters' palette.
fn class_color(c: usize) -> RGBColor {
    const TAB10: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    TAB10.get(c).copied().unwrap_or_else(|| {
        let (r, g, b) = Palette99::pick(c).rgb();
        RGBColor(r, g, b)
    })
}

/// A scatter of 2-D points coloured by class, with a legend beside it naming the classes
/// (`names`, or "class k" where there are none); unlabelled points grey.
pub fn scatter(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    points: &[[f64; 2]],
    labels: &[Option<u32>],
    names: &[String],
) -> Result<()> {
    let mut canvas = Canvas::new(760, 600, [255, 255, 255]);
    {
        let root = canvas.area();
        let (plot, legend) = root.split_horizontally(590);
        let xs = span(points.iter().map(|p| p[0])).unwrap_or((-1.0, 1.0));
        let ys = span(points.iter().map(|p| p[1])).unwrap_or((-1.0, 1.0));
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, font(17.0))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .x_label_formatter(&ticks(xs.0, xs.1))
            .y_label_formatter(&ticks(ys.0, ys.1))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(draw_error)?;
        let of_class = |c: Option<u32>| -> Vec<(f64, f64)> {
            points
                .iter()
                .zip(labels)
                .filter(|(_, l)| **l == c)
                .map(|(p, _)| (p[0], p[1]))
                .collect()
        };
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(
                of_class(None)
                    .into_iter()
                    .map(|p| Circle::new(p, 3, grey.filled())),
            )
            .map_err(draw_error)?;
        let classes = labels.iter().flatten().max().map_or(0, |&m| m as usize + 1);
        for c in 0..classes {
            let color = class_color(c);
            chart
                .draw_series(
                    of_class(Some(c as u32))
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(draw_error)?;
            let y = 50 + 24 * c as i32;
            let name = names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("class {c}"));
            legend
                .draw(&Circle::new((14, y), 5, color.filled()))
                .map_err(draw_error)?;
            legend
                .draw_text(&name, &font(14.0).color(&BLACK), (26, y - 8))
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    canvas.save_png(path)
}
