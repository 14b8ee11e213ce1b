//! `cargo bench --bench matmul`: the matmul table of `byol bench matmul`, on the adapter that
//! BYOL_BACKEND / BYOL_ADAPTER choose.

use byol_wgpu::bench::{matmul_report, matmul_shapes};
use byol_wgpu::gpu::Gpu;

fn main() {
    let gpu = match Gpu::from_env() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match matmul_report(&gpu, &matmul_shapes(), |_| {}) {
        Ok(report) => println!("{}", report.table()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
