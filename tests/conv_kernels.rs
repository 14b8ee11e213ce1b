//! Every convolution kernel family the adapter can run, each pass against the f64 reference:
//! the tiled GEMM of hardware GPUs runs here too, so CI on a software adapter checks both.

mod common;

use byol_wgpu::ops::conv2d::{self, ConvKernels, ConvPass};
use byol_wgpu::ops::{Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeometry, HostTensor, Op};
use common::{assert_close, gpu, random};

fn geometry(
    batch: usize,
    ci: usize,
    (h, w): (usize, usize),
    co: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeometry {
    ConvGeometry {
        batch,
        ci,
        h,
        w,
        co,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

/// Layers that take each path: the direct kernels (few channels, stride 1), fitted and large
/// GEMM tiles, parity classes of strided input gradients, split-K and by-taps weight gradients.
fn geometries() -> Vec<ConvGeometry> {
    vec![
        geometry(2, 3, (13, 11), 20, 3, 1, 1),
        geometry(2, 8, (9, 9), 8, 3, 1, 1),
        geometry(2, 5, (9, 8), 6, 3, 2, 1),
        geometry(3, 20, (7, 7), 24, 1, 2, 0),
        geometry(1, 3, (13, 11), 8, 7, 2, 3),
        geometry(2, 70, (5, 5), 66, 3, 1, 1),
        geometry(2, 3, (32, 32), 4, 3, 1, 1),
        geometry(2, 1, (6, 5), 12, 3, 1, 1),
    ]
}

fn buffer(len: usize, data: Option<&[f32]>) -> wgpu::Buffer {
    let gpu = gpu();
    let b = gpu.storage_buffer("conv test", (len * 4) as u64).unwrap();
    if let Some(data) = data {
        gpu.write_f32(&b, data);
    }
    b
}

fn check(kernels: ConvKernels, g: &ConvGeometry) {
    let gpu = gpu();
    let x_shape = [g.batch, g.ci, g.h, g.w];
    let w_shape = [g.co, g.ci, g.kh, g.kw];
    let y_shape = g.output_shape();
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let (x, w, dy) = (
        random(numel(&x_shape), 1),
        random(numel(&w_shape), 2),
        random(numel(&y_shape), 3),
    );
    let (xb, wb, dyb) = (
        buffer(x.len(), Some(&x)),
        buffer(w.len(), Some(&w)),
        buffer(dy.len(), Some(&dy)),
    );
    let host = |shape: &[usize], data: &[f32]| HostTensor::from_f32(shape, data);
    let splits = conv2d::weight_grad_splits(g);
    let taps = g.kh * g.kw;
    let k_of = |pass| match pass {
        ConvPass::Forward => g.ci * taps,
        ConvPass::GradInput => g.co * taps,
        ConvPass::GradWeight => (g.batch * g.ho() * g.wo()).div_ceil(splits),
    };
    for pass in [ConvPass::Forward, ConvPass::GradInput, ConvPass::GradWeight] {
        let (want, a, b) = match pass {
            ConvPass::Forward => (
                Conv2d {
                    stride: g.stride,
                    pad: g.pad,
                }
                .reference(&[&host(&x_shape, &x), &host(&w_shape, &w)]),
                &wb,
                &xb,
            ),
            ConvPass::GradInput => (
                Conv2dGradInput { geometry: *g }
                    .reference(&[&host(&y_shape, &dy), &host(&w_shape, &w)]),
                &wb,
                &dyb,
            ),
            ConvPass::GradWeight => (
                Conv2dGradWeight {
                    geometry: *g,
                    splits,
                }
                .reference(&[&host(&x_shape, &x), &host(&y_shape, &dy)]),
                &dyb,
                &xb,
            ),
        };
        let out = buffer(want.data.len(), None);
        let pass_splits = if pass == ConvPass::GradWeight {
            splits
        } else {
            1
        };
        let launches = conv2d::dispatch_on(kernels, &gpu, pass, g, pass_splits, (a, b, &out))
            .unwrap_or_else(|e| panic!("{kernels:?} {pass:?} {g:?}: {e}"));
        gpu.run(&launches).unwrap();
        let got = gpu.read_f32(&out, want.data.len()).unwrap();
        // Sums of K products of values in [-1, 1]: the f32 rounding grows like sqrt(K).
        let k = k_of(pass) as f64;
        let what = format!("{kernels:?} {pass:?} {g:?}");
        assert_close(&what, &got, &want.data, 1e-5 * k.sqrt(), 1e-5);
    }
}

#[test]
fn every_kernel_family_matches_the_reference_in_every_pass() {
    let gpu = gpu();
    let families: Vec<ConvKernels> = [ConvKernels::Tiled, ConvKernels::Subgroup]
        .into_iter()
        .filter(|k| k.available(&gpu))
        .collect();
    assert!(families.contains(&ConvKernels::Tiled));
    assert!(
        geometries()
            .iter()
            .any(|g| conv2d::weight_grad_splits(g) > 1),
        "a weight gradient that splits K"
    );
    for kernels in families {
        for g in geometries() {
            check(kernels, &g);
        }
    }
}
