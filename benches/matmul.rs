//! `cargo bench --bench matmul`: the matmul table of `byol bench matmul`, on the adapter that
//! BYOL_BACKEND / BYOL_ADAPTER choose.

mod common;

use byol_wgpu::bench::{matmul_report, matmul_shapes, MatmulReport};

fn main() {
    let gpu = common::gpu_or_exit();
    common::print_or_exit(
        matmul_report(&gpu, &matmul_shapes(), |_| {}),
        MatmulReport::table,
    );
}
