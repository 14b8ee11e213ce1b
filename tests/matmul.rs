//! Both matmul kernels, in all four transpositions, against the f64 reference, on shapes
//! that are and are not multiples of their tiles.

mod common;

use byol_wgpu::ops::{HostTensor, MatMul, MatmulKernel, Op};
use common::{assert_close, gpu, random};

fn check(kernel: MatmulKernel, (m, n, k): (usize, usize, usize), ta: bool, tb: bool) {
    let gpu = gpu();
    let a_shape = if ta { [k, m] } else { [m, k] };
    let b_shape = if tb { [n, k] } else { [k, n] };
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let (ab, bb, cb) = (
        gpu.storage_buffer("a", (m * k * 4) as u64).unwrap(),
        gpu.storage_buffer("b", (k * n * 4) as u64).unwrap(),
        gpu.storage_buffer("c", (m * n * 4) as u64).unwrap(),
    );
    gpu.write_f32(&ab, &a);
    gpu.write_f32(&bb, &b);
    let d = kernel
        .dispatch(&gpu, (&ab, &bb, &cb), (m, n, k), ta, tb)
        .unwrap();
    gpu.run(&[d]).unwrap();
    let got = gpu.read_f32(&cb, m * n).unwrap();
    let want = MatMul::new(ta, tb).reference(&[
        &HostTensor::from_f32(&a_shape, &a),
        &HostTensor::from_f32(&b_shape, &b),
    ]);
    let what = format!("{kernel:?} {m}x{n}x{k} ta={ta} tb={tb}");
    // Sums of k products of values in [-1, 1]: the f32 rounding grows like sqrt(k).
    assert_close(&what, &got, &want.data, 1e-5 * (k as f64).sqrt(), 1e-5);
}

#[test]
fn tiled_kernel_matches_the_reference() {
    for shape in [
        (1, 1, 1),
        (37, 29, 53),
        (65, 130, 17),
        (128, 64, 256),
        (3, 200, 70),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            check(MatmulKernel::Tiled, shape, ta, tb);
        }
    }
}

#[test]
fn vec4_kernel_matches_the_reference() {
    for shape in [
        (4, 4, 4),
        (36, 44, 20),
        (8, 128, 4),
        (72, 260, 36),
        (128, 128, 128),
        (1, 8, 8),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            if MatmulKernel::Vec4.supports(shape.0, shape.1, shape.2, ta) {
                check(MatmulKernel::Vec4, shape, ta, tb);
            }
        }
    }
}

#[test]
fn subgroup_kernel_matches_the_reference() {
    if !MatmulKernel::Subgroup.available(&gpu()) {
        eprintln!("skipped: this adapter has no fixed-size subgroups");
        return;
    }
    for shape in [
        (4, 4, 4),
        (36, 44, 20),
        (72, 260, 36),
        (130, 128, 64),
        (256, 132, 8),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            if MatmulKernel::Subgroup.supports(shape.0, shape.1, shape.2, ta) {
                check(MatmulKernel::Subgroup, shape, ta, tb);
            }
        }
    }
}

#[test]
fn vec4_kernel_refuses_unaligned_shapes() {
    assert!(!MatmulKernel::Vec4.supports(8, 8, 6, false));
    assert!(!MatmulKernel::Vec4.supports(8, 6, 8, false));
    assert!(!MatmulKernel::Vec4.supports(6, 8, 8, true));
    assert!(MatmulKernel::Vec4.supports(6, 8, 8, false));
}
