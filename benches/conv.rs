//! `cargo bench --bench conv [-- LAYER]`: the table of `byol bench conv` (batch 64), on the
//! adapter that BYOL_BACKEND / BYOL_ADAPTER choose; LAYER keeps only the layers whose name
//! contains it.

use byol_wgpu::bench::conv_report;
use byol_wgpu::gpu::Gpu;

fn main() {
    let gpu = match Gpu::from_env() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // Cargo passes `--bench` to harness-less benches; any other argument is the layer filter.
    let layer = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    match conv_report(&gpu, 64, layer.as_deref(), |_| {}) {
        Ok(report) => println!("{}", report.table()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
