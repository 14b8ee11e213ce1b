//! Past the adapter's workgroups per dimension: element-wise kernels fold their grid into two
//! dimensions and stay right; a convolution whose grid cannot be folded is a clear error when
//! the graph is compiled, not a device fault.

mod common;

use byol_wgpu::graph::{CpuRunner, Executable, Graph};
use byol_wgpu::ops::conv2d::{self, ConvKernels, ConvPass};
use byol_wgpu::ops::{Conv2d, ConvGeometry};
use common::{assert_close, gpu, random};

#[test]
fn element_wise_kernels_past_the_per_dimension_limit() {
    let gpu = gpu();
    let per_dim = gpu.limits.max_compute_workgroups_per_dimension as usize;
    // More 256-wide workgroups than one dimension holds, and not a multiple of anything.
    let n = per_dim * 256 + 4099;
    let mut g = Graph::new();
    let (a, b) = (g.input("a", &[n]), g.input("b", &[n]));
    let sum = g.add(a, b);
    let y = g.relu(sum);
    let (da, db) = (random(n, 1), random(n, 2));
    let feeds = [(a, &da[..]), (b, &db[..])];
    let got = Executable::new(&gpu, &g, &[sum, y])
        .unwrap()
        .run(&feeds)
        .unwrap();
    let want = CpuRunner::new(&g, &[sum, y]).run(&feeds);
    assert_close("a + b", &got[0], &want[0].data, 0.0, 1e-7);
    assert_close("relu(a + b)", &got[1], &want[1].data, 0.0, 1e-7);
}

#[test]
fn a_convolution_too_wide_for_the_grid_is_a_clear_error() {
    let gpu = gpu();
    let per_dim = gpu.limits.max_compute_workgroups_per_dimension as usize;
    // A forward pass by the GEMM (more than 16 output channels: no direct kernel) whose
    // output columns, batch x pixels, need more column tiles than one dimension holds.
    let wide = ConvGeometry {
        batch: per_dim + 1,
        ci: 2,
        h: 64,
        w: 64,
        co: 24,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
    };
    let buffer = gpu.storage_buffer("any", 16).unwrap();
    for kernels in [
        ConvKernels::Tiled,
        ConvKernels::TiledLarge,
        ConvKernels::Subgroup,
    ]
    .into_iter()
    .filter(|k| k.available(&gpu))
    {
        let err = conv2d::dispatch_on(
            kernels,
            &gpu,
            ConvPass::Forward,
            &wide,
            1,
            (&buffer, &buffer, &buffer),
        )
        .err()
        .unwrap_or_else(|| panic!("{kernels:?}: {} columns fit", wide.batch * 64 * 64))
        .to_string();
        assert!(
            err.contains("workgroups") && err.contains(&per_dim.to_string()),
            "{kernels:?}: {err}"
        );
    }
    // Through the graph the step is refused when compiled: by this limit or, first on most
    // adapters, by the size of the buffers such a batch needs.
    let mut g = Graph::new();
    let x = g.input("x", &[wide.batch, 2, 64, 64]);
    let w = g.input("w", &[24, 2, 1, 1]);
    let y = g.apply(Conv2d { stride: 1, pad: 0 }, &[x, w]);
    match Executable::new(&gpu, &g, &[y]) {
        Ok(_) => panic!("compiled a convolution the grid cannot hold"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("workgroups") || e.contains("per buffer binding"),
                "{e}"
            );
        }
    }
}
