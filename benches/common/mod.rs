//! What the harness-less benches share: the adapter, and a report printed or its error.

use std::sync::Arc;

use byol_wgpu::gpu::Gpu;

/// The adapter BYOL_BACKEND / BYOL_ADAPTER choose, or exit 2 with the reason.
pub fn gpu_or_exit() -> Arc<Gpu> {
    Gpu::from_env().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    })
}

/// Prints a report's table, or exits 1 with the error.
pub fn print_or_exit<R>(report: byol_wgpu::Result<R>, table: impl Fn(&R) -> String) {
    match report {
        Ok(report) => println!("{}", table(&report)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
