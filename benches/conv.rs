//! `cargo bench --bench conv [-- LAYER]`: the table of `byol bench conv` (batch 64), on the
//! adapter that BYOL_BACKEND / BYOL_ADAPTER choose; LAYER keeps only the layers whose name
//! contains it.

mod common;

use byol_wgpu::bench::{conv_report, ConvReport};

fn main() {
    let gpu = common::gpu_or_exit();
    // Cargo passes `--bench` to harness-less benches; any other argument is the layer filter.
    let layer = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    common::print_or_exit(
        conv_report(&gpu, 64, layer.as_deref(), |_| {}),
        ConvReport::table,
    );
}
